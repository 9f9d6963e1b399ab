import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ParameterValue } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { CompletedModelConfig } from '../config/model-config.js';
import { answerDecidingConfig, cacheKey, fingerprint, type CacheKeyParts } from './cache-key.js';

function base(): CacheKeyParts {
  return {
    model: 'simple',
    version: '1',
    configFingerprint: fingerprint({ max_batch_size: 8 }),
    inputs: {
      INPUT0: { datatype: 'INT32', shape: [1, 4], data: new Int32Array([1, 2, 3, 4]) },
      INPUT1: { datatype: 'INT32', shape: [1, 4], data: new Int32Array([5, 6, 7, 8]) },
    },
    outputNames: ['OUTPUT0', 'OUTPUT1'],
    parameters: { temperature: 0.5, mode: 'fast' },
    keyParameters: ['temperature', 'mode'],
  };
}

const keyOf = (change: (parts: CacheKeyParts) => void = () => undefined) => {
  const parts = base();
  change(parts);
  return cacheKey(parts);
};

test('the key is a SHA-256 hex digest, stable for the same request', () => {
  const key = keyOf();
  assert.match(key, /^[0-9a-f]{64}$/);
  assert.equal(keyOf(), key);
});

test('the key changes with everything that decides the response', () => {
  const reference = keyOf();
  const changes: Record<string, (parts: CacheKeyParts) => void> = {
    model: (p) => (p.model = 'simple2'),
    version: (p) => (p.version = '2'),
    'config fingerprint': (p) => (p.configFingerprint = fingerprint({ max_batch_size: 4 })),
    'first input byte': (p) => {
      const data = p.inputs.INPUT0.data as Int32Array;
      new Uint8Array(data.buffer, data.byteOffset)[0] ^= 1;
    },
    'last input byte': (p) => {
      const data = p.inputs.INPUT1.data as Int32Array;
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength)[data.byteLength - 1] ^= 0x80;
    },
    // Same 16 bytes, another datatype.
    datatype: (p) => (p.inputs.INPUT0 = { ...p.inputs.INPUT0, datatype: 'FP32', data: new Float32Array((p.inputs.INPUT0.data as Int32Array).buffer) }),
    // Same bytes, another shape.
    shape: (p) => (p.inputs.INPUT0 = { ...p.inputs.INPUT0, shape: [2, 2] }),
    'shape rank': (p) => (p.inputs.INPUT0 = { ...p.inputs.INPUT0, shape: [4] }),
    'input name': (p) => {
      p.inputs = { INPUT0: p.inputs.INPUT0, INPUT2: p.inputs.INPUT1 };
    },
    'inputs swapped between names': (p) => {
      p.inputs = { INPUT0: p.inputs.INPUT1, INPUT1: p.inputs.INPUT0 };
    },
    'an input more': (p) => {
      p.inputs.INPUT2 = { datatype: 'INT32', shape: [0], data: new Int32Array(0) };
    },
    'requested outputs (fewer)': (p) => (p.outputNames = ['OUTPUT0']),
    'requested outputs (other)': (p) => (p.outputNames = ['OUTPUT1']),
    'key parameter value (number)': (p) => (p.parameters = { ...p.parameters, temperature: 0.7 }),
    'key parameter value (string)': (p) => (p.parameters = { ...p.parameters, mode: 'slow' }),
    'key parameter value (type)': (p) => (p.parameters = { ...p.parameters, temperature: '0.5' }),
    'key parameter absent': (p) => (p.parameters = { mode: 'fast' }),
    'key parameters named differently': (p) => (p.keyParameters = ['temperature']),
  };
  const seen = new Map<string, string>([[reference, 'reference']]);
  for (const [what, change] of Object.entries(changes)) {
    const key = keyOf(change);
    assert.notEqual(key, reference, `${what} must change the key`);
    assert.equal(seen.get(key), undefined, `${what} gives the same key as ${seen.get(key)}`);
    seen.set(key, what);
  }
});

test('the key is the same for the same request whatever the order of inputs, outputs and other parameters', () => {
  const reference = keyOf();
  assert.equal(
    keyOf((p) => (p.inputs = { INPUT1: p.inputs.INPUT1, INPUT0: p.inputs.INPUT0 })),
    reference,
    'inputs in another order',
  );
  assert.equal(keyOf((p) => (p.outputNames = ['OUTPUT1', 'OUTPUT0'])), reference, 'outputs in another order');
  // Parameters the config does not name (priority, timeout, a client's tag) do not split the cache.
  assert.equal(keyOf((p) => (p.parameters = { ...p.parameters, priority: 2, timeout: 1000, tag: 'x' })), reference);
  assert.equal(keyOf((p) => (p.parameters = { mode: 'fast', temperature: 0.5 })), reference, 'parameters in another order');
  // Equal data in other typed-array views: only bytes count.
  assert.equal(
    keyOf((p) => {
      const copy = new ArrayBuffer(64);
      const view = new Int32Array(copy, 32, 4);
      view.set([1, 2, 3, 4]);
      p.inputs.INPUT0 = { ...p.inputs.INPUT0, data: view };
    }),
    reference,
  );
});

test('BYTES inputs: element boundaries count, not only the concatenated bytes', () => {
  const bytesInput = (elements: string[]): Tensor => ({
    datatype: 'BYTES',
    shape: [elements.length],
    data: elements.map((element) => Buffer.from(element)),
  });
  const keyWith = (elements: string[]) => keyOf((p) => (p.inputs = { TEXT: bytesInput(elements) }));
  const ab_c = keyWith(['ab', 'c']);
  assert.notEqual(ab_c, keyWith(['a', 'bc']));
  assert.notEqual(ab_c, keyWith(['abc']));
  assert.equal(ab_c, keyWith(['ab', 'c']));
});

test('field boundaries cannot be shifted between model and version', () => {
  assert.notEqual(
    keyOf((p) => ((p.model = 'ab'), (p.version = '1'))),
    keyOf((p) => ((p.model = 'a'), (p.version = 'b1'))),
  );
});

test('fingerprint is short, stable and changes with the config', () => {
  const a = fingerprint({ response_cache: { enable: true }, max_batch_size: 8 });
  assert.match(a, /^[0-9a-f]{16}$/);
  assert.equal(fingerprint({ response_cache: { enable: true }, max_batch_size: 8 }), a);
  assert.notEqual(fingerprint({ response_cache: { enable: true }, max_batch_size: 4 }), a);
});

test('the config fingerprint follows what decides answers, not how the model is served', () => {
  const config = (changes: Record<string, unknown> = {}) =>
    ({
      name: 'm',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      max_batch_size: 8,
      version_policy: { latest: { num_versions: 1 } },
      input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4], optional: false }],
      output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4] }],
      instance_group: [{ kind: 'KIND_CPU', count: 1 }],
      parameters: { intra_op_thread_count: { string_value: '1' }, graph_optimization_level: { string_value: 'all' } },
      response_cache: { enable: true, ttl_seconds: 0, key_parameters: [] },
      ...changes,
    }) as unknown as CompletedModelConfig;
  const of = (changes?: Record<string, unknown>) => fingerprint(answerDecidingConfig(config(changes), ['intra_op_thread_count']));
  const original = of();
  const tuned = {
    'max_batch_size 8 to 16': { max_batch_size: 16 },
    'instance count': { instance_group: [{ kind: 'KIND_CPU', count: 4 }] },
    'dynamic batching and queue policy': { dynamic_batching: { max_queue_delay_microseconds: 100, default_queue_policy: { max_queue_size: 4 } } },
    'thread parameter': { parameters: { intra_op_thread_count: { string_value: '4' }, graph_optimization_level: { string_value: 'all' } } },
    'parameter order': { parameters: { graph_optimization_level: { string_value: 'all' }, intra_op_thread_count: { string_value: '1' } } },
    'cache ttl': { response_cache: { enable: true, ttl_seconds: 60, key_parameters: [] } },
    'version policy': { version_policy: { all: {} } },
  };
  for (const [what, changes] of Object.entries(tuned)) assert.equal(of(changes), original, `${what} keeps the fingerprint`);
  const deciding = {
    'batching on or off': { max_batch_size: 0 },
    'input dims': { input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [2, 2], optional: false }] },
    'output post-processing': { output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4], postprocess: { activation: 'softmax' } }] },
    'graph optimisation level': { parameters: { intra_op_thread_count: { string_value: '1' }, graph_optimization_level: { string_value: 'basic' } } },
    'a field Nereid does not know': { sequence_batching: {} },
    platform: { platform: 'other' },
  };
  for (const [what, changes] of Object.entries(deciding)) assert.notEqual(of(changes), original, `${what} changes the fingerprint`);
});

test('an integer key parameter beyond 2^53 (a bigint) is keyed, apart from the string of its digits, and the same as the number below 2^53', () => {
  const withId = (id: ParameterValue) =>
    keyOf((p) => {
      p.parameters = { sequence_id: id };
      p.keyParameters = ['sequence_id'];
    });
  const big = 2n ** 60n + 5n;
  assert.equal(withId(big), withId(big));
  assert.notEqual(withId(big), withId(String(big)));
  assert.notEqual(withId(big), withId(big + 1n));
  assert.equal(withId(7), withId(7n));
  assert.notEqual(withId(7), withId('7'));
});
