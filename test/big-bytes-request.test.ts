/**
 * A big BYTES request over gRPC (raw_input_contents, as Triton's clients send it) or HTTP (the binary
 * tensor extension) does not hold the event loop for long: its elements stay packed in one buffer
 * from the wire to the model's worker thread and back (no object per element for the collector to
 * walk), their text check runs a few milliseconds at a time, and a model taking BYTES runs in a
 * worker by default, so a new connection's small request is answered while it is in flight.
 */
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createGrpcFrontEnd, type GrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { PackedBytes } from '../src/core/datatype.js';
import { addSubModel, identityModel, writeModel } from '../src/onnx/test-models.js';
import { binaryBody, readInferResponse, startTestServer, type TestServer } from './support/test-server.js';

const ELEMENTS = 300_000;

let server: TestServer;
let front: GrpcFrontEnd;
let port: number;
const { Client } = loadInferenceProto();

before(async () => {
  server = await startTestServer({
    models: async (repo) => {
      // No execution_thread: a model that takes BYTES runs in a worker thread by default.
      await writeModel(repo, 'strings', 1, identityModel('string'));
      await writeModel(repo, 'small', 1, addSubModel());
    },
  });
  front = createGrpcFrontEnd(server.server, { maxReceiveMessageBytes: 64 << 20, maxSendMessageBytes: 64 << 20 });
  port = await front.listen('127.0.0.1', 0);
});

after(async () => {
  await front.close(1000);
  await server.close();
});

/**
 * ELEMENTS short strings, length-prefixed, written in place: a Buffer per element made here would
 * leave the collector work that lands in the middle of the measurement.
 */
function bigRaw(): Buffer {
  const texts = Array.from({ length: 1000 }, (_, index) => `e${index}`);
  const raw = Buffer.allocUnsafe(texts.reduce((sum, text) => sum + 4 + text.length, 0) * (ELEMENTS / 1000));
  let offset = 0;
  for (let index = 0; index < ELEMENTS; index++) {
    const text = texts[index % 1000];
    raw.writeUInt32LE(text.length, offset);
    offset += 4 + raw.write(text, offset + 4, 'latin1');
  }
  return raw;
}

/**
 * `reachedModel` resolves once the server has decoded the big request and handed it to the model; `carried` holds its
 * input's data as the front end handed it over and its output's data as the model answered it. restore() ends the watch.
 */
function watchBigRequest(): { reachedModel: Promise<void>; carried: { input?: unknown; output?: unknown }; restore: () => void } {
  let bigReachedModel!: () => void;
  const reachedModel = new Promise<void>((resolve) => (bigReachedModel = resolve));
  const carried: { input?: unknown; output?: unknown } = {};
  const infer0 = server.server.infer.bind(server.server);
  server.server.infer = (request, context) => {
    if (request.model !== 'strings') return infer0(request, context);
    carried.input = request.inputs[0].data;
    bigReachedModel();
    return infer0(request, context).then((response) => ((carried.output = response.outputs[0].data), response));
  };
  return { reachedModel, carried, restore: () => (server.server.infer = infer0) };
}

/**
 * What kept the loop free, told by the state it leaves rather than by times (a loaded machine stretches those): the
 * elements crossed the server packed in one buffer each way, not as an object per element for the collector to walk
 * (with which its pauses held the loop for a quarter of the request or more).
 */
function assertCarriedPacked(carried: { input?: unknown; output?: unknown }): void {
  assert.ok(carried.input instanceof PackedBytes, `the request's elements reached the model as ${carried.input?.constructor.name}, not packed`);
  assert.equal(carried.input.length, ELEMENTS);
  assert.ok(carried.output instanceof PackedBytes, `the answer's elements left the model as ${carried.output?.constructor.name}, not packed`);
  assert.equal(carried.output.length, ELEMENTS);
}

function newClient() {
  return new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 }) as grpc.Client & Record<string, any>;
}

function infer(client: grpc.Client & Record<string, any>, request: unknown): Promise<any> {
  return new Promise((resolve, reject) => client.ModelInfer(request, (error: Error | null, reply: unknown) => (error ? reject(error) : resolve(reply))));
}

test('while a big BYTES request is in flight, a new connection is answered and the event loop is never held for long', async (t) => {
  const big = { model_name: 'strings', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, ELEMENTS] }], raw_input_contents: [bigRaw()] };
  const small = {
    model_name: 'small',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: Array(16).fill(2) } },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: Array(16).fill(1) } },
    ],
  };
  // The small request starts once the server has decoded the big one and handed it to the model.
  const { reachedModel, carried, restore } = watchBigRequest();
  const bigClient = newClient();
  const smallClient = newClient();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  const order: string[] = [];
  try {
    delay.enable();
    const started = performance.now();
    const bigAnswer = infer(bigClient, big).then((reply) => (order.push('big'), reply));
    await reachedModel;
    const smallAnswer = await infer(smallClient, small);
    order.push('small');
    const bigReply = await bigAnswer;
    const bigMs = performance.now() - started;
    delay.disable();

    assert.deepEqual(order, ['small', 'big'], 'the small request on a new connection was answered while the big one was in flight');
    assert.deepEqual(smallAnswer.raw_output_contents[0].readInt32LE(0), 3);
    assert.equal(bigReply.outputs[0].datatype, 'BYTES');
    assert.deepEqual(bigReply.raw_output_contents[0], big.raw_input_contents[0], 'the identity model answers every element as sent');
    assertCarriedPacked(carried);
    // Shown, not asserted: the longest holds are the front end's copies of the message, as for a numeric request.
    t.diagnostic(`longest event-loop hold ${(delay.max / 1e6).toFixed(1)} ms during the ${bigMs.toFixed(0)} ms request`);
  } finally {
    restore();
    bigClient.close();
    smallClient.close();
  }
});

test('over HTTP (binary tensor extension) too, a big BYTES request leaves the event loop free: a small request is answered while it is in flight', async (t) => {
  const raw = bigRaw();
  const { body, headerLength } = binaryBody(
    { inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, ELEMENTS], parameters: { binary_data_size: raw.length } }], parameters: { binary_data_output: true } },
    [raw],
  );
  const { reachedModel, carried, restore } = watchBigRequest();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  const order: string[] = [];
  try {
    delay.enable();
    const started = performance.now();
    const bigAnswer = fetch(`${server.url}/v2/models/strings/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
      body: new Uint8Array(body),
    }).then(async (response) => (order.push('big'), { status: response.status, answer: await readInferResponse(response) }));
    await reachedModel;
    const small = await fetch(`${server.url}/v2/models/small/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify({
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(2) },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
        ],
      }),
    });
    order.push('small');
    const big = await bigAnswer;
    const bigMs = performance.now() - started;
    delay.disable();

    assert.equal(small.status, 200);
    assert.deepEqual(((await small.json()) as { outputs: { data: number[] }[] }).outputs[0].data[0], 3);
    assert.deepEqual(order, ['small', 'big'], 'the small request was answered while the big one was in flight');
    assert.equal(big.status, 200);
    assert.ok(big.answer.binary.OUTPUT0.equals(raw), 'the identity model answers every element as sent');
    assertCarriedPacked(carried);
    t.diagnostic(`longest event-loop hold ${(delay.max / 1e6).toFixed(1)} ms during the ${bigMs.toFixed(0)} ms request`);
  } finally {
    restore();
  }
});
