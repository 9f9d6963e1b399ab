/**
 * Joining requests into one batch tensor along the first dimension, and splitting the batch's
 * outputs back, row-major, without copying on the way out; for ragged inputs, joining their
 * elements flat and computing the batch inputs that say where each request's lie.
 */
import type { BatchInputConfig } from '../config/model-config.js';
import { allocateTypedArray, elementCount, PackedBytes, packedBytes, type BytesData, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';

/**
 * Requests can share a batch only when every input agrees on datatype and on all but the first
 * dimension, except a ragged input's dimensions (see RaggedBatching) and a padded input's length (SequencePadding).
 */
export function sameRowShape(a: Record<string, Tensor>, b: Record<string, Tensor>, ragged?: ReadonlySet<string>, padding?: SequencePadding): boolean {
  const names = Object.keys(a);
  if (names.length !== Object.keys(b).length) return false;
  return names.every((name) => {
    const x = a[name];
    const y = b[name];
    const paddedAxis = padding?.inputs.get(name)?.axis;
    return (
      y !== undefined &&
      x.datatype === y.datatype &&
      x.shape.length === y.shape.length &&
      (ragged?.has(name) || x.shape.every((dim, index) => index === 0 || index === paddedAxis || dim === y.shape[index]))
    );
  });
}

export function concatRows(parts: readonly Tensor[]): Tensor {
  const first = parts[0];
  const rows = parts.reduce((sum, part) => sum + part.shape[0], 0);
  const shape = [rows, ...first.shape.slice(1)];
  if (first.datatype === 'BYTES') return { datatype: 'BYTES', shape, data: concatBytes(parts.map((part) => part.data as BytesData)) };
  const length = parts.reduce((sum, part) => sum + part.data.length, 0);
  const data = allocateTypedArray(first.datatype, length);
  let offset = 0;
  for (const part of parts) {
    (data as Uint8Array).set(part.data as Uint8Array, offset);
    offset += part.data.length;
  }
  return { datatype: first.datatype, shape, data };
}

/** BYTES parts joined: packed when any part came packed, so a packed request is never split into a Buffer per element. */
function concatBytes(parts: readonly BytesData[]): BytesData {
  if (parts.length === 1) return parts[0];
  if (parts.some((part) => part instanceof PackedBytes)) return PackedBytes.concat(parts.map(packedBytes));
  return (parts as Buffer[][]).flat();
}

export function sliceRows(tensor: Tensor, startRow: number, rows: number): Tensor {
  const totalRows = tensor.shape[0];
  const perRow = totalRows === 0 ? 0 : tensor.data.length / totalRows;
  const start = startRow * perRow;
  const end = start + rows * perRow;
  const data = tensor.datatype === 'BYTES' ? (tensor.data as BytesData).slice(start, end) : (tensor.data as NumericArray).subarray(start, end);
  return { datatype: tensor.datatype, shape: [rows, ...tensor.shape.slice(1)], data };
}

/** What a request's inputs hold in memory while it waits. */
export function bytesOf(inputs: Record<string, Tensor>): number {
  let bytes = 0;
  for (const name in inputs) {
    const data = inputs[name].data;
    if (Array.isArray(data)) for (const element of data) bytes += element.length;
    else if (data instanceof PackedBytes) bytes += data.bytes.length;
    else bytes += data.byteLength;
  }
  return bytes;
}

/** A request's share of a batch: its inputs and its rows along the batch dimension. */
export interface BatchPart {
  inputs: Record<string, Tensor>;
  rows: number;
}

export type BatchInputKind = BatchInputConfig['kind'];

/** A model input the server computes from the batch it formed (Triton's batch_input). */
export interface BatchInputSpec {
  kind: BatchInputKind;
  /** The model input it feeds. */
  target: string;
  datatype: 'INT32' | 'FP32';
  /** The request input it describes. */
  source: string;
}

/**
 * Triton's ragged batching for backends that take ragged inputs as one flat tensor (ONNX Runtime's
 * among them): each ragged input of the requests in a batch is concatenated element after element,
 * whatever the shapes, and the batch inputs tell the model where each request's elements lie. The
 * model must keep a batch dimension in its outputs: they are split back by rows, as for any batch.
 */
export class RaggedBatching {
  constructor(
    /** Inputs sent to the model flattened and concatenated: requests may differ in their shapes. */
    readonly raggedInputs: ReadonlySet<string>,
    readonly batchInputs: readonly BatchInputSpec[],
  ) {}

  /** From a config's allow_ragged_batch inputs and batch_input entries; undefined when it has neither. */
  static of(config: { input: readonly { name: string; allow_ragged_batch: boolean }[]; batch_input: readonly BatchInputConfig[] }): RaggedBatching | undefined {
    const ragged = new Set(config.input.filter((input) => input.allow_ragged_batch).map((input) => input.name));
    if (ragged.size === 0 && config.batch_input.length === 0) return undefined;
    const batchInputs = config.batch_input.map((entry) => ({
      kind: entry.kind,
      target: entry.target_name[0],
      datatype: entry.data_type === 'TYPE_FP32' ? ('FP32' as const) : ('INT32' as const),
      source: entry.source_input[0],
    }));
    return new RaggedBatching(ragged, batchInputs);
  }

  /** The model's inputs for a batch of these requests, in order: ragged inputs flat, the others stacked by rows, plus the batch inputs. */
  join(parts: readonly BatchPart[]): Record<string, Tensor> {
    const inputs: Record<string, Tensor> = {};
    for (const name of Object.keys(parts[0].inputs)) {
      const tensors = parts.map((part) => part.inputs[name]);
      inputs[name] = this.raggedInputs.has(name) ? concatElements(tensors) : concatRows(tensors);
    }
    for (const spec of this.batchInputs) inputs[spec.target] = batchInputTensor(spec, parts);
    return inputs;
  }

  /** A batch of `rows` rows in one set of tensors, as requests of one row each would be joined (warmup and calibration samples). */
  joinRows(inputs: Record<string, Tensor>, rows: number): Record<string, Tensor> {
    const parts = Array.from({ length: rows }, (_, row) => ({
      inputs: Object.fromEntries(Object.entries(inputs).map(([name, tensor]) => [name, sliceRows(tensor, row, 1)])),
      rows: 1,
    }));
    return this.join(parts);
  }
}

/** Every element of the tensors, one after the other, as a flat tensor (a single one is only reshaped). */
export function concatElements(parts: readonly Tensor[]): Tensor {
  const flat = parts.map((part) => ({ ...part, shape: [part.data.length] }));
  return flat.length === 1 ? flat[0] : concatRows(flat);
}

/** The values of one batch input for these requests, as Triton's backends compute them. */
export function batchInputTensor(spec: BatchInputSpec, parts: readonly BatchPart[]): Tensor {
  const sources = parts.map((part) => part.inputs[spec.source]);
  const counts = sources.map((tensor) => tensor.data.length);
  let shape: number[];
  let values: number[];
  switch (spec.kind) {
    case 'BATCH_ELEMENT_COUNT':
      values = counts;
      shape = [counts.length];
      break;
    case 'BATCH_ACCUMULATED_ELEMENT_COUNT':
    case 'BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO': {
      let total = 0;
      values = spec.kind === 'BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO' ? [0] : [];
      for (const count of counts) values.push((total += count));
      shape = [values.length];
      break;
    }
    case 'BATCH_MAX_ELEMENT_COUNT_AS_SHAPE':
      // Only the shape carries meaning; the values are zeros.
      shape = [Math.max(0, ...counts)];
      values = [];
      break;
    case 'BATCH_ITEM_SHAPE':
    case 'BATCH_ITEM_SHAPE_FLATTEN': {
      // One entry per batch item (row), holding the source's shape after the batch dimension.
      values = [];
      let items = 0;
      for (let index = 0; index < parts.length; index++) {
        const itemShape = sources[index].shape.slice(1);
        for (let row = 0; row < parts[index].rows; row++) values.push(...itemShape);
        items += parts[index].rows;
      }
      const rank = sources[0].shape.length - 1;
      shape = spec.kind === 'BATCH_ITEM_SHAPE' ? [items, rank] : [items * rank];
      break;
    }
  }
  const data = allocateTypedArray(spec.datatype, elementCount(shape)) as Float32Array | Int32Array;
  data.set(values);
  return { datatype: spec.datatype, shape, data };
}

/**
 * Nereid's padding of variable-length inputs (a text model's token ids and attention mask): requests whose padded
 * inputs differ only in their one variable dimension batch together, each padded at its end to the batch's longest
 * with the input's `pad_value`, and the outputs' variable dimensions of that length are cut back to each request's.
 * Triton has none: its batcher batches equal shapes only, so text of natural lengths batches little.
 */
export class SequencePadding {
  constructor(
    /** Padded input → [axis of its variable dimension in the batched tensor, pad value]. */
    readonly inputs: ReadonlyMap<string, { axis: number; value: number }>,
    /** Output → axes of the batched tensor that are variable in the config: cut back where the batch's length shows. */
    readonly outputAxes: ReadonlyMap<string, readonly number[]>,
  ) {}

  /**
   * From a config's inputs with pad_value; undefined when none has one. Outputs the config lists say whether they
   * follow the padded length (`padded`, checked with the config); one the model file added, with a -1 dimension,
   * says nothing, so the load is refused asking for it.
   */
  static of(config: {
    input: readonly { name: string; dims: readonly number[]; pad_value?: number }[];
    output: readonly { name: string; data_type: string; dims: readonly number[]; padded?: boolean }[];
  }): SequencePadding | undefined {
    const padded = config.input.filter((input) => input.pad_value !== undefined);
    if (padded.length === 0) return undefined;
    const unsaid = config.output.find((output) => output.padded === undefined && output.dims.includes(-1));
    if (unsaid) {
      throw new Error(`output '${unsaid.name}' has a -1 dimension: with pad_value on an input, list it in the config and say whether it follows the padded length (padded: true, cut back to each request's length) or not (padded: false)`);
    }
    const inputs = new Map(padded.map((input) => [input.name, { axis: input.dims.indexOf(-1) + 1, value: input.pad_value! }]));
    const outputAxes = new Map(
      config.output.filter((output) => output.padded).map((output) => [output.name, output.dims.flatMap((dim, index) => (dim === -1 ? [index + 1] : []))]),
    );
    return new SequencePadding(inputs, outputAxes);
  }

  /** A request's length: the size of its padded inputs' variable dimension (validation made them agree). */
  lengthOf(inputs: Record<string, Tensor>): number {
    for (const [name, { axis }] of this.inputs) if (inputs[name]) return inputs[name].shape[axis];
    return 0;
  }

  /** The batch's inputs: padded ones filled out to `length` before they are stacked. */
  join(parts: readonly Record<string, Tensor>[], length: number): Record<string, Tensor> {
    const inputs: Record<string, Tensor> = {};
    for (const name of Object.keys(parts[0])) {
      const padding = this.inputs.get(name);
      inputs[name] = concatRows(padding ? parts.map((part) => resizeAxis(part[name], padding.axis, length, padding.value)) : parts.map((part) => part[name]));
    }
    return inputs;
  }

  /** One request's output, its variable dimensions of the batch's length cut back to its own. */
  cut(name: string, output: Tensor, batchLength: number, ownLength: number): Tensor {
    let cut = output;
    for (const axis of this.outputAxes.get(name) ?? []) if (cut.shape[axis] === batchLength) cut = resizeAxis(cut, axis, ownLength, 0);
    return cut;
  }
}

/** `tensor` with dimension `axis` made `size`: cut, or filled out at its end with `fill`. A numeric tensor only. */
export function resizeAxis(tensor: Tensor, axis: number, size: number, fill: number): Tensor {
  const from = tensor.shape[axis];
  if (from === size) return tensor;
  const shape = tensor.shape.map((dim, index) => (index === axis ? size : dim));
  const inner = tensor.shape.slice(axis + 1).reduce((product, dim) => product * dim, 1);
  const outer = tensor.shape.slice(0, axis).reduce((product, dim) => product * dim, 1);
  const source = tensor.data as NumericArray;
  if (tensor.datatype === 'BYTES') throw new Error('resizeAxis takes numeric tensors only');
  const data = allocateTypedArray(tensor.datatype, elementCount(shape)) as NumericArray;
  const kept = Math.min(from, size) * inner;
  if (fill !== 0) (data as Float64Array).fill((data instanceof BigInt64Array || data instanceof BigUint64Array ? BigInt(fill) : fill) as number);
  for (let block = 0; block < outer; block++) {
    (data as Float64Array).set((source as Float64Array).subarray(block * from * inner, block * from * inner + kept), block * size * inner);
  }
  return { datatype: tensor.datatype, shape, data };
}
