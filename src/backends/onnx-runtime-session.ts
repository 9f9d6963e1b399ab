/**
 * One ONNX Runtime session, shared by instances on the JS thread and in worker threads so both
 * behave the same. It talks to onnxruntime-node's native binding directly: the binding's `run` is
 * synchronous, and the public `InferenceSession.run` only wraps it in a setImmediate hop, argument
 * checks and Tensor objects, which cost a tiny model more than its forward pass (measured: 17 µs
 * against 9 µs for Triton's add/sub model). The scheduler decides when a run may block the thread.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Binding } from 'onnxruntime-node/dist/binding.js';
import { BF16_UNSUPPORTED, bytesElements, countBytesElements, datatypeFromOnnx, onnxTypeOf, PackedBytes, type NumericArray } from '../core/datatype.js';
import { NereidError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { exposingTensors, readOnnxModel, type ExposedTensor } from '../onnx/onnx-model-file.js';
import type { ModelSignature, TensorSignature } from './backend.js';
import { engineLoadError, withoutEngineInternals } from './onnx-runtime-load-errors.js';
import type { SessionOptions } from './onnx-runtime-options.js';

/** Everything needed to open a session, as plain data so it can cross to a worker thread. */
export interface SessionSpec {
  modelPath: string;
  options: SessionOptions;
  /** Execution providers in preference order, 'cpu' last. */
  providers: string[];
  deviceId: number;
  /** Tensors inside the model to add to its outputs (the session then loads the model from memory, changed). */
  exposedOutputs?: ExposedTensor[];
}

type NativeBinding = typeof import('onnxruntime-node/dist/binding.js');

let nativeBinding: NativeBinding | undefined;

/** Loaded on the first session, so that importing this module (or the library) loads no engine. */
function native(): NativeBinding {
  if (!nativeBinding) {
    nativeBinding = createRequire(import.meta.url)('onnxruntime-node/dist/binding.js') as NativeBinding;
    nativeBinding.initOrt();
  }
  return nativeBinding;
}

/** The binding's element type numbers (ONNX TensorProto.DataType), as onnxruntime-node names them. */
const ONNX_TYPE_NAMES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
};

function signatureOf(metadata: readonly Binding.ValueMetadata[], what: string): TensorSignature[] {
  return metadata.map((value) => {
    if (!value.isTensor) throw new Error(`${what} '${value.name}' is not a tensor; only tensor inputs and outputs are supported`);
    const onnxType = ONNX_TYPE_NAMES[value.type] ?? `type ${value.type}`;
    const datatype = datatypeFromOnnx(onnxType);
    if (onnxType === 'bfloat16') throw new Error(`${what} '${value.name}' has ONNX type bfloat16: ${BF16_UNSUPPORTED}`);
    if (!datatype) throw new Error(`${what} '${value.name}' has ONNX type ${onnxType}, which the V2 protocol cannot carry`);
    return { name: value.name, datatype, shape: value.shape.map((dim) => (dim >= 0 ? dim : -1)) };
  });
}

/**
 * A BYTES tensor crossing threads: its elements length-prefixed in one transferred buffer. Cloning a
 * million small Buffers instead costs the sending thread seconds, and the receiving one as many.
 */
export interface PackedBytesTensor {
  datatype: 'BYTES';
  shape: number[];
  packed: Uint8Array;
}

/** Packed elements as the strings the binding takes, without a Buffer per element. */
function unpackStrings(name: string, packed: Uint8Array): string[] {
  const bytes = Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength);
  const count = countBytesElements(bytes);
  if (count < 0) throw new Error(`input '${name}' reached the worker thread malformed`);
  const strings: string[] = new Array(count);
  const cursor = new PackedBytes(bytes, count).cursor();
  for (let index = 0; index < count; index++) {
    cursor.next();
    strings[index] = bytes.toString('utf8', cursor.start, cursor.end);
  }
  return strings;
}

/** The binding's strings packed, in a buffer of their own (never a slice of Node's shared pool), so it can be transferred. */
function packStrings(strings: readonly string[]): Uint8Array {
  let total = 0;
  for (const string of strings) total += 4 + Buffer.byteLength(string, 'utf8');
  const out = Buffer.allocUnsafeSlow(total);
  let offset = 0;
  for (const string of strings) {
    const length = out.write(string, offset + 4, 'utf8');
    out.writeUInt32LE(length, offset);
    offset += 4 + length;
  }
  return out;
}

/** A tensor as the binding reads it. */
interface BindingTensor {
  type: string;
  dims: readonly number[];
  data: unknown;
  location: 'cpu';
}

export class OnnxSession {
  readonly signature: ModelSignature;
  private readonly fetchTemplate: readonly string[];

  private constructor(private readonly session: Binding.InferenceSession) {
    this.signature = { inputs: signatureOf(session.inputMetadata, 'input'), outputs: signatureOf(session.outputMetadata, 'output') };
    this.fetchTemplate = this.signature.outputs.map((output) => output.name);
  }

  /**
   * Opens the session with the requested providers; if one is missing, reports why and opens it on CPU. Asynchronous
   * for the day the pin on onnxruntime-node (~1.30.0) is lifted: from 1.31 its binding's loadModel returns a Promise
   * (1.30's throws), and a load failure left unawaited there is an unhandled rejection, which ends the process.
   */
  static async open(spec: SessionSpec, onFallback: (reason: string) => void): Promise<OnnxSession> {
    const { binding } = native();
    const exposed = spec.exposedOutputs?.length ? exposingTensors(readOnnxModel(readFileSync(spec.modelPath)), spec.exposedOutputs) : undefined;
    const load = async (providers: readonly string[]) => {
      const session = new binding.InferenceSession();
      const executionProviders = providers.map((name) => (name === 'cpu' ? name : { name, deviceId: spec.deviceId }));
      const options = { ...spec.options, executionProviders } as SessionOptions;
      const loaded: unknown = exposed ? session.loadModel(exposed.buffer as ArrayBuffer, exposed.byteOffset, exposed.byteLength, options) : session.loadModel(spec.modelPath, options);
      await loaded;
      return new OnnxSession(session);
    };
    try {
      return await load(spec.providers);
    } catch (error) {
      if (spec.providers.length === 1) throw engineLoadError(error, spec.modelPath);
      onFallback((error as Error).message);
    }
    try {
      return await load(['cpu']);
    } catch (error) {
      throw engineLoadError(error, spec.modelPath);
    }
  }

  /** One forward pass, on the calling thread. */
  run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Record<string, Tensor> {
    return this.runWith(
      inputs,
      outputNames,
      (tensor) => bytesElements((tensor as Tensor).data).map((element) => element.toString('utf8')),
      (strings) => strings.map((element) => Buffer.from(element, 'utf8')),
    ) as Record<string, Tensor>;
  }

  /** One forward pass whose BYTES come and go packed (see PackedBytesTensor): no Buffer per element on this thread. */
  runPacked(inputs: Record<string, Tensor | PackedBytesTensor>, outputNames: readonly string[]): Record<string, Tensor | PackedBytesTensor> {
    return this.runWith(
      inputs,
      outputNames,
      (tensor, name) => ('packed' in tensor ? unpackStrings(name, tensor.packed) : bytesElements(tensor.data).map((element) => element.toString('utf8'))),
      (strings) => packStrings(strings),
      true,
    );
  }

  /** The binding's run, BYTES converted to its strings by `toStrings` and back by `fromStrings` (packed when `packed`). */
  private runWith(
    inputs: Record<string, Tensor | PackedBytesTensor>,
    outputNames: readonly string[],
    toStrings: (tensor: Tensor | PackedBytesTensor, name: string) => string[],
    fromStrings: (strings: string[]) => Buffer[] | Uint8Array,
    packed = false,
  ): Record<string, Tensor | PackedBytesTensor> {
    const feeds: Record<string, BindingTensor> = {};
    for (const name in inputs) {
      const tensor = inputs[name];
      const data = tensor.datatype === 'BYTES' ? toStrings(tensor, name) : (tensor as Tensor).data;
      feeds[name] = { type: onnxTypeOf(tensor.datatype), dims: tensor.shape, data, location: 'cpu' };
    }
    const fetches: Record<string, null> = {};
    for (const name of outputNames.length ? outputNames : this.fetchTemplate) fetches[name] = null;
    const results = this.session.run(feeds as never, fetches, {}) as Record<string, { type: string; dims: readonly number[]; data: unknown }>;
    const outputs: Record<string, Tensor | PackedBytesTensor> = {};
    for (const name in fetches) {
      const result = results[name];
      const datatype = datatypeFromOnnx(result.type);
      if (!datatype) throw new Error(`output '${name}' has ONNX type ${result.type}, which the V2 protocol cannot carry`);
      const shape = [...result.dims];
      if (datatype !== 'BYTES') outputs[name] = { datatype, shape, data: result.data as NumericArray };
      else if (packed) outputs[name] = { datatype, shape, packed: fromStrings(result.data as string[]) as Uint8Array };
      else outputs[name] = { datatype, shape, data: fromStrings(result.data as string[]) as Buffer[] };
    }
    return outputs;
  }

  release(): void {
    this.session.dispose();
  }
}

/**
 * ONNX Runtime's words for inputs its graph cannot take, though they match the config (a width of
 * 0 that a convolution refuses, dimensions a reshape cannot meet, sizes whose down- and up-sampled
 * feature maps no longer line up to be added): the request's fault, answered as
 * INVALID_ARGUMENT with the engine's reason rather than as the server's failure.
 */
const INPUT_FAULT = /invalid input shape|got invalid dimensions|invalid rank for input|input dimension.*(invalid|mismatch)|the input tensor cannot be reshaped|attempting to broadcast an axis|indices element out of data bounds/i;

/**
 * A run's failure as the caller should see it: the request's fault when the engine says so (a shape the graph cannot
 * broadcast, a token id beyond an embedding table), else as thrown; without the C++ source locations ORT puts in it.
 */
export function runFailure(error: Error): Error {
  const message = withoutEngineInternals(error.message);
  if (!INPUT_FAULT.test(message)) return message === error.message ? error : new Error(message, { cause: error });
  return new NereidError('INVALID_ARGUMENT', `the model cannot run on these inputs: ${message}`, { cause: error });
}
