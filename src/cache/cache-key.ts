/**
 * The cache key: a SHA-256 over everything that decides a response — model, version, the
 * config it was loaded with, every input's name, datatype, shape and bytes, the requested outputs
 * and the request parameters the model's config names as result-changing.
 */
import { createHash } from 'node:crypto';
import { tensorDataToBytes, type Tensor } from '../core/tensor.js';
import type { Parameters } from '../core/inference.js';

export interface CacheKeyParts {
  model: string;
  version: string;
  /** A fingerprint of the loaded config, so a reload with other pre/post-processing never reuses old answers. */
  configFingerprint: string;
  inputs: Record<string, Tensor>;
  outputNames: readonly string[];
  parameters?: Parameters;
  keyParameters: readonly string[];
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
  for (const key of parts.keyParameters) field(`${key}=${JSON.stringify(parts.parameters?.[key] ?? null)}`);
  return hash.digest('hex');
}
