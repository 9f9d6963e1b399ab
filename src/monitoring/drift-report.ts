/**
 * How a set of recent values compares with a reference profile, feature by feature: the same
 * figures for the offline `nereid monitor` report and the server's sliding windows, so that a
 * batch job's records and live traffic are judged alike.
 */
import { chanceKs, chancePsi, DRIFT_THRESHOLDS, jensenShannon, ksStatistic, psi, psiEquivalentOfKs, type DriftThresholds } from './drift-statistics.js';
import { featureBin, type Calibration, type FeatureSummary } from './reference-profile.js';

export type DriftLevel = 'ok' | 'warning' | 'drift';

export interface FeatureDrift {
  feature: string;
  /** Population stability index over the reference's decile bins (for class shares and the OOD share: over the categories). */
  psi: number;
  /** The PSI a window of this size drawn from the reference itself scores on average (chancePsi); levels and the drift score count PSI beyond it. */
  chancePsi?: number;
  /** Two-sample Kolmogorov–Smirnov D against the reference's sample; absent for categorical features. */
  ks?: number;
  /** The D a window of this size drawn from the reference scores on average (chanceKs); the level counts D beyond it. */
  chanceKs?: number;
  /** Jensen–Shannon divergence in bits; categorical features only. */
  jensenShannon?: number;
  level: DriftLevel;
  /** Reported, but not counted in the drift score or state (see INFORMATIONAL_FEATURES). */
  informational?: true;
}

/**
 * Features reported with their levels but not counted in the drift score or state: pre-processing resizes every
 * image to the model's input, so the size alone changes nothing the model is given (measured: Fashion-MNIST test
 * garments enlarged 4× scored PSI 18 on width and height while the OOD share, the expected and the realised accuracy
 * stayed where they were). The aspect ratio counts: a stretch resize distorts what the model sees.
 */
export const INFORMATIONAL_FEATURES: ReadonlySet<string> = new Set(['input.width', 'input.height']);

/**
 * How features are judged: the levels of each statistic, and the features reported but not counted (the informational
 * ones, and those a model's config ignores: monitoring.drift.ignore_features).
 */
export interface DriftJudgement {
  thresholds: DriftThresholds;
  notCounted: ReadonlySet<string>;
}

export const DEFAULT_JUDGEMENT: DriftJudgement = { thresholds: DRIFT_THRESHOLDS, notCounted: INFORMATIONAL_FEATURES };

/** The judgement a model's config asks for: its thresholds, and its ignored features besides the informational ones. */
export const driftJudgement = (thresholds: DriftThresholds, ignored: readonly string[]): DriftJudgement => ({
  thresholds,
  notCounted: new Set([...INFORMATIONAL_FEATURES, ...ignored]),
});

const judged = (drift: FeatureDrift, judgement: DriftJudgement): FeatureDrift => (judgement.notCounted.has(drift.feature) ? { ...drift, informational: true } : drift);

/** The features that move a drift score or state: every one but the informational ones. */
export const countedFeatures = (features: readonly FeatureDrift[]): FeatureDrift[] => features.filter((feature) => !feature.informational);

/** A feature's PSI beyond what chance gives a window of its size: what its level and the drift score are judged by. */
export const psiBeyondChance = (feature: Pick<FeatureDrift, 'psi' | 'chancePsi'>): number => Math.max(0, feature.psi - (feature.chancePsi ?? 0));

/** The drift score of a window: the largest PSI beyond chance of the counted features (0 for none). */
export const driftScore = (features: readonly FeatureDrift[]): number => Math.max(0, ...countedFeatures(features).map(psiBeyondChance));

/** The drift levels from least to most severe. */
export const DRIFT_LEVELS: readonly DriftLevel[] = ['ok', 'warning', 'drift'];

export const levelOf = (value: number, thresholds: { readonly warning: number; readonly drift: number }): DriftLevel =>
  value >= thresholds.drift ? 'drift' : value >= thresholds.warning ? 'warning' : 'ok';

/** The most severe of the levels ('ok' for none). */
export const worstLevel = (levels: readonly DriftLevel[]): DriftLevel => DRIFT_LEVELS[Math.max(0, ...levels.map((level) => DRIFT_LEVELS.indexOf(level)))];

/** Whether `state` fails a gate set at `failOn` (monitor --fail-on): that level or worse; too little data to judge never fails. */
export const failsAt = (state: DriftLevel | 'insufficient_data', failOn: DriftLevel): boolean => state !== 'insufficient_data' && worstLevel([state, failOn]) === state;

/** A numeric feature's drift: PSI over the reference's bins and KS D against its sample; the level is the worse of the two. */
export function numericFeatureDrift(feature: string, reference: FeatureSummary, values: ArrayLike<number>, judgement = DEFAULT_JUDGEMENT): FeatureDrift {
  return judged(numericDrift(feature, reference, values, judgement.thresholds), judgement);
}

function numericDrift(feature: string, reference: FeatureSummary, values: ArrayLike<number>, thresholds: DriftThresholds): FeatureDrift {
  // A feature that never varied on the reference (every image 28 wide) has one bin and a sample of one value: what can
  // drift is the share of values that differ from it, which is KS D exactly. PSI over (same, different) would put the
  // reference's empty bin at 1e-4 and call 5 % of differing rows drift (PSI 0.3), so the share is scored on PSI's
  // scale instead (psiEquivalentOfKs: 12.7 % differing is a warning, 20 % drift), never above that two-bin PSI.
  if (reference.min === reference.max) {
    let different = 0;
    for (let index = 0; index < values.length; index++) if (values[index] !== reference.min) different += 1;
    const share = values.length > 0 ? different / values.length : 0;
    const stability = Math.min(psi([1, 0], [values.length - different, different]), psiEquivalentOfKs(share));
    return { feature, psi: stability, ks: share, level: worstLevel([levelOf(stability, thresholds.psi), levelOf(share, thresholds.ks)]) };
  }
  const counts = new Array<number>(reference.binCounts.length).fill(0);
  for (let index = 0; index < values.length; index++) counts[featureBin(reference.binEdges, values[index])] += 1;
  const stability = psi(reference.binCounts, counts);
  const chance = chancePsi(reference.binCounts.length, values.length, reference.count);
  const ks = ksStatistic(reference.sample, values);
  // Chance from the whole reference, not the sample's size: the sample is evenly spaced through the sorted reference
  // (quantiles, not a random draw), so its distribution function is within 1/sample of the reference's, far below the
  // random error a random sample of that size would add.
  const ksChance = chanceKs(values.length, reference.count);
  const level = worstLevel([levelOf(Math.max(0, stability - chance), thresholds.psi), levelOf(Math.max(0, ks - ksChance), thresholds.ks)]);
  return { feature, psi: stability, chancePsi: chance, ks, chanceKs: ksChance, level };
}

/**
 * A categorical feature's drift (class shares, flagged or not): PSI and Jensen–Shannon over the categories; the level is
 * the worse of the two, each beyond its chance value (JS is PSI / 8 in nats to second order, so its chance is too).
 */
export function categoricalFeatureDrift(
  feature: string,
  referenceShares: ArrayLike<number>,
  currentCounts: ArrayLike<number>,
  /** The rows behind each side (by default: the current counts' sum, and a reference known exactly), which chance depends on. */
  rows: { current?: number; reference?: number } = {},
  judgement = DEFAULT_JUDGEMENT,
): FeatureDrift {
  const { thresholds } = judgement;
  const stability = psi(referenceShares, currentCounts);
  let counted = 0;
  for (let index = 0; index < currentCounts.length; index++) counted += currentCounts[index];
  const chance = chancePsi(referenceShares.length, rows.current ?? counted, rows.reference);
  const divergence = jensenShannon(referenceShares, currentCounts);
  const divergenceChance = chance / (8 * Math.LN2);
  return judged(
    {
      feature,
      psi: stability,
      chancePsi: chance,
      jensenShannon: divergence,
      level: worstLevel([levelOf(Math.max(0, stability - chance), thresholds.psi), levelOf(Math.max(0, divergence - divergenceChance), thresholds.jensenShannon)]),
    },
    judgement,
  );
}

/**
 * The accuracy the reference's calibration expects of a prediction made with `confidence`: the
 * accuracy of the reference examples in its confidence bin (confidence-based performance
 * estimation). A confidence in no bin (the reference never saw one like it) counts as itself.
 */
export function expectedAccuracyAt(calibration: Calibration, confidence: number): number {
  const bin = calibration.bins.find((candidate) => confidence >= candidate.lower && (confidence < candidate.upper || candidate.upper === 1));
  return bin ? bin.accuracy : confidence;
}

/** Top-1 class, confidence, margin over the runner-up and entropy (nats) of one row of probabilities. */
export interface OutputSummary {
  predicted: number;
  confidence: number;
  margin: number;
  entropy: number;
}

export function summariseProbabilities(probabilities: ArrayLike<number>): OutputSummary {
  let predicted = 0;
  let best = -Infinity;
  let second = -Infinity;
  let entropy = 0;
  for (let index = 0; index < probabilities.length; index++) {
    const p = probabilities[index];
    if (p > best) {
      second = best;
      best = p;
      predicted = index;
    } else if (p > second) second = p;
    if (p > 0) entropy -= p * Math.log(p);
  }
  return { predicted, confidence: best, margin: best - (Number.isFinite(second) ? second : 0), entropy };
}
