/**
 * The shape of Nereid under overload and hostile bodies, over real HTTP and gRPC: refusals are
 * decided from the headers before the body is read, answered 503 with Retry-After (gRPC
 * UNAVAILABLE with a retry pushback), the queue stays bounded by count and bytes, compressed
 * bodies are counted as they inflate with a cap on how many inflate at once, and the server is
 * back to empty and serving once the load stops. No test measures a duration.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { createGrpcFrontEnd, type GrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { RawConnection } from './support/raw-http.js';
import { startTestServer, type TestServer } from './support/test-server.js';

/** Holds requests in its queue for a long while (its batch never fills), at most two of them. */
const HOLDING_CONFIG = `
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 1500000 default_queue_policy { max_queue_size: 2 } }
`;

async function writeModels(repo: string): Promise<void> {
  await writeModel(repo, 'holding', 1, scaleModel(2), HOLDING_CONFIG);
  await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 8\n');
}

const inferBody = (rows = 1) =>
  JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 4], data: Array(rows * 4).fill(1) }] });

describe('overload over HTTP', () => {
  let served: TestServer;
  const warnings: string[] = [];
  before(async () => {
    served = await startTestServer({
      models: writeModels,
      server: { maxInflightBytes: 64 * 1024, logger: pino({ level: 'warn' }, new Writable({ write: (chunk, _encoding, done) => (warnings.push(JSON.parse(String(chunk)).msg), done()) })) },
      http: { maxBodyBytes: 1024 * 1024, maxConcurrentInflations: 1 },
    });
  });
  after(() => served?.close());

  test('a full queue refuses from the headers, before the body is sent: 503 with Retry-After; the queue holds no more than its limit and drains', async () => {
    const url = `${served.url}/v2/models/holding/infer`;
    const failures = async () => ((await (await fetch(`${served.url}/v2/models/holding/stats`)).json()) as { model_stats: { inference_stats: { fail: { count: number } } }[] }).model_stats[0].inference_stats.fail.count;
    const failedBefore = await failures();
    const waiting = [fetch(url, { method: 'POST', body: inferBody() }), fetch(url, { method: 'POST', body: inferBody() })];
    const holding = served.server.model('holding');
    while (holding.queued < 2) await new Promise((resolve) => setImmediate(resolve));
    const refused = new RawConnection(served.url);
    const answer = await refused.request('POST', '/v2/models/holding/infer', { 'content-type': 'application/json', 'content-length': 10_000 }); // not a byte of the body sent
    refused.close();
    assert.equal(answer.status, 503);
    assert.ok(Number(answer.headers['retry-after']) >= 1, JSON.stringify(answer.headers));
    assert.match(JSON.parse(answer.body).error, /model 'holding' version 1: Exceeds maximum queue size: the queue is full \(2 requests waiting, the most the model config's dynamic_batching\.default_queue_policy\.max_queue_size allows\); retry in \d+ s/);
    // A burst meets the same bound: every request is answered, each either served or refused with a hint.
    const burst = await Promise.all(Array.from({ length: 40 }, () => fetch(url, { method: 'POST', body: inferBody() })));
    for (const response of burst) {
      assert.equal(response.status, 503);
      assert.ok(response.headers.get('retry-after'));
      await response.arrayBuffer();
    }
    assert.ok(holding.queued <= 2);
    // Refused from their headers, they never ran; each is still a failed request in the statistics (and the metrics).
    assert.equal((await failures()) - failedBefore, 41);
    // Without an access log too, the operator hears of it: one warning with the reason, not 41 (the rest are summed up later).
    const refusedLines = warnings.filter((message) => message.startsWith("model 'holding' version 1 refused"));
    assert.equal(refusedLines.length, 1, refusedLines.join('\n'));
    assert.match(refusedLines[0], /^model 'holding' version 1 refused a request: Exceeds maximum queue size: the queue is full \(2 requests waiting, the most the model config's dynamic_batching\.default_queue_policy\.max_queue_size allows\)/);
    for (const response of await Promise.all(waiting)) assert.equal(response.status, 200, await response.text());
    // Recovered: nothing queued or held, and the next request is served.
    assert.equal(holding.queued, 0);
    assert.equal(served.server.bodies.inUse, 0);
    const next = await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: inferBody() });
    assert.equal(next.status, 200);
  });

  test('bodies held across the server are bounded: a request whose announced body would pass --max-inflight-bytes is refused before it is read', async () => {
    const held = new RawConnection(served.url);
    const heldAnswer = held.request('POST', '/v2/models/scale/infer', { 'content-type': 'application/json', 'content-length': 40 * 1024 });
    while (served.server.bodies.inUse === 0) await new Promise((resolve) => setImmediate(resolve));
    const refused = await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: inferBody().padEnd(30 * 1024, ' ') });
    assert.equal(refused.status, 503);
    assert.match((await refused.json()).error, /would pass its limit of 65536 \(maxInflightBytes\)/);
    held.send(inferBody().padEnd(40 * 1024, ' '));
    assert.equal((await heldAnswer).status, 200);
    held.close();
    while (served.server.bodies.inUse !== 0) await new Promise((resolve) => setImmediate(resolve));
    const served2 = await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: inferBody().padEnd(30 * 1024, ' ') });
    assert.equal(served2.status, 200);
  });

  test('a gzip body is counted as it inflates: a bomb is refused once its inflated bytes pass the budget, without inflating the rest', async () => {
    // 8 MiB of spaces after a valid request, compressed to a few KiB.
    const bomb = gzipSync(Buffer.from(inferBody().padEnd(8 * 1024 * 1024, ' ')));
    assert.ok(bomb.length < 64 * 1024);
    const response = await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: bomb, headers: { 'content-encoding': 'gzip' } });
    assert.ok(response.status === 503 || response.status === 413, String(response.status));
    assert.match((await response.json()).error, /maxInflightBytes|larger than the limit/);
    while (served.server.bodies.inUse !== 0) await new Promise((resolve) => setImmediate(resolve));
    // A small gzip body, and one of unannounced length, are still served.
    const small = await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: gzipSync(inferBody()), headers: { 'content-encoding': 'gzip' } });
    assert.equal(small.status, 200, await small.clone().text());
    assert.deepEqual((await small.json()).outputs[0].data, [2, 2, 2, 2]);
  });

  test('a gzip body bigger than the body limit is 413, and inflations at once are capped: one more is 503', async () => {
    const tooLarge = await fetch(`${served.url}/v2/models/scale/infer`, {
      method: 'POST',
      body: gzipSync(Buffer.alloc(2 * 1024 * 1024, ' ')),
      headers: { 'content-encoding': 'gzip' },
    });
    assert.ok([413, 503].includes(tooLarge.status), String(tooLarge.status));
    await tooLarge.arrayBuffer();
    const whole = gzipSync(inferBody());
    const slow = new RawConnection(served.url);
    const slowAnswer = slow.request('POST', '/v2/models/scale/infer', { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': whole.length }, whole.subarray(0, 10)); // inflating, and stalled
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: whole, headers: { 'content-encoding': 'gzip' } });
    assert.equal(second.status, 503);
    assert.match((await second.json()).error, /1 compressed request bodies are being inflated/);
    slow.send(whole.subarray(10));
    assert.equal((await slowAnswer).status, 200);
    slow.close();
    const third = await fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: whole, headers: { 'content-encoding': 'gzip' } });
    assert.equal(third.status, 200);
  });

  test('a chunked body of unannounced length is counted as it arrives', async () => {
    const chunked = new RawConnection(served.url);
    const chunkedAnswer = chunked.request('POST', '/v2/models/scale/infer', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const chunk = Buffer.alloc(32 * 1024, ' ');
    for (let i = 0; i < 3; i++) chunked.send(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    chunked.send('0\r\n\r\n');
    const answer = await chunkedAnswer;
    chunked.close();
    assert.equal(answer.status, 503);
    assert.match(JSON.parse(answer.body).error, /\(maxInflightBytes\)/);
    while (served.server.bodies.inUse !== 0) await new Promise((resolve) => setImmediate(resolve));
  });

  test('an unknown model is refused from the headers too', async () => {
    const refused = new RawConnection(served.url);
    const answer = await refused.request('POST', '/v2/models/nope/infer', { 'content-type': 'application/json', 'content-length': 10_000 });
    refused.close();
    assert.equal(answer.status, 404);
  });
});

describe('overload over gRPC', () => {
  let served: TestServer;
  let front: GrpcFrontEnd;
  let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  before(async () => {
    served = await startTestServer({ models: writeModels });
    front = createGrpcFrontEnd(served.server);
    const port = await front.listen('127.0.0.1', 0);
    const { Client } = loadInferenceProto();
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as typeof client;
  });
  after(async () => {
    client?.close();
    await front?.close();
    await served?.close();
  });

  const infer = (model: string) =>
    new Promise<{ error?: grpc.ServiceError }>((resolve) => {
      const raw = Buffer.from(new Float32Array([1, 1, 1, 1]).buffer);
      client.ModelInfer(
        { model_name: model, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [raw] },
        (error: grpc.ServiceError | null) => resolve({ error: error ?? undefined }),
      );
    });

  test('a full queue is UNAVAILABLE with grpc-retry-pushback-ms, and the calls it holds are answered', async () => {
    const waiting = [infer('holding'), infer('holding')];
    const holding = served.server.model('holding');
    while (holding.queued < 2) await new Promise((resolve) => setImmediate(resolve));
    const { error } = await infer('holding');
    assert.equal(error?.code, grpc.status.UNAVAILABLE);
    assert.match(error!.details, /the queue is full/);
    assert.ok(Number(error!.metadata.get('grpc-retry-pushback-ms')[0]) >= 1);
    for (const result of await Promise.all(waiting)) assert.equal(result.error, undefined);
  });
});
