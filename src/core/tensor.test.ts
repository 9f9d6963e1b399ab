import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NereidError } from './errors.js';
import { MAX_BYTES_ELEMENTS, tensorDataFromBytes, tensorDataFromJson } from './tensor.js';

const invalid = (pattern: RegExp) => (error: unknown) =>
  error instanceof NereidError && error.code === 'INVALID_ARGUMENT' && pattern.test(error.message);

test('BYTES binary data with more elements than the shape holds stops decoding at once', () => {
  // 64 MB of zero-length elements would be 16 million Buffer objects; only two are decoded before the refusal. The data
  // ends in two stray bytes, which only a decoder that read on to the end would find (and refuse as malformed instead).
  const overlong = Buffer.alloc(64_000_002);
  assert.throws(() => tensorDataFromBytes('x', 'BYTES', [1], overlong, 'binary_data_size'), invalid(/holds 1 elements, but its binary data holds more than 1$/));
});

test('BYTES binary data too short for the shape is refused before decoding', () => {
  assert.throws(() => tensorDataFromBytes('x', 'BYTES', [3], Buffer.alloc(8), 'binary_data_size'), invalid(/hold at most 2/));
});

test('BYTES inputs are capped in element count, binary or JSON', () => {
  const count = MAX_BYTES_ELEMENTS + 1;
  assert.throws(() => tensorDataFromBytes('x', 'BYTES', [count], Buffer.alloc(4 * count), 'binary_data_size'), invalid(/at most 1048576 are accepted/));
  assert.throws(() => tensorDataFromJson('x', 'BYTES', Array(count).fill('')), invalid(/at most 1048576 are accepted/));
});

test('absurdly nested JSON data is a client error, not a crash', () => {
  let nested: unknown[] = [1];
  for (let depth = 0; depth < 200_000; depth++) nested = [nested];
  assert.throws(() => tensorDataFromJson('x', 'FP32', nested), invalid(/nested too deeply/));
});
