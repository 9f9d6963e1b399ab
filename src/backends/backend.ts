/**
 * The small interface every execution engine implements: create an instance from a model file,
 * say what it takes and returns, run one batch, release.
 */
import type { Logger } from 'pino';
import type { Datatype } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import type { ModelConfig } from '../config/model-config.js';

/** A tensor as the model file declares it: full shape with the batch dimension, -1 where dynamic. */
export interface TensorSignature {
  name: string;
  datatype: Datatype;
  shape: number[];
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
}

export interface BackendInstance {
  readonly signature: ModelSignature;
  /** Threads this instance computes with, for cost accounting. */
  readonly threads: number;
  run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

export interface Backend {
  /** Triton's backend name, e.g. 'onnxruntime'. */
  readonly name: string;
  /** Triton platform names this backend answers for, e.g. 'onnxruntime_onnx'. */
  readonly platforms: readonly string[];
  readonly defaultModelFilename: string;
  createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance>;
}
