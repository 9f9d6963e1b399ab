/**
 * The KServe Open Inference Protocol (V2) over HTTP, with Triton's extensions, as a thin
 * translator over the Server core: routes parse the wire format, call the core and write back.
 */
import { optionKeyName, parseOptions, type SettingName } from '../../core/options.js';
import { createServer as createHttpServer, maxHeaderSize, type IncomingMessage, type OutgoingHttpHeaders, type RequestListener, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { Server as NetServer } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { z } from 'zod';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { bearerChallenge, checkBearerToken, tokensFor } from '../../core/auth.js';
import { httpsServerOptions, secureContextOptions, type TlsCredentials } from '../../core/tls.js';
import { clientMessage, httpStatusOf, invalidArgument, loggedMessage, NereidError, quote, quoteName, shortened } from '../../core/errors.js';
import type { RequestContext } from '../../core/inference.js';
import { REQUEST_ID_HEADER, requestIdOf } from '../../observability/request-id.js';
import { logFailedHandshakes, type HandshakeFailureLogger } from '../../observability/tls-handshake-log.js';
import { parseJson } from '../../protocol/v2-json.js';
import type { BatchJobsSource } from '../../jobs/batch-status.js';
import { MAX_MODEL_NAME } from '../../repository/model-name.js';
import { answeredModelFilename, type CompletedModelConfig } from '../../config/model-config.js';
import { namedRepositoryRefusal, type Server } from '../../server/server.js';
import { admitFromHeaders, askForBody, discardRefusedBody, holdContinue, readBody, streamBodies } from './body-admission.js';
import { registerClassifyRoutes } from './classify-http.js';
import { DOCS_PATH, OPENAPI_PATH, serveOpenApi, type ServedOpenApi } from './openapi.js';
import type { HistogramSource } from './dashboard-data.js';
import { DASHBOARD_API, DASHBOARD_PATH, isDashboardRoute, registerDashboardRoutes } from './dashboard-http.js';
import { answerInference, failureHeaders, httpFailureOf, httpRequestContext, writeAnswer, type HttpFailure } from './infer-answer.js';
import { cancelledOnClose, directInference, type DirectInference } from './direct-inference.js';
import { logAccess } from './access-log.js';
import { PROTECTIVE_HEAD_LINES, protectAnswer } from '../../core/protective-headers.js';
import { dashboardListenerOf, separateDashboard, type DashboardListener } from './dashboard-listener.js';
import { httpFrontEndOptionsSchema } from './http-options.js';
import { acceptQueueGraceMs, ConnectionsTakenWhileStopping, stopRefusal, takeQueuedConnections } from '../accept-queue.js';

export { httpFrontEndOptionsSchema } from './http-options.js';

/** The longest path segment the router takes: longer than any model name the repository accepts, so the core answers those with its own message. */
const MAX_PATH_SEGMENT = 1024;

export type HttpFrontEndOptions = z.input<typeof httpFrontEndOptionsSchema> & {
  /** Where the dashboard reads latency and batch-size histograms (PrometheusMetrics.histogramSnapshot); none: no percentiles. */
  dashboardHistograms?: HistogramSource;
  /** Where the dashboard's batch jobs page reads the jobs of a Redis queue (--jobs-queue); none: the page says how to set one. */
  dashboardJobs?: BatchJobsSource;
  /** How refusals name these options (a 413's body limit, a 408's timeout); default: by their keys. The CLI passes its flags' names (httpFlagName). */
  settingName?: SettingName;
};

/** The options createHttpFrontEnd reads itself, beside its schema's. */
const HTTP_OTHER_OPTIONS = { dashboardHistograms: true, dashboardJobs: true, settingName: true } satisfies Record<Exclude<keyof HttpFrontEndOptions, keyof z.input<typeof httpFrontEndOptionsSchema>>, true>;

type ModelParams = { model: string; version?: string };

/**
 * Routes that change how the server runs rather than ask it for answers: the model repository, and
 * the trace and logging settings (global and per model). Matched on the route's pattern when one
 * matched, so no spelling of the URL reaches them under the inference scope.
 */
const MANAGEMENT_ROUTE = /^\/v2\/(?:repository|trace|logging)(?:[/?]|$)|^\/v2\/models\/:model\/trace\//;
/** Routes of a model's readiness, open as the health probes are. */
const MODEL_READY_ROUTES = new Set(['/v2/models/:model/ready', '/v2/models/:model/versions/:version/ready']);

/**
 * Whether a request's route stays open whatever the tokens: the health probes (the server's, a model's readiness) and
 * the API's description (/openapi.json, Swagger UI under /docs), which carry nothing a token protects. Judged by the
 * route the request matched, never by its raw path: a path no route answers (/docs-x, /documentation, /v2/health/x)
 * needs a token like any other, so that a client without one learns nothing of which paths exist.
 */
function openWhateverTheTokens(route: string | undefined): boolean {
  if (route === undefined) return false;
  return route === '/v2/health/live' || route === '/v2/health/ready' || MODEL_READY_ROUTES.has(route) || route === OPENAPI_PATH || route === DOCS_PATH || route.startsWith(`${DOCS_PATH}/`);
}


/** The optimization block Triton's JSON prints for a config that sets none (protobuf defaults and Triton's own). */
const TRITON_OPTIMIZATION_DEFAULTS = {
  priority: 'PRIORITY_DEFAULT',
  input_pinned_memory: { enable: true },
  output_pinned_memory: { enable: true },
  gather_kernel_buffer_threshold: 0,
  eager_batching: false,
};

/**
 * A model's config as Triton's JSON writes it, every field it always prints included, with the defaults of fields
 * Nereid leaves unset: tools read e.g. model_transaction_policy.decoupled, an input's format or an instance group's
 * passive flag. default_model_filename is the file an ONNX Runtime model loads from when the config names none
 * ('model.onnx', as Triton's auto-complete writes it for that backend), '' for the others.
 */
function withTritonDefaults(config: CompletedModelConfig) {
  return {
    // Defaults first: what the config sets (its own metric_tags, say) stays as it is.
    runtime: '',
    batch_output: [],
    cc_model_filenames: {},
    metric_tags: {},
    ...config,
    default_model_filename: answeredModelFilename(config),
    input: config.input.map((input) => ({ format: 'FORMAT_NONE', is_shape_tensor: false, ...input })),
    output: config.output.map((output) => ({ label_filename: '', is_shape_tensor: false, ...output })),
    optimization: { ...TRITON_OPTIMIZATION_DEFAULTS, ...config.optimization },
    instance_group: config.instance_group.map((group) => ({ gpus: [], secondary_devices: [], profile: [], passive: false, host_policy: '', ...group })),
    model_transaction_policy: { decoupled: false },
  };
}

/** Each inference request's context, for the access log to read what the model wrote back into it. */
const contexts = new WeakMap<FastifyRequest, RequestContext>();

/** What travels beside an HTTP request into the core. */
function contextOf(request: FastifyRequest, reply: FastifyReply): RequestContext {
  const context = httpRequestContext(request.headers, cancelledOnClose(reply.raw), request.id);
  contexts.set(request, context);
  return context;
}

/**
 * A failed request's log line, at debug, with the reason the client was given (cut as it was): the core has logged
 * an internal failure with its cause already. A message that quotes tensor data (a JSON parser's excerpt, an
 * element's value) is logged without it (NereidError.logged): tensor data stays out of logs.
 */
function logFailure(request: FastifyRequest, code: string, status: number, reason: string): void {
  failures.set(request, { code, reason });
  request.log.debug({ code, status, reason }, 'request failed');
}

/** A failed request's code and the reason it was given, for its access line. */
const failures = new WeakMap<FastifyRequest, { code: string; reason: string }>();

function sendFailure(reply: FastifyReply, failure: HttpFailure): FastifyReply {
  return reply.code(failure.status).headers(failureHeaders(failure)).type('application/json').send({ error: failure.message });
}

function sendError(reply: FastifyReply, error: NereidError): FastifyReply {
  return sendFailure(reply, httpFailureOf(error));
}

function bodyObject(request: FastifyRequest, what: string): Record<string, unknown> {
  const body = request.body as Buffer | undefined;
  if (!body || body.length === 0) return {};
  const parsed = parseJson(body, what);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw invalidArgument(`the ${what} must be a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** Requests each listener has received and not yet answered (or lost to their client): what a cut at the end of a drain would fail. */
const requestsInFlight = new WeakMap<HttpServer, { count: number }>();

/** The HTTPS servers of each front end (its port, the dashboard's), for replaceHttpTls. */
const secureServers = new WeakMap<FastifyInstance, HttpsServer[]>();

/** Gives the front end's HTTPS listeners new credentials (renewed certificate, fresh revocation lists) for new connections. */
export function replaceHttpTls(app: FastifyInstance, tls: TlsCredentials): void {
  for (const server of secureServers.get(app) ?? []) server.setSecureContext(secureContextOptions(tls));
}

/**
 * The answer to a pipelined request (one behind another still unanswered on its connection) has no socket until its
 * turn, and Node never closes it when the connection closes before then: what waits on its 'close' (the body
 * reservation, the queued work's cancellation, the in-flight count) would wait for good, and a client pipelining
 * requests and hanging up would keep their bodies' bytes of the server's budget. It is closed here with the connection.
 */
function closeWithConnection(request: IncomingMessage, response: ServerResponse): void {
  const connection = request.socket;
  const closeUnanswered = () => {
    // Its turn came (it has the socket, or had it and finished): Node closes it itself.
    if (response.socket || response.writableFinished) return;
    response.destroy();
    response.emit('close');
  };
  connection.once('close', closeUnanswered);
  response.once('close', () => connection.off('close', closeUnanswered));
}

/** Node's HTTP(S) server with the front end's timeouts and connection cap, checked every second rather than Node's 30. */
function httpServerWith(
  settings: z.output<typeof httpFrontEndOptionsSchema>,
  logger: HandshakeFailureLogger,
  listener: string,
  made: HttpsServer[],
  late: ConnectionsTakenWhileStopping,
  direct?: DirectInference,
) {
  return (handler: RequestListener): HttpServer => {
    const inFlight = { count: 0 };
    const counted: RequestListener = (request, response) => {
      protectAnswer(response);
      inFlight.count += 1;
      response.once('close', () => (inFlight.count -= 1));
      if (!response.socket) closeWithConnection(request, response);
      if (direct?.take(request, response)) return;
      handler(request, response);
    };
    const timeouts = { headersTimeout: settings.headersTimeoutMs, requestTimeout: settings.requestTimeoutMs, connectionsCheckingInterval: 1000 };
    let server: HttpServer;
    if (settings.tls) {
      const secure = createHttpsServer({ ...httpsServerOptions(settings.tls), ...timeouts }, counted);
      made.push(secure);
      server = secure;
    } else {
      server = createHttpServer(timeouts, counted);
    }
    requestsInFlight.set(server, inFlight);
    late.watch(server);
    if (settings.tls) logFailedHandshakes(server, logger, listener);
    server.keepAliveTimeout = settings.keepAliveTimeoutMs;
    server.maxConnections = settings.maxConnections;
    server.on('checkContinue', holdContinue(counted));
    return server;
  };
}

/**
 * Node's HTTP parser refusing a request (a malformed chunk size, both Content-Length and Transfer-Encoding, headers
 * past the limit, a client too slow): answered with the {"error"} body of every other refusal, then the connection
 * closed, since the stream cannot be read on from there.
 */
function answerMalformedRequest(timeouts: RequestTimeouts) {
  return (error: NodeJS.ErrnoException, socket: Duplex): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, reason, message] =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', `the request line and headers exceed ${maxHeaderSize} bytes`]
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', requestTimeoutMessage(socket, timeouts)]
          : [400, 'Bad Request', `malformed HTTP request: ${error.message.replace(/^Parse Error: /, '')}`];
    const body = JSON.stringify({ error: message });
    if (socket.writable) socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n${PROTECTIVE_HEAD_LINES}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    socket.destroy(error);
  };
}

/**
 * Which of its two limits Node's 408 is for (it raises the same error for both): a request whose headers arrived and
 * whose body did not is past the whole request's; any other, past the headers'. The parser holds the request it is
 * reading (`incoming`, made once the headers are in) until the next one's headers arrive.
 */
function requestTimeoutMessage(socket: Duplex, { headersTimeoutMs, requestTimeoutMs, settingName }: RequestTimeouts): string {
  const reading = (socket as Duplex & { parser?: { incoming?: { complete?: boolean } | null } | null }).parser?.incoming;
  return reading && !reading.complete
    ? `the request's body was not received within ${requestTimeoutMs} ms of its start (the whole request's limit, ${settingName('requestTimeoutMs')})`
    : `the request's headers were not received within ${headersTimeoutMs} ms (${settingName('headersTimeoutMs')})`;
}

/** The two time limits on receiving a request, and how their refusal names them. */
interface RequestTimeouts {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  settingName: SettingName;
}

/** Whether a settings body (raw bytes here, as every body is kept) names no setting: empty, or a JSON object with no keys. */
function namesNoSetting(body: unknown): boolean {
  const text = Buffer.isBuffer(body) ? body.toString('utf8').trim() : body === undefined || body === null ? '' : JSON.stringify(body);
  if (text === '') return true;
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && Object.keys(parsed).length === 0;
  } catch {
    return false;
  }
}

/** The log line of a change made through the management API. */
function auditManagementChange(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  // A settings POST naming no setting reads them, as in Triton's API (a load or unload with an empty body is still one).
  if (/\/(?:logging|setting)$/.test(request.routeOptions.url ?? '') && namesNoSetting(request.body)) return done();
  request.log.info({ method: request.method, url: request.url, status: reply.statusCode, remoteAddress: request.socket.remoteAddress }, `management: ${request.method} ${request.url} answered ${reply.statusCode}`);
  done();
}

/** The methods each route path takes, learnt from the routes added from now on: `path` → those whose pattern it matches. */
function methodsByPath(app: FastifyInstance): (path: string) => string[] {
  const routes: { pattern: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    const parts = route.url.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    routes.push({ pattern: new RegExp(`^${parts.join('/')}$`), methods: [route.method].flat() });
  });
  return (path) => [...new Set(routes.filter((route) => route.pattern.test(path)).flatMap((route) => route.methods))];
}

/** The front end's HTTP(S) servers: its own and, when the dashboard has a port of its own, the dashboard's. */
function listenersOf(app: FastifyInstance): HttpServer[] {
  return [app.server, dashboardListenerOf(app)?.httpServer].filter((listener): listener is HttpServer => listener !== undefined);
}

/**
 * Stops taking connections and resolves once every open one has closed, without resetting any: a
 * request in flight is answered (with Connection: close, the server draining), an idle keep-alive
 * connection closes at its keep-alive timeout, which its client was told and so does not send on
 * it as it closes, and one that never sent a request (a browser's preconnect) at the headers
 * timeout. (http.Server.close() would close idle connections at once, racing a client that is
 * writing a request on one.) Connections the kernel had completed but Node not yet taken are taken first and
 * answered like the others (takeQueuedConnections). Then the front end closes.
 */
export async function drainHttpFrontEnd(app: FastifyInstance, timeoutMs: number): Promise<void> {
  const listeners = listenersOf(app).filter((listener) => listener.listening);
  await takeQueuedConnections(listeners, acceptQueueGraceMs(timeoutMs));
  await Promise.all(listeners.map((listener) => new Promise<void>((resolve) => NetServer.prototype.close.call(listener, () => resolve()))));
  await app.close();
}

/**
 * Closes every connection of the front end now, answered or not: the end of a drain that ran out of time. Answers how
 * many requests were still unanswered on them (idle keep-alive connections, closed as well, fail nothing).
 */
export function closeHttpConnections(app: FastifyInstance): number {
  const listeners = listenersOf(app);
  const unanswered = listeners.reduce((sum, listener) => sum + (requestsInFlight.get(listener)?.count ?? 0), 0);
  for (const listener of listeners) listener.closeAllConnections();
  return unanswered;
}

/** Where the dashboard's own port listens (http://host:port), when the front end has one (dashboardPort) and it is bound. */
export function dashboardAddress(app: FastifyInstance): string | undefined {
  return dashboardListenerOf(app)?.address();
}

/** Each front end's direct inference path. */
const directPaths = new WeakMap<FastifyInstance, DirectInference>();

/** Inference requests the front end answered without Fastify (direct-inference.ts), for tests and tools. */
export function directlyAnswered(app: FastifyInstance): number {
  return directPaths.get(app)?.taken ?? 0;
}

/** Each front end's OpenAPI document and the routes it could not document, for tests and tools. */
// Typed here, not inferred: the inferred type names the `Fastify` default import, which the declaration output drops.
export const openApiDocuments: WeakMap<FastifyInstance, ServedOpenApi> = new WeakMap();

/**
 * Why a browser's request that may change or run something comes from a page of another origin, or undefined when it
 * does not or is no browser's. Browsers say where it comes from themselves (Sec-Fetch-Site, which a reverse proxy
 * leaves alone): `cross-site` and `same-site` (another subdomain, or another port of this host: a page of another
 * origin, by the browser's own judgement) are refused, `same-origin` and `none` (the user's own action) pass. A request
 * without Sec-Fetch-Site but with an Origin (an older browser) is judged by the Origin: its host name must be the one
 * the request was sent to (Host, or a proxy's X-Forwarded-Host), ports aside, since proxies commonly drop or change
 * them. Clients that are not browsers send neither header and pass.
 */
function crossOriginRefusal(headers: FastifyRequest['headers']): string | undefined {
  const site = headers['sec-fetch-site'];
  const origin = headers.origin;
  const host = `Host ${quoteName(headers.host ?? '')}`;
  if (site === 'cross-site') return `Sec-Fetch-Site is 'cross-site'${origin === undefined ? '' : ` (Origin ${quoteName(origin)})`}: the request comes from a page of another site`;
  if (site === 'same-site') return `Sec-Fetch-Site is 'same-site'${origin === undefined ? '' : ` (Origin ${quoteName(origin)})`}: the request comes from a page of another origin on this site (another port or subdomain)`;
  if (site === 'same-origin' || site === 'none') return undefined;
  if (origin === undefined) return undefined;
  return originHostIsServers(origin, headers) ? undefined : `Origin ${quoteName(origin)} is not this server (${host})`;
}

function originHostIsServers(origin: string, headers: FastifyRequest['headers']): boolean {
  let hostname: string;
  try {
    hostname = new URL(origin).hostname;
  } catch {
    return false; // 'null' (a sandboxed page, a file) and anything unreadable
  }
  const hostnameOf = (host: string) => {
    try {
      return new URL(`http://${host.trim()}`).hostname;
    } catch {
      return undefined;
    }
  };
  const forwarded = headers['x-forwarded-host'];
  const hosts = [headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',') : [])].filter((host) => host !== undefined);
  return hosts.some((host) => hostnameOf(host) === hostname);
}

export function createHttpFrontEnd(server: Server, options: HttpFrontEndOptions = {}): FastifyInstance {
  const settings = parseOptions('createHttpFrontEnd', httpFrontEndOptionsSchema, options, Object.keys(HTTP_OTHER_OPTIONS));
  const maxBodyBytes = settings.maxBodyBytes;
  const settingName = options.settingName ?? optionKeyName;
  const logger = server.logger.child({ frontEnd: 'http' });
  const tlsServers: HttpsServer[] = [];
  const answerMalformed = answerMalformedRequest({ ...settings, settingName });
  const late = new ConnectionsTakenWhileStopping(() => server.stopping);
  // Set once app.close() begins: Fastify then answers what still arrives on a busy connection 503 with Connection: close
  // (return503OnClosing), so that the close ends; a direct answer would keep the connection, and the close, going.
  let closing = false;
  const direct = directInference(server, {
    maxBodyBytes,
    authTokens: settings.authTokens,
    maxPathSegment: MAX_PATH_SEGMENT,
    logger,
    accessLog: settings.accessLog,
    passOn: (request) => closing || late.has(request.socket),
  });
  const app: FastifyInstance = Fastify({
    serverFactory: httpServerWith(settings, logger, 'HTTP', tlsServers, late, direct),
    // The server comes from serverFactory; this tells Fastify it speaks HTTPS (the address it reports).
    ...(settings.tls ? { https: httpsServerOptions(settings.tls) } : {}),
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: maxBodyBytes,
    // Every log line about a request carries its id (reqId): the client's x-request-id, else a UUID.
    genReqId: (raw) => requestIdOf(raw.headers[REQUEST_ID_HEADER]),
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: MAX_PATH_SEGMENT },
    clientErrorHandler: answerMalformed,
    // Errors the router raises before any route runs (a bad %-escape, an over-long path segment) get the same {"error"} body.
    // The path is the client's: quoted within the bound every echoed value keeps, not in Fastify's words, which quote it whole.
    frameworkErrors: (error, request, reply) => {
      const path = quote(request.url);
      const [status, message] =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? [414, `the path ${path} has a segment over ${MAX_PATH_SEGMENT} characters, the limit of any path segment (a model name's: ${MAX_MODEL_NAME})`]
          : error.code === 'FST_ERR_BAD_URL'
            ? [400, `the path ${path} has a %-escape that does not decode (not percent-encoded UTF-8)`]
            : [500, clientMessage(error.message)];
      return (reply as unknown as FastifyReply).code(status).type('application/json').send({ error: message });
    },
  });

  // server.stop() drains it with the server, until it is closed on its own.
  secureServers.set(app, tlsServers);
  directPaths.set(app, direct);
  const detach = server.attachFrontEnd({ drain: (timeoutMs) => drainHttpFrontEnd(app, timeoutMs), cut: () => closeHttpConnections(app) });
  app.addHook('onClose', (_instance, done) => {
    detach();
    done();
  });
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });

  // Every body is read as bytes: infer requests may be JSON followed by binary tensors.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (request: FastifyRequest, payload: Readable) => readBody(request, payload, maxBodyBytes));
  // Triton's clients may compress requests (request_compression_algorithm gzip/deflate): inflated as a stream, bounded as it inflates.
  app.addHook('preParsing', streamBodies({ maxBodyBytes, maxConcurrentInflations: settings.maxConcurrentInflations, maxBodyChunks: settings.maxBodyChunks }));
  app.addHook('preParsing', askForBody(maxBodyBytes));

  app.addHook('onRequest', (request, reply, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    // Draining: this answer is the connection's last, so its client opens its next request elsewhere.
    if (server.stopping) reply.header('connection', 'close');
    if (late.has(request.raw.socket)) {
      const refusal = stopRefusal();
      logFailure(request, refusal.code, 503, refusal.message);
      reply.code(503).type('application/json').send({ error: refusal.message });
      return;
    }
    // A page of another site may still send a browser's POST here (a "simple" request needs no CORS preflight): one
    // that its browser or its Origin says comes from another origin may not change anything (load, unload, settings)
    // or spend the server's compute.
    const refusal = request.method === 'GET' || request.method === 'HEAD' ? undefined : crossOriginRefusal(request.headers);
    if (refusal !== undefined) {
      const message = clientMessage(`cross-origin request refused: ${refusal}; a page of another site may not send requests that change or run anything here`);
      logFailure(request, 'PERMISSION_DENIED', 403, message);
      reply.code(403).type('application/json').send({ error: message });
      return;
    }
    done();
  });
  if (settings.accessLog) {
    app.addHook('onResponse', (request, reply, done) => {
      // A probe answered as expected says nothing: Kubernetes asks every few seconds per pod. One that fails is logged.
      if (request.url.startsWith('/v2/health/') && reply.statusCode === 200) return done();
      const params = request.params as Partial<ModelParams> | undefined;
      logAccess(request.log, {
        method: request.method,
        url: request.url,
        response: reply.raw,
        failure: failures.get(request),
        ms: reply.elapsedTime,
        remoteAddress: request.socket.remoteAddress,
        model: params?.model,
        version: params?.version,
        ood: contexts.get(request)?.ood,
      });
      done();
    });
  }

  // The dashboard on its own port: that port answers the dashboard and the model routes its pages call, this one the rest.
  let dashboardListener: DashboardListener | undefined;
  if (settings.dashboard && settings.dashboardPort !== undefined) {
    const dashboardServer = httpServerWith(settings, logger, 'dashboard', tlsServers, late);
    // Fastify answers its own listener's malformed requests with answerMalformed; this one is not Fastify's.
    const withMalformedAnswered = (handler: RequestListener) => dashboardServer(handler).on('clientError', answerMalformed);
    dashboardListener = separateDashboard(app, withMalformedAnswered, { host: settings.dashboardHost, port: settings.dashboardPort, tls: Boolean(settings.tls) });
  }

  const tokens = settings.authTokens;
  if (tokensFor(tokens, 'inference').length || tokensFor(tokens, 'management').length) {
    // The dashboard shows every model's statistics: a management token opens it, or an inference one where only those exist.
    const dashboardScope = tokensFor(tokens, 'management').length ? 'management' : 'inference';
    app.addHook('onRequest', async (request, reply) => {
      // A model's readiness is a health probe too, as in Triton's health group and KServe's V2 spec: load balancers ask it.
      if (openWhateverTheTokens(request.routeOptions.url)) return;
      // The route matched, not the URL: a path no route answers is 401 without a token, the dashboard's included.
      const route = request.routeOptions.url ?? '';
      const dashboard = settings.dashboard && isDashboardRoute(route);
      // The pages hold no data; they ask for the token that their API calls then carry.
      if (dashboard && !DASHBOARD_API.test(route)) return;
      const scope = dashboard ? dashboardScope : MANAGEMENT_ROUTE.test(route) ? 'management' : 'inference';
      try {
        checkBearerToken(request.headers.authorization, tokens, scope);
      } catch (error) {
        const refusal = error as NereidError;
        logFailure(request, refusal.code, httpStatusOf(refusal.code), loggedMessage(refusal));
        reply.header('www-authenticate', bearerChallenge(refusal));
        return sendError(reply, refusal);
      }
    });
  }

  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const message = `request body is larger than the limit of ${maxBodyBytes} bytes (${settingName('maxBodyBytes')})`;
      logFailure(request, error.code, 413, message);
      discardRefusedBody(request);
      return reply.code(413).send({ error: message });
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      const message = `the Content-Type ${quote(request.headers['content-type'] ?? '')} is not a media type: send type/subtype, e.g. application/json, application/octet-stream or image/png`;
      logFailure(request, error.code, 415, message);
      return reply.code(415).send({ error: message });
    }
    const failure = httpFailureOf(error);
    if (failure.unexpected) request.log.error({ err: error }, 'request failed');
    logFailure(request, failure.code, failure.status, failure.logged);
    return sendFailure(reply, failure);
  });

  // Before any route: the document and the methods of each path learn of each route as it is added.
  const openApi = serveOpenApi(app);
  openApiDocuments.set(app, openApi);
  const methodsOf = methodsByPath(app);

  // A change made through the management API (load, unload, log or trace settings, traffic) leaves a line whether or
  // not the access log is on: who changed what, and when, is what an operator looks for after an incident. Attached to
  // those routes only, so inference pays nothing for it.
  app.addHook('onRoute', (route) => {
    if (![route.method].flat().includes('POST') || !MANAGEMENT_ROUTE.test(route.url) || route.url.endsWith('/index')) return;
    route.onResponse = [...[route.onResponse ?? []].flat(), auditManagementChange];
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    // A path served with other methods: 405 naming them, as Triton answers a GET of /infer.
    const allowed = methodsOf(path);
    if (allowed.length > 0) {
      return reply.code(405).header('allow', allowed.join(', ')).send({ error: `${request.method} is not allowed on ${shortened(path)}; it takes ${allowed.join(', ')}` });
    }
    return reply.code(404).send({ error: `no route ${request.method} ${shortened(path)}` });
  });

  app.get('/v2/health/live', async (_request, reply) =>
    server.live ? reply.code(200).send() : sendError(reply, new NereidError('UNAVAILABLE', 'server is not live')),
  );
  app.get('/v2/health/ready', async (_request, reply) =>
    server.ready ? reply.code(200).send() : reply.code(400).send({ error: 'server is not ready' }),
  );
  app.get('/v2', async () => server.metadata());
  app.get('/v2/models', async () => server.modelList());
  // A person or a tool opening the server's address finds where to go from here.
  app.get('/', async () => {
    const { name, version } = server.metadata();
    const links: Record<string, string> = { metadata: '/v2', models: '/v2/models', live: '/v2/health/live', ready: '/v2/health/ready', openapi: OPENAPI_PATH, docs: `${DOCS_PATH}/` };
    if (settings.dashboard && !dashboardListener) links.dashboard = `${DASHBOARD_PATH}/`;
    return { name, version, protocol: 'KServe V2 (Triton compatible)', links };
  });

  const modelPaths = (suffix: string) => [`/v2/models/:model${suffix}`, `/v2/models/:model/versions/:version${suffix}`];
  for (const path of modelPaths('')) {
    app.get<{ Params: ModelParams }>(path, async (request) => server.modelMetadata(request.params.model, request.params.version));
  }
  for (const path of modelPaths('/ready')) {
    app.get<{ Params: ModelParams }>(path, async (request, reply) => {
      const { model, version } = request.params;
      if (server.modelReady(model, version)) return reply.code(200).send();
      return reply.code(400).send({ error: `model ${quoteName(model)}${version ? ` version ${shortened(version)}` : ''} is not ready` });
    });
  }
  for (const path of modelPaths('/config')) {
    app.get<{ Params: ModelParams }>(path, async (request) => withTritonDefaults(await server.modelConfig(request.params.model, request.params.version)));
  }
  // Inference routes are admitted from their headers, before their body is read (auth hooks run first).
  const admission = admitFromHeaders(server);
  for (const path of modelPaths('/infer')) {
    app.post<{ Params: ModelParams }>(path, { onRequest: admission }, async (request, reply) => {
      const { model, version } = request.params;
      const body = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
      const answer = await answerInference(server, { body, headers: request.headers, model, version, query: request.query }, contextOf(request, reply));
      reply.hijack();
      writeAnswer(reply.raw, answer, reply.getHeaders() as OutgoingHttpHeaders);
      return reply;
    });
  }

  registerClassifyRoutes(app, server, { maxBodyBytes, maxBodyChunks: settings.maxBodyChunks, modelPaths, contextOf, admission });

  app.get<{ Params: { model: string } }>('/v2/models/:model/compare', async (request) => server.modelComparison(request.params.model));
  for (const path of modelPaths('/monitor')) {
    app.get<{ Params: ModelParams }>(path, async (request) => server.modelMonitor(request.params.model, request.params.version));
  }
  for (const path of modelPaths('/feedback')) {
    app.post<{ Params: ModelParams }>(path, async (request) => server.feedback(request.params.model, request.params.version, bodyObject(request, 'feedback')));
  }

  app.get('/v2/models/stats', async () => server.modelStatistics());
  for (const path of modelPaths('/stats')) {
    app.get<{ Params: ModelParams }>(path, async (request) => server.modelStatistics(request.params.model, request.params.version));
  }

  app.post('/v2/repository/index', async (request) => {
    const body = bodyObject(request, 'repository index request');
    if (body.ready !== undefined && typeof body.ready !== 'boolean') throw invalidArgument(`'ready' must be true or false, got ${JSON.stringify(body.ready)}`);
    return server.repositoryIndex(body.ready === true);
  });
  app.post<{ Params: { model: string } }>('/v2/repository/models/:model/load', async (request, reply) => {
    const body = bodyObject(request, 'load request');
    const parameters = body.parameters ?? {};
    if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) throw invalidArgument(`'parameters' must be an object`);
    await server.loadModel(request.params.model, parameters as Record<string, unknown>);
    return reply.code(200).send();
  });
  for (const path of ['/v2/repository/:repository/index', '/v2/repository/:repository/models/:model/load', '/v2/repository/:repository/models/:model/unload']) {
    app.post<{ Params: { repository: string } }>(path, async (request) => {
      throw namedRepositoryRefusal(request.params.repository);
    });
  }
  app.post<{ Params: { model: string } }>('/v2/repository/models/:model/traffic', async (request) =>
    server.setTrafficWeights(request.params.model, bodyObject(request, 'traffic request').weights),
  );
  app.post<{ Params: { model: string } }>('/v2/repository/models/:model/unload', async (request, reply) => {
    const parameters = bodyObject(request, 'unload request').parameters ?? {};
    if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) throw invalidArgument(`'parameters' must be an object`);
    await server.unloadModel(request.params.model, parameters as Record<string, unknown>);
    return reply.code(200).send();
  });

  // Triton's system shared memory extension, refused unless the server runs with --allow-client-shm.
  type RegionParams = { region: string };
  const sharedMemory = server.sharedMemory;
  app.get('/v2/systemsharedmemory/status', async () => sharedMemory.status());
  app.get<{ Params: RegionParams }>('/v2/systemsharedmemory/region/:region/status', async (request) => sharedMemory.status(request.params.region));
  app.post<{ Params: RegionParams }>('/v2/systemsharedmemory/region/:region/register', async (request, reply) => {
    sharedMemory.register(request.params.region, bodyObject(request, 'shared memory register request'), request.socket.remoteAddress ?? '');
    return reply.code(200).send();
  });
  app.post('/v2/systemsharedmemory/unregister', async (_request, reply) => {
    sharedMemory.unregister();
    return reply.code(200).send();
  });
  app.post<{ Params: RegionParams }>('/v2/systemsharedmemory/region/:region/unregister', async (request, reply) => {
    sharedMemory.unregister(request.params.region);
    return reply.code(200).send();
  });
  const noCudaSharedMemory = async () => {
    throw new NereidError('UNIMPLEMENTED', sharedMemory.cudaUnsupported);
  };
  app.get('/v2/cudasharedmemory/status', noCudaSharedMemory);
  app.get('/v2/cudasharedmemory/region/:region/status', noCudaSharedMemory);
  app.post('/v2/cudasharedmemory/region/:region/register', noCudaSharedMemory);
  app.post('/v2/cudasharedmemory/unregister', noCudaSharedMemory);
  app.post('/v2/cudasharedmemory/region/:region/unregister', noCudaSharedMemory);

  // Triton's trace and logging extensions: the answer is always the settings now in effect.
  app.get('/v2/trace/setting', async () => server.traceSetting());
  app.post('/v2/trace/setting', async (request) => server.updateTraceSetting(bodyObject(request, 'trace setting request')));
  app.get<{ Params: { model: string } }>('/v2/models/:model/trace/setting', async (request) => server.traceSetting(request.params.model));
  app.post<{ Params: { model: string } }>('/v2/models/:model/trace/setting', async (request) =>
    server.updateTraceSetting(bodyObject(request, 'trace setting request'), request.params.model),
  );
  app.get('/v2/logging', async () => server.logging());
  app.post('/v2/logging', async (request) => server.updateLogging(bodyObject(request, 'log setting request')));

  if (settings.dashboard) registerDashboardRoutes(app, server, { histograms: options.dashboardHistograms, jobs: options.dashboardJobs, streamIntervalMs: settings.dashboardIntervalMs });

  return app;
}
