/**
 * Loading one version of a model: the config completed from the model file before any instance
 * exists, the instances planned and created, and the components of the request's path built
 * around them (scheduler, pre/post-processing, response cache, observers).
 */
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { Backend, BackendInstance, InstanceOptions, ModelCall } from '../backends/backend.js';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import { answerDecidingConfig, fingerprint } from '../cache/cache-key.js';
import { ResponseCache } from '../cache/response-cache.js';
import { datatypeOfConfig, monitoringSettingsOf, scoresBeyondLabels, type CompletedModelConfig, type ModelConfig, type QueuePolicyConfig } from '../config/model-config.js';
import { ObserverGroup, type InferenceObserverFactory } from '../core/inference-observer.js';
import type { Tensor } from '../core/tensor.js';
import { ModelVersion, type OodMonitor, type QuantizationSummary } from '../model/model-version.js';
import { countedFeatures, psiBeyondChance } from '../monitoring/drift-report.js';
import { modelJudging, type ModelJudging } from '../monitoring/model-monitoring.js';
import type { ReferenceProfile } from '../monitoring/reference-profile.js';
import { blankFloor, MahalanobisScorer } from '../monitoring/representation-ood.js';
import { exposedName, type ExposedTensor } from '../onnx/onnx-model-file.js';
import { VersionMonitor, versionMonitorOptionsSchema, type VersionMonitorSettings } from '../monitoring/version-monitor.js';
import { ModelStatistics } from '../observability/model-statistics.js';
import { InputPreprocessor } from '../processing/input-preprocessor.js';
import { OutputPostprocessor } from '../processing/output-postprocessor.js';
import { DynamicBatcher, UNBATCHED_POLICY, type BatcherPolicy, type QueueLimits, type QueuePolicy } from '../scheduler/dynamic-batcher.js';
import { SequenceBatcher } from '../scheduler/sequence-batcher.js';
import { RaggedBatching, SequencePadding } from '../scheduler/batch-tensors.js';
import { completeConfig } from './config-completion.js';
import { sequencePolicyOf } from './sequence-policy.js';
import { fileDigest, FolderFingerprints } from './model-fingerprint.js';
import { automaticWarmupMemory, declaredWarmupMemory, LoadAbandonedError, warmUp, warmupMemoryProblem, warmupSamples, zeroTensor } from './model-warmup.js';

export interface VersionLoadOptions {
  /** The most memory the warmup samples may take (a config given with a load request); absent: no bound. */
  warmupMemoryLimit?: number;
  /**
   * The statistics of the same version's previous load, carried on (counters keep counting across a reload, as the
   * metrics' histograms do); absent: they start at zero.
   */
  previousStatistics?: ModelStatistics;
  /** Aborted when the load is to be given up (the server is shutting down): it stops between steps and warmup runs, its instances released. */
  signal?: AbortSignal;
  name: string;
  version: string;
  modelPath: string;
  /**
   * The version's folder, whose files all decide its answers (an ONNX model's external data, a TF.js model's weight
   * shards, the modules a handler imports, the reference profile): the response cache keys on all of them. Undefined for
   * a built-in model, keyed on its model file.
   */
  versionFolder?: string;
  config: ModelConfig;
  backend: Backend;
  logger: Logger;
  /** max_batch_size given to an ONNX model whose config leaves it out but whose first dimension is dynamic. */
  defaultMaxBatchSize: number;
  /** Requests that may wait for an instance before new ones are refused. */
  maxQueueSize: number;
  /** How a refusal at maxQueueSize names the server's setting (maxQueueSize, or the CLI's --max-queue-size). */
  maxQueueSizeSetting?: string;
  /** Bytes of inputs that may wait for an instance before new requests are refused. */
  maxQueueBytes?: number;
  /** The longest wait a request may expect where neither its deadline nor the queue policy says. */
  maxQueueWaitMs?: number;
  /** The server's response cache store; used when the model's config enables response_cache. */
  responseCacheStore?: ResponseCacheStore;
  /** How the warning of a cache asked for without a store names the setting that gives one (cacheConfig, --cache-config; see responseCacheOf). */
  cacheSetting?: string;
  /** Services that watch this version's requests and executions besides its statistics (metrics, tracing). */
  observers?: readonly InferenceObserverFactory[];
  /** Reads a labels file named by the config, relative to the model's folder. */
  readLabels: (filename: string) => Promise<string[]>;
  /** Reads a model_warmup input_data_file, relative to the model's warmup folder; absent: such samples are refused. */
  readWarmupFile?: (filename: string) => Promise<Buffer>;
  /** Reads a sequence_batching initial_state data_file, relative to the model's initial_state folder; absent: such states are refused. */
  readInitialStateFile?: (filename: string) => Promise<Buffer>;
  /** What the version's quantization record says, when it has one. */
  quantization?: QuantizationSummary;
  /** The version's reference profile (nereid profile), when it has one: its OOD detector scores every computed answer. */
  referenceProfile?: ReferenceProfile;
  /** Window and state settings of the version's monitor (built when it has a reference profile). */
  monitoring?: VersionMonitorSettings;
  /**
   * The monitor of the same version as loaded before this reload: kept, windows, state and labels waiting for
   * feedback included, when the profile and settings are the same (a reload must not hide a drift in progress).
   */
  previousMonitor?: VersionMonitor;
  /** How the version's instances call other models (a handler's context.infer). */
  callModel?: ModelCall;
  /**
   * The same version as it serves now, when none of the model's files besides its config changed since it loaded: a
   * config that differs from its only in instance groups changes its instances (those the new plan still has stay), and
   * the load returns it, as Triton updates such a model instead of reloading it. `filesUnchanged` is asked again once
   * the new instances are made: files written meanwhile make it a full load after all.
   */
  serving?: { version: ModelVersion; filesUnchanged: () => Promise<boolean> };
}

/** What makes two instances of a config interchangeable: made by plans alike, either serves as the other would. */
function planKey(backend: Backend, config: ModelConfig, plan: InstanceOptions): string {
  return `${plan.kind}:${plan.deviceId}:${backend.instanceThreads?.(config, plan.intraOpThreads) ?? plan.intraOpThreads}:${plan.interOpThreads}`;
}

/** The completed configs differ in their instance groups and nothing else. */
function onlyInstancesDiffer(before: CompletedModelConfig, after: CompletedModelConfig): boolean {
  return !isDeepStrictEqual(before.instance_group, after.instance_group) && isDeepStrictEqual({ ...before, instance_group: [] }, { ...after, instance_group: [] });
}

/** The image input whose blank rows are out of distribution whatever their score, and the spread at or below which a row is blank (see blankFloor). */
function blankInputOf(profile: ReferenceProfile, config: CompletedModelConfig): OodMonitor['blank'] {
  const floor = blankFloor(profile);
  const input = floor === undefined ? undefined : config.input.find((candidate) => candidate.preprocess?.image)?.name;
  return input === undefined ? undefined : { input, floor: floor! };
}

/**
 * The server's monitoring settings with the model's own (its config's `monitoring`): its drift thresholds — PSI's also
 * move the drift state, when the config has a monitoring section — ignored features and OOD threshold.
 */
function withModelSettings(settings: VersionMonitorSettings | undefined, config: CompletedModelConfig, judging: ModelJudging): VersionMonitorSettings {
  const psi = judging.monitor.drift?.thresholds?.psi;
  const state = config.monitoring && psi ? { ...settings?.state, warningAt: psi.warning, driftAt: psi.drift } : settings?.state;
  return { ...settings, ...(state && { state }), ...judging.monitor };
}

/**
 * The version's live monitor, which logs each change of its drift state with the features that moved it: a warning
 * when it worsens, info when it settles to ok. A reload of the same version with the same profile and settings keeps
 * the monitor it had.
 */
function monitorOf(profile: ReferenceProfile, settings: VersionMonitorSettings, label: string, logger: Logger, previous?: VersionMonitor): VersionMonitor {
  if (previous && isDeepStrictEqual(previous.profile, profile) && isDeepStrictEqual(previous.options, versionMonitorOptionsSchema.parse(settings ?? {}))) {
    logger.info({ rows: previous.snapshot().window.size, state: previous.driftState }, `${label}: monitoring carries on from the previous load (same reference profile)`);
    return previous;
  }
  return new VersionMonitor(profile, settings, {
    onTransition: (transition, evaluation) => {
      // Silenced by the model's config (monitoring.drift.log_state_changes: false): /monitor and the metrics still say it.
      if (settings.drift?.logStateChanges === false) return;
      // The score and levels count PSI beyond chance: that is what the line quotes, the raw PSI beside it. Features that
      // do not count (the image's width and height) are left out: named as "most drifted" they read as the cause.
      const top = countedFeatures(evaluation.features).slice(0, 3).map((feature) => ({ feature: feature.feature, psi: Number(feature.psi.toFixed(4)), beyondChance: Number(psiBeyondChance(feature).toFixed(4)), level: feature.level }));
      logger[transition.to === 'ok' ? 'info' : 'warn'](
        { drift: { from: transition.from, to: transition.to, score: transition.score, samples: transition.sampleCount, top } },
        `${label} drift state ${transition.from} → ${transition.to}${top.length ? ` (most drifted: ${top.map((feature) => `${feature.feature} PSI ${feature.beyondChance} beyond chance (${feature.psi} raw)`).join(', ')})` : ''}`,
      );
    },
  });
}

/**
 * The version's response cache, when the server has a store and the config enables it; `identity`
 * is the version's answer identity (see ModelVersionParts.answerIdentity).
 */
export function responseCacheOf(
  store: ResponseCacheStore | undefined,
  name: string,
  version: string,
  config: CompletedModelConfig,
  identity: () => Promise<string | undefined>,
  logger: Logger,
  /** The setting that gives the server a cache, as the warning names it: createServer's cacheConfig, or the CLI's --cache-config. */
  cacheSetting = 'cacheConfig',
): ResponseCache | undefined {
  if (!config.response_cache?.enable) return undefined;
  if (!store) {
    logger.warn(`model '${name}' version ${version} enables response_cache, but the server has no cache (${cacheSetting} local,size=BYTES or redis,host=H,port=P): it is served uncached`);
    return undefined;
  }
  const { ttl_seconds, key_parameters } = config.response_cache;
  return new ResponseCache(store, { model: name, version, ttlSeconds: ttl_seconds, keyParameters: key_parameters, identity });
}

function queuePolicyOf(config: QueuePolicyConfig): QueuePolicy {
  return {
    maxQueueSize: config.max_queue_size,
    maxQueueBytes: config.max_queue_bytes,
    defaultTimeoutMicroseconds: config.default_timeout_microseconds,
    timeoutAction: config.timeout_action,
    allowTimeoutOverride: config.allow_timeout_override,
  };
}

/** Triton's dynamic_batching block as the scheduler's policy; without it each request runs on its own. */
export function batcherPolicyOf(config: CompletedModelConfig, limits: QueueLimits): BatcherPolicy {
  const batching = config.dynamic_batching;
  const ragged = RaggedBatching.of(config);
  if (!batching || config.max_batch_size === 0) return { ...UNBATCHED_POLICY, ragged, ...limits };
  return {
    ragged,
    padding: SequencePadding.of(config),
    maxBatchSize: config.max_batch_size,
    preferredBatchSizes: batching.preferred_batch_size,
    maxQueueDelayMicroseconds: batching.max_queue_delay_microseconds,
    targetLatencyMicroseconds: batching.target_latency_us,
    preserveOrdering: batching.preserve_ordering,
    priorityLevels: batching.priority_levels,
    defaultPriorityLevel: batching.default_priority_level,
    defaultQueuePolicy: queuePolicyOf(batching.default_queue_policy),
    priorityQueuePolicies: new Map(Object.entries(batching.priority_queue_policy ?? {}).map(([level, policy]) => [Number(level), queuePolicyOf(policy)])),
    ...limits,
  };
}

/**
 * One instance per count of each instance_group, each computing with `threadsPerInstance` threads,
 * by default the machine's cores split among them so they do not oversubscribe it.
 */
export function planInstances(config: CompletedModelConfig, logger: Logger, threadsPerInstance?: number): InstanceOptions[] {
  const groups = config.instance_group;
  const instanceCount = groups.reduce((sum, group) => sum + group.count, 0);
  const intraOpThreads = threadsPerInstance ?? Math.max(1, Math.floor(availableParallelism() / instanceCount));
  let index = 0;
  return groups.flatMap((group) =>
    Array.from({ length: group.count }, (_, positionInGroup) => {
      const gpus = 'gpus' in group ? group.gpus : undefined;
      return {
        index: index++,
        kind: group.kind === 'KIND_GPU' ? ('GPU' as const) : ('CPU' as const),
        deviceId: gpus?.length ? gpus[positionInGroup % gpus.length] : 0,
        intraOpThreads,
        interOpThreads: 1,
        logger,
      };
    }),
  );
}

/** Zero-filled inputs of a given batch size, when every model input has fixed numeric dims; else undefined. */
function calibrationSample(config: CompletedModelConfig): ((rows: number) => Record<string, Tensor>) | undefined {
  const inputs = config.input.map((input) => ({ name: input.name, datatype: datatypeOfConfig(input), dims: input.reshape?.shape ?? input.dims }));
  if (inputs.some((input) => input.datatype === 'BYTES' || input.dims.includes(-1))) return undefined;
  return (rows) => Object.fromEntries(inputs.map((input) => [input.name, zeroTensor(input.datatype, [rows, ...input.dims])]));
}

/**
 * The config does not fit the model or its backend (a setting out of range, an input the model
 * lacks, pre-processing it cannot do), as opposed to a model the engine cannot open or run. When
 * the config came with a load request, only this is the caller's mistake.
 */
export class ModelConfigError extends Error {
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'ModelConfigError';
  }
}

/** Runs a step that checks or completes the config; what it throws is a ModelConfigError. */
export function checkingConfig<T>(step: () => T): T {
  try {
    return step();
  } catch (error) {
    throw new ModelConfigError(error);
  }
}

async function noWarmupFolder(file: string): Promise<Buffer> {
  throw new Error(`input_data_file '${file}' cannot be read: this load has no model folder to read warmup files from`);
}

async function noInitialStateFolder(file: string): Promise<Buffer> {
  throw new Error(`initial_state data_file '${file}' cannot be read: this load has no model folder to read it from`);
}

export async function loadModelVersion(options: VersionLoadOptions): Promise<ModelVersion> {
  const { backend, logger, name, version } = options;
  checkingConfig(() => backend.checkConfig?.(options.config));
  const signature = await backend.describe(options.modelPath, options.config);
  const cores = availableParallelism();
  const instances = (await backend.defaultInstances?.(options.modelPath, options.config, cores, signature)) ?? { count: 1, threadsPerInstance: cores };
  const config = checkingConfig(() =>
    completeConfig(options.config, signature, { name, backend, defaultMaxBatchSize: options.defaultMaxBatchSize, defaultInstanceCount: instances.count }),
  );
  const warmupLimit = options.warmupMemoryLimit;
  const warmupProblem = warmupLimit === undefined ? undefined : warmupMemoryProblem(declaredWarmupMemory(config.model_warmup) + automaticWarmupMemory(config), warmupLimit);
  if (warmupProblem) checkingConfig(() => { throw new Error(`the config given with a load request may not ${warmupProblem}`); });
  // Threads follow the backend's plan when it chose the instances, else the cores split between those the config names.
  const threadsPerInstance = options.config.instance_group.length > 0 ? undefined : instances.threadsPerInstance;
  // Pre/post-processing settings are checked before any instance starts.
  const preprocessor = checkingConfig(() => InputPreprocessor.of(config));
  const postprocessor = checkingConfig(() => OutputPostprocessor.of(config));
  const labels = new Map<string, readonly string[]>();
  for (const output of config.output) {
    if (output.label_filename) labels.set(output.name, await options.readLabels(output.label_filename));
  }
  const label = `model '${name}' version ${version}`;
  for (const output of config.output) {
    const named = labels.get(output.name);
    const scores = named && scoresBeyondLabels(output, named);
    if (scores !== undefined) {
      logger.warn(`${label}: output '${output.name}' has ${scores} scores but its labels file ${output.label_filename} names ${named!.length} classes; ${scores - 1 === named!.length ? `class ${named!.length} is` : `classes ${named!.length}..${scores - 1} are`} answered by their index`);
    }
    // Two classes of one name answer alike, and eval's class folders count both as one: said at load, not left to a low accuracy.
    const firstLine = new Map<string, number>();
    for (const [index, name] of (named ?? []).entries()) {
      const earlier = firstLine.get(name);
      if (earlier === undefined) firstLine.set(name, index);
      else if (name !== '') logger.warn(`${label}: the labels file ${output.label_filename} of output '${output.name}' names '${name}' on lines ${earlier + 1} and ${index + 1}; answers and evaluations cannot tell those classes apart`);
    }
  }
  // Samples are built and checked before any instance starts: a mistake in them is the config's, and costs no session.
  const samples = await warmupSamples(config, options.readWarmupFile ?? noWarmupFolder, logger, label).catch((error: unknown) => {
    throw new ModelConfigError(error);
  });
  // The model's own monitoring settings, checked against the profile before any instance starts: a mistake is the config's.
  const judging = options.referenceProfile && checkingConfig(() => modelJudging(options.referenceProfile!, monitoringSettingsOf(config), version));
  const created: BackendInstance[] = [];
  try {
    const ood = options.referenceProfile?.ood;
    // The detector reads a tensor inside the model: every instance's session also outputs it.
    const exposed: ExposedTensor | undefined = ood && { tensor: ood.tensor, channelMean: ood.pooling === 'spatial-mean' };
    const exposedOutputs = exposed && [exposed];
    const plans = planInstances(config, logger, threadsPerInstance);
    const abandonIfAsked = () => {
      if (options.signal?.aborted) throw new LoadAbandonedError(`load of ${label}`);
    };
    const createAndWarmUp = async (toCreate: readonly InstanceOptions[]): Promise<BackendInstance[]> => {
      const made: BackendInstance[] = [];
      for (const plan of toCreate) {
        abandonIfAsked();
        const instance = await backend.createInstance(options.modelPath, config, { ...plan, version, exposedOutputs, callModel: options.callModel, labels, signature });
        created.push(instance);
        made.push(instance);
      }
      abandonIfAsked();
      if (samples.length > 0 && made.length > 0) {
        const warmupStarted = performance.now();
        await warmUp(made, samples, config.output.map((output) => output.name), options.signal).catch((error: unknown) => {
          throw error instanceof LoadAbandonedError ? new LoadAbandonedError(`load of ${label} (in its warmup)`) : error;
        });
        const ms = Math.round(performance.now() - warmupStarted);
        logger.info({ warmup: { ms, samples: samples.length, instances: made.length } }, `warmed up ${label} in ${ms} ms (${samples.length} sample(s) on ${made.length} instance(s))`);
      }
      return made;
    };
    const serving = options.serving?.version;
    if (serving?.instancesChangeable && onlyInstancesDiffer(serving.config, config)) {
      // Each new plan takes an instance made by a plan alike, while one is left; the others are made.
      const { instances: current, plans: currentPlans } = serving.instances;
      const spare = new Map<string, BackendInstance[]>();
      current.forEach((instance, position) => {
        const key = planKey(backend, config, currentPlans![position]);
        spare.set(key, [...(spare.get(key) ?? []), instance]);
      });
      let nextIndex = Math.max(-1, ...currentPlans!.map((plan) => plan.index)) + 1;
      const kept = plans.map((plan) => spare.get(planKey(backend, config, plan))?.shift());
      const newPlans = plans.map((plan, position) => (kept[position] ? currentPlans![current.indexOf(kept[position]!)] : { ...plan, index: nextIndex++ }));
      const made = await createAndWarmUp(newPlans.filter((_, position) => !kept[position]));
      if (await options.serving!.filesUnchanged()) {
        const added = made.length;
        const instances = kept.map((instance) => instance ?? made.shift()!);
        const removed = current.length - (instances.length - added);
        await serving.changeInstances(config, instances, newPlans);
        logger.info(
          { instances: { before: current.length, after: instances.length, added, removed } },
          `updated the instances of ${label} without reloading it: ${current.length} → ${instances.length} (${added} added, ${removed} removed)`,
        );
        return serving;
      }
      // Files written while the instances were made: those may hold either version of them, so every instance is made anew.
      await Promise.allSettled(created.splice(0).map((instance) => instance.release()));
      logger.info(`${label}: the model's files changed while its instances were being changed; loading it anew`);
    }
    await createAndWarmUp(plans);
    const statistics = options.previousStatistics ?? new ModelStatistics(name, version);
    const observer = new ObserverGroup([statistics, ...(options.observers ?? []).map((create) => create(name, version))], logger);
    const scheduler = config.sequence_batching
      ? new SequenceBatcher(created, await sequencePolicyOf(config, { maxQueuedRequests: options.maxQueueSize, maxQueuedRequestsSetting: options.maxQueueSizeSetting }, options.readInitialStateFile ?? noInitialStateFolder).catch((error: unknown) => {
          throw new ModelConfigError(error);
        }), observer, label, name, logger)
      : new DynamicBatcher(
          created,
          batcherPolicyOf(config, { maxQueuedRequests: options.maxQueueSize, maxQueuedRequestsSetting: options.maxQueueSizeSetting, maxQueuedBytes: options.maxQueueBytes, maxQueueWaitMs: options.maxQueueWaitMs }),
          observer,
          label,
        );
    const sample = scheduler instanceof DynamicBatcher ? calibrationSample(config) : undefined;
    if (sample && scheduler instanceof DynamicBatcher) {
      // The costs only tune where batches are cut; without them the batcher learns from traffic, so a failure here is no reason to refuse the model.
      await scheduler.calibrate(sample, config.output.map((output) => output.name)).catch((error: unknown) => {
        logger.warn({ err: error }, `calibrating batch costs of ${label} failed; batch costs will be learned from traffic: ${(error as Error)?.message ?? String(error)}`);
      });
    }
    // The weights as well as the config that decides answers: a reload of new weights under the same version never reuses old
    // answers, while one that only tunes how the model is served (instances, batching, queue) keeps them.
    // Taken now, from the files just loaded (only a server with a cache keys answers): weights written over them later are not these.
    const identity = options.responseCacheStore
      ? await (options.versionFolder ? new FolderFingerprints().of(options.versionFolder) : fileDigest(options.modelPath)).then(
          (digest) => fingerprint({ config: answerDecidingConfig(config, backend.tuningParameters ?? []), model: digest }),
          (error: unknown) => void logger.warn({ err: error }, `${label}: its weights could not be read for the response cache's key; its answers are not cached`),
        )
      : undefined;
    const answerIdentity = async () => identity;
    const cache = responseCacheOf(options.responseCacheStore, name, version, config, answerIdentity, logger, options.cacheSetting);
    return new ModelVersion({
      ...{ name, version, config, instances: created, scheduler, statistics, observer, labels, preprocessor, postprocessor, cache, answerIdentity, logger },
      bytesAsText: backend.bytesAsText,
      defaultedInputs: new Set(signature.inputs.filter((input) => input.defaulted).map((input) => input.name)),
      quantization: options.quantization,
      // Pooled inside the engine when the detector pools: the rows arrive as the features it scores.
      ood: ood
        ? {
            tensor: exposedName(exposed!),
            pooling: 'none',
            threshold: judging!.oodThreshold!,
            scorer: new MahalanobisScorer(ood),
            blank: blankInputOf(options.referenceProfile!, config),
          }
        : undefined,
      monitor: options.referenceProfile && options.monitoring?.driftWindows !== false ? monitorOf(options.referenceProfile, withModelSettings(options.monitoring, config, judging!), label, logger, options.previousMonitor) : undefined,
      modelFileBytes: (await stat(options.modelPath)).size,
      instancePlans: plans,
    });
  } catch (error) {
    await Promise.allSettled(created.map((instance) => instance.release()));
    throw error;
  }
}
