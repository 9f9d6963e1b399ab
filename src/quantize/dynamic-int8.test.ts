/**
 * Dynamic int8 quantization of MatMul and Gemm: ONNX Runtime computes exactly the integer
 * arithmetic a reference here computes, fuses it into DynamicQuantizeMatMul at level extended, and
 * the bundled Fashion-MNIST model keeps its top-1 with its FC layer quantized.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { fashionMnistBatch } from '../../test/support/fashion-mnist.js';
import { noise, optimizedOpTypes, rowArgmax, runModel } from '../../test/support/onnx-runs.js';
import { attr, buildOnnxModel } from '../onnx/onnx-model-builder.js';
import { constantsToInitializers, readOnnxModel, writeOnnxModel } from '../onnx/onnx-model-file.js';
import { quantizeDynamicMatMul } from './dynamic-int8.js';
import { quantizePerChannelSymmetric, roundHalfToEven } from './int8-arithmetic.js';

const FASHION_MNIST = readFileSync(new URL('../../models/fashion_mnist/1/model.onnx', import.meta.url));
const f32 = Math.fround;

/** DynamicQuantizeLinear as ONNX defines it, in float32 as ONNX Runtime computes it: uint8 over the tensor's range widened to hold 0. */
function dynamicQuantize(x: Float32Array): { values: Uint8Array; scale: number; zeroPoint: number } {
  const min = x.reduce((low, value) => Math.min(low, value), 0);
  const max = x.reduce((high, value) => Math.max(high, value), 0);
  const scale = max === min ? 1 : f32(f32(max - min) / 255);
  const zeroPoint = roundHalfToEven(Math.max(0, Math.min(255, f32(0 - f32(min / scale)))));
  const values = Uint8Array.from(x, (value) => Math.max(0, Math.min(255, roundHalfToEven(f32(value / scale)) + zeroPoint)));
  return { values, scale, zeroPoint };
}

/**
 * The rewritten node's arithmetic: x [rows, K] quantized dynamically, the weight [K, N] int8 per
 * column, the product accumulated in integers, then scaled back to float (alpha folded into the
 * column scales) and the bias added, each step rounded to float32.
 */
function referenceProduct(x: Float32Array, rows: number, weight: Float32Array, dims: [number, number], alpha = 1, bias?: Float32Array): Float32Array {
  const [inner, columns] = dims;
  const input = dynamicQuantize(x);
  const { values, scales } = quantizePerChannelSymmetric(weight, dims, 1);
  const output = new Float32Array(rows * columns);
  for (let row = 0; row < rows; row++) {
    for (let column = 0; column < columns; column++) {
      let sum = 0;
      for (let k = 0; k < inner; k++) sum += (input.values[row * inner + k] - input.zeroPoint) * values[k * columns + column];
      const product = f32(f32(sum) * f32(input.scale * f32(scales[column] * alpha)));
      output[row * columns + column] = bias ? f32(product + bias[column]) : product;
    }
  }
  return output;
}

/** x [rows, 16] → MatMul w [16, 8] → h → Gemm(h, g [6, 8] transposed, c [6], alpha 0.5, beta 2) → y [rows, 6]. */
const W = noise(128, 1);
const G = noise(48, 2);
const C = noise(6, 3);
const NETWORK = buildOnnxModel({
  inputs: [{ name: 'x', type: 'float32', shape: ['rows', 16] }],
  outputs: [{ name: 'y', type: 'float32', shape: ['rows', 6] }],
  initializers: [
    { name: 'w', type: 'float32', dims: [16, 8], values: W },
    { name: 'g', type: 'float32', dims: [6, 8], values: G },
    { name: 'c', type: 'float32', dims: [6], values: C },
  ],
  nodes: [
    { name: 'matmul', opType: 'MatMul', inputs: ['x', 'w'], outputs: ['h'] },
    { name: 'gemm', opType: 'Gemm', inputs: ['h', 'g', 'c'], outputs: ['y'], attributes: { transB: 1, alpha: attr.float(0.5), beta: attr.float(2) } },
  ],
});

function reference(x: Float32Array, rows: number): Float32Array {
  const h = referenceProduct(x, rows, W, [16, 8]);
  const gTransposed = Float32Array.from({ length: 48 }, (_, index) => G[(index % 6) * 8 + Math.floor(index / 6)]);
  return referenceProduct(h, rows, gTransposed, [8, 6], 0.5, C.map((value) => value * 2));
}

test('a MatMul and a Gemm quantized dynamically compute the reference integer arithmetic exactly, unfused and fused into DynamicQuantizeMatMul', async () => {
  const model = readOnnxModel(NETWORK);
  assert.deepEqual(quantizeDynamicMatMul(model), { quantized: ['matmul', 'gemm'], skipped: [] });
  assert.deepEqual(model.graph.initializer.map((tensor) => tensor.name).filter((name) => ['w', 'g'].includes(name!)), [], 'the float weights are gone');
  const quantized = writeOnnxModel(model);
  const rows = 4;
  const x = noise(rows * 16, 9);
  const expected = reference(x, rows);
  const feed = { x: new ort.Tensor('float32', x, [rows, 16]) };
  assert.deepEqual((await runModel(quantized, feed, { graphOptimizationLevel: 'disabled' })).y, expected);
  assert.deepEqual((await runModel(quantized, feed, { graphOptimizationLevel: 'extended' })).y, expected);
  // The fusion ran: one integer kernel per node, quantizing its input itself, the Gemm's bias included.
  assert.deepEqual(await optimizedOpTypes(quantized, 'extended'), ['DynamicQuantizeMatMul', 'DynamicQuantizeMatMul']);
  assert.deepEqual(await optimizedOpTypes(quantized, 'disabled'), ['DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul', 'Mul', 'DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul', 'Mul', 'Add']);
  // Close to float, at int8's resolution.
  const { y: float } = await runModel(NETWORK, feed);
  const largest = Math.max(...float.map(Math.abs));
  float.forEach((value, index) => assert.ok(Math.abs(value - expected[index]) < 0.02 * largest, `output ${index}: ${expected[index]} against ${value}`));
});

test('a row\'s dynamically quantized result depends on the rest of its batch, whose range sets the input scale', async () => {
  const quantized = readOnnxModel(NETWORK);
  quantizeDynamicMatMul(quantized);
  const bytes = writeOnnxModel(quantized);
  const row = noise(16, 10);
  const batch = Float32Array.from([...row, ...noise(16, 11).map((value) => value * 8)]);
  const alone = (await runModel(bytes, { x: new ort.Tensor('float32', row, [1, 16]) })).y;
  const batched = (await runModel(bytes, { x: new ort.Tensor('float32', batch, [2, 16]) })).y.subarray(0, 6);
  assert.deepEqual(alone, reference(row, 1));
  assert.deepEqual(batched, reference(batch, 2).subarray(0, 6));
  assert.notDeepEqual(batched, alone);
});

test('convolutions, excluded nodes, products of two activations and opsets before 10 stay float; a weight two MatMuls read is stored once', async () => {
  const model = readOnnxModel(
    buildOnnxModel({
      inputs: [{ name: 'x', type: 'float32', shape: [1, 2, 4, 4] }],
      outputs: [{ name: 'y', type: 'float32', shape: [1, 2, 4, 4] }],
      initializers: [
        { name: 'k', type: 'float32', dims: [2, 2, 1, 1], values: noise(4, 1) },
        { name: 'w', type: 'float32', dims: [4, 4], values: noise(16, 2) },
      ],
      nodes: [
        { name: 'conv', opType: 'Conv', inputs: ['x', 'k'], outputs: ['c'] },
        { name: 'first', opType: 'MatMul', inputs: ['c', 'w'], outputs: ['m1'] },
        { name: 'second', opType: 'MatMul', inputs: ['m1', 'w'], outputs: ['m2'] },
        { name: 'third', opType: 'MatMul', inputs: ['m2', 'w'], outputs: ['m3'] },
        { name: 'square', opType: 'MatMul', inputs: ['m3', 'm3'], outputs: ['y'] },
      ],
    }),
  );
  const report = quantizeDynamicMatMul(model, new Set(['third']));
  assert.deepEqual(report.quantized, ['first', 'second']);
  assert.deepEqual(report.skipped, [
    { node: 'conv', reason: 'convolutions stay float under dynamic quantization (ConvInteger ran 4.7–9× slower and its outputs changed with batch composition)' },
    { node: 'third', reason: 'excluded' },
    { node: 'square', reason: 'its weight (second input) is not a float initializer' },
  ]);
  assert.deepEqual(model.graph.initializer.map((tensor) => tensor.name), ['k', 'w', 'w_quantized', 'm1_weight_scale', 'm2_weight_scale'], 'w stays for the excluded node; its int8 form is stored once');
  const feed = { x: new ort.Tensor('float32', noise(32, 3), [1, 2, 4, 4]) };
  assert.equal((await runModel(writeOnnxModel(model), feed)).y.length, 32);
  const opset9 = readOnnxModel(
    buildOnnxModel({
      opset: 9,
      inputs: [{ name: 'x', type: 'float32', shape: [1, 4] }],
      outputs: [{ name: 'y', type: 'float32', shape: [1, 4] }],
      initializers: [{ name: 'w', type: 'float32', dims: [4, 4], values: noise(16, 2) }],
      nodes: [{ name: 'fc', opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }],
    }),
  );
  assert.deepEqual(quantizeDynamicMatMul(opset9).skipped, [{ node: 'fc', reason: 'opset 9 has no DynamicQuantizeLinear (opset 10 has)' }]);
});

test('the bundled Fashion-MNIST model gets its FC layer quantized dynamically, its convolutions kept float, and agrees in top-1 on 1,000 test images', async () => {
  const model = readOnnxModel(FASHION_MNIST);
  constantsToInitializers(model);
  const report = quantizeDynamicMatMul(model);
  assert.deepEqual(report.quantized, ['/fc/Gemm']);
  assert.deepEqual(report.skipped.map(({ node }) => node), ['/conv1/Conv', '/conv2/Conv']);
  const quantized = writeOnnxModel(model);
  const ratio = quantized.length / FASHION_MNIST.length;
  assert.ok(ratio < 0.54, `size ratio ${ratio}: the FC weight is 62 % of the file and shrinks to a quarter`);
  assert.equal((await optimizedOpTypes(quantized, 'all')).filter((kind) => kind === 'DynamicQuantizeMatMul').length, 1);
  const images = 1000;
  const data = await fashionMnistBatch('t10k', images);
  const [fp32, int8] = [await ort.InferenceSession.create(FASHION_MNIST), await ort.InferenceSession.create(quantized)];
  try {
    // One image per run, as its input range is its own.
    let agreeing = 0;
    for (let index = 0; index < images; index++) {
      const feed = { image: new ort.Tensor('float32', data.subarray(index * 784, (index + 1) * 784), [1, 1, 28, 28]) };
      const [expected, actual] = [(await fp32.run(feed)).logits.data as Float32Array, (await int8.run(feed)).logits.data as Float32Array];
      if (rowArgmax(expected, 10)[0] === rowArgmax(actual, 10)[0]) agreeing += 1;
    }
    assert.ok(agreeing >= 0.99 * images, `top-1 agreement ${agreeing} of ${images}`);
  } finally {
    await Promise.all([fp32.release(), int8.release()]);
  }
});
