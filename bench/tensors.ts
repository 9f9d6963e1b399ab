/**
 * Element types the benchmark can generate, send and check, keyed by ONNX Runtime's type name.
 * Shared by the harness and the peer server (which stands for code a user would write, so it
 * deliberately does not import Nereid's own datatype module).
 */
export type OrtNumericData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

interface ElementType {
  v2: string;
  bytes: number;
  allocate(length: number): OrtNumericData;
  fromBytes(buffer: ArrayBuffer, byteOffset: number, length: number): OrtNumericData;
  fromJson(values: unknown[]): OrtNumericData;
  random(): number | bigint;
}

function numeric<T extends OrtNumericData>(
  v2: string,
  Ctor: { new (length: number): T; new (buffer: ArrayBuffer, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number },
  random: () => number | bigint,
  toElement: (value: unknown) => number | bigint = (value) => value as number,
): ElementType {
  return {
    v2,
    bytes: Ctor.BYTES_PER_ELEMENT,
    allocate: (length) => new Ctor(length),
    fromBytes: (buffer, byteOffset, length) => new Ctor(buffer, byteOffset, length),
    fromJson: (values) => {
      const out = new Ctor(values.length);
      for (let i = 0; i < values.length; i++) (out as unknown as (number | bigint)[])[i] = toElement(values[i]);
      return out;
    },
    random,
  };
}

/** Normalised-pixel-like floats, as image models receive: (p / 255 - 0.5) / 0.5 for p in 0..255. */
const pixel = () => (Math.floor(Math.random() * 256) / 255 - 0.5) / 0.5;
const small = () => Math.floor(Math.random() * 100);
const bigSmall = () => BigInt(small());

export const ELEMENT_TYPES: Readonly<Record<string, ElementType>> = {
  float32: numeric('FP32', Float32Array, pixel),
  float64: numeric('FP64', Float64Array, pixel),
  int8: numeric('INT8', Int8Array, small),
  uint8: numeric('UINT8', Uint8Array, small),
  int16: numeric('INT16', Int16Array, small),
  uint16: numeric('UINT16', Uint16Array, small),
  int32: numeric('INT32', Int32Array, small),
  uint32: numeric('UINT32', Uint32Array, small),
  int64: numeric('INT64', BigInt64Array, bigSmall, (value) => BigInt(value as number)),
  uint64: numeric('UINT64', BigUint64Array, bigSmall, (value) => BigInt(value as number)),
  bool: numeric('BOOL', Uint8Array, () => Math.round(Math.random()), (value) => (value ? 1 : 0)),
};

export const ORT_TYPE_OF_V2: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(ELEMENT_TYPES).map(([ort, type]) => [type.v2, ort]),
);

export function elementType(ortType: string): ElementType {
  const type = ELEMENT_TYPES[ortType];
  if (!type) throw new Error(`element type '${ortType}' is not supported by the benchmark (${Object.keys(ELEMENT_TYPES).join(', ')})`);
  return type;
}

/** JSON numbers (booleans for BOOL) of a typed array, as a V2 client sends them. */
export function jsonValues(ortType: string, data: OrtNumericData): unknown[] {
  if (ortType === 'bool') return Array.from(data as Uint8Array, (value) => value !== 0);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Array.from(data, (value) => Number(value));
  return Array.from(data as Float32Array);
}

/** Typed array over little-endian bytes, copied when the bytes are not aligned for the element size. */
export function typedFromBytes(ortType: string, bytes: Uint8Array): OrtNumericData {
  const type = elementType(ortType);
  if (bytes.byteLength % type.bytes !== 0) throw new Error(`${bytes.byteLength} bytes is not a whole number of ${ortType} elements`);
  const aligned = bytes.byteOffset % type.bytes === 0 ? bytes : new Uint8Array(bytes);
  return type.fromBytes(aligned.buffer as ArrayBuffer, aligned.byteOffset, aligned.byteLength / type.bytes);
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}
