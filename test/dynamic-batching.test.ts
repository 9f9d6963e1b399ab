/**
 * Concurrent clients against a real server with dynamic batching and two instances: the server's
 * own statistics must show batches larger than 1, and every client must get its own answer.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { addSubConfig, addSubModel, embeddingModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer, type TestServer } from './support/test-server.js';

const BATCHED_CONFIG = addSubConfig('batched', {
  extra: `instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 20000 preferred_batch_size: [ 4, 8 ] }
`,
});

const QUEUE_CAPPED_CONFIG = `
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 300000 default_queue_policy { max_queue_size: 2 } }
`;

/** The tester's repro of Triton's rule: one instance, preferred [2,4], a delay no test waits out, room for 3 queued. */
const PREFERRED_CONFIG = `
max_batch_size: 8
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 600000000 default_queue_policy { max_queue_size: 3 } }
`;

/** A text model's embedding lookup: requests wait for company so that four of them form one batch. */
const EMBEDDING_CONFIG = `
max_batch_size: 8
input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "embedding" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 5000000 }
`;

/** The same lookup with its ids padded (pad_value): requests of different lengths batch together. */
const PADDED_CONFIG = `
max_batch_size: 8
input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] pad_value: 0 } ]
output [ { name: "embedding" data_type: TYPE_FP32 dims: [ -1, 2 ] padded: true } ]
dynamic_batching { preferred_batch_size: [ 3 ] max_queue_delay_microseconds: 5000000 }
`;

let server: TestServer;

before(async () => {
  server = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'batched', 1, addSubModel(), BATCHED_CONFIG);
      await writeModel(repo, 'capped', 1, addSubModel(), QUEUE_CAPPED_CONFIG);
      await writeModel(repo, 'preferred', 1, addSubModel(), PREFERRED_CONFIG);
      await writeModel(repo, 'embedding', 1, embeddingModel(10), EMBEDDING_CONFIG);
      await writeModel(repo, 'padded', 1, embeddingModel(10), PADDED_CONFIG);
    },
  });
});

after(() => server.close());

function inferBody(id: string, rows: number, base: number) {
  const data0 = Array.from({ length: rows * 16 }, (_, index) => base + index);
  const data1 = Array.from({ length: rows * 16 }, (_, index) => index % 7);
  return {
    data0,
    data1,
    body: JSON.stringify({
      id,
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [rows, 16], data: data0 },
        { name: 'INPUT1', datatype: 'INT32', shape: [rows, 16], data: data1 },
      ],
    }),
  };
}

async function stats(model: string) {
  const response = await fetch(`${server.url}/v2/models/${model}/stats`);
  assert.equal(response.status, 200);
  const body = (await response.json()) as {
    model_stats: { inference_count: number; execution_count: number; batch_stats: { batch_size: number; compute_infer: { count: number } }[] }[];
  };
  return body.model_stats[0];
}

test('concurrent requests run in batches larger than 1 and each client gets its own result', async () => {
  const clients = 40;
  const requests = Array.from({ length: clients }, (_, client) => {
    const rows = 1 + (client % 3); // multi-row requests are batched too
    const { body, data0, data1 } = inferBody(`client-${client}`, rows, client * 1000);
    return fetch(`${server.url}/v2/models/batched/infer`, { method: 'POST', body })
      .then(async (response) => ({ status: response.status, body: (await response.json()) as any, rows, data0, data1, client }));
  });
  const results = await Promise.all(requests);
  let rowsSent = 0;
  for (const result of results) {
    assert.equal(result.status, 200, JSON.stringify(result.body));
    assert.equal(result.body.id, `client-${result.client}`);
    const [sum, difference] = result.body.outputs;
    assert.deepEqual(sum.shape, [result.rows, 16]);
    assert.deepEqual(sum.data, result.data0.map((value: number, index: number) => value + result.data1[index]));
    assert.deepEqual(difference.data, result.data0.map((value: number, index: number) => value - result.data1[index]));
    rowsSent += result.rows;
  }
  const modelStats = await stats('batched');
  assert.equal(modelStats.inference_count, rowsSent);
  assert.ok(modelStats.execution_count < clients, `expected fewer executions than requests, got ${modelStats.execution_count}`);
  const largest = Math.max(...modelStats.batch_stats.map((batch) => batch.batch_size));
  assert.ok(largest > 1, `expected a batch larger than 1, got ${JSON.stringify(modelStats.batch_stats)}`);
  assert.ok(largest <= 8, 'no batch exceeds max_batch_size');
  const executions = modelStats.batch_stats.reduce((sum, batch) => sum + batch.compute_infer.count, 0);
  assert.equal(executions, modelStats.execution_count);
  const rowsExecuted = modelStats.batch_stats.reduce((sum, batch) => sum + batch.batch_size * batch.compute_infer.count, 0);
  assert.equal(rowsExecuted, rowsSent, 'batch_stats account for every row exactly once');
});

test('a full queue answers 503 with a clear message and the accepted requests still complete', async () => {
  // A long queue delay holds the first requests in the queue while the rest arrive and find it full.
  const sends = Array.from({ length: 6 }, (_, client) =>
    fetch(`${server.url}/v2/models/capped/infer`, { method: 'POST', body: inferBody(`c${client}`, 1, client).body }).then(
      async (response) => ({ status: response.status, body: (await response.json()) as { error?: string; outputs?: unknown[] } }),
    ),
  );
  const results = await Promise.all(sends);
  const refused = results.filter((result) => result.status === 503);
  const served = results.filter((result) => result.status === 200);
  assert.equal(refused.length, 4, `expected 4 refusals, got ${results.map((r) => r.status)}`);
  assert.equal(refused.length + served.length, results.length);
  for (const result of refused) assert.match(result.body.error!, /queue is full/);
  for (const result of served) assert.equal(result.body.outputs!.length, 2);
});

test('five requests at once with preferred [2,4] and room for 3: four are answered at once in preferred sizes, only the fifth waits for company', async () => {
  // Keep-alive sockets opened beforehand, as a client pool has them: the five requests then reach the server together.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });
  const send = (model: string, client: number) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const { body } = inferBody(`p${client}`, 1, client);
      const request = http.request(`${server.url}/v2/models/${model}/infer`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode!, body: text }));
      });
      request.on('error', reject);
      request.end(body);
    });
  try {
    for (const warm of await Promise.all([0, 1, 2, 3, 4, 5].map((client) => send('batched', client)))) assert.equal(warm.status, 200, warm.body);
    // A preferred size on its own goes at once: it warms the model up without waiting.
    for (const warm of await Promise.all([send('preferred', 0), send('preferred', 1)])) assert.equal(warm.status, 200, warm.body);
    const before = await stats('preferred');
    const executions = (model: typeof before, size: number) => model.batch_stats.find((batch) => batch.batch_size === size)?.compute_infer.count ?? 0;
    const answered: number[] = [];
    const sent = [0, 1, 2, 3, 4].map((client) => send('preferred', client).then((result) => (answered.push(client), result)));
    // The model's delay is ten minutes: the four can only be answered without waiting for it, the fifth only by company.
    while (answered.length < 4) await Promise.race(sent.filter((_, client) => !answered.includes(client)));
    assert.equal(answered.length, 4, 'the fifth was answered alone instead of waiting for company');
    const lone = [0, 1, 2, 3, 4].find((client) => !answered.includes(client))!;
    const whileWaiting = await stats('preferred');
    assert.equal(executions(whileWaiting, 1) - executions(before, 1), 0, 'no batch of one ran');
    assert.equal(executions(whileWaiting, 2) - executions(before, 2) + 2 * (executions(whileWaiting, 4) - executions(before, 4)), 2, 'the four rows ran in preferred sizes');
    assert.equal(answered.includes(lone), false, 'the fifth still waits');
    // A sixth request is the company: the two make a preferred batch of two.
    const [fifth, sixth] = await Promise.all([sent[lone], send('preferred', 5)]);
    for (const result of [fifth, sixth, ...(await Promise.all(sent))]) assert.equal(result.status, 200, result.body);
    const after = await stats('preferred');
    assert.equal(executions(after, 1) - executions(before, 1), 0, JSON.stringify(after.batch_stats));
    assert.equal(executions(after, 2) - executions(before, 2) + 2 * (executions(after, 4) - executions(before, 4)), 3, 'the six rows ran in preferred sizes');
  } finally {
    agent.destroy();
  }
});

test('request priority and timeout parameters are validated by the scheduler', async () => {
  const { body } = inferBody('p', 1, 0);
  const parsed = JSON.parse(body);
  parsed.parameters = { priority: 'high' };
  const response = await fetch(`${server.url}/v2/models/batched/infer`, { method: 'POST', body: JSON.stringify(parsed) });
  assert.equal(response.status, 400);
  assert.match(((await response.json()) as { error: string }).error, /priority/);
});

test("one request's token id beyond the vocabulary fails it alone, with 400 and ONNX Runtime's sentence; the others of its batch are answered", async () => {
  const ids = [[1, 2], [3, 50], [4, 5], [6, 7]];
  const answers = await Promise.all(
    ids.map(async (row) => {
      const body = JSON.stringify({ inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: row }] });
      const response = await fetch(`${server.url}/v2/models/embedding/infer`, { method: 'POST', body });
      return { status: response.status, body: (await response.json()) as { error?: string; outputs?: { data: number[] }[] } };
    }),
  );
  assert.deepEqual(answers.map((answer) => answer.status), [200, 400, 200, 200]);
  assert.deepEqual(answers[0].body.outputs?.[0].data, [1, -1, 2, -2]);
  assert.deepEqual(answers[3].body.outputs?.[0].data, [6, -6, 7, -7]);
  const refusal = answers[1].body.error ?? '';
  assert.match(refusal, /the model cannot run on these inputs: .*indices element out of data bounds, idx=50/);
  assert.doesNotMatch(refusal, /onnxruntime_src|\.cc:\d|\n$/, 'no C++ source location, no trailing newline');
  const { model_stats } = (await (await fetch(`${server.url}/v2/models/embedding/stats`)).json()) as { model_stats: { inference_stats: { success: { count: number }; fail: { count: number } } }[] };
  assert.deepEqual([model_stats[0].inference_stats.success.count, model_stats[0].inference_stats.fail.count], [3, 1]);
});

test('with pad_value, requests of lengths 3, 1 and 5 run as one batch, each answered at its own length', async () => {
  const ids = [[1, 2, 3], [9], [4, 5, 6, 7, 8]];
  const answers = await Promise.all(
    ids.map(async (row) => {
      const body = JSON.stringify({ inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, row.length], data: row }] });
      const response = await fetch(`${server.url}/v2/models/padded/infer`, { method: 'POST', body });
      return (await response.json()) as { outputs: { shape: number[]; data: number[] }[] };
    }),
  );
  answers.forEach((answer, index) => {
    assert.deepEqual(answer.outputs[0].shape, [1, ids[index].length, 2]);
    assert.deepEqual(answer.outputs[0].data, ids[index].flatMap((id) => [id, -id]));
  });
  const { model_stats } = (await (await fetch(`${server.url}/v2/models/padded/stats`)).json()) as { model_stats: { inference_count: number; execution_count: number }[] };
  assert.deepEqual([model_stats[0].inference_count, model_stats[0].execution_count], [3, 1], 'three lengths, one execution');
});
