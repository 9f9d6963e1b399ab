/**
 * Raising an opset-9 graph to 13: operators whose attributes became inputs compute the same in
 * ONNX Runtime afterwards, what cannot be carried over is refused by name, and a model already at
 * the target is left alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { noise, runModel } from '../../test/support/onnx-runs.js';
import { attr, buildOnnxModel } from './onnx-model-builder.js';
import { readOnnxModel, writeOnnxModel } from './onnx-model-file.js';
import { defaultOpset, upgradeOpset } from './opset-upgrade.js';

const OPSET_9 = buildOnnxModel({
  opset: 9,
  irVersion: 4,
  inputs: [{ name: 'x', type: 'float32', shape: [1, 4, 6] }],
  outputs: [{ name: 'y', type: 'float32', shape: [4, 3] }],
  nodes: [
    { opType: 'Clip', inputs: ['x'], outputs: ['clipped'], attributes: { min: attr.float(-0.5), max: attr.float(0.25) } },
    { opType: 'Slice', inputs: ['clipped'], outputs: ['sliced'], attributes: { axes: [2], starts: [1], ends: [4] } },
    { opType: 'Squeeze', inputs: ['sliced'], outputs: ['squeezed'], attributes: { axes: [0] } },
    { opType: 'Softmax', inputs: ['squeezed'], outputs: ['y'], attributes: { axis: 1 } },
  ],
});

test('an opset-9 graph raised to 13 computes the same, its attributes now inputs', async () => {
  const model = readOnnxModel(OPSET_9);
  const upgrade = upgradeOpset(model, 13);
  assert.deepEqual(upgrade, { from: 9, to: 13, rewritten: { Clip: 1, Slice: 1, Squeeze: 1 } });
  assert.equal(defaultOpset(model), 13);
  assert.equal(Number(model.ir_version), 7);
  assert.deepEqual(model.graph.node.map((node) => node.input.length), [3, 4, 2, 1]);
  const feed = { x: new ort.Tensor('float32', noise(24, 7), [1, 4, 6]) };
  const [before, after] = [await runModel(OPSET_9, feed), await runModel(writeOnnxModel(model), feed)];
  assert.deepEqual(after.y, before.y);
});

test('a Clip without bounds keeps its inputs empty, and a model at the target is left alone', () => {
  const model = readOnnxModel(
    buildOnnxModel({
      opset: 9,
      inputs: [{ name: 'x', type: 'float32', shape: [2] }],
      outputs: [{ name: 'y', type: 'float32', shape: [2] }],
      nodes: [{ opType: 'Clip', inputs: ['x'], outputs: ['y'], attributes: { max: attr.float(1) } }],
    }),
  );
  upgradeOpset(model, 13);
  assert.equal(model.graph.node[0].input.length, 3);
  assert.equal(model.graph.node[0].input[1], '', 'min stays unbounded');
  const current = readOnnxModel(buildOnnxModel({ inputs: [{ name: 'x', type: 'float32', shape: [2] }], outputs: [{ name: 'x', type: 'float32', shape: [2] }], nodes: [] }));
  assert.deepEqual(upgradeOpset(current, 13), { from: 13, to: 13, rewritten: {} });
});

test('an operator with no faithful upgrade is refused by name', () => {
  const model = readOnnxModel(
    buildOnnxModel({
      opset: 9,
      inputs: [{ name: 'x', type: 'float32', shape: [1, 1, 2, 2] }],
      outputs: [{ name: 'y', type: 'float32', shape: [1, 1, 4, 4] }],
      initializers: [{ name: 'scales', type: 'float32', dims: [4], values: [1, 1, 2, 2] }],
      nodes: [{ opType: 'Upsample', inputs: ['x', 'scales'], outputs: ['y'] }],
    }),
  );
  assert.throws(() => upgradeOpset(model, 13), /cannot raise the model's opset 9 to 13: Upsample \(deprecated at opset 10/);
});
