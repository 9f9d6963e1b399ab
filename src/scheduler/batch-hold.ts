/**
 * Latency-aware batching (dynamic_batching.target_latency_us): whether to hold a batch open for
 * more rows, and until when, judged from what the rows would gain and what the oldest queued
 * request can afford, instead of waiting out a fixed max_queue_delay. A pure function of the clock
 * reading, the queue's head, the arrival rate and the learned batch costs, so every decision can be
 * checked with a fake clock and a fake cost model.
 *
 * The head is held, counting from its arrival, for at most as long as its batch would take to run
 * (so its time in the server at most doubles for company), and never:
 *  - at low traffic: when fewer than LOW_TRAFFIC_ROWS rows are expected during the hold (at the
 *    recent arrival rate), it would only delay the head;
 *  - unless a batch of the rows expected by then is clearly cheaper per row (by CHEAPER_BY, as the
 *    cut is chosen);
 *  - past the point where the head, running in that larger batch at its learned cost, would miss its
 *    goal (the target latency, or its own timeout or deadline when sooner);
 *  - past max_queue_delay from the head's arrival, when that bound is set.
 * Holding on the chance of company rather than until rows are certain to come is what a fixed delay
 * does, and what measured better under load: fewer, larger batches leave the instance and the event
 * loop less work, which shortens the queue for the requests that make the tail.
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

/** Below this many rows expected during a hold, traffic is low: holding would only delay the head. */
export const LOW_TRAFFIC_ROWS = 0.1;

/** Until when (clock ms) to hold the batch for more rows; undefined: dispatch it now. */
export function holdBatchUntil(situation: HoldSituation): number | undefined {
  const { nowMs, headEnqueuedMs, headDueMs, rows, maxRows, holdLimitMs, arrivalRowsPerMs, costs } = situation;
  if (rows >= maxRows || !(arrivalRowsPerMs > 0)) return undefined;
  const runNowMs = costs.batchNs(rows) / 1e6;
  if (!(runNowMs > 0)) return undefined; // nothing learned yet: no ground to make anyone wait
  const holdEnd = headEnqueuedMs + Math.min(runNowMs, holdLimitMs);
  const expectedRows = (until: number) => Math.min(maxRows - rows, Math.max(1, Math.ceil((until - nowMs) * arrivalRowsPerMs)));
  // The longest hold after which the batch of the rows expected by then still finishes by the head's goal.
  let until: number | undefined;
  const mostExtra = expectedRows(holdEnd);
  for (let extra = 1; extra <= mostExtra; extra++) {
    const runMs = costs.batchNs(rows + extra) / 1e6;
    if (!(runMs > 0)) continue;
    const end = Math.min(holdEnd, headDueMs - runMs);
    if (end > nowMs && expectedRows(end) <= extra && (until === undefined || end > until)) until = end;
  }
  if (until === undefined || (until - nowMs) * arrivalRowsPerMs < LOW_TRAFFIC_ROWS) return undefined;
  const perRowNow = runNowMs / rows;
  const largest = rows + expectedRows(until);
  for (let size = rows + 1; size <= largest; size++) {
    const runMs = costs.batchNs(size) / 1e6;
    if (runMs > 0 && runMs / size <= perRowNow / (1 + CHEAPER_BY)) return until;
  }
  return undefined;
}
