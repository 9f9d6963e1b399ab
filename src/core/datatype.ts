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

/** Tensor contents in memory: a typed array for fixed-size types (BOOL as Uint8Array, FP16 as raw Uint16Array bits), Buffers for BYTES. */
export type TensorData = NumericArray | Buffer[];

interface DatatypeInfo {
  byteSize: number; // 0 for variable-size BYTES
  onnxType: string; // onnxruntime-node Tensor type
  arrayType?: new (buffer: ArrayBufferLike, byteOffset: number, length: number) => NumericArray;
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
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new ArrayType(copy.buffer, 0, length);
}

export function bytesOfTypedArray(data: NumericArray): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

export function allocateTypedArray(datatype: Exclude<Datatype, 'BYTES'>, length: number): NumericArray {
  const info = INFO[datatype];
  return new info.arrayType!(new ArrayBuffer(length * info.byteSize), 0, length);
}

/** BYTES tensors travel as 4-byte little-endian length prefixes followed by the bytes (Triton's binary format). */
export function encodeBytesElements(elements: readonly Buffer[]): Buffer {
  const total = elements.reduce((sum, element) => sum + 4 + element.length, 0);
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const element of elements) {
    out.writeUInt32LE(element.length, offset);
    element.copy(out, offset + 4);
    offset += 4 + element.length;
  }
  return out;
}

/**
 * Returns undefined when the bytes are not a whole number of length-prefixed elements. Stops after
 * `limit` + 1 elements, so a caller expecting `limit` learns of extra ones without decoding them all.
 */
export function decodeBytesElements(bytes: Buffer, limit = Infinity): Buffer[] | undefined {
  const decoder = new BytesElementsDecoder(bytes, limit);
  return decoder.decode(Infinity) ? decoder.result() : undefined;
}

/**
 * How long a sliced BYTES codec works before letting the event loop run: a million elements take
 * seconds, and other connections must not wait for them.
 */
export const SLICE_MS = 4;
/** Elements between looks at the clock. */
const ELEMENTS_PER_CLOCK_CHECK = 2048;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Length-prefixed BYTES elements read a stretch at a time (see decodeBytesElements). */
class BytesElementsDecoder {
  private readonly elements: Buffer[] = [];
  private offset = 0;
  private malformed = false;

  constructor(
    private readonly bytes: Buffer,
    private readonly limit: number,
  ) {}

  /** Reads until done or until `untilMs` (performance.now()) has passed; true when done. */
  decode(untilMs: number): boolean {
    const { bytes, elements } = this;
    let offset = this.offset;
    let sinceCheck = 0;
    while (offset < bytes.length && elements.length <= this.limit) {
      if (offset + 4 > bytes.length) return (this.malformed = true);
      const length = bytes.readUInt32LE(offset);
      offset += 4;
      if (offset + length > bytes.length) return (this.malformed = true);
      elements.push(bytes.subarray(offset, offset + length));
      offset += length;
      if (++sinceCheck === ELEMENTS_PER_CLOCK_CHECK) {
        sinceCheck = 0;
        if (performance.now() >= untilMs) {
          this.offset = offset;
          return false;
        }
      }
    }
    this.offset = bytes.length;
    return true;
  }

  result(): Buffer[] | undefined {
    return this.malformed ? undefined : this.elements;
  }
}

/** decodeBytesElements, letting the event loop run every SLICE_MS. */
export async function decodeBytesElementsInSlices(bytes: Buffer, limit = Infinity): Promise<Buffer[] | undefined> {
  const decoder = new BytesElementsDecoder(bytes, limit);
  while (!decoder.decode(performance.now() + SLICE_MS)) await nextTurn();
  return decoder.result();
}

/**
 * encodeBytesElements, letting the event loop run every SLICE_MS. The buffer is never one of Node's
 * pooled ones, so it may be transferred to a worker thread.
 */
export async function encodeBytesElementsInSlices(elements: readonly Buffer[]): Promise<Buffer> {
  let total = 0;
  for (const element of elements) total += 4 + element.length;
  const out = Buffer.allocUnsafeSlow(total);
  let offset = 0;
  let until = performance.now() + SLICE_MS;
  for (let index = 0; index < elements.length; index++) {
    const element = elements[index];
    out.writeUInt32LE(element.length, offset);
    element.copy(out, offset + 4);
    offset += 4 + element.length;
    if (index % ELEMENTS_PER_CLOCK_CHECK === 0 && performance.now() >= until) {
      await nextTurn();
      until = performance.now() + SLICE_MS;
    }
  }
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
