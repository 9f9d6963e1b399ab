/** Observability: Prometheus metrics, OpenTelemetry traces, request ids and cost per prediction. */
export { BucketCounts, CollectedMetric } from './collected-metric.js';
export { CHUNK_DURATION_BUCKETS_SECONDS, registerBatchWorkerMetrics, type ChunkOutcome } from './batch-worker-metrics.js';
export { costSummary, coreSeconds, usdOf, type CostSummary } from './cost.js';
export { createMetricsListener, type MetricsListener, type MetricsListenerOptions } from './metrics-listener.js';
export {
  BATCH_SIZE_BUCKETS,
  DURATION_BUCKETS_SECONDS,
  PrometheusMetrics,
  type ObservedServer,
  type ObservedVersion,
  type PrometheusMetricsOptions,
} from './prometheus-metrics.js';
export { createLogger, type LogOutputFormat, type LogOutputOptions } from './log-output.js';
export { LOG_FORMATS, LogSettings, type LogFormat, type LogSettingsAnswer } from './log-settings.js';
export { REQUEST_ID_HEADER, requestIdOf } from './request-id.js';
export { TracePolicy, TraceSettings, type TraceLevel, type TraceSettingAnswer, type TraceSettingsOptions } from './trace-settings.js';
export { createTracing, DEFAULT_TRACE_ENDPOINT, Tracing, tracingSettingsSchema, type TracingOptions } from './tracing.js';
