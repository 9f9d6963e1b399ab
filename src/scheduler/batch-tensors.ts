/**
 * Joining requests into one batch tensor along the first dimension, and splitting the batch's
 * outputs back, row-major, without copying on the way out.
 */
import { allocateTypedArray, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';

/** Requests can share a batch only when every input agrees on datatype and on all but the first dimension. */
export function sameRowShape(a: Record<string, Tensor>, b: Record<string, Tensor>): boolean {
  const names = Object.keys(a);
  if (names.length !== Object.keys(b).length) return false;
  return names.every((name) => {
    const x = a[name];
    const y = b[name];
    return (
      y !== undefined &&
      x.datatype === y.datatype &&
      x.shape.length === y.shape.length &&
      x.shape.every((dim, index) => index === 0 || dim === y.shape[index])
    );
  });
}

export function concatRows(parts: readonly Tensor[]): Tensor {
  const first = parts[0];
  const rows = parts.reduce((sum, part) => sum + part.shape[0], 0);
  const shape = [rows, ...first.shape.slice(1)];
  if (first.datatype === 'BYTES') {
    return { datatype: 'BYTES', shape, data: parts.flatMap((part) => part.data as Buffer[]) };
  }
  const length = parts.reduce((sum, part) => sum + part.data.length, 0);
  const data = allocateTypedArray(first.datatype, length);
  let offset = 0;
  for (const part of parts) {
    (data as Uint8Array).set(part.data as Uint8Array, offset);
    offset += part.data.length;
  }
  return { datatype: first.datatype, shape, data };
}

export function sliceRows(tensor: Tensor, startRow: number, rows: number): Tensor {
  const totalRows = tensor.shape[0];
  const perRow = totalRows === 0 ? 0 : tensor.data.length / totalRows;
  const start = startRow * perRow;
  const end = start + rows * perRow;
  const data =
    tensor.datatype === 'BYTES' ? (tensor.data as Buffer[]).slice(start, end) : (tensor.data as NumericArray).subarray(start, end);
  return { datatype: tensor.datatype, shape: [rows, ...tensor.shape.slice(1)], data };
}

/** What a request's inputs hold in memory while it waits. */
export function bytesOf(inputs: Record<string, Tensor>): number {
  let bytes = 0;
  for (const name in inputs) {
    const data = inputs[name].data;
    if (Array.isArray(data)) for (const element of data) bytes += element.length;
    else bytes += data.byteLength;
  }
  return bytes;
}
