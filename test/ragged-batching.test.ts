/**
 * Triton's ragged batching against a real server over HTTP: requests whose inputs differ in length
 * run in one execution, the model reading where each request's elements lie from the batch inputs
 * the server computes, and each client gets the answer for its own elements.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { raggedSumModel, writeModel } from '../src/onnx/test-models.js';
import { startGrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer, type TestServer } from './support/test-server.js';

// Four requests make the preferred batch: it goes as soon as the fourth arrives, and not before.
const RAGGED_CONFIG = `
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
batch_input [
  { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "OFFSETS" data_type: TYPE_INT32 source_input: "INPUT" },
  { kind: BATCH_ELEMENT_COUNT target_name: "COUNT" data_type: TYPE_INT32 source_input: "INPUT" }
]
output [
  { name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "ELEMENTS" data_type: TYPE_INT32 dims: [ 1 ] }
]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 60000000 }
`;

const UNBATCHED_RAGGED_CONFIG = RAGGED_CONFIG.replace(/dynamic_batching.*\n/, '');

let server: TestServer;

before(async () => {
  server = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'ragged', 1, raggedSumModel(), RAGGED_CONFIG);
      await writeModel(repo, 'ragged_alone', 1, raggedSumModel(), UNBATCHED_RAGGED_CONFIG);
    },
  });
});

after(() => server.close());

function infer(model: string, values: number[]) {
  const body = JSON.stringify({ inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [1, values.length], data: values }] });
  return fetch(`${server.url}/v2/models/${model}/infer`, { method: 'POST', body }).then(async (response) => ({ status: response.status, body: (await response.json()) as any }));
}

async function stats(model: string) {
  const response = await fetch(`${server.url}/v2/models/${model}/stats`);
  return ((await response.json()) as any).model_stats[0] as { inference_count: number; execution_count: number };
}

test('requests of different lengths run as one batch and each gets the sum and count of its own elements', async () => {
  const lengths = [3, 1, 7, 4];
  const inputs = lengths.map((length, request) => Array.from({ length }, (_, index) => (request + 1) * 10 + index));
  const results = await Promise.all(inputs.map((values) => infer('ragged', values)));
  results.forEach((result, request) => {
    assert.equal(result.status, 200, JSON.stringify(result.body));
    const sum = result.body.outputs.find((output: any) => output.name === 'SUM');
    const elements = result.body.outputs.find((output: any) => output.name === 'ELEMENTS');
    assert.deepEqual(sum.shape, [1, 1]);
    assert.deepEqual(sum.data, [inputs[request].reduce((a, b) => a + b, 0)]);
    assert.deepEqual(elements.data, [lengths[request]]);
  });
  const { inference_count, execution_count } = await stats('ragged');
  assert.equal(inference_count, 4);
  assert.equal(execution_count, 1, 'the four requests of different lengths ran in one execution');
});

test('a request on its own is flattened and given its batch inputs too', async () => {
  const result = await infer('ragged_alone', [1.5, 2.5, 4]);
  assert.equal(result.status, 200, JSON.stringify(result.body));
  assert.deepEqual(result.body.outputs.find((output: any) => output.name === 'SUM').data, [8]);
  assert.deepEqual(result.body.outputs.find((output: any) => output.name === 'ELEMENTS').data, [3]);
});

test('a request of several rows is refused: batch inputs counting per request could not tell its rows apart', async () => {
  const body = JSON.stringify({ inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }] });
  const response = await fetch(`${server.url}/v2/models/ragged_alone/infer`, { method: 'POST', body });
  assert.equal(response.status, 400);
  assert.equal(
    ((await response.json()) as { error: string }).error,
    "model 'ragged_alone' takes one row per request: its batch input 'OFFSETS' (BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO of 'INPUT') counts elements per request, so the model could not tell 2 rows of one request apart; send each row as a request of its own (batch size 1)",
  );
});

test('a client may not send a batch input: the server computes it', async () => {
  const body = JSON.stringify({
    inputs: [
      { name: 'INPUT', datatype: 'FP32', shape: [1, 2], data: [1, 2] },
      { name: 'COUNT', datatype: 'INT32', shape: [1], data: [2] },
    ],
  });
  const response = await fetch(`${server.url}/v2/models/ragged_alone/infer`, { method: 'POST', body });
  assert.equal(response.status, 400);
  assert.match(((await response.json()) as { error: string }).error, /'COUNT' is computed by the server for each batch \(batch_input BATCH_ELEMENT_COUNT\)/);
});

test('the model config answers with the ragged input and the batch inputs', async () => {
  const response = await fetch(`${server.url}/v2/models/ragged/config`);
  const config = (await response.json()) as any;
  assert.equal(config.input[0].allow_ragged_batch, true);
  assert.deepEqual(
    config.batch_input.map((entry: any) => [entry.kind, entry.target_name, entry.source_input]),
    [
      ['BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO', ['OFFSETS'], ['INPUT']],
      ['BATCH_ELEMENT_COUNT', ['COUNT'], ['INPUT']],
    ],
  );
  assert.deepEqual(config.input.map((input: any) => input.name), ['INPUT'], 'batch input targets are not inputs clients send');
});

test('gRPC ModelConfig carries allow_ragged_batch and batch_input in model_config.proto form', async () => {
  const grpc = await startGrpcEndpoint(server.server);
  try {
    const { config } = await new Promise<any>((resolve, reject) =>
      grpc.client.ModelConfig({ name: 'ragged' }, (error: Error | null, reply: unknown) => (error ? reject(error) : resolve(reply))),
    );
    assert.equal(config.input[0].allow_ragged_batch, true);
    assert.deepEqual(config.batch_input[1], { kind: 'BATCH_ELEMENT_COUNT', target_name: ['COUNT'], data_type: 'TYPE_INT32', source_input: ['INPUT'] });
  } finally {
    await grpc.close();
  }
});
