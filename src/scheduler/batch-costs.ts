/**
 * What one execution costs a model on this machine at each batch size, learned as it runs (and from
 * warm-up): nanoseconds per input element, smoothed. The batcher asks it where to cut a batch, so
 * that it never forms a batch slower per row than a smaller one it could form instead:
 * max_batch_size is an upper bound, not a target. Per element rather than per row, so that rows of
 * another width (a text line of another length) still teach the same curve.
 */

/** Weight of a new measurement in the running mean. */
const SMOOTHING = 0.2;
/**
 * How much cheaper per row a smaller batch must be to be preferred over a larger one: below this
 * the two are the same within what timing noise does to a measurement, and the larger one wins
 * (fewer executions, less waiting for everyone queued).
 */
export const CHEAPER_BY = 0.1;
/** One cut in this many, when a larger batch was possible, takes the largest, so a size measured at a bad moment is measured again. */
const EXPLORE_EVERY = 64;

export class BatchCosts {
  /** Index: rows. NaN until measured. */
  private readonly nsPerElement: Float64Array;
  private readonly measured: Uint32Array;
  private cuts = 0;

  constructor(readonly maxBatchSize: number) {
    this.nsPerElement = new Float64Array(maxBatchSize + 1).fill(NaN);
    this.measured = new Uint32Array(maxBatchSize + 1);
  }

  record(rows: number, elements: number, ns: number): void {
    // Nonsense is ignored, not learned: a NaN or infinite cost would poison the running mean for good.
    if (!Number.isInteger(rows) || rows < 1 || rows > this.maxBatchSize) return;
    if (!(elements > 0 && elements < Infinity) || !(ns > 0 && ns < Infinity)) return;
    const cost = ns / elements;
    const previous = this.nsPerElement[rows];
    this.nsPerElement[rows] = Number.isNaN(previous) ? cost : previous + SMOOTHING * (cost - previous);
    this.measured[rows] += 1;
  }

  /** Executions measured at this size. */
  samples(rows: number): number {
    return this.measured[rows] ?? 0;
  }

  /**
   * Cost per element at a size: measured, else interpolated between the nearest measured sizes,
   * else the nearest measured one (so an unmeasured larger size looks as good as the largest known
   * and gets tried). NaN when nothing is measured.
   */
  estimate(rows: number): number {
    const known = this.nsPerElement[rows];
    if (!Number.isNaN(known)) return known;
    let below = rows - 1;
    while (below >= 1 && Number.isNaN(this.nsPerElement[below])) below -= 1;
    let above = rows + 1;
    while (above <= this.maxBatchSize && Number.isNaN(this.nsPerElement[above])) above += 1;
    const low = below >= 1 ? this.nsPerElement[below] : NaN;
    const high = above <= this.maxBatchSize ? this.nsPerElement[above] : NaN;
    if (Number.isNaN(low)) return high;
    if (Number.isNaN(high)) return low;
    return low + ((high - low) * (rows - below)) / (above - below);
  }

  /**
   * Of the batch sizes a cut could give (ascending), the position of the largest one whose cost
   * per row is within CHEAPER_BY of the cheapest: a smaller batch is chosen only when it is clearly
   * cheaper. Without measurements, the largest.
   */
  choose(sizes: readonly number[]): number {
    const last = sizes.length - 1;
    if (last <= 0) return last;
    this.cuts += 1;
    if (this.cuts % EXPLORE_EVERY === 0) return last;
    const costs = sizes.map((size) => this.estimate(size));
    if (costs.some(Number.isNaN)) return last;
    const acceptable = Math.min(...costs) * (1 + CHEAPER_BY);
    for (let index = last; index > 0; index--) if (costs[index] <= acceptable) return index;
    return 0;
  }

  /** Whether a batch larger than `rows` is expected to cost clearly less per row (or is unmeasured, so it might). */
  largerCouldBeCheaper(rows: number): boolean {
    const current = this.estimate(rows);
    if (Number.isNaN(current) || this.measured[rows] === 0) return true;
    for (let size = rows + 1; size <= this.maxBatchSize; size++) {
      if (!(this.estimate(size) * (1 + CHEAPER_BY) > current)) return true;
    }
    return false;
  }

  /** Measured sizes and their cost, for statistics and tests. */
  snapshot(): { rows: number; nsPerElement: number; samples: number }[] {
    const rows: { rows: number; nsPerElement: number; samples: number }[] = [];
    for (let size = 1; size <= this.maxBatchSize; size++) {
      if (this.measured[size] > 0) rows.push({ rows: size, nsPerElement: this.nsPerElement[size], samples: this.measured[size] });
    }
    return rows;
  }
}
