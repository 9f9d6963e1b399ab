/**
 * The KServe V2 HTTP protocol with Triton's extensions, end to end: real servers on loopback ports,
 * real HTTP (global fetch, node:http for raw paths), real ONNX Runtime sessions on generated models.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { identityModel, writeModel } from '../src/onnx/test-models.js';
import { VERSION } from '../src/version.js';
import { CountWaiters } from './support/count-waiters.js';
import { RawConnection } from './support/raw-http.js';
import type { LogLine } from './support/fake-backend.js';
import {
  BROKEN_MODELS,
  IDENTITY_MODELS,
  SIMPLE_LABELS,
  binaryBody,
  lengthPrefixed,
  readInferResponse,
  startTestServer,
  writeSimpleModel,
  type BinaryResponse,
  type TestServer,
} from './support/test-server.js';

const MAX_BODY_BYTES = 256 * 1024;

let main: TestServer; // --model-control-mode none, every model of the standard repository
before(async () => {
  // strictReadiness off: the repository deliberately holds models that fail to load.
  main = await startTestServer({ server: { strictReadiness: false }, http: { maxBodyBytes: MAX_BODY_BYTES } });
});
after(async () => {
  await main?.close();
});

// ---------------------------------------------------------------------------------------------
// Helpers

type Json = Record<string, any>;

function post(base: TestServer, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const payload: string | Uint8Array<ArrayBuffer> | undefined =
    body === undefined ? undefined : typeof body === 'string' ? body : body instanceof Uint8Array ? new Uint8Array(body) : JSON.stringify(body);
  return fetch(`${base.url}${path}`, { method: 'POST', body: payload, headers });
}

function get(base: TestServer, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base.url}${path}`, { headers });
}

async function okJson(response: Response): Promise<Json> {
  const text = await response.text();
  assert.equal(response.status, 200, `expected 200, got ${response.status}: ${text}`);
  assert.match(response.headers.get('content-type') ?? '', /application\/json/);
  return JSON.parse(text);
}

/** Asserts a 4xx (or the given status) answer whose JSON body is {"error": message} with every fragment in it. */
async function assertError(response: Response, status: number | '4xx', ...fragments: string[]): Promise<string> {
  const text = await response.text();
  if (status === '4xx') assert.ok(response.status >= 400 && response.status < 500, `expected 4xx, got ${response.status}: ${text}`);
  else assert.equal(response.status, status, `expected ${status}, got ${response.status}: ${text}`);
  assert.match(response.headers.get('content-type') ?? '', /application\/json/, `error body must be JSON: ${text}`);
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body), ['error'], `error body must be {"error": ...}: ${text}`);
  assert.equal(typeof body.error, 'string');
  for (const fragment of fragments) assert.ok(body.error.includes(fragment), `error '${body.error}' lacks '${fragment}'`);
  return body.error;
}

/**
 * A request whose path is sent byte for byte (fetch would normalise '..' and '%2e%2e') and whose
 * answer is read as it came (fetch would inflate a compressed one).
 */
function rawRequest(
  base: TestServer,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; bytes: Buffer; headers: http.IncomingHttpHeaders }> {
  const url = new URL(base.url);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: url.hostname, port: url.port, method, path, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const bytes = Buffer.concat(chunks);
        resolve({ status: response.statusCode ?? 0, body: bytes.toString('utf8'), bytes, headers: response.headers });
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}

const range16 = Array.from({ length: 16 }, (_, index) => index);

function simpleRequest(rows: number[][], other: number[][], extra: Json = {}): Json {
  return {
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [rows.length, 16], data: rows },
      { name: 'INPUT1', datatype: 'INT32', shape: [other.length, 16], data: other },
    ],
    ...extra,
  };
}

/** Asserts that the simple model still answers correctly (sum and difference). */
async function assertSimpleInfers(base: TestServer, headers: Record<string, string> = {}): Promise<void> {
  const ones = range16.map(() => 1);
  const body = await okJson(await post(base, '/v2/models/simple/infer', simpleRequest([range16], [ones]), headers));
  const byName = Object.fromEntries(body.outputs.map((output: Json) => [output.name, output]));
  assert.deepEqual(byName.OUTPUT0.data, range16.map((value) => value + 1));
  assert.deepEqual(byName.OUTPUT1.data, range16.map((value) => value - 1));
}

// ---------------------------------------------------------------------------------------------
// Health, server metadata, model metadata and config

describe('health and metadata', () => {
  test('GET /v2/health/live and /v2/health/ready answer 200 with an empty body', async () => {
    for (const path of ['/v2/health/live', '/v2/health/ready']) {
      const response = await get(main, path);
      assert.equal(response.status, 200, path);
      assert.equal(await response.text(), '');
    }
  });

  test('GET /v2 answers the server metadata with its extensions', async () => {
    const body = await okJson(await get(main, '/v2'));
    assert.equal(body.name, 'nereid');
    assert.equal(body.version, VERSION);
    assert.ok(Array.isArray(body.extensions));
    for (const extension of ['classification', 'sequence', 'model_repository', 'model_configuration', 'binary_tensor_data', 'schedule_policy', 'parameters', 'statistics']) {
      assert.ok(body.extensions.includes(extension), `extensions lack ${extension}: ${body.extensions}`);
    }
  });

  test('GET /v2/models/{m} answers name, versions, platform, inputs and outputs with the batch dimension as -1', async () => {
    assert.deepEqual(await okJson(await get(main, '/v2/models/simple')), {
      name: 'simple',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [-1, 16] },
        { name: 'INPUT1', datatype: 'INT32', shape: [-1, 16] },
      ],
      outputs: [
        { name: 'OUTPUT0', datatype: 'INT32', shape: [-1, 16] },
        { name: 'OUTPUT1', datatype: 'INT32', shape: [-1, 16] },
      ],
    });
  });

  test('model metadata of models without config is completed from the ONNX file, for every datatype', async () => {
    for (const [name, { datatype }] of Object.entries(IDENTITY_MODELS)) {
      const body = await okJson(await get(main, `/v2/models/${name}`));
      assert.deepEqual(body.inputs, [{ name: 'INPUT0', datatype, shape: [-1, -1] }], name);
      assert.deepEqual(body.outputs, [{ name: 'OUTPUT0', datatype, shape: [-1, -1] }], name);
    }
  });

  test('GET /v2/models/{m}/versions/{v} and the versions of version policies all and latest', async () => {
    assert.deepEqual((await okJson(await get(main, '/v2/models/multi_all'))).versions, ['1', '2']);
    assert.deepEqual((await okJson(await get(main, '/v2/models/multi_latest'))).versions, ['2']);
    const v1 = await okJson(await get(main, '/v2/models/multi_all/versions/1'));
    assert.equal(v1.name, 'multi_all');
    assert.deepEqual(v1.versions, ['1']);
    assert.deepEqual(v1.inputs, [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }]);
    await assertError(await get(main, '/v2/models/multi_latest/versions/1'), 404, "Request for unknown model: 'multi_latest' version 1 is not found", 'loaded: 2');
    await assertError(await get(main, '/v2/models/simple/versions/abc'), 400, 'version', "'abc'");
  });

  test('GET .../ready: 200 for a ready model or version, 400 for one that is not', async () => {
    for (const path of ['/v2/models/simple/ready', '/v2/models/simple/versions/1/ready', '/v2/models/multi_all/versions/1/ready', '/v2/models/multi_all/versions/2/ready']) {
      const response = await get(main, path);
      assert.equal(response.status, 200, path);
      assert.equal(await response.text(), '');
    }
    await assertError(await get(main, '/v2/models/multi_latest/versions/1/ready'), 400, 'multi_latest', 'not ready');
    await assertError(await get(main, '/v2/models/broken/ready'), 400, 'broken', 'not ready');
    await assertError(await get(main, '/v2/models/no_such_model/ready'), 400, 'no_such_model', 'not ready');
  });

  test('GET .../config answers the completed config: pbtxt, YAML, JSON and no config at all', async () => {
    const simple = await okJson(await get(main, '/v2/models/simple/config'));
    assert.equal(simple.name, 'simple');
    assert.equal(simple.max_batch_size, 8);
    assert.equal(simple.platform, 'onnxruntime_onnx');
    assert.equal(simple.backend, 'onnxruntime');
    assert.deepEqual(simple.input.map((input: Json) => [input.name, input.data_type, input.dims]), [
      ['INPUT0', 'TYPE_INT32', [16]],
      ['INPUT1', 'TYPE_INT32', [16]],
    ]);
    assert.equal(simple.output[0].label_filename, 'labels.txt');
    // The defaults Triton's JSON writes for fields left unset, which tools read, and instance groups named as Triton names them.
    assert.equal(simple.output[1].label_filename, '');
    assert.deepEqual(simple.input.map((input: Json) => [input.format, input.is_shape_tensor, input.allow_ragged_batch, input.optional]), [['FORMAT_NONE', false, false, false], ['FORMAT_NONE', false, false, false]]);
    assert.deepEqual(simple.model_transaction_policy, { decoupled: false });
    assert.deepEqual(simple.instance_group.map((group: Json) => group.name), ['simple_0']);
    // Every field Triton's answer always prints (its JSON for an ONNX model), so clients that index them find them.
    const alwaysPrinted = ['name', 'platform', 'backend', 'runtime', 'version_policy', 'max_batch_size', 'input', 'output', 'batch_input', 'batch_output', 'optimization', 'instance_group', 'default_model_filename', 'cc_model_filenames', 'metric_tags', 'parameters', 'model_warmup'];
    assert.deepEqual(alwaysPrinted.filter((field) => !(field in simple)), []);
    assert.equal(simple.default_model_filename, 'model.onnx', "the file an ONNX Runtime model loads when its config names none, as Triton's auto-complete writes it");
    assert.deepEqual(simple.optimization, { priority: 'PRIORITY_DEFAULT', input_pinned_memory: { enable: true }, output_pinned_memory: { enable: true }, gather_kernel_buffer_threshold: 0, eager_batching: false });
    assert.deepEqual(Object.keys(simple.instance_group[0]).sort(), ['count', 'gpus', 'host_policy', 'kind', 'name', 'passive', 'profile', 'secondary_devices']);
    assert.deepEqual(await okJson(await get(main, '/v2/models/simple/versions/1/config')), simple);

    const yaml = await okJson(await get(main, '/v2/models/yaml_scale/config'));
    assert.equal(yaml.name, 'yaml_scale');
    assert.equal(yaml.max_batch_size, 2);
    assert.deepEqual(yaml.input.map((input: Json) => [input.name, input.data_type, input.dims]), [['INPUT0', 'TYPE_FP32', [4]]]);

    const json = await okJson(await get(main, '/v2/models/json_addsub/config'));
    assert.equal(json.max_batch_size, 3, 'the string "3" of Triton\'s JSON form is read as a number');
    assert.deepEqual(json.output.map((output: Json) => output.name).sort(), ['OUTPUT0', 'OUTPUT1'], 'outputs completed from the model');

    const auto = await okJson(await get(main, '/v2/models/identity_int8/config'));
    assert.equal(auto.name, 'identity_int8');
    assert.equal(auto.max_batch_size, 4, 'the server default for a dynamic first dimension');
    assert.deepEqual(auto.input.map((input: Json) => [input.name, input.data_type, input.dims]), [['INPUT0', 'TYPE_INT8', [-1]]]);
    assert.deepEqual(auto.output.map((output: Json) => [output.name, output.data_type, output.dims]), [['OUTPUT0', 'TYPE_INT8', [-1]]]);

    const unbatched = await okJson(await get(main, '/v2/models/fp32_identity/config'));
    assert.equal(unbatched.max_batch_size, 0);
    assert.deepEqual(unbatched.input[0].dims, [-1]);

    assert.equal((await okJson(await get(main, '/v2/models/multi_all/versions/2/config'))).max_batch_size, 4);
  });

  test('models that fail to load are UNAVAILABLE with their reason while the others serve', async () => {
    const index = await okJson(await post(main, '/v2/repository/index'));
    assert.ok(Array.isArray(index));
    const rows = (name: string) => (index as unknown as Json[]).filter((row) => row.name === name);
    const [broken] = rows('broken');
    assert.equal(broken.state, 'UNAVAILABLE');
    assert.match(broken.reason, /protobuf|model\.onnx/i);
    const [badConfig] = rows('bad_config');
    assert.equal(badConfig.state, 'UNAVAILABLE');
    assert.ok(badConfig.reason.includes('TYPE_NOPE'), badConfig.reason);
    assert.ok(badConfig.reason.includes('config.pbtxt'), badConfig.reason);
    for (const name of ['simple', 'fp32_identity', 'yaml_scale', 'json_addsub', 'multi_latest', ...Object.keys(IDENTITY_MODELS)]) {
      assert.deepEqual(
        rows(name).map((row) => [row.version, row.state]),
        [[name === 'multi_latest' ? '2' : '1', 'READY']],
        name,
      );
    }
    assert.deepEqual(rows('multi_all').map((row) => [row.version, row.state]), [['1', 'READY'], ['2', 'READY']]);

    const readyOnly = (await okJson(await post(main, '/v2/repository/index', { ready: true }))) as unknown as Json[];
    assert.ok(readyOnly.length > 0);
    assert.ok(readyOnly.every((row) => row.state === 'READY'));
    assert.ok(!readyOnly.some((row) => (BROKEN_MODELS as readonly string[]).includes(row.name)));

    // Triton's answer for a model with no version loaded: NOT_FOUND, in the words its QA tests match; the reason follows.
    await assertError(await get(main, '/v2/models/broken'), 404, "Request for unknown model: 'broken' has no available versions: ");
    await assertError(await post(main, '/v2/models/bad_config/infer', { inputs: [] }), 404, "'bad_config' has no available versions", 'TYPE_NOPE');
    await assertSimpleInfers(main);
  });
});

// ---------------------------------------------------------------------------------------------
// Inference with JSON tensors

/** Values for each datatype that survive a round trip exactly (FP16 values are exact halves). */
const SAMPLES: Record<string, unknown[]> = {
  BOOL: [true, false, false, true],
  UINT8: [0, 1, 254, 255],
  UINT16: [0, 1, 65534, 65535],
  UINT32: [0, 1, 4294967294, 4294967295],
  UINT64: [0, 1, 12345678901, Number.MAX_SAFE_INTEGER],
  INT8: [-128, -1, 0, 127],
  INT16: [-32768, -1, 0, 32767],
  INT32: [-2147483648, -1, 0, 2147483647],
  INT64: [-Number.MAX_SAFE_INTEGER, -1, 0, Number.MAX_SAFE_INTEGER],
  FP16: [-2, 0.5, 65504, 0.0999755859375],
  FP32: [-1.5, 0, 3.4028234663852886e38, 1.401298464324817e-45],
  FP64: [0.1, -1e300, 5e-324, 0],
  BYTES: ['a', '', 'héllo wörld', '🙂 emoji'],
};

describe('infer with JSON data', () => {
  test('the simple model adds and subtracts a batch of two rows', async () => {
    const rows = [range16, range16.map((value) => value * 10)];
    const others = [range16.map(() => 1), range16.map((value) => -value)];
    const body = await okJson(await post(main, '/v2/models/simple/infer', simpleRequest(rows, others)));
    assert.equal(body.model_name, 'simple');
    assert.equal(body.model_version, '1');
    assert.equal(body.id, undefined, 'no id in the response when the request had none');
    assert.deepEqual(body.outputs, [
      { name: 'OUTPUT0', datatype: 'INT32', shape: [2, 16], data: [...range16.map((v) => v + 1), ...range16.map((v) => v * 9)] },
      { name: 'OUTPUT1', datatype: 'INT32', shape: [2, 16], data: [...range16.map((v) => v - 1), ...range16.map((v) => v * 11)] },
    ]);
  });

  for (const [name, { datatype }] of Object.entries(IDENTITY_MODELS)) {
    test(`${datatype} round-trips through ${name}, nested and flat`, async () => {
      const values = SAMPLES[datatype];
      const expected = datatype === 'FP32' ? values.map((value) => Math.fround(value as number)) : values;
      for (const data of [values, [values.slice(0, 2), values.slice(2)]]) {
        const body = await okJson(
          await post(main, `/v2/models/${name}/infer`, { inputs: [{ name: 'INPUT0', datatype, shape: [2, 2], data }] }),
        );
        assert.deepEqual(body.outputs, [{ name: 'OUTPUT0', datatype, shape: [2, 2], data: expected }]);
      }
    });
  }

  test('FP32 values are rounded to single precision, as the model computes in it', async () => {
    const body = await okJson(
      await post(main, '/v2/models/fp32_identity/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], data: [0.1, 1 / 3] }] }),
    );
    assert.deepEqual(body.outputs[0].data, [Math.fround(0.1), Math.fround(1 / 3)]);
    assert.deepEqual(body.outputs[0].shape, [2], 'a model without batching takes the shape as given');
  });

  test('64-bit integers may be sent as decimal strings to keep their full precision', async () => {
    const response = await post(main, '/v2/models/identity_int64/infer', {
      inputs: [{ name: 'INPUT0', datatype: 'INT64', shape: [1, 3], data: ['-9223372036854775808', '9007199254740993', 7] }],
      outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }],
    });
    const { binary } = await readInferResponse(response);
    const values = [0, 1, 2].map((index) => binary.OUTPUT0.readBigInt64LE(index * 8));
    assert.deepEqual(values, [-(2n ** 63n), 9007199254740993n, 7n]);
    // JSON answers write them digit for digit too.
    const json = await post(main, '/v2/models/identity_uint64/infer', {
      inputs: [{ name: 'INPUT0', datatype: 'UINT64', shape: [1, 2], data: ['18446744073709551615', '9007199254740993'] }],
    });
    const text = await json.text();
    assert.equal(json.status, 200, text);
    assert.ok(text.includes('"data":[18446744073709551615,9007199254740993]'), text);
    await assertError(
      await post(main, '/v2/models/identity_uint64/infer', { inputs: [{ name: 'INPUT0', datatype: 'UINT64', shape: [1, 1], data: ['18446744073709551616'] }] }),
      400,
      "input 'INPUT0'",
      'element 0',
    );
  });

  test('versions: the default is the highest ready version; a version in the path selects one', async () => {
    const request = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
    const run = async (path: string) => {
      const body = await okJson(await post(main, path, request));
      return [body.model_version, body.outputs[0].data];
    };
    assert.deepEqual(await run('/v2/models/multi_all/infer'), ['2', [3, 6, 9, 12]]);
    assert.deepEqual(await run('/v2/models/multi_all/versions/1/infer'), ['1', [2, 4, 6, 8]]);
    assert.deepEqual(await run('/v2/models/multi_all/versions/2/infer'), ['2', [3, 6, 9, 12]]);
    assert.deepEqual(await run('/v2/models/multi_latest/infer'), ['2', [3, 6, 9, 12]]);
    assert.deepEqual(await run('/v2/models/yaml_scale/infer'), ['1', [2, 4, 6, 8]]);
  });

  test('a requested subset of outputs is all that is answered', async () => {
    const ones = range16.map(() => 1);
    const body = await okJson(await post(main, '/v2/models/simple/infer', simpleRequest([range16], [ones], { outputs: [{ name: 'OUTPUT1' }] })));
    assert.deepEqual(body.outputs, [{ name: 'OUTPUT1', datatype: 'INT32', shape: [1, 16], data: range16.map((v) => v - 1) }]);
  });

  test('the request id is echoed and unknown request, input and output parameters are accepted', async () => {
    const ones = range16.map(() => 1);
    const request = simpleRequest([range16], [ones], {
      id: 'request-42',
      parameters: { my_custom_flag: true, tenant: 'acme', some_number: 3.5 },
      outputs: [{ name: 'OUTPUT0', parameters: { my_output_param: 'x' } }],
    });
    request.inputs[0].parameters = { my_input_param: 1 };
    const body = await okJson(await post(main, '/v2/models/simple/infer', request));
    assert.equal(body.id, 'request-42');
    assert.deepEqual(body.outputs.map((output: Json) => output.name), ['OUTPUT0']);
    assert.deepEqual(body.outputs[0].data, range16.map((v) => v + 1));
  });

  test('a JSON body with Inference-Header-Content-Length equal to its length is read as plain JSON', async () => {
    const { body, headerLength } = binaryBody(simpleRequest([range16], [range16]));
    const answer = await okJson(
      await post(main, '/v2/models/simple/infer', body, { 'Inference-Header-Content-Length': String(headerLength), 'Content-Type': 'application/octet-stream' }),
    );
    assert.deepEqual(answer.outputs[0].data, range16.map((v) => v * 2));
  });
});

// ---------------------------------------------------------------------------------------------
// Triton's binary tensor data extension

function binaryOf(datatype: string, values: unknown[]): Buffer {
  const bytes = (array: ArrayBufferView) => Buffer.from(array.buffer, array.byteOffset, array.byteLength);
  switch (datatype) {
    case 'BOOL':
      return Buffer.from(values.map((value) => (value ? 1 : 0)));
    case 'UINT8':
      return Buffer.from(values as number[]);
    case 'UINT16':
      return bytes(new Uint16Array(values as number[]));
    case 'UINT32':
      return bytes(new Uint32Array(values as number[]));
    case 'UINT64':
      return bytes(new BigUint64Array((values as number[]).map(BigInt)));
    case 'INT8':
      return bytes(new Int8Array(values as number[]));
    case 'INT16':
      return bytes(new Int16Array(values as number[]));
    case 'INT32':
      return bytes(new Int32Array(values as number[]));
    case 'INT64':
      return bytes(new BigInt64Array((values as number[]).map(BigInt)));
    case 'FP16':
      return bytes(new Uint16Array([0xc000, 0x3800, 0x7bff, 0x2e66])); // -2, 0.5, 65504, 0.0999755859375
    case 'FP32':
      return bytes(new Float32Array(values as number[]));
    case 'FP64':
      return bytes(new Float64Array(values as number[]));
    case 'BYTES':
      return lengthPrefixed(values as string[]);
  }
  throw new Error(datatype);
}

/** Extreme 64-bit values only binary data can carry exactly. */
const BINARY_SAMPLES: Record<string, unknown[]> = {
  ...SAMPLES,
  UINT64: [0n, 1n, 2n ** 63n, 2n ** 64n - 1n],
  INT64: [-(2n ** 63n), -1n, 2n ** 53n + 1n, 2n ** 63n - 1n],
};

describe('infer with binary tensor data', () => {
  for (const [name, { datatype }] of Object.entries(IDENTITY_MODELS)) {
    test(`${datatype} round-trips byte for byte through ${name} as binary input and binary output`, async () => {
      const values = BINARY_SAMPLES[datatype];
      const input =
        datatype === 'INT64'
          ? Buffer.from(new BigInt64Array(values as bigint[]).buffer)
          : datatype === 'UINT64'
            ? Buffer.from(new BigUint64Array(values as bigint[]).buffer)
            : binaryOf(datatype, values);
      const { body, headerLength } = binaryBody(
        {
          inputs: [{ name: 'INPUT0', datatype, shape: [1, 4], parameters: { binary_data_size: input.length } }],
          parameters: { binary_data_output: true },
        },
        [input],
      );
      const response = await post(main, `/v2/models/${name}/infer`, body, {
        'Inference-Header-Content-Length': String(headerLength),
        'Content-Type': 'application/octet-stream',
      });
      assert.equal(response.status, 200);
      assert.ok(response.headers.get('inference-header-content-length'), 'binary responses carry Inference-Header-Content-Length');
      const { header, binary } = await readInferResponse(response);
      assert.deepEqual(header.outputs, [
        { name: 'OUTPUT0', datatype, shape: [1, 4], parameters: { binary_data_size: input.length } },
      ]);
      assert.deepEqual(binary.OUTPUT0, input);
    });
  }

  test('binary inputs with a JSON answer; binary_data on one output only; binary_data_output is the kind of unlisted outputs only', async () => {
    const a = Buffer.from(new Int32Array(range16).buffer);
    const b = Buffer.from(new Int32Array(range16.map((v) => v * 100)).buffer);
    const inputs = [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
    ];
    const send = (extra: Json) => {
      const { body, headerLength } = binaryBody({ inputs, ...extra }, [a, b]);
      return post(main, '/v2/models/simple/infer', body, { 'Inference-Header-Content-Length': String(headerLength) });
    };
    // No binary outputs asked for: a plain JSON answer, without the header-length header.
    const plain = await send({});
    assert.equal(plain.headers.get('inference-header-content-length'), null);
    const json = await okJson(plain);
    assert.deepEqual(json.outputs[0].data, range16.map((v) => v * 101));
    assert.deepEqual(json.outputs[1].data, range16.map((v) => 0 - 99 * v));

    const mixed = await readInferResponse(await send({ outputs: [{ name: 'OUTPUT0' }, { name: 'OUTPUT1', parameters: { binary_data: true } }] }));
    assert.deepEqual(mixed.header.outputs[0].data, range16.map((v) => v * 101));
    assert.deepEqual(mixed.header.outputs[1].parameters, { binary_data_size: 64 });
    assert.deepEqual(Array.from(new Int32Array(new Uint8Array(mixed.binary.OUTPUT1).buffer)), range16.map((v) => 0 - 99 * v));

    const override = await readInferResponse(
      await send({ parameters: { binary_data_output: true }, outputs: [{ name: 'OUTPUT0', parameters: { binary_data: false } }, { name: 'OUTPUT1' }] }),
    );
    assert.deepEqual(override.header.outputs[0].data, range16.map((v) => v * 101));
    // As Triton (qa/L0_http): binary_data_output is the kind of the outputs not listed; a listed one is binary only when it asks.
    assert.deepEqual(override.header.outputs[1].data, range16.map((v) => 0 - 99 * v));
    assert.equal(override.binary.OUTPUT1, undefined);
    const unlisted = await readInferResponse(await send({ parameters: { binary_data_output: true }, outputs: [{ name: 'OUTPUT0', parameters: { binary_data: false } }] }));
    assert.deepEqual(unlisted.header.outputs.map((output: { name: string }) => output.name), ['OUTPUT0']);
    const all = await readInferResponse(await send({ parameters: { binary_data_output: true } }));
    assert.deepEqual(all.header.outputs.map((output: { parameters?: object }) => output.parameters), [{ binary_data_size: 64 }, { binary_data_size: 64 }]);
  });

  test('a JSON input and a binary input in one request', async () => {
    const b = Buffer.from(new Int32Array(range16.map(() => 5)).buffer);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: range16 },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        ],
      },
      [b],
    );
    const json = await okJson(await post(main, '/v2/models/simple/infer', body, { 'Inference-Header-Content-Length': String(headerLength) }));
    assert.deepEqual(json.outputs[1].data, range16.map((v) => v - 5));
  });

  test('BYTES as binary: 4-byte little-endian length-prefixed elements in both directions, bytes kept exactly', async () => {
    const elements = [Buffer.from('first'), Buffer.alloc(0), Buffer.from('ünïcödé'), Buffer.from('x'.repeat(300))];
    const input = lengthPrefixed(elements);
    const { body, headerLength } = binaryBody(
      {
        inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [2, 2], parameters: { binary_data_size: input.length } }],
        outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }],
      },
      [input],
    );
    const response = await post(main, '/v2/models/identity_bytes/infer', body, { 'Inference-Header-Content-Length': String(headerLength) });
    const { header, binary } = await readInferResponse(response);
    assert.deepEqual(header.outputs[0].shape, [2, 2]);
    assert.deepEqual(binary.OUTPUT0, input);
    // 300 = 0x12c: the length prefix is little-endian.
    const last = binary.OUTPUT0.subarray(binary.OUTPUT0.length - 304, binary.OUTPUT0.length - 300);
    assert.deepEqual([...last], [0x2c, 0x01, 0, 0]);
  });

  test('BYTES an ONNX model cannot carry (a 0 byte, bytes that are not UTF-8) are refused, never silently changed', async () => {
    const cases = [
      [Buffer.from('a\u0000b'), 1],
      [Buffer.from([0xff, 0xfe]), 1],
      [Buffer.from('wörld\u0000'), 1], // a 0 byte after text that is not ASCII
      [Buffer.from([0x61, 0x62, 0xc3]), 1], // ASCII, then a sequence cut short
    ] as const;
    for (const [element, index] of cases) {
      const input = lengthPrefixed([Buffer.from('fïne'), element]);
      const { body, headerLength } = binaryBody({ inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, 2], parameters: { binary_data_size: input.length } }] }, [input]);
      const response = await post(main, '/v2/models/identity_bytes/infer', body, { 'Inference-Header-Content-Length': String(headerLength) });
      assert.equal(response.status, 400);
      assert.match(((await response.json()) as { error: string }).error, new RegExp(`input 'INPUT0' element ${index} is not UTF-8 text without a 0 byte.*onnxruntime`));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Binary answers as written on the wire (header and tensor chunks), with the access log on

describe('binary answers on the wire', () => {
  let wire: TestServer;
  const logLines: LogLine[] = [];
  const watchers = new Set<CountWaiters>();

  before(async () => {
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _encoding, done) {
          logLines.push(JSON.parse(String(chunk)) as LogLine);
          for (const watcher of watchers) watcher.notify();
          done();
        },
      }),
    );
    wire = await startTestServer({
      models: async (repoDir) => {
        await writeSimpleModel(repoDir);
        await writeModel(repoDir, 'identity_bytes', 1, identityModel('string'));
      },
      server: { logger },
      http: { accessLog: true },
    });
  });
  after(async () => {
    await wire?.close();
  });

  /** The access log's line for a request id, once it is written (the log follows the answer's last byte). */
  async function accessLine(requestId: string): Promise<LogLine> {
    const mine = () => logLines.filter((line) => line.msg === 'request completed' && line.reqId === requestId);
    const waiter = new CountWaiters(() => mine().length);
    watchers.add(waiter);
    await waiter.until(1);
    watchers.delete(waiter);
    assert.equal(mine().length, 1, 'one access line per request');
    return mine()[0];
  }

  /** Reads a binary answer whole: its bytes, and its header and outputs split as a client splits them. */
  async function readWhole(response: Response): Promise<{ body: Buffer; parsed: BinaryResponse }> {
    assert.equal(response.status, 200);
    const body = Buffer.from(await response.arrayBuffer());
    return { body, parsed: await readInferResponse(new Response(body, { headers: response.headers })) };
  }

  const int32Bytes = (values: number[]) => Buffer.from(Int32Array.from(values).buffer);
  /** fetch asks for gzip or deflate by itself, and inflates what it gets; these tests read the answer's own framing. */
  const UNCOMPRESSED = { 'accept-encoding': 'identity' };

  test('the simple model\'s binary answer: the client\'s x-request-id, a content-length that is the body\'s, Inference-Header-Content-Length, each tensor\'s exact bytes; the access log says 200', async () => {
    const rows = [range16.map((v) => v * 7 - 50), range16.map((v) => 2 ** 30 + v)];
    const other = [range16.map((v) => 3 - v), range16.map((v) => 2 ** 30 - v)];
    const response = await post(wire, '/v2/models/simple/infer', simpleRequest(rows, other, { parameters: { binary_data_output: true } }), {
      'x-request-id': 'binary-answer-1',
      'content-type': 'application/json',
      ...UNCOMPRESSED,
    });
    assert.equal(response.headers.get('x-request-id'), 'binary-answer-1');
    assert.equal(response.headers.get('content-type'), 'application/octet-stream');
    const { body, parsed } = await readWhole(response);
    assert.equal(response.headers.get('content-length'), String(body.length));
    assert.equal(response.headers.get('transfer-encoding'), null, 'framed by its length, not chunked');
    const headerLength = Number(response.headers.get('inference-header-content-length'));
    assert.equal(body.length, headerLength + 2 * 128, 'the JSON header, then 2 × 16 INT32 per output');
    assert.deepEqual(
      parsed.header.outputs.map(({ name, datatype, shape, parameters }) => ({ name, datatype, shape, parameters })),
      ['OUTPUT0', 'OUTPUT1'].map((name) => ({ name, datatype: 'INT32', shape: [2, 16], parameters: { binary_data_size: 128 } })),
    );
    const flat = rows.flat();
    const otherFlat = other.flat();
    assert.deepEqual(parsed.binary.OUTPUT0, int32Bytes(flat.map((v, i) => (v + otherFlat[i]) | 0)));
    assert.deepEqual(parsed.binary.OUTPUT1, int32Bytes(flat.map((v, i) => (v - otherFlat[i]) | 0)));
    const line = await accessLine('binary-answer-1');
    assert.equal(line.status, 200);
    assert.equal(line.method, 'POST');
    assert.equal(line.url, '/v2/models/simple/infer');
    assert.equal(line.model, 'simple');
    assert.equal(typeof line.ms, 'number');
  });

  test('without an x-request-id, a binary answer carries the generated one, the one its access line names', async () => {
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        ],
        outputs: [{ name: 'OUTPUT1', parameters: { binary_data: true } }],
      },
      [int32Bytes(range16), int32Bytes(range16.map(() => 1))],
    );
    const response = await post(wire, '/v2/models/simple/infer', body, { 'Inference-Header-Content-Length': String(headerLength), ...UNCOMPRESSED });
    const id = response.headers.get('x-request-id') ?? '';
    assert.match(id, /^[0-9a-f-]{36}$/);
    const { body: answer, parsed } = await readWhole(response);
    assert.equal(response.headers.get('content-length'), String(answer.length));
    assert.deepEqual(parsed.binary.OUTPUT1, int32Bytes(range16.map((v) => v - 1)));
    assert.equal((await accessLine(id)).status, 200);
  });

  test('BYTES answers (length-prefixed elements) and answers at once on several connections: each with its own id, length and bytes', async () => {
    const sets = [['a', ''], ['ünïcödé', 'x'.repeat(300)], ['日本', 'wörld']];
    const responses = await Promise.all(
      sets.map((elements, index) =>
        post(
          wire,
          '/v2/models/identity_bytes/infer',
          { inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, 2], data: elements }], parameters: { binary_data_output: true } },
          { 'x-request-id': `binary-bytes-${index}`, ...UNCOMPRESSED },
        ),
      ),
    );
    for (const [index, response] of responses.entries()) {
      assert.equal(response.headers.get('x-request-id'), `binary-bytes-${index}`);
      const { body, parsed } = await readWhole(response);
      assert.equal(response.headers.get('content-length'), String(body.length));
      assert.deepEqual(parsed.binary.OUTPUT0, lengthPrefixed(sets[index]));
      assert.equal((await accessLine(`binary-bytes-${index}`)).status, 200);
    }
  });

  test('Accept-Encoding gzip or deflate compresses an inference answer of 1 KiB or more, binary or JSON, as Triton does; the header length stays the uncompressed one', async () => {
    const { gunzipSync, inflateSync } = await import('node:zlib');
    // Eight rows: 1 KiB of tensors and more, where compression starts.
    const rows = Array.from({ length: 8 }, (_, row) => range16.map((v) => v * 100_003 - row));
    const request = JSON.stringify(simpleRequest(rows, rows, { parameters: { binary_data_output: true } }));
    const plain = await rawRequest(wire, 'POST', '/v2/models/simple/infer', request, { 'content-type': 'application/json' });
    assert.equal(plain.headers['content-encoding'], undefined, 'no Accept-Encoding, no compression');
    const inflaters = { gzip: gunzipSync, deflate: inflateSync };
    for (const [acceptEncoding, expected] of [
      ['gzip', 'gzip'],
      ['deflate', 'deflate'],
      ['deflate, gzip', 'deflate'], // a tie goes to the first named
      ['gzip;q=0.5, deflate;q=0.8, identity;q=0.1', 'deflate'],
      ['br, GZIP', 'gzip'], // unknown codings are passed over; names are case-insensitive
    ] as const) {
      const answer = await rawRequest(wire, 'POST', '/v2/models/simple/infer', request, { 'content-type': 'application/json', 'accept-encoding': acceptEncoding });
      assert.equal(answer.status, 200);
      assert.equal(answer.headers['content-encoding'], expected, acceptEncoding);
      assert.equal(answer.headers['content-type'], 'application/octet-stream');
      assert.equal(Number(answer.headers['content-length']), answer.bytes.length);
      assert.equal(answer.headers['inference-header-content-length'], plain.headers['inference-header-content-length']);
      assert.deepEqual(inflaters[expected](answer.bytes), plain.bytes, `${acceptEncoding}: inflates to the uncompressed answer`);
    }
    for (const refused of ['identity', 'br', 'gzip;q=0', 'gzip;q=0.4, identity']) {
      const answer = await rawRequest(wire, 'POST', '/v2/models/simple/infer', request, { 'content-type': 'application/json', 'accept-encoding': refused });
      assert.equal(answer.headers['content-encoding'], undefined, refused);
      assert.deepEqual(answer.bytes, plain.bytes);
    }

    const jsonRequest = JSON.stringify(simpleRequest(rows, rows));
    const json = await rawRequest(wire, 'POST', '/v2/models/simple/infer', jsonRequest, { 'content-type': 'application/json', 'accept-encoding': 'gzip' });
    assert.equal(json.headers['content-encoding'], 'gzip');
    assert.match(String(json.headers['content-type']), /application\/json/);
    assert.equal(json.headers['inference-header-content-length'], undefined);
    const outputs = JSON.parse(gunzipSync(json.bytes).toString('utf8')).outputs as Json[];
    assert.deepEqual(outputs.find((output) => output.name === 'OUTPUT0')?.data, rows.flat().map((v) => v * 2));

    // fetch asks for gzip by itself and inflates the answer: a plain fetch user sees nothing but the header.
    const viaFetch = await post(wire, '/v2/models/simple/infer', request, { 'content-type': 'application/json' });
    assert.equal(viaFetch.headers.get('content-encoding'), 'gzip');
    assert.deepEqual(Buffer.from(await viaFetch.arrayBuffer()), plain.bytes);

    // An answer under 1 KiB goes as it is, whatever was asked: gzip's framing and the thread-pool hop would cost more than it saves.
    const small = await rawRequest(wire, 'POST', '/v2/models/simple/infer', JSON.stringify(simpleRequest([range16], [range16])), {
      'content-type': 'application/json',
      'accept-encoding': 'gzip',
    });
    assert.equal(small.status, 200);
    assert.equal(small.headers['content-encoding'], undefined);
    assert.ok(small.bytes.length < 1024);

    // Errors and metadata stay uncompressed, as in Triton.
    const refusal = await rawRequest(wire, 'POST', '/v2/models/simple/infer', '{"inputs":[]}', { 'content-type': 'application/json', 'accept-encoding': 'gzip' });
    assert.equal(refusal.status, 400);
    assert.equal(refusal.headers['content-encoding'], undefined);
    assert.match(refusal.body, /"error"/);
    const metadata = await rawRequest(wire, 'GET', '/v2/models/simple', undefined, { 'accept-encoding': 'gzip' });
    assert.equal(metadata.headers['content-encoding'], undefined);
    assert.equal(JSON.parse(metadata.body).name, 'simple');
  });
});

// ---------------------------------------------------------------------------------------------
// Classification extension

describe('classification', () => {
  // Row 0 puts the largest value at index 5, then 12, then 0; row 1 reverses the order of 0..15.
  const row0 = range16.map((index) => ({ 5: 100, 12: 90, 0: 80 })[index] ?? index);
  const row1 = range16.map((index) => 15 - index);
  const zeros = range16.map(() => 0);

  test('class_count answers the top-k of each row as "score:index:label" from the labels file', async () => {
    const body = await okJson(
      await post(main, '/v2/models/simple/infer', simpleRequest([row0, row1], [zeros, zeros], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: 3 } }] })),
    );
    assert.equal(body.outputs.length, 1);
    const [output] = body.outputs;
    assert.equal(output.name, 'OUTPUT0');
    assert.equal(output.datatype, 'BYTES');
    assert.deepEqual(output.shape, [2, 3]);
    const parsed = output.data.map((entry: string) => {
      const [score, index, label] = entry.split(':');
      return [Number(score), Number(index), label];
    });
    assert.deepEqual(parsed, [
      [100, 5, SIMPLE_LABELS[5]],
      [90, 12, SIMPLE_LABELS[12]],
      [80, 0, SIMPLE_LABELS[0]],
      [15, 0, SIMPLE_LABELS[0]],
      [14, 1, SIMPLE_LABELS[1]],
      [13, 2, SIMPLE_LABELS[2]],
    ]);
  });

  test('integer scores are written as Triton writes them (std::to_string of the integer, no decimals)', async () => {
    const body = await okJson(
      await post(main, '/v2/models/simple/infer', simpleRequest([row0], [zeros], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: 2 } }] })),
    );
    assert.deepEqual(body.outputs[0].data, ['100:5:label_5', '90:12:label_12']);
  });

  test('FP32 scores have six decimals and no label when the output has no labels file; class_count beyond the classes is capped', async () => {
    const body = await okJson(
      await post(main, '/v2/models/identity_fp32/infer', {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 3], data: [0.25, 0.5, 0.125] }],
        outputs: [{ name: 'OUTPUT0', parameters: { class_count: 10 } }],
      }),
    );
    assert.deepEqual(body.outputs, [{ name: 'OUTPUT0', datatype: 'BYTES', shape: [1, 3], data: ['0.500000:1', '0.250000:0', '0.125000:2'] }]);
  });

  test('classification with binary output, beside a raw output', async () => {
    const response = await post(
      main,
      '/v2/models/simple/infer',
      simpleRequest([row1], [zeros], {
        outputs: [{ name: 'OUTPUT0', parameters: { class_count: 2, binary_data: true } }, { name: 'OUTPUT1', parameters: { binary_data: false } }],
      }),
    );
    const { header, binary } = await readInferResponse(response);
    assert.equal(header.outputs[0].datatype, 'BYTES');
    assert.deepEqual(header.outputs[0].shape, [1, 2]);
    const decoded: string[] = [];
    for (let offset = 0; offset < binary.OUTPUT0.length; ) {
      const length = binary.OUTPUT0.readUInt32LE(offset);
      decoded.push(binary.OUTPUT0.subarray(offset + 4, offset + 4 + length).toString('utf8'));
      offset += 4 + length;
    }
    assert.deepEqual(decoded.map((entry) => entry.split(':').slice(1).join(':')), ['0:label_0', '1:label_1']);
    assert.deepEqual(header.outputs[1].data, row1);
  });
});

// ---------------------------------------------------------------------------------------------
// Errors: each is a 4xx with {"error": "..."} naming what was expected and what arrived

describe('errors', () => {
  const ones = range16.map(() => 1);
  const inferSimple = (body: unknown, headers: Record<string, string> = {}) => post(main, '/v2/models/simple/infer', body, headers);
  const binaryRequest = (header: Json, buffers: Buffer[]) => {
    const { body, headerLength } = binaryBody(header, buffers);
    return inferSimple(body, { 'Inference-Header-Content-Length': String(headerLength) });
  };
  const int32Bytes = (count: number) => Buffer.from(new Int32Array(count).buffer);

  test('unknown model', async () => {
    await assertError(await post(main, '/v2/models/no_such_model/infer', simpleRequest([range16], [ones])), 404, "unknown model: 'no_such_model'");
    // A misspelt name of a loaded model is named with the model it likely meant.
    await assertError(await post(main, '/v2/models/simpel/infer', simpleRequest([range16], [ones])), 404, "unknown model: 'simpel' is not found", "did you mean 'simple'?");
    await assertError(await get(main, '/v2/models/no_such_model'), 404, 'no_such_model');
    await assertError(await get(main, '/v2/models/no_such_model/config'), 404, 'no_such_model');
  });

  test("a client's names are quoted with the characters that would act (controls, line separators, bidi overrides) escaped", async () => {
    const acts = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
    const quoted = async (response: Response, status: number, fragment: string) => {
      const message = await assertError(response, status, fragment);
      assert.doesNotMatch(message, acts, JSON.stringify(message));
    };
    // ESC [2J clears a terminal that shows the message; a newline forges a second log line; U+202E reverses what follows.
    await quoted(await get(main, '/v2/models/a%1B%5B2Jb'), 400, "'a\\u001b[2Jb'");
    await quoted(await post(main, '/v2/models/simple/versions/1%0Aforged/infer', simpleRequest([range16], [ones])), 400, '1\\u000aforged');
    await quoted(await inferSimple({ ...simpleRequest([range16], [ones]), parameters: { 'key\u202etxt.exe': null } }), 400, "parameter 'key\\u202etxt.exe'");
    const stranger = simpleRequest([range16], [ones]) as { inputs: { name: string }[] };
    stranger.inputs[0].name = 'INPUT0\u001b]8;;http://x\u0007';
    await quoted(await inferSimple(stranger), 400, "'INPUT0\\u001b]8;;http://x\\u0007'");
  });

  test('unknown version', async () => {
    await assertError(await post(main, '/v2/models/simple/versions/7/infer', simpleRequest([range16], [ones])), 404, "Request for unknown model: 'simple' version 7 is not found", 'loaded: 1');
    await assertError(await get(main, '/v2/models/simple/versions/7/config'), 404, 'version 7 is not found');
    await assertError(await post(main, '/v2/models/simple/versions/-1/infer', simpleRequest([range16], [ones])), 400, 'version', "'-1'");
  });

  test('wrong datatype', async () => {
    const request = simpleRequest([range16], [ones]);
    request.inputs[0].datatype = 'FP32';
    await assertError(await inferSimple(request), 400, "input 'INPUT0'", 'expects INT32 [-1,16]', 'got FP32 [1,16]');
    request.inputs[0].datatype = 'FLOAT32';
    await assertError(await inferSimple(request), 400, "input 'INPUT0'", 'datatype must be one of', 'FLOAT32');
  });

  test('wrong shape: missing batch dimension, wrong width, negative dimension', async () => {
    await assertError(
      await inferSimple({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [16], data: range16 }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: ones }] }),
      400,
      "input 'INPUT0'",
      'expects INT32 [-1,16]',
      'got INT32 [16]',
    );
    const narrow = range16.slice(0, 15);
    await assertError(
      await inferSimple({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 15], data: narrow }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 15], data: narrow }] }),
      400,
      "input 'INPUT0'",
      'expects INT32 [-1,16]',
      'got INT32 [1,15]',
    );
    await assertError(
      await inferSimple({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [-1, 16], data: range16 }] }),
      400,
      "input 'INPUT0'",
      'shape',
    );
    await assertError(
      await post(main, '/v2/models/fp32_identity/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }),
      400,
      "input 'INPUT0'",
      'expects FP32 [-1]',
      'got FP32 [1,2]',
    );
  });

  test('wrong element count', async () => {
    const request = simpleRequest([range16.slice(0, 15)], [ones]);
    await assertError(await inferSimple(request), 400, "input 'INPUT0'", 'shape [1,16]', '16 elements', '15 were sent');
  });

  test('bad JSON values name the element and the datatype', async () => {
    await assertError(
      await post(main, '/v2/models/identity_uint8/infer', { inputs: [{ name: 'INPUT0', datatype: 'UINT8', shape: [1, 2], data: [1, 300] }] }),
      400,
      "input 'INPUT0'",
      'element 1',
      '300',
      'UINT8',
    );
    await assertError(
      await post(main, '/v2/models/identity_bool/infer', { inputs: [{ name: 'INPUT0', datatype: 'BOOL', shape: [1, 1], data: ['yes'] }] }),
      400,
      "input 'INPUT0'",
      'element 0',
      'BOOL',
    );
  });

  test('wrong binary byte length for the datatype and shape', async () => {
    await assertError(
      await binaryRequest(
        {
          inputs: [
            { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 60 } },
            { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
          ],
        },
        [int32Bytes(15), int32Bytes(16)],
      ),
      400,
      "input 'INPUT0'",
      'needs 64 bytes',
      'binary_data_size 60',
    );
  });

  test('binary sizes that do not sum to the body', async () => {
    const header = {
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
      ],
    };
    await assertError(await binaryRequest(header, [int32Bytes(16), int32Bytes(16), int32Bytes(1)]), 400, '4 bytes after the JSON header');
    await assertError(await binaryRequest(header, [int32Bytes(16), int32Bytes(8)]), 400, "input 'INPUT1'", 'binary_data_size 64', 'runs past the end');
    // binary_data_size without Inference-Header-Content-Length.
    await assertError(await inferSimple(header), 400, "input 'INPUT0'", 'runs past the end');
  });

  test('bad Inference-Header-Content-Length', async () => {
    const json = JSON.stringify(simpleRequest([range16], [ones]));
    for (const bad of ['abc', '-5', String(json.length + 10)]) {
      await assertError(await inferSimple(json, { 'Inference-Header-Content-Length': bad }), 400, 'Inference-Header-Content-Length', JSON.stringify(bad));
    }
  });

  test('missing input', async () => {
    await assertError(
      await inferSimple({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: range16 }] }),
      400,
      "model 'simple' expects input 'INPUT1'",
      'lacks',
    );
    await assertError(await inferSimple({ inputs: [] }), 400, "'INPUT0', 'INPUT1'");
    await assertError(await inferSimple({}), 400, "'inputs'");
  });

  test('unknown input', async () => {
    const request = simpleRequest([range16], [ones]);
    request.inputs.push({ name: 'INPUT2', datatype: 'INT32', shape: [1, 16], data: ones });
    await assertError(await inferSimple(request), 400, "unexpected inference input 'INPUT2' for model 'simple'", 'INPUT0, INPUT1');
  });

  test('an input given twice', async () => {
    const request = simpleRequest([range16], [ones]);
    request.inputs.push(request.inputs[0]);
    await assertError(await inferSimple(request), 400, "input 'INPUT0'", 'more than once');
  });

  test('unknown requested output', async () => {
    await assertError(
      await inferSimple(simpleRequest([range16], [ones], { outputs: [{ name: 'OUTPUT9' }] })),
      400,
      "unexpected inference output 'OUTPUT9' for model 'simple'",
      'OUTPUT0, OUTPUT1',
    );
  });

  test('bad class_count', async () => {
    await assertError(
      await inferSimple(simpleRequest([range16], [ones], { outputs: [{ name: 'OUTPUT0', parameters: { class_count: -2 } }] })),
      400,
      "output 'OUTPUT0'",
      'class_count',
    );
  });

  test('batch larger than max_batch_size, and batch sizes that disagree', async () => {
    const nine = Array.from({ length: 9 }, () => range16);
    await assertError(await inferSimple(simpleRequest(nine, nine)), 400, "inference request batch-size must be <= 8 for 'simple'", "input 'INPUT0' has batch size 9");
    const three = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]];
    await assertError(
      await post(main, '/v2/models/yaml_scale/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [3, 4], data: three }] }),
      400,
      'batch size 3',
      '1 to 2',
    );
    await assertError(await inferSimple(simpleRequest([range16, range16], [ones])), 400, 'batch size', 'must agree');
  });

  test('malformed JSON and non-object bodies', async () => {
    await assertError(await inferSimple('{"inputs": [', { 'Content-Type': 'application/json' }), 400, 'malformed JSON');
    await assertError(await inferSimple('not json at all', { 'Content-Type': 'application/json' }), 400, 'malformed JSON');
    // Not declared JSON and plainly not JSON: told what /infer takes.
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    await assertError(await inferSimple(png, { 'Content-Type': 'application/octet-stream' }), 400, "the body is not V2 JSON (Content-Type 'application/octet-stream', first byte 0x89)", 'Inference-Header-Content-Length', 'image/*');
    const upload = new FormData();
    upload.append('image', new Blob([png]), 'cat.png');
    const multipart = await fetch(`${main.url}/v2/models/simple/infer`, { method: 'POST', body: upload });
    await assertError(multipart, 400, "/infer does not take multipart uploads (Content-Type 'multipart/form-data'): send a V2 JSON request naming the inputs of 'simple'");
    assert.doesNotMatch(await (await fetch(`${main.url}/v2/models/simple/infer`, { method: 'POST', body: upload })).text(), /classify|detect|image\/\*/);
    // Nor is an image body for it sent to /classify, which does not take it either.
    const imageBody = await inferSimple(png, { 'Content-Type': 'image/png' });
    const refusal = await assertError(imageBody, 400, "an image body (Content-Type image/*) is for models whose one input is an encoded image (BYTES); 'simple' takes");
    assert.match(refusal, /: send a V2 JSON request naming the inputs of 'simple'$/);
    await assertError(await inferSimple('[1, 2]'), 400, 'JSON object');
    await assertError(await inferSimple(''), 400, 'malformed JSON');
    await assertError(await post(main, '/v2/repository/index', '{oops'), 400, 'malformed JSON');
  });

  test('a body over the configured size limit is refused with 413, naming the option that sets it (the library\'s key)', async () => {
    const big = Buffer.alloc(MAX_BODY_BYTES + 1024, 0x20);
    await assertError(await inferSimple(big, { 'Content-Type': 'application/json' }), 413, `larger than the limit of ${MAX_BODY_BYTES} bytes (maxBodyBytes)`);
  });

  test("a library server's 408 names the option whose time ran out, where the CLI's names its flag", async () => {
    const quick = await startTestServer({ models: async () => undefined, http: { headersTimeoutMs: 500 } });
    try {
      const silent = new RawConnection(quick.url);
      const answer = silent.answer().catch(() => undefined);
      silent.send('POST /v2/models/x/infer HTTP/1.1\r\nhost: x\r\n'); // and never the end of the head
      await silent.closed;
      assert.equal(JSON.parse((await answer)?.body ?? '{}').error, "the request's headers were not received within 500 ms (headersTimeoutMs)");
    } finally {
      await quick.close();
    }
  });

  test('bad URLs and over-long model names get the same JSON error body', async () => {
    for (const path of ['/v2/models/%zz', '/v2/models/simple%', '/v2/models/%E0%A4%A/infer']) {
      const answer = await rawRequest(main, path.endsWith('infer') ? 'POST' : 'GET', path);
      assert.equal(answer.status, 400, `${path}: ${answer.body}`);
      assert.deepEqual(Object.keys(JSON.parse(answer.body)), ['error'], answer.body);
      assert.ok(JSON.parse(answer.body).error.includes('has a %-escape that does not decode'), answer.body);
    }
    // A segment past the router's limit: 414, the path quoted within the 80-character bound, not echoed whole.
    const long = await rawRequest(main, 'GET', `/v2/models/${'x'.repeat(1100)}`);
    assert.equal(long.status, 414, long.body);
    const { error } = JSON.parse(long.body);
    assert.match(error, /^the path "\/v2\/models\/x+… has a segment over 1024 characters, the limit of any path segment \(a model name's: 255\)$/);
    assert.ok(error.length < 200, error);
    // Names up to the repository's limit reach the core, which answers for them, quoting at most 80 characters.
    await assertError(await get(main, `/v2/models/${'m'.repeat(200)}`), 404, `unknown model: '${'m'.repeat(80)}…'`);
    await assertError(await get(main, `/v2/models/${'m'.repeat(300)}`), 400, 'a model name has at most 255 characters, this one 300');
  });

  test('compressed request bodies (Content-Encoding gzip or deflate, as tritonclient sends them), bounded by the size limit', async () => {
    const { deflateSync, gzipSync } = await import('node:zlib');
    const json = Buffer.from(JSON.stringify(simpleRequest([range16], [range16])));
    for (const [encoding, body] of [['gzip', gzipSync(json)], ['deflate', deflateSync(json)]] as const) {
      const answer = await okJson(await post(main, '/v2/models/simple/infer', body, { 'Content-Encoding': encoding }));
      assert.deepEqual(answer.outputs[0].data, range16.map((v) => v * 2), encoding);
    }
    // Binary tensor data inside a compressed body: the header length counts decompressed bytes.
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: range16 }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } }] },
      [Buffer.from(new Int32Array(range16).buffer)],
    );
    const binaryAnswer = await okJson(
      await post(main, '/v2/models/simple/infer', gzipSync(body), { 'Content-Encoding': 'gzip', 'Inference-Header-Content-Length': String(headerLength) }),
    );
    assert.deepEqual(binaryAnswer.outputs[1].data, range16.map(() => 0));

    await assertError(await inferSimple(json, { 'Content-Encoding': 'br' }), 400, "unsupported Content-Encoding 'br'");
    await assertError(await inferSimple(Buffer.from('not gzip at all'), { 'Content-Encoding': 'gzip' }), 400, 'not valid gzip');
    // A small body that inflates past the limit is refused like a large one.
    const bomb = gzipSync(Buffer.alloc(MAX_BODY_BYTES * 4, 0x20));
    assert.ok(bomb.length < MAX_BODY_BYTES);
    await assertError(await inferSimple(bomb, { 'Content-Encoding': 'gzip' }), 413, 'larger than the limit');
  });

  test('unknown routes answer 404 with a JSON error; a known one asked with another method 405, naming those it takes', async () => {
    await assertError(await get(main, '/v2/nothing/here'), 404, 'no route', '/v2/nothing/here');
    const wrongMethod = await get(main, '/v2/models/simple/infer');
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
    await assertError(wrongMethod, 405, 'GET is not allowed on /v2/models/simple/infer; it takes POST');
    await assertError(await post(main, '/v2/health/ready'), 405, 'POST is not allowed on /v2/health/ready; it takes GET, HEAD');
  });

  test('model control is refused under --model-control-mode none, and nothing changes', async () => {
    await assertError(await post(main, '/v2/repository/models/simple/load'), 503, 'not allowed', "modelControlMode: 'none'", "modelControlMode: 'explicit'");
    await assertError(await post(main, '/v2/repository/models/simple/unload'), 503, 'not allowed', "modelControlMode: 'none'");
    await assertError(await post(main, '/v2/repository/models/json_addsub/unload', { parameters: { unload_dependents: false } }), 503, 'not allowed');
    assert.equal((await get(main, '/v2/models/simple/ready')).status, 200);
  });

  test('path traversal in model names is refused everywhere', async () => {
    const names = ['..', '.', '..%2Fx', '%2e%2e', '%2E%2E%2Fsimple', 'simple%2F..%2Fsimple', '%2Fetc%2Fpasswd', 'http%3A%2F%2Fx', '..%5C..%5Cetc', 'simple%00'];
    for (const name of names) {
      for (const [method, path] of [
        ['GET', `/v2/models/${name}`],
        ['GET', `/v2/models/${name}/config`],
        ['POST', `/v2/models/${name}/infer`],
      ]) {
        const answer = await rawRequest(main, method, path, method === 'POST' ? '{"inputs":[]}' : undefined);
        assert.ok(answer.status === 400 || answer.status === 404, `${method} ${path}: ${answer.status} ${answer.body}`);
        assert.ok(JSON.parse(answer.body).error, `${method} ${path}: ${answer.body}`);
      }
    }
    const answer = await rawRequest(main, 'GET', '/v2/models/..%2F..%2Fetc');
    assert.equal(answer.status, 400);
    assert.ok(JSON.parse(answer.body).error.includes("invalid model name '../../etc'"), answer.body);
  });

  test('after every error the server is still live and ready and infers correctly', async () => {
    assert.equal((await get(main, '/v2/health/live')).status, 200);
    assert.equal((await get(main, '/v2/health/ready')).status, 200);
    await assertSimpleInfers(main);
  });
});

// ---------------------------------------------------------------------------------------------
// Model repository extension under --model-control-mode explicit

describe('model repository extension (explicit model control)', () => {
  let explicit: TestServer;
  let outside: string;
  before(async () => {
    explicit = await startTestServer({ server: { modelControlMode: 'explicit', loadModels: ['simple'] } });
    // A model folder outside the repository, reachable through a symlink inside it.
    outside = await mkdtemp(join(tmpdir(), 'nereid-outside-'));
    await writeSimpleModel(outside);
    await symlink(join(outside, 'simple'), join(explicit.repoDir, 'escape'));
  });
  after(async () => {
    await explicit?.close();
    if (outside) await rm(outside, { recursive: true, force: true });
  });

  const index = async () => (await okJson(await post(explicit, '/v2/repository/index'))) as unknown as Json[];
  const rowsOf = async (name: string) => (await index()).filter((row) => row.name === name);
  const addSub = (rows: number) =>
    simpleRequest(
      Array.from({ length: rows }, () => range16),
      Array.from({ length: rows }, () => range16),
    );

  test('only the models named at start are loaded; the index lists the rest by name', async () => {
    assert.equal((await get(explicit, '/v2/health/ready')).status, 200);
    assert.deepEqual(await rowsOf('simple'), [{ name: 'simple', version: '1', state: 'READY', reason: '' }]);
    assert.deepEqual(await rowsOf('json_addsub'), [{ name: 'json_addsub' }]);
    await assertError(await post(explicit, '/v2/models/json_addsub/infer', addSub(1)), 404, 'json_addsub');
  });

  test('load, infer, unload, infer fails clearly, reload', async () => {
    let response = await post(explicit, '/v2/repository/models/json_addsub/load');
    assert.equal(response.status, 200, await response.text());
    assert.deepEqual((await rowsOf('json_addsub')).map((row) => [row.version, row.state]), [['1', 'READY']]);
    assert.equal((await get(explicit, '/v2/models/json_addsub/ready')).status, 200);
    const answer = await okJson(await post(explicit, '/v2/models/json_addsub/infer', addSub(1)));
    assert.deepEqual(answer.outputs[0].data, range16.map((v) => v * 2));

    // tritonclient sends unload_dependents with every unload.
    response = await post(explicit, '/v2/repository/models/json_addsub/unload', { parameters: { unload_dependents: false } });
    assert.equal(response.status, 200, await response.text());
    assert.deepEqual((await rowsOf('json_addsub')).map((row) => [row.version, row.state, row.reason]), [['1', 'UNAVAILABLE', 'unloaded']]);
    await assertError(await get(explicit, '/v2/models/json_addsub/ready'), 400, 'not ready');
    await assertError(await post(explicit, '/v2/models/json_addsub/infer', addSub(1)), 404, "Request for unknown model: 'json_addsub' has no available versions", 'unloaded');
    await assertError(await get(explicit, '/v2/models/json_addsub'), 404, 'json_addsub');
    const readyOnly = (await okJson(await post(explicit, '/v2/repository/index', { ready: true }))) as unknown as Json[];
    assert.deepEqual(readyOnly.map((row) => row.name), ['simple']);

    // Unloading again is not an error (as in Triton).
    assert.equal((await post(explicit, '/v2/repository/models/json_addsub/unload')).status, 200);

    response = await post(explicit, '/v2/repository/models/json_addsub/load', {});
    assert.equal(response.status, 200, await response.text());
    assert.deepEqual((await rowsOf('json_addsub')).map((row) => [row.version, row.state]), [['1', 'READY']]);
    assert.equal((await okJson(await post(explicit, '/v2/models/json_addsub/infer', addSub(1)))).outputs.length, 2);
    // The model loaded at start served throughout.
    await assertSimpleInfers(explicit);
  });

  test('a reload picks up a changed config file; a config parameter overrides it', async () => {
    await writeFile(
      join(explicit.repoDir, 'json_addsub', 'config.json'),
      JSON.stringify({ max_batch_size: 1, input: [{ name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16] }] }),
    );
    let response = await post(explicit, '/v2/repository/models/json_addsub/load');
    assert.equal(response.status, 200, await response.text());
    assert.equal((await okJson(await get(explicit, '/v2/models/json_addsub/config'))).max_batch_size, 1);
    await assertError(await post(explicit, '/v2/models/json_addsub/infer', addSub(2)), 400, 'batch size 2', '1 to 1');

    response = await post(explicit, '/v2/repository/models/json_addsub/load', { parameters: { config: JSON.stringify({ max_batch_size: 5 }) } });
    assert.equal(response.status, 200, await response.text());
    assert.equal((await okJson(await get(explicit, '/v2/models/json_addsub/config'))).max_batch_size, 5);
    assert.deepEqual((await okJson(await post(explicit, '/v2/models/json_addsub/infer', addSub(5)))).outputs[0].shape, [5, 16]);
  });

  test('a reload that fails leaves the loaded model serving, as in Triton', async () => {
    await writeFile(join(explicit.repoDir, 'json_addsub', 'config.json'), '{"max_batch_size": "lots"}');
    // 400 as Triton answers a failed load (INVALID_ARG): no client should retry it until the config is fixed.
    await assertError(await post(explicit, '/v2/repository/models/json_addsub/load'), 400, "load failed for model 'json_addsub'", 'config.json', 'max_batch_size');
    assert.deepEqual((await rowsOf('json_addsub')).map((row) => [row.version, row.state]), [['1', 'READY']]);
    assert.equal((await okJson(await get(explicit, '/v2/models/json_addsub/config'))).max_batch_size, 5, 'the previous config still applies');
    assert.deepEqual((await okJson(await post(explicit, '/v2/models/json_addsub/infer', addSub(1)))).outputs[0].data, range16.map((v) => v * 2));
    await writeFile(join(explicit.repoDir, 'json_addsub', 'config.json'), '{}');
  });

  test('a reload under traffic loses no request', async () => {
    const requests = Array.from({ length: 100 }, () => post(explicit, '/v2/models/simple/infer', addSub(1)));
    const reload = post(explicit, '/v2/repository/models/simple/load');
    const answers = await Promise.all(requests);
    assert.equal((await reload).status, 200);
    const failed = answers.filter((answer) => answer.status !== 200);
    assert.deepEqual(await Promise.all(failed.map((answer) => answer.text())), []);
    await Promise.all(answers.map((answer) => answer.body?.cancel()));
  });

  test('bad load requests are refused with what was wrong', async () => {
    await assertError(await post(explicit, '/v2/repository/models/json_addsub/load', { parameters: { config: '{nope' } }), 400, "'config'", 'not valid JSON');
    await assertError(await post(explicit, '/v2/repository/models/json_addsub/load', { parameters: { config: 5 } }), 400, "'config'", 'JSON string');
    await assertError(await post(explicit, '/v2/repository/models/json_addsub/load', { parameters: { 'file:1/model.onnx': 'AAAA' } }), 400, 'file:1/model.onnx', 'disabled');
    await assertError(await post(explicit, '/v2/repository/models/json_addsub/load', { parameters: { colour: 'red' } }), 400, "unknown load parameter 'colour'");
    await assertError(await post(explicit, '/v2/repository/models/json_addsub/load', '{oops'), 400, 'malformed JSON');
    await assertError(await post(explicit, '/v2/repository/models/json_addsub/load', '[]'), 400, 'JSON object');
    await assertError(await post(explicit, '/v2/repository/models/no_such_model/load'), 400, "failed to load 'no_such_model', failed to poll from model repository", "model 'no_such_model' is not in the model repository");
    // Unloading what is not loaded, in the repository or not, changes nothing and succeeds, as in Triton.
    assert.equal((await post(explicit, '/v2/repository/models/no_such_model/unload')).status, 200);
    // The model is untouched by refused requests.
    assert.equal((await get(explicit, '/v2/models/json_addsub/ready')).status, 200);
  });

  test('loading a broken model or one with an invalid config fails with the reason, and the index keeps it', async () => {
    const broken = await post(explicit, '/v2/repository/models/broken/load');
    assert.equal(broken.status, 400);
    assert.match(JSON.parse(await broken.text()).error, /load failed for model 'broken'.*(protobuf|model\.onnx)/i);
    const [row] = await rowsOf('broken');
    assert.equal(row.state, 'UNAVAILABLE');
    assert.ok(row.reason.length > 0);

    const badConfig = await post(explicit, '/v2/repository/models/bad_config/load');
    assert.ok(badConfig.status >= 400, `status ${badConfig.status}`);
    assert.ok(JSON.parse(await badConfig.text()).error.includes('TYPE_NOPE'));
    assert.equal((await rowsOf('bad_config'))[0].state, 'UNAVAILABLE');
    await assertSimpleInfers(explicit);
  });

  test('path traversal is refused by load and unload, including through a symlink', async () => {
    const names = ['..', '..%2Fx', '%2e%2e', '%2E%2E%2F%2E%2E%2Fetc', '%2Fetc%2Fpasswd', '%2Ftmp', 'http%3A%2F%2Fx', 'https%3A%2F%2Fevil.example%2Fm', 'simple%2F..%2F..', '..%5Cx'];
    for (const name of names) {
      for (const action of ['load', 'unload']) {
        const answer = await rawRequest(explicit, 'POST', `/v2/repository/models/${name}/${action}`);
        assert.equal(answer.status, 400, `${action} ${name}: ${answer.status} ${answer.body}`);
        assert.ok(JSON.parse(answer.body).error.includes('invalid model name'), `${action} ${name}: ${answer.body}`);
      }
    }
    const literal = await rawRequest(explicit, 'POST', '/v2/repository/models/../load');
    assert.equal(literal.status, 400, literal.body);
    await assertError(await post(explicit, '/v2/repository/models/escape/load'), 400, "model 'escape' resolves outside the model repository");
    assert.ok(!(await index()).some((row) => row.name === 'escape' && row.state === 'READY'));
    assert.equal((await get(explicit, '/v2/health/live')).status, 200);
  });

  test('with strict readiness, a model that fails at start makes the server not ready, but live and serving', async () => {
    const strict = await startTestServer({ repoDir: explicit.repoDir, server: { modelControlMode: 'explicit', loadModels: ['simple', 'broken'] } });
    try {
      assert.equal((await get(strict, '/v2/health/live')).status, 200);
      await assertError(await get(strict, '/v2/health/ready'), 400, 'not ready');
      await assertSimpleInfers(strict);
    } finally {
      await strict.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Bearer authentication

describe('bearer token authentication', () => {
  let secured: TestServer;
  before(async () => {
    secured = await startTestServer({ models: writeSimpleModel, http: { authTokens: ['s3cret', 'second-token'] } });
  });
  after(async () => {
    await secured?.close();
  });

  test('401 without a token or with a wrong one, 200 with any configured token', async () => {
    for (const headers of <Record<string, string>[]>[{}, { Authorization: 'Bearer wrong' }, { Authorization: 's3cret' }, { Authorization: 'Basic czNjcmV0' }, { Authorization: 'Bearer s3cre' }, { Authorization: 'Bearer ' }]) {
      const response = await get(secured, '/v2/models/simple', headers);
      await assertError(response, 401, 'bearer token');
      assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    }
    await assertError(await post(secured, '/v2/models/simple/infer', simpleRequest([range16], [range16])), 401);
    await assertError(await post(secured, '/v2/repository/index'), 401);
    await assertError(await get(secured, '/v2'), 401);
    assert.equal((await get(secured, '/v2', { Authorization: 'Bearer s3cret' })).status, 200);
    assert.equal((await get(secured, '/v2/models/simple', { Authorization: 'Bearer second-token' })).status, 200);
    await assertSimpleInfers(secured, { Authorization: 'Bearer s3cret' });
  });

  test('health probes stay open, and no path through them reaches a protected route', async () => {
    assert.equal((await get(secured, '/v2/health/live')).status, 200);
    assert.equal((await get(secured, '/v2/health/ready')).status, 200);
    for (const path of ['/v2/health/../models/simple', '/v2/health/live/../../models/simple/config', '/v2/health/%2e%2e/models/simple']) {
      const answer = await rawRequest(secured, 'GET', path);
      assert.ok(answer.status === 401 || answer.status === 404, `${path}: ${answer.status} ${answer.body}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Known gaps against Triton, kept visible as TODO tests

describe('Triton compatibility gaps', () => {
  test(
    'INT64 values beyond 2^53 sent as JSON numbers keep their precision',
    { todo: 'JSON.parse reads numbers as doubles: 9007199254740993 arrives as 9007199254740992 (Node 20 has no JSON source access)' },
    async () => {
      const text = '{"inputs":[{"name":"INPUT0","datatype":"INT64","shape":[1,1],"data":[9007199254740993]}],"parameters":{"binary_data_output":true}}';
      const { binary } = await readInferResponse(await post(main, '/v2/models/identity_int64/infer', text));
      assert.equal(binary.OUTPUT0.readBigInt64LE(0), 9007199254740993n);
    },
  );

});
