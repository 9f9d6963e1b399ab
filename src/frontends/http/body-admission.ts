/**
 * What an inference route does before and while it reads a body, so that overload and hostile
 * bodies cost little: the request is admitted from its headers alone (the model's queue and the
 * server's body budget asked with the announced length) and refused there, before a byte of its
 * body is read; a body that is compressed or of unannounced length is inflated as a stream, its
 * inflated bytes counted against the body limit and the budget as they arrive, with a cap on how
 * many inflate at once.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler, preParsingAsyncHookHandler, preParsingHookHandler } from 'fastify';
import { cancelled, invalidArgument, overloaded, quoteName } from '../../core/errors.js';
import type { BodyReservation } from '../../server/byte-budget.js';
import type { Server } from '../../server/server.js';

type ModelParams = { model: string; version?: string };

/** A request as far as its headers: Fastify's, or Node's own (the direct inference path). */
type WithHeaders = { headers: IncomingHttpHeaders };

/**
 * The size of an inflating body's output buffers: zlib's 16 KiB for a small body, up to 1 MiB for a
 * large or unannounced one. A gzip bomb inflated in 16 KiB pieces left its hundreds of MB scattered
 * through malloc's heap, which glibc cannot give back (RSS 509 MB, baseline 212, 12 s after 48
 * bombs); in 1 MiB pieces it inflates twice as fast and leaves 378 MB.
 */
function inflatedChunkBytes(request: FastifyRequest): number {
  const compressed = announcedLength(request);
  if (compressed === undefined) return 1024 * 1024;
  return Math.min(1024 * 1024, Math.max(16 * 1024, 2 ** Math.ceil(Math.log2(Math.max(1, compressed) * 4))));
}

const reservations = new WeakMap<FastifyRequest, BodyReservation>();

/** Fastify's own error for a body over its limit, which the error handler answers 413. */
export function bodyTooLarge(): Error {
  return Object.assign(new Error('request body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
}

/** The body length a request's Content-Length announces, when it is a readable one. */
export function announcedLength(request: WithHeaders): number | undefined {
  const header = request.headers['content-length'];
  if (header === undefined) return undefined;
  const length = Number(header);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/** A body @fastify/multipart's parser takes (its media type, parameters aside): the route reads it from the socket itself. */
function isMultipartForm(request: FastifyRequest): boolean {
  return String(request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase() === 'multipart/form-data';
}

function encodingOf(request: WithHeaders): string {
  return String(request.headers['content-encoding'] ?? 'identity').trim().toLowerCase() || 'identity';
}

/** What Fastify answers 400 for a body whose length differs from its Content-Length. */
function lengthMismatch(announced: number, received: number): Error {
  return Object.assign(new Error(`request body is ${received} bytes but Content-Length said ${announced}`), { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', statusCode: 400 });
}

/**
 * Reads a body (after the preParsing hook: inflated, counted) into one Buffer, as Fastify's own
 * reader does, except that a body of announced length and no Content-Encoding is copied into a
 * buffer of that length chunk by chunk as it arrives: joining a 48 MiB body's chunks at the end
 * holds the event loop for ~100 ms in one go, and 64 KiB at a time never does. A body that arrives
 * whole in one chunk (most small requests) is that chunk, neither allocated nor copied again.
 */
export function readBody(request: WithHeaders, payload: Readable, limit: number): Promise<Buffer> {
  const announced = encodingOf(request) === 'identity' ? announcedLength(request) : undefined;
  return new Promise<Buffer>((resolve, reject) => {
    if (announced !== undefined && announced > limit) return reject(bodyTooLarge());
    let whole: Buffer | undefined;
    const chunks: Buffer[] = [];
    let received = 0;
    const stop = (error?: Error) => {
      payload.off('data', onData);
      payload.off('end', onEnd);
      payload.off('error', onError);
      if (error) reject(error);
    };
    const onData = (chunk: Buffer) => {
      const at = received;
      received += chunk.length;
      const encodedLength = (payload as Readable & { receivedEncodedLength?: number }).receivedEncodedLength ?? 0;
      if (received > limit || encodedLength > limit) return stop(bodyTooLarge());
      if (announced === undefined) return void chunks.push(chunk);
      if (received > announced) return stop(lengthMismatch(announced, received));
      if (at === 0 && received === announced) whole = chunk;
      else chunk.copy((whole ??= Buffer.allocUnsafe(announced)), at);
      // Its last byte: the body is whole, and the stream's end (a turn of its own) is not waited for.
      if (received === announced) {
        stop();
        resolve(whole);
      }
    };
    const onEnd = () => {
      stop();
      if (announced !== undefined && received !== announced) return reject(lengthMismatch(announced, received));
      resolve(whole ?? Buffer.concat(chunks, received));
    };
    const onError = (error: Error & { statusCode?: number }) => stop(typeof error.statusCode === 'number' && error.statusCode >= 400 ? error : Object.assign(error, { statusCode: 400 }));
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onError);
    payload.resume();
  });
}

/** Requests that came with `Expect: 100-continue` and have not been told to send their body, with their keep-alive. */
const awaitingContinue = new WeakMap<IncomingMessage, boolean>();

/**
 * The http.Server's `checkContinue` listener: Node would answer `100 Continue` at once, so a client
 * refused from its headers (a token, a full queue, a Content-Length over the limit) would already be
 * sending a body that the refusal's closed connection then resets, often before the client read the
 * refusal. The request goes on to the router without it; its answer closes the connection unless
 * the body was asked for (askForBody), as the client then never sends it.
 */
export function holdContinue(handler: (request: IncomingMessage, response: ServerResponse) => void) {
  return (request: IncomingMessage, response: ServerResponse): void => {
    awaitingContinue.set(request, response.shouldKeepAlive);
    response.shouldKeepAlive = false;
    handler(request, response);
  };
}

/**
 * The last preParsing hook: a request holding its body back (holdContinue) is told to send it now
 * that its headers passed every check (its encoding and a slot to inflate it in included), unless
 * its Content-Length is over the limit already.
 */
export function askForBody(maxBodyBytes: number): preParsingHookHandler {
  return function askForBody(request, reply, payload, done) {
    const keepAlive = awaitingContinue.get(request.raw);
    if (keepAlive === undefined) return done(null, payload);
    const announced = announcedLength(request);
    if (announced !== undefined && announced > maxBodyBytes) return done(bodyTooLarge());
    awaitingContinue.delete(request.raw);
    reply.raw.shouldKeepAlive = keepAlive;
    reply.raw.writeContinue();
    done(null, payload);
  };
}

/** How long a connection whose body was refused as it arrived is read on after its answer, at most. */
export const LINGER_MS = 5_000;

/**
 * A body refused as it arrives (over the limit) is read on and thrown away after the answer rather
 * than cut off, as nginx's lingering close does: a socket closed while its client still writes
 * resets, and the reset often reaches the client before the answer (curl: "Send failure: Broken
 * pipe", no status). The answer says `Connection: close`; once it is sent the server closes its
 * side and reads until the client closes its own, or for LINGER_MS at most. A body never asked for
 * (holdContinue) is not coming, and one already whole is not either: those close at once.
 */
export function discardRefusedBody(request: FastifyRequest): void {
  if (awaitingContinue.has(request.raw) || request.raw.complete) return;
  const socket = request.raw.socket;
  request.raw.unpipe();
  request.raw.resume();
  // Node ends a `Connection: close` answer's socket with destroySoon(): here it half-closes instead.
  socket.destroySoon = function lingeringClose(this: Socket) {
    this.end();
    this.resume();
    const timer = setTimeout(() => this.destroy(), LINGER_MS).unref();
    this.once('close', () => clearTimeout(timer));
  };
}

/**
 * server.admit for a request whose answer is `response`. An admission that waited (an on-demand model loading) may
 * end after the client left: the answer's close, which releases the reservation otherwise, has passed then, so the
 * reservation is released here and the request ends as cancelled (its body budget and the model's hold were kept
 * for good before).
 */
export function admitWhileOpen(server: Server, model: string, version: string | undefined, bytes: number, response: ServerResponse): BodyReservation | Promise<BodyReservation> {
  const admitted = server.admit(model, version, bytes);
  if (!(admitted instanceof Promise)) return admitted;
  return admitted.then((reservation) => {
    if (!response.destroyed) return reservation;
    reservation.release();
    throw cancelled();
  });
}

/** The onRequest hook of inference routes: asks the server whether the request could be served now, and holds its body's bytes until the answer. */
export function admitFromHeaders(server: Server): onRequestAsyncHookHandler {
  return async function admitRequest(request: FastifyRequest, reply: FastifyReply) {
    const { model, version } = request.params as ModelParams;
    const reservation = await admitWhileOpen(server, model, version, announcedLength(request) ?? 0, reply.raw);
    reservations.set(request, reservation);
    reply.raw.once('close', () => reservation.release());
  };
}

/**
 * Counts the bytes a body inflates to, refusing it once they pass the body limit or the server's
 * budget, and the pieces it arrives in: every piece is an object held until the body is whole, so a
 * chunked body of a million one-byte chunks would cost far more memory than its bytes.
 */
export class BodyTally {
  private bytes = 0;
  private pieces = 0;

  constructor(
    private readonly limit: number,
    private readonly maxPieces: number,
    private readonly reservation: BodyReservation | undefined,
  ) {}

  /** Throws (413, 400 or 503) when this piece takes the body past a limit. */
  add(pieceBytes: number): void {
    this.bytes += pieceBytes;
    if (this.bytes > this.limit) throw bodyTooLarge();
    if (++this.pieces > this.maxPieces) {
      throw invalidArgument(`the request body arrived in more than ${this.maxPieces} pieces (chunks); send it in fewer, larger chunks`);
    }
    this.reservation?.holdAtLeast(this.bytes);
  }
}

/** The tally of a request's body, holding its bytes in the reservation its admission made. */
export function bodyTallyOf(request: FastifyRequest, limits: { maxBodyBytes: number; maxBodyChunks: number }): BodyTally {
  return new BodyTally(limits.maxBodyBytes, limits.maxBodyChunks, reservations.get(request));
}

/** A body's bytes on their way to the parser, tallied. */
class InflatedBytesCounter extends Transform {
  /** Fastify compares the announced Content-Length with this rather than with the inflated length. */
  receivedEncodedLength = 0;

  constructor(private readonly tally: BodyTally) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.tally.add(chunk.length);
    } catch (error) {
      return callback(error as Error);
    }
    callback(null, chunk);
  }
}

export interface StreamedBodyOptions {
  maxBodyBytes: number;
  /** Bodies inflating at once across the server; more are refused with 503. */
  maxConcurrentInflations: number;
  /** Pieces (HTTP chunks, inflated blocks) a streamed body may arrive in. */
  maxBodyChunks: number;
}

/**
 * The preParsing hook: an identity body of announced length passes untouched (its bytes were
 * reserved at admission and Fastify holds it to that length); any other is streamed through the
 * decoder its Content-Encoding names and counted as it inflates.
 */
export function streamBodies(options: StreamedBodyOptions): preParsingAsyncHookHandler {
  let inflating = 0;
  return async function streamBody(request, reply, payload) {
    const encoding = encodingOf(request);
    const identity = encoding === 'identity';
    // @fastify/multipart reads request.raw itself, never the stream returned here: a counter piped from it would go unread,
    // stall the form once its buffer filled, and raise the client's disconnect as an error nobody listens to (the process
    // ended). A form's files are tallied as the route reads them (bodyTallyOf); busboy cannot inflate one.
    if (isMultipartForm(request)) {
      if (!identity) throw invalidArgument(`a multipart/form-data body cannot be sent with Content-Encoding ${encoding}: send the form uncompressed (its images are compressed already)`);
      return payload;
    }
    // No body at all, or one of announced length that Fastify holds to it: nothing to count.
    if (identity && (announcedLength(request) !== undefined || request.headers['transfer-encoding'] === undefined)) return payload;
    const chunkSize = inflatedChunkBytes(request);
    const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip({ chunkSize }) : encoding === 'deflate' ? createInflate({ chunkSize }) : identity ? undefined : null;
    if (decoder === null) throw invalidArgument(`unsupported Content-Encoding ${quoteName(encoding)} (supported: gzip, deflate, identity)`);
    if (decoder && inflating >= options.maxConcurrentInflations) {
      throw overloaded(`${inflating} compressed request bodies are being inflated, the most the server takes at once`, 100);
    }
    const counter = new InflatedBytesCounter(bodyTallyOf(request, options));
    payload.on('data', (chunk: Buffer) => {
      counter.receivedEncodedLength += chunk.length;
    });
    if (!decoder) {
      payload.on('error', (error) => counter.destroy(error));
      return payload.pipe(counter);
    }
    inflating += 1;
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      inflating -= 1;
    };
    counter.once('close', done);
    counter.once('end', done);
    // A body refused before it was read whole (its compressed bytes over the limit) ends neither stream: the answer frees the slot.
    reply.raw.once('close', () => {
      if (settled) return;
      payload.unpipe(decoder);
      decoder.destroy();
      counter.destroy();
      done();
    });
    decoder.on('error', (error) => {
      counter.destroy(invalidArgument(`the request body is not valid ${encoding} data (Content-Encoding: ${encoding}): ${error.message}`));
    });
    payload.on('error', (error) => counter.destroy(error));
    // A refused or failed body stops inflating at once: nothing more is read or decoded for it.
    counter.once('error', () => {
      payload.unpipe(decoder);
      decoder.destroy();
      done();
    });
    return payload.pipe(decoder).pipe(counter);
  };
}
