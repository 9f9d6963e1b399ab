import {
  allocateTypedArray,
  byteSize,
  bytesOfTypedArray,
  bytesElements,
  countBytesElements,
  elementCount,
  encodeBytesElements,
  halfToNumber,
  BF16_UNSUPPORTED,
  INTEGER_RANGES,
  isDatatype,
  numberToHalf,
  packedBytesInSlices,
  typedArrayFromBytes,
  PackedBytes,
  DATATYPES,
  type BytesData,
  type Datatype,
  type NumericArray,
  type TensorData,
} from './datatype.js';
import { invalidArgument, NereidError, quote, quoteName } from './errors.js';

export interface Tensor {
  datatype: Datatype;
  shape: number[];
  data: TensorData;
}

/** V2 JSON allows nested row-major arrays or a flat one; both flatten to the same order. */
function flatten(name: string, values: unknown[]): unknown[] {
  let nested = false;
  for (let index = 0; index < values.length && !nested; index++) nested = Array.isArray(values[index]);
  if (!nested) return values;
  try {
    return values.flat(Infinity) as unknown[];
  } catch (error) {
    // Absurd nesting overflows the stack in flat(): the client's mistake, not the server's.
    if (error instanceof RangeError) throw invalidArgument(`input ${quoteName(name)}: 'data' is nested too deeply`);
    throw error;
  }
}

/** The largest finite value of each float datatype (a JSON number beyond it would become Infinity). */
const LARGEST_FLOAT = { FP16: 65504, FP32: 3.4028234663852886e38, FP64: Number.MAX_VALUE } as const;

function badElement(name: string, datatype: Datatype, flat: readonly unknown[], index: number, expected: string) {
  return new NereidError('INVALID_ARGUMENT', `input ${quoteName(name)}: element ${index} is ${quote(flat[index])}, expected ${expected} for datatype ${datatype}`, {
    logged: `input ${quoteName(name)}: element ${index} is not ${expected} for datatype ${datatype} (its value is not logged)`,
  });
}

/** String.prototype.isWellFormed (Node 20), which the ES2022 library types do not declare. */
const isWellFormed = (text: string) => (text as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * Converts V2 JSON `data` to tensor contents, checking every element against the datatype so that
 * a bad value is reported by position instead of silently becoming NaN or wrapping around.
 */
export function tensorDataFromJson(name: string, datatype: Datatype, values: unknown, { nonFinite = false }: { nonFinite?: boolean } = {}): TensorData {
  if (!Array.isArray(values)) throw invalidArgument(`input ${quoteName(name)}: 'data' must be an array of ${datatype} values`);
  const flat = flatten(name, values);
  const count = flat.length;
  if (datatype === 'BYTES') {
    checkBytesElementCount(name, count);
    const elements: Buffer[] = new Array(count);
    for (let index = 0; index < count; index++) {
      const value = flat[index];
      if (typeof value !== 'string') throw badElement(name, datatype, flat, index, 'a string');
      // UTF-8 cannot carry a lone surrogate: the encoder would put U+FFFD in its place, a byte the client never sent.
      if (!isWellFormed(value)) throw badElement(name, datatype, flat, index, 'Unicode text (it has an unpaired surrogate)');
      elements[index] = Buffer.from(value, 'utf8');
    }
    return elements;
  }
  const data = allocateTypedArray(datatype, count);
  if (datatype === 'BOOL') {
    for (let index = 0; index < count; index++) {
      const value = flat[index];
      if (typeof value !== 'boolean') throw badElement(name, datatype, flat, index, 'true or false');
      data[index] = value ? 1 : 0;
    }
    return data;
  }
  if (datatype === 'INT64' || datatype === 'UINT64') {
    const big = data as BigInt64Array | BigUint64Array;
    const [min, max] = INTEGER_RANGES[datatype]!;
    for (let index = 0; index < count; index++) {
      const value = flat[index];
      const asBig =
        typeof value === 'bigint'
          ? value
          : typeof value === 'number' && Number.isInteger(value)
            ? BigInt(value)
            : typeof value === 'string' && /^-?\d+$/.test(value)
              ? BigInt(value)
              : undefined;
      if (asBig === undefined || asBig < min || asBig > max) throw badElement(name, datatype, flat, index, 'an integer in range');
      big[index] = asBig;
    }
    return data;
  }
  const numbers = data as Exclude<NumericArray, BigInt64Array | BigUint64Array>;
  // The 64-bit types went above: the bounds left are exact as doubles.
  const range = INTEGER_RANGES[datatype];
  if (range) {
    const [low, high] = range.map(Number);
    for (let index = 0; index < count; index++) {
      const value = flat[index];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < low || value > high) {
        throw badElement(name, datatype, flat, index, typeof value !== 'number' && typeof value !== 'bigint' && !(value instanceof Number) ? 'a number' : `an integer in [${low}, ${high}]`);
      }
      numbers[index] = value;
    }
    return data;
  }
  const largest = LARGEST_FLOAT[datatype as 'FP16' | 'FP32' | 'FP64'];
  for (let index = 0; index < count; index++) {
    const element = flat[index];
    // NaN, Infinity and -Infinity as the JSON wrote them arrive boxed (parseExactJson), and a caller's own (`nonFinite`) plain.
    if (element instanceof Number || (nonFinite && typeof element === 'number' && !Number.isFinite(element))) {
      numbers[index] = datatype === 'FP16' ? numberToHalf(element.valueOf()) : element.valueOf();
      continue;
    }
    // An integer literal beyond 2^53 arrives as a bigint; a float tensor takes its nearest value, as JSON would.
    const value = typeof element === 'bigint' ? Number(element) : element;
    if (typeof value !== 'number') throw badElement(name, datatype, flat, index, 'a number');
    const stored = datatype === 'FP16' ? numberToHalf(value) : value;
    // An unboxed infinity is a number literal beyond FP64 that JSON.parse made one: out of range, not infinite.
    if (!Number.isFinite(value) || (datatype === 'FP16' ? (stored & 0x7fff) === 0x7c00 : datatype === 'FP32' && !Number.isFinite(Math.fround(value)))) {
      const shown = Number.isFinite(value) ? quote(flat[index]) : 'a number beyond the range of a double';
      throw invalidArgument(`input ${quoteName(name)}: element ${index} is ${shown}, out of range for datatype ${datatype} (finite values from -${largest} to ${largest})`);
    }
    numbers[index] = stored;
  }
  return data;
}

/**
 * Typed tensor contents as the V2 gRPC protocol sends them (InferTensorContents): one repeated
 * field per family of datatypes. 64-bit integers may arrive as decimal strings, so none is rounded.
 */
export interface TensorContents {
  bool_contents?: readonly boolean[];
  int_contents?: readonly number[];
  int64_contents?: readonly (number | string | bigint)[];
  uint_contents?: readonly number[];
  uint64_contents?: readonly (number | string | bigint)[];
  fp32_contents?: readonly number[];
  fp64_contents?: readonly number[];
  bytes_contents?: readonly Uint8Array[];
}

type ContentsField = keyof TensorContents;

/** The contents field that carries each datatype; FP16 has none and travels only as raw bytes. */
const CONTENTS_FIELD: Record<Datatype, ContentsField | undefined> = {
  BOOL: 'bool_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  FP16: undefined,
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

const CONTENTS_FIELDS: readonly ContentsField[] = [
  'bool_contents',
  'int_contents',
  'int64_contents',
  'uint_contents',
  'uint64_contents',
  'fp32_contents',
  'fp64_contents',
  'bytes_contents',
];

/**
 * Converts typed contents to tensor contents with the same element checks as JSON `data`
 * (INT8 values must fit INT8, and so on), after checking the field matches the datatype.
 */
export function tensorDataFromContents(name: string, datatype: Datatype, contents: TensorContents): TensorData {
  const field = CONTENTS_FIELD[datatype];
  const stray = CONTENTS_FIELDS.find((other) => other !== field && (contents[other]?.length ?? 0) > 0);
  if (field === undefined) {
    throw invalidArgument(`input ${quoteName(name)}: ${datatype} has no typed contents field; send it as raw little-endian bytes (raw_input_contents)`);
  }
  if (stray) {
    throw invalidArgument(`input ${quoteName(name)} is ${datatype}, whose contents go in ${field}, but the request sets ${stray}`);
  }
  const values = contents[field] ?? [];
  if (datatype === 'BYTES') {
    return (values as readonly Uint8Array[]).map((element) =>
      Buffer.isBuffer(element) ? element : Buffer.from(element.buffer, element.byteOffset, element.byteLength),
    );
  }
  if (datatype === 'INT64' || datatype === 'UINT64') {
    return tensorDataFromJson(
      name,
      datatype,
      (values as readonly (number | string | bigint)[]).map((value) => (typeof value === 'bigint' ? value.toString() : value)),
    );
  }
  // Protobuf floats carry NaN and ±Infinity, which Triton takes: only JSON, which has neither, refuses them.
  if (datatype === 'FP32') return Float32Array.from(values as readonly number[]);
  if (datatype === 'FP64') return Float64Array.from(values as readonly number[]);
  return tensorDataFromJson(name, datatype, values as unknown[]);
}

/** Checks a wire datatype name; every front end reports an unknown one the same way. */
/** Other names of a datatype that clients write: lower case, a config's TYPE_ prefix, numpy's and C's names. */
const DATATYPE_ALIASES: Readonly<Record<string, Datatype>> = { FLOAT: 'FP32', FLOAT32: 'FP32', FLOAT16: 'FP16', HALF: 'FP16', FLOAT64: 'FP64', DOUBLE: 'FP64', STRING: 'BYTES', INT: 'INT32', LONG: 'INT64' };

function datatypeMeant(given: string): Datatype | undefined {
  const upper = given.trim().toUpperCase().replace(/^TYPE_/, '');
  return isDatatype(upper) ? upper : DATATYPE_ALIASES[upper];
}

export function checkDatatype(name: string, value: unknown): Datatype {
  if (value === 'BF16') throw invalidArgument(`input ${quoteName(name)}: datatype ${BF16_UNSUPPORTED}`);
  if (!isDatatype(value)) {
    if (value === undefined) throw invalidArgument(`input ${quoteName(name)} has no 'datatype' (one of ${DATATYPES.join(', ')})`);
    const meant = typeof value === 'string' ? datatypeMeant(value) : undefined;
    throw invalidArgument(`input ${quoteName(name)}: datatype must be one of ${DATATYPES.join(', ')}, got ${quote(value)}${meant ? ` (did you mean ${meant}?)` : ''}`);
  }
  return value;
}

/** Checks a wire shape: an array of non-negative integers. */
export function checkShape(name: string, value: unknown): number[] {
  let valid = Array.isArray(value);
  for (let index = 0; valid && index < (value as unknown[]).length; index++) {
    const dim = (value as unknown[])[index];
    valid = Number.isSafeInteger(dim) && (dim as number) >= 0;
  }
  if (value === undefined) throw invalidArgument(`input ${quoteName(name)} has no 'shape' (an array of non-negative integers)`);
  if (!valid) throw invalidArgument(`input ${quoteName(name)}: shape must be an array of non-negative integers, each at most ${Number.MAX_SAFE_INTEGER}, got ${quote(value)}`);
  return value as number[];
}

/** In JSON and typed contents each BYTES element is an object of its own, and code that needs elements one by one splits packed ones: past this many a request costs the server more memory and time than its bytes suggest. */
export const MAX_BYTES_ELEMENTS = 1 << 20;

export function checkBytesElementCount(name: string, count: number): void {
  if (count > MAX_BYTES_ELEMENTS) {
    throw invalidArgument(`input ${quoteName(name)} has ${count} BYTES elements; at most ${MAX_BYTES_ELEMENTS} are accepted per input`);
  }
}

/**
 * Reads tensor contents from raw little-endian bytes (BYTES: 4-byte length-prefixed elements, kept
 * packed), as Triton's binary tensor data and gRPC raw_input_contents carry them. `sizeSource` names
 * where the byte count came from in the client's terms (e.g. "binary_data_size").
 */
export function tensorDataFromBytes(name: string, datatype: Datatype, shape: readonly number[], bytes: Buffer, sizeSource: string, shapeFirst?: InputShapeCheck): TensorData {
  if (!shapeFirst) return tensorDataOfBytes(name, datatype, shape, bytes, sizeSource);
  try {
    return tensorDataOfBytes(name, datatype, shape, bytes, sizeSource);
  } catch (error) {
    // A wrong shape is the cause, and the message, before the byte count it leads to (Triton checks the shape first).
    shapeFirst({ name, datatype, shape });
    throw error;
  }
}

/**
 * Checks an input's datatype and shape against its model, throwing the model's own INVALID_ARGUMENT when they are
 * wrong: given to the decoders so that a binary size that does not match a wrong shape is reported as the shape.
 */
export type InputShapeCheck = (input: InputDeclaration) => void;

/** An input as a request declares it, before its data is read. */
export interface InputDeclaration {
  name: string;
  datatype: Datatype;
  shape: readonly number[];
}

function tensorDataOfBytes(name: string, datatype: Datatype, shape: readonly number[], bytes: Buffer, sizeSource: string): TensorData {
  const count = elementCount(shape);
  if (datatype === 'BYTES') return packedBytesOf(name, shape, count, bytes);
  const expected = count * byteSize(datatype);
  if (bytes.length !== expected) {
    throw invalidArgument(
      `input ${quoteName(name)}: ${datatype} [${shape.join(',')}] needs ${expected} bytes of binary data, got ${sizeSource} ${bytes.length}`,
    );
  }
  return typedArrayFromBytes(datatype, bytes);
}

function packedBytesOf(name: string, shape: readonly number[], count: number, bytes: Buffer): PackedBytes {
  checkBytesElementCount(name, count);
  // Every element takes at least its 4-byte length: fewer bytes cannot hold the shape, more elements are not read.
  if (bytes.length < 4 * count) {
    throw invalidArgument(
      `input ${quoteName(name)} has shape [${shape.join(',')}], which holds ${count} elements, but ${bytes.length} bytes of binary data hold at most ${Math.floor(bytes.length / 4)}`,
    );
  }
  const found = countBytesElements(bytes, count);
  if (found < 0) {
    throw invalidArgument(`input ${quoteName(name)}: binary BYTES data must be 4-byte little-endian lengths each followed by that many bytes`);
  }
  if (found !== count) {
    const what = found > count ? `more than ${count}` : String(found);
    throw invalidArgument(`input ${quoteName(name)} has shape [${shape.join(',')}], which holds ${count} elements, but its binary data holds ${what}`);
  }
  return new PackedBytes(bytes, count);
}

/** tensorDataToBytes, Buffer elements of BYTES copied a few milliseconds at a time so other requests are served meanwhile. */
export async function tensorDataToBytesInSlices(datatype: Datatype, data: TensorData): Promise<Buffer> {
  return datatype === 'BYTES' ? packedBytesInSlices(data as BytesData) : tensorDataToBytes(datatype, data);
}

/** Tensor contents as raw little-endian bytes (BYTES length-prefixed): the inverse of tensorDataFromBytes. */
export function tensorDataToBytes(datatype: Datatype, data: TensorData): Buffer {
  if (datatype !== 'BYTES') return bytesOfTypedArray(data as NumericArray);
  return data instanceof PackedBytes ? data.bytes : encodeBytesElements(data as Buffer[]);
}

/** The JSON form of tensor contents: flat, row-major, as Triton answers. */
export function tensorDataToJson(datatype: Datatype, data: TensorData): unknown[] {
  if (datatype === 'BYTES') return bytesElements(data).map((element) => element.toString('utf8'));
  if (datatype === 'BOOL') return Array.from(data as Uint8Array, (value) => value !== 0);
  if (datatype === 'FP16') return Array.from(data as Uint16Array, halfToNumber);
  if (datatype === 'INT64' || datatype === 'UINT64') {
    return Array.from(data as BigInt64Array, (value) => Number(value));
  }
  return Array.from(data as Exclude<NumericArray, BigInt64Array | BigUint64Array>);
}

export function describeShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/**
 * `dims` (a config's dims or reshape, -1 for at most one dimension that takes the rest) made
 * concrete for a row of `elements` elements; undefined when they cannot hold exactly that many.
 */
export function concreteDims(dims: readonly number[], elements: number): number[] | undefined {
  const open = dims.filter((dim) => dim < 0).length;
  const known = dims.reduce((product, dim) => (dim < 0 ? product : product * dim), 1);
  if (open === 0) return known === elements ? [...dims] : undefined;
  if (open > 1 || known === 0 || elements % known !== 0) return undefined;
  return dims.map((dim) => (dim < 0 ? elements / known : dim));
}
