/**
 * Triton's classification extension: instead of the raw output, answer the top `class_count`
 * classes of each batch row as BYTES "score:index:label" (label omitted when the output has none).
 */
import { halfToNumber, type NumericArray } from '../core/datatype.js';
import { invalidArgument } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';

/** Triton's cap on the classes of one row: ranking more would hold the thread that sorts them for long. */
export const MAX_CLASSIFICATION_ELEMENTS = 1_000_000;

/** A score as the output holds it: 64-bit integers stay bigints, whose values doubles cannot all tell apart. */
function scoreAt(tensor: Tensor, index: number): number | bigint {
  const value = (tensor.data as NumericArray)[index];
  if (tensor.datatype === 'FP16') return halfToNumber(value as number);
  return typeof value === 'bigint' ? value : Number(value);
}

const SIX_DECIMALS = 1_000_000n;

/**
 * The text Triton's std::to_string gives: integers as they are; floats as printf's "%f" writes them — every digit of
 * the integer part (no exponent), six decimals of the exact binary value rounded to nearest with a tie to the even
 * digit, "-" for a negative value or zero, and "nan", "inf", "-inf".
 */
function formatScore(score: number | bigint, integral: boolean): string {
  if (typeof score === 'bigint' || integral) return String(score);
  if (Number.isNaN(score)) return 'nan';
  if (!Number.isFinite(score)) return score < 0 ? '-inf' : 'inf';
  // score = mantissa × 2^exponent exactly; scaled by 10^6 it is a ratio of bigints to round.
  const bits = new DataView(new Float64Array([score]).buffer).getBigUint64(0, true);
  const negative = bits >> 63n === 1n;
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const mantissa = biased === 0 ? fraction : fraction | (1n << 52n);
  const exponent = (biased === 0 ? 1 : biased) - 1075;
  let micros: bigint;
  if (exponent >= 0) micros = (mantissa << BigInt(exponent)) * SIX_DECIMALS;
  else {
    const denominator = 1n << BigInt(-exponent);
    const numerator = mantissa * SIX_DECIMALS;
    micros = numerator / denominator;
    const twiceRemainder = 2n * (numerator % denominator);
    if (twiceRemainder > denominator || (twiceRemainder === denominator && micros % 2n === 1n)) micros += 1n;
  }
  const digits = micros.toString().padStart(7, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -6)}.${digits.slice(-6)}`;
}

/** Larger first; equal scores keep the lower index first. */
const descending = (a: number | bigint, b: number | bigint) => (a > b ? -1 : a < b ? 1 : 0);

const INTEGRAL = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);

export function classify(tensor: Tensor, classCount: number, batched: boolean, labels?: readonly string[]): Tensor {
  const rows = batched ? tensor.shape[0] : 1;
  const classes = rows === 0 ? 0 : tensor.data.length / rows;
  if (classes > MAX_CLASSIFICATION_ELEMENTS) {
    throw invalidArgument(
      `classification output tensor too large: ${classes} classes per ${batched ? 'row' : 'output'}, more than the ${MAX_CLASSIFICATION_ELEMENTS} the classification extension ranks; ask for the output itself`,
    );
  }
  const k = Math.min(classCount, classes);
  const data: Buffer[] = [];
  for (let row = 0; row < rows; row++) {
    const base = row * classes;
    const order = Array.from({ length: classes }, (_, index) => index);
    const scores = order.map((index) => scoreAt(tensor, base + index));
    order.sort((a, b) => descending(scores[a], scores[b]) || a - b);
    for (const index of order.slice(0, k)) {
      const label = labels?.[index];
      const score = formatScore(scores[index], INTEGRAL.has(tensor.datatype));
      data.push(Buffer.from(`${score}:${index}${label ? `:${label}` : ''}`));
    }
  }
  return { datatype: 'BYTES', shape: batched ? [rows, k] : [k], data };
}
