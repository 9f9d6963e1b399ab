/**
 * A client of the V2 HTTP protocol, for Nereid and Triton alike: health, metadata, repository and
 * inference with typed tensors, binary by default (exact for every datatype, and cheaper than JSON
 * numbers), classification decoding, and retries with backoff where the server said to retry.
 */
import { z } from 'zod';
import { errorCodeOfHttpStatus, type ErrorCode } from '../core/errors.js';
import { OptionError, parseOptions, refuseOptionValue, refuseUnknownOptions } from '../core/options.js';
import { MAX_TIMER_MS, retryingCall, retryOptionsSchema } from '../core/retry.js';
import {
  OutputNamesCache,
  outputFromBytes,
  outputFromJson,
  outputInSharedMemory,
  requestedOutputNames,
  tensorBytes,
  tensorJson,
  withClasses,
  type ClientInput,
  type OutputTensor,
  type SharedMemoryTensor,
} from './client-tensors.js';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { clientTlsOptionsSchema } from '../core/tls.js';
import { compress, decompress, isContentCoding, type ContentCoding } from '../protocol/content-coding.js';
import { sharedMemoryParameters } from '../protocol/shared-memory-tensors.js';
import { HEADER_LENGTH, parseExactJson } from '../protocol/v2-json.js';
import type { timingAnswer } from '../model/image-classification.js';
import type { ImageDetections } from '../model/object-detection.js';
import type { ImageClassification } from '../processing/output-postprocessor.js';

/** A client's `timeoutMs`: positive, and no longer than a timer can wait. */
export const clientTimeoutSchema = z.number().positive().max(MAX_TIMER_MS).optional();

/** Whether `url` is an http:// or https:// URL (a trailing slash or not). */
const isHttpUrl = (url: string) => URL.canParse(url) && ['http:', 'https:'].includes(new URL(url).protocol);

export const httpClientOptionsSchema = z.object({
  /** The server's base URL, e.g. http://127.0.0.1:8000. */
  url: z
    .string({ error: "expected the server's URL, e.g. http://127.0.0.1:8000" })
    .refine(isHttpUrl, { error: (issue) => `expects http://host:port or https://host:port, got '${String(issue.input)}'` }),
  /** Sent as Authorization: Bearer. */
  token: z.string().optional(),
  retry: retryOptionsSchema.prefault({}),
  /** Abandons a call (each try) after this long. Default: none. */
  timeoutMs: clientTimeoutSchema,
  /** With an https url: the CA to trust instead of Node's built-in ones, and a certificate with its key for mutual TLS. */
  tls: clientTlsOptionsSchema.optional(),
});

export type HttpClientOptions = z.input<typeof httpClientOptionsSchema>;

export interface InferOptions {
  version?: string;
  /** Outputs to return (default: all). */
  outputs?: readonly string[];
  /** Tensors as raw bytes (true, the default) or JSON arrays. */
  binary?: boolean;
  /** Return the top k classes of each output instead of its values (Triton's classification extension). */
  classification?: number;
  /** Outputs the server writes to registered shared memory regions instead of answering them (the others still come back). */
  sharedMemoryOutputs?: Record<string, SharedMemoryTensor>;
  /** Request parameters (priority, timeout, sequence_id, …). */
  parameters?: Record<string, string | number | boolean>;
  id?: string;
  signal?: AbortSignal;
  /**
   * Abandons this call (each try) after this long, in place of the client's `timeoutMs`. The server is told: over HTTP
   * as the V2 `timeout` parameter in microseconds, as tritonclient sends it (unless `parameters.timeout` is given),
   * over gRPC as the call's deadline.
   */
  timeoutMs?: number;
  /** Send the request body compressed (Content-Encoding), as tritonclient's request_compression_algorithm. */
  requestCompression?: Compression;
  /**
   * Ask for the answer compressed (Accept-Encoding), as tritonclient's response_compression_algorithm; the client inflates it.
   * Without it the client asks for none: compressing on loopback or a fast network costs more CPU than it saves.
   */
  responseCompression?: Compression;
}

export type Compression = ContentCoding;

/** What classify and detect send an image as when the caller names no type. */
export const IMAGE_BODY_TYPE = 'application/octet-stream';

const INFER_OPTIONS = {
  version: true,
  outputs: true,
  binary: true,
  classification: true,
  sharedMemoryOutputs: true,
  parameters: true,
  id: true,
  signal: true,
  timeoutMs: true,
  requestCompression: true,
  responseCompression: true,
} satisfies Record<keyof InferOptions, true>;
/** Read on every call: listed once. */
const INFER_OPTION_KEYS = Object.keys(INFER_OPTIONS);

/** Refuses a compression that is not one the server and this client speak, naming the option. */
function checkCompression(what: string, option: string, value: unknown): void {
  if (value !== undefined && !isContentCoding(value as string)) refuseOptionValue(what, option, "'gzip' or 'deflate'", value);
}

/** An infer call's options, checked as the constructors' are: a misspelt key (clasification) would otherwise be ignored. */
export function checkInferOptions(what: string, options: InferOptions | undefined): void {
  refuseUnknownOptions(what, options, INFER_OPTION_KEYS);
  checkCompression(what, 'requestCompression', options?.requestCompression);
  checkCompression(what, 'responseCompression', options?.responseCompression);
  if (!clientTimeoutSchema.safeParse(options?.timeoutMs).success) refuseOptionValue(what, 'timeoutMs', `a number of milliseconds above 0 and at most ${MAX_TIMER_MS}`, options?.timeoutMs);
}

/** A call's time limit, for both clients: its own `timeoutMs`, else the client's. */
export const callTimeoutMs = (options: Pick<InferOptions, 'timeoutMs'> | undefined, clientTimeoutMs: number | undefined) => options?.timeoutMs ?? clientTimeoutMs;

export interface InferResult {
  model: string;
  version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: Record<string, OutputTensor>;
}

/** A model's metadata, the same from both clients: shapes as numbers, -1 for a dimension of any size. */
export interface ModelMetadataAnswer {
  name: string;
  versions?: string[];
  platform: string;
  inputs: { name: string; datatype: string; shape: number[] }[];
  outputs: { name: string; datatype: string; shape: number[] }[];
  /** Nereid's over HTTP (quantized versions); the protocol's gRPC message has no field for them. */
  parameters?: Record<string, unknown>;
}

/** A row of the repository index, the same from both clients: a model never loaded has its name only; a config that failed, no version. */
export interface RepositoryIndexRow {
  name: string;
  version?: string;
  state?: string;
  reason?: string;
}

/** A registered system shared memory region, the same from both clients. */
export interface SharedMemoryRegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

/** A call the server answered with an error: its HTTP status and message. */
export class ClientError extends Error {
  /** The status as a protocol-neutral code ('NOT_FOUND', 'UNAVAILABLE', …), as GrpcCallError's codeName names its status. */
  readonly codeName: ErrorCode;

  constructor(
    readonly status: number,
    message: string,
    /** Seconds the server asked to wait before trying again, when it did. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ClientError';
    this.codeName = errorCodeOfHttpStatus(status);
  }
}

/** The server could not be reached (nothing was sent, or the connection broke). */
export class ConnectionError extends Error {
  constructor(
    message: string,
    /** The system error code, e.g. ECONNREFUSED. */
    readonly code: string | undefined,
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = 'ConnectionError';
  }
}

/** A call the client's `timeoutMs` abandoned (a ConnectionError, so existing checks still match it). */
export class HttpTimeoutError extends ConnectionError {
  constructor(message: string, code: string | undefined, cause: unknown) {
    super(message, code, cause);
    this.name = 'HttpTimeoutError';
  }
}

/** A call the caller's `signal` stopped, in flight or while waiting to try again (a ConnectionError too). */
export class HttpAbortError extends ConnectionError {
  constructor(message: string, code: string | undefined, cause: unknown) {
    super(message, code, cause);
    this.name = 'HttpAbortError';
  }
}

/** Overload refusals and refused connections are worth another try; any other answer is final. */
function retryVerdict(error: unknown) {
  if (error instanceof ClientError) {
    const retry = error.status === 503 || error.status === 429;
    return { retry, delayMs: retry && error.retryAfterSeconds !== undefined && Number.isFinite(error.retryAfterSeconds) ? error.retryAfterSeconds * 1000 : undefined };
  }
  return { retry: error instanceof ConnectionError && error.code === 'ECONNREFUSED' };
}

interface JsonOutput {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: { binary_data_size?: number };
}

/** What /classify answers for one image: the model and version that ran, the top k labels, the confidence in the top one and where the time went. */
export interface ClassifyAnswer extends ImageClassification {
  model_name: string;
  model_version: string;
  timing: ReturnType<typeof timingAnswer>;
}

/** /detect's answer for one image: the photo's size, the objects found (the best first), and where the time went. */
export interface DetectAnswer extends ImageDetections {
  model_name: string;
  model_version: string;
  timing: ReturnType<typeof timingAnswer>;
}

/** An input's name, datatype and shape as V2 JSON, open for its data or parameters. */
const inputHead = (name: string, tensor: ClientInput) => `{"name":${JSON.stringify(name)},"datatype":"${tensor.datatype}","shape":[${tensor.shape.join(',')}]`;

/** An answer as read off the connection, its body already inflated. */
interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export class HttpClient {
  private readonly base: string;
  private readonly outputNames = new OutputNamesCache();
  private readonly secure: boolean;
  // node:http(s) rather than fetch: only an Agent takes the CA, certificate and key a private or mutual TLS server needs.
  private readonly agent: HttpAgent;

  private readonly options: z.output<typeof httpClientOptionsSchema>;

  constructor(options: HttpClientOptions) {
    this.options = parseOptions('HttpClient', httpClientOptionsSchema, options);
    this.base = this.options.url.replace(/\/+$/, '');
    this.secure = new URL(this.base).protocol === 'https:';
    if (this.options.tls && !this.secure) throw new OptionError(`HttpClient: tls (ca, cert, key) applies to an https:// url; got '${this.options.url}'`);
    this.agent = this.secure ? new HttpsAgent({ keepAlive: true, ...this.options.tls }) : new HttpAgent({ keepAlive: true });
  }

  /** Closes the idle connections kept for the next calls (they do not keep the process alive meanwhile). */
  close(): void {
    this.agent.destroy();
  }

  serverLive(): Promise<boolean> {
    return this.status('/v2/health/live');
  }

  serverReady(): Promise<boolean> {
    return this.status('/v2/health/ready');
  }

  modelReady(model: string, version?: string): Promise<boolean> {
    return this.status(`${this.modelPath(model, version)}/ready`);
  }

  serverMetadata(): Promise<{ name: string; version: string; extensions: string[] }> {
    return this.json('GET', '/v2');
  }

  modelMetadata(model: string, version?: string): Promise<ModelMetadataAnswer> {
    return this.json('GET', this.modelPath(model, version));
  }

  modelConfig(model: string, version?: string): Promise<Record<string, unknown>> {
    return this.json('GET', `${this.modelPath(model, version)}/config`);
  }

  /** Statistics of every model (no `model`, or '' as over gRPC and in tritonclient), or of the one named. */
  modelStatistics(model?: string, version?: string): Promise<{ model_stats: Record<string, unknown>[] }> {
    return this.json('GET', model ? `${this.modelPath(model, version)}/stats` : '/v2/models/stats');
  }

  repositoryIndex(ready = false): Promise<RepositoryIndexRow[]> {
    return this.json('POST', '/v2/repository/index', { ready });
  }

  async loadModel(model: string, config?: Record<string, unknown>): Promise<void> {
    await this.json('POST', `/v2/repository/models/${encodeURIComponent(model)}/load`, config ? { parameters: { config: JSON.stringify(config) } } : {});
  }

  /** `unloadDependents`: an ensemble's steps go too (those no other loaded ensemble uses), as tritonclient's unload_dependents. */
  async unloadModel(model: string, options: { unloadDependents?: boolean } = {}): Promise<void> {
    const body = options.unloadDependents !== undefined ? { parameters: { unload_dependents: options.unloadDependents } } : {};
    await this.json('POST', `/v2/repository/models/${encodeURIComponent(model)}/unload`, body);
  }

  /** Shifts unversioned requests between a model's loaded versions (Nereid's canary weights, version → weight), without a reload. */
  setTraffic(model: string, weights: Record<string, number>): Promise<{ model: string; weights: Record<string, number> }> {
    return this.json('POST', `/v2/repository/models/${encodeURIComponent(model)}/traffic`, { weights });
  }

  /** The drift and out-of-distribution state the server keeps for a version with a reference profile (Nereid's /monitor). */
  modelMonitor(model: string, version?: string): Promise<Record<string, unknown>> {
    return this.json('GET', `${this.modelPath(model, version)}/monitor`);
  }

  /** Every registered system shared memory region, or the one named. */
  systemSharedMemoryStatus(region?: string): Promise<SharedMemoryRegionStatus[]> {
    return this.json('GET', `/v2/systemsharedmemory${region ? `/region/${encodeURIComponent(region)}` : ''}/status`);
  }

  /** Registers `byteSize` bytes from `offset` of the POSIX shared memory object `key` (e.g. '/input0') as `region`. */
  async registerSystemSharedMemory(region: string, key: string, byteSize: number, offset = 0): Promise<void> {
    await this.json('POST', `/v2/systemsharedmemory/region/${encodeURIComponent(region)}/register`, { key, offset, byte_size: byteSize });
  }

  /** Unregisters the region named, or every region. */
  async unregisterSystemSharedMemory(region?: string): Promise<void> {
    await this.json('POST', `/v2/systemsharedmemory${region ? `/region/${encodeURIComponent(region)}` : ''}/unregister`);
  }

  /** Runs a model on named inputs; outputs come back by name, decoded to typed arrays. */
  async infer(model: string, inputs: Record<string, ClientInput>, options: InferOptions = {}): Promise<InferResult> {
    checkInferOptions('HttpClient.infer', options);
    const binary = options.binary ?? true;
    const blobs: Buffer[] = [];
    const inputParts = Object.entries(inputs).map(([name, tensor]) => {
      if ('sharedMemory' in tensor) return `${inputHead(name, tensor)},"parameters":${JSON.stringify(sharedMemoryParameters(tensor.sharedMemory))}}`;
      // The data before the head: its checks name an input built wrong before its shape is written out.
      if (!binary) {
        const data = tensorJson(name, tensor);
        return `${inputHead(name, tensor)},"data":${data}}`;
      }
      const bytes = tensorBytes(name, tensor);
      blobs.push(bytes);
      return `${inputHead(name, tensor)},"parameters":{"binary_data_size":${bytes.length}}}`;
    });
    const outputParameters = { ...(binary ? { binary_data: true } : {}), ...(options.classification ? { classification: options.classification } : {}) };
    const outputNames = await requestedOutputNames(options, () => this.outputNames.namesOf(model, options.version, () => this.modelMetadata(model, options.version)));
    const inSharedMemory = options.sharedMemoryOutputs ?? {};
    const requested = outputNames?.map((name) => ({
      name,
      parameters: inSharedMemory[name] ? sharedMemoryParameters(inSharedMemory[name]) : outputParameters,
    }));
    const timeoutMs = callTimeoutMs(options, this.options.timeoutMs);
    const parameters = {
      // The server's V2 request timeout, in microseconds (the model's queue policy applies it where it allows overrides).
      ...(timeoutMs !== undefined ? { timeout: Math.ceil(timeoutMs * 1000) } : {}),
      ...options.parameters,
      ...(binary && !requested ? { binary_data_output: true } : {}),
    };
    const rest = JSON.stringify({
      ...(options.id !== undefined ? { id: options.id } : {}),
      ...(Object.keys(parameters).length ? { parameters } : {}),
      ...(requested ? { outputs: requested } : {}),
    });
    const header = Buffer.from(`{"inputs":[${inputParts.join(',')}]${rest === '{}' ? '' : `,${rest.slice(1, -1)}`}}`);
    const plainBody = Buffer.concat([header, ...blobs]);
    const headers: Record<string, string> = {
      'content-type': blobs.length ? 'application/octet-stream' : 'application/json',
      'accept-encoding': options.responseCompression ?? 'identity',
    };
    if (blobs.length) headers[HEADER_LENGTH] = String(header.length);
    let body: Buffer = plainBody;
    if (options.requestCompression) {
      body = await compress(plainBody, options.requestCompression);
      headers['content-encoding'] = options.requestCompression;
    }
    const response = await this.call('POST', `${this.modelPath(model, options.version)}/infer`, body, headers, options.signal, timeoutMs);
    return this.decodeInferResponse(response, options.classification !== undefined);
  }

  /**
   * Images to labels through /classify (Nereid's own route): the top k labels of each, with confidence. The image goes
   * as application/octet-stream unless `contentType` names its type: the server tells the format by the bytes, and a
   * fixed image/png would mislabel a JPEG to every proxy and log on the way.
   */
  async classify(model: string, image: Buffer, options: { version?: string; topK?: number; contentType?: string } = {}): Promise<ClassifyAnswer> {
    const query = options.topK !== undefined ? `?top_k=${options.topK}` : '';
    const response = await this.call('POST', `${this.modelPath(model, options.version)}/classify${query}`, image, { 'content-type': options.contentType ?? IMAGE_BODY_TYPE });
    return JSON.parse(response.body.toString('utf8'));
  }

  /**
   * Objects in an image through /detect (Nereid's own route): each with its label, score and box
   * ([x_min, y_min, x_max, y_max] in the image's pixels), the best first. The image goes as classify's does.
   */
  async detect(
    model: string,
    image: Buffer,
    options: { version?: string; threshold?: number; maxDetections?: number; iouThreshold?: number; contentType?: string } = {},
  ): Promise<DetectAnswer> {
    const query = new URLSearchParams();
    if (options.threshold !== undefined) query.set('threshold', String(options.threshold));
    if (options.maxDetections !== undefined) query.set('max_detections', String(options.maxDetections));
    if (options.iouThreshold !== undefined) query.set('iou_threshold', String(options.iouThreshold));
    const search = query.size > 0 ? `?${query}` : '';
    const response = await this.call('POST', `${this.modelPath(model, options.version)}/detect${search}`, image, { 'content-type': options.contentType ?? IMAGE_BODY_TYPE });
    return JSON.parse(response.body.toString('utf8'));
  }

  private decodeInferResponse(response: Answer, classification: boolean): InferResult {
    const body = response.body;
    const headerLength = Number(response.headers[HEADER_LENGTH] ?? body.length);
    const head = parseExactJson(body.subarray(0, headerLength), "the server's answer") as { model_name: string; model_version: string; id?: string; parameters?: Record<string, unknown>; outputs: JsonOutput[] };
    let offset = headerLength;
    const outputs: Record<string, OutputTensor> = {};
    for (const output of head.outputs) {
      const size = output.parameters?.binary_data_size;
      let tensor: OutputTensor;
      const inSharedMemory = outputInSharedMemory(output.name, output.datatype, output.shape, output.parameters);
      if (inSharedMemory) {
        tensor = inSharedMemory;
      } else if (size !== undefined) {
        tensor = outputFromBytes(output.name, output.datatype, output.shape, body.subarray(offset, offset + size));
        offset += size;
      } else {
        tensor = outputFromJson(output.name, output.datatype, output.shape, output.data ?? []);
      }
      outputs[output.name] = classification ? withClasses(tensor) : tensor;
    }
    return { model: head.model_name, version: head.model_version, ...(head.id ? { id: head.id } : {}), ...(head.parameters ? { parameters: head.parameters } : {}), outputs };
  }

  private modelPath(model: string, version?: string): string {
    return `/v2/models/${encodeURIComponent(model)}${version ? `/versions/${encodeURIComponent(version)}` : ''}`;
  }

  private async status(path: string): Promise<boolean> {
    try {
      await this.call('GET', path);
      return true;
    } catch (error) {
      // A refusal (4xx) or an unavailable server (503) is a "no"; anything else is a failure to ask.
      if (error instanceof ClientError && (error.status < 500 || error.status === 503)) return false;
      throw error;
    }
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.call(method, path, body === undefined ? undefined : Buffer.from(JSON.stringify(body)), { 'content-type': 'application/json' });
    const text = response.body.toString('utf8');
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** One call, tried again after a 503 or 429 (waiting what Retry-After says) or a refused connection. */
  private call(method: string, path: string, body?: Buffer, headers: Record<string, string> = {}, signal?: AbortSignal, timeoutMs = this.options.timeoutMs): Promise<Answer> {
    const { token } = this.options;
    const failed = (why: unknown) => `${method} ${this.base}${path} failed: ${String((why as Error | undefined)?.message ?? why)}`;
    const tried = retryingCall(this.options.retry, signal, retryVerdict, async () => {
      const timeout = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
      const signals = [signal, timeout].filter((candidate) => candidate !== undefined);
      const combined = signals.length ? AbortSignal.any(signals) : undefined;
      const sent = { ...headers, ...(body ? { 'content-length': String(body.length) } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) };
      const response = await this.send(method, path, body, sent, combined).catch((error: NodeJS.ErrnoException) => {
        const message = failed(combined?.aborted ? combined.reason : error);
        // The caller's abort first: a timeout that fires after it changes nothing the caller did not ask for.
        if (signal?.aborted) throw new HttpAbortError(message, error.code, error);
        if (timeout?.aborted) throw new HttpTimeoutError(message, error.code, error);
        throw new ConnectionError(message, error.code, error);
      });
      if (response.status >= 200 && response.status < 300) return response;
      const text = response.body.toString('utf8');
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: the text is the message
      }
      const retryAfter = response.headers['retry-after'];
      throw new ClientError(response.status, `${method} ${path}: ${response.status} ${message}`, retryAfter !== undefined ? Number(retryAfter) : undefined);
    });
    // An abort while waiting to try again ends the wait with the signal's reason: the same error as an abort in flight.
    return tried.catch((error: unknown) => {
      throw signal?.aborted && error === signal.reason ? new HttpAbortError(failed(error), undefined, error) : error;
    });
  }

  private send(method: string, path: string, body: Buffer | undefined, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      let gotAnswer = false;
      const request = (this.secure ? httpsRequest : httpRequest)(`${this.base}${path}`, { method, headers, agent: this.agent, signal }, (response) => {
        gotAnswer = true;
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const coding = response.headers['content-encoding'];
          const raw = Buffer.concat(chunks);
          (isContentCoding(coding) ? decompress(raw, coding) : Promise.resolve(raw)).then((inflated) => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: inflated }), reject);
        });
      });
      request.on('error', (error: NodeJS.ErrnoException) => {
        // A kept-alive connection the server (or a proxy) closed while idle fails as it is reused, before any answer:
        // the request never reached a handler, so it goes again (each stale connection fails once and is dropped).
        if (request.reusedSocket && !gotAnswer && (error.code === 'ECONNRESET' || error.code === 'EPIPE') && !signal?.aborted) {
          this.send(method, path, body, headers, signal).then(resolve, reject);
        } else {
          reject(error);
        }
      });
      request.end(body);
    });
  }
}
