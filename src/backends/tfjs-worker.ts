/**
 * A worker thread that owns one TF.js graph model. TF.js keeps its engine (backend, kernels,
 * tensors) in module-global state, so each instance gets a thread of its own: instances never share
 * an engine, and a forward pass never blocks the server's event loop. It speaks the ONNX Runtime
 * worker's messages ('run' in, 'result' out; 'release' ends it), so WorkerThreadInstance drives it.
 */
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { decodeBytesElements, encodeBytesElements, type Datatype, type NumericArray } from '../core/datatype.js';
import { describeShape, type Tensor } from '../core/tensor.js';
import type { ModelSignature } from './backend.js';
import type { PackedBytesTensor, WorkerReply, WorkerRequest } from './onnx-runtime-worker.js';
import { readModelJson, readWeightShards, signatureOfModelJson, TFJS_DTYPE_OF, v2Name } from './tfjs-model-files.js';

/** What a TF.js worker is started with, as plain data. */
export interface TfjsWorkerSpec {
  modelPath: string;
  /** The TF.js backend the engine computes with; in Node both compute on this one thread (TF.js has no wasm threads there). */
  engine: 'wasm' | 'cpu';
}

type Tf = typeof import('@tensorflow/tfjs-core');
type TfTensor = import('@tensorflow/tfjs-core').Tensor;
type GraphModel = import('@tensorflow/tfjs-converter').GraphModel;

const DATATYPE_OF_DTYPE: Record<string, Datatype> = { float32: 'FP32', int32: 'INT32', bool: 'BOOL', string: 'BYTES' };

const port = parentPort!;
const post = (reply: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);

// TF.js's packages are CommonJS for Node; required, so the converter and the backend share this one tfjs-core.
const require = createRequire(import.meta.url);

async function startEngine(spec: TfjsWorkerSpec): Promise<Tf> {
  const tf = require('@tensorflow/tfjs-core') as Tf;
  // Production mode: no per-op debug checks, and no advice to install tfjs-node on the console.
  tf.enableProdMode();
  require(spec.engine === 'wasm' ? '@tensorflow/tfjs-backend-wasm' : '@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend(spec.engine))) throw new Error(`TF.js could not start its '${spec.engine}' backend`);
  await tf.ready();
  return tf;
}

async function loadModel(tf: Tf, modelPath: string): Promise<{ model: GraphModel; signature: ModelSignature; names: Map<string, string> }> {
  const { loadGraphModel } = require('@tensorflow/tfjs-converter') as typeof import('@tensorflow/tfjs-converter');
  const json = await readModelJson(modelPath);
  const signature = signatureOfModelJson(json, modelPath);
  // The IOHandler TF.js reads the model through: this file and its shards, nothing over HTTP.
  const handler = {
    load: () =>
      tf.io.getModelArtifactsForJSON(json as never, async (manifest) => {
        const specs = manifest.flatMap((group) => group.weights);
        return [specs, await readWeightShards(modelPath, json)];
      }),
  };
  const model = await loadGraphModel(handler);
  // Clients name tensors without ':0'; TF.js takes the signature's keys (or, without one, node names).
  const keys = [...Object.keys(json.userDefinedMetadata?.signature?.inputs ?? json.signature?.inputs ?? {}), ...Object.keys(json.userDefinedMetadata?.signature?.outputs ?? json.signature?.outputs ?? {})];
  const names = new Map(keys.map((key) => [v2Name(key), key]));
  return { model, signature, names };
}

/** A tensor from the server as TF.js takes it, checked against the model's signature. */
function toTfTensor(tf: Tf, name: string, tensor: Tensor | PackedBytesTensor, signature: ModelSignature): TfTensor {
  const declared = signature.inputs.find((input) => input.name === name);
  if (!declared) throw new Error(`input '${name}' is not an input of the model (its inputs: ${signature.inputs.map((input) => input.name).join(', ')})`);
  const fits = tensor.shape.length === declared.shape.length && declared.shape.every((dim, index) => dim === -1 || dim === tensor.shape[index]);
  if (tensor.datatype !== declared.datatype || !fits) {
    throw new Error(`input '${name}' expects ${declared.datatype} ${describeShape(declared.shape)}, got ${tensor.datatype} ${describeShape(tensor.shape)}`);
  }
  const dtype = TFJS_DTYPE_OF[tensor.datatype]!;
  if ('packed' in tensor) {
    const elements = decodeBytesElements(Buffer.from(tensor.packed.buffer, tensor.packed.byteOffset, tensor.packed.byteLength));
    if (!elements) throw new Error(`input '${name}' reached the worker thread malformed`);
    return tf.tensor(elements, tensor.shape, 'string');
  }
  return tf.tensor(tensor.data as Float32Array | Int32Array | Uint8Array, tensor.shape, dtype);
}

/** An output's contents in a buffer of its own (so it can be transferred), BYTES packed. */
async function fromTfTensor(name: string, output: TfTensor): Promise<Tensor | PackedBytesTensor> {
  const datatype = DATATYPE_OF_DTYPE[output.dtype];
  if (!datatype) throw new Error(`output '${name}' is TF.js ${output.dtype}, which the V2 protocol cannot carry`);
  if (datatype === 'BYTES') {
    const elements = (await output.bytes()) as Uint8Array[];
    const encoded = encodeBytesElements(elements.map((element) => Buffer.from(element.buffer, element.byteOffset, element.byteLength)));
    // A copy: a small Buffer is a slice of Node's shared pool, which must not be transferred.
    return { datatype, shape: [...output.shape], packed: new Uint8Array(encoded) };
  }
  // Always a copy: the cpu backend hands out its own arrays, which may be a weight or an input the next run reads.
  return { datatype, shape: [...output.shape], data: (output.dataSync() as NumericArray).slice() };
}

async function main(): Promise<void> {
  const spec = workerData as TfjsWorkerSpec;
  const tf = await startEngine(spec);
  const { model, signature, names } = await loadModel(tf, spec.modelPath);
  const tfName = (name: string) => names.get(name) ?? name;
  // Graphs with control flow or dynamic shapes (NonMaxSuppression, Where) only run asynchronously; learned on the first run that says so.
  let asynchronous = false;
  const execute = async (inputs: Record<string, TfTensor>, outputNames: string[]): Promise<TfTensor[]> => {
    if (!asynchronous) {
      try {
        return [model.execute(inputs, outputNames)].flat();
      } catch (error) {
        if (!/executeAsync/.test((error as Error).message)) throw error;
        asynchronous = true;
      }
    }
    return [await model.executeAsync(inputs, outputNames)].flat();
  };

  post({ type: 'ready', signature });
  // A request that cannot be read names no id to answer: exiting fails every request in flight, and a new worker starts.
  port.on('messageerror', () => process.exit(1));
  // Runs one at a time, in order: TF.js's engine is this thread's, and an asynchronous run must not interleave with the next.
  let turn: Promise<void> = Promise.resolve();
  port.on('message', (message: WorkerRequest) => {
    if (message.type === 'release') {
      void turn.then(() => {
        model.dispose();
        port.close();
      });
      return;
    }
    turn = turn.then(async () => {
      const tensors: TfTensor[] = [];
      try {
        const started = performance.now();
        for (const input of signature.inputs) {
          if (!(input.name in message.inputs)) throw new Error(`input '${input.name}' is missing (the model takes ${signature.inputs.map((known) => known.name).join(', ')})`);
        }
        const inputs: Record<string, TfTensor> = {};
        for (const name in message.inputs) tensors.push((inputs[tfName(name)] = toTfTensor(tf, name, message.inputs[name], signature)));
        const outputNames = message.outputNames.length > 0 ? message.outputNames : signature.outputs.map((output) => output.name);
        const results = await execute(inputs, outputNames.map(tfName));
        tensors.push(...results);
        const outputs: Record<string, Tensor | PackedBytesTensor> = {};
        for (const [index, name] of outputNames.entries()) outputs[name] = await fromTfTensor(name, results[index]);
        const computeNs = (performance.now() - started) * 1e6;
        const transfer = new Set<ArrayBuffer>();
        for (const name in outputs) {
          const output = outputs[name];
          transfer.add(('packed' in output ? output.packed : (output.data as NumericArray)).buffer as ArrayBuffer);
        }
        post({ type: 'result', id: message.id, outputs, computeNs }, [...transfer]);
      } catch (error) {
        post({ type: 'result', id: message.id, error: { message: (error as Error).message, stack: (error as Error).stack } });
      } finally {
        tf.dispose(tensors);
      }
    });
  });
}

main().catch((error: Error) => post({ type: 'failed', message: error.message, stack: error.stack }));
