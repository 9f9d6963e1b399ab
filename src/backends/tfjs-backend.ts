/**
 * TF.js as a backend (backend "tfjs"): graph models (model.json and its weight shards, as
 * tensorflowjs_converter writes them) served by TF.js's WebAssembly or plain-JS backend, pure npm
 * packages with nothing native to download. Each instance runs in a worker thread of its own.
 */
import { z } from 'zod';
import { declaredParameters, parameterStrings, type ModelConfig } from '../config/model-config.js';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature } from './backend.js';
import { WorkerThreadInstance } from './onnx-runtime-worker-instance.js';
import { siblingWorkerEntry } from './worker-entry.js';
import { readModelJson, signatureOfModelJson } from './tfjs-model-files.js';
import type { TfjsWorkerSpec } from './tfjs-worker.js';

/** The backend's settings in a config's parameters; the defaults live here. */
export const tfjsParametersSchema = z.object({
  /**
   * The TF.js backend that computes: 'wasm' (XNNPACK in WebAssembly, several times faster on
   * convolutions) or 'cpu' (plain JavaScript kernels, which cover a few ops wasm lacks).
   */
  tfjs_backend: z.enum(['wasm', 'cpu'], { error: (issue) => `must be 'wasm' or 'cpu', got '${String(issue.input)}'` }).default('wasm'),
});

export type TfjsParameters = z.output<typeof tfjsParametersSchema>;

export const tfjsParameters = (config: ModelConfig): TfjsParameters => declaredParameters(tfjsParametersSchema, parameterStrings(config));

const TFJS_WORKER = siblingWorkerEntry('tfjs-worker');

export class TfjsBackend implements Backend {
  readonly name = 'tfjs';
  readonly platforms = [] as const;
  readonly defaultModelFilename = 'model.json';

  checkConfig(config: ModelConfig): void {
    tfjsParameters(config);
  }

  /** Read from model.json alone, without starting TF.js. */
  async describe(modelPath: string): Promise<ModelSignature> {
    return signatureOfModelJson(await readModelJson(modelPath), modelPath);
  }

  /** An instance computes on its worker's one thread, whatever its plan. */
  instanceThreads(): number {
    return 1;
  }

  /** One single-threaded instance per core: each computes in its own worker, and they never wait for each other. */
  async defaultInstances(_modelPath: string, _config: ModelConfig, cores: number): Promise<{ count: number; threadsPerInstance: number }> {
    return { count: cores, threadsPerInstance: 1 };
  }

  async createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance> {
    const data: TfjsWorkerSpec = { modelPath, engine: tfjsParameters(config).tfjs_backend };
    // TF.js computes on its worker's one thread in Node (its wasm backend has threads only in browsers).
    return WorkerThreadInstance.start({ entry: TFJS_WORKER, data }, 1, (reason) => options.logger.warn(reason));
  }
}
