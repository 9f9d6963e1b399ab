/**
 * What a model's output means decides how two versions' outputs are compared and how they are
 * scored against labels: class scores (top-1), a CTC sequence of per-step class probabilities
 * (decoded text, compared by line and by character), or a probability map (the region above a
 * threshold, compared by intersection over union). The kind is read from the output's declaration:
 * labelled outputs of one dimension are classes, labelled outputs of two are sequences, and
 * unlabelled ones are maps.
 */
import { compareScores, type ClassScores } from './classification-metrics.js';
import { editDistance } from '../core/edit-distance.js';
import { decodeCtc } from '../pipelines/ocr/ctc-decode.js';

export { editDistance };

export type OutputKind = 'classification' | 'ctc' | 'mask';

export const OUTPUT_KINDS: readonly OutputKind[] = ['classification', 'ctc', 'mask'];

/** One example's output, its batch dimension removed. */
export interface ExampleOutput {
  data: Float32Array;
  dims: readonly number[];
}

/** The kind an output's declaration implies (dims without the batch dimension). */
export function outputKindOf(output: { dims: readonly number[]; labelled: boolean }): OutputKind {
  // A vector of several scores is a classifier's, labels file or not: its top-1 compares without class names.
  if (!output.labelled) return output.dims.length === 1 && output.dims[0] !== 1 ? 'classification' : 'mask';
  return output.dims.length >= 2 ? 'ctc' : 'classification';
}

export interface ComparisonOptions {
  /** Classes' names, for CTC decoding (class 0 is the blank). */
  labels?: readonly string[];
  /** A map's pixels at or above it are the region compared. Default 0.3, PaddleOCR's detection threshold. */
  threshold?: number;
}

export interface AgreementReport {
  count: number;
  /** What `agreement` measures: top-1 class, identical lines of text, or mean IoU of the thresholded maps. */
  measure: 'top-1' | 'identical lines' | 'mean IoU';
  /** Share of examples agreeing (classification, CTC), or mean intersection over union (maps). */
  agreement: number;
  /** CTC: 1 - characters edited / characters of the reference's text. */
  characterAgreement?: number;
  /** Largest absolute difference of any value. */
  maxAbsDelta: number;
  /** Mean absolute difference over every value of every example. */
  meanAbsDelta: number;
}

/** Greedy CTC decoding of [steps, classes] probabilities: argmax per step, repeats collapsed, the blank (class 0) dropped. */
export function ctcGreedyText(output: ExampleOutput, labels: readonly string[]): string {
  const classes = output.dims[output.dims.length - 1];
  if (classes !== labels.length) throw new Error(`the output has ${classes} classes but the labels file ${labels.length}`);
  return decodeCtc(output.data, labels).text;
}

/** Text as lines are compared: whitespace runs as one space, none at the ends (where margins make it uncertain). */
export function normaliseText(text: string): string {
  return text.replace(/\s+/gu, ' ').trim();
}

export interface TextReport {
  count: number;
  /** Share of lines read exactly (whitespace normalised). */
  lineAccuracy: number;
  /** 1 - characters edited / characters of the expected text. */
  characterAccuracy: number;
}

/** Recognised texts against expected ones, and how close two versions' texts are (the same measure). */
export function evaluateText(read: readonly string[], expected: readonly string[]): TextReport {
  if (read.length !== expected.length) throw new Error(`${read.length} texts read but ${expected.length} expected`);
  let identical = 0;
  let edits = 0;
  let characters = 0;
  for (const [index, text] of read.entries()) {
    const got = normaliseText(text);
    const want = normaliseText(expected[index]);
    if (got === want) identical += 1;
    edits += editDistance(want, got);
    characters += [...want].length;
  }
  const count = read.length;
  return { count, lineAccuracy: count ? identical / count : NaN, characterAccuracy: characters ? Math.max(0, 1 - edits / characters) : count ? 1 : NaN };
}

/** Pixels at or above the threshold in both, over pixels at or above it in either; 1 when neither has any. */
export function thresholdIou(reference: ArrayLike<number>, candidate: ArrayLike<number>, threshold: number): number {
  let both = 0;
  let either = 0;
  for (let index = 0; index < reference.length; index++) {
    const a = reference[index] >= threshold;
    const b = candidate[index] >= threshold;
    if (a && b) both += 1;
    if (a || b) either += 1;
  }
  return either === 0 ? 1 : both / either;
}

function valueDeltas(reference: readonly ExampleOutput[], candidate: readonly ExampleOutput[]): { maxAbsDelta: number; meanAbsDelta: number } {
  let maxAbsDelta = 0;
  let sum = 0;
  let values = 0;
  for (const [index, expected] of reference.entries()) {
    const actual = candidate[index].data;
    if (actual.length !== expected.data.length) throw new Error(`example ${index}: ${expected.data.length} reference values but ${actual.length} candidate ones`);
    for (let at = 0; at < actual.length; at++) {
      const delta = Math.abs(expected.data[at] - actual[at]);
      if (delta > maxAbsDelta) maxAbsDelta = delta;
      sum += delta;
    }
    values += actual.length;
  }
  return { maxAbsDelta, meanAbsDelta: values ? sum / values : NaN };
}

/** How a candidate version's outputs on the same examples compare with the reference's; labels are not needed. */
export function compareOutputs(kind: OutputKind, reference: readonly ExampleOutput[], candidate: readonly ExampleOutput[], options: ComparisonOptions = {}): AgreementReport {
  if (reference.length !== candidate.length) throw new Error(`${reference.length} reference outputs but ${candidate.length} candidate ones`);
  const count = reference.length;
  if (kind === 'classification') {
    const scores = compareScores(
      reference.map((output) => output.data as ClassScores),
      candidate.map((output) => output.data as ClassScores),
    );
    return { count, measure: 'top-1', agreement: scores.top1Agreement, maxAbsDelta: scores.maxAbsDelta, meanAbsDelta: scores.meanAbsDelta };
  }
  const deltas = valueDeltas(reference, candidate);
  if (kind === 'ctc') {
    if (!options.labels) throw new Error('comparing CTC outputs needs the labels to decode them');
    const texts = evaluateText(
      candidate.map((output) => ctcGreedyText(output, options.labels!)),
      reference.map((output) => ctcGreedyText(output, options.labels!)),
    );
    return { count, measure: 'identical lines', agreement: texts.lineAccuracy, characterAgreement: texts.characterAccuracy, ...deltas };
  }
  const threshold = options.threshold ?? 0.3;
  const iou = reference.reduce((sum, expected, index) => sum + thresholdIou(expected.data, candidate[index].data, threshold), 0);
  return { count, measure: 'mean IoU', agreement: count ? iou / count : NaN, ...deltas };
}
