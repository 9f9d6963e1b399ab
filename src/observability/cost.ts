/**
 * Cost per prediction: the core-seconds a model version's executions used (compute_infer time ×
 * the executing instance's threads), spread over the inferences it answered, and, given a price
 * per core-hour, dollars per 1,000 predictions. Statistics (JSON) and metrics share these formulas.
 */
import type { ExecutionTimings } from '../core/timings.js';

export interface CostSummary {
  /**
   * Core-seconds of compute_infer time: Σ over executions of duration × instance threads (a handler's: less its waits
   * on the models it called, plus what they computed for it).
   */
  compute_seconds: number;
  /** compute_seconds / inference_count (0 before the first inference). */
  compute_seconds_per_inference: number;
  /** The price given with --cost-per-core-hour, or null without one. */
  usd_per_core_hour: number | null;
  /** compute_seconds_per_inference × 1,000 at that price, or null without one. */
  usd_per_1000_inferences: number | null;
}

/** Core-seconds of one execution: its compute_infer time on every thread of its instance. */
export function coreSeconds(computeInferNs: number, threads: number): number {
  return (computeInferNs * threads) / 1e9;
}

/** Core-seconds an execution cost: its own compute (compute_infer less its waits on called models) and theirs for it. */
export function executionCoreSeconds(timings: ExecutionTimings, threads: number): number {
  return coreSeconds(timings.computeInferNs - (timings.awaitedNs ?? 0), threads) + (timings.calledCoreSeconds ?? 0);
}

export function usdOf(coreSecondsUsed: number, usdPerCoreHour: number): number {
  return (coreSecondsUsed * usdPerCoreHour) / 3600;
}

export function costSummary(computeSeconds: number, inferences: number, usdPerCoreHour?: number): CostSummary {
  const perInference = inferences > 0 ? computeSeconds / inferences : 0;
  return {
    compute_seconds: computeSeconds,
    compute_seconds_per_inference: perInference,
    usd_per_core_hour: usdPerCoreHour ?? null,
    usd_per_1000_inferences: usdPerCoreHour === undefined ? null : usdOf(perInference * 1000, usdPerCoreHour),
  };
}
