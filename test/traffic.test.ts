/**
 * Traffic policies over real HTTP: a weighted canary between two versions, sticky by a request
 * parameter, and a shadow version that gets a copy of each request after the answer, compared
 * with the primary in /v2/models/{m}/compare, and whose failures never reach clients.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PrometheusMetrics } from '../src/observability/prometheus-metrics.js';
import { addSubModel, scaleModel, writeModel } from '../src/onnx/test-models.js';
import { runCli } from './support/cli-server.js';
import { startTestServer, type TestServer } from './support/test-server.js';

let served: TestServer;
const metrics = new PrometheusMetrics({ processMetrics: false });

before(async () => {
  served = await startTestServer({
    server: { observers: [metrics.observer] },
    models: async (repo) => {
      const yaml = (traffic: string) => ({ 'config.yaml': `max_batch_size: 8\nversion_policy: { all: {} }\ntraffic: ${traffic}\n` });
      await writeModel(repo, 'canary', 1, scaleModel(2), undefined, yaml('{ weights: { "1": 90, "2": 10 } }'));
      await writeModel(repo, 'canary', 2, scaleModel(3));
      await writeModel(repo, 'sticky', 1, scaleModel(2), undefined, yaml('{ weights: { "1": 50, "2": 50 }, sticky_parameter: user }'));
      await writeModel(repo, 'sticky', 2, scaleModel(3));
      await writeModel(repo, 'shadowed', 1, scaleModel(2), undefined, yaml('{ weights: { "1": 1 }, shadow: { version: 2 } }'));
      await writeModel(repo, 'shadowed', 2, scaleModel(3));
      // The shadow takes other inputs altogether: every copy fails, and no client may notice.
      await writeModel(repo, 'broken_shadow', 1, scaleModel(2), undefined, yaml('{ weights: { "1": 1 }, shadow: { version: 2 } }'));
      await writeModel(repo, 'broken_shadow', 2, addSubModel());
    },
  });
  metrics.attach(served.server);
});

after(() => served.close());

async function infer(model: string, parameters?: Record<string, string>): Promise<{ status: number; version: string; data: number[] }> {
  const response = await fetch(`${served.url}/v2/models/${model}/infer`, {
    method: 'POST',
    body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }], parameters }),
  });
  const body = (await response.json()) as { model_version: string; outputs: { data: number[] }[] };
  return { status: response.status, version: body.model_version, data: body.outputs?.[0]?.data };
}

test('a 90/10 canary over 2,000 requests lands within statistical bounds, and a named version is always honoured', async () => {
  const versions: string[] = [];
  for (let round = 0; round < 40; round++) versions.push(...(await Promise.all(Array.from({ length: 50 }, () => infer('canary')))).map((answer) => answer.version));
  const second = versions.filter((version) => version === '2').length;
  // Binomial(2000, 0.1): mean 200, standard deviation 13.4; 4.5 of them either side.
  assert.ok(second >= 140 && second <= 260, `version 2 answered ${second} of 2000`);
  assert.equal(versions.length, 2000);
  const named = await fetch(`${served.url}/v2/models/canary/versions/2/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }) });
  assert.equal(((await named.json()) as { model_version: string }).model_version, '2');
});

test('with a sticky parameter, one user stays on one version while users spread over both', async () => {
  const byUser = new Map<string, Set<string>>();
  for (let user = 0; user < 40; user++) {
    for (let repeat = 0; repeat < 5; repeat++) {
      const { version } = await infer('sticky', { user: `user-${user}` });
      byUser.set(`user-${user}`, (byUser.get(`user-${user}`) ?? new Set()).add(version));
    }
  }
  assert.ok([...byUser.values()].every((versions) => versions.size === 1), 'each user saw one version');
  const onTwo = [...byUser.values()].filter((versions) => versions.has('2')).length;
  assert.ok(onTwo >= 8 && onTwo <= 32, `${onTwo} of 40 users on version 2`);
});

test('a shadow gets a copy of each answered request, compared in /compare; a failing shadow never fails a client', async () => {
  for (let index = 0; index < 30; index++) {
    const answer = await infer('shadowed');
    assert.equal(answer.version, '1');
    assert.deepEqual(answer.data, [2, 4, 6, 8]);
  }
  const compare = async (model: string) => {
    // Copies finish after their answers: wait (bounded) until the last one is counted.
    for (let attempt = 0; attempt < 50; attempt++) {
      const body = (await (await fetch(`${served.url}/v2/models/${model}/compare`)).json()) as { shadows: { compared: number; failed: number; skipped: number }[] };
      const [shadow] = body.shadows;
      if (shadow && shadow.compared + shadow.failed + shadow.skipped >= 30) return body;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`the shadow of ${model} did not account for 30 copies`);
  };
  const { shadows } = (await compare('shadowed')) as unknown as { shadows: { primary_version: string; shadow_version: string; compared: number; failed: number; mean_abs_delta: number; max_abs_delta: number }[] };
  assert.equal(shadows[0].primary_version, '1');
  assert.equal(shadows[0].shadow_version, '2');
  assert.equal(shadows[0].failed, 0);
  // ×3 against ×2 of [1, 2, 3, 4]: differences 1, 2, 3, 4.
  assert.equal(shadows[0].max_abs_delta, 4);
  assert.equal(shadows[0].mean_abs_delta, 2.5);
  assert.match(await metrics.metrics(), /nereid_shadow_compared_total\{model="shadowed",primary_version="1",shadow_version="2"\} 30/);

  for (let index = 0; index < 30; index++) assert.equal((await infer('broken_shadow')).status, 200);
  const broken = (await compare('broken_shadow')) as unknown as { shadows: { failed: number; compared: number }[] };
  assert.equal(broken.shadows[0].compared, 0);
  assert.ok(broken.shadows[0].failed > 0, JSON.stringify(broken));
});

test('nereid promote shifts the weights of a running server (explicit model control); without it the server refuses', async () => {
  const refused = await runCli(['promote', '--model', 'canary', '--weights', '2=1', '--url', served.url], 60_000);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /modelControlMode: 'explicit'/);

  const explicit = await startTestServer({
    repoDir: served.repoDir,
    server: { modelControlMode: 'explicit', loadModels: ['canary'] },
  });
  try {
    const promoted = await runCli(['promote', '--model', 'canary', '--weights', '1=0,2=1', '--url', explicit.url], 60_000);
    assert.equal(promoted.code, 0, promoted.stderr + promoted.stdout);
    assert.deepEqual(JSON.parse(promoted.stdout), { model: 'canary', weights: { '1': 0, '2': 1 } });
    const versions = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const response = await fetch(`${explicit.url}/v2/models/canary/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }) });
        return ((await response.json()) as { model_version: string }).model_version;
      }),
    );
    assert.deepEqual(new Set(versions), new Set(['2']));
    const unknown = await runCli(['promote', '--model', 'canary', '--weights', '7=1', '--url', explicit.url], 60_000);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /version 7 of 'canary' is not loaded \(loaded: 1, 2\)/);
  } finally {
    await explicit.close();
  }
});

test('the repository index gives each weighed version its share of unversioned requests', async () => {
  const rows = (await (await fetch(`${served.url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { name: string; version: string; traffic_share?: number }[];
  const canary = rows.filter((row) => row.name === 'canary').map((row) => [row.version, row.traffic_share]);
  assert.deepEqual(canary, [
    ['1', 0.9],
    ['2', 0.1],
  ]);
  assert.equal(rows.find((row) => row.name === 'shadowed' && row.version === '2')?.traffic_share, 0, 'a shadow answers nobody');
});
