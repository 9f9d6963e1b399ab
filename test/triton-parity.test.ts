/**
 * Behaviours Triton's clients and QA suite rely on, over real HTTP: raw binary requests
 * (Inference-Header-Content-Length: 0, chunked too), strict request field types and the JSON depth limit.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { buildOnnxModel } from '../src/onnx/onnx-model-builder.js';
import { addSubModel, identityModel, writeModel } from '../src/onnx/test-models.js';
import { startGrpcEndpoint } from './support/grpc-endpoint.js';
import { RawConnection } from './support/raw-http.js';
import { startTestServer, writeStandardModels, type TestServer } from './support/test-server.js';

let served: TestServer;
before(async () => {
  served = await startTestServer({
    models: async (repoDir) => {
      await writeStandardModels(repoDir);
      // Shapes Triton's raw binary requests refuse or take (qa/L0_http/http_test.py): one BYTES element, two
      // variable dimensions.
      await writeModel(repoDir, 'bytes_one', 1, identityModel('string', ['batch', 1]), 'max_batch_size: 8\n');
      await writeModel(repoDir, 'fp16_two_variable', 1, identityModel('float16', ['rows', 'columns']), 'max_batch_size: 0\n');
    },
  });
});
after(() => served.close());

const raw = (model: string, body: BodyInit, extra: RequestInit = {}) =>
  fetch(`${served.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' },
    body,
    ...extra,
  });

/** The answer's first output as raw bytes (a raw request's answer is binary). */
async function firstOutput(response: Response): Promise<{ header: { outputs: { name: string; shape: number[]; datatype: string }[] }; bytes: Buffer }> {
  const body = Buffer.from(await response.arrayBuffer());
  const headerLength = Number(response.headers.get('inference-header-content-length'));
  return { header: JSON.parse(body.subarray(0, headerLength).toString('utf8')), bytes: body.subarray(headerLength) };
}

test('a raw binary request is the one input of a single-input model, typed by its config; the answer is binary', async () => {
  const values = Float32Array.of(1.5, -2, 3.25);
  const response = await raw('identity_fp32', new Uint8Array(values.buffer));
  assert.equal(response.status, 200, await response.clone().text());
  const { header, bytes } = await firstOutput(response);
  assert.deepEqual(header.outputs[0].shape, [1, 3], 'one row of the variable dimension the body fills');
  assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(bytes).buffer)), [1.5, -2, 3.25]);

  const unbatched = await raw('fp32_identity', new Uint8Array(Float32Array.of(7, 8).buffer));
  assert.equal(unbatched.status, 200);
  assert.deepEqual((await firstOutput(unbatched)).header.outputs[0].shape, [2]);

  const text = await raw('bytes_one', new TextEncoder().encode('hello raw'));
  assert.equal(text.status, 200, await text.clone().text());
  const answer = await firstOutput(text);
  assert.deepEqual(answer.header.outputs[0].shape, [1, 1]);
  assert.equal(answer.bytes.subarray(4).toString('utf8'), 'hello raw', 'one BYTES element, length-prefixed in the answer');
});

test('?outputs picks the outputs a raw binary request is answered with; a JSON request names them in its body instead', async () => {
  const body = new Uint8Array(Float32Array.of(1, 2).buffer);
  const picked = await fetch(`${served.url}/v2/models/identity_fp32/infer?outputs=OUTPUT0`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' }, body });
  assert.equal(picked.status, 200, await picked.clone().text());
  assert.deepEqual((await firstOutput(picked)).header.outputs.map((output) => output.name), ['OUTPUT0']);
  // An output the model lacks is refused as in a JSON request: the query is read, not ignored.
  const unknown = await fetch(`${served.url}/v2/models/identity_fp32/infer?outputs=OUTPUT0,NOPE`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' }, body });
  assert.equal(unknown.status, 400);
  assert.match((await unknown.json()).error, /NOPE/);
  const json = await fetch(`${served.url}/v2/models/identity_fp32/infer?outputs=OUTPUT0`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }),
  });
  assert.equal(json.status, 400);
  assert.match((await json.json()).error, /\?outputs is for a body without a JSON header .*a JSON request names its outputs in 'outputs'/);
});

test('a raw binary request arrives chunked (Transfer-Encoding: chunked) as well', async () => {
  const values = Float32Array.from({ length: 1000 }, (_, index) => index);
  const bytes = new Uint8Array(values.buffer);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let offset = 0; offset < bytes.length; offset += 333) controller.enqueue(bytes.slice(offset, offset + 333));
      controller.close();
    },
  });
  const response = await raw('identity_fp32', stream, { duplex: 'half' } as RequestInit);
  assert.equal(response.status, 200, await response.clone().text());
  const { header, bytes: answer } = await firstOutput(response);
  assert.deepEqual(header.outputs[0].shape, [1, 1000]);
  assert.equal(new Float32Array(Uint8Array.from(answer).buffer)[999], 999);
});

test('raw binary requests that cannot be read say why, in Triton\'s words first: several inputs, BYTES of more than one element, two variable dimensions, a size that is not whole elements', async () => {
  const several = await raw('simple', new Uint8Array(64));
  assert.equal(several.status, 400);
  assert.match(
    ((await several.json()) as { error: string }).error,
    /^Raw request must only have 1 input \(found 1\) to be deduced but got 2 inputs in 'simple' model configuration: .*one input; 'simple' has INPUT0, INPUT1/,
  );
  // The body is one BYTES element: an input of more (or of a variable count) cannot be told from it.
  const text = await raw('identity_bytes', new TextEncoder().encode('427'));
  assert.equal(text.status, 400);
  assert.match(((await text.json()) as { error: string }).error, /^For BYTE datatype raw input 'INPUT0', the model must have input shape \[1\] \(its dims are \[-1\]\)/);
  const twoVariable = await raw('fp16_two_variable', new Uint8Array(8));
  assert.equal(twoVariable.status, 400);
  assert.match(
    ((await twoVariable.json()) as { error: string }).error,
    /^The shape of the raw input 'INPUT0' can not be deduced because there are more than one variable-sized dimension \(dims \[-1, -1\]\)/,
  );
  const ragged = await raw('identity_fp32', new Uint8Array(6));
  assert.equal(ragged.status, 400);
  assert.match(((await ragged.json()) as { error: string }).error, /needs a multiple of 4 bytes; the body has 6/);
});

test("the repository index takes 'ready' as a boolean only, and JSON nested deeper than 100 levels is refused", async () => {
  const index = (body: string) => fetch(`${served.url}/v2/repository/index`, { method: 'POST', body });
  const wrong = await index('{"ready": "no"}');
  assert.equal(wrong.status, 400);
  assert.match(((await wrong.json()) as { error: string }).error, /'ready' must be true or false, got "no"/);
  assert.equal((await index('{"ready": true}')).status, 200);
  const deep = await fetch(`${served.url}/v2/models/simple/infer`, { method: 'POST', body: `${'['.repeat(101)}${']'.repeat(101)}` });
  assert.equal(deep.status, 400);
  assert.match(((await deep.json()) as { error: string }).error, /^JSON nesting depth exceeds maximum allowed limit \(100\): .*nests deeper than 100 levels/);
  // Brackets inside strings do not count.
  const quoted = await index(JSON.stringify({ ready: false, note: '['.repeat(500) }));
  assert.equal(quoted.status, 200);
});

test("reshape: inputs and outputs in the config's dims, a -1 taken from the row, rank-0 rows as dims [1] with reshape [], rank-0 tensors as dims [1]", async () => {
  const reshaping = await startTestServer({
    models: async (repo) => {
      await writeModel(
        repo,
        'square',
        1,
        addSubModel(),
        `max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4, 4 ] reshape: { shape: [ 16 ] } }, { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4, 4 ] reshape: { shape: [ 16 ] } }, { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
`,
      );
      await writeModel(
        repo,
        'open',
        1,
        identityModel('float32'),
        `max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape: { shape: [ -1 ] } } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape: { shape: [ -1 ] } } ]
`,
      );
      await writeModel(
        repo,
        'scalar',
        1,
        identityModel('float32', ['batch']),
        `max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
`,
      );
      await writeModel(
        repo,
        'rank0',
        1,
        identityModel('float32', []),
        `max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
`,
      );
    },
  });
  try {
    const infer = async (model: string, inputs: unknown[]) => {
      const response = await fetch(`${reshaping.url}/v2/models/${model}/infer`, { method: 'POST', body: JSON.stringify({ inputs }) });
      const body = (await response.json()) as { outputs?: { name: string; shape: number[]; data: number[] }[]; error?: string };
      return { status: response.status, body };
    };
    const ones = new Array(16).fill(1);
    const square = await infer('square', [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 4, 4], data: ones },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: ones },
    ]);
    assert.equal(square.status, 200, JSON.stringify(square.body));
    assert.deepEqual(square.body.outputs!.find((output) => output.name === 'OUTPUT0')!.shape, [1, 4, 4]);
    assert.deepEqual(square.body.outputs!.find((output) => output.name === 'OUTPUT1')!.shape, [1, 16]);

    const open = await infer('open', [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 2, 3], data: [1, 2, 3, 4, 5, 6] }]);
    assert.equal(open.status, 200, JSON.stringify(open.body));
    assert.deepEqual(open.body.outputs![0].shape, [1, 2, 3]);
    assert.deepEqual(open.body.outputs![0].data, [1, 2, 3, 4, 5, 6]);

    const scalar = await infer('scalar', [{ name: 'INPUT0', datatype: 'FP32', shape: [2, 1], data: [7, 8] }]);
    assert.equal(scalar.status, 200, JSON.stringify(scalar.body));
    assert.deepEqual(scalar.body.outputs![0].shape, [2, 1]);
    assert.deepEqual(scalar.body.outputs![0].data, [7, 8]);

    // A rank-0 ONNX tensor declared dims [1], no reshape: accepted at load, as Triton does.
    const rank0 = await infer('rank0', [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [2.5] }]);
    assert.equal(rank0.status, 200, JSON.stringify(rank0.body));
    assert.deepEqual(rank0.body.outputs![0].shape, [1]);
    assert.deepEqual(rank0.body.outputs![0].data, [2.5]);
  } finally {
    await reshaping.close();
  }
});

test('a version policy naming a version without a folder loads the others and reports the missing one', async () => {
  const partial = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'gappy', 3, identityModel('float32'), 'version_policy: { specific: { versions: [ 1, 3 ] } }\n');
    },
  });
  try {
    const index = (await (await fetch(`${partial.url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { version: string; state: string; reason: string }[];
    assert.deepEqual(
      index.map(({ version, state }) => [version, state]),
      [
        ['1', 'UNAVAILABLE'],
        ['3', 'READY'],
      ],
    );
    assert.match(index[0].reason, /no folder/);
    assert.equal((await fetch(`${partial.url}/v2/models/gappy/versions/3/ready`)).status, 200);
  } finally {
    await partial.close();
  }
});

test('a config given with a load request is dropped by the next request without one, as in Triton, and by an unload', async () => {
  const explicit = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'tunable', 1, identityModel('float32'), 'max_batch_size: 4\n');
    },
    server: { modelControlMode: 'explicit', loadModels: ['tunable'] },
  });
  try {
    const load = (body: unknown) => fetch(`${explicit.url}/v2/repository/models/tunable/load`, { method: 'POST', body: JSON.stringify(body) });
    const maxBatch = async () => ((await (await fetch(`${explicit.url}/v2/models/tunable/config`)).json()) as { max_batch_size: number }).max_batch_size;
    assert.equal(await maxBatch(), 4);
    assert.equal((await load({ parameters: { config: JSON.stringify({ max_batch_size: 2 }) } })).status, 200);
    assert.equal(await maxBatch(), 2);
    // As Triton (qa/L0_lifecycle test_config_override): a load request without a config reads the repository's files.
    assert.equal((await load({})).status, 200);
    assert.equal(await maxBatch(), 4, 'a plain load reads the files again');
    assert.equal((await load({ parameters: { config: JSON.stringify({ max_batch_size: 2 }) } })).status, 200);
    assert.equal((await fetch(`${explicit.url}/v2/repository/models/tunable/unload`, { method: 'POST', body: '{}' })).status, 200);
    assert.equal((await load({})).status, 200);
    assert.equal(await maxBatch(), 4, 'after an unload, the files again');
  } finally {
    await explicit.close();
  }
});

test('an input the model backs with an initializer may be declared and left out; sending it is refused with the reason', async () => {
  const withDefault = buildOnnxModel({
    graphName: 'bias',
    inputs: [
      { name: 'X', type: 'float32', shape: ['batch', 4] },
      { name: 'INITIALIZER', type: 'float32', shape: [4] },
    ],
    outputs: [{ name: 'Y', type: 'float32', shape: ['batch', 4] }],
    initializers: [{ name: 'INITIALIZER', type: 'float32', dims: [4], values: [1, 2, 3, 4] }],
    nodes: [{ opType: 'Add', inputs: ['X', 'INITIALIZER'], outputs: ['Y'] }],
  });
  const biased = await startTestServer({
    models: async (repo) => {
      await writeModel(
        repo,
        'bias',
        1,
        withDefault,
        `max_batch_size: 2
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "INITIALIZER" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
`,
      );
    },
  });
  try {
    const infer = (inputs: unknown[]) => fetch(`${biased.url}/v2/models/bias/infer`, { method: 'POST', body: JSON.stringify({ inputs }) });
    const x = { name: 'X', datatype: 'FP32', shape: [1, 4], data: [10, 10, 10, 10] };
    const left = await infer([x]);
    assert.equal(left.status, 200, await left.clone().text());
    assert.deepEqual(((await left.json()) as { outputs: { data: number[] }[] }).outputs[0].data, [11, 12, 13, 14]);
    const sent = await infer([x, { name: 'INITIALIZER', datatype: 'FP32', shape: [4], data: [0, 0, 0, 0] }]);
    assert.equal(sent.status, 400);
    assert.match(((await sent.json()) as { error: string }).error, /takes the value built into the model \(an ONNX initializer\)/);
    const config = (await (await fetch(`${biased.url}/v2/models/bias/config`)).json()) as { input: { name: string; optional: boolean }[] };
    assert.equal(config.input.find((input) => input.name === 'INITIALIZER')?.optional, true);
  } finally {
    await biased.close();
  }
});

test('a chunked body in more pieces than the limit is refused with the reason, before it is whole', async () => {
  const connection = new RawConnection(served.url);
  try {
    const pieces = 70_000; // over the default 65,536
    const chunks = Buffer.from('1\r\n0\r\n'.repeat(pieces) + '0\r\n\r\n', 'latin1');
    const answer = connection.request('POST', '/v2/models/identity_fp32/infer', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, chunks);
    const { status, body } = await answer;
    assert.equal(status, 400);
    assert.match(body, /arrived in more than 65536 pieces \(chunks\)/);
  } finally {
    connection.close();
  }
});

test('BF16 is refused with the reason, over HTTP and gRPC and in a config: no backend here has bfloat16 tensors', async () => {
  const bf16 = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'bf16_config', 1, identityModel('float32'), 'max_batch_size: 8\ninput [ { name: "INPUT0" data_type: TYPE_BF16 dims: [ -1 ] } ]\n');
      await writeModel(repo, 'identity_fp32', 1, identityModel('float32'), 'max_batch_size: 8\n');
    },
  });
  const rpc = await startGrpcEndpoint(bf16.server);
  try {
    const reason = /BF16 \(bfloat16\) is not supported: ONNX Runtime's Node binding, which runs the models here, has no bfloat16 tensors/;
    const index = (await (await fetch(`${bf16.url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { name: string; reason?: string }[];
    const entry = index.find((model) => model.name === 'bf16_config');
    assert.match(entry?.reason ?? '', /data_type TYPE_BF16/);
    assert.match(entry?.reason ?? '', reason);

    const http = await fetch(`${bf16.url}/v2/models/identity_fp32/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'BF16', shape: [1, 2], data: [1, 2] }] }),
    });
    assert.equal(http.status, 400);
    const message = ((await http.json()) as { error: string }).error;
    assert.match(message, /^input 'INPUT0': datatype BF16/);
    assert.match(message, reason);

    const grpcAnswer = await new Promise<grpc.ServiceError | null>((resolve) =>
      rpc.client.ModelInfer({ model_name: 'identity_fp32', inputs: [{ name: 'INPUT0', datatype: 'BF16', shape: [1, 2] }], raw_input_contents: [Buffer.alloc(4)] }, (error: grpc.ServiceError | null) => resolve(error)),
    );
    assert.equal(grpcAnswer?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(grpcAnswer!.details, reason);
  } finally {
    await rpc.close();
    await bf16.close();
  }
});

test('a wrong shape is reported as the shape before the binary size it leads to, over gRPC raw contents and HTTP binary data', async () => {
  const rpc = await startGrpcEndpoint(served.server);
  try {
    const sixteen = Buffer.from(new Int32Array(16).fill(1).buffer);
    const wrongShape = /input 'INPUT0' expects INT32 \[-1,\s?16\], got INT32 \[1,\s?15\]/;
    const grpcError = await new Promise<grpc.ServiceError | null>((resolve) =>
      rpc.client.ModelInfer(
        { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 15] }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16] }], raw_input_contents: [sixteen, sixteen] },
        (error: grpc.ServiceError | null) => resolve(error),
      ),
    );
    assert.equal(grpcError?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(grpcError!.details, wrongShape);

    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 15], parameters: { binary_data_size: 64 } },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        ],
      }),
    );
    const http = await fetch(`${served.url}/v2/models/simple/infer`, {
      method: 'POST',
      headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' },
      body: Buffer.concat([header, sixteen, sixteen]),
    });
    assert.equal(http.status, 400);
    assert.match(((await http.json()) as { error: string }).error, wrongShape);

    // A right shape with the wrong number of bytes is still reported as the size.
    const short = await new Promise<grpc.ServiceError | null>((resolve) =>
      rpc.client.ModelInfer(
        { model_name: 'simple', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16] }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16] }], raw_input_contents: [sixteen.subarray(4), sixteen] },
        (error: grpc.ServiceError | null) => resolve(error),
      ),
    );
    assert.match(short!.details, /INT32 \[1,16\] needs 64 bytes of binary data, got raw_input_contents\[0\] size 60/);
  } finally {
    await rpc.close();
  }
});

test('a JSON number out of a float datatype\'s range is refused naming the input, value and range; NaN and infinities are read and written by name, as Triton does', async () => {
  const infer = (model: string, datatype: string, literal: string) =>
    fetch(`${served.url}/v2/models/${model}/infer`, { method: 'POST', body: `{"inputs":[{"name":"INPUT0","datatype":"${datatype}","shape":[1,2],"data":[1,${literal}]}]}` });
  const cases: [string, string, string, RegExp][] = [
    ['identity_fp32', 'FP32', '1e39', /input 'INPUT0': element 1 is 1e\+39, out of range for datatype FP32 \(finite values from -3\.4028234663852886e\+38 to 3\.4028234663852886e\+38\)/],
    ['identity_fp32', 'FP32', '-1e39', /element 1 is -1e\+39, out of range for datatype FP32/],
    ['identity_fp16', 'FP16', '70000', /input 'INPUT0': element 1 is 70000, out of range for datatype FP16 \(finite values from -65504 to 65504\)/],
    ['identity_fp64', 'FP64', '1e400', /element 1 is a number beyond the range of a double, out of range for datatype FP64/],
  ];
  for (const [model, datatype, literal, reason] of cases) {
    const response = await infer(model, datatype, literal);
    assert.equal(response.status, 400, `${datatype} ${literal}`);
    assert.match(((await response.json()) as { error: string }).error, reason);
  }
  // The largest finite values are taken.
  const largest = await infer('identity_fp32', 'FP32', '3.4028234663852886e38');
  assert.equal(largest.status, 200, await largest.clone().text());
  assert.deepEqual(((await largest.json()) as { outputs: { data: number[] }[] }).outputs[0].data, [1, 3.4028234663852886e38]);

  // Triton parses and writes NaN, Infinity and -Infinity (rapidjson's kParseNanAndInfFlag / kWriteNanAndInfFlag; Inf too).
  for (const [model, datatype] of [['identity_fp32', 'FP32'], ['identity_fp16', 'FP16'], ['identity_fp64', 'FP64']]) {
    const named = await fetch(`${served.url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: `{"inputs":[{"name":"INPUT0","datatype":"${datatype}","shape":[1,6],"data":[NaN,Infinity,-Infinity,Inf,-Inf,1.5]}]}`,
    });
    const answer = await named.text();
    assert.equal(named.status, 200, answer);
    assert.match(answer, /"data":\[NaN,Infinity,-Infinity,Infinity,-Infinity,1\.5\]/, `${datatype}: ${answer}`);
  }
  // By name only: a string is not a number, and an integer datatype takes none of them.
  for (const [datatype, literal, reason] of [['FP32', '"NaN"', /element 0 is "NaN", expected a number for datatype FP32/], ['INT32', 'NaN', /element 0 is NaN, expected an integer in \[-2147483648, 2147483647\] for datatype INT32/], ['FP32', 'nan', /malformed JSON/]] as const) {
    const refused = await fetch(`${served.url}/v2/models/identity_${datatype.toLowerCase()}/infer`, { method: 'POST', body: `{"inputs":[{"name":"INPUT0","datatype":"${datatype}","shape":[1,1],"data":[${literal}]}]}` });
    assert.equal(refused.status, 400, literal);
    assert.match(((await refused.json()) as { error: string }).error, reason);
  }

  // Binary in, JSON out: the same names.
  const values = new Float32Array([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2]);
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }], outputs: [{ name: 'OUTPUT0', parameters: { binary_data: false } }] }));
  const binary = await fetch(`${served.url}/v2/models/identity_fp32/infer`, {
    method: 'POST',
    headers: { 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, Buffer.from(values.buffer)]),
  });
  const text = await binary.text();
  assert.equal(binary.status, 200, text);
  assert.match(text, /"data":\[NaN,Infinity,-Infinity,2\]/);
});

test("requests Node's HTTP parser refuses are answered with the same {\"error\"} body as every other refusal, naming what was wrong", async () => {
  const both = new RawConnection(served.url);
  const refused = await both.request('POST', '/v2/models/simple/infer', { 'content-length': 5, 'transfer-encoding': 'chunked' }, '0\r\n\r\n');
  assert.equal(refused.status, 400);
  assert.match(JSON.parse(refused.body).error, /^malformed HTTP request: Transfer-Encoding can't be present with Content-Length/);
  await both.closed;

  const badChunk = new RawConnection(served.url);
  const chunk = await badChunk.request('POST', '/v2/models/simple/infer', { 'transfer-encoding': 'chunked' }, 'zz\r\nabc\r\n');
  assert.equal(chunk.status, 400);
  assert.match(JSON.parse(chunk.body).error, /^malformed HTTP request: .*chunk size/i);

  const longUrl = new RawConnection(served.url);
  const tooLong = await longUrl.request('GET', `/v2/models/${'x'.repeat(20_000)}`, {});
  assert.equal(tooLong.status, 431);
  assert.match(JSON.parse(tooLong.body).error, /the request line and headers exceed \d+ bytes/);
});

test("Triton's phrase leads the refusal of a duplicate output, as its QA tests match it", async () => {
  const request = (outputs: object[]) =>
    fetch(`${served.url}/v2/models/simple/infer`, {
      method: 'POST',
      body: JSON.stringify({
        inputs: ['INPUT0', 'INPUT1'].map((name) => ({ name, datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) })),
        outputs,
      }),
    }).then(async (response) => ({ status: response.status, error: ((await response.json()) as { error?: string }).error }));
  assert.deepEqual(await request([{ name: 'OUTPUT0' }, { name: 'OUTPUT0' }]), {
    status: 400,
    error: "Duplicate output name 'OUTPUT0' is not allowed in a request: output 'OUTPUT0' is requested more than once",
  });
});
