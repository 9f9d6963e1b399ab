/**
 * The KServe Open Inference Protocol (V2) over gRPC — Triton's `inference.GRPCInferenceService` —
 * as a thin translator over the Server core, beside the HTTP front end: each RPC decodes its
 * message, calls the core, and encodes the answer. Errors map to gRPC codes in core/errors.ts.
 */
import type { Server as NetServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { z } from 'zod';
import { hostAndPort } from '../../core/address.js';
import { checkBearerToken } from '../../core/auth.js';
import { optionKeyName, parseOptions, type SettingName } from '../../core/options.js';
import { secureContextOptions, type TlsCredentials } from '../../core/tls.js';
import { asNereidError, clientMessage, grpcStatusOf, loggedMessage, NereidError, shortened } from '../../core/errors.js';
import { ClientCancellation, type InferenceRequest, type InferenceResponse, type RequestContext } from '../../core/inference.js';
import { REQUEST_ID_HEADER, requestIdOf } from '../../observability/request-id.js';
import { logFailedHandshakes } from '../../observability/tls-handshake-log.js';
import { MAX_ID_CHARS } from '../../model/input-validation.js';
import { namedRepositoryRefusal, type Server } from '../../server/server.js';
import {
  decodeModelInferRequest,
  encodeModelInferResponse,
  modelConfigToProto,
  modelStatisticsToProto,
  repositoryIndexToProto,
  repositoryParametersFromProto,
  type ModelInferRequestMessage, type ModelInferResponseMessage,
  type ParameterMap,
} from './v2-grpc-codec.js';
import { addHealthService } from './grpc-health.js';
import { addReflectionService } from './grpc-reflection.js';
import { loadInferenceProto } from './v2-grpc-proto.js';
import { logChangesFromProto, logSettingsToProto, traceChangesFromProto, traceSettingToProto, type TraceSettingRequestMessage } from './v2-grpc-settings.js';
import { grpcFrontEndOptionsSchema } from './grpc-options.js';
import { acceptQueueGraceMs, ConnectionsTakenWhileStopping, stopRefusal, takeQueuedConnections } from '../accept-queue.js';

export { grpcFrontEndOptionsSchema } from './grpc-options.js';

export type GrpcFrontEndOptions = z.input<typeof grpcFrontEndOptionsSchema> & {
  /** How refusals name these options (the message size limits); default: by their keys. The CLI passes its flags' names (grpcFlagName). */
  settingName?: SettingName;
};

/** grpc-js's own refusals of a message over the receive limit (its text, which clients match, is kept as it is). */
const RECEIVE_LIMIT_REFUSAL = /^Received message (?:larger than max|that decompresses to a size larger than)\b/;

export interface GrpcFrontEnd {
  /** The grpc-js server, for callers that need more than listen/close. */
  readonly grpcServer: grpc.Server;
  /** Whether gRPC reflection is served (asked for, and @grpc/reflection installed). */
  readonly reflection: boolean;
  /** Binds `host:port` (port 0 picks a free one) and answers the port bound. */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting calls, lets running ones finish for up to `graceMs`, then cancels the rest. */
  close(graceMs?: number): Promise<void>;
  /** New credentials for new connections (a renewed certificate, fresh revocation lists); only for a front end made with TLS. */
  replaceTls(tls: TlsCredentials): void;
}

/** RPCs of Triton's CUDA shared memory API, which Nereid does not implement (the server's sharedMemory says what to do instead). */
const CUDA_SHARED_MEMORY_METHODS: ReadonlySet<string> = new Set(['CudaSharedMemoryStatus', 'CudaSharedMemoryRegister', 'CudaSharedMemoryUnregister']);

/** RPCs that change how the server runs (the model repository, trace and log settings): the management scope, as over HTTP. */
const MANAGEMENT_METHODS = /^(?:Repository|TraceSetting$|LogSettings$)/;

/** Whether a management RPC asks for a change (a load or unload, settings given), not a read. */
function changesSomething(rpc: string, message: unknown): boolean {
  if (rpc === 'RepositoryModelLoad' || rpc === 'RepositoryModelUnload') return true;
  if (rpc !== 'TraceSetting' && rpc !== 'LogSettings') return false;
  const given = (message as { settings?: Record<string, unknown> } | undefined)?.settings;
  return given !== undefined && Object.keys(given).length > 0;
}

/** Health probes stay open when bearer tokens are required, as over HTTP: Triton's health group, a model's readiness included. */
const OPEN_METHODS = new Set(['ServerLive', 'ServerReady', 'ModelReady']);

/** The method of a call to the inference service, from its path; health and reflection have their own services. */
const INFERENCE_METHOD_PATH = /^\/inference\.GRPCInferenceService\/(\w+)$/;

type GrpcError = Error & { code: grpc.status; details: string };

function grpcError(error: NereidError): GrpcError {
  const message = clientMessage(error);
  const status = Object.assign(new Error(message), { code: grpcStatusOf(error.code) as grpc.status, details: message });
  if (error.retryAfterMs === undefined) return status;
  // gRPC's retry design: a client retrying a refused call waits this long before the next attempt.
  const metadata = new grpc.Metadata();
  metadata.set('grpc-retry-pushback-ms', String(Math.max(1, Math.ceil(error.retryAfterMs))));
  return Object.assign(status, { metadata });
}

/** Bytes a request message's tensors hold: what it reserves of the server's body budget. */
function tensorBytesOf(message: ModelInferRequestMessage): number {
  let bytes = 0;
  for (const raw of message.raw_input_contents ?? []) bytes += raw.length;
  return bytes;
}

function metadataString(metadata: grpc.Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : undefined;
}

function authorizationOf(metadata: grpc.Metadata): string | undefined {
  return metadataString(metadata, 'authorization');
}

/** The V2 request `id` a client gave (ModelInfer), cut as answers cut it, for the access line. */
function requestIdFieldOf(message: unknown): string | undefined {
  const id = (message as { id?: unknown } | undefined)?.id;
  return typeof id === 'string' && id !== '' ? shortened(id, MAX_ID_CHARS) : undefined;
}

/** The model a request message names, for the access log: cut, as the request id is, since the name is not checked yet (a whole message's worth would go to the log). */
function modelOf(message: unknown): string | undefined {
  const fields = message as { model_name?: unknown; name?: unknown } | undefined;
  const name = fields?.model_name ?? fields?.name;
  return typeof name === 'string' && name !== '' ? shortened(name, MAX_ID_CHARS) : undefined;
}

/** A call's deadline on the performance.now() clock the scheduler keeps, or undefined when it has none. */
function deadlineOf(call: { getDeadline(): grpc.Deadline }): number | undefined {
  const deadline = call.getDeadline();
  const epochMs = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(epochMs) ? performance.now() + (epochMs - Date.now()) : undefined;
}

/** Marks a message that could not be decoded (see withGentleDecoding). */
const UNDECODABLE = Symbol('undecodable');

/**
 * The service with decoders that never throw: grpc-js answers a message its decoder throws on with
 * INTERNAL and ends the call (a whole stream), though the fault is the client's. A message that
 * cannot be decoded becomes a marker instead, and the handler answers it INVALID_ARGUMENT — on a
 * stream, as that one request's error, the stream going on. Its encoders pass a Buffer through as
 * already encoded (see encodedWithinLimit).
 */
function withGentleDecoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([method, definition]) => [
      method,
      {
        ...definition,
        requestDeserialize: (bytes: Buffer) => {
          try {
            return definition.requestDeserialize(bytes);
          } catch (error) {
            return { [UNDECODABLE]: (error as Error).message };
          }
        },
        responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : definition.responseSerialize(value)),
      },
    ]),
  );
}

function requireDecoded<T>(message: T): T {
  const problem = (message as { [UNDECODABLE]?: string } | undefined)?.[UNDECODABLE];
  if (problem !== undefined) throw new NereidError('INVALID_ARGUMENT', `the message is not a valid protobuf of this RPC's request type: ${problem}`);
  return message;
}

/**
 * grpc-js credentials with the TLS settings the HTTPS port has: its createSsl takes no revocation lists, minimum
 * version or cipher list. Client certificates are checked against the client CA when one is given.
 */
class ServerTlsCredentials extends grpc.ServerCredentials {
  constructor(tls: TlsCredentials) {
    const mutual = tls.clientCa !== undefined;
    super({ requestCert: mutual, rejectUnauthorized: mutual }, secureContextOptions(tls));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }

  /** grpc-js gives the listening server a new secure context when its credentials' options change. */
  replace(tls: TlsCredentials): void {
    this.updateSecureContextOptions(secureContextOptions(tls));
  }
}

/** How long connections with no call left may take to close by themselves once a drain has answered every call. */
const IDLE_CONNECTIONS_GRACE_MS = 1000;

/** Counts the calls between their start and their status (or cancellation), through a server interceptor. */
class CallsInFlight {
  private count = 0;
  private waiters: (() => void)[] = [];

  readonly interceptor: grpc.ServerInterceptor = (_method, call) => {
    this.count += 1;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.count -= 1;
      if (this.count === 0) for (const waiter of this.waiters.splice(0)) waiter();
    };
    const listener = new grpc.ServerListenerBuilder().withOnCancel(end).build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((status, next) => {
        next(status);
        end();
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };

  get active(): number {
    return this.count;
  }

  /** Resolves once no call is in flight (at once when none is). */
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** grpc-js makes its HTTP/2 servers itself and exposes none: its (internal) list of them, empty in a grpc-js without it. */
function http2ServersOf(grpcServer: grpc.Server): NetServer[] {
  const servers = (grpcServer as unknown as { http2Servers?: Map<NetServer, unknown> }).http2Servers;
  return [...(servers?.keys() ?? [])];
}

export function createGrpcFrontEnd(server: Server, options: GrpcFrontEndOptions = {}): GrpcFrontEnd {
  const settings = parseOptions('createGrpcFrontEnd', grpcFrontEndOptionsSchema, options, ['settingName']);
  const settingName = options.settingName ?? optionKeyName;
  const logger: Logger = server.logger.child({ frontEnd: 'grpc' });
  const service = withGentleDecoding(loadInferenceProto().service);
  const calls = new CallsInFlight();
  const late = new ConnectionsTakenWhileStopping(() => server.stopping);
  /**
   * Tokens checked from a call's metadata, before its message is read: grpc-js receives a whole message (up to
   * --grpc-max-message-bytes) before a handler runs, so a caller holding no token could otherwise make the server hold
   * that much on every stream it opens. A refused call is answered at once and its message never read.
   */
  const authorizeFromMetadata: grpc.ServerInterceptor = (descriptor, call) => {
    const method = INFERENCE_METHOD_PATH.exec(descriptor.path)?.[1];
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        try {
          if (method !== undefined) {
            if (late.has(call.getPeer())) throw stopRefusal();
            authorize(method, metadata);
          }
        } catch (error) {
          const reqId = requestIdOf(metadataString(metadata, REQUEST_ID_HEADER));
          const status = failure(method!, error, reqId);
          // As an answered call does (and HTTP's 401): the id to find the server's line about it by.
          const headers = new grpc.Metadata();
          headers.set(REQUEST_ID_HEADER, reqId);
          call.sendMetadata(headers);
          call.sendStatus({ code: status.code, details: status.details, metadata: new grpc.Metadata() });
          access(method!, reqId, undefined, performance.now(), status.code, loggedReasons.get(status));
          return;
        }
        next(metadata);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, new grpc.ResponderBuilder().withStart((next) => next(listener)).build());
  };
  /**
   * grpc-js refuses a message over the receive limit from the call's base, before any interceptor's responder sees
   * the status, in words that do not say which setting sets the limit: the base call's sendStatus (the first
   * interceptor is handed the base call) adds it. The code stays RESOURCE_EXHAUSTED, as Triton's gRPC answers. The base
   * call is handed on as it is, not wrapped: a layer more would be crossed by every message of every call.
   */
  const nameReceiveLimit: grpc.ServerInterceptor = (_descriptor, call) => {
    const send = call.sendStatus.bind(call);
    call.sendStatus = (status) =>
      send(
        status.code === grpc.status.RESOURCE_EXHAUSTED && RECEIVE_LIMIT_REFUSAL.test(status.details ?? '')
          ? { ...status, details: `${status.details}: a request message may have at most ${settings.maxReceiveMessageBytes} bytes (${settingName('maxReceiveMessageBytes')})` }
          : status,
      );
    // grpc-js's type asks for a ServerInterceptingCall; it chains calls only through their common interface.
    return call as grpc.ServerInterceptingCall;
  };
  const grpcServer = new grpc.Server({
    interceptors: [nameReceiveLimit, calls.interceptor, authorizeFromMetadata],
    'grpc.max_receive_message_length': settings.maxReceiveMessageBytes,
    'grpc.max_send_message_length': settings.maxSendMessageBytes,
    'grpc.keepalive_time_ms': settings.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': settings.keepaliveTimeoutMs,
    'grpc.http2.min_ping_interval_without_data_ms': settings.http2MinPingIntervalWithoutDataMs,
    'grpc.keepalive_permit_without_calls': settings.keepalivePermitWithoutCalls ? 1 : 0,
    'grpc.max_concurrent_streams': settings.maxConcurrentStreams,
  });

  /**
   * Any failure as a gRPC status: NereidErrors keep their code and message; anything else is INTERNAL
   * and logged as an error. A NereidError is logged at debug with the reason the client was given,
   * without tensor data its message may quote (NereidError.logged).
   */
  const failure = (method: string, error: unknown, reqId: string): GrpcError => {
    const nereid = asNereidError(error);
    if (!(error instanceof NereidError)) logger.error({ reqId, err: error, method }, `${method} failed`);
    else logger.debug({ reqId, method, code: nereid.code, reason: loggedMessage(nereid) }, 'request failed');
    const answer = grpcError(nereid);
    loggedReasons.set(answer, loggedMessage(nereid));
    return answer;
  };
  /** What the access line says of a failure: the reason without any tensor data the client's message may quote. */
  const loggedReasons = new WeakMap<GrpcError, string>();

  /**
   * An answer encoded, refused as RESOURCE_EXHAUSTED when larger than the send limit: grpc-js would otherwise fail the
   * whole call (a whole stream, its later answers lost) with nothing logged. The Buffer is written as it is.
   */
  const encodedWithinLimit = (method: string, answer: object, reqId: string): Buffer => {
    const encoded = service[method]!.responseSerialize(answer);
    if (encoded.length <= settings.maxSendMessageBytes) return encoded;
    logger.warn({ reqId, method, bytes: encoded.length, limit: settings.maxSendMessageBytes }, 'answer larger than the send limit, not sent');
    throw new NereidError(
      'RESOURCE_EXHAUSTED',
      `the answer is larger than max: ${encoded.length} bytes vs. the ${settings.maxSendMessageBytes}-byte limit on a sent message (${settingName('maxSendMessageBytes')})`,
    );
  };

  /**
   * The answer to one inference, encoded within the send limit by `prepare`, which the model calls before it counts the
   * request's outcome (RequestContext.prepareAnswer): an answer too large to send is counted as a failure.
   */
  const answerWithinLimit = (method: string, request: InferenceRequest, reqId: string, wrap: (response: ModelInferResponseMessage) => object) => {
    let encoded: Buffer | undefined;
    const prepare = async (response: InferenceResponse): Promise<Buffer> =>
      (encoded = encodedWithinLimit(method, wrap(await encodeModelInferResponse(response, request.outputs, server.sharedMemory)), reqId));
    return { prepare, encoded: async (response: InferenceResponse) => encoded ?? prepare(response) };
  };

  /** `status`: the gRPC status code (a number); a failure's line is at warn with the code's name and the reason given. */
  const access = (rpc: string, reqId: string, message: unknown, started: number, status: grpc.status, reason?: string): void => {
    // A change through the management RPCs leaves a line whether or not the access log is on, as over HTTP.
    if (changesSomething(rpc, message)) logger.info({ reqId, rpc, status: grpc.status[status], model: modelOf(message) }, `management: ${rpc} answered ${grpc.status[status]}`);
    if (!settings.accessLog) return;
    const ms = Math.round((performance.now() - started) * 1000) / 1000;
    const fields = { reqId, rpc, status, ms, model: modelOf(message), id: requestIdFieldOf(message) };
    if (status === grpc.status.OK) logger.info(fields, 'request completed');
    else logger.warn({ ...fields, code: grpc.status[status], reason }, 'request completed');
  };

  const authorize = (method: string, metadata: grpc.Metadata): void => {
    if (OPEN_METHODS.has(method)) return;
    checkBearerToken(authorizationOf(metadata), settings.authTokens, MANAGEMENT_METHODS.test(method) ? 'management' : 'inference');
  };

  /** A unary RPC (authorized from its metadata before it gets here): run `handle`, answer its result or its error. Nothing thrown escapes. */
  const unary =
    <Request, Response>(
      method: string,
      handle: (request: Request, call: grpc.ServerUnaryCall<Request, Response>, reqId: string) => Response | Promise<Response>,
    ) =>
    (call: grpc.ServerUnaryCall<Request, Response>, callback: grpc.sendUnaryData<Response>): void => {
      const started = performance.now();
      const reqId = requestIdOf(metadataString(call.metadata, REQUEST_ID_HEADER));
      // The id goes back in the response's header metadata, as HTTP's X-Request-ID header: a request without one learns
      // the id it was given, to find its log lines and to label its prediction (/feedback).
      const header = new grpc.Metadata();
      header.set(REQUEST_ID_HEADER, reqId);
      call.sendMetadata(header);
      // Tokens were checked from the metadata already (authorizeFromMetadata), before the message was read.
      (async () => handle(requireDecoded(call.request), call, reqId))().then(
        (response) => {
          callback(null, response);
          access(method, reqId, call.request, started, grpc.status.OK);
        },
        (error: unknown) => {
          const status = failure(method, error, reqId);
          callback(status);
          access(method, reqId, call.request, started, status.code, loggedReasons.get(status));
        },
      );
    };

  const model = (request: { name: string; version?: string }) => [request.name, request.version || undefined] as const;

  const handlers: grpc.UntypedServiceImplementation = {
    ServerLive: unary('ServerLive', () => ({ live: server.live })),
    ServerReady: unary('ServerReady', () => ({ ready: server.ready })),
    ModelReady: unary('ModelReady', (request: { name: string; version: string }) => ({ ready: server.modelReady(...model(request)) })),
    ServerMetadata: unary('ServerMetadata', () => server.metadata()),
    ModelMetadata: unary('ModelMetadata', (request: { name: string; version: string }) => server.modelMetadata(...model(request))),
    ModelConfig: unary('ModelConfig', async (request: { name: string; version: string }) => ({
      config: modelConfigToProto(await server.modelConfig(...model(request))),
    })),
    ModelStatistics: unary('ModelStatistics', (request: { name: string; version: string }) =>
      modelStatisticsToProto(server.modelStatistics(request.name || undefined, request.version || undefined)),
    ),
    RepositoryIndex: unary('RepositoryIndex', async (request: { repository_name: string; ready: boolean }) => {
      if (request.repository_name) throw namedRepositoryRefusal(request.repository_name);
      return repositoryIndexToProto(await server.repositoryIndex(request.ready));
    }),
    RepositoryModelLoad: unary('RepositoryModelLoad', async (request: { repository_name: string; model_name: string; parameters: ParameterMap }) => {
      if (request.repository_name) throw namedRepositoryRefusal(request.repository_name);
      await server.loadModel(request.model_name, repositoryParametersFromProto(request.parameters, 'load'));
      return {};
    }),
    RepositoryModelUnload: unary('RepositoryModelUnload', async (request: { repository_name: string; model_name: string; parameters: ParameterMap }) => {
      if (request.repository_name) throw namedRepositoryRefusal(request.repository_name);
      await server.unloadModel(request.model_name, repositoryParametersFromProto(request.parameters, 'unload'));
      return {};
    }),
    ModelInfer: unary('ModelInfer', async (message: ModelInferRequestMessage, call, reqId) => {
      const deadline = deadlineOf(call);
      // Refused before its tensors are decoded when the model could not serve it in time.
      const reservation = await server.admit(message.model_name, message.model_version || undefined, tensorBytesOf(message), deadline);
      // A client that cancels (or whose deadline passes) frees its place in the queue. grpc-js also
      // emits 'cancelled' once a call has been answered, so only a call still running is cancelled.
      const cancellation = new ClientCancellation();
      let answered = false;
      call.once('cancelled', () => {
        if (!answered) cancellation.abort();
      });
      try {
        const request = await decodeModelInferRequest(message, server.sharedMemory, server.inputShapeCheck(message.model_name, message.model_version || undefined));
        const answer = answerWithinLimit('ModelInfer', request, reqId, (encoded) => encoded);
        const context: RequestContext = {
          signal: cancellation,
          requestId: reqId,
          traceparent: metadataString(call.metadata, 'traceparent'),
          deadline,
          prepareAnswer: answer.prepare,
        };
        return await answer.encoded(await server.infer(request, context));
      } finally {
        answered = true;
        reservation.release();
      }
    }),
    // Triton's system shared memory extension, refused unless the server runs with --allow-client-shm.
    SystemSharedMemoryStatus: unary('SystemSharedMemoryStatus', (request: { name?: string }) => ({
      regions: Object.fromEntries(server.sharedMemory.status(request.name || undefined).map((region) => [region.name, region])),
    })),
    SystemSharedMemoryRegister: unary('SystemSharedMemoryRegister', (request: { name: string; key: string; offset?: string | number; byte_size?: string | number }, call) => {
      server.sharedMemory.register(request.name, { key: request.key, offset: Number(request.offset ?? 0), byte_size: Number(request.byte_size ?? 0) }, call.getPeer());
      return {};
    }),
    SystemSharedMemoryUnregister: unary('SystemSharedMemoryUnregister', (request: { name?: string }) => {
      server.sharedMemory.unregister(request.name || undefined);
      return {};
    }),
    // Triton's gRPC TraceSetting: no settings reads them; a setting with no value clears a model's override of it.
    TraceSetting: unary('TraceSetting', (request: TraceSettingRequestMessage) => {
      const model = request.model_name || undefined;
      const changes = traceChangesFromProto(request.settings);
      return traceSettingToProto(Object.keys(changes).length === 0 ? server.traceSetting(model) : server.updateTraceSetting(changes, model));
    }),
    LogSettings: unary('LogSettings', (request: { settings: Parameters<typeof logChangesFromProto>[0] }) =>
      logSettingsToProto(server.updateLogging(logChangesFromProto(request.settings))),
    ),
    ModelStreamInfer: (call: grpc.ServerDuplexStream<ModelInferRequestMessage, unknown>) => modelStreamInfer(call),
  };

  /**
   * Every answer on a stream is its request's last (no model here is decoupled), and says so as Triton's does: clients
   * that asked for tritonclient's enable_empty_final_response wait for `triton_final_response` before they move on.
   */
  const FINAL_RESPONSE = { triton_final_response: { bool_param: true } };
  const asFinalResponse = (response: ModelInferResponseMessage): ModelInferResponseMessage => ({ ...response, parameters: { ...response.parameters, ...FINAL_RESPONSE } });

  /**
   * Many requests on one stream, processed concurrently, answered in the order they were sent (as Triton answers a
   * model that is not decoupled: clients pair answers with requests by position); each answer carries its request's
   * id. A failed request is answered with error_message (and the id) in its place and the stream goes on; the stream
   * ends once the client has finished sending and every answer is written.
   */
  const modelStreamInfer = (call: grpc.ServerDuplexStream<ModelInferRequestMessage, unknown>): void => {
    // One stream, one client: its x-request-id (if any) and trace context cover every request on it.
    const givenRequestId = metadataString(call.metadata, REQUEST_ID_HEADER);
    const traceparent = metadataString(call.metadata, 'traceparent');
    // One entry per request read and not yet written back, oldest first; `answer` is set when its request is done.
    const pending: { abort: ClientCancellation; answer?: object }[] = [];
    let reading = true;
    let inputEnded = false;
    let finished = false;
    const finishWhenDone = () => {
      if (inputEnded && pending.length === 0 && !finished) {
        finished = true;
        call.end();
      }
    };
    // A client that sends but does not read fills the transport's buffer: written answers then wait there, and the
    // stream reads no further request until they drain.
    let unread = false;
    const holdOrRead = () => {
      const full = unread || pending.length >= settings.streamMaxPendingAnswers;
      if (full && reading) {
        // grpc-js reads a paused stream's messages only as far as its small buffer: the client's further writes wait.
        reading = false;
        call.pause();
      } else if (!full && !reading) {
        reading = true;
        call.resume();
      }
    };
    const writeAnswersInOrder = () => {
      while (pending[0]?.answer !== undefined) {
        const { answer } = pending.shift()!;
        if (!finished && !call.cancelled && !call.write(answer)) unread = true;
      }
      holdOrRead();
      finishWhenDone();
    };
    call.on('drain', () => {
      unread = false;
      holdOrRead();
    });
    call.on('data', (message: ModelInferRequestMessage) => {
      const entry: (typeof pending)[number] = { abort: new ClientCancellation() };
      pending.push(entry);
      holdOrRead();
      const started = performance.now();
      const reqId = requestIdOf(givenRequestId);
      let status = grpc.status.OK;
      let reason: string | undefined;
      (async () => {
        const decodable = requireDecoded(message);
        const reservation = await server.admit(decodable.model_name, decodable.model_version || undefined, tensorBytesOf(decodable));
        try {
          const request = await decodeModelInferRequest(decodable, server.sharedMemory, server.inputShapeCheck(decodable.model_name, decodable.model_version || undefined));
          const answer = answerWithinLimit('ModelStreamInfer', request, reqId, (infer_response) => ({ error_message: '', infer_response: asFinalResponse(infer_response) }));
          return await answer.encoded(await server.infer(request, { signal: entry.abort, requestId: reqId, traceparent, prepareAnswer: answer.prepare }));
        } finally {
          reservation.release();
        }
      })()
        .catch((error: unknown) => {
          const grpcFailure = failure('ModelStreamInfer', error, reqId);
          status = grpcFailure.code;
          reason = loggedReasons.get(grpcFailure);
          return {
            error_message: grpcFailure.details,
            // The request's names, cut to the longest id accepted (no valid model name is longer): a client cannot have a megabyte echoed.
            infer_response: {
              model_name: shortened(message.model_name ?? '', MAX_ID_CHARS),
              model_version: shortened(message.model_version ?? '', MAX_ID_CHARS),
              id: shortened(message.id ?? '', MAX_ID_CHARS),
              parameters: FINAL_RESPONSE,
            },
          };
        })
        .then((answer) => {
          access('ModelStreamInfer', reqId, message, started, status, reason);
          entry.answer = answer;
          writeAnswersInOrder();
        });
    });
    call.on('end', () => {
      inputEnded = true;
      finishWhenDone();
    });
    call.on('cancelled', () => {
      finished = true;
      for (const { abort, answer } of pending) if (answer === undefined) abort.abort();
    });
    call.on('error', () => undefined); // a failed write after the client left: nothing more to send
  };

  for (const [method, definition] of Object.entries(service)) {
    if (handlers[method]) continue;
    const reason = CUDA_SHARED_MEMORY_METHODS.has(method) ? server.sharedMemory.cudaUnsupported : 'this RPC is not supported by Nereid';
    const refusal = new NereidError('UNIMPLEMENTED', `${method} is not implemented: ${reason}`);
    if (!definition.requestStream && !definition.responseStream) {
      handlers[method] = unary(method, () => {
        throw refusal;
      });
    } else {
      handlers[method] = (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', grpcError(refusal));
    }
  }
  grpcServer.addService(service, handlers);
  const health = addHealthService(grpcServer, () => server.ready);
  const reflection = settings.reflection && addReflectionService(grpcServer);
  let closed = false;

  // grpc-js makes its HTTP/2 servers itself and exposes none: the connection cap is set, and a TLS server's failed
  // handshakes logged, through its (internal) list of them, each once; a grpc-js without that list gets neither.
  const watched = new WeakSet<NetServer>();
  const watchServers = () => {
    for (const http2Server of http2ServersOf(grpcServer)) {
      if (watched.has(http2Server)) continue;
      watched.add(http2Server);
      http2Server.maxConnections = settings.maxConnections;
      late.watch(http2Server);
      if (settings.tls) logFailedHandshakes(http2Server, logger, 'gRPC');
    }
  };

  // One credentials object for every port bound, so that replacing its context reaches each of them.
  const credentials = settings.tls ? new ServerTlsCredentials(settings.tls) : grpc.ServerCredentials.createInsecure();
  const frontEnd: GrpcFrontEnd = {
    grpcServer,
    reflection,
    replaceTls(tls: TlsCredentials): void {
      if (!(credentials instanceof ServerTlsCredentials)) throw new Error('this gRPC front end was made without TLS: its credentials cannot be replaced');
      credentials.replace(tls);
    },
    listen(host: string, port: number): Promise<number> {
      if (closed) return Promise.reject(new Error('listen() after close(): a closed gRPC front end cannot listen again; create a new one with createGrpcFrontEnd'));
      return new Promise((resolve, reject) => {
        grpcServer.bindAsync(hostAndPort(host, port), credentials, (error, bound) => {
          if (error) return reject(error);
          watchServers();
          resolve(bound);
        });
      });
    },
    close(graceMs = 5000): Promise<void> {
      closed = true;
      health.close();
      return new Promise((resolve) => {
        const timers: NodeJS.Timeout[] = [];
        let done = false;
        const finish = (force: boolean) => {
          if (done) return;
          done = true;
          for (const timer of timers) clearTimeout(timer);
          if (force) grpcServer.forceShutdown();
          detach();
          resolve();
        };
        timers.push(setTimeout(() => finish(true), graceMs).unref());
        // The connections the kernel completed before the listeners close are taken first, and their calls answered.
        void takeQueuedConnections(http2ServersOf(grpcServer), acceptQueueGraceMs(graceMs)).then(() => {
          grpcServer.tryShutdown(() => finish(false));
          // Every call answered, a connection that stays (a client that never reads the GOAWAY, or never sent anything)
          // holds nothing: after a second for the last answers to leave, it is cut rather than waited for to the end.
          void calls.idle().then(() => {
            if (!done) timers.push(setTimeout(() => finish(true), IDLE_CONNECTIONS_GRACE_MS).unref());
          });
        });
      });
    },
  };
  // server.stop() drains it with the server, until it is closed on its own.
  const detach = server.attachFrontEnd({
    drain: (timeoutMs) => frontEnd.close(timeoutMs),
    cut: () => {
      const unanswered = calls.active;
      grpcServer.forceShutdown();
      return unanswered;
    },
  });
  return frontEnd;
}
