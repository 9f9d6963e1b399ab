/**
 * Turns batch-job records into calls of the Server API (`classify` for images, `infer` for
 * tensors and for images a model takes encoded, as the ocr pipeline does), one record per call, and their answers into output lines. It is a front end like HTTP:
 * V2 JSON goes through the protocol codec, every rule about inputs stays in the core, and the
 * model's batcher (not the job) decides what runs together.
 */
import { elementCount, type Datatype } from '../core/datatype.js';
import { asNereidError, invalidArgument, NereidError, type ErrorCode } from '../core/errors.js';
import { retryingCall, type RetryOptions } from '../core/retry.js';
import type { InferenceRequest, InferInput } from '../core/inference.js';
import { describeShape, tensorDataFromJson, type Tensor } from '../core/tensor.js';
import { computeShareNs } from '../core/timings.js';
import { encodeInferResponse, inferRequestOf, parseExactJson, refuseBytesBeyondCap } from '../protocol/v2-json.js';
import { detectionsOutput } from '../model/object-detection.js';
import type { Server } from '../server/server.js';
import { errorLine, lineHead, type JobRecord } from './job-record.js';
import type { RecordResult } from './record-pipeline.js';

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

/**
 * A record the model refused for its load (a full queue) is sent again after a wait that doubles
 * from `firstDelayMs` up to `maxDelayMs`, randomised so that records refused together do not return
 * together; after `tries` refusals the refusal stands and stops the job like any UNAVAILABLE.
 */
const OVERLOAD_RETRY: RetryOptions = { firstDelayMs: 10, maxDelayMs: 1000, tries: 12 };

export interface RecordProcessorOptions {
  model: string;
  version?: string;
  /** Predictions per image for classifiers (default: the model's top_k). */
  topK?: number;
}

interface InputSpec {
  name: string;
  datatype: Datatype;
  /** Client shape, batch dimension (-1) included when the model batches. */
  shape: number[];
  optional: boolean;
}

/** A line of a file carries no binary tensors after its JSON (HTTP's binary extension needs a body). */
const NO_BINARY_TENSORS = Buffer.alloc(0);

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
  /** Rows one execution may carry: the model's max_batch_size, or 1 when it does not batch. */
  readonly maxBatchSize: number;
  /** True when the model takes images: it classifies them (its one input declares image pre-processing), or takes them encoded. */
  readonly takesImages: boolean;
  /** True when the model is a detector (see detectionsOutput): an image's line holds its boxes, as /detect answers. */
  readonly detects: boolean;
  /** The model's one input when it is one encoded image (BYTES, one element: [1], or [-1,1] batched) that the model decodes itself. */
  private readonly encodedImageInput?: string;
  /** Requests the model holds at once before refusing more for a full queue: the most a job keeps in flight. */
  readonly admits: number;
  private readonly batched: boolean;
  private readonly inputs: InputSpec[];

  /** The model's input names, as its config declares them. */
  get inputNames(): string[] {
    return this.inputs.map((input) => input.name);
  }

  /** The inputs every request must carry (those the config does not mark optional). */
  get requiredInputNames(): string[] {
    return this.inputs.filter((input) => !input.optional).map((input) => input.name);
  }

  private constructor(
    private readonly server: Server,
    private readonly options: RecordProcessorOptions,
  ) {
    const model = server.model(options.model, options.version);
    const metadata = model.metadata([model]);
    this.model = options.model;
    this.version = model.version;
    this.batched = model.batched;
    this.maxBatchSize = Math.max(1, model.config.max_batch_size);
    this.admits = model.admits;
    this.inputs = metadata.inputs.map((input) => ({
      name: input.name,
      datatype: input.datatype as Datatype,
      shape: input.shape,
      optional: model.config.input.find((declared) => declared.name === input.name)?.optional ?? false,
    }));
    const [only] = this.inputs;
    const oneElement = only && describeShape(this.batched ? only.shape.slice(1) : only.shape) === '[1]';
    if (this.inputs.length === 1 && only.datatype === 'BYTES' && oneElement && model.imageInputs.size === 0) this.encodedImageInput = only.name;
    this.takesImages = model.imageInputs.size === 1 || this.encodedImageInput !== undefined;
    this.detects = model.imageInputs.size === 1 && detectionsOutput(model) !== undefined;
  }

  /** For a model the server has loaded; throws the server's reason when it is not ready. */
  static create(server: Server, options: RecordProcessorOptions): RecordProcessor {
    return new RecordProcessor(server, options);
  }

  /** The record's output line: its answer, or its own failure. A failure of the model or server is thrown. */
  async run(record: JobRecord): Promise<RecordResult> {
    if (record.error !== undefined) return { line: errorLine(record.id, record.error, record.passThrough), computeNs: 0 };
    try {
      return await this.send(record);
    } catch (error) {
      if (asNereidError(error).code !== 'INTERNAL') return this.failedLine(record, error);
    }
    // An internal failure may be another record's: every request of a batch fails when one of them
    // crashes the model's worker or outlasts its execute timeout. Sent again alone, one record at a
    // time, the records batched with the culprit are answered, and only a failure of its own stays.
    const alone = this.soloLane.then(() => this.send(record));
    this.soloLane = alone.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await alone;
    } catch (error) {
      return this.failedLine(record, error);
    }
  }

  /** Records sent again one at a time after an internal failure, so that no two of them share a batch. */
  private soloLane: Promise<void> = Promise.resolve();

  private send(record: JobRecord): Promise<RecordResult> {
    const { image } = record;
    return this.untilAdmitted(() => (image && !this.encodedImageInput ? (this.detects ? this.detect(record, image) : this.classify(record, image)) : this.infer(record)));
  }

  /** The record written with its own failure; a failure of the model or server is thrown instead. */
  private failedLine(record: JobRecord, error: unknown): RecordResult {
    if (!isRecordError(error)) throw asNereidError(error);
    return { line: errorLine(record.id, asNereidError(error).message, record.passThrough), computeNs: 0 };
  }

  /** Sends again, after a wait, what the model refused for its load; the record was accepted and must not be lost. */
  private untilAdmitted(send: () => Promise<RecordResult>): Promise<RecordResult> {
    return retryingCall(OVERLOAD_RETRY, undefined, (error) => ({ retry: error instanceof NereidError && error.overloaded }), send);
  }

  private async classify(record: JobRecord, image: Buffer): Promise<RecordResult> {
    const { model, version, results, timings } = await this.server.classify(this.model, [image], { version: this.options.version, topK: this.options.topK });
    const { predictions, confidence, ood } = results[0];
    // A version with a reference profile also says whether the image is out of distribution, as /classify does.
    const verdict = ood ? `,"ood":${JSON.stringify(ood)}` : '';
    const line = `${lineHead(record.id, record.passThrough)},"model_name":${JSON.stringify(model)},"model_version":${JSON.stringify(version)},"predictions":${JSON.stringify(predictions)},"confidence":${JSON.stringify(confidence)}${verdict},"error":null}`;
    return { line, computeNs: timings.computeShareMs * 1e6 };
  }

  private async detect(record: JobRecord, image: Buffer): Promise<RecordResult> {
    const { model, version, results, timings } = await this.server.detect(this.model, [image], { version: this.options.version });
    const { image: size, detections } = results[0];
    const line = `${lineHead(record.id, record.passThrough)},"model_name":${JSON.stringify(model)},"model_version":${JSON.stringify(version)},"image":${JSON.stringify(size)},"detections":${JSON.stringify(detections)},"error":null}`;
    return { line, computeNs: timings.inferMs * 1e6 };
  }

  private async infer(record: JobRecord): Promise<RecordResult> {
    const request = this.request(record);
    const response = await this.server.infer(request);
    // Every output as JSON data: binary_data and binary_data_output ask for HTTP's binary extension, which a line of a file cannot carry.
    const json = encodeInferResponse({ model: response.model, version: response.version, outputs: response.outputs }, undefined, false).header;
    const rows = this.batched ? (request.inputs[0]?.shape[0] ?? 1) : 1;
    return { line: `${lineHead(record.id, record.passThrough)},${json.slice(1, -1)},"error":null}`, computeNs: response.timings ? computeShareNs(response.timings, rows) : 0 };
  }

  /** A JSONL line or CSV row (or an image, for a model that takes it encoded) as an inference request. Throws the record's error. */
  request(record: JobRecord): InferenceRequest {
    if (record.image && this.encodedImageInput) {
      const input: InferInput = { name: this.encodedImageInput, datatype: 'BYTES', shape: this.batched ? [1, 1] : [1], data: [record.image] };
      return { model: this.model, version: this.options.version, inputs: [input] };
    }
    if (record.fields) return this.fromFields(record.fields, true);
    const bytes = Buffer.from(record.json ?? '', 'utf8');
    // Before the parse, which costs seconds on a line of millions of strings that the cap then refuses.
    refuseBytesBeyondCap(bytes, (field) => this.inputs.find((input) => input.name === field)?.datatype);
    // Named fields are read as exactly as the V2 forms are: INT64 beyond 2^53 kept digit for digit.
    const value = parseExactJson(bytes, 'the record');
    if (Array.isArray(value) || (isObject(value) && Array.isArray(value.inputs))) {
      // V2 JSON, read by the HTTP front end's own codec from the value parsed above: the line is scanned and parsed once.
      return inferRequestOf(Array.isArray(value) ? { inputs: value } : value, NO_BINARY_TENSORS, this.model, this.options.version).request;
    }
    if (isObject(value)) return this.fromFields(value, false);
    throw invalidArgument('a JSONL record must be a V2 inputs array, an object with "inputs", or an object of named fields');
  }

  /** Named fields mapped to the model's inputs by name, with the model's datatype and shape (batch dimension 1). */
  private fromFields(fields: Record<string, unknown>, fromCsv: boolean): InferenceRequest {
    const inputs: InferInput[] = [];
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
      inputs.push({ name: spec.name, ...this.tensorOf(spec, value) });
    }
    return { model: this.model, version: this.options.version, inputs };
  }

  private tensorOf(spec: InputSpec, value: unknown): Tensor {
    const { name, datatype } = spec;
    let nested: unknown = value;
    if (typeof value === 'string' && datatype !== 'BYTES') {
      const text = value.trim();
      if (text.startsWith('[')) {
        nested = parseExactJson(Buffer.from(text, 'utf8'), `input '${name}' (${JSON.stringify(value)})`);
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
