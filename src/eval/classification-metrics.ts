/**
 * What `nereid eval` reports about a classifier, computed from its scores: top-1 and top-k
 * accuracy, per-class precision and recall, the confusion matrix and the expected calibration
 * error against labels; and, between two versions of a model, how often they agree and how far
 * their scores move. Pure arithmetic on arrays, so every figure can be checked by hand.
 */

/** Scores of one example, one per class: probabilities (the model's output after its activation) for calibration to mean anything. */
export type ClassScores = ArrayLike<number>;

export interface ClassMetrics {
  /** The class's name, when the options give the names: a JSON reader needs no other list to know which class a row is. */
  class?: string;
  /** Of the examples predicted as this class, the share that are; NaN when none was predicted. */
  precision: number;
  /** Of the examples of this class, the share predicted as it; NaN when there were none. */
  recall: number;
  /** Examples labelled with this class. */
  support: number;
}

export interface ClassificationReport {
  count: number;
  top1Accuracy: number;
  /** k of topKAccuracy. */
  k: number;
  topKAccuracy: number;
  perClass: ClassMetrics[];
  /** confusion[label][predicted]: how many examples of a class were predicted as each class. */
  confusion: number[][];
  /** Expected calibration error: the gap between confidence (the top score) and accuracy, averaged over equal-width confidence bins, weighted by their examples. */
  ece: number;
}

export interface ClassificationOptions {
  classes: number;
  /** The classes' names, in index order. */
  names?: readonly string[];
  /** Default 5 (capped at the number of classes). */
  topK?: number;
  /** Confidence bins for the calibration error; default 15. */
  bins?: number;
}

/** The index of the highest score; the first on ties, as argmax conventionally is. */
export function argmax(scores: ClassScores): number {
  let best = 0;
  for (let index = 1; index < scores.length; index++) if (scores[index] > scores[best]) best = index;
  return best;
}

/** Whether `label` is among the k highest scores (ties broken towards lower indices, like argmax). */
function inTopK(scores: ClassScores, label: number, k: number): boolean {
  const own = scores[label];
  let above = 0;
  for (let index = 0; index < scores.length; index++) {
    if (scores[index] > own || (scores[index] === own && index < label)) above += 1;
    if (above >= k) return false;
  }
  return true;
}

function checkShapes(predictions: readonly ClassScores[], classes: number): void {
  for (const [index, scores] of predictions.entries()) {
    if (scores.length !== classes) throw new Error(`example ${index} has ${scores.length} scores; the model has ${classes} classes`);
  }
}

export function evaluateClassification(predictions: readonly ClassScores[], labels: readonly number[], options: ClassificationOptions): ClassificationReport {
  const { classes } = options;
  if (predictions.length !== labels.length) throw new Error(`${predictions.length} predictions but ${labels.length} labels`);
  checkShapes(predictions, classes);
  const k = Math.min(options.topK ?? 5, classes);
  const bins = options.bins ?? 15;
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  const binCount = new Array<number>(bins).fill(0);
  const binCorrect = new Array<number>(bins).fill(0);
  const binConfidence = new Array<number>(bins).fill(0);
  let correct = 0;
  let correctTopK = 0;
  for (const [index, scores] of predictions.entries()) {
    const label = labels[index];
    if (!Number.isInteger(label) || label < 0 || label >= classes) throw new Error(`example ${index} has label ${label}; labels are 0..${classes - 1}`);
    const predicted = argmax(scores);
    confusion[label][predicted] += 1;
    const hit = predicted === label;
    if (hit) correct += 1;
    if (inTopK(scores, label, k)) correctTopK += 1;
    const confidence = scores[predicted];
    // Bin i holds confidences in [i/bins, (i+1)/bins); 1 goes to the last.
    const bin = Math.min(bins - 1, Math.max(0, Math.floor(confidence * bins)));
    binCount[bin] += 1;
    binConfidence[bin] += confidence;
    if (hit) binCorrect[bin] += 1;
  }
  const count = predictions.length;
  let ece = 0;
  for (let bin = 0; bin < bins; bin++) {
    if (binCount[bin] === 0) continue;
    ece += (binCount[bin] / count) * Math.abs(binCorrect[bin] / binCount[bin] - binConfidence[bin] / binCount[bin]);
  }
  const perClass = confusion.map((row, cls) => {
    const support = row.reduce((sum, value) => sum + value, 0);
    const predictedAs = confusion.reduce((sum, other) => sum + other[cls], 0);
    return { ...(options.names ? { class: options.names[cls] } : {}), precision: predictedAs ? row[cls] / predictedAs : NaN, recall: support ? row[cls] / support : NaN, support };
  });
  return { count, top1Accuracy: count ? correct / count : NaN, k, topKAccuracy: count ? correctTopK / count : NaN, perClass, confusion, ece };
}

export interface ScoreAgreement {
  count: number;
  /** Share of examples whose top-1 class is the same in both. */
  top1Agreement: number;
  /** Largest absolute difference of any score. */
  maxAbsDelta: number;
  /** Mean absolute difference over every score of every example. */
  meanAbsDelta: number;
}

/** How two versions' scores on the same examples compare; labels are not needed. */
export function compareScores(reference: readonly ClassScores[], candidate: readonly ClassScores[]): ScoreAgreement {
  if (reference.length !== candidate.length) throw new Error(`${reference.length} reference predictions but ${candidate.length} candidate ones`);
  let agree = 0;
  let maxAbsDelta = 0;
  let deltaSum = 0;
  let scores = 0;
  for (const [index, expected] of reference.entries()) {
    const actual = candidate[index];
    if (actual.length !== expected.length) throw new Error(`example ${index}: ${expected.length} reference scores but ${actual.length} candidate ones`);
    if (argmax(expected) === argmax(actual)) agree += 1;
    for (let cls = 0; cls < expected.length; cls++) {
      const delta = Math.abs(expected[cls] - actual[cls]);
      if (delta > maxAbsDelta) maxAbsDelta = delta;
      deltaSum += delta;
    }
    scores += expected.length;
  }
  const count = reference.length;
  return { count, top1Agreement: count ? agree / count : NaN, maxAbsDelta, meanAbsDelta: scores ? deltaSum / scores : NaN };
}
