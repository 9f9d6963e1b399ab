/** Calibration on generated models whose intermediate values are known, and on a bundled pretrained one. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { buildOnnxModel } from '../onnx/onnx-model-builder.js';
import { constantsToInitializers, readOnnxModel } from '../onnx/onnx-model-file.js';
import { exposingTensors } from '../onnx/onnx-model-file.js';
import { calibrateRanges } from './calibration.js';

/** y = x × 2 + 1, with m = x × 2 an intermediate tensor. */
const AFFINE = readOnnxModel(
  buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [null] }],
    outputs: [{ name: 'y', type: 'float32', shape: [null] }],
    initializers: [
      { name: 'two', type: 'float32', dims: [], values: [2] },
      { name: 'one', type: 'float32', dims: [], values: [1] },
    ],
    nodes: [
      { opType: 'Mul', inputs: ['x', 'two'], outputs: ['m'] },
      { opType: 'Add', inputs: ['m', 'one'], outputs: ['y'] },
    ],
  }),
);

const feed = (values: number[]) => ({ x: new ort.Tensor('float32', Float32Array.from(values), [values.length]) });

test('min-max ranges of inputs and intermediate tensors over every run, telling each example done', async () => {
  const done: number[] = [];
  const ranges = await calibrateRanges(AFFINE, ['x', 'm'], [feed([0, 0.25, 0.5, 1]), feed([-1, 0, 3, 0.5])], { method: { kind: 'minmax' }, onExample: (count) => done.push(count) });
  assert.deepEqual(ranges.get('x'), { min: -1, max: 3 });
  assert.deepEqual(ranges.get('m'), { min: -2, max: 6 });
  assert.deepEqual(done, [1, 2], 'told after each example');
});

test('a percentile range clips a rare outlier that min-max keeps', async () => {
  const values = Array.from({ length: 10_000 }, (_, index) => index / 10_000);
  values[17] = 500;
  const [minmax, percentile] = await Promise.all([
    calibrateRanges(AFFINE, ['m'], [feed(values)], { method: { kind: 'minmax' } }),
    calibrateRanges(AFFINE, ['m'], [feed(values)], { method: { kind: 'percentile', percentile: 99.9 } }),
  ]);
  assert.equal(minmax.get('m')!.max, 1000);
  assert.ok(percentile.get('m')!.max < 2.01, JSON.stringify(percentile.get('m')));
  await assert.rejects(calibrateRanges(AFFINE, ['m'], [], { method: { kind: 'minmax' } }), /no inputs/);
});

test('exposing a tensor adds an output and leaves the model\'s own outputs as they were', async () => {
  const session = await ort.InferenceSession.create(exposingTensors(AFFINE, ['m']));
  const { y, m } = await session.run(feed([1, 2]));
  await session.release();
  assert.deepEqual([...(m.data as Float32Array)], [2, 4]);
  assert.deepEqual([...(y.data as Float32Array)], [3, 5]);
});

test("the bundled direction classifier: its first convolution's output has a finite range over sample inputs", async () => {
  const model = readOnnxModel(readFileSync(fileURLToPath(new URL('../../models/ocr_direction/1/model.onnx', import.meta.url))));
  constantsToInitializers(model);
  const conv = model.graph.node.find((node) => node.op_type === 'Conv')!;
  const inputs = [0.2, 0.8].map((level) => ({ x: new ort.Tensor('float32', new Float32Array(3 * 48 * 192).fill(level), [1, 3, 48, 192]) }));
  const range = (await calibrateRanges(model, [conv.output[0]], inputs, { method: { kind: 'percentile', percentile: 99.99 } })).get(conv.output[0])!;
  assert.ok(Number.isFinite(range.min) && Number.isFinite(range.max) && range.min < range.max, JSON.stringify(range));
});
