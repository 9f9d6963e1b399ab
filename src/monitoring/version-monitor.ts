/**
 * The live monitor of one served model version that has a reference profile: sliding windows of
 * what its predictions looked like (output confidence, entropy and margin, input image properties,
 * predicted classes, the out-of-distribution flag), compared with the profile every few predictions;
 * a drift state with hysteresis moved by the largest feature PSI; and the accuracy expected from
 * calibrated confidence beside the accuracy realised on labels fed back.
 */
import { z } from 'zod';
import { OptionError, parseOptions } from '../core/options.js';
import { BucketCounts } from '../observability/collected-metric.js';
import { AccuracyWindow, type AccuracySummary, type LabelOutcome } from './accuracy-estimate.js';
import { categoricalFeatureDrift, driftJudgement, driftScore, expectedAccuracyAt, psiBeyondChance, numericFeatureDrift, summariseProbabilities, type DriftJudgement, type FeatureDrift } from './drift-report.js';
import { DRIFT_THRESHOLDS, type DriftThresholds } from './drift-statistics.js';
import { DriftStateMachine, driftStateOptionsSchema, type DriftState, type DriftTransition } from './drift-state.js';
import type { ReferenceProfile } from './reference-profile.js';
import { CategoricalWindow, NumericWindow, slidingWindowOptionsSchema, type WindowSpan } from './sliding-window.js';

export const versionMonitorOptionsSchema = z.object({
  window: slidingWindowOptionsSchema.prefault({}),
  state: driftStateOptionsSchema.prefault({}),
  /**
   * Predictions between two evaluations of the windows against the profile. An evaluation sorts each
   * numeric window (about 0.5 ms for a dozen 1000-value windows); every 100 predictions that is a few
   * microseconds per prediction, and drift shows within 100 predictions of the window reaching it.
   */
  evaluateEvery: z.int().min(1).default(100),
  /** How many of the most drifted features a report names first. */
  topFeatures: z.int().min(1).default(5),
  /**
   * false: a version's reference profile gives out-of-distribution flags only, with no drift windows. For batch jobs,
   * whose records come in the data's order (a folder sorted by class), which windows over traffic would call drift.
   */
  driftWindows: z.boolean().default(true),
  /** Per model, from its config's monitoring.drift: the levels each statistic is judged by, and features reported but not counted. */
  drift: z
    .object({
      thresholds: z.custom<DriftThresholds>((value) => typeof value === 'object' && value !== null).default(DRIFT_THRESHOLDS),
      ignoreFeatures: z.array(z.string()).default([]),
      /** false: the server does not log the state's changes (the model's monitoring.drift.log_state_changes); they are still reported. */
      logStateChanges: z.boolean().default(true),
    })
    .prefault({}),
  /**
   * Per model, from its config's monitoring.ood.threshold: the score above which a row is flagged instead of the profile's,
   * with the share of in-distribution rows it flags (see expectedOodShareAt), which the flagged share is compared with.
   */
  ood: z.object({ threshold: z.number(), expectedShare: z.number().min(0).max(1) }).optional(),
});
export type VersionMonitorOptions = z.infer<typeof versionMonitorOptionsSchema>;
export type VersionMonitorSettings = z.input<typeof versionMonitorOptionsSchema>;

/** The two settings the monitor's checks name, by their keys below the monitor's options. */
export type MonitorSettingKey = 'window.capacity' | 'evaluateEvery';

/**
 * What is wrong with settings each valid alone, named as `name` gives them (a Server names them below its `monitoring`
 * option, the CLI by its flags): a window that cannot hold the state's minimum sample would leave the state at
 * insufficient_data for ever, which looks like a quiet model rather than a monitor that cannot judge; rows between
 * evaluations beyond the window's size would leave it before any evaluation saw them.
 */
export function monitorSettingsProblem(options: Pick<VersionMonitorOptions, 'window' | 'state' | 'evaluateEvery'>, name: (key: MonitorSettingKey) => string): string | undefined {
  const { window, state, evaluateEvery } = options;
  if (window.capacity < state.minSamples) {
    return `a drift window of ${window.capacity} rows (${name('window.capacity')}) is below the ${state.minSamples} rows the drift state needs to judge; give at least ${state.minSamples} (400 or more avoids false warnings, see docs/monitoring.md)`;
  }
  if (evaluateEvery > window.capacity) {
    return `evaluating every ${evaluateEvery} rows (${name('evaluateEvery')}) is more than the ${window.capacity}-row drift window (${name('window.capacity')}) holds: rows would leave the window without ever being judged; give at most ${window.capacity}`;
  }
  return undefined;
}

/** What one answered row tells the monitor. */
export interface MonitoredRow {
  /** The row's class probabilities (see rowProbabilities). */
  probabilities: ArrayLike<number>;
  /** The detector's score, when the profile has one. */
  oodScore?: number;
  /** The served verdict, when it was not the score against the threshold alone (a blank input, see blankIsForeign). */
  oodFlagged?: boolean;
  /** Input properties by feature name (`input.brightness`, …), when the input is an image. */
  inputs?: Readonly<Record<string, number>>;
}

/** Upper bounds of the confidence histogram: finer near 1, where a classifier's confidences crowd. */
export const CONFIDENCE_BUCKETS: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1];

export interface MonitorEvaluation {
  /** Clock time of the evaluation. */
  at: number;
  /** The largest PSI of any feature evaluated but the informational ones: what moves the state. */
  score: number;
  /** Most drifted first (by PSI); features whose window holds fewer than the state's minSamples values are left out. */
  features: FeatureDrift[];
  /**
   * Fewer rows than minSamples, judged on the share of flagged rows alone: a share no chance gives (see OOD_ALARM_P), so
   * a model with little traffic is not blind to plainly foreign inputs for its first 200 rows, or a level that share
   * raised, which the regular evaluations keep judging on it until the window reaches minSamples (see VersionMonitor.step).
   */
  smallSample?: true;
}

/**
 * How unlikely, under the expected false-positive rate, a window's count of flagged rows must be before fewer rows
 * than minSamples are judged on it: one in a million (at 5 %: 13 or more of 50 rows, 19 of 100). Far below what noise gives
 * in a year of evaluations, so it adds no false alarm.
 */
export const OOD_ALARM_P = 1e-6;
/** Rows a window needs before the flagged share is judged on its own. */
export const OOD_ALARM_MIN_ROWS = 30;

/** P(X ≥ k) for X ~ Binomial(n, p), summed in log space (n is at most a few hundred here). */
export function binomialTail(k: number, n: number, p: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  let logTerm = 0; // log C(n, k) p^k (1-p)^(n-k), built up to i = k
  for (let i = 1; i <= k; i++) logTerm += Math.log((n - i + 1) / i);
  logTerm += k * Math.log(p) + (n - k) * Math.log1p(-p);
  let sum = 0;
  for (let i = k; i <= n; i++) {
    sum += Math.exp(logTerm);
    logTerm += Math.log((n - i) / (i + 1)) + Math.log(p) - Math.log1p(-p);
  }
  return Math.min(1, sum);
}

export interface MonitorSnapshot {
  window: WindowSpan;
  /** Rows recorded since the version was loaded. */
  rows: number;
  state: DriftState;
  /** Clock time the state began. */
  since: number;
  /** The windows as they are now, evaluated (at `at`: the first read since they last changed). */
  evaluation?: MonitorEvaluation;
  /** The evaluation the state last stepped on (every evaluateEvery rows): the score the state reflects, hysteresis aside. */
  stateEvaluation?: MonitorEvaluation;
  transitions: DriftTransition[];
  ood?: { threshold: number; checked: number; flagged: number; share?: number; expectedShare: number };
  /** With a calibrated profile. */
  accuracy?: AccuracySummary;
  /** Counts of predicted classes in the window, by class name. */
  classCounts?: Record<string, number>;
}

export interface VersionMonitorHooks {
  now?: () => number;
  /** Called when an evaluation moves the state (for the warning log line). */
  onTransition?: (transition: DriftTransition, evaluation: MonitorEvaluation) => void;
}

/** Share of in-distribution rows a profile's detector flags: measured on held-out reference data (the target rate when none was flagged there). */
export function expectedOodShare(profile: Pick<ReferenceProfile, 'ood'>): number {
  const ood = profile.ood;
  if (!ood) return 0;
  return ood.heldOutFalsePositiveRate > 0 ? ood.heldOutFalsePositiveRate : ood.targetFalsePositiveRate;
}

/**
 * The share of in-distribution rows another threshold than the profile's flags: the share of the held-out scores the
 * profile records above it. Undefined when the profile records none (built before it kept them): the rate a threshold
 * gives cannot be told from the one it was set for.
 */
export function expectedOodShareAt(profile: Pick<ReferenceProfile, 'ood'>, threshold: number): number | undefined {
  const ood = profile.ood;
  if (!ood) return undefined;
  if (threshold === ood.threshold) return expectedOodShare(profile);
  const scores = ood.heldOutScores;
  if (!scores) return undefined;
  return scores.filter((score) => score > threshold).length / scores.length;
}

export class VersionMonitor {
  readonly options: VersionMonitorOptions;
  /** Predicted classes in profile order (label or index), the names class counts and shares use. */
  readonly classNames: readonly string[];
  /** Since load: confidence of every recorded row, and rows per predicted class (for Prometheus). */
  readonly confidence = new BucketCounts(CONFIDENCE_BUCKETS);
  readonly predictedTotals: Float64Array;
  private readonly numeric = new Map<string, NumericWindow>();
  /** One entry per recorded row, whatever features the profile has: the window's span and the state's sample size. */
  private readonly recent: CategoricalWindow;
  private readonly classes?: CategoricalWindow;
  private readonly flagged?: CategoricalWindow;
  private readonly accuracy?: AccuracyWindow;
  private readonly state: DriftStateMachine;
  private readonly now: () => number;
  private rows = 0;
  /** Rows since the last regular evaluation (every evaluateEvery rows); the small-sample alarm leaves it alone. */
  private sinceEvaluation = 0;
  /** The state's level was raised (or last held) on the flagged share of a window below minSamples. */
  private levelOnFlaggedShare = false;
  private oodChecked = 0;
  private oodFlagged = 0;
  private lastEvaluation?: MonitorEvaluation;
  private readonly judgement: DriftJudgement;
  /** Labels applied and steps of the state so far: with the windows' changes, what a snapshot is a function of. */
  private labelsApplied = 0;
  private stateSteps = 0;
  /** The last snapshot, and the changes it was read at (see snapshot). */
  private lastSnapshot?: { changes: number; snapshot: MonitorSnapshot };

  constructor(
    readonly profile: ReferenceProfile,
    options: VersionMonitorSettings = {},
    private readonly hooks: VersionMonitorHooks = {},
  ) {
    this.options = parseOptions('VersionMonitor', versionMonitorOptionsSchema, options);
    const problem = monitorSettingsProblem(this.options, (key) => key);
    if (problem !== undefined) throw new OptionError(`VersionMonitor: ${problem}`);
    this.now = hooks.now ?? Date.now;
    this.judgement = driftJudgement(this.options.drift.thresholds, this.options.drift.ignoreFeatures);
    const window = this.options.window;
    for (const name of Object.keys(profile.features)) this.numeric.set(name, new NumericWindow(window, this.now));
    this.recent = new CategoricalWindow(1, window, this.now);
    this.classNames = Object.keys(profile.classShares ?? {});
    this.predictedTotals = new Float64Array(this.classNames.length);
    if (this.classNames.length > 0) this.classes = new CategoricalWindow(this.classNames.length, window, this.now);
    if (profile.ood) this.flagged = new CategoricalWindow(2, window, this.now);
    if (profile.calibration) this.accuracy = new AccuracyWindow(window, this.now);
    this.state = new DriftStateMachine(this.options.state, this.now);
  }

  /** See expectedOodShare; with a threshold the model's config sets, the share that one flags (expectedOodShareAt). */
  get expectedOodShare(): number {
    return this.options.ood?.expectedShare ?? expectedOodShare(this.profile);
  }

  /** The score above which a row is flagged: the model config's, else the profile's. */
  get oodThreshold(): number | undefined {
    return this.options.ood?.threshold ?? this.profile.ood?.threshold;
  }

  /**
   * Records the rows of one answered request. `requestId` names them for labels fed back later: the
   * id itself for a one-row request, `<id>/<row>` for each row of a batch.
   */
  record(rows: readonly MonitoredRow[], requestId?: string): void {
    const threshold = this.oodThreshold;
    rows.forEach((row, index) => {
      const summary = summariseProbabilities(row.probabilities);
      this.recent.push(0);
      this.confidence.observe(summary.confidence);
      this.numeric.get('output.confidence')?.push(summary.confidence);
      this.numeric.get('output.entropy')?.push(summary.entropy);
      this.numeric.get('output.margin')?.push(summary.margin);
      if (row.inputs) {
        for (const name in row.inputs) this.numeric.get(name)?.push(row.inputs[name]);
      }
      if (this.classes && summary.predicted < this.classNames.length) {
        this.classes.push(summary.predicted);
        this.predictedTotals[summary.predicted] += 1;
      }
      if (this.flagged && row.oodScore !== undefined && threshold !== undefined) {
        const flagged = row.oodFlagged ?? row.oodScore > threshold;
        this.flagged.push(flagged ? 1 : 0);
        this.oodChecked += 1;
        if (flagged) this.oodFlagged += 1;
      }
      if (this.accuracy) {
        const id = requestId === undefined ? '' : rows.length === 1 ? requestId : `${requestId}/${index}`;
        this.accuracy.recordPrediction(id, summary.predicted, expectedAccuracyAt(this.profile.calibration!, summary.confidence));
      }
    });
    this.rows += rows.length;
    this.sinceEvaluation += rows.length;
    if (this.sinceEvaluation >= this.options.evaluateEvery) this.step();
    // Below the minimum sample the flagged-share alarm is also checked on every record: a model with little traffic
    // would otherwise stay blind to foreign inputs until its first evaluation. It may only raise the state, and keeps
    // the regular cadence: when it reset that, the next evaluation came at 177 rows instead of 200 and dropped an
    // alarm's `drift` to insufficient_data while the rows that raised it were still in the window.
    else if (this.smallSampleAlarm()) this.raiseOnAlarm();
  }

  private raiseOnAlarm(): void {
    this.stateSteps += 1;
    const evaluation = this.evaluate();
    const transition = this.state.raise(evaluation.score, this.recent.size, evaluation.at);
    if (!transition) return;
    this.lastEvaluation = evaluation;
    this.levelOnFlaggedShare = true;
    this.hooks.onTransition?.(transition, evaluation);
  }

  /**
   * A window below minSamples whose state stands on its flagged share: the alarm raised it, and the regular
   * evaluations keep judging that share (with the usual hysteresis) rather than dropping to insufficient_data,
   * which would read as the alarm clearing while the flagged rows are still in the window.
   */
  private standsOnFlaggedShare(): boolean {
    const state = this.state.state;
    return this.levelOnFlaggedShare && (state === 'warning' || state === 'drift') && (this.flagged?.size ?? 0) >= OOD_ALARM_MIN_ROWS && this.recent.size < this.options.state.minSamples;
  }

  /** The share of flagged rows no chance gives, in a window of OOD_ALARM_MIN_ROWS up to minSamples rows (see evaluate). */
  private smallSampleAlarm(): boolean {
    const size = this.flagged?.size ?? 0;
    if (this.judgement.notCounted.has('ood.flagged')) return false;
    if (size < OOD_ALARM_MIN_ROWS || size >= Math.max(1, this.options.state.minSamples)) return false;
    const [kept, flagged] = this.flagged!.counts();
    return binomialTail(flagged, kept + flagged, this.expectedOodShare) < OOD_ALARM_P;
  }

  /**
   * The true class of an earlier prediction, by the id its request carried (`<id>/<row>` for a row of
   * a batch). 'unknown' when no such prediction is in the window (never made, aged out, or the profile
   * has no calibration to compare with); 'ambiguous' when several predictions in it carry the id.
   */
  feedback(predictionId: string, trueClass: number): LabelOutcome {
    const outcome = this.accuracy?.recordLabel(predictionId, trueClass) ?? 'unknown';
    if (outcome === 'applied') this.labelsApplied += 1;
    return outcome;
  }

  /** How many predictions awaiting labels carry the id: what tells, among a model's versions, which one made it. */
  predictionsCarrying(predictionId: string): number {
    return this.accuracy?.predictionsCarrying(predictionId) ?? 0;
  }

  /** Compares every window with the profile; the state does not move (see step). */
  evaluate(): MonitorEvaluation {
    const minSamples = this.options.state.minSamples;
    const features: FeatureDrift[] = [];
    for (const [name, window] of this.numeric) {
      if (window.size < Math.max(1, minSamples)) continue;
      features.push(numericFeatureDrift(name, this.profile.features[name], window.values(), this.judgement));
    }
    if (this.classes && this.classes.size >= Math.max(1, minSamples)) {
      features.push(categoricalFeatureDrift('output.class', Object.values(this.profile.classShares!), this.classes.counts(), { reference: this.profile.provenance.data.examples }, this.judgement));
    }
    const expected = this.expectedOodShare;
    if (this.flagged && this.flagged.size >= Math.max(1, minSamples)) {
      features.push(categoricalFeatureDrift('ood.flagged', [1 - expected, expected], this.flagged.counts(), {}, this.judgement));
    } else if (this.smallSampleAlarm() || this.standsOnFlaggedShare()) {
      const feature = categoricalFeatureDrift('ood.flagged', [1 - expected, expected], this.flagged!.counts(), {}, this.judgement);
      return { at: this.now(), score: feature.psi, features: [feature], smallSample: true };
    }
    features.sort((a, b) => psiBeyondChance(b) - psiBeyondChance(a));
    return { at: this.now(), score: driftScore(features), features };
  }

  /** The regular evaluation: evaluates and moves the state with the result; returns the transition, if any. */
  step(): DriftTransition | undefined {
    this.stateSteps += 1;
    this.sinceEvaluation = 0;
    const evaluation = this.evaluate();
    this.lastEvaluation = evaluation;
    // A small window judged on its flagged share alone is judged as a full one (see MonitorEvaluation.smallSample), but
    // reports the rows it really held.
    const transition = this.state.evaluate(evaluation.score, this.recent.size, { smallSample: evaluation.smallSample === true, at: evaluation.at });
    const state = this.state.state;
    this.levelOnFlaggedShare = evaluation.smallSample === true && (state === 'warning' || state === 'drift');
    if (transition) this.hooks.onTransition?.(transition, evaluation);
    return transition;
  }

  /**
   * The latest evaluation (for gauges), without evaluating unless the rows have aged out: a scrape reads the scores
   * before the state, and the scores of a window that has since emptied must not sit beside insufficient_data.
   */
  get latest(): MonitorEvaluation | undefined {
    this.settleIfAged();
    return this.lastEvaluation;
  }

  /** The accuracy window's figures; undefined when the profile has no calibration. */
  accuracySummary(): AccuracySummary | undefined {
    return this.accuracy?.summary();
  }

  get driftState(): DriftState {
    this.settleIfAged();
    return this.state.state;
  }

  /**
   * Rows age out of the windows without traffic to evaluate them: once too few are left to judge, the state says so
   * at once (it stayed at `drift` over an empty window when traffic stopped).
   */
  private settleIfAged(): void {
    if (this.state.state === 'insufficient_data' || this.recent.size >= this.options.state.minSamples) return;
    // A window still large enough for the small-sample OOD alarm is left to the evaluations rows bring: reads must not step it.
    if ((this.flagged?.size ?? 0) >= OOD_ALARM_MIN_ROWS) return;
    this.step();
  }

  /**
   * What `/monitor` reports: the windows evaluated now, and the state as the last step left it (with that step's
   * evaluation). The same object comes back until a window changes (a row arrives or ages out, a label is applied) or
   * the state steps: the dashboard reads it every interval, and evaluating full windows of a dozen features takes about
   * a millisecond.
   */
  snapshot(): MonitorSnapshot {
    this.settleIfAged();
    const changes = this.changes();
    if (this.lastSnapshot?.changes !== changes) this.lastSnapshot = { changes, snapshot: this.readSnapshot() };
    return this.lastSnapshot.snapshot;
  }

  /** Every arrival and departure of every window, label applied and step of the state so far: each only grows, so an unchanged sum means none moved. */
  private changes(): number {
    let changes = this.recent.changeCount + (this.classes?.changeCount ?? 0) + (this.flagged?.changeCount ?? 0) + (this.accuracy?.changeCount ?? 0);
    for (const window of this.numeric.values()) changes += window.changeCount;
    return changes + this.labelsApplied + this.stateSteps;
  }

  private readSnapshot(): MonitorSnapshot {
    const state = this.state.snapshot();
    const snapshot: MonitorSnapshot = {
      window: this.recent.span(),
      rows: this.rows,
      state: state.state,
      since: state.since,
      evaluation: this.evaluate(),
      stateEvaluation: this.lastEvaluation,
      transitions: state.transitions,
    };
    if (this.profile.ood) {
      const counts = this.flagged?.counts() ?? [0, 0];
      const inWindow = counts[0] + counts[1];
      snapshot.ood = { threshold: this.oodThreshold!, checked: this.oodChecked, flagged: this.oodFlagged, expectedShare: this.expectedOodShare };
      if (inWindow > 0) snapshot.ood.share = counts[1] / inWindow;
    }
    const accuracy = this.accuracySummary();
    if (accuracy) snapshot.accuracy = accuracy;
    if (this.classes) {
      const counts = this.classes.counts();
      snapshot.classCounts = Object.fromEntries(this.classNames.map((name, index) => [name, counts[index]]));
    }
    return snapshot;
  }
}
