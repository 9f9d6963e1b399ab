/**
 * Tensors as a client holds them and as they travel: typed arrays (or plain arrays, converted to the
 * datatype's typed array), BYTES as Buffers or strings, FP16 given and returned as numbers. The
 * wire forms are the V2 protocol's: raw little-endian bytes for binary tensors (BYTES with 4-byte
 * length prefixes), JSON arrays otherwise.
 */
import { isUtf8 } from 'node:buffer';
import {
  allocateTypedArray,
  bytesOfTypedArray,
  decodeBytesElements,
  elementCount,
  encodeBytesElements,
  halfToNumber,
  isDatatype,
  numberToHalf,
  typedArrayFromBytes,
  typedArrayTypeOf,
  type Datatype,
  type NumericArray,
} from '../core/datatype.js';
import { invalidArgument } from '../core/errors.js';
import { checkDatatype, checkShape, tensorDataFromJson } from '../core/tensor.js';
import { floatListText } from '../protocol/v2-json.js';

/** What a client sends for one input. */
export interface ClientTensor {
  datatype: Datatype;
  shape: readonly number[];
  /** A typed array of the datatype (FP16: values as Float32Array or numbers), plain numbers/booleans/bigints, or, for BYTES, strings or Buffers. */
  data: NumericArray | readonly number[] | readonly boolean[] | readonly bigint[] | readonly (string | Buffer)[];
}

/** Bytes of a registered system shared memory region that hold a tensor (Triton's shared memory extension). */
export interface SharedMemoryTensor {
  region: string;
  byteSize: number;
  /** Bytes from the region's start; default 0. */
  offset?: number;
}

/** An input the server reads from a registered shared memory region instead of the request. */
export interface SharedMemoryInput {
  datatype: Datatype;
  shape: readonly number[];
  sharedMemory: SharedMemoryTensor;
}

export type ClientInput = ClientTensor | SharedMemoryInput;

/** What a client receives for one output. */
export interface OutputTensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  /** A typed array (FP16 as Float32Array values, BOOL as Uint8Array 0/1), or Buffers for BYTES; empty for an output written to shared memory. */
  data: NumericArray | Buffer[];
  /** Classification outputs (`classification` asked): "score:index[:label]" strings, decoded. */
  classes?: { score: number; index: number; label?: string }[];
  /** Where the server wrote this output, when it was asked for in shared memory (byteSize: the bytes written). */
  sharedMemory?: SharedMemoryTensor;
}

/** An output the server answered without data, having written it to a region: where, from its response parameters. */
export function outputInSharedMemory(name: string, datatype: string, shape: readonly (number | string)[], parameters: Record<string, unknown> | undefined): OutputTensor | undefined {
  const region = parameters?.shared_memory_region;
  if (typeof region !== 'string') return undefined;
  const type = checkedDatatype(datatype, name);
  const offset = Number(parameters?.shared_memory_offset ?? 0);
  return {
    name,
    datatype: type,
    shape: shape.map(Number),
    data: type === 'BYTES' ? [] : allocateTypedArray(type, 0),
    sharedMemory: { region, byteSize: Number(parameters?.shared_memory_byte_size ?? 0), ...(offset ? { offset } : {}) },
  };
}

/**
 * The outputs a request names: those asked for (all when none are), plus those asked for in shared
 * memory. `allNames` is consulted only when a per-output parameter needs every output named.
 */
export async function requestedOutputNames(
  options: { outputs?: readonly string[]; classification?: number; sharedMemoryOutputs?: Record<string, SharedMemoryTensor> },
  allNames: () => Promise<string[]>,
): Promise<string[] | undefined> {
  const inSharedMemory = Object.keys(options.sharedMemoryOutputs ?? {});
  if (options.outputs) return [...new Set([...options.outputs, ...inSharedMemory])];
  return options.classification || inSharedMemory.length ? allNames() : undefined;
}

/**
 * A numeric input's values as the datatype's typed array, refusing what would change on the way: a
 * typed array of another kind (its bytes would be read as the datatype's), and plain values the
 * server's JSON parser would refuse (out of range, not integers, not numbers), checked as it checks them.
 */
function numericData(name: string, tensor: ClientTensor): NumericArray {
  const datatype = tensor.datatype as Exclude<Datatype, 'BYTES'>;
  const data = tensor.data as ArrayLike<unknown>;
  if (ArrayBuffer.isView(data)) {
    const expected = datatype === 'FP16' ? Float32Array : typedArrayTypeOf(datatype);
    if (!(data instanceof expected)) {
      throw invalidArgument(`input '${name}': ${datatype} data must be a ${expected.name} (or a plain array), not ${(data as object).constructor.name}, whose bytes would be misread`);
    }
    return datatype === 'FP16' ? Uint16Array.from(data as Float32Array, numberToHalf) : (data as NumericArray);
  }
  // BOOL also takes 0 and 1, as the client always has.
  const values = datatype === 'BOOL' ? Array.from(data, (value) => (value === 0 || value === 1 ? value === 1 : value)) : data;
  return tensorDataFromJson(name, datatype, values, { nonFinite: true }) as NumericArray;
}

/**
 * An input as the caller built it, checked before anything is sent: its datatype (a lower-case 'fp32' is named with the
 * V2 one), its shape, and data that holds the shape's element count; the messages name the input.
 */
function checkedTensor(name: string, tensor: ClientTensor): void {
  checkDatatype(name, tensor.datatype);
  checkShape(name, tensor.shape);
  const data = tensor.data as ArrayLike<unknown> | undefined;
  if (data === null || typeof data !== 'object' || typeof data.length !== 'number') {
    throw invalidArgument(`input '${name}' needs 'data': a typed array or an array of ${tensor.datatype} values (strings or Buffers for BYTES)`);
  }
  const count = elementCount(tensor.shape);
  if (data.length !== count) throw invalidArgument(`input '${name}': a ${tensor.datatype} tensor of shape [${tensor.shape.join(', ')}] holds ${count} elements; ${data.length} ${data.length === 1 ? 'was' : 'were'} given`);
}

/** The raw little-endian bytes of an input, as binary tensors and gRPC's raw_input_contents carry them. */
export function tensorBytes(name: string, tensor: ClientTensor): Buffer {
  checkedTensor(name, tensor);
  if (tensor.datatype === 'BYTES') return encodeBytesElements((tensor.data as readonly (string | Buffer)[]).map((element) => (typeof element === 'string' ? Buffer.from(element) : element)));
  return bytesOfTypedArray(numericData(name, tensor));
}

/**
 * An input's data as a V2 JSON array: 64-bit integers written exactly, BYTES as strings. BYTES that are not UTF-8
 * text are refused: a JSON string cannot carry them unchanged.
 */
export function tensorJson(name: string, tensor: ClientTensor): string {
  checkedTensor(name, tensor);
  const { datatype, data } = tensor;
  if (datatype === 'BYTES') {
    const texts = (data as readonly (string | Buffer)[]).map((element, index) => {
      if (typeof element === 'string') return element;
      if (!isUtf8(element)) {
        throw invalidArgument(`input '${name}': BYTES element ${index} (${element.subarray(0, 16).toString('hex')}${element.length > 16 ? '…' : ''}) is not UTF-8 text, which JSON cannot carry unchanged; send it as binary data (binary: true, the default)`);
      }
      return element.toString('utf8');
    });
    return JSON.stringify(texts);
  }
  const values = numericData(name, tensor);
  if (datatype === 'BOOL') return JSON.stringify(Array.from(values as Uint8Array, Boolean));
  if (datatype === 'FP16') return floatListText(Array.from(values as Uint16Array, halfToNumber));
  // JSON.stringify cannot write a bigint, and a number beyond 2^53 would be rounded: each value is written as its digits
  // (NaN, Infinity and -Infinity by name, as Triton reads them; JSON.stringify would send null).
  return `[${Array.from(values as ArrayLike<number | bigint>, (value) => String(value)).join(',')}]`;
}

/** An output's data from its raw bytes. */
export function outputFromBytes(name: string, datatype: string, shape: readonly (number | string)[], bytes: Buffer): OutputTensor {
  const type = checkedDatatype(datatype, name);
  const dims = shape.map(Number);
  if (type === 'BYTES') {
    const elements = decodeBytesElements(bytes);
    if (!elements) throw new Error(`output '${name}': its BYTES data is not a sequence of length-prefixed elements`);
    return { name, datatype: type, shape: dims, data: elements };
  }
  const copy = Buffer.from(bytes); // the response buffer is shared; the tensor owns its data
  const array = typedArrayFromBytes(type, copy);
  return { name, datatype: type, shape: dims, data: type === 'FP16' ? Float32Array.from(array as Uint16Array, halfToNumber) : array };
}

/** An output's data from a V2 JSON array. */
export function outputFromJson(name: string, datatype: string, shape: readonly number[], values: readonly unknown[]): OutputTensor {
  const type = checkedDatatype(datatype, name);
  if (type === 'BYTES') return { name, datatype: type, shape: [...shape], data: values.map((value) => Buffer.from(String(value))) };
  if (type === 'FP16') return { name, datatype: type, shape: [...shape], data: Float32Array.from(values as number[]) };
  const array = allocateTypedArray(type, values.length);
  const big = type === 'INT64' || type === 'UINT64';
  values.forEach((value, index) => ((array as unknown as (number | bigint)[])[index] = big ? BigInt(value as number | string) : Number(value)));
  return { name, datatype: type, shape: [...shape], data: array };
}

/** Classification strings ("score:index:label") as objects, when an output carries them. */
export function withClasses(output: OutputTensor): OutputTensor {
  if (output.datatype !== 'BYTES') return output;
  const classes = (output.data as Buffer[]).map((element) => {
    const [score, index, ...label] = element.toString().split(':');
    return { score: Number(score), index: Number(index), ...(label.length ? { label: label.join(':') } : {}) };
  });
  return classes.every((entry) => Number.isFinite(entry.score) && Number.isInteger(entry.index)) ? { ...output, classes } : output;
}

function checkedDatatype(datatype: string, name: string): Datatype {
  if (!isDatatype(datatype)) throw new Error(`output '${name}' has datatype '${datatype}', which is not a V2 datatype`);
  return datatype;
}

/**
 * The names of a model's outputs, asked of the server once per model and version: classification is
 * asked per output, so a request for it that names no outputs asks for every output by name.
 */
export class OutputNamesCache {
  private readonly byModel = new Map<string, Promise<string[]>>();

  namesOf(model: string, version: string | undefined, metadata: () => Promise<{ outputs: unknown[] }>): Promise<string[]> {
    const key = `${model}\u0000${version ?? ''}`;
    let names = this.byModel.get(key);
    if (!names) {
      names = metadata().then(({ outputs }) => outputs.map((output) => (output as { name: string }).name));
      // A failed lookup (the model not loaded yet, say) is asked again next time.
      names.catch(() => this.byModel.delete(key));
      this.byModel.set(key, names);
    }
    return names;
  }
}
