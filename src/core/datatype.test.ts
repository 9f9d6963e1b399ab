/**
 * The sliced BYTES codecs: the same elements as decoding or encoding in one go, with the event
 * loop given turns on the way, and a buffer that may be transferred to a worker thread.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeBytesElements, decodeBytesElementsInSlices, encodeBytesElements, encodeBytesElementsInSlices } from './datatype.js';

const ELEMENTS = 500_000;
const elements = Array.from({ length: ELEMENTS }, (_, index) => Buffer.from(index % 7 === 0 ? '' : `élément ${index}`, 'utf8'));

/** Runs `work`, counting the event loop turns other callbacks got while it ran. */
async function turnsDuring<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let running = true;
  const tick = () => {
    if (!running) return;
    turns += 1;
    setImmediate(tick);
  };
  setImmediate(tick);
  const result = await work();
  running = false;
  return { result, turns };
}

test('decoding in slices gives the elements of decoding in one go, and lets the event loop run meanwhile', async () => {
  const bytes = encodeBytesElements(elements);
  const { result, turns } = await turnsDuring(() => decodeBytesElementsInSlices(bytes));
  assert.deepEqual(result, decodeBytesElements(bytes));
  assert.ok(turns > 0, `the event loop had ${turns} turns while ${ELEMENTS} elements were decoded`);
});

test('decoding in slices refuses malformed bytes and stops past the limit, as decoding in one go does', async () => {
  const bytes = encodeBytesElements(elements);
  assert.equal(await decodeBytesElementsInSlices(bytes.subarray(0, bytes.length - 1)), undefined);
  assert.equal((await decodeBytesElementsInSlices(bytes, 10))!.length, 11);
});

test('encoding in slices gives the bytes of encoding in one go, in a buffer of its own that a worker can take', async () => {
  const { result, turns } = await turnsDuring(() => encodeBytesElementsInSlices(elements));
  assert.ok(result.equals(encodeBytesElements(elements)));
  assert.ok(turns > 0, `the event loop had ${turns} turns while ${ELEMENTS} elements were encoded`);
  const small = await encodeBytesElementsInSlices([Buffer.from('a')]);
  assert.equal(small.buffer.byteLength, small.byteLength, 'not a slice of the shared pool');
});
