/**
 * Out-of-distribution scores from a model's internal representation: the activations of a chosen
 * intermediate tensor (by default what the classifier head reads), pooled per channel, scored by
 * their Mahalanobis distance to the nearest class mean under one covariance shared by all classes
 * (class-conditional Gaussians, as Lee et al. 2018 proposed). Softmax confidence says how sure the
 * head is among its classes; this says whether the input looks like anything the model was shown.
 * The threshold is the score a chosen share of held-out in-distribution examples exceeds, so the
 * false-positive rate is stated rather than hoped for.
 */

import type { ReferenceProfile } from './reference-profile.js';

/** How a representation tensor's row becomes a feature vector. */
export type Pooling = 'spatial-mean' | 'none';

/**
 * One row's features: for 'spatial-mean', the mean of each channel over its spatial positions
 * (`dims` = [channels, …spatial] without the batch dimension); for 'none', the values as they are.
 */
export function pooledFeatures(row: ArrayLike<number>, dims: readonly number[], pooling: Pooling): Float64Array {
  if (pooling === 'none' || dims.length < 2) return Float64Array.from(row);
  const channels = dims[0];
  const positions = dims.slice(1).reduce((product, dim) => product * dim, 1);
  const features = new Float64Array(channels);
  for (let channel = 0; channel < channels; channel++) {
    let sum = 0;
    for (let position = 0; position < positions; position++) sum += row[channel * positions + position];
    features[channel] = sum / positions;
  }
  return features;
}

/** The inverse of a symmetric positive-definite matrix, by Gauss–Jordan elimination with partial pivoting. */
export function invertMatrix(matrix: readonly ArrayLike<number>[]): Float64Array[] {
  const size = matrix.length;
  const work = matrix.map((row, index) => {
    const augmented = new Float64Array(2 * size);
    augmented.set(Array.from(row));
    augmented[size + index] = 1;
    return augmented;
  });
  for (let column = 0; column < size; column++) {
    let pivot = column;
    for (let row = column + 1; row < size; row++) if (Math.abs(work[row][column]) > Math.abs(work[pivot][column])) pivot = row;
    if (Math.abs(work[pivot][column]) < 1e-300) throw new Error('the covariance matrix is singular; add shrinkage');
    [work[column], work[pivot]] = [work[pivot], work[column]];
    const divisor = work[column][column];
    for (let index = 0; index < 2 * size; index++) work[column][index] /= divisor;
    for (let row = 0; row < size; row++) {
      const factor = work[row][column];
      if (row === column || factor === 0) continue;
      for (let index = 0; index < 2 * size; index++) work[row][index] -= factor * work[column][index];
    }
  }
  return work.map((row) => row.slice(size));
}

export interface MahalanobisFit {
  /** Mean feature vector of each class (a class never seen has an empty array and is skipped). */
  classMeans: number[][];
  /** Inverse of the covariance shared by the classes (within-class scatter over all examples, plus shrinkage on the diagonal). */
  precision: number[][];
}

/**
 * Class means and the shared precision from examples' features and their classes (labels, or the
 * model's own predictions when there are none). `shrinkage` is added to the covariance's diagonal,
 * relative to its mean variance, so that channels that never fire do not make it singular.
 */
export function fitMahalanobis(features: readonly Float64Array[], classes: readonly number[], classCount: number, shrinkage = 1e-3): MahalanobisFit {
  if (features.length !== classes.length) throw new Error(`${features.length} feature vectors but ${classes.length} classes`);
  if (features.length < 2) throw new Error('fitting a covariance needs at least 2 examples');
  const size = features[0].length;
  const sums = Array.from({ length: classCount }, () => new Float64Array(size));
  const counts = new Array<number>(classCount).fill(0);
  features.forEach((vector, index) => {
    const cls = classes[index];
    counts[cls] += 1;
    for (let dim = 0; dim < size; dim++) sums[cls][dim] += vector[dim];
  });
  const means = sums.map((sum, cls) => (counts[cls] > 0 ? sum.map((value) => value / counts[cls]) : new Float64Array(0)));
  const covariance = Array.from({ length: size }, () => new Float64Array(size));
  const centred = new Float64Array(size);
  features.forEach((vector, index) => {
    const mean = means[classes[index]];
    for (let dim = 0; dim < size; dim++) centred[dim] = vector[dim] - mean[dim];
    for (let a = 0; a < size; a++) {
      const row = covariance[a];
      const value = centred[a];
      for (let b = 0; b < size; b++) row[b] += value * centred[b];
    }
  });
  let trace = 0;
  for (let dim = 0; dim < size; dim++) trace += covariance[dim][dim] / features.length;
  const ridge = Math.max(shrinkage * (trace / size), 1e-12);
  for (let a = 0; a < size; a++) {
    for (let b = 0; b < size; b++) covariance[a][b] /= features.length;
    covariance[a][a] += ridge;
  }
  return { classMeans: means.map((mean) => Array.from(mean)), precision: invertMatrix(covariance).map((row) => Array.from(row)) };
}

/**
 * Scores feature vectors against a fit: the squared Mahalanobis distance to the nearest class mean.
 * Precomputes P·μ and μᵀPμ per class, so a score costs one d×d product and a dot product per class.
 */
export class MahalanobisScorer {
  private readonly size: number;
  /** The precision's upper triangle, symmetrised, row after row: xᵀPx = Σₐ xₐ (Pₐₐ xₐ + 2 Σ_{b>a} Pₐᵦ xᵦ) takes half the products. */
  private readonly upper: Float64Array;
  private readonly projectedMeans: Float64Array[];
  private readonly meanTerms: number[];

  constructor(fit: MahalanobisFit) {
    const precision = fit.precision;
    const size = (this.size = precision.length);
    this.upper = new Float64Array((size * (size + 1)) / 2);
    let at = 0;
    for (let a = 0; a < size; a++) for (let b = a; b < size; b++) this.upper[at++] = (precision[a][b] + precision[b][a]) / 2;
    const present = fit.classMeans.filter((mean) => mean.length > 0);
    this.projectedMeans = present.map((mean) => Float64Array.from(precision, (row) => row.reduce((sum, value, index) => sum + value * mean[index], 0)));
    this.meanTerms = present.map((mean, cls) => mean.reduce((sum, value, index) => sum + value * this.projectedMeans[cls][index], 0));
  }

  score(features: ArrayLike<number>): number {
    const { size, upper } = this;
    if (features.length !== size) throw new Error(`expected ${size} features, got ${features.length}`);
    let quadratic = 0;
    let at = 0;
    for (let a = 0; a < size; a++) {
      const value = features[a];
      let off = 0;
      const diagonal = upper[at++];
      for (let b = a + 1; b < size; b++) off += upper[at++] * features[b];
      quadratic += value * (diagonal * value + 2 * off);
    }
    let nearest = Infinity;
    for (let cls = 0; cls < this.projectedMeans.length; cls++) {
      const projected = this.projectedMeans[cls];
      let cross = 0;
      for (let index = 0; index < size; index++) cross += features[index] * projected[index];
      nearest = Math.min(nearest, quadratic - 2 * cross + this.meanTerms[cls]);
    }
    return nearest;
  }
}

/** The score that a share `falsePositiveRate` of in-distribution scores exceeds (their (1 − rate) quantile, taken from above). */
export function thresholdForFalsePositiveRate(inDistributionScores: readonly number[], falsePositiveRate: number): number {
  if (inDistributionScores.length === 0) throw new Error('choosing a threshold needs in-distribution scores');
  if (!(falsePositiveRate > 0 && falsePositiveRate < 1)) throw new Error(`a false-positive rate is between 0 and 1, got ${falsePositiveRate}`);
  const sorted = [...inDistributionScores].sort((a, b) => a - b);
  const allowed = Math.floor(sorted.length * falsePositiveRate);
  return sorted[sorted.length - 1 - allowed];
}

/**
 * How far below the flattest image of a profile a row's spread must be to count as blank: a quarter of the least
 * standard deviation any profiled image's model input had. Far enough below the reference that in-distribution images
 * stay clear of it (measured on Fashion-MNIST: the least of its 10,000 test images is 0.95 of the least of the 12,000
 * training images profiled, the least of all 60,000 training images 0.86: 3.4 times the floor), near enough to catch
 * what shows the model nearly nothing: a covered lens (its sensor noise averaged away by the resize), a nearly white
 * page, a 16-bit scan of 8-bit values (levels 0 and 1 of 255: 0.026 of the least, a tenth of the floor).
 */
export const BLANK_SPREAD_FRACTION = 0.25;

/** The standard deviation of a row's values (a model input's, after pre-processing). */
export function rowSpread(row: ArrayLike<number>): number {
  let sum = 0;
  for (let index = 0; index < row.length; index++) sum += row[index];
  const mean = sum / row.length;
  let squares = 0;
  for (let index = 0; index < row.length; index++) squares += (row[index] - mean) ** 2;
  return Math.sqrt(squares / row.length);
}

/**
 * Whether a model's input row is blank: every value the same (an image of one colour, say, a capture from a covered lens
 * or a failed upload), or with a `floor` (see blankFloor), values spread no further than it. It shows the model nothing,
 * yet its representation can sit among the reference's: the bundled Fashion-MNIST model scores an all-black photo 121.1
 * against a threshold of 122.9, "Sneaker" and in distribution.
 */
export function isBlankRow(row: ArrayLike<number>, floor = 0): boolean {
  // Exact for floor 0: a constant row's computed spread may be a rounding error above 0.
  if (floor > 0) return rowSpread(row) <= floor;
  for (let index = 1; index < row.length; index++) if (row[index] !== row[0]) return false;
  return true;
}

/**
 * The spread at or below which an input row is blank and out of distribution whatever its score, or undefined when
 * scores alone decide. A profile that records its images' least spread (ood.leastInputSpread) gives BLANK_SPREAD_FRACTION
 * of it; an older one that knows its images' contrast and held no blank image (least contrast above 0) gives 0, exact
 * blanks only. A profile without image properties (tensor inputs), or whose images included a blank one, decides by
 * score alone, since a constant row may be ordinary data there.
 */
export function blankFloor(profile: Pick<ReferenceProfile, 'features' | 'ood'>): number | undefined {
  const least = profile.ood?.leastInputSpread;
  if (least !== undefined) return least > 0 ? least * BLANK_SPREAD_FRACTION : undefined;
  return (profile.features['input.contrast']?.min ?? 0) > 0 ? 0 : undefined;
}

/** The verdict on one row: its score past the threshold, or a blank input where the reference held none. */
export const isOutOfDistribution = (score: number, threshold: number, blankAndForeign: boolean): boolean => blankAndForeign || score > threshold;
