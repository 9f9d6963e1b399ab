/**
 * What an inference request over HTTP is, whichever way it reached the front end (Fastify's route, or the direct path
 * taken for the common request): its body decoded into a request for the core, the core's answer encoded and, when the
 * client asks, compressed, then written in one corked write; and how a failure is answered.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { asNereidError, clientMessage, httpStatusOf, invalidArgument, loggedMessage, NereidError, quoteName, retryAfterSeconds } from '../../core/errors.js';
import { requestedOutputOf, type CancelSignal, type RequestContext, type RequestedOutput } from '../../core/inference.js';
import { decodeInferRequest, decodeRawInferRequest, encodedBytes, encodeInferResponse, encodeInferResponseInSlices, hasLargeJsonOutput, HEADER_LENGTH, holdsOneElement, type RawInputModel } from '../../protocol/v2-json.js';
import type { Server } from '../../server/server.js';
import { answerEncodingOf, compressAnswer } from './response-compression.js';

/** An inference request as the front end read it. */
export interface HttpInferRequest {
  body: Buffer;
  headers: IncomingHttpHeaders;
  model: string;
  version: string | undefined;
  /** The parsed query string, when there is one (`?outputs=`). */
  query?: unknown;
}

/** What travels beside an HTTP inference request into the core: its cancel signal, its id, and the client's trace context. */
export function httpRequestContext(headers: IncomingHttpHeaders, signal: CancelSignal, requestId: string): RequestContext {
  const traceparent = headers.traceparent;
  return { signal, requestId, traceparent: typeof traceparent === 'string' ? traceparent : undefined };
}

/** An answer ready to write: its parts in order (the JSON header as text, tensors' bytes), and the headers that describe them. */
export interface HttpInferAnswer {
  chunks: readonly (string | Buffer)[];
  headers: OutgoingHttpHeaders;
}

/**
 * A body for /infer with neither the binary extension's header nor an image Content-Type must be
 * V2 JSON; one that plainly is not (an image sent as octet-stream, a multipart upload) is told
 * what /infer takes instead of JSON's parse error on its first byte.
 */
function checkJsonBody(body: Buffer, contentType: string | undefined, server: Server, model: string, version: string | undefined): void {
  const sent = () => (contentType ? `Content-Type ${quoteName(contentType.split(';')[0]!)}` : 'no Content-Type');
  if (/^multipart\/form-data/i.test(contentType ?? '')) {
    throw invalidArgument(`/infer does not take multipart uploads (${sent()}): ${imageAlternatives(server, model, version, true).join(', or ')}`);
  }
  const first = body.find((byte) => byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09);
  // '{' or '[' (JSON's own error says an array is not a request), or a body declared JSON: the JSON parser's message is the one to give.
  if (first === undefined || first === 0x7b || first === 0x5b || /json/i.test(contentType ?? '')) return;
  throw invalidArgument(
    `the body is not V2 JSON (${sent()}, first byte 0x${first.toString(16).padStart(2, '0')}): /infer takes a JSON request, a binary tensor request with the Inference-Header-Content-Length header, or one image with Content-Type image/*`,
  );
}

/**
 * `?outputs=a,b`: the outputs a body without a JSON header (an image, or Inference-Header-Content-Length: 0) asks for,
 * where a JSON request names them in its 'outputs'. Without it every output is answered, as Triton does.
 */
function outputsQueryOf(query: unknown, headerless: boolean, binary: boolean): RequestedOutput[] | undefined {
  const given = (query as Record<string, unknown> | undefined)?.outputs;
  if (given === undefined) return undefined;
  if (!headerless) throw invalidArgument(`?outputs is for a body without a JSON header (an image, or Inference-Header-Content-Length: 0); a JSON request names its outputs in 'outputs'`);
  const names = [given].flat().flatMap((value) => String(value).split(',')).map((name) => name.trim()).filter(Boolean);
  if (names.length === 0) throw invalidArgument(`?outputs names no output; give their names, comma-separated: ?outputs=name1,name2`);
  // Of the kind the body's other outputs get (binary for raw binary data): a listed output is binary only when it asks.
  return names.map((name) => requestedOutputOf(name, binary ? { binary_data: true } : undefined));
}

/** Whether an image body (Content-Type image/*) suits the model: its one input takes an encoded image as BYTES. */
function takesImageBody(model: RawInputModel): boolean {
  const [input, ...others] = model.inputs;
  return others.length === 0 && input?.datatype === 'BYTES' && holdsOneElement(input.dims);
}

/** An image body is one encoded image: only for a model whose one input takes it as BYTES. */
function imageInputModel(server: Server, model: RawInputModel, name: string, version: string | undefined, imageBody: boolean): RawInputModel {
  if (imageBody && !takesImageBody(model)) {
    throw invalidArgument(
      `an image body (Content-Type image/*) is for models whose one input is an encoded image (BYTES); '${name}' takes ${model.inputs.map((tensor) => `${tensor.name} ${tensor.datatype}`).join(', ')}: ${imageAlternatives(server, name, version, false).join(', or ')}`,
    );
  }
  return model;
}

/**
 * What a client that sent images the wrong way may do instead, naming only the endpoints that take
 * this model: /classify or /detect for a model they serve (both take multipart forms), the image as
 * the body of /infer for a model whose one input is an encoded image, and V2 JSON otherwise.
 */
function imageAlternatives(server: Server, model: string, version: string | undefined, imageBodyFits: boolean): string[] {
  const ways: string[] = [];
  try {
    const routes = server.imageRoutes(model, version);
    const files = [routes.classify && 'classify', routes.detect && 'detect'].filter((route): route is string => Boolean(route));
    if (files.length > 0) ways.push(`send the images as multipart/form-data files to ${files.map((route) => `/v2/models/${model}/${route}`).join(' or ')}`);
    if (imageBodyFits && takesImageBody(server.rawInputModel(model, version))) ways.push('send one image as the body with Content-Type image/*');
  } catch {
    // A model not loaded (yet): the request itself will say so.
  }
  ways.push(`send a V2 JSON request naming the inputs of '${model}'`);
  return ways;
}


/** Decodes the request, asks the core, and encodes its answer as the client asked (JSON or binary, compressed or not). */
export async function answerInference(server: Server, request: HttpInferRequest, context: RequestContext): Promise<HttpInferAnswer> {
  const { body, headers, model, version } = request;
  const lengthHeader = headers[HEADER_LENGTH];
  const requestHeaderLength = Array.isArray(lengthHeader) ? lengthHeader[0] : lengthHeader;
  // Triton's raw binary request: no JSON header at all, the body is the model's one input; the answer comes back binary.
  // Nereid's image body (Content-Type image/*) is the same for a model whose one input is an encoded image, answered in JSON.
  const imageBody = requestHeaderLength === undefined && /^image\//i.test(headers['content-type'] ?? '');
  if (requestHeaderLength === undefined && !imageBody) checkJsonBody(body, headers['content-type'], server, model, version);
  const headerless = requestHeaderLength === '0' || imageBody;
  const { request: inference, binaryOutputByDefault } = headerless
    ? { request: decodeRawInferRequest(body, imageInputModel(server, server.rawInputModel(model, version), model, version, imageBody), model, version), binaryOutputByDefault: !imageBody }
    : decodeInferRequest(body, requestHeaderLength, model, version, server.sharedMemory, server.inputShapeCheck(model, version));
  const outputsAsked = outputsQueryOf(request.query, headerless, binaryOutputByDefault);
  if (outputsAsked) inference.outputs = outputsAsked;
  const response = await server.infer(inference, context);
  const encoded = hasLargeJsonOutput(response)
    ? await encodeInferResponseInSlices(response, inference.outputs, binaryOutputByDefault, server.sharedMemory)
    : encodeInferResponse(response, inference.outputs, binaryOutputByDefault, server.sharedMemory);
  const { byteLength, headerLength } = encoded;
  const type = headerLength === undefined ? 'application/json' : 'application/octet-stream';
  const described: OutgoingHttpHeaders = headerLength === undefined ? { 'content-type': type } : { 'content-type': type, 'inference-header-content-length': headerLength };
  const encoding = answerEncodingOf(headers['accept-encoding'], byteLength);
  if (!encoding) return { chunks: [encoded.header, ...encoded.binary], headers: { ...described, 'content-length': byteLength } };
  const compressed = await compressAnswer(encodedBytes(encoded), encoding);
  return { chunks: [compressed], headers: { ...described, 'content-length': compressed.length, 'content-encoding': encoding, vary: 'Accept-Encoding' } };
}

/**
 * Writes an answer as it is, in one corked write: the JSON header and each tensor's bytes are not copied into one
 * buffer first (a megabyte per answer for the OCR recogniser). `decided`: headers decided before it (Fastify's reply's).
 */
export function writeAnswer(response: ServerResponse, answer: HttpInferAnswer, decided?: OutgoingHttpHeaders): void {
  response.writeHead(200, decided ? { ...decided, ...answer.headers } : answer.headers);
  const { chunks } = answer;
  // One part (a JSON answer): Node writes the HTTP head and the text in one write, with no buffer of their own.
  if (chunks.length === 1) return void response.end(chunks[0]);
  response.cork();
  for (const chunk of chunks) response.write(chunk);
  response.end();
}

/** How a failed request is answered: its status, the client's message, and what its log line says. */
export interface HttpFailure {
  status: number;
  code: string;
  /** What the client is told. */
  message: string;
  /** What the log line says (without tensor data a message may quote). */
  logged: string;
  retryAfterMs?: number;
  /** Not the client's doing: logged at error with its cause. */
  unexpected: boolean;
}

/** A failure as the client is answered: the core's own errors by their code, a client error of the HTTP layer (a 4xx) as it says, anything else as an internal failure. */
export function httpFailureOf(error: Error & { code?: string; statusCode?: number }): HttpFailure {
  if (error instanceof NereidError) {
    return { status: httpStatusOf(error.code), code: error.code, message: clientMessage(error), logged: loggedMessage(error), retryAfterMs: error.retryAfterMs, unexpected: false };
  }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    const message = clientMessage(error.message);
    return { status: error.statusCode, code: error.code ?? 'CLIENT_ERROR', message, logged: message, unexpected: false };
  }
  const failure = asNereidError(error);
  return { status: httpStatusOf(failure.code), code: failure.code, message: clientMessage(failure), logged: loggedMessage(failure), retryAfterMs: failure.retryAfterMs, unexpected: true };
}

/** The head of a failure's answer beside its {"error"} body. */
export function failureHeaders(failure: HttpFailure): OutgoingHttpHeaders {
  return failure.retryAfterMs === undefined ? {} : { 'retry-after': String(retryAfterSeconds(failure.retryAfterMs)) };
}
