/**
 * With Triton's metric names on (--metrics-compat triton), the per-model counters Triton's dashboards
 * read are exported under its names and units, equal to the statistics the nereid_ metrics come from.
 */
import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createGrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { PrometheusMetrics, tritonFailureReason } from '../src/observability/prometheus-metrics.js';
import { startTestServer } from './support/test-server.js';

const sample = (text: string, name: string) => Number(new RegExp(`^${name}\\{model="simple",version="1"\\} (\\S+)$`, 'm').exec(text)?.[1]);

test("Triton's nv_ counters carry the same counts as the statistics, durations in microseconds", async (t) => {
  const metrics = new PrometheusMetrics({ processMetrics: false, tritonNames: true });
  const served = await startTestServer({ server: { observers: [metrics.observer] } });
  t.after(() => served.close());
  metrics.attach(served.server);
  const body = JSON.stringify({
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(2) },
    ],
  });
  for (let request = 0; request < 3; request++) assert.equal((await fetch(`${served.url}/v2/models/simple/infer`, { method: 'POST', body })).status, 200);
  assert.equal((await fetch(`${served.url}/v2/models/simple/infer`, { method: 'POST', body: '{"inputs":[]}' })).status, 400);
  const text = await metrics.registry.metrics();
  const stats = served.server.modelStatistics('simple').model_stats[0]!.inference_stats;
  assert.match(text, /^# TYPE nv_inference_request_success counter$/m);
  assert.equal(sample(text, 'nv_inference_request_success'), 3);
  // Triton labels failures by reason; an invalid request is OTHER, and every reason is exported from zero.
  const failures = (reason: string) => Number(new RegExp(`^nv_inference_request_failure\\{model="simple",version="1",reason="${reason}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
  assert.deepEqual(['REJECTED', 'CANCELED', 'BACKEND', 'OTHER'].map(failures), [0, 0, 0, 1]);
  assert.equal(sample(text, 'nv_inference_count'), 3);
  assert.ok(sample(text, 'nv_inference_exec_count') >= 1);
  assert.equal(sample(text, 'nv_inference_request_duration_us'), Math.round(Number(stats.success.ns) / 1e3));
  assert.equal(sample(text, 'nv_inference_compute_infer_duration_us'), Math.round(Number(stats.compute_infer.ns) / 1e3));
  assert.equal(sample(text, 'nv_inference_pending_request_count'), 0);
  assert.match(text, /^nereid_inference_request_success_total\{model="simple",version="1"\} 3$/m, 'the nereid_ names stay');
  // Triton's CPU metrics, the machine's: a share, and bytes within what the machine has.
  const utilization = Number(/^nv_cpu_utilization (\S+)$/m.exec(text)?.[1]);
  assert.ok(utilization >= 0 && utilization <= 1, `nv_cpu_utilization ${utilization}`);
  const total = Number(/^nv_cpu_memory_total_bytes (\S+)$/m.exec(text)?.[1]);
  const used = Number(/^nv_cpu_memory_used_bytes (\S+)$/m.exec(text)?.[1]);
  assert.equal(total, totalmem());
  assert.ok(used > 0 && used < total, `${used} of ${total}`);
});

test("nv_inference_request_failure's reason is Triton's: refusals under load REJECTED, cancellations CANCELED, model failures BACKEND", () => {
  const reasons = (['UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'CANCELLED', 'INTERNAL', 'INVALID_ARGUMENT', 'NOT_FOUND'] as const).map(tritonFailureReason);
  assert.deepEqual(reasons, ['REJECTED', 'REJECTED', 'REJECTED', 'CANCELED', 'BACKEND', 'OTHER', 'OTHER']);
});

test('a gRPC answer too large to send is a failure in the statistics and metrics, with the reason OTHER, not a success', async (t) => {
  const metrics = new PrometheusMetrics({ processMetrics: false, tritonNames: true });
  const served = await startTestServer({ server: { observers: [metrics.observer] } });
  t.after(() => served.close());
  metrics.attach(served.server);
  const front = createGrpcFrontEnd(served.server, { maxSendMessageBytes: 100 });
  const port = await front.listen('127.0.0.1', 0);
  t.after(() => front.close(1000));
  const client = new (loadInferenceProto().Client)(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  t.after(() => client.close());
  const ints = (value: number) => Buffer.from(new Int32Array(16).fill(value).buffer);
  const request = {
    model_name: 'simple',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16] },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16] },
    ],
    raw_input_contents: [ints(1), ints(2)],
  };
  // Two outputs of 64 bytes each: over the 100-byte send limit.
  const error = await new Promise<grpc.ServiceError | null>((resolve) => client.ModelInfer(request, (err: grpc.ServiceError | null) => resolve(err)));
  assert.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED);
  const stats = served.server.modelStatistics('simple').model_stats[0]!;
  assert.deepEqual([stats.inference_stats.success.count, stats.inference_stats.fail.count, stats.inference_count], [0, 1, 0]);
  const text = await metrics.registry.metrics();
  assert.equal(sample(text, 'nv_inference_request_success'), 0);
  const failures = (reason: string) => Number(new RegExp(`^nv_inference_request_failure\\{model="simple",version="1",reason="${reason}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
  assert.deepEqual(['REJECTED', 'CANCELED', 'BACKEND', 'OTHER'].map(failures), [0, 0, 0, 1]);
  assert.match(text, /^nereid_inference_request_failure_total\{model="simple",version="1",reason="RESOURCE_EXHAUSTED"\} 1$/m);
});
