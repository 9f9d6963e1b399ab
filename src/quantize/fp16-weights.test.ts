/**
 * Weights stored as float16: the conversion is IEEE's (and ONNX Runtime's), a generated Conv +
 * MatMul network and the bundled Fashion-MNIST model load in ONNX Runtime at half the size and
 * compute exactly what float32 computes with the rounded weights.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { fashionMnistBatch } from '../../test/support/fashion-mnist.js';
import { noise, optimizedOpTypes, rowArgmax, runModel } from '../../test/support/onnx-runs.js';
import { halfToNumber, numberToHalf } from '../core/datatype.js';
import { buildOnnxModel } from '../onnx/onnx-model-builder.js';
import { readOnnxModel, writeOnnxModel } from '../onnx/onnx-model-file.js';
import { storeWeightsAsFp16 } from './fp16-weights.js';

const FASHION_MNIST = readFileSync(new URL('../../models/fashion_mnist/1/model.onnx', import.meta.url));

test('float16 conversion rounds to nearest even, overflows to infinity and keeps subnormals, bit for bit as ONNX Runtime casts', async () => {
  const handChecked: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff], // the largest finite half
    [65519, 0x7bff], // below the halfway point to 65536: stays finite
    [65520, 0x7c00], // halfway: ties to even, which is infinity
    [-65520, 0xfc00],
    [6.1e-5, 0x03ff], // just below the smallest normal 2^-14 ≈ 6.1035e-5: the largest subnormal, 1023 × 2^-24
    [5.96e-8, 0x0001], // ≈ 2^-24, the smallest subnormal
    [2.9e-8, 0x0000], // below half of 2^-24: zero
    [0.1, 0x2e66], // 1.6 × 2^-4: mantissa 0.6 × 1024 = 614.4 rounds down to 614 (0.0999755859375)
  ];
  for (const [value, bits] of handChecked) assert.equal(numberToHalf(value), bits, `float16(${value}) = 0x${numberToHalf(value).toString(16)}`);
  assert.ok(Number.isNaN(halfToNumber(numberToHalf(NaN))));
  assert.equal(halfToNumber(0x2e66), 0.0999755859375);

  // ONNX Runtime's Cast as the reference, over every scale from below the subnormals to beyond the largest half.
  const values = Float32Array.from([...handChecked.map(([value]) => value), NaN, Infinity, -0, ...Array.from({ length: 48 }, (_, power) => [...noise(40, power)].map((value) => value * 2 ** (power - 30))).flat()]);
  const cast = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [values.length] }],
    outputs: [{ name: 'y', type: 'float16', shape: [values.length] }],
    nodes: [{ opType: 'Cast', inputs: ['x'], outputs: ['y'], attributes: { to: 10 } }],
  });
  const session = await ort.InferenceSession.create(cast);
  try {
    const expected = (await session.run({ x: new ort.Tensor('float32', values, [values.length]) })).y.data as Uint16Array;
    values.forEach((value, index) => {
      if (Number.isNaN(value)) assert.ok(Number.isNaN(halfToNumber(expected[index])) && Number.isNaN(halfToNumber(numberToHalf(value))));
      else assert.equal(numberToHalf(value), expected[index], `float16(${value})`);
    });
  } finally {
    await session.release();
  }
});

/** x [1, 3, 8, 8] → Conv 3→8 (3×3, pad 1) → Relu → Reshape [1, 512] → MatMul [512, 10] → Add → y [1, 10]. */
function convMatMulNetwork(weights: { w1: Float32Array; w2: Float32Array }): Uint8Array {
  return buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [1, 3, 8, 8] }],
    outputs: [{ name: 'y', type: 'float32', shape: [1, 10] }],
    initializers: [
      { name: 'w1', type: 'float32', dims: [8, 3, 3, 3], values: weights.w1 },
      { name: 'b1', type: 'float32', dims: [8], values: noise(8, 2) },
      { name: 'shape', type: 'int64', dims: [2], values: [1, 512] },
      { name: 'w2', type: 'float32', dims: [512, 10], values: weights.w2 },
      { name: 'b2', type: 'float32', dims: [10], values: noise(10, 4) },
    ],
    nodes: [
      { name: 'conv', opType: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c'], attributes: { pads: [1, 1, 1, 1] } },
      { name: 'relu', opType: 'Relu', inputs: ['c'], outputs: ['r'] },
      { name: 'flatten', opType: 'Reshape', inputs: ['r', 'shape'], outputs: ['f'] },
      { name: 'fc', opType: 'MatMul', inputs: ['f', 'w2'], outputs: ['m'] },
      { name: 'bias', opType: 'Add', inputs: ['m', 'b2'], outputs: ['y'] },
    ],
  });
}

const WEIGHTS = { w1: noise(216, 1), w2: noise(5120, 3).map((value) => value * 0.05) };
const roundedToHalf = (values: Float32Array) => values.map((value) => halfToNumber(numberToHalf(value)));

test('a Conv + MatMul network with float16 weights is half the size and computes what float32 computes with the rounded weights', async () => {
  const original = convMatMulNetwork(WEIGHTS);
  const model = readOnnxModel(original);
  const report = storeWeightsAsFp16(model);
  assert.deepEqual(report, { converted: ['w1', 'w2'], skipped: [] }, 'the 8- and 10-element biases stay float32');
  const fp16 = writeOnnxModel(model);
  const ratio = fp16.length / original.length;
  assert.ok(ratio > 0.5 && ratio < 0.53, `size ratio ${ratio} (${fp16.length} of ${original.length} bytes)`);
  assert.deepEqual(model.graph.initializer.find((tensor) => tensor.name === 'w2_float16')?.raw_data?.length, 5120 * 2);

  const feed = { x: new ort.Tensor('float32', noise(192, 7), [1, 3, 8, 8]) };
  const { y: actual } = await runModel(fp16, feed);
  // ONNX Runtime folds the Casts into float32 constants: the same arithmetic as a float32 model with the rounded weights, bit for bit.
  const { y: rounded } = await runModel(convMatMulNetwork({ w1: roundedToHalf(WEIGHTS.w1), w2: roundedToHalf(WEIGHTS.w2) }), feed);
  assert.deepEqual(actual, rounded);
  assert.ok(!(await optimizedOpTypes(fp16, 'basic')).includes('Cast'), 'the Casts are folded at load');
  // Against the float32 weights, each output is off by at most float16's relative rounding (2^-11) of what its terms add up to in magnitude.
  const { y: expected } = await runModel(original, feed);
  const largest = Math.max(...expected.map(Math.abs));
  expected.forEach((value, index) => assert.ok(Math.abs(value - actual[index]) < 2 ** -11 * largest, `output ${index}: ${actual[index]} against ${value}`));
  assert.notDeepEqual(actual, expected, 'the weights were rounded');
});

test('an excluded node keeps its weights float32, and so do a graph input\'s default and a tensor float16 cannot hold', async () => {
  const model = readOnnxModel(convMatMulNetwork({ w1: WEIGHTS.w1, w2: WEIGHTS.w2.map((value, index) => (index === 7 ? 70000 : value)) }));
  (model.graph.input as { name: string }[]).push({ ...(model.graph.input as { name: string }[])[0], name: 'b1' });
  model.graph.initializer.find((tensor) => tensor.name === 'b1')!.raw_data = new Uint8Array(noise(16, 5).buffer);
  model.graph.initializer.find((tensor) => tensor.name === 'b1')!.dims = [16];
  const report = storeWeightsAsFp16(model, new Set(['conv']));
  assert.deepEqual(report, {
    converted: [],
    skipped: [
      { tensor: 'w1', reason: "read by excluded node 'conv'" },
      { tensor: 'b1', reason: 'it is also a graph input, which a caller may feed' },
      { tensor: 'w2', reason: 'holds 70000, which float16 (largest finite value 65504) makes infinite' },
    ],
  });
  assert.ok(!model.graph.node.some((node) => node.op_type === 'Cast'));
});

test('the bundled Fashion-MNIST model with float16 weights is half the size and agrees in top-1 on the first 200 test images', async () => {
  const model = readOnnxModel(FASHION_MNIST);
  const report = storeWeightsAsFp16(model);
  assert.deepEqual(report.converted.sort(), ['fc.weight', 'onnx::Conv_26', 'onnx::Conv_27', 'onnx::Conv_29', 'onnx::Conv_30'], 'all but the 10-element FC bias');
  const fp16 = writeOnnxModel(model);
  const ratio = fp16.length / FASHION_MNIST.length;
  assert.ok(ratio > 0.5 && ratio < 0.51, `size ratio ${ratio} (${fp16.length} of ${FASHION_MNIST.length} bytes)`);
  const images = 200;
  const feed = { image: new ort.Tensor('float32', await fashionMnistBatch('t10k', images), [images, 1, 28, 28]) };
  const [{ logits: expected }, { logits: actual }] = [await runModel(FASHION_MNIST, feed), await runModel(fp16, feed)];
  assert.deepEqual(rowArgmax(actual, 10), rowArgmax(expected, 10));
  const worst = Math.max(...expected.map((value, index) => Math.abs(value - actual[index])));
  assert.ok(worst < 0.01, `largest logit change ${worst}`);
});
