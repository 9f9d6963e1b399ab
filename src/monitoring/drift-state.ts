import { z } from 'zod';
import { DRIFT_THRESHOLDS } from './drift-statistics.js';

/**
 * `insufficient_data` is a state of its own rather than a quiet `ok`: `ok` says "looked, and the traffic matches the
 * reference", which a window of twelve values cannot support. An operator (and an alert rule) can tell "fine" from
 * "not enough traffic to tell" — after a restart, for a rarely used model, or once an idle window has aged empty.
 */
export type DriftState = 'insufficient_data' | 'ok' | 'warning' | 'drift';

const LEVEL_RANK: Record<DriftState, number> = { insufficient_data: 0, ok: 1, warning: 2, drift: 3 };

/** Below this many values a drift score is mostly noise (see minSamples). */
export const MIN_DRIFT_SAMPLES = 200;

/**
 * When the state moves. Scores are "higher is more drift" in any unit (PSI by default; pass the KS or Jensen–Shannon
 * levels from DRIFT_THRESHOLDS, or a combined score's own).
 */
export const driftStateOptionsSchema = z
  .object({
    /** A score at or above this enters `warning` at once. */
    warningAt: z.number().positive().default(DRIFT_THRESHOLDS.psi.warning),
    /** A score at or above this enters `drift` at once, from any state. */
    driftAt: z.number().positive().default(DRIFT_THRESHOLDS.psi.drift),
    /**
     * A level is left only below exitRatio × its entry threshold (PSI: warning left below 0.08, drift below 0.2). The
     * gap is the hysteresis: a score hovering at a threshold, as a sliding window's score does while traffic changes
     * slowly, otherwise flips the state (and pages someone) on every evaluation. 0.8 leaves a band of 0.02 PSI at the
     * warning level, about twice the 99th percentile of PSI's no-drift noise over a 1000-value window.
     */
    exitRatio: z.number().gt(0).lt(1).default(0.8),
    /**
     * ... and only after that many evaluations in a row below it. Consecutive scores of a sliding window share most
     * of their values, so this guards against one lucky reading rather than adding independent evidence; 3 does that
     * without holding an alarm long after the traffic has recovered.
     */
    exitAfter: z.number().int().min(1).default(3),
    /**
     * Fewer samples than this in the window make the state `insufficient_data`, whatever the score. 200 is where noise
     * alone stops reaching the warning levels: PSI's 99th percentile under no drift is ≈ 21.7/m over 10 bins (0.1 at
     * m ≈ 220) and KS D's 1 % critical value is ≈ 1.63/√m (0.12 at m ≈ 185); see DRIFT_THRESHOLDS.
     */
    minSamples: z.number().int().min(0).default(MIN_DRIFT_SAMPLES),
    /** How many transitions are kept for reports, newest last. */
    historyLimit: z.number().int().min(1).max(10_000).default(50),
  })
  .refine((options) => options.warningAt < options.driftAt, {
    message: 'warningAt must be below driftAt',
    path: ['warningAt'],
  });
export type DriftStateOptions = z.infer<typeof driftStateOptionsSchema>;

export interface DriftTransition {
  from: DriftState;
  to: DriftState;
  /** Clock time of the evaluation that moved the state. */
  at: number;
  /** The score that moved it; absent for a move to `insufficient_data`, which the window's size decides (too few rows to judge, or to call `ok`). */
  score?: number;
  sampleCount: number;
}

export interface DriftStateSnapshot {
  state: DriftState;
  /** Clock time the current state began (construction time for the initial state). */
  since: number;
  /** The latest evaluation's score and sample count; absent before the first evaluation. */
  score?: number;
  sampleCount?: number;
  /** Oldest first, at most historyLimit. */
  transitions: DriftTransition[];
}

/**
 * The `ok | warning | drift` state of one monitored stream (a model version's inputs, a feature, the output classes),
 * moved by a drift score each time the caller evaluates its window. Rising is immediate — ok → drift in one step when
 * the score jumps — so drift is reported as soon as a window shows it; falling needs `exitAfter` evaluations in a row
 * below the level's exit threshold, and may skip warning (drift → ok) when the score has fallen below warning's exit
 * for as long. The clock (Date.now by default, injectable for tests) stamps transitions.
 */
export class DriftStateMachine {
  readonly options: DriftStateOptions;
  private current: DriftState = 'insufficient_data';
  private since: number;
  private lastScore?: number;
  private lastSampleCount?: number;
  /** Evaluations in a row whose score was below warning's (drift's) exit threshold. */
  private belowWarningExit = 0;
  private belowDriftExit = 0;
  private readonly history: DriftTransition[] = [];

  constructor(
    options: z.input<typeof driftStateOptionsSchema> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.options = driftStateOptionsSchema.parse(options);
    this.since = now();
  }

  get state(): DriftState {
    return this.current;
  }

  /**
   * Takes the latest score of the window and how many samples it was computed from; returns the transition when the
   * state moved (for the caller to log), otherwise undefined. With fewer than minSamples samples the score is not
   * looked at (it may be NaN: the caller need not compute it), unless `smallSample` says the caller has judged that
   * few samples enough on a test of its own (the flagged share's binomial tail); such a sample can hold or raise a
   * level, and lower it with the usual hysteresis, but where that would reach `ok` it reaches `insufficient_data`.
   */
  evaluate(score: number, sampleCount: number, { smallSample = false, at }: { smallSample?: boolean; at?: number } = {}): DriftTransition | undefined {
    if (!Number.isInteger(sampleCount) || sampleCount < 0) throw new RangeError(`sampleCount must be a non-negative whole number, got ${sampleCount}`);
    this.lastSampleCount = sampleCount;
    if (sampleCount < this.options.minSamples && !smallSample) {
      this.lastScore = undefined;
      this.belowWarningExit = 0;
      this.belowDriftExit = 0;
      return this.moveTo('insufficient_data', undefined, sampleCount, at);
    }
    if (Number.isNaN(score)) throw new RangeError('a drift score must be a number, got NaN');
    this.lastScore = score;
    const { warningAt, driftAt, exitRatio, exitAfter } = this.options;
    this.belowWarningExit = score < warningAt * exitRatio ? this.belowWarningExit + 1 : 0;
    this.belowDriftExit = score < driftAt * exitRatio ? this.belowDriftExit + 1 : 0;
    const next = this.next(score, warningAt, driftAt, exitAfter);
    // A small sample's test can show that something is wrong, never that all is well: `ok` needs minSamples rows.
    if (next === 'ok' && sampleCount < this.options.minSamples) return this.moveTo('insufficient_data', undefined, sampleCount, at);
    return this.moveTo(next, score, sampleCount, at);
  }

  /**
   * An alarm checked between the regular evaluations (the caller's small-sample test): moves the state up to the level
   * the score reaches, never down, and is no evaluation for the hysteresis, whose "three in a row" must stay three of
   * the regular cadence rather than three records of one burst. Returns the transition, if any.
   */
  raise(score: number, sampleCount: number, at?: number): DriftTransition | undefined {
    if (Number.isNaN(score)) throw new RangeError('a drift score must be a number, got NaN');
    const { warningAt, driftAt } = this.options;
    const level: DriftState | undefined = score >= driftAt ? 'drift' : score >= warningAt ? 'warning' : undefined;
    if (level === undefined || LEVEL_RANK[level] <= LEVEL_RANK[this.current]) return undefined;
    this.lastScore = score;
    this.lastSampleCount = sampleCount;
    // The score is above the exit threshold of the level reached (and of any below it): a run below it starts afresh.
    this.belowWarningExit = 0;
    if (level === 'drift') this.belowDriftExit = 0;
    return this.moveTo(level, score, sampleCount, at);
  }

  private next(score: number, warningAt: number, driftAt: number, exitAfter: number): DriftState {
    if (score >= driftAt) return 'drift';
    switch (this.current) {
      case 'insufficient_data':
      case 'ok':
        return score >= warningAt ? 'warning' : 'ok';
      case 'warning':
        return this.belowWarningExit >= exitAfter ? 'ok' : 'warning';
      case 'drift':
        if (this.belowWarningExit >= exitAfter) return 'ok';
        return this.belowDriftExit >= exitAfter ? 'warning' : 'drift';
    }
  }

  /** `at`: when the score that moves it was computed (a transition is never stamped later than its evaluation); now by default. */
  private moveTo(state: DriftState, score: number | undefined, sampleCount: number, at = this.now()): DriftTransition | undefined {
    if (state === this.current) return undefined;
    const transition: DriftTransition = { from: this.current, to: state, at, sampleCount };
    if (score !== undefined) transition.score = score;
    this.current = state;
    this.since = transition.at;
    this.history.push(transition);
    if (this.history.length > this.options.historyLimit) this.history.shift();
    return transition;
  }

  /** Transitions so far, oldest first (at most historyLimit), as copies. */
  transitions(): DriftTransition[] {
    return this.history.map((transition) => ({ ...transition }));
  }

  /** The state, since when, the latest score and the transitions: what a `/monitor` answer reports. */
  snapshot(): DriftStateSnapshot {
    const snapshot: DriftStateSnapshot = { state: this.current, since: this.since, transitions: this.transitions() };
    if (this.lastScore !== undefined) snapshot.score = this.lastScore;
    if (this.lastSampleCount !== undefined) snapshot.sampleCount = this.lastSampleCount;
    return snapshot;
  }
}
