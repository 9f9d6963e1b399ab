import {
  allocateTypedArray,
  halfToNumber,
  numberToHalf,
  type Datatype,
  type NumericArray,
  type TensorData,
} from './datatype.js';
import { invalidArgument } from './errors.js';

export interface Tensor {
  datatype: Datatype;
  shape: number[];
  data: TensorData;
}

const INTEGER_RANGE: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
};

/** V2 JSON allows nested row-major arrays or a flat one; both flatten to the same order. */
function flatten(values: unknown[]): unknown[] {
  return values.some(Array.isArray) ? (values.flat(Infinity) as unknown[]) : values;
}

/**
 * Converts V2 JSON `data` to tensor contents, checking every element against the datatype so that
 * a bad value is reported by position instead of silently becoming NaN or wrapping around.
 */
export function tensorDataFromJson(name: string, datatype: Datatype, values: unknown): TensorData {
  if (!Array.isArray(values)) throw invalidArgument(`input '${name}': 'data' must be an array of ${datatype} values`);
  const flat = flatten(values);
  const bad = (index: number, expected: string) =>
    invalidArgument(
      `input '${name}': element ${index} is ${JSON.stringify(flat[index])}, expected ${expected} for datatype ${datatype}`,
    );
  if (datatype === 'BYTES') {
    return flat.map((value, index) => {
      if (typeof value !== 'string') throw bad(index, 'a string');
      return Buffer.from(value, 'utf8');
    });
  }
  const data = allocateTypedArray(datatype, flat.length);
  if (datatype === 'BOOL') {
    flat.forEach((value, index) => {
      if (typeof value !== 'boolean') throw bad(index, 'true or false');
      data[index] = value ? 1 : 0;
    });
    return data;
  }
  if (datatype === 'INT64' || datatype === 'UINT64') {
    const big = data as BigInt64Array | BigUint64Array;
    const min = datatype === 'INT64' ? -(2n ** 63n) : 0n;
    const max = datatype === 'INT64' ? 2n ** 63n - 1n : 2n ** 64n - 1n;
    flat.forEach((value, index) => {
      const asBig = typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : typeof value === 'string' && /^-?\d+$/.test(value) ? BigInt(value) : undefined;
      if (asBig === undefined || asBig < min || asBig > max) throw bad(index, 'an integer in range');
      big[index] = asBig;
    });
    return data;
  }
  const range = INTEGER_RANGE[datatype];
  const numbers = data as Exclude<NumericArray, BigInt64Array | BigUint64Array>;
  flat.forEach((value, index) => {
    if (typeof value !== 'number') throw bad(index, 'a number');
    if (range && (!Number.isInteger(value) || value < range[0] || value > range[1])) {
      throw bad(index, `an integer in [${range[0]}, ${range[1]}]`);
    }
    numbers[index] = datatype === 'FP16' ? numberToHalf(value) : value;
  });
  return data;
}

/** The JSON form of tensor contents: flat, row-major, as Triton answers. */
export function tensorDataToJson(datatype: Datatype, data: TensorData): unknown[] {
  if (datatype === 'BYTES') return (data as Buffer[]).map((element) => element.toString('utf8'));
  if (datatype === 'BOOL') return Array.from(data as Uint8Array, (value) => value !== 0);
  if (datatype === 'FP16') return Array.from(data as Uint16Array, halfToNumber);
  if (datatype === 'INT64' || datatype === 'UINT64') {
    return Array.from(data as BigInt64Array, (value) => Number(value));
  }
  return Array.from(data as Exclude<NumericArray, BigInt64Array | BigUint64Array>);
}

export function describeShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}
