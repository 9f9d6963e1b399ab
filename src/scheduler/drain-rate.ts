/**
 * How fast a model version's queue empties when it has a backlog: rows taken per millisecond,
 * measured over windows during which requests were waiting all along (an idle server's rate says
 * nothing about its capacity). It includes everything that limits the rate in practice — the engine,
 * the hand-off to it, a busy event loop — which a cost model of the engine alone would miss.
 * Until a backlog has been seen, an estimate from the engine's measured costs stands in.
 */

/** Milliseconds of continuous backlog one measurement spans. */
const WINDOW_MS = 50;
/** Weight of the newest window in the running rate. */
const NEWEST_WEIGHT = 0.3;

export class DrainRate {
  private windowStart = -1;
  private windowRows = 0;
  private measured = NaN;

  /** `estimate` gives rows per millisecond from the engine's costs (NaN when it has none) until a backlog is measured. */
  constructor(private readonly estimate: () => number = () => NaN) {}

  /** Rows per millisecond, measured, else estimated; NaN when neither is known. */
  get rowsPerMs(): number {
    return Number.isNaN(this.measured) ? this.estimate() : this.measured;
  }

  /** Forgets what was measured: the instances changed, so the rate is the estimate's until a backlog is measured again. */
  reset(): void {
    this.measured = NaN;
    this.windowStart = -1;
  }

  /**
   * Hears of each batch taken from the queue, and whether requests still wait behind it. A window
   * starts at a take that leaves a backlog, and counts only while the backlog lasts.
   */
  taken(rows: number, now: number, backlogLeft: boolean): void {
    if (this.windowStart >= 0) {
      this.windowRows += rows;
      const elapsed = now - this.windowStart;
      if (elapsed >= WINDOW_MS) {
        const rate = this.windowRows / elapsed;
        this.measured = Number.isNaN(this.measured) ? rate : this.measured + NEWEST_WEIGHT * (rate - this.measured);
        this.windowStart = -1;
      }
    }
    if (!backlogLeft) this.windowStart = -1;
    else if (this.windowStart < 0) {
      this.windowStart = now;
      this.windowRows = 0;
    }
  }
}
