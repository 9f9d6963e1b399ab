/**
 * The distances a drift monitor compares a window of recent values with a reference by. Pure functions over plain
 * arrays (any ArrayLike<number>, typed arrays included), so the same code serves the server's windows, the offline
 * `monitor` report and the profile builder.
 *
 * Which distance fits which feature:
 * - PSI over reference-quantile bins: any numeric feature; the score operators know, with conventional thresholds.
 * - Kolmogorov–Smirnov D: numeric features where the shape of the whole distribution matters; scale-free, in [0, 1].
 * - Wasserstein-1: numeric features where *how far* values moved matters; in the feature's own units, so divide by
 *   a reference spread (standard deviation, interquartile range) before comparing features with each other.
 * - Jensen–Shannon: categorical distributions (class shares), in bits, in [0, 1].
 */
import type { z } from 'zod';
import { driftThresholdsSchema } from '../config/model-config.js';

/**
 * Alarm levels for each distance. A window whose score reaches `warning` is worth a look; `drift` means the inputs
 * (or outputs) no longer look like the reference.
 *
 * - PSI 0.1 / 0.25: the industry convention from credit scorecard monitoring, which operators already read.
 * - KS D 0.12 / 0.2: chosen to raise the same alarm as PSI for the commonest drift, a shift of a bell-shaped feature's
 *   mean. A normal feature shifted by δ standard deviations has PSI ≈ 0.95 δ² over reference deciles (measured on
 *   200 000 values a side; δ² is the unbinned limit) and D = 2Φ(δ/2) − 1, so PSI 0.1 ↔ δ ≈ 0.32 ↔ D ≈ 0.127 and
 *   PSI 0.25 ↔ δ ≈ 0.51 ↔ D ≈ 0.20. A p-value threshold was not chosen because with windows of thousands of values
 *   it flags differences too small to matter; D measures the size of the difference.
 * - Jensen–Shannon 0.02 / 0.05 bits: to second order JS (in nats) is one eighth of PSI over the same categories, so
 *   PSI 0.1 / 0.25 ↔ JS ≈ 0.018 / 0.045 bits; rounded up so that the class-share alarm is no more eager than PSI's.
 *
 * Below a few hundred values, noise alone reaches these levels: with 10 equal-share bins and m current values, PSI
 * under no drift is about χ²(9)/m (mean 9/m; 99th percentile ≈ 21.7/m, which is 0.1 at m ≈ 220), and D's 1 % critical
 * value is ≈ 1.63/√m (0.12 at m ≈ 185). Hence the drift state's default minimum of 200 samples.
 */
export const DRIFT_THRESHOLDS: DriftThresholds = driftThresholdsOf(driftThresholdsSchema.parse({}));

/** Alarm levels per statistic; a model's config may set its own (monitoring.drift.thresholds), these are the defaults. */
export interface DriftThresholds {
  readonly psi: DriftLevels;
  readonly ks: DriftLevels;
  readonly jensenShannon: DriftLevels;
}
export interface DriftLevels {
  readonly warning: number;
  readonly drift: number;
}

/** A model config's thresholds (snake_case, as configs are written) as the statistics read them. */
export function driftThresholdsOf(config: z.output<typeof driftThresholdsSchema>): DriftThresholds {
  return { psi: config.psi, ks: config.ks, jensenShannon: config.jensen_shannon };
}

/**
 * The PSI a window scores by chance alone: over `bins` bins, m current values and n reference values drawn from one
 * distribution give PSI ≈ χ²(bins − 1) · (1/m + 1/n), whose mean is (bins − 1)(1/m + 1/n) — 0.045 for 200 values
 * over deciles, 0.009 for 1000. Subtracted from a score before it meets the thresholds, it keeps a small window's
 * noise (the largest of a dozen features' PSI at 200 rows) from reading as a warning, and fades as the window fills.
 * n is Infinity for a reference known exactly (shares rather than a sample).
 */
export function chancePsi(bins: number, currentCount: number, referenceCount = Infinity): number {
  if (bins < 2 || !(currentCount > 0)) return 0;
  return (bins - 1) * (1 / currentCount + 1 / referenceCount);
}

/** The mean of Kolmogorov's limit distribution, √(π/2) · ln 2: E[λ] for λ = D · √(m n / (m + n)) under no drift. */
const KOLMOGOROV_MEAN = Math.sqrt(Math.PI / 2) * Math.LN2;

/**
 * The KS D a window scores by chance alone: m current values and n reference values from one continuous distribution
 * give D ≈ λ · √(1/m + 1/n) with λ Kolmogorov-distributed, on average 0.8687 · √(1/m + 1/n) — 0.061 for 200 values,
 * 0.027 for 1000 (against a large reference). Subtracted from D before it meets the thresholds, as chancePsi is from PSI.
 */
export function chanceKs(currentCount: number, referenceCount = Infinity): number {
  if (!(currentCount > 0)) return 0;
  return KOLMOGOROV_MEAN * Math.sqrt(1 / currentCount + 1 / referenceCount);
}

/**
 * The share PSI gives a bin that holds no values, on either side. An empty bin would make ln(a/e) infinite; flooring
 * each share at 1e-4 (one in ten thousand) keeps PSI finite while a bin that is empty in the reference but holds 10 %
 * of the window still scores ≈ 0.1 · ln(0.1/1e-4) ≈ 0.69, far past the drift threshold. A bin empty on both sides
 * contributes nothing. Bins from `binEdgesFromQuantiles` are never empty in the reference sample they came from.
 */
export const PSI_EMPTY_BIN_SHARE = 1e-4;

/**
 * Population Stability Index of the current distribution against the reference, over the same bins:
 * Σ (c − r) · ln(c / r), with r and c each bin's share of its total, floored at `epsilon` (see PSI_EMPTY_BIN_SHARE).
 * Symmetric, ≥ 0, 0 for identical shares. Counts need not be integers (weights or shares work too).
 */
export function psi(referenceCounts: ArrayLike<number>, currentCounts: ArrayLike<number>, epsilon = PSI_EMPTY_BIN_SHARE): number {
  if (referenceCounts.length !== currentCounts.length) {
    throw new RangeError(`psi needs counts over the same bins: the reference has ${referenceCounts.length} bins, the current ${currentCounts.length}`);
  }
  if (!(epsilon > 0 && epsilon < 1)) throw new RangeError(`psi's empty-bin share must lie in (0, 1), got ${epsilon}`);
  const referenceTotal = total(referenceCounts, 'reference');
  const currentTotal = total(currentCounts, 'current');
  let sum = 0;
  for (let bin = 0; bin < referenceCounts.length; bin++) {
    const reference = Math.max(referenceCounts[bin] / referenceTotal, epsilon);
    const current = Math.max(currentCounts[bin] / currentTotal, epsilon);
    sum += (current - reference) * Math.log(current / reference);
  }
  return sum;
}

/**
 * Jensen–Shannon divergence of two categorical distributions, in bits: the mean Kullback–Leibler divergence of each
 * from their average. Symmetric, in [0, 1]: 0 for identical shares, 1 for distributions with no category in common.
 * Takes counts or probabilities (each side is normalised by its own total); needs no epsilon, as 0 · log 0 = 0.
 */
export function jensenShannon(p: ArrayLike<number>, q: ArrayLike<number>): number {
  if (p.length !== q.length) throw new RangeError(`jensenShannon needs the same categories on both sides: got ${p.length} and ${q.length}`);
  const pTotal = total(p, 'first');
  const qTotal = total(q, 'second');
  let sum = 0;
  for (let category = 0; category < p.length; category++) {
    const pShare = p[category] / pTotal;
    const qShare = q[category] / qTotal;
    const mean = (pShare + qShare) / 2;
    if (pShare > 0) sum += pShare * Math.log2(pShare / mean);
    if (qShare > 0) sum += qShare * Math.log2(qShare / mean);
  }
  // Rounding can leave a hair below 0 or above 1; the divergence itself cannot.
  return Math.min(1, Math.max(0, sum / 2));
}

/** The sum of counts, after checking each is a finite non-negative number and that they do not all vanish. */
function total(counts: ArrayLike<number>, side: string): number {
  let sum = 0;
  for (let index = 0; index < counts.length; index++) {
    const count = counts[index];
    if (!(count >= 0 && count < Infinity)) throw new RangeError(`the ${side} counts must be finite and non-negative; entry ${index} is ${count}`);
    sum += count;
  }
  if (!(sum > 0)) throw new RangeError(`the ${side} counts sum to 0: there is no distribution to compare`);
  return sum;
}

/**
 * Cut points that split `sample` into `bins` bins of (nearly) equal share — deciles by default — for `histogram` and
 * `psi`. A bin is right-closed: value v falls in bin i when edges[i−1] < v ≤ edges[i] (the first bin takes everything
 * up to edges[0], the last everything above the last edge). The cut points are sample values (the inverse of the
 * empirical CDF, no interpolation), with repeats and the maximum dropped, so every bin holds at least one sample value
 * and a feature with few distinct values (a fixed image width) gets fewer bins rather than empty ones. Returns at most
 * bins − 1 edges, none for a constant sample (one bin).
 */
export function binEdgesFromQuantiles(sample: ArrayLike<number>, bins = 10): number[] {
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`bins must be a positive integer, got ${bins}`);
  if (sample.length === 0) throw new RangeError('cannot take quantiles of an empty sample');
  const sorted = sortedCopy(sample);
  const n = sorted.length;
  const maximum = sorted[n - 1];
  const edges: number[] = [];
  for (let k = 1; k < bins; k++) {
    // Integer arithmetic first: (k · n) / bins is exact where k / bins · n would round (0.3 · 10 = 3.0000000000000004).
    const edge = sorted[Math.ceil((k * n) / bins) - 1];
    if (edge < maximum && (edges.length === 0 || edge > edges[edges.length - 1])) edges.push(edge);
  }
  return edges;
}

/** How many of `values` fall in each bin the ascending `edges` define (right-closed, as `binEdgesFromQuantiles` says): edges.length + 1 counts. */
export function histogram(values: ArrayLike<number>, edges: ArrayLike<number>): number[] {
  for (let index = 1; index < edges.length; index++) {
    if (!(edges[index] > edges[index - 1])) throw new RangeError(`bin edges must be strictly ascending; edge ${index} (${edges[index]}) follows ${edges[index - 1]}`);
  }
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (let index = 0; index < values.length; index++) {
    const value = values[index];
    if (Number.isNaN(value)) throw new RangeError(`value ${index} is NaN, which falls in no bin`);
    // The first edge at or above the value: binary search, as a profile may have many bins.
    let low = 0;
    let high = edges.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (edges[middle] < value) low = middle + 1;
      else high = middle;
    }
    counts[low] += 1;
  }
  return counts;
}

/** An ascending copy of `values` (numeric order, as typed arrays sort), refusing NaN, which has no place in an order. */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const copy = Float64Array.from(values);
  for (let index = 0; index < copy.length; index++) {
    if (Number.isNaN(copy[index])) throw new RangeError(`value ${index} is NaN, which has no place in an order`);
  }
  return copy.sort();
}

function requireSorted(values: ArrayLike<number>, name: string): void {
  if (values.length === 0) throw new RangeError(`the ${name} sample is empty`);
  for (let index = 0; index < values.length; index++) {
    // Written so that NaN fails too: NaN >= x is false.
    if (!(index === 0 ? !Number.isNaN(values[0]) : values[index] >= values[index - 1])) {
      throw new RangeError(`the ${name} sample must be sorted ascending without NaN; entry ${index} (${values[index]}) breaks the order`);
    }
  }
}

/**
 * Walks the merged order of two sorted samples and calls `visit` at each distinct value x, after both empirical CDFs
 * have stepped past every copy of x: visit(x, F_reference(x), F_current(x), next distinct value or Infinity). Moving
 * past ties together is what makes a value present in both samples count once, not as a spurious gap.
 */
function walkCdfs(
  reference: ArrayLike<number>,
  current: ArrayLike<number>,
  visit: (x: number, referenceCdf: number, currentCdf: number, next: number) => void,
): void {
  const n = reference.length;
  const m = current.length;
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    const x = j >= m || (i < n && reference[i] <= current[j]) ? reference[i] : current[j];
    while (i < n && reference[i] === x) i++;
    while (j < m && current[j] === x) j++;
    const next = Math.min(i < n ? reference[i] : Infinity, j < m ? current[j] : Infinity);
    visit(x, i / n, j / m, next);
  }
}

/**
 * Two-sample Kolmogorov–Smirnov statistic D: the largest gap between the two empirical CDFs, in [0, 1]. The reference
 * comes sorted (a profile stores it so); the current sample may be in any order and is sorted here.
 */
export function ksStatistic(referenceSorted: ArrayLike<number>, currentSample: ArrayLike<number>): number {
  requireSorted(referenceSorted, 'reference');
  const current = sortedCopy(currentSample);
  if (current.length === 0) throw new RangeError('the current sample is empty');
  let largest = 0;
  walkCdfs(referenceSorted, current, (_x, referenceCdf, currentCdf) => {
    largest = Math.max(largest, Math.abs(referenceCdf - currentCdf));
  });
  return largest;
}

/**
 * The asymptotic p-value of a two-sample KS statistic `d` for samples of n and m values: the chance of a D at least
 * this large when both come from one continuous distribution, from Kolmogorov's limit distribution
 * Q(λ) = 2 Σ_{j≥1} (−1)^{j−1} e^{−2 j² λ²} at λ = d · √(n m / (n + m)). Reliable once n m / (n + m) is a few dozen or
 * more; conservative for samples with many ties. For small λ, where that series converges slowly, the equivalent
 * theta-function form 1 − (√(2π)/λ) Σ_{j≥1} e^{−(2j−1)² π² / (8 λ²)} is summed instead.
 */
export function ksPValue(d: number, n: number, m: number): number {
  if (!(d >= 0 && d <= 1)) throw new RangeError(`a KS statistic lies in [0, 1], got ${d}`);
  if (!(n >= 1 && m >= 1)) throw new RangeError(`both sample sizes must be at least 1, got ${n} and ${m}`);
  const lambda = d * Math.sqrt((n * m) / (n + m));
  if (lambda === 0) return 1;
  let sum = 0;
  if (lambda < 1) {
    for (let j = 1; j <= 20; j++) sum += Math.exp(-((2 * j - 1) ** 2) * Math.PI ** 2 / (8 * lambda ** 2));
    return clampProbability(1 - (Math.sqrt(2 * Math.PI) / lambda) * sum);
  }
  for (let j = 1; j <= 100; j++) {
    const term = Math.exp(-2 * j * j * lambda * lambda);
    sum += j % 2 === 1 ? term : -term;
    if (term < 1e-17) break;
  }
  return clampProbability(2 * sum);
}

const clampProbability = (p: number) => Math.min(1, Math.max(0, p));

/**
 * Wasserstein-1 (earth mover's) distance between two empirical distributions: the area between their CDFs,
 * ∫ |F_reference(x) − F_current(x)| dx, exactly, from both samples sorted ascending. In the feature's units: the mean
 * distance each unit of probability mass has to move; a shift of every value by c gives exactly |c|.
 */
export function wasserstein1(referenceSorted: ArrayLike<number>, currentSorted: ArrayLike<number>): number {
  requireSorted(referenceSorted, 'reference');
  requireSorted(currentSorted, 'current');
  let area = 0;
  walkCdfs(referenceSorted, currentSorted, (x, referenceCdf, currentCdf, next) => {
    // After the last value both CDFs are 1 and the gap is 0, so the infinite width never counts.
    if (next !== Infinity) area += Math.abs(referenceCdf - currentCdf) * (next - x);
  });
  return area;
}

/** The standard normal CDF Φ, from erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const erf = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-z * z);
  return x >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

/**
 * KS D put on PSI's scale by the mean-shift equivalence DRIFT_THRESHOLDS rests on: the δ with D = 2Φ(δ/2) − 1, then
 * PSI ≈ 0.95 δ², so D 0.127 ↔ PSI 0.1 and D 0.20 ↔ PSI 0.25. For a feature whose reference never varied, where PSI
 * over (same, different) would set the reference's empty bin at PSI_EMPTY_BIN_SHARE and score 5 % of differing rows
 * past drift, the share that differs (its D) scores it instead. Infinite for D = 1.
 */
export function psiEquivalentOfKs(d: number): number {
  if (!(d >= 0 && d <= 1)) throw new RangeError(`a KS statistic lies in [0, 1], got ${d}`);
  if (d === 0) return 0;
  if (d === 1) return Infinity;
  // Φ(δ/2) = (1 + D) / 2, solved by bisection: Φ is increasing, and δ/2 below 40 covers every D short of 1 in doubles.
  const target = (1 + d) / 2;
  let low = 0;
  let high = 40;
  for (let step = 0; step < 100; step++) {
    const middle = (low + high) / 2;
    if (normalCdf(middle) < target) low = middle;
    else high = middle;
  }
  const delta = low + high; // 2 · the midpoint
  return 0.95 * delta * delta;
}
