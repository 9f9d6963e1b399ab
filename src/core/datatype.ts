/**
 * The tensor datatypes of the Open Inference Protocol (V2) and their mappings to
 * Triton's config names (TYPE_FP32), ONNX Runtime's tensor types and JS typed arrays.
 */
export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const;

export type Datatype = (typeof DATATYPES)[number];

export type NumericArray =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

/**
 * Tensor contents in memory: a typed array for fixed-size types (BOOL as Uint8Array, FP16 as raw
 * Uint16Array bits); for BYTES, a Buffer per element or the elements packed in one buffer as the
 * binary protocols carry them (PackedBytes).
 */
export type TensorData = NumericArray | BytesData;

export type BytesData = Buffer[] | PackedBytes;

interface DatatypeInfo {
  byteSize: number; // 0 for variable-size BYTES
  onnxType: string; // onnxruntime-node Tensor type
  arrayType?: { new (length: number): NumericArray; new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericArray };
}

const INFO: Record<Datatype, DatatypeInfo> = {
  BOOL: { byteSize: 1, onnxType: 'bool', arrayType: Uint8Array },
  UINT8: { byteSize: 1, onnxType: 'uint8', arrayType: Uint8Array },
  UINT16: { byteSize: 2, onnxType: 'uint16', arrayType: Uint16Array },
  UINT32: { byteSize: 4, onnxType: 'uint32', arrayType: Uint32Array },
  UINT64: { byteSize: 8, onnxType: 'uint64', arrayType: BigUint64Array },
  INT8: { byteSize: 1, onnxType: 'int8', arrayType: Int8Array },
  INT16: { byteSize: 2, onnxType: 'int16', arrayType: Int16Array },
  INT32: { byteSize: 4, onnxType: 'int32', arrayType: Int32Array },
  INT64: { byteSize: 8, onnxType: 'int64', arrayType: BigInt64Array },
  FP16: { byteSize: 2, onnxType: 'float16', arrayType: Uint16Array },
  FP32: { byteSize: 4, onnxType: 'float32', arrayType: Float32Array },
  FP64: { byteSize: 8, onnxType: 'float64', arrayType: Float64Array },
  BYTES: { byteSize: 0, onnxType: 'string' },
};

const DATATYPE_NAMES: ReadonlySet<string> = new Set(DATATYPES);

/**
 * Why BF16, a V2 datatype (Triton's TYPE_BF16), is refused wherever it appears: no backend here can hold it.
 * onnxruntime-node has no bfloat16 tensor type (neither to feed nor to read back), and TF.js has none either.
 */
export const BF16_UNSUPPORTED =
  "BF16 (bfloat16) is not supported: ONNX Runtime's Node binding, which runs the models here, has no bfloat16 tensors (nor has TF.js); use FP32 or FP16";

/** The values each integer datatype holds, exactly (64 bits need BigInt): a value outside would be wrapped by its typed array. */
export const INTEGER_RANGES: Readonly<Partial<Record<Datatype, readonly [bigint, bigint]>>> = {
  INT8: [-(2n ** 7n), 2n ** 7n - 1n],
  UINT8: [0n, 2n ** 8n - 1n],
  INT16: [-(2n ** 15n), 2n ** 15n - 1n],
  UINT16: [0n, 2n ** 16n - 1n],
  INT32: [-(2n ** 31n), 2n ** 31n - 1n],
  UINT32: [0n, 2n ** 32n - 1n],
  INT64: [-(2n ** 63n), 2n ** 63n - 1n],
  UINT64: [0n, 2n ** 64n - 1n],
};

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === 'string' && DATATYPE_NAMES.has(value);
}

export function byteSize(datatype: Datatype): number {
  return INFO[datatype].byteSize;
}

export function onnxTypeOf(datatype: Datatype): string {
  return INFO[datatype].onnxType;
}

const FROM_ONNX = new Map<string, Datatype>(
  (Object.entries(INFO) as [Datatype, DatatypeInfo][]).map(([datatype, info]) => [info.onnxType, datatype]),
);

export function datatypeFromOnnx(onnxType: string): Datatype | undefined {
  return FROM_ONNX.get(onnxType);
}

/** Triton config.pbtxt names: TYPE_FP32 <-> FP32, TYPE_STRING <-> BYTES. */
export function datatypeFromConfig(configType: string): Datatype | undefined {
  const name = configType.startsWith('TYPE_') ? configType.slice(5) : configType;
  if (name === 'STRING') return 'BYTES';
  return isDatatype(name) ? name : undefined;
}

export function configTypeOf(datatype: Datatype): string {
  return datatype === 'BYTES' ? 'TYPE_STRING' : `TYPE_${datatype}`;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((count, dim) => count * dim, 1);
}

/** Views little-endian bytes as a typed array, copying only when the bytes are misaligned. */
export function typedArrayFromBytes(datatype: Exclude<Datatype, 'BYTES'>, bytes: Uint8Array): NumericArray {
  const info = INFO[datatype];
  const ArrayType = info.arrayType!;
  const length = bytes.byteLength / info.byteSize;
  if (bytes.byteOffset % info.byteSize === 0) return new ArrayType(bytes.buffer, bytes.byteOffset, length);
  // Copied into Node's buffer pool, whose pieces start 8-byte aligned: a small tensor (a tiny model's binary input, after
  // a JSON header of odd length) gets no ArrayBuffer of its own, which costs about 1.4 µs to make (allocateTypedArray).
  const copy = Buffer.allocUnsafe(bytes.byteLength);
  copy.set(bytes);
  return new ArrayType(copy.buffer, copy.byteOffset, length);
}

export function bytesOfTypedArray(data: NumericArray): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** The typed array a numeric datatype's data is held in (FP16: Uint16Array of half-precision bits). */
export function typedArrayTypeOf(datatype: Exclude<Datatype, 'BYTES'>): NonNullable<DatatypeInfo['arrayType']> {
  return INFO[datatype].arrayType!;
}

/**
 * A zeroed typed array of its own. Made by length, not over an ArrayBuffer made first: V8 then keeps a small one (a
 * tiny model's request tensor) on its heap, 39 ns against 1.36 µs for a buffer of its own outside it, which every
 * collection must also sweep; from 64 bytes on it allocates outside either way, at the same cost.
 */
export function allocateTypedArray(datatype: Exclude<Datatype, 'BYTES'>, length: number): NumericArray {
  return new INFO[datatype].arrayType!(length);
}

/** BYTES tensors travel as 4-byte little-endian length prefixes followed by the bytes (Triton's binary format). */
export function encodeBytesElements(elements: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const element of elements) total += 4 + element.length;
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const element of elements) {
    out.writeUInt32LE(element.length, offset);
    out.set(element, offset + 4);
    offset += 4 + element.length;
  }
  return out;
}

/**
 * How many length-prefixed elements `bytes` holds, reading no further than `limit` + 1 of them (a
 * caller expecting `limit` learns of extra ones without reading them all); -1 when the bytes are
 * not a whole number of elements. Allocates nothing: a million elements take a few milliseconds.
 */
export function countBytesElements(bytes: Uint8Array, limit = Infinity): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  let offset = 0;
  let count = 0;
  while (offset < end && count <= limit) {
    if (offset + 4 > end) return -1;
    offset += 4 + view.getUint32(offset, true);
    if (offset > end) return -1;
    count++;
  }
  return count;
}

/**
 * BYTES elements kept as the binary protocols carry them: each a 4-byte little-endian length and its
 * bytes, one after another, in one buffer. A request of a million elements is then one object for
 * the garbage collector instead of a million, whose pauses over them would hold the event loop for
 * hundreds of milliseconds; it crosses to a worker thread and back to the wire without being split.
 */
export class PackedBytes {
  /** Where each element's length prefix starts, and the end: read once, when an element is first asked for. */
  private starts?: Uint32Array;

  /** `bytes` must hold exactly `length` elements (see countBytesElements); the name is an array's, so code counting elements reads both forms alike. */
  constructor(
    readonly bytes: Buffer,
    readonly length: number,
  ) {}

  static of(elements: readonly Uint8Array[]): PackedBytes {
    return new PackedBytes(encodeBytesElements(elements), elements.length);
  }

  /** The parts' elements one after another. */
  static concat(parts: readonly PackedBytes[]): PackedBytes {
    let length = 0;
    for (const part of parts) length += part.length;
    return new PackedBytes(Buffer.concat(parts.map((part) => part.bytes)), length);
  }

  /** Element `index`, a view into the packed bytes. */
  element(index: number): Buffer {
    const starts = this.elementStarts();
    return this.bytes.subarray(starts[index] + 4, starts[index + 1]);
  }

  /** Walks the elements in order without making an object for each (see PackedBytesCursor). */
  cursor(): PackedBytesCursor {
    return new PackedBytesCursor(this.bytes);
  }

  elements(): Buffer[] {
    const elements: Buffer[] = new Array(this.length);
    for (let index = 0; index < this.length; index++) elements[index] = this.element(index);
    return elements;
  }

  /** Elements `start` to `end` (exclusive), sharing these bytes. */
  slice(start: number, end: number): PackedBytes {
    // A batch of one request takes all of its outputs: no need to index a million elements for that.
    if (start === 0 && end === this.length) return this;
    const starts = this.elementStarts();
    return new PackedBytes(this.bytes.subarray(starts[start], starts[end]), end - start);
  }

  /** A copy that owns its bytes. */
  copy(): PackedBytes {
    return new PackedBytes(Buffer.from(this.bytes), this.length);
  }

  private elementStarts(): Uint32Array {
    if (this.starts) return this.starts;
    const starts = new Uint32Array(this.length + 1);
    const cursor = this.cursor();
    for (let index = 0; index < this.length; index++) {
      starts[index] = cursor.end;
      cursor.next();
    }
    starts[this.length] = cursor.end;
    return (this.starts = starts);
  }
}

/** After each next(), `bytes` [start, end) is the next element of a PackedBytes. */
export class PackedBytesCursor {
  start = 0;
  end = 0;

  constructor(readonly bytes: Buffer) {}

  next(): void {
    this.start = this.end + 4;
    this.end = this.start + this.bytes.readUInt32LE(this.end);
  }
}

/** BYTES contents as a Buffer per element (packed ones split, as views of their bytes). */
export function bytesElements(data: TensorData): Buffer[] {
  if (data instanceof PackedBytes) return data.elements();
  if (!Array.isArray(data)) throw new TypeError('bytesElements: the tensor holds numbers, not BYTES');
  return data;
}

/** BYTES contents packed (see PackedBytes); packed ones as they are. */
export function packedBytes(data: BytesData): PackedBytes {
  return data instanceof PackedBytes ? data : PackedBytes.of(data);
}

/**
 * Returns undefined when the bytes are not a whole number of length-prefixed elements. Stops after
 * `limit` + 1 elements, so a caller expecting `limit` learns of extra ones without decoding them all.
 */
export function decodeBytesElements(bytes: Buffer, limit = Infinity): Buffer[] | undefined {
  const count = countBytesElements(bytes, limit);
  return count < 0 ? undefined : new PackedBytes(bytes, count).elements();
}

/**
 * How long work over many elements runs before letting the event loop run: a million elements take
 * seconds, and other connections must not wait for them.
 */
export const SLICE_MS = 4;
/** Elements between looks at the clock. */
const ELEMENTS_PER_CLOCK_CHECK = 2048;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The first index in [0, count) for which `test` is true, or -1, letting the event loop run every
 * SLICE_MS.
 */
export async function findIndexInSlices(count: number, test: (index: number) => boolean): Promise<number> {
  let until = performance.now() + SLICE_MS;
  for (let index = 0; index < count; index++) {
    if (test(index)) return index;
    if (index % ELEMENTS_PER_CLOCK_CHECK === ELEMENTS_PER_CLOCK_CHECK - 1 && performance.now() >= until) {
      await nextTurn();
      until = performance.now() + SLICE_MS;
    }
  }
  return -1;
}

/**
 * BYTES contents length-prefixed in one buffer of their own (never one of Node's pooled ones, so it
 * may be transferred to a worker thread), Buffer elements copied a few milliseconds at a time.
 */
export async function packedBytesInSlices(data: BytesData): Promise<Buffer> {
  if (data instanceof PackedBytes) return data.bytes;
  let total = 0;
  for (const element of data) total += 4 + element.length;
  const out = Buffer.allocUnsafeSlow(total);
  let offset = 0;
  await findIndexInSlices(data.length, (index) => {
    const element = data[index];
    out.writeUInt32LE(element.length, offset);
    out.set(element, offset + 4);
    offset += 4 + element.length;
    return false;
  });
  return out;
}

/** IEEE 754 half precision <-> JS number, for FP16 in JSON, images and test models. */
export function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Rounds to the nearest half, ties to even, as IEEE 754 conversion does. */
export function numberToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // Inf / NaN
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflows to signed zero
    mantissa |= 0x800000; // the implicit leading bit, explicit for the subnormal shift
    const shift = 14 - e;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry from rounding may bump the exponent; that is the right result (up to Inf).
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}
