/**
 * Turns batch-job records into calls of the Server API (`classify` for images, `infer` for
 * tensors) and their answers into output lines. It is a front end like HTTP: V2 JSON goes through
 * the HTTP codec, and every rule about inputs stays in the core. A group of records runs as one
 * call; when that call fails, each record is retried alone, so only the bad ones get an error.
 */
import { elementCount, type Datatype } from '../core/datatype.js';
import { asNereidError, invalidArgument, type ErrorCode } from '../core/errors.js';
import type { InferenceRequest, InferInput, RequestedOutput, Parameters } from '../core/inference.js';
import { describeShape, tensorDataFromJson } from '../core/tensor.js';
import { decodeInferRequest, encodeInferResponse } from '../protocol/v2-json.js';
import { concatRows, sameRowShape, sliceRows } from '../scheduler/batch-tensors.js';
import type { Server } from '../server/server.js';
import type { Tensor } from '../core/tensor.js';
import { errorLine, type JobRecord, type RecordId } from './job-record.js';

/**
 * Failures that belong to the record (a bad image, a wrong shape, an engine error on its data):
 * the record is written with the error and the job goes on. Any other failure (the model is
 * missing or unloading, the server is shutting down) stops the local job or fails the chunk, so
 * that no record is written with an error it does not deserve.
 */
const RECORD_ERRORS: ReadonlySet<ErrorCode> = new Set(['INVALID_ARGUMENT', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED', 'INTERNAL', 'UNIMPLEMENTED']);

export function isRecordError(error: unknown): boolean {
  return RECORD_ERRORS.has(asNereidError(error).code);
}

export interface RecordProcessorOptions {
  model: string;
  version?: string;
  /** Predictions per image for classifiers (default: the model's top_k). */
  topK?: number;
}

interface TensorRecord {
  id: RecordId;
  inputs: Record<string, Tensor>;
  rows: number;
  /** A V2 record that names outputs or parameters runs on its own. */
  alone?: { outputs?: RequestedOutput[]; parameters?: Parameters };
}

interface InputSpec {
  name: string;
  datatype: Datatype;
  /** Client shape, batch dimension (-1) included when the model batches. */
  shape: number[];
  optional: boolean;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** The dims of a nested JSON array, following first elements. */
function nestedShape(value: unknown): number[] {
  const dims: number[] = [];
  let current = value;
  while (Array.isArray(current)) {
    dims.push(current.length);
    current = current[0];
  }
  return dims;
}

export class RecordProcessor {
  readonly model: string;
  readonly version: string;
  /** Rows one call may carry: the model's max_batch_size, or 1 when it does not batch. */
  readonly maxBatchSize: number;
  /** True when the model classifies images (its one input declares image pre-processing). */
  readonly takesImages: boolean;
  private readonly batched: boolean;
  private readonly inputs: InputSpec[];

  private constructor(
    private readonly server: Server,
    private readonly options: RecordProcessorOptions,
  ) {
    const config = server.modelConfig(options.model, options.version);
    const metadata = server.modelMetadata(options.model, options.version);
    this.model = options.model;
    this.version = server.model(options.model, options.version).version;
    this.batched = config.max_batch_size > 0;
    this.maxBatchSize = Math.max(1, config.max_batch_size);
    this.takesImages = config.input.filter((input) => input.preprocess?.image).length === 1;
    this.inputs = metadata.inputs.map((input) => ({
      name: input.name,
      datatype: input.datatype as Datatype,
      shape: input.shape,
      optional: config.input.find((declared) => declared.name === input.name)?.optional ?? false,
    }));
  }

  /** For a model the server has loaded; throws the server's reason when it is not ready. */
  static create(server: Server, options: RecordProcessorOptions): RecordProcessor {
    return new RecordProcessor(server, options);
  }

  /** Nanoseconds the model's instances have spent executing batches so far (Triton's batch statistics). */
  executionNs(): number {
    const { model_stats } = this.server.modelStatistics(this.model, this.version);
    let ns = 0;
    for (const stats of model_stats) {
      for (const batch of stats.batch_stats) ns += batch.compute_input.ns + batch.compute_infer.ns + batch.compute_output.ns;
    }
    return ns;
  }

  /**
   * One output line per record, in the records' order. A record's own failure is its line;
   * a failure of the model or server is thrown.
   */
  async run(records: readonly JobRecord[]): Promise<string[]> {
    const lines: string[] = new Array(records.length);
    const images: { index: number; id: RecordId; image: Buffer }[] = [];
    const tensors: { index: number; record: TensorRecord }[] = [];
    records.forEach((record, index) => {
      if (record.error !== undefined) lines[index] = errorLine(record.id, record.error);
      else if (record.image) images.push({ index, id: record.id, image: record.image });
      else {
        try {
          tensors.push({ index, record: this.parse(record) });
        } catch (error) {
          lines[index] = errorLine(record.id, asNereidError(error).message);
        }
      }
    });
    await Promise.all([
      ...this.groups(images, () => 1).map(async (group) => {
        const answers = await this.classifyGroup(group);
        group.forEach((item, position) => (lines[item.index] = answers[position]));
      }),
      ...this.tensorGroups(tensors).map(async (group) => {
        const answers = await this.inferGroup(group.map((item) => item.record));
        group.forEach((item, position) => (lines[item.index] = answers[position]));
      }),
    ]);
    return lines;
  }

  /** Consecutive items in groups of at most maxBatchSize rows. */
  private groups<T>(items: T[], rowsOf: (item: T) => number): T[][] {
    const groups: T[][] = [];
    let current: T[] = [];
    let rows = 0;
    for (const item of items) {
      const itemRows = rowsOf(item);
      if (current.length > 0 && rows + itemRows > this.maxBatchSize) {
        groups.push(current);
        current = [];
        rows = 0;
      }
      current.push(item);
      rows += itemRows;
    }
    if (current.length > 0) groups.push(current);
    return groups;
  }

  /** Tensor records that can share one request: same inputs, datatypes and row shapes, batched model, no per-record options. */
  private tensorGroups(items: { index: number; record: TensorRecord }[]): { index: number; record: TensorRecord }[][] {
    if (!this.batched) return items.map((item) => [item]);
    const alone = items.filter((item) => item.record.alone).map((item) => [item]);
    const buckets: { index: number; record: TensorRecord }[][] = [];
    for (const item of items.filter((candidate) => !candidate.record.alone)) {
      const bucket = buckets.find((candidate) => sameRowShape(candidate[0].record.inputs, item.record.inputs));
      if (bucket) bucket.push(item);
      else buckets.push([item]);
    }
    return [...alone, ...buckets.flatMap((bucket) => this.groups(bucket, (item) => item.record.rows))];
  }

  private async classifyGroup(group: { id: RecordId; image: Buffer }[]): Promise<string[]> {
    const attempt = async (items: typeof group): Promise<string[]> => {
      const { model, version, results } = await this.server.classify(
        this.model,
        items.map((item) => item.image),
        { version: this.options.version, topK: this.options.topK },
      );
      const head = `"model_name":${JSON.stringify(model)},"model_version":${JSON.stringify(version)}`;
      return items.map((item, position) => {
        const { predictions, confidence } = results[position];
        return `{"id":${JSON.stringify(item.id)},${head},"predictions":${JSON.stringify(predictions)},"confidence":${JSON.stringify(confidence)},"error":null}`;
      });
    };
    return this.withFallback(group, attempt);
  }

  private async inferGroup(group: TensorRecord[]): Promise<string[]> {
    const attempt = async (items: TensorRecord[]): Promise<string[]> => {
      const first = items[0];
      const inputs: InferInput[] =
        items.length === 1
          ? Object.entries(first.inputs).map(([name, tensor]) => ({ name, ...tensor }))
          : Object.keys(first.inputs).map((name) => ({ name, ...concatRows(items.map((item) => item.inputs[name])) }));
      const request: InferenceRequest = {
        model: this.model,
        version: this.options.version,
        inputs,
        outputs: first.alone?.outputs,
        parameters: first.alone?.parameters,
      };
      const response = await this.server.infer(request);
      if (items.length > 1) {
        const totalRows = items.reduce((sum, item) => sum + item.rows, 0);
        const odd = response.outputs.find((output) => output.shape[0] !== totalRows);
        if (odd) throw invalidArgument(`output '${odd.name}' has ${describeShape(odd.shape)}, not one row per input row`);
      }
      let row = 0;
      return items.map((item) => {
        const outputs =
          items.length === 1 ? response.outputs : response.outputs.map((output) => ({ name: output.name, ...sliceRows(output, row, item.rows) }));
        row += item.rows;
        const { body } = encodeInferResponse({ model: response.model, version: response.version, outputs }, request.outputs, false);
        const json = body.toString('utf8');
        return `{"id":${JSON.stringify(item.id)},${json.slice(1, -1)},"error":null}`;
      });
    };
    return this.withFallback(group, attempt);
  }

  /** Runs the group as one call; if that fails, each record alone, so one bad record fails only itself. */
  private async withFallback<T extends { id: RecordId }>(group: T[], attempt: (items: T[]) => Promise<string[]>): Promise<string[]> {
    try {
      return await attempt(group);
    } catch (error) {
      if (!isRecordError(error)) throw asNereidError(error);
      if (group.length === 1) return [errorLine(group[0].id, asNereidError(error).message)];
    }
    return Promise.all(
      group.map(async (item) => {
        try {
          return (await attempt([item]))[0];
        } catch (error) {
          if (!isRecordError(error)) throw asNereidError(error);
          return errorLine(item.id, asNereidError(error).message);
        }
      }),
    );
  }

  /** A JSONL line or CSV row as named input tensors. Throws the record's error. */
  private parse(record: JobRecord): TensorRecord {
    if (record.fields) return this.fromFields(record.id, record.fields, true);
    let value: unknown;
    try {
      value = JSON.parse(record.json ?? '');
    } catch (error) {
      throw invalidArgument(`malformed JSON: ${(error as Error).message}`);
    }
    if (Array.isArray(value) || (isObject(value) && Array.isArray(value.inputs))) {
      // V2 JSON, read by the HTTP front end's own codec.
      const body = Array.isArray(value) ? `{"inputs":${record.json}}` : record.json!;
      const { request } = decodeInferRequest(Buffer.from(body, 'utf8'), undefined, this.model, this.options.version);
      const inputs: Record<string, Tensor> = {};
      for (const input of request.inputs) {
        if (inputs[input.name]) throw invalidArgument(`input '${input.name}' is given more than once`);
        inputs[input.name] = { datatype: input.datatype, shape: input.shape, data: input.data };
      }
      const rows = this.batched ? (request.inputs[0]?.shape[0] ?? 1) : 1;
      const alone = request.outputs || request.parameters ? { outputs: request.outputs, parameters: request.parameters } : undefined;
      return { id: record.id, inputs, rows, alone };
    }
    if (isObject(value)) return this.fromFields(record.id, value, false);
    throw invalidArgument('a JSONL record must be a V2 inputs array, an object with "inputs", or an object of named fields');
  }

  /** Named fields mapped to the model's inputs by name, with the model's datatype and shape (batch dimension 1). */
  private fromFields(id: RecordId, fields: Record<string, unknown>, fromCsv: boolean): TensorRecord {
    const inputs: Record<string, Tensor> = {};
    for (const spec of this.inputs) {
      let value = fields[spec.name];
      if (value === undefined) {
        // Wide CSV: one column per element, named NAME.0, NAME.1, …
        const indexed: string[] = [];
        while (fields[`${spec.name}.${indexed.length}`] !== undefined) indexed.push(fields[`${spec.name}.${indexed.length}`] as string);
        if (indexed.length > 0) value = indexed;
      }
      if (value === undefined || (fromCsv && value === '')) {
        if (spec.optional) continue;
        const given = Object.keys(fields);
        throw invalidArgument(
          `the record has no ${fromCsv ? 'column' : 'field'} '${spec.name}' (the model's inputs: ${this.inputs.map((input) => input.name).join(', ')}; the record has: ${given.join(', ') || 'nothing'})`,
        );
      }
      inputs[spec.name] = this.tensorOf(spec, value);
    }
    return { id, inputs, rows: 1 };
  }

  private tensorOf(spec: InputSpec, value: unknown): Tensor {
    const { name, datatype } = spec;
    let nested: unknown = value;
    if (typeof value === 'string' && datatype !== 'BYTES') {
      const text = value.trim();
      if (text.startsWith('[')) {
        try {
          nested = JSON.parse(text);
        } catch {
          throw invalidArgument(`input '${name}': ${JSON.stringify(value)} is not a JSON array`);
        }
      } else {
        nested = text === '' ? [] : text.split(/[\s,;]+/);
      }
    }
    const flat: unknown[] = !Array.isArray(nested) ? [nested] : nested.some(Array.isArray) ? (nested.flat(Infinity) as unknown[]) : nested;
    // Text from CSV cells (or quoted numbers in JSON) becomes the datatype's values.
    const hasText = datatype !== 'BYTES' && flat.some((element) => typeof element === 'string');
    const elements = !hasText
      ? flat
      : flat.map((element) => {
          if (typeof element !== 'string') return element;
          if (datatype === 'BOOL') return element === 'true' || element === '1' ? true : element === 'false' || element === '0' ? false : element;
          if (datatype === 'INT64' || datatype === 'UINT64') return element.trim();
          const number = Number(element);
          return element.trim() !== '' && Number.isFinite(number) ? number : element;
        });
    const data = tensorDataFromJson(name, datatype, elements);
    const dims = this.batched ? spec.shape.slice(1) : [...spec.shape];
    const shape = this.resolveDims(spec, dims, Array.isArray(nested) ? nestedShape(nested) : [], elements.length);
    return { datatype, shape: this.batched ? [1, ...shape] : shape, data };
  }

  /** The record's dims: the model's, with dynamic ones taken from a nested array or from the element count. */
  private resolveDims(spec: InputSpec, dims: number[], given: number[], count: number): number[] {
    const expected = `${spec.datatype} ${describeShape(this.batched ? [1, ...dims] : dims)}`;
    // A nested array with the model's rank (with or without the batch dimension of 1) gives every dim.
    const withoutBatch = given.length === dims.length + 1 && given[0] === 1 ? given.slice(1) : given;
    if (withoutBatch.length === dims.length && dims.length > 1 && elementCount(withoutBatch) === count) {
      if (dims.every((dim, index) => dim === -1 || dim === withoutBatch[index])) return withoutBatch;
      throw invalidArgument(`input '${spec.name}' expects ${expected}, got a nested array of ${describeShape(withoutBatch)}`);
    }
    const dynamic = dims.filter((dim) => dim === -1).length;
    const known = elementCount(dims.filter((dim) => dim !== -1));
    if (dynamic === 0) {
      if (count !== known) throw invalidArgument(`input '${spec.name}' expects ${expected}: ${known} value(s), got ${count}`);
      return dims;
    }
    if (dynamic === 1 && known > 0 && count % known === 0 && count > 0) return dims.map((dim) => (dim === -1 ? count / known : dim));
    throw invalidArgument(
      `input '${spec.name}' expects ${expected}; ${count} value(s) do not fill it${dynamic > 1 ? ' (several dynamic dims: give a nested array, or the V2 form with a shape)' : ''}`,
    );
  }
}
