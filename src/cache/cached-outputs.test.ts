import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytesElements, numberToHalf } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { decodeEntry, encodeOutputs } from './cached-outputs.js';

function plain(tensor: Tensor) {
  const data = tensor.datatype === 'BYTES' ? bytesElements(tensor.data).map((element) => element.toString('hex')) : Array.from(tensor.data as ArrayLike<unknown>);
  return { datatype: tensor.datatype, shape: tensor.shape, data, type: tensor.datatype === 'BYTES' ? 'BYTES' : tensor.data.constructor.name };
}

test('outputs of every kind survive encode/decode exactly: FP32, INT64, BOOL, BYTES, FP16', () => {
  const outputs: Record<string, Tensor> = {
    // An odd-sized BOOL first, so the numeric outputs after it start at unaligned offsets in the buffer.
    flags: { datatype: 'BOOL', shape: [1, 3], data: new Uint8Array([1, 0, 1]) },
    probs: { datatype: 'FP32', shape: [1, 4], data: new Float32Array([0.1, -2.5, Number.NaN, Infinity]) },
    ids: { datatype: 'INT64', shape: [2], data: new BigInt64Array([-(2n ** 62n), 9007199254740993n]) },
    text: { datatype: 'BYTES', shape: [3], data: [Buffer.from('héllo'), Buffer.alloc(0), Buffer.from([0, 255, 1])] },
    half: { datatype: 'FP16', shape: [3], data: new Uint16Array([numberToHalf(1.5), numberToHalf(-0.25), numberToHalf(65504)]) },
    empty: { datatype: 'FP32', shape: [0, 4], data: new Float32Array(0) },
  };
  const encoded = encodeOutputs(outputs);
  const decoded = decodeEntry(encoded).outputs;
  assert.deepEqual(Object.keys(decoded), Object.keys(outputs), 'names and their order');
  for (const [name, tensor] of Object.entries(outputs)) {
    assert.deepEqual(plain(decoded[name]), plain(tensor), name);
  }
  assert.ok(Number.isNaN((decoded.probs.data as Float32Array)[2]));
  // And again: decoding must not depend on the buffer's alignment or on a copy of it.
  const shifted = Buffer.concat([Buffer.alloc(1), encoded]).subarray(1);
  assert.deepEqual(
    Object.fromEntries(Object.entries(decodeEntry(shifted).outputs).map(([name, tensor]) => [name, plain(tensor)])),
    Object.fromEntries(Object.entries(outputs).map(([name, tensor]) => [name, plain(tensor)])),
  );
});

test('encoding copies: changing the source after encoding does not change what was cached', () => {
  const data = new Float32Array([1, 2, 3]);
  const encoded = encodeOutputs({ y: { datatype: 'FP32', shape: [3], data } });
  data[0] = 42;
  assert.deepEqual(Array.from(decodeEntry(encoded).outputs.y.data as Float32Array), [1, 2, 3]);
});

test('decoded outputs never share memory with the cached buffer, whatever its alignment', () => {
  // Output names of every length mod 4 put the numeric payload at every alignment.
  for (const name of ['Y', 'YY', 'YYY', 'YYYY']) {
    const cachedBuffer = encodeOutputs({
      [name]: { datatype: 'FP32', shape: [2], data: new Float32Array([1, 2]) },
      ids: { datatype: 'INT64', shape: [1], data: new BigInt64Array([7n]) },
      text: { datatype: 'BYTES', shape: [1], data: [Buffer.from('abc')] },
    });
    const snapshot = Buffer.from(cachedBuffer);
    const first = decodeEntry(cachedBuffer).outputs;
    (first[name].data as Float32Array)[0] = 99;
    (first.ids.data as BigInt64Array)[0] = -1n;
    bytesElements(first.text.data)[0][0] = 0x7a;
    assert.ok(cachedBuffer.equals(snapshot), `output '${name}': changing a decoded answer changed the cached bytes`);
    const second = decodeEntry(cachedBuffer).outputs;
    assert.deepEqual(Array.from(second[name].data as Float32Array), [1, 2]);
    assert.deepEqual(Array.from(second.ids.data as BigInt64Array), [7n]);
    assert.equal(bytesElements(second.text.data)[0].toString(), 'abc');
  }
});

test('no outputs encode to a small buffer and decode to none', () => {
  assert.deepEqual(decodeEntry(encodeOutputs({})).outputs, {});
});

test('annotations ride with the outputs, and an entry written without them reads as before', () => {
  const outputs = { y: { datatype: 'FP32' as const, shape: [1], data: Float32Array.of(2) } };
  const annotated = decodeEntry(encodeOutputs(outputs, { ood: [{ score: 3.5, out_of_distribution: true }] }));
  assert.deepEqual(annotated.annotations, { ood: [{ score: 3.5, out_of_distribution: true }] });
  assert.deepEqual(Array.from(annotated.outputs.y.data as Float32Array), [2]);
  const plain = decodeEntry(encodeOutputs(outputs));
  assert.equal(plain.annotations, undefined);
  assert.deepEqual(Array.from(plain.outputs.y.data as Float32Array), [2]);
});
