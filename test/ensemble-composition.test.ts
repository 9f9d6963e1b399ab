/**
 * Ensembles composed with the rest of the server, on a real server with generated ONNX steps: the
 * ensemble's own response cache (a hit runs no step), the request's priority and timeout passed
 * to every step (what is left of the timeout), the cost per prediction summed over the steps'
 * shares of their executions (in /stats, /metrics and the dashboard), and a monitored step model
 * (the bundled Fashion-MNIST with its reference profile) seeing the rows that came through an ensemble.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dashboardSnapshot } from '../src/frontends/http/dashboard-data.js';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { PrometheusMetrics } from '../src/observability/prometheus-metrics.js';
import { Tracing } from '../src/observability/tracing.js';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer, type TestServer } from './support/test-server.js';

type Json = any;

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PRICE = 0.05;

const tensor4 = (name: string) => `{ name: "${name}" data_type: TYPE_FP32 dims: [ 4 ] }`;
const step = (model: string, input: string, output: string) =>
  `{ model_name: "${model}" model_version: -1 input_map { key: "INPUT0" value: "${input}" } output_map { key: "OUTPUT0" value: "${output}" } }`;

/** A chain of scale models as an ensemble config: IN → steps[0] → T1 → … → OUT. */
function chain(name: string, models: string[], extra = '', maxBatchSize = 4): string {
  const tensors = models.map((_, index) => (index === models.length - 1 ? 'OUT' : `T${index + 1}`));
  return `name: "${name}"
platform: "ensemble"
max_batch_size: ${maxBatchSize}
input [ ${tensor4('IN')} ]
output [ ${tensor4('OUT')} ]
ensemble_scheduling { step [ ${models.map((model, index) => step(model, index === 0 ? 'IN' : tensors[index - 1], tensors[index])).join(', ')} ] }
${extra}`;
}

async function writeEnsemble(repoDir: string, name: string, config: string): Promise<void> {
  await mkdir(join(repoDir, name, '1'), { recursive: true });
  await writeFile(join(repoDir, name, 'config.pbtxt'), config);
}

/**
 * A step that holds a lone request for 20 s waiting for a second (so a request queues there as long
 * as the test needs), with two priority levels: level 1 times out after 1 ms, level 2 (the default)
 * takes a request's own timeout.
 */
const GATE_CONFIG = `max_batch_size: 2
dynamic_batching {
  preferred_batch_size: [ 2 ]
  max_queue_delay_microseconds: 20000000
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { allow_timeout_override: true }
  priority_queue_policy { key: 1 value: { default_timeout_microseconds: 1000 } }
}
`;

/** The cached chain and its two steps. */
async function writeCachedChain(repoDir: string): Promise<void> {
  await writeModel(repoDir, 'scale2', 1, scaleModel(2), 'max_batch_size: 8\n');
  await writeModel(repoDir, 'scale3', 1, scaleModel(3), 'max_batch_size: 8\n');
  await writeEnsemble(repoDir, 'cached_chain', chain('cached_chain', ['scale2', 'scale3'], 'response_cache { enable: true }\n'));
}

async function writeModels(repoDir: string): Promise<void> {
  await writeCachedChain(repoDir);
  await writeEnsemble(repoDir, 'cost_chain', chain('cost_chain', ['scale2', 'scale3']));
  await writeModel(repoDir, 'gate', 1, scaleModel(5), GATE_CONFIG);
  await writeEnsemble(repoDir, 'gated', chain('gated', ['scale2', 'gate'], '', 2));
  // A step that holds a lone request until a second arrives: an ensemble's request and a direct one then share one execution.
  await writeModel(repoDir, 'pairing', 1, scaleModel(7), 'max_batch_size: 2\ndynamic_batching { preferred_batch_size: [ 2 ] max_queue_delay_microseconds: 20000000 }\n');
  await writeEnsemble(repoDir, 'via_pairing', chain('via_pairing', ['pairing'], '', 2));
  // The bundled garment classifier, reference profile included, behind an ensemble that takes encoded images.
  await cp(join(ROOT, 'models', 'fashion_mnist'), join(repoDir, 'fashion_mnist'), { recursive: true });
  await writeEnsemble(
    repoDir,
    'garments',
    `platform: "ensemble"
max_batch_size: 8
input [ { name: "PHOTO" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ 10 ] } ]
ensemble_scheduling { step [ { model_name: "fashion_mnist" model_version: -1 input_map { key: "image" value: "PHOTO" } output_map { key: "logits" value: "SCORES" } } ] }
response_cache { enable: true }
`,
  );
}

let served: TestServer;
let metrics: PrometheusMetrics;
const spans = new InMemorySpanExporter();
const tracing = new Tracing({ exporter: spans, processor: 'simple' });

before(async () => {
  metrics = new PrometheusMetrics({ usdPerCoreHour: PRICE, processMetrics: false });
  served = await startTestServer({ models: writeModels, server: { cacheConfig: 'local,size=1048576', costPerCoreHour: PRICE, observers: [metrics.observer, tracing.observer] } });
  metrics.attach(served.server);
});

after(async () => {
  await served?.close();
  await tracing.shutdown();
});

async function infer(model: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
  const response = await fetch(`${served.url}/v2/models/${model}/infer`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  return { status: response.status, body: await response.json() };
}

const row = (data: number[], parameters?: Record<string, unknown>) => ({ ...(parameters && { parameters }), inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data }] });
const statsOf = async (model: string): Promise<Json> => (await (await fetch(`${served.url}/v2/models/${model}/stats`)).json()).model_stats[0];

/** One model's sample of a metric in the Prometheus exposition (undefined: no such sample). */
async function metric(name: string, model: string): Promise<number | undefined> {
  const line = (await metrics.metrics()).split('\n').find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(`model="${model}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe("an ensemble's own response cache", () => {
  test('a hit answers without running any step, and counts once: in the ensemble, not in its steps', async () => {
    const request = row([1, 2, 3, 4]);
    const [scale2Before, scale3Before] = await Promise.all([statsOf('scale2'), statsOf('scale3')]);
    const miss = await infer('cached_chain', request);
    assert.equal(miss.status, 200, JSON.stringify(miss.body));
    assert.deepEqual(miss.body.outputs[0].data, [6, 12, 18, 24]);
    const [scale2Between, scale3Between] = await Promise.all([statsOf('scale2'), statsOf('scale3')]);
    assert.equal(scale2Between.inference_count - scale2Before.inference_count, 1, 'the miss ran the steps');
    assert.equal(scale3Between.inference_count - scale3Before.inference_count, 1);

    const hit = await infer('cached_chain', request);
    assert.equal(hit.status, 200, JSON.stringify(hit.body));
    assert.deepEqual(hit.body.outputs, miss.body.outputs);
    const [scale2After, scale3After, ensemble] = await Promise.all([statsOf('scale2'), statsOf('scale3'), statsOf('cached_chain')]);
    // The steps' statistics are unchanged by the hit: nothing reached them.
    assert.deepEqual(scale2After.inference_stats, scale2Between.inference_stats);
    assert.deepEqual(scale3After.inference_stats, scale3Between.inference_stats);
    assert.equal(scale2After.execution_count, scale2Between.execution_count);
    assert.equal(ensemble.inference_stats.cache_hit.count, 1);
    assert.equal(ensemble.inference_stats.cache_miss.count, 1);
    assert.equal(ensemble.inference_stats.success.count, 2);
    assert.equal(ensemble.inference_count, 1, "as in Triton's statistics, a hit is not an inference");
    assert.equal(await metric('nereid_cache_hit_total', 'cached_chain'), 1);
    assert.equal(await metric('nereid_cache_miss_total', 'cached_chain'), 1);
    assert.equal(await metric('nereid_cache_hit_total', 'scale2'), 0);
  });

  test('another input is a miss', async () => {
    const before = await statsOf('cached_chain');
    const other = await infer('cached_chain', row([1, 1, 1, 1]));
    assert.deepEqual(other.body.outputs[0].data, [6, 6, 6, 6]);
    const after = await statsOf('cached_chain');
    assert.equal(after.inference_stats.cache_miss.count - before.inference_stats.cache_miss.count, 1);
    assert.equal(after.inference_stats.cache_hit.count, before.inference_stats.cache_hit.count);
  });

  test('cache_bypass computes through the steps', async () => {
    const before = await statsOf('scale3');
    const bypassed = await infer('cached_chain', row([1, 2, 3, 4], { cache_bypass: true }));
    assert.deepEqual(bypassed.body.outputs[0].data, [6, 12, 18, 24]);
    assert.equal((await statsOf('scale3')).inference_count - before.inference_count, 1);
  });
});

test("an ensemble's cached answers follow its steps: a step's new version, or new weights under its version, is a miss at once", async () => {
  const stepped = await startTestServer({
    models: writeCachedChain,
    server: { cacheConfig: 'local,size=1048576', modelControlMode: 'explicit', loadModels: ['cached_chain'] },
  });
  try {
    const answer = async () => {
      const response = await fetch(`${stepped.url}/v2/models/cached_chain/infer`, { method: 'POST', body: JSON.stringify(row([1, 1, 1, 2])) });
      assert.equal(response.status, 200);
      return ((await response.json()) as Json).outputs[0].data as number[];
    };
    const load = async (model: string) => assert.equal((await fetch(`${stepped.url}/v2/repository/models/${model}/load`, { method: 'POST' })).status, 200);
    assert.deepEqual(await answer(), [6, 6, 6, 12]);
    assert.deepEqual(await answer(), [6, 6, 6, 12], 'a hit');
    await writeModel(stepped.repoDir, 'scale3', 2, scaleModel(1000));
    await load('scale3');
    // New weights written over the loaded ones before any request: what answers is what was loaded, keyed as such.
    await writeModel(stepped.repoDir, 'scale3', 2, scaleModel(10));
    assert.deepEqual(await answer(), [2000, 2000, 2000, 4000], 'the new version of the last step answers');
    await load('scale3');
    assert.deepEqual(await answer(), [20, 20, 20, 40], 'new weights under the same version answer');
    const stats = (await (await fetch(`${stepped.url}/v2/models/cached_chain/stats`)).json()).model_stats[0];
    assert.equal(stats.inference_stats.cache_hit.count, 1);
    assert.equal(stats.inference_stats.cache_miss.count, 3);

    // A version drawn per request by traffic weights cannot be named before the call: such requests are computed, not cached.
    const split = await fetch(`${stepped.url}/v2/repository/models/scale3/traffic`, { method: 'POST', body: JSON.stringify({ weights: { '2': 100 } }) });
    assert.equal(split.status, 200, await split.text());
    assert.deepEqual(await answer(), [20, 20, 20, 40]);
    assert.deepEqual(await answer(), [20, 20, 20, 40]);
    const drawn = (await (await fetch(`${stepped.url}/v2/models/cached_chain/stats`)).json()).model_stats[0];
    assert.equal(drawn.inference_stats.cache_hit.count, 1, 'no hit while a step is drawn by weights');
  } finally {
    await stepped.close();
  }
});

test("a cached ensemble whose on-demand step was unloaded answers, the step loaded again by its call", async () => {
  const onDemand = await startTestServer({
    models: writeCachedChain,
    server: { cacheConfig: 'local,size=1048576', modelControlMode: 'on_demand' },
  });
  try {
    const ask = () => fetch(`${onDemand.url}/v2/models/cached_chain/infer`, { method: 'POST', body: JSON.stringify(row([1, 1, 1, 2])) });
    assert.equal((await ask()).status, 200);
    assert.equal((await fetch(`${onDemand.url}/v2/repository/models/scale3/unload`, { method: 'POST', body: '{}' })).status, 200);
    const again = await ask();
    assert.equal(again.status, 200, await again.clone().text());
    assert.deepEqual(((await again.json()) as Json).outputs[0].data, [6, 6, 6, 12]);
  } finally {
    await onDemand.close();
  }
});

describe("the request's priority and timeout reach every step", () => {
  const timedOut = /^ensemble 'gated' step 1 \(model 'gate'\): model 'gate' version 1: Request timeout expired after (\d+) us in the queue/;

  test("a timeout applies in the step's queue as what is left of it, and fails the ensemble's request naming the step", async () => {
    const answer = await infer('gated', row([1, 2, 3, 4], { timeout: 200_000 }));
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    const match = timedOut.exec(answer.body.error);
    assert.ok(match, answer.body.error);
    // Step 0 took some of the 200 ms: step 1 was sent with the rest, not the whole.
    const left = Number(match[1]);
    assert.ok(left > 0 && left < 200_000, `${left} us`);
  });

  test("the priority picks the step's queue level: level 1 times out after its 1 ms, where level 2 would wait for company; the failed request's trace holds the step that answered and the one that failed", async () => {
    const traceId = 'f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2f2';
    const answer = await infer('gated', row([1, 2, 3, 4], { priority: 1 }), { traceparent: `00-${traceId}-c2c2c2c2c2c2c2c2-01` });
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.match(answer.body.error, /model 'gate' version 1: Request timeout expired after 1000 us in the queue/);
    const traced = spans.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    const ensemble = traced.find((span) => span.name === 'infer gated')!;
    assert.equal(ensemble.status.code, 2, 'the ensemble span is an error');
    const steps = traced.filter((span) => span.parentSpanContext?.spanId === ensemble.spanContext().spanId && span.name.startsWith('step '));
    // Each step once, as in a successful request's trace; the one that failed says with what.
    assert.deepEqual(
      steps.map((span) => [span.name, span.status.code, span.attributes['error.type']]).sort(),
      [
        ['step 0 scale2', 0, undefined],
        ['step 1 gate', 2, 'UNAVAILABLE'],
      ],
    );
  });

  test("a priority past a step's last level runs at its default level, as Triton runs it", async () => {
    // Level 2, the default, takes what is left of the request's own 100 ms; level 1 would have expired it after its own
    // 1 ms. The budget is wide so a busy machine's step 0 cannot spend it all before the gate.
    const answer = await infer('gated', row([1, 2, 3, 4], { priority: 3, timeout: 100_000 }));
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    const [, left] = /model 'gate' version 1: Request timeout expired after (\d+) us in the queue/.exec(answer.body.error) ?? [];
    assert.ok(Number(left) > 1000 && Number(left) <= 100_000, answer.body.error);
  });

  test('a priority or timeout that is not a non-negative integer is refused before anything runs', async () => {
    const before = await statsOf('scale2');
    const answer = await infer('gated', row([1, 2, 3, 4], { priority: -1 }));
    assert.equal(answer.status, 400, JSON.stringify(answer.body));
    assert.match(answer.body.error, /'priority' must be a non-negative integer/);
    const timeout = await infer('gated', row([1, 2, 3, 4], { timeout: -5 }));
    assert.equal(timeout.status, 400);
    assert.match(timeout.body.error, /request parameter 'timeout' must be a non-negative integer of microseconds, got -5/);
    assert.equal((await statsOf('scale2')).inference_count, before.inference_count);
  });

  test('a timeout spent before a step is sent fails the request there', async () => {
    const answer = await infer('gated', row([1, 2, 3, 4], { timeout: 1 }));
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.match(answer.body.error, /^ensemble 'gated' step \d \(model '\w+'\): the request's timeout of 1 us ran out \(\d+ us spent in the ensemble before this step\) before the step was sent/);
  });

  test('a request within its timeout is answered', async () => {
    // The gate waits for company: a direct request of the same level makes the batch.
    const [viaEnsemble, direct] = await Promise.all([
      infer('gated', row([1, 2, 3, 4], { timeout: 20_000_000, priority: 2 })),
      infer('gate', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }),
    ]);
    assert.equal(viaEnsemble.status, 200, JSON.stringify(viaEnsemble.body));
    assert.deepEqual(viaEnsemble.body.outputs[0].data, [10, 20, 30, 40]);
    assert.deepEqual(direct.body.outputs[0].data, [5, 5, 5, 5]);
  });
});

describe("an ensemble's cost per prediction", () => {
  const near = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) <= 1e-12 + 1e-9 * Math.abs(expected), `${what}: ${actual} ≠ ${expected}`);

  test("is the sum of its steps' core-seconds, in /stats, /metrics and the dashboard", async () => {
    const [scale2Before, scale3Before, chainBefore] = await Promise.all([statsOf('scale2'), statsOf('scale3'), statsOf('cost_chain')]);
    assert.equal(chainBefore.cost.compute_seconds, 0);
    const answer = await infer('cost_chain', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const [scale2After, scale3After, chain] = await Promise.all([statsOf('scale2'), statsOf('scale3'), statsOf('cost_chain')]);
    // Nothing else ran on the steps meanwhile: each executed once, for this request alone.
    assert.equal(scale2After.execution_count - scale2Before.execution_count, 1);
    assert.equal(scale3After.execution_count - scale3Before.execution_count, 1);
    const stepsSeconds = scale2After.cost.compute_seconds - scale2Before.cost.compute_seconds + (scale3After.cost.compute_seconds - scale3Before.cost.compute_seconds);
    assert.ok(stepsSeconds > 0);
    near(chain.cost.compute_seconds, stepsSeconds, 'compute_seconds');
    assert.equal(chain.inference_count, 2);
    near(chain.cost.compute_seconds_per_inference, stepsSeconds / 2, 'per inference');
    near(chain.cost.usd_per_1000_inferences, ((stepsSeconds / 2) * 1000 * PRICE) / 3600, 'dollars per 1,000');
    assert.equal(chain.execution_count, 0, 'the executions are its steps’');

    near((await metric('nereid_compute_seconds_total', 'cost_chain'))!, stepsSeconds, 'nereid_compute_seconds_total');
    near((await metric('nereid_cost_usd_per_1000_inferences', 'cost_chain'))!, chain.cost.usd_per_1000_inferences, 'nereid_cost_usd_per_1000_inferences');
    const snapshot = await dashboardSnapshot(served.server);
    const shown = snapshot.models.find((model) => model.name === 'cost_chain')!.versions[0].stats!;
    near(shown.cost.usd_per_1000_inferences!, chain.cost.usd_per_1000_inferences, 'the dashboard');
  });

  test("the dashboard's overview names an ensemble's steps, so its rows and its steps' read as one pipeline", async () => {
    const overview = await (await fetch(`${served.url}/dashboard/api/overview`)).json();
    const stepsOf = (name: string) => overview.models.find((model: Json) => model.name === name).versions[0].steps;
    assert.deepEqual(stepsOf('cost_chain'), ['scale2', 'scale3']);
    assert.deepEqual(stepsOf('garments'), ['fashion_mnist']);
    assert.equal(stepsOf('scale2'), undefined, 'a model that is no ensemble has no steps');
  });

  test('counts only its share of an execution it shared with other traffic', async () => {
    const [pairingBefore, ensembleBefore] = await Promise.all([statsOf('pairing'), statsOf('via_pairing')]);
    const [viaEnsemble, direct] = await Promise.all([infer('via_pairing', row([1, 2, 3, 4])), infer('pairing', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] })]);
    assert.deepEqual(viaEnsemble.body.outputs[0].data, [7, 14, 21, 28]);
    assert.deepEqual(direct.body.outputs[0].data, [7, 7, 7, 7]);
    const [pairingAfter, ensembleAfter] = await Promise.all([statsOf('pairing'), statsOf('via_pairing')]);
    assert.equal(pairingAfter.execution_count - pairingBefore.execution_count, 1, 'one execution of 2 rows');
    const execution = pairingAfter.cost.compute_seconds - pairingBefore.cost.compute_seconds;
    near(ensembleAfter.cost.compute_seconds - ensembleBefore.cost.compute_seconds, execution / 2, 'half of the shared execution');
    // Its compute durations are its step's for its request, as Triton sums them: the whole execution, which the step
    // counts once for each of the two requests it ran (its cost above is the share).
    for (const phase of ['compute_input', 'compute_infer', 'compute_output']) {
      const step = pairingAfter.inference_stats[phase].ns - pairingBefore.inference_stats[phase].ns;
      const ensemble = ensembleAfter.inference_stats[phase].ns - ensembleBefore.inference_stats[phase].ns;
      assert.ok(step > 0 && Math.abs(ensemble * 2 - step) <= 2, `${phase}: the ensemble's ${ensemble} ns is not half of the step's ${step} ns`);
    }
  });

  test('a cache hit costs nothing', async () => {
    await infer('cached_chain', row([9, 9, 9, 9]));
    const before = await statsOf('cached_chain');
    await infer('cached_chain', row([9, 9, 9, 9]));
    const after = await statsOf('cached_chain');
    assert.equal(after.inference_stats.cache_hit.count - before.inference_stats.cache_hit.count, 1);
    assert.equal(after.cost.compute_seconds, before.cost.compute_seconds);
  });
});

describe('a monitored step model', () => {
  test('sees the rows that came through an ensemble: its drift window and out-of-distribution counts grow', async () => {
    const monitorOf = async () => (await (await fetch(`${served.url}/v2/models/fashion_mnist/monitor`)).json()) as Json;
    const before = await monitorOf();
    assert.equal(before.monitored, true, JSON.stringify(before));
    const statsBefore = await statsOf('fashion_mnist');
    const images = await Promise.all(['sneaker.png', 'bag.png', 'cat.jpg'].map((file) => readFile(join(ROOT, 'examples', 'images', file))));
    const answer = await served.server.infer({ model: 'garments', inputs: [{ name: 'PHOTO', datatype: 'BYTES', shape: [3, 1], data: images }] });
    const scores = answer.outputs[0].data as Float32Array;
    const top = (rowIndex: number) => {
      const rowScores = [...scores.subarray(rowIndex * 10, rowIndex * 10 + 10)];
      return rowScores.indexOf(Math.max(...rowScores));
    };
    assert.deepEqual([top(0), top(1)], [7, 8], 'Sneaker and Bag');
    const after = await monitorOf();
    assert.equal(after.rows_since_load - before.rows_since_load, 3);
    const statsAfter = await statsOf('fashion_mnist');
    assert.equal(statsAfter.inference_count - statsBefore.inference_count, 3);
    // The cat is no garment: the step's detector flags it, as it would a direct request.
    assert.equal(after.ood.flagged_since_load - before.ood.flagged_since_load, 1);
  });

  test("lends the ensemble's answer its out-of-distribution verdict, named, as a direct request gets it: a cat is not answered as a bag unflagged", async () => {
    const post = async (model: string, file: string) => {
      const response = await fetch(`${served.url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: await readFile(join(ROOT, 'examples', 'images', file)) });
      const body = await response.json();
      assert.equal(response.status, 200, JSON.stringify(body));
      return body;
    };
    for (const [file, outOfDistribution] of [['cat.jpg', true], ['sneaker.png', false]] as const) {
      const direct = await post('fashion_mnist', file);
      const viaEnsemble = await post('garments', file);
      assert.equal(direct.parameters.ood, outOfDistribution, file);
      assert.deepEqual(viaEnsemble.parameters, { ...direct.parameters, ood_model: 'fashion_mnist' }, file);
      // A hit of the ensemble's response cache answers with the verdict stored beside its outputs.
      const hitsBefore = (await statsOf('garments')).inference_stats.cache_hit.count;
      assert.deepEqual((await post('garments', file)).parameters, viaEnsemble.parameters, `${file}, from the cache`);
      assert.equal((await statsOf('garments')).inference_stats.cache_hit.count, hitsBefore + 1);
    }
    // The ensemble itself judges nothing: the rows are counted once, by the step.
    assert.equal((await metric('nereid_ood_total', 'garments')) ?? 0, 0);
  });
});
