/**
 * How each model is kept, decided at start from the control mode and the models' configs (`parameters.residency`),
 * and which models residency leaves alone: those that call others (ensembles, built-in pipelines).
 */
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Backend } from '../backends/backend.js';
import { parameterValue, type ModelConfig } from '../config/model-config.js';
import { isEnsembleConfig } from '../model/ensemble-plan.js';
import type { Residency } from './model-residency.js';
import type { serverOptionsSchema } from './server-options.js';

type ResidencySettings = Pick<z.output<typeof serverOptionsSchema>, 'modelControlMode' | 'pinModels' | 'modelMemoryBudget'>;

/**
 * How each model is kept. In on_demand mode every model loads on demand unless pinned; in none and
 * poll modes only those whose config says `residency: on_demand`, the others (declared pinned only
 * when there is something to share memory with) load at start. Explicit mode keeps its own rules.
 */
export function planResidency(
  settings: ResidencySettings,
  models: readonly string[],
  configs: ReadonlyMap<string, ModelConfig | undefined>,
  logger: Logger,
): Map<string, Residency> {
  const { modelControlMode: mode, pinModels, modelMemoryBudget } = settings;
  const plan = new Map<string, Residency>();
  if (mode === 'explicit') return plan;
  const declared = new Map<string, string | undefined>();
  for (const name of models) {
    // A config that does not parse fails at its load, with its reason; here it only lacks a residency.
    const config = configs.get(name);
    const residency = config && parameterValue(config, 'residency');
    if (residency !== undefined && residency !== 'pinned' && residency !== 'on_demand') {
      logger.warn({ model: name }, `model '${name}': parameters.residency must be 'pinned' or 'on_demand', got '${residency}'; treated as ${mode === 'on_demand' ? 'on_demand' : 'pinned'}`);
    }
    declared.set(name, residency);
  }
  if (mode === 'on_demand') {
    for (const name of models) plan.set(name, pinModels.includes(name) || declared.get(name) === 'pinned' ? 'pinned' : 'on_demand');
    return plan;
  }
  const onDemand = models.filter((name) => declared.get(name) === 'on_demand');
  if (onDemand.length === 0 && modelMemoryBudget === undefined) return plan;
  for (const name of models) plan.set(name, onDemand.includes(name) ? 'on_demand' : 'pinned');
  return plan;
}

/** An ensemble, or a model whose backend says its code calls other models (a built-in pipeline); false for a config it refuses. */
export function callsOtherModels(config: ModelConfig | undefined, backends: readonly Backend[]): boolean {
  if (config === undefined) return false;
  if (isEnsembleConfig(config)) return true;
  const backend = config.backend === undefined ? undefined : backends.find((candidate) => candidate.name === config.backend);
  try {
    return (backend?.stepModels?.(config) ?? []).length > 0;
  } catch {
    return false; // the load says what is wrong with it
  }
}
