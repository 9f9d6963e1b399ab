import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig, type CompletedModelConfig } from '../config/model-config.js';
import { checkEnsembleSteps, planEnsemble, stepDependencies } from './ensemble-plan.js';

const tensor = (name: string, dims: number[] = [4], data_type = 'TYPE_FP32') => ({ name, data_type, dims });

function ensemble(steps: object[], extra: object = {}) {
  return parseModelConfig(
    { platform: 'ensemble', max_batch_size: 4, input: [tensor('IN')], output: [tensor('OUT')], ensemble_scheduling: { step: steps }, ...extra },
    'test config',
  );
}

function completed(config: ReturnType<typeof parseModelConfig>, name = 'e'): CompletedModelConfig {
  return { ...config, name, platform: 'ensemble', backend: '', max_batch_size: config.max_batch_size ?? 0 };
}

/** A step model's completed config: one input, one output. */
function model(name: string, maxBatchSize: number, input: object, output: object): CompletedModelConfig {
  return { ...parseModelConfig({ max_batch_size: maxBatchSize, input: [input], output: [output] }, name), name, platform: 'onnxruntime_onnx', backend: 'onnxruntime', max_batch_size: maxBatchSize };
}

test('an ensemble without steps, or a step without maps, is refused with what to write', () => {
  assert.throws(() => planEnsemble('e', ensemble([])), /ensemble 'e' has no steps: give ensemble_scheduling \{ step/);
  assert.throws(() => planEnsemble('e', ensemble([{ model_name: 'a', output_map: { y: 'OUT' } }])), /ensemble 'e' step 0 \(model 'a'\) has no input_map/);
  assert.throws(() => planEnsemble('e', ensemble([{ model_name: 'a', input_map: { x: 'IN' } }])), /step 0 \(model 'a'\) has no output_map/);
});

test('a cycle through three steps is named along its loop', () => {
  const plan = () =>
    planEnsemble(
      'e',
      ensemble([
        { model_name: 'a', input_map: { x: 'IN', z: 'C' }, output_map: { y: 'A' } },
        { model_name: 'b', input_map: { x: 'A' }, output_map: { y: 'B' } },
        { model_name: 'c', input_map: { x: 'B' }, output_map: { y: 'C', w: 'OUT' } },
      ]),
    );
  assert.throws(plan, {
    message: "steps of ensemble 'e' form a cycle, so none of them can start: step 0 (model 'a') → 'A' → step 1 (model 'b') → 'B' → step 2 (model 'c') → 'C' → step 0 (model 'a')",
  });
});

test('the graph knows what each step waits for', () => {
  const plan = planEnsemble(
    'e',
    ensemble([
      { model_name: 'd', input_map: { x: 'B', y: 'C' }, output_map: { z: 'OUT' } },
      { model_name: 'b', input_map: { x: 'A' }, output_map: { y: 'B' } },
      { model_name: 'c', input_map: { x: 'A' }, output_map: { y: 'C' } },
      { model_name: 'a', input_map: { x: 'IN' }, output_map: { y: 'A' } },
    ]),
  );
  assert.deepEqual(stepDependencies(plan, plan.steps[0]).map((step) => step.model), ['b', 'c']);
  assert.deepEqual(stepDependencies(plan, plan.steps[3]), []);
  assert.equal(plan.steps[1].version, undefined);
});

test('a batching step may feed a non-batching one whose first dimension is -1, as Triton compares full shapes', () => {
  const config = ensemble(
    [
      { model_name: 'batching', input_map: { x: 'IN' }, output_map: { y: 'T' } },
      { model_name: 'whole', input_map: { x: 'T' }, output_map: { y: 'OUT' } },
    ],
    { max_batch_size: 4 },
  );
  const plan = planEnsemble('e', config);
  const batching = model('batching', 8, tensor('x'), tensor('y'));
  const whole = model('whole', 0, tensor('x', [-1, 4]), tensor('y', [-1, 4]));
  assert.doesNotThrow(() => checkEnsembleSteps(plan, completed(config), [batching, whole]));
  const narrow = model('whole', 0, tensor('x', [-1, 3]), tensor('y', [-1, 4]));
  assert.throws(() => checkEnsembleSteps(plan, completed(config), [batching, narrow]), {
    message: "ensemble 'e': ensemble tensor 'T' is FP32 [-1,4] as output 'y' of model 'batching' (step 0), but input 'x' of model 'whole' (step 1) takes FP32 [-1,3]",
  });
});

test('an optional input of a step may stay unmapped; a required one may not', () => {
  const config = ensemble([{ model_name: 'm', input_map: { x: 'IN' }, output_map: { y: 'OUT' } }]);
  const plan = planEnsemble('e', config);
  const withOptional: CompletedModelConfig = {
    ...model('m', 8, tensor('x'), tensor('y')),
    input: parseModelConfig({ input: [tensor('x'), { ...tensor('hint'), optional: true }] }, 'm').input,
  };
  assert.doesNotThrow(() => checkEnsembleSteps(plan, completed(config), [withOptional]));
  const withRequired = { ...withOptional, input: parseModelConfig({ input: [tensor('x'), tensor('hint')] }, 'm').input };
  assert.throws(() => checkEnsembleSteps(plan, completed(config), [withRequired]), /input 'hint' of model 'm' \(step 0\) is not mapped to any ensemble tensor/);
});

test('a cached ensemble may not have a stateful step: its answers depend on the sequence so far', () => {
  const config = ensemble([{ model_name: 'stateful', input_map: { x: 'IN' }, output_map: { y: 'OUT' } }], { response_cache: { enable: true } });
  const plan = planEnsemble('e', config);
  const step = model('stateful', 0, tensor('x', [-1, 4]), tensor('y', [-1, 4]));
  assert.doesNotThrow(() => checkEnsembleSteps(plan, completed(config), [step]));
  const stateful = { ...step, sequence_batching: parseModelConfig({ sequence_batching: {} }, 'stateful').sequence_batching };
  assert.throws(() => checkEnsembleSteps(plan, completed(config), [stateful]), {
    message: "ensemble 'e' enables response_cache, but its step 0 (model 'stateful') is stateful (sequence_batching): its answers depend on the sequence so far, so the ensemble's cannot be cached",
  });
});
