/**
 * The core every front end calls: one Server owns its repository and models (no global state, so
 * several can run side by side). HTTP, gRPC, batch jobs and the library API are translators over it.
 * It names no implementation: the composition root (create-server.ts, the CLI) hands it the
 * backends and the response cache store, so importing it loads no engine and no Redis client.
 */
import type { Logger } from 'pino';
import { defaultLibraryLogger } from '../observability/library-logger.js';
import { z } from 'zod';
import type { Backend } from '../backends/backend.js';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import { asNereidError, invalidArgument, NereidError, notFound, overloaded, quoteName, unavailable } from '../core/errors.js';
import { optionKeyName, parseOptions, type SettingName } from '../core/options.js';
import { SingleFlight } from '../core/single-flight.js';
import type { InputShapeCheck } from '../core/tensor.js';
import { requestedOutputOf, type InferenceRequest, type InferenceResponse, type RequestContext, type RequestedOutput } from '../core/inference.js';
import { isEnsembleConfig, type EnsembleStep } from '../model/ensemble-plan.js';
import type { HeldStep } from '../model/ensemble-scheduler.js';
import { classifyImages, imageClassifier } from '../model/image-classification.js';
import { detectObjects, detector } from '../model/object-detection.js';
import type { ModelVersion, VersionHold } from '../model/model-version.js';
import { applyFeedback, monitorAnswer, type FeedbackAnswer, type MonitorAnswer } from '../model/monitor-answer.js';
import { UNNAMED_REPOSITORY } from '../monitoring/reference-profile.js';
import { isBundledRepository } from '../repository/bundled-repository.js';
import { LogSettings, type LogSettingsAnswer } from '../observability/log-settings.js';
import { TraceSettings, type TraceSettingAnswer } from '../observability/trace-settings.js';
import type { RawInputModel } from '../protocol/v2-json.js';
import { datatypeOfConfig } from '../config/model-config.js';
import { RepositoryConfig } from '../repository/config-override.js';
import { checkModelName } from '../repository/model-name.js';
import { ModelRepository } from '../repository/model-repository.js';
import { versionFolders } from '../repository/repository-layout.js';
import { RepositoryPoller } from '../repository/repository-poller.js';
import { versionIdentity } from '../repository/ensemble-loader.js';
import { VERSION } from '../version.js';
import { ByteBudget, type BodyReservation } from './byte-budget.js';
import { IdleMemoryReclaimer, processMemory, type ServerActivity } from './idle-memory-reclaimer.js';
import { ModelResidency, type ResidencySummary } from './model-residency.js';
import { modelListOf, withResidency, type IndexRow, type ModelListEntry } from './model-listing.js';
import { asLoadFailure, loadRequestConfig, requireExplicitControl, unloadsDependents } from './model-control.js';
import { callsOtherModels, planResidency } from './residency-plan.js';
import { chooseVersion, type ShadowSummary } from './traffic.js';
import { TrafficRouter } from './traffic-router.js';
import { checkLoggerOption, checkMonitoringOptions, SERVER_OTHER_OPTIONS, serverOptionsSchema, stopOptionsSchema, type ServerOptions } from './server-options.js';
import { SystemSharedMemory } from './system-shared-memory.js';

/** What a call is answered once close() has begun: a replica that is going away, so another may be tried. */
const shuttingDown = () => new NereidError('UNAVAILABLE', 'server is shutting down');

/** Retry-After of a request that arrives while the server is still loading its models at start. */
const STARTING_RETRY_AFTER_MS = 1000;

/** A front end (or any listener over a Server) as stop() drains it: createHttpFrontEnd attaches its own (attachFrontEnd). */
export interface DrainableFrontEnd {
  /** Stops taking connections; resolves once the open ones have closed, each after its answer. `timeoutMs`: the time stop() gives it. */
  drain(timeoutMs: number): Promise<void>;
  /**
   * Closes the connections still open, at once: the drain's time is up. Answers how many client requests were still
   * unanswered on them (HTTP requests, gRPC calls), each counted once however many models it reached; no answer counts
   * as one.
   */
  cut?(): number | void;
}

/**
 * A repository API call naming a repository (HTTP /v2/repository/<name>/…, gRPC repository_name): refused as Triton
 * refuses it, rather than acting on every repository under one name. True whether the server has one repository or
 * several (--model-repository repeated), which it serves as one.
 */
export function namedRepositoryRefusal(repository: string): NereidError {
  return new NereidError(
    'UNIMPLEMENTED',
    `'repository_name' specification is not supported (got ${quoteName(repository)}): the repository API covers the models of every model repository the server serves, as one; leave the name out`,
  );
}

/** An output whose parameters ask for classes (`classification`, `class_count`) that its classCount does not carry yet. */
const asksClassesByParameter = (output: RequestedOutput) =>
  output.classCount === undefined && (output.parameters?.classification !== undefined || output.parameters?.class_count !== undefined);

export const SERVER_EXTENSIONS = [
  'classification',
  'sequence',
  'model_repository',
  'model_repository(unload_dependents)',
  'model_configuration',
  'binary_tensor_data',
  'parameters',
  'statistics',
  'schedule_policy',
  'trace',
  'logging',
] as const;

/** Which of /classify and /detect take a version's images. */
export interface ImageRoutes {
  classify: boolean;
  detect: boolean;
}

/** Which of /classify and /detect take a loaded version's images: each endpoint's own check, passed or not. */
export function imageRoutesOf(model: ModelVersion): ImageRoutes {
  // Each check throws the refusal its endpoint would answer.
  const takes = (check: (model: ModelVersion) => unknown) => {
    try {
      check(model);
      return true;
    } catch {
      return false;
    }
  };
  return { classify: takes(imageClassifier), detect: takes(detector) };
}

export class Server {
  readonly options: z.output<typeof serverOptionsSchema>;
  readonly logger: Logger;
  readonly repository: ModelRepository;
  readonly responseCache?: ResponseCacheStore;
  /** Triton's system shared memory regions, which both front ends read tensors from and write them to. */
  readonly sharedMemory: SystemSharedMemory;
  /** Bytes of request bodies held now, across front ends. */
  readonly bodies: ByteBudget;
  readonly traceSettings: TraceSettings;
  readonly logSettings: LogSettings;
  private started = false;
  private startup?: Promise<this>;
  /** What /monitor's hint to build a profile passes as --model-repository: a placeholder, or none for the bundled repository. */
  private profileHintRepository?: string;
  private closing = false;
  private draining = false;
  private readonly requiredAtStart = new Set<string>();
  /** Run-time traffic weights over the configs', and shadow comparisons. */
  private readonly traffic: TrafficRouter;
  /** In poll mode, what follows the repository's changes. */
  readonly poller?: RepositoryPoller;
  /** Which models are in memory: on-demand loads and unloads under the memory budget. */
  readonly residency: ModelResidency;
  /** Loads under way of models residency does not manage (ensembles, pipelines), shared by the requests waiting for them. */
  private readonly unmanagedLoads = new SingleFlight<string>();
  private readonly backends: readonly Backend[];
  private requestsStarted = 0;
  /** The front ends stop() drains. */
  private readonly frontEnds = new Set<DrainableFrontEnd>();
  /** The stop under way: a second stop() waits for it. */
  private stopped?: Promise<{ drained: boolean }>;
  /** What gives memory back after a burst of large requests (none with reclaimIdleMemory: false). */
  readonly memoryReclaimer?: IdleMemoryReclaimer;
  /** How messages name the server's options: by key, or by the CLI's flags when it started the server. */
  readonly settingName: SettingName;

  constructor(options: ServerOptions) {
    // A wrong option (a flag's value, once the CLI has passed it on) reads as what was expected, and a misspelt one is refused.
    this.options = parseOptions('Server', serverOptionsSchema, options, Object.keys(SERVER_OTHER_OPTIONS));
    this.settingName = options.settingName ?? optionKeyName;
    checkMonitoringOptions('Server', this.options.monitoring, this.settingName);
    checkLoggerOption('Server', options.logger);
    if (!(options.backends?.length > 0)) throw new Error('a Server needs at least one backend (option backends)');
    this.backends = options.backends;
    this.logger = options.logger ?? defaultLibraryLogger();
    this.responseCache = options.responseCache;
    // A request reads from regions at most what a body may carry by default (64 MiB), and never more than the server holds in flight.
    this.sharedMemory = new SystemSharedMemory({
      allowed: this.options.allowClientShm,
      maxRequestBytes: Math.min(64 * 1024 * 1024, this.options.maxInflightBytes),
      allowing: this.settingName('allowClientShm', true),
      anyAddress: this.options.clientShmFromAnyAddress,
      allowingAnyAddress: this.settingName('clientShmFromAnyAddress', true),
    });
    this.bodies = new ByteBudget(this.options.maxInflightBytes, this.settingName('maxInflightBytes'));
    this.traceSettings = options.traceSettings ?? new TraceSettings({ exporting: false, settingName: this.settingName });
    this.logSettings = new LogSettings(this.logger);
    this.traffic = new TrafficRouter((name, version) => this.repository.get(name, version), this.logger);
    this.repository = new ModelRepository({
      root: this.options.modelRepository,
      backends: options.backends,
      logger: this.logger,
      defaultMaxBatchSize: this.options.defaultMaxBatchSize,
      maxQueueSize: this.options.maxQueueSize,
      maxQueueSizeSetting: this.settingName('maxQueueSize'),
      maxQueueBytes: this.options.maxQueueBytes,
      maxQueueWaitMs: this.options.maxQueueWaitMs,
      observers: options.observers,
      responseCacheStore: this.responseCache,
      cacheSetting: this.settingName('cacheConfig'),
      monitoring: this.options.monitoring,
      // An ensemble's steps are requests like any client's: on-demand loading and traffic policies apply to them.
      callStep: (request, context) => this.infer(request, context),
      stepIdentity: (step) =>
        versionIdentity(() => {
          const served = this.model(step.model, step.version);
          // A version that traffic weights draw per request cannot be named before the call.
          return step.version === undefined && this.traffic.weightsOf(served) ? undefined : served;
        }),
      holdStepVersion: (step) => this.holdStepVersion(step),
      holdStep: (name) => this.hold(name),
      allowCodeModels: this.options.allowCodeModels,
      codeModelsSetting: this.settingName('allowCodeModels', true),
      loadsOnDemand: (name) => this.residency.residencyOf(name) === 'on_demand',
      // In poll mode nobody asked for the copy a second repository gained: what serves is not to go down for it.
      keepServingBesideCopies: this.options.modelControlMode === 'poll',
    });
    this.residency = new ModelResidency({
      repository: this.repository,
      budgetBytes: this.options.modelMemoryBudget,
      loadWaitMs: this.options.modelLoadWaitMs,
      maxWaiting: this.options.maxQueueSize,
      settingName: this.settingName,
      logger: this.logger,
    });
    if (this.options.reclaimIdleMemory) {
      this.memoryReclaimer = new IdleMemoryReclaimer(() => this.activity(), processMemory(), this.options.reclaimIdleMemory, this.logger);
    }
    if (this.options.modelControlMode === 'poll') {
      this.poller = new RepositoryPoller({
        repository: this.repository,
        intervalMs: this.options.repositoryPollSecs * 1000,
        logger: this.logger,
        load: (name) => this.reloadChanged(name),
        unload: (name) => this.repository.unload(name).finally(() => this.residency.unloaded(name)),
      });
    }
  }

  /** Requests started and in flight over every loaded version, however they were called (front ends, jobs, tune, eval), and the bodies held. */
  private activity(): ServerActivity {
    let started = this.requestsStarted;
    let inFlight = 0;
    for (const version of this.repository.loadedVersions()) {
      const activity = version.activity;
      started += activity.started;
      inFlight += activity.inFlight;
    }
    return { requestsStarted: started, requestsInFlight: inFlight, bodyBytesHeld: this.bodies.inUse };
  }

  /** A polled change: a model in memory is reloaded; an on-demand one not in memory loads its new files on its next request. */
  private reloadChanged(name: string): Promise<void> {
    if (this.residency.residencyOf(name) === 'on_demand' && !this.residency.isResident(name)) return Promise.resolve();
    return this.residency.load(name, () => this.repository.load(name));
  }

  /**
   * A model named to pin or to load at start that the repository lacks is the operator's typo (as Triton, which does
   * not start then): refused before anything listens or loads, instead of a server that is ready without it.
   */
  async checkNamedModels(discovered?: readonly string[]): Promise<void> {
    const models = new Set(discovered ?? (await this.repository.discover()));
    const { pinModels, loadModels } = this.options;
    // Said without the CLI's flags: batch jobs and image commands name their model through this too.
    for (const [role, names] of [[' to pin', pinModels], ['', loadModels.filter((name) => name !== '*')]] as const) {
      const missing = names.filter((name) => !models.has(name));
      if (missing.length > 0) {
        const named = missing.map((name) => `'${name}'`).join(', ');
        throw notFound(`no model ${named}${role} in the repository ${[this.options.modelRepository].flat().join(', ')} (it has ${[...models].join(', ') || 'no models'})`);
      }
    }
  }

  /**
   * Loads the models the control mode asks for. A model that fails is reported and the rest still load. A second call
   * returns the first's promise: the models load once, and its poller and memory reclaimer start once.
   */
  start(): Promise<this> {
    // A closed server's repository and services are shut: starting would load models nothing could reach or release.
    if (this.closing) return Promise.reject(new Error('start() after close(): a closed Server cannot start again; create a new one (createServer)'));
    this.startup ??= this.loadAtStart();
    return this.startup;
  }

  private async loadAtStart(): Promise<this> {
    const { modelControlMode, loadModels } = this.options;
    // A hint to build a profile names the repository unless it is the bundled one (profile's default), but not by its
    // path: clients are told no server paths (the load's warning in the log has it).
    const bundled = await Promise.all([this.options.modelRepository].flat().map(isBundledRepository));
    this.profileHintRepository = bundled.every(Boolean) ? undefined : UNNAMED_REPOSITORY;
    const discovered = await this.repository.discover();
    await this.checkNamedModels(discovered);
    if (discovered.length === 0) {
      this.logger.warn(`the model repository ${[this.options.modelRepository].flat().join(', ')} holds no model folders (<model>/<version>/model.onnx): nothing to serve until one is added`);
    }
    if ((modelControlMode === 'none' || modelControlMode === 'poll') && loadModels.length > 0) {
      this.logger.warn(`${this.settingName('loadModels')} has no effect with ${this.settingName('modelControlMode', modelControlMode)}, which loads every model at start; use explicit or on_demand to choose`);
    }
    if (modelControlMode !== 'on_demand' && this.options.pinModels.length > 0) {
      this.logger.warn(`${this.settingName('pinModels')} has no effect with ${this.settingName('modelControlMode', modelControlMode)}, which never unloads a model to make room; it is for on_demand`);
    }
    for (const { folder, problem } of await this.repository.unservableFolders()) {
      this.logger.warn(`the folder ${quoteName(folder)} in the model repository is not served: ${problem}`);
    }
    for (const file of await this.repository.looseModelFiles()) {
      const model = file.replace(/\.onnx$/i, '');
      this.logger.warn(`${file} lies directly in the model repository and is not served: a model is a folder, ${model}/1/model.onnx`);
    }
    // Each model's config is read once here: whether it is an ensemble, and how it asks to be kept.
    const configs = new Map(await Promise.all(discovered.map(async (name) => [name, await this.repository.configOf(name).catch(() => undefined)] as const)));
    // An ensemble holds no memory of its own and is never unloaded to make room: its steps are, each
    // held by the requests that reach it. (Its load, which loads its steps, must also stay out of the
    // one-at-a-time loads its steps go through.) A model whose code calls others (a built-in pipeline)
    // loads its steps too, and is kept the same way.
    const ensembles = new Set(discovered.filter((name) => callsOtherModels(configs.get(name), this.backends)));
    const plan = planResidency(this.options, discovered.filter((name) => !ensembles.has(name)), configs, this.logger);
    for (const [name, residency] of plan) this.residency.declare(name, residency);
    const names =
      modelControlMode === 'on_demand'
        ? discovered.filter((name) => plan.get(name) === 'pinned' || loadModels.includes(name) || loadModels.includes('*'))
        : modelControlMode !== 'explicit' || loadModels.includes('*')
          ? discovered.filter((name) => plan.get(name) !== 'on_demand')
          : loadModels.filter((name) => name !== '*');
    await this.poller?.baseline();
    const loadAll = (batch: readonly string[]) =>
      Promise.all(
        batch.map(async (name) => {
          this.requiredAtStart.add(name);
          // The repository logs a failed load and keeps it as the model's state; the others keep loading. A load the
          // residency refused (no room in the memory budget) never reached it: recorded there and logged here.
          await this.residency.load(name, () => this.repository.load(name)).catch((error: Error) => {
            if (!(error instanceof NereidError) || error.code !== 'UNAVAILABLE' || this.repository.hasState(name)) return;
            this.logger.error({ model: name }, `model '${name}' was not loaded: ${error.message}`);
            this.repository.recordNotLoaded(name, error.message);
          });
        }),
      );
    // Ensembles (and pipelines) load after the other models, which are their steps: loading one loads any step not loaded yet, which
    // would otherwise be loaded twice.
    await loadAll(names.filter((name) => !ensembles.has(name)));
    await loadAll(names.filter((name) => ensembles.has(name)));
    this.started = true;
    // A stop() or close() during the loads (SIGTERM at start) has stopped what would otherwise start here.
    if (this.stopping) return this;
    this.poller?.start();
    this.memoryReclaimer?.start();
    return this;
  }

  get live(): boolean {
    return !this.closing;
  }

  /**
   * Shutdown's first step: readiness turns false, so that load balancers stop sending, while
   * requests still arriving are served; front ends close their connections as each answer goes.
   */
  drain(): void {
    this.draining = true;
  }

  /**
   * Graceful shutdown, the one the CLI runs on SIGTERM: readiness turns false (drain()); every attached front end stops
   * taking connections and answers the requests it has received, each connection closing after its answer (an idle
   * keep-alive one at its keep-alive timeout, which its client was told); after `timeoutMs` the connections still open
   * are cut. Then the server closes (close(), which lets computations already running end). Resolves whether every
   * request received was answered: false when the cut at `timeoutMs` took one unanswered (idle connections cut then
   * fail nothing). A second call waits for the first.
   */
  stop(options: z.input<typeof stopOptionsSchema> = {}): Promise<{ drained: boolean }> {
    const { timeoutMs } = parseOptions('Server.stop', stopOptionsSchema, options);
    this.stopped ??= (async () => {
      this.drain();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
      const frontEnds = Promise.all([...this.frontEnds].map((frontEnd) => frontEnd.drain(timeoutMs)));
      const closedInTime = await Promise.race([frontEnds.then(() => true), timedOut]);
      clearTimeout(timer);
      // Idle keep-alive connections close at their keep-alive timeout, which may be longer than the drain's: cutting
      // them fails no request, so the drain still counts as complete.
      const drained = closedInTime || this.cutConnections() === 0;
      if (!closedInTime) await frontEnds;
      await this.close();
      return { drained };
    })();
    return this.stopped;
  }

  /** Takes a front end into stop()'s drain; what it returns takes it out (a front end closed on its own). */
  attachFrontEnd(frontEnd: DrainableFrontEnd): () => void {
    this.frontEnds.add(frontEnd);
    return () => void this.frontEnds.delete(frontEnd);
  }

  /**
   * Requests a model holds unanswered (queued or running), per version: where the requests a cut at the shutdown timeout
   * fails were. Counted at each model: an ensemble's request at the ensemble and at the step it runs, a form's images each.
   */
  unansweredRequests(): { model: string; version: string; requests: number }[] {
    return this.repository
      .loadedVersions()
      .filter((version) => version.activity.inFlight > 0)
      .map((version) => ({ model: version.name, version: version.version, requests: version.activity.inFlight }));
  }

  /** Closes every attached front end's open connections at once: what stop() does when its time is up. Answers how many client requests the cut left unanswered. */
  cutConnections(): number {
    return [...this.frontEnds].reduce((sum, frontEnd) => sum + (frontEnd.cut ? (frontEnd.cut() ?? 1) : 0), 0);
  }

  /** Draining or closed: a front end closes each connection after its current answer. */
  get stopping(): boolean {
    return this.draining || this.closing;
  }

  get ready(): boolean {
    if (!this.started || this.stopping) return false;
    if (!this.options.strictReadiness) return true;
    const unavailable = new Set(this.repository.unavailableModels());
    return ![...this.requiredAtStart].some((name) => unavailable.has(name));
  }

  metadata(): { name: string; version: string; extensions: string[] } {
    const extensions: string[] = [...SERVER_EXTENSIONS];
    if (this.sharedMemory.allowed) extensions.push('system_shared_memory');
    return { name: 'nereid', version: VERSION, extensions };
  }

  model(name: string, version?: string): ModelVersion {
    checkModelName(name);
    try {
      return this.repository.get(name, version);
    } catch (error) {
      // The HTTP port opens before the models load (so that liveness answers): until start() is done, a model not
      // known yet may be one still loading, and a 503 tells a proxy to try another replica where a 404 would be final.
      // One whose load failed already keeps its answer and reason.
      if (!this.started && error instanceof NereidError && error.code === 'NOT_FOUND' && !this.repository.hasState(name)) {
        // Before start() a library caller with no front end learns what it forgot, rather than to retry a start that
        // nothing runs; a server that listens first and starts next (nereid serve) is starting, as its clients are told.
        if (this.startup === undefined && this.frontEnds.size === 0) {
          throw unavailable(`model ${quoteName(name)} is not available yet: the server's models load at start(), which has not been called`);
        }
        throw overloaded(`model ${quoteName(name)} is not available yet: the server is starting and still loading its models`, STARTING_RETRY_AFTER_MS);
      }
      throw error;
    }
  }

  /**
   * Holds a model in memory for one request, loading it first when it is on demand and not loaded;
   * the function returned lets it go. Undefined when its residency is not managed (the control mode
   * alone decides whether it is loaded).
   */
  private hold(name: string): (() => void) | Promise<() => void> | undefined {
    const lease = this.residency.lease(name);
    if (lease !== undefined || this.options.modelControlMode !== 'on_demand' || this.residency.residencyOf(name) !== undefined) return lease;
    if (this.repository.versionsOf(name).length > 0) return undefined; // loaded and not managed: an ensemble
    // on_demand mode serves every model of the repository, folders added since start too.
    const letGo = () => undefined;
    return this.repository.folderOf(name).then(
      async () => {
        if (callsOtherModels(await this.repository.configOf(name).catch(() => undefined), this.backends)) {
          await this.loadUnmanaged(name);
          return letGo;
        }
        this.residency.declare(name, 'on_demand');
        return this.residency.lease(name)!;
      },
      () => letGo, // not in the repository: the request's own lookup says so
    );
  }

  /**
   * The version that would run an ensemble's step now, held for one of the ensemble's requests; undefined when none is
   * held — an on-demand model, one whose traffic weights draw a version per request, one not loaded —, the step then
   * routed when it starts.
   */
  private holdStepVersion(step: EnsembleStep): HeldStep | undefined {
    // An on-demand step loads when its step starts, and holding it (resident) from the request's start would keep
    // it from being unloaded to make room for an earlier step of the same request, which would then wait on itself.
    if (this.residency.residencyOf(step.model) === 'on_demand') return undefined;
    let served: ModelVersion;
    try {
      served = this.model(step.model, step.version);
    } catch {
      return undefined;
    }
    if (step.version === undefined && this.traffic.weightsOf(served)) return undefined;
    const hold = served.hold();
    if (!hold) return undefined;
    return {
      call: (request, context) => {
        this.requestsStarted += 1;
        return this.inferNow(request, context, hold);
      },
      release: () => hold.release(),
    };
  }

  /** One load of a model residency does not manage (an ensemble) for every request that finds it not loaded. */
  private loadUnmanaged(name: string): Promise<void> {
    return this.unmanagedLoads.run(name, () => this.repository.load(name));
  }

  async modelMetadata(name: string, version?: string) {
    const release = await this.hold(name);
    try {
      const model = this.model(name, version);
      return model.metadata(version ? [model] : this.repository.loadedVersions(name));
    } finally {
      release?.();
    }
  }

  async modelConfig(name: string, version?: string) {
    const release = await this.hold(name);
    try {
      return this.model(name, version).config;
    } finally {
      release?.();
    }
  }

  modelReady(name: string, version?: string): boolean {
    checkModelName(name);
    return this.repository.isReady(name, version);
  }

  /** Triton's statistics extension: every loaded version, or one model's, or one version's. */
  modelStatistics(name?: string, version?: string): { model_stats: ReturnType<ModelVersion['statistics']['toJSON']>[] } {
    const pricing = { usdPerCoreHour: this.options.costPerCoreHour };
    if (name === undefined) return { model_stats: this.repository.loadedVersions().map((model) => model.statistics.toJSON(pricing)) };
    checkModelName(name);
    const versions = version ? [this.repository.get(name, version)] : this.repository.loadedVersions(name);
    if (versions.length === 0) this.repository.get(name); // throws the reason it has none
    return { model_stats: versions.map((model) => model.statistics.toJSON(pricing)) };
  }

  /** Triton's trace extension: the settings in effect globally, or for one model (its own, else the global ones). */
  traceSetting(model?: string): TraceSettingAnswer {
    if (model !== undefined) this.model(model);
    return this.traceSettings.settings(model);
  }

  /** Changes trace settings, globally or for one model (`null` clears a model's override of a setting). */
  updateTraceSetting(changes: Readonly<Record<string, unknown>>, model?: string): TraceSettingAnswer {
    if (model !== undefined) this.model(model);
    return this.traceSettings.update(changes, model);
  }

  /** Triton's logging extension: the logger's settings now. */
  logging(): LogSettingsAnswer {
    return this.logSettings.settings();
  }

  updateLogging(changes: Readonly<Record<string, unknown>>): LogSettingsAnswer {
    return this.logSettings.update(changes);
  }

  /** The model's datatype and shape check of one input, for decoders: a wrong shape is reported before the binary size it leads to. */
  inputShapeCheck(name: string, version?: string): InputShapeCheck {
    return (input) => this.model(name, version).checkInputShape(input);
  }

  /** The model's inputs as a raw binary request (Inference-Header-Content-Length: 0) reads them: one, typed by its config. */
  rawInputModel(name: string, version?: string): RawInputModel {
    const model = this.model(name, version);
    return {
      batched: model.batched,
      inputs: model.clientConfig.input.map((input) => ({ name: input.name, datatype: datatypeOfConfig(input), dims: input.dims, optional: input.optional })),
    };
  }

  /** Drift, out-of-distribution share and accuracy of one version over its recent traffic (the served version when none is named). */
  modelMonitor(name: string, version?: string): MonitorAnswer {
    const model = this.model(name, version);
    const backend = isEnsembleConfig(model.config) ? 'ensemble' : model.config.backend;
    return monitorAnswer(model.name, model.version, model.monitor, this.options.monitoring === false ? this.settingName('monitoring', false) : undefined, this.profileHintRepository, backend);
  }

  /**
   * True labels for earlier predictions, by request id: the realised accuracy the monitors report. For a version, its
   * predictions; for the model, each id's label goes to whichever loaded version made that prediction (canary weights,
   * version_policy all), the served version first.
   */
  feedback(name: string, version: string | undefined, body: unknown): FeedbackAnswer {
    const model = this.model(name, version);
    const others = version === undefined ? this.repository.loadedVersions(model.name).filter((loaded) => loaded !== model) : [];
    return applyFeedback(model.name, [model, ...others].map((loaded) => ({ version: loaded.version, monitor: loaded.monitor })), body);
  }

  /** Which of /classify and /detect take a model's images: what a hint may send its client to. */
  imageRoutes(name: string, version?: string): ImageRoutes {
    return imageRoutesOf(this.model(name, version));
  }

  /** Photos in, labels out, for a model whose input declares image pre-processing. Versions are drawn by the model's traffic policy, as for infer. */
  classify(name: string, images: readonly Buffer[], options: { version?: string; topK?: number } = {}, context: RequestContext = {}) {
    return this.withRouted(name, options.version, (model) => classifyImages(model, images, options, context));
  }

  /** Photos in, labelled boxes out, for a detector (see detectObjects); `query` holds threshold, max_detections, iou_threshold. Versions are drawn by the traffic policy, as for infer. */
  detect(name: string, images: readonly Buffer[], options: { version?: string; query?: unknown } = {}, context: RequestContext = {}) {
    return this.withRouted(name, options.version, (model) => detectObjects(model, images, options.query, context));
  }

  /** Runs `work` on the version that answers (named, or drawn by the traffic policy), the model held in memory until it ends. */
  private async withRouted<T extends object>(name: string, version: string | undefined, work: (model: ModelVersion) => Promise<T>) {
    if (this.closing) throw shuttingDown();
    const release = await this.hold(name);
    try {
      const model = this.routed({ model: name, version });
      return { model: model.name, version: model.version, ...(await work(model)) };
    } finally {
      release?.();
    }
  }

  /**
   * Before a request's body is read: refuses what could not be served now (unknown model, model not
   * ready, its queue full or too far behind, the server's body budget spent) — cheaply, as 503 with
   * a retry hint where waiting helps — and otherwise reserves the body's `bytes` until the answer.
   */
  admit(name: string, version: string | undefined, bytes: number, deadline?: number): BodyReservation | Promise<BodyReservation> {
    if (this.closing) throw shuttingDown();
    this.requestsStarted += 1;
    const held = this.hold(name);
    if (held === undefined) return this.admitNow(name, version, bytes, deadline);
    // The model stays in memory until the answer: the reservation's release lets it go.
    const admitHeld = (release: () => void) => {
      try {
        const reservation = this.admitNow(name, version, bytes, deadline);
        reservation.onRelease(release);
        return reservation;
      } catch (error) {
        release();
        throw error;
      }
    };
    return typeof held === 'function' ? admitHeld(held) : held.then(admitHeld);
  }

  private admitNow(name: string, version: string | undefined, bytes: number, deadline?: number): BodyReservation {
    const model = this.model(name, version);
    model.admit(bytes, deadline);
    const reservation = this.bodies.reserve();
    try {
      reservation.holdAtLeast(bytes);
    } catch (error) {
      model.recordRefusal(asNereidError(error));
      throw error;
    }
    return reservation;
  }

  infer(request: InferenceRequest, context: RequestContext = {}): Promise<InferenceResponse> {
    if (this.closing) return Promise.reject(shuttingDown());
    // A library caller may ask for classes as the wire does, in an output's parameters: read as the codecs read them.
    if (request.outputs?.some(asksClassesByParameter)) {
      try {
        request = { ...request, outputs: request.outputs.map((output) => (asksClassesByParameter(output) ? requestedOutputOf(output.name, output.parameters) : output)) };
      } catch (error) {
        return Promise.reject(error);
      }
    }
    this.requestsStarted += 1;
    const held = this.hold(request.model);
    if (held === undefined) return this.inferNow(request, context);
    const inferHeld = (release: () => void) => {
      const answer = this.inferNow(request, context);
      answer.then(release, release);
      return answer;
    };
    return typeof held === 'function' ? inferHeld(held) : held.then(inferHeld);
  }

  /** `held`: the version to run, held for the request (an ensemble's step), instead of the one routing would choose. */
  private inferNow(request: InferenceRequest, context: RequestContext, held?: VersionHold): Promise<InferenceResponse> {
    try {
      const model = held?.version ?? this.routed(request);
      const traffic = model.config.traffic;
      const answer = held ? held.infer(request, context) : model.infer(request, context);
      if (!traffic?.shadow || request.version || traffic.shadow.version === model.version) return answer;
      const started = performance.now();
      return answer.then((response) => {
        this.traffic.copyToShadow(model, traffic.shadow!, request, response, performance.now() - started);
        return response;
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The version that answers: the one named, else the traffic policy's draw, else the highest ready. */
  private routed(request: Pick<InferenceRequest, 'model' | 'version' | 'parameters'>): ModelVersion {
    const served = this.model(request.model, request.version);
    if (request.version) return served;
    // Most models weigh no versions: their requests skip the draw (and the list of loaded versions) entirely.
    const weights = this.traffic.weightsOf(served);
    if (!weights) return served;
    return chooseVersion({ ...served.config.traffic, weights }, this.repository.loadedVersions(request.model), request) ?? served;
  }

  /**
   * Shifts a model's traffic at run time (`nereid promote`): new weights for the versions it serves,
   * kept until changed again or the server restarts, over the config's. A management operation,
   * allowed in explicit model-control mode.
   */
  setTrafficWeights(name: string, weights: unknown): { model: string; weights: Record<string, number> } {
    requireExplicitControl(this.options.modelControlMode, this.settingName, 'traffic change');
    checkModelName(name);
    const loaded = this.repository.loadedVersions(name).map((version) => version.version);
    if (loaded.length === 0) this.repository.get(name); // throws why it has none
    return this.traffic.setWeights(name, weights, loaded);
  }

  /** Every model's shadow comparisons, for metrics. */
  shadowComparisons(): (ShadowSummary & { model: string })[] {
    return this.traffic.shadowComparisons();
  }

  /** The shadow comparisons of a model (its `traffic.shadow`): per primary and shadow version, how their answers differ. */
  modelComparison(name: string): { model: string; shadows: ShadowSummary[] } {
    checkModelName(name);
    this.repository.get(name); // unknown or unloaded: its error
    return { model: name, shadows: this.traffic.comparisonsOf(name) };
  }

  /**
   * Every model of the repository at a glance (GET /v2/models): its ready versions and one state,
   * READY when a version is, with why not otherwise. The repository index has the per-version detail.
   */
  async modelList(): Promise<{ models: ModelListEntry[]; repository_error?: string }> {
    const { rows, unreadable } = await this.repositoryListing();
    const models = modelListOf(rows);
    return unreadable === undefined ? { models } : { models, repository_error: unreadable };
  }

  /**
   * Triton's repository index; versions a traffic policy weighs also carry their share of unversioned requests.
   * While the repository cannot be read, the models the server holds, as they serve (the log says why).
   */
  async repositoryIndex(readyOnly = false): Promise<IndexRow[]> {
    return (await this.repositoryListing(readyOnly)).rows;
  }

  /** The index, and why the repository could not be read when it could not. */
  private async repositoryListing(readyOnly = false): Promise<{ rows: IndexRow[]; unreadable?: string }> {
    const { rows, unreadable } = await this.repository.listing(readyOnly);
    const residency = new Map(this.residency.summary().map((tenant) => [tenant.model, tenant]));
    return { unreadable, rows: rows.map((row) => {
      const tenant = residency.get(row.name);
      if (tenant) row = withResidency(row, tenant, (name) => this.residency.evicted(name));
      if (row.version === undefined || row.state !== 'READY') return row;
      const share = this.traffic.shareOf(this.repository.get(row.name, row.version), () => this.repository.loadedVersions(row.name));
      return share === undefined ? row : { ...row, traffic_share: share };
    }) };
  }

  /**
   * Loads exactly these versions of a model side by side, whatever its version policy says — for
   * tools that compare or score named versions (eval, batch jobs) — after checking each has a folder.
   */
  async loadVersions(name: string, versions: readonly string[]): Promise<void> {
    const onDisk = (await versionFolders(await this.repository.folderOf(name))).map(String);
    const missing = versions.filter((version) => !onDisk.includes(version));
    if (missing.length > 0) {
      throw notFound(`model '${name}' has no version ${missing.join(', ')} in the repository (its versions: ${onDisk.join(', ') || 'none'})`);
    }
    // A model not loaded yet starts from its config files: loading it by its policy first would load versions nobody
    // asked for, and fail on a broken one.
    const base = this.modelReady(name) ? await this.modelConfig(name) : await this.repository.configOf(name);
    const config = { ...base, version_policy: { specific: { versions: versions.map(Number) } } };
    // The repository's own config with another policy: loaded as a config given with a load, but not held to a client's bounds.
    this.checkLoadable(name);
    await this.loadWithConfig(name, new RepositoryConfig(config));
  }

  /** The backend a model's config files name ('ensemble' for an ensemble), whether or not it is loaded. */
  modelBackend(name: string): Promise<string> {
    return this.repository.backendOf(name);
  }

  /**
   * Loads or reloads a model from the repository; `config` (a JSON string) replaces its config file, as in Triton.
   * As in Triton, the load fails when a version its policy names did not load, though the others then serve;
   * `everyVersion: false` is for a tool that only needs the version the policy serves.
   */
  async loadModel(name: string, parameters: Record<string, unknown> = {}, options: { everyVersion?: boolean } = {}): Promise<void> {
    this.checkLoadable(name);
    await this.loadWithConfig(name, loadRequestConfig(parameters), options);
  }

  /** A load is refused while the server shuts down, outside explicit control, and for a name no folder can have. */
  private checkLoadable(name: string): void {
    if (this.closing) throw shuttingDown();
    requireExplicitControl(this.options.modelControlMode, this.settingName, 'load');
    checkModelName(name);
  }

  /** A load (checkLoadable first) with the config a load request gave (a client's), with one built from the repository's own, or with none. */
  private async loadWithConfig(name: string, override: unknown, { everyVersion = true }: { everyVersion?: boolean } = {}): Promise<void> {
    const failed = (error: unknown) => asLoadFailure(name, error);
    if (this.options.modelControlMode === 'on_demand' && this.residency.residencyOf(name) === undefined) {
      await this.repository.folderOf(name).catch(failed);
      this.residency.declare(name, 'on_demand');
    }
    // A request without a config loads the repository's files, as Triton does, even after one with a config.
    await this.residency.load(name, () => this.repository.load(name, override, { fromFiles: true })).catch(failed);
    // A failure of the whole model threw above: what is left here are versions of a model that serves.
    const failures = everyVersion ? this.repository.loadFailures(name).filter((failure) => failure.version !== undefined) : [];
    if (failures.length > 0) {
      throw invalidArgument(`load failed for model '${name}': ${failures.map(({ version, reason }) => `version ${version} is at UNAVAILABLE state: ${reason}`).join('; ')}; its other versions serve`);
    }
  }

  /** Unloads a model; `unload_dependents: true` unloads an ensemble's steps too (those no other loaded ensemble uses), as in Triton. */
  async unloadModel(name: string, parameters: Record<string, unknown> = {}): Promise<void> {
    requireExplicitControl(this.options.modelControlMode, this.settingName, 'unload');
    checkModelName(name);
    const unloaded = await this.repository.unload(name, { dependents: unloadsDependents(parameters) });
    for (const model of unloaded) this.residency.unloaded(model);
  }

  /** Per model whose residency is managed: whether it is in memory, what it was charged, its loads and evictions. */
  residencySummary(): { budget_bytes?: number; used_bytes: number; models: ResidencySummary[] } {
    return { budget_bytes: this.residency.budgetBytes, used_bytes: this.residency.usedBytes, models: this.residency.summary() };
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Front ends still attached (close() without stop()) stop listening and have their connections cut at once: left
    // alone they would answer "not ready" for ever and keep the process alive. stop() has closed them by now.
    if (this.frontEnds.size > 0) {
      const closed = Promise.all([...this.frontEnds].map((frontEnd) => frontEnd.drain(0)));
      this.cutConnections();
      await closed;
    }
    this.memoryReclaimer?.stop();
    // A load under way (a poll's reload, a warmup at start) would only be discarded: it stops instead of holding the exit.
    this.repository.abandonLoads();
    await this.poller?.stop();
    await this.repository.close();
    await this.responseCache?.close();
    this.sharedMemory.close();
  }
}
