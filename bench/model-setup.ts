/**
 * Resolves the model under test: its .onnx file (for the in-process ceiling and the peer) and the
 * repository Nereid serves. Overrides (--max-batch-size, --queue-delay-us, --instances), the response
 * cache switch of the nereid-cache target and the built-in `simple` model go into a temporary
 * repository with a config.yaml, so models/ is never touched.
 */
import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { parsePbtxt } from '../src/config/pbtxt.js';
import type { BenchOptions } from './options.js';

const CONFIG_FILES = ['config.pbtxt', 'config.yaml', 'config.yml', 'config.json'] as const;

export type RawConfig = Record<string, unknown>;

export interface PreparedModel {
  name: string;
  /** The model file every target runs. */
  modelPath: string;
  /** The repository passed to `nereid serve`. */
  repository: string;
  /** The config Nereid reads (after overrides), as raw fields. */
  config: RawConfig;
  /** Where that config came from, for the report. */
  configSource: string;
  cleanup(): Promise<void>;
}

/** Triton's "simple" example with room to batch: the built-in tiny model. */
export const SIMPLE_BENCH_CONFIG: RawConfig = {
  name: 'simple',
  platform: 'onnxruntime_onnx',
  max_batch_size: 64,
  input: [
    { name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16] },
    { name: 'INPUT1', data_type: 'TYPE_INT32', dims: [16] },
  ],
  output: [
    { name: 'OUTPUT0', data_type: 'TYPE_INT32', dims: [16] },
    { name: 'OUTPUT1', data_type: 'TYPE_INT32', dims: [16] },
  ],
  dynamic_batching: { max_queue_delay_microseconds: 0 },
};

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function readRawConfig(folder: string): Promise<{ config: RawConfig; file?: string }> {
  for (const file of CONFIG_FILES) {
    const path = join(folder, file);
    if (!(await exists(path))) continue;
    const text = await readFile(path, 'utf8');
    const parsed = file === 'config.pbtxt' ? parsePbtxt(text, file) : file === 'config.json' ? JSON.parse(text) : parseYaml(text);
    return { config: (parsed ?? {}) as RawConfig, file };
  }
  return { config: {} };
}

/** The highest version folder that holds the model file among those the version policy serves (a `specific` list, else all). */
async function latestModelFile(folder: string, filename: string, config: RawConfig): Promise<string> {
  const policy = config.version_policy as { specific?: { versions?: number[] } } | undefined;
  const served = policy?.specific?.versions?.map(Number);
  const versions = (await readdir(folder, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory() && /^\d+$/.test(entry.name))
    .map((entry) => Number(entry.name))
    .filter((version) => !served || served.includes(version))
    .sort((a, b) => b - a);
  for (const version of versions) {
    const path = join(folder, String(version), filename);
    if (await exists(path)) return path;
  }
  throw new Error(`no version folder of ${folder} holds ${filename}`);
}

function hasOverrides(options: BenchOptions): boolean {
  return (
    options.maxBatchSize !== undefined ||
    options.queueDelayUs !== undefined ||
    options.instances !== undefined ||
    options.intraOpThreads !== undefined ||
    options.parameters !== undefined
  );
}

/** The original config plus the benchmark's overrides; any override turns dynamic batching on. */
export function applyOverrides(original: RawConfig, options: BenchOptions, forceBatching = false): RawConfig {
  const config: RawConfig = structuredClone(original);
  if (options.maxBatchSize !== undefined) config.max_batch_size = options.maxBatchSize;
  const maxBatchSize = config.max_batch_size === undefined ? undefined : Number(config.max_batch_size);
  if (maxBatchSize === 0) {
    delete config.dynamic_batching;
  } else if (forceBatching || hasOverrides(options) || config.dynamic_batching) {
    const batching = { ...((config.dynamic_batching as RawConfig | undefined) ?? {}) };
    if (options.queueDelayUs !== undefined) batching.max_queue_delay_microseconds = options.queueDelayUs;
    batching.max_queue_delay_microseconds ??= 0;
    const preferred = batching.preferred_batch_size;
    if (Array.isArray(preferred) && maxBatchSize !== undefined) {
      batching.preferred_batch_size = preferred.filter((size) => Number(size) <= maxBatchSize);
    }
    config.dynamic_batching = batching;
  }
  if (options.instances !== undefined) config.instance_group = [{ count: options.instances, kind: 'KIND_CPU' }];
  if (options.intraOpThreads !== undefined || options.parameters) {
    config.parameters = {
      ...((config.parameters as RawConfig | undefined) ?? {}),
      ...options.parameters,
      ...(options.intraOpThreads !== undefined ? { intra_op_thread_count: String(options.intraOpThreads) } : {}),
    };
  }
  return config;
}

/** What the nereid-cache target adds to the model's config: Triton's per-model switch for the response cache. */
export const RESPONSE_CACHE_CONFIG: RawConfig = { response_cache: { enable: true } };

/**
 * The model under test in a repository Nereid can serve. `extra` (e.g. RESPONSE_CACHE_CONFIG) is
 * merged over the config after the overrides and always means a temporary copy.
 */
export async function prepareModel(options: BenchOptions, extra?: RawConfig): Promise<PreparedModel> {
  if (options.model === 'simple') {
    const dir = await mkdtemp(join(tmpdir(), 'nereid-bench-'));
    const config = { ...applyOverrides(SIMPLE_BENCH_CONFIG, options, true), ...extra };
    await writeModel(dir, 'simple', 1, addSubModel(), undefined, { 'config.yaml': stringifyYaml(config) });
    return {
      name: 'simple',
      modelPath: join(dir, 'simple', '1', 'model.onnx'),
      repository: dir,
      config,
      configSource: `generated (addSubModel) in ${dir}`,
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const folder = join(options.modelRepository, options.model);
  if (!(await exists(folder))) throw new Error(`model '${options.model}' is not in ${options.modelRepository}`);
  const { config: original, file } = await readRawConfig(folder);
  const filename = typeof original.default_model_filename === 'string' ? original.default_model_filename : 'model.onnx';
  if (!hasOverrides(options) && !extra) {
    return {
      name: options.model,
      modelPath: await latestModelFile(folder, filename, original),
      repository: options.modelRepository,
      config: original,
      configSource: file ? join(folder, file) : `none (completed from the model)`,
      cleanup: async () => undefined,
    };
  }
  const dir = await mkdtemp(join(tmpdir(), 'nereid-bench-'));
  const copy = join(dir, options.model);
  await cp(folder, copy, { recursive: true });
  for (const name of CONFIG_FILES) await rm(join(copy, name), { force: true });
  const config = { ...applyOverrides(original, options), ...extra };
  await writeFile(join(copy, 'config.yaml'), stringifyYaml(config));
  return {
    name: options.model,
    modelPath: await latestModelFile(copy, filename, config),
    repository: dir,
    config,
    configSource: `${file ? join(folder, file) : 'no config'} + overrides, written to ${join(copy, 'config.yaml')}`,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
