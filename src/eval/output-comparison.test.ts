import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareOutputs, ctcGreedyText, editDistance, evaluateText, normaliseText, outputKindOf, thresholdIou, type ExampleOutput } from './output-comparison.js';

const LABELS = ['<blank>', 'a', 'b', ' '];

/** A CTC output whose argmax per step is the given class sequence. */
function steps(classes: number[]): ExampleOutput {
  const data = new Float32Array(classes.length * LABELS.length);
  classes.forEach((cls, step) => (data[step * LABELS.length + cls] = 1));
  return { data, dims: [classes.length, LABELS.length] };
}

test('the kind follows the declaration: labelled vectors are classes, labelled matrices sequences, the rest maps', () => {
  assert.equal(outputKindOf({ dims: [10], labelled: true }), 'classification');
  assert.equal(outputKindOf({ dims: [-1, 6625], labelled: true }), 'ctc');
  assert.equal(outputKindOf({ dims: [1, -1, -1], labelled: false }), 'mask');
  // Several scores without a labels file are still a classifier's, compared by top-1; one value is not.
  assert.equal(outputKindOf({ dims: [10], labelled: false }), 'classification');
  assert.equal(outputKindOf({ dims: [1], labelled: false }), 'mask');
});

test('greedy CTC collapses repeats, drops blanks and keeps a letter repeated across a blank', () => {
  assert.equal(ctcGreedyText(steps([1, 1, 0, 1, 2, 2, 3, 0, 0, 2]), LABELS), 'aab b');
  assert.throws(() => ctcGreedyText({ data: new Float32Array(6), dims: [2, 3] }, LABELS), /3 classes but the labels file 4/);
});

test('texts are compared with whitespace normalised, by line and by edited characters', () => {
  assert.equal(normaliseText('  a \t b  '), 'a b');
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('', 'ab'), 2);
  const report = evaluateText([' ab a', 'bb', 'xyz'], ['ab  a', 'ba', 'xy']);
  assert.equal(report.lineAccuracy, 1 / 3);
  // edits: 0 + 2 ('ba' -> 'bb': one substitution... counted exactly below) + 1 (insert z), over 4 + 2 + 2 characters
  assert.equal(report.characterAccuracy, 1 - (0 + editDistance('ba', 'bb') + 1) / 8);
});

test('IoU of thresholded maps counts pixels at or above the threshold', () => {
  assert.equal(thresholdIou([0.1, 0.3, 0.9, 0.5], [0.2, 0.29, 0.95, 0.6], 0.3), 2 / 3);
  assert.equal(thresholdIou([0, 0], [0.1, 0.2], 0.3), 1, 'both empty: nothing disagrees');
});

test('compareOutputs measures agreement by the kind of output', () => {
  const classes = compareOutputs('classification', [{ data: Float32Array.of(0.1, 0.9), dims: [2] }, { data: Float32Array.of(0.6, 0.4), dims: [2] }], [{ data: Float32Array.of(0.2, 0.8), dims: [2] }, { data: Float32Array.of(0.4, 0.6), dims: [2] }]);
  assert.equal(classes.measure, 'top-1');
  assert.equal(classes.agreement, 0.5);
  assert.ok(Math.abs(classes.maxAbsDelta - 0.2) < 1e-6);

  const texts = compareOutputs('ctc', [steps([1, 2, 0]), steps([1, 0, 1])], [steps([1, 2, 3]), steps([2, 0, 1])], { labels: LABELS });
  assert.equal(texts.measure, 'identical lines');
  assert.equal(texts.agreement, 0.5, "'ab' and 'ab ' read the same; 'aa' and 'ba' do not");
  assert.equal(texts.characterAgreement, 1 - 1 / 4);
  assert.throws(() => compareOutputs('ctc', [steps([1])], [steps([1])]), /needs the labels/);

  const maps = compareOutputs('mask', [{ data: Float32Array.of(0.9, 0.9, 0), dims: [1, 3] }], [{ data: Float32Array.of(0.9, 0.1, 0), dims: [1, 3] }], { threshold: 0.3 });
  assert.equal(maps.measure, 'mean IoU');
  assert.equal(maps.agreement, 0.5);
});
