/**
 * The small interface every execution engine implements: say what a model file takes and returns,
 * create an instance from it, run one batch, release.
 */
import type { Logger } from 'pino';
import type { ModelConfig } from '../config/model-config.js';
import type { Datatype } from '../core/datatype.js';
import type { InferenceRequest, InferenceResponse, Parameters, RequestContext } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { ExposedTensor } from '../onnx/onnx-model-file.js';

/** A tensor as the model file declares it: full shape with the batch dimension, -1 where dynamic. */
export interface TensorSignature {
  name: string;
  datatype: Datatype;
  shape: number[];
  /** An input the model gives a default value (an ONNX initializer): it may be left out, and the engine does not take another. */
  defaulted?: boolean;
  /**
   * The model file gives the tensor no shape at all, so any rank may come (`shape` is then [] and means
   * nothing): it is no scalar, a config's dims for it are taken as they are, and none are guessed for it.
   */
  rankUnknown?: boolean;
}

export interface ModelSignature {
  inputs: TensorSignature[];
  outputs: TensorSignature[];
  /**
   * The engine runs only when every input it lists is fed, but for those `defaulted` (an ONNX graph: a missing
   * input fails the run), so a config may not declare another of them `optional`. Unset where the config is the
   * declaration (a JavaScript handler decides for itself what it does without an input).
   */
  inputsRequired?: boolean;
}

export interface InstanceOptions {
  /** The model version the instance serves, for names in its messages. */
  version?: string;
  /** Position among the model's instances; used in names and to spread devices. */
  index: number;
  kind: 'CPU' | 'GPU';
  deviceId: number;
  /** Threads one forward pass may use; chosen so that all instances together fit the machine's cores. */
  intraOpThreads: number;
  interOpThreads: number;
  logger: Logger;
  /** Tensors inside the model a run may also fetch by name (what a monitor reads), besides the model's outputs. */
  exposedOutputs?: readonly ExposedTensor[];
  /** How code the instance runs calls another model (a handler's context.infer): the server's inference path, given from above. */
  callModel?: ModelCall;
  /** The labels of the outputs that name a label_filename, by output name (a handler decodes with them). */
  labels?: ReadonlyMap<string, readonly string[]>;
  /** What describe() found in the model: its own tensors, where the config may show the client's (an image input as BYTES). */
  signature?: ModelSignature;
}

/** One inference request through the server's own path, as an ensemble step or a handler's call to another model is sent. */
export type ModelCall = (request: InferenceRequest, context: RequestContext) => Promise<InferenceResponse>;

/** One request of a batch, as an instance that answers each request itself (runRequests) receives it. */
export interface BatchRequest {
  inputs: Record<string, Tensor>;
  outputNames: readonly string[];
  parameters?: Parameters;
  /** What travelled beside the request (request id, trace parent, deadline, cancel signal), for calls made on its behalf. */
  context?: RequestContext;
}

/** One answer per request of a batch, in order: its outputs, or the error that fails that request alone. */
export interface RequestAnswers {
  answers: (Record<string, Tensor> | Error)[];
  /** How long the engine itself computed the batch, as COMPUTE_NS says for run(). */
  computeNs?: number;
  /** Of computeNs, the time spent waiting on the models the batch called (a handler's context.infer): no core of its own. */
  awaitedNs?: number;
  /** Core-seconds the models the batch called (a handler's context.infer) computed for it: part of its cost. */
  calledCoreSeconds?: number;
}

/**
 * Outputs of a run. An instance that knows how long the engine itself computed (apart from handing
 * the batch over) puts it under this key; the scheduler then times compute_infer and learns batch
 * costs by it.
 */
export const COMPUTE_NS: unique symbol = Symbol('computeNs');

export type RunOutputs = Record<string, Tensor> & { [COMPUTE_NS]?: number };

export interface RunOptions {
  /** The input buffers are the caller's to give away (a batch it joined): the instance may take them instead of copying. */
  inputsOwned?: boolean;
}

export interface BackendInstance {
  /** Threads this instance computes with, for cost accounting. */
  readonly threads: number;
  /**
   * Batches the instance takes at once (default 1). One that queues the next batch and starts it
   * the moment the current one ends (a worker thread) takes 2, so it never waits for the scheduler
   * between batches.
   */
  readonly concurrency?: number;
  /**
   * Runs one batch. An engine that computes on the calling thread may answer synchronously (and
   * throw synchronously): the scheduler then answers the batch at once, with no promise between.
   */
  run(inputs: Record<string, Tensor>, outputNames: readonly string[], options?: RunOptions): RunOutputs | Promise<RunOutputs>;
  /**
   * Runs a batch whose requests stay apart (a handler that answers each request itself, and may
   * fail one alone). When an instance has it, the scheduler hands batches over this way instead of
   * joining their rows, and requests whose rows differ in shape may share a batch.
   */
  runRequests?(requests: readonly BatchRequest[]): Promise<RequestAnswers>;
  release(): Promise<void>;
}

export interface Backend {
  /** Triton's backend name, e.g. 'onnxruntime'. */
  readonly name: string;
  /** Triton platform names this backend answers for, e.g. 'onnxruntime_onnx'. */
  readonly platforms: readonly string[];
  readonly defaultModelFilename: string;
  /** File names a version folder may hold the model under, tried in order when the config names none (default: defaultModelFilename). */
  readonly modelFilenames?: readonly string[];
  /**
   * The model file is code the server runs (a handler): such models load only when the server
   * allows code models (--allow-code-models), and only from files inside their version folder.
   */
  readonly runsRepositoryCode?: boolean;
  /**
   * The backend runs code that ships with the server, picked by the config from the backend's own
   * table: the file it runs, instead of a model file in the version folder (which then holds none).
   * Throws when the config names nothing in the table. Such instances serve only that code's model,
   * so they keep the instance contract over it (backendInstanceContract) but cannot run the engine
   * suite's generated models (backendInstanceConformance).
   */
  builtinModelPath?(config: ModelConfig): string;
  /** Models the model's code calls, which the repository loads before it (as it loads an ensemble's steps). */
  stepModels?(config: ModelConfig): string[];
  /** The engine carries BYTES elements only as text: each must be valid UTF-8 without a 0 byte, or it would arrive changed. */
  readonly bytesAsText?: boolean;
  /** What the model file declares, read before any instance exists, so the repository can complete the config from it. */
  describe(modelPath: string, config: ModelConfig): Promise<ModelSignature>;
  /** Config parameters that change only how fast the engine runs, never what it answers (thread counts, say). */
  readonly tuningParameters?: readonly string[];
  /** Checks the backend's own settings in the config (its parameters), so a mistake fails the load before any instance starts. */
  checkConfig?(config: ModelConfig): void;
  /**
   * Where the model file names a folder, the file inside it that is the model: Triton's ONNX Runtime layout for a model
   * that keeps its weights in external data files (`1/model.onnx/model.onnx` beside them).
   */
  readonly modelFileInFolder?: string;
  /** Parameters the config sets that Triton's backend of this kind reads and this one does not: the load says so. */
  parametersWithoutEffect?(config: ModelConfig): string[];
  /**
   * The instances a model gets when its config names no instance_group, on a machine with `cores`
   * cores, and the threads each computes with (`signature`: what describe() found). Default: one
   * instance using every core.
   */
  defaultInstances?(modelPath: string, config: ModelConfig, cores: number, signature: ModelSignature): Promise<{ count: number; threadsPerInstance: number }>;
  /**
   * The threads an instance of `config` computes with when its plan gives it `planned`: what tells two plans apart when
   * a config's instances change (see VersionLoadOptions.serving). Default: `planned`; a backend whose instances have one
   * thread of their own whatever the plan says answers 1.
   */
  instanceThreads?(config: ModelConfig, planned: number): number;
  createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance>;
}
