/**
 * Triton's classification extension: instead of the raw output, answer the top `class_count`
 * classes of each batch row as BYTES "score:index:label" (label omitted when the output has none).
 */
import { halfToNumber, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';

function scoreAt(tensor: Tensor, index: number): number {
  const value = (tensor.data as NumericArray)[index];
  if (tensor.datatype === 'FP16') return halfToNumber(value as number);
  return Number(value);
}

/** Same text as Triton's std::to_string(float): six decimals. */
function formatScore(score: number): string {
  return score.toFixed(6);
}

export function classify(tensor: Tensor, classCount: number, batched: boolean, labels?: readonly string[]): Tensor {
  const rows = batched ? tensor.shape[0] : 1;
  const classes = rows === 0 ? 0 : tensor.data.length / rows;
  const k = Math.min(classCount, classes);
  const data: Buffer[] = [];
  for (let row = 0; row < rows; row++) {
    const base = row * classes;
    const order = Array.from({ length: classes }, (_, index) => index);
    const scores = order.map((index) => scoreAt(tensor, base + index));
    order.sort((a, b) => scores[b] - scores[a] || a - b);
    for (const index of order.slice(0, k)) {
      const label = labels?.[index];
      data.push(Buffer.from(`${formatScore(scores[index])}:${index}${label !== undefined ? `:${label}` : ''}`));
    }
  }
  return { datatype: 'BYTES', shape: batched ? [rows, k] : [k], data };
}
