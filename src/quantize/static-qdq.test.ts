/**
 * Static QDQ quantization of a generated two-convolution network: ONNX Runtime fuses it into integer
 * kernels (read from the optimized graph it saves), and its outputs stay within a few quantization
 * steps of the float model's.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { buildOnnxModel } from '../onnx/onnx-model-builder.js';
import { exposingTensors, readOnnxModel, writeOnnxModel } from '../onnx/onnx-model-file.js';
import { calibrate, calibrateRanges } from './calibration.js';
import { channelAlong } from './int8-arithmetic.js';
import { quantizeStaticQdq } from './static-qdq.js';

/** Deterministic values in [-1, 1). */
function noise(count: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return (state / 2 ** 31) * 2 - 1;
  });
}

const NETWORK = buildOnnxModel({
  inputs: [{ name: 'x', type: 'float32', shape: [1, 3, 8, 8] }],
  outputs: [{ name: 'y', type: 'float32', shape: [1, 2, 8, 8] }],
  initializers: [
    { name: 'w1', type: 'float32', dims: [4, 3, 3, 3], values: noise(108, 1) },
    { name: 'b1', type: 'float32', dims: [4], values: noise(4, 2) },
    { name: 'w2', type: 'float32', dims: [2, 4, 3, 3], values: noise(72, 3) },
    { name: 'b2', type: 'float32', dims: [2], values: noise(2, 4) },
  ],
  nodes: [
    { name: 'conv1', opType: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c1'], attributes: { pads: [1, 1, 1, 1] } },
    { name: 'relu', opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
    { name: 'conv2', opType: 'Conv', inputs: ['r1', 'w2', 'b2'], outputs: ['y'], attributes: { pads: [1, 1, 1, 1] } },
  ],
});

const samples = Array.from({ length: 8 }, (_, index) => ({ x: new ort.Tensor('float32', Float32Array.from(noise(192, 100 + index)), [1, 3, 8, 8]) }));

async function outputOf(bytes: Uint8Array, feed: Record<string, ort.Tensor>, options: ort.InferenceSession.SessionOptions = {}): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, options);
  try {
    return (await session.run(feed)).y.data as Float32Array;
  } finally {
    await session.release();
  }
}

test('two convolutions quantized to QDQ are fused by ONNX Runtime into QLinearConv and stay close to float', async () => {
  const model = readOnnxModel(NETWORK);
  const ranges = await calibrateRanges(model, ['x', 'c1', 'r1', 'y'], samples, { method: { kind: 'minmax' } });
  const report = quantizeStaticQdq(model, ranges);
  assert.deepEqual(report, { quantized: ['conv1', 'conv2'], skipped: [] });
  assert.ok(!model.graph.initializer.some((tensor) => ['w1', 'b1', 'w2', 'b2'].includes(tensor.name!)), 'the float weights are gone');
  const quantized = writeOnnxModel(model);
  const dir = await mkdtemp(join(tmpdir(), 'nereid-qdq-'));
  try {
    const optimizedModelFilePath = join(dir, 'optimized.onnx');
    const feed = samples[0];
    const actual = await outputOf(quantized, feed, { graphOptimizationLevel: 'extended', optimizedModelFilePath });
    const kernels = readOnnxModel(await readFile(optimizedModelFilePath)).graph.node.map((node) => node.op_type);
    assert.equal(kernels.filter((kind) => kind === 'QLinearConv').length, 2, `optimized graph: ${kernels.join(', ')}`);
    assert.ok(!kernels.includes('Conv'), 'no float convolution is left');
    const expected = await outputOf(NETWORK, feed);
    const step = (ranges.get('y')!.max - ranges.get('y')!.min) / 255;
    const worst = Math.max(...expected.map((value, index) => Math.abs(value - actual[index])));
    assert.ok(worst < 4 * step, `largest error ${worst} against a step of ${step}`);
    // Without the fusing optimizer the same file computes in float through Q/DQ, and agrees with the fused kernels.
    const unfused = await outputOf(quantized, feed, { graphOptimizationLevel: 'disabled' });
    assert.ok(Math.max(...unfused.map((value, index) => Math.abs(value - actual[index]))) <= 2 * step);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an excluded node stays float, and a tensor without a calibrated range is refused', async () => {
  const model = readOnnxModel(NETWORK);
  const ranges = await calibrateRanges(model, ['x', 'c1', 'r1', 'y'], samples, { method: { kind: 'minmax' } });
  const report = quantizeStaticQdq(model, ranges, { exclude: new Set(['conv2']) });
  assert.deepEqual(report, { quantized: ['conv1'], skipped: [{ node: 'conv2', reason: 'excluded' }] });
  const kinds = model.graph.node.map((node) => node.op_type);
  assert.equal(kinds.filter((kind) => kind === 'Conv').length, 2);
  assert.equal(kinds.filter((kind) => kind === 'QuantizeLinear').length, 2, 'conv1 input and output');
  assert.ok(await outputOf(writeOnnxModel(model), samples[1]));
  assert.throws(() => quantizeStaticQdq(readOnnxModel(NETWORK), new Map()), /no calibrated range for tensor 'x'/);
});

test("a nearly dead channel's large bias still fits int32: its weight scale grows instead of the bias wrapping", async () => {
  // What BatchNormalization folded into a convolution can leave: a channel with weights near 0 and a bias of 50.
  const dead = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [1, 1, 2, 2] }],
    outputs: [{ name: 'y', type: 'float32', shape: [1, 2, 2, 2] }],
    initializers: [
      { name: 'w', type: 'float32', dims: [2, 1, 1, 1], values: [1e-8, 0.5] },
      { name: 'b', type: 'float32', dims: [2], values: [50, 0.1] },
    ],
    nodes: [{ name: 'conv', opType: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['y'] }],
  });
  const model = readOnnxModel(dead);
  quantizeStaticQdq(model, new Map([['x', { min: 0, max: 1 }], ['y', { min: 0, max: 51 }]]));
  const feed = { x: new ort.Tensor('float32', Float32Array.of(0, 0.25, 0.5, 1), [1, 1, 2, 2]) };
  const [expected, actual] = [await outputOf(dead, feed), await outputOf(writeOnnxModel(model), feed)];
  const step = 51 / 255;
  assert.ok(Math.max(...expected.map((value, index) => Math.abs(value - actual[index]))) <= step, `float ${Array.from(expected)} vs int8 ${Array.from(actual)}`);
});

/**
 * What each op computes before its output is quantized, on inputs whose values int8 represents
 * exactly: the largest shift of an output channel's mean from the float model's (channels on axis 1).
 * With biases corrected for the weights' rounding, there is none left.
 */
async function channelMeanError(network: Uint8Array, feed: Record<string, ort.Tensor>, inputMeans: ReadonlyMap<string, ArrayLike<number>> | undefined): Promise<number> {
  const model = readOnnxModel(network);
  const ranges = new Map([['x', { min: 0, max: 2.55 }], ['y', { min: -10, max: 10 }]]);
  quantizeStaticQdq(model, ranges, { inputMeans });
  const session = await ort.InferenceSession.create(exposingTensors(model, ['y_float']), { graphOptimizationLevel: 'disabled' });
  const expected = await outputOf(network, feed);
  try {
    const { data, dims } = (await session.run(feed)).y_float;
    const channelOf = channelAlong(dims, 1);
    const shifts = new Float64Array(dims[1]);
    (data as Float32Array).forEach((value, index) => (shifts[channelOf(index)] += (value - expected[index]) / (expected.length / dims[1])));
    return Math.max(...shifts.map(Math.abs));
  } finally {
    await session.release();
  }
}

test("bias correction: grouped and depthwise convolutions' and Gemms' int8 weights no longer move their outputs' mean", async () => {
  // Weights that int8 rounds badly (small beside their channel's largest), inputs exactly on the uint8 grid (scale 0.01).
  const weights = [1, 0.0062, 0.0051, -0.9, 0.8, -0.0071, 0.0055, 0.7];
  const convolution = (dims: number[], group: number, withBias: boolean) =>
    buildOnnxModel({
      inputs: [{ name: 'x', type: 'float32', shape: [1, 4, 2, 2] }],
      outputs: [{ name: 'y', type: 'float32', shape: [1, 4, 2, 3 - dims[3]] }],
      initializers: [{ name: 'w', type: 'float32', dims, values: weights }, ...(withBias ? [{ name: 'b', type: 'float32' as const, dims: [4], values: [0.1, -0.2, 0.3, 0] }] : [])],
      nodes: [{ name: 'conv', opType: 'Conv', inputs: withBias ? ['x', 'w', 'b'] : ['x', 'w'], outputs: ['y'], attributes: { group } }],
    });
  const gemm = (transB: 0 | 1) =>
    buildOnnxModel({
      inputs: [{ name: 'x', type: 'float32', shape: [2, 4] }],
      outputs: [{ name: 'y', type: 'float32', shape: [2, 2] }],
      initializers: [{ name: 'w', type: 'float32', dims: transB ? [2, 4] : [4, 2], values: weights }],
      nodes: [{ name: 'gemm', opType: 'Gemm', inputs: ['x', 'w'], outputs: ['y'], attributes: { transB } }],
    });
  const channelValues = [2, 1.5, 2.5, 0.5];
  const convFeed = { x: new ort.Tensor('float32', Float32Array.from({ length: 16 }, (_, index) => channelValues[Math.floor(index / 4)]), [1, 4, 2, 2]) };
  const gemmFeed = { x: new ort.Tensor('float32', Float32Array.from({ length: 8 }, (_, index) => channelValues[index % 4]), [2, 4]) };
  const cases = {
    'grouped convolution with a bias': [convolution([4, 2, 1, 1], 2, true), convFeed],
    'depthwise 1×2 convolution without one': [convolution([4, 1, 1, 2], 4, false), convFeed],
    'Gemm, B transposed': [gemm(1), gemmFeed],
    'Gemm, B as [K, N]': [gemm(0), gemmFeed],
  } as const;
  for (const [name, [network, feed]] of Object.entries(cases)) {
    const { channelMeans } = await calibrate(readOnnxModel(network), ['x'], [feed], { method: { kind: 'minmax' }, channelAxes: new Map([['x', 1]]) });
    assert.deepEqual([...channelMeans.get('x')!], channelValues);
    const uncorrected = await channelMeanError(network, feed, undefined);
    const corrected = await channelMeanError(network, feed, channelMeans);
    assert.ok(uncorrected > 2e-4, `${name}: the weights' rounding shifts the mean by ${uncorrected}`);
    assert.ok(corrected < uncorrected / 20, `${name}: corrected ${corrected} against ${uncorrected}`);
  }
  const mismatched = readOnnxModel(convolution([4, 2, 1, 1], 2, true));
  assert.throws(() => quantizeStaticQdq(mismatched, new Map([['x', { min: 0, max: 2.55 }], ['y', { min: -10, max: 10 }]]), { inputMeans: new Map([['x', [1, 2]]]) }), /node 'conv' reads 4 input channels but 2 channel means were given for 'x'/);
});

test('a Relu after a quantized node and the pooling and flattening after it run on uint8: ONNX Runtime leaves no float step between the integer kernels', async () => {
  // Fashion-MNIST's shape: Conv → Relu → MaxPool → Conv → Relu → MaxPool → Flatten → Gemm.
  const network = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [1, 3, 8, 8] }],
    outputs: [{ name: 'y', type: 'float32', shape: [1, 3] }],
    initializers: [
      { name: 'w1', type: 'float32', dims: [4, 3, 3, 3], values: noise(108, 1) },
      { name: 'b1', type: 'float32', dims: [4], values: noise(4, 2) },
      { name: 'w2', type: 'float32', dims: [4, 4, 3, 3], values: noise(144, 3) },
      { name: 'b2', type: 'float32', dims: [4], values: noise(4, 4) },
      { name: 'w3', type: 'float32', dims: [16, 3], values: noise(48, 5) },
      { name: 'b3', type: 'float32', dims: [3], values: noise(3, 6) },
    ],
    nodes: [
      { name: 'conv1', opType: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c1'], attributes: { pads: [1, 1, 1, 1] } },
      { name: 'relu1', opType: 'Relu', inputs: ['c1'], outputs: ['r1'] },
      { name: 'pool1', opType: 'MaxPool', inputs: ['r1'], outputs: ['p1'], attributes: { kernel_shape: [2, 2], strides: [2, 2] } },
      { name: 'conv2', opType: 'Conv', inputs: ['p1', 'w2', 'b2'], outputs: ['c2'], attributes: { pads: [1, 1, 1, 1] } },
      { name: 'relu2', opType: 'Relu', inputs: ['c2'], outputs: ['r2'] },
      { name: 'pool2', opType: 'MaxPool', inputs: ['r2'], outputs: ['p2'], attributes: { kernel_shape: [2, 2], strides: [2, 2] } },
      { name: 'flatten', opType: 'Flatten', inputs: ['p2'], outputs: ['f'] },
      { name: 'fc', opType: 'Gemm', inputs: ['f', 'w3', 'b3'], outputs: ['y'] },
    ],
  });
  const model = readOnnxModel(network);
  const ranges = await calibrateRanges(model, ['x', 'c1', 'p1', 'c2', 'f', 'y'], samples, { method: { kind: 'minmax' } });
  assert.deepEqual(quantizeStaticQdq(model, ranges), { quantized: ['conv1', 'conv2', 'fc'], skipped: [] });
  const scaleOf = (tensor: string) => model.graph.initializer.find((initializer) => initializer.name === `${tensor}_float_scale`)?.raw_data;
  assert.ok(!scaleOf('c1'), 'the convolution output is not quantized before its Relu');
  assert.deepEqual(scaleOf('p1'), scaleOf('r1'), 'pooling keeps the scale of what it pools');
  assert.deepEqual(scaleOf('f'), scaleOf('r2'));
  const quantized = writeOnnxModel(model);
  const dir = await mkdtemp(join(tmpdir(), 'nereid-qdq-'));
  try {
    for (const graphOptimizationLevel of ['extended', 'all'] as const) {
      const optimizedModelFilePath = join(dir, `${graphOptimizationLevel}.onnx`);
      const actual = await outputOf(quantized, samples[0], { graphOptimizationLevel, optimizedModelFilePath });
      const kernels = readOnnxModel(await readFile(optimizedModelFilePath)).graph.node.map((node) => node.op_type ?? '');
      assert.equal(kernels.filter((kind) => kind === 'DequantizeLinear').length, 1, `${graphOptimizationLevel}: only the output is dequantized: ${kernels.join(', ')}`);
      assert.equal(kernels.filter((kind) => kind === 'QuantizeLinear').length, 1, `${graphOptimizationLevel}: only the input is quantized: ${kernels.join(', ')}`);
      assert.ok(!kernels.includes('Relu') && !kernels.includes('Conv') && !kernels.includes('Gemm'), `${graphOptimizationLevel}: ${kernels.join(', ')}`);
      const expected = await outputOf(network, samples[0]);
      const step = (ranges.get('y')!.max - ranges.get('y')!.min) / 255;
      const worst = Math.max(...expected.map((value, index) => Math.abs(value - actual[index])));
      assert.ok(worst < 6 * step, `${graphOptimizationLevel}: largest error ${worst} against a step of ${step}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a convolution's output is quantized over the part its hard-swish or hard-sigmoid can tell apart, not over values they flatten", async () => {
  // x · Clip(x + 3, 0, 6) / 6 as Paddle exports hard-swish: everything below −3 reads 0.
  const network = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [1, 3, 8, 8] }],
    outputs: [
      { name: 'y', type: 'float32', shape: [1, 2, 8, 8] },
      { name: 'g', type: 'float32', shape: [1, 4, 8, 8] },
    ],
    initializers: [
      { name: 'w1', type: 'float32', dims: [4, 3, 3, 3], values: noise(108, 1).map((value) => value * 8) },
      { name: 'b1', type: 'float32', dims: [4], values: noise(4, 2) },
      { name: 'w2', type: 'float32', dims: [2, 4, 3, 3], values: noise(72, 3) },
      { name: 'b2', type: 'float32', dims: [2], values: noise(2, 4) },
      { name: 'w3', type: 'float32', dims: [4, 3, 1, 1], values: noise(12, 5).map((value) => value * 8) },
      { name: 'three', type: 'float32', dims: [], values: [3] },
      { name: 'zero', type: 'float32', dims: [], values: [0] },
      { name: 'six', type: 'float32', dims: [], values: [6] },
    ],
    nodes: [
      { name: 'conv1', opType: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c1'], attributes: { pads: [1, 1, 1, 1] } },
      { name: 'shift', opType: 'Add', inputs: ['c1', 'three'], outputs: ['s1'] },
      { name: 'clip', opType: 'Clip', inputs: ['s1', 'zero', 'six'], outputs: ['k1'] },
      { name: 'gate', opType: 'Mul', inputs: ['c1', 'k1'], outputs: ['m1'] },
      { name: 'divide', opType: 'Div', inputs: ['m1', 'six'], outputs: ['h1'] },
      { name: 'conv2', opType: 'Conv', inputs: ['h1', 'w2', 'b2'], outputs: ['y'], attributes: { pads: [1, 1, 1, 1] } },
      { name: 'conv3', opType: 'Conv', inputs: ['x', 'w3'], outputs: ['c3'] },
      { name: 'sigmoid', opType: 'HardSigmoid', inputs: ['c3'], outputs: ['g'], attributes: { alpha: 0.2, beta: 0.5 } },
    ],
  });
  const model = readOnnxModel(network);
  const ranges = await calibrateRanges(model, ['x', 'c1', 'h1', 'y', 'c3'], samples, { method: { kind: 'minmax' } });
  assert.ok(ranges.get('c1')!.min < -6 && ranges.get('c1')!.max > 3 && ranges.get('c3')!.min < -2.5 && ranges.get('c3')!.max > 2.5, JSON.stringify([...ranges]));
  quantizeStaticQdq(model, ranges);
  const parametersOf = (tensor: string) => {
    const read = (suffix: string) => model.graph.initializer.find((initializer) => initializer.name === `${tensor}_float_${suffix}`)!.raw_data!;
    return { scale: Buffer.from(read('scale')).readFloatLE(0), zeroPoint: read('zero_point')[0] };
  };
  const hardSwishInput = parametersOf('c1');
  assert.ok(Math.abs(hardSwishInput.scale - (ranges.get('c1')!.max + 3) / 255) < 1e-6, `scale ${hardSwishInput.scale}: the range starts at −3`);
  assert.equal(hardSwishInput.zeroPoint, Math.round(3 / hardSwishInput.scale));
  const hardSigmoidInput = parametersOf('c3');
  assert.ok(Math.abs(hardSigmoidInput.scale - 5 / 255) < 1e-6, `scale ${hardSigmoidInput.scale}: the range is −2.5…2.5`);
  // The flattened values still read as the bound: the outputs stay within a few steps of float.
  const quantized = writeOnnxModel(model);
  const session = await ort.InferenceSession.create(quantized, { graphOptimizationLevel: 'extended' });
  const reference = await ort.InferenceSession.create(network);
  try {
    const [actual, expected] = [await session.run(samples[0]), await reference.run(samples[0])];
    const step = (ranges.get('y')!.max - ranges.get('y')!.min) / 255;
    const worst = Math.max(...(expected.y.data as Float32Array).map((value, index) => Math.abs(value - (actual.y.data as Float32Array)[index])));
    assert.ok(worst < 6 * step, `largest error ${worst} against a step of ${step}`);
    const gateWorst = Math.max(...(expected.g.data as Float32Array).map((value, index) => Math.abs(value - (actual.g.data as Float32Array)[index])));
    assert.ok(gateWorst < 0.2 * 4 * hardSigmoidInput.scale, `hard-sigmoid's largest error ${gateWorst}: more than four steps of its input`);
  } finally {
    await session.release();
    await reference.release();
  }
});

test('a tensor that anything else reads too keeps its whole calibrated range', async () => {
  const network = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [1, 3, 8, 8] }],
    outputs: [{ name: 'y', type: 'float32', shape: [1, 4, 8, 8] }],
    initializers: [
      { name: 'w1', type: 'float32', dims: [4, 3, 1, 1], values: noise(12, 1).map((value) => value * 8) },
      { name: 'zero', type: 'float32', dims: [], values: [0] },
      { name: 'six', type: 'float32', dims: [], values: [6] },
    ],
    nodes: [
      { name: 'conv1', opType: 'Conv', inputs: ['x', 'w1'], outputs: ['c1'] },
      { name: 'relu6', opType: 'Clip', inputs: ['c1', 'zero', 'six'], outputs: ['k1'] },
      { name: 'sum', opType: 'Add', inputs: ['c1', 'k1'], outputs: ['y'] },
    ],
  });
  const model = readOnnxModel(network);
  const ranges = await calibrateRanges(model, ['x', 'c1'], samples, { method: { kind: 'minmax' } });
  quantizeStaticQdq(model, ranges);
  const scale = Buffer.from(model.graph.initializer.find((initializer) => initializer.name === 'c1_float_scale')!.raw_data!).readFloatLE(0);
  assert.ok(Math.abs(scale - (ranges.get('c1')!.max - ranges.get('c1')!.min) / 255) < 1e-6, `scale ${scale}`);
});
