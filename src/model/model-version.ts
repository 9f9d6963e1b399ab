/**
 * One loaded version of a model: its completed config, its instances and the scheduler that feeds
 * them. Requests are validated here, once, for every front end.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature, TensorSignature } from '../backends/backend.js';
import { configTypeOf } from '../core/datatype.js';
import { asNereidError, invalidArgument, NereidError } from '../core/errors.js';
import type { CancelSignal, InferenceRequest, InferenceResponse, InferOutput } from '../core/inference.js';
import { describeShape, type Tensor } from '../core/tensor.js';
import {
  datatypeOfConfig,
  parseModelConfig,
  outputPostprocessingSchema,
  type CompletedModelConfig,
  type ModelConfig,
  type ModelOutputConfig,
  type OutputPostprocessing,
  type QueuePolicyConfig,
} from '../config/model-config.js';
import { DynamicBatcher, UNBATCHED_POLICY, type BatcherPolicy, type QueuePolicy } from '../scheduler/dynamic-batcher.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { cacheKey, fingerprint } from '../cache/cache-key.js';
import { decodeOutputs, encodeOutputs } from '../cache/cached-outputs.js';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import { ImagePreprocessor } from '../processing/image-preprocessor.js';
import { activate, classifyRows, type ImageClassification } from '../processing/output-postprocessor.js';
import { classify } from '../processing/classification.js';
import { checkRequestedOutputs, expectedShape, prepareInputs } from './input-validation.js';
import { ObserverGroup, type InferenceObserverFactory } from '../core/inference-observer.js';
import { ModelStatistics } from '../observability/model-statistics.js';
import type { RequestTimings } from '../core/timings.js';

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
  /** The server's response cache store; used when the model's config enables response_cache. */
  responseCache?: ResponseCacheStore;
  /** Services that watch this version's requests and executions besides its statistics (metrics, tracing). */
  observers?: readonly InferenceObserverFactory[];
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

/** One classify call's answer: per image, and where its time went. */
export interface ClassifyResult {
  results: ImageClassification[];
  timings: { preprocessMs: number; queueMs: number; inferMs: number; postprocessMs: number; totalMs: number };
}

const DEFAULT_POSTPROCESSING: OutputPostprocessing = outputPostprocessingSchema.parse({});

/** An entry that cannot be read (written by something else under the same Redis prefix) counts as a miss. */
function decodeStored(stored: Buffer): Record<string, Tensor> | undefined {
  try {
    return decodeOutputs(stored);
  } catch {
    return undefined;
  }
}

/** SHA-256 of a file, streamed so a large model is not held in memory twice. */
async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class ModelVersion {
  state: ModelState = 'READY';
  reason = '';
  /** The config as clients see it: image inputs take encoded images (BYTES, one per batch row). */
  private readonly clientConfig: CompletedModelConfig;
  private readonly imageInputs: Map<string, ImagePreprocessor>;
  /** The response cache, when the server has a store and this model's config enables it. */
  private readonly cache?: { store: ResponseCacheStore; ttlSeconds: number; keyParameters: string[]; fingerprint: string };
  /** Identical requests being computed now, by cache key. */
  private readonly inFlight = new Map<string, Promise<{ outputs: Record<string, Tensor>; timings: RequestTimings }>>();

  private constructor(
    readonly name: string,
    readonly version: string,
    readonly config: CompletedModelConfig,
    private readonly instances: BackendInstance[],
    private readonly scheduler: Scheduler,
    private readonly labels: Map<string, string[]>,
    readonly statistics: ModelStatistics,
    private readonly observer: ObserverGroup,
    cache?: { store: ResponseCacheStore; modelDigest: string },
  ) {
    if (cache && config.response_cache?.enable) {
      this.cache = {
        store: cache.store,
        ttlSeconds: config.response_cache.ttl_seconds,
        keyParameters: config.response_cache.key_parameters,
        // The weights as well as the config: a reload of new weights under the same version never reuses old answers.
        fingerprint: fingerprint({ config, model: cache.modelDigest }),
      };
    }
    this.imageInputs = new Map(
      config.input
        .filter((input) => input.preprocess?.image)
        .map((input) => [
          input.name,
          new ImagePreprocessor(input.name, input.preprocess!.image, datatypeOfConfig(input), input.reshape?.shape ?? input.dims),
        ]),
    );
    this.clientConfig = {
      ...config,
      input: config.input.map((input) =>
        this.imageInputs.has(input.name) ? { ...input, data_type: 'TYPE_STRING', dims: [1], reshape: undefined } : input,
      ),
    };
  }

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
      const observer = new ObserverGroup([
        statistics,
        ...(options.observers ?? []).map((create) => create(options.name, options.version)),
      ]);
      const scheduler = new DynamicBatcher(instances, batcherPolicyOf(completed, options.maxQueueSize), observer, label);
      const cache =
        options.responseCache && completed.response_cache?.enable
          ? { store: options.responseCache, modelDigest: await fileDigest(options.modelPath) }
          : undefined;
      return new ModelVersion(options.name, options.version, completed, instances, scheduler, labels, statistics, observer, cache);
    } catch (error) {
      await Promise.allSettled(instances.map((instance) => instance.release()));
      throw error;
    }
  }

  /** Requests waiting in this version's scheduler queue (the metrics' queued gauge). */
  get queued(): number {
    return this.scheduler.queued;
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
      shape: expectedShape(this.clientConfig, tensor),
    });
    return {
      name: this.name,
      versions,
      platform: this.config.platform,
      inputs: this.clientConfig.input.map(describe),
      outputs: this.config.output.map(describe),
    };
  }

  /** A batch of encoded images may arrive as [rows] or [rows, 1]; the model's view is [rows, 1]. */
  private withImageShapes(inputs: InferenceRequest['inputs']): InferenceRequest['inputs'] {
    if (this.imageInputs.size === 0) return inputs;
    return inputs.map((input) =>
      this.imageInputs.has(input.name) && input.datatype === 'BYTES' && input.shape.length === (this.batched ? 1 : 0)
        ? { ...input, shape: [...input.shape, 1] }
        : input,
    );
  }

  /** Decodes image inputs into the tensors the model takes. */
  private async preprocess(tensors: Record<string, Tensor>, firstImageIndex: number): Promise<void> {
    await Promise.all(
      [...this.imageInputs].map(async ([name, preprocessor]) => {
        const tensor = await preprocessor.run(tensors[name].data as Buffer[], firstImageIndex);
        tensors[name] = this.batched ? tensor : { ...tensor, shape: tensor.shape.slice(1) };
      }),
    );
  }

  /** `firstImageIndex` numbers images in errors when a request is one chunk of a larger classify call. */
  private async run(request: InferenceRequest, firstImageIndex = 0): Promise<{ outputs: Record<string, Tensor>; timings: RequestTimings }> {
    if (this.state !== 'READY') {
      throw new NereidError('UNAVAILABLE', `model '${this.name}' version ${this.version} is not ready (${this.state.toLowerCase()})`);
    }
    const started = performance.now();
    const startedAt = Date.now();
    const { traceparent } = request;
    const requestId = request.id ?? request.requestId;
    this.observer.onRequestStart();
    let rows = 1;
    let cache: { hit: boolean; ns: number } | undefined;
    const end = (success: boolean, extra: { timings?: RequestTimings; errorCode?: NereidError['code'] }) =>
      this.observer.onRequestEnd({ rows, success, totalNs: (performance.now() - started) * 1e6, requestId, startedAt, traceparent, cache, ...extra });
    try {
      const { tensors, batchSize } = prepareInputs(this.clientConfig, this.withImageShapes(request.inputs));
      rows = Math.max(1, batchSize);
      const outputNames = checkRequestedOutputs(this.config, request.outputs);
      // A request a miss would refuse must not be answered by a hit.
      this.scheduler.validate({ priority: numericParameter(request, 'priority'), timeoutMicroseconds: numericParameter(request, 'timeout') });
      const compute = () => this.compute(request, tensors, batchSize, outputNames, firstImageIndex);
      let result;
      if (this.cache && request.parameters?.cache_bypass !== true) {
        const key = cacheKey({
          model: this.name,
          version: this.version,
          configFingerprint: this.cache.fingerprint,
          inputs: tensors,
          outputNames,
          parameters: request.parameters,
          keyParameters: this.cache.keyParameters,
        });
        const outcome = await this.cached(key, compute);
        cache = { hit: outcome.hit, ns: outcome.cacheNs };
        result = outcome.result;
      } else {
        result = await compute();
      }
      end(true, { timings: result.timings });
      return result;
    } catch (error) {
      const failure = asNereidError(error);
      end(false, { errorCode: failure.code });
      throw failure;
    }
  }

  /** Pre-processing, the scheduler and post-processing: everything a cache hit skips. */
  private async compute(
    request: InferenceRequest,
    tensors: Record<string, Tensor>,
    batchSize: number,
    outputNames: string[],
    firstImageIndex: number,
  ): Promise<{ outputs: Record<string, Tensor>; timings: RequestTimings }> {
    const inputs = { ...tensors };
    let preprocessNs: number | undefined;
    if (this.imageInputs.size > 0) {
      const preprocessStart = performance.now();
      await this.preprocess(inputs, firstImageIndex);
      preprocessNs = (performance.now() - preprocessStart) * 1e6;
    }
    const result = await this.scheduler.schedule({
      inputs,
      batchSize,
      outputNames,
      priority: numericParameter(request, 'priority'),
      timeoutMicroseconds: numericParameter(request, 'timeout'),
      signal: request.signal,
    });
    const postprocessStart = performance.now();
    const outputs: Record<string, Tensor> = {};
    for (const [name, tensor] of Object.entries(result.outputs)) {
      const spec = this.config.output.find((output) => output.name === name)?.postprocess;
      outputs[name] = spec ? activate(tensor, spec, this.batched) : tensor;
    }
    return { outputs, timings: { ...result.timings, preprocessNs, postprocessNs: (performance.now() - postprocessStart) * 1e6 } };
  }

  /**
   * Answers from the cache, or computes once for all identical requests in flight (single-flight).
   * A failed computation is not cached, and its waiters compute for themselves instead of sharing
   * the failure, which may have been the first client's alone (a cancellation, say).
   */
  private async cached(
    key: string,
    compute: () => Promise<{ outputs: Record<string, Tensor>; timings: RequestTimings }>,
  ): Promise<{ hit: boolean; cacheNs: number; result: { outputs: Record<string, Tensor>; timings: RequestTimings } }> {
    const cache = this.cache!;
    const lookupStart = performance.now();
    const stored = await cache.store.get(key);
    const lookupNs = (performance.now() - lookupStart) * 1e6;
    const hitTimings = { queueNs: 0, computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0 };
    const decoded = stored && decodeStored(stored);
    if (decoded) return { hit: true, cacheNs: lookupNs, result: { outputs: decoded, timings: hitTimings } };
    const inFlight = this.inFlight.get(key);
    if (inFlight) {
      const shared = await inFlight.then(
        (result) => result,
        () => undefined,
      );
      if (shared) return { hit: true, cacheNs: lookupNs, result: { outputs: shared.outputs, timings: hitTimings } };
      return { hit: false, cacheNs: lookupNs, result: await compute() };
    }
    const leader = compute();
    this.inFlight.set(key, leader);
    try {
      const result = await leader;
      const insertStart = performance.now();
      await cache.store.set(key, encodeOutputs(result.outputs), cache.ttlSeconds);
      return { hit: false, cacheNs: lookupNs + (performance.now() - insertStart) * 1e6, result };
    } finally {
      this.inFlight.delete(key);
    }
  }

  async infer(request: InferenceRequest): Promise<InferenceResponse> {
    const { outputs: results } = await this.run(request);
    const outputs: InferOutput[] = Object.entries(results).map(([name, tensor]) => {
      const requested = request.outputs?.find((output) => output.name === name);
      if (requested?.classCount !== undefined) {
        return { name, ...classify(tensor, requested.classCount, this.batched, this.labels.get(name)) };
      }
      return { name, ...tensor };
    });
    return { model: this.name, version: this.version, id: request.id, outputs };
  }

  /** The output a classifier answers with: the one with post-processing, else the one with labels, else the only one. */
  private classificationOutput(): ModelOutputConfig {
    const output =
      this.config.output.find((candidate) => candidate.postprocess) ??
      this.config.output.find((candidate) => candidate.label_filename) ??
      (this.config.output.length === 1 ? this.config.output[0] : undefined);
    if (!output) {
      throw invalidArgument(`model '${this.name}' has several outputs and none declares postprocess or label_filename; it cannot classify`);
    }
    return output;
  }

  /** Photos in, labels out: each image through pre-processing, the model and post-processing, in batches the model accepts. */
  async classify(
    images: readonly Buffer[],
    options: { topK?: number; signal?: CancelSignal; traceparent?: string; requestId?: string } = {},
  ): Promise<ClassifyResult> {
    const [imageInput, ...others] = this.imageInputs.keys();
    if (!imageInput || others.length > 0 || this.config.input.some((input) => input.name !== imageInput && !input.optional)) {
      throw invalidArgument(`model '${this.name}' does not take a single image input (declare preprocess.image on its one input to classify images)`);
    }
    if (images.length === 0) throw invalidArgument('no images to classify');
    if (options.topK !== undefined && (!Number.isInteger(options.topK) || options.topK < 1)) {
      throw invalidArgument(`top_k must be a positive integer, got ${options.topK}`);
    }
    const output = this.classificationOutput();
    const spec = output.postprocess ?? DEFAULT_POSTPROCESSING;
    const chunkSize = Math.max(1, this.config.max_batch_size);
    const chunks: Buffer[][] = [];
    for (let start = 0; start < images.length; start += chunkSize) chunks.push(images.slice(start, start + chunkSize));
    const started = performance.now();
    const answers = await Promise.all(
      chunks.map((chunk, index) =>
        this.run(
          {
            model: this.name,
            inputs: [{ name: imageInput, datatype: 'BYTES', shape: this.batched ? [chunk.length, 1] : [1], data: chunk }],
            outputs: [{ name: output.name }],
            signal: options.signal,
            traceparent: options.traceparent,
            requestId: options.requestId,
          },
          index * chunkSize,
        ),
      ),
    );
    const results = answers.flatMap(({ outputs }) =>
      classifyRows(outputs[output.name], spec, this.batched, this.labels.get(output.name), options.topK),
    );
    const sum = (key: keyof RequestTimings) => answers.reduce((total, answer) => total + (answer.timings[key] ?? 0), 0) / 1e6;
    return {
      results,
      timings: {
        preprocessMs: sum('preprocessNs'),
        queueMs: sum('queueNs'),
        inferMs: sum('computeInferNs'),
        postprocessMs: sum('postprocessNs'),
        totalMs: performance.now() - started,
      },
    };
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
