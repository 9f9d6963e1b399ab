/**
 * The common inference request answered from Node's request listener, before Fastify sees it: a POST to a model's
 * /infer (of its own or of one version) with a body of announced length, not compressed, from a client that is not a
 * browser. Fastify's routing, hook chain, request and reply objects and per-request child logger cost a tiny model more
 * than its forward pass (docs/performance.md); this path does what the Fastify route and its hooks do for such a
 * request, in the same order and with the same functions — bearer token, admission from the headers, the body read
 * into a buffer of its announced length, the core, the answer, the access log's line — and answers the same bytes (the
 * front end's tests send the same requests both ways). Every other request, and every one this path is unsure of, goes
 * on to Fastify.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { bearerChallenge, checkBearerToken, tokensFor, type AuthTokens } from '../../core/auth.js';
import { ClientCancellation, type RequestContext } from '../../core/inference.js';
import { NereidError } from '../../core/errors.js';
import { REQUEST_ID_HEADER, requestIdOf } from '../../observability/request-id.js';
import type { BodyReservation } from '../../server/byte-budget.js';
import type { Server } from '../../server/server.js';
import { admitWhileOpen, announcedLength, readBody } from './body-admission.js';
import { answerInference, failureHeaders, httpFailureOf, httpRequestContext, writeAnswer } from './infer-answer.js';
import { logAccess } from './access-log.js';

const MODELS_PREFIX = '/v2/models/';
const INFER_SUFFIX = '/infer';
/**
 * A Content-Type that Fastify reads as a media type (`type/subtype`, parameters aside; lib/content-type.js): one it
 * cannot read (empty, no '/', a space inside) it answers 415, so such a request goes on to it.
 */
const MEDIA_TYPE = /^\s*[\w!#$%&'*+.^`|~-]+\/[\w!#$%&'*+.^`|~-]+\s*(?:;|$)/;

export interface DirectInferenceOptions {
  maxBodyBytes: number;
  authTokens: AuthTokens | undefined;
  /** The longest path segment the router takes: a longer one goes to Fastify, which refuses it. */
  maxPathSegment: number;
  logger: Logger;
  /** One line per answered request (--log-access), as Fastify's hook writes it. */
  accessLog: boolean;
  /** Requests that must go through Fastify (one on a connection taken while the server stops, any once the front end closes). */
  passOn: (request: IncomingMessage) => boolean;
}

/** What the access log's line needs of a request answered here, beyond the request and the response. */
interface Exchange {
  started: number;
  failure?: { code: string; reason: string };
  context?: RequestContext;
}

/** The request listener's first look at a request: true when this path answers it, false to hand it to Fastify. */
export interface DirectInference {
  take(request: IncomingMessage, response: ServerResponse): boolean;
  /** Requests this path has answered (for tests: a request a client would send the common way must come here). */
  readonly taken: number;
}

type InferPath = { model: string; version: string | undefined };

/** `{model, version}` of a plain /infer path (no query, no %-escape, no empty or over-long segment), else undefined. */
export function inferPathOf(url: string, maxSegment: number): InferPath | undefined {
  if (!url.startsWith(MODELS_PREFIX) || !url.endsWith(INFER_SUFFIX)) return undefined;
  const middle = url.slice(MODELS_PREFIX.length, url.length - INFER_SUFFIX.length);
  if (middle.length === 0 || middle.length > 2 * maxSegment + 10 || /[%?#]/.test(middle)) return undefined;
  const parts = middle.split('/');
  const [model, versions, version] = parts;
  if (parts.length === 1) return model!.length <= maxSegment ? { model: model!, version: undefined } : undefined;
  if (parts.length !== 3 || versions !== 'versions' || !model || !version || model.length > maxSegment || version.length > maxSegment) return undefined;
  return { model, version };
}

/** Whether the request's headers are those of the common case: a body of announced length within the limit, sent as it is, by no browser. */
function announcedPlainBody(request: IncomingMessage, maxBodyBytes: number): number | undefined {
  const headers = request.headers;
  // A chunked, compressed or held-back body (Expect: 100-continue), a browser's request (cross-site check), or a form: Fastify's hooks handle those.
  if (headers['transfer-encoding'] !== undefined || headers['content-encoding'] !== undefined || headers.expect !== undefined) return undefined;
  if (headers.origin !== undefined || headers['sec-fetch-site'] !== undefined) return undefined;
  const contentType = headers['content-type'];
  if (contentType !== undefined && !MEDIA_TYPE.test(contentType)) return undefined;
  if (/^multipart\//i.test(contentType ?? '')) return undefined;
  const length = announcedLength(request);
  return length !== undefined && length <= maxBodyBytes ? length : undefined;
}

export function directInference(server: Server, options: DirectInferenceOptions): DirectInference {
  const { maxBodyBytes, authTokens, logger } = options;
  const tokensNeeded = tokensFor(authTokens, 'inference').length > 0;
  let taken = 0;

  const fail = (response: ServerResponse, requestId: string, error: Error, exchange: Exchange | undefined) => {
    const failure = httpFailureOf(error);
    if (exchange) exchange.failure = { code: failure.code, reason: failure.logged };
    if (failure.unexpected) logger.error({ reqId: requestId, err: error }, 'request failed');
    logger.debug({ reqId: requestId, code: failure.code, status: failure.status, reason: failure.logged }, 'request failed');
    if (response.headersSent || response.destroyed) return;
    const body = JSON.stringify({ error: failure.message });
    const headers: OutgoingHttpHeaders = { ...failureHeaders(failure), 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) };
    response.writeHead(failure.status, headers).end(body);
  };

  const answer = async (request: IncomingMessage, response: ServerResponse, requestId: string, path: InferPath, announced: number, exchange: Exchange | undefined) => {
    if (tokensNeeded) {
      try {
        checkBearerToken(request.headers.authorization, authTokens, 'inference');
      } catch (error) {
        response.setHeader('www-authenticate', bearerChallenge(error as NereidError));
        throw error;
      }
    }
    const admitted = admitWhileOpen(server, path.model, path.version, announced, response);
    const reservation: BodyReservation = admitted instanceof Promise ? await admitted : admitted;
    const signal = cancelledOnClose(response, () => reservation.release());
    const body = await readBody(request, request, maxBodyBytes);
    const context = httpRequestContext(request.headers, signal, requestId);
    if (exchange) exchange.context = context;
    const answered = await answerInference(server, { body, headers: request.headers, model: path.model, version: path.version }, context);
    writeAnswer(response, answered);
  };

  const logAccessOf = (request: IncomingMessage, response: ServerResponse, reqId: string, path: InferPath, exchange: Exchange) =>
    logAccess(logger, {
      reqId,
      method: request.method,
      url: request.url,
      response,
      failure: exchange.failure,
      ms: performance.now() - exchange.started,
      remoteAddress: request.socket.remoteAddress,
      model: path.model,
      version: path.version,
      ood: exchange.context?.ood,
    });

  return {
    get taken() {
      return taken;
    },
    take(request, response) {
      if (request.method !== 'POST') return false;
      const path = inferPathOf(request.url ?? '', options.maxPathSegment);
      if (path === undefined) return false;
      const announced = announcedPlainBody(request, maxBodyBytes);
      if (announced === undefined || options.passOn(request)) return false;
      taken += 1;
      const requestId = requestIdOf(request.headers[REQUEST_ID_HEADER]);
      response.setHeader(REQUEST_ID_HEADER, requestId);
      // Draining: this answer is the connection's last, so its client opens its next request elsewhere.
      if (server.stopping) response.setHeader('connection', 'close');
      const exchange = options.accessLog ? { started: performance.now() } : undefined;
      if (exchange) response.once('finish', () => logAccessOf(request, response, requestId, path, exchange));
      answer(request, response, requestId, path, announced, exchange).catch((error: Error) => fail(response, requestId, error, exchange));
      return true;
    },
  };
}

/** A client that hangs up before its answer frees its place in the queue. `closed` runs as the response closes, answered or not. */
export function cancelledOnClose(response: ServerResponse, closed?: () => void): ClientCancellation {
  const cancellation = new ClientCancellation();
  response.once('close', () => {
    closed?.();
    if (!response.writableFinished) cancellation.abort();
  });
  return cancellation;
}
