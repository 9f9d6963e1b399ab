/**
 * The KServe V2 gRPC protocol (Triton's inference.GRPCInferenceService) end to end: a real
 * @grpc/grpc-js client loading the same .proto over loopback, against the gRPC front end on the
 * same Server core as the HTTP front end, so every answer can be compared with HTTP's.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { numberToHalf } from '../src/core/datatype.js';
import { createGrpcFrontEnd, type GrpcFrontEnd, type GrpcFrontEndOptions } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { grpcFlagName } from '../src/frontends/grpc/grpc-options.js';
import { addSubModel, identityModel, writeModel } from '../src/onnx/test-models.js';
import { VERSION } from '../src/version.js';
import type { Server } from '../src/server/server.js';
import {
  SIMPLE_LABELS,
  binaryBody,
  lengthPrefixed,
  readInferResponse,
  startTestServer,
  writeSimpleModel,
  writeStandardModels,
  type TestServer,
} from './support/test-server.js';

type Json = Record<string, any>;
type Client = grpc.Client & Record<string, any>;

const { Client: InferenceClient } = loadInferenceProto();

const BATCHED_YAML = [
  'max_batch_size: 8',
  'instance_group: [{ count: 1, kind: KIND_CPU }]',
  'dynamic_batching:',
  '  preferred_batch_size: [2, 4]',
  '  max_queue_delay_microseconds: 100',
  '  priority_levels: 2',
  '  default_priority_level: 2',
  '  default_queue_policy: { max_queue_size: 16, timeout_action: DELAY, allow_timeout_override: true }',
  "  priority_queue_policy: { '1': { max_queue_size: 4, default_timeout_microseconds: 1000 } }",
  'parameters: { intra_op_thread_count: 1 }',
  'response_cache: { enable: false }',
  '',
].join('\n');

interface Endpoint {
  front: GrpcFrontEnd;
  client: Client;
}

async function startGrpc(server: Server, options: GrpcFrontEndOptions = {}): Promise<Endpoint> {
  const front = createGrpcFrontEnd(server, options);
  const port = await front.listen('127.0.0.1', 0);
  const client = new InferenceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  }) as Client;
  return { front, client };
}

async function stopGrpc(endpoint: Endpoint | undefined): Promise<void> {
  endpoint?.client.close();
  await endpoint?.front.close(1000);
}

/** Sends `messages` on one ModelStreamInfer stream, ends it, and answers what came back and the final status. */
async function streamAll(endpoint: Endpoint, messages: Json[]): Promise<{ answers: Json[]; status: grpc.StatusObject }> {
  const stream = endpoint.client.ModelStreamInfer() as grpc.ClientDuplexStream<Json, Json>;
  const answers: Json[] = [];
  const status = new Promise<grpc.StatusObject>((resolve) => {
    stream.on('data', (answer: Json) => answers.push(answer));
    stream.on('error', () => undefined);
    stream.on('status', resolve);
  });
  for (const message of messages) stream.write(message);
  stream.end();
  return { answers, status: await status };
}

let main: TestServer; // --model-control-mode none, the standard repository plus 'batched'
let rpc: Endpoint;

before(async () => {
  main = await startTestServer({
    server: { strictReadiness: false },
    models: async (repo) => {
      await writeStandardModels(repo);
      await writeModel(repo, 'batched', 1, addSubModel(), undefined, { 'config.yaml': BATCHED_YAML });
    },
  });
  rpc = await startGrpc(main.server);
});

after(async () => {
  await stopGrpc(rpc);
  await main?.close();
});

// ---------------------------------------------------------------------------------------------
// Helpers

function call<T = Json>(endpoint: Endpoint, method: string, request: object = {}, metadata = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    endpoint.client[method](request, metadata, (error: grpc.ServiceError | null, response: T) => (error ? reject(error) : resolve(response)));
  });
}

/** Calls and expects a failure with `code` whose message holds every fragment; answers the message. */
async function callError(
  endpoint: Endpoint,
  method: string,
  request: object,
  code: grpc.status,
  fragments: string[] = [],
  metadata?: grpc.Metadata,
): Promise<string> {
  const error = await call(endpoint, method, request, metadata).then(
    (response) => assert.fail(`${method} succeeded: ${JSON.stringify(response)}`),
    (error: grpc.ServiceError) => error,
  );
  assert.equal(error.code, code, `expected ${grpc.status[code]}, got ${grpc.status[error.code]}: ${error.details}`);
  for (const fragment of fragments) assert.ok(error.details.includes(fragment), `'${error.details}' lacks '${fragment}'`);
  return error.details;
}

async function httpJson(path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const response = await fetch(`${main.url}${path}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}

/** The HTTP error message for the same request, to compare with gRPC's. */
async function httpError(path: string, body?: unknown): Promise<string> {
  const answer = await httpJson(path, body);
  assert.ok(answer.status >= 400, `HTTP answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.body.error;
}

const bytesOf = (array: ArrayBufferView) => Buffer.from(array.buffer, array.byteOffset, array.byteLength);
const int32Bytes = (values: number[]) => bytesOf(Int32Array.from(values));
const range16 = Array.from({ length: 16 }, (_, index) => index);
const ones16 = Array(16).fill(1);

/** A ModelInfer request for the simple model with raw INT32 rows. */
function simpleRaw(rows0: number[][], rows1: number[][], extra: Json = {}): Json {
  return {
    model_name: 'simple',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [rows0.length, 16] },
      { name: 'INPUT1', datatype: 'INT32', shape: [rows1.length, 16] },
    ],
    raw_input_contents: [int32Bytes(rows0.flat()), int32Bytes(rows1.flat())],
    ...extra,
  };
}

/** The JSON request HTTP takes for the same simple-model inputs. */
function simpleJson(rows0: number[][], rows1: number[][], extra: Json = {}): Json {
  return {
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [rows0.length, 16], data: rows0.flat() },
      { name: 'INPUT1', datatype: 'INT32', shape: [rows1.length, 16], data: rows1.flat() },
    ],
    ...extra,
  };
}

function outputOf(response: Json, name: string): { output: Json; raw: Buffer } {
  const index = response.outputs.findIndex((output: Json) => output.name === name);
  assert.ok(index >= 0, `no output '${name}' in ${JSON.stringify(response.outputs.map((o: Json) => o.name))}`);
  assert.equal(response.raw_output_contents.length, response.outputs.length, 'one raw_output_contents entry per output');
  return { output: response.outputs[index], raw: response.raw_output_contents[index] };
}

function decodeStrings(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const length = bytes.readUInt32LE(offset);
    out.push(bytes.subarray(offset + 4, offset + 4 + length).toString('utf8'));
    offset += 4 + length;
  }
  return out;
}

const int64 = (value: number | string) => ({ int64_param: value });

// ---------------------------------------------------------------------------------------------

describe('health, metadata, config, statistics, repository', () => {
  test('ServerLive, ServerReady and ServerMetadata answer as HTTP does', async () => {
    assert.deepEqual(await call(rpc, 'ServerLive'), { live: true });
    assert.deepEqual(await call(rpc, 'ServerReady'), { ready: true });
    const metadata = await call(rpc, 'ServerMetadata');
    assert.equal(metadata.name, 'nereid');
    assert.equal(metadata.version, VERSION);
    assert.deepEqual(metadata, (await httpJson('/v2')).body);
  });

  test('ModelMetadata: the same as HTTP, shapes as int64 with -1 for the batch dimension', async () => {
    for (const [name, version] of [['simple', ''], ['identity_fp16', ''], ['multi_all', ''], ['multi_all', '1'], ['fp32_identity', '']]) {
      const answer = await call(rpc, 'ModelMetadata', { name, version });
      const http = (await httpJson(`/v2/models/${name}${version ? `/versions/${version}` : ''}`)).body;
      const numeric = (tensors: Json[]) => tensors.map((tensor) => ({ ...tensor, shape: tensor.shape.map(Number) }));
      assert.deepEqual({ ...answer, inputs: numeric(answer.inputs), outputs: numeric(answer.outputs) }, http);
    }
    const simple = await call(rpc, 'ModelMetadata', { name: 'simple' });
    assert.deepEqual(simple.inputs[0], { name: 'INPUT0', datatype: 'INT32', shape: ['-1', '16'] });
  });

  test('ModelReady: true for a ready model or version, false for a broken or unknown one', async () => {
    assert.deepEqual(await call(rpc, 'ModelReady', { name: 'simple' }), { ready: true });
    assert.deepEqual(await call(rpc, 'ModelReady', { name: 'multi_all', version: '1' }), { ready: true });
    assert.deepEqual(await call(rpc, 'ModelReady', { name: 'multi_latest', version: '1' }), { ready: false });
    assert.deepEqual(await call(rpc, 'ModelReady', { name: 'broken' }), { ready: false });
    assert.deepEqual(await call(rpc, 'ModelReady', { name: 'no_such_model' }), { ready: false });
  });

  test('ModelConfig: the completed config in model_config.proto form, matching HTTP', async () => {
    const { config } = await call(rpc, 'ModelConfig', { name: 'simple' });
    const http = (await httpJson('/v2/models/simple/config')).body;
    assert.equal(config.name, 'simple');
    assert.equal(config.platform, http.platform);
    assert.equal(config.backend, http.backend);
    assert.equal(config.max_batch_size, 8);
    assert.equal(config.version_policy.policy_choice, 'latest');
    assert.equal(config.version_policy.latest.num_versions, 1);
    assert.deepEqual(
      config.input.map((input: Json) => [input.name, input.data_type, input.dims.map(Number), input.optional]),
      http.input.map((input: Json) => [input.name, input.data_type, input.dims, input.optional]),
    );
    assert.deepEqual(
      config.output.map((output: Json) => [output.name, output.data_type, output.dims.map(Number), output.label_filename]),
      [
        ['OUTPUT0', 'TYPE_INT32', [16], 'labels.txt'],
        ['OUTPUT1', 'TYPE_INT32', [16], ''],
      ],
    );
    assert.equal(config.scheduling_choice, undefined, 'no dynamic_batching block: each request runs on its own');
    assert.deepEqual(config.model_transaction_policy, { decoupled: false }, 'as HTTP answers it, for tools that read it (perf_analyzer)');
    assert.equal(http.model_transaction_policy.decoupled, false);

    // Dynamic batching with priority queue policies, instance groups, parameters, response cache.
    const batched = (await call(rpc, 'ModelConfig', { name: 'batched' })).config;
    assert.equal(batched.scheduling_choice, 'dynamic_batching');
    const batching = batched.dynamic_batching;
    assert.deepEqual(batching.preferred_batch_size, [2, 4]);
    assert.equal(batching.max_queue_delay_microseconds, '100');
    assert.equal(batching.priority_levels, 2);
    assert.equal(batching.default_priority_level, 2);
    assert.deepEqual(batching.default_queue_policy, {
      timeout_action: 'DELAY',
      default_timeout_microseconds: '0',
      allow_timeout_override: true,
      max_queue_size: 16,
    });
    assert.deepEqual(batching.priority_queue_policy, {
      1: { timeout_action: 'REJECT', default_timeout_microseconds: '1000', allow_timeout_override: false, max_queue_size: 4 },
    });
    assert.deepEqual(
      batched.instance_group.map((group: Json) => [group.kind, group.count]),
      [['KIND_CPU', 1]],
    );
    assert.deepEqual(batched.parameters, { intra_op_thread_count: { string_value: '1' } });
    assert.deepEqual(batched.response_cache, { enable: false });

    // Auto-completed config (no config file) and version policy all.
    const fp16 = (await call(rpc, 'ModelConfig', { name: 'identity_fp16' })).config;
    assert.deepEqual([fp16.input[0].data_type, fp16.input[0].dims.map(Number), fp16.max_batch_size], ['TYPE_FP16', [-1], 4]);
    const all = (await call(rpc, 'ModelConfig', { name: 'multi_all' })).config;
    assert.equal(all.version_policy.policy_choice, 'all');
  });

  test('ModelStatistics: the core statistics in the proto shape, per model, per version and for all', async () => {
    await call(rpc, 'ModelInfer', simpleRaw([range16, range16], [ones16, ones16]));
    const { model_stats } = await call(rpc, 'ModelStatistics', { name: 'simple' });
    const http = (await httpJson('/v2/models/simple/stats')).body.model_stats;
    assert.equal(model_stats.length, 1);
    const [stats] = model_stats;
    assert.equal(stats.name, 'simple');
    assert.equal(stats.version, '1');
    assert.ok(Number(stats.inference_count) >= 2);
    assert.equal(stats.inference_count, String(http[0].inference_count));
    assert.equal(stats.execution_count, String(http[0].execution_count));
    assert.equal(stats.inference_stats.success.count, String(http[0].inference_stats.success.count));
    assert.ok(Number(stats.inference_stats.compute_infer.ns) > 0);
    assert.ok(stats.batch_stats.length >= 1);
    assert.equal(stats.batch_stats[0].batch_size, String(http[0].batch_stats[0].batch_size));
    assert.ok(Number(stats.last_inference) > 0);

    const versioned = await call(rpc, 'ModelStatistics', { name: 'multi_all', version: '2' });
    assert.deepEqual(versioned.model_stats.map((s: Json) => [s.name, s.version]), [['multi_all', '2']]);
    const everything = await call(rpc, 'ModelStatistics', {});
    assert.equal(everything.model_stats.length, (await httpJson('/v2/models/stats')).body.model_stats.length);
    assert.ok(everything.model_stats.some((s: Json) => s.name === 'simple'));
  });

  test('RepositoryIndex: the same entries as HTTP, and ready-only', async () => {
    const { models } = await call(rpc, 'RepositoryIndex', {});
    const http = (await httpJson('/v2/repository/index', {})).body as Json[];
    assert.deepEqual(
      models,
      http.map((entry) => ({ name: entry.name, version: entry.version ?? '', state: entry.state ?? '', reason: entry.reason ?? '' })),
    );
    const broken = models.find((entry: Json) => entry.name === 'broken') as Json;
    assert.equal(broken.state, 'UNAVAILABLE');
    assert.ok(broken.reason.length > 0);
    const ready = (await call(rpc, 'RepositoryIndex', { ready: true })).models as Json[];
    assert.ok(ready.length > 0 && ready.every((entry) => entry.state === 'READY'));
  });

  test('CUDA shared memory answers UNIMPLEMENTED, and system shared memory says how to turn it on', async () => {
    await callError(rpc, 'SystemSharedMemoryStatus', {}, grpc.status.FAILED_PRECONDITION, ['allowClientShm: true']);
    await callError(rpc, 'SystemSharedMemoryRegister', { name: 'r', key: '/k', byte_size: 16 }, grpc.status.FAILED_PRECONDITION, ['allowClientShm: true']);
    await callError(rpc, 'CudaSharedMemoryRegister', { name: 'r' }, grpc.status.UNIMPLEMENTED, ['CUDA shared memory', 'system shared memory']);
    await callError(rpc, 'CudaSharedMemoryUnregister', {}, grpc.status.UNIMPLEMENTED, ['CudaSharedMemoryUnregister']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('ModelInfer', () => {
  test('simple: raw INT32 inputs, raw outputs with their metadata, the id echoed', async () => {
    const rows0 = [range16, range16.map((value) => value * 10)];
    const rows1 = [ones16, range16];
    const response = await call(rpc, 'ModelInfer', simpleRaw(rows0, rows1, { id: 'req-7' }));
    assert.equal(response.model_name, 'simple');
    assert.equal(response.model_version, '1');
    assert.equal(response.id, 'req-7');
    const sum = outputOf(response, 'OUTPUT0');
    const difference = outputOf(response, 'OUTPUT1');
    assert.deepEqual(sum.output, { name: 'OUTPUT0', datatype: 'INT32', shape: ['2', '16'], parameters: {}, contents: null });
    assert.deepEqual([...new Int32Array(new Uint8Array(sum.raw).buffer)], rows0.flat().map((value, index) => value + rows1.flat()[index]));
    assert.deepEqual([...new Int32Array(new Uint8Array(difference.raw).buffer)], rows0.flat().map((value, index) => value - rows1.flat()[index]));
  });

  test('typed contents give the same answer as raw contents', async () => {
    const typed = await call(rpc, 'ModelInfer', {
      model_name: 'simple',
      model_version: '1',
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: range16 } },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: ones16 } },
      ],
    });
    const raw = await call(rpc, 'ModelInfer', simpleRaw([range16], [ones16]));
    assert.deepEqual(typed.raw_output_contents, raw.raw_output_contents);
    assert.deepEqual(typed.outputs, raw.outputs);
  });

  test('a requested subset of outputs is all that is answered; request parameters reach the core', async () => {
    const response = await call(
      rpc,
      'ModelInfer',
      simpleRaw([range16], [ones16], {
        outputs: [{ name: 'OUTPUT1' }],
        parameters: { priority: int64(0), timeout: int64(5_000_000), custom: { string_param: 'x' }, flag: { bool_param: true }, ratio: { double_param: 0.5 } },
      }),
    );
    assert.deepEqual(response.outputs.map((output: Json) => output.name), ['OUTPUT1']);
    assert.equal(response.raw_output_contents.length, 1);
    // Priorities are numbers to the core: a string priority is refused with HTTP's message.
    const grpcMessage = await callError(rpc, 'ModelInfer', simpleRaw([range16], [ones16], { parameters: { priority: { string_param: 'high' } } }), grpc.status.INVALID_ARGUMENT);
    assert.equal(grpcMessage, await httpError('/v2/models/simple/infer', simpleJson([range16], [ones16], { parameters: { priority: 'high' } })));
    // uint64_param works like int64_param.
    const unsigned = await call(rpc, 'ModelInfer', simpleRaw([range16], [ones16], { parameters: { timeout: { uint64_param: '5000000' } } }));
    assert.equal(unsigned.outputs.length, 2);
  });

  test('every datatype identity model round-trips raw and typed contents, identically to HTTP', async () => {
    const shape = [2, 3];
    const cases: { model: string; datatype: string; raw: Buffer; contents?: Json; httpData?: unknown[] }[] = [
      { model: 'identity_int32', datatype: 'INT32', raw: int32Bytes([1, -2, 3, 2147483647, -2147483648, 0]), contents: { int_contents: [1, -2, 3, 2147483647, -2147483648, 0] } },
      {
        model: 'identity_fp32',
        datatype: 'FP32',
        raw: bytesOf(Float32Array.from([0.5, -1.25, 3.75, 1e-3, 1e30, -0])),
        contents: { fp32_contents: [0.5, -1.25, 3.75, 1e-3, 1e30, -0] },
      },
      {
        model: 'identity_int64',
        datatype: 'INT64',
        raw: bytesOf(BigInt64Array.from([1n, -2n, 9007199254740993n, -9223372036854775808n, 9223372036854775807n, 0n])),
        contents: { int64_contents: ['1', '-2', '9007199254740993', '-9223372036854775808', '9223372036854775807', '0'] },
      },
      {
        model: 'identity_uint64',
        datatype: 'UINT64',
        raw: bytesOf(BigUint64Array.from([1n, 2n, 18446744073709551615n, 9007199254740993n, 0n, 7n])),
        contents: { uint64_contents: ['1', '2', '18446744073709551615', '9007199254740993', '0', '7'] },
      },
      { model: 'identity_bool', datatype: 'BOOL', raw: Buffer.from([1, 0, 0, 1, 1, 0]), contents: { bool_contents: [true, false, false, true, true, false] } },
      { model: 'identity_uint8', datatype: 'UINT8', raw: Buffer.from([0, 1, 127, 128, 254, 255]), contents: { uint_contents: [0, 1, 127, 128, 254, 255] } },
      { model: 'identity_int8', datatype: 'INT8', raw: bytesOf(Int8Array.from([-128, -1, 0, 1, 100, 127])), contents: { int_contents: [-128, -1, 0, 1, 100, 127] } },
      { model: 'identity_uint16', datatype: 'UINT16', raw: bytesOf(Uint16Array.from([0, 1, 65535, 300, 2, 3])), contents: { uint_contents: [0, 1, 65535, 300, 2, 3] } },
      { model: 'identity_fp64', datatype: 'FP64', raw: bytesOf(Float64Array.from([0.1, -0.2, 1e300, 5, 6, 7])), contents: { fp64_contents: [0.1, -0.2, 1e300, 5, 6, 7] } },
      {
        model: 'identity_bytes',
        datatype: 'BYTES',
        raw: lengthPrefixed(['a', '', 'héllo', 'x y', 'tail', '🙂']),
        contents: { bytes_contents: ['a', '', 'héllo', 'x y', 'tail', '🙂'].map((text) => Buffer.from(text)) },
      },
      // FP16 travels only as raw bytes.
      { model: 'identity_fp16', datatype: 'FP16', raw: bytesOf(Uint16Array.from([1, -2, 0.5, 65504, -0.25, 3].map(numberToHalf))) },
    ];
    for (const { model, datatype, raw, contents } of cases) {
      const input = { name: 'INPUT0', datatype, shape };
      const fromRaw = await call(rpc, 'ModelInfer', { model_name: model, inputs: [input], raw_input_contents: [raw] });
      const { output, raw: out } = outputOf(fromRaw, 'OUTPUT0');
      assert.deepEqual([output.datatype, output.shape], [datatype, ['2', '3']], model);
      assert.ok(out.equals(raw), `${model}: raw output differs from raw input`);
      if (contents) {
        const fromContents = await call(rpc, 'ModelInfer', { model_name: model, inputs: [{ ...input, contents }] });
        assert.ok(outputOf(fromContents, 'OUTPUT0').raw.equals(raw), `${model}: typed contents give different bytes`);
      }
      // The same request over HTTP with binary tensor data answers the same bytes.
      const { body, headerLength } = binaryBody(
        { inputs: [{ ...input, parameters: { binary_data_size: raw.length } }], parameters: { binary_data_output: true } },
        [raw],
      );
      const http = await fetch(`${main.url}/v2/models/${model}/infer`, {
        method: 'POST',
        body: new Uint8Array(body),
        headers: { 'Inference-Header-Content-Length': String(headerLength) },
      });
      assert.equal(http.status, 200, `${model} over HTTP: ${http.status}`);
      const decoded = await readInferResponse(http);
      assert.ok(decoded.binary.OUTPUT0.equals(out), `${model}: HTTP and gRPC answer different bytes`);
      assert.deepEqual(decoded.header.outputs[0].shape, output.shape.map(Number));
    }
  });

  test('classification: class_count answers BYTES "score:index:label" as over HTTP', async () => {
    const row0 = [3, 9, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const row1 = range16;
    const zeros = Array(16).fill(0);
    const response = await call(
      rpc,
      'ModelInfer',
      simpleRaw([row0, row1], [zeros, zeros], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: int64(3) } }, { name: 'OUTPUT1' }] }),
    );
    const { output, raw } = outputOf(response, 'OUTPUT0');
    assert.deepEqual([output.datatype, output.shape], ['BYTES', ['2', '3']]);
    const classes = decodeStrings(raw);
    assert.deepEqual(classes.slice(0, 3), [`9:1:${SIMPLE_LABELS[1]}`, `7:3:${SIMPLE_LABELS[3]}`, `3:0:${SIMPLE_LABELS[0]}`]);
    const http = await httpJson(
      '/v2/models/simple/infer',
      simpleJson([row0, row1], [zeros, zeros], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: 3 } }, { name: 'OUTPUT1' }] }),
    );
    assert.deepEqual(classes, http.body.outputs.find((o: Json) => o.name === 'OUTPUT0').data);
    assert.equal(outputOf(response, 'OUTPUT1').output.datatype, 'INT32');
  });
});

// ---------------------------------------------------------------------------------------------

describe('typed float contents', () => {
  test('NaN and ±Infinity in fp32_contents and fp64_contents are taken, as Triton takes them', async () => {
    const values = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.5];
    const fp32 = await call(rpc, 'ModelInfer', { model_name: 'fp32_identity', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [4], contents: { fp32_contents: values } }] });
    assert.deepEqual([...new Float32Array(new Uint8Array(fp32.raw_output_contents[0]).buffer)], values);
    const fp64 = await call(rpc, 'ModelInfer', {
      model_name: 'identity_fp64',
      inputs: [{ name: 'INPUT0', datatype: 'FP64', shape: [1, 4], contents: { fp64_contents: values } }],
    });
    assert.deepEqual([...new Float64Array(new Uint8Array(fp64.raw_output_contents[0]).buffer)], values);
  });
});

test('a shape value beyond 2^53 is quoted as the digits sent', async () => {
  await callError(rpc, 'ModelInfer', { model_name: 'fp32_identity', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, '9223372036854775807'] }] }, grpc.status.INVALID_ARGUMENT, [
    'got [1,9223372036854775807]',
  ]);
});

describe('ModelStreamInfer', () => {
  test('many requests on one stream, answered concurrently with their ids; an error mid-stream does not end it', async () => {
    const stream = rpc.client.ModelStreamInfer() as grpc.ClientDuplexStream<Json, Json>;
    const answers: Json[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (answer: Json) => answers.push(answer));
      stream.on('error', reject);
      stream.on('status', (status: grpc.StatusObject) => (status.code === grpc.status.OK ? resolve() : reject(new Error(status.details))));
    });
    const count = 24;
    for (let index = 0; index < count; index++) {
      const base = range16.map((value) => value + index * 100);
      if (index === 7) {
        stream.write({ ...simpleRaw([base], [ones16], { id: `req-${index}` }), inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16] }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16] }] });
      } else if (index === 13) {
        stream.write({ model_name: 'no_such_model', id: `req-${index}`, inputs: [] });
      } else {
        stream.write(simpleRaw([base], [ones16], { id: `req-${index}` }));
      }
    }
    stream.end();
    await done;
    assert.equal(answers.length, count);
    const byId = new Map(answers.map((answer) => [answer.infer_response?.id, answer]));
    assert.equal(byId.size, count, 'every answer carries its own request id');
    for (let index = 0; index < count; index++) {
      const answer = byId.get(`req-${index}`)!;
      if (index === 7) {
        assert.equal(answer.error_message, "input 'INPUT0' expects INT32 [-1,16], got FP32 [1,16]");
        continue;
      }
      if (index === 13) {
        assert.match(answer.error_message, /no_such_model/);
        continue;
      }
      assert.equal(answer.error_message, '', `req-${index}: ${answer.error_message}`);
      const sum = new Int32Array(new Uint8Array(outputOf(answer.infer_response, 'OUTPUT0').raw).buffer);
      assert.deepEqual([...sum], range16.map((value) => value + index * 100 + 1), `req-${index}`);
    }
  });

  test('an error answer echoes at most 256 characters of the request id and model name', async () => {
    const { answers, status } = await streamAll(rpc, [
      simpleRaw([range16], [ones16], { id: 'x'.repeat(300_000) }),
      { ...simpleRaw([range16], [ones16], { id: 'second' }), model_name: 'm'.repeat(300_000) },
    ]);
    assert.equal(status.code, grpc.status.OK);
    assert.equal(answers.length, 2);
    assert.match(answers[0].error_message, /the request id has 300000 characters/);
    assert.equal(answers[0].infer_response.id, `${'x'.repeat(256)}…`);
    assert.equal(answers[1].infer_response.id, 'second');
    assert.equal(answers[1].infer_response.model_name, `${'m'.repeat(256)}…`);
    assert.ok(answers[1].error_message.length < 1200, 'the error message is bounded too');
  });

  test("every answer says it is its request's last (triton_final_response), as tritonclient's enable_empty_final_response expects; other triton_ parameters are refused", async () => {
    const { answers, status } = await streamAll(rpc, [
      simpleRaw([range16], [ones16], { id: 'asked', parameters: { triton_enable_empty_final_response: { bool_param: true } } }),
      simpleRaw([range16], [ones16], { id: 'plain' }),
      { model_name: 'no_such_model', id: 'failed', inputs: [] },
      simpleRaw([range16], [ones16], { id: 'reserved', parameters: { triton_something: { bool_param: true } } }),
      simpleRaw([range16], [ones16], { id: 'not-a-flag', parameters: { triton_enable_empty_final_response: { string_param: 'yes' } } }),
    ]);
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(
      answers.map((answer) => [answer.infer_response.id, answer.infer_response.parameters.triton_final_response?.bool_param]),
      [['asked', true], ['plain', true], ['failed', true], ['reserved', true], ['not-a-flag', true]],
    );
    assert.deepEqual(answers.slice(0, 2).map((answer) => answer.error_message), ['', ''], 'both answered');
    assert.match(answers[3].error_message, /^request: parameter keys starting with 'triton_' are reserved for Triton usage; of those only triton_enable_empty_final_response may be given \(got 'triton_something'\)/);
    assert.match(answers[4].error_message, /invalid value type for 'triton_enable_empty_final_response' parameter, expected a boolean/);
    // Over HTTP no triton_ parameter is the client's to give, as in Triton's HTTP front end.
    assert.match(await httpError('/v2/models/simple/infer', simpleJson([range16], [ones16], { parameters: { triton_enable_empty_final_response: true } })), /reserved for Triton usage and should not be specified/);
  });

  test('a stream that sends nothing ends cleanly', async () => {
    const stream = rpc.client.ModelStreamInfer() as grpc.ClientDuplexStream<Json, Json>;
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      stream.on('data', () => assert.fail('no answer expected'));
      stream.on('status', resolve);
      stream.on('error', () => undefined);
      stream.end();
    });
    assert.equal(status.code, grpc.status.OK);
  });
});

// ---------------------------------------------------------------------------------------------

/** A handler that echoes IN, holding a request whose parameter `gate` names a file until that file exists. */
const GATED_HANDLER = `
import { access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
export function execute(requests) {
  return requests.map(async (request) => {
    const gate = request.parameters.gate;
    // Polled, not timed: the request stays held for as long as the test keeps the gate shut.
    while (typeof gate === 'string' && !(await access(gate).then(() => true, () => false))) await sleep(2);
    return { OUT: { shape: request.inputs.IN.shape, data: request.inputs.IN.data } };
  });
}
`;

describe('ModelStreamInfer answers in request order', () => {
  let gatedServer: TestServer;
  let gates: string;

  before(async () => {
    gates = await mkdtemp(join(tmpdir(), 'nereid-stream-gates-'));
    gatedServer = await startTestServer({
      server: { allowCodeModels: true },
      models: async (repo) => {
        await writeModel(repo, 'identity_fp32', 1, identityModel('float32'));
        await mkdir(join(repo, 'gated', '1'), { recursive: true });
        await writeFile(
          join(repo, 'gated', 'config.pbtxt'),
          'name: "gated"\nbackend: "javascript"\nmax_batch_size: 8\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\noutput [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n',
        );
        await writeFile(join(repo, 'gated', '1', 'model.mjs'), GATED_HANDLER);
      },
    });
  });

  after(async () => {
    await gatedServer?.close();
    await rm(gates, { recursive: true, force: true });
  });

  const fastSuccesses = () => gatedServer.server.modelStatistics('identity_fp32').model_stats[0]!.inference_stats.success.count;

  /** Waits, however long it takes, until the fast model has answered `count` requests in all. */
  async function untilFastAnswered(count: number): Promise<void> {
    while (fastSuccesses() < count) await sleep(2);
  }

  const gatedRequest = (id: string, gate: string): Json => ({
    model_name: 'gated',
    id,
    parameters: { gate: { string_param: gate } },
    inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 1] }],
    raw_input_contents: [bytesOf(Float32Array.of(1))],
  });
  const fastRequest = (id: string, value: number): Json => ({
    model_name: 'identity_fp32',
    id,
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 1] }],
    raw_input_contents: [bytesOf(Float32Array.of(value))],
  });

  /** Opens a stream whose answers are kept in the order they arrive. */
  function orderedStream(client: Client): { stream: grpc.ClientDuplexStream<Json, Json>; answers: Json[]; done: Promise<void> } {
    const stream = client.ModelStreamInfer() as grpc.ClientDuplexStream<Json, Json>;
    const answers: Json[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (answer: Json) => answers.push(answer));
      stream.on('error', reject);
      stream.on('status', (status: grpc.StatusObject) => (status.code === grpc.status.OK ? resolve() : reject(new Error(status.details))));
    });
    return { stream, answers, done };
  }

  test('a slow first request is answered first; later ones run meanwhile and wait their turn, errors included', async () => {
    const endpoint = await startGrpc(gatedServer.server);
    try {
      const gate = join(gates, 'first');
      const before = fastSuccesses();
      const { stream, answers, done } = orderedStream(endpoint.client);
      stream.write(gatedRequest('r1', gate));
      stream.write(fastRequest('r2', 2));
      stream.write({ model_name: 'no_such_model', id: 'r3', inputs: [] });
      stream.write(fastRequest('r4', 4));
      stream.end();
      // r2 and r4 ran while r1 was held (the stream's requests run concurrently), yet nothing may go before r1.
      await untilFastAnswered(before + 2);
      assert.equal(answers.length, 0, `answered before r1: ${answers.map((answer) => answer.infer_response?.id).join(' ')}`);
      await writeFile(gate, '');
      await done;
      assert.deepEqual(answers.map((answer) => answer.infer_response.id), ['r1', 'r2', 'r3', 'r4']);
      assert.equal(answers[0].error_message, '');
      assert.match(answers[2].error_message, /no_such_model/);
      assert.deepEqual([...new Float32Array(new Uint8Array(outputOf(answers[3].infer_response, 'OUTPUT0').raw).buffer)], [4]);
    } finally {
      await stopGrpc(endpoint);
    }
  });

  test('a client that does not read its answers stops the stream reading its requests, and loses none when it reads again', async () => {
    // A raw HTTP/2 client: grpc-js's own keeps reading into an unbounded list when its caller does not, which would
    // hide the server's behaviour; this one stops taking data, so HTTP/2 flow control reaches the server.
    const root = protobuf.loadSync(join(import.meta.dirname, '..', 'proto', 'grpc_service.proto'));
    const requestType = root.lookupType('inference.ModelInferRequest');
    const answerType = root.lookupType('inference.ModelStreamInferResponse');
    const front = createGrpcFrontEnd(gatedServer.server);
    const port = await front.listen('127.0.0.1', 0);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const before = fastSuccesses();
      const stream = session.request({ ':method': 'POST', ':path': '/inference.GRPCInferenceService/ModelStreamInfer', 'content-type': 'application/grpc', te: 'trailers' });
      stream.pause();
      const REQUESTS = 200;
      const ELEMENTS = 64 * 1024; // 256 KiB answers: a few fill the transport's windows
      const payload = Buffer.from(new Float32Array(ELEMENTS).fill(1).buffer);
      const writing = (async () => {
        for (let index = 0; index < REQUESTS; index++) {
          const message = requestType.encode({ modelName: 'identity_fp32', id: `r${index}`, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, ELEMENTS] }], rawInputContents: [payload] }).finish();
          const frame = Buffer.alloc(5 + message.length);
          frame.writeUInt32BE(message.length, 1);
          frame.set(message, 5);
          if (!stream.write(frame)) await once(stream, 'drain');
        }
        stream.end();
      })();
      // Nothing reads the answers: the server's count must stop well short of every request, and stay there.
      let served = -1;
      while (served !== fastSuccesses()) {
        served = fastSuccesses();
        await sleep(500);
      }
      const held = served - before;
      assert.ok(held > 0 && held < REQUESTS / 2, `${held} of ${REQUESTS} requests ran with no answer read`);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.resume();
      const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on('trailers', resolve));
      await writing;
      assert.equal(trailers['grpc-status'], '0', String(trailers['grpc-message']));
      const body = Buffer.concat(chunks);
      const ids: string[] = [];
      for (let at = 0; at < body.length; ) {
        const length = body.readUInt32BE(at + 1);
        const answer = answerType.decode(body.subarray(at + 5, at + 5 + length)) as unknown as { errorMessage: string; inferResponse: { id: string } };
        assert.equal(answer.errorMessage, '');
        ids.push(answer.inferResponse.id);
        at += 5 + length;
      }
      assert.deepEqual(ids, Array.from({ length: REQUESTS }, (_, index) => `r${index}`));
      assert.equal(fastSuccesses() - before, REQUESTS);
    } finally {
      session.close();
      await front.close(1000);
    }
  });

  test('at streamMaxPendingAnswers the stream reads no further request until its oldest one is answered', async () => {
    const endpoint = await startGrpc(gatedServer.server, { streamMaxPendingAnswers: 2 });
    try {
      const gate = join(gates, 'bounded');
      const before = fastSuccesses();
      const { stream, answers, done } = orderedStream(endpoint.client);
      stream.write(gatedRequest('r1', gate));
      stream.write(fastRequest('r2', 2));
      stream.write(fastRequest('r3', 3));
      stream.end();
      // r1 held and r2 answered fill the two places: r3 stays unread while r1 is held.
      await untilFastAnswered(before + 1);
      assert.equal(fastSuccesses(), before + 1, 'r3 ran while r1 and r2 filled the stream');
      assert.equal(answers.length, 0);
      await writeFile(gate, '');
      await done;
      assert.deepEqual(answers.map((answer) => answer.infer_response.id), ['r1', 'r2', 'r3']);
      assert.ok(answers.every((answer) => answer.error_message === ''));
      assert.equal(fastSuccesses(), before + 2);
    } finally {
      await stopGrpc(endpoint);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('errors: gRPC codes with the messages HTTP answers', () => {
  /** Sends the same request both ways and expects the same message; answers it. */
  async function sameError(grpcRequest: Json, httpPath: string, httpBody: Json, code: grpc.status, fragments: string[] = []): Promise<string> {
    const message = await callError(rpc, 'ModelInfer', grpcRequest, code, fragments);
    assert.equal(message, await httpError(httpPath, httpBody));
    return message;
  }

  test('unknown model and unknown version: NOT_FOUND', async () => {
    await sameError({ ...simpleRaw([range16], [ones16]), model_name: 'no_such_model' }, '/v2/models/no_such_model/infer', simpleJson([range16], [ones16]), grpc.status.NOT_FOUND, ['no_such_model']);
    await sameError({ ...simpleRaw([range16], [ones16]), model_version: '9' }, '/v2/models/simple/versions/9/infer', simpleJson([range16], [ones16]), grpc.status.NOT_FOUND, ["Request for unknown model: 'simple' version 9 is not found"]);
    const metadata = await callError(rpc, 'ModelMetadata', { name: 'no_such_model' }, grpc.status.NOT_FOUND);
    assert.equal(metadata, await httpError('/v2/models/no_such_model'));
    const config = await callError(rpc, 'ModelConfig', { name: 'simple', version: '9' }, grpc.status.NOT_FOUND);
    assert.equal(config, await httpError('/v2/models/simple/versions/9/config'));
    const stats = await callError(rpc, 'ModelStatistics', { name: 'no_such_model' }, grpc.status.NOT_FOUND);
    assert.equal(stats, await httpError('/v2/models/no_such_model/stats'));
    // A model that failed to load has no version to serve: NOT_FOUND, as Triton answers, with its reason; the version
    // that failed, asked by number, UNAVAILABLE.
    await callError(rpc, 'ModelInfer', { model_name: 'broken', inputs: [] }, grpc.status.NOT_FOUND, ["'broken' has no available versions", 'Protobuf parsing failed']);
    await callError(rpc, 'ModelInfer', { model_name: 'broken', model_version: '1', inputs: [] }, grpc.status.UNAVAILABLE, ["'broken' version 1 is not at ready state"]);
  });

  test('wrong datatype, wrong shape, wrong element count: INVALID_ARGUMENT', async () => {
    const fp32 = { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], contents: { fp32_contents: range16 } }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: ones16 } }] };
    await sameError(fp32, '/v2/models/simple/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: range16 }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: ones16 }] }, grpc.status.INVALID_ARGUMENT, ['expects INT32 [-1,16], got FP32 [1,16]']);
    const narrow = { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 8], contents: { int_contents: range16.slice(0, 8) } }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 8], contents: { int_contents: ones16.slice(0, 8) } }] };
    await sameError(narrow, '/v2/models/simple/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 8], data: range16.slice(0, 8) }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 8], data: ones16.slice(0, 8) }] }, grpc.status.INVALID_ARGUMENT, ['expects INT32 [-1,16]']);
    const count = { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: range16.slice(0, 15) } }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: ones16 } }] };
    await sameError(count, '/v2/models/simple/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: range16.slice(0, 15) }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: ones16 }] }, grpc.status.INVALID_ARGUMENT, ['holds 16 elements, but 15 were sent']);
    const negative = { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [-1, 16], contents: { int_contents: range16 } }] };
    await sameError(negative, '/v2/models/simple/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [-1, 16], data: range16 }] }, grpc.status.INVALID_ARGUMENT, ['shape must be an array of non-negative integers']);
    const unknownType = { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'FLOAT', shape: [1, 16], contents: { fp32_contents: range16 } }] };
    await sameError(unknownType, '/v2/models/simple/infer', { inputs: [{ name: 'INPUT0', datatype: 'FLOAT', shape: [1, 16], data: range16 }] }, grpc.status.INVALID_ARGUMENT, ['datatype must be one of']);
    // Values out of range for the datatype are named by position, as in JSON.
    const int8 = { model_name: 'identity_int8', inputs: [{ name: 'INPUT0', datatype: 'INT8', shape: [1, 2], contents: { int_contents: [1, 300] } }] };
    await sameError(int8, '/v2/models/identity_int8/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT8', shape: [1, 2], data: [1, 300] }] }, grpc.status.INVALID_ARGUMENT, ['element 1 is 300']);
  });

  test('raw contents: byte length mismatch, malformed BYTES, count of entries, mixing with typed contents', async () => {
    const short = await callError(
      rpc,
      'ModelInfer',
      { ...simpleRaw([range16], [ones16]), raw_input_contents: [int32Bytes(range16).subarray(0, 60), int32Bytes(ones16)] },
      grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(short, "input 'INPUT0': INT32 [1,16] needs 64 bytes of binary data, got raw_input_contents[0] size 60");
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 60 } }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: ones16 }] },
      [int32Bytes(range16).subarray(0, 60)],
    );
    const http = await fetch(`${main.url}/v2/models/simple/infer`, { method: 'POST', body: new Uint8Array(body), headers: { 'Inference-Header-Content-Length': String(headerLength) } });
    const httpMessage = ((await http.json()) as Json).error as string;
    assert.equal(httpMessage, "input 'INPUT0': INT32 [1,16] needs 64 bytes of binary data, got binary_data_size 60");

    const truncated = lengthPrefixed(['abc']).subarray(0, 5);
    await callError(rpc, 'ModelInfer', { model_name: 'identity_bytes', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, 1] }], raw_input_contents: [truncated] }, grpc.status.INVALID_ARGUMENT, [
      "input 'INPUT0': binary BYTES data must be 4-byte little-endian lengths",
    ]);
    await callError(rpc, 'ModelInfer', { model_name: 'identity_bytes', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, 2] }], raw_input_contents: [lengthPrefixed(['abc'])] }, grpc.status.INVALID_ARGUMENT, [
      'which holds 2 elements, but 7 bytes of binary data hold at most 1',
    ]);
    await callError(rpc, 'ModelInfer', { ...simpleRaw([range16], [ones16]), raw_input_contents: [int32Bytes(range16)] }, grpc.status.INVALID_ARGUMENT, [
      'raw_input_contents has 1 entries but the request has 2 inputs',
    ]);
    const mixed = simpleRaw([range16], [ones16]);
    mixed.inputs[1].contents = { int_contents: ones16 };
    await callError(rpc, 'ModelInfer', mixed, grpc.status.INVALID_ARGUMENT, ["input 'INPUT1' has contents while the request has raw_input_contents"]);
    await callError(rpc, 'ModelInfer', { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16] }] }, grpc.status.INVALID_ARGUMENT, [
      "input 'INPUT0' has no contents (and no raw_input_contents)",
    ]);
    await callError(rpc, 'ModelInfer', { model_name: 'identity_fp16', inputs: [{ name: 'INPUT0', datatype: 'FP16', shape: [1, 1], contents: { fp32_contents: [1] } }] }, grpc.status.INVALID_ARGUMENT, [
      'FP16 has no typed contents field',
      'raw_input_contents',
    ]);
    await callError(rpc, 'ModelInfer', { model_name: 'identity_int32', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 1], contents: { fp32_contents: [1] } }] }, grpc.status.INVALID_ARGUMENT, [
      "input 'INPUT0' is INT32, whose contents go in int_contents, but the request sets fp32_contents",
    ]);
  });

  test('missing input, unknown input, unknown output, bad class_count, batch too large', async () => {
    const justOne = { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: range16 } }] };
    const justOneJson = { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: range16 }] };
    await sameError(justOne, '/v2/models/simple/infer', justOneJson, grpc.status.INVALID_ARGUMENT, ["expects input 'INPUT1', which the request lacks"]);
    const extra = { model_name: 'simple', inputs: [...justOne.inputs, { name: 'INPUT9', datatype: 'INT32', shape: [1, 16], contents: { int_contents: ones16 } }] };
    await sameError(extra, '/v2/models/simple/infer', { inputs: [...justOneJson.inputs, { name: 'INPUT9', datatype: 'INT32', shape: [1, 16], data: ones16 }] }, grpc.status.INVALID_ARGUMENT, ["unexpected inference input 'INPUT9' for model 'simple'"]);
    await sameError(simpleRaw([range16], [ones16], { outputs: [{ name: 'OUTPUT7' }] }), '/v2/models/simple/infer', simpleJson([range16], [ones16], { outputs: [{ name: 'OUTPUT7' }] }), grpc.status.INVALID_ARGUMENT, ["unexpected inference output 'OUTPUT7' for model 'simple'"]);
    await sameError(
      simpleRaw([range16], [ones16], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: int64(-2) } }] }),
      '/v2/models/simple/infer',
      simpleJson([range16], [ones16], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: -2 } }] }),
      grpc.status.INVALID_ARGUMENT,
      ["parameter 'classification' or 'class_count') must be a positive integer, got -2"],
    );
    await sameError(
      simpleRaw([range16], [ones16], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: { string_param: 'three' } } }] }),
      '/v2/models/simple/infer',
      simpleJson([range16], [ones16], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: 'three' } }] }),
      grpc.status.INVALID_ARGUMENT,
      ['class_count must be a number'],
    );
    const nine = Array.from({ length: 9 }, () => range16);
    await sameError(simpleRaw(nine, nine), '/v2/models/simple/infer', simpleJson(nine, nine), grpc.status.INVALID_ARGUMENT, ['batch size 9', 'max_batch_size']);
    // A parameter without a value (an empty oneof) is refused like a non-scalar JSON parameter.
    await callError(rpc, 'ModelInfer', simpleRaw([range16], [ones16], { parameters: { priority: {} } }), grpc.status.INVALID_ARGUMENT, [
      "request: parameter 'priority' must be a string, number or boolean",
    ]);
  });

  test('load and unload are refused under --model-control-mode none, with HTTP messages', async () => {
    const load = await callError(rpc, 'RepositoryModelLoad', { model_name: 'simple' }, grpc.status.UNAVAILABLE, ["modelControlMode: 'none'"]);
    assert.equal(load, await httpError('/v2/repository/models/simple/load', {}));
    const unload = await callError(rpc, 'RepositoryModelUnload', { model_name: 'simple' }, grpc.status.UNAVAILABLE, ['explicit model load / unload is not allowed (unload)']);
    assert.equal(unload, await httpError('/v2/repository/models/simple/unload', {}));
    assert.deepEqual(await call(rpc, 'ModelReady', { name: 'simple' }), { ready: true });
  });

  test('a repository call naming a repository is refused as in Triton (UNIMPLEMENTED), over gRPC as over HTTP', async () => {
    const index = await callError(rpc, 'RepositoryIndex', { repository_name: 'other' }, grpc.status.UNIMPLEMENTED, [
      "'repository_name' specification is not supported (got 'other'): the repository API covers the models of every model repository the server serves, as one; leave the name out",
    ]);
    assert.equal(index, await httpError('/v2/repository/other/index', {}));
    const load = await callError(rpc, 'RepositoryModelLoad', { repository_name: 'other', model_name: 'simple' }, grpc.status.UNIMPLEMENTED, ["'repository_name' specification is not supported"]);
    assert.equal(load, await httpError('/v2/repository/other/models/simple/load', {}));
    await callError(rpc, 'RepositoryModelUnload', { repository_name: 'other', model_name: 'simple' }, grpc.status.UNIMPLEMENTED, ["'repository_name'"]);
  });

  test('path traversal in model names is refused by every RPC', async () => {
    for (const name of ['../../etc', '..', 'a/b', '.hidden/../x', '']) {
      await callError(rpc, 'ModelMetadata', { name }, grpc.status.INVALID_ARGUMENT, [`invalid model name '${name}'`]);
      await callError(rpc, 'ModelReady', { name }, grpc.status.INVALID_ARGUMENT, ['invalid model name']);
      await callError(rpc, 'ModelConfig', { name }, grpc.status.INVALID_ARGUMENT, ['invalid model name']);
      await callError(rpc, 'ModelInfer', { model_name: name, inputs: [] }, grpc.status.INVALID_ARGUMENT, ['invalid model name']);
    }
    await callError(rpc, 'ModelStatistics', { name: '../x' }, grpc.status.INVALID_ARGUMENT, ['invalid model name']);
  });

  test('a malformed protobuf message is refused without harm', async () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      rpc.client.makeUnaryRequest(
        '/inference.GRPCInferenceService/ModelInfer',
        (value: Buffer) => value,
        (value: Buffer) => value,
        garbage,
        (err: grpc.ServiceError | null) => resolve(err!),
      );
    });
    assert.ok(error, 'expected an error');
    assert.notEqual(error.code, grpc.status.OK);
  });

  test('after the barrage the server is still live and infers correctly', async () => {
    assert.deepEqual(await call(rpc, 'ServerLive'), { live: true });
    const response = await call(rpc, 'ModelInfer', simpleRaw([range16], [ones16]));
    assert.deepEqual([...new Int32Array(new Uint8Array(outputOf(response, 'OUTPUT0').raw).buffer)], range16.map((value) => value + 1));
  });
});

// ---------------------------------------------------------------------------------------------

describe('limits and authentication', () => {
  let limited: Endpoint;
  let secured: Endpoint;
  before(async () => {
    limited = await startGrpc(main.server, { maxReceiveMessageBytes: 64 * 1024, maxSendMessageBytes: 16 * 1024, keepaliveTimeMs: 60_000, keepaliveTimeoutMs: 5_000 });
    secured = await startGrpc(main.server, { authTokens: ['s3cret', 'second-token'] });
  });
  after(async () => {
    await stopGrpc(limited);
    await stopGrpc(secured);
  });

  test('the port caps connections and the calls one connection has open; a client queues calls past the cap', async () => {
    const capped = createGrpcFrontEnd(main.server, { maxConnections: 1, maxConcurrentStreams: 2 });
    const port = await capped.listen('127.0.0.1', 0);
    const channel = (options: grpc.ChannelOptions = {}) => new InferenceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, ...options }) as Client;
    const first = channel();
    const second = channel();
    let session: http2.ClientHttp2Session | undefined;
    try {
      const live = (client: Client) => new Promise<number>((resolve) => client.ServerLive({}, { deadline: Date.now() + 5000 }, (error: grpc.ServiceError | null) => resolve(error ? error.code : grpc.status.OK)));
      const calls = await Promise.all(Array.from({ length: 10 }, () => live(first)));
      assert.deepEqual(calls, Array(10).fill(grpc.status.OK), 'ten calls through a cap of two streams, queued, all answered');
      assert.equal(await live(second), grpc.status.UNAVAILABLE, 'a second connection is refused');
      first.close();
      second.close();
      // Once the slot is free, a plain HTTP/2 client is told the cap in the server's SETTINGS.
      for (let attempt = 0; attempt < 50; attempt++) {
        session = http2.connect(`http://127.0.0.1:${port}`);
        session.on('error', () => undefined);
        const settings = await Promise.race([once(session, 'remoteSettings').then(([remote]) => remote as http2.Settings), once(session, 'close').then(() => undefined)]);
        if (settings) {
          assert.equal(settings.maxConcurrentStreams, 2);
          break;
        }
        assert.ok(attempt < 49, 'the connection slot was never freed');
        await sleep(100);
      }
    } finally {
      session?.destroy();
      first.close();
      second.close();
      await capped.close(500);
    }
  });

  const fp32Request = (elements: number) => ({
    model_name: 'fp32_identity',
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [elements] }],
    raw_input_contents: [bytesOf(new Float32Array(elements))],
  });

  test('a request over the receive limit, or an answer over the send limit, is RESOURCE_EXHAUSTED naming the limit and the setting that sets it', async () => {
    assert.equal((await call(limited, 'ModelInfer', fp32Request(1024))).outputs.length, 1); // 4 KiB each way
    // grpc-js's words (which clients match to tell it from overload) with the limit's setting: an option's key from the library.
    const received = await callError(limited, 'ModelInfer', fp32Request(32 * 1024), grpc.status.RESOURCE_EXHAUSTED); // 128 KiB in
    assert.match(received, /^Received message larger than max \(\d+ vs 65536\): a request message may have at most 65536 bytes \(maxReceiveMessageBytes\)$/);
    await callError(limited, 'ModelInfer', fp32Request(8 * 1024), grpc.status.RESOURCE_EXHAUSTED, ['larger than max', 'limit on a sent message (maxSendMessageBytes)']); // 32 KiB out
    assert.deepEqual(await call(limited, 'ServerLive'), { live: true });
    // Started by the CLI, whose one flag sets both limits.
    const flagged = await startGrpc(main.server, { maxReceiveMessageBytes: 64 * 1024, maxSendMessageBytes: 16 * 1024, settingName: grpcFlagName });
    try {
      await callError(flagged, 'ModelInfer', fp32Request(32 * 1024), grpc.status.RESOURCE_EXHAUSTED, ['at most 65536 bytes (--grpc-max-message-bytes)']);
      await callError(flagged, 'ModelInfer', fp32Request(8 * 1024), grpc.status.RESOURCE_EXHAUSTED, ['limit on a sent message (--grpc-max-message-bytes)']);
    } finally {
      await stopGrpc(flagged);
    }
  });

  test('on a stream, an answer over the send limit is that request\'s error; the stream and its later answers go on', async () => {
    const { answers, status } = await streamAll(limited, [
      { ...fp32Request(1024), id: 'small-1' },
      { ...fp32Request(8 * 1024), id: 'big' }, // 32 KiB out, over the 16 KiB limit
      { ...fp32Request(1024), id: 'small-2' },
    ]);
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(answers.map((answer) => answer.infer_response.id), ['small-1', 'big', 'small-2']);
    assert.equal(answers[0].error_message, '');
    assert.match(answers[1].error_message, /^the answer is larger than max: \d+ bytes vs\. the 16384-byte limit on a sent message/);
    assert.equal(answers[2].error_message, '');
  });

  test('with tokens: UNAUTHENTICATED without a valid bearer token, health RPCs open', async () => {
    const bearer = (token: string) => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${token}`);
      return metadata;
    };
    const message = await callError(secured, 'ModelMetadata', { name: 'simple' }, grpc.status.UNAUTHENTICATED, ['bearer token']);
    const http = await startTestServer({ models: writeSimpleModel, http: { authTokens: ['s3cret'] } });
    try {
      const answer = await fetch(`${http.url}/v2/models/simple`);
      assert.equal(message, ((await answer.json()) as Json).error);
    } finally {
      await http.close();
    }
    await callError(secured, 'ModelInfer', simpleRaw([range16], [ones16]), grpc.status.UNAUTHENTICATED, [], bearer('wrong'));
    await callError(secured, 'RepositoryIndex', {}, grpc.status.UNAUTHENTICATED, [], bearer(''));
    await callError(secured, 'SystemSharedMemoryStatus', {}, grpc.status.UNAUTHENTICATED);
    // The refusal carries the call's request id back, as HTTP's 401 does.
    const withId = bearer('wrong');
    withId.set('x-request-id', 'refused-call-7');
    const headerId = await new Promise<unknown>((resolve) => {
      const refusedCall = secured.client.ModelMetadata({ name: 'simple' }, withId, () => undefined);
      refusedCall.on('metadata', (headers: grpc.Metadata) => resolve(headers.get('x-request-id')[0]));
      refusedCall.on('status', () => resolve(undefined));
    });
    assert.equal(headerId, 'refused-call-7');
    assert.equal((await call(secured, 'ModelMetadata', { name: 'simple' }, bearer('s3cret'))).name, 'simple');
    assert.equal((await call(secured, 'ModelInfer', simpleRaw([range16], [ones16]), bearer('second-token'))).outputs.length, 2);
    assert.deepEqual(await call(secured, 'ServerLive'), { live: true });
    assert.deepEqual(await call(secured, 'ServerReady'), { ready: true });

    // A stream is refused as a whole without a token, and served with one.
    const refused = secured.client.ModelStreamInfer() as grpc.ClientDuplexStream<Json, Json>;
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      refused.on('status', resolve);
      refused.on('error', () => undefined);
      refused.on('data', () => assert.fail('no answer expected'));
      refused.write(simpleRaw([range16], [ones16]));
      refused.end();
    });
    assert.equal(status.code, grpc.status.UNAUTHENTICATED);
    const allowed = secured.client.ModelStreamInfer(bearer('s3cret')) as grpc.ClientDuplexStream<Json, Json>;
    const answers: Json[] = [];
    await new Promise<void>((resolve, reject) => {
      allowed.on('data', (answer: Json) => answers.push(answer));
      allowed.on('status', (s: grpc.StatusObject) => (s.code === grpc.status.OK ? resolve() : reject(new Error(s.details))));
      allowed.on('error', reject);
      allowed.write(simpleRaw([range16], [ones16], { id: 'one' }));
      allowed.end();
    });
    assert.deepEqual(answers.map((answer) => [answer.error_message, answer.infer_response.id]), [['', 'one']]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('model repository extension over gRPC (explicit model control)', () => {
  let explicit: TestServer;
  let control: Endpoint;
  before(async () => {
    explicit = await startTestServer({ models: writeStandardModels, server: { modelControlMode: 'explicit', loadModels: ['identity_int32'] } });
    control = await startGrpc(explicit.server);
  });
  after(async () => {
    await stopGrpc(control);
    await explicit?.close();
  });

  test('load, infer, unload, infer fails clearly, load with a config parameter', async () => {
    assert.deepEqual(await call(control, 'ModelReady', { name: 'simple' }), { ready: false });
    const index = (await call(control, 'RepositoryIndex', {})).models as Json[];
    assert.deepEqual(index.find((entry) => entry.name === 'simple'), { name: 'simple', version: '', state: '', reason: '' });

    assert.deepEqual(await call(control, 'RepositoryModelLoad', { model_name: 'simple' }), {});
    assert.deepEqual(await call(control, 'ModelReady', { name: 'simple' }), { ready: true });
    assert.equal((await call(control, 'ModelInfer', simpleRaw([range16], [ones16]))).outputs.length, 2);

    assert.deepEqual(await call(control, 'RepositoryModelUnload', { model_name: 'simple' }), {});
    assert.deepEqual(await call(control, 'ModelReady', { name: 'simple' }), { ready: false });
    const gone = await callError(control, 'ModelInfer', simpleRaw([range16], [ones16]), grpc.status.NOT_FOUND, ["Request for unknown model: 'simple' has no available versions"]);
    const http = await fetch(`${explicit.url}/v2/models/simple/infer`, { method: 'POST', body: JSON.stringify(simpleJson([range16], [ones16])) });
    assert.equal(http.status, 404);
    assert.equal(((await http.json()) as Json).error, gone);

    const config = JSON.stringify({ max_batch_size: 2, input: [{ name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16] }, { name: 'INPUT1', data_type: 'TYPE_INT32', dims: [16] }] });
    await call(control, 'RepositoryModelLoad', { model_name: 'simple', parameters: { config: { string_param: config } } });
    assert.equal((await call(control, 'ModelConfig', { name: 'simple' })).config.max_batch_size, 2);
    const three = [range16, range16, range16];
    await callError(control, 'ModelInfer', simpleRaw(three, three), grpc.status.INVALID_ARGUMENT, ["inference request batch-size must be <= 2 for 'simple'", 'accepts 1 to 2 (max_batch_size)']);
  });

  test('bad load requests and path traversal are refused with what was wrong', async () => {
    await callError(control, 'RepositoryModelLoad', { model_name: 'no_such_model' }, grpc.status.INVALID_ARGUMENT, ['no_such_model']);
    await callError(control, 'RepositoryModelLoad', { model_name: 'simple', parameters: { config: { string_param: '{not json' } } }, grpc.status.INVALID_ARGUMENT, [
      "load parameter 'config' is not valid JSON",
    ]);
    await callError(control, 'RepositoryModelLoad', { model_name: 'simple', parameters: { 'file:1/model.onnx': { bytes_param: Buffer.from('x') } } }, grpc.status.INVALID_ARGUMENT, [
      'uploading model files is disabled',
    ]);
    await callError(control, 'RepositoryModelLoad', { model_name: 'simple', parameters: { config: { bool_param: true } } }, grpc.status.INVALID_ARGUMENT, [
      "load parameter 'config' must be a JSON string",
    ]);
    for (const name of ['../simple', '..', '../../etc/passwd']) {
      await callError(control, 'RepositoryModelLoad', { model_name: name }, grpc.status.INVALID_ARGUMENT, [`invalid model name '${name}'`]);
      await callError(control, 'RepositoryModelUnload', { model_name: name }, grpc.status.INVALID_ARGUMENT, ['invalid model name']);
    }
    await callError(control, 'RepositoryModelLoad', { model_name: 'broken' }, grpc.status.INVALID_ARGUMENT, ["load failed for model 'broken'"]);
    assert.deepEqual(await call(control, 'RepositoryModelUnload', { model_name: 'not_in_the_repository' }), {});
    assert.deepEqual(await call(control, 'ModelReady', { name: 'identity_int32' }), { ready: true });
  });
});
