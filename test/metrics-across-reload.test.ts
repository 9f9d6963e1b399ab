/**
 * Prometheus series across model lifecycle: a reload of the same version (even one that changes nothing) keeps its
 * counters counting, as its histograms do; a version that is not loaded any more (unloaded, its folder deleted) has no
 * series left in a scrape.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { PrometheusMetrics } from '../src/observability/prometheus-metrics.js';
import { startTestServer } from './support/test-server.js';

const BODY = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] });

test('a reload of the same version keeps its counters; an unloaded version has no series', async (t) => {
  const metrics = new PrometheusMetrics({ processMetrics: false });
  const served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'scale', 3, scaleModel(2), 'max_batch_size: 8\n');
    },
    server: { modelControlMode: 'explicit', loadModels: ['scale'], observers: [metrics.observer] },
  });
  t.after(() => served.close());
  metrics.attach(served.server);
  const success = async () => Number(/^nereid_inference_request_success_total\{model="scale",version="3"\} (\S+)$/m.exec(await metrics.registry.metrics())?.[1]);
  for (let request = 0; request < 3; request++) assert.equal((await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: BODY })).status, 200);
  assert.equal(await success(), 3);

  // A load that changes nothing, then a request: the counter goes on from 3.
  assert.equal((await fetch(`${served.url}/v2/repository/models/scale/load`, { method: 'POST', body: '{}' })).status, 200);
  assert.equal((await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: BODY })).status, 200);
  assert.equal(await success(), 4, 'counted across the reload');
  assert.equal(served.server.modelStatistics('scale').model_stats[0]!.inference_stats.success.count, 4);

  assert.equal((await fetch(`${served.url}/v2/repository/models/scale/unload`, { method: 'POST', body: '{}' })).status, 200);
  await rm(join(served.repoDir, 'scale'), { recursive: true });
  const text = await metrics.registry.metrics();
  assert.doesNotMatch(text, /model="scale"/, 'no series of a model not loaded');
  const index = (await (await fetch(`${served.url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as unknown[];
  assert.deepEqual(index, [], 'a deleted model leaves the index, as in Triton');
});

test("an ensemble's reload keeps its counters too", async (t) => {
  const served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'double', 1, scaleModel(2), 'max_batch_size: 8\n');
      await mkdir(join(repo, 'doubled', '1'), { recursive: true });
      await writeFile(
        join(repo, 'doubled', 'config.pbtxt'),
        `platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [ { model_name: "double" model_version: -1 input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "OUT" } } ] }
`,
      );
    },
    server: { modelControlMode: 'explicit', loadModels: ['doubled'] },
  });
  t.after(() => served.close());
  const body = JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] });
  for (let request = 0; request < 2; request++) assert.equal((await fetch(`${served.url}/v2/models/doubled/infer`, { method: 'POST', body })).status, 200);
  assert.equal((await fetch(`${served.url}/v2/repository/models/doubled/load`, { method: 'POST', body: '{}' })).status, 200);
  assert.equal((await fetch(`${served.url}/v2/models/doubled/infer`, { method: 'POST', body })).status, 200);
  assert.equal(served.server.modelStatistics('doubled').model_stats[0]!.inference_count, 3);
});
