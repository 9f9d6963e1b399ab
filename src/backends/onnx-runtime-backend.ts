/**
 * ONNX Runtime as a backend: one session per instance, on the JS thread for small models and in a
 * worker thread for large ones.
 */
import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { initializerBackedInputs, onnxFileFacts, readOnnxModel } from '../onnx/onnx-model-file.js';
import { datatypeOfConfig, type ModelConfig } from '../config/model-config.js';
import type { Datatype } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature, RunOutputs, TensorSignature } from './backend.js';
import { computeThreads, executionProviders, ONNX_RUNTIME_TUNING_PARAMETERS, onnxRuntimeParameters, parametersWithoutEffect, sessionOptionsOf } from './onnx-runtime-options.js';
import { OnnxSession, runFailure, type SessionSpec } from './onnx-runtime-session.js';
import { describeInWorker, WorkerThreadInstance } from './onnx-runtime-worker-instance.js';

/**
 * One session on the JS thread: no hand-off, so the cheapest for small models, but the event loop
 * waits while it computes. It answers synchronously; the scheduler calls it from its own turn of
 * the event loop, after the requests that arrived together have joined the batch.
 */
class MainThreadInstance implements BackendInstance {
  constructor(
    private readonly session: OnnxSession,
    readonly threads: number,
  ) {}

  run(inputs: Record<string, Tensor>, outputNames: readonly string[]): RunOutputs {
    try {
      return this.session.run(inputs, outputNames);
    } catch (error) {
      throw runFailure(error as Error);
    }
  }

  async release(): Promise<void> {
    this.session.release();
  }
}

/**
 * Models at least this large run in worker threads unless the config says otherwise: the 0.6 MB
 * direction classifier (about 0.7 ms a row here) already serves more in workers than on the JS
 * thread (docs/performance.md); tiny models cost less than a hand-off.
 */
const WORKER_THREAD_MIN_MODEL_BYTES = 256 * 1024;

/**
 * Where an instance's forward pass runs. ONNX Runtime computes synchronously on the calling thread,
 * so on the JS thread a 10 ms model stalls every connection for 10 ms; in a worker the event loop
 * keeps parsing and answering while it computes, and several instances compute at once. Tiny
 * models are faster in place: the hand-off costs more than their forward pass. A model that takes
 * or gives BYTES goes to a worker whatever its size: the binding turns each element into a JS
 * string and back (about 2 µs an element), which for a request of a million elements would hold
 * the event loop for seconds.
 */
async function executionThread(modelPath: string, chosen: 'auto' | 'main' | 'worker', datatypes: readonly Datatype[]): Promise<'main' | 'worker'> {
  if (chosen !== 'auto') return chosen;
  if (datatypes.includes('BYTES')) return 'worker';
  return (await isLargeModel(modelPath)) ? 'worker' : 'main';
}

/**
 * Whether the model's weights reach WORKER_THREAD_MIN_MODEL_BYTES: the file's size, and where it
 * keeps its initializers in files beside it (ONNX external data: a model.onnx of a few hundred bytes
 * and a model.onnx.data of hundreds of MB), theirs too. Only a small file is read for their names.
 */
async function isLargeModel(modelPath: string): Promise<boolean> {
  const size = (await stat(modelPath)).size;
  if (size >= WORKER_THREAD_MIN_MODEL_BYTES) return true;
  const files = attempt(() => onnxFileFacts(readFileSync(modelPath)).externalDataFiles) ?? [];
  const sizes = await Promise.all(files.map((file) => stat(resolve(dirname(modelPath), file)).then((found) => found.size, () => 0)));
  return sizes.reduce((total, each) => total + each, size) >= WORKER_THREAD_MIN_MODEL_BYTES;
}

/** What `read` returns, or undefined if it throws. */
function attempt<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

const signatureDatatypes = (signature: ModelSignature) => [...signature.inputs, ...signature.outputs].map((tensor) => tensor.datatype);
const configDatatypes = (config: ModelConfig) => [...config.input, ...config.output].map((tensor) => datatypeOfConfig(tensor));

/** The backend's name in a model config (`backend: "onnxruntime"`), which tools that rewrite ONNX files check for. */
export const ONNX_RUNTIME_BACKEND = 'onnxruntime';

export class OnnxRuntimeBackend implements Backend {
  readonly name = ONNX_RUNTIME_BACKEND;
  readonly platforms = ['onnxruntime_onnx'] as const;
  readonly defaultModelFilename = 'model.onnx';
  readonly modelFileInFolder = 'model.onnx';
  /** onnxruntime-node passes string tensors through JS strings, which end at a 0 byte and replace invalid UTF-8. */
  readonly bytesAsText = true;
  /** Threads and memory reuse; the graph optimisation level and the execution providers can change results in the last bits, so they are not here. */
  readonly tuningParameters = ONNX_RUNTIME_TUNING_PARAMETERS;

  checkConfig(config: ModelConfig): void {
    onnxRuntimeParameters(config);
  }

  parametersWithoutEffect(config: ModelConfig): string[] {
    return parametersWithoutEffect(config);
  }

  instanceThreads(config: ModelConfig, planned: number): number {
    return onnxRuntimeParameters(config).intra_op_thread_count || planned;
  }

  /**
   * One single-threaded instance per core for a model that runs in worker threads: it computes more
   * per core-second than one instance spread over every core (no spin-waiting, no operator waiting
   * for a thread the server's own I/O has taken), and instances never wait for each other. One
   * single-threaded instance for a model small enough for the JS thread: a pool thread would only
   * spin between its short runs, on a core the server's I/O and its clients need.
   */
  async defaultInstances(modelPath: string, config: ModelConfig, cores: number, signature: ModelSignature): Promise<{ count: number; threadsPerInstance: number }> {
    const thread = await executionThread(modelPath, onnxRuntimeParameters(config).execution_thread, signatureDatatypes(signature));
    return { count: thread === 'worker' ? cores : 1, threadsPerInstance: 1 };
  }

  /**
   * Opens the model without optimising it, only to read its inputs and outputs: a large one in a
   * worker thread, since opening reads and parses the whole file and the server must go on
   * answering meanwhile; a small one in place, quicker than starting a thread.
   */
  async describe(modelPath: string): Promise<ModelSignature> {
    const spec: SessionSpec = {
      modelPath,
      options: { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 },
      providers: ['cpu'],
      deviceId: 0,
    };
    const signature = await this.sessionSignature(spec);
    const bytes = await readFile(modelPath);
    // A model Nereid's own reader cannot carry (external data) still serves; it just declares no defaulted inputs.
    const backed = attempt(() => initializerBackedInputs(readOnnxModel(bytes))) ?? [];
    const defaulted = backed.filter((input) => !signature.inputs.some((known) => known.name === input.name));
    // onnxruntime reports a tensor without a shape (rank unknown) as [], as it does a scalar; the file tells them apart.
    const unknownRank = attempt(() => onnxFileFacts(bytes).unknownRank) ?? { inputs: [], outputs: [] };
    const marked = (tensors: TensorSignature[], shapeless: readonly string[]) =>
      tensors.map((tensor) => (shapeless.includes(tensor.name) ? { ...tensor, rankUnknown: true } : tensor));
    return {
      inputs: [...marked(signature.inputs, unknownRank.inputs), ...defaulted.map((input) => ({ ...input, defaulted: true }))],
      outputs: marked(signature.outputs, unknownRank.outputs),
      inputsRequired: true,
    };
  }

  private async sessionSignature(spec: SessionSpec): Promise<ModelSignature> {
    if (await isLargeModel(spec.modelPath)) return describeInWorker(spec);
    const session = await OnnxSession.open(spec, () => undefined);
    try {
      return session.signature;
    } finally {
      session.release();
    }
  }

  async createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance> {
    const parameters = onnxRuntimeParameters(config);
    const spec: SessionSpec = {
      modelPath,
      options: sessionOptionsOf(parameters, options),
      providers: executionProviders(parameters, options.kind),
      deviceId: options.deviceId,
      exposedOutputs: options.exposedOutputs ? [...options.exposedOutputs] : undefined,
    };
    const threads = computeThreads(spec.options);
    const onFallback = (reason: string) =>
      options.logger.warn(
        { requested: spec.providers, reason },
        `execution providers ${spec.providers.join(',')} unavailable for instance ${options.index}; falling back to CPU`,
      );
    const datatypes = options.signature ? signatureDatatypes(options.signature) : configDatatypes(config);
    if ((await executionThread(modelPath, parameters.execution_thread, datatypes)) === 'worker') {
      return WorkerThreadInstance.start(spec, threads, onFallback);
    }
    return new MainThreadInstance(await OnnxSession.open(spec, onFallback), threads);
  }
}
