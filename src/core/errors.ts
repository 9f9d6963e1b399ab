/**
 * Errors are values with a code a front end can map, a message a user can act on and, for internal
 * failures, the cause. The codes follow gRPC's status names, which is also how Triton classifies its
 * errors; the one table below maps them to HTTP statuses and gRPC codes.
 */
import type { RequestTimings } from './timings.js';

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'FAILED_PRECONDITION'
  | 'UNIMPLEMENTED'
  | 'ALREADY_EXISTS'
  | 'INTERNAL';

export class NereidError extends Error {
  /** For a refusal under load: when trying again could succeed (HTTP Retry-After, gRPC grpc-retry-pushback-ms). */
  readonly retryAfterMs?: number;
  /** What the log says instead of the message, when the message quotes the request's tensor data (which stays out of logs). */
  readonly logged?: string;
  /**
   * What the request had spent when it failed, where a failure has parts worth showing: an ensemble's steps that
   * answered and the one that failed, so the failed request's trace holds them as a successful one's does.
   */
  readonly timings?: RequestTimings;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number; logged?: string; timings?: RequestTimings },
  ) {
    super(message, options);
    this.name = 'NereidError';
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
    if (options?.logged !== undefined) this.logged = options.logged;
    if (options?.timings !== undefined) this.timings = options.timings;
  }

  /**
   * Set once a model has logged this internal failure at error level with its stack: an error that wraps it (an
   * ensemble naming the step that failed) is the same failure, not logged at error level a second time.
   */
  reported = false;

  /** The server refused for its load, not for the request: the same request may succeed once the load has eased. */
  get overloaded(): boolean {
    return this.retryAfterMs !== undefined;
  }
}

export const invalidArgument = (message: string) => new NereidError('INVALID_ARGUMENT', message);
/** The client went away or called the request off: whatever part of its path noticed answers it so. */
export const cancelled = () => new NereidError('CANCELLED', 'request cancelled by the client');
export const notFound = (message: string) => new NereidError('NOT_FOUND', message);
export const unavailable = (message: string, cause?: unknown) => new NereidError('UNAVAILABLE', message, { cause });
/** Refused because the server or a model is full: Triton's answer to a full queue (503, gRPC UNAVAILABLE), with a hint of when to retry. */
export const overloaded = (message: string, retryAfterMs: number) =>
  new NereidError('UNAVAILABLE', `${message}; retry in ${retryAfterSeconds(retryAfterMs)} s`, { retryAfterMs });

/** A retry hint in whole seconds, at least 1: what HTTP's Retry-After carries and a refusal's message says. */
export const retryAfterSeconds = (retryAfterMs: number) => Math.max(1, Math.ceil(retryAfterMs / 1000));

/** HTTP status and gRPC code of each error code (gRPC's numbers are fixed by its spec, so the core needs no gRPC library). */
const STATUS: Record<ErrorCode, { http: number; grpc: number }> = {
  CANCELLED: { http: 499, grpc: 1 },
  INVALID_ARGUMENT: { http: 400, grpc: 3 },
  DEADLINE_EXCEEDED: { http: 504, grpc: 4 },
  NOT_FOUND: { http: 404, grpc: 5 },
  ALREADY_EXISTS: { http: 409, grpc: 6 },
  PERMISSION_DENIED: { http: 403, grpc: 7 },
  RESOURCE_EXHAUSTED: { http: 429, grpc: 8 },
  FAILED_PRECONDITION: { http: 400, grpc: 9 },
  UNIMPLEMENTED: { http: 501, grpc: 12 },
  INTERNAL: { http: 500, grpc: 13 },
  UNAVAILABLE: { http: 503, grpc: 14 },
  UNAUTHENTICATED: { http: 401, grpc: 16 },
};

export function httpStatusOf(code: ErrorCode): number {
  return STATUS[code].http;
}

export function grpcStatusOf(code: ErrorCode): number {
  return STATUS[code].grpc;
}

/** The codes in the table's order: where two share an HTTP status (400), the first is the one a client is told. */
const CODES = Object.keys(STATUS) as ErrorCode[];

/**
 * The code an HTTP status stands for, as a client names a server's answer whatever the protocol: the table above read
 * backwards (400 is INVALID_ARGUMENT: FAILED_PRECONDITION shares it), then the statuses servers and proxies answer
 * outside it; any other 4xx is the request's fault, any other 5xx the server's.
 */
export function errorCodeOfHttpStatus(status: number): ErrorCode {
  const known = CODES.find((code) => STATUS[code].http === status);
  if (known) return known;
  if (status === 408) return 'DEADLINE_EXCEEDED';
  if (status === 413 || status === 431) return 'RESOURCE_EXHAUSTED';
  if (status === 502) return 'UNAVAILABLE';
  return status < 500 ? 'INVALID_ARGUMENT' : 'INTERNAL';
}

/** The code a gRPC status number stands for: the table read backwards; gRPC's others (UNKNOWN, ABORTED, OUT_OF_RANGE, DATA_LOSS) as the nearest. */
export function errorCodeOfGrpcStatus(status: number): ErrorCode {
  const known = CODES.find((code) => STATUS[code].grpc === status);
  if (known) return known;
  if (status === 10) return 'UNAVAILABLE'; // ABORTED: a conflict a retry may get past
  if (status === 11) return 'INVALID_ARGUMENT'; // OUT_OF_RANGE
  return 'INTERNAL'; // UNKNOWN, DATA_LOSS
}

/**
 * Whether a failure is the server declining work under load — a full queue, a wait longer than allowed, the bytes in
 * flight, a timeout run out in the queue — rather than the request's fault or a fault of the server's own.
 */
export function isRefusal(code: ErrorCode): boolean {
  return code === 'UNAVAILABLE' || code === 'RESOURCE_EXHAUSTED' || code === 'DEADLINE_EXCEEDED';
}

/**
 * Anything thrown, as a NereidError: a NereidError stays as it is; anything else is an INTERNAL
 * failure that keeps the original as its cause (stack included), its message prefixed with where it
 * happened when `context` says so.
 */
/** Whether a model has logged this failure, or one it wraps, at error level already (NereidError.reported). */
export function reportedAlready(error: unknown): boolean {
  for (let part: unknown = error; part instanceof Error; part = part.cause) if (part instanceof NereidError && part.reported) return true;
  return false;
}

export function asNereidError(error: unknown, context?: string): NereidError {
  if (error instanceof NereidError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new NereidError('INTERNAL', context ? `${context}: ${message}` : message, { cause: error });
}

/** Longest error message sent to a client: messages quote client input (names, values), which a client controls. */
export const MAX_CLIENT_MESSAGE_CHARS = 1024;

/** A message as a client receives it, bounded (an HTTP/2 trailer must stay well under the header limit). */
export function clientMessage(error: NereidError | string): string {
  const message = typeof error === 'string' ? error : error.message;
  if (message.length <= MAX_CLIENT_MESSAGE_CHARS) return message;
  return `${message.slice(0, MAX_CLIENT_MESSAGE_CHARS)}… (${message.length - MAX_CLIENT_MESSAGE_CHARS} more characters)`;
}

/** A failed request's reason as a log line gives it: the client's message, cut as the client gets it, without tensor data. */
export function loggedMessage(error: NereidError): string {
  return clientMessage(error.logged ?? error.message);
}

/** The most characters of one client value a message shows. */
const MAX_QUOTED_CHARS = 80;

/**
 * Characters that would act rather than show where a message or log line is read: C0 and C1 controls (a newline forging a
 * line, ESC starting a terminal's escape sequence), DEL, Unicode's line and paragraph separators, and the bidirectional
 * overrides and isolates that make text read otherwise than it is written.
 */
const ACTING_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const escaped = (character: string) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * Client text in a message or log line: cut to `max` characters, and its characters that would act (ACTING_CHARACTERS)
 * written as \u escapes. Every quoting of a client's value goes through here (quote, quoteName).
 */
export function shortened(text: string, max = MAX_QUOTED_CHARS): string {
  const cut = text.length <= max ? text : `${text.slice(0, max)}…`;
  return cut.replace(ACTING_CHARACTERS, escaped);
}

/**
 * Integers beyond 2^53 arrive as bigints (the lossless JSON parse), which JSON.stringify refuses: they are written as
 * marked strings and the marks then removed, so that they show as the digits sent. (A client string holding the mark
 * shows unquoted; this is only for reading.)
 */
const showBigInts = (_key: string, item: unknown) => (typeof item === 'bigint' ? `\u0000bigint:${item}` : item);
const BIGINT_SHOWN = /"\\u0000bigint:(-?\d+)"/g;

/** A client's value quoted in a message: JSON, at most `max` characters, and never a stack overflow on absurd nesting. */
export function quote(value: unknown, max = MAX_QUOTED_CHARS): string {
  let text: string;
  try {
    // A boxed number is a NaN or Infinity the JSON wrote by name (see parseExactJson), which JSON.stringify would show as null.
    text = typeof value === 'bigint' || value instanceof Number ? String(value) : (JSON.stringify(value, showBigInts)?.replace(BIGINT_SHOWN, '$1') ?? String(value));
  } catch (error) {
    return error instanceof RangeError ? '(a value too deeply nested to show)' : '(a value that cannot be shown)';
  }
  return shortened(text, max);
}

/**
 * A name a client gave (a model, version, tensor or shared memory region) in a message, in single
 * quotes as the server's own names are shown; a client may send any length, so it is cut as quote() cuts.
 */
export const quoteName = (name: string) => `'${shortened(name)}'`;
