/**
 * The small interface every execution engine implements: say what a model file takes and returns,
 * create an instance from it, run one batch, release.
 */
import type { Logger } from 'pino';
import type { ModelConfig } from '../config/model-config.js';
import type { Datatype } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';

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
  /** The engine carries BYTES elements only as text: each must be valid UTF-8 without a 0 byte, or it would arrive changed. */
  readonly bytesAsText?: boolean;
  /** What the model file declares, read before any instance exists, so the repository can complete the config from it. */
  describe(modelPath: string, config: ModelConfig): Promise<ModelSignature>;
  /** Checks the backend's own settings in the config (its parameters), so a mistake fails the load before any instance starts. */
  checkConfig?(config: ModelConfig): void;
  /**
   * How many instances a model gets when its config names no instance_group, on a machine with
   * `cores` cores; the cores are split evenly between them. Default: one instance using them all.
   */
  defaultInstanceCount?(modelPath: string, config: ModelConfig, cores: number): Promise<number>;
  createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance>;
}
