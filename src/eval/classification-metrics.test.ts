/** The eval figures on a set small enough to check by hand (the working is in the comments). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareScores, evaluateClassification } from './classification-metrics.js';

// Three classes, six examples: predicted (argmax) / label / confidence.
const SCORES = [
  [0.7, 0.2, 0.1], // 0 / 0 / 0.7 right
  [0.1, 0.8, 0.1], // 1 / 1 / 0.8 right
  [0.3, 0.6, 0.1], // 1 / 0 / 0.6 wrong, label second: in the top 2
  [0.2, 0.2, 0.6], // 2 / 2 / 0.6 right
  [0.5, 0.1, 0.4], // 0 / 2 / 0.5 wrong, label second: in the top 2
  [0.1, 0.1, 0.8], // 2 / 1 / 0.8 wrong, label ties with class 0, which ranks first: not in the top 2
];
const LABELS = [0, 1, 0, 2, 2, 1];
const close = (actual: number, expected: number) => assert.ok(Math.abs(actual - expected) < 1e-12, `${actual} != ${expected}`);

test('accuracy, top-k, confusion and per-class precision and recall, by hand', () => {
  const report = evaluateClassification(SCORES, LABELS, { classes: 3, topK: 2, bins: 10 });
  assert.equal(report.count, 6);
  close(report.top1Accuracy, 3 / 6);
  assert.equal(report.k, 2);
  close(report.topKAccuracy, 5 / 6);
  assert.deepEqual(report.confusion, [
    [1, 1, 0],
    [0, 1, 1],
    [1, 0, 1],
  ]);
  // Every class: predicted twice, right once; labelled twice, found once.
  for (const metrics of report.perClass) assert.deepEqual(metrics, { precision: 0.5, recall: 0.5, support: 2 });
  const named = evaluateClassification(SCORES, LABELS, { classes: 3, topK: 2, names: ['cat', 'dog', 'fox'] });
  assert.deepEqual(named.perClass.map((metrics) => metrics.class), ['cat', 'dog', 'fox']);
});

test('expected calibration error, by hand', () => {
  // Ten bins [i/10, (i+1)/10): 0.5 → {wrong}: |0 − 0.5|; 0.6 → {wrong, right}: |0.5 − 0.6|; 0.7 → {right}: |1 − 0.7|;
  // 0.8 → {right, wrong}: |0.5 − 0.8|. Weighted by 1, 2, 1, 2 of 6: (0.5 + 0.2 + 0.3 + 0.6) / 6.
  close(evaluateClassification(SCORES, LABELS, { classes: 3, bins: 10 }).ece, 1.6 / 6);
  // A perfectly confident, always right model is perfectly calibrated.
  close(evaluateClassification([[1, 0], [0, 1]], [0, 1], { classes: 2 }).ece, 0);
});

test('a class never predicted has NaN precision, one never seen NaN recall; k is capped at the classes', () => {
  const report = evaluateClassification([[0.9, 0.1, 0]], [0], { classes: 3, topK: 5 });
  assert.equal(report.k, 3);
  assert.ok(Number.isNaN(report.perClass[1].precision) && Number.isNaN(report.perClass[1].recall));
  assert.equal(report.perClass[0].precision, 1);
});

test('mismatched inputs are refused with what was expected', () => {
  assert.throws(() => evaluateClassification(SCORES, [0], { classes: 3 }), /6 predictions but 1 labels/);
  assert.throws(() => evaluateClassification([[0.5, 0.5]], [0], { classes: 3 }), /example 0 has 2 scores; the model has 3 classes/);
  assert.throws(() => evaluateClassification([[0.5, 0.5, 0]], [3], { classes: 3 }), /label 3; labels are 0..2/);
});

test('agreement and score deltas between two versions, by hand', () => {
  const candidate = SCORES.map((scores) => [...scores]);
  candidate[0] = [0.6, 0.3, 0.1]; // same top-1, deltas 0.1, 0.1, 0
  candidate[2] = [0.6, 0.3, 0.1]; // top-1 changes from 1 to 0, deltas 0.3, 0.3, 0
  const report = compareScores(SCORES, candidate);
  assert.equal(report.count, 6);
  close(report.top1Agreement, 5 / 6);
  close(report.maxAbsDelta, 0.3);
  close(report.meanAbsDelta, 0.8 / 18);
  assert.throws(() => compareScores(SCORES, candidate.slice(1)), /6 reference predictions but 5 candidate ones/);
});
