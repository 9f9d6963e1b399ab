import { z } from 'zod';
import { type SlidingWindowSettings, TimedWindow, type WindowSpan } from './sliding-window.js';

/**
 * Accuracy without labels, by confidence-based performance estimation (CBPE): if a model's top-1 confidence is
 * calibrated — of the predictions made with confidence 0.8, 80 % are right — then the mean confidence over a window is
 * the expected share of right answers in it. Softmax confidence is rarely calibrated out of the box, so a calibration
 * curve is fitted on labelled reference data (isotonic regression) and applied to each confidence first.
 *
 * The estimate rests on one assumption: that P(right | confidence) stays what it was on the reference data. It holds
 * for shifts that change which inputs arrive more than what they mean; it cannot see a change in the labels
 * themselves (concept drift), and confident mistakes on out-of-distribution inputs break it — which is why labels,
 * where they come back, are compared with it (`estimateError`, `calibrationError`).
 */

/** A monotone map from raw top-1 confidence to the chance of being right: knots joined by straight lines, flat beyond the ends. */
export const calibrationCurveSchema = z
  .object({
    confidence: z.array(z.number().min(0).max(1)).min(1),
    accuracy: z.array(z.number().min(0).max(1)).min(1),
  })
  .refine((curve) => curve.confidence.length === curve.accuracy.length, { message: 'confidence and accuracy must have one entry per knot' })
  .refine((curve) => curve.confidence.every((value, index) => index === 0 || value > curve.confidence[index - 1]), {
    message: 'knot confidences must be strictly ascending',
  })
  .refine((curve) => curve.accuracy.every((value, index) => index === 0 || value >= curve.accuracy[index - 1]), {
    message: 'knot accuracies must not decrease (a calibration curve is monotone)',
  });
export type CalibrationCurve = z.infer<typeof calibrationCurveSchema>;

function requireConfidences(confidences: ArrayLike<number>): void {
  for (let index = 0; index < confidences.length; index++) {
    const confidence = confidences[index];
    if (!(confidence >= 0 && confidence <= 1)) throw new RangeError(`confidence ${index} must lie in [0, 1], got ${confidence}`);
  }
}

function requirePaired(confidences: ArrayLike<number>, correct: ArrayLike<boolean>): void {
  if (confidences.length !== correct.length) {
    throw new RangeError(`each confidence needs its outcome: got ${confidences.length} confidences and ${correct.length} outcomes`);
  }
  requireConfidences(confidences);
}

/** Fits a calibration curve to labelled predictions by isotonic regression (pool adjacent violators). */
export function fitIsotonicCalibration(confidences: ArrayLike<number>, correct: ArrayLike<boolean>): CalibrationCurve {
  requirePaired(confidences, correct);
  if (confidences.length === 0) throw new RangeError('a calibration curve needs at least one labelled prediction');
  const order = Array.from({ length: confidences.length }, (_, index) => index).sort((a, b) => confidences[a] - confidences[b]);
  /** Runs of neighbouring confidences fitted with one value: their share right, weighted by how many they hold. */
  const blocks: Array<{ lowest: number; highest: number; right: number; count: number }> = [];
  for (const index of order) {
    const confidence = confidences[index];
    const right = correct[index] ? 1 : 0;
    const last = blocks[blocks.length - 1];
    // Equal confidences must get one value, so they join the same block before any ordering is judged.
    if (last && last.highest === confidence) {
      last.right += right;
      last.count += 1;
    } else {
      blocks.push({ lowest: confidence, highest: confidence, right, count: 1 });
    }
    // Pool while a block's share is not above its predecessor's: what keeps the fit non-decreasing.
    while (blocks.length >= 2) {
      const top = blocks[blocks.length - 1];
      const below = blocks[blocks.length - 2];
      if (below.right / below.count < top.right / top.count) break;
      below.highest = top.highest;
      below.right += top.right;
      below.count += top.count;
      blocks.pop();
    }
  }
  const curve: CalibrationCurve = { confidence: [], accuracy: [] };
  for (const block of blocks) {
    const accuracy = block.right / block.count;
    curve.confidence.push(block.lowest);
    curve.accuracy.push(accuracy);
    if (block.highest > block.lowest) {
      curve.confidence.push(block.highest);
      curve.accuracy.push(accuracy);
    }
  }
  return curve;
}

/** The calibrated chance of being right for a raw confidence: linear between the curve's knots, flat beyond its ends. */
export function calibrate(curve: CalibrationCurve, confidence: number): number {
  if (!(confidence >= 0 && confidence <= 1)) throw new RangeError(`confidence must lie in [0, 1], got ${confidence}`);
  const knots = curve.confidence;
  if (confidence <= knots[0]) return curve.accuracy[0];
  if (confidence >= knots[knots.length - 1]) return curve.accuracy[knots.length - 1];
  // The first knot above the confidence, by binary search: curves fitted on large sets have many knots.
  let low = 1;
  let high = knots.length - 1;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (knots[middle] <= confidence) low = middle + 1;
    else high = middle;
  }
  const fraction = (confidence - knots[low - 1]) / (knots[low] - knots[low - 1]);
  return curve.accuracy[low - 1] + fraction * (curve.accuracy[low] - curve.accuracy[low - 1]);
}

/** CBPE's estimate: the mean of calibrated top-1 confidences, or undefined for none. */
export function expectedAccuracy(calibratedConfidences: ArrayLike<number>): number | undefined {
  requireConfidences(calibratedConfidences);
  if (calibratedConfidences.length === 0) return undefined;
  let sum = 0;
  for (let index = 0; index < calibratedConfidences.length; index++) sum += calibratedConfidences[index];
  return sum / calibratedConfidences.length;
}

/** One bin of a reliability diagram: predictions whose confidence fell in [lower, upper), how sure they were and how often right. */
export interface ReliabilityBin {
  lower: number;
  upper: number;
  count: number;
  meanConfidence: number;
  accuracy: number;
}

/**
 * The reliability diagram of labelled predictions over `bins` equal-width confidence bins: [k/bins, (k+1)/bins), the
 * last closed so that confidence 1 counts. Only bins holding predictions are returned.
 */
export function reliabilityBins(confidences: ArrayLike<number>, correct: ArrayLike<boolean>, bins = 10): ReliabilityBin[] {
  requirePaired(confidences, correct);
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`bins must be a positive integer, got ${bins}`);
  const count = new Float64Array(bins);
  const confidenceSum = new Float64Array(bins);
  const right = new Float64Array(bins);
  for (let index = 0; index < confidences.length; index++) {
    const bin = Math.min(bins - 1, Math.floor(confidences[index] * bins));
    count[bin] += 1;
    confidenceSum[bin] += confidences[index];
    if (correct[index]) right[bin] += 1;
  }
  const result: ReliabilityBin[] = [];
  for (let bin = 0; bin < bins; bin++) {
    if (count[bin] === 0) continue;
    result.push({ lower: bin / bins, upper: (bin + 1) / bins, count: count[bin], meanConfidence: confidenceSum[bin] / count[bin], accuracy: right[bin] / count[bin] });
  }
  return result;
}

/**
 * Expected calibration error: over the reliability bins, the gap between how sure the predictions were and how often
 * they were right, weighted by each bin's share. 0 for a perfectly calibrated model; undefined for no predictions.
 */
export function expectedCalibrationError(confidences: ArrayLike<number>, correct: ArrayLike<boolean>, bins = 10): number | undefined {
  const diagram = reliabilityBins(confidences, correct, bins);
  if (diagram.length === 0) return undefined;
  let gap = 0;
  for (const bin of diagram) gap += bin.count * Math.abs(bin.accuracy - bin.meanConfidence);
  return gap / confidences.length;
}

/**
 * Why an accuracy estimate from confidence is not to be trusted in `state`, or undefined in an ok state: it assumes the
 * reference's calibration holds, which drifted inputs break (measured: 80 % estimated against 55 % realised on noisy
 * garments; inverted ones 75 % against 33 %).
 */
export function accuracyCaution(state: string, labelled = 0): string | undefined {
  if (state === 'ok') return undefined;
  // Once labels have come back, asking for them again reads as if they had been lost.
  const measure = labelled > 0 ? `the accuracy realised on the ${labelled} labelled row${labelled === 1 ? '' : 's'} measures it` : 'label some rows (feedback) to measure it';
  return `the estimate assumes the model is as well calibrated as on its reference data; with the state ${state.replace('_', ' ')}, it may be far from the true accuracy: ${measure}`;
}

/** What an accuracy window reports. Figures over no predictions are absent rather than 0 or NaN. */
export interface AccuracySummary {
  window: WindowSpan;
  /** Predictions in the window, and how many of them have had their true label fed back. */
  predictions: number;
  labelled: number;
  /** CBPE's estimate over every prediction in the window. */
  expectedAccuracy?: number;
  /** The share of labelled predictions that were right. */
  realisedAccuracy?: number;
  /** CBPE's estimate over the labelled predictions only: the figure to hold against realisedAccuracy, as labels may come back for a biased subset. */
  expectedAccuracyOnLabelled?: number;
  /** expectedAccuracyOnLabelled − realisedAccuracy: above 0, the estimate is optimistic. */
  estimateError?: number;
  /** Expected calibration error of the labelled predictions' calibrated confidences (10 bins). */
  calibrationError?: number;
}

const NO_LABEL = -1;

/** What became of a label: applied to its prediction; no prediction with that id in the window; or several, so none is labelled. */
export type LabelOutcome = 'applied' | 'unknown' | 'ambiguous';

/**
 * The recent predictions of one model version with their calibrated top-1 confidence, and the true labels fed back for
 * them by request id. Bounded like every window (last N, none older than T): a label for a prediction that has left
 * the window is turned away, and the id index never holds more than the window's entries. A request id carried by
 * more than one prediction in the window cannot say which of them a label is for, so such a label is turned away too.
 */
export class AccuracyWindow extends TimedWindow {
  private readonly requestIds: Array<string | undefined>;
  private readonly predicted: Int32Array;
  private readonly label: Int32Array;
  private readonly confidence: Float64Array;
  private readonly slotOf = new Map<string, number>();
  /** How many predictions in the window carry each request id: above 1, a label for it is ambiguous. */
  private readonly predictionsWith = new Map<string, number>();

  constructor(options: SlidingWindowSettings = {}, now: () => number = Date.now) {
    super(options, now);
    this.requestIds = new Array<string | undefined>(this.capacity);
    this.predicted = new Int32Array(this.capacity);
    this.label = new Int32Array(this.capacity);
    this.confidence = new Float64Array(this.capacity);
  }

  protected dropped(slot: number): void {
    const requestId = this.requestIds[slot] as string;
    // A reused request id points at its newest prediction; an older one leaving must not unlink it.
    if (this.slotOf.get(requestId) === slot) this.slotOf.delete(requestId);
    const left = (this.predictionsWith.get(requestId) ?? 1) - 1;
    if (left > 0) this.predictionsWith.set(requestId, left);
    else this.predictionsWith.delete(requestId);
    this.requestIds[slot] = undefined;
  }

  /** Records a prediction: its request id, the predicted class index and its calibrated top-1 confidence. */
  recordPrediction(requestId: string, predictedClass: number, calibratedConfidence: number): void {
    requireClassIndex(predictedClass, 'predicted class');
    if (!(calibratedConfidence >= 0 && calibratedConfidence <= 1)) throw new RangeError(`confidence must lie in [0, 1], got ${calibratedConfidence}`);
    const slot = this.admit();
    this.requestIds[slot] = requestId;
    this.predicted[slot] = predictedClass;
    this.label[slot] = NO_LABEL;
    this.confidence[slot] = calibratedConfidence;
    this.slotOf.set(requestId, slot);
    this.predictionsWith.set(requestId, (this.predictionsWith.get(requestId) ?? 0) + 1);
  }

  /**
   * Records the true class of an earlier prediction. 'unknown' when no prediction with that request id is in the
   * window (never made, or already aged out), so the caller can say which labels came too late; 'ambiguous', and
   * nothing labelled, when more than one prediction in the window carries the id (which one the label is for cannot be
   * told, and a guess would skew the realised accuracy); a second label for the same prediction replaces the first.
   */
  recordLabel(requestId: string, trueClass: number): LabelOutcome {
    requireClassIndex(trueClass, 'true class');
    this.expireNow();
    const slot = this.slotOf.get(requestId);
    if (slot === undefined) return 'unknown';
    if ((this.predictionsWith.get(requestId) ?? 0) > 1) return 'ambiguous';
    this.label[slot] = trueClass;
    return 'applied';
  }

  /** How many predictions in the window carry the request id: 0 (a label for it would be unknown), 1, or more (ambiguous). */
  predictionsCarrying(requestId: string): number {
    this.expireNow();
    return this.predictionsWith.get(requestId) ?? 0;
  }

  summary(): AccuracySummary {
    const all: number[] = [];
    const labelledConfidences: number[] = [];
    const labelledCorrect: boolean[] = [];
    this.forEachLive((slot) => {
      all.push(this.confidence[slot]);
      if (this.label[slot] === NO_LABEL) return;
      labelledConfidences.push(this.confidence[slot]);
      labelledCorrect.push(this.label[slot] === this.predicted[slot]);
    });
    const summary: AccuracySummary = { window: this.span(), predictions: all.length, labelled: labelledConfidences.length };
    const expected = expectedAccuracy(all);
    if (expected !== undefined) summary.expectedAccuracy = expected;
    if (labelledConfidences.length > 0) {
      const realised = labelledCorrect.filter(Boolean).length / labelledCorrect.length;
      const expectedOnLabelled = expectedAccuracy(labelledConfidences) as number;
      summary.realisedAccuracy = realised;
      summary.expectedAccuracyOnLabelled = expectedOnLabelled;
      summary.estimateError = expectedOnLabelled - realised;
      summary.calibrationError = expectedCalibrationError(labelledConfidences, labelledCorrect);
    }
    return summary;
  }
}

function requireClassIndex(classIndex: number, what: string): void {
  if (!Number.isInteger(classIndex) || classIndex < 0) throw new RangeError(`${what} must be a class index (a whole number ≥ 0), got ${classIndex}`);
}
