import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { readOnnxModel } from '../onnx/onnx-model-file.js';
import { quantizeDynamicMatMul, quantizeStaticQdq } from '../quantize/index.js';
import { representationTensor } from './reference-profiling.js';

const fashionMnist = async () => readOnnxModel(new Uint8Array(await readFile(new URL('../../models/fashion_mnist/1/model.onnx', import.meta.url))));

test('a quantized version is profiled on the same representation as its float original, not on the head\'s int8 input', async () => {
  const float = await fashionMnist();
  const expected = representationTensor(float, 'logits');
  assert.equal(expected.pooling, 'spatial-mean');
  assert.equal(float.graph.node.find((node) => node.output.includes(expected.tensor))?.op_type, 'MaxPool');

  // Static QDQ: every activation between the pooling and the head goes through a QuantizeLinear/DequantizeLinear pair.
  const staticModel = await fashionMnist();
  const ranges = new Map(staticModel.graph.node.flatMap((node) => [...node.input, ...node.output]).map((name) => [name, { min: -8, max: 8 }] as const));
  const rewrite = quantizeStaticQdq(staticModel, ranges);
  assert.ok(rewrite.quantized.length > 0);
  assert.ok(staticModel.graph.node.some((node) => node.op_type === 'DequantizeLinear'));
  assert.deepEqual(representationTensor(staticModel, 'logits'), expected);

  // Dynamic int8: the head is a MatMulInteger reading DynamicQuantizeLinear's output.
  const dynamicModel = await fashionMnist();
  assert.ok(quantizeDynamicMatMul(dynamicModel).quantized.length > 0);
  assert.ok(dynamicModel.graph.node.some((node) => node.op_type === 'MatMulInteger'));
  assert.deepEqual(representationTensor(dynamicModel, 'logits'), expected);
});
