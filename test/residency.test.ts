/**
 * Models loaded on demand under a memory budget, over real HTTP and ONNX Runtime: three models and
 * a budget for two (sized from the charges a first server measured for them), loads on first
 * request, least-recently-used unloads, a model with a request in flight never unloaded, pinned
 * models, and what the index, the metrics and the load/unload API say.
 */
import assert from 'node:assert/strict';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { PrometheusMetrics } from '../src/observability/prometheus-metrics.js';
import { matMulChainModel, scaleModel, writeModel } from '../src/onnx/test-models.js';
import { startGrpcEndpoint } from './support/grpc-endpoint.js';
import { RawConnection } from './support/raw-http.js';
import { startTestServer, type TestServer } from './support/test-server.js';

const WIDTH = 3072;
const MODELS = ['a', 'b', 'c'] as const;

async function writeModels(repo: string): Promise<void> {
  // Each folds to a width² weight at load (36 MiB: above glibc's largest mmap threshold, so it is
  // mapped and unmapped rather than recycled): its memory is ONNX Runtime's, which only the resident set shows.
  for (const name of MODELS) await writeModel(repo, name, 1, matMulChainModel({ width: WIDTH, layers: 2 }));
  await writeModel(repo, 'pinned', 1, matMulChainModel({ width: 16, layers: 1 }), undefined, { 'config.yaml': 'parameters: { residency: pinned }\n' });
}

const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: Array.from({ length: WIDTH }, () => 1) }] });

async function infer(served: TestServer, model: string): Promise<{ status: number; y?: number[]; error?: string }> {
  const response = await fetch(`${served.url}/v2/models/${model}/infer`, { method: 'POST', body });
  const answer = (await response.json()) as { outputs?: { data: number[] }[]; error?: string };
  return { status: response.status, y: answer.outputs?.[0]?.data, error: answer.error };
}

type IndexRow = { name: string; version?: string; state?: string; reason?: string; residency?: string; memory_bytes?: number };

async function index(served: TestServer): Promise<Map<string, IndexRow>> {
  const response = await fetch(`${served.url}/v2/repository/index`, { method: 'POST', body: '{}' });
  return new Map(((await response.json()) as IndexRow[]).map((row) => [row.name, row]));
}

const resident = (served: TestServer) =>
  served.server
    .residencySummary()
    .models.filter((model) => model.resident)
    .map((model) => model.model)
    .sort();

/** An ensemble of two on-demand steps: ×2, then ×3. */
const TWICE_SCALED = `name: "twice_scaled"
platform: "ensemble"
max_batch_size: 4
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "double" model_version: -1 input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "MID" } },
  { model_name: "triple" model_version: -1 input_map { key: "INPUT0" value: "MID" } output_map { key: "OUTPUT0" value: "OUT" } }
] }
`;

test('three models under a budget for two: loaded on first request, least recently used unloaded, never one in flight', async (t) => {
  // What each model costs is measured by a first server with no budget: the resident set's growth over its load.
  const calibration = await startTestServer({ models: writeModels, server: { modelControlMode: 'on_demand' } });
  for (const name of MODELS) assert.equal((await infer(calibration, name)).status, 200);
  const charges = MODELS.map((name) => calibration.server.residencySummary().models.find((model) => model.model === name)!.charged_bytes!);
  await calibration.close();
  const pairs = [charges[0]! + charges[1]!, charges[0]! + charges[2]!, charges[1]! + charges[2]!];
  const all = charges[0]! + charges[1]! + charges[2]!;
  // Half-way between what two take and what three take: two fit, three do not, with a margin of half a model.
  const budget = Math.round((Math.max(...pairs) + all) / 2);
  t.diagnostic(`charged per model (MB): ${charges.map((bytes) => (bytes / 1e6).toFixed(1)).join(', ')}; budget ${(budget / 1e6).toFixed(1)} MB`);
  // The weight dominates; what else a load allocates and frees meanwhile moves the measure by a few MB.
  assert.ok(charges.every((bytes) => bytes > 0.8 * WIDTH * WIDTH * 4), `each is charged about its folded weight or more: ${charges}`);

  const metrics = new PrometheusMetrics({ processMetrics: false });
  const served = await startTestServer({ models: writeModels, server: { modelControlMode: 'on_demand', modelMemoryBudget: budget, observers: [metrics.observer] } });
  metrics.attach(served.server);
  t.after(() => served.close());

  let rows = await index(served);
  assert.deepEqual(resident(served), ['pinned'], 'only the pinned model loads at start');
  assert.equal(rows.get('a')!.reason, 'not loaded; loads on its first request');
  assert.equal(rows.get('pinned')!.state, 'READY');
  assert.equal(rows.get('pinned')!.residency, 'pinned');

  // The first request waits for its model's load and is answered: every y is the sum of the ones.
  const first = await infer(served, 'a');
  assert.equal(first.status, 200, first.error);
  assert.ok(Math.abs(first.y![0]! - 1) < 1e-3, `y ${first.y![0]}`);
  assert.equal((await infer(served, 'b')).status, 200);
  assert.deepEqual(resident(served), ['a', 'b', 'pinned']);
  assert.equal((await infer(served, 'a')).status, 200); // b is now the least recently used
  assert.equal((await infer(served, 'c')).status, 200);
  assert.deepEqual(resident(served), ['a', 'c', 'pinned'], 'b, the least recently used, made room for c');
  rows = await index(served);
  assert.match(rows.get('b')!.reason!, /unloaded to keep within the memory budget \(least recently used\); loads again on its next request/);
  assert.ok(rows.get('c')!.memory_bytes! > 0);

  // a's request is in flight (its head is admitted, its body not yet sent); c is used after it, so a is the least recently used.
  const slow = new RawConnection(served.url);
  t.after(() => slow.close());
  const held = slow.request('POST', '/v2/models/a/infer', { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  await waitFor(() => served.server.residencySummary().models.find((model) => model.model === 'a')!.leases === 1);
  assert.equal((await infer(served, 'c')).status, 200);
  assert.equal((await infer(served, 'b')).status, 200, 'b loads again on its next request');
  assert.deepEqual(resident(served), ['a', 'b', 'pinned'], 'c went, not a: a had a request in flight');
  slow.send(body);
  const answer = await held;
  assert.equal(answer.status, 200, answer.body);

  t.diagnostic(`charged by the budgeted server (MB): ${served.server.residencySummary().models.map((model) => `${model.model} ${((model.charged_bytes ?? 0) / 1e6).toFixed(1)}`).join(', ')}`);
  const text = await metrics.registry.metrics();
  assert.match(text, /nereid_model_evictions_total\{model="b"\} 1/);
  assert.match(text, /nereid_model_evictions_total\{model="c"\} 1/);
  assert.match(text, /nereid_model_loads_total\{model="b"\} 2/);
  assert.match(text, /nereid_model_resident\{model="c"\} 0/);
  assert.match(text, new RegExp(`nereid_model_memory_budget_bytes ${budget}`));
  const used = Number(/nereid_model_memory_used_bytes (\d+)/.exec(text)![1]);
  assert.ok(used <= budget, `${used} bytes charged of ${budget}`);
});

test('on_demand mode: explicit load and unload work, an unloaded model loads again on its next request, an unknown one is 404', async (t) => {
  const served = await startTestServer({ models: writeModels, server: { modelControlMode: 'on_demand' } });
  t.after(() => served.close());
  const load = await fetch(`${served.url}/v2/repository/models/a/load`, { method: 'POST', body: '{}' });
  assert.equal(load.status, 200);
  assert.deepEqual(resident(served), ['a', 'pinned']);
  const unload = await fetch(`${served.url}/v2/repository/models/a/unload`, { method: 'POST', body: '{}' });
  assert.equal(unload.status, 200);
  assert.deepEqual(resident(served), ['pinned']);
  assert.equal((await index(served)).get('a')!.reason, 'unloaded; loads again on its next request');
  const metadata = await fetch(`${served.url}/v2/models/a`);
  assert.equal(metadata.status, 200, 'metadata loads the model too: clients ask for it before inferring');
  assert.equal((await infer(served, 'a')).status, 200);
  // Over gRPC the same: the call waits for the load of a model that is not in memory.
  const grpc = await startGrpcEndpoint(served.server);
  t.after(() => grpc.close());
  await fetch(`${served.url}/v2/repository/models/b/unload`, { method: 'POST', body: '{}' });
  const answer = await new Promise<{ outputs: { name: string }[] }>((resolve, reject) =>
    grpc.client.ModelInfer(
      { model_name: 'b', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], contents: { fp32_contents: Array(WIDTH).fill(1) } }] },
      (error: Error | null, response: { outputs: { name: string }[] }) => (error ? reject(error) : resolve(response)),
    ),
  );
  assert.deepEqual(answer.outputs.map((output) => output.name), ['y']);
  assert.ok(resident(served).includes('b'));
  const unknown = await infer(served, 'nothing_here');
  assert.equal(unknown.status, 404);
  assert.match(unknown.error!, /unknown model/);
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("in none mode, a model whose config says residency: on_demand is not loaded at start but on its first request; the others are pinned", async (t) => {
  const served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'always', 1, matMulChainModel({ width: 16, layers: 1 }));
      await writeModel(repo, 'rarely', 1, matMulChainModel({ width: 16, layers: 1 }), undefined, { 'config.yaml': 'parameters: { residency: on_demand }\n' });
    },
  });
  t.after(() => served.close());
  assert.deepEqual(resident(served), ['always']);
  const rows = await index(served);
  assert.equal(rows.get('always')!.residency, 'pinned');
  assert.equal(rows.get('rarely')!.reason, 'not loaded; loads on its first request');
  const response = await fetch(`${served.url}/v2/models/rarely/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 16], data: Array(16).fill(1) }] }) });
  assert.equal(response.status, 200);
  assert.deepEqual(resident(served), ['always', 'rarely']);
  assert.equal(served.server.ready, true, 'readiness asks only for the models loaded at start');
});

test('a model loaded at start that the memory budget has no room for is UNAVAILABLE with the sizes, logged, and the server not ready', async (t) => {
  const logged: string[] = [];
  const served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'first', 1, matMulChainModel({ width: 16, layers: 1 }));
      await writeModel(repo, 'second', 1, matMulChainModel({ width: 16, layers: 1 }));
    },
    // Two bytes (1 would be the whole machine): the first model loads alone (a model alone in memory always does), the
    // second has no room beside it.
    server: { modelMemoryBudget: 2, logger: pino({ level: 'error' }, { write: (line: string) => void logged.push(line) }) },
  });
  t.after(() => served.close());
  const rows = await index(served);
  const [loaded, refused] = [...rows.values()].sort((a, b) => (a.state === 'READY' ? -1 : 1) - (b.state === 'READY' ? -1 : 1));
  assert.equal(loaded.state, 'READY');
  assert.equal(refused.state, 'UNAVAILABLE');
  assert.match(refused.reason!, /needs about .* but the memory budget of .* \(modelMemoryBudget\) has 0\.0 MiB left/);
  const response = await fetch(`${served.url}/v2/models/${refused.name}/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 16], data: Array(16).fill(1) }] }) });
  assert.equal(response.status, 503, 'no room is a wait, not a failed load');
  assert.match(((await response.json()) as { error: string }).error, /has no available versions: .*\(modelMemoryBudget\)/);
  assert.equal(served.server.ready, false);
  assert.ok(logged.some((line) => line.includes(`model '${refused.name}' was not loaded`)), logged.join('\n'));
});

test('on_demand mode: an ensemble loads on its first request, its steps through the residency (each loaded once, each unloadable), the ensemble itself never', async (t) => {
  const served = await startTestServer({
    server: { modelControlMode: 'on_demand' },
    models: async (repo) => {
      await writeModel(repo, 'double', 1, scaleModel(2));
      await writeModel(repo, 'triple', 1, scaleModel(3));
      await mkdir(join(repo, 'twice_scaled', '1'), { recursive: true });
      await writeFile(join(repo, 'twice_scaled', 'config.pbtxt'), TWICE_SCALED);
    },
  });
  t.after(() => served.close());
  assert.deepEqual(resident(served), []);
  const answers = await Promise.all(
    [1, 2, 3].map(() => fetch(`${served.url}/v2/models/twice_scaled/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }) })),
  );
  for (const answer of answers) {
    assert.equal(answer.status, 200);
    assert.deepEqual(((await answer.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, [6, 12, 18, 24]);
  }
  assert.deepEqual(resident(served), ['double', 'triple'], 'the steps are managed; the ensemble holds no memory of its own');
  const loads = Object.fromEntries(served.server.residencySummary().models.map((model) => [model.model, model.loads]));
  assert.deepEqual(loads, { double: 1, triple: 1 }, 'three requests, one load of each step');
  await fetch(`${served.url}/v2/repository/models/triple/unload`, { method: 'POST', body: '{}' });
  const again = await fetch(`${served.url}/v2/models/twice_scaled/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }) });
  assert.equal(again.status, 200, 'a step unloaded meanwhile loads again on the ensemble\'s next request');
});

test("on_demand mode: an ensemble whose steps fit the budget one at a time runs: a later step in memory is unloaded to make room for an earlier one, not held for the request", async (t) => {
  const served = await startTestServer({
    server: { modelControlMode: 'on_demand', modelMemoryBudget: 300e6, modelLoadWaitMs: 10_000 },
    models: async (repo) => {
      await writeModel(repo, 'double', 1, scaleModel(2));
      await writeModel(repo, 'triple', 1, scaleModel(3));
      // Files the residency charges a model for (a sparse 200 MB each): room for one step at a time.
      for (const model of ['double', 'triple']) {
        await writeFile(join(repo, model, 'weights.pad'), '');
        await truncate(join(repo, model, 'weights.pad'), 200e6);
      }
      await mkdir(join(repo, 'twice_scaled', '1'), { recursive: true });
      await writeFile(join(repo, 'twice_scaled', 'config.pbtxt'), TWICE_SCALED);
    },
  });
  t.after(() => served.close());
  for (let request = 0; request < 3; request++) {
    const answer = await fetch(`${served.url}/v2/models/twice_scaled/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }) });
    const text = await answer.text();
    assert.equal(answer.status, 200, `request ${request}: ${text}`);
    assert.deepEqual((JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0]!.data, [6, 12, 18, 24]);
    assert.deepEqual(resident(served), ['triple'], 'the last step is what stays');
  }
});
