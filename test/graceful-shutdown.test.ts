/**
 * SIGTERM on a real `nereid serve` process: readiness turns false, requests already received are
 * answered (HTTP and gRPC), a keep-alive connection's next request is answered with
 * Connection: close instead of reset, and the process exits — after a clean drain, or at
 * --shutdown-timeout whatever a client holds. Slow clients meet the header and body timeouts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { buildOnnxModel } from '../src/onnx/onnx-model-builder.js';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, runCli, serveChild, spawnCli, stopChild, type ServedChild } from './support/cli-server.js';
import { RawConnection } from './support/raw-http.js';
import { binaryBody } from './support/test-server.js';

/** Holds each request in its queue for a while (its batch never fills), so that one is in flight when SIGTERM comes. */
const HOLDING_CONFIG = `
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 1000000 }
`;

const BODY = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) };

const SLOW_SIDE = 2048;

let repo: string;
const children: ServedChild[] = [];

before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'nereid-shutdown-'));
  await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 8\n');
  await writeModel(repo, 'holding', 1, scaleModel(2), HOLDING_CONFIG);
  // x to the 121st power of a 2048-square matrix: 120 MatMuls, about 2 TFLOP, many seconds of ONNX Runtime work that no
  // drain waits for (0.7 s per 6 on one core of the machine this was written on), however late the request arrives.
  const powers = Array.from({ length: 120 }, (_, index) => ({ opType: 'MatMul', inputs: [index === 0 ? 'x' : `p${index}`, 'x'], outputs: [index === 119 ? 'y' : `p${index + 1}`] }));
  const slow = buildOnnxModel({
    graphName: 'slow',
    inputs: [{ name: 'x', type: 'float32', shape: [SLOW_SIDE, SLOW_SIDE] }],
    outputs: [{ name: 'y', type: 'float32', shape: [SLOW_SIDE, SLOW_SIDE] }],
    nodes: powers,
  });
  // In a worker thread, so the server goes on handling signals while it computes.
  await writeModel(repo, 'slow', 1, slow, 'max_batch_size: 0\nparameters: { execution_thread: worker }\n');
});

after(async () => {
  for (const child of children) {
    if (child.child.exitCode === null) child.child.kill('SIGKILL');
  }
  await rm(repo, { recursive: true, force: true });
});

async function serve(flags: string[]): Promise<ServedChild> {
  const child = await serveChild(repo, ['--allow-metrics', 'false', ...flags]);
  children.push(child);
  return child;
}

/** A connection the server has certainly accepted: it answered a request on it. */
async function acceptedConnection(url: string): Promise<RawConnection> {
  const connection = new RawConnection(url);
  assert.equal((await connection.request('GET', '/v2/health/live', {})).status, 200);
  return connection;
}

test('SIGTERM: not ready first, requests received are answered over HTTP and gRPC, keep-alive connections get Connection: close instead of a reset, and the process exits 0 once drained', async () => {
  const grpcPort = await freePort();
  const served = await serve(['--grpc-port', String(grpcPort), '--http-keep-alive-timeout-ms', '1000']);
  const keepAlive = await acceptedConnection(served.url);
  const before = await keepAlive.request('POST', '/v2/models/scale/infer', JSON_HEADERS, BODY);
  assert.equal(before.status, 200);
  assert.notEqual(before.headers.connection, 'close');
  const probe = await acceptedConnection(served.url);
  const holder = await acceptedConnection(served.url);
  const held = holder.request('POST', '/v2/models/holding/infer', JSON_HEADERS, BODY);
  const { Client } = loadInferenceProto();
  const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  await new Promise<void>((resolve, reject) => client.ServerLive({}, (error: Error | null) => (error ? reject(error) : resolve())));
  const grpcHeld = new Promise<{ error: grpc.ServiceError | null; response: { outputs: unknown[] } }>((resolve) =>
    client.ModelInfer(
      { model_name: 'holding', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.from(new Float32Array([1, 1, 1, 1]).buffer)] },
      (error: grpc.ServiceError | null, response: { outputs: unknown[] }) => resolve({ error, response }),
    ),
  );
  // Both held requests are queued once the server has answered a later request on a third connection.
  await new Promise((resolve) => setTimeout(resolve, 100));

  served.child.kill('SIGTERM');
  await served.waitFor('draining');
  const ready = await probe.request('GET', '/v2/health/ready', {});
  assert.equal(ready.status, 400, 'not ready once draining');
  assert.equal(ready.headers.connection, 'close');
  // A request written on an idle keep-alive connection after SIGTERM is answered, and that answer closes it.
  const after = await keepAlive.request('POST', '/v2/models/scale/infer', JSON_HEADERS, BODY);
  assert.equal(after.status, 200, after.body);
  assert.equal(after.headers.connection, 'close');
  await keepAlive.closed;
  // What was in flight is answered.
  const heldAnswer = await held;
  assert.equal(heldAnswer.status, 200, heldAnswer.body);
  assert.deepEqual(JSON.parse(heldAnswer.body).outputs[0].data, [2, 4, 6, 8]);
  const grpcAnswer = await grpcHeld;
  assert.equal(grpcAnswer.error, null);
  client.close();
  // New connections are not taken.
  await assert.rejects(fetch(`${served.url}/v2/health/live`));
  assert.equal(await served.exited, 0, served.output());
  assert.match(served.output(), /drained; exiting/);
});

test('connections that never sent a byte (a preconnect, a stopped client) do not hold the drain: it ends by itself, exit 0', async () => {
  const grpcPort = await freePort();
  // A drain that waited for them would end only at --shutdown-timeout, by SIGTERM (status 143). Over HTTP the headers
  // timeout closes a connection that sends no request; over gRPC, nothing would without the drain cutting it.
  const served = await serve(['--grpc-port', String(grpcPort), '--http-headers-timeout-ms', '1000', '--shutdown-timeout', '60']);
  const silent = await Promise.all(
    [Number(new URL(served.url).port), grpcPort].map(
      (port) =>
        new Promise<Socket>((resolve, reject) => {
          const socket = connect(port, '127.0.0.1', () => resolve(socket));
          socket.on('error', reject);
        }),
    ),
  );
  // Not read: a client that stopped reads neither the GOAWAY nor the close.
  for (const socket of silent) socket.pause();
  served.child.kill('SIGTERM');
  assert.equal(await served.exited, 0, served.output());
  assert.match(served.output(), /drained; exiting/);
  for (const socket of silent) socket.destroy();
});

test('an open dashboard stream does not hold the drain: it ends and its connection closes, a stream asked for while draining gets 503 with Connection: close, and the process exits 0', async () => {
  // Idle keep-alive connections would outlast --shutdown-timeout: only the server closing them lets the drain end by itself (exit 0, not 143).
  const served = await serve(['--http-keep-alive-timeout-ms', '120000', '--shutdown-timeout', '20']);
  const tab = await acceptedConnection(served.url);
  const stream = await tab.request('GET', '/dashboard/api/stream', {});
  assert.equal(stream.status, 200);
  assert.match(stream.headers['content-type'] ?? '', /^text\/event-stream/);
  // A second tab's connection, idle between its requests, as a browser's reconnecting EventSource finds it.
  const reconnecting = await acceptedConnection(served.url);
  served.child.kill('SIGTERM');
  await served.waitFor('draining');
  const refused = await reconnecting.request('GET', '/dashboard/api/stream', {});
  assert.equal(refused.status, 503, refused.body);
  assert.equal(refused.headers.connection, 'close');
  assert.match(JSON.parse(refused.body).error, /draining/);
  await reconnecting.closed;
  await tab.closed;
  assert.equal(await served.exited, 0, served.output());
  assert.match(served.output(), /drained; exiting/);
});

test('a client holding half a request body gets 408 at the request timeout, and one that sends no headers 408 at the headers timeout, each naming its flag', async () => {
  const served = await serve(['--http-request-timeout-ms', '1500', '--http-headers-timeout-ms', '1000']);
  const stalledBody = new RawConnection(served.url);
  const answer = await stalledBody.request('POST', '/v2/models/scale/infer', { ...JSON_HEADERS, 'content-length': 1000 }, BODY.slice(0, 10));
  assert.equal(answer.status, 408);
  // Which limit, and the flag that sets it.
  assert.equal(JSON.parse(answer.body).error, "the request's body was not received within 1500 ms of its start (the whole request's limit, --http-request-timeout-ms)");
  await stalledBody.closed;
  const silent = new RawConnection(served.url);
  const silentAnswer = silent.answer().catch(() => undefined);
  silent.send('POST /v2/models/scale/infer HTTP/1.1\r\nhost: x\r\n'); // and never the end of the head
  await silent.closed;
  const headersLate = await silentAnswer;
  assert.ok(headersLate, 'answered before the connection closed');
  assert.equal(headersLate.status, 408);
  assert.equal(JSON.parse(headersLate.body).error, "the request's headers were not received within 1000 ms (--http-headers-timeout-ms)");
  assert.equal(await stopChild(served), 0);
});

test('--shutdown-timeout bounds the drain whatever a client holds: a stalled upload is cut and the process exits', async () => {
  const served = await serve(['--shutdown-timeout', '2']);
  const stalled = new RawConnection(served.url);
  const outcome = stalled.request('POST', '/v2/models/scale/infer', { ...JSON_HEADERS, 'content-length': 1000 }, BODY.slice(0, 10)).then(
    () => 'answered',
    () => 'cut',
  );
  await new Promise((resolve) => setTimeout(resolve, 100));
  served.child.kill('SIGTERM');
  assert.equal(await served.exited, null);
  assert.equal(served.child.signalCode, 'SIGTERM', 'ended by SIGTERM (status 143), not by an exit code');
  assert.match(served.output(), /the drain did not finish within --shutdown-timeout 2 s: closing the connections left and ending the process \(SIGTERM, status 143\); 1 client request\(s\) \(HTTP requests, gRPC calls\) failed unanswered with their connections, none held at a model/);
  assert.equal(await outcome, 'cut');
});

test('a forced end while ONNX Runtime computes ends the process by SIGTERM, not by an abort with a core dump', async () => {
  const served = await serve(['--shutdown-timeout', '1']);
  const data = new Float32Array(SLOW_SIDE * SLOW_SIDE).fill(0.001);
  const { body, headerLength } = binaryBody({ inputs: [{ name: 'x', datatype: 'FP32', shape: [SLOW_SIDE, SLOW_SIDE], parameters: { binary_data_size: data.byteLength } }] }, [new Uint8Array(data.buffer)]);
  const computing = fetch(`${served.url}/v2/models/slow/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
    body: new Uint8Array(body),
  }).then((response) => `answered ${response.status}`, () => 'cut');
  // Time for the 16 MiB body to arrive on a busy machine; the computation then takes far longer than the test.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  served.child.kill('SIGTERM');
  assert.equal(await served.exited, null, served.output());
  assert.equal(served.child.signalCode, 'SIGTERM', served.output());
  assert.doesNotMatch(served.output(), /terminate called|Napi::Error/);
  assert.match(served.output(), /; 1 client request\(s\) \(HTTP requests, gRPC calls\) failed unanswered with their connections, held at models: slow version 1: 1/, 'the log says what the cut failed');
  assert.equal(await computing, 'cut', served.output());
});

test('a duration longer than a timer can wait is refused at start, not turned into an immediate timeout', async () => {
  const drain = await runCli(['serve', '--model-repository', repo, '--shutdown-timeout', '3000000']);
  assert.equal(drain.code, 1);
  assert.match(drain.stderr, /--shutdown-timeout <seconds>' argument '3000000' is invalid\. expected an integer from 1 to 2147483/);
  const poll = await runCli(['serve', '--model-repository', repo, '--repository-poll-secs', '3000000']);
  assert.equal(poll.code, 1);
  assert.match(poll.stderr, /expected a number from 0\.001 to 2147483/);
});

/**
 * A warmup of a hundred million runs: hours, far past the --shutdown-timeout below, so a drain that waited for it would
 * end in the forced exit (status 143 and its warning) instead of "drained; exiting" and status 0.
 */
const LONG_WARMUP_CONFIG = `
max_batch_size: 8
model_warmup [ { name: "long" batch_size: 1 count: 100000000 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]
`;

test('SIGTERM during a warmup abandons the load (at start, and in a poll reload) instead of waiting for it: the drain ends by itself, exit 0', async (t) => {
  const warmRepo = await mkdtemp(join(tmpdir(), 'nereid-shutdown-warm-'));
  t.after(() => rm(warmRepo, { recursive: true, force: true }));
  await writeModel(warmRepo, 'scale', 1, scaleModel(2), 'max_batch_size: 8\n');

  // A poll sees a new version whose warmup would take minutes, and SIGTERM comes while it warms.
  const served = await serveChild(warmRepo, ['--allow-metrics', 'false', '--model-control-mode', 'poll', '--repository-poll-secs', '0.2', '--shutdown-timeout', '20']);
  children.push(served);
  await writeModel(warmRepo, 'scale', 2, scaleModel(3), LONG_WARMUP_CONFIG);
  await served.waitFor("model 'scale' changed; reloading");
  await new Promise((resolve) => setTimeout(resolve, 500));
  served.child.kill('SIGTERM');
  assert.equal(await served.exited, 0, served.output());
  assert.match(served.output(), /load of model 'scale' version 2 \(in its warmup\) abandoned: the server is shutting down/);
  assert.match(served.output(), /drained; exiting/);
  assert.doesNotMatch(served.output(), /the drain did not finish within --shutdown-timeout/);

  // At start: the same warmup in the initial load, beside a model that fails.
  await writeModel(warmRepo, 'broken', 1, new TextEncoder().encode('not an ONNX model'));
  const starting = spawnCli(['serve', '--model-repository', warmRepo, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false', '--shutdown-timeout', '20']);
  let output = '';
  starting.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  starting.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => starting.once('exit', (code) => resolve(code)));
  t.after(() => void (starting.exitCode === null && starting.kill('SIGKILL')));
  // Nothing is logged while version 2 warms: SIGTERM a while after the listener opens.
  while (!/HTTP \(KServe V2\) listening/.test(output) && starting.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 50));
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  starting.kill('SIGTERM');
  assert.equal(await exited, 0, output);
  assert.match(output, /abandoned: the server is shutting down/);
  assert.match(output, /drained; exiting/);
  assert.doesNotMatch(output, /the drain did not finish within --shutdown-timeout/);
  // The start's summary as the signal found it, not the empty repository the drain leaves.
  assert.match(output, /start cut short by SIGTERM: when it came, 0 model version\(s\) ready, 1 failed \(broken version 1\); 1 model\(s\) were still loading \(scale\): a load the drain outlasts is abandoned/);
  assert.doesNotMatch(output, /server NOT ready/);
  assert.doesNotMatch(output.slice(output.indexOf('draining')), /"msg":"loaded model/, 'no load finishes once the drain has begun');
});

test('SIGHUP drains like SIGTERM (exit 0), and --load-model in poll mode is said to have no effect', async () => {
  const served = await serve(['--model-control-mode', 'poll', '--load-model', 'scale']);
  assert.match(served.output(), /--load-model has no effect with --model-control-mode poll, which loads every model at start/);
  served.child.kill('SIGHUP');
  assert.equal(await served.exited, 0, served.output());
  assert.match(served.output(), /"signal":"SIGHUP".*draining/);
  assert.match(served.output(), /drained; exiting/);
});
