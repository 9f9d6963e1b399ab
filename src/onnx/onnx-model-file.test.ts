/**
 * The bundled pretrained models read, rewritten with their Constant nodes as initializers, and
 * written back: ONNX Runtime gives bit-identical outputs from the rewritten file.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { attr, buildOnnxModel, ModelProto } from './onnx-model-builder.js';
import { constantsToInitializers, readOnnxModel, writeOnnxModel } from './onnx-model-file.js';

const MODELS = fileURLToPath(new URL('../../models', import.meta.url));

/** Deterministic inputs in [0, 1). */
function input(shape: number[]): ort.Tensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let state = 12345;
  for (let index = 0; index < data.length; index++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    data[index] = state / 2 ** 31;
  }
  return new ort.Tensor('float32', data, shape);
}

async function outputsOf(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    const results = await session.run(feeds);
    return Object.fromEntries(Object.entries(results).map(([name, tensor]) => [name, tensor.data as Float32Array]));
  } finally {
    await session.release();
  }
}

for (const [model, inputName, shape] of [
  ['fashion_mnist', 'image', [1, 1, 28, 28]],
  ['ocr_direction', 'x', [1, 3, 48, 192]],
] as const) {
  test(`${model}: read, Constants made initializers, written back — the same outputs, bit for bit`, async () => {
    const original = readFileSync(join(MODELS, model, '1', 'model.onnx'));
    const parsed = readOnnxModel(original);
    const nodesBefore = parsed.graph.node.length;
    const constants = parsed.graph.node.filter((node) => node.op_type === 'Constant').length;
    assert.equal(constantsToInitializers(parsed), constants);
    assert.equal(parsed.graph.node.length, nodesBefore - constants);
    assert.ok(!parsed.graph.node.some((node) => node.op_type === 'Constant'));
    const rewritten = writeOnnxModel(parsed);
    const feeds = { [inputName]: input([...shape]) };
    const [expected, actual] = [await outputsOf(original, feeds), await outputsOf(rewritten, feeds)];
    assert.deepEqual(Object.keys(actual), Object.keys(expected));
    for (const name of Object.keys(expected)) assert.deepEqual(actual[name], expected[name], `output ${name}`);
  });
}

test('a Constant of any tensor-valued form becomes an initializer the model computes with', async () => {
  const bytes = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: [3] }],
    outputs: [{ name: 'y', type: 'float32', shape: [3] }],
    nodes: [
      { opType: 'Constant', inputs: [], outputs: ['k'], attributes: { value_floats: attr.floats([1, 2, 3]) } },
      { opType: 'Add', inputs: ['x', 'k'], outputs: ['y'] },
    ],
  });
  const parsed = readOnnxModel(bytes);
  assert.equal(constantsToInitializers(parsed), 1);
  assert.deepEqual(parsed.graph.initializer.map((tensor) => tensor.name), ['k']);
  const { y } = await outputsOf(writeOnnxModel(parsed), { x: new ort.Tensor('float32', new Float32Array([10, 20, 30]), [3]) });
  assert.deepEqual([...y], [11, 22, 33]);
});

test('a model whose data the reader cannot carry is refused, not rewritten wrong', () => {
  const external = ModelProto.encode({
    graph: { name: 'g', initializer: [{ name: 'w', data_type: 1, dims: [1], data_location: 1, external_data: [{ key: 'location', value: 'w.bin' }] }] },
  } as never).finish();
  assert.throws(() => readOnnxModel(external), /initializer 'w' keeps its data in an external file/);
  assert.throws(() => readOnnxModel(new Uint8Array([0x0f])), /not an ONNX model/);
});
