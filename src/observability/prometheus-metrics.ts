/**
 * Prometheus metrics per model and version. Counters and gauges are read at scrape time from each
 * loaded version's statistics (the one aggregator, so nothing is counted twice); this module keeps
 * only the histograms, which an observer fills per request and execution (bucket arrays, no
 * allocation). A scrape costs work proportional to the number of model versions, never to the
 * traffic. prom-client's registry formats them with its process metrics.
 */
import { cpus, freemem, totalmem } from 'node:os';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import { isRefusal, type ErrorCode } from '../core/errors.js';
import { refuseUnknownOptions } from '../core/options.js';
import type { ExecutionRecord, InferenceObserver, InferenceObserverFactory, RequestRecord } from '../core/inference-observer.js';
import type { ModelStatistics } from './model-statistics.js';
import { BucketCounts, CollectedMetric, histogramSamples, type MetricKind, type Sample } from './collected-metric.js';
import { usdOf } from './cost.js';
import type { VersionMonitor } from '../monitoring/version-monitor.js';
import { psiBeyondChance } from '../monitoring/drift-report.js';

/** Failure reasons exported at 0 before they occur: the client's mistakes, refusals under load, timeouts, cancellations, faults. */
const EXPECTED_FAILURE_REASONS: readonly ErrorCode[] = ['INVALID_ARGUMENT', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'CANCELLED', 'INTERNAL'];

const DRIFT_STATES = ['insufficient_data', 'ok', 'warning', 'drift'] as const;

/** Seconds, from 100 µs (a tiny model) to 30 s (a large one under load). */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Rows per executed batch. */
export const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export interface PrometheusMetricsOptions {
  /** Price of one core-hour in dollars (--cost-per-core-hour): adds the cost counters and gauges. */
  usdPerCoreHour?: number;
  /** prom-client's default metrics: process CPU and memory, event loop lag, GC, heap (default true). */
  processMetrics?: boolean;
  durationBuckets?: readonly number[];
  batchSizeBuckets?: readonly number[];
  /**
   * Also export the per-model counters under Triton's own names (`nv_inference_request_success`, …,
   * durations in microseconds), so dashboards and alerts written for Triton find them (--metrics-compat triton).
   */
  tritonNames?: boolean;
}

const PROMETHEUS_METRICS_OPTIONS: Record<keyof PrometheusMetricsOptions, true> = {
  usdPerCoreHour: true,
  processMetrics: true,
  durationBuckets: true,
  batchSizeBuckets: true,
  tritonNames: true,
};

/** What a scrape reads from each loaded version (ModelVersion has it): its statistics are the counters. */
export interface ObservedVersion {
  readonly name: string;
  readonly version: string;
  readonly statistics: Pick<
    ModelStatistics,
    | 'loadNs'
    | 'inFlight'
    | 'failures'
    | 'unsent'
    | 'success'
    | 'queue'
    | 'computeInput'
    | 'computeInfer'
    | 'computeOutput'
    | 'inferenceCount'
    | 'cachedRows'
    | 'executionCount'
    | 'cacheHit'
    | 'cacheMiss'
    | 'computeSeconds'
    | 'oodChecked'
    | 'oodFlagged'
  >;
  /** Requests waiting in the version's scheduler queue, where the version exposes it. */
  readonly queued?: number | undefined;
  /** Size of the model file the version was loaded from, where the version knows it. */
  readonly modelFileBytes?: number | undefined;
  /** What the version's quantization record says, when it is a quantized one. */
  readonly quantization?: { readonly method: string; readonly precision: string; readonly sourceVersion: string } | undefined;
  /** The version's drift and accuracy windows, when it has a reference profile. */
  readonly monitor?: Pick<VersionMonitor, 'latest' | 'driftState' | 'confidence' | 'classNames' | 'predictedTotals' | 'accuracySummary' | 'expectedOodShare'> | undefined;
}

/** The server's repository, as far as the metrics read it. */
export interface ObservedServer {
  readonly repository: { loadedVersions(): readonly ObservedVersion[]; loadFailures?(): readonly { model: string; version?: string }[] };
  /** The response cache store, when the server has one. */
  readonly responseCache?: Pick<ResponseCacheStore, 'kind' | 'healthy' | 'counters' | 'usage'> | undefined;
  /** Shadow comparisons (a model's traffic.shadow), per model and primary/shadow version. */
  shadowComparisons?(): readonly ObservedShadow[];
  /** Models whose residency the server manages (on-demand loads, the memory budget). */
  residencySummary?(): ObservedResidency;
  /** What gives memory back when the server goes idle after a burst (none when switched off). */
  readonly memoryReclaimer?: { readonly collected: number; readonly trimmed: number; readonly returnedBytes: number };
}

/** What a scrape reads of the models' residency: the memory budget and, per model, its charge, loads and evictions. */
export interface ObservedResidency {
  budget_bytes?: number;
  used_bytes: number;
  models: readonly { model: string; resident: boolean; charged_bytes?: number; loads: number; evictions: number }[];
}

/** What a scrape reads of one shadow: the figures /v2/models/{m}/compare reports. */
export interface ObservedShadow {
  model: string;
  primary_version: string;
  shadow_version: string;
  compared: number;
  skipped: number;
  failed: number;
  top1_agreement?: number;
  mean_abs_delta?: number;
}

/** The histograms a version keeps: durations in seconds, batch sizes in rows. */
export type HistogramName = 'request' | 'queue' | 'preprocess' | 'compute_infer' | 'postprocess' | 'batch_size';

/** A histogram read at one moment: `cumulative[i]` observations were ≤ `le[i]`, `count` in all (the +Inf bucket). */
export interface HistogramSnapshot {
  le: readonly number[];
  cumulative: number[];
  count: number;
  sum: number;
}

export function snapshotOf(histogram: BucketCounts): HistogramSnapshot {
  let running = 0;
  const cumulative = Array.from(histogram.counts, (count) => (running += count));
  return { le: histogram.bounds, cumulative, count: histogram.count, sum: histogram.sum };
}

/** The histograms of one model version; shared by the observers of its successive loads. */
class VersionHistograms {
  readonly request: BucketCounts;
  readonly queue: BucketCounts;
  readonly preprocess: BucketCounts;
  readonly computeInfer: BucketCounts;
  readonly postprocess: BucketCounts;
  readonly batchSize: BucketCounts;

  constructor(
    readonly labels: { model: string; version: string },
    durationBuckets: readonly number[],
    batchSizeBuckets: readonly number[],
  ) {
    this.request = new BucketCounts(durationBuckets);
    this.queue = new BucketCounts(durationBuckets);
    this.preprocess = new BucketCounts(durationBuckets);
    this.computeInfer = new BucketCounts(durationBuckets);
    this.postprocess = new BucketCounts(durationBuckets);
    this.batchSize = new BucketCounts(batchSizeBuckets);
  }
}

/** One model version's observer: a few bucket increments per request, bound to its histograms once. */
class MetricsObserver implements InferenceObserver {
  constructor(private readonly histograms: VersionHistograms) {}

  onRequestEnd(record: RequestRecord): void {
    if (!record.success) return;
    const histograms = this.histograms;
    histograms.request.observe(record.totalNs / 1e9);
    const timings = record.timings;
    // A cache hit skipped the model: it has no queue or compute time to report (as in Triton).
    if (!timings || record.cache?.hit) return;
    histograms.queue.observe(timings.queueNs / 1e9);
    histograms.computeInfer.observe(timings.computeInferNs / 1e9);
    if (timings.preprocessNs !== undefined) histograms.preprocess.observe(timings.preprocessNs / 1e9);
    if (timings.postprocessNs !== undefined) histograms.postprocess.observe(timings.postprocessNs / 1e9);
  }

  onExecution(record: ExecutionRecord): void {
    if (!record.answeredNone) this.histograms.batchSize.observe(record.batchSize);
  }
}

/** The machine's CPU time, idle and in all, summed over its cores (milliseconds). */
function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const { times } of cpus()) {
    idle += times.idle;
    total += times.user + times.nice + times.sys + times.idle + times.irq;
  }
  return { idle, total };
}

/** The reasons Triton's nv_inference_request_failure is labelled with. */
const TRITON_FAILURE_REASONS = ['REJECTED', 'CANCELED', 'BACKEND', 'OTHER'] as const;
type TritonFailureReason = (typeof TRITON_FAILURE_REASONS)[number];

/**
 * Triton's reason for a failure with this code: REJECTED for a refusal under load (queue full, overload, the
 * request's timeout run out in the queue), CANCELED, BACKEND for a failure inside the model, OTHER for the rest
 * (invalid input among them).
 */
export function tritonFailureReason(code: ErrorCode): TritonFailureReason {
  if (isRefusal(code)) return 'REJECTED';
  if (code === 'CANCELLED') return 'CANCELED';
  return code === 'INTERNAL' ? 'BACKEND' : 'OTHER';
}

export class PrometheusMetrics {
  /** This instance's own registry (no global state: several servers may run side by side). */
  readonly registry = new Registry();
  readonly usdPerCoreHour?: number;
  private readonly histograms = new Map<string, VersionHistograms>();
  private readonly durationBuckets: readonly number[];
  private readonly batchSizeBuckets: readonly number[];
  private server?: ObservedServer;

  /** Pass to ServerOptions.observers. */
  readonly observer: InferenceObserverFactory = (model, version) => new MetricsObserver(this.histogramsOf(model, version));

  constructor(options: PrometheusMetricsOptions = {}) {
    refuseUnknownOptions('PrometheusMetrics', options, Object.keys(PROMETHEUS_METRICS_OPTIONS));
    this.usdPerCoreHour = options.usdPerCoreHour;
    this.durationBuckets = options.durationBuckets ?? DURATION_BUCKETS_SECONDS;
    this.batchSizeBuckets = options.batchSizeBuckets ?? BATCH_SIZE_BUCKETS;
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.registerModelMetrics();
    this.registerMonitorMetrics();
    this.registerShadowMetrics();
    this.registerResidencyMetrics();
    this.registerReclaimerMetrics();
    // A model or version whose last load failed has no other series (no requests, no statistics): this one alerts on it.
    this.register('nereid_model_load_failed', 'Models (version "") and versions whose last load or reload failed: 1 until a load succeeds (a version that failed to reload keeps serving its previous copy)', 'gauge', () =>
      (this.server?.repository.loadFailures?.() ?? []).map(({ model, version }) => ({ labels: { model, version: version ?? '' }, value: 1 })),
    );
    if (options.tritonNames) this.registerTritonNamedMetrics();
    this.registerCacheMetrics();
  }

  /** Reads the server's loaded versions at scrape time: queue depth and load time. */
  attach(server: ObservedServer): this {
    this.server = server;
    return this;
  }

  /** The exposition text (Prometheus format 0.0.4). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * One version's histograms as the exposition has them (cumulative counts per upper bound), for
   * readers that want percentiles without scraping: the dashboard takes successive ones apart.
   */
  histogramSnapshot(model: string, version: string): Record<HistogramName, HistogramSnapshot> | undefined {
    const histograms = this.histograms.get(`${model}\u0000${version}`);
    if (!histograms) return undefined;
    return {
      request: snapshotOf(histograms.request),
      queue: snapshotOf(histograms.queue),
      preprocess: snapshotOf(histograms.preprocess),
      compute_infer: snapshotOf(histograms.computeInfer),
      postprocess: snapshotOf(histograms.postprocess),
      batch_size: snapshotOf(histograms.batchSize),
    };
  }

  private histogramsOf(model: string, version: string): VersionHistograms {
    const key = `${model}\u0000${version}`;
    let histograms = this.histograms.get(key);
    if (!histograms) {
      histograms = new VersionHistograms({ model, version }, this.durationBuckets, this.batchSizeBuckets);
      this.histograms.set(key, histograms);
    }
    return histograms;
  }

  private register(name: string, help: string, type: MetricKind, read: () => Sample[]): void {
    this.registry.registerMetric(new CollectedMetric(name, help, type, read).asMetric());
  }

  private histogram(name: string, help: string, pick: (histograms: VersionHistograms) => BucketCounts): void {
    this.register(name, help, 'histogram', () => {
      const samples: Sample[] = [];
      // As the counters: only versions loaded now (a version loaded again continues its histograms where they were).
      const loaded = this.server && new Set(this.server.repository.loadedVersions().map((version) => `${version.name}\u0000${version.version}`));
      for (const [key, histograms] of this.histograms) if (!loaded || loaded.has(key)) histogramSamples(name, histograms.labels, pick(histograms), samples);
      return samples;
    });
  }

  /** A metric read from the server's loaded versions (their statistics); versions that do not expose the value are left out. */
  private perVersion(name: string, help: string, type: MetricKind, value: (version: ObservedVersion) => number | undefined): void {
    this.register(name, help, type, () => {
      const samples: Sample[] = [];
      for (const version of this.server?.repository.loadedVersions() ?? []) {
        const measured = value(version);
        if (measured !== undefined) samples.push({ labels: { model: version.name, version: version.version }, value: measured });
      }
      return samples;
    });
  }

  /** Drift, prediction and accuracy figures of monitored versions (those with a reference profile), read from their monitors at scrape time. */
  private registerMonitorMetrics(): void {
    const monitored = (read: (labels: { model: string; version: string }, monitor: NonNullable<ObservedVersion['monitor']>, samples: Sample[]) => void) => () => {
      const samples: Sample[] = [];
      for (const version of this.server?.repository.loadedVersions() ?? []) {
        if (version.monitor) read({ model: version.name, version: version.version }, version.monitor, samples);
      }
      return samples;
    };
    this.register(
      'nereid_drift_score',
      "Population stability index of each monitored feature's recent window against the reference profile, beyond what chance gives a window of its size (at the last evaluation)",
      'gauge',
      monitored((labels, monitor, samples) => {
        for (const feature of monitor.latest?.features ?? []) samples.push({ labels: { ...labels, feature: feature.feature }, value: psiBeyondChance(feature) });
      }),
    );
    // The scores are as old as the last evaluation, which comes every --monitor-evaluate-every rows: at little traffic, hours.
    this.register(
      'nereid_drift_evaluated_timestamp_seconds',
      'When nereid_drift_score was evaluated (Unix time): the scores are as old as that',
      'gauge',
      monitored((labels, monitor, samples) => {
        const at = monitor.latest?.at;
        if (at !== undefined) samples.push({ labels, value: at / 1000 });
      }),
    );
    this.register(
      'nereid_drift_state',
      'Drift state of the version: 1 for the state it is in (insufficient_data, ok, warning, drift), 0 for the others',
      'gauge',
      monitored((labels, monitor, samples) => {
        for (const state of DRIFT_STATES) samples.push({ labels: { ...labels, state }, value: monitor.driftState === state ? 1 : 0 });
      }),
    );
    // What an alert on nereid_ood_total / nereid_ood_checked_total compares with: the share the detector flags on
    // in-distribution data (measured on held-out profiling examples), which differs from model to model and profile to profile.
    this.register(
      'nereid_ood_expected_ratio',
      "Share of in-distribution rows the version's out-of-distribution detector flags (its reference profile's held-out false-positive rate): the baseline for nereid_ood_total / nereid_ood_checked_total",
      'gauge',
      monitored((labels, monitor, samples) => {
        // 0 for a profile without a detector, whose versions have no OOD series either.
        if (monitor.expectedOodShare > 0) samples.push({ labels, value: monitor.expectedOodShare });
      }),
    );
    this.register(
      'nereid_prediction_confidence',
      'Top-1 probability of computed predictions of monitored versions',
      'histogram',
      monitored((labels, monitor, samples) => histogramSamples('nereid_prediction_confidence', labels, monitor.confidence, samples)),
    );
    this.register(
      'nereid_predicted_class_total',
      'Computed predictions of monitored versions, by predicted class',
      'counter',
      monitored((labels, monitor, samples) => {
        monitor.classNames.forEach((name, index) => samples.push({ labels: { ...labels, class: name }, value: monitor.predictedTotals[index] }));
      }),
    );
    const accuracy = (name: string, help: string, pick: (summary: ReturnType<VersionMonitor['accuracySummary']>) => number | undefined) =>
      this.register(
        name,
        help,
        'gauge',
        monitored((labels, monitor, samples) => {
          const value = pick(monitor.accuracySummary());
          if (value !== undefined) samples.push({ labels, value });
        }),
      );
    accuracy('nereid_expected_accuracy', "Accuracy expected over the recent window from calibrated confidence (the reference profile's calibration)", (summary) => summary?.expectedAccuracy);
    accuracy('nereid_realised_accuracy', 'Accuracy over the recent window on predictions whose true labels were fed back', (summary) => summary?.realisedAccuracy);
    // The estimate over the labelled rows alone and their count: labels come back for some rows only (often the easy
    // ones), so the realised accuracy is compared with the estimate over the same rows, and weighed by how many.
    accuracy('nereid_expected_accuracy_on_labelled', 'Accuracy expected from calibrated confidence over the same labelled rows as nereid_realised_accuracy', (summary) => summary?.expectedAccuracyOnLabelled);
    accuracy('nereid_labelled_rows', 'Predictions of the recent window whose true labels were fed back (the rows nereid_realised_accuracy is measured on)', (summary) => summary?.labelled);
  }

  /** A shadow version's copies and how its answers differ from the primary's, per model and version pair. */
  private registerShadowMetrics(): void {
    const shadowMetric = (name: string, help: string, type: MetricKind, value: (shadow: ObservedShadow) => number | undefined) =>
      this.register(name, help, type, () =>
        (this.server?.shadowComparisons?.() ?? []).flatMap((shadow) => {
          const measured = value(shadow);
          return measured === undefined ? [] : [{ labels: { model: shadow.model, primary_version: shadow.primary_version, shadow_version: shadow.shadow_version }, value: measured }];
        }),
      );
    shadowMetric('nereid_shadow_compared_total', "Requests copied to a model's shadow version and compared with the primary's answer", 'counter', (s) => s.compared);
    shadowMetric('nereid_shadow_skipped_total', 'Requests not copied to the shadow because it had max_in_flight copies running', 'counter', (s) => s.skipped);
    shadowMetric('nereid_shadow_failed_total', 'Copies the shadow version failed (clients never see these)', 'counter', (s) => s.failed);
    shadowMetric('nereid_shadow_top1_agreement', 'Share of compared rows whose top-1 class the shadow and the primary agree on', 'gauge', (s) => s.top1_agreement);
    shadowMetric('nereid_shadow_mean_abs_delta', "Mean absolute difference between the shadow's and the primary's output values", 'gauge', (s) => s.mean_abs_delta);
  }

  /**
   * The counters Triton exports, under its names and units (counters without `_total`, durations in
   * cumulative microseconds), read from the same statistics as the nereid_ metrics: never a second count.
   */
  private registerTritonNamedMetrics(): void {
    const counter = (name: string, help: string, value: (statistics: ObservedVersion['statistics']) => number) =>
      this.perVersion(name, help, 'counter', (version) => value(version.statistics));
    const microseconds = (ns: number) => Math.round(ns / 1e3);
    counter('nv_inference_request_success', 'Number of successful inference requests, all batch sizes', (s) => s.success.count);
    // Triton counts failures by reason, each of the four from zero.
    this.register('nv_inference_request_failure', 'Number of failed inference requests, all batch sizes', 'counter', () =>
      (this.server?.repository.loadedVersions() ?? []).flatMap((version) => {
        const counts = new Map<TritonFailureReason, number>(TRITON_FAILURE_REASONS.map((reason) => [reason, 0]));
        for (const [code, count] of version.statistics.failures) {
          // An answer that could not be sent is neither a refusal nor the backend's failure.
          const unsent = version.statistics.unsent.get(code) ?? 0;
          const reason = tritonFailureReason(code);
          counts.set(reason, counts.get(reason)! + count - unsent);
          counts.set('OTHER', counts.get('OTHER')! + unsent);
        }
        return [...counts].map(([reason, count]) => ({ labels: { model: version.name, version: version.version, reason }, value: count }));
      }),
    );
    counter('nv_inference_count', 'Number of inferences performed (does not include cached requests)', (s) => s.inferenceCount);
    counter('nv_inference_exec_count', 'Number of model executions performed (does not include cached requests)', (s) => s.executionCount);
    counter('nv_inference_request_duration_us', 'Cumulative inference request duration in microseconds (includes cached requests)', (s) => microseconds(s.success.ns));
    counter('nv_inference_queue_duration_us', 'Cumulative inference queuing duration in microseconds', (s) => microseconds(s.queue.ns));
    counter('nv_inference_compute_input_duration_us', 'Cumulative compute input duration in microseconds', (s) => microseconds(s.computeInput.ns));
    counter('nv_inference_compute_infer_duration_us', 'Cumulative compute inference duration in microseconds', (s) => microseconds(s.computeInfer.ns));
    counter('nv_inference_compute_output_duration_us', 'Cumulative inference compute output duration in microseconds', (s) => microseconds(s.computeOutput.ns));
    counter('nv_cache_num_hits_per_model', 'Number of cache hits per model', (s) => s.cacheHit.count);
    counter('nv_cache_num_misses_per_model', 'Number of cache misses per model', (s) => s.cacheMiss.count);
    this.perVersion('nv_inference_pending_request_count', 'Instantaneous number of pending requests awaiting execution per-model', 'gauge', (version) => version.queued);
    // Triton's CPU metrics, which CPU-only Triton dashboards plot: the machine's, as Triton reads them (not this process's;
    // prom-client's process_* have those). Utilization is over the time since the previous scrape (since boot at the first).
    let previous = cpuTimes();
    this.register('nv_cpu_utilization', 'CPU utilization rate [0.0 - 1.0]', 'gauge', () => {
      const now = cpuTimes();
      const total = now.total - previous.total;
      const value = total > 0 ? 1 - (now.idle - previous.idle) / total : 0;
      previous = now;
      return [{ labels: {}, value }];
    });
    this.register('nv_cpu_memory_total_bytes', 'CPU total memory (RAM), in bytes', 'gauge', () => [{ labels: {}, value: totalmem() }]);
    this.register('nv_cpu_memory_used_bytes', 'CPU used memory (RAM), in bytes', 'gauge', () => [{ labels: {}, value: totalmem() - freemem() }]);
  }

  /** Loads, unloads to make room and memory charged, per model whose residency is managed. */
  private registerResidencyMetrics(): void {
    const residency = () => this.server?.residencySummary?.();
    const perModel = (name: string, help: string, type: MetricKind, value: (model: ObservedResidency['models'][number]) => number | undefined) =>
      this.register(name, help, type, () =>
        (residency()?.models ?? []).flatMap((model) => {
          const measured = value(model);
          return measured === undefined ? [] : [{ labels: { model: model.model }, value: measured }];
        }),
      );
    perModel('nereid_model_loads_total', 'Loads of a model whose residency is managed (at start, on demand, explicit or polled)', 'counter', (m) => m.loads);
    perModel('nereid_model_evictions_total', 'Unloads of a model to keep within the memory budget', 'counter', (m) => m.evictions);
    perModel('nereid_model_resident', 'Whether the model is in memory (1) or loads on its next request (0)', 'gauge', (m) => (m.resident ? 1 : 0));
    perModel('nereid_model_memory_bytes', "Bytes a model in memory is charged: the resident set's growth over its load", 'gauge', (m) => (m.resident ? m.charged_bytes : undefined));
    this.register('nereid_model_memory_budget_bytes', 'The memory budget of the models in memory (--model-memory-budget)', 'gauge', () => {
      const budget = residency()?.budget_bytes;
      return budget === undefined ? [] : [{ labels: {}, value: budget }];
    });
    this.register('nereid_model_memory_used_bytes', 'Bytes charged to the models in memory now', 'gauge', () => {
      const summary = residency();
      return summary && summary.models.length > 0 ? [{ labels: {}, value: summary.used_bytes }] : [];
    });
  }

  /** What the idle memory reclaimer did: collections, trims and the bytes the trims gave back to the system. */
  private registerReclaimerMetrics(): void {
    const reclaimerCounter = (name: string, help: string, value: (reclaimer: NonNullable<ObservedServer['memoryReclaimer']>) => number) =>
      this.register(name, help, 'counter', () => {
        const reclaimer = this.server?.memoryReclaimer;
        return reclaimer ? [{ labels: {}, value: value(reclaimer) }] : [];
      });
    reclaimerCounter('nereid_idle_collections_total', 'Full garbage collections run when the server went quiet after a burst of large requests', (r) => r.collected);
    reclaimerCounter('nereid_idle_trims_total', "Times an idle server handed the allocator's free pages back to the system (glibc malloc_trim)", (r) => r.trimmed);
    reclaimerCounter('nereid_idle_trim_returned_bytes_total', 'Resident bytes those trims gave back to the system', (r) => r.returnedBytes);
  }

  /** The response cache store's own counters, read at scrape time; `nereid_cache_healthy` 0 means serving uncached. */
  private registerCacheMetrics(): void {
    const cacheGauge = (name: string, help: string, type: MetricKind, value: (cache: NonNullable<ObservedServer['responseCache']>) => number | undefined) =>
      this.register(name, help, type, () => {
        const cache = this.server?.responseCache;
        const measured = cache && value(cache);
        return cache && measured !== undefined ? [{ labels: { cache: cache.kind }, value: measured }] : [];
      });
    cacheGauge('nereid_cache_healthy', 'Whether the response cache store is reachable (0: degraded, serving uncached)', 'gauge', (c) => (c.healthy ? 1 : 0));
    cacheGauge('nereid_cache_evictions_total', 'Entries evicted from the response cache to stay within its byte budget', 'counter', (c) => c.counters.evictions);
    cacheGauge('nereid_cache_insertions_total', 'Entries written to the response cache', 'counter', (c) => c.counters.insertions);
    cacheGauge('nereid_cache_oversized_total', 'Answers not cached because one alone is larger than the response cache budget', 'counter', (c) => c.counters.oversized);
    cacheGauge('nereid_cache_errors_total', 'Response cache lookups or inserts that failed because the store was unreachable', 'counter', (c) => c.counters.errors);
    cacheGauge('nereid_cache_bytes', 'Bytes held by the local response cache', 'gauge', (c) => c.usage?.bytes);
    cacheGauge('nereid_cache_entries', 'Entries held by the local response cache', 'gauge', (c) => c.usage?.entries);
  }

  private registerModelMetrics(): void {
    const counter = (name: string, help: string, value: (statistics: ObservedVersion['statistics']) => number) =>
      this.perVersion(name, help, 'counter', (version) => value(version.statistics));
    const gauge = (name: string, help: string, value: (version: ObservedVersion) => number | undefined) => this.perVersion(name, help, 'gauge', value);
    counter('nereid_inference_request_success_total', 'Successful inference requests', (s) => s.success.count);
    // The reasons a serving model meets are exported from load at 0 (as Triton's nv_inference_request_failure is), so
    // an alert on a rate watches a series rather than absent data; another code appears when it first occurs.
    this.register('nereid_inference_request_failure_total', 'Failed inference requests, by reason (the error code)', 'counter', () =>
      (this.server?.repository.loadedVersions() ?? []).flatMap((version) => {
        const counts = new Map<string, number>(EXPECTED_FAILURE_REASONS.map((reason) => [reason, 0]));
        for (const [reason, count] of version.statistics.failures) counts.set(reason, count);
        return [...counts].map(([reason, count]) => ({ labels: { model: version.name, version: version.version, reason }, value: count }));
      }),
    );
    // One meaning on every surface, Triton's: /stats inference_count and nv_inference_count leave cache hits out too, so
    // inferences ÷ executions is the mean batch size. Rows answered from the cache are counted beside them.
    counter('nereid_inference_count_total', 'Inferences computed (batch rows of successful requests; as Triton counts them, cache hits are not inferences)', (s) => s.inferenceCount);
    counter('nereid_inference_exec_count_total', 'Model executions (batches run)', (s) => s.executionCount);
    gauge('nereid_inference_in_flight', 'Requests inside the model now (validation to answer)', (v) => v.statistics.inFlight);
    // Only versions with a reference profile have a detector: a 0 for the others would read as 'nothing out of distribution'.
    const scored = (name: string, help: string, value: (statistics: ObservedVersion['statistics']) => number) =>
      this.perVersion(name, help, 'counter', (version) => (version.monitor || version.statistics.oodChecked > 0 ? value(version.statistics) : undefined));
    scored('nereid_ood_checked_total', "Answer rows the version's out-of-distribution detector scored (versions with a reference profile)", (s) => s.oodChecked);
    scored('nereid_ood_total', "Answer rows flagged out of distribution by the version's reference profile", (s) => s.oodFlagged);
    counter('nereid_cache_hit_total', 'Requests answered from the response cache', (s) => s.cacheHit.count);
    counter('nereid_cache_hit_rows_total', 'Batch rows answered from the response cache (with nereid_inference_count_total: every row answered)', (s) => s.cachedRows);
    counter('nereid_cache_miss_total', 'Requests the response cache could not answer', (s) => s.cacheMiss.count);
    gauge('nereid_inference_queued', 'Requests waiting in the scheduler queue now', (v) => v.queued);
    gauge('nereid_model_load_duration_seconds', 'How long loading the model version took', (v) =>
      v.statistics.loadNs === undefined ? undefined : v.statistics.loadNs / 1e9,
    );
    // Beside the cost per inference, the size a quantized version saves, per version.
    gauge('nereid_model_file_bytes', 'Size of the model file the version was loaded from', (v) => v.modelFileBytes);
    // An info metric (value 1, facts as labels), so that any per-version series can be joined with its precision: a canary
    // of int8 beside its float source is told apart in a query, not only on the dashboard.
    this.register(
      'nereid_model_info',
      "1 per loaded version, labelled with its weights' precision ('float': no quantization record, the precision the model was exported at) and, for a quantized version, its quantization method and the version it was quantized from",
      'gauge',
      () =>
        (this.server?.repository.loadedVersions() ?? []).map(({ name, version, quantization }) => ({
          labels: { model: name, version, precision: quantization?.precision ?? 'float', quantization: quantization?.method ?? 'none', quantized_from_version: quantization?.sourceVersion ?? '' },
          value: 1,
        })),
    );

    this.histogram('nereid_inference_request_duration_seconds', 'End-to-end time of successful requests in the model (validation to answer)', (h) => h.request);
    this.histogram('nereid_inference_queue_duration_seconds', 'Time successful requests waited in the scheduler queue', (h) => h.queue);
    this.histogram('nereid_inference_preprocess_duration_seconds', 'Input pre-processing time (image decoding) of successful requests', (h) => h.preprocess);
    this.histogram('nereid_inference_compute_infer_duration_seconds', "Model compute time (compute_infer) of successful requests' batches", (h) => h.computeInfer);
    this.histogram('nereid_inference_postprocess_duration_seconds', 'Output post-processing time (activation) of successful requests', (h) => h.postprocess);
    this.histogram('nereid_inference_batch_size', 'Rows per executed batch', (h) => h.batchSize);

    counter('nereid_compute_seconds_total', 'Core-seconds of model compute: compute_infer time x instance threads', (s) => s.computeSeconds);
    gauge('nereid_compute_seconds_per_inference', 'Core-seconds of model compute per inference', ({ statistics: s }) =>
      s.inferenceCount > 0 ? s.computeSeconds / s.inferenceCount : 0,
    );
    const price = this.usdPerCoreHour;
    if (price !== undefined) {
      counter('nereid_cost_usd_total', 'Compute cost in dollars at --cost-per-core-hour', (s) => usdOf(s.computeSeconds, price));
      gauge('nereid_cost_usd_per_1000_inferences', 'Compute cost in dollars per 1,000 inferences at --cost-per-core-hour', ({ statistics: s }) =>
        s.inferenceCount > 0 ? usdOf((s.computeSeconds / s.inferenceCount) * 1000, price) : 0,
      );
    }
  }
}
