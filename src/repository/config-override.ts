/**
 * The config a client sends with a load request: what it may change of how a model is served, and the bounds it is
 * held to; and the config a tool builds from the repository's own, which is not held to them.
 */
import { availableParallelism } from 'node:os';
import { answeredModelFilename, imagePreprocessingSchema, parameterValue, type ModelConfig } from '../config/model-config.js';
import { BYTES_ELEMENT_MEMORY, declaredWarmupMemory, tensorMemory, warmupMemoryProblem } from './model-warmup.js';

/** The most an override from the load API may ask for: a client must not be able to starve the machine with it. */
export const OVERRIDE_LIMITS = {
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
export function checkOverride(override: ModelConfig, own: ModelConfig | undefined): void {
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
export const fromClient = (configOverride: unknown): boolean => configOverride !== undefined && !(configOverride instanceof RepositoryConfig);
