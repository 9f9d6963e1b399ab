/** sequence_batching as Triton's model_config.proto writes it, read from pbtxt, YAML and JSON alike, and its mistakes named. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { parseModelConfig } from './model-config.js';
import { parsePbtxt } from './pbtxt.js';

const PBTXT = `
max_batch_size: 8
sequence_batching {
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100 }
  max_sequence_idle_microseconds: 5000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
  state [ { input_name: "S_IN" output_name: "S_OUT" data_type: TYPE_FP32 dims: [ 4 ] initial_state: { data_type: TYPE_FP32 dims: [ 4 ] data_file: "zeros.bin" } } ]
}`;

const YAML = `
max_batch_size: 8
sequence_batching:
  oldest: { max_candidate_sequences: 4, preferred_batch_size: [2, 4], max_queue_delay_microseconds: 100 }
  max_sequence_idle_microseconds: 5000000
  control_input:
    - { name: START, control: [{ kind: CONTROL_SEQUENCE_START, int32_false_true: [0, 1] }] }
    - { name: READY, control: [{ kind: CONTROL_SEQUENCE_READY, bool_false_true: [false, true] }] }
    - { name: CORRID, control: [{ kind: CONTROL_SEQUENCE_CORRID, data_type: TYPE_UINT64 }] }
  state:
    - { input_name: S_IN, output_name: S_OUT, data_type: TYPE_FP32, dims: [4], initial_state: [{ data_type: TYPE_FP32, dims: [4], data_file: zeros.bin }] }
`;

const errorOf = (raw: unknown): string => {
  try {
    parseModelConfig(raw, 'config.json');
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail('expected the config to be refused');
};

test('pbtxt, YAML and JSON give the same sequence_batching', () => {
  const fromPbtxt = parseModelConfig(parsePbtxt(PBTXT), 'config.pbtxt').sequence_batching!;
  const fromYaml = parseModelConfig(parseYaml(YAML), 'config.yaml').sequence_batching!;
  const fromJson = parseModelConfig(JSON.parse(JSON.stringify({ max_batch_size: 8, sequence_batching: fromYaml })), 'config.json').sequence_batching!;
  assert.deepEqual(fromPbtxt, fromYaml);
  assert.deepEqual(fromJson, fromYaml);
  assert.equal(fromPbtxt.oldest?.max_candidate_sequences, 4);
  assert.deepEqual(fromPbtxt.control_input.map((input) => input.control[0].kind), ['CONTROL_SEQUENCE_START', 'CONTROL_SEQUENCE_READY', 'CONTROL_SEQUENCE_CORRID']);
  assert.deepEqual(fromPbtxt.state[0].initial_state[0].data_file, 'zeros.bin');
});

test('defaults as Triton: idle limit 1 s, direct when no strategy is named', () => {
  const config = parseModelConfig(parsePbtxt('sequence_batching { }'), 'config.pbtxt').sequence_batching!;
  assert.equal(config.max_sequence_idle_microseconds, 1_000_000);
  assert.equal(config.oldest, undefined);
  assert.deepEqual(config.control_input, []);
});

test('mistakes are named with what was expected', () => {
  assert.match(errorOf({ max_batch_size: 4, dynamic_batching: {}, sequence_batching: {} }), /sequence_batching and dynamic_batching cannot both be set/);
  assert.match(errorOf({ sequence_batching: { direct: {}, oldest: { max_candidate_sequences: 1 } } }), /one strategy: direct \{\} or oldest \{\}, not both/);
  assert.match(errorOf({ sequence_batching: { oldest: {} } }), /max_candidate_sequences/);
  assert.match(
    errorOf({ sequence_batching: { control_input: [{ name: 'S', control: [{ kind: 'CONTROL_SEQUENCE_START' }] }] } }),
    /needs exactly one of int32_false_true, fp32_false_true or bool_false_true, got 0/,
  );
  assert.match(errorOf({ sequence_batching: { control_input: [{ name: 'S', control: [{ kind: 'CONTROL_SEQUENCE_START', int32_false_true: [0] }] }] } }), /2 of them, got 1/);
  assert.match(errorOf({ sequence_batching: { control_input: [{ name: 'C', control: [{ kind: 'CONTROL_SEQUENCE_CORRID', data_type: 'TYPE_FP32' }] }] } }), /takes TYPE_UINT64.*got TYPE_FP32/);
  assert.match(errorOf({ sequence_batching: { control_input: [{ name: 'S', control: [{ kind: 'CONTROL_SEQUENCE_BEGIN', int32_false_true: [0, 1] }] }] } }), /kind/);
  assert.match(
    errorOf({ input: [{ name: 'S', data_type: 'TYPE_INT32', dims: [1] }], sequence_batching: { control_input: [{ name: 'S', control: [{ kind: 'CONTROL_SEQUENCE_START', int32_false_true: [0, 1] }] }] } }),
    /control input 'S' is filled by the sequence batcher: leave it out of 'input'/,
  );
  assert.match(errorOf({ sequence_batching: { state: [{ input_name: 'A', output_name: 'B', data_type: 'TYPE_FP32', dims: [1], initial_state: [{ data_type: 'TYPE_FP32', dims: [1] }] }] } }), /exactly one of zero_data: true or data_file/);
  assert.match(errorOf({ sequence_batching: { state: [{ input_name: 'A', output_name: 'B', data_type: 'TYPE_FP32', dims: [1], initial_state: [{ data_type: 'TYPE_FP32', dims: [1], data_file: '../x' }] }] } }), /relative path inside the model's initial_state folder/);
  assert.match(errorOf({ model_warmup: [{ name: 'w', inputs: { X: { data_type: 'TYPE_FP32', dims: [1], zero_data: true } } }], sequence_batching: {} }), /model_warmup is not supported with sequence_batching/);
  assert.match(errorOf({ response_cache: { enable: true }, sequence_batching: {} }), /response_cache cannot be enabled with sequence_batching/);
});

test("unknown fields are refused with their names, as everywhere in the config; Triton's state-buffer options are accepted", () => {
  assert.match(errorOf({ sequence_batching: { max_sequence_idle_microsecond: 5 } }), /sequence_batching: unknown field 'max_sequence_idle_microsecond' \(did you mean 'max_sequence_idle_microseconds'\?\)/);
  assert.match(errorOf({ sequence_batching: { oldest: { max_candidate_sequences: 2, preferred_batch_sizes: [2] } } }), /unknown field 'preferred_batch_sizes' \(did you mean 'preferred_batch_size'\?\)/);
  assert.match(errorOf({ sequence_batching: { control_input: [{ name: 'S', controls: [] }] } }), /unknown field 'controls' \(did you mean 'control'\?\)/);
  assert.match(
    errorOf({ sequence_batching: { control_input: [{ name: 'S', control: [{ kind: 'CONTROL_SEQUENCE_START', int32_false_true: [0, 1], int32_true_false: [1, 0] }] }] } }),
    /unknown field 'int32_true_false'/,
  );
  assert.match(errorOf({ sequence_batching: { state: [{ input_name: 'A', output_name: 'B', data_type: 'TYPE_FP32', dims: [1], initial_state: [{ data_type: 'TYPE_FP32', dims: [1], zero_data: true, zeros: true }] }] } }), /unknown field 'zeros'/);
  assert.match(errorOf({ sequence_batching: { iterative_sequence: true } }), /iterative_sequence is not supported/);
  const accepted = parseModelConfig(
    { sequence_batching: { iterative_sequence: false, state: [{ input_name: 'A', output_name: 'B', data_type: 'TYPE_FP32', dims: [1], use_same_buffer_for_input_output: true, use_growable_memory: false }] } },
    'config.json',
  );
  assert.equal(accepted.sequence_batching!.state[0].input_name, 'A');
});
