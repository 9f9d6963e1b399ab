/**
 * Raw-input properties that drift and out-of-distribution monitors compare with a model version's
 * reference profile: for encoded images, geometry and tone (brightness, contrast, colourfulness,
 * clipped shares); for tensors, per-feature statistics.
 *
 * Image properties are measured on a copy downscaled to at most 64 px on its long side: libvips
 * shrinks JPEGs (up to 8 times) while decoding them, the loop over pixels stays a few microseconds,
 * and the properties are global averages that a 64 px copy keeps. Contrast and the clipped shares are
 * therefore those of the 64 px copy (fine texture averages out), the same in the reference profile
 * and in serving since both use this function.
 *
 * Measured cost per image (500 calls one after another, sharp 0.35 / libvips 8.18, on the 2-core
 * development machine while other jobs kept its load near 4, so an idle core does better): a
 * 28×28 Fashion-MNIST PNG 0.9 ms, of which about 0.3 ms is the header read for the size (sharp's
 * fixed cost per call, not pixels); the 1000×872 JPEG hubble_deep_field.jpg 14 ms (a full decode
 * of it takes 31 ms: shrink-on-load does its part, but its 4:4:4 star field is costly to entropy-
 * decode); the 512×512 PNG astronaut.png 10 ms (PNG cannot shrink while decoding); a 4032×3024
 * JPEG (astronaut enlarged to a phone photo's size, 1 MB) 17 ms. Decoding dominates: a caller
 * that already holds the pixels should use pixelToneProperties (4 µs for 28×28 RGB, 22 µs for
 * 64×64) rather than decode a second time.
 */
import { loadSharp } from '../core/sharp.js';
import { halfToNumber, PackedBytes } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';

export interface ImageProperties {
  /** Pixels, after EXIF orientation, of the image as encoded (not of the downscaled copy). */
  width: number;
  height: number;
  /** width / height. */
  aspectRatio: number;
  /** Mean luma, 0 (black) to 1 (white). */
  brightness: number;
  /** Standard deviation of luma, 0 (one flat tone) to 0.5 (half black, half white). */
  contrast: number;
  /**
   * Hasler and Süsstrunk's colourfulness (2003) on RGB scaled to 0–1, so their scale divided by
   * 255 (their "moderately colourful" 33 is 0.13 here); exactly 0 for any gray image.
   */
  colourfulness: number;
  /** Share of pixels whose luma is within 2 % of black: large for dark backgrounds (Fashion-MNIST's is about half the image). */
  darkShare: number;
  /** Share of pixels whose luma is within 2 % of white: what an inverted Fashion-MNIST image has instead of darkShare. */
  brightShare: number;
}

export interface ImagePropertyOptions {
  /** Images with more pixels are refused before decoding (libvips' own default is 268 million). */
  maxPixels?: number;
  /** Transparent pixels are measured as this colour, as the preprocessor's fill flattens them; black unless given. */
  background?: { r: number; g: number; b: number };
}

/** The long side of the copy the tone properties are measured on. */
const SAMPLE_SIDE = 64;
const NEAR_BLACK = 0.02;
const NEAR_WHITE = 0.98;
/** Formats the preprocessor accepts from clients; libvips would also render SVG and PDF, which we do not want to parse. */
const MEASURED_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']);

/**
 * The properties of one encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF). Luma is BT.601's
 * 0.299 R + 0.587 G + 0.114 B on the encoded (gamma) values, as JPEG defines it; a gray image's
 * luma is its gray value.
 */
export async function imageProperties(image: Uint8Array, options: ImagePropertyOptions = {}): Promise<ImageProperties> {
  if (image.length === 0) throw new Error('the image is empty (0 bytes)');
  const sharp = await loadSharp();
  const input = sharp(image, { limitInputPixels: options.maxPixels ?? true, autoOrient: true });
  const metadata = await input.metadata();
  if (!MEASURED_FORMATS.has(metadata.format)) {
    throw new Error(`the image is ${metadata.format}; properties are measured for JPEG, PNG, WebP, GIF, TIFF and AVIF`);
  }
  const { width, height } = metadata.autoOrient;
  const { data, info } = await input
    .resize(SAMPLE_SIDE, SAMPLE_SIDE, { fit: 'inside', withoutEnlargement: true })
    .flatten({ background: options.background ?? { r: 0, g: 0, b: 0 } })
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width, height, aspectRatio: width / height, ...pixelToneProperties(data, info.channels) };
}

export type ToneProperties = Omit<ImageProperties, 'width' | 'height' | 'aspectRatio'>;

/**
 * Tone properties of 8-bit interleaved pixels with `channels` bands (1: gray; 2: gray and alpha;
 * 3 or more: RGB first, alpha ignored), for a caller that has already decoded the image and should
 * not pay for a second decode.
 */
export function pixelToneProperties(pixels: Uint8Array, channels: number): ToneProperties {
  if (!Number.isInteger(channels) || channels < 1 || pixels.length === 0 || pixels.length % channels !== 0) {
    throw new Error(`${pixels.length} bytes are not whole pixels of ${channels} channel(s)`);
  }
  const count = pixels.length / channels;
  let lumaSum = 0;
  let lumaSquares = 0;
  let rgSum = 0;
  let rgSquares = 0;
  let ybSum = 0;
  let ybSquares = 0;
  let dark = 0;
  let bright = 0;
  for (let at = 0; at < pixels.length; at += channels) {
    const r = pixels[at] / 255;
    const g = channels >= 3 ? pixels[at + 1] / 255 : r;
    const b = channels >= 3 ? pixels[at + 2] / 255 : r;
    const luma = channels >= 3 ? 0.299 * r + 0.587 * g + 0.114 * b : r;
    const rg = r - g;
    const yb = (r + g) / 2 - b;
    lumaSum += luma;
    lumaSquares += luma * luma;
    rgSum += rg;
    rgSquares += rg * rg;
    ybSum += yb;
    ybSquares += yb * yb;
    if (luma <= NEAR_BLACK) dark++;
    if (luma >= NEAR_WHITE) bright++;
  }
  const mean = (sum: number) => sum / count;
  // Sums of squares can come out a rounding error below the squared mean for a flat image.
  const variance = (sum: number, squares: number) => Math.max(0, squares / count - mean(sum) ** 2);
  const rgVariance = variance(rgSum, rgSquares);
  const ybVariance = variance(ybSum, ybSquares);
  return {
    brightness: mean(lumaSum),
    contrast: Math.sqrt(variance(lumaSum, lumaSquares)),
    colourfulness: Math.sqrt(rgVariance + ybVariance) + 0.3 * Math.hypot(mean(rgSum), mean(ybSum)),
    darkShare: dark / count,
    brightShare: bright / count,
  };
}

/** The properties as reference-profile features: `input.brightness`, `input.aspectRatio`, … */
export function imagePropertyFeatures(properties: ImageProperties): Record<string, number> {
  return Object.fromEntries(Object.entries(properties).map(([name, value]) => [`input.${name}`, value]));
}

/**
 * Which elements of one batch row make a feature.
 *
 * - `element`: every element is its own feature, named `<tensor>[i]` with i its flat index in the
 *   row. The default for [batch] and [batch, features] tensors, whose columns are separate
 *   measurements (tabular inputs) and drift separately.
 * - `channel`: the elements sharing an index along `axis` (of the full shape, batch being axis 0)
 *   pool into one feature, named `<tensor>.channel<c>`. The default for rank 3 and above, along
 *   axis 1 (channels first, the layout ONNX image models take; give axis 3 for NHWC). One pixel
 *   position is a poor feature: a 28×28 image would make 784 features and a 224×224 RGB one 150 528,
 *   mostly background, and a drift test run on each raises false alarms by sheer number, while a
 *   channel's statistics still show the brightness and contrast shifts that matter. Spatial
 *   structure is the representation-based out-of-distribution score's to judge.
 */
export type FeatureGrouping = { by: 'element' } | { by: 'channel'; axis: number };

export interface TensorFeatureSummary {
  feature: string;
  /** Finite values summarised; NaN and ±Infinity are counted in nonFinite instead. */
  count: number;
  nonFinite: number;
  /** Over the finite values; NaN when there are none. */
  mean: number;
  /** Population standard deviation. */
  std: number;
  min: number;
  max: number;
}

/** More features than this is a tensor to group by channel, not by element. */
export const MAX_TENSOR_FEATURES = 4096;

interface FeatureLayout {
  rows: number;
  rowLength: number;
  names: string[];
  /** Feature of the element at `offset` within a row. */
  featureOf: (offset: number) => number;
}

function featureLayout(tensorName: string, shape: readonly number[], grouping?: FeatureGrouping): FeatureLayout {
  if (shape.length === 0) throw new Error(`tensor '${tensorName}' is a scalar; feature summaries need a batch dimension`);
  const [rows, ...rowShape] = shape;
  const rowLength = rowShape.reduce((product, size) => product * size, 1);
  const chosen = grouping ?? (shape.length <= 2 ? { by: 'element' } : { by: 'channel', axis: 1 });
  if (chosen.by === 'element') {
    if (rowLength > MAX_TENSOR_FEATURES) {
      throw new Error(`tensor '${tensorName}' has ${rowLength} elements per row, over ${MAX_TENSOR_FEATURES} features; group them by channel`);
    }
    return { rows, rowLength, names: Array.from({ length: rowLength }, (_, index) => `${tensorName}[${index}]`), featureOf: (offset) => offset };
  }
  const { axis } = chosen;
  if (!Number.isInteger(axis) || axis < 1 || axis >= shape.length) {
    throw new Error(`tensor '${tensorName}' of shape [${shape.join(',')}] has no channel axis ${axis} (axes 1 to ${shape.length - 1}; 0 is the batch)`);
  }
  const channels = shape[axis];
  if (channels > MAX_TENSOR_FEATURES) throw new Error(`tensor '${tensorName}' has ${channels} channels along axis ${axis}, over ${MAX_TENSOR_FEATURES} features`);
  const stride = shape.slice(axis + 1).reduce((product, size) => product * size, 1);
  return {
    rows,
    rowLength,
    names: Array.from({ length: channels }, (_, channel) => `${tensorName}.channel${channel}`),
    featureOf: (offset) => Math.floor(offset / stride) % channels,
  };
}

/** The tensor's elements as numbers: FP16 from its bits, 64-bit integers rounded to the nearest double. */
function numericReader(tensorName: string, tensor: Tensor): (index: number) => number {
  const { data, datatype } = tensor;
  if (datatype === 'BYTES' || Array.isArray(data) || data instanceof PackedBytes) throw new Error(`tensor '${tensorName}' is BYTES; feature summaries need numbers`);
  if (datatype === 'FP16') return (index) => halfToNumber(data[index] as number);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return (index) => Number(data[index]);
  return (index) => data[index] as number;
}

/** Per feature, the mean, standard deviation, minimum and maximum of its values over the whole batch. */
export function tensorFeatureSummaries(tensorName: string, tensor: Tensor, grouping?: FeatureGrouping): TensorFeatureSummary[] {
  const { rows, rowLength, names, featureOf } = featureLayout(tensorName, tensor.shape, grouping);
  const read = numericReader(tensorName, tensor);
  const features = names.length;
  const count = new Float64Array(features);
  const nonFinite = new Float64Array(features);
  const sum = new Float64Array(features);
  const squares = new Float64Array(features);
  const min = new Float64Array(features).fill(Infinity);
  const max = new Float64Array(features).fill(-Infinity);
  for (let row = 0; row < rows; row++) {
    for (let offset = 0; offset < rowLength; offset++) {
      const value = read(row * rowLength + offset);
      const feature = featureOf(offset);
      if (!Number.isFinite(value)) {
        nonFinite[feature]++;
        continue;
      }
      count[feature]++;
      sum[feature] += value;
      squares[feature] += value * value;
      if (value < min[feature]) min[feature] = value;
      if (value > max[feature]) max[feature] = value;
    }
  }
  return names.map((feature, index) => {
    const n = count[index];
    const mean = n > 0 ? sum[index] / n : NaN;
    return {
      feature,
      count: n,
      nonFinite: nonFinite[index],
      mean,
      std: n > 0 ? Math.sqrt(Math.max(0, squares[index] / n - mean * mean)) : NaN,
      min: n > 0 ? min[index] : NaN,
      max: n > 0 ? max[index] : NaN,
    };
  });
}

/**
 * Per feature, one value per batch row: the mean of the row's finite elements in that feature (the
 * element itself when grouped by element; NaN when the row has none). These are the values a drift
 * window collects and a reference profile summarises.
 */
export function tensorFeatureValues(tensorName: string, tensor: Tensor, grouping?: FeatureGrouping): { feature: string; values: Float64Array }[] {
  const { rows, rowLength, names, featureOf } = featureLayout(tensorName, tensor.shape, grouping);
  const read = numericReader(tensorName, tensor);
  const values = names.map(() => new Float64Array(rows));
  const counts = new Float64Array(names.length);
  for (let row = 0; row < rows; row++) {
    counts.fill(0);
    for (let offset = 0; offset < rowLength; offset++) {
      const value = read(row * rowLength + offset);
      if (!Number.isFinite(value)) continue;
      const feature = featureOf(offset);
      values[feature][row] += value;
      counts[feature]++;
    }
    for (let feature = 0; feature < names.length; feature++) values[feature][row] = counts[feature] > 0 ? values[feature][row] / counts[feature] : NaN;
  }
  return names.map((feature, index) => ({ feature, values: values[index] }));
}
