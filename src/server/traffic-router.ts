/**
 * A server's traffic routing over its models' traffic policies (traffic.ts): the weights set at run time (`nereid
 * promote`) over the configs', and the shadow comparisons of the copies sent to each model's shadow version.
 */
import type { Logger } from 'pino';
import { invalidArgument } from '../core/errors.js';
import type { InferenceRequest, InferenceResponse } from '../core/inference.js';
import type { ModelVersion } from '../model/model-version.js';
import { ShadowComparison, type ShadowSummary } from './traffic.js';

export class TrafficRouter {
  /** Traffic weights set at run time (setWeights), over the config's. */
  private readonly trafficWeights = new Map<string, Record<string, number>>();
  /** Per model, the shadow comparisons by primary and shadow version. */
  private readonly shadows = new Map<string, Map<string, ShadowComparison>>();

  /** `versionOf`: the loaded version of a model a copy goes to (throws when it is not loaded). */
  constructor(
    private readonly versionOf: (name: string, version: string) => ModelVersion,
    private readonly logger: Logger,
  ) {}

  /** The traffic weights of a version's model: those set at run time, else its config's. */
  weightsOf(version: ModelVersion): Record<string, number> | undefined {
    return this.trafficWeights.get(version.name) ?? version.config.traffic?.weights;
  }

  /**
   * The share of its model's unversioned requests a ready `version` gets under the weights, among the model's versions
   * ready (`loaded`, read only when weights are set); undefined when nothing weighs them.
   */
  shareOf(version: ModelVersion, loaded: () => readonly ModelVersion[]): number | undefined {
    const weights = this.weightsOf(version);
    if (!weights) return undefined;
    const ready = loaded().filter((candidate) => candidate.state === 'READY');
    const total = ready.reduce((sum, candidate) => sum + (weights[candidate.version] ?? 0), 0);
    return total > 0 ? (weights[version.version] ?? 0) / total : undefined;
  }

  /**
   * New weights for the versions a model serves (`loaded`), kept until changed again or the server restarts, over the
   * config's; refused with what was expected when they name a version not loaded, or weigh none above 0.
   */
  setWeights(name: string, weights: unknown, loaded: readonly string[]): { model: string; weights: Record<string, number> } {
    if (!weights || typeof weights !== 'object' || Array.isArray(weights)) throw invalidArgument(`'weights' must be an object of version → weight, e.g. {"1": 90, "2": 10}`);
    const entries = Object.entries(weights as Record<string, unknown>);
    for (const [version, weight] of entries) {
      if (!loaded.includes(version)) throw invalidArgument(`version ${version} of '${name}' is not loaded (loaded: ${loaded.join(', ')})`);
      if (typeof weight !== 'number' || !(weight >= 0)) throw invalidArgument(`the weight of version ${version} must be a number ≥ 0, got ${JSON.stringify(weight)}`);
    }
    if (!entries.some(([, weight]) => (weight as number) > 0)) throw invalidArgument('at least one version needs a weight above 0');
    const accepted = Object.fromEntries(entries) as Record<string, number>;
    this.trafficWeights.set(name, accepted);
    this.logger.info({ model: name, weights: accepted }, `traffic of model '${name}' set to ${entries.map(([version, weight]) => `v${version}: ${weight}`).join(', ')}`);
    return { model: name, weights: accepted };
  }

  copyToShadow(primary: ModelVersion, shadow: { version: string; max_in_flight: number }, request: InferenceRequest, response: InferenceResponse, primaryMs: number): void {
    let target: ModelVersion;
    try {
      target = this.versionOf(primary.name, shadow.version);
    } catch {
      return; // the shadow version is not loaded (the policy does not serve it): nothing to copy to
    }
    if (target.state !== 'READY') return;
    const comparisons = this.shadows.get(primary.name) ?? new Map<string, ShadowComparison>();
    this.shadows.set(primary.name, comparisons);
    const key = `${primary.version}>${target.version}`;
    const comparison = comparisons.get(key) ?? new ShadowComparison(primary.version, target.version);
    comparisons.set(key, comparison);
    comparison.copy(target, request, response, primaryMs, shadow.max_in_flight, (error) =>
      this.logger.debug({ err: error, model: primary.name, version: target.version }, 'shadow request failed'),
    );
  }

  /** Every model's shadow comparisons, for metrics. */
  shadowComparisons(): (ShadowSummary & { model: string })[] {
    return [...this.shadows].flatMap(([model, comparisons]) => [...comparisons.values()].map((comparison) => ({ model, ...comparison.summary() })));
  }

  /** One model's shadow comparisons, per primary and shadow version. */
  comparisonsOf(name: string): ShadowSummary[] {
    return [...(this.shadows.get(name)?.values() ?? [])].map((comparison) => comparison.summary());
  }
}
