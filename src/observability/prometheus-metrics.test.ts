import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { hrTimeDuration, hrTimeToNanoseconds } from '@opentelemetry/core';
import { ObserverGroup, type RequestRecord } from '../core/inference-observer.js';
import { BucketCounts } from './collected-metric.js';
import { costSummary } from './cost.js';
import { ModelStatistics } from './model-statistics.js';
import { PrometheusMetrics } from './prometheus-metrics.js';
import { requestIdOf } from './request-id.js';
import { Tracing } from './tracing.js';

const timings = { queueNs: 1e6, computeInputNs: 1e5, computeInferNs: 2e6, computeOutputNs: 1e5, postprocessNs: 5e4 };
const success: RequestRecord = { rows: 2, success: true, totalNs: 4e6, startedAt: 1_700_000_000_000, timings };

function line(text: string, prefix: string): string | undefined {
  return text.split('\n').find((candidate) => candidate.startsWith(prefix));
}

test('a value on a bucket bound counts in that bucket (le is inclusive); above the last only in +Inf', () => {
  const histogram = new BucketCounts([1, 2, 4]);
  for (const value of [1, 2, 3, 4, 5]) histogram.observe(value);
  assert.deepEqual([...histogram.counts], [1, 1, 2]);
  assert.equal(histogram.count, 5);
  assert.equal(histogram.sum, 15);
});

test('nereid_model_info says which loaded version is quantized, to what precision and from which version; a float one is "float"', async () => {
  const metrics = new PrometheusMetrics({ processMetrics: false });
  metrics.attach({
    repository: {
      loadedVersions: () => [
        { name: 'm', version: '1', statistics: new ModelStatistics('m', '1') },
        { name: 'm', version: '2', statistics: new ModelStatistics('m', '2'), quantization: { method: 'static', precision: 'int8', sourceVersion: '1' } },
      ],
    },
  });
  const text = await metrics.metrics();
  assert.equal(line(text, 'nereid_model_info{model="m",version="1"'), 'nereid_model_info{model="m",version="1",precision="float",quantization="none",quantized_from_version=""} 1');
  assert.equal(line(text, 'nereid_model_info{model="m",version="2"'), 'nereid_model_info{model="m",version="2",precision="int8",quantization="static",quantized_from_version="1"} 1');
});

test("counters come from the loaded version's statistics, counted once; histograms are shared by successive loads; cache hits add no queue or compute time", async () => {
  const metrics = new PrometheusMetrics({ processMetrics: false });
  const statistics = new ModelStatistics('m', '1');
  metrics.attach({ repository: { loadedVersions: () => [{ name: 'm', version: '1', statistics, modelFileBytes: 57_120 }] } });
  // As a model version wires them: its statistics and the metrics' observer watch the same events.
  const first = new ObserverGroup([statistics, metrics.observer('m', '1')]);
  const reloaded = new ObserverGroup([statistics, metrics.observer('m', '1')]);
  first.onRequestStart();
  first.onRequestEnd(success);
  reloaded.onRequestStart();
  reloaded.onRequestEnd({ ...success, rows: 1, cache: { hit: true, ns: 1000 }, timings: { queueNs: 0, computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0 } });
  reloaded.onRequestStart();
  reloaded.onRequestEnd({ rows: 1, success: false, totalNs: 10, startedAt: 0 }); // no code: counted as INTERNAL
  reloaded.onExecution({ batchSize: 2, threads: 4, timings: { computeInputNs: 0, computeInferNs: 5e8, computeOutputNs: 0 } });
  const text = await metrics.metrics();
  assert.equal(line(text, 'nereid_inference_request_success_total{model="m",version="1"}'), 'nereid_inference_request_success_total{model="m",version="1"} 2');
  assert.equal(line(text, 'nereid_inference_count_total{'), 'nereid_inference_count_total{model="m",version="1"} 2', 'computed rows, as /stats and Triton count them');
  assert.equal(line(text, 'nereid_cache_hit_rows_total{'), 'nereid_cache_hit_rows_total{model="m",version="1"} 1');
  assert.equal(line(text, 'nereid_inference_request_failure_total{model="m",version="1",reason="INTERNAL"}'), 'nereid_inference_request_failure_total{model="m",version="1",reason="INTERNAL"} 1');
  // The reasons a model meets are there at 0 before they occur, for alerts on their rate.
  assert.equal(line(text, 'nereid_inference_request_failure_total{model="m",version="1",reason="UNAVAILABLE"}'), 'nereid_inference_request_failure_total{model="m",version="1",reason="UNAVAILABLE"} 0');
  assert.equal(line(text, 'nereid_inference_in_flight{'), 'nereid_inference_in_flight{model="m",version="1"} 0');
  assert.equal(line(text, 'nereid_cache_hit_total{'), 'nereid_cache_hit_total{model="m",version="1"} 1');
  assert.equal(line(text, 'nereid_inference_request_duration_seconds_count{'), 'nereid_inference_request_duration_seconds_count{model="m",version="1"} 2');
  assert.equal(line(text, 'nereid_inference_queue_duration_seconds_count{'), 'nereid_inference_queue_duration_seconds_count{model="m",version="1"} 1');
  assert.equal(line(text, 'nereid_compute_seconds_total{'), 'nereid_compute_seconds_total{model="m",version="1"} 2');
  assert.equal(line(text, 'nereid_inference_batch_size_bucket{model="m",version="1",le="1"}'), 'nereid_inference_batch_size_bucket{model="m",version="1",le="1"} 0');
  assert.equal(line(text, 'nereid_inference_batch_size_bucket{model="m",version="1",le="2"}'), 'nereid_inference_batch_size_bucket{model="m",version="1",le="2"} 1');
  assert.equal(line(text, 'nereid_model_file_bytes{'), 'nereid_model_file_bytes{model="m",version="1"} 57120');
  assert.equal(line(text, 'nereid_cost_usd_total'), undefined, 'no price, no dollars');
  assert.equal(line(text, 'process_cpu'), undefined, 'process metrics off');
});

test('cost: core-seconds per inference and dollars per 1,000 at a price per core-hour', () => {
  assert.deepEqual(costSummary(7.2, 1000, 0.5), {
    compute_seconds: 7.2,
    compute_seconds_per_inference: 0.0072,
    usd_per_core_hour: 0.5,
    usd_per_1000_inferences: 0.001,
  });
  assert.deepEqual(costSummary(0, 0), { compute_seconds: 0, compute_seconds_per_inference: 0, usd_per_core_hour: null, usd_per_1000_inferences: null });
});

test('request ids: a sane x-request-id is kept, anything else replaced by a UUID', () => {
  assert.equal(requestIdOf('abc-123_x.y:z'), 'abc-123_x.y:z');
  assert.equal(requestIdOf(['first', 'second']), 'first');
  for (const bad of [undefined, '', 'has space', 'quote"', 'x'.repeat(129), 'line\nbreak']) assert.match(requestIdOf(bad), /^[0-9a-f-]{36}$/);
});

test('spans: phases back to back from the start, clamped to the parent; a malformed traceparent starts a new trace', async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = new Tracing({ exporter, processor: 'simple' });
  // Phases that add up to more than the total (clock skew): children stop at the parent's end.
  const observer = tracing.observer('m', '1');
  const record: RequestRecord = { ...success, traceparent: 'not-a-traceparent' };
  observer.traceStart!(record);
  record.totalNs = 3e6;
  observer.onRequestEnd(record);
  await tracing.forceFlush();
  const spans = exporter.getFinishedSpans();
  await tracing.shutdown();
  const parent = spans.find((span) => span.name === 'infer m')!;
  assert.equal(parent.parentSpanContext, undefined);
  const children = spans.filter((span) => span.parentSpanContext?.spanId === parent.spanContext().spanId);
  assert.deepEqual(children.map((span) => span.name), ['queue', 'compute_input', 'compute_infer', 'compute_output', 'postprocess']);
  assert.deepEqual(parent.startTime, [1_700_000_000, 0]);
  // Nanoseconds since the parent's start (absolute nanoseconds since the epoch exceed a double's precision).
  const since = (time: [number, number]) => hrTimeToNanoseconds(hrTimeDuration(parent.startTime, time));
  assert.equal(since(parent.endTime), 3e6);
  assert.deepEqual(
    children.map((span) => [since(span.startTime), since(span.endTime)]),
    [
      [0, 1e6],
      [1e6, 1.1e6],
      [1.1e6, 3e6],
      [3e6, 3e6],
      [3e6, 3e6],
    ],
  );
});

test('the response cache store is reported at scrape time: health, evictions, insertions, oversized answers, bytes', async () => {
  const { LruCacheStore } = await import('../cache/lru-cache-store.js');
  const store = new LruCacheStore(100);
  await store.set('a', Buffer.alloc(40), 0);
  await store.set('b', Buffer.alloc(40), 0);
  await store.set('c', Buffer.alloc(40), 0); // evicts 'a'
  await store.set('d', Buffer.alloc(200), 0); // larger than the whole budget
  const metrics = new PrometheusMetrics({ processMetrics: false }).attach({
    repository: { loadedVersions: () => [] },
    responseCache: store,
  });
  const text = await metrics.metrics();
  assert.equal(line(text, 'nereid_cache_healthy{'), 'nereid_cache_healthy{cache="local"} 1');
  assert.equal(line(text, 'nereid_cache_evictions_total{'), 'nereid_cache_evictions_total{cache="local"} 1');
  assert.equal(line(text, 'nereid_cache_insertions_total{'), 'nereid_cache_insertions_total{cache="local"} 3');
  assert.equal(line(text, 'nereid_cache_oversized_total{'), 'nereid_cache_oversized_total{cache="local"} 1');
  assert.equal(line(text, 'nereid_cache_bytes{'), 'nereid_cache_bytes{cache="local"} 82');
  const without = await new PrometheusMetrics({ processMetrics: false }).attach({ repository: { loadedVersions: () => [] } }).metrics();
  assert.equal(line(without, 'nereid_cache_healthy{'), undefined, 'no cache, no cache samples');
});

test("the idle memory reclaimer's collections, trims and returned bytes are counters read at scrape time", async () => {
  const reclaimer = { collected: 3, trimmed: 2, returnedBytes: 150 * 1024 * 1024 };
  const metrics = new PrometheusMetrics({ processMetrics: false }).attach({ repository: { loadedVersions: () => [] }, memoryReclaimer: reclaimer });
  let text = await metrics.metrics();
  assert.equal(line(text, 'nereid_idle_collections_total '), 'nereid_idle_collections_total 3');
  assert.equal(line(text, 'nereid_idle_trims_total '), 'nereid_idle_trims_total 2');
  assert.equal(line(text, 'nereid_idle_trim_returned_bytes_total '), 'nereid_idle_trim_returned_bytes_total 157286400');
  reclaimer.trimmed = 3;
  text = await metrics.metrics();
  assert.equal(line(text, 'nereid_idle_trims_total '), 'nereid_idle_trims_total 3');
  const off = await new PrometheusMetrics({ processMetrics: false }).attach({ repository: { loadedVersions: () => [] } }).metrics();
  assert.equal(line(off, 'nereid_idle_trims_total'), undefined, 'reclaiming off: no samples');
});

test("a request's span is started with it: what carries its traceparent is its child, and a dropped one passes its decision on", async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = new Tracing({ exporter, processor: 'simple' });
  const pipeline = new ObserverGroup([tracing.observer('pipeline', '1')]);
  const step = new ObserverGroup([tracing.observer('step', '1')]);
  const outer: RequestRecord = { ...success, traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` };
  const outerTraceparent = pipeline.traceStart(outer);
  const inner: RequestRecord = { ...success, traceparent: outerTraceparent };
  step.traceStart(inner);
  step.onRequestEnd(inner);
  pipeline.onRequestEnd(outer);
  await tracing.forceFlush();
  const [innerSpan, outerSpan] = exporter.getFinishedSpans().filter((span) => span.name.startsWith('infer '));
  assert.equal(outerSpan.parentSpanContext?.spanId, 'b'.repeat(16));
  assert.equal(innerSpan.parentSpanContext?.spanId, outerSpan.spanContext().spanId);
  assert.equal(innerSpan.spanContext().traceId, 'a'.repeat(32));
  assert.equal(outerTraceparent, `00-${'a'.repeat(32)}-${outerSpan.spanContext().spanId}-01`);

  const dropped: RequestRecord = { ...success, traceparent: `00-${'c'.repeat(32)}-${'d'.repeat(16)}-00` };
  assert.match(pipeline.traceStart(dropped)!, new RegExp(`^00-${'c'.repeat(32)}-[0-9a-f]{16}-00$`));
  pipeline.onRequestEnd(dropped);
  assert.equal(new ObserverGroup([]).traceStart(success), undefined);
  await tracing.forceFlush();
  assert.equal(exporter.getFinishedSpans().length, 2 + 5 * 2, 'two requests with five phases each; nothing for the dropped one');
  await tracing.shutdown();
});

test('two tracing observers each record the request; the work done for it carries the first one\'s context', async () => {
  const exporters = [new InMemorySpanExporter(), new InMemorySpanExporter()];
  const tracings = exporters.map((exporter) => new Tracing({ exporter, processor: 'simple' }));
  const group = new ObserverGroup(tracings.map((tracing) => tracing.observer('m', '1')));
  const record: RequestRecord = { ...success };
  const traceparent = group.traceStart(record);
  group.onRequestEnd(record);
  await Promise.all(tracings.map((tracing) => tracing.forceFlush()));
  const [first, second] = exporters.map((exporter) => exporter.getFinishedSpans().find((span) => span.name === 'infer m'));
  assert.ok(first && second);
  assert.equal(traceparent, `00-${first.spanContext().traceId}-${first.spanContext().spanId}-01`);
  await Promise.all(tracings.map((tracing) => tracing.shutdown()));
});
