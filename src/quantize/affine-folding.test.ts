/**
 * Scales and shifts by constants after a convolution fold into its weights and bias: the graph loses
 * the Mul and Add and computes the same outputs; anything else that reads or shapes them is left alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { buildOnnxModel, type InitializerSpec, type NodeSpec } from '../onnx/onnx-model-builder.js';
import { readOnnxModel, writeOnnxModel } from '../onnx/onnx-model-file.js';
import { foldAffineIntoConv } from './affine-folding.js';

function noise(count: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return (state / 2 ** 31) * 2 - 1;
  });
}

const network = (nodes: NodeSpec[], extra: InitializerSpec[] = [], outputs = ['y']): Uint8Array =>
  buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [1, 3, 6, 6] }],
    outputs: outputs.map((name) => ({ name, type: 'float32', shape: [1, 4, 6, 6] })),
    initializers: [
      { name: 'w', type: 'float32', dims: [4, 3, 3, 3], values: noise(108, 1) },
      { name: 'b', type: 'float32', dims: [4], values: noise(4, 2) },
      { name: 'scale', type: 'float32', dims: [1], values: [1.75] },
      { name: 'shift', type: 'float32', dims: [4, 1, 1], values: [0.5, -1, 2, 0.25] },
      ...extra,
    ],
    nodes,
  });

async function outputs(bytes: Uint8Array, names: string[]): Promise<Float32Array[]> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const result = await session.run({ x: new ort.Tensor('float32', Float32Array.from(noise(108, 7)), [1, 3, 6, 6]) });
    return names.map((name) => result[name].data as Float32Array);
  } finally {
    await session.release();
  }
}

const conv = { name: 'conv', opType: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attributes: { pads: [1, 1, 1, 1] } };

test('a scalar Mul and a per-channel Add after a convolution fold into it, and the outputs stay the same', async () => {
  const source = network([conv, { name: 'mul', opType: 'Mul', inputs: ['scale', 'c'], outputs: ['m'] }, { name: 'add', opType: 'Add', inputs: ['m', 'shift'], outputs: ['a'] }, { name: 'relu', opType: 'Relu', inputs: ['a'], outputs: ['y'] }]);
  const model = readOnnxModel(source);
  assert.equal(foldAffineIntoConv(model), 2);
  assert.deepEqual(
    model.graph.node.map((node) => [node.op_type, node.output[0]]),
    [
      ['Conv', 'a'],
      ['Relu', 'y'],
    ],
  );
  assert.ok(!model.graph.initializer.some((tensor) => ['w', 'b', 'scale', 'shift'].includes(tensor.name!)), 'what was folded is dropped');
  const [expected] = await outputs(source, ['y']);
  const [actual] = await outputs(writeOnnxModel(model), ['y']);
  assert.ok(expected.some((value) => value > 0));
  for (const [index, value] of expected.entries()) assert.ok(Math.abs(value - actual[index]) < 1e-5, `${index}: ${value} against ${actual[index]}`);
});

test('a convolution without a bias gets one, and one whose weights another node reads keeps them for it', async () => {
  const source = network(
    [
      { name: 'conv', opType: 'Conv', inputs: ['x', 'w'], outputs: ['c'], attributes: { pads: [1, 1, 1, 1] } },
      { name: 'add', opType: 'Add', inputs: ['c', 'shift'], outputs: ['y'] },
      { name: 'twin', opType: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['z'], attributes: { pads: [1, 1, 1, 1] } },
    ],
    [],
    ['y', 'z'],
  );
  const model = readOnnxModel(source);
  assert.equal(foldAffineIntoConv(model), 1);
  const [folded, twin] = model.graph.node;
  assert.equal(folded.input.length, 3);
  assert.deepEqual(twin.input, ['x', 'w', 'b']);
  const expected = await outputs(source, ['y', 'z']);
  const actual = await outputs(writeOnnxModel(model), ['y', 'z']);
  for (const [which, values] of expected.entries()) for (const [index, value] of values.entries()) assert.ok(Math.abs(value - actual[which][index]) < 1e-5);
});

test('what does not fold is left alone: an output read twice, a graph output, a constant that varies along a spatial axis', async () => {
  const cases: [string, Uint8Array][] = [
    ['read twice', network([conv, { name: 'mul', opType: 'Mul', inputs: ['c', 'scale'], outputs: ['m'] }, { name: 'add', opType: 'Add', inputs: ['c', 'm'], outputs: ['y'] }])],
    ['graph output', network([conv, { name: 'mul', opType: 'Mul', inputs: ['c', 'scale'], outputs: ['y'] }], [], ['c', 'y'])],
    [
      'spatial constant',
      network([conv, { name: 'mul', opType: 'Mul', inputs: ['c', 'ramp'], outputs: ['y'] }], [{ name: 'ramp', type: 'float32', dims: [1, 1, 6], values: [1, 2, 3, 4, 5, 6] }]),
    ],
  ];
  for (const [name, source] of cases) {
    const model = readOnnxModel(source);
    assert.equal(foldAffineIntoConv(model), 0, name);
    assert.equal(model.graph.node.length, readOnnxModel(source).graph.node.length, name);
  }
});
