import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mulberry32 } from '../onnx/test-models.js';
import {
  DRIFT_THRESHOLDS,
  chanceKs,
  binEdgesFromQuantiles,
  histogram,
  jensenShannon,
  ksPValue,
  ksStatistic,
  psi,
  psiEquivalentOfKs,
  sortedCopy,
  wasserstein1,
} from './drift-statistics.js';

const close = (actual: number, expected: number, tolerance = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `expected ${expected} ± ${tolerance}, got ${actual}`);

/** Standard normal draws from a seeded uniform source (Box–Muller), so every run sees the same samples. */
function normalSource(seed: number): () => number {
  const uniform = mulberry32(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

const draw = (count: number, source: () => number, shift = 0) => Float64Array.from({ length: count }, () => source() + shift);

describe('psi', () => {
  test('hand-checked: halves moving to a quarter and three quarters score ¼ · ln 3', () => {
    // (0.25 − 0.5) ln(0.25/0.5) + (0.75 − 0.5) ln(0.75/0.5) = 0.25 (ln 2 + ln 1.5) = 0.25 ln 3
    close(psi([50, 50], [25, 75]), 0.25 * Math.log(3));
  });

  test('identical shares score 0, whatever the totals; the score is symmetric', () => {
    assert.equal(psi([10, 20, 30], [1, 2, 3]), 0);
    close(psi([3, 1, 6], [2, 5, 3]), psi([2, 5, 3], [3, 1, 6]), 1e-15);
  });

  test('an empty bin is floored at the documented share; empty on both sides contributes nothing', () => {
    // Shares (1, 0) → (1, 1e-4) against (0.9, 0.1): (0.9 − 1) ln 0.9 + (0.1 − 1e-4) ln(0.1 / 1e-4)
    close(psi([100, 0], [90, 10]), -0.1 * Math.log(0.9) + (0.1 - 1e-4) * Math.log(1000));
    close(psi([100, 0], [90, 10], 1e-3), -0.1 * Math.log(0.9) + (0.1 - 1e-3) * Math.log(100));
    assert.equal(psi([5, 0, 5], [3, 0, 7]), psi([5, 5], [3, 7]));
  });

  test('refuses bins that do not line up, negative or non-finite counts, empty totals and a bad epsilon', () => {
    assert.throws(() => psi([1, 2], [1, 2, 3]), /reference has 2 bins, the current 3/);
    assert.throws(() => psi([1, -1], [1, 1]), /reference counts must be finite and non-negative; entry 1 is -1/);
    assert.throws(() => psi([1, 1], [1, Number.NaN]), /current counts .* entry 1 is NaN/);
    assert.throws(() => psi([1, 1], [0, 0]), /current counts sum to 0/);
    assert.throws(() => psi([1, 1], [1, 1], 0), /empty-bin share must lie in \(0, 1\)/);
  });

  test('no drift: same-distribution windows of 500 against 5000 reference values stay far below the warning level', () => {
    // Under no drift PSI ≈ χ²(bins − 1) · (1/m + 1/n): mean 9 · (1/500 + 1/5000) ≈ 0.0198.
    const normal = normalSource(11);
    const reference = draw(5000, normal);
    const edges = binEdgesFromQuantiles(reference);
    const referenceCounts = histogram(reference, edges);
    const scores = Array.from({ length: 200 }, () => psi(referenceCounts, histogram(draw(500, normal), edges)));
    const mean = scores.reduce((sum, score) => sum + score, 0) / scores.length;
    assert.ok(mean > 0.015 && mean < 0.025, `mean PSI under no drift ${mean}`);
    assert.ok(Math.max(...scores) < DRIFT_THRESHOLDS.psi.warning, `largest PSI under no drift ${Math.max(...scores)}`);
  });

  test('a shift of 0.6 standard deviations of a normal feature crosses the drift level; a tenth stays below warning', () => {
    const normal = normalSource(12);
    const reference = draw(20_000, normal);
    const edges = binEdgesFromQuantiles(reference);
    const referenceCounts = histogram(reference, edges);
    assert.ok(psi(referenceCounts, histogram(draw(20_000, normal, 0.6), edges)) > DRIFT_THRESHOLDS.psi.drift);
    assert.ok(psi(referenceCounts, histogram(draw(20_000, normal, 0.1), edges)) < DRIFT_THRESHOLDS.psi.warning);
  });
});

describe('binEdgesFromQuantiles and histogram', () => {
  test('deciles of 1..10 are 1..9, and each value gets a bin of its own', () => {
    const sample = [7, 3, 10, 1, 5, 9, 2, 8, 4, 6];
    assert.deepEqual(binEdgesFromQuantiles(sample), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(histogram(sample, binEdgesFromQuantiles(sample)), Array(10).fill(1));
  });

  test('a continuous sample of 1000 values splits into ten bins of exactly 100', () => {
    const sample = draw(1000, normalSource(3));
    assert.deepEqual(histogram(sample, binEdgesFromQuantiles(sample)), Array(10).fill(100));
    assert.deepEqual(histogram(sample, binEdgesFromQuantiles(sample, 4)), [250, 250, 250, 250]);
  });

  test('ties give fewer bins, never empty ones; a constant sample gives one bin', () => {
    const sample = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    assert.deepEqual(binEdgesFromQuantiles(sample), [0]);
    assert.deepEqual(histogram(sample, [0]), [8, 2]);
    assert.deepEqual(binEdgesFromQuantiles([5, 5, 5]), []);
    assert.deepEqual(histogram([5, 5, 5, 6], []), [4]);
  });

  test('property: for samples full of ties, every bin holds at least one of the sample values that made it', () => {
    const uniform = mulberry32(5);
    for (let trial = 0; trial < 200; trial++) {
      const distinct = 1 + Math.floor(uniform() * 12);
      const sample = Array.from({ length: 1 + Math.floor(uniform() * 60) }, () => Math.floor(uniform() * distinct));
      const bins = 1 + Math.floor(uniform() * 15);
      const edges = binEdgesFromQuantiles(sample, bins);
      assert.ok(edges.length <= bins - 1);
      const counts = histogram(sample, edges);
      assert.equal(counts.reduce((sum, count) => sum + count, 0), sample.length);
      assert.ok(counts.every((count) => count > 0), `empty bin for ${JSON.stringify(sample)} in ${bins} bins: ${counts}`);
    }
  });

  test('bins are right-closed: a value on an edge belongs to the bin below it; infinities land at the ends', () => {
    assert.deepEqual(histogram([0, 1, 1.5, 2, 3], [1, 2]), [2, 2, 1]);
    assert.deepEqual(histogram([-Infinity, Infinity], [1, 2]), [1, 0, 1]);
  });

  test('refuses an empty sample, a bad bin count, unordered edges and NaN', () => {
    assert.throws(() => binEdgesFromQuantiles([]), /empty sample/);
    assert.throws(() => binEdgesFromQuantiles([1], 0), /positive integer, got 0/);
    assert.throws(() => binEdgesFromQuantiles([1, Number.NaN]), /value 1 is NaN/);
    assert.throws(() => histogram([1], [2, 2]), /strictly ascending; edge 1 \(2\) follows 2/);
    assert.throws(() => histogram([Number.NaN], [1]), /value 0 is NaN/);
  });
});

describe('ksStatistic and ksPValue', () => {
  test('hand-checked: 1..4 against 3..6 differ by 0.5 at their widest', () => {
    assert.equal(ksStatistic([1, 2, 3, 4], [6, 4, 5, 3]), 0.5);
    assert.equal(ksStatistic([1, 2, 3], [2, 1, 3]), 0);
    assert.equal(ksStatistic([1, 2], [3, 4]), 1);
  });

  test('ties move both CDFs together: the same values in other proportions are no gap', () => {
    assert.equal(ksStatistic([1, 1, 2, 2], [1, 2]), 0);
    assert.equal(ksStatistic([1, 1, 1, 2], [1, 2]), 0.25);
  });

  test('property: equals the largest CDF gap counted directly at every value, for integer samples with ties', () => {
    const uniform = mulberry32(8);
    const cdf = (sample: number[], x: number) => sample.filter((value) => value <= x).length / sample.length;
    for (let trial = 0; trial < 200; trial++) {
      const reference = Array.from({ length: 1 + Math.floor(uniform() * 30) }, () => Math.floor(uniform() * 10));
      const current = Array.from({ length: 1 + Math.floor(uniform() * 30) }, () => Math.floor(uniform() * 12));
      const direct = Math.max(...[...reference, ...current].map((x) => Math.abs(cdf(reference, x) - cdf(current, x))));
      close(ksStatistic(sortedCopy(reference), current), direct, 1e-12);
    }
  });

  test('refuses an unsorted reference and empty samples', () => {
    assert.throws(() => ksStatistic([2, 1], [1]), /reference sample must be sorted ascending without NaN; entry 1 \(1\)/);
    assert.throws(() => ksStatistic([Number.NaN, 1], [1]), /entry 0 \(NaN\)/);
    assert.throws(() => ksStatistic([], [1]), /reference sample is empty/);
    assert.throws(() => ksStatistic([1], []), /current sample is empty/);
  });

  test('p-values at the textbook critical values of the Kolmogorov distribution: 1.2238 → 0.10, 1.3581 → 0.05, 1.6276 → 0.01', () => {
    // n = m = 200 makes √(n m / (n + m)) = 10, so d = λ / 10.
    close(ksPValue(0.12238, 200, 200), 0.1, 1e-4);
    close(ksPValue(0.13581, 200, 200), 0.05, 1e-4);
    close(ksPValue(0.16276, 200, 200), 0.01, 1e-4);
    close(ksPValue(0.1, 200, 200), 0.27, 1e-3); // Q(1) = 0.2700
    assert.equal(ksPValue(0, 10, 10), 1);
    assert.ok(ksPValue(1, 1000, 1000) < 1e-100);
  });

  test('the two series agree where the p-value switches between them, and the p-value falls as d grows', () => {
    close(ksPValue(0.09999999, 200, 200), ksPValue(0.10000001, 200, 200), 1e-6);
    let previous = 1;
    for (let d = 0.005; d <= 0.4; d += 0.005) {
      const p = ksPValue(d, 200, 200);
      assert.ok(p <= previous && p >= 0, `p(${d}) = ${p} after ${previous}`);
      previous = p;
    }
    assert.throws(() => ksPValue(1.5, 10, 10), /lies in \[0, 1\], got 1.5/);
    assert.throws(() => ksPValue(0.5, 0, 10), /at least 1, got 0 and 10/);
  });

  test('under no drift about 5 % of windows fall below p = 0.05, and none reaches the KS warning level', () => {
    const normal = normalSource(21);
    const reference = sortedCopy(draw(2000, normal));
    const trials = 400;
    let rejected = 0;
    let largest = 0;
    for (let trial = 0; trial < trials; trial++) {
      const d = ksStatistic(reference, draw(400, normal));
      largest = Math.max(largest, d);
      if (ksPValue(d, 2000, 400) < 0.05) rejected += 1;
    }
    assert.ok(rejected / trials > 0.02 && rejected / trials < 0.09, `rejected ${rejected} of ${trials}`);
    assert.ok(largest < DRIFT_THRESHOLDS.ks.warning, `largest D under no drift ${largest}`);
  });

  test('chanceKs is the mean D of windows drawn from the reference itself, at 100, 200 and 1000 values', () => {
    // Hand-checked: √(π/2) · ln 2 · √(1/200) = 0.868731 · 0.0707107 = 0.061429
    close(chanceKs(200), 0.0614286, 1e-6);
    close(chanceKs(200, 200), Math.sqrt(2) * chanceKs(200), 1e-12);
    assert.equal(chanceKs(0), 0);
    const normal = normalSource(23);
    const reference = sortedCopy(draw(5000, normal));
    for (const m of [100, 200, 1000]) {
      let sum = 0;
      const trials = 300;
      for (let trial = 0; trial < trials; trial++) sum += ksStatistic(reference, draw(m, normal));
      // Small samples' D runs a little above the limit law (it is discrete); within 10 % here.
      const mean = sum / trials;
      assert.ok(Math.abs(mean / chanceKs(m, 5000) - 1) < 0.1, `m=${m}: mean D ${mean.toFixed(4)} against chanceKs ${chanceKs(m, 5000).toFixed(4)}`);
    }
  });

  test('thresholds agree with PSI for a normal mean shift: past drift at 0.6 σ, under warning at 0.2 σ', () => {
    const normal = normalSource(22);
    const reference = sortedCopy(draw(20_000, normal));
    assert.ok(ksStatistic(reference, draw(20_000, normal, 0.6)) > DRIFT_THRESHOLDS.ks.drift);
    assert.ok(ksStatistic(reference, draw(20_000, normal, 0.2)) < DRIFT_THRESHOLDS.ks.warning);
  });
});

describe('wasserstein1', () => {
  test('hand-checked areas between CDFs', () => {
    assert.equal(wasserstein1([0], [1]), 1);
    // F_reference = 1 from 0; F_current = 0.5 on [0, 2): area 0.5 · 2
    assert.equal(wasserstein1([0, 0], [0, 2]), 1);
    // F_reference = 0.5 and F_current = 0.75 on [0, 1)
    assert.equal(wasserstein1([0, 1], [0, 0, 0, 1]), 0.25);
    assert.equal(wasserstein1([0, 1], [0, 0, 1, 1]), 0);
  });

  test('a shift of every value by c moves the distribution by exactly |c|, either way round', () => {
    const sample = sortedCopy(draw(500, normalSource(4)));
    const shifted = sample.map((value) => value - 2.5);
    close(wasserstein1(sample, shifted), 2.5, 1e-9);
    close(wasserstein1(shifted, sample), 2.5, 1e-9);
  });

  test('property: for samples of equal size it is the mean distance between order statistics', () => {
    const uniform = mulberry32(9);
    for (let trial = 0; trial < 200; trial++) {
      const size = 1 + Math.floor(uniform() * 40);
      const a = sortedCopy(Array.from({ length: size }, () => Math.round(uniform() * 20) / 4));
      const b = sortedCopy(Array.from({ length: size }, () => Math.round(uniform() * 30) / 4 - 1));
      const direct = a.reduce((sum, value, index) => sum + Math.abs(value - b[index]), 0) / size;
      close(wasserstein1(a, b), direct, 1e-9);
    }
  });

  test('refuses unsorted input on either side', () => {
    assert.throws(() => wasserstein1([0, 1], [1, 0]), /current sample must be sorted ascending/);
  });
});

describe('jensenShannon', () => {
  test('hand-checked: disjoint distributions score 1 bit, identical 0', () => {
    assert.equal(jensenShannon([1, 0], [0, 1]), 1);
    assert.equal(jensenShannon([3, 3, 4], [0.3, 0.3, 0.4]), 0);
    // m = (0.75, 0.25): KL(p‖m) = log2(4/3); KL(q‖m) = 0.5 log2(2/3) + 0.5 log2 2
    close(jensenShannon([1, 0], [1, 1]), (Math.log2(4 / 3) + 0.5 * Math.log2(2 / 3) + 0.5) / 2, 1e-15);
  });

  test('counts and probabilities give the same answer; the divergence is symmetric', () => {
    assert.equal(jensenShannon([2, 6], [1, 1]), jensenShannon([0.25, 0.75], [0.5, 0.5]));
    close(jensenShannon([5, 1, 0, 4], [1, 1, 7, 1]), jensenShannon([1, 1, 7, 1], [5, 1, 0, 4]), 1e-15);
  });

  test('property: always within [0, 1]; to second order one eighth of PSI in nats, as the thresholds assume', () => {
    const uniform = mulberry32(10);
    for (let trial = 0; trial < 300; trial++) {
      const classes = 2 + Math.floor(uniform() * 10);
      const p = Array.from({ length: classes }, () => (uniform() < 0.2 ? 0 : uniform()));
      const q = Array.from({ length: classes }, () => (uniform() < 0.2 ? 0 : uniform()));
      if (p.every((x) => x === 0) || q.every((x) => x === 0)) continue;
      const divergence = jensenShannon(p, q);
      assert.ok(divergence >= 0 && divergence <= 1, `${divergence}`);
      const nudged = p.map((x) => x + 0.002 * uniform());
      if (p.every((x) => x > 0)) close(jensenShannon(p, nudged), psi(p, nudged) / (8 * Math.LN2), 0.02 * psi(p, nudged) + 1e-12);
    }
  });

  test('refuses categories that do not line up and empty distributions', () => {
    assert.throws(() => jensenShannon([1], [1, 2]), /same categories on both sides: got 1 and 2/);
    assert.throws(() => jensenShannon([0, 0], [1, 2]), /first counts sum to 0/);
  });
});

test('psiEquivalentOfKs puts KS D on PSI\'s scale by the mean-shift equivalence of the thresholds: D 0.127 ↔ 0.1, D 0.2 ↔ 0.25', () => {
  assert.ok(Math.abs(psiEquivalentOfKs(0.127) - 0.1) < 0.005, `${psiEquivalentOfKs(0.127)}`);
  assert.ok(Math.abs(psiEquivalentOfKs(0.2) - 0.25) < 0.01, `${psiEquivalentOfKs(0.2)}`);
  assert.ok(psiEquivalentOfKs(0.05) < 0.02);
  assert.equal(psiEquivalentOfKs(0), 0);
  assert.equal(psiEquivalentOfKs(1), Infinity);
  assert.throws(() => psiEquivalentOfKs(1.5), /a KS statistic lies in \[0, 1\], got 1.5/);
});
