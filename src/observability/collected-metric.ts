/**
 * The hot path's side of the metrics: plain numbers and fixed bucket arrays that a request updates
 * in a few nanoseconds without allocating, read into prom-client's exposition only when scraped.
 *
 * prom-client's own `histogram.labels(...).observe(v)` allocates, validates and hashes the label set
 * on every call (about 400 ns here, against about 10 ns for `BucketCounts.observe`); so the series
 * live in these accumulators, one per model version, and `CollectedMetric` hands them to the
 * prom-client registry, which formats them with everything else it collects (process metrics).
 */
import type { Metric } from 'prom-client';

/** The exposition's type names (prom-client's typings declare them as a numeric enum; its runtime writes these). */
export type MetricKind = 'counter' | 'gauge' | 'histogram';

/** A histogram's state without labels: per-bucket counts (not cumulative), sum and count. */
export class BucketCounts {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let index = 0;
    while (index < bounds.length && value > bounds[index]) index += 1;
    if (index < bounds.length) this.counts[index] += 1;
    this.sum += value;
    this.count += 1;
  }
}

export type Labels = Record<string, string | number>;

/** One line of the exposition, in prom-client's shape. */
export interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}

/** The samples of a histogram's series: cumulative `_bucket` lines, `+Inf`, `_sum` and `_count`. */
export function histogramSamples(name: string, labels: Labels, histogram: BucketCounts, out: Sample[]): void {
  let cumulative = 0;
  histogram.bounds.forEach((bound, index) => {
    cumulative += histogram.counts[index];
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bound }, value: cumulative });
  });
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: histogram.count });
  out.push({ metricName: `${name}_sum`, labels, value: histogram.sum });
  out.push({ metricName: `${name}_count`, labels, value: histogram.count });
}

/**
 * A metric whose samples are read from accumulators at scrape time. It implements what
 * prom-client's Registry calls on a metric (`get`, `reset`, name/help/type/aggregator), so it is
 * registered beside prom-client's own metrics and formatted by the same code.
 */
export class CollectedMetric {
  readonly aggregator = 'sum' as const;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricKind,
    private readonly read: () => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: MetricKind; values: Sample[]; aggregator: 'sum' }> {
    return { name: this.name, help: this.help, type: this.type, values: this.read(), aggregator: this.aggregator };
  }

  /** Registry.resetMetrics(): the accumulators belong to their owner, which resets them if it wants. */
  reset(): void {}

  /** The registry's parameter type names prom-client's classes; it only calls what this class has. */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}
