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

/**
 * The text Triton's std::to_string gives: integers as they are, floats with six decimals rounded
 * as printf rounds (an exact tie goes to the even digit, where toFixed would round up).
 */
function formatScore(score: number, integral: boolean): string {
  if (integral || !Number.isFinite(score)) return String(score);
  const exact = Math.abs(score).toFixed(100); // a double's decimal expansion is finite; 100 digits covers scores
  const [whole, fraction] = exact.split('.');
  if (fraction[6] === '5' && /^0*$/.test(fraction.slice(7))) {
    const kept = BigInt(whole + fraction.slice(0, 6));
    const rounded = kept % 2n === 0n ? kept : kept + 1n;
    const digits = rounded.toString().padStart(7, '0');
    const text = `${digits.slice(0, -6)}.${digits.slice(-6)}`;
    return score < 0 ? `-${text}` : text;
  }
  return score.toFixed(6);
}

const INTEGRAL = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);

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
      const score = formatScore(scores[index], INTEGRAL.has(tensor.datatype));
      data.push(Buffer.from(`${score}:${index}${label ? `:${label}` : ''}`));
    }
  }
  return { datatype: 'BYTES', shape: batched ? [rows, k] : [k], data };
}
