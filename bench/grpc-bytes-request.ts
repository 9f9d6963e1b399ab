/**
 * One big BYTES request through the real gRPC front end (raw_input_contents, as Triton's clients
 * send it) to an identity model: how long it takes, and the longest the event loop was held
 * meanwhile. Run under `node --cpu-prof` to see where the time goes.
 *
 *   node --import tsx bench/grpc-bytes-request.ts [elements=1000000] [bytesPerElement=1] [main|worker]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startTestServer } from '../test/support/test-server.js';
import * as grpcJs from '@grpc/grpc-js';
import { createGrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { identityModel, writeModel } from '../src/onnx/test-models.js';

const elements = Number(process.argv[2] ?? 1_000_000);
const bytesPerElement = Number(process.argv[3] ?? 1);
/** Where the model computes: 'main' (the JS thread) or 'worker'. */
const thread = process.argv[4] ?? 'worker';

const server = await startTestServer({ models: (repo) => writeModel(repo, 'identity_bytes', 1, identityModel('string'), `parameters { key: "execution_thread" value: { string_value: "${thread}" } }\n`) });
const front = createGrpcFrontEnd(server.server, { maxReceiveMessageBytes: 1 << 30, maxSendMessageBytes: 1 << 30 });
const port = await front.listen('127.0.0.1', 0);
const { Client } = loadInferenceProto();
const client = new Client(`127.0.0.1:${port}`, grpcJs.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 }) as any;
// Written in place: an array of millions of strings would leave the collector work during the measurement.
const raw = Buffer.alloc(elements * (4 + bytesPerElement), 'x');
for (let offset = 0; offset < raw.length; offset += 4 + bytesPerElement) raw.writeUInt32LE(bytesPerElement, offset);
const request = { model_name: 'identity_bytes', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, elements] }], raw_input_contents: [raw] };
const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
const started = performance.now();
// A refusal (more elements than the server accepts per input, say) is reported with its time too.
const reply = await new Promise<any>((resolve) =>
  client.ModelInfer(request, (error: (Error & { details?: string }) | null, answer: unknown) => resolve(error ? { error: error.details ?? error.message } : answer)),
);
const ms = performance.now() - started;
delay.disable();
console.log(
  JSON.stringify({
    elements,
    thread,
    requestMiB: +(raw.length / 2 ** 20).toFixed(1),
    ms: Math.round(ms),
    maxEventLoopDelayMs: +(delay.max / 1e6).toFixed(1),
    ...(reply.error ? { refused: reply.error } : { answerBytes: reply.raw_output_contents[0].length }),
  }),
);
client.close();
await front.close(1000);
await server.close();
