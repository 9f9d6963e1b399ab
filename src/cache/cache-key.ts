/**
 * The cache key: a SHA-256 over everything that decides a response — model, version, the
 * config it was loaded with, every input's name, datatype, shape and bytes, the requested outputs
 * and the request parameters the model's config names as result-changing.
 */
import { createHash } from 'node:crypto';
import { tensorDataToBytes, type Tensor } from '../core/tensor.js';
import type { Parameters } from '../core/inference.js';
import type { CompletedModelConfig } from '../config/model-config.js';

export interface CacheKeyParts {
  model: string;
  version: string;
  /** A fingerprint of the loaded config's answer-deciding part, so a reload with other pre/post-processing never reuses old answers. */
  configFingerprint: string;
  inputs: Record<string, Tensor>;
  outputNames: readonly string[];
  parameters?: Parameters;
  keyParameters: readonly string[];
}

/**
 * Config fields that decide how a model is served but never what it answers: tuning them (more
 * instances, another queue policy, a longer batching delay, a larger max_batch_size) keeps the
 * cached answers. The model's name and version are in the key already, and the weights' digest
 * stands for default_model_filename.
 */
const SERVING_ONLY_FIELDS: ReadonlySet<string> = new Set([
  'name',
  'version_policy',
  'instance_group',
  'dynamic_batching',
  'response_cache',
  'default_model_filename',
  'model_warmup',
]);

/**
 * The part of a completed config that decides a model's answers: its inputs and outputs with their
 * pre/post-processing, the platform, whether it batches, the backend parameters other than
 * `tuningParameters` (threads, say), and any field Nereid does not know (kept: a stale answer is
 * worse than a miss).
 */
export function answerDecidingConfig(config: CompletedModelConfig, tuningParameters: readonly string[]): Record<string, unknown> {
  const deciding: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(config)) {
    if (SERVING_ONLY_FIELDS.has(field) || field === 'max_batch_size' || field === 'parameters') continue;
    deciding[field] = value;
  }
  deciding.batched = config.max_batch_size > 0;
  const parameters = Object.keys(config.parameters)
    .filter((key) => !tuningParameters.includes(key))
    .sort()
    .map((key) => [key, config.parameters[key].string_value]);
  deciding.parameters = Object.fromEntries(parameters);
  return deciding;
}

export function fingerprint(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

export function cacheKey(parts: CacheKeyParts): string {
  const hash = createHash('sha256');
  // Lengths before variable parts keep different splits of the same bytes from colliding.
  const field = (text: string) => hash.update(`${text.length}:${text};`);
  field(parts.model);
  field(parts.version);
  field(parts.configFingerprint);
  for (const name of Object.keys(parts.inputs).sort()) {
    const tensor = parts.inputs[name];
    const bytes = tensorDataToBytes(tensor.datatype, tensor.data);
    field(name);
    field(tensor.datatype);
    field(tensor.shape.join(','));
    field(String(bytes.length));
    hash.update(bytes);
  }
  field([...parts.outputNames].sort().join(','));
  for (const key of parts.keyParameters) field(`${key}=${parameterText(parts.parameters?.[key])}`);
  return hash.digest('hex');
}

/** A key parameter's value as text: an integer the same whether it came as a number or a bigint (gRPC int64, JSON beyond 2^53), which JSON cannot write. */
function parameterText(value: unknown): string {
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isSafeInteger(value))) return `integer ${value}`;
  return JSON.stringify(value ?? null);
}
