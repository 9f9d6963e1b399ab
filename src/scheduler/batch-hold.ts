/**
 * Latency-aware batching (dynamic_batching.target_latency_us): whether to hold a batch open for
 * more rows, and until when, judged from what the rows would gain and what the oldest queued
 * request can afford, instead of waiting out a fixed max_queue_delay. A pure function of the clock
 * reading, the queue's head, the arrival rate and the learned batch costs, so every decision can be
 * checked with a fake clock and a fake cost model.
 *
 * A batch is held only while all of these hold for some larger size it could reach:
 *  - the extra rows are expected (at the recent arrival rate) within the time the batch queued now
 *    would take to run: those rows would otherwise wait behind it anyway. At low traffic (arrivals
 *    far apart compared with the batch cost) nothing is ever held;
 *  - the larger batch is clearly cheaper per row (by CHEAPER_BY, as the cut is chosen);
 *  - the head, after waiting for those rows and then running the larger batch at its learned cost,
 *    still finishes by its goal (the target latency, or its own timeout or deadline when sooner);
 *  - the hold ends within max_queue_delay of the head's arrival, when that bound is set.
 */
import { CHEAPER_BY } from './batch-costs.js';

/** What running a batch costs, as learned: nanoseconds for one execution of `rows` (NaN when unknown). */
export interface BatchCostModel {
  batchNs(rows: number): number;
}

export interface HoldSituation {
  /** Clock reading, ms. */
  nowMs: number;
  /** When the head of the queue (the oldest request of the batch) was queued, ms. */
  headEnqueuedMs: number;
  /** When the head must be answered by, ms: its enqueue time plus the target latency, or its own timeout or deadline when sooner. */
  headDueMs: number;
  /** Rows queued that can go in this batch now. */
  rows: number;
  /** The most rows the batch may grow to. */
  maxRows: number;
  /** The longest the head may be held from its arrival, ms (max_queue_delay); Infinity: no bound beyond the goal. */
  holdLimitMs: number;
  /** Rows arriving per ms, recently (0 when unknown). */
  arrivalRowsPerMs: number;
  costs: BatchCostModel;
}

/** Until when (clock ms) to hold the batch for more rows; undefined: dispatch it now. */
export function holdBatchUntil(situation: HoldSituation): number | undefined {
  const { nowMs, headEnqueuedMs, headDueMs, rows, maxRows, holdLimitMs, arrivalRowsPerMs, costs } = situation;
  if (rows >= maxRows || !(arrivalRowsPerMs > 0)) return undefined;
  const runNowMs = costs.batchNs(rows) / 1e6;
  if (!(runNowMs > 0)) return undefined; // nothing learned yet: no ground to make anyone wait
  const perRowNow = runNowMs / rows;
  const holdEndMs = headEnqueuedMs + holdLimitMs;
  let until: number | undefined;
  let cheapestPerRow = perRowNow / (1 + CHEAPER_BY);
  for (let larger = rows + 1; larger <= maxRows; larger++) {
    const waitMs = (larger - rows) / arrivalRowsPerMs;
    // Farther sizes only take longer to fill.
    if (waitMs > runNowMs || nowMs + waitMs > holdEndMs) break;
    const runMs = costs.batchNs(larger) / 1e6;
    if (!(runMs > 0) || nowMs + waitMs + runMs > headDueMs) continue;
    const perRow = runMs / larger;
    if (perRow <= cheapestPerRow) {
      cheapestPerRow = perRow;
      until = nowMs + waitMs;
    }
  }
  return until;
}
