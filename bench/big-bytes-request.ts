/**
 * One big BYTES request to an identity model through a real front end — gRPC (raw_input_contents,
 * as Triton's clients send it) or HTTP (Triton's binary tensor extension, binary answer), the
 * client in a worker thread: how long it takes, and the longest the server's event loop was held
 * meanwhile. Run under `node --cpu-prof` to see where the time goes.
 *
 *   node --import tsx bench/big-bytes-request.ts [elements=1000000] [bytesPerElement=1] [main|worker|auto] [grpc|http] [BYTES|FP32]
 *
 * FP32 sends the same number of bytes as the BYTES request would, as floats: the yardstick for
 * what a request of that size costs the server whatever it holds.
 */
import { once } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { createGrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { PROTO_DIR } from '../src/frontends/grpc/v2-grpc-proto.js';
import { identityModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer } from '../test/support/test-server.js';

const elements = Number(process.argv[2] ?? 1_000_000);
const bytesPerElement = Number(process.argv[3] ?? 1);
/** Where the model computes: 'main' (the JS thread) or 'worker'. */
const thread = process.argv[4] ?? 'worker';
const protocol = process.argv[5] ?? 'grpc';
if (protocol !== 'grpc' && protocol !== 'http') throw new Error(`protocol must be grpc or http, got ${protocol}`);
const datatype = process.argv[6] ?? 'BYTES';
if (datatype !== 'BYTES' && datatype !== 'FP32') throw new Error(`datatype must be BYTES or FP32, got ${datatype}`);
const requestBytes = elements * (4 + bytesPerElement);
/** The tensor's element count: BYTES elements, or the floats that fill as many bytes. */
const count = datatype === 'BYTES' ? elements : Math.floor(requestBytes / 4);

const server = await startTestServer({
  models: (repo) => writeModel(repo, 'identity', 1, identityModel(datatype === 'BYTES' ? 'string' : 'float32'), `parameters { key: "execution_thread" value: { string_value: "${thread}" } }\n`),
  http: { maxBodyBytes: 1 << 30 },
});
/**
 * The client runs in a worker thread with its own event loop and heap, so the holds measured are
 * the server's alone: encoding a 5 MB request or reading the answer is the client's work.
 */
const CLIENT = `
const { parentPort, workerData } = require('node:worker_threads');
const { count, bytesPerElement, datatype, protocol, url, grpcTarget, protoDir } = workerData;
// Written in place: an array of millions of strings would leave the collector work during the measurement.
const raw = Buffer.alloc(datatype === 'BYTES' ? count * (4 + bytesPerElement) : count * 4, 'x');
if (datatype === 'BYTES') for (let offset = 0; offset < raw.length; offset += 4 + bytesPerElement) raw.writeUInt32LE(bytesPerElement, offset);
async function overGrpc() {
  const grpc = require('@grpc/grpc-js');
  const loader = require('@grpc/proto-loader');
  const definition = loader.loadSync('grpc_service.proto', { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [protoDir] });
  const Client = grpc.loadPackageDefinition(definition).inference.GRPCInferenceService;
  const client = new Client(grpcTarget, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
  const request = { model_name: 'identity', inputs: [{ name: 'INPUT0', datatype, shape: [1, count] }], raw_input_contents: [raw] };
  const reply = await new Promise((resolve) => client.ModelInfer(request, (error, answer) => resolve(error ? { error: error.details || error.message } : answer)));
  client.close();
  return reply.error ? { refused: reply.error } : { answerBytes: reply.raw_output_contents[0].length };
}
async function overHttp() {
  const json = Buffer.from(JSON.stringify({
    inputs: [{ name: 'INPUT0', datatype, shape: [1, count], parameters: { binary_data_size: raw.length } }],
    parameters: { binary_data_output: true },
  }));
  const response = await fetch(url + '/v2/models/identity/infer', {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) },
    body: Buffer.concat([json, raw]),
  });
  const body = Buffer.from(await response.arrayBuffer());
  if (!response.ok) return { refused: response.status + ' ' + body.toString() };
  return { answerBytes: body.length - Number(response.headers.get('inference-header-content-length')) };
}
parentPort.once('message', async () => parentPort.postMessage(await (protocol === 'grpc' ? overGrpc() : overHttp())));
parentPort.postMessage('ready');
`;

const front = protocol === 'grpc' ? createGrpcFrontEnd(server.server, { maxReceiveMessageBytes: 1 << 30, maxSendMessageBytes: 1 << 30 }) : undefined;
const grpcPort = front ? await front.listen('127.0.0.1', 0) : 0;
const client = new Worker(CLIENT, {
  eval: true,
  workerData: { count, bytesPerElement, datatype, protocol, url: server.url, grpcTarget: `127.0.0.1:${grpcPort}`, protoDir: PROTO_DIR },
});
await once(client, 'message');
const requestMiB = requestBytes / 2 ** 20;

const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
const started = performance.now();
// A refusal (more elements than the server accepts per input, say) is reported with its time too.
client.postMessage('go');
const [reply] = (await once(client, 'message')) as [{ answerBytes?: number; refused?: string }];
const ms = performance.now() - started;
delay.disable();
console.log(
  JSON.stringify({
    protocol,
    datatype,
    elements: count,
    thread,
    requestMiB: +requestMiB.toFixed(1),
    ms: Math.round(ms),
    maxEventLoopDelayMs: +(delay.max / 1e6).toFixed(1),
    p99EventLoopDelayMs: +(delay.percentile(99) / 1e6).toFixed(1),
    ...(reply.refused ? { refused: reply.refused } : { answerBytes: reply.answerBytes }),
  }),
);
await client.terminate();
await front?.close(1000);
await server.close();
