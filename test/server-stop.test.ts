/**
 * Server.stop() as a library user calls it, over a real HTTP listener: the drain the CLI runs on SIGTERM — not ready,
 * requests received are answered with Connection: close, no new connection is taken, then the server closes — and,
 * when a request outlasts the timeout, its connection cut at the timeout.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import { status as grpcStatus } from '@grpc/grpc-js';
import { GrpcClient } from '../src/client/index.js';
import { createGrpcFrontEnd, createHttpFrontEnd, Server } from '../src/index.js';
import { doublerBackend, fakeRepository } from './support/fake-backend.js';
import { RawConnection } from './support/raw-http.js';

const logger = pino({ level: 'silent' });
const BODY = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) };

async function listening(t: Parameters<typeof fakeRepository>[0], keepAliveTimeoutMs = 120_000) {
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n' });
  const backend = doublerBackend();
  const server = await new Server({ modelRepository: repo, backends: [backend], logger }).start();
  const http = createHttpFrontEnd(server, { keepAliveTimeoutMs });
  const url = await http.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => void (await server.stop({ timeoutMs: 1000 })));
  return { server, backend, url };
}

/** A connection the server has certainly accepted: it answered a request on it. */
async function accepted(url: string): Promise<RawConnection> {
  const connection = new RawConnection(url);
  assert.equal((await connection.request('GET', '/v2/health/live', {})).status, 200);
  return connection;
}

test('stop() drains the HTTP front end: not ready, the request in flight is answered, one sent after with Connection: close, a connection that reaches it after is refused with 503 and the reason (not reset), then the server closes', async (t) => {
  // A connection idle after its answer closes at its keep-alive timeout, which its client was told.
  const { server, backend, url } = await listening(t, 3000);
  const idle = await accepted(url);
  const holder = await accepted(url);
  const gate = backend.hold();
  const held = holder.request('POST', '/v2/models/m/infer', JSON_HEADERS, BODY);
  await gate.whenWaiting();

  const stopped = server.stop({ timeoutMs: 20_000 });
  assert.equal(server.ready, false, 'not ready once stopping');
  // A connection made as stop() begins is in the kernel's accept queue, not yet taken: closing the listener at once
  // would reset it, its request written. The drain takes it and refuses the request, saying why. One already open is
  // answered, and that answer is its last.
  const late = new RawConnection(url);
  const refused = await late.request('POST', '/v2/models/m/infer', JSON_HEADERS, BODY);
  assert.equal(refused.status, 503, refused.body);
  assert.match(JSON.parse(refused.body).error, /^the server is shutting down: this connection reached it after its stop began, so it runs no request on it; send the request to another replica/);
  await late.closed;
  gate.open();
  const after = await idle.request('POST', '/v2/models/m/infer', JSON_HEADERS, BODY);
  assert.equal(after.status, 200, after.body);
  assert.equal(after.headers.connection, 'close');
  const answer = await held;
  assert.equal(answer.status, 200, answer.body);
  assert.deepEqual(JSON.parse(answer.body).outputs[0].data, [2, 4, 6, 8]);
  await Promise.all([idle.closed, holder.closed]);
  assert.deepEqual(await stopped, { drained: true });
  await assert.rejects(fetch(`${url}/v2/health/live`), 'nothing listens after the drain');
  assert.equal(server.live, false, 'closed after the drain');
  assert.equal(await server.stop(), await stopped, 'a second stop() waits for the first');
});

test('stop() cuts the connections still open at its timeout, then closes the server, and says the drain did not finish', async (t) => {
  const { server, backend, url } = await listening(t);
  const idle = await accepted(url);
  const holder = await accepted(url);
  const gate = backend.hold();
  const held = holder.request('POST', '/v2/models/m/infer', JSON_HEADERS, BODY);
  await gate.whenWaiting();
  // The order of events, not their times (a loaded machine stretches those): connections still serve during the drain,
  // the request is still held when stop()'s timer cuts, and it fails only after that cut.
  const events: string[] = [];
  let heldSettled = false;
  const heldOutcome = held.finally(() => (heldSettled = true));
  const cutConnections = server.cutConnections.bind(server);
  server.cutConnections = () => {
    events.push(heldSettled ? 'cut after the request had ended' : 'cut while the request was held');
    return cutConnections();
  };
  // A second: ample for a health check on loopback to be answered before the cut.
  const stopped = server.stop({ timeoutMs: 1000 });
  const during = await idle.request('GET', '/v2/health/live', {});
  assert.equal(during.headers.connection, 'close', 'answered as the last of its connection');
  events.push(`answered ${during.status} during the drain`);
  await assert.rejects(heldOutcome.finally(() => events.push('request failed')), /connection closed before an answer/);
  assert.deepEqual(events, ['answered 200 during the drain', 'cut while the request was held', 'request failed']);
  // The computation still running ends before the server closes: close() lets it.
  gate.open();
  assert.deepEqual(await stopped, { drained: false });
  assert.equal(server.live, false);
});

test("a cut counts each client request once, an ensemble's too, while the models name where they were held: at the ensemble and at its step", async (t) => {
  const ensemble = [
    'platform: ensemble',
    'max_batch_size: 4',
    'input: [{ name: IN, data_type: TYPE_FP32, dims: [4] }]',
    'output: [{ name: OUT, data_type: TYPE_FP32, dims: [4] }]',
    'ensemble_scheduling: { step: [{ model_name: m, model_version: -1, input_map: { INPUT0: IN }, output_map: { OUTPUT0: OUT } }] }',
  ].join('\n');
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n', e: ensemble });
  const backend = doublerBackend();
  const server = await new Server({ modelRepository: repo, backends: [backend], logger }).start();
  const http = createHttpFrontEnd(server, {});
  const url = await http.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => void (await server.close()));
  const gate = backend.hold();
  const body = JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
  const held = new RawConnection(url).request('POST', '/v2/models/e/infer', { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, body);
  await gate.whenWaiting();
  const atModels = server.unansweredRequests().sort((a, b) => a.model.localeCompare(b.model));
  // Once at each: the step's request runs through the hold the ensemble took for it, which counts it already.
  assert.deepEqual(atModels, [
    { model: 'e', version: '1', requests: 1 },
    { model: 'm', version: '1', requests: 1 },
  ], 'held at the ensemble and at its step, once each');
  assert.equal(server.cutConnections(), 1, 'one client request');
  await assert.rejects(held, /connection closed before an answer/);
  gate.open();
});

test('stop() refuses a timeout it cannot wait for, naming it', async (t) => {
  const { server } = await listening(t);
  assert.throws(() => server.stop({ timeoutMs: -1 }), /^TypeError: Server\.stop: option 'timeoutMs' expects number to be >0, got -1$/);
  assert.throws(() => server.stop({ timeoutMs: 1, drainMs: 5 } as never), /^TypeError: Server\.stop: unknown option 'drainMs' \(known: timeoutMs\)$/);
  assert.equal(server.ready, true, 'a refused stop() leaves the server serving');
});

test('an idle keep-alive connection still open when stop() times out is closed without counting as a failed drain', async (t) => {
  // Its keep-alive timeout (120 s) outlasts the drain's: cutting it fails no request.
  const { server, url } = await listening(t);
  const idle = await accepted(url);
  assert.deepEqual(await server.stop({ timeoutMs: 300 }), { drained: true });
  await idle.closed;
});

test('a gRPC front end joins stop() by itself: its calls in flight are answered, a call on a connection made as stop() begins is refused UNAVAILABLE with the reason, then its listener is gone', async (t) => {
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n' });
  const backend = doublerBackend();
  const server = await new Server({ modelRepository: repo, backends: [backend], logger }).start();
  const grpc = createGrpcFrontEnd(server);
  const port = await grpc.listen('127.0.0.1', 0);
  const client = new GrpcClient({ address: `127.0.0.1:${port}` });
  t.after(async () => {
    client.close();
    await grpc.close(100);
  });
  assert.equal(await client.serverLive(), true);
  const gate = backend.hold();
  const held = client.infer('m', { INPUT0: { datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] } });
  await gate.whenWaiting();
  // A connection made as stop() begins, in the kernel's queue when it does (a plain HTTP/2 client dials at once, where
  // a grpc-js channel takes turns of the event loop first): its call is refused with the reason, not reset.
  const late = http2.connect(`http://127.0.0.1:${port}`);
  late.on('error', () => undefined);
  t.after(() => late.destroy());
  const lateCall = late.request({ ':method': 'POST', ':path': '/inference.GRPCInferenceService/ModelInfer', 'content-type': 'application/grpc', te: 'trailers' });
  lateCall.on('error', () => undefined);
  lateCall.end(Buffer.alloc(5)); // one empty message
  const stopped = server.stop({ timeoutMs: 20_000 });
  const [trailers] = (await once(lateCall, 'trailers')) as [http2.IncomingHttpHeaders];
  assert.equal(trailers['grpc-status'], String(grpcStatus.UNAVAILABLE));
  assert.match(decodeURIComponent(String(trailers['grpc-message'])), /^the server is shutting down: this connection reached it after its stop began/);
  gate.open();
  assert.deepEqual([...(Object.values((await held).outputs)[0]!.data as Float32Array)], [2, 4, 6, 8]);
  assert.deepEqual(await stopped, { drained: true });
  await assert.rejects(new GrpcClient({ address: `127.0.0.1:${port}`, timeoutMs: 2000 }).serverLive(), 'nothing listens after stop()');
});

test('close() without stop() closes the HTTP and gRPC front ends over the server at once, so nothing keeps listening', async (t) => {
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n' });
  const server = await new Server({ modelRepository: repo, backends: [doublerBackend()], logger }).start();
  const url = await createHttpFrontEnd(server).listen({ host: '127.0.0.1', port: 0 });
  const grpc = createGrpcFrontEnd(server);
  const port = await grpc.listen('127.0.0.1', 0);
  const idle = await accepted(url);
  await server.close();
  await idle.closed;
  await assert.rejects(fetch(`${url}/v2/health/live`), 'nothing listens on the HTTP port after close()');
  await assert.rejects(new GrpcClient({ address: `127.0.0.1:${port}`, timeoutMs: 2000 }).serverLive(), 'nothing listens on the gRPC port after close()');
});
