/**
 * Checks a request against the model's config before anything runs, so that every mistake is
 * reported with what was expected and what arrived, and nothing malformed reaches the engine.
 * Everything a check needs is worked out once, when the version loads; a request that passes
 * allocates only its tensor map.
 */
import { isUtf8 } from 'node:buffer';
import type { CompletedModelConfig } from '../config/model-config.js';
import { datatypeOfConfig } from '../config/model-config.js';
import { elementCount, findIndexInSlices, PackedBytes, type BytesData, type Datatype, type TensorData, typedArrayTypeOf } from '../core/datatype.js';
import { invalidArgument, NereidError, quote, quoteName } from '../core/errors.js';
import type { InferInput, InferenceRequest, RequestedOutput } from '../core/inference.js';
import { concreteDims, describeShape, tensorDataFromJson, type InputDeclaration, type Tensor } from '../core/tensor.js';
import type { Admission } from '../scheduler/priority-queue.js';

/** A request as the rest of the path needs it. */
export interface ValidatedRequest extends Admission {
  /** By input name, in the model's shapes (reshape applied). */
  tensors: Record<string, Tensor>;
  /** Rows along the batch dimension, 0 for a model without one. */
  batchSize: number;
  /** The outputs to compute: the requested ones, else all. */
  outputNames: readonly string[];
  /** The request's `cache_bypass`: computed, not looked up in the response cache. */
  cacheBypass: boolean;
}

interface InputRule {
  name: string;
  datatype: Datatype;
  /** As a client sends it: -1 for the batch dimension when the model batches, and for dynamic dims. */
  shape: readonly number[];
  /** The model's dims after the batch dimension, when the config reshapes the input. */
  reshape?: readonly number[];
  /** A BYTES input of encoded images also takes one element per row without the trailing [1]. */
  acceptsRowsOnly: boolean;
  /** BYTES elements must be text the backend can carry (valid UTF-8, no 0 byte). */
  textOnly: boolean;
  /** Aligned with `shape`: each dim must be a multiple of its entry (the config's dims_multiple_of, 1 for the batch dimension). */
  multipleOf?: readonly number[];
}

const isText = (element: Buffer) => !element.includes(0) && isUtf8(element);

/**
 * isText for bytes [start, end): ASCII without a 0 byte is read byte by byte, with no object made
 * for the element (a million of them would keep the collector busy); past the first non-ASCII byte,
 * isUtf8 decides.
 */
function isTextRange(bytes: Buffer, start: number, end: number): boolean {
  for (let at = start; at < end; at++) {
    const byte = bytes[at];
    if (byte === 0) return false;
    if (byte >= 0x80) return isText(bytes.subarray(start, end));
  }
  return true;
}

/** Whether BYTES element `index` is not text, for indexes asked in order from 0 (as findIndexInSlices asks). */
function nonTextInOrder(data: BytesData): (index: number) => boolean {
  if (!(data instanceof PackedBytes)) return (index) => !isText(data[index]);
  const cursor = data.cursor();
  return () => {
    cursor.next();
    return !isTextRange(data.bytes, cursor.start, cursor.end);
  };
}

/** The shape a client must send, with -1 for the batch dimension when the model batches. */
export function expectedShape(config: CompletedModelConfig, tensor: { dims: number[] }): number[] {
  return config.max_batch_size > 0 ? [-1, ...tensor.dims] : [...tensor.dims];
}

function shapeMatches(expected: readonly number[], actual: readonly number[]): boolean {
  if (expected.length !== actual.length) return false;
  for (let index = 0; index < expected.length; index++) {
    if (expected[index] !== -1 && expected[index] !== actual[index]) return false;
  }
  return true;
}

/** Bounds on the request's own strings: they are echoed (id) or kept (parameters) and a client controls their size. */
export const MAX_ID_CHARS = 256;
const MAX_PARAMETERS = 64;
const MAX_PARAMETER_KEY_CHARS = 256;
const MAX_PARAMETER_VALUE_CHARS = 4096;

function checkRequestFields(request: InferenceRequest): void {
  if (request.id !== undefined && request.id.length > MAX_ID_CHARS) {
    throw invalidArgument(`the request id has ${request.id.length} characters; at most ${MAX_ID_CHARS} are accepted`);
  }
  const parameters = request.parameters;
  if (!parameters) return;
  let count = 0;
  for (const key in parameters) {
    if (++count > MAX_PARAMETERS) throw invalidArgument(`the request has more than ${MAX_PARAMETERS} parameters`);
    if (key.length > MAX_PARAMETER_KEY_CHARS) throw invalidArgument(`request parameter ${quote(key)} has a name longer than ${MAX_PARAMETER_KEY_CHARS} characters`);
    const value = parameters[key];
    if (typeof value === 'string' && value.length > MAX_PARAMETER_VALUE_CHARS) {
      throw invalidArgument(`request parameter ${quoteName(key)} has ${value.length} characters; at most ${MAX_PARAMETER_VALUE_CHARS} are accepted`);
    }
  }
}

/** A scheduling parameter (priority, timeout): an unsigned integer, as Triton reads both (uint64), whatever the model's queue does with it. */
function unsignedParameter(request: InferenceRequest, key: string): number | undefined {
  const value = request.parameters?.[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`request parameter '${key}' must be a non-negative integer${key === 'timeout' ? ' of microseconds' : ''}, got ${quote(value)}`);
  }
  return value;
}

/** A parameter that is true or false (cache_bypass): anything else is refused rather than read as false. */
function booleanParameter(request: InferenceRequest, key: string): boolean {
  const value = request.parameters?.[key];
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw invalidArgument(`request parameter '${key}' must be a boolean (true or false), got ${typeof value} ${quote(value)}`);
  return value;
}

/**
 * The front ends decode BYTES into Buffers; an in-process caller (the library's server.infer) may
 * hand over something else, such as strings, which every backend would fail on as an internal error.
 */
function checkBytesElements(input: InferInput): void {
  const data = input.data;
  if (data instanceof PackedBytes) return;
  if (!Array.isArray(data)) throw invalidArgument(`input '${input.name}' is BYTES, whose data is an array of Buffers; got ${describeValue(data)}`);
  for (let index = 0; index < data.length; index++) {
    const element: unknown = data[index];
    if (!(element instanceof Uint8Array)) {
      throw invalidArgument(`input '${input.name}' is BYTES, whose elements are Buffers (Buffer.from(text) for a string); element ${index} is ${describeValue(element)}`);
    }
  }
}

/**
 * The data of a numeric input as the datatype's typed array, the one every backend takes (a JavaScript handler is promised
 * it). The front ends decode into it; an in-process caller may hand over another typed array (a Float64Array for FP32),
 * which ONNX Runtime would fail on as an internal error and a handler would get as it is, so it is refused.
 */
function numericData(input: InferInput, datatype: Exclude<Datatype, 'BYTES'>): TensorData {
  const data: unknown = input.data;
  const expected = typedArrayTypeOf(datatype);
  if (data instanceof expected) return data as TensorData;
  // A plain array is read as V2 JSON reads one, every element checked against the datatype.
  if (Array.isArray(data)) return tensorDataFromJson(input.name, datatype, data);
  const hint = datatype === 'FP16' ? ' of half-precision bits' : '';
  throw invalidArgument(`input '${input.name}' is ${datatype}, whose data is a ${expected.name}${hint} (or a plain array of values); got ${describeValue(data)}`);
}

/** A value a caller gave where another kind belongs, as a message names it: undefined, null, `string "x"`, a Float64Array, an object. */
export const describeValue = (value: unknown) => {
  if (value === undefined || value === null) return String(value);
  if (typeof value !== 'object') return `${typeof value} ${quote(value)}`;
  const kind = value.constructor?.name;
  return kind === undefined || kind === 'Object' ? 'an object' : `a ${kind}`;
};

/** Refuses a shape whose dims are not multiples of the config's dims_multiple_of, naming the nearest sizes that are. */
function checkMultiples(name: string, shape: readonly number[], multipleOf: readonly number[], batched: boolean): void {
  const wrong = shape.flatMap((dim, index) => (dim % multipleOf[index] === 0 ? [] : [index]));
  if (wrong.length === 0) return;
  const nearest = (dim: number, step: number) => {
    const below = Math.floor(dim / step) * step;
    return below === 0 ? `${step}` : `${below} or ${below + step}`;
  };
  const advice = wrong.map((index) => `dim ${index} is ${shape[index]}, try ${nearest(shape[index], multipleOf[index])}`).join('; ');
  // Quoted as the config writes it: without the batch dimension's 1 that multipleOf carries for a batching model.
  const declared = multipleOf.slice(batched ? 1 : 0);
  const which = batched ? ' after the batch dimension' : '';
  throw invalidArgument(`input '${name}' has shape ${describeShape(shape)}; the model needs each dim${which} to be a multiple of [${declared.join(', ')}] (dims_multiple_of in its config): ${advice}`);
}

/** Batch inputs whose values describe each request as a whole rather than each row. */
const PER_REQUEST_BATCH_INPUTS: ReadonlySet<string> = new Set(['BATCH_ELEMENT_COUNT', 'BATCH_ACCUMULATED_ELEMENT_COUNT', 'BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO', 'BATCH_MAX_ELEMENT_COUNT_AS_SHAPE']);

export class RequestValidator {
  private readonly inputs = new Map<string, InputRule>();
  private readonly required: readonly string[];
  /** BYTES inputs whose elements must be text (see InputRule.textOnly). */
  private readonly textInputs: readonly string[];
  /** Inputs the model gives a default value (see TensorSignature.defaulted). */
  private readonly defaulted: ReadonlySet<string>;
  private readonly outputs: ReadonlyMap<string, Datatype>;
  private readonly allOutputs: readonly string[];
  private readonly maxBatchSize: number;
  /** Inputs with a pad_value, and the axis of a request's tensor that is their length. */
  private readonly paddedTogether: readonly { name: string; axis: number }[];

  /** `config` is the config as clients see it; `imageInputs` take encoded images; `bytesAsText`: see Backend.bytesAsText; `defaultedInputs` may only be left out. */
  constructor(
    private readonly config: CompletedModelConfig,
    options: { imageInputs?: ReadonlySet<string>; bytesAsText?: boolean; defaultedInputs?: ReadonlySet<string> } = {},
  ) {
    this.defaulted = options.defaultedInputs ?? new Set();
    const imageInputs = options.imageInputs ?? new Set<string>();
    this.maxBatchSize = config.max_batch_size;
    for (const input of config.input) {
      this.inputs.set(input.name, {
        name: input.name,
        datatype: datatypeOfConfig(input),
        shape: expectedShape(config, input),
        reshape: input.reshape?.shape,
        acceptsRowsOnly: imageInputs.has(input.name),
        textOnly: Boolean(options.bytesAsText) && !imageInputs.has(input.name),
        multipleOf: input.dims_multiple_of && (config.max_batch_size > 0 ? [1, ...input.dims_multiple_of] : input.dims_multiple_of),
      });
    }
    this.required = config.input.filter((input) => !input.optional).map((input) => input.name);
    this.paddedTogether = config.input
      .filter((input) => input.pad_value !== undefined)
      .map((input) => ({ name: input.name, axis: input.dims.indexOf(-1) + (config.max_batch_size > 0 ? 1 : 0) }));
    this.textInputs = [...this.inputs.values()].filter((rule) => rule.textOnly && rule.datatype === 'BYTES').map((rule) => rule.name);
    this.outputs = new Map(config.output.map((output) => [output.name, datatypeOfConfig(output)]));
    this.allOutputs = Object.freeze(config.output.map((output) => output.name));
  }

  /**
   * Checks that the BYTES inputs the backend carries as text (see Backend.bytesAsText) are text, a
   * few milliseconds at a time: a request may hold a million elements. Undefined when the model
   * has no such input, so other requests wait for nothing.
   */
  checkText(tensors: Record<string, Tensor>): Promise<void> | undefined {
    if (this.textInputs.length === 0) return undefined;
    return this.checkTextInSlices(tensors);
  }

  private async checkTextInSlices(tensors: Record<string, Tensor>): Promise<void> {
    for (const name of this.textInputs) {
      const data = tensors[name]?.data as BytesData | undefined;
      if (!data) continue;
      const bad = await findIndexInSlices(data.length, nonTextInOrder(data));
      if (bad >= 0) {
        throw invalidArgument(`input '${name}' element ${bad} is not UTF-8 text without a 0 byte, which is all the model's backend (${this.config.backend}) carries in a BYTES tensor`);
      }
    }
  }

  /**
   * The datatype and shape check of `check` for one input, before its data is read: a decoder asks it when binary
   * data does not fit the shape, so that a wrong shape is reported as such (as Triton does). Unknown or defaulted
   * inputs are left to `check`.
   */
  checkInputShape(input: InputDeclaration): void {
    const rule = this.inputs.get(input.name);
    if (!rule || this.defaulted.has(input.name)) return;
    this.clientShape(rule, { name: input.name, datatype: input.datatype, shape: [...input.shape], data: [] });
  }

  check(request: InferenceRequest): ValidatedRequest {
    if (typeof request !== 'object' || request === null) throw invalidArgument(`the request must be an object { model, inputs }, got ${describeValue(request)}`);
    if (!Array.isArray(request.inputs)) throw invalidArgument(`the request's inputs must be an array of { name, datatype, shape, data }, got ${describeValue(request.inputs)}`);
    checkRequestFields(request);
    const tensors: Record<string, Tensor> = {};
    let batchSize = -1;
    let batchSource = '';
    for (const input of request.inputs) {
      const rule = this.inputs.get(input.name);
      if (!rule) {
        const computed = this.config.batch_input.find((entry) => entry.target_name[0] === input.name);
        if (computed) throw invalidArgument(`input '${input.name}' is computed by the server for each batch (batch_input ${computed.kind}); leave it out`);
        throw this.unknownInput(input.name);
      }
      if (this.defaulted.has(input.name)) {
        throw invalidArgument(`input '${input.name}' takes the value built into the model (an ONNX initializer), which ONNX Runtime does not let a request replace; leave it out`);
      }
      if (tensors[input.name]) throw invalidArgument(`input '${input.name}' is given more than once`);
      const shape = this.clientShape(rule, input);
      if (this.maxBatchSize > 0) {
        const rows = shape[0];
        if (rows < 1 || rows > this.maxBatchSize) {
          // Triton's phrase first, which its clients and tests look for.
          const limit = rows < 1 ? `must be >= 1` : `must be <= ${this.maxBatchSize}`;
          throw invalidArgument(`inference request batch-size ${limit} for '${this.config.name}': input '${input.name}' has batch size ${rows}; the model accepts 1 to ${this.maxBatchSize} (max_batch_size)`);
        }
        if (batchSize !== -1 && rows !== batchSize) {
          throw invalidArgument(`input '${input.name}' has batch size ${rows} but input '${batchSource}' has ${batchSize}; all inputs must agree`);
        }
        batchSize = rows;
        batchSource = input.name;
      }
      const count = elementCount(shape);
      if (input.data.length !== count) {
        throw invalidArgument(`input '${input.name}' has shape ${describeShape(shape)}, which holds ${count} elements, but ${input.data.length} were sent`);
      }
      let data = input.data;
      if (rule.datatype === 'BYTES') checkBytesElements(input);
      else data = numericData(input, rule.datatype);
      const modelShape = rule.reshape ? this.reshaped(input.name, shape, rule.reshape) : shape;
      tensors[input.name] = { datatype: rule.datatype, shape: modelShape, data };
    }
    for (const name of this.required) if (!tensors[name]) throw this.missingInputs(tensors);
    if (batchSize > 1) this.checkRowsCountable(batchSize);
    if (this.paddedTogether.length > 1) this.checkPaddedLengths(tensors);
    return {
      tensors,
      batchSize: Math.max(0, batchSize),
      outputNames: request.outputs?.length ? this.checkOutputs(request.outputs) : this.allOutputs,
      priority: unsignedParameter(request, 'priority'),
      timeoutMicroseconds: unsignedParameter(request, 'timeout'),
      cacheBypass: booleanParameter(request, 'cache_bypass'),
    };
  }

  /**
   * A batch input that counts elements per request (ragged batching) cannot tell the rows of one request apart: the
   * model would answer one row for them all. Triton's ragged examples send one row per request; more is refused here.
   */
  private checkRowsCountable(rows: number): void {
    const perRequest = this.config.batch_input.find((entry) => PER_REQUEST_BATCH_INPUTS.has(entry.kind));
    if (!perRequest) return;
    throw invalidArgument(
      `model '${this.config.name}' takes one row per request: its batch input '${perRequest.target_name[0]}' (${perRequest.kind} of '${perRequest.source_input[0]}') counts elements per request, so the model could not tell ${rows} rows of one request apart; send each row as a request of its own (batch size 1)`,
    );
  }

  /** Inputs padded to a batch's longest (pad_value) are one sequence: a request's token ids and mask must agree in length. */
  private checkPaddedLengths(tensors: Record<string, Tensor>): void {
    let first: { name: string; length: number } | undefined;
    for (const { name, axis } of this.paddedTogether) {
      if (!tensors[name]) continue;
      const length = tensors[name].shape[axis];
      if (!first) first = { name, length };
      else if (length !== first.length) {
        throw invalidArgument(`input '${name}' has length ${length} but input '${first.name}' has ${first.length}: inputs padded together (pad_value) are one sequence, of one length in a request`);
      }
    }
  }

  /** The model's shape of an input the config reshapes: the batch dimension kept, a -1 in the reshape taken from the row's size. */
  private reshaped(name: string, shape: readonly number[], reshape: readonly number[]): number[] {
    const batched = this.maxBatchSize > 0;
    const row = batched ? shape.slice(1) : shape;
    const dims = concreteDims(reshape, elementCount(row));
    if (!dims) throw invalidArgument(`input '${name}' has shape ${describeShape(shape)}, which the config's reshape [${reshape.join(', ')}] cannot hold`);
    return batched ? [shape[0], ...dims] : dims;
  }

  /** The input's shape after the datatype and shape checks; a row-only image input gets its trailing [1]. */
  private clientShape(rule: InputRule, input: InferInput): number[] {
    const shape = input.shape;
    for (const dim of shape) {
      if (!Number.isInteger(dim) || dim < 0) {
        throw invalidArgument(`input '${input.name}' has an invalid shape ${describeShape(shape)}: dimensions must be non-negative integers`);
      }
    }
    if (input.datatype === rule.datatype && shapeMatches(rule.shape, shape)) {
      if (rule.multipleOf) checkMultiples(input.name, shape, rule.multipleOf, this.maxBatchSize > 0);
      return shape;
    }
    if (rule.acceptsRowsOnly && input.datatype === 'BYTES' && shape.length === rule.shape.length - 1) return [...shape, 1];
    // A tensor already decoded, sent to an input whose config decodes images: say why only encoded images go in.
    const why = rule.acceptsRowsOnly && input.datatype !== 'BYTES'
      ? ": encoded images (PNG, JPEG, WebP…), one per row, which the config's preprocess decodes; to send decoded tensors, serve the model under a config without preprocess"
      : '';
    throw invalidArgument(`input '${input.name}' expects ${rule.datatype} ${describeShape(rule.shape)}, got ${input.datatype} ${describeShape(shape)}${why}`);
  }

  private unknownInput(name: string): NereidError {
    return invalidArgument(`unexpected inference input ${quoteName(name)} for model '${this.config.name}': it has no such input (its inputs: ${[...this.inputs.keys()].join(', ')})`);
  }

  private missingInputs(given: Record<string, Tensor>): NereidError {
    const missing = this.required.filter((name) => !given[name]);
    return invalidArgument(
      `model '${this.config.name}' expects input${missing.length > 1 ? 's' : ''} ${missing.map((name) => `'${name}'`).join(', ')}, which the request lacks`,
    );
  }

  private checkOutputs(requested: readonly RequestedOutput[]): string[] {
    const names: string[] = [];
    for (const output of requested) {
      const datatype = this.outputs.get(output.name);
      if (!datatype) {
        throw invalidArgument(`unexpected inference output ${quoteName(output.name)} for model '${this.config.name}': it has no such output (its outputs: ${[...this.outputs.keys()].join(', ')})`);
      }
      if (names.includes(output.name)) throw invalidArgument(`Duplicate output name '${output.name}' is not allowed in a request: output '${output.name}' is requested more than once`);
      names.push(output.name);
      if (output.classCount === undefined) continue;
      if (!Number.isInteger(output.classCount) || output.classCount < 1) {
        throw invalidArgument(`output '${output.name}': the number of classes asked for (parameter 'classification' or 'class_count') must be a positive integer, got ${output.classCount}`);
      }
      if (datatype === 'BYTES' || datatype === 'BOOL') {
        throw invalidArgument(`class result not available for output due to unsupported type '${datatype}': output '${output.name}' is ${datatype}; classification needs a numeric output`);
      }
    }
    return names;
  }
}
