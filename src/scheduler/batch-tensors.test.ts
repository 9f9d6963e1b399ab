/**
 * Joining requests' tensors into one batch along the first dimension and splitting a batch's
 * outputs back per request: row-major order, several elements per row, numeric, 64-bit integer and
 * BYTES data; and the rule for which requests may share a batch.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bytesElements, PackedBytes } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { concatRows, RaggedBatching, resizeAxis, SequencePadding, sameRowShape, sliceRows, type BatchInputSpec } from './batch-tensors.js';

const fp32 = (shape: number[], values: number[]): Tensor => ({ datatype: 'FP32', shape, data: Float32Array.from(values) });
const int64 = (shape: number[], values: bigint[]): Tensor => ({ datatype: 'INT64', shape, data: BigInt64Array.from(values) });
const bytes = (shape: number[], values: string[]): Tensor => ({
  datatype: 'BYTES',
  shape,
  data: values.map((value) => Buffer.from(value, 'utf8')),
});
const strings = (tensor: Tensor) => bytesElements(tensor.data).map((buffer) => buffer.toString('utf8'));
const packed = (shape: number[], values: string[]): Tensor => ({ datatype: 'BYTES', shape, data: PackedBytes.of(values.map((value) => Buffer.from(value))) });

describe('concatRows', () => {
  it('joins FP32 parts of several rows and several elements per row, in order', () => {
    const a = fp32([1, 3], [1, 2, 3]);
    const b = fp32([2, 3], [4, 5, 6, 7, 8, 9]);
    const c = fp32([1, 3], [10, 11, 12]);
    const joined = concatRows([a, b, c]);
    assert.equal(joined.datatype, 'FP32');
    assert.deepEqual(joined.shape, [4, 3]);
    assert.ok(joined.data instanceof Float32Array);
    assert.deepEqual(Array.from(joined.data as ArrayLike<number>), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // The parts are copied, not aliased.
    (a.data as Float32Array)[0] = 100;
    assert.equal((joined.data as Float32Array)[0], 1);
  });

  it('keeps further dimensions: [1,2,2] + [1,2,2] -> [2,2,2]', () => {
    const joined = concatRows([fp32([1, 2, 2], [1, 2, 3, 4]), fp32([1, 2, 2], [5, 6, 7, 8])]);
    assert.deepEqual(joined.shape, [2, 2, 2]);
    assert.deepEqual([...(joined.data as Float32Array)], [1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('joins INT64 data as a BigInt64Array without losing precision', () => {
    const big = 2n ** 62n + 1n;
    const joined = concatRows([int64([1, 2], [big, -big]), int64([2, 2], [1n, 2n, 3n, -(2n ** 63n)])]);
    assert.equal(joined.datatype, 'INT64');
    assert.deepEqual(joined.shape, [3, 2]);
    assert.ok(joined.data instanceof BigInt64Array);
    assert.deepEqual([...(joined.data as BigInt64Array)], [big, -big, 1n, 2n, 3n, -(2n ** 63n)]);
  });

  it('joins BYTES data as one Buffer list in row order', () => {
    const joined = concatRows([bytes([1, 2], ['a', 'bb']), bytes([2, 2], ['ccc', '', 'é', 'f'])]);
    assert.equal(joined.datatype, 'BYTES');
    assert.deepEqual(joined.shape, [3, 2]);
    assert.ok(Array.isArray(joined.data));
    assert.deepEqual(strings(joined), ['a', 'bb', 'ccc', '', 'é', 'f']);
  });

  it('joins BYTES packed when any part came packed, so a packed request is never split into a Buffer per element', () => {
    const joined = concatRows([packed([1, 2], ['a', 'bb']), bytes([1, 2], ['ccc', '']), packed([1, 2], ['é', 'f'])]);
    assert.deepEqual(joined.shape, [3, 2]);
    assert.ok(joined.data instanceof PackedBytes);
    assert.equal(joined.data.length, 6);
    assert.deepEqual(strings(joined), ['a', 'bb', 'ccc', '', 'é', 'f']);
  });

  it('a single part comes back with the same shape and values', () => {
    const joined = concatRows([fp32([2, 2], [1, 2, 3, 4])]);
    assert.deepEqual(joined.shape, [2, 2]);
    assert.deepEqual([...(joined.data as Float32Array)], [1, 2, 3, 4]);
  });

  it('handles the other numeric types (INT32, UINT8/BOOL, FP64)', () => {
    const i32 = concatRows([
      { datatype: 'INT32', shape: [1, 2], data: Int32Array.from([-1, 2]) },
      { datatype: 'INT32', shape: [1, 2], data: Int32Array.from([2147483647, -2147483648]) },
    ]);
    assert.ok(i32.data instanceof Int32Array);
    assert.deepEqual(Array.from(i32.data as ArrayLike<number>), [-1, 2, 2147483647, -2147483648]);
    const bool = concatRows([
      { datatype: 'BOOL', shape: [1], data: Uint8Array.from([1]) },
      { datatype: 'BOOL', shape: [2], data: Uint8Array.from([0, 1]) },
    ]);
    assert.deepEqual(bool.shape, [3]);
    assert.deepEqual(Array.from(bool.data as ArrayLike<number>), [1, 0, 1]);
    const f64 = concatRows([
      { datatype: 'FP64', shape: [1], data: Float64Array.from([0.1]) },
      { datatype: 'FP64', shape: [1], data: Float64Array.from([1e300]) },
    ]);
    assert.ok(f64.data instanceof Float64Array);
    assert.deepEqual(Array.from(f64.data as ArrayLike<number>), [0.1, 1e300]);
  });
});

describe('sliceRows', () => {
  it('splits FP32 rows of several elements back out', () => {
    const batch = fp32([4, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const first = sliceRows(batch, 0, 1);
    const middle = sliceRows(batch, 1, 2);
    const last = sliceRows(batch, 3, 1);
    assert.deepEqual(first.shape, [1, 3]);
    assert.deepEqual(Array.from(first.data as ArrayLike<number>), [1, 2, 3]);
    assert.deepEqual(middle.shape, [2, 3]);
    assert.deepEqual(Array.from(middle.data as ArrayLike<number>), [4, 5, 6, 7, 8, 9]);
    assert.deepEqual(last.shape, [1, 3]);
    assert.deepEqual(Array.from(last.data as ArrayLike<number>), [10, 11, 12]);
    assert.equal(middle.datatype, 'FP32');
    assert.ok(middle.data instanceof Float32Array);
  });

  it('returns views of the batch, not copies', () => {
    const batch = fp32([2, 2], [1, 2, 3, 4]);
    const second = sliceRows(batch, 1, 1);
    assert.equal((second.data as Float32Array).buffer, (batch.data as Float32Array).buffer);
    (batch.data as Float32Array)[2] = 30;
    assert.deepEqual(Array.from(second.data as ArrayLike<number>), [30, 4]);
  });

  it('splits INT64 rows', () => {
    const batch = int64([3, 2], [1n, 2n, 3n, 4n, 2n ** 62n, -(2n ** 62n)]);
    const tail = sliceRows(batch, 1, 2);
    assert.equal(tail.datatype, 'INT64');
    assert.deepEqual(tail.shape, [2, 2]);
    assert.ok(tail.data instanceof BigInt64Array);
    assert.deepEqual([...(tail.data as BigInt64Array)], [3n, 4n, 2n ** 62n, -(2n ** 62n)]);
  });

  it('splits BYTES rows', () => {
    const batch = bytes([3, 2], ['a', 'b', 'c', 'd', 'e', 'f']);
    const middle = sliceRows(batch, 1, 1);
    assert.equal(middle.datatype, 'BYTES');
    assert.deepEqual(middle.shape, [1, 2]);
    assert.deepEqual(strings(middle), ['c', 'd']);
    assert.deepEqual(strings(sliceRows(batch, 0, 3)), ['a', 'b', 'c', 'd', 'e', 'f']);
  });

  it('splits packed BYTES rows into packed views of the batch', () => {
    const batch = packed([3, 2], ['a', 'bb', '', 'dddd', 'é', 'f']);
    const middle = sliceRows(batch, 1, 1);
    assert.ok(middle.data instanceof PackedBytes);
    assert.deepEqual(middle.shape, [1, 2]);
    assert.deepEqual(strings(middle), ['', 'dddd']);
    assert.equal((middle.data as PackedBytes).bytes.buffer, (batch.data as PackedBytes).bytes.buffer, 'a view, not a copy');
    assert.deepEqual(strings(sliceRows(batch, 2, 1)), ['é', 'f']);
    assert.deepEqual(strings(sliceRows(batch, 0, 3)), ['a', 'bb', '', 'dddd', 'é', 'f']);
  });

  it('keeps further dimensions', () => {
    const batch = fp32([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
    const second = sliceRows(batch, 1, 1);
    assert.deepEqual(second.shape, [1, 2, 2]);
    assert.deepEqual(Array.from(second.data as ArrayLike<number>), [5, 6, 7, 8]);
  });

  it('inverts concatRows for every part', () => {
    const parts = [fp32([1, 2], [1, 2]), fp32([3, 2], [3, 4, 5, 6, 7, 8]), fp32([2, 2], [9, 10, 11, 12])];
    const joined = concatRows(parts);
    let row = 0;
    for (const part of parts) {
      const back = sliceRows(joined, row, part.shape[0]);
      assert.deepEqual(back.shape, part.shape);
      assert.deepEqual(Array.from(back.data as ArrayLike<number>), Array.from(part.data as ArrayLike<number>));
      row += part.shape[0];
    }
    const textParts = [bytes([2], ['x', 'y']), bytes([1], ['z'])];
    const text = concatRows(textParts);
    assert.deepEqual(strings(sliceRows(text, 0, 2)), ['x', 'y']);
    assert.deepEqual(strings(sliceRows(text, 2, 1)), ['z']);
  });
});

describe('sameRowShape', () => {
  it('is true when every input agrees on datatype and on all but the first dimension', () => {
    assert.equal(sameRowShape({ INPUT0: fp32([1, 3], [1, 2, 3]) }, { INPUT0: fp32([4, 3], new Array(12).fill(0)) }), true);
    assert.equal(
      sameRowShape(
        { A: fp32([1, 2], [1, 2]), B: bytes([1], ['x']) },
        { B: bytes([3], ['x', 'y', 'z']), A: fp32([3, 2], [1, 2, 3, 4, 5, 6]) },
      ),
      true,
    );
    assert.equal(sameRowShape({ A: fp32([2], [1, 2]) }, { A: fp32([5], [1, 2, 3, 4, 5]) }), true);
  });

  it('is false when a non-batch dimension differs', () => {
    assert.equal(sameRowShape({ INPUT0: fp32([1, 3], [1, 2, 3]) }, { INPUT0: fp32([1, 5], [1, 2, 3, 4, 5]) }), false);
    assert.equal(sameRowShape({ INPUT0: fp32([1, 2, 2], [1, 2, 3, 4]) }, { INPUT0: fp32([1, 4, 1], [1, 2, 3, 4]) }), false);
  });

  it('is false when the rank differs', () => {
    assert.equal(sameRowShape({ INPUT0: fp32([1, 4], [1, 2, 3, 4]) }, { INPUT0: fp32([1, 4, 1], [1, 2, 3, 4]) }), false);
  });

  it('is false when the datatype differs', () => {
    const asInt: Tensor = { datatype: 'INT32', shape: [1, 3], data: Int32Array.from([1, 2, 3]) };
    assert.equal(sameRowShape({ INPUT0: fp32([1, 3], [1, 2, 3]) }, { INPUT0: asInt }), false);
  });

  it('is false when the input names differ, in either direction', () => {
    const x = fp32([1, 1], [1]);
    assert.equal(sameRowShape({ A: x }, { B: x }), false);
    assert.equal(sameRowShape({ A: x }, { A: x, B: x }), false);
    assert.equal(sameRowShape({ A: x, B: x }, { A: x }), false);
  });

  it('is false when only one of several inputs differs', () => {
    assert.equal(
      sameRowShape({ A: fp32([1, 2], [1, 2]), B: fp32([1, 2], [1, 2]) }, { A: fp32([1, 2], [1, 2]), B: fp32([1, 3], [1, 2, 3]) }),
      false,
    );
  });
});

describe('RaggedBatching', () => {
  const spec = (kind: BatchInputSpec['kind'], datatype: BatchInputSpec['datatype'] = 'INT32'): BatchInputSpec => ({ kind, target: kind, datatype, source: 'x' });
  // Three requests of 2, 0 and 3 elements, the last one of two rows [2, 1].
  const parts = [
    { inputs: { x: fp32([1, 2], [1, 2]) }, rows: 1 },
    { inputs: { x: fp32([1, 0], []) }, rows: 1 },
    { inputs: { x: fp32([2, 1], [3, 4]) }, rows: 2 },
  ];
  const values = (tensor: Tensor) => Array.from(tensor.data as Int32Array);

  it('concatenates a ragged input element after element into one flat tensor, whatever the shapes', () => {
    const joined = new RaggedBatching(new Set(['x']), []).join(parts);
    assert.deepEqual(joined.x.shape, [4]);
    assert.deepEqual(Array.from(joined.x.data as Float32Array), [1, 2, 3, 4]);
  });

  it('computes each batch input kind as Triton does: per request for counts, per row for item shapes', () => {
    const batching = new RaggedBatching(
      new Set(['x']),
      (['BATCH_ELEMENT_COUNT', 'BATCH_ACCUMULATED_ELEMENT_COUNT', 'BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO', 'BATCH_MAX_ELEMENT_COUNT_AS_SHAPE', 'BATCH_ITEM_SHAPE', 'BATCH_ITEM_SHAPE_FLATTEN'] as const).map((kind) => spec(kind)),
    );
    const joined = batching.join(parts);
    assert.deepEqual([joined.BATCH_ELEMENT_COUNT.shape, values(joined.BATCH_ELEMENT_COUNT)], [[3], [2, 0, 2]]);
    assert.deepEqual([joined.BATCH_ACCUMULATED_ELEMENT_COUNT.shape, values(joined.BATCH_ACCUMULATED_ELEMENT_COUNT)], [[3], [2, 2, 4]]);
    assert.deepEqual([joined.BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO.shape, values(joined.BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO)], [[4], [0, 2, 2, 4]]);
    assert.deepEqual(joined.BATCH_MAX_ELEMENT_COUNT_AS_SHAPE.shape, [2]);
    assert.deepEqual([joined.BATCH_ITEM_SHAPE.shape, values(joined.BATCH_ITEM_SHAPE)], [[4, 1], [2, 0, 1, 1]]);
    assert.deepEqual([joined.BATCH_ITEM_SHAPE_FLATTEN.shape, values(joined.BATCH_ITEM_SHAPE_FLATTEN)], [[4], [2, 0, 1, 1]]);
  });

  it('writes a batch input as FP32 when the config asks for it', () => {
    const joined = new RaggedBatching(new Set(['x']), [spec('BATCH_ACCUMULATED_ELEMENT_COUNT', 'FP32')]).join(parts);
    assert.equal(joined.BATCH_ACCUMULATED_ELEMENT_COUNT.datatype, 'FP32');
    assert.ok(joined.BATCH_ACCUMULATED_ELEMENT_COUNT.data instanceof Float32Array);
    assert.deepEqual(Array.from(joined.BATCH_ACCUMULATED_ELEMENT_COUNT.data as Float32Array), [2, 2, 4]);
  });

  it('stacks inputs that are not ragged by rows, as a plain batch', () => {
    const joined = new RaggedBatching(new Set(['x']), []).join([
      { inputs: { x: fp32([1, 1], [5]), y: fp32([1, 2], [1, 2]) }, rows: 1 },
      { inputs: { x: fp32([1, 3], [6, 7, 8]), y: fp32([1, 2], [3, 4]) }, rows: 1 },
    ]);
    assert.deepEqual(joined.y.shape, [2, 2]);
    assert.deepEqual(joined.x.shape, [4]);
  });

  it('joins a stacked sample as requests of one row each', () => {
    const joined = new RaggedBatching(new Set(['x']), [spec('BATCH_ELEMENT_COUNT')]).joinRows({ x: fp32([3, 2], [1, 2, 3, 4, 5, 6]) }, 3);
    assert.deepEqual(joined.x.shape, [6]);
    assert.deepEqual(values(joined.BATCH_ELEMENT_COUNT), [2, 2, 2]);
  });

  it('lets requests that differ only in a ragged input share a batch', () => {
    const short = { x: fp32([1, 2], [1, 2]) };
    const long = { x: fp32([1, 5], [1, 2, 3, 4, 5]) };
    assert.equal(sameRowShape(short, long), false);
    assert.equal(sameRowShape(short, long, new Set(['x'])), true);
  });
});

describe('SequencePadding', () => {
  const padding = SequencePadding.of({
    input: [
      { name: 'ids', dims: [-1], pad_value: 7 },
      { name: 'mask', dims: [-1], pad_value: 0 },
      { name: 'fixed', dims: [2] },
    ],
    output: [
      { name: 'hidden', data_type: 'TYPE_FP32', dims: [-1, 2], padded: true },
      { name: 'topk', data_type: 'TYPE_INT64', dims: [-1], padded: false },
      { name: 'logits', data_type: 'TYPE_FP32', dims: [3] },
    ],
  })!;
  const request = (ids: bigint[]) => ({
    ids: { datatype: 'INT64' as const, shape: [1, ids.length], data: BigInt64Array.from(ids) },
    mask: { datatype: 'INT64' as const, shape: [1, ids.length], data: new BigInt64Array(ids.length).fill(1n) },
    fixed: { datatype: 'FP32' as const, shape: [1, 2], data: Float32Array.of(1, 2) },
  });

  it('lets requests differing only in a padded length share a batch', () => {
    assert.equal(sameRowShape(request([1n, 2n]), request([3n]), undefined, padding), true);
    assert.equal(sameRowShape(request([1n, 2n]), request([3n])), false, 'without padding, lengths must agree');
    const otherFixed = { ...request([3n]), fixed: { datatype: 'FP32' as const, shape: [1, 3], data: Float32Array.of(1, 2, 3) } };
    assert.equal(sameRowShape(request([1n]), otherFixed, undefined, padding), false, 'the other dims still must');
  });

  it('pads each padded input at its end with its own value, and stacks the rest as they are', () => {
    const joined = padding.join([request([1n, 2n, 3n]), request([4n])], 3);
    assert.deepEqual(joined.ids.shape, [2, 3]);
    assert.deepEqual(Array.from(joined.ids.data as BigInt64Array), [1n, 2n, 3n, 4n, 7n, 7n]);
    assert.deepEqual(Array.from(joined.mask.data as BigInt64Array), [1n, 1n, 1n, 1n, 0n, 0n]);
    assert.deepEqual(Array.from(joined.fixed.data as Float32Array), [1, 2, 1, 2]);
    assert.equal(padding.lengthOf(request([1n, 2n])), 2);
  });

  it("cuts an output's variable dimension of the batch's length back to the request's, and leaves fixed ones", () => {
    const hidden: Tensor = { datatype: 'FP32', shape: [1, 3, 2], data: Float32Array.of(1, -1, 2, -2, 0, 0) };
    assert.deepEqual(padding.cut('hidden', hidden, 3, 2), { datatype: 'FP32', shape: [1, 2, 2], data: Float32Array.of(1, -1, 2, -2) });
    const logits: Tensor = { datatype: 'FP32', shape: [1, 3], data: Float32Array.of(1, 2, 3) };
    assert.equal(padding.cut('logits', logits, 3, 1), logits, 'a fixed dim of the same size is not a length');
    const topk: Tensor = { datatype: 'INT64', shape: [1, 3], data: BigInt64Array.of(4n, 5n, 6n) };
    assert.equal(padding.cut('topk', topk, 3, 1), topk, 'a -1 the config says is not padded is left, whatever its size');
  });

  it('resizeAxis pads or cuts any axis of a row-major tensor', () => {
    const grid: Tensor = { datatype: 'INT32', shape: [2, 2, 2], data: Int32Array.of(1, 2, 3, 4, 5, 6, 7, 8) };
    assert.deepEqual(Array.from(resizeAxis(grid, 1, 3, 9).data as Int32Array), [1, 2, 3, 4, 9, 9, 5, 6, 7, 8, 9, 9]);
    assert.deepEqual(Array.from(resizeAxis(grid, 2, 1, 0).data as Int32Array), [1, 3, 5, 7]);
  });

  it('refuses an output with a variable dimension that does not say whether it follows the padded length (one the model file added)', () => {
    assert.throws(
      () => SequencePadding.of({ input: [{ name: 'ids', dims: [-1], pad_value: 0 }], output: [{ name: 'tokens', data_type: 'TYPE_INT64', dims: [-1] }] }),
      /output 'tokens' has a -1 dimension: with pad_value on an input, list it in the config and say whether it follows the padded length/,
    );
  });
});
