/**
 * The small interface every execution engine implements: say what a model file takes and returns,
 * create an instance from it, run one batch, release.
 */
import type { Logger } from 'pino';
import type { ModelConfig } from '../config/model-config.js';
import type { Datatype } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import type { ExposedTensor } from '../onnx/onnx-model-file.js';

/** A tensor as the model file declares it: full shape with the batch dimension, -1 where dynamic. */
export interface TensorSignature {
  name: string;
  datatype: Datatype;
  shape: number[];
  /** An input the model gives a default value (an ONNX initializer): it may be left out, and the engine does not take another. */
  defaulted?: boolean;
}

export interface ModelSignature {
  inputs: TensorSignature[];
  outputs: TensorSignature[];
}

export interface InstanceOptions {
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
  release(): Promise<void>;
}

export interface Backend {
  /** Triton's backend name, e.g. 'onnxruntime'. */
  readonly name: string;
  /** Triton platform names this backend answers for, e.g. 'onnxruntime_onnx'. */
  readonly platforms: readonly string[];
  readonly defaultModelFilename: string;
  /** The engine carries BYTES elements only as text: each must be valid UTF-8 without a 0 byte, or it would arrive changed. */
  readonly bytesAsText?: boolean;
  /** What the model file declares, read before any instance exists, so the repository can complete the config from it. */
  describe(modelPath: string, config: ModelConfig): Promise<ModelSignature>;
  /** Config parameters that change only how fast the engine runs, never what it answers (thread counts, say). */
  readonly tuningParameters?: readonly string[];
  /** Checks the backend's own settings in the config (its parameters), so a mistake fails the load before any instance starts. */
  checkConfig?(config: ModelConfig): void;
  /**
   * The instances a model gets when its config names no instance_group, on a machine with `cores`
   * cores, and the threads each computes with. Default: one instance using every core.
   */
  defaultInstances?(modelPath: string, config: ModelConfig, cores: number): Promise<{ count: number; threadsPerInstance: number }>;
  createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance>;
}
