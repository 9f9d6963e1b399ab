/**
 * completeConfig's dynamic batching, as Triton's ONNX Runtime auto-complete does it: a model whose
 * file shows a batch dimension on every tensor, batched by more than 1 (the config's max_batch_size or
 * the server's default completed into it), comes with dynamic_batching at the schema's defaults; a
 * config listing its inputs and outputs (not auto-completed), one that has dynamic_batching already,
 * or that uses the sequence batcher is left as it is.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelSignature } from '../backends/backend.js';
import { dynamicBatchingSchema, parseModelConfig } from '../config/model-config.js';
import { batcherPolicyOf } from './model-loader.js';
import { completeConfig, type CompletionDefaults } from './config-completion.js';

/** FP32 INPUT0 → OUTPUT0, first dimension dynamic (a batch dimension) or fixed. */
function signatureOf(firstDim: number): ModelSignature {
  return {
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [firstDim, 4] }],
    outputs: [{ name: 'OUTPUT0', datatype: 'FP32', shape: [firstDim, 4] }],
  };
}

const BATCHABLE = signatureOf(-1);

function defaults(defaultMaxBatchSize = 8): CompletionDefaults {
  return { name: 'm', backend: { name: 'onnxruntime', platforms: ['onnxruntime_onnx'] }, defaultMaxBatchSize, defaultInstanceCount: 1 };
}

const complete = (config: Record<string, unknown>, signature = BATCHABLE, defaultMaxBatchSize = 8) =>
  completeConfig(parseModelConfig(config, 'test config'), signature, defaults(defaultMaxBatchSize));

describe('completeConfig: dynamic_batching with an auto-completed max_batch_size', () => {
  it('a config without max_batch_size, on a model with a batch dimension, gets the default max_batch_size and dynamic_batching with the schema\'s defaults', () => {
    const completed = complete({});
    assert.equal(completed.max_batch_size, 8);
    assert.deepEqual(completed.dynamic_batching, dynamicBatchingSchema.parse({}));
    assert.deepEqual(completed.dynamic_batching, {
      preferred_batch_size: [],
      max_queue_delay_microseconds: 0,
      target_latency_us: 0,
      preserve_ordering: false,
      priority_levels: 0,
      default_priority_level: 0,
      default_queue_policy: { timeout_action: 'REJECT', default_timeout_microseconds: 0, allow_timeout_override: false, max_queue_size: 0, max_queue_bytes: 0 },
    });
    const policy = batcherPolicyOf(completed, { maxQueuedRequests: 16 });
    assert.equal(policy.maxBatchSize, 8, 'the scheduler batches it');
    assert.equal(policy.maxQueueDelayMicroseconds, 0);
  });

  it('inputs added from the model carry the defaults a declared input gets (optional, allow_ragged_batch), which the config answer prints', () => {
    assert.deepEqual(complete({}).input, [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4], optional: false, allow_ragged_batch: false }]);
  });

  it('so does a config that says other things but not max_batch_size (inputs, instance_group)', () => {
    const completed = complete({ input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4] }], instance_group: [{ kind: 'KIND_CPU', count: 2 }] });
    assert.equal(completed.max_batch_size, 8);
    assert.deepEqual(completed.dynamic_batching, dynamicBatchingSchema.parse({}));
  });

  for (const maxBatchSize of [4, 8, 16]) {
    it(`a config that names max_batch_size ${maxBatchSize} and not its inputs and outputs gets dynamic_batching too, as Triton's ONNX Runtime auto-complete gives it`, () => {
      const completed = complete({ max_batch_size: maxBatchSize });
      assert.equal(completed.max_batch_size, maxBatchSize);
      assert.deepEqual(completed.dynamic_batching, dynamicBatchingSchema.parse({}));
      assert.equal(batcherPolicyOf(completed, { maxQueuedRequests: 16 }).maxBatchSize, maxBatchSize);
    });
  }

  it('max_batch_size 1, or a config listing its inputs and outputs (not auto-completed), is left without dynamic_batching: each request runs on its own', () => {
    const listed = {
      input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4] }],
      output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4] }],
    };
    for (const written of [{ max_batch_size: 1 }, { max_batch_size: 8, ...listed }]) {
      const completed = complete(written);
      assert.equal(completed.dynamic_batching, undefined, JSON.stringify(written));
      assert.equal(batcherPolicyOf(completed, { maxQueuedRequests: 16 }).maxBatchSize, 0);
    }
  });

  it('a config that names max_batch_size 0 stays unbatched', () => {
    const completed = complete({ max_batch_size: 0 });
    assert.equal(completed.max_batch_size, 0);
    assert.equal(completed.dynamic_batching, undefined);
  });

  it('a config with dynamic_batching keeps its own, with or without max_batch_size', () => {
    const own = { max_queue_delay_microseconds: 500, preferred_batch_size: [2, 4], preserve_ordering: true };
    for (const written of [{ dynamic_batching: own }, { max_batch_size: 4, dynamic_batching: own }]) {
      const config = parseModelConfig(written, 'test config');
      const completed = completeConfig(config, BATCHABLE, defaults());
      assert.equal(completed.dynamic_batching, config.dynamic_batching, `${JSON.stringify(written)}: the same block`);
      assert.equal(completed.dynamic_batching?.max_queue_delay_microseconds, 500);
      assert.deepEqual(completed.dynamic_batching?.preferred_batch_size, [2, 4]);
      assert.equal(completed.dynamic_batching?.preserve_ordering, true);
    }
  });

  it('a model whose first dimension is fixed auto-completes to max_batch_size 0 and gets no dynamic_batching', () => {
    const completed = complete({}, signatureOf(2));
    assert.equal(completed.max_batch_size, 0);
    assert.equal(completed.dynamic_batching, undefined);
  });

  it('a server default max_batch_size of 0 gives no dynamic_batching either', () => {
    const completed = complete({}, BATCHABLE, 0);
    assert.equal(completed.max_batch_size, 0);
    assert.equal(completed.dynamic_batching, undefined);
  });

  it('a config that uses the sequence batcher gets no dynamic_batching beside it', () => {
    const completed = complete({ sequence_batching: {} });
    assert.equal(completed.max_batch_size, 8);
    assert.equal(completed.dynamic_batching, undefined);
  });

  it('the config it was given is not changed', () => {
    const config = parseModelConfig({}, 'test config');
    completeConfig(config, BATCHABLE, defaults());
    assert.equal(config.max_batch_size, undefined);
    assert.equal(config.dynamic_batching, undefined);
  });
});

describe('completeConfig: ragged inputs and batch inputs', () => {
  const signature: ModelSignature = {
    inputs: [
      { name: 'INPUT', datatype: 'FP32', shape: [-1] },
      { name: 'INDEX', datatype: 'INT32', shape: [-1] },
    ],
    outputs: [{ name: 'OUTPUT', datatype: 'FP32', shape: [-1, 1] }],
  };
  const ragged = {
    max_batch_size: 4,
    input: [{ name: 'INPUT', data_type: 'TYPE_FP32', dims: [-1], allow_ragged_batch: true }],
    batch_input: [{ kind: 'BATCH_ACCUMULATED_ELEMENT_COUNT', target_name: 'INDEX', data_type: 'TYPE_INT32', source_input: 'INPUT' }],
  };

  it('takes a flat model input as the ragged input, and leaves the batch input out of the inputs clients send', () => {
    const completed = complete(ragged, signature);
    assert.deepEqual(completed.input.map((input) => input.name), ['INPUT']);
    assert.deepEqual(completed.output[0].dims, [1]);
  });

  it('an auto-completed max_batch_size ignores the batch input\'s shape', () => {
    const { max_batch_size: _, ...withoutSize } = ragged;
    assert.equal(complete(withoutSize, signature).max_batch_size, 8);
  });

  it('refuses a batch input the model lacks, of another type or rank, and a ragged input the model does not take flat', () => {
    const entry = ragged.batch_input[0];
    assert.throws(() => complete({ ...ragged, batch_input: [{ ...entry, target_name: 'NOPE' }] }, signature), /batch_input target_name 'NOPE' is not an input of the model \(it has INPUT, INDEX\)/);
    assert.throws(() => complete({ ...ragged, batch_input: [{ ...entry, data_type: 'TYPE_FP32' }] }, signature), /batch_input 'INDEX' says TYPE_FP32 but the model's input is TYPE_INT32/);
    assert.throws(() => complete({ ...ragged, batch_input: [{ ...entry, kind: 'BATCH_ITEM_SHAPE' }] }, signature), /batch_input 'INDEX' \(BATCH_ITEM_SHAPE\) has 2 dimensions, but the model's input is \[-1\]/);
    const twoDims = { ...signature, inputs: [{ name: 'INPUT', datatype: 'FP32' as const, shape: [-1, 3] }, signature.inputs[1]] };
    assert.throws(() => complete(ragged, twoDims), /allows ragged batches, which reach the model as one flat tensor, but the model's input is \[-1,3\]/);
  });
});

describe('completeConfig: a config that lists its inputs and outputs, as Triton takes it', () => {
  const listed = { input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [-1, 4] }], output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [-1, 4] }] };

  it('gets no max_batch_size completed: left out, it is 0, and dims [-1, 4] are the whole shape', () => {
    const completed = complete(listed);
    assert.equal(completed.max_batch_size, 0);
    assert.equal(completed.dynamic_batching, undefined);
    assert.deepEqual(completed.input[0].dims, [-1, 4]);
    // A config written for completion (dims after the batch dimension) says why it no longer matches.
    const withoutBatch = { input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4] }], output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4] }] };
    assert.throws(() => complete(withoutBatch), /has dims \[4\] but the model has \[-1,4\] \(max_batch_size is left out of a config that lists both inputs and outputs, so it is 0, as in Triton/);
  });

  it('with one list empty, max_batch_size is completed, and a mismatch says it was', () => {
    assert.equal(complete({ input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4] }] }).max_batch_size, 8);
    assert.throws(() => complete({ input: listed.input }), /config input 'INPUT0' has dims \[-1,4\] but the model has \[4\] after the batch dimension \(max_batch_size was completed to 8 from the model, as the config leaves it out: set max_batch_size: 0/);
  });

  it('serves only the outputs it lists; outputs of an empty list come from the model', () => {
    const twoOutputs: ModelSignature = { inputs: BATCHABLE.inputs, outputs: [...BATCHABLE.outputs, { name: 'FEATURES', datatype: 'FP32', shape: [-1, 16] }] };
    const chosen = complete({ max_batch_size: 4, output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4] }] }, twoOutputs);
    assert.deepEqual(chosen.output.map((output) => output.name), ['OUTPUT0']);
    assert.deepEqual(complete({ max_batch_size: 4 }, twoOutputs).output.map((output) => output.name), ['OUTPUT0', 'FEATURES']);
  });
});

describe('completeConfig: dims compared as Triton compares them', () => {
  it('a -1 in the config matches a size the model fixes, and takes that size so requests are checked against it', () => {
    const completed = complete({ max_batch_size: 4, input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [-1] }], output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [-1] }] });
    assert.deepEqual(completed.input[0].dims, [4]);
    assert.deepEqual(completed.output[0].dims, [4]);
    assert.throws(() => complete({ max_batch_size: 4, input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [5] }] }), /config input 'INPUT0' has dims \[5\] but the model has \[4\]/);
  });

  it("a -1 whose dims_multiple_of the model's fixed size breaks is refused at load, not every request after it", () => {
    const config = (multiple: number) => ({ max_batch_size: 4, input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [-1], dims_multiple_of: [multiple] }] });
    assert.deepEqual(complete(config(2)).input[0].dims, [4]);
    assert.throws(() => complete(config(3)), /^Error: config input 'INPUT0' has dims_multiple_of 3 for dim 0, which the model fixes at 4, not a multiple of it$/);
  });
});

describe('completeConfig: instance groups', () => {
  it('KIND_AUTO shows as the kind the instances run on (CPU: only KIND_GPU is placed on a GPU), named as Triton names groups', () => {
    const completed = complete({ instance_group: [{ count: 2 }, { kind: 'KIND_GPU', count: 1 }] });
    assert.deepEqual(completed.instance_group.map((group) => [group.kind, group.name]), [['KIND_CPU', 'm_0'], ['KIND_GPU', 'm_1']]);
  });
});
