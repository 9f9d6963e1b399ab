/**
 * Loading one version of an ensemble: its graph checked, its steps' models loaded and checked
 * against it, and a model version built whose scheduler runs the graph. An ensemble has no model
 * file and no instances; its steps' models do the work, each through its own scheduler. With
 * response_cache on, the ensemble's whole request is cached, through the same path as a model's.
 */
import type { Logger } from 'pino';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import { answerDecidingConfig, fingerprint } from '../cache/cache-key.js';
import { datatypeOfConfig, type CompletedModelConfig, type ModelConfig } from '../config/model-config.js';
import { ObserverGroup, type InferenceObserverFactory } from '../core/inference-observer.js';
import { checkEnsembleSteps, ENSEMBLE_PLATFORM, planEnsemble, type EnsembleStep } from '../model/ensemble-plan.js';
import { EnsembleScheduler, type StepCall, type StepHolder } from '../model/ensemble-scheduler.js';
import { ModelVersion } from '../model/model-version.js';
import { ModelStatistics } from '../observability/model-statistics.js';
import { checkingConfig, responseCacheOf } from './model-loader.js';

export interface EnsembleLoadOptions {
  name: string;
  version: string;
  /** The same version's statistics from its previous load, counting on (VersionLoadOptions.previousStatistics). */
  previousStatistics?: ModelStatistics;
  config: ModelConfig;
  logger: Logger;
  observers?: readonly InferenceObserverFactory[];
  /** The server's queue size: how many requests the ensemble takes at once before its steps' queues refuse. */
  maxQueueSize: number;
  /** The config (as clients see it) of the version a step runs, its model loaded first when it is not. */
  stepConfig: (step: EnsembleStep) => Promise<CompletedModelConfig>;
  /** The answer identity of the version a step runs now (ModelVersion.answerIdentity) with that version's number; undefined when none can be said. */
  stepIdentity: (step: EnsembleStep) => Promise<string | undefined>;
  /** Runs a step's request through its model. */
  callStep: StepCall;
  /** Holds the version that would run a step now, for one request (see HeldStep). */
  holdStep?: StepHolder;
  readLabels: (filename: string) => Promise<string[]>;
  /** The server's response cache store; used when the ensemble's config enables response_cache. */
  responseCacheStore?: ResponseCacheStore;
  /** How the warning of a cache asked for without a store names the setting that gives one (see responseCacheOf). */
  cacheSetting?: string;
}

/**
 * A step's part of an ensemble's cache key: the version that would run it and that version's answer
 * identity; undefined when none can be named now (an on-demand step unloaded — its call loads it —,
 * or a version drawn per request), so the request is computed without the cache.
 */
export async function versionIdentity(serving: () => ModelVersion | undefined): Promise<string | undefined> {
  let version: ModelVersion | undefined;
  try {
    version = serving();
  } catch {
    return undefined;
  }
  const identity = await version?.answerIdentity();
  return identity === undefined ? undefined : `${version!.version}:${identity}`;
}

/** A step model that could not load: its own load logged why, with its cause, so the ensemble's failure says it in one line. */
export class EnsembleStepError extends Error {}

export async function loadEnsembleVersion(options: EnsembleLoadOptions): Promise<ModelVersion> {
  const { name, version, logger } = options;
  const plan = checkingConfig(() => planEnsemble(name, options.config));
  const config: CompletedModelConfig = { ...options.config, name, platform: ENSEMBLE_PLATFORM, backend: '', max_batch_size: options.config.max_batch_size ?? 0 };
  const stepConfigs = await Promise.all(
    plan.steps.map((step) =>
      options.stepConfig(step).catch((error: unknown) => {
        throw new EnsembleStepError(`ensemble '${name}' ${step.label}: ${(error as Error).message}`, { cause: error });
      }),
    ),
  );
  checkingConfig(() => checkEnsembleSteps(plan, config, stepConfigs));
  const labels = new Map<string, readonly string[]>();
  for (const output of config.output) {
    if (output.label_filename) labels.set(output.name, await options.readLabels(output.label_filename));
  }
  const statistics = options.previousStatistics ?? new ModelStatistics(name, version);
  const observer = new ObserverGroup([statistics, ...(options.observers ?? []).map((create) => create(name, version))], logger);
  const scheduler = new EnsembleScheduler(
    plan,
    options.callStep,
    options.maxQueueSize,
    options.holdStep,
    // A reshaped output leaves the steps in its reshape's shape, and reaches the client in its dims.
    new Map(config.output.map((output) => [output.name, { datatype: datatypeOfConfig(output), dims: [...(config.max_batch_size > 0 ? [-1] : []), ...(output.reshape?.shape ?? output.dims)] }])),
  );
  // The step versions serving now decide the answers, asked for each request: a step that loads a new version, new weights or
  // other processing makes a new ensemble for the cache at once, without the ensemble reloading.
  // The ensemble's own part is hashed once; the cache key hashes the whole identity again, so the steps' parts are only joined.
  const ensembleConfig = fingerprint(answerDecidingConfig(config, []));
  const answerIdentity = async () => {
    const steps = await Promise.all(plan.steps.map(options.stepIdentity));
    return steps.includes(undefined) ? undefined : [ensembleConfig, ...steps].join('|');
  };
  const cache = responseCacheOf(options.responseCacheStore, name, version, config, answerIdentity, logger, options.cacheSetting);
  return new ModelVersion({ name, version, config, instances: [], scheduler, statistics, observer, labels, cache, answerIdentity, logger });
}
