import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytesElements, PackedBytes } from '../core/datatype.js';
import type { InferenceResponse } from '../core/inference.js';
import { NereidError } from '../core/errors.js';
import { MAX_BYTES_ELEMENTS } from '../core/tensor.js';
import { decodeInferRequest, encodedBytes, encodeInferResponse, encodeInferResponseInSlices, JSON_SLICE_VALUES, MAX_JSON_DEPTH, parseExactJson, refuseBytesBeyondCap, stringifyExactJson } from './v2-json.js';

/** JSON header + binary tensors, as Triton's clients send them. */
function binaryBody(header: unknown, ...buffers: ArrayBufferView[]): { body: Buffer; headerLength: string } {
  const json = Buffer.from(JSON.stringify(header));
  return {
    body: Buffer.concat([json, ...buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))]),
    headerLength: String(json.length),
  };
}

function lengthPrefixed(...elements: string[]): Buffer {
  return Buffer.concat(
    elements.flatMap((element) => {
      const bytes = Buffer.from(element, 'utf8');
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32LE(bytes.length);
      return [prefix, bytes];
    }),
  );
}

function decodeJson(header: unknown) {
  return decodeInferRequest(Buffer.from(JSON.stringify(header)), undefined, 'm', undefined);
}

/** Asserts `fn` throws an INVALID_ARGUMENT NereidError whose message contains every fragment. */
function assertInvalid(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof NereidError, `expected a NereidError, got ${String(error)}`);
    assert.equal(error.code, 'INVALID_ARGUMENT');
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `'${error.message}' lacks '${fragment}'`);
    return true;
  });
}

test('decodes a JSON request: model, version, id, parameters, nested data flattened, requested outputs', () => {
  const { request, binaryOutputByDefault } = decodeInferRequest(
    Buffer.from(
      JSON.stringify({
        id: 'req-1',
        parameters: { priority: 2, custom: 'x', flag: true },
        inputs: [{ name: 'A', datatype: 'INT32', shape: [2, 2], data: [[1, 2], [3, 4]], parameters: { note: 'n' } }],
        outputs: [{ name: 'Y', parameters: { class_count: 3 } }, { name: 'Z', parameters: { class_count: 0 } }],
      }),
    ),
    undefined,
    'simple',
    '2',
  );
  assert.equal(request.model, 'simple');
  assert.equal(request.version, '2');
  assert.equal(request.id, 'req-1');
  assert.deepEqual(request.parameters, { priority: 2, custom: 'x', flag: true });
  assert.equal(binaryOutputByDefault, false);
  const [input] = request.inputs;
  assert.equal(input.name, 'A');
  assert.equal(input.datatype, 'INT32');
  assert.deepEqual(input.shape, [2, 2]);
  assert.ok(input.data instanceof Int32Array);
  assert.deepEqual(Array.from(input.data as Int32Array), [1, 2, 3, 4]);
  assert.deepEqual(input.parameters, { note: 'n' });
  assert.equal(request.outputs?.[0].name, 'Y');
  assert.equal(request.outputs?.[0].classCount, 3);
  assert.equal(request.outputs?.[1].classCount, undefined, 'class_count 0 means no classification, as in Triton');
});

test('binary_data_output makes binary the default for outputs', () => {
  const { binaryOutputByDefault } = decodeJson({ parameters: { binary_data_output: true }, inputs: [] });
  assert.equal(binaryOutputByDefault, true);
});

test('decodes binary tensors of every fixed-size type after the JSON header, misaligned or not', () => {
  const fp32 = new Float32Array([1.5, -2.25, 3e10]);
  const i64 = new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]);
  const u64 = new BigUint64Array([2n ** 64n - 1n, 0n]);
  const fp16 = new Uint16Array([0x3c00, 0xc000]); // 1, -2
  const bool = new Uint8Array([1, 0, 1]);
  const i8 = new Int8Array([-128, 127]);
  for (const pad of ['', ' ', '  ', '   ']) {
    // JSON.stringify never pads, so vary the id length to move the binary part across alignments.
    const { body, headerLength } = binaryBody(
      {
        id: `x${pad.replace(/ /g, 'y')}`,
        inputs: [
          { name: 'F', datatype: 'FP32', shape: [3], parameters: { binary_data_size: 12 } },
          { name: 'I', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } },
          { name: 'U', datatype: 'UINT64', shape: [1, 2], parameters: { binary_data_size: 16 } },
          { name: 'H', datatype: 'FP16', shape: [2], parameters: { binary_data_size: 4 } },
          { name: 'B', datatype: 'BOOL', shape: [3], parameters: { binary_data_size: 3 } },
          { name: 'S', datatype: 'INT8', shape: [2], parameters: { binary_data_size: 2 } },
        ],
      },
      fp32,
      i64,
      u64,
      fp16,
      bool,
      i8,
    );
    const { request } = decodeInferRequest(body, headerLength, 'm', undefined);
    const byName = Object.fromEntries(request.inputs.map((input) => [input.name, input]));
    assert.deepEqual(Array.from(byName.F.data as Float32Array), Array.from(fp32));
    assert.deepEqual(Array.from(byName.I.data as BigInt64Array), Array.from(i64));
    assert.deepEqual(Array.from(byName.U.data as BigUint64Array), Array.from(u64));
    assert.deepEqual(Array.from(byName.H.data as Uint16Array), [0x3c00, 0xc000]);
    assert.deepEqual(Array.from(byName.B.data as Uint8Array), [1, 0, 1]);
    assert.deepEqual(Array.from(byName.S.data as Int8Array), [-128, 127]);
    assert.equal(byName.F.parameters, undefined, 'binary_data_size is wire format, not a parameter for the core');
  }
});

test('binary and JSON inputs mix; binary parts are consumed in input order', () => {
  const { body, headerLength } = binaryBody(
    {
      inputs: [
        { name: 'A', datatype: 'INT32', shape: [2], parameters: { binary_data_size: 8 } },
        { name: 'J', datatype: 'INT32', shape: [1], data: [9] },
        { name: 'B', datatype: 'INT32', shape: [1], parameters: { binary_data_size: 4 } },
      ],
    },
    new Int32Array([1, 2]),
    new Int32Array([3]),
  );
  const { request } = decodeInferRequest(body, headerLength, 'm', undefined);
  assert.deepEqual(
    request.inputs.map((input) => [input.name, Array.from(input.data as Int32Array)]),
    [
      ['A', [1, 2]],
      ['J', [9]],
      ['B', [3]],
    ],
  );
});

test('requests repeating one JSON header each decode their own tensors, and none can change what the next one reads', () => {
  const header = {
    inputs: [
      { name: 'A', datatype: 'INT32', shape: [2], parameters: { binary_data_size: 8, tag: 'x' } },
      { name: 'J', datatype: 'BYTES', shape: [1], data: ['kept'] },
    ],
    outputs: [{ name: 'OUT', parameters: { binary_data: true } }],
  };
  const decoded = [new Int32Array([1, 2]), new Int32Array([3, 4])].map((data) => {
    const { body, headerLength } = binaryBody(header, data);
    return decodeInferRequest(body, headerLength, 'm', undefined).request;
  });
  assert.deepEqual(decoded.map((request) => Array.from(request.inputs[0].data as Int32Array)), [[1, 2], [3, 4]]);
  const [first, second] = decoded;
  assert.throws(() => (first.inputs[0].shape as number[]).push(5), TypeError);
  (first.inputs[1].data as Buffer[])[0] = Buffer.from('changed');
  assert.deepEqual(second.inputs.map((input) => [input.shape, input.parameters]), [[[2], { tag: 'x' }], [[1], undefined]]);
  assert.deepEqual(second.inputs[1].data, [Buffer.from('kept')]);
  assert.deepEqual(second.outputs, first.outputs);
  // A header whose literals JSON.parse cannot take as they are is read exactly on every request.
  const exact = { inputs: [{ name: 'L', datatype: 'INT64', shape: [1], data: [9007199254740993] }, { name: 'A', datatype: 'INT32', shape: [1], parameters: { binary_data_size: 4 } }] };
  const exactText = JSON.stringify(exact).replace('9007199254740992', '9007199254740993');
  for (let round = 0; round < 2; round++) {
    const json = Buffer.from(exactText);
    const { request } = decodeInferRequest(Buffer.concat([json, Buffer.from(new Int32Array([7]).buffer)]), String(json.length), 'm', undefined);
    assert.deepEqual(Array.from(request.inputs[0].data as BigInt64Array), [9007199254740993n]);
  }
});

test('decodes binary BYTES as 4-byte little-endian length-prefixed elements', () => {
  const bytes = lengthPrefixed('hello', '', 'wörld');
  const { body, headerLength } = binaryBody(
    { inputs: [{ name: 'T', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: bytes.length } }] },
    bytes,
  );
  const { request } = decodeInferRequest(body, headerLength, 'm', undefined);
  assert.ok(request.inputs[0].data instanceof PackedBytes, 'kept packed: one object however many elements');
  assert.deepEqual(bytesElements(request.inputs[0].data).map((element) => element.toString('utf8')), ['hello', '', 'wörld']);
});

test('refuses bad Inference-Header-Content-Length values', () => {
  const json = Buffer.from(JSON.stringify({ inputs: [] }));
  for (const bad of ['abc', '-1', String(json.length + 1), '1.5', 'NaN']) {
    assertInvalid(() => decodeInferRequest(json, bad, 'm', undefined), 'Inference-Header-Content-Length', JSON.stringify(bad), `${json.length} bytes`);
  }
  // A header length that cuts the JSON short is reported as malformed JSON.
  assertInvalid(() => decodeInferRequest(json, '5', 'm', undefined), 'malformed JSON');
});

test('refuses binary sizes that do not add up to the body', () => {
  const header = { inputs: [{ name: 'A', datatype: 'INT32', shape: [2], parameters: { binary_data_size: 8 } }] };
  // Too little binary data after the header.
  const short = binaryBody(header, new Int32Array([1]));
  assertInvalid(() => decodeInferRequest(short.body, short.headerLength, 'm', undefined), "input 'A'", 'binary_data_size 8', 'runs past the end', '4 binary bytes left');
  // Bytes left over that no input accounts for.
  const long = binaryBody(header, new Int32Array([1, 2, 3]));
  assertInvalid(() => decodeInferRequest(long.body, long.headerLength, 'm', undefined), '4 bytes after the JSON header');
  // binary_data_size without Inference-Header-Content-Length: the whole body is the JSON, so nothing is left.
  assertInvalid(() => decodeInferRequest(Buffer.from(JSON.stringify(header)), undefined, 'm', undefined), 'runs past the end');
});

test('refuses a binary size that does not fit the datatype and shape', () => {
  const { body, headerLength } = binaryBody(
    { inputs: [{ name: 'A', datatype: 'FP32', shape: [1, 3], parameters: { binary_data_size: 8 } }] },
    new Float32Array([1, 2]),
  );
  assertInvalid(() => decodeInferRequest(body, headerLength, 'm', undefined), "input 'A'", 'FP32 [1,3] needs 12 bytes', 'binary_data_size 8');
});

test('refuses BYTES binary data that is not well-formed or holds the wrong element count', () => {
  const truncated = Buffer.concat([lengthPrefixed('abc'), Buffer.from([10, 0, 0, 0, 1, 2])]); // says 10 bytes, has 2
  const one = binaryBody({ inputs: [{ name: 'T', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: truncated.length } }] }, truncated);
  assertInvalid(() => decodeInferRequest(one.body, one.headerLength, 'm', undefined), "input 'T'", '4-byte little-endian');
  const three = lengthPrefixed('a', 'b', 'c');
  const two = binaryBody({ inputs: [{ name: 'T', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: three.length } }] }, three);
  assertInvalid(() => decodeInferRequest(two.body, two.headerLength, 'm', undefined), "input 'T'", 'holds 2 elements', 'holds more than 2');
});

test('refuses malformed request structure with messages that name the field', () => {
  assertInvalid(() => decodeInferRequest(Buffer.from('{"inputs": ['), undefined, 'm', undefined), 'malformed JSON');
  assertInvalid(() => decodeInferRequest(Buffer.from('[]'), undefined, 'm', undefined), 'JSON object');
  assertInvalid(() => decodeJson({}), "'inputs'");
  assertInvalid(() => decodeJson({ id: 7, inputs: [] }), "'id' must be a string");
  assertInvalid(() => decodeJson({ inputs: [{ datatype: 'INT32', shape: [1], data: [1] }] }), "inputs[0] needs a 'name'");
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'FLOAT', shape: [1], data: [1] }] }), "input 'A'", 'datatype must be one of', '"FLOAT"');
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'INT32', shape: [-1], data: [1] }] }), "input 'A'", 'shape', '[-1]');
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'INT32', shape: [1] }] }), "input 'A' has no 'data'");
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'INT32', shape: [1], data: ['x'] }] }), "input 'A'", 'element 0', '"x"');
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'UINT8', shape: [1], data: [256] }] }), "input 'A'", '[0, 255]');
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'BOOL', shape: [1], data: [1] }] }), "input 'A'", 'true or false');
  assertInvalid(() => decodeJson({ inputs: [], parameters: { nested: { a: 1 } } }), "parameter 'nested'");
  assertInvalid(() => decodeJson({ inputs: [], outputs: {} }), "'outputs' must be an array");
  assertInvalid(() => decodeJson({ inputs: [], outputs: [{ name: 'Y', parameters: { class_count: '3' } }] }), "output 'Y'", 'class_count');
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', shape: [1], data: [1] }] }), "input 'A' has no 'datatype' (one of BOOL");
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'fp32', shape: [1], data: [1] }] }), 'got "fp32" (did you mean FP32?)');
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'TYPE_INT64', shape: [1], data: [1] }] }), '(did you mean INT64?)');
  assertInvalid(() => decodeJson({ input: [] }), "needs 'inputs', an array of tensors; it has 'input'");
  assertInvalid(() => decodeJson({ inputs: [], outputs: [{ name: 'Y', parameters: { classification: 'a' } }] }), "output 'Y': classification must be a number (the classes to answer), got \"a\"");
  // Whatever the model, as Triton's front ends read them: an unsigned integer or string id, boolean flags.
  assertInvalid(() => decodeJson({ inputs: [], parameters: { sequence_id: -3 } }), "'sequence_id'", 'got -3');
  assertInvalid(() => decodeJson({ inputs: [], parameters: { sequence_id: 1.5 } }), "'sequence_id'", 'got 1.5');
  assertInvalid(() => decodeJson({ inputs: [], parameters: { sequence_id: 7, sequence_start: 'yes' } }), "parameter 'sequence_start' must be a boolean (true or false), got \"yes\"");
  assertInvalid(() => decodeJson({ inputs: [], parameters: { sequence_end: 1 } }), "parameter 'sequence_end' must be a boolean (true or false), got 1");
  assertInvalid(
    () => decodeInferRequest(Buffer.concat([Buffer.from(JSON.stringify({ inputs: [{ name: 'A', datatype: 'INT32', shape: [1], parameters: { binary_data_size: 4 } }] })), Buffer.alloc(4, 7)]), undefined, 'm', undefined),
    'after JSON',
    'need the header Inference-Header-Content-Length',
  );
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'BYTES', shape: [2], data: ['a', '\ud800'] }] }), "input 'A': element 1 is \"\\ud800\"", 'unpaired surrogate');
  assertInvalid(() => decodeJson({ inputs: [{ name: 'A', datatype: 'INT32', data: [1] }] }), "input 'A' has no 'shape'");
  // Switches of the binary extension are booleans, as Triton reads them: the string "false" turned binary output on.
  assertInvalid(() => decodeJson({ inputs: [], outputs: [{ name: 'Y', parameters: { binary_data: 'false' } }] }), "output 'Y': parameter 'binary_data' must be a boolean (true or false), got \"false\"");
  assertInvalid(() => decodeJson({ inputs: [], outputs: [{ name: 'Y', parameters: { binary_data: 1 } }] }), "parameter 'binary_data' must be a boolean (true or false), got 1");
  assertInvalid(() => decodeJson({ inputs: [], parameters: { binary_data_output: 'true' } }), "request: parameter 'binary_data_output' must be a boolean (true or false)");
  assertInvalid(
    () => decodeJson({ inputs: [{ name: 'A', datatype: 'INT32', shape: [1], data: [1], parameters: { binary_data_size: 4 } }] }),
    "input 'A' has both 'data' and binary_data_size",
  );
  assertInvalid(
    () => decodeJson({ inputs: [{ name: 'A', datatype: 'INT32', shape: [1], parameters: { binary_data_size: -4 } }] }),
    'binary_data_size must be a non-negative integer',
  );
});

const response: InferenceResponse = {
  model: 'm',
  version: '3',
  id: 'abc',
  outputs: [
    { name: 'F', datatype: 'FP32', shape: [1, 2], data: new Float32Array([0.5, -1]) },
    { name: 'T', datatype: 'BYTES', shape: [2], data: [Buffer.from('hi'), Buffer.from('')] },
    { name: 'I', datatype: 'INT64', shape: [1], data: new BigInt64Array([-5n]) },
  ],
};

test('encodes a JSON response with model, version, id and flat data', () => {
  const encoded = encodeInferResponse(response, undefined, false);
  assert.equal(encoded.headerLength, undefined);
  assert.deepEqual(JSON.parse(encodedBytes(encoded).toString('utf8')), {
    model_name: 'm',
    model_version: '3',
    id: 'abc',
    outputs: [
      { name: 'F', datatype: 'FP32', shape: [1, 2], data: [0.5, -1] },
      { name: 'T', datatype: 'BYTES', shape: [2], data: ['hi', ''] },
      { name: 'I', datatype: 'INT64', shape: [1], data: [-5] },
    ],
  });
});

test('64-bit integers in JSON are written exactly, beyond the 2^53 a double holds', () => {
  const encoded = encodeInferResponse(
    {
      model: 'm',
      version: '1',
      outputs: [
        { name: 'I', datatype: 'INT64', shape: [3], data: new BigInt64Array([-(2n ** 63n), 2n ** 53n + 1n, 0n]) },
        { name: 'U', datatype: 'UINT64', shape: [1], data: new BigUint64Array([2n ** 64n - 1n]) },
      ],
    },
    undefined,
    false,
  );
  const text = encodedBytes(encoded).toString('utf8');
  assert.ok(text.includes('"data":[-9223372036854775808,9007199254740993,0]'), text);
  assert.ok(text.includes('"data":[18446744073709551615]'), text);
  assert.equal(JSON.parse(text).outputs[1].name, 'U', 'still valid JSON');
});

test('a large numeric answer is written in slices with the event loop served between them, as the same text as at once', async () => {
  const length = JSON_SLICE_VALUES * 3 + 5;
  const floats = Float32Array.from({ length }, (_, i) => (i === JSON_SLICE_VALUES + 1 ? NaN : Math.sin(i) * 1e3));
  const integers = BigInt64Array.from({ length }, (_, i) => BigInt(i) * 2n ** 40n - 7n);
  const large: InferenceResponse = {
    model: 'm',
    version: '1',
    outputs: [
      { name: 'F', datatype: 'FP32', shape: [length], data: floats },
      { name: 'I', datatype: 'INT64', shape: [length], data: integers },
      { name: 'B', datatype: 'FP32', shape: [length], data: floats },
    ],
  };
  const asked = [{ name: 'F' }, { name: 'I' }, { name: 'B', parameters: { binary_data: true } }];
  let turns = 0;
  const counting = setInterval(() => (turns += 1), 0);
  const sliced = await encodeInferResponseInSlices(large, asked, false).finally(() => clearInterval(counting));
  assert.ok(turns >= 2, `timers ran while it was written (${turns})`);
  const atOnce = encodeInferResponse(large, asked, false);
  assert.deepEqual(encodedBytes(sliced), encodedBytes(atOnce));
  assert.equal(sliced.headerLength, atOnce.headerLength);
  const header = JSON.parse(encodedBytes(sliced).subarray(0, sliced.headerLength).toString('utf8').replace(/NaN/g, 'null'));
  assert.equal(header.outputs[0].data.length, length);
  assert.equal(header.outputs[0].data[JSON_SLICE_VALUES + 1], null, 'NaN written as Triton writes it, in its slice');
});

test('encodes binary outputs after the JSON header, BYTES length-prefixed; the default (binary_data_output) is for outputs not listed', () => {
  const listed = encodeInferResponse(response, [{ name: 'F', parameters: { binary_data: true } }, { name: 'T' }], true);
  assert.deepEqual(
    JSON.parse(encodedBytes(listed).subarray(0, listed.headerLength).toString('utf8')).outputs.map((output: { data?: unknown }) => output.data !== undefined),
    [false, true, false],
    'a listed output without binary_data is JSON, as Triton answers it; one not listed takes the default',
  );
  const encoded = encodeInferResponse(response, undefined, true);
  assert.ok(encoded.headerLength !== undefined);
  const header = JSON.parse(encodedBytes(encoded).subarray(0, encoded.headerLength).toString('utf8'));
  assert.deepEqual(header.outputs, [
    { name: 'F', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } },
    { name: 'T', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 10 } },
    { name: 'I', datatype: 'INT64', shape: [1], parameters: { binary_data_size: 8 } },
  ]);
  const binary = encodedBytes(encoded).subarray(encoded.headerLength);
  assert.equal(binary.length, 26);
  assert.deepEqual(Array.from(new Float32Array(binary.buffer.slice(binary.byteOffset, binary.byteOffset + 8))), [0.5, -1]);
  assert.deepEqual(binary.subarray(8, 18), lengthPrefixed('hi', ''));
  assert.equal(binary.readBigInt64LE(18), -5n);
});

test('a binary response decodes back to the same tensors (round trip through the request decoder)', () => {
  const encoded = encodeInferResponse(response, [{ name: 'F', parameters: { binary_data: true } }, { name: 'I', parameters: { binary_data: true } }], false);
  const header = JSON.parse(encodedBytes(encoded).subarray(0, encoded.headerLength).toString('utf8'));
  // Feed the response's outputs back in as inputs: the same wire format in the other direction.
  const inputs = header.outputs.map((output: { name: string; datatype: string; shape: number[]; data?: unknown; parameters?: unknown }) =>
    output.data !== undefined ? output : { name: output.name, datatype: output.datatype, shape: output.shape, parameters: output.parameters },
  );
  const json = Buffer.from(JSON.stringify({ inputs }));
  const body = Buffer.concat([json, encodedBytes(encoded).subarray(encoded.headerLength)]);
  const { request } = decodeInferRequest(body, String(json.length), 'm', undefined);
  const byName = Object.fromEntries(request.inputs.map((input) => [input.name, input]));
  assert.deepEqual(Array.from(byName.F.data as Float32Array), [0.5, -1]);
  assert.deepEqual((byName.T.data as Buffer[]).map(String), ['hi', '']);
  assert.deepEqual(Array.from(byName.I.data as BigInt64Array), [-5n]);
});

// ---------- 64-bit integers beyond 2^53 in JSON ----------

const decodeText = (text: string) => decodeInferRequest(Buffer.from(text), undefined, 'm', undefined).request;

test('INT64 and UINT64 literals beyond 2^53 keep every digit; other bodies parse as before', () => {
  const request = decodeText(
    '{"inputs":[{"name":"a","datatype":"INT64","shape":[4],"data":[9007199254740993,-9223372036854775808,9223372036854775807,-9007199254740993]},' +
      '{"name":"b","datatype":"UINT64","shape":[2],"data":[[18446744073709551615],[9007199254740993]]},' +
      '{"name":"c","datatype":"FP64","shape":[3],"data":[100000000000000000000,0.12345678901234567,1234567890123456789.5]},' +
      '{"name":"d","datatype":"BYTES","shape":[1],"data":["12345678901234567890 stays text"]}]}',
  );
  assert.deepEqual([...(request.inputs[0].data as BigInt64Array)], [2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n, -(2n ** 53n) - 1n]);
  assert.deepEqual([...(request.inputs[1].data as BigUint64Array)], [2n ** 64n - 1n, 2n ** 53n + 1n]);
  assert.deepEqual([...(request.inputs[2].data as Float64Array)], [1e20, 0.12345678901234567, 1234567890123456789.5]);
  assert.equal((request.inputs[3].data as Buffer[])[0].toString(), '12345678901234567890 stays text');
  // Sixteen-digit values within 2^53 are numbers as before, wherever they are.
  const safe = decodeText('{"parameters":{"seed":1000000000000000},"inputs":[{"name":"a","datatype":"INT64","shape":[1],"data":[1000000000000000]}]}');
  assert.equal(safe.parameters?.seed, 1e15);
  assert.deepEqual([...(safe.inputs[0].data as BigInt64Array)], [10n ** 15n]);
});

test('integers JSON cannot carry exactly are refused with what to send instead, never rounded', () => {
  assertInvalid(() => decodeText('{"inputs":[{"name":"a","datatype":"INT64","shape":[1],"data":[9223372036854775808]}]}'), "input 'a': element 0 is 9223372036854775808", 'INT64');
  assertInvalid(() => decodeText('{"inputs":[{"name":"a","datatype":"UINT64","shape":[1],"data":[-9007199254740993]}]}'), 'element 0 is -9007199254740993');
  assertInvalid(() => decodeText('{"inputs":[{"name":"a","datatype":"INT32","shape":[1],"data":[12345678901234567890]}]}'), 'expected an integer in [-2147483648, 2147483647]');
  assertInvalid(() => decodeText('{"parameters":{"seed":12345678901234567890},"inputs":[]}'), "parameter 'seed' is an integer beyond 2^53", 'send it as a string');
  // A literal JSON does not allow stays refused, marked or not.
  assertInvalid(() => decodeText('{"inputs":[{"name":"a","datatype":"INT64","shape":[1],"data":[0012345678901234567]}]}'), 'malformed JSON');
  // The mark the lossless parse uses cannot be forged by a client string: it picks one the body does not hold.
  const marked = decodeText('{"id":"\\u0001x","inputs":[{"name":"a","datatype":"INT64","shape":[1],"data":[9007199254740993]},{"name":"b","datatype":"BYTES","shape":[1],"data":["\\u00021234567890123456"]}]}');
  assert.equal(marked.id, '\u0001x');
  assert.deepEqual(Array.from(marked.inputs[0]!.data as BigInt64Array), [9007199254740993n]);
  assert.deepEqual(marked.inputs[1]!.data, [Buffer.from('\u00021234567890123456')]);
  const everyMark = Array.from({ length: 31 }, (_, index) => `\\u00${(index + 1).toString(16).padStart(2, '0')}`).join('');
  assertInvalid(() => decodeText(`{"id":"${everyMark}","inputs":[{"name":"a","datatype":"INT64","shape":[1],"data":[1234567890123456789]}]}`), 'send such integers as strings');
});

test('INT64 and UINT64 outputs are written as exact JSON numbers', () => {
  const response: InferenceResponse = {
    model: 'm',
    version: '1',
    outputs: [
      { name: 'a', datatype: 'INT64', shape: [2], data: BigInt64Array.from([2n ** 53n + 1n, -(2n ** 63n)]) },
      { name: 'b', datatype: 'UINT64', shape: [1], data: BigUint64Array.from([2n ** 64n - 1n]) },
    ],
  };
  const text = encodedBytes(encodeInferResponse(response, undefined, false)).toString();
  assert.ok(text.includes('"data":[9007199254740993,-9223372036854775808]'), text);
  assert.ok(text.includes('"data":[18446744073709551615]'), text);
});

test('exact JSON keeps long integers beside strings holding control characters, short escapes included, and writes them back', () => {
  // Every control character U+0001 to U+0007 taken, so the mark would fall on U+0008 were \b not its escape too.
  const strings = ['\u0001\u0002\u0003\u0004\u0005\u0006\u0007', '\b1234567890123456789', '\u0001 9007199254740993'];
  const text = `{"s":${JSON.stringify(strings)},"n":[9007199254740993,-9223372036854775808,12]}`;
  const value = parseExactJson(Buffer.from(text), 'the test') as { s: string[]; n: (number | bigint)[] };
  assert.deepEqual(value.s, strings);
  assert.deepEqual(value.n, [9007199254740993n, -9223372036854775808n, 12]);
  const written = stringifyExactJson(value, 'the test');
  assert.match(written, /\[9007199254740993,-9223372036854775808,12\]/);
  assert.deepEqual(parseExactJson(Buffer.from(written), 'the test'), value);
  assert.equal(stringifyExactJson({ a: [1, 'x'] }, 'the test'), '{"a":[1,"x"]}');
});

test('parseExactJson reads NaN, Infinity and Inf outside strings (boxed, so a literal beyond a double stays refusable), and stringifyExactJson writes them back', () => {
  const text = '{"data":[NaN,Infinity,-Infinity,Inf,-Inf,1e400,9007199254740993],"s":"NaN Infinity","t":["-Inf"]}';
  const value = parseExactJson(Buffer.from(text), 'the test') as { data: unknown[]; s: string; t: string[] };
  assert.deepEqual(value.data.slice(0, 5).map((item) => [item instanceof Number, Number(item)]), [
    [true, Number.NaN],
    [true, Infinity],
    [true, -Infinity],
    [true, Infinity],
    [true, -Infinity],
  ]);
  assert.equal(value.data[5], Infinity, 'a literal beyond a double is what JSON.parse makes of it, unboxed');
  assert.equal(value.data[6], 9007199254740993n);
  assert.deepEqual([value.s, value.t], ['NaN Infinity', ['-Inf']], 'strings are untouched');
  assert.equal(stringifyExactJson({ data: value.data.slice(0, 3), n: value.data[6] }, 'the test'), '{"data":[NaN,Infinity,-Infinity],"n":9007199254740993}');
  assert.throws(() => parseExactJson(Buffer.from('[nan]'), 'the test'), /malformed JSON in the test/);
  assert.throws(() => parseExactJson(Buffer.from('[NaNa]'), 'the test'), /malformed JSON in the test/);
});

test('a BYTES input beyond the element cap is refused from the bytes, before parsing, with the message the parse then gives', () => {
  const over = MAX_BYTES_ELEMENTS + 1;
  const strings = (count: number) => `"a",`.repeat(count - 1) + '"a\\"b"';
  // V2 tensors, the name after the data and the data nested, as a batch job's line or a request body holds them.
  const v2 = Buffer.from(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]},{"shape":[${over}],"data":[[${strings(over - 1)}],["b"]],"datatype":"BYTES","name":"text"}]}`);
  const refusal = (() => {
    try {
      decodeInferRequest(v2, undefined, 'm', undefined);
    } catch (error) {
      return (error as Error).message;
    }
  })();
  assert.equal(refusal, `input 'text' has ${over} BYTES elements; at most ${MAX_BYTES_ELEMENTS} are accepted per input`);
  assert.throws(() => refuseBytesBeyondCap(v2), (error: Error) => error.message === refusal);
  // Named fields: by what the model says the field's input takes.
  const fields = Buffer.from(`{"label":"a","text":[${strings(over)}]}`);
  assert.throws(() => refuseBytesBeyondCap(fields, (name) => (name === 'text' ? 'BYTES' : undefined)), (error: Error) => error.message === refusal);
  assert.doesNotThrow(() => refuseBytesBeyondCap(fields, () => 'FP32'), 'strings for a numeric input are left to the parse');
  assert.doesNotThrow(() => refuseBytesBeyondCap(fields), 'a field no input names');
  // At the cap, or FP32 data, or inside an object in the array: nothing refused.
  assert.doesNotThrow(() => refuseBytesBeyondCap(Buffer.from(`{"text":[${strings(MAX_BYTES_ELEMENTS)}]}`), () => 'BYTES'));
  assert.doesNotThrow(() => refuseBytesBeyondCap(Buffer.from(`{"inputs":[{"name":"t","datatype":"FP32","shape":[1],"data":[${strings(over)}]}]}`)));
  assert.doesNotThrow(() => refuseBytesBeyondCap(Buffer.from(`{"text":[{"nested":[${strings(over)}]}]}`), () => 'BYTES'));
  // A request body (HTTP, a batch job's V2 line) is scanned before it is parsed: with an 'id' that the parsed request
  // would refuse first, the cap's refusal shows the scan came before the parse.
  const numericId = Buffer.from(`{"id":5,"inputs":[{"name":"text","datatype":"BYTES","shape":[${over}],"data":[${strings(over)}]}]}`);
  assert.throws(() => decodeInferRequest(numericId, undefined, 'm', undefined), (error: Error) => error.message === refusal);
  assert.throws(() => decodeInferRequest(Buffer.from('{"id":5,"inputs":[]}'), undefined, 'm', undefined), /'id' must be a string/);
});

test('the BYTES scan follows JSON no deeper than the parse takes: a deeper body is left to the parse, which refuses it', () => {
  // A scan that followed every level kept a record of each: a 62 MB body of '[' held 2.9 GB before the parse refused it.
  const over = MAX_BYTES_ELEMENTS + 1;
  const nested = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;
  const input = `"inputs":[{"name":"text","datatype":"BYTES","shape":[${over}],"data":[${'"",'.repeat(over - 1)}""]}]`;
  // Arrays one level past the limit, inside the request's object, before an input over the cap: a scan that went on would
  // reach the input and refuse it by the cap; the parse refuses the depth.
  const tooDeep = Buffer.from(`{"pad":${nested(MAX_JSON_DEPTH)},${input}}`);
  assert.doesNotThrow(() => refuseBytesBeyondCap(tooDeep));
  assert.throws(() => decodeInferRequest(tooDeep, undefined, 'm', undefined), /JSON nesting depth exceeds maximum allowed limit \(100\): the JSON of the inference request nests deeper/);
  // At the limit, the scan goes on to the input.
  const atLimit = Buffer.from(`{"pad":${nested(MAX_JSON_DEPTH - 1)},${input}}`);
  assert.throws(() => refuseBytesBeyondCap(atLimit), (error: Error) => error.message === `input 'text' has ${over} BYTES elements; at most ${MAX_BYTES_ELEMENTS} are accepted per input`);
});
