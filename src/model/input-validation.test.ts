/**
 * The request checks a model's config implies beyond shapes and types: inputs padded together (pad_value) are one
 * sequence, so a request's token ids and attention mask must agree in length.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseModelConfig, type CompletedModelConfig } from '../config/model-config.js';
import { RequestValidator } from './input-validation.js';

const config = parseModelConfig(
  {
    name: 'encoder',
    max_batch_size: 4,
    input: [
      { name: 'input_ids', data_type: 'TYPE_INT64', dims: [-1], pad_value: 0 },
      { name: 'attention_mask', data_type: 'TYPE_INT64', dims: [-1], pad_value: 0 },
    ],
    output: [{ name: 'logits', data_type: 'TYPE_FP32', dims: [2] }],
  },
  'config.json',
) as CompletedModelConfig;

test('inputs padded together must agree in length within a request', () => {
  const validator = new RequestValidator(config);
  const request = (ids: number, mask: number) => ({
    model: 'encoder',
    inputs: [
      { name: 'input_ids', datatype: 'INT64', shape: [1, ids], data: Array(ids).fill(1) },
      { name: 'attention_mask', datatype: 'INT64', shape: [1, mask], data: Array(mask).fill(1) },
    ],
  });
  assert.equal(validator.check(request(3, 3) as never).batchSize, 1);
  assert.throws(
    () => validator.check(request(3, 4) as never),
    /input 'attention_mask' has length 4 but input 'input_ids' has 3: inputs padded together \(pad_value\) are one sequence, of one length in a request/,
  );
});

test("a library caller's request without inputs, or with a value where data belongs, is told what arrived once, not 'undefined undefined'", () => {
  const validator = new RequestValidator(config);
  assert.throws(() => validator.check({ model: 'encoder' } as never), /^NereidError: the request's inputs must be an array of \{ name, datatype, shape, data \}, got undefined$/);
  assert.throws(() => validator.check({ model: 'encoder', inputs: 'ids' } as never), /, got string "ids"$/);
  assert.throws(() => validator.check(null as never), /^NereidError: the request must be an object \{ model, inputs \}, got null$/);
});
