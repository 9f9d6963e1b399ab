/**
 * `npm run bench -- --padding` in parts that need no server: its options, and that the requests it sends and the check
 * it makes of their answers agree (a request's id carries the length its answer must have).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lengthCheck, parsePaddingOptions, requestBodies } from '../bench/padding.js';

test('options: the documented defaults, and a range that is not MIN-MAX refused', () => {
  const options = parsePaddingOptions([]);
  assert.notEqual(options, 'help');
  assert.deepEqual(options !== 'help' && [options.minLength, options.maxLength, options.hidden, options.layers, options.maxBatchSize, options.concurrency], [8, 64, 128, 4, 8, 16]);
  assert.throws(() => parsePaddingOptions(['--lengths', '64-8']), /--lengths expects MIN-MAX with 1 <= MIN <= MAX, got '64-8'/);
});

test("each request's id names its length, and the check holds an answer to it", () => {
  const options = parsePaddingOptions(['--lengths', '3-5', '--hidden', '2']);
  assert.ok(options !== 'help');
  const next = requestBodies(options, 7);
  const check = lengthCheck(2);
  for (let count = 0; count < 20; count++) {
    const request = JSON.parse(next().toString()) as { id: string; inputs: { shape: number[]; data: number[] }[] };
    const length = request.inputs[0].shape[1];
    assert.ok(length >= 3 && length <= 5 && request.id === `L${length}` && request.inputs[0].data.length === length);
    const answer = (shape: number[]) => Buffer.from(JSON.stringify({ id: request.id, outputs: [{ shape, data: Array(shape.reduce((a, b) => a * b, 1)).fill(0) }] }));
    assert.equal(check({}, answer([1, length, 2])), undefined);
    assert.match(check({}, answer([1, length + 1, 2])) ?? '', /expected \[1,\d,2\]/);
  }
});
