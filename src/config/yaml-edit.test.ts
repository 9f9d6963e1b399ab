import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { setYamlValues } from './yaml-edit.js';

const config = [
  '# the model as its author wrote it',
  'max_batch_size: 1   # raised by hand once',
  'input:',
  '  - { name: x, data_type: TYPE_FP32, dims: [1, 28, 28], reshape: { shape: [784] }, format: FORMAT_NONE, optional: false }',
  'output: [{name: y, data_type: TYPE_FP32, dims: [10]}]',
  'instance_group: [ { count: 1, kind: KIND_CPU } ]',
  'parameters:',
  "  intra_op_thread_count: '1'",
  '  note: "kept"',
  '',
].join('\n');

test('values in place are replaced where they stand, and every other line stays as written', () => {
  const edited = setYamlValues(config, [
    { path: ['max_batch_size'], value: 8 },
    { path: ['output'], value: [{ name: 'y', data_type: 'TYPE_FP32', dims: [12] }], flow: true },
    { path: ['instance_group'], value: [{ count: 2, kind: 'KIND_CPU' }], flow: true },
    { path: ['parameters', 'intra_op_thread_count'], value: '2' },
  ]);
  const expected = config
    .replace('max_batch_size: 1 ', 'max_batch_size: 8 ')
    .replace('dims: [10]', 'dims: [12]')
    .replace('[ { count: 1, kind: KIND_CPU } ]', '[ { count: 2, kind: KIND_CPU } ]')
    .replace("intra_op_thread_count: '1'", "intra_op_thread_count: '2'");
  assert.equal(edited, expected);
});

test('new settings join their map at its indentation, or the end of the file when the map is new', () => {
  const edited = setYamlValues(config, [
    { path: ['parameters', 'execution_thread'], value: 'worker' },
    { path: ['dynamic_batching', 'max_queue_delay_microseconds'], value: 500 },
  ]);
  assert.equal(edited, config.replace('  note: "kept"\n', '  note: "kept"\n  execution_thread: worker\n') + 'dynamic_batching:\n  max_queue_delay_microseconds: 500\n');
  const inFlow = setYamlValues('max_batch_size: 2\nparameters: { a: "1" }\n', [{ path: ['parameters', 'b'], value: 'x' }]);
  assert.equal(inFlow, 'max_batch_size: 2\nparameters: { a: "1", b: x }\n');
  const tight = setYamlValues('parameters: {a: "1"}\n', [{ path: ['parameters', 'b'], value: 'x' }]);
  assert.equal(tight, 'parameters: {a: "1", b: x}\n');
  const noNewline = setYamlValues('max_batch_size: 2', [{ path: ['instance_group'], value: [{ count: 1 }], flow: true }]);
  assert.equal(noNewline, 'max_batch_size: 2\ninstance_group: [ { count: 1 } ]\n');
});

test('a layout the edits do not cover is written whole, and reads back as the configuration asked for', () => {
  // A block-style instance_group cannot be replaced line by line: the document is written again.
  const block = 'max_batch_size: 1\ninstance_group:\n  - count: 1\n    kind: KIND_CPU\n';
  const edited = setYamlValues(block, [{ path: ['instance_group'], value: [{ count: 3, kind: 'KIND_CPU' }], flow: true }]);
  assert.deepEqual(parse(edited), { max_batch_size: 1, instance_group: [{ count: 3, kind: 'KIND_CPU' }] });
  const empty = setYamlValues('', [{ path: ['parameters', 'a'], value: '1' }]);
  assert.deepEqual(parse(empty), { parameters: { a: '1' } });
});
