/**
 * The quantizer's arithmetic against ONNX Runtime's own QuantizeLinear and DequantizeLinear on
 * generated models: the integers Nereid writes are those ONNX Runtime would compute.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { buildOnnxModel } from '../onnx/onnx-model-builder.js';
import { dequantizeUint8, percentileRange, quantizePerChannelSymmetric, quantizeUint8, roundHalfToEven, uint8Params } from './int8-arithmetic.js';

async function run(bytes: Uint8Array, x: Float32Array, shape: number[]): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    return (await session.run({ x: new ort.Tensor('float32', x, shape) })).y;
  } finally {
    await session.release();
  }
}

test('rounding is half to even, as QuantizeLinear rounds', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfToEven), [0, 2, 2, 0, -2, 2, 3]);
});

test('per-channel symmetric int8 weights are what QuantizeLinear computes with those scales, and dequantize within half a step', async () => {
  const dims = [3, 4];
  const weights = new Float32Array([0.5, -1, 0.25, 0.125, 10, -20, 5, 2.5, 0, 0, 0, 0]);
  const { values, scales } = quantizePerChannelSymmetric(weights, dims, 0);
  assert.deepEqual([...scales], [Math.fround(1 / 127), Math.fround(20 / 127), 1], 'each row maps its largest magnitude to 127; an all-zero row gets scale 1');
  assert.equal(Math.max(...values.map(Math.abs)), 127);
  const model = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: dims }],
    outputs: [{ name: 'y', type: 'int8', shape: dims }],
    initializers: [
      { name: 'scale', type: 'float32', dims: [3], values: scales },
      { name: 'zero', type: 'int8', dims: [3], values: [0, 0, 0] },
    ],
    nodes: [{ opType: 'QuantizeLinear', inputs: ['x', 'scale', 'zero'], outputs: ['y'], attributes: { axis: 0 } }],
  });
  const reference = await run(model, weights, dims);
  assert.deepEqual([...(reference.data as Int8Array)], [...values]);
  weights.forEach((weight, index) => {
    const scale = scales[Math.floor(index / 4)];
    assert.ok(Math.abs(values[index] * scale - weight) <= scale / 2 + 1e-7, `element ${index}`);
  });
  assert.throws(() => quantizePerChannelSymmetric(weights, dims, 2), /axis 2 is outside a tensor of rank 2/);
});

test('uint8 activations: the range holds 0, and quantize/dequantize match QuantizeLinear → DequantizeLinear, halfway values included', async () => {
  const params = uint8Params(0.5, 6);
  assert.equal(params.zeroPoint, 0, 'a range above 0 is widened to start at 0');
  const mixed = uint8Params(-1, 3);
  assert.equal(mixed.scale, Math.fround(4 / 255));
  assert.equal(mixed.zeroPoint, roundHalfToEven(1 / mixed.scale));
  assert.deepEqual(uint8Params(0, 0), { scale: 1, zeroPoint: 0 });
  const x = new Float32Array([-1, -0.5, 0, 0.5 * mixed.scale, 1.5 * mixed.scale, 2.5 * mixed.scale, 1, 2.999, 3, 4]);
  const model = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [x.length] }],
    outputs: [{ name: 'y', type: 'float32', shape: [x.length] }, { name: 'q', type: 'uint8', shape: [x.length] }],
    initializers: [
      { name: 'scale', type: 'float32', dims: [], values: [mixed.scale] },
      { name: 'zero', type: 'uint8', dims: [], values: [mixed.zeroPoint] },
    ],
    nodes: [
      { opType: 'QuantizeLinear', inputs: ['x', 'scale', 'zero'], outputs: ['q'] },
      { opType: 'DequantizeLinear', inputs: ['q', 'scale', 'zero'], outputs: ['y'] },
    ],
  });
  const session = await ort.InferenceSession.create(model);
  const { q, y } = await session.run({ x: new ort.Tensor('float32', x, [x.length]) });
  await session.release();
  const ours = quantizeUint8(x, mixed);
  assert.deepEqual([...ours], [...(q.data as Uint8Array)]);
  assert.deepEqual([...dequantizeUint8(ours, mixed)], [...(y.data as Float32Array)]);
  assert.equal(ours[ours.length - 1], 255, 'beyond the range saturates');
});

test('a percentile range drops the rarest extremes that would stretch a min-max range', () => {
  const values = new Float32Array(10001).map((_, index) => index / 10000); // 0 .. 1
  values[0] = -1000; // one outlier
  assert.deepEqual(percentileRange(values, 100), { min: -1000, max: 1 });
  const robust = percentileRange(values, 99.9);
  assert.ok(robust.min > 0 && robust.min < 0.01 && robust.max > 0.99 && robust.max <= 1, JSON.stringify(robust));
  assert.throws(() => percentileRange(values, 40), /keeps more than half/);
});
