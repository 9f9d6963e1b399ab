/**
 * Tensors between a JavaScript handler and the server: what a handler gives (plain arrays, strings)
 * checked and made into the server's tensors, and tensors made whole again after a thread hop.
 */
import { allocateTypedArray, bytesElements, typedArrayTypeOf, elementCount, INTEGER_RANGES, isDatatype, numberToHalf, PackedBytes, type Datatype, type NumericArray } from '../core/datatype.js';
import { describeShape, type Tensor } from '../core/tensor.js';

/** Tensors ready for a message to a handler's thread: packed BYTES split into their elements, since a class does not survive the structured clone. */
export function cloneable(tensors: Record<string, Tensor>): Record<string, Tensor> {
  const sent: Record<string, Tensor> = {};
  for (const name in tensors) {
    const tensor = tensors[name];
    sent[name] = tensor.data instanceof PackedBytes ? { ...tensor, data: bytesElements(tensor.data) } : tensor;
  }
  return sent;
}

/** Structured clone turns Buffers into plain Uint8Arrays: handlers get Buffers back. */
export function withBuffers(tensors: Record<string, Tensor>): Record<string, Tensor> {
  for (const name in tensors) {
    const tensor = tensors[name];
    if (tensor.datatype === 'BYTES') tensor.data = (tensor.data as Uint8Array[]).map((element) => Buffer.from(element.buffer, element.byteOffset, element.byteLength));
  }
  return tensors;
}

/** A handler's plain array of values as the datatype's typed array, every element checked to be one the datatype holds as it is. */
function typedFromValues(where: string, datatype: Exclude<Datatype, 'BYTES'>, values: readonly unknown[]): NumericArray {
  const data = allocateTypedArray(datatype, values.length);
  const range = INTEGER_RANGES[datatype];
  // Up to 32 bits the bounds are exact as doubles and numbers are compared as numbers; only 64-bit values need BigInt.
  const [low, high] = range && range[1] < 2n ** 53n ? [Number(range[0]), Number(range[1])] : [undefined, undefined];
  values.forEach((value, index) => {
    const shown = typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
    const bad = (why = `not ${/^[AEIOU]/.test(datatype) ? 'an' : 'a'} ${datatype} value`) => new Error(`${where}: element ${index} is ${typeof value === 'number' ? String(value) : shown}, ${why}`);
    if (datatype === 'BOOL') {
      if (typeof value !== 'boolean' && value !== 0 && value !== 1) throw bad();
      data[index] = value ? 1 : 0;
    } else if (range) {
      if (typeof value !== 'bigint' && !(typeof value === 'number' && Number.isInteger(value))) throw bad(typeof value === 'number' ? `not an integer (${datatype})` : undefined);
      const inside = typeof value === 'number' && low !== undefined ? value >= low && value <= high! : BigInt(value) >= range[0] && BigInt(value) <= range[1];
      if (!inside) throw bad(`outside ${datatype} (${range[0]} to ${range[1]})`);
      data[index] = (datatype === 'INT64' || datatype === 'UINT64' ? BigInt(value) : Number(value)) as never;
    } else {
      if (typeof value !== 'number') throw bad();
      // A plain array holds numbers; FP16's typed array holds their half-precision bits.
      data[index] = datatype === 'FP16' ? numberToHalf(value) : value;
    }
  });
  return data;
}

/**
 * One tensor a handler gave (an output of its answer, or an input of its context.infer call) as
 * the server carries it: typed arrays of the datatype, BYTES as Buffers (strings are UTF-8 encoded).
 */
export function tensorFromHandler(where: string, value: unknown, declared?: Datatype): Tensor {
  if (typeof value !== 'object' || value === null) throw new Error(`${where} must be an object { data, shape, datatype }, got ${String(value)}`);
  const given = value as { data?: unknown; shape?: unknown; datatype?: unknown };
  const datatype = given.datatype ?? declared;
  if (!isDatatype(datatype)) throw new Error(`${where}: datatype must be a V2 datatype (FP32, INT64, BYTES, ...), got ${JSON.stringify(given.datatype)}`);
  if (declared && datatype !== declared) throw new Error(`${where} is ${datatype}, but the config declares ${declared}`);
  const shape = given.shape;
  if (!Array.isArray(shape) || !shape.every((dim) => Number.isInteger(dim) && dim >= 0)) {
    throw new Error(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  const values = given.data;
  let data: Tensor['data'];
  if (datatype === 'BYTES') {
    if (!Array.isArray(values)) throw new Error(`${where}: BYTES data must be an array of strings or Buffers`);
    data = values.map((element, index) => {
      if (typeof element === 'string') return Buffer.from(element, 'utf8');
      if (element instanceof Uint8Array) return Buffer.from(element.buffer, element.byteOffset, element.byteLength);
      throw new Error(`${where}: BYTES element ${index} is ${typeof element}, not a string or Buffer`);
    });
  } else if (Array.isArray(values)) {
    data = typedFromValues(where, datatype, values);
  } else if (ArrayBuffer.isView(values) && !(values instanceof DataView)) {
    const expected = typedArrayTypeOf(datatype);
    if (values.constructor !== expected) throw new Error(`${where}: ${datatype} data must be a ${expected.name} or an array, got a ${values.constructor.name}`);
    data = values as NumericArray;
  } else {
    throw new Error(`${where}: data must be a typed array or an array, got ${values === undefined ? 'nothing' : typeof values}`);
  }
  if (data.length !== elementCount(shape)) throw new Error(`${where} has ${data.length} elements, but its shape ${describeShape(shape)} holds ${elementCount(shape)}`);
  return { datatype, shape, data };
}

/** Numeric buffers of the tensors, handed over instead of copied (only those that are this thread's and not shared with another). */
export function transferable(tensors: Iterable<Tensor>): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const tensor of tensors) {
    if (tensor.datatype === 'BYTES') continue;
    const data = tensor.data as NumericArray;
    if (data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) buffers.add(data.buffer);
  }
  return [...buffers];
}

