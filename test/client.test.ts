/**
 * The TypeScript client against a real server, over HTTP (binary and JSON) and gRPC: every datatype
 * round-trips exactly through identity models, classification comes back decoded, errors keep the
 * server's status and message, a 503 with Retry-After is tried again, and a gRPC stream answers each request.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ClientError, GrpcCallError, GrpcClient, HttpClient, type ClientTensor } from '../src/client/index.js';
import { matMulChainModel, writeModel } from '../src/onnx/test-models.js';
import { startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';
import { IDENTITY_MODELS, SIMPLE_LABELS, startTestServer, writeStandardModels, type TestServer } from './support/test-server.js';

let served: TestServer;
let grpcEndpoint: GrpcEndpoint;
let http: HttpClient;
let grpc: GrpcClient;

before(async () => {
  served = await startTestServer({ models: writeStandardModels });
  grpcEndpoint = await startGrpcEndpoint(served.server);
  http = new HttpClient({ url: served.url });
  grpc = new GrpcClient({ address: `127.0.0.1:${grpcEndpoint.port}` });
});

after(async () => {
  grpc.close();
  await grpcEndpoint.close();
  await served.close();
});

/** Two rows of each datatype, at the edges of its range where it has them. */
const SAMPLES: Record<string, ClientTensor['data']> = {
  BOOL: [true, false],
  UINT8: Uint8Array.of(0, 255),
  UINT16: Uint16Array.of(0, 65535),
  UINT32: Uint32Array.of(0, 4294967295),
  UINT64: BigUint64Array.of(0n, 18446744073709551615n),
  INT8: Int8Array.of(-128, 127),
  INT16: Int16Array.of(-32768, 32767),
  INT32: Int32Array.of(-2147483648, 2147483647),
  INT64: BigInt64Array.of(-9223372036854775808n, 9007199254740993n),
  FP16: [1.5, -65504],
  FP32: Float32Array.of(3.25, -1e-3),
  FP64: Float64Array.of(Math.PI, -1e300),
  BYTES: ['héllo', Buffer.from('wörld')],
};

const expected = (datatype: string, data: ClientTensor['data']) =>
  datatype === 'BYTES' ? (data as (string | Buffer)[]).map((element) => Buffer.from(element)) : datatype === 'BOOL' ? [1, 0] : Array.from(data as ArrayLike<unknown>);

for (const [model, { datatype }] of Object.entries(IDENTITY_MODELS)) {
  test(`${datatype} round-trips exactly over HTTP (binary and JSON) and gRPC`, async () => {
    const data = SAMPLES[datatype]!;
    const inputs = { INPUT0: { datatype, shape: [1, 2], data } };
    // JSON too: the client reads 64-bit integers beyond 2^53 as bigints, where JSON.parse would round them.
    const answers = [await http.infer(model, inputs), await grpc.infer(model, inputs), await http.infer(model, inputs, { binary: false })];
    for (const answer of answers) {
      const output = answer.outputs.OUTPUT0!;
      assert.equal(output.datatype, datatype);
      assert.deepEqual(output.shape, [1, 2]);
      assert.deepEqual(Array.from(output.data as ArrayLike<unknown>), expected(datatype, data));
    }
  });
}

test('NaN and ±Infinity round-trip over HTTP (binary and JSON) and gRPC, from typed arrays and plain numbers', async () => {
  const sent = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.5];
  for (const [model, datatype, data] of [
    ['identity_fp32', 'FP32', Float32Array.from(sent)],
    ['identity_fp64', 'FP64', Float64Array.from(sent)],
    ['identity_fp32', 'FP32', sent],
    ['identity_fp16', 'FP16', sent],
  ] as const) {
    const inputs = { INPUT0: { datatype, shape: [1, 4], data } as ClientTensor };
    const answers = [await http.infer(model, inputs), await grpc.infer(model, inputs), await http.infer(model, inputs, { binary: false })];
    // JSON.stringify would have written null, which read back as 0.
    for (const answer of answers) assert.deepEqual(Array.from(answer.outputs.OUTPUT0!.data as ArrayLike<number>), sent, `${datatype} ${data.constructor.name}`);
  }
});

test('JSON mode keeps 64-bit integers exact beside a string holding \\u0001, and refuses BYTES that JSON cannot carry', async () => {
  const exact = BigInt64Array.of(9007199254740993n, -9223372036854775808n);
  const answer = await http.infer('identity_int64', { INPUT0: { datatype: 'INT64', shape: [1, 2], data: exact } }, { binary: false, id: 'run\u0001 7' });
  assert.equal(answer.id, 'run\u0001 7');
  assert.deepEqual(Array.from(answer.outputs.OUTPUT0!.data as BigInt64Array), Array.from(exact));
  const marked = await http.infer('identity_bytes', { INPUT0: { datatype: 'BYTES', shape: [1, 2], data: ['a\u0001b', '9007199254740993'] } }, { binary: false });
  assert.deepEqual((marked.outputs.OUTPUT0!.data as Buffer[]).map(String), ['a\u0001b', '9007199254740993']);
  const notText = Buffer.from('00ff01', 'hex');
  await assert.rejects(http.infer('identity_bytes', { INPUT0: { datatype: 'BYTES', shape: [1, 1], data: [notText] } }, { binary: false }), {
    code: 'INVALID_ARGUMENT',
    message: "input 'INPUT0': BYTES element 0 (00ff01) is not UTF-8 text, which JSON cannot carry unchanged; send it as binary data (binary: true, the default)",
  });
});

test('data that would change on the way is refused before sending: a typed array of another kind, plain values out of range, fractional or not numbers', async () => {
  const sends = [(model: string, inputs: Record<string, ClientTensor>) => http.infer(model, inputs), (model: string, inputs: Record<string, ClientTensor>) => grpc.infer(model, inputs), (model: string, inputs: Record<string, ClientTensor>) => http.infer(model, inputs, { binary: false })];
  const cases: [string, ClientTensor, string][] = [
    ['identity_fp32', { datatype: 'FP32', shape: [1, 2], data: Int32Array.of(1, 2) }, "input 'INPUT0': FP32 data must be a Float32Array (or a plain array), not Int32Array, whose bytes would be misread"],
    ['identity_uint8', { datatype: 'UINT8', shape: [1, 2], data: [300, -1] }, "input 'INPUT0': element 0 is 300, expected an integer in [0, 255] for datatype UINT8"],
    ['identity_int32', { datatype: 'INT32', shape: [1, 1], data: [2 ** 31] }, "input 'INPUT0': element 0 is 2147483648, expected an integer in [-2147483648, 2147483647] for datatype INT32"],
    ['identity_int32', { datatype: 'INT32', shape: [1, 1], data: [1.5] }, "input 'INPUT0': element 0 is 1.5, expected an integer in [-2147483648, 2147483647] for datatype INT32"],
    ['identity_fp32', { datatype: 'FP32', shape: [1, 1], data: ['a'] as unknown as number[] }, "input 'INPUT0': element 0 is \"a\", expected a number for datatype FP32"],
    // A tensor built wrong is named by input, where it crashed with "Cannot read properties of undefined".
    ['identity_fp32', { datatype: 'fp32', shape: [1, 1], data: [1] } as unknown as ClientTensor, `input 'INPUT0': datatype must be one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES, got "fp32" (did you mean FP32?)`],
    ['identity_fp32', { datatype: 'FP32', data: [1] } as unknown as ClientTensor, "input 'INPUT0' has no 'shape' (an array of non-negative integers)"],
    ['identity_fp32', { datatype: 'FP32', shape: [1, 1] } as unknown as ClientTensor, "input 'INPUT0' needs 'data': a typed array or an array of FP32 values (strings or Buffers for BYTES)"],
    ['identity_fp32', { datatype: 'FP32', shape: [1, 3], data: [1, 2] }, "input 'INPUT0': a FP32 tensor of shape [1, 3] holds 3 elements; 2 were given"],
  ];
  // Each a NereidError with code INVALID_ARGUMENT, as the server's own refusal of the same input would be.
  for (const [model, tensor, message] of cases) {
    for (const send of sends) await assert.rejects(send(model, { INPUT0: tensor }), { name: 'NereidError', code: 'INVALID_ARGUMENT', message });
  }
  // Plain numbers of the right kind, and 0/1 for BOOL, still go.
  const answer = await grpc.infer('identity_uint8', { INPUT0: { datatype: 'UINT8', shape: [1, 2], data: [255, 0] } });
  assert.deepEqual(Array.from(answer.outputs.OUTPUT0!.data as Uint8Array), [255, 0]);
  const bools = await http.infer('identity_bool', { INPUT0: { datatype: 'BOOL', shape: [1, 2], data: [1, 0] } });
  assert.deepEqual(Array.from(bools.outputs.OUTPUT0!.data as Uint8Array), [1, 0]);
});

test('gRPC cancellation: an aborted signal stops the call before it goes, a shared signal keeps no listener per finished call, and a stream refuses a per-request signal', async () => {
  const inputs = { INPUT0: { datatype: 'FP32' as const, shape: [1, 1], data: [1] } };
  const aborted = new AbortController();
  aborted.abort();
  await assert.rejects(grpc.infer('identity_fp32', inputs, { signal: aborted.signal }), (error: GrpcCallError) => error.code === 1);
  const shared = new AbortController();
  for (let index = 0; index < 12; index++) await grpc.infer('identity_fp32', inputs, { signal: shared.signal });
  assert.equal(getEventListeners(shared.signal, 'abort').length, 0);
  const requests = [{ model: 'identity_fp32', inputs, options: { signal: shared.signal } as object }];
  await assert.rejects(
    (async () => {
      for await (const answer of grpc.stream(requests)) void answer;
    })(),
    { name: 'TypeError', code: 'INVALID_ARGUMENT', message: "a request on a stream cannot take its own signal (model 'identity_fp32'); end the whole stream by returning from the loop over its answers" },
  );
});

test('a gRPC message over the server\'s size limit fails at once: RESOURCE_EXHAUSTED for size is not tried again', { timeout: 120_000 }, async () => {
  const small = await startGrpcEndpoint(served.server, { maxReceiveMessageBytes: 1024 });
  const client = new GrpcClient({ address: `127.0.0.1:${small.port}`, retry: { tries: 3, firstDelayMs: 3_600_000, maxDelayMs: 3_600_000 } });
  try {
    const inputs = { INPUT0: { datatype: 'FP32' as const, shape: [1, 1024], data: new Float32Array(1024) } };
    await assert.rejects(client.infer('identity_fp32', inputs, { outputs: ['OUTPUT0'] }), (error: GrpcCallError) => error.code === 8 && /larger than max/.test(error.details));
  } finally {
    client.close();
    await small.close();
  }
});

test("an answer over the gRPC front end's send limit fails at once: the server's RESOURCE_EXHAUSTED for size is not run again", { timeout: 120_000 }, async () => {
  const small = await startGrpcEndpoint(served.server, { maxSendMessageBytes: 1024 });
  const client = new GrpcClient({ address: `127.0.0.1:${small.port}`, retry: { tries: 3, firstDelayMs: 1, maxDelayMs: 1 } });
  const failures = () => served.server.modelStatistics('identity_fp32').model_stats[0]!.inference_stats.fail.count;
  const failedBefore = failures();
  try {
    // 1 KiB in, within the receive limit; 2 KiB out, over the send limit: the model runs, and its answer is refused.
    const inputs = { INPUT0: { datatype: 'FP32' as const, shape: [1, 512], data: new Float32Array(512) } };
    await assert.rejects(client.infer('identity_fp32', inputs, { outputs: ['OUTPUT0'] }), (error: GrpcCallError) => error.code === 8 && /larger than max/.test(error.details));
    // Each try would run the model again for an answer no later try could send.
    assert.equal(failures() - failedBefore, 1, 'the model ran once');
  } finally {
    client.close();
    await small.close();
  }
});

test('classification comes back as scores, indexes and labels', async () => {
  const inputs = { INPUT0: { datatype: 'INT32', shape: [1, 16], data: Int32Array.from({ length: 16 }, (_, index) => index) }, INPUT1: { datatype: 'INT32', shape: [1, 16], data: new Int32Array(16).fill(1) } } as const;
  for (const client of [http, grpc]) {
    const answer = await client.infer('simple', inputs, { outputs: ['OUTPUT0'], classification: 2 });
    assert.deepEqual(answer.outputs.OUTPUT0!.classes, [
      { score: 16, index: 15, label: SIMPLE_LABELS[15] },
      { score: 15, index: 14, label: SIMPLE_LABELS[14] },
    ]);
    // Without `outputs` the client asks for every output of the model by name, as classification is asked per output.
    const every = await client.infer('simple', inputs, { classification: 1 });
    assert.deepEqual(Object.keys(every.outputs).sort(), ['OUTPUT0', 'OUTPUT1']);
    assert.deepEqual(every.outputs.OUTPUT0!.classes, [{ score: 16, index: 15, label: SIMPLE_LABELS[15] }]);
    assert.equal(every.outputs.OUTPUT1!.classes?.length, 1);
  }
  const streamed = [];
  for await (const answer of grpc.stream([{ model: 'simple', inputs, options: { classification: 1 } }])) streamed.push(answer);
  assert.ok(!('error' in streamed[0]!));
  assert.deepEqual(streamed[0].outputs.OUTPUT0!.classes, [{ score: 16, index: 15, label: SIMPLE_LABELS[15] }]);
});

test('errors keep the status and the server\'s message; health and metadata calls answer', async () => {
  await assert.rejects(http.infer('nothing_here', { X: { datatype: 'FP32', shape: [1], data: [1] } }), (error: ClientError) => error.status === 404 && /Request for unknown model/.test(error.message));
  await assert.rejects(grpc.infer('nothing_here', { X: { datatype: 'FP32', shape: [1], data: [1] } }), (error: GrpcCallError) => error.code === 5 && /Request for unknown model/.test(error.details));
  assert.equal(await http.serverReady(), false, 'the standard repository has broken models: not ready');
  assert.equal(await http.serverLive(), true);
  assert.equal(await http.modelReady('simple'), true);
  assert.equal(await grpc.modelReady('simple'), true);
  assert.equal((await http.modelMetadata('simple')).name, 'simple');
  assert.equal((await grpc.modelMetadata('simple')).name, 'simple');
  assert.ok((await http.repositoryIndex()).some((row) => row.name === 'broken' && row.state === 'UNAVAILABLE'));
});

test('a gRPC stream answers every request it carries, in the order they were sent', async () => {
  const requests = [1, 2, 3, 4, 5].map((value) => ({ model: 'identity_fp32', inputs: { INPUT0: { datatype: 'FP32' as const, shape: [1, 1], data: [value] } }, options: { id: `r${value}` } }));
  const answers = [];
  for await (const answer of grpc.stream(requests)) answers.push(answer);
  assert.deepEqual(answers.map((answer) => ('error' in answer ? answer.error : [answer.id, Array.from(answer.outputs.OUTPUT0!.data as Float32Array)])), requests.map((request) => [request.options.id, request.inputs.INPUT0.data]));
});

test('leaving the loop over a gRPC stream early cancels the call and stops reading the requests\' source', async () => {
  let sourceEnded = false;
  let sent = 0;
  // A source that waits between requests and never ends by itself: left alone, it would keep the process alive.
  async function* requests() {
    try {
      for (let value = 1; ; value++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        sent += 1;
        yield { model: 'identity_fp32', inputs: { INPUT0: { datatype: 'FP32' as const, shape: [1, 1], data: [value] } } };
      }
    } finally {
      sourceEnded = true;
    }
  }
  let answers = 0;
  for await (const answer of grpc.stream(requests())) {
    assert.ok(!('error' in answer), JSON.stringify(answer));
    if (++answers === 2) break;
  }
  const until = Date.now() + 5_000;
  while (!sourceEnded && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(sourceEnded, `the source was still read after the loop ended (${sent} requests taken)`);
  // The client serves on: a new call on the same channel is answered.
  assert.equal(await grpc.modelReady('identity_fp32'), true);
});

test('response parameters (the OOD verdict) come back the same over HTTP and gRPC, as plain values', async (t) => {
  // fashion_mnist with its bundled reference profile answers ood (bool), ood_score and ood_threshold (double), ood_scores (string).
  const repository = await mkdtemp(join(tmpdir(), 'nereid-client-parameters-'));
  t.after(() => rm(repository, { recursive: true, force: true }));
  const modelFolder = join(dirname(fileURLToPath(import.meta.url)), '..', 'models', 'fashion_mnist');
  await cp(modelFolder, join(repository, 'fashion_mnist'), { recursive: true });
  const withProfile = await startTestServer({ repoDir: repository });
  t.after(() => withProfile.close());
  const endpoint = await startGrpcEndpoint(withProfile.server);
  t.after(() => endpoint.close());
  const grpcClient = new GrpcClient({ address: `127.0.0.1:${endpoint.port}` });
  t.after(() => grpcClient.close());

  const grayscalePng = (pixel: (x: number, y: number) => number) =>
    sharp(Buffer.from(Array.from({ length: 28 * 28 }, (_, index) => pixel(index % 28, Math.floor(index / 28)))), { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toBuffer();
  const garment = await grayscalePng((x, y) => (x >= 7 && x < 21 && y >= 4 && y < 24 ? 220 : 0));
  const noise = await grayscalePng((x, y) => ((x * 28 + y) * 7919) % 256);
  const inputs = { image: { datatype: 'BYTES' as const, shape: [2, 1], data: [garment, noise] } };

  const overHttp = await new HttpClient({ url: withProfile.url }).infer('fashion_mnist', inputs, { id: 'same' });
  const overGrpc = await grpcClient.infer('fashion_mnist', inputs, { id: 'same' });
  assert.equal(typeof overHttp.parameters?.ood, 'boolean', JSON.stringify(overHttp.parameters));
  assert.equal(typeof overHttp.parameters?.ood_score, 'number');
  assert.equal(typeof overHttp.parameters?.ood_threshold, 'number');
  assert.equal(String(overHttp.parameters?.ood_scores).split(',').length, 2, 'one score per row');
  assert.deepEqual(overGrpc.parameters, overHttp.parameters);
  assert.equal(overGrpc.id, 'same');

  const streamed = [];
  for await (const answer of grpcClient.stream([{ model: 'fashion_mnist', inputs }])) streamed.push(answer);
  assert.ok(!('error' in streamed[0]!), JSON.stringify(streamed[0]));
  assert.deepEqual(streamed[0].parameters, overHttp.parameters);

  // A model that sets no response parameters: neither client invents an empty object.
  const plainInputs = { INPUT0: { datatype: 'FP32' as const, shape: [1, 1], data: [1] } };
  assert.equal((await http.infer('identity_fp32', plainInputs)).parameters, undefined);
  assert.equal((await grpc.infer('identity_fp32', plainInputs)).parameters, undefined);
});

test('a 503 with Retry-After (a model still loading on demand) is tried again until it is answered', async (t) => {
  const loading = await startTestServer({
    models: (repo) => writeModel(repo, 'slow_to_load', 1, matMulChainModel({ width: 1024, layers: 2 })),
    server: { modelControlMode: 'on_demand', modelLoadWaitMs: 1 },
  });
  t.after(() => loading.close());
  const inputs = { x: { datatype: 'FP32' as const, shape: [1, 1024], data: new Float32Array(1024).fill(1) } };
  await assert.rejects(new HttpClient({ url: loading.url, retry: { tries: 1 } }).infer('slow_to_load', inputs), (error: ClientError) => error.status === 503 && error.retryAfterSeconds === 1);
  const answer = await new HttpClient({ url: loading.url, retry: { tries: 5, maxDelayMs: 1000 } }).infer('slow_to_load', inputs);
  assert.deepEqual(answer.outputs.y!.shape, [1, 4]);
});

test('compression: the HTTP client sends a gzip or deflate body and asks for a compressed answer only when told; gRPC messages go compressed', async () => {
  const { createServer, request: forward } = await import('node:http');
  const { gunzipSync } = await import('node:zlib');
  // A loopback proxy that passes bytes through as they are and notes what went by, compressed or not.
  const seen: { requestHeaders: Record<string, unknown>; requestBody: Buffer; responseHeaders: Record<string, unknown> }[] = [];
  const target = new URL(served.url);
  const proxy = createServer((incoming, outgoing) => {
    const parts: Buffer[] = [];
    incoming.on('data', (part: Buffer) => parts.push(part));
    incoming.on('end', () => {
      const upstream = forward({ host: target.hostname, port: target.port, method: incoming.method, path: incoming.url, headers: incoming.headers }, (answer) => {
        seen.push({ requestHeaders: incoming.headers, requestBody: Buffer.concat(parts), responseHeaders: answer.headers });
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      });
      upstream.end(Buffer.concat(parts));
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = proxy.address() as { port: number };
    const client = new HttpClient({ url: `http://127.0.0.1:${port}` });
    const data = Float32Array.from({ length: 4096 }, (_, index) => index % 7);
    const inputs = { INPUT0: { datatype: 'FP32', shape: [1, 4096], data } } as const;

    const plain = await client.infer('identity_fp32', inputs);
    assert.deepEqual(plain.outputs.OUTPUT0!.data, data);
    assert.equal(seen.at(-1)!.requestHeaders['accept-encoding'], 'identity', 'fetch would ask for gzip by itself');
    assert.equal(seen.at(-1)!.requestHeaders['content-encoding'], undefined);
    assert.equal(seen.at(-1)!.responseHeaders['content-encoding'], undefined);

    const compressed = await client.infer('identity_fp32', inputs, { requestCompression: 'gzip', responseCompression: 'deflate' });
    assert.deepEqual(compressed.outputs.OUTPUT0!.data, data);
    const { requestHeaders, requestBody, responseHeaders } = seen.at(-1)!;
    assert.equal(requestHeaders['content-encoding'], 'gzip');
    assert.ok(requestBody.length < data.byteLength / 4, `a body of small repeating floats compresses (${requestBody.length} bytes sent)`);
    assert.match(gunzipSync(requestBody).toString('latin1'), /^\{"inputs":\[\{"name":"INPUT0"/);
    assert.equal(responseHeaders['content-encoding'], 'deflate');
    assert.ok(Number(responseHeaders['content-length']) < data.byteLength / 4);

    const json = await client.infer('identity_fp32', inputs, { binary: false, responseCompression: 'gzip' });
    assert.deepEqual(Array.from(json.outputs.OUTPUT0!.data as Float32Array), Array.from(data));
    assert.equal(seen.at(-1)!.responseHeaders['content-encoding'], 'gzip');
  } finally {
    proxy.close();
  }

  for (const compression of ['gzip', 'deflate'] as const) {
    const client = new GrpcClient({ address: `127.0.0.1:${grpcEndpoint.port}`, compression });
    try {
      const data = Float32Array.from({ length: 4096 }, (_, index) => index % 7);
      const answer = await client.infer('identity_fp32', { INPUT0: { datatype: 'FP32', shape: [1, 4096], data } });
      assert.deepEqual(answer.outputs.OUTPUT0!.data, data, compression);
    } finally {
      client.close();
    }
  }
});

test('a kept-alive connection the server closed while idle is not a failure: the call goes again on a new one', async () => {
  // A server (or proxy) that drops each connection as a second request arrives on it, as one closing idle connections does.
  const requestsOn = new WeakMap<object, number>();
  const flaky = createHttpServer((request, response) => {
    const count = (requestsOn.get(request.socket) ?? 0) + 1;
    requestsOn.set(request.socket, count);
    if (count > 1) return request.socket.destroy();
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ name: 'flaky', version: '1', extensions: [] }));
  });
  await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve));
  const client = new HttpClient({ url: `http://127.0.0.1:${(flaky.address() as AddressInfo).port}` });
  try {
    for (let call = 0; call < 3; call++) assert.equal((await client.serverMetadata()).name, 'flaky');
  } finally {
    client.close();
    flaky.closeAllConnections();
    await new Promise((resolve) => flaky.close(resolve));
  }
});

test('GrpcClient has the metadata, statistics and repository calls HttpClient has, answering alike', async () => {
  const explicit = await startTestServer({ models: writeStandardModels, server: { modelControlMode: 'explicit', loadModels: ['identity_int32'] } });
  const endpoint = await startGrpcEndpoint(explicit.server);
  const overHttp = new HttpClient({ url: explicit.url });
  const overGrpc = new GrpcClient({ address: `127.0.0.1:${endpoint.port}` });
  try {
    assert.deepEqual(await overGrpc.serverMetadata(), await overHttp.serverMetadata());
    assert.deepEqual(await overGrpc.repositoryIndex(true), [{ name: 'identity_int32', version: '1', state: 'READY', reason: '' }]);
    await overGrpc.loadModel('simple', { max_batch_size: 4, dynamic_batching: {} });
    assert.equal(await overHttp.modelReady('simple'), true);
    const config = await overGrpc.modelConfig('simple');
    assert.equal(config.name, 'simple');
    assert.equal(config.max_batch_size, (await overHttp.modelConfig('simple')).max_batch_size);
    assert.equal(config.max_batch_size, 4, 'the config given with the load');
    await overGrpc.infer('simple', { INPUT0: { datatype: 'INT32', shape: [1, 16], data: new Int32Array(16) }, INPUT1: { datatype: 'INT32', shape: [1, 16], data: new Int32Array(16) } });
    const [stats] = (await overGrpc.modelStatistics('simple')).model_stats as { name: string; inference_count: number }[];
    assert.deepEqual([stats!.name, stats!.inference_count], ['simple', 1]);
    await overGrpc.unloadModel('simple', { unloadDependents: false });
    assert.equal(await overHttp.modelReady('simple'), false);
    await assert.rejects(overGrpc.loadModel('no_such_model'), (error: GrpcCallError) => error.code === 3 && /no_such_model/.test(error.details));
  } finally {
    overGrpc.close();
    overHttp.close();
    await endpoint.close();
    await explicit.close();
  }
});

test("a gRPC stream's failure throws a GrpcCallError as a unary call's does, with its code and the same message shape", async () => {
  // Nothing listens on port 1: the stream fails UNAVAILABLE. Outputs named, so no metadata call goes before it.
  const unreachable = new GrpcClient({ address: '127.0.0.1:1', retry: { tries: 1 } });
  const inputs = { INPUT0: { datatype: 'INT32', shape: [1, 16], data: new Int32Array(16) } } as const;
  try {
    const unary = await unreachable.serverLive().then(
      () => assert.fail('nothing listens'),
      (error: unknown) => error,
    );
    await assert.rejects(
      async () => {
        for await (const answer of unreachable.stream([{ model: 'simple', inputs, options: { outputs: ['OUTPUT0'] } }])) void answer;
      },
      (error: unknown) => {
        assert.ok(error instanceof GrpcCallError, `a GrpcCallError, got ${String(error)}`);
        assert.equal(error.code, 14);
        assert.match(error.message, /^UNAVAILABLE: /);
        assert.equal(error.name, (unary as GrpcCallError).name);
        return true;
      },
    );
  } finally {
    unreachable.close();
  }
});
