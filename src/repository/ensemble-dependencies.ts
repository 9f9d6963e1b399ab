/**
 * What an ensemble needs of its step models to serve: each step ready, and every version of it the ensemble names;
 * and how the reason reads, in Triton's words, when they are not.
 */
import type { ModelConfig } from '../config/model-config.js';

/** What the repository keeps of an ensemble's steps. */
export interface EnsembleSteps {
  /** Step models that name versions (model_version ≥ 1), with those versions. */
  pinned?: ReadonlyMap<string, readonly string[]>;
  /** Steps unloaded after the ensemble loaded, that it waits for. */
  missingSteps?: ReadonlySet<string>;
}

/** Whether a model (or one version of it) serves now. */
export type Readiness = (name: string, version?: string) => boolean;

/** Triton's words for an ensemble whose steps are gone; `missing`: the models, or a model's versions (`scaler version 1`). */
function ensembleMissingReason(ensemble: string, missing: Iterable<string>): string {
  return `ensemble '${ensemble}' contains models that are not available: ${[...missing].join(', ')}`;
}

/** The versions each step model of an ensemble's config names (model_version ≥ 1). */
export function pinnedVersions(config: ModelConfig): Map<string, string[]> {
  const pinned = new Map<string, string[]>();
  for (const step of config.ensemble_scheduling?.step ?? []) {
    if (step.model_version < 1) continue;
    const versions = pinned.get(step.model_name) ?? [];
    if (!versions.includes(String(step.model_version))) versions.push(String(step.model_version));
    pinned.set(step.model_name, versions);
  }
  return pinned;
}

/** Whether `step` serves what the ensemble needs of it: a ready version, and every version the ensemble names. */
export function stepServes(step: string, ensemble: EnsembleSteps, isReady: Readiness): boolean {
  return isReady(step) && (ensemble.pinned?.get(step) ?? []).every((version) => isReady(step, version));
}

/** How a missing step reads in the reason: the model, or the versions of it the ensemble names that are not loaded. */
function missingStepLabel(step: string, ensemble: EnsembleSteps, isReady: Readiness): string {
  if (!isReady(step)) return step;
  const versions = (ensemble.pinned?.get(step) ?? []).filter((version) => !isReady(step, version));
  return versions.length === 0 ? step : `${step} version ${versions.join(', ')}`;
}

/** Why the ensemble `name` does not serve while it waits for its missing steps. */
export function missingReason(name: string, ensemble: EnsembleSteps, isReady: Readiness): string {
  return ensembleMissingReason(name, [...(ensemble.missingSteps ?? [])].map((step) => missingStepLabel(step, ensemble, isReady)));
}
