/**
 * Packed BYTES (one buffer, length-prefixed elements) and the work over many elements done in
 * slices: the same elements as the one-go codecs, with the event loop given turns on the way.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countBytesElements, decodeBytesElements, encodeBytesElements, findIndexInSlices, packedBytesInSlices, PackedBytes } from './datatype.js';

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

test('packed elements read back as the elements they were packed from, by index, in slices and joined', () => {
  const packed = PackedBytes.of(elements);
  assert.equal(packed.length, ELEMENTS);
  assert.ok(packed.bytes.equals(encodeBytesElements(elements)));
  assert.deepEqual(packed.elements(), elements);
  assert.deepEqual(packed.element(7), Buffer.alloc(0));
  assert.equal(packed.element(ELEMENTS - 1).toString('utf8'), `élément ${ELEMENTS - 1}`);
  assert.deepEqual(packed.slice(10, 13).elements(), elements.slice(10, 13));
  assert.deepEqual(packed.slice(5, 5).elements(), []);
  const cursor = packed.cursor();
  for (const expected of elements.slice(0, 9)) {
    cursor.next();
    assert.deepEqual(packed.bytes.subarray(cursor.start, cursor.end), expected);
  }
  const joined = PackedBytes.concat([packed.slice(0, 3), PackedBytes.of([Buffer.from('x')]), packed.slice(3, 4)]);
  assert.deepEqual(joined.elements(), [...elements.slice(0, 3), Buffer.from('x'), elements[3]]);
  const copy = packed.slice(1, 2).copy();
  assert.notEqual(copy.bytes.buffer, packed.bytes.buffer);
  assert.deepEqual(copy.elements(), [elements[1]]);
});

test('counting elements allocates nothing, refuses malformed bytes and stops past the limit', () => {
  const bytes = encodeBytesElements(elements);
  assert.equal(countBytesElements(bytes), ELEMENTS);
  assert.equal(countBytesElements(bytes.subarray(0, bytes.length - 1)), -1, 'the last element is cut short');
  assert.equal(countBytesElements(Buffer.from([1, 0])), -1, 'a length prefix cut short');
  assert.equal(countBytesElements(bytes, 10), 11);
  assert.equal(countBytesElements(Buffer.alloc(0)), 0);
  assert.deepEqual(decodeBytesElements(bytes, 10), elements.slice(0, 11));
});

test('finding an index in slices finds what finding in one go finds, and lets the event loop run meanwhile', async () => {
  const { result, turns } = await turnsDuring(() => findIndexInSlices(ELEMENTS, (index) => elements[index].length === 0 && index > 400_000));
  assert.equal(result, elements.findIndex((element, index) => element.length === 0 && index > 400_000));
  assert.ok(turns > 0, `the event loop had ${turns} turns while ${ELEMENTS} elements were searched`);
  assert.equal(await findIndexInSlices(3, () => false), -1);
});

test('packing in slices gives the bytes of packing in one go, in a buffer of its own that a worker can take; packed data as it is', async () => {
  const { result, turns } = await turnsDuring(() => packedBytesInSlices(elements));
  assert.ok(result.equals(encodeBytesElements(elements)));
  assert.ok(turns > 0, `the event loop had ${turns} turns while ${ELEMENTS} elements were packed`);
  const small = await packedBytesInSlices([Buffer.from('a')]);
  assert.equal(small.buffer.byteLength, small.byteLength, 'not a slice of the shared pool');
  const packed = PackedBytes.of([Buffer.from('b')]);
  assert.equal(await packedBytesInSlices(packed), packed.bytes);
});
