import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { NereidError, grpcStatusOf, type ErrorCode } from '../../core/errors.js';
import { parseModelConfig, type CompletedModelConfig } from '../../config/model-config.js';
import {
  decodeModelInferRequest,
  encodeModelInferResponse,
  modelConfigToProto,
  parametersFromProto,
  parametersToProto,
  type ModelInferRequestMessage,
} from './v2-grpc-codec.js';

async function assertInvalid(fn: () => unknown, ...fragments: string[]): Promise<void> {
  await assert.rejects(async () => fn(), (error: unknown) => {
    assert.ok(error instanceof NereidError, `expected a NereidError, got ${String(error)}`);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `'${error.message}' lacks '${fragment}'`);
    return true;
  });
}

test('every error code maps to the gRPC status of the same name', () => {
  const codes: ErrorCode[] = [
    'INVALID_ARGUMENT', 'NOT_FOUND', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'CANCELLED',
    'PERMISSION_DENIED', 'UNAUTHENTICATED', 'FAILED_PRECONDITION', 'UNIMPLEMENTED', 'ALREADY_EXISTS', 'INTERNAL',
  ];
  for (const code of codes) assert.equal(grpcStatusOf(code), grpc.status[code], code);
});

test('InferParameter oneofs become the core parameters; 64-bit values stay exact', async () => {
  assert.equal(parametersFromProto({}, 'request'), undefined);
  assert.deepEqual(
    parametersFromProto(
      {
        a: { parameter_choice: 'bool_param', bool_param: true },
        b: { parameter_choice: 'int64_param', int64_param: '-42' },
        c: { parameter_choice: 'uint64_param', uint64_param: '18446744073709551615' },
        d: { parameter_choice: 'double_param', double_param: 0.25 },
        e: { parameter_choice: 'string_param', string_param: 'x' },
      },
      'request',
    ),
    { a: true, b: -42, c: '18446744073709551615', d: 0.25, e: 'x' },
  );
  await assertInvalid(() => parametersFromProto({ p: {} }, 'request'), "request: parameter 'p' must be a string, number or boolean");
  assert.deepEqual(parametersToProto({ a: true, b: 3, c: 0.5, d: 's' }), {
    a: { bool_param: true },
    b: { int64_param: 3 },
    c: { double_param: 0.5 },
    d: { string_param: 's' },
  });
});

test("triton_enable_empty_final_response is the stream's business: checked, and left out of what the model is given", async () => {
  const message = (parameters: Record<string, unknown>) => ({ model_name: 'm', inputs: [], parameters }) as unknown as Parameters<typeof decodeModelInferRequest>[0];
  const decoded = await decodeModelInferRequest(message({ triton_enable_empty_final_response: { parameter_choice: 'bool_param', bool_param: true }, keep: { parameter_choice: 'int64_param', int64_param: '1' } }));
  assert.deepEqual(decoded.parameters, { keep: 1 });
  await assertInvalid(() => decodeModelInferRequest(message({ triton_other: { parameter_choice: 'bool_param', bool_param: true } })), "reserved for Triton usage; of those only triton_enable_empty_final_response may be given (got 'triton_other')");
});

test('decodes typed and raw contents, requested outputs with class_count, and refuses mixing', async () => {
  const request = await decodeModelInferRequest({
    model_name: 'm',
    model_version: '',
    id: '',
    inputs: [
      { name: 'I', datatype: 'INT64', shape: ['2'], contents: { int64_contents: ['9007199254740993', '-1'] } },
      { name: 'S', datatype: 'BYTES', shape: ['1'], contents: { bytes_contents: [Buffer.from('hi')] } },
    ],
    outputs: [{ name: 'Y', parameters: { class_count: { parameter_choice: 'int64_param', int64_param: '2' } } }, { name: 'Z', parameters: {} }],
  });
  assert.equal(request.version, undefined);
  assert.equal(request.id, undefined);
  assert.deepEqual([...(request.inputs[0].data as BigInt64Array)], [9007199254740993n, -1n]);
  assert.deepEqual(request.inputs[0].shape, [2]);
  assert.deepEqual(request.inputs[1].data, [Buffer.from('hi')]);
  assert.deepEqual(request.outputs?.map((output) => [output.name, output.classCount]), [['Y', 2], ['Z', undefined]]);

  const raw = await decodeModelInferRequest({
    model_name: 'm',
    inputs: [{ name: 'F', datatype: 'FP16', shape: ['2'], contents: null }],
    raw_input_contents: [Buffer.from([0x00, 0x3c, 0x00, 0xc0])],
  });
  assert.deepEqual([...(raw.inputs[0].data as Uint16Array)], [0x3c00, 0xc000]);

  const mixed: ModelInferRequestMessage = {
    model_name: 'm',
    inputs: [{ name: 'A', datatype: 'INT32', shape: ['1'], contents: { int_contents: [1] } }],
    raw_input_contents: [Buffer.alloc(4)],
  };
  await assertInvalid(() => decodeModelInferRequest(mixed), "input 'A' has contents while the request has raw_input_contents; send every input one way");
  // One input in contents and one raw: the count is off by the typed one, which is what the message names.
  await assertInvalid(
    () => decodeModelInferRequest({ ...mixed, inputs: [...mixed.inputs, { name: 'B', datatype: 'INT32', shape: ['1'], contents: null }] }),
    "input 'A' has contents while the request has raw_input_contents",
  );
  // Sequence parameters are typed whatever the model: a flag is a bool_param.
  await assertInvalid(
    () => decodeModelInferRequest({ model_name: 'm', inputs: [], parameters: { sequence_start: { parameter_choice: 'string_param', string_param: 'yes' } } }),
    "parameter 'sequence_start' must be a boolean (true or false)",
  );
  await assertInvalid(
    () => decodeModelInferRequest({ model_name: 'm', inputs: [{ name: 'A', datatype: 'UINT8', shape: ['1'], contents: { uint_contents: [256] } }] }),
    'element 0 is 256',
    'UINT8',
  );
  await assertInvalid(
    () => decodeModelInferRequest({ model_name: 'm', inputs: [{ name: 'A', datatype: 'INT32', shape: ['1'] }], raw_input_contents: [Buffer.alloc(3)] }),
    'INT32 [1] needs 4 bytes of binary data, got raw_input_contents[0] size 3',
  );
});

test('encodes every output as raw little-endian bytes with its metadata', async () => {
  const message = await encodeModelInferResponse({
    model: 'm',
    version: '1',
    id: 'x',
    outputs: [
      { name: 'A', datatype: 'INT32', shape: [2], data: Int32Array.from([1, -1]) },
      { name: 'B', datatype: 'BYTES', shape: [1], data: [Buffer.from('ok')] },
    ],
  });
  assert.deepEqual(message.outputs.map((output) => [output.name, output.datatype, output.shape]), [
    ['A', 'INT32', [2]],
    ['B', 'BYTES', [1]],
  ]);
  assert.deepEqual(message.raw_output_contents, [Buffer.from([1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), Buffer.from([2, 0, 0, 0, 0x6f, 0x6b])]);
});

test('the config maps field by field: optimization.graph.level and model_transaction_policy as Triton sends them, fields the proto lacks left out', () => {
  const parsed = parseModelConfig(
    {
      max_batch_size: 4,
      input: [{ name: 'I', data_type: 'TYPE_FP32', dims: [3, 4, 4], format: 'FORMAT_NCHW' }],
      output: [{ name: 'O', data_type: 'TYPE_STRING', dims: [-1] }],
      version_policy: { specific: { versions: [1, 3] } },
      optimization: { graph: { level: 1 }, eager_batching: true },
    },
    'test',
  );
  const config = { ...parsed, name: 'm', max_batch_size: 4, backend: 'onnxruntime', platform: 'onnxruntime_onnx' } as CompletedModelConfig;
  const proto = modelConfigToProto(config);
  assert.deepEqual(proto.optimization, { graph: { level: 1 } }, 'the field Nereid reads; eager_batching has no effect here');
  assert.deepEqual(proto.model_transaction_policy, { decoupled: false });
  assert.deepEqual(proto.version_policy, { specific: { versions: [1, 3] } });
  assert.deepEqual(proto.input[0], { name: 'I', data_type: 'TYPE_FP32', format: 'FORMAT_NCHW', dims: [3, 4, 4], reshape: null, allow_ragged_batch: false, optional: false });
  assert.equal(proto.output[0].data_type, 'TYPE_STRING');
  assert.equal(proto.dynamic_batching, null);
});
