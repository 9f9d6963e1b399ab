import assert from 'node:assert/strict';
import { test } from 'node:test';
import { monitorAnswer } from './monitor-answer.js';

test('a version without a monitor is told how to get one only where nereid profile takes its backend', () => {
  const onnx = monitorAnswer('fashion_mnist', '2', undefined, undefined, undefined, 'onnxruntime');
  assert.equal(onnx.monitored, false);
  assert.match(onnx.reason!, /^version 2 has no reference profile \(reference\.json\); build one with: nereid profile --model fashion_mnist --version 2 --data/);
  // `nereid profile` refuses these models: the hint sent people to a command that could not work.
  for (const backend of ['tfjs', 'builtin', 'javascript', 'ensemble']) {
    const reason = monitorAnswer('m', '1', undefined, undefined, undefined, backend).reason!;
    assert.equal(reason, `monitoring by reference profile (OOD flags, drift, feedback) is not available for backend '${backend}': a profile reads a model's intermediate tensors from its ONNX file, so only models of backend 'onnxruntime' have one`);
  }
  assert.match(monitorAnswer('m', '1', undefined, undefined).reason!, /build one with: nereid profile/, 'backend not known: the hint as before');
  assert.equal(monitorAnswer('m', '1', undefined, '--monitoring false', undefined, 'tfjs').reason, 'the server runs with monitoring off (--monitoring false)');
});
