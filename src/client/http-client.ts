/**
 * A client of the V2 HTTP protocol, for Nereid and Triton alike: health, metadata, repository and
 * inference with typed tensors, binary by default (exact for every datatype, and cheaper than JSON
 * numbers), classification decoding, and retries with backoff where the server said to retry.
 */
import { retryingCall, type RetryOptions } from '../core/retry.js';
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
import { compress, type ContentCoding } from '../protocol/content-coding.js';
import { sharedMemoryParameters } from '../protocol/shared-memory-tensors.js';

export interface HttpClientOptions {
  /** The server's base URL, e.g. http://127.0.0.1:8000. */
  url: string;
  /** Sent as Authorization: Bearer. */
  token?: string;
  retry?: RetryOptions;
  /** Abandons a call (each try) after this long. Default: none. */
  timeoutMs?: number;
}

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
  /** Send the request body compressed (Content-Encoding), as tritonclient's request_compression_algorithm. */
  requestCompression?: Compression;
  /**
   * Ask for the answer compressed (Accept-Encoding), as tritonclient's response_compression_algorithm; fetch inflates it.
   * Without it the client asks for none: compressing on loopback or a fast network costs more CPU than it saves.
   */
  responseCompression?: Compression;
}

export type Compression = ContentCoding;

export interface InferResult {
  model: string;
  version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: Record<string, OutputTensor>;
}

/** A call the server answered with an error: its HTTP status and message. */
export class ClientError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Seconds the server asked to wait before trying again, when it did. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ClientError';
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

/** Overload refusals and refused connections are worth another try; any other answer is final. */
function retryVerdict(error: unknown) {
  if (error instanceof ClientError) {
    const retry = error.status === 503 || error.status === 429;
    return { retry, delayMs: retry && error.retryAfterSeconds !== undefined && Number.isFinite(error.retryAfterSeconds) ? error.retryAfterSeconds * 1000 : undefined };
  }
  return { retry: error instanceof ConnectionError && error.code === 'ECONNREFUSED' };
}

const HEADER_LENGTH = 'inference-header-content-length';

interface JsonOutput {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: { binary_data_size?: number };
}

export class HttpClient {
  private readonly base: string;
  private readonly outputNames = new OutputNamesCache();

  constructor(private readonly options: HttpClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
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

  modelMetadata(model: string, version?: string): Promise<{ name: string; versions?: string[]; platform: string; inputs: unknown[]; outputs: unknown[] }> {
    return this.json('GET', this.modelPath(model, version));
  }

  modelConfig(model: string, version?: string): Promise<Record<string, unknown>> {
    return this.json('GET', `${this.modelPath(model, version)}/config`);
  }

  modelStatistics(model?: string, version?: string): Promise<{ model_stats: Record<string, unknown>[] }> {
    return this.json('GET', model === undefined ? '/v2/models/stats' : `${this.modelPath(model, version)}/stats`);
  }

  repositoryIndex(ready = false): Promise<{ name: string; version?: string; state?: string; reason?: string }[]> {
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

  /** Every registered system shared memory region, or the one named. */
  systemSharedMemoryStatus(region?: string): Promise<{ name: string; key: string; offset: number; byte_size: number }[]> {
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
    const binary = options.binary ?? true;
    const blobs: Buffer[] = [];
    const inputParts = Object.entries(inputs).map(([name, tensor]) => {
      const head = `{"name":${JSON.stringify(name)},"datatype":"${tensor.datatype}","shape":[${tensor.shape.join(',')}]`;
      if ('sharedMemory' in tensor) return `${head},"parameters":${JSON.stringify(sharedMemoryParameters(tensor.sharedMemory))}}`;
      if (!binary) return `${head},"data":${tensorJson(tensor)}}`;
      const bytes = tensorBytes(tensor);
      blobs.push(bytes);
      return `${head},"parameters":{"binary_data_size":${bytes.length}}}`;
    });
    const outputParameters = { ...(binary ? { binary_data: true } : {}), ...(options.classification ? { classification: options.classification } : {}) };
    const outputNames = await requestedOutputNames(options, () => this.outputNames.namesOf(model, options.version, () => this.modelMetadata(model, options.version)));
    const inSharedMemory = options.sharedMemoryOutputs ?? {};
    const requested = outputNames?.map((name) => ({
      name,
      parameters: inSharedMemory[name] ? sharedMemoryParameters(inSharedMemory[name]) : outputParameters,
    }));
    const parameters = { ...options.parameters, ...(binary && !requested ? { binary_data_output: true } : {}) };
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
    const response = await this.call('POST', `${this.modelPath(model, options.version)}/infer`, body, headers, options.signal);
    return this.decodeInferResponse(response, options.classification !== undefined);
  }

  /** Images to labels through /classify (Nereid's own route): the top k labels of each, with confidence. */
  async classify(model: string, image: Buffer, options: { version?: string; topK?: number; contentType?: string } = {}): Promise<{ results: { predictions: { label?: string; index: number; score: number }[]; confidence?: number }[] }> {
    const query = options.topK !== undefined ? `?top_k=${options.topK}` : '';
    const response = await this.call('POST', `${this.modelPath(model, options.version)}/classify${query}`, image, { 'content-type': options.contentType ?? 'image/png' });
    return JSON.parse(Buffer.from(await response.arrayBuffer()).toString('utf8'));
  }

  /**
   * Objects in an image through /detect (Nereid's own route): each with its label, score and box
   * ([x_min, y_min, x_max, y_max] in the image's pixels), the best first.
   */
  async detect(
    model: string,
    image: Buffer,
    options: { version?: string; threshold?: number; maxDetections?: number; iouThreshold?: number; contentType?: string } = {},
  ): Promise<{ image: { width: number; height: number }; detections: { label: string; index: number; score: number; box: [number, number, number, number] }[] }> {
    const query = new URLSearchParams();
    if (options.threshold !== undefined) query.set('threshold', String(options.threshold));
    if (options.maxDetections !== undefined) query.set('max_detections', String(options.maxDetections));
    if (options.iouThreshold !== undefined) query.set('iou_threshold', String(options.iouThreshold));
    const search = query.size > 0 ? `?${query}` : '';
    const response = await this.call('POST', `${this.modelPath(model, options.version)}/detect${search}`, image, { 'content-type': options.contentType ?? 'image/png' });
    return JSON.parse(Buffer.from(await response.arrayBuffer()).toString('utf8'));
  }

  private async decodeInferResponse(response: Response, classification: boolean): Promise<InferResult> {
    const body = Buffer.from(await response.arrayBuffer());
    const headerLength = Number(response.headers.get(HEADER_LENGTH) ?? body.length);
    const head = JSON.parse(body.subarray(0, headerLength).toString('utf8')) as { model_name: string; model_version: string; id?: string; parameters?: Record<string, unknown>; outputs: JsonOutput[] };
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
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** One call, tried again after a 503 or 429 (waiting what Retry-After says) or a refused connection. */
  private call(method: string, path: string, body?: Buffer, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
    const { token, timeoutMs } = this.options;
    return retryingCall(this.options.retry, signal, retryVerdict, async () => {
      const signals = [signal, timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined].filter((candidate) => candidate !== undefined);
      const response = await fetch(`${this.base}${path}`, {
        method,
        // A Buffer is a Uint8Array, which fetch sends as is; only the DOM typings ask for a plain ArrayBuffer behind it.
        body: body as Uint8Array<ArrayBuffer> | undefined,
        headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
        signal: signals.length ? AbortSignal.any(signals) : undefined,
      }).catch((error: Error) => {
        const cause = error.cause as { code?: string; message?: string } | undefined;
        throw new ConnectionError(`${method} ${this.base}${path} failed: ${cause?.message ?? error.message}`, cause?.code, error);
      });
      if (response.ok) return response;
      const text = await response.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: the text is the message
      }
      const retryAfter = response.headers.get('retry-after');
      throw new ClientError(response.status, `${method} ${path}: ${response.status} ${message}`, retryAfter !== null ? Number(retryAfter) : undefined);
    });
  }
}
