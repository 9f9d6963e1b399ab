/**
 * How fast rows are arriving at a model version now: a smoothed gap between requests and the rows
 * each brings, updated in O(1) per request. The latency-aware batcher asks it whether company for a
 * queued batch is likely to come soon enough to be worth waiting for.
 */

/** Weight of the newest gap in the running mean: about the last ten requests count. */
const NEWEST_WEIGHT = 0.1;
/**
 * Shortest gap the mean is taken from: requests of one socket read arrive within microseconds of
 * each other, and a gap of 0 would make the rate infinite.
 */
const SHORTEST_GAP_MS = 0.001;

export class ArrivalRate {
  private lastArrivalMs = NaN;
  private meanGapMs = NaN;
  private meanRows = 1;

  /** Hears of each request queued, with its rows and the clock reading (ms). */
  arrived(rows: number, nowMs: number): void {
    if (!Number.isNaN(this.lastArrivalMs)) {
      const gap = Math.max(SHORTEST_GAP_MS, nowMs - this.lastArrivalMs);
      this.meanGapMs = Number.isNaN(this.meanGapMs) ? gap : this.meanGapMs + NEWEST_WEIGHT * (gap - this.meanGapMs);
    }
    this.meanRows += NEWEST_WEIGHT * (rows - this.meanRows);
    this.lastArrivalMs = nowMs;
  }

  /**
   * Rows per millisecond expected from now on; 0 before two requests were seen. A silence longer
   * than the mean gap counts as a gap already: when traffic stops, the rate falls at once instead of
   * after ten more requests, so a batch is not held for arrivals that stopped coming.
   */
  rowsPerMs(nowMs: number): number {
    if (Number.isNaN(this.meanGapMs)) return 0;
    return this.meanRows / Math.max(this.meanGapMs, nowMs - this.lastArrivalMs);
  }
}
