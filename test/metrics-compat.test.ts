/**
 * With Triton's metric names on (--metrics-compat triton), the per-model counters Triton's dashboards
 * read are exported under its names and units, equal to the statistics the nereid_ metrics come from.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
});

test("nv_inference_request_failure's reason is Triton's: refusals under load REJECTED, cancellations CANCELED, model failures BACKEND", () => {
  const reasons = (['UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'CANCELLED', 'INTERNAL', 'INVALID_ARGUMENT', 'NOT_FOUND'] as const).map(tritonFailureReason);
  assert.deepEqual(reasons, ['REJECTED', 'REJECTED', 'REJECTED', 'CANCELED', 'BACKEND', 'OTHER', 'OTHER']);
});
