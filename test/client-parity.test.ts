/**
 * HttpClient and GrpcClient asked the same thing of the same server answer the same objects: model metadata (shapes as
 * numbers), the repository index (a field the server did not set is absent, not ''), statistics and the config (64-bit
 * numbers as numbers, no oneof markers, no null for an unset message), and a stream's answers carry their request's id.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { GrpcClient, HttpClient } from '../src/client/index.js';
import { startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer, writeStandardModels, type TestServer } from './support/test-server.js';

let served: TestServer;
let endpoint: GrpcEndpoint;
let http: HttpClient;
let grpc: GrpcClient;

before(async () => {
  // Explicit control: the index then holds every kind of row — loaded, never loaded (a name only), failed versions,
  // a failed config (no version), unloaded.
  served = await startTestServer({ models: writeStandardModels, server: { modelControlMode: 'explicit', loadModels: ['simple', 'identity_int64', 'multi_all', 'yaml_scale'] } });
  endpoint = await startGrpcEndpoint(served.server);
  http = new HttpClient({ url: served.url });
  grpc = new GrpcClient({ address: `127.0.0.1:${endpoint.port}` });
  await assert.rejects(http.loadModel('broken'));
  await assert.rejects(http.loadModel('bad_config'));
  await http.loadModel('json_addsub');
  await http.unloadModel('json_addsub');
});

after(async () => {
  grpc.close();
  http.close();
  await endpoint.close();
  await served.close();
});

const SIMPLE_INPUTS = {
  INPUT0: { datatype: 'INT32' as const, shape: [1, 16], data: new Int32Array(16).fill(1) },
  INPUT1: { datatype: 'INT32' as const, shape: [1, 16], data: new Int32Array(16) },
};

/**
 * Where both answers hold a key, the values are equal, down to every leaf; answers the keys only the gRPC answer holds,
 * with their values (HTTP's JSON may hold more: Nereid's additions the protocol's messages have no field for).
 */
function commonPartsEqual(overGrpc: unknown, overHttp: unknown, path = ''): [string, unknown][] {
  if (typeof overGrpc !== 'object' || overGrpc === null || typeof overHttp !== 'object' || overHttp === null) {
    assert.deepEqual(overGrpc, overHttp, `at ${path || 'the top'}`);
    return [];
  }
  assert.equal(Array.isArray(overGrpc), Array.isArray(overHttp), `at ${path}: a list on one side only`);
  if (Array.isArray(overGrpc)) assert.equal(overGrpc.length, (overHttp as unknown[]).length, `at ${path}: lists of different lengths`);
  const onlyGrpc: [string, unknown][] = [];
  for (const [key, value] of Object.entries(overGrpc)) {
    const where = path ? `${path}.${key}` : key;
    if (!(key in overHttp)) onlyGrpc.push([where, value]);
    else onlyGrpc.push(...commonPartsEqual(value, (overHttp as Record<string, unknown>)[key], where));
  }
  return onlyGrpc;
}

test('modelMetadata: the same object over HTTP and gRPC, shapes as numbers', async () => {
  for (const [model, version] of [['simple'], ['identity_int64'], ['multi_all'], ['multi_all', '1'], ['yaml_scale']] as const) {
    const overGrpc = await grpc.modelMetadata(model, version);
    assert.deepEqual(overGrpc, await http.modelMetadata(model, version), `${model} ${version ?? ''}`);
    assert.ok((overGrpc.inputs as { shape: unknown[] }[]).every((input) => input.shape.every((dim) => typeof dim === 'number')));
  }
});

test('repositoryIndex: the same rows over HTTP and gRPC, a field the server did not set absent on both', async () => {
  const overHttp = await http.repositoryIndex();
  assert.deepEqual(await grpc.repositoryIndex(), overHttp);
  assert.deepEqual(await grpc.repositoryIndex(true), await http.repositoryIndex(true));
  const row = (name: string) => overHttp.filter((entry) => entry.name === name);
  // The kinds of row, as Triton lists them.
  assert.deepEqual(row('identity_fp32'), [{ name: 'identity_fp32' }], 'never loaded: its name only');
  assert.deepEqual(row('simple'), [{ name: 'simple', version: '1', state: 'READY', reason: '' }]);
  assert.deepEqual(row('json_addsub'), [{ name: 'json_addsub', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' }]);
  assert.deepEqual(Object.keys(row('bad_config')[0]!), ['name', 'state', 'reason'], 'a config that failed: no version');
  assert.deepEqual(Object.keys(row('broken')[0]!), ['name', 'version', 'state', 'reason']);
});

test('modelConfig: every field both answers hold is equal (64-bit numbers as numbers, no oneof markers, no null)', async () => {
  for (const model of ['simple', 'identity_int64', 'multi_all', 'yaml_scale']) {
    const overGrpc = await grpc.modelConfig(model);
    const onlyGrpc = commonPartsEqual(overGrpc, await http.modelConfig(model));
    // Proto3 has no "absent" for a scalar, list or map: what the JSON leaves out, a message holds as its zero value.
    const zero = (value: unknown) => value === '' || value === false || value === 0 || (typeof value === 'object' && value !== null && Object.keys(value).length === 0);
    assert.deepEqual(onlyGrpc.filter(([, value]) => !zero(value)), [], `${model}: fields only the gRPC answer holds`);
  }
});

test('modelStatistics: every count and duration both answers hold is equal, as numbers', async () => {
  await http.infer('simple', SIMPLE_INPUTS);
  await grpc.infer('simple', SIMPLE_INPUTS);
  for (const [model, version] of [['simple'], ['simple', '1'], ['identity_int64']] as const) {
    const overGrpc = await grpc.modelStatistics(model, version);
    assert.deepEqual(commonPartsEqual(overGrpc, await http.modelStatistics(model, version)), [], model);
  }
  // No model name (undefined or '', as tritonclient's model_name="") is every model's statistics, over both.
  const every = await http.modelStatistics('');
  assert.deepEqual(commonPartsEqual(await grpc.modelStatistics(''), every), []);
  assert.deepEqual(every, await http.modelStatistics());
  assert.deepEqual(every.model_stats.map((entry) => entry.name), ['identity_int64', 'multi_all', 'multi_all', 'simple', 'yaml_scale']);
  const [stats] = (await grpc.modelStatistics('simple')).model_stats;
  assert.equal(stats!.inference_count, 2);
  assert.equal(typeof stats!.last_inference, 'number');
});

test('a gRPC stream answers each request with its id, a failed one too', async () => {
  const requests = [
    { model: 'simple', inputs: SIMPLE_INPUTS, options: { id: 'ok-1' } },
    { model: 'no_such_model', inputs: SIMPLE_INPUTS, options: { id: 'unknown-model' } },
    { model: 'simple', inputs: { INPUT0: SIMPLE_INPUTS.INPUT0 }, options: { id: 'missing-input' } },
    { model: 'simple', inputs: SIMPLE_INPUTS },
  ];
  const answers = [];
  for await (const answer of grpc.stream(requests)) answers.push(answer);
  assert.deepEqual(
    answers.map((answer) => ('error' in answer ? ['error', answer.id] : ['ok', answer.id])),
    [['ok', 'ok-1'], ['error', 'unknown-model'], ['error', 'missing-input'], ['ok', undefined]],
  );
  // Unary: the same id as HTTP's answer.
  assert.equal((await grpc.infer('simple', SIMPLE_INPUTS, { id: 'unary' })).id, (await http.infer('simple', SIMPLE_INPUTS, { id: 'unary' })).id);
});
