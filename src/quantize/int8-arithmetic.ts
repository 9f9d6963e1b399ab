/**
 * The arithmetic of int8 quantization as ONNX's QuantizeLinear and DequantizeLinear define it, so
 * that what the quantizer writes is what ONNX Runtime computes: q = saturate(round(x / scale) +
 * zero_point), rounding half to even; x' = (q - zero_point) × scale. Weights are int8, symmetric
 * (zero point 0), one scale per output channel (per-tensor scales collapsed the OCR recogniser);
 * activations are uint8 with a zero point, from a range calibration observed.
 */

/** Round half to even, as ONNX's QuantizeLinear rounds. */
export function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

export interface PerChannelInt8 {
  values: Int8Array;
  /** One per channel along the axis; never 0 (ONNX Runtime refuses a zero scale). */
  scales: Float32Array;
}

/** The channel along `axis` that each element of a row-major tensor of these dims lies in. */
export function channelAlong(dims: readonly number[], axis: number): (index: number) => number {
  if (axis < 0 || axis >= dims.length) throw new Error(`axis ${axis} is outside a tensor of rank ${dims.length}`);
  const channels = dims[axis];
  const inner = dims.slice(axis + 1).reduce((product, dim) => product * dim, 1);
  return (index) => Math.floor(index / inner) % channels;
}

/**
 * Symmetric int8 per channel along `axis` (0 for Conv weights [out, in, kh, kw], 1 for MatMul's
 * [in, out]): each channel's scale maps its largest magnitude to 127, so -128 is never used and
 * the integer kernels need no saturation correction.
 */
export function quantizePerChannelSymmetric(weights: Float32Array, dims: readonly number[], axis: number, minScales?: ArrayLike<number>): PerChannelInt8 {
  const channels = dims[axis];
  const channelOf = channelAlong(dims, axis);
  const largest = new Float32Array(channels);
  for (let index = 0; index < weights.length; index++) {
    const channel = channelOf(index);
    largest[channel] = Math.max(largest[channel], Math.abs(weights[index]));
  }
  const scales = largest.map((max, channel) => Math.max(max > 0 ? max / 127 : 1, minScales?.[channel] ?? 0));
  const values = new Int8Array(weights.length);
  for (let index = 0; index < weights.length; index++) {
    values[index] = Math.max(-127, Math.min(127, roundHalfToEven(weights[index] / scales[channelOf(index)])));
  }
  return { values, scales };
}

export interface Uint8Params {
  scale: number;
  zeroPoint: number;
}

/**
 * uint8 parameters for an activation observed in [min, max]: the range is widened to hold 0 (so
 * that zero padding and ReLU's zeros are exact), and a scale of 0 (a constant 0) becomes 1.
 */
export function uint8Params(min: number, max: number): Uint8Params {
  const low = Math.min(min, 0);
  const high = Math.max(max, 0);
  const scale = high > low ? Math.fround((high - low) / 255) : 1;
  return { scale, zeroPoint: Math.max(0, Math.min(255, roundHalfToEven(-low / scale))) };
}

/** QuantizeLinear to uint8, element by element. */
export function quantizeUint8(values: Float32Array, { scale, zeroPoint }: Uint8Params): Uint8Array {
  return Uint8Array.from(values, (value) => Math.max(0, Math.min(255, roundHalfToEven(value / scale) + zeroPoint)));
}

/** DequantizeLinear from uint8. */
export function dequantizeUint8(values: Uint8Array, { scale, zeroPoint }: Uint8Params): Float32Array {
  return Float32Array.from(values, (value) => (value - zeroPoint) * scale);
}

/**
 * The range that keeps `percentile` of the observed values (e.g. 99.99), dropping the rarest
 * extremes on each side: a min-max range stretched by one outlier leaves the common values few
 * levels (min-max cost the recogniser 83–86 % identical lines; percentile ranges 89–93 %).
 */
export function percentileRange(values: Float32Array, percentile: number): { min: number; max: number } {
  if (!(percentile > 50 && percentile <= 100)) throw new Error(`a percentile range keeps more than half the values: got ${percentile}`);
  if (values.length === 0) return { min: 0, max: 0 };
  const sorted = Float32Array.from(values).sort();
  const tail = ((100 - percentile) / 100) * (sorted.length - 1);
  const at = (position: number) => {
    const below = Math.floor(position);
    const above = Math.min(sorted.length - 1, below + 1);
    return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
  };
  return { min: at(tail), max: at(sorted.length - 1 - tail) };
}
