/**
 * TF.js graph models in a repository, end to end: a config that says only `backend: tfjs` is
 * completed from model.json (inputs, outputs, batching), the model answers V2 requests over real
 * HTTP through the batcher, and a model whose weights point out of its folder is UNAVAILABLE with
 * the reason while the others serve.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { tfjsAddSubModel, tfjsAffineModel, writeTfjsModel } from '../src/backends/tfjs-test-models.js';
import { startTestServer, type TestServer } from './support/test-server.js';

let testServer: TestServer;
before(async () => {
  testServer = await startTestServer({
    models: async (repoDir) => {
      await writeTfjsModel(join(repoDir, 'tfjs_addsub', '1'), tfjsAddSubModel());
      await writeFile(join(repoDir, 'tfjs_addsub', 'config.yaml'), 'backend: tfjs\n');
      await writeFile(join(repoDir, 'secret.bin'), new Uint8Array(32));
      await writeTfjsModel(join(repoDir, 'tfjs_escaping', '1'), tfjsAffineModel([1, 1, 1, 1], [0, 0, 0, 0], '../../secret.bin'));
      await writeFile(join(repoDir, 'tfjs_escaping', 'config.yaml'), 'backend: tfjs\n');
    },
  });
});
after(async () => testServer?.close());

const json = async (path: string, body?: unknown) => {
  const response = await fetch(`${testServer.url}${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
};

test("a config saying only 'backend: tfjs' is completed from model.json", async () => {
  const { status, body } = await json('/v2/models/tfjs_addsub/config');
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.backend, 'tfjs');
  assert.equal(body.platform, 'tfjs');
  assert.equal(body.max_batch_size, 4, 'every tensor has a dynamic first dimension: the default batch size');
  assert.ok(body.dynamic_batching, 'with the dynamic batcher');
  assert.deepEqual(
    body.input.map((input: { name: string; data_type: string; dims: number[] }) => [input.name, input.data_type, input.dims]),
    [
      ['INPUT0', 'TYPE_INT32', [16]],
      ['INPUT1', 'TYPE_INT32', [16]],
    ],
  );
  assert.deepEqual(body.output.map((output: { name: string }) => output.name), ['OUTPUT0', 'OUTPUT1']);
});

test('V2 requests at once are answered by the TF.js model, each with its own sums', async () => {
  const requests = Array.from({ length: 6 }, (_, index) => {
    const a = Array.from({ length: 16 }, (_, i) => i * index);
    const b = Array.from({ length: 16 }, (_, i) => 100 - i);
    return { a, b };
  });
  const answers = await Promise.all(
    requests.map(({ a, b }) =>
      json('/v2/models/tfjs_addsub/infer', {
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: a },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: b },
        ],
      }),
    ),
  );
  answers.forEach(({ status, body }, index) => {
    assert.equal(status, 200, JSON.stringify(body));
    const byName = Object.fromEntries(body.outputs.map((output: { name: string; data: number[] }) => [output.name, output.data]));
    assert.deepEqual(byName.OUTPUT0, requests[index].a.map((value, i) => value + requests[index].b[i]));
    assert.deepEqual(byName.OUTPUT1, requests[index].a.map((value, i) => value - requests[index].b[i]));
  });
  const { body: stats } = await json('/v2/models/tfjs_addsub/stats');
  assert.equal(stats.model_stats[0].inference_count, 6);
});

test('a wrong input is a 400 naming it; a model whose weights leave its folder is UNAVAILABLE with why', async () => {
  const wrong = await json('/v2/models/tfjs_addsub/infer', {
    inputs: [
      { name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: Array(16).fill(0) },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(0) },
    ],
  });
  assert.equal(wrong.status, 400);
  assert.match(wrong.body.error, /INPUT0.*INT32.*FP32/);
  const { body } = await json('/v2/models');
  const escaping = body.models.find((model: { name: string }) => model.name === 'tfjs_escaping');
  assert.equal(escaping.state, 'UNAVAILABLE');
  assert.match(escaping.reason, /weights path '\.\.\/\.\.\/secret\.bin' in model\.json must be a relative path inside the model's folder/);
});
