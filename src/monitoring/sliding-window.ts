import { z } from 'zod';

/**
 * How much recent traffic a window holds: at most `capacity` entries, none older than `maxAgeMs`. The count bound caps
 * memory and makes a busy model's window cover its last minutes; the age bound keeps a quiet model's window from
 * describing last week's traffic as now's.
 */
export const slidingWindowOptionsSchema = z.object({
  /** 1000 values put PSI's no-drift noise over 10 bins near 0.009 (99th percentile ≈ 0.022), far below its 0.1 warning. */
  capacity: z.number().int().min(1).max(10_000_000).default(1000),
  /** One hour: long enough for a quiet model to gather the drift state's minimum sample, short enough to be "now". */
  maxAgeMs: z.number().positive().default(3_600_000),
});
export type SlidingWindowOptions = z.infer<typeof slidingWindowOptionsSchema>;
/** The options as a caller gives them: any omitted take the schema's defaults. */
export type SlidingWindowSettings = z.input<typeof slidingWindowOptionsSchema>;

/** What a window covers now, for a report: how many entries, its bounds, and when its oldest and newest arrived. */
export interface WindowSpan {
  size: number;
  capacity: number;
  maxAgeMs: number;
  /** Clock time of the oldest and newest entry; absent while the window is empty. */
  oldestAt?: number;
  newestAt?: number;
}

/**
 * The bookkeeping every window shares: a ring of `capacity` slots, each stamped with its arrival time, oldest first
 * from `first`. Entries leave in arrival order — the oldest when a new one needs its slot, any older than the age bound
 * whenever the window is touched — so an insert costs O(1) amortised and memory never grows past the capacity. A
 * subclass keeps its payload in arrays indexed by slot and hears of every departure through `dropped`.
 *
 * The clock (Date.now by default, so times in a report read as wall-clock times; injectable for tests) is assumed to
 * move forward; should it step back, arrivals are stamped with the latest time seen, which keeps the ring in order.
 */
export abstract class TimedWindow {
  readonly capacity: number;
  readonly maxAgeMs: number;
  private readonly arrivedAt: Float64Array;
  private first = 0;
  private count = 0;
  private latest = -Infinity;
  /** Arrivals and departures so far (see changeCount). */
  private changes = 0;

  constructor(
    options: SlidingWindowSettings,
    private readonly now: () => number,
  ) {
    const parsed = slidingWindowOptionsSchema.parse(options);
    this.capacity = parsed.capacity;
    this.maxAgeMs = parsed.maxAgeMs;
    this.arrivedAt = new Float64Array(this.capacity);
  }

  /** The slot an entry leaves from, as it leaves; the subclass un-counts whatever it kept there. */
  protected abstract dropped(slot: number): void;

  /** A slot for an entry arriving now: the oldest entry's when the window is full (that entry is dropped first). */
  protected admit(): number {
    const at = this.clockTime();
    this.expire(at);
    if (this.count === this.capacity) this.dropOldest();
    const slot = (this.first + this.count) % this.capacity;
    this.arrivedAt[slot] = at;
    this.count += 1;
    this.changes += 1;
    return slot;
  }

  /** Calls `visit` with each live slot, oldest first, after dropping what has aged out. */
  protected forEachLive(visit: (slot: number, index: number) => void): void {
    this.expireNow();
    for (let index = 0; index < this.count; index++) visit((this.first + index) % this.capacity, index);
  }

  /** How many entries the window holds now. */
  get size(): number {
    return this.expireNow();
  }

  /**
   * How many entries have arrived and left so far, those aged out by now included: while it stays the same, the window
   * holds what it held, so what was computed from it then still holds (VersionMonitor.snapshot).
   */
  get changeCount(): number {
    this.expireNow();
    return this.changes;
  }

  /** Drops the entries that have aged out by now; returns how many remain. */
  protected expireNow(): number {
    this.expire(this.clockTime());
    return this.count;
  }

  span(): WindowSpan {
    const size = this.size;
    const span: WindowSpan = { size, capacity: this.capacity, maxAgeMs: this.maxAgeMs };
    if (size > 0) {
      span.oldestAt = this.arrivedAt[this.first];
      span.newestAt = this.arrivedAt[(this.first + size - 1) % this.capacity];
    }
    return span;
  }

  private clockTime(): number {
    this.latest = Math.max(this.latest, this.now());
    return this.latest;
  }

  private expire(at: number): void {
    while (this.count > 0 && at - this.arrivedAt[this.first] > this.maxAgeMs) this.dropOldest();
  }

  private dropOldest(): void {
    this.dropped(this.first);
    this.first = (this.first + 1) % this.capacity;
    this.count -= 1;
    this.changes += 1;
  }
}

/** The recent values of one numeric feature (an input property, a confidence, a representation coordinate). */
export class NumericWindow extends TimedWindow {
  private readonly slots: Float64Array;

  constructor(options: SlidingWindowSettings = {}, now: () => number = Date.now) {
    super(options, now);
    this.slots = new Float64Array(this.capacity);
  }

  protected dropped(): void {
    // A numeric slot holds nothing to un-count: the next arrival overwrites it.
  }

  /** Adds a value. NaN is refused (RangeError): it has no place in the order the statistics rely on, so the caller decides what a missing feature means. */
  push(value: number): void {
    if (Number.isNaN(value)) throw new RangeError('a window takes numbers; got NaN');
    this.slots[this.admit()] = value;
  }

  /** The values in the window now, oldest first, as a copy (the window keeps changing under the caller). */
  values(): Float64Array {
    const copy = new Float64Array(this.size);
    this.forEachLive((slot, index) => {
      copy[index] = this.slots[slot];
    });
    return copy;
  }

  /** The values in the window now, ascending: what ksStatistic and wasserstein1 take. */
  sortedValues(): Float64Array {
    return this.values().sort();
  }
}

/** The recent classes of one categorical feature (the predicted class), counted per class as they come and go. */
export class CategoricalWindow extends TimedWindow {
  private readonly slots: Int32Array;
  private readonly perClass: Float64Array;

  constructor(
    readonly classCount: number,
    options: SlidingWindowSettings = {},
    now: () => number = Date.now,
  ) {
    super(options, now);
    if (!Number.isInteger(classCount) || classCount < 1) throw new RangeError(`a categorical window needs a positive whole number of classes, got ${classCount}`);
    this.slots = new Int32Array(this.capacity);
    this.perClass = new Float64Array(classCount);
  }

  protected dropped(slot: number): void {
    this.perClass[this.slots[slot]] -= 1;
  }

  /** Adds one observation of class `classIndex`, in [0, classCount). */
  push(classIndex: number): void {
    if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= this.classCount) {
      throw new RangeError(`class index must be a whole number in [0, ${this.classCount}), got ${classIndex}`);
    }
    const slot = this.admit();
    this.slots[slot] = classIndex;
    this.perClass[classIndex] += 1;
  }

  /** How many observations of each class the window holds now: what jensenShannon and psi take. */
  counts(): number[] {
    this.expireNow();
    return Array.from(this.perClass);
  }
}
