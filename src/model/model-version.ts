/**
 * One loaded version of a model: its completed config, its instances and the scheduler that feeds
 * them. Requests are validated here, once, for every front end.
 */
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature, TensorSignature } from '../backends/backend.js';
import { configTypeOf } from '../core/datatype.js';
import { asNereidError, NereidError } from '../core/errors.js';
import type { InferenceRequest, InferenceResponse, InferOutput } from '../core/inference.js';
import { describeShape } from '../core/tensor.js';
import {
  datatypeOfConfig,
  parseModelConfig,
  type CompletedModelConfig,
  type ModelConfig,
  type QueuePolicyConfig,
} from '../repository/model-config.js';
import { DynamicBatcher, UNBATCHED_POLICY, type BatcherPolicy, type QueuePolicy } from '../scheduler/dynamic-batcher.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { classify } from './classification.js';
import { checkRequestedOutputs, expectedShape, prepareInputs } from './input-validation.js';
import { ModelStatistics } from './model-statistics.js';

export type ModelState = 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE';

export interface ModelVersionOptions {
  name: string;
  version: string;
  modelPath: string;
  config: ModelConfig;
  backend: Backend;
  logger: Logger;
  /** max_batch_size given to an ONNX model whose config leaves it out but whose first dimension is dynamic. */
  defaultMaxBatchSize: number;
  /** Requests that may wait for an instance before new ones are refused. */
  maxQueueSize: number;
  /** Reads a labels file named by the config, relative to the model's folder. */
  readLabels: (filename: string) => Promise<string[]>;
}

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

function dimsFromSignature(signature: TensorSignature, batched: boolean): number[] {
  return batched ? signature.shape.slice(1) : [...signature.shape];
}

/**
 * Fills what the config leaves out from the model file (Triton's auto-complete), then checks that
 * what the config does say agrees with the file, so a mismatch is reported at load, not per request.
 */
export function completeConfig(
  config: ModelConfig,
  signature: ModelSignature,
  defaults: { name: string; backend: Backend; defaultMaxBatchSize: number },
): CompletedModelConfig {
  const all = [...signature.inputs, ...signature.outputs];
  const firstDimDynamic = all.length > 0 && all.every((tensor) => tensor.shape.length > 0 && tensor.shape[0] === -1);
  const maxBatchSize = config.max_batch_size ?? (firstDimDynamic ? defaults.defaultMaxBatchSize : 0);
  if (config.max_batch_size === undefined) {
    // The schema's cross-field checks (dynamic_batching needs batching, preferred sizes fit) now have a max_batch_size to check.
    parseModelConfig({ ...config, max_batch_size: maxBatchSize }, `config completed with max_batch_size ${maxBatchSize}`);
  }
  const batched = maxBatchSize > 0;
  if (batched && !firstDimDynamic) {
    const fixed = all.find((tensor) => tensor.shape[0] !== -1)!;
    throw new Error(
      `max_batch_size ${maxBatchSize} needs a dynamic first dimension on every input and output, but '${fixed.name}' is ${describeShape(fixed.shape)}; set max_batch_size: 0`,
    );
  }
  const complete = <T extends { name: string; data_type: string; dims: number[]; reshape?: { shape: number[] } }>(
    kind: 'input' | 'output',
    declared: T[],
    fromModel: TensorSignature[],
  ): T[] => {
    for (const tensor of declared) {
      const actual = fromModel.find((candidate) => candidate.name === tensor.name);
      if (!actual) {
        throw new Error(`config ${kind} '${tensor.name}' is not in the model (it has ${fromModel.map((t) => t.name).join(', ')})`);
      }
      if (datatypeOfConfig(tensor) !== actual.datatype) {
        throw new Error(`config ${kind} '${tensor.name}' says ${tensor.data_type} but the model has ${configTypeOf(actual.datatype)}`);
      }
      const modelDims = dimsFromSignature(actual, batched);
      const configDims = tensor.reshape ? tensor.reshape.shape : tensor.dims;
      const compatible =
        configDims.length === modelDims.length &&
        configDims.every((dim, index) => modelDims[index] === -1 || dim === modelDims[index]);
      if (!compatible) {
        throw new Error(
          `config ${kind} '${tensor.name}' has dims ${describeShape(configDims)} but the model has ${describeShape(modelDims)}${batched ? ' after the batch dimension' : ''}`,
        );
      }
    }
    const added = fromModel
      .filter((tensor) => !declared.some((d) => d.name === tensor.name))
      .map((tensor) => ({ name: tensor.name, data_type: configTypeOf(tensor.datatype), dims: dimsFromSignature(tensor, batched) }) as unknown as T);
    if (kind === 'input') added.forEach((tensor) => Object.assign(tensor, { optional: false }));
    return [...declared, ...added];
  };
  return {
    ...config,
    name: defaults.name,
    max_batch_size: maxBatchSize,
    backend: config.backend ?? defaults.backend.name,
    platform: config.platform ?? defaults.backend.platforms[0] ?? defaults.backend.name,
    input: complete('input', config.input, signature.inputs),
    output: complete('output', config.output, signature.outputs),
  };
}

function queuePolicyOf(config: QueuePolicyConfig): QueuePolicy {
  return {
    maxQueueSize: config.max_queue_size,
    defaultTimeoutMicroseconds: config.default_timeout_microseconds,
    timeoutAction: config.timeout_action,
    allowTimeoutOverride: config.allow_timeout_override,
  };
}

/** Triton's dynamic_batching block as the scheduler's policy; without it each request runs on its own. */
export function batcherPolicyOf(config: CompletedModelConfig, maxQueuedRequests: number): BatcherPolicy {
  const batching = config.dynamic_batching;
  if (!batching || config.max_batch_size === 0) return { ...UNBATCHED_POLICY, maxQueuedRequests };
  return {
    maxBatchSize: config.max_batch_size,
    preferredBatchSizes: batching.preferred_batch_size,
    maxQueueDelayMicroseconds: batching.max_queue_delay_microseconds,
    preserveOrdering: batching.preserve_ordering,
    priorityLevels: batching.priority_levels,
    defaultPriorityLevel: batching.default_priority_level,
    defaultQueuePolicy: queuePolicyOf(batching.default_queue_policy),
    priorityQueuePolicies: new Map(
      Object.entries(batching.priority_queue_policy ?? {}).map(([level, policy]) => [Number(level), queuePolicyOf(policy)]),
    ),
    maxQueuedRequests,
  };
}

/** Splits the machine's cores among a model's instances so they do not oversubscribe it. */
function threadsPerInstance(instanceCount: number): number {
  return Math.max(1, Math.floor(availableParallelism() / instanceCount));
}

function numericParameter(request: InferenceRequest, key: string): number | undefined {
  const value = request.parameters?.[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number') throw new NereidError('INVALID_ARGUMENT', `request parameter '${key}' must be a number, got ${JSON.stringify(value)}`);
  return value;
}

export class ModelVersion {
  state: ModelState = 'READY';
  reason = '';

  private constructor(
    readonly name: string,
    readonly version: string,
    readonly config: CompletedModelConfig,
    private readonly instances: BackendInstance[],
    private readonly scheduler: Scheduler,
    private readonly labels: Map<string, string[]>,
    readonly statistics: ModelStatistics,
  ) {}

  static async load(options: ModelVersionOptions): Promise<ModelVersion> {
    const { config, backend, logger } = options;
    const groups = config.instance_group.length > 0 ? config.instance_group : [{ kind: 'KIND_AUTO' as const, count: 1 }];
    const instanceCount = groups.reduce((sum, group) => sum + group.count, 0);
    const threads = threadsPerInstance(instanceCount);
    let index = 0;
    const instanceOptions: InstanceOptions[] = groups.flatMap((group) =>
      Array.from({ length: group.count }, (_, positionInGroup) => {
        const gpus = 'gpus' in group ? group.gpus : undefined;
        return {
          index: index++,
          kind: group.kind === 'KIND_GPU' ? ('GPU' as const) : ('CPU' as const),
          deviceId: gpus?.length ? gpus[positionInGroup % gpus.length] : 0,
          intraOpThreads: threads,
          interOpThreads: 1,
          logger,
        };
      }),
    );
    const instances: BackendInstance[] = [];
    try {
      // The first instance tells what the model declares; the config is completed before more are made.
      instances.push(await backend.createInstance(options.modelPath, config, instanceOptions[0]));
      const completed = completeConfig(config, instances[0].signature, {
        name: options.name,
        backend,
        defaultMaxBatchSize: options.defaultMaxBatchSize,
      });
      for (const option of instanceOptions.slice(1)) {
        instances.push(await backend.createInstance(options.modelPath, completed, option));
      }
      const labels = new Map<string, string[]>();
      for (const output of completed.output) {
        if (output.label_filename) labels.set(output.name, await options.readLabels(output.label_filename));
      }
      const label = `model '${options.name}' version ${options.version}`;
      const statistics = new ModelStatistics(options.name, options.version);
      const scheduler = new DynamicBatcher(instances, batcherPolicyOf(completed, options.maxQueueSize), statistics, label);
      return new ModelVersion(options.name, options.version, completed, instances, scheduler, labels, statistics);
    } catch (error) {
      await Promise.allSettled(instances.map((instance) => instance.release()));
      throw error;
    }
  }

  get batched(): boolean {
    return this.config.max_batch_size > 0;
  }

  metadata(versions: string[]): {
    name: string;
    versions: string[];
    platform: string;
    inputs: TensorMetadata[];
    outputs: TensorMetadata[];
  } {
    const describe = (tensor: { name: string; data_type: string; dims: number[] }) => ({
      name: tensor.name,
      datatype: datatypeOfConfig(tensor),
      shape: expectedShape(this.config, tensor),
    });
    return {
      name: this.name,
      versions,
      platform: this.config.platform,
      inputs: this.config.input.map(describe),
      outputs: this.config.output.map(describe),
    };
  }

  async infer(request: InferenceRequest): Promise<InferenceResponse> {
    if (this.state !== 'READY') {
      throw new NereidError('UNAVAILABLE', `model '${this.name}' version ${this.version} is not ready (${this.state.toLowerCase()})`);
    }
    const started = performance.now();
    let result;
    try {
      const { tensors, batchSize } = prepareInputs(this.config, request.inputs);
      const outputNames = checkRequestedOutputs(this.config, request.outputs);
      result = await this.scheduler.schedule({
        inputs: tensors,
        batchSize,
        outputNames,
        priority: numericParameter(request, 'priority'),
        timeoutMicroseconds: numericParameter(request, 'timeout'),
        signal: request.signal,
      });
      this.statistics.recordSuccess(Math.max(1, batchSize), (performance.now() - started) * 1e6, result.timings);
    } catch (error) {
      this.statistics.recordFailure((performance.now() - started) * 1e6);
      throw asNereidError(error);
    }
    const results = result.outputs;
    const outputNames = Object.keys(results);
    const outputs: InferOutput[] = outputNames.map((name) => {
      const requested = request.outputs?.find((output) => output.name === name);
      const tensor = results[name];
      if (requested?.classCount !== undefined) {
        return { name, ...classify(tensor, requested.classCount, this.batched, this.labels.get(name)) };
      }
      return { name, ...tensor };
    });
    return { model: this.name, version: this.version, id: request.id, outputs };
  }

  labelsOf(output: string): readonly string[] | undefined {
    return this.labels.get(output);
  }

  async unload(): Promise<void> {
    this.state = 'UNLOADING';
    await this.scheduler.stop();
    await Promise.allSettled(this.instances.map((instance) => instance.release()));
    this.state = 'UNAVAILABLE';
    this.reason = 'unloaded';
  }
}
