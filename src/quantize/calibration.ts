/**
 * Calibration: the fp32 model run in ONNX Runtime over sample inputs with the tensors to be
 * quantized exposed as extra outputs, so that each one's observed range can set its uint8 scale.
 * Two ways to turn what was seen into a range: min-max (every value fits, an outlier stretches the
 * range) and a percentile of a bounded sample of the values (the rarest extremes are clipped so the
 * common values keep their levels).
 */
import * as ort from 'onnxruntime-node';
import { exposingTensors, type OnnxModel } from '../onnx/onnx-model-file.js';
import { percentileRange } from './int8-arithmetic.js';


export type RangeMethod = { kind: 'minmax' } | { kind: 'percentile'; percentile: number };

export interface CalibrationOptions {
  method: RangeMethod;
  /** Values kept per tensor for a percentile (a uniform sample of everything seen); default 200,000. */
  sampleSize?: number;
}

/** Keeps a uniform sample of a stream of values (reservoir sampling), with a fixed seed so runs repeat. */
class ValueSample {
  readonly values: Float32Array;
  private seen = 0;
  private state = 0x2545f491;

  constructor(capacity: number) {
    this.values = new Float32Array(capacity);
  }

  add(data: Float32Array): void {
    for (const value of data) {
      if (this.seen < this.values.length) this.values[this.seen] = value;
      else {
        this.state = (Math.imul(this.state, 1664525) + 1013904223) >>> 0;
        const slot = this.state % (this.seen + 1);
        if (slot < this.values.length) this.values[slot] = value;
      }
      this.seen += 1;
    }
  }

  get kept(): Float32Array {
    return this.values.subarray(0, Math.min(this.seen, this.values.length));
  }
}

/** Observed ranges of `names` over the feeds, by the method asked for. */
export async function calibrateRanges(
  model: OnnxModel,
  names: readonly string[],
  feeds: Iterable<Record<string, ort.Tensor>> | AsyncIterable<Record<string, ort.Tensor>>,
  options: CalibrationOptions,
): Promise<Map<string, { min: number; max: number }>> {
  const session = await ort.InferenceSession.create(exposingTensors(model, names), { logSeverityLevel: 3 });
  const minmax = new Map(names.map((name) => [name, { min: Infinity, max: -Infinity }]));
  const samples = options.method.kind === 'percentile' ? new Map(names.map((name) => [name, new ValueSample(options.sampleSize ?? 200_000)])) : undefined;
  let runs = 0;
  try {
    for await (const feed of feeds) {
      const results = await session.run(feed, [...names]);
      for (const name of names) {
        const data = results[name].data as Float32Array;
        const range = minmax.get(name)!;
        for (const value of data) {
          if (value < range.min) range.min = value;
          if (value > range.max) range.max = value;
        }
        samples?.get(name)!.add(data);
      }
      runs += 1;
    }
  } finally {
    await session.release();
  }
  if (runs === 0) throw new Error('calibration had no inputs to run');
  const method = options.method;
  if (method.kind === 'minmax') return minmax;
  return new Map(names.map((name) => [name, percentileRange(samples!.get(name)!.kept, method.percentile)]));
}
