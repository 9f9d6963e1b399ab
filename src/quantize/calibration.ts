/**
 * Calibration: the fp32 model run in ONNX Runtime over sample inputs with the tensors to be
 * quantized exposed as extra outputs, so that each one's observed range can set its uint8 scale.
 * Two ways to turn what was seen into a range: min-max (every value fits, an outlier stretches the
 * range) and a percentile of a bounded sample of the values (the rarest extremes are clipped so the
 * common values keep their levels). The same pass can average chosen tensors per channel: what a
 * quantized node's input carries on average, from which the shift its int8 weights cause is known.
 */
import * as ort from 'onnxruntime-node';
import { exposingTensors, type OnnxModel } from '../onnx/onnx-model-file.js';
import { channelAlong, percentileRange } from './int8-arithmetic.js';


export type RangeMethod = { kind: 'minmax' } | { kind: 'percentile'; percentile: number };

export interface CalibrationOptions {
  method: RangeMethod;
  /** Values kept per tensor for a percentile (a uniform sample of everything seen); default 200,000. */
  sampleSize?: number;
  /** Tensors to average per channel, each with its channel axis. */
  channelAxes?: ReadonlyMap<string, number>;
  /** Told after each example with how many are done: a large model's pass takes minutes. */
  onExample?: (done: number) => void;
}

export interface Calibration {
  ranges: Map<string, { min: number; max: number }>;
  /** Per `channelAxes`: each channel's mean over every value seen. */
  channelMeans: Map<string, Float64Array>;
}

/** Running per-channel sums of a tensor's values along one axis. */
class ChannelMean {
  private sums?: Float64Array;
  private valuesPerChannel = 0;

  constructor(private readonly axis: number) {}

  add(data: Float32Array, dims: readonly number[]): void {
    const channelOf = channelAlong(dims, this.axis);
    const channels = dims[this.axis];
    this.sums ??= new Float64Array(channels);
    if (this.sums.length !== channels) throw new Error(`${channels} channels where earlier runs had ${this.sums.length}`);
    for (let index = 0; index < data.length; index++) this.sums[channelOf(index)] += data[index];
    this.valuesPerChannel += data.length / channels;
  }

  get means(): Float64Array {
    return (this.sums ?? new Float64Array(0)).map((sum) => sum / this.valuesPerChannel);
  }
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

type Feeds = Iterable<Record<string, ort.Tensor>> | AsyncIterable<Record<string, ort.Tensor>>;

/** Observed ranges of `names` over the feeds, by the method asked for. */
export async function calibrateRanges(model: OnnxModel, names: readonly string[], feeds: Feeds, options: CalibrationOptions): Promise<Map<string, { min: number; max: number }>> {
  return (await calibrate(model, names, feeds, options)).ranges;
}

/** Observed ranges of `names` and channel means of `options.channelAxes`' tensors over the feeds, in one pass. */
export async function calibrate(model: OnnxModel, names: readonly string[], feeds: Feeds, options: CalibrationOptions): Promise<Calibration> {
  const averaged = new Map([...(options.channelAxes ?? [])].map(([name, axis]) => [name, new ChannelMean(axis)]));
  const fetched = [...new Set([...names, ...averaged.keys()])];
  const session = await ort.InferenceSession.create(exposingTensors(model, fetched), { logSeverityLevel: 3 });
  const minmax = new Map(names.map((name) => [name, { min: Infinity, max: -Infinity }]));
  const samples = options.method.kind === 'percentile' ? new Map(names.map((name) => [name, new ValueSample(options.sampleSize ?? 200_000)])) : undefined;
  let runs = 0;
  try {
    for await (const feed of feeds) {
      const results = await session.run(feed, fetched);
      for (const [name, mean] of averaged) mean.add(results[name].data as Float32Array, results[name].dims);
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
      options.onExample?.(runs);
    }
  } finally {
    await session.release();
  }
  if (runs === 0) throw new Error('calibration had no inputs to run');
  const method = options.method;
  const channelMeans = new Map([...averaged].map(([name, mean]) => [name, mean.means]));
  if (method.kind === 'minmax') return { ranges: minmax, channelMeans };
  return { ranges: new Map(names.map((name) => [name, percentileRange(samples!.get(name)!.kept, method.percentile)])), channelMeans };
}
