/**
 * What one execution costs a model on this machine at each batch size, learned as it runs (and from
 * warm-up): nanoseconds per input element, the median of the latest executions at that size (a
 * garbage collection or a busy neighbour in one of them moves a median, unlike a mean, not at all). The batcher asks it where to cut a batch, so
 * that it never forms a batch slower per row than a smaller one it could form instead:
 * max_batch_size is an upper bound, not a target. Per element rather than per row, so that rows of
 * another width (a text line of another length) still teach the same curve.
 */

/** Executions per size the median is taken over. */
const WINDOW = 9;
/**
 * How much cheaper per row a smaller batch must be to be preferred over a larger one: below this
 * the two are the same within what timing noise does to a measurement, and the larger one wins
 * (fewer executions, less waiting for everyone queued).
 */
export const CHEAPER_BY = 0.1;
/** One cut in this many, when a larger batch was possible, takes the largest, so a size measured at a bad moment is measured again. */
const EXPLORE_EVERY = 64;

export class BatchCosts {
  /** Index: rows. The median of `recent`; NaN until measured. */
  private readonly nsPerElement: Float64Array;
  private readonly measured: Uint32Array;
  /** Per size, the latest WINDOW costs, oldest overwritten first. */
  private readonly recent: Float64Array[] = [];
  private readonly sorted = new Float64Array(WINDOW);
  private readonly overheads = new Float64Array(WINDOW);
  private overheadCount = 0;
  private overheadNs = 0;
  /** Input elements per row of the latest execution, to spread a batch's overhead over its elements. */
  private elementsPerRow = 0;
  private cuts = 0;
  /** Sizes were measured at load (calibrate): the curve is known, and what it leaves out could not form. */
  private calibrated = false;

  constructor(readonly maxBatchSize: number) {
    this.nsPerElement = new Float64Array(maxBatchSize + 1).fill(NaN);
    this.measured = new Uint32Array(maxBatchSize + 1);
  }

  record(rows: number, elements: number, ns: number): void {
    // Nonsense is ignored, not learned.
    if (!Number.isInteger(rows) || rows < 1 || rows > this.maxBatchSize) return;
    if (!(elements > 0 && elements < Infinity) || !(ns > 0 && ns < Infinity)) return;
    this.elementsPerRow = elements / rows;
    const recent = (this.recent[rows] ??= new Float64Array(WINDOW));
    recent[this.measured[rows] % WINDOW] = ns / elements;
    this.measured[rows] += 1;
    const count = Math.min(this.measured[rows], WINDOW);
    const window = this.sorted.subarray(0, count);
    window.set(recent.subarray(0, count));
    window.sort();
    this.nsPerElement[rows] = count % 2 ? window[(count - 1) / 2] : (window[count / 2 - 1] + window[count / 2]) / 2;
  }

  /**
   * Says the sizes recorded so far were measured at load, up to the largest that can form (a calibration stops at the
   * queue's byte bound): sizes above them are not waited for as unknown.
   */
  markCalibrated(): void {
    this.calibrated = true;
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
    const engine = this.engineEstimate(rows);
    return this.overheadNs > 0 && this.elementsPerRow > 0 ? engine + this.overheadNs / (rows * this.elementsPerRow) : engine;
  }

  /**
   * What handing a batch to the engine and getting its answer back costs beyond computing it (a
   * worker thread's round trip through a busy event loop), per batch whatever its size: the
   * median of the latest measurements. It makes small batches dearer per row, so that an engine
   * fastest at one row (a single-threaded one) still gets batches its event loop can keep fed.
   */
  recordOverhead(ns: number): void {
    if (!(ns >= 0 && ns < Infinity)) return;
    this.overheads[this.overheadCount++ % WINDOW] = ns;
    const count = Math.min(this.overheadCount, WINDOW);
    const window = this.sorted.subarray(0, count);
    window.set(this.overheads.subarray(0, count));
    window.sort();
    this.overheadNs = count % 2 ? window[(count - 1) / 2] : (window[count / 2 - 1] + window[count / 2]) / 2;
  }

  /** What one execution of this many rows is expected to take, hand-off included; NaN before any measurement. */
  batchNs(rows: number): number {
    return this.elementsPerRow > 0 ? this.estimate(rows) * rows * this.elementsPerRow : NaN;
  }

  /** The engine's own cost per element at a size (see estimate). */
  private engineEstimate(rows: number): number {
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

  /**
   * Whether a batch larger than `rows` is expected to cost clearly less per row, or might: without calibration, a size
   * above the largest measured one is unknown (its flat estimate is a guess), and waiting for company is how it gets
   * measured. Without that, a model learning from traffic alone (a -1 dim) whose first batch of 2 was a cold run would
   * never wait, so never form a larger batch, so never learn otherwise.
   */
  largerCouldBeCheaper(rows: number): boolean {
    const current = this.estimate(rows);
    if (Number.isNaN(current) || this.measured[rows] === 0) return true;
    if (!this.calibrated && rows < this.maxBatchSize && this.measured[this.maxBatchSize] === 0) return true;
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
