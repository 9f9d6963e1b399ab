import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { OnnxRuntimeBackend } from '../backends/onnx-runtime-backend.js';
import { numberToHalf } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { mulberry32, smallCnnModel, writeModel } from '../onnx/test-models.js';
import { ModelRepository } from '../repository/model-repository.js';
import { classify } from './classification.js';

const fp32 = (shape: number[], values: number[]): Tensor => ({ datatype: 'FP32', shape, data: new Float32Array(values) });
const strings = (tensor: Tensor) => (tensor.data as Buffer[]).map((element) => element.toString('utf8'));

test('top-k: highest scores first, as BYTES "score:index" with six decimals', () => {
  const result = classify(fp32([1, 5], [0.1, 0.5, 0.2, 0.9, 0.3]), 3, true);
  assert.equal(result.datatype, 'BYTES');
  assert.deepEqual(result.shape, [1, 3]);
  assert.deepEqual(strings(result), ['0.900000:3', '0.500000:1', '0.300000:4']);
});

test('ties are broken by the lower index first', () => {
  const result = classify(fp32([4], [0.5, 0.7, 0.5, 0.7]), 4, false);
  assert.deepEqual(strings(result), ['0.700000:1', '0.700000:3', '0.500000:0', '0.500000:2']);
  assert.deepEqual(strings(classify(fp32([3], [1, 1, 1]), 2, false)), ['1.000000:0', '1.000000:1']);
});

test('class_count larger than the number of classes clamps to it', () => {
  const unbatched = classify(fp32([3], [0.2, 0.3, 0.5]), 10, false);
  assert.deepEqual(unbatched.shape, [3]);
  assert.deepEqual(strings(unbatched), ['0.500000:2', '0.300000:1', '0.200000:0']);
  const batched = classify(fp32([2, 2], [1, 2, 4, 3]), 5, true);
  assert.deepEqual(batched.shape, [2, 2]);
  assert.deepEqual(strings(batched), ['2.000000:1', '1.000000:0', '4.000000:0', '3.000000:1']);
});

test('labels are appended when the output has them, index-aligned; absent labels leave "score:index"', () => {
  const tensor = fp32([1, 4], [0.1, 0.6, 0.2, 0.1]);
  assert.deepEqual(strings(classify(tensor, 2, true, ['cat', 'dog', 'bird', 'fish'])), ['0.600000:1:dog', '0.200000:2:bird']);
  assert.deepEqual(strings(classify(tensor, 2, true)), ['0.600000:1', '0.200000:2']);
  // A labels file shorter than the output: classes without a line have no label part.
  assert.deepEqual(strings(classify(tensor, 3, true, ['cat', 'dog'])), ['0.600000:1:dog', '0.200000:2', '0.100000:0:cat']);
});

// Triton's InferenceResponse::ClassificationLabel treats an empty label as no label.
test('an empty label line leaves "score:index", as in Triton', () => {
  assert.deepEqual(strings(classify(fp32([2], [0.1, 0.6]), 1, false, ['cat', ''])), ['0.600000:1']);
});

test('six decimals of the float32 value itself, like std::to_string(float)', () => {
  const values = [1 / 3, 2 / 3, -1.5, 0, 12345.678, 1e-7, 100];
  const result = classify(fp32([values.length], values), values.length, false);
  assert.deepEqual(strings(result), [
    '12345.677734:4', // the float32 nearest to 12345.678
    '100.000000:6',
    '0.666667:1',
    '0.333333:0',
    '0.000000:5',
    '0.000000:3',
    '-1.500000:2',
  ]);
});

test('batched rows are ranked independently, indices counted within each row', () => {
  const result = classify(fp32([3, 3], [0.1, 0.2, 0.7, 0.5, 0.4, 0.1, 0.3, 0.3, 0.4]), 2, true, ['a', 'b', 'c']);
  assert.deepEqual(result.shape, [3, 2]);
  assert.deepEqual(strings(result), ['0.700000:2:c', '0.200000:1:b', '0.500000:0:a', '0.400000:1:b', '0.400000:2:c', '0.300000:0:a']);
});

test('an unbatched output ranks all of its elements together', () => {
  const result = classify(fp32([2, 3], [0.1, 0.9, 0.2, 0.3, 0.8, 0.4]), 3, false);
  assert.deepEqual(result.shape, [3]);
  assert.deepEqual(strings(result), ['0.900000:1', '0.800000:4', '0.400000:5']);
});

test("more than Triton's 1,000,000 classes in a row are refused before ranking, as Triton refuses them", () => {
  const refused = /classification output tensor too large: 1000001 classes per row, more than the 1000000/;
  const zeros = (shape: number[]): Tensor => ({ datatype: 'FP32', shape, data: new Float32Array(shape[0] * shape[1]) });
  assert.throws(() => classify(zeros([1, 1_000_001]), 5, true), refused);
  assert.throws(() => classify(zeros([2, 500_001]), 5, false), /1000002 classes per output/);
});

test('FP16 scores are decoded from their half-precision bits', () => {
  const halves = new Uint16Array([0.25, 1, 0.5, 0.1, -2].map(numberToHalf));
  const result = classify({ datatype: 'FP16', shape: [1, 5], data: halves }, 5, true);
  assert.deepEqual(strings(result), ['1.000000:1', '0.500000:2', '0.250000:0', '0.099976:3', '-2.000000:4']);
});

test('FP64 and 64-bit integer scores are ranked by value', () => {
  assert.deepEqual(strings(classify({ datatype: 'FP64', shape: [3], data: new Float64Array([0.1, 0.3, 0.2]) }, 2, false)), [
    '0.300000:1',
    '0.200000:2',
  ]);
  const int64 = classify({ datatype: 'INT64', shape: [1, 3], data: new BigInt64Array([5n, -7n, 9n]) }, 3, true);
  assert.deepEqual(
    strings(int64).map((entry) => entry.split(':')[1]),
    ['2', '0', '1'],
  );
});

// Triton formats with std::to_string(T): for integer outputs that is the plain integer, and for
// floats glibc rounds an exact tie to even. Nereid's toFixed(6) differs in both cases.
test('integer scores are written as integers, as Triton does', () => {
  const result = classify({ datatype: 'INT32', shape: [3], data: new Int32Array([5, -7, 9]) }, 2, false);
  assert.deepEqual(strings(result), ['9:2', '5:0']);
});

test('an exact half-way float rounds to even like std::to_string', () => {
  assert.deepEqual(strings(classify(fp32([1], [0.0078125]), 1, false)), ['0.007812:0']);
});

test('floats of any size are written as printf "%f" writes them: every integer digit, no exponent; nan and inf by name', () => {
  const values = [1e21, -1e21, 2 ** 70, -1e-9, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.5e-6, 1.5e-6];
  const written = strings(classify({ datatype: 'FP64', shape: [values.length], data: new Float64Array(values) }, values.length, false));
  const byIndex = new Map(written.map((entry) => [Number(entry.split(':')[1]), entry.split(':')[0]]));
  assert.deepEqual(
    values.map((_, index) => byIndex.get(index)),
    [
      '1000000000000000000000.000000',
      '-1000000000000000000000.000000',
      '1180591620717411303424.000000',
      '-0.000000',
      '-0.000000',
      'nan',
      'inf',
      '-inf',
      '0.000000', // 0.5e-6 is a little below one half of a millionth as a double
      '0.000002', // and 1.5e-6 a little above one and a half
    ],
  );
  // The float32 nearest to 1e21, digit for digit (std::to_string(float) widens it to double first).
  assert.deepEqual(strings(classify(fp32([1], [1e21]), 1, false)), ['1000000020040877342720.000000:0']);
});

test('64-bit integer scores are ranked and written exactly, past the integers a double holds', () => {
  const int64 = classify({ datatype: 'INT64', shape: [2], data: new BigInt64Array([9007199254740992n, 9007199254740993n]) }, 1, false);
  assert.deepEqual(strings(int64), ['9007199254740993:1']);
  const uint64 = classify({ datatype: 'UINT64', shape: [2], data: new BigUint64Array([2n ** 64n - 2n, 2n ** 64n - 1n]) }, 2, false);
  assert.deepEqual(strings(uint64), ['18446744073709551615:1', '18446744073709551614:0']);
});

test('classification of a real ONNX classifier, with labels from the model folder', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'nereid-classify-'));
  const repo = new ModelRepository({
    root,
    backends: [new OnnxRuntimeBackend()],
    logger: pino({ level: 'silent' }),
    defaultMaxBatchSize: 4,
    maxQueueSize: 4,
  });
  t.after(async () => {
    await repo.close();
    await rm(root, { recursive: true, force: true });
  });
  const labels = Array.from({ length: 10 }, (_, digit) => `digit_${digit}`);
  await writeModel(
    root,
    'cnn',
    1,
    smallCnnModel(),
    'max_batch_size: 4\noutput { name: "probs" data_type: TYPE_FP32 dims: [10] label_filename: "labels.txt" }\n',
    { 'labels.txt': `${labels.join('\n')}\n` },
  );
  await repo.load('cnn');
  const model = repo.get('cnn');
  const rand = mulberry32(7);
  const image = { name: 'image', datatype: 'FP32' as const, shape: [2, 1, 28, 28], data: Float32Array.from({ length: 2 * 784 }, () => rand()) };

  const raw = await model.infer({ model: 'cnn', inputs: [image] });
  const probs = raw.outputs[0].data as Float32Array;
  const classified = await model.infer({ model: 'cnn', inputs: [image], outputs: [{ name: 'probs', classCount: 3 }] });
  const output = classified.outputs[0];
  assert.equal(output.name, 'probs');
  assert.equal(output.datatype, 'BYTES');
  assert.deepEqual(output.shape, [2, 3]);

  const entries = strings(output);
  for (let row = 0; row < 2; row++) {
    const rowProbs = Array.from(probs.subarray(row * 10, row * 10 + 10));
    const expected = rowProbs
      .map((score, index) => ({ score, index }))
      .sort((a, b) => b.score - a.score || a.index - b.index)
      .slice(0, 3)
      .map(({ score, index }) => `${score.toFixed(6)}:${index}:digit_${index}`);
    assert.deepEqual(entries.slice(row * 3, row * 3 + 3), expected);
  }
  for (const entry of entries) assert.match(entry, /^\d+\.\d{6}:\d:digit_\d$/);
});
