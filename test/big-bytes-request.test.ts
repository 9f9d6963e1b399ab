/**
 * A big BYTES request over gRPC (raw_input_contents, as Triton's clients send it) does not hold the
 * event loop for its whole duration: its elements are decoded and encoded a few milliseconds at a
 * time and cross to the model's worker thread packed, so a new connection's small request is
 * answered while it is in flight.
 */
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createGrpcFrontEnd, type GrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { addSubModel, identityModel, writeModel } from '../src/onnx/test-models.js';
import { lengthPrefixed, startTestServer, type TestServer } from './support/test-server.js';

const ELEMENTS = 300_000;

let server: TestServer;
let front: GrpcFrontEnd;
let port: number;
const { Client } = loadInferenceProto();

before(async () => {
  server = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'strings', 1, identityModel('string'), 'parameters { key: "execution_thread" value: { string_value: "worker" } }\n');
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

function newClient() {
  return new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 }) as grpc.Client & Record<string, any>;
}

function infer(client: grpc.Client & Record<string, any>, request: unknown): Promise<any> {
  return new Promise((resolve, reject) => client.ModelInfer(request, (error: Error | null, reply: unknown) => (error ? reject(error) : resolve(reply))));
}

test('while a big BYTES request is in flight, a new connection is answered and the event loop is never held for long', async () => {
  const elements = Array.from({ length: ELEMENTS }, (_, index) => `e${index % 1000}`);
  const big = { model_name: 'strings', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, ELEMENTS] }], raw_input_contents: [lengthPrefixed(elements)] };
  const small = {
    model_name: 'small',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: Array(16).fill(2) } },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: Array(16).fill(1) } },
    ],
  };
  // The small request starts once the server has decoded the big one and handed it to the model.
  let bigReachedModel!: () => void;
  const reachedModel = new Promise<void>((resolve) => (bigReachedModel = resolve));
  const infer0 = server.server.infer.bind(server.server);
  server.server.infer = (request, context) => {
    if (request.model === 'strings') bigReachedModel();
    return infer0(request, context);
  };
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
    // Relative to the request's own duration on this machine under its present load: before decoding
    // went in slices and BYTES crossed to the worker packed, the loop was held for a quarter or more
    // of it at once (the whole of it with the model on the JS thread); now the longest holds are the
    // garbage collector's pauses over the request's many small Buffers.
    const longestBlockMs = delay.max / 1e6;
    assert.ok(longestBlockMs < bigMs / 4, `the event loop was held for ${longestBlockMs.toFixed(0)} ms at once during a ${bigMs.toFixed(0)} ms request`);
  } finally {
    server.server.infer = infer0;
    bigClient.close();
    smallClient.close();
  }
});
