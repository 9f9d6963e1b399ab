import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mulberry32 } from '../onnx/test-models.js';
import {
  AccuracyWindow,
  calibrate,
  calibrationCurveSchema,
  expectedAccuracy,
  expectedCalibrationError,
  fitIsotonicCalibration,
  reliabilityBins,
} from './accuracy-estimate.js';

const close = (actual: number | undefined, expected: number, tolerance = 1e-12) =>
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= tolerance, `expected ${expected} ± ${tolerance}, got ${actual}`);

/**
 * Predictions of a model whose chance of being right at raw confidence c is c²: overconfident, as softmax often is.
 * `confidenceOf` shapes where confidences fall, so a test can shift the traffic while P(right | confidence) holds.
 */
function overconfidentPredictions(count: number, seed: number, confidenceOf: (u: number) => number = (u) => u) {
  const random = mulberry32(seed);
  const confidences = Array.from({ length: count }, () => confidenceOf(random()));
  const correct = confidences.map((confidence) => random() < confidence * confidence);
  return { confidences, correct };
}

const share = (correct: boolean[]) => correct.filter(Boolean).length / correct.length;

describe('calibration curve', () => {
  test('hand-checked isotonic fit: a violating pair pools to its mean, and the curve interpolates between knots', () => {
    const curve = fitIsotonicCalibration([0.4, 0.1, 0.3, 0.2], [true, false, false, true]);
    assert.deepEqual(curve, { confidence: [0.1, 0.2, 0.3, 0.4], accuracy: [0, 0.5, 0.5, 1] });
    assert.equal(calibrate(curve, 0.25), 0.5);
    close(calibrate(curve, 0.15), 0.25);
    close(calibrate(curve, 0.35), 0.75);
    assert.equal(calibrate(curve, 0.05), 0);
    assert.equal(calibrate(curve, 0.9), 1);
  });

  test('equal confidences get one value; a fully decreasing sample pools into one flat block', () => {
    assert.deepEqual(fitIsotonicCalibration([0.5, 0.5, 0.5, 0.9], [true, false, false, true]), { confidence: [0.5, 0.9], accuracy: [1 / 3, 1] });
    assert.deepEqual(fitIsotonicCalibration([0.2, 0.4, 0.6], [true, true, false]), { confidence: [0.2, 0.6], accuracy: [2 / 3, 2 / 3] });
    assert.deepEqual(fitIsotonicCalibration([0.7], [true]), { confidence: [0.7], accuracy: [1] });
  });

  test('property: the fitted curve passes its own schema (ascending, monotone) and keeps the share right on the data it was fitted to', () => {
    const random = mulberry32(31);
    for (let trial = 0; trial < 100; trial++) {
      const count = 1 + Math.floor(random() * 200);
      // Coarse confidences, so ties are common.
      const confidences = Array.from({ length: count }, () => Math.round(random() * 20) / 20);
      const correct = confidences.map((confidence) => random() < confidence);
      const curve = fitIsotonicCalibration(confidences, correct);
      calibrationCurveSchema.parse(curve);
      // Pooling replaces each run by its mean, so the calibrated confidences sum to the number right: CBPE is exact here.
      close(expectedAccuracy(confidences.map((confidence) => calibrate(curve, confidence))), share(correct), 1e-9);
    }
  });

  test('calibrating an overconfident model brings its error on fresh data from ≈ 0.17 to under 0.02', () => {
    const fit = overconfidentPredictions(20_000, 1);
    const curve = fitIsotonicCalibration(fit.confidences, fit.correct);
    const fresh = overconfidentPredictions(20_000, 2);
    const raw = expectedCalibrationError(fresh.confidences, fresh.correct) as number;
    const calibrated = expectedCalibrationError(fresh.confidences.map((confidence) => calibrate(curve, confidence)), fresh.correct) as number;
    // E[c − c²] over uniform c is 1/2 − 1/3.
    close(raw, 1 / 6, 0.01);
    assert.ok(calibrated < 0.02, `calibrated ECE ${calibrated}`);
  });

  test('the schema turns away curves that are not monotone maps', () => {
    assert.throws(() => calibrationCurveSchema.parse({ confidence: [0.2, 0.1], accuracy: [0, 1] }), /strictly ascending/);
    assert.throws(() => calibrationCurveSchema.parse({ confidence: [0.1, 0.2], accuracy: [1, 0] }), /must not decrease/);
    assert.throws(() => calibrationCurveSchema.parse({ confidence: [0.1], accuracy: [0, 1] }), /one entry per knot/);
    assert.throws(() => calibrate({ confidence: [0.5], accuracy: [0.5] }, 1.5), /\[0, 1\], got 1.5/);
  });
});

describe('expected accuracy and calibration error', () => {
  test('hand-checked ECE: two bins, gaps 0.05 and 0.35, each half the predictions', () => {
    const confidences = [0.95, 0.95, 0.85, 0.85];
    const correct = [true, true, true, false];
    assert.deepEqual(reliabilityBins(confidences, correct).map(({ lower, count, accuracy }) => ({ lower, count, accuracy })), [
      { lower: 0.8, count: 2, accuracy: 0.5 },
      { lower: 0.9, count: 2, accuracy: 1 },
    ]);
    close(expectedCalibrationError(confidences, correct), 0.5 * 0.35 + 0.5 * 0.05);
    close(expectedAccuracy(confidences), 0.9);
  });

  test('confidence 1 counts in the last bin; nothing to judge gives undefined', () => {
    assert.deepEqual(reliabilityBins([1, 0], [true, false], 4).map(({ lower }) => lower), [0, 0.75]);
    assert.equal(expectedCalibrationError([1, 0], [true, false]), 0);
    assert.equal(expectedAccuracy([]), undefined);
    assert.equal(expectedCalibrationError([], []), undefined);
  });

  test('refuses confidences outside [0, 1], unpaired outcomes and a bad bin count', () => {
    assert.throws(() => expectedAccuracy([0.5, 1.2]), /confidence 1 must lie in \[0, 1\], got 1.2/);
    assert.throws(() => expectedCalibrationError([0.5], []), /1 confidences and 0 outcomes/);
    assert.throws(() => reliabilityBins([0.5], [true], 0), /positive integer, got 0/);
    assert.throws(() => fitIsotonicCalibration([], []), /at least one labelled prediction/);
  });

  test('CBPE tracks accuracy under covariate shift: within 1.5 points when traffic moves to low or high confidence', () => {
    const fit = overconfidentPredictions(20_000, 3);
    const curve = fitIsotonicCalibration(fit.confidences, fit.correct);
    const shifts: Array<(u: number) => number> = [(u) => u, (u) => u * 0.6, (u) => 0.5 + u / 2, (u) => Math.sqrt(u)];
    for (const [index, shift] of shifts.entries()) {
      const window = overconfidentPredictions(5000, 10 + index, shift);
      const estimate = expectedAccuracy(window.confidences.map((confidence) => calibrate(curve, confidence))) as number;
      const raw = expectedAccuracy(window.confidences) as number;
      const realised = share(window.correct);
      assert.ok(Math.abs(estimate - realised) < 0.015, `shift ${index}: estimate ${estimate}, realised ${realised}`);
      assert.ok(raw - realised > 0.05, `shift ${index}: raw confidence should overstate accuracy (${raw} vs ${realised})`);
    }
  });
});

describe('AccuracyWindow', () => {
  test('hand-checked summary: expected accuracy over all, realised and its estimate over the labelled ones', () => {
    const window = new AccuracyWindow({ capacity: 10 }, () => 0);
    window.recordPrediction('a', 3, 0.9);
    window.recordPrediction('b', 1, 0.6);
    window.recordPrediction('c', 0, 0.3);
    assert.equal(window.recordLabel('a', 3), 'applied');
    assert.equal(window.recordLabel('b', 2), 'applied');
    const summary = window.summary();
    assert.equal(summary.predictions, 3);
    assert.equal(summary.labelled, 2);
    close(summary.expectedAccuracy, 0.6);
    assert.equal(summary.realisedAccuracy, 0.5);
    close(summary.expectedAccuracyOnLabelled, 0.75);
    close(summary.estimateError, 0.25);
    // Bins [0.9, 1): 0.9 vs 1 right; [0.6, 0.7): 0.6 vs 0 right.
    close(summary.calibrationError, 0.5 * 0.1 + 0.5 * 0.6);
    assert.deepEqual(summary.window, { size: 3, capacity: 10, maxAgeMs: 3_600_000, oldestAt: 0, newestAt: 0 });
  });

  test('labels for predictions that left the window, by count or by age, are turned away; a later label replaces an earlier', () => {
    let time = 0;
    const window = new AccuracyWindow({ capacity: 2, maxAgeMs: 100 }, () => time);
    window.recordPrediction('a', 0, 0.5);
    window.recordPrediction('b', 0, 0.5);
    window.recordPrediction('c', 1, 0.5);
    assert.equal(window.recordLabel('a', 0), 'unknown');
    assert.equal(window.recordLabel('never', 0), 'unknown');
    assert.equal(window.recordLabel('b', 1), 'applied');
    assert.equal(window.recordLabel('b', 0), 'applied');
    assert.equal(window.summary().realisedAccuracy, 1);
    time = 101;
    assert.equal(window.recordLabel('c', 1), 'unknown');
    assert.deepEqual(window.summary(), { window: { size: 0, capacity: 2, maxAgeMs: 100 }, predictions: 0, labelled: 0 });
  });

  test('a request id on two predictions in the window is ambiguous: its label is turned away until the older one leaves', () => {
    const window = new AccuracyWindow({ capacity: 3 }, () => 0);
    window.recordPrediction('same', 0, 0.5);
    window.recordPrediction('other', 0, 0.5);
    window.recordPrediction('same', 1, 0.5);
    assert.equal(window.recordLabel('same', 0), 'ambiguous');
    assert.equal(window.summary().labelled, 0, 'neither prediction was labelled');
    window.recordPrediction('third', 0, 0.5); // the first 'same' leaves
    assert.equal(window.recordLabel('same', 1), 'applied');
    assert.deepEqual([window.summary().labelled, window.summary().realisedAccuracy], [1, 1]);
  });

  test('refuses class indices that are not whole numbers ≥ 0 and confidences outside [0, 1]', () => {
    const window = new AccuracyWindow();
    assert.throws(() => window.recordPrediction('a', -1, 0.5), /predicted class must be a class index .* got -1/);
    assert.throws(() => window.recordPrediction('a', 0, Number.NaN), /got NaN/);
    assert.throws(() => window.recordLabel('a', 1.5), /true class must be a class index .* got 1.5/);
  });

  test('property: the summary matches one recomputed from a plain list of everything, under random traffic and feedback', () => {
    const random = mulberry32(41);
    let time = 0;
    const capacity = 7;
    const maxAgeMs = 30;
    const window = new AccuracyWindow({ capacity, maxAgeMs }, () => time);
    const everything: Array<{ id: string; predicted: number; confidence: number; label?: number; at: number }> = [];
    const live = () => everything.slice(-capacity).filter((entry) => time - entry.at <= maxAgeMs);
    for (let step = 0; step < 2000; step++) {
      time += Math.floor(random() * 6);
      const id = `r${Math.floor(random() * 12)}`;
      if (random() < 0.6) {
        const entry = { id, predicted: Math.floor(random() * 3), confidence: Math.round(random() * 100) / 100, at: time };
        everything.push(entry);
        window.recordPrediction(entry.id, entry.predicted, entry.confidence);
      } else {
        const label = Math.floor(random() * 3);
        const targets = live().filter((entry) => entry.id === id);
        assert.equal(window.recordLabel(id, label), targets.length === 0 ? 'unknown' : targets.length > 1 ? 'ambiguous' : 'applied');
        if (targets.length === 1) targets[0].label = label;
      }
      const entries = live();
      const labelled = entries.filter((entry) => entry.label !== undefined);
      const summary = window.summary();
      assert.equal(summary.predictions, entries.length);
      assert.equal(summary.labelled, labelled.length);
      if (entries.length > 0) close(summary.expectedAccuracy, expectedAccuracy(entries.map((entry) => entry.confidence)) as number);
      if (labelled.length > 0) {
        const correct = labelled.map((entry) => entry.label === entry.predicted);
        close(summary.realisedAccuracy, share(correct));
        close(summary.calibrationError, expectedCalibrationError(labelled.map((entry) => entry.confidence), correct) as number);
      }
    }
  });
});
