/**
 * A client of the V2 gRPC protocol (Triton's GRPCInferenceService), with the same typed tensors as
 * the HTTP client: inputs travel as raw_input_contents, outputs come back decoded; UNAVAILABLE and
 * RESOURCE_EXHAUSTED (but not a message over the size limit) are tried again with backoff; ModelStreamInfer is an async iterable of answers.
 */
import * as grpc from '@grpc/grpc-js';
import { errorCodeOfGrpcStatus, type ErrorCode } from '../core/errors.js';
import { parametersToProto, parameterValueOf, type ParameterMessage } from '../frontends/grpc/v2-grpc-codec.js';
import { loadInferenceProto } from '../frontends/grpc/v2-grpc-proto.js';
import {
  OutputNamesCache,
  outputFromBytes,
  outputFromJson,
  outputInSharedMemory,
  requestedOutputNames,
  tensorBytes,
  withClasses,
  type ClientInput,
  type OutputTensor,
} from './client-tensors.js';
import { sharedMemoryParameters } from '../protocol/shared-memory-tensors.js';
import {
  callTimeoutMs,
  checkInferOptions,
  clientTimeoutSchema,
  type Compression,
  type InferOptions,
  type InferResult,
  type ModelMetadataAnswer,
  type RepositoryIndexRow,
  type SharedMemoryRegionStatus,
} from './http-client.js';
import { plainMessage } from './grpc-plain-values.js';
import { z } from 'zod';
import { OptionError, parseOptions } from '../core/options.js';
import { retryingCall, retryOptionsSchema } from '../core/retry.js';
import { clientTlsOptionsSchema } from '../core/tls.js';

export const grpcClientOptionsSchema = z.object({
  /** host:port, e.g. 127.0.0.1:8001. */
  address: z.string({ error: "expected the server's host:port, e.g. 127.0.0.1:8001" }),
  /** Sent as authorization: Bearer metadata. */
  token: z.string().optional(),
  /**
   * TLS (none: plaintext): the CA to trust instead of Node's built-in ones, and a certificate with its key for mutual
   * TLS; `{}` is TLS with the built-in CAs.
   */
  tls: clientTlsOptionsSchema.optional(),
  /** @deprecated `tls: { ca }`. */
  rootCertificate: z.instanceof(Buffer).optional(),
  retry: retryOptionsSchema.prefault({}),
  /** A deadline for each call. Default: none. */
  timeoutMs: clientTimeoutSchema,
  /**
   * Compress each request message (tritonclient's compression_algorithm). Set on the channel, as grpc-js compresses per
   * channel; answers come back uncompressed (grpc-js servers do not compress).
   */
  compression: z.enum(['gzip', 'deflate'] satisfies Compression[], { error: "expected 'gzip' or 'deflate'" }).optional(),
});

export type GrpcClientOptions = z.input<typeof grpcClientOptionsSchema>;

const COMPRESSION_ALGORITHMS = { deflate: 1, gzip: 2 } as const;

interface InferResponseMessage {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: Record<string, ParameterMessage>;
  outputs: { name: string; datatype: string; shape: string[]; parameters?: Record<string, ParameterMessage>; contents?: Record<string, unknown[]> | null }[];
  raw_output_contents: Buffer[];
}

/** A gRPC failure as the server stated it: its status code and details. */
export class GrpcCallError extends Error {
  /** The status as a protocol-neutral code ('NOT_FOUND', 'UNAVAILABLE', …), comparable without @grpc/grpc-js, as ClientError's codeName. */
  readonly codeName: ErrorCode;

  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`${grpc.status[code] ?? code}: ${details}`);
    this.name = 'GrpcCallError';
    this.codeName = errorCodeOfGrpcStatus(code);
  }
}

/** A call the client's `timeoutMs` ended: DEADLINE_EXCEEDED (a GrpcCallError, so existing checks still match it). */
export class GrpcTimeoutError extends GrpcCallError {
  constructor(code: grpc.status, details: string) {
    super(code, details);
    this.name = 'GrpcTimeoutError';
  }
}

/** A call the caller's `signal` stopped, before it went, in flight or while waiting to try again: CANCELLED (a GrpcCallError too). */
export class GrpcAbortError extends GrpcCallError {
  constructor(code: grpc.status, details: string) {
    super(code, details);
    this.name = 'GrpcAbortError';
  }
}

/** An error grpc-js reports for a call: a status code with its details. */
function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as grpc.ServiceError).code === 'number' && typeof (error as grpc.ServiceError).details === 'string';
}

function retryVerdict(error: unknown) {
  if (!(error instanceof GrpcCallError)) return { retry: false };
  // RESOURCE_EXHAUSTED is a server's load (tried again, as HTTP's 429) or a message over the size limit, which no later try changes (as HTTP's 413):
  // grpc-js's own "message larger than max" (or, compressed, "decompresses to a size larger than"), or Nereid's "answer is larger than max" for
  // an answer over its send limit, after the model ran.
  const tooLarge = error.code === grpc.status.RESOURCE_EXHAUSTED && /larger than max|decompresses to a size larger than/i.test(error.details);
  return { retry: error.code === grpc.status.UNAVAILABLE || (error.code === grpc.status.RESOURCE_EXHAUSTED && !tooLarge) };
}

/** One request on a stream: its options are infer's, less `signal` and `timeoutMs` (the stream cannot end one request; the client's timeoutMs bounds the stream). */
export interface StreamRequest {
  model: string;
  inputs: Record<string, ClientInput>;
  options?: Omit<InferOptions, 'signal' | 'timeoutMs'>;
}

export class GrpcClient {
  private readonly client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  private readonly outputNames = new OutputNamesCache();
  private readonly options: z.output<typeof grpcClientOptionsSchema>;

  constructor(options: GrpcClientOptions) {
    this.options = parseOptions('GrpcClient', grpcClientOptionsSchema, options);
    const { Client } = loadInferenceProto();
    const tls = this.options.tls ?? (this.options.rootCertificate ? { ca: this.options.rootCertificate } : undefined);
    const pem = (part: string | Buffer | undefined) => (part === undefined ? null : Buffer.from(part));
    const credentials = tls ? grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert)) : grpc.credentials.createInsecure();
    const channelOptions = this.options.compression ? { 'grpc.default_compression_algorithm': COMPRESSION_ALGORITHMS[this.options.compression] } : {};
    this.client = new Client(this.options.address, credentials, channelOptions) as GrpcClient['client'];
  }

  close(): void {
    this.client.close();
  }

  async serverReady(): Promise<boolean> {
    return ((await this.unary('ServerReady', {})) as { ready: boolean }).ready;
  }

  async serverLive(): Promise<boolean> {
    return ((await this.unary('ServerLive', {})) as { live: boolean }).live;
  }

  async modelReady(model: string, version = ''): Promise<boolean> {
    return ((await this.unary('ModelReady', { name: model, version })) as { ready: boolean }).ready;
  }

  /** Every registered system shared memory region, or the one named, as HttpClient lists them: [{ name, key, offset, byte_size }]. */
  async systemSharedMemoryStatus(region = ''): Promise<SharedMemoryRegionStatus[]> {
    const answer = await this.unary('SystemSharedMemoryStatus', { name: region });
    return Object.values(plainMessage<{ regions: Record<string, SharedMemoryRegionStatus> }>('inference.SystemSharedMemoryStatusResponse', answer).regions);
  }

  /** Registers `byteSize` bytes from `offset` of the POSIX shared memory object `key` (e.g. '/input0') as `region`. */
  async registerSystemSharedMemory(region: string, key: string, byteSize: number, offset = 0): Promise<void> {
    await this.unary('SystemSharedMemoryRegister', { name: region, key, offset, byte_size: byteSize });
  }

  /** Unregisters the region named, or every region. */
  async unregisterSystemSharedMemory(region = ''): Promise<void> {
    await this.unary('SystemSharedMemoryUnregister', { name: region });
  }

  /** As HttpClient's: shapes as numbers (-1: any size). */
  async modelMetadata(model: string, version = ''): Promise<ModelMetadataAnswer> {
    return plainMessage('inference.ModelMetadataResponse', await this.unary('ModelMetadata', { name: model, version }));
  }

  serverMetadata(): Promise<{ name: string; version: string; extensions: string[] }> {
    return this.unary('ServerMetadata', {}) as Promise<{ name: string; version: string; extensions: string[] }>;
  }

  /**
   * The model's config as the protocol's ModelConfig message carries it, with HttpClient's values: 64-bit numbers as
   * numbers (decimal strings beyond 2^53), no oneof markers, no unset message. Fields the message lacks (Nereid's
   * additions, model_warmup) are HTTP's only; proto3 defaults the JSON leaves out (gpus: [], default_model_filename: '') gRPC's.
   */
  async modelConfig(model: string, version = ''): Promise<Record<string, unknown>> {
    return plainMessage<{ config: Record<string, unknown> }>('inference.ModelConfigResponse', await this.unary('ModelConfig', { name: model, version })).config;
  }

  /**
   * Statistics of every model, or of the one named, with HttpClient's values (counts, nanoseconds and last_inference as
   * numbers); Nereid's additions to the JSON (preprocess, postprocess, cost) have no field in the protocol's messages.
   */
  async modelStatistics(model = '', version = ''): Promise<{ model_stats: Record<string, unknown>[] }> {
    return plainMessage('inference.ModelStatisticsResponse', await this.unary('ModelStatistics', { name: model, version }));
  }

  /**
   * The repository's models as HttpClient lists them: a field the server did not set (a model never loaded has a name
   * only, a config that failed no version), which protobuf can only send as '', is absent.
   */
  async repositoryIndex(ready = false): Promise<RepositoryIndexRow[]> {
    const { models } = (await this.unary('RepositoryIndex', { repository_name: '', ready })) as { models: { name: string; version: string; state: string; reason: string }[] };
    return models.map(({ name, version, state, reason }) => ({ name, ...(version ? { version } : {}), ...(state ? { state } : {}), ...(state || reason ? { reason } : {}) }));
  }

  /** Loads (or reloads) a model; `config` overrides its config file, as HttpClient's does. */
  async loadModel(model: string, config?: Record<string, unknown>): Promise<void> {
    await this.unary('RepositoryModelLoad', { model_name: model, parameters: config ? { config: { string_param: JSON.stringify(config) } } : {} });
  }

  /** `unloadDependents`: an ensemble's steps go too (those no other loaded ensemble uses), as tritonclient's unload_dependents. */
  async unloadModel(model: string, options: { unloadDependents?: boolean } = {}): Promise<void> {
    const parameters = options.unloadDependents !== undefined ? { unload_dependents: { bool_param: options.unloadDependents } } : {};
    await this.unary('RepositoryModelUnload', { model_name: model, parameters });
  }

  /** Runs a model on named inputs; outputs come back by name, decoded to typed arrays. */
  async infer(model: string, inputs: Record<string, ClientInput>, options: InferOptions = {}): Promise<InferResult> {
    const response = (await this.unary('ModelInfer', await this.request(model, inputs, options), options.signal, callTimeoutMs(options, this.options.timeoutMs))) as InferResponseMessage;
    return decodeResponse(response, options.classification !== undefined);
  }

  /**
   * Many requests on one ModelStreamInfer stream: each answer (or its error) as it comes, which is
   * the order the requests were sent (the server keeps it, as Triton does). The stream ends once
   * every request sent has been answered.
   */
  async *stream(requests: AsyncIterable<StreamRequest> | Iterable<StreamRequest>): AsyncGenerator<InferResult | { id: string; error: string }> {
    const call = this.client.ModelStreamInfer(this.metadata(), this.callOptions()) as grpc.ClientDuplexStream<unknown, { error_message: string; infer_response: InferResponseMessage }>;
    // Whether answers are read as classes: withClasses leaves an output whose elements are not "score:index[:label]" as it is.
    let classification = false;
    // Set when the caller leaves the loop over the answers early: no more requests are taken from its source.
    let abandoned = false;
    const writing = (async () => {
      for await (const { model, inputs, options } of requests) {
        if (abandoned) return; // leaving this loop ends the caller's generator (its finally runs)
        // The V2 stream has no way to cancel one request on it: a signal given for one would be silently ignored.
        if ((options as InferOptions | undefined)?.signal) throw new OptionError(`a request on a stream cannot take its own signal (model '${model}'); end the whole stream by returning from the loop over its answers`);
        if ((options as InferOptions | undefined)?.timeoutMs !== undefined) {
          throw new OptionError(`a request on a stream cannot take its own timeoutMs (model '${model}'): the stream's deadline is the client's timeoutMs`);
        }
        classification ||= options?.classification !== undefined;
        call.write(await this.request(model, inputs, options ?? {}));
      }
      call.end();
    })();
    writing.catch(() => call.cancel()); // the requests' own error reaches the caller from `await writing`
    // The cancelled call's CANCELLED error, once nobody reads the stream, is expected rather than unhandled.
    call.on('error', () => undefined);
    let answered = false;
    try {
      for await (const message of call) {
        if (message.error_message) yield { id: message.infer_response?.id ?? '', error: message.error_message };
        else {
          // The stream's own flag (every answer is its request's last): the transport's business, not the answer's, as over HTTP.
          const { triton_final_response: _final, ...parameters } = message.infer_response.parameters ?? {};
          yield decodeResponse({ ...message.infer_response, parameters }, classification);
        }
      }
      answered = true;
    } catch (error) {
      answered = true;
      await writing; // a request that could not be sent cancelled the stream: its error is the one to see
      // The stream's own failure (UNAVAILABLE, a deadline, a cancel) as a unary call's: a GrpcCallError with its code.
      throw isServiceError(error) ? this.callError(error, undefined, this.options.timeoutMs) : error;
    } finally {
      // A `break` or `return` out of the caller's loop: the call is cancelled and its source stops being read, or both
      // would keep the process alive (a source that waits between requests, a stream the server keeps open).
      if (!answered) {
        abandoned = true;
        call.cancel();
      }
    }
    await writing;
  }

  private async request(model: string, inputs: Record<string, ClientInput>, options: InferOptions) {
    checkInferOptions('GrpcClient.infer', options);
    const entries = Object.entries(inputs);
    const outputParameters = parametersToProto(options.classification ? { classification: options.classification } : {});
    const outputNames = await requestedOutputNames(options, () =>
      this.outputNames.namesOf(model, options.version, () => this.modelMetadata(model, options.version ?? '')),
    );
    const inSharedMemory = options.sharedMemoryOutputs ?? {};
    return {
      model_name: model,
      model_version: options.version ?? '',
      id: options.id ?? '',
      parameters: parametersToProto(options.parameters ?? {}),
      inputs: entries.map(([name, tensor]) => ({
        name,
        datatype: tensor.datatype,
        shape: tensor.shape,
        ...('sharedMemory' in tensor ? { parameters: parametersToProto(sharedMemoryParameters(tensor.sharedMemory)) } : {}),
      })),
      outputs:
        outputNames?.map((name) => ({
          name,
          parameters: inSharedMemory[name] ? parametersToProto(sharedMemoryParameters(inSharedMemory[name])) : outputParameters,
        })) ?? [],
      // As Triton's clients send it: one raw entry per input that is not in shared memory.
      raw_input_contents: entries.flatMap(([name, tensor]) => ('sharedMemory' in tensor ? [] : [tensorBytes(name, tensor)])),
    };
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.options.token) metadata.set('authorization', `Bearer ${this.options.token}`);
    return metadata;
  }

  private callOptions(timeoutMs = this.options.timeoutMs): grpc.CallOptions {
    return timeoutMs ? { deadline: Date.now() + timeoutMs } : {};
  }

  /** A failed call as the error the caller sees: stopped by its signal, ended by its timeoutMs, or as the server stated it. */
  private callError(error: grpc.ServiceError, signal: AbortSignal | undefined, timeoutMs: number | undefined): GrpcCallError {
    if (error.code === grpc.status.CANCELLED && signal?.aborted) return new GrpcAbortError(error.code, error.details);
    // The deadline timeoutMs set: passed here, or at the server, which reads it as the request's deadline.
    if (error.code === grpc.status.DEADLINE_EXCEEDED && timeoutMs) return new GrpcTimeoutError(error.code, error.details);
    return new GrpcCallError(error.code, error.details);
  }

  private unary(method: string, request: unknown, signal?: AbortSignal, timeoutMs = this.options.timeoutMs): Promise<unknown> {
    const tried = retryingCall(this.options.retry, signal, retryVerdict, () => {
      return new Promise((resolve, reject) => {
        // An abort before the call starts is the caller's answer: the call never goes.
        if (signal?.aborted) return reject(new GrpcAbortError(grpc.status.CANCELLED, 'Cancelled on client'));
        const cancel = () => call.cancel();
        const call = this.client[method]!(request, this.metadata(), this.callOptions(timeoutMs), (error: grpc.ServiceError | null, response: unknown) => {
          // A signal shared by many calls must not gather one listener per finished call.
          signal?.removeEventListener('abort', cancel);
          if (!error) resolve(response);
          else reject(this.callError(error, signal, timeoutMs));
        }) as grpc.ClientUnaryCall;
        signal?.addEventListener('abort', cancel, { once: true });
      });
    });
    // An abort while waiting to try again ends the wait with the signal's reason: the same error as an abort before the call.
    return tried.catch((error: unknown) => {
      throw signal?.aborted && error === signal.reason ? new GrpcAbortError(grpc.status.CANCELLED, 'Cancelled on client') : error;
    });
  }
}

/**
 * InferParameters as the plain values the HTTP client reads from JSON (64-bit integers as numbers when exact, else
 * decimal strings), so an answer's parameters are the same whichever protocol carried them.
 */
function plainParameters(map: Record<string, ParameterMessage> | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(map ?? {}).map(([key, parameter]) => [key, parameterValueOf(parameter)]));
}

function decodeResponse(response: InferResponseMessage, classification: boolean): InferResult {
  const outputs: Record<string, OutputTensor> = {};
  response.outputs.forEach((output, index) => {
    const parameters = plainParameters(output.parameters);
    const inSharedMemory = outputInSharedMemory(output.name, output.datatype, output.shape, parameters);
    if (inSharedMemory) {
      outputs[output.name] = inSharedMemory;
      return;
    }
    const raw = response.raw_output_contents[index];
    const contents = output.contents ? Object.values(output.contents).find((values) => Array.isArray(values) && values.length > 0) : undefined;
    const tensor = raw !== undefined ? outputFromBytes(output.name, output.datatype, output.shape, raw) : outputFromJson(output.name, output.datatype, output.shape.map(Number), contents ?? []);
    outputs[output.name] = classification ? withClasses(tensor) : tensor;
  });
  // protobuf has no absent map, only an empty one: HTTP's answer has no `parameters` when the server set none.
  const parameters = plainParameters(response.parameters);
  const hasParameters = Object.keys(parameters).length > 0;
  return { model: response.model_name, version: response.model_version, ...(response.id ? { id: response.id } : {}), ...(hasParameters ? { parameters } : {}), outputs };
}
