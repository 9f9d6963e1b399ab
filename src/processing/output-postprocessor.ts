/**
 * Logits to probabilities (with temperature calibration), and the confidence a person can act on:
 * top-k with labels, probability, normalised entropy, top-1/top-2 margin and a low-confidence flag.
 */
import { halfToNumber, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { outputPostprocessingSchema, type OutputPostprocessing } from '../config/model-config.js';

/** What a classifier output without a postprocess block gets: the schema's defaults. */
export const DEFAULT_POSTPROCESSING: OutputPostprocessing = outputPostprocessingSchema.parse({});

export interface Prediction {
  label: string;
  index: number;
  score: number;
}

export interface Confidence {
  /** Probability of the top prediction. */
  probability: number;
  /** Entropy of the distribution divided by its maximum: 0 is certain, 1 is a uniform guess. */
  entropy: number;
  /** Top-1 minus top-2 probability: how far the winner is ahead. */
  margin: number;
  /** The top probability is under the model's threshold: treat the answer as a guess. */
  low_confidence: boolean;
  threshold: number;
  temperature: number;
}

/** How far the input is from what the model was profiled on (its reference profile's detector); a separate signal from confidence. */
export interface OutOfDistribution {
  /** Squared Mahalanobis distance of the model's representation to the nearest class of the reference data. */
  score: number;
  /** The score is above the profile's threshold (set for a stated false-positive rate on in-distribution data). */
  out_of_distribution: boolean;
  threshold: number;
  /** The input was blank (every value the same) and the reference held no blank image: out of distribution whatever the score. */
  blank?: true;
}

export interface ImageClassification {
  predictions: Prediction[];
  confidence: Confidence;
  /** Present when the model version has a reference profile and the answer was computed (not a cache hit). */
  ood?: OutOfDistribution;
}

function valuesOf(tensor: Tensor): Float64Array {
  if (tensor.datatype === 'FP16') return Float64Array.from(tensor.data as Uint16Array, halfToNumber);
  return Float64Array.from(tensor.data as Exclude<NumericArray, BigInt64Array | BigUint64Array>);
}

/** Applies the output's activation per batch row; the result is FP32, shaped as the input. */
export function activate(tensor: Tensor, spec: OutputPostprocessing, batched: boolean): Tensor {
  if (spec.activation === 'none' && spec.temperature === 1) return tensor;
  const values = valuesOf(tensor);
  const rows = batched ? tensor.shape[0] : 1;
  const width = rows === 0 ? 0 : values.length / rows;
  const out = new Float32Array(values.length);
  for (let row = 0; row < rows; row++) {
    const start = row * width;
    if (spec.activation === 'softmax') {
      let max = -Infinity;
      for (let i = 0; i < width; i++) max = Math.max(max, values[start + i] / spec.temperature);
      let sum = 0;
      for (let i = 0; i < width; i++) sum += Math.exp(values[start + i] / spec.temperature - max);
      for (let i = 0; i < width; i++) out[start + i] = Math.exp(values[start + i] / spec.temperature - max) / sum;
    } else if (spec.activation === 'sigmoid') {
      for (let i = 0; i < width; i++) out[start + i] = 1 / (1 + Math.exp(-values[start + i] / spec.temperature));
    } else {
      for (let i = 0; i < width; i++) out[start + i] = values[start + i] / spec.temperature;
    }
  }
  return { datatype: 'FP32', shape: [...tensor.shape], data: out };
}

/**
 * Each row of a classifier output as probabilities, as the reference profile and the monitors read
 * them: the output's softmax with its temperature, unless no softmax is declared and the scores
 * already are probabilities (non-negative, summing to 1).
 */
export function rowProbabilities(tensor: Tensor, spec: OutputPostprocessing, batched: boolean): Float64Array[] {
  const values = tensor.datatype === 'FP16' ? valuesOf(tensor) : (tensor.data as ArrayLike<number>);
  const rows = batched ? tensor.shape[0] : 1;
  const width = rows === 0 ? 0 : values.length / rows;
  const probabilities: Float64Array[] = [];
  for (let row = 0; row < rows; row++) {
    const start = row * width;
    const out = new Float64Array(width);
    let sum = 0;
    let negative = false;
    let max = -Infinity;
    for (let index = 0; index < width; index++) {
      const value = values[start + index];
      out[index] = value;
      sum += value;
      if (value < 0) negative = true;
      if (value / spec.temperature > max) max = value / spec.temperature;
    }
    if (spec.activation !== 'softmax' && Math.abs(sum - 1) < 1e-3 && !negative) {
      probabilities.push(out);
      continue;
    }
    let total = 0;
    for (let index = 0; index < width; index++) total += out[index] = Math.exp(out[index] / spec.temperature - max);
    for (let index = 0; index < width; index++) out[index] /= total;
    probabilities.push(out);
  }
  return probabilities;
}

function entropyOf(probabilities: Float64Array, multiLabel: boolean): number {
  const k = probabilities.length;
  if (k < 2) return 0;
  const plogp = (p: number) => (p > 0 ? p * Math.log(p) : 0);
  if (multiLabel) {
    // Independent yes/no per class: mean binary entropy, in [0, 1].
    let total = 0;
    for (const p of probabilities) total -= (plogp(p) + plogp(1 - p)) / Math.log(2);
    return total / k;
  }
  const sum = probabilities.reduce((a, b) => a + b, 0);
  let h = 0;
  for (const p of probabilities) h -= plogp(p / sum);
  return h / Math.log(k);
}

/** Predictions and confidence for each batch row of an (activated) output. */
export function classifyRows(
  tensor: Tensor,
  spec: OutputPostprocessing,
  batched: boolean,
  labels: readonly string[] | undefined,
  topK = spec.top_k,
): ImageClassification[] {
  const values = valuesOf(tensor);
  const rows = batched ? tensor.shape[0] : 1;
  const width = rows === 0 ? 0 : values.length / rows;
  const results: ImageClassification[] = [];
  for (let row = 0; row < rows; row++) {
    const probabilities = values.subarray(row * width, (row + 1) * width);
    const order = Array.from({ length: width }, (_, index) => index).sort(
      (a, b) => probabilities[b] - probabilities[a] || a - b,
    );
    const top = probabilities[order[0]] ?? 0;
    const second = probabilities[order[1]] ?? 0;
    results.push({
      predictions: order.slice(0, Math.min(topK, width)).map((index) => ({
        label: labels?.[index] || String(index),
        index,
        score: probabilities[index],
      })),
      confidence: {
        probability: top,
        entropy: entropyOf(probabilities, spec.activation === 'sigmoid'),
        margin: top - second,
        low_confidence: top < spec.low_confidence_threshold,
        threshold: spec.low_confidence_threshold,
        temperature: spec.temperature,
      },
    });
  }
  return results;
}

/** Post-processing of one model version's outputs: the activation each output declares, applied after the model. */
export class OutputPostprocessor {
  private constructor(
    private readonly specs: ReadonlyMap<string, OutputPostprocessing>,
    private readonly batched: boolean,
  ) {}

  /** The post-processing a config declares, or undefined when no output declares any. */
  static of(config: { max_batch_size: number; output: readonly { name: string; postprocess?: OutputPostprocessing }[] }): OutputPostprocessor | undefined {
    const specs = new Map(config.output.filter((output) => output.postprocess).map((output) => [output.name, output.postprocess!]));
    return specs.size > 0 ? new OutputPostprocessor(specs, config.max_batch_size > 0) : undefined;
  }

  apply(outputs: Record<string, Tensor>): Record<string, Tensor> {
    const activated: Record<string, Tensor> = {};
    for (const name in outputs) {
      const spec = this.specs.get(name);
      activated[name] = spec ? activate(outputs[name], spec, this.batched) : outputs[name];
    }
    return activated;
  }
}
