/**
 * Output post-processing against hand-computed values: activations with temperature, and the
 * confidence figures (top-k, probability, normalised entropy, margin, low_confidence).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { z } from 'zod';
import type { Tensor } from '../core/tensor.js';
import { outputPostprocessingSchema } from '../config/model-config.js';
import { activate, classifyRows } from './output-postprocessor.js';

type SpecInput = z.input<typeof outputPostprocessingSchema>;
const spec = (input: SpecInput = {}) => outputPostprocessingSchema.parse(input);
const fp32 = (shape: number[], values: number[]): Tensor => ({ datatype: 'FP32', shape, data: new Float32Array(values) });
const fp64 = (shape: number[], values: number[]): Tensor => ({ datatype: 'FP64', shape, data: new Float64Array(values) });
const numbers = (tensor: Tensor) => Array.from(tensor.data as Float32Array);

/** Asserts each value within 1e-6 (FP32 results of double arithmetic). */
function close(actual: readonly number[], expected: readonly number[], tolerance = 1e-6): void {
  assert.equal(actual.length, expected.length, `length ${actual.length} vs ${expected.length}`);
  actual.forEach((value, index) =>
    assert.ok(Math.abs(value - expected[index]) <= tolerance, `at ${index}: ${value} vs ${expected[index]} (all: ${actual.join(', ')})`),
  );
}

// softmax([1, 2, 3]) = [e^-2, e^-1, 1] / (e^-2 + e^-1 + 1)
const SOFTMAX_123 = [0.09003057317038046, 0.24472847105479767, 0.6652409557748219];

describe('activate', () => {
  test('softmax of [1, 2, 3] (hand-computed), FP32 out, shape kept', () => {
    const out = activate(fp32([1, 3], [1, 2, 3]), spec({ activation: 'softmax' }), true);
    assert.equal(out.datatype, 'FP32');
    assert.deepEqual(out.shape, [1, 3]);
    close(numbers(out), SOFTMAX_123);
  });

  test('softmax of log-probabilities gives the probabilities back', () => {
    const out = activate(fp32([4], [0.1, 0.2, 0.3, 0.4].map(Math.log)), spec({ activation: 'softmax' }), false);
    close(numbers(out), [0.1, 0.2, 0.3, 0.4]);
  });

  test('softmax divides logits by the temperature first', () => {
    close(numbers(activate(fp32([3], [2, 4, 6]), spec({ activation: 'softmax', temperature: 2 }), false)), SOFTMAX_123);
    close(numbers(activate(fp32([3], [0.5, 1, 1.5]), spec({ activation: 'softmax', temperature: 0.5 }), false)), SOFTMAX_123);
    // Higher temperature flattens: logits [0, ln 3] give [1/4, 3/4] at T = 1; at T = 2 the odds are sqrt(3) : 1.
    close(numbers(activate(fp32([2], [0, Math.log(3)]), spec({ activation: 'softmax' }), false)), [0.25, 0.75]);
    const r = Math.sqrt(3);
    close(numbers(activate(fp32([2], [0, Math.log(3)]), spec({ activation: 'softmax', temperature: 2 }), false)), [1 / (1 + r), r / (1 + r)]);
  });

  test('softmax is stable for large logits', () => {
    // FP64 logits: at 1000 an FP32 step is 6e-5, too coarse to carry ln 2 exactly.
    close(numbers(activate(fp64([3], [1000, 1000, 1000 - Math.log(2)]), spec({ activation: 'softmax' }), false)), [0.4, 0.4, 0.2]);
    close(numbers(activate(fp32([3], [1000, 1000, 1000]), spec({ activation: 'softmax' }), false)), [1 / 3, 1 / 3, 1 / 3]);
    close(numbers(activate(fp32([2], [-1000, -1000]), spec({ activation: 'softmax' }), false)), [0.5, 0.5]);
  });

  test('sigmoid per element, with temperature', () => {
    // sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    close(numbers(activate(fp32([3], [0, Math.log(3), -Math.log(3)]), spec({ activation: 'sigmoid' }), false)), [0.5, 0.75, 0.25]);
    close(numbers(activate(fp32([2], [2 * Math.log(3), -2 * Math.log(3)]), spec({ activation: 'sigmoid', temperature: 2 }), false)), [0.75, 0.25]);
    // Not normalised across the row: each is its own yes/no.
    close(numbers(activate(fp32([2], [Math.log(3), Math.log(3)]), spec({ activation: 'sigmoid' }), false)), [0.75, 0.75]);
  });

  test("'none' with temperature 1 passes the tensor through untouched (same object, same dtype)", () => {
    const half: Tensor = { datatype: 'FP16', shape: [2], data: new Uint16Array([0x3c00, 0x4000]) };
    assert.equal(activate(half, spec(), false), half);
    const logits = fp32([1, 2], [5, -5]);
    assert.equal(activate(logits, spec({ activation: 'none' }), true), logits);
  });

  test("'none' with a temperature scales the logits only", () => {
    const out = activate(fp32([1, 3], [2, -4, 6]), spec({ temperature: 2 }), true);
    assert.equal(out.datatype, 'FP32');
    assert.deepEqual(numbers(out), [1, -2, 3]);
  });

  test('FP16 input is read as half floats', () => {
    // 1.0 = 0x3C00, 2.0 = 0x4000, 3.0 = 0x4200
    const half: Tensor = { datatype: 'FP16', shape: [1, 3], data: new Uint16Array([0x3c00, 0x4000, 0x4200]) };
    const out = activate(half, spec({ activation: 'softmax' }), true);
    assert.equal(out.datatype, 'FP32');
    close(numbers(out), SOFTMAX_123);
    close(numbers(activate(half, spec({ activation: 'sigmoid' }), true)), [1, 2, 3].map((x) => 1 / (1 + Math.exp(-x))));
  });

  test('FP64 and integer outputs are activated too', () => {
    close(numbers(activate(fp64([3], [1, 2, 3]), spec({ activation: 'softmax' }), false)), SOFTMAX_123);
    const ints: Tensor = { datatype: 'INT32', shape: [3], data: new Int32Array([1, 2, 3]) };
    close(numbers(activate(ints, spec({ activation: 'softmax' }), false)), SOFTMAX_123);
  });

  test('batched: softmax per row, rows independent', () => {
    const out = activate(fp32([3, 3], [1, 2, 3, 0, 0, 0, 3, 2, 1]), spec({ activation: 'softmax' }), true);
    assert.deepEqual(out.shape, [3, 3]);
    close(numbers(out), [...SOFTMAX_123, 1 / 3, 1 / 3, 1 / 3, ...[...SOFTMAX_123].reverse()]);
  });

  test('unbatched: the whole output is one row, whatever its shape', () => {
    const out = activate(fp32([2, 2], [0, 0, 0, 0]), spec({ activation: 'softmax' }), false);
    assert.deepEqual(out.shape, [2, 2]);
    close(numbers(out), [0.25, 0.25, 0.25, 0.25]);
  });

  test('an empty batch gives an empty output', () => {
    const out = activate(fp32([0, 3], []), spec({ activation: 'softmax' }), true);
    assert.deepEqual(out.shape, [0, 3]);
    assert.equal(out.data.length, 0);
  });
});

describe('classifyRows', () => {
  const LABELS = ['cat', 'dog', 'bird', 'fish'];

  test('top-k in descending score order with labels and indices', () => {
    const [result] = classifyRows(fp64([1, 4], [0.1, 0.4, 0.2, 0.3]), spec({ top_k: 3 }), true, LABELS);
    assert.deepEqual(result.predictions, [
      { label: 'dog', index: 1, score: 0.4 },
      { label: 'fish', index: 3, score: 0.3 },
      { label: 'bird', index: 2, score: 0.2 },
    ]);
  });

  test('ties go to the lower index first', () => {
    const [result] = classifyRows(fp64([5], [0.2, 0.3, 0.2, 0.3, 0]), spec(), false, undefined);
    assert.deepEqual(
      result.predictions.map((p) => p.index),
      [1, 3, 0, 2, 4],
    );
  });

  test('top_k: the spec default (5), clamped to the classes, overridden per call', () => {
    const tensor = fp64([7], [0.1, 0.2, 0.05, 0.05, 0.3, 0.1, 0.2]);
    assert.equal(classifyRows(tensor, spec(), false, undefined)[0].predictions.length, 5);
    assert.equal(classifyRows(tensor, spec({ top_k: 2 }), false, undefined)[0].predictions.length, 2);
    assert.deepEqual(
      classifyRows(tensor, spec({ top_k: 2 }), false, undefined, 1)[0].predictions,
      [{ label: '4', index: 4, score: 0.3 }],
    );
    assert.equal(classifyRows(tensor, spec(), false, undefined, 100)[0].predictions.length, 7);
  });

  test('without a label for an index, the label is the index', () => {
    const [result] = classifyRows(fp64([4], [0.4, 0.3, 0.2, 0.1]), spec(), false, ['zero', '', 'two']);
    assert.deepEqual(
      result.predictions.map((p) => p.label),
      ['zero', '1', 'two', '3'],
    );
  });

  test('scores of an FP32 output are its FP32 values', () => {
    const [result] = classifyRows(fp32([2], [0.7, 0.3]), spec(), false, undefined);
    assert.deepEqual(
      result.predictions.map((p) => p.score),
      [Math.fround(0.7), Math.fround(0.3)],
    );
  });

  test('confidence: probability is the top score, margin the lead over the second', () => {
    const { confidence } = classifyRows(fp64([3], [0.1, 0.6, 0.3]), spec(), false, undefined)[0];
    assert.equal(confidence.probability, 0.6);
    close([confidence.margin], [0.3], 1e-12);
    const single = classifyRows(fp64([1], [0.8]), spec(), false, undefined)[0].confidence;
    assert.equal(single.margin, 0.8);
    assert.equal(single.entropy, 0);
    assert.equal(classifyRows(fp64([2], [0.5, 0.5]), spec(), false, undefined)[0].confidence.margin, 0);
  });

  test('normalised entropy: 0 for one-hot, 1 for uniform, 1/2 for two equal of four', () => {
    const entropy = (values: number[]) => classifyRows(fp64([values.length], values), spec({ activation: 'softmax' }), false, undefined)[0].confidence.entropy;
    assert.equal(entropy([0, 1, 0, 0]), 0);
    close([entropy([0.25, 0.25, 0.25, 0.25])], [1], 1e-12);
    close([entropy([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])], [1], 1e-12);
    close([entropy([0.5, 0.5, 0, 0])], [0.5], 1e-12); // ln 2 / ln 4
    // H([0.7, 0.2, 0.1]) / ln 3
    const h = -(0.7 * Math.log(0.7) + 0.2 * Math.log(0.2) + 0.1 * Math.log(0.1)) / Math.log(3);
    close([entropy([0.7, 0.2, 0.1])], [h], 1e-12);
  });

  test('entropy of scores that do not sum to 1 is taken of their normalised distribution', () => {
    const { confidence } = classifyRows(fp64([2], [3, 3]), spec(), false, undefined)[0];
    close([confidence.entropy], [1], 1e-12);
  });

  test('low_confidence: the top probability below the threshold (strictly)', () => {
    const confidenceOf = (values: number[], threshold?: number) =>
      classifyRows(fp64([values.length], values), spec(threshold === undefined ? {} : { low_confidence_threshold: threshold }), false, undefined)[0]
        .confidence;
    assert.equal(confidenceOf([0.4, 0.35, 0.25]).low_confidence, true);
    assert.equal(confidenceOf([0.5, 0.5]).low_confidence, false); // default threshold 0.5, equal is not below
    assert.equal(confidenceOf([0.8, 0.2]).low_confidence, false);
    const strict = confidenceOf([0.8, 0.2], 0.9);
    assert.equal(strict.low_confidence, true);
    assert.equal(strict.threshold, 0.9);
    assert.equal(confidenceOf([0.8, 0.2], 0).low_confidence, false);
  });

  test('confidence echoes the threshold and temperature it was computed with', () => {
    const { confidence } = classifyRows(fp64([2], [0.9, 0.1]), spec({ temperature: 1.5, low_confidence_threshold: 0.6 }), false, undefined)[0];
    assert.deepEqual(confidence, { probability: 0.9, entropy: confidence.entropy, margin: confidence.margin, low_confidence: false, threshold: 0.6, temperature: 1.5 });
  });

  test('sigmoid (multi-label): entropy is the mean binary entropy in bits', () => {
    const entropy = (values: number[]) =>
      classifyRows(fp64([values.length], values), spec({ activation: 'sigmoid' }), false, undefined)[0].confidence.entropy;
    assert.equal(entropy([1, 0, 1]), 0);
    close([entropy([0.5, 0.5])], [1], 1e-12);
    close([entropy([0.5, 1])], [0.5], 1e-12);
    // H2(1/4) = 1/4 log2 4 + 3/4 log2 (4/3) = 0.5 + 0.75 * 0.415037... = 0.811278...
    close([entropy([0.25, 0.75])], [0.8112781244591328], 1e-12);
    // Unlike softmax, two confident yeses are certain, not a 50/50 split.
    assert.equal(entropy([1, 1]), 0);
  });

  test('batched rows each get their own predictions and confidence, in order', () => {
    const results = classifyRows(fp64([3, 3], [0.2, 0.7, 0.1, 1 / 3, 1 / 3, 1 / 3, 0, 0, 1]), spec({ top_k: 1 }), true, ['a', 'b', 'c']);
    assert.equal(results.length, 3);
    assert.deepEqual(
      results.map((r) => r.predictions),
      [[{ label: 'b', index: 1, score: 0.7 }], [{ label: 'a', index: 0, score: 1 / 3 }], [{ label: 'c', index: 2, score: 1 }]],
    );
    assert.deepEqual(
      results.map((r) => r.confidence.low_confidence),
      [false, true, false],
    );
    close(
      results.map((r) => r.confidence.entropy),
      [-(0.2 * Math.log(0.2) + 0.7 * Math.log(0.7) + 0.1 * Math.log(0.1)) / Math.log(3), 1, 0],
      1e-12,
    );
  });

  test('FP16 scores are read as half floats', () => {
    // 0.25 = 0x3400, 0.75 = 0x3A00
    const half: Tensor = { datatype: 'FP16', shape: [2], data: new Uint16Array([0x3400, 0x3a00]) };
    const [result] = classifyRows(half, spec(), false, ['no', 'yes']);
    assert.deepEqual(result.predictions, [
      { label: 'yes', index: 1, score: 0.75 },
      { label: 'no', index: 0, score: 0.25 },
    ]);
    assert.equal(result.confidence.margin, 0.5);
  });

  test('activate then classify: logits to calibrated probabilities', () => {
    const logits = fp32([1, 3], [2, 4, 6]);
    const s = spec({ activation: 'softmax', temperature: 2, top_k: 2 });
    const [result] = classifyRows(activate(logits, s, true), s, true, ['x', 'y', 'z']);
    assert.deepEqual(
      result.predictions.map((p) => p.label),
      ['z', 'y'],
    );
    close([result.confidence.probability, result.confidence.margin], [SOFTMAX_123[2], SOFTMAX_123[2] - SOFTMAX_123[1]]);
    assert.equal(result.confidence.temperature, 2);
  });

  test('an empty batch gives no results', () => {
    assert.deepEqual(classifyRows(fp32([0, 3], []), spec(), true, undefined), []);
  });
});
