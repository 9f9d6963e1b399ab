import assert from 'node:assert/strict';
import { test } from 'node:test';
import { blankFloor, fitMahalanobis, invertMatrix, isBlankRow, isOutOfDistribution, MahalanobisScorer, pooledFeatures, rowSpread, thresholdForFalsePositiveRate } from './representation-ood.js';

const close = (actual: number, expected: number, tolerance = 1e-9) => assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} ≠ ${expected}`);

test('spatial-mean pooling averages each channel over its positions; none keeps the values', () => {
  // Two channels of 2x2: [1,2,3,4] and [10,10,10,14].
  assert.deepEqual(Array.from(pooledFeatures([1, 2, 3, 4, 10, 10, 10, 14], [2, 2, 2], 'spatial-mean')), [2.5, 11]);
  assert.deepEqual(Array.from(pooledFeatures([1, 2, 3], [3], 'spatial-mean')), [1, 2, 3], 'a vector has nothing to pool');
  assert.deepEqual(Array.from(pooledFeatures([1, 2, 3, 4], [2, 2], 'none')), [1, 2, 3, 4]);
});

test('a 2x2 inverse by hand, and a singular matrix refused', () => {
  const inverse = invertMatrix([[4, 7], [2, 6]]);
  // 1/(24-14) * [[6,-7],[-2,4]]
  [[0.6, -0.7], [-0.2, 0.4]].forEach((row, i) => row.forEach((value, j) => close(inverse[i][j], value)));
  assert.throws(() => invertMatrix([[1, 2], [2, 4]]), /singular/);
});

test('Mahalanobis distance to the nearest class mean under the shared covariance, by hand', () => {
  // Class 0 around (0,0), class 1 around (10,0); within-class spread ±1 in x, ±2 in y, uncorrelated.
  const features = [[-1, -2], [1, 2], [-1, 2], [1, -2], [9, -2], [11, 2], [9, 2], [11, -2]].map((row) => Float64Array.from(row));
  const classes = [0, 0, 0, 0, 1, 1, 1, 1];
  const fit = fitMahalanobis(features, classes, 3, 0);
  assert.deepEqual(fit.classMeans, [[0, 0], [10, 0], []], 'a class never seen has no mean');
  // Covariance diag(1, 4): precision diag(1, 0.25).
  close(fit.precision[0][0], 1);
  close(fit.precision[1][1], 0.25);
  close(fit.precision[0][1], 0);
  const scorer = new MahalanobisScorer(fit);
  close(scorer.score([0, 0]), 0);
  close(scorer.score([2, 0]), 4, 1e-9); // nearest mean (0,0): 2²·1
  close(scorer.score([0, 4]), 4, 1e-9); // 4²·0.25: as far in standard deviations as (2,0)
  close(scorer.score([7, 0]), 9, 1e-9); // nearer class 1: 3²·1
  assert.throws(() => scorer.score([1, 2, 3]), /expected 2 features, got 3/);
});

test('the threshold lets at most the stated share of in-distribution scores above it', () => {
  const scores = Array.from({ length: 100 }, (_, index) => index + 1); // 1..100
  const threshold = thresholdForFalsePositiveRate(scores, 0.05);
  assert.equal(threshold, 95);
  assert.equal(scores.filter((score) => score > threshold).length, 5);
  assert.equal(thresholdForFalsePositiveRate([3, 1, 2], 0.1), 3, 'too few scores to spare one: the largest');
  assert.throws(() => thresholdForFalsePositiveRate(scores, 0), /between 0 and 1/);
});

test('a blank input is out of distribution whatever its score, where the reference held no blank image', () => {
  assert.equal(isBlankRow(new Float32Array(784).fill(-0.81)), true, 'an all-black 28×28 image after normalisation');
  assert.equal(isBlankRow(Float32Array.of(-0.81, -0.81, 0.2)), false);
  const contrast = (min: number) => ({ features: { 'input.contrast': { min } } }) as unknown as Parameters<typeof blankFloor>[0];
  assert.equal(blankFloor(contrast(2.5)), 0, "a profile without leastInputSpread whose least contrast is above 0 (the old rule): exact blanks only");
  assert.equal(blankFloor(contrast(0)), undefined, 'a reference with a blank image among its examples: the score decides');
  assert.equal(blankFloor({ features: {} }), undefined, 'tensor inputs: no image properties, a constant row may be ordinary');
  assert.equal(isOutOfDistribution(121.1, 122.9, true), true);
  assert.equal(isOutOfDistribution(121.1, 122.9, false), false);
  assert.equal(isOutOfDistribution(130, 122.9, false), true);
});

test('a near-blank input (values spread far less than the flattest profiled image\'s) is blank where the profile records that spread', () => {
  // Fashion-MNIST normalises by std 0.353: levels 0 and 1 of 255 in a checkerboard (a 16-bit scan of 8-bit values) spread 0.0056.
  const levels = (values: readonly number[]) => Float32Array.from({ length: 784 }, (_, index) => (values[index % values.length] / 255 - 0.2858) / 0.3529);
  const nearBlack = levels([0, 1]);
  assert.ok(Math.abs(rowSpread(nearBlack) - 0.0056) < 0.0001, String(rowSpread(nearBlack)));
  assert.equal(isBlankRow(nearBlack), false, 'not every value the same');
  const profile = (leastInputSpread?: number) => ({ features: { 'input.contrast': { min: 0.075 } }, ood: { leastInputSpread } }) as unknown as Parameters<typeof blankFloor>[0];
  // The 12,000 bundled training images' least spread is 0.2123: the floor is a quarter of it.
  const floor = blankFloor(profile(0.2123))!;
  assert.ok(Math.abs(floor - 0.053) < 0.001, String(floor));
  assert.equal(isBlankRow(nearBlack, floor), true);
  assert.equal(isBlankRow(new Float32Array(784).fill(-0.81), floor), true, 'an exact blank is still blank');
  assert.equal(isBlankRow(levels([0, 40]), floor), false, 'a faint garment (levels 0 and 40 spread 0.22) is not');
  assert.equal(blankFloor(profile(0)), undefined, 'a profile with a blank image among its own: the score decides');
  assert.equal(blankFloor(profile(undefined)), 0, 'an older profile: exact blanks, by its contrast');
});
