/**
 * The clients tell a call their own `timeoutMs` ended from one the caller's `signal` stopped, by class, over HTTP and
 * gRPC, against a real server whose model holds every run (so nothing answers first): HttpTimeoutError /
 * HttpAbortError (ConnectionErrors) and GrpcTimeoutError / GrpcAbortError (GrpcCallErrors), messages unchanged; a
 * call's own timeoutMs; and the protocol-neutral codeName both clients' errors carry.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { pino } from 'pino';
import { ClientError, ConnectionError, GrpcAbortError, GrpcCallError, GrpcClient, GrpcTimeoutError, HttpAbortError, HttpClient, HttpTimeoutError } from '../src/client/index.js';
import { createGrpcFrontEnd, createHttpFrontEnd, Server } from '../src/index.js';
import { checkInferOptions } from '../src/client/http-client.js';
import { doublerBackend, fakeRepository, Gate } from './support/fake-backend.js';

test('a timeout and an abort are told apart by class over HTTP and gRPC, in flight and before the call', async (t) => {
  // A model per call that reaches it: a held run keeps its model's one instance busy, so a later call would only queue.
  const repo = await fakeRepository(t, { http_timeout: undefined, grpc_timeout: undefined, grpc_call_timeout: undefined, http_abort: undefined, grpc_abort: undefined });
  const backend = doublerBackend();
  const server = await new Server({ modelRepository: repo, backends: [backend], logger: pino({ level: 'silent' }) }).start();
  const gate = new Gate();
  backend.gate = gate;
  const httpFrontEnd = createHttpFrontEnd(server, { dashboard: false });
  await httpFrontEnd.listen({ host: '127.0.0.1', port: 0 });
  const grpcFrontEnd = createGrpcFrontEnd(server);
  const grpcPort = await grpcFrontEnd.listen('127.0.0.1', 0);
  const url = `http://127.0.0.1:${(httpFrontEnd.server.address() as AddressInfo).port}`;
  const clients = {
    http: new HttpClient({ url, retry: { tries: 1 } }),
    httpTimed: new HttpClient({ url, retry: { tries: 1 }, timeoutMs: 50 }),
    grpc: new GrpcClient({ address: `127.0.0.1:${grpcPort}`, retry: { tries: 1 } }),
    grpcTimed: new GrpcClient({ address: `127.0.0.1:${grpcPort}`, retry: { tries: 1 }, timeoutMs: 50 }),
  };
  t.after(async () => {
    gate.open();
    for (const client of Object.values(clients)) client.close();
    await grpcFrontEnd.close();
    await httpFrontEnd.close();
    await server.close();
  });
  const inputs = { INPUT0: { datatype: 'FP32', shape: [1, 4], data: new Float32Array(4) } } as const;

  // The held model never answers: each timed call ends at its own deadline.
  const httpTimeout = await clients.httpTimed.infer('http_timeout', inputs).then(() => undefined, (error: unknown) => error);
  assert.ok(httpTimeout instanceof HttpTimeoutError && httpTimeout instanceof ConnectionError, `HTTP timeout: ${String(httpTimeout)}`);
  assert.match(httpTimeout.message, /^POST http:\/\/127\.0\.0\.1:\d+\/v2\/models\/http_timeout\/infer failed: The operation was aborted due to timeout$/);
  const grpcTimeout = await clients.grpcTimed.infer('grpc_timeout', inputs).then(() => undefined, (error: unknown) => error);
  assert.ok(grpcTimeout instanceof GrpcTimeoutError && grpcTimeout instanceof GrpcCallError, `gRPC timeout: ${String(grpcTimeout)}`);
  assert.equal(grpcTimeout.code, 4);

  // Both clients' errors carry a protocol-neutral code: a timeout, and a model the server does not have.
  assert.equal(grpcTimeout.codeName, 'DEADLINE_EXCEEDED');
  for (const client of [clients.http, clients.grpc]) {
    const missing = await client.infer('no_such_model', inputs, { outputs: ['OUTPUT0'] }).then(() => undefined, (error: unknown) => error);
    assert.ok(missing instanceof ClientError || missing instanceof GrpcCallError, String(missing));
    assert.equal(missing.codeName, 'NOT_FOUND', String(missing));
  }
  assert.deepEqual(
    [400, 404, 409, 413, 429, 500, 502, 503, 504].map((status) => new ClientError(status, '').codeName),
    ['INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED', 'INTERNAL', 'UNAVAILABLE', 'UNAVAILABLE', 'DEADLINE_EXCEEDED'],
  );
  assert.deepEqual(
    [3, 5, 8, 9, 14, 2].map((code) => new GrpcCallError(code, '').codeName),
    ['INVALID_ARGUMENT', 'NOT_FOUND', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'UNAVAILABLE', 'INTERNAL'],
  );

  // A call's own timeoutMs, on clients that have none: the same classes, and the gRPC call's deadline is its own.
  const grpcCallTimeout = await clients.grpc.infer('grpc_call_timeout', inputs, { timeoutMs: 50 }).then(() => undefined, (error: unknown) => error);
  assert.ok(grpcCallTimeout instanceof GrpcTimeoutError, `gRPC call timeout: ${String(grpcCallTimeout)}`);
  // Over HTTP the server is told the call's time as the V2 timeout parameter in microseconds, as tritonclient sends it:
  // a listener that reads the request and never answers shows what was sent.
  const sent: { headerLength?: number; chunks: Buffer[] } = { chunks: [] };
  const silent = createHttpServer((request) => {
    sent.headerLength = Number(request.headers['inference-header-content-length']);
    request.on('data', (chunk: Buffer) => sent.chunks.push(chunk));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const silentClient = new HttpClient({ url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, retry: { tries: 1 } });
  t.after(() => silentClient.close());
  const httpCallTimeout = await silentClient.infer('m', inputs, { timeoutMs: 50, outputs: ['OUTPUT0'] }).then(() => undefined, (error: unknown) => error);
  assert.ok(httpCallTimeout instanceof HttpTimeoutError, `HTTP call timeout: ${String(httpCallTimeout)}`);
  const header = JSON.parse(Buffer.concat(sent.chunks).subarray(0, sent.headerLength).toString('utf8'));
  assert.equal(header.parameters.timeout, 50_000);
  assert.throws(() => checkInferOptions('HttpClient.infer', { timeoutMs: -1 }), /^TypeError: HttpClient\.infer: option 'timeoutMs' expects a number of milliseconds above 0 and at most \d+, got -1$/);

  // An abort once the request is held at the model, and one before the call goes.
  for (const [name, client, model] of [['HTTP', clients.http, 'http_abort'], ['gRPC', clients.grpc, 'grpc_abort']] as const) {
    const held = gate.waiting;
    const controller = new AbortController();
    const call = client.infer(model, inputs, { signal: controller.signal }).then(() => undefined, (error: unknown) => error);
    await gate.whenWaiting(held + 1);
    controller.abort();
      const inFlight = await call;
    const before = await client.infer(model, inputs, { signal: controller.signal }).then(() => undefined, (error: unknown) => error);
    for (const [when, error] of [['in flight', inFlight], ['before the call', before]] as const) {
      if (name === 'HTTP') {
        assert.ok(error instanceof HttpAbortError && error instanceof ConnectionError && !(error instanceof HttpTimeoutError), `HTTP abort ${when}: ${String(error)}`);
        assert.match(error.message, /failed: This operation was aborted$/);
      } else {
        assert.ok(error instanceof GrpcAbortError && error instanceof GrpcCallError && !(error instanceof GrpcTimeoutError), `gRPC abort ${when}: ${String(error)}`);
        assert.equal(error.message, 'CANCELLED: Cancelled on client');
      }
    }
  }
});
