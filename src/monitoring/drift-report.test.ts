import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../onnx/test-models.js';
import { failsAt, numericFeatureDrift } from './drift-report.js';
import { summariseFeature } from './reference-profile.js';

function normalSource(seed: number): () => number {
  const uniform = mulberry32(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

test("a numeric feature's level counts KS D and PSI beyond chance: 300 in-distribution windows of 200 rows all stay ok, a 0.8 σ shift is drift", () => {
  const normal = normalSource(31);
  const reference = summariseFeature(Float64Array.from({ length: 5000 }, normal));
  const window = (shift = 0) => Float64Array.from({ length: 200 }, () => normal() + shift);
  const flagged: string[] = [];
  let largestD = 0;
  for (let trial = 0; trial < 300; trial++) {
    const drift = numericFeatureDrift('input.value', reference, window());
    largestD = Math.max(largestD, drift.ks!);
    if (drift.level !== 'ok') flagged.push(`D ${drift.ks!.toFixed(3)} PSI ${drift.psi.toFixed(3)}`);
  }
  assert.deepEqual(flagged, []);
  // Chance alone takes D past the raw warning level in some of these windows: the correction is what keeps them ok.
  assert.ok(largestD >= 0.12, `largest D ${largestD}`);
  const shifted = numericFeatureDrift('input.value', reference, window(0.8));
  assert.equal(shifted.level, 'drift', JSON.stringify(shifted));
  assert.ok(shifted.chanceKs! > 0.06 && shifted.chanceKs! < 0.063, String(shifted.chanceKs));
});

test('monitor --fail-on fails at its level or worse, and never on too little data to judge', () => {
  const states = ['insufficient_data', 'ok', 'warning', 'drift'] as const;
  assert.deepEqual(states.filter((state) => failsAt(state, 'warning')), ['warning', 'drift']);
  assert.deepEqual(states.filter((state) => failsAt(state, 'drift')), ['drift']);
});
