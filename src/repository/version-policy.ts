/** Triton's version_policy: which of a model's version folders it serves. */
import type { ModelConfig } from '../config/model-config.js';

/**
 * The versions the policy serves, and those it names that have no folder: as in Triton, a missing
 * version is reported (UNAVAILABLE in the index) while the others load; only when none is left does
 * the model fail.
 */
export function selectVersions(config: ModelConfig, available: number[]): { versions: number[]; missing: number[] } {
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
