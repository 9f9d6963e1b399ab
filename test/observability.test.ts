/**
 * Observability end to end: known traffic through a real server (HTTP and gRPC front ends, ONNX
 * Runtime, the dynamic batcher) and exact numbers on the Prometheus listener and /stats; spans in an
 * InMemorySpanExporter, parented on the client's traceparent; log lines captured from pino; and the
 * CLI's --allow-metrics / --metrics-port / --cost-per-core-hour flags on a real child process.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { hrTimeDuration, hrTimeToNanoseconds } from '@opentelemetry/core';
import { pino } from 'pino';
import { createGrpcFrontEnd, type GrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { ModelVersion } from '../src/model/model-version.js';
import type { RequestRecord } from '../src/core/inference-observer.js';
import { createMetricsListener, PrometheusMetrics, Tracing, type MetricsListener } from '../src/observability/index.js';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, serveChild, stopChild } from './support/cli-server.js';
import { startTestServer, writeSimpleModel, type TestServer } from './support/test-server.js';

type Json = Record<string, any>;

const PRICE = 0.048; // dollars per core-hour
const THREADS = 2; // intra_op_thread_count of both models: compute-seconds are compute_infer × 2

/** One instance, batches of 4 dispatched at once, a lone request waits 300 ms for company. */
const BATCHED_CONFIG = `
max_batch_size: 8
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 4 ]
  max_queue_delay_microseconds: 300000
  default_queue_policy { allow_timeout_override: true }
}
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
`;

/** No batching: for traces and logs, apart from the counted traffic. */
const PLAIN_CONFIG = `
max_batch_size: 8
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
`;

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN_ID = '00f067aa0ba902b7';
const GRPC_TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const GRPC_PARENT_SPAN_ID = 'b7ad6b7169203331';

/** Values that only a request's tensors carry: they must never show up in a log line. */
const SECRET_ELEMENT = 'SECRET-TENSOR-ELEMENT-7731';
const SECRET_NUMBER = 918273645;

let test_server: TestServer;
let metrics: PrometheusMetrics;
let listener: MetricsListener;
let metricsUrl: string;
let exporter: InMemorySpanExporter;
let tracing: Tracing;
let grpcFront: GrpcFrontEnd;
let grpcClient: grpc.Client & Record<string, any>;
const logLines: Json[] = [];

before(async () => {
  metrics = new PrometheusMetrics({ usdPerCoreHour: PRICE });
  exporter = new InMemorySpanExporter();
  tracing = new Tracing({ exporter, processor: 'simple' });
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  test_server = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'batched', 1, addSubModel(), BATCHED_CONFIG);
      await writeModel(repo, 'plain', 1, addSubModel(), PLAIN_CONFIG);
    },
    server: { logger, costPerCoreHour: PRICE, observers: [metrics.observer, tracing.observer] },
    http: { accessLog: true },
  });
  metrics.attach(test_server.server);
  listener = createMetricsListener(metrics);
  metricsUrl = `http://127.0.0.1:${await listener.listen('127.0.0.1', 0)}/metrics`;
  grpcFront = createGrpcFrontEnd(test_server.server, { accessLog: true });
  const port = await grpcFront.listen('127.0.0.1', 0);
  const { Client } = loadInferenceProto();
  grpcClient = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as typeof grpcClient;
});

after(async () => {
  grpcClient?.close();
  await grpcFront?.close(1000);
  await listener?.close();
  await test_server?.close();
  await tracing?.shutdown();
});

// ---------------------------------------------------------------------------------------------
// Helpers

function rowsBody(rows: number, extra: Json = {}) {
  const data = Array.from({ length: rows * 16 }, (_, index) => index);
  return {
    ...extra,
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [rows, 16], data },
      { name: 'INPUT1', datatype: 'INT32', shape: [rows, 16], data },
    ],
  };
}

async function infer(model: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json; headers: Headers }> {
  const response = await fetch(`${test_server.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Json, headers: response.headers };
}

async function stats(model: string): Promise<Json> {
  const response = await fetch(`${test_server.url}/v2/models/${model}/stats`);
  assert.equal(response.status, 200);
  return ((await response.json()) as Json).model_stats[0];
}

interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition. */
function parseExposition(text: string): PromSample[] {
  const samples: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

async function scrape(): Promise<PromSample[]> {
  const response = await fetch(metricsUrl);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseExposition(await response.text());
}

/** The one sample of `name` whose labels are exactly `labels`; undefined when there is none. */
function sampleOf(samples: PromSample[], name: string, labels: Record<string, string>): number | undefined {
  const found = samples.filter(
    (sample) =>
      sample.name === name &&
      Object.keys(sample.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  assert.ok(found.length <= 1, `${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

function valueOf(samples: PromSample[], name: string, labels: Record<string, string>): number {
  const value = sampleOf(samples, name, labels);
  assert.notEqual(value, undefined, `no sample ${name}${JSON.stringify(labels)}`);
  return value!;
}

const BATCHED = { model: 'batched', version: '1' };

function grpcInfer(message: Json, metadata: grpc.Metadata): Promise<{ error: grpc.ServiceError | null; response: Json }> {
  return new Promise((resolve) => grpcClient.ModelInfer(message, metadata, (error: grpc.ServiceError | null, response: Json) => resolve({ error, response })));
}

function grpcRows(model: string, rows: number, datatype = 'INT32'): Json {
  const values = Array.from({ length: rows * 16 }, (_, index) => index);
  const contents = datatype === 'INT32' ? { int_contents: values } : { fp32_contents: values };
  return {
    model_name: model,
    inputs: [
      { name: 'INPUT0', datatype, shape: [rows, 16], contents },
      { name: 'INPUT1', datatype, shape: [rows, 16], contents },
    ],
  };
}

const spanNs = (span: ReadableSpan) => hrTimeToNanoseconds(hrTimeDuration(span.startTime, span.endTime));

// ---------------------------------------------------------------------------------------------

describe('Prometheus metrics and V2 statistics', () => {
  test('counts, histograms and gauges match the traffic and the batches the scheduler ran', async () => {
    // 4 one-row requests together: one batch of 4 (the preferred size dispatches at once).
    const together = await Promise.all(Array.from({ length: 4 }, () => infer('batched', rowsBody(1))));
    assert.deepEqual(together.map((answer) => answer.status), [200, 200, 200, 200]);

    // A lone 2-row request waits out the queue delay: while it waits it is in flight (and queued).
    const lone = infer('batched', rowsBody(2));
    await new Promise((resolve) => setTimeout(resolve, 80));
    const during = await scrape();
    assert.equal(valueOf(during, 'nereid_inference_in_flight', BATCHED), 1);
    if ('queued' in ModelVersion.prototype) assert.equal(valueOf(during, 'nereid_inference_queued', BATCHED), 1);
    assert.equal((await lone).status, 200);

    // 8 rows fill a batch: it runs at once.
    assert.equal((await infer('batched', rowsBody(8))).status, 200);

    // Failures, by reason: two wrong datatypes, one queue timeout (1 ms, shorter than the queue delay).
    const wrongType = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: Array(16).fill(1) }, rowsBody(1).inputs[1]] };
    assert.equal((await infer('batched', wrongType)).status, 400);
    assert.equal((await infer('batched', wrongType)).status, 400);
    assert.equal((await infer('batched', rowsBody(1, { parameters: { timeout: 1000 } }))).status, 503);

    const samples = await scrape();
    assert.equal(valueOf(samples, 'nereid_inference_request_success_total', BATCHED), 6);
    assert.equal(valueOf(samples, 'nereid_inference_request_failure_total', { ...BATCHED, reason: 'INVALID_ARGUMENT' }), 2);
    assert.equal(valueOf(samples, 'nereid_inference_request_failure_total', { ...BATCHED, reason: 'UNAVAILABLE' }), 1);
    assert.equal(valueOf(samples, 'nereid_inference_count_total', BATCHED), 4 + 2 + 8);
    assert.equal(valueOf(samples, 'nereid_inference_exec_count_total', BATCHED), 3);
    assert.equal(valueOf(samples, 'nereid_inference_in_flight', BATCHED), 0);
    if ('queued' in ModelVersion.prototype) assert.equal(valueOf(samples, 'nereid_inference_queued', BATCHED), 0);

    // Per-request histograms: one observation per successful request.
    for (const name of ['request_duration', 'queue_duration', 'compute_infer_duration']) {
      assert.equal(valueOf(samples, `nereid_inference_${name}_seconds_count`, BATCHED), 6, name);
      assert.equal(valueOf(samples, `nereid_inference_${name}_seconds_bucket`, { ...BATCHED, le: '+Inf' }), 6, name);
      assert.ok(valueOf(samples, `nereid_inference_${name}_seconds_sum`, BATCHED) > 0, name);
    }
    // No image inputs and no activation declared, so no pre- or post-processing phase.
    assert.equal(valueOf(samples, 'nereid_inference_preprocess_duration_seconds_count', BATCHED), 0);
    assert.equal(valueOf(samples, 'nereid_inference_postprocess_duration_seconds_count', BATCHED), 0);
    // The lone request waited most of the 300 ms delay: its queue time lands above 0.25 s.
    assert.ok(valueOf(samples, 'nereid_inference_queue_duration_seconds_sum', BATCHED) >= 0.25);
    assert.equal(valueOf(samples, 'nereid_inference_queue_duration_seconds_bucket', { ...BATCHED, le: '0.1' }), 5);

    // Batch sizes: exactly the batches /stats reports (2, 4 and 8 rows), cumulatively per bucket.
    const stat = await stats('batched');
    assert.deepEqual(
      stat.batch_stats.map((batch: Json) => [batch.batch_size, batch.compute_infer.count]),
      [
        [2, 1],
        [4, 1],
        [8, 1],
      ],
    );
    for (const le of [1, 2, 4, 8, 16, 1024]) {
      const expected = stat.batch_stats
        .filter((batch: Json) => batch.batch_size <= le)
        .reduce((sum: number, batch: Json) => sum + batch.compute_infer.count, 0);
      assert.equal(valueOf(samples, 'nereid_inference_batch_size_bucket', { ...BATCHED, le: String(le) }), expected, `le=${le}`);
    }
    assert.equal(valueOf(samples, 'nereid_inference_batch_size_count', BATCHED), stat.execution_count);
    assert.equal(valueOf(samples, 'nereid_inference_batch_size_sum', BATCHED), 14);
    assert.equal(stat.inference_count, 14);
    assert.equal(stat.execution_count, 3);
    assert.equal(stat.inference_stats.success.count, 6);
    assert.equal(stat.inference_stats.fail.count, 3);

    // Cost: compute_infer × threads, the same in metrics and statistics, and priced per 1,000.
    const computeSeconds = valueOf(samples, 'nereid_compute_seconds_total', BATCHED);
    const fromBatches = stat.batch_stats.reduce((sum: number, batch: Json) => sum + batch.compute_infer.ns, 0) * THREADS / 1e9;
    assert.ok(computeSeconds > 0);
    assert.ok(Math.abs(computeSeconds - fromBatches) < 1e-8, `${computeSeconds} vs ${fromBatches}`);
    assert.ok(Math.abs(stat.cost.compute_seconds - computeSeconds) < 1e-12);
    assert.ok(Math.abs(stat.cost.compute_seconds_per_inference - computeSeconds / 14) < 1e-12);
    assert.equal(stat.cost.usd_per_core_hour, PRICE);
    const usdPer1000 = ((computeSeconds / 14) * 1000 * PRICE) / 3600;
    assert.ok(Math.abs(stat.cost.usd_per_1000_inferences - usdPer1000) < 1e-15);
    assert.ok(Math.abs(valueOf(samples, 'nereid_cost_usd_per_1000_inferences', BATCHED) - usdPer1000) < 1e-15);
    assert.ok(Math.abs(valueOf(samples, 'nereid_compute_seconds_per_inference', BATCHED) - computeSeconds / 14) < 1e-12);
    assert.ok(Math.abs(valueOf(samples, 'nereid_cost_usd_total', BATCHED) - (computeSeconds * PRICE) / 3600) < 1e-15);

    // Load time per version, process metrics from prom-client.
    assert.ok(valueOf(samples, 'nereid_model_load_duration_seconds', BATCHED) > 0);
    assert.ok(valueOf(samples, 'process_cpu_seconds_total', {}) > 0);
    assert.ok(valueOf(samples, 'process_resident_memory_bytes', {}) > 0);
  });

  test('gRPC statistics keep to Triton\'s fields; the JSON form carries the cost', async () => {
    const response: Json = await new Promise((resolve, reject) =>
      grpcClient.ModelStatistics({ name: 'batched' }, (error: Error | null, answer: Json) => (error ? reject(error) : resolve(answer))),
    );
    const entry = response.model_stats[0];
    assert.equal(entry.inference_count, '14');
    assert.equal(entry.execution_count, '3');
    assert.equal(entry.cost, undefined);
    assert.deepEqual(Object.keys(entry.inference_stats).sort(), [
      'cache_hit', 'cache_miss', 'compute_infer', 'compute_input', 'compute_output', 'fail', 'queue', 'success',
    ]);
    const all = await (await fetch(`${test_server.url}/v2/models/stats`)).json() as Json;
    for (const model of all.model_stats) assert.deepEqual(Object.keys(model.cost).sort(), [
      'compute_seconds', 'compute_seconds_per_inference', 'usd_per_1000_inferences', 'usd_per_core_hour',
    ]);
  });

  test('the metrics listener answers GET /metrics only', async () => {
    const other = await fetch(metricsUrl.replace('/metrics', '/v2'));
    assert.equal(other.status, 404);
    const post = await fetch(metricsUrl, { method: 'POST' });
    assert.equal(post.status, 404);
  });
});

describe('traces', () => {
  test("an HTTP request's span is parented on its traceparent, with its phases back to back inside it", async () => {
    const answer = await infer('plain', rowsBody(3, { id: 'v2-id-1' }), { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` });
    assert.equal(answer.status, 200);
    const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === TRACE_ID);
    const parent = spans.find((span) => span.name === 'infer plain');
    assert.ok(parent, `no 'infer plain' span in ${spans.map((span) => span.name).join(', ')}`);
    assert.equal(parent.parentSpanContext?.spanId, PARENT_SPAN_ID);
    assert.equal(parent.attributes['nereid.model.name'], 'plain');
    assert.equal(parent.attributes['nereid.model.version'], '1');
    assert.equal(parent.attributes['nereid.inference.rows'], 3);
    assert.equal(parent.attributes['nereid.request.id'], 'v2-id-1');
    assert.equal(parent.status.code, 0); // UNSET: it succeeded

    // Nanoseconds since the parent's start (absolute nanoseconds since the epoch exceed a double's precision).
    const since = (time: [number, number]) => hrTimeToNanoseconds(hrTimeDuration(parent.startTime, time));
    const children = spans
      .filter((span) => span.parentSpanContext?.spanId === parent.spanContext().spanId)
      .sort((a, b) => since(a.startTime) - since(b.startTime));
    assert.deepEqual(children.map((span) => span.name), ['queue', 'compute_input', 'compute_infer', 'compute_output']);
    assert.equal(since(children[0].startTime), 0);
    children.slice(1).forEach((child, index) => assert.deepEqual(child.startTime, children[index].endTime, child.name));
    assert.ok(since(children.at(-1)!.endTime) <= since(parent.endTime));
    const childrenNs = children.reduce((sum, child) => sum + spanNs(child), 0);
    assert.ok(childrenNs > 0 && childrenNs <= spanNs(parent), `children ${childrenNs} ns, parent ${spanNs(parent)} ns`);
    assert.ok(spanNs(children[2]) > 0, 'compute_infer took time');
  });

  test('a gRPC request carries its traceparent metadata into the span; a failure marks it', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${GRPC_TRACE_ID}-${GRPC_PARENT_SPAN_ID}-01`);
    const ok = await grpcInfer(grpcRows('plain', 1), metadata);
    assert.equal(ok.error, null);
    const failed = await grpcInfer(grpcRows('plain', 1, 'FP32'), metadata);
    assert.equal(failed.error?.code, grpc.status.INVALID_ARGUMENT);
    const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === GRPC_TRACE_ID && span.name === 'infer plain');
    assert.equal(spans.length, 2);
    for (const span of spans) assert.equal(span.parentSpanContext?.spanId, GRPC_PARENT_SPAN_ID);
    const failure = spans.find((span) => span.status.code === 2);
    assert.ok(failure, 'the failed request has an ERROR span');
    assert.equal(failure.attributes['error.type'], 'INVALID_ARGUMENT');
    assert.match(failure.status.message ?? '', /^input 'INPUT0' expects /, 'the reason, not only the code');
  });

  test('without a traceparent a request starts its own trace; an unsampled parent records nothing', async () => {
    const before = exporter.getFinishedSpans().length;
    assert.equal((await infer('plain', rowsBody(1))).status, 200);
    const fresh = exporter.getFinishedSpans().slice(before).find((span) => span.name === 'infer plain');
    assert.ok(fresh);
    assert.equal(fresh.parentSpanContext, undefined);
    assert.ok(![TRACE_ID, GRPC_TRACE_ID].includes(fresh.spanContext().traceId));

    const count = exporter.getFinishedSpans().length;
    const unsampledTrace = '11111111111111111111111111111111';
    assert.equal((await infer('plain', rowsBody(1), { traceparent: `00-${unsampledTrace}-${PARENT_SPAN_ID}-00` })).status, 200);
    assert.equal(exporter.getFinishedSpans().length, count);
  });

  test('the OTLP exporter posts spans to --trace-endpoint', async () => {
    const received: { url?: string; body: string }[] = [];
    const collector = createServer((request, response) => {
      let body = '';
      request.setEncoding('utf8').on('data', (chunk) => (body += chunk)).on('end', () => {
        received.push({ url: request.url, body });
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`;
    const otlp = new Tracing({ exporter: 'otlp', endpoint, processor: 'simple', serviceName: 'nereid-test' });
    try {
      const observer = otlp.observer('otlp_model', '3');
      const record: RequestRecord = { rows: 1, success: false, totalNs: 0, startedAt: Date.now(), traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` };
      observer.traceStart!(record);
      Object.assign(record, { success: true, totalNs: 2e6, timings: { queueNs: 1e5, computeInputNs: 1e4, computeInferNs: 1e6, computeOutputNs: 1e4 } });
      observer.onRequestEnd(record);
      await otlp.forceFlush();
    } finally {
      await otlp.shutdown();
      await new Promise((resolve) => collector.close(resolve));
    }
    assert.ok(received.length >= 1);
    assert.equal(received[0].url, '/v1/traces');
    const all = received.map((entry) => entry.body).join('\n');
    assert.ok(all.includes('infer otlp_model'));
    assert.ok(all.includes('nereid-test'));
    assert.ok(all.includes('compute_infer'));
  });
});

describe('logs', () => {
  test("a failing request's log lines carry its request id, and no tensor data", async () => {
    const first = logLines.length;
    const badElement = rowsBody(1);
    badElement.inputs[0].data = [SECRET_ELEMENT, ...Array(15).fill(SECRET_NUMBER)] as never;
    const answer = await infer('plain', badElement, { 'x-request-id': 'req-fail-42' });
    assert.equal(answer.status, 400);
    assert.ok(answer.body.error.includes(SECRET_ELEMENT), 'the client is told which element was wrong');
    assert.equal(answer.headers.get('x-request-id'), 'req-fail-42');
    // Malformed JSON: the parser's message quotes the body.
    const malformed = await infer('plain', `{"inputs":[{"name":"INPUT0","data":[${SECRET_NUMBER},"${SECRET_ELEMENT}" oops`, { 'x-request-id': 'req-fail-43' });
    assert.equal(malformed.status, 400);
    // A probe answered 200 is not logged (Kubernetes asks every few seconds); its hook runs before the next request's.
    assert.equal((await fetch(`${test_server.url}/v2/health/live`)).status, 200);
    // A successful request with distinctive data.
    const fine = rowsBody(1);
    fine.inputs[0].data = Array(16).fill(SECRET_NUMBER);
    const ok = await infer('plain', fine);
    assert.equal(ok.status, 200);
    const generated = ok.headers.get('x-request-id');
    assert.match(generated ?? '', /^[0-9a-f-]{36}$/);

    // The access line is written when the server has finished sending, which may be after the client has read the answer.
    const logged = (id: string | null) => logLines.slice(first).some((line) => line.reqId === id && line.msg === 'request completed');
    for (let turns = 0; turns < 10_000 && !['req-fail-42', 'req-fail-43', generated].every(logged); turns++) await new Promise((resolve) => setImmediate(resolve));
    const lines = logLines.slice(first);
    for (const id of ['req-fail-42', 'req-fail-43']) {
      const mine = lines.filter((line) => line.reqId === id);
      const accessLine = mine.find((line) => line.msg === 'request completed');
      assert.ok(accessLine, `no access line for ${id}`);
      assert.equal(accessLine.status, 400);
      assert.equal(accessLine.method, 'POST');
      assert.equal(accessLine.url, '/v2/models/plain/infer');
      assert.equal(accessLine.model, 'plain');
      assert.equal(typeof accessLine.ms, 'number');
      assert.equal(accessLine.remoteAddress, '127.0.0.1', 'whom the refusal went to');
      assert.ok(accessLine.bytesOut > 0);
      // A failure's access line is at warn and carries its code and reason, for a filter on either.
      assert.equal(accessLine.level, 40);
      assert.equal(accessLine.code, 'INVALID_ARGUMENT');
      assert.equal(typeof accessLine.reason, 'string');
      const failure = mine.find((line) => line.msg === 'request failed');
      assert.ok(failure, `no failure line for ${id}`);
      assert.equal(failure.code, 'INVALID_ARGUMENT');
    }
    assert.ok(lines.some((line) => line.reqId === generated && line.status === 200 && line.level === 30 && line.code === undefined));
    assert.ok(!lines.some((line) => line.url === '/v2/health/live'), 'no line for the probe');
    // Every line about a request names it.
    for (const line of lines.filter((line) => line.url !== undefined || line.msg === 'request failed')) assert.ok(line.reqId, JSON.stringify(line));
    const text = lines.map((line) => JSON.stringify(line)).join('\n');
    assert.ok(!text.includes(SECRET_ELEMENT), 'a tensor element reached the logs');
    assert.ok(!text.includes(String(SECRET_NUMBER)), 'tensor data reached the logs');
  });

  test('a request refused for its token or its origin: the access line names the code and the reason', async (t) => {
    const lines: Json[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const guarded = await startTestServer({ models: writeSimpleModel, server: { logger }, http: { accessLog: true, authTokens: ['s3cret'] } });
    t.after(() => guarded.close());
    const refused = [
      await fetch(`${guarded.url}/v2/models/simple`, { headers: { 'x-request-id': 'no-token-1' } }),
      await fetch(`${guarded.url}/v2/repository/index`, { method: 'POST', headers: { 'x-request-id': 'cross-site-1', 'sec-fetch-site': 'cross-site', authorization: 'Bearer s3cret' } }),
    ];
    assert.deepEqual(refused.map((response) => response.status), [401, 403]);
    for (let turns = 0; turns < 10_000 && lines.filter((line) => line.msg === 'request completed').length < 2; turns++) await new Promise((resolve) => setImmediate(resolve));
    const access = (id: string) => lines.find((line) => line.reqId === id && line.msg === 'request completed');
    assert.deepEqual([access('no-token-1')?.code, access('no-token-1')?.status], ['UNAUTHENTICATED', 401]);
    assert.match(access('no-token-1')?.reason ?? '', /bearer token/);
    assert.deepEqual([access('cross-site-1')?.code, access('cross-site-1')?.status], ['PERMISSION_DENIED', 403]);
    assert.match(access('cross-site-1')?.reason ?? '', /^cross-origin request refused/);
  });

  test('gRPC requests log with their x-request-id metadata, without tensor data', async () => {
    const first = logLines.length;
    const metadata = new grpc.Metadata();
    metadata.set('x-request-id', 'grpc-req-7');
    const message = grpcRows('plain', 1);
    message.inputs[0].contents = { fp32_contents: Array(16).fill(SECRET_NUMBER) };
    message.inputs[0].datatype = 'FP32';
    (message as { id?: string }).id = 'v2-id-7';
    const failed = await grpcInfer(message, metadata);
    assert.equal(failed.error?.code, grpc.status.INVALID_ARGUMENT);
    for (let turns = 0; turns < 10_000 && !logLines.slice(first).some((line) => line.reqId === 'grpc-req-7' && line.msg === 'request completed'); turns++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const mine = logLines.slice(first).filter((line) => line.reqId === 'grpc-req-7');
    const accessLine = mine.find((line) => line.msg === 'request completed');
    assert.ok(accessLine);
    assert.equal(accessLine.rpc, 'ModelInfer');
    assert.equal(accessLine.status, grpc.status.INVALID_ARGUMENT);
    assert.equal(accessLine.code, 'INVALID_ARGUMENT', 'the status named, beside its number');
    assert.equal(accessLine.id, 'v2-id-7', "the request's V2 id, beside the x-request-id");
    assert.equal(accessLine.level, 40);
    assert.equal(typeof accessLine.reason, 'string');
    assert.equal(accessLine.model, 'plain');
    assert.ok(mine.some((line) => line.msg === 'request failed' && line.code === 'INVALID_ARGUMENT'));
    assert.ok(!logLines.slice(first).some((line) => JSON.stringify(line).includes(String(SECRET_NUMBER))));
  });
});

// ---------------------------------------------------------------------------------------------
// The CLI: --allow-metrics false starts no listener; true serves /metrics with the cost gauges.

describe('CLI flags', () => {
  test('--allow-metrics false opens no metrics listener; by default --metrics-port serves /metrics', async () => {
    const port = await freePort();
    const off = await serveChild(test_server.repoDir, ['--allow-metrics', 'false', '--metrics-port', String(port)]);
    try {
      await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`));
      assert.ok(!off.output().includes('Prometheus metrics on'));
    } finally {
      await stopChild(off);
    }
    const on = await serveChild(test_server.repoDir, ['--metrics-port', String(port), '--cost-per-core-hour', '0.5']);
    try {
      assert.ok(on.output().includes(`Prometheus metrics on http://127.0.0.1:${port}/metrics`));
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const samples = parseExposition(text);
      assert.equal(valueOf(samples, 'nereid_inference_request_success_total', BATCHED), 0);
      assert.equal(valueOf(samples, 'nereid_cost_usd_per_1000_inferences', BATCHED), 0);
      assert.ok(valueOf(samples, 'nereid_model_load_duration_seconds', { model: 'plain', version: '1' }) > 0);
    } finally {
      await stopChild(on);
    }
  });
});

// The timeout only ends a hang (a listener without its cut waits on that connection for ever) as a failure.
test('a connection that never sends a request does not hold the metrics listener open at close', { timeout: 60_000 }, async () => {
  const listener = createMetricsListener(new PrometheusMetrics({ processMetrics: false }), {});
  const port = await listener.listen('127.0.0.1', 0);
  const silent = connect(port, '127.0.0.1');
  await once(silent, 'connect');
  // Without the listener's own cut, only the 10 s headers timeout (or the drain's end) would free it: what closes the
  // connection is told by the order of events, not by how long close() took.
  const events: string[] = [];
  const closeAllConnections = listener.httpServer.closeAllConnections.bind(listener.httpServer);
  listener.httpServer.closeAllConnections = () => {
    events.push('listener cut its connections');
    closeAllConnections();
  };
  const closed = once(silent, 'close').then(() => events.push('silent connection closed'));
  await listener.close();
  await closed;
  assert.deepEqual(events, ['listener cut its connections', 'silent connection closed']);
});
