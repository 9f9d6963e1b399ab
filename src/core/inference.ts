/**
 * The one internal request and response that every front end (HTTP, gRPC, batch jobs, the
 * library API) translates to and from.
 */
import { invalidArgument, quote, quoteName } from './errors.js';
import type { Tensor } from './tensor.js';
import type { RequestTimings } from './timings.js';

export type ParameterValue = string | number | boolean | bigint;
export type Parameters = Record<string, ParameterValue>;

/**
 * Request parameters that ask the wire for a format (HTTP's binary tensor extension), not the
 * model for anything: each front end takes them out, so a model sees the same parameters
 * whichever way the request came.
 */
export const TRANSPORT_PARAMETERS = ['binary_data_output'] as const;

/** Triton's correlation ids are uint64: the largest integer id. */
export const MAX_CORRELATION_ID = 2n ** 64n - 1n;

/**
 * The sequence parameters' types, checked for every request whatever its model, as Triton's front ends read them: a
 * correlation id is an unsigned integer or a string, and the START and END flags are booleans. Whether the model
 * uses them is the sequence batcher's question.
 */
export function checkSequenceParameters(parameters: Parameters | undefined): void {
  if (!parameters) return;
  const id = parameters.sequence_id;
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'bigint' && !Number.isSafeInteger(id)) {
    throw invalidArgument(`request: invalid value type for 'sequence_id' parameter, expected an unsigned integer or a string (a correlation id), got ${quote(id)}`);
  }
  if (id !== undefined && typeof id !== 'string' && (id as number | bigint) < 0) {
    throw invalidArgument(`request: parameter 'sequence_id' must be an integer from 0 (none) to ${MAX_CORRELATION_ID} (uint64) or a string, got ${id}`);
  }
  for (const flag of ['sequence_start', 'sequence_end'] as const) {
    const value = parameters[flag];
    if (value !== undefined && typeof value !== 'boolean') throw invalidArgument(`request: parameter '${flag}' must be a boolean (true or false), got ${quote(value)}`);
  }
}

/** The request parameter gRPC clients (tritonclient's `enable_empty_final_response`) set on a stream request: a boolean, the front end's business. */
export const EMPTY_FINAL_RESPONSE_PARAMETER = 'triton_enable_empty_final_response';

/**
 * Refuses request parameters whose names start with `triton_` (Triton reserves them for itself, and refuses them), but
 * those the front end reads itself (`allowed`), which must then be booleans, as Triton checks them.
 */
export function checkReservedParameters(parameters: Parameters | undefined, allowed: readonly string[] = []): void {
  for (const key in parameters) {
    if (!key.startsWith('triton_')) continue;
    if (!allowed.includes(key)) {
      const permitted = allowed.length ? `; of those only ${allowed.join(', ')} may be given` : ' and should not be specified';
      throw invalidArgument(`request: parameter keys starting with 'triton_' are reserved for Triton usage${permitted} (got ${quoteName(key)})`);
    }
    if (typeof parameters![key] !== 'boolean') throw invalidArgument(`request: invalid value type for ${quoteName(key)} parameter, expected a boolean, got ${quote(parameters![key])}`);
  }
}

/** `parameters` without the `keys` (the wire's business, not the model's); undefined when nothing is left. */
export function withoutParameters(parameters: Parameters | undefined, keys: readonly string[]): Parameters | undefined {
  if (!parameters) return undefined;
  const rest: Parameters = {};
  let kept = 0;
  for (const key in parameters) {
    if (keys.includes(key)) continue;
    rest[key] = parameters[key];
    kept++;
  }
  return kept ? rest : undefined;
}

export interface InferInput extends Tensor {
  name: string;
  parameters?: Parameters;
}

export interface RequestedOutput {
  name: string;
  /** Triton's classification extension: answer the top N classes as "score:index:label". */
  classCount?: number;
  parameters?: Parameters;
}

/** Triton's clients ask for classification with the output parameter `classification`; `class_count` (their argument's name) is accepted too. */
export function requestedOutputOf(name: string, parameters: Parameters | undefined): RequestedOutput {
  const key = parameters?.classification !== undefined ? 'classification' : 'class_count';
  const classCount = parameters?.[key];
  if (classCount !== undefined && typeof classCount !== 'number') {
    throw invalidArgument(`output ${quoteName(name)}: ${key} must be a number (the classes to answer), got ${quote(classCount)}`);
  }
  return { name, classCount: classCount === 0 ? undefined : classCount, parameters };
}

/**
 * What hears a cancellation: a function, or an object whose handleEvent is called (as EventTarget takes). A queued
 * request listens as itself, so that queuing it allocates no closure.
 */
export type AbortListener = (() => void) | { handleEvent(): void };

/**
 * What the core needs of an AbortSignal: whether it fired, and a way to hear when it does. An
 * AbortSignal is one; ClientCancellation is a cheaper one for the per-request hot path.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: AbortListener, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: AbortListener): void;
}

/** A CancelSignal without EventTarget's cost: creating an AbortController per request shows in profiles. */
export class ClientCancellation implements CancelSignal {
  aborted = false;
  private readonly listeners: AbortListener[] = [];

  addEventListener(_type: 'abort', listener: AbortListener): void {
    if (this.aborted) hear(listener);
    else this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: AbortListener): void {
    const index = this.listeners.indexOf(listener);
    if (index >= 0) this.listeners.splice(index, 1);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const listener of this.listeners.splice(0)) hear(listener);
  }
}

function hear(listener: AbortListener): void {
  if (typeof listener === 'function') listener();
  else listener.handleEvent();
}

export interface InferenceRequest {
  model: string;
  /** Empty or undefined: the version the policy makes current (the highest ready one). */
  version?: string;
  id?: string;
  parameters?: Parameters;
  inputs: InferInput[];
  /** Undefined: every output of the model. */
  outputs?: RequestedOutput[];
}

/** What travels beside a request without being part of it: who asked, how to call it off, until when. */
export interface RequestContext {
  /** Aborted when the client goes away, so queued work can be dropped. */
  signal?: CancelSignal;
  /**
   * The transport's request id (the client's `x-request-id`, else generated), which the front end's
   * log lines carry; observers fall back to it when the V2 `id` is absent. Never echoed as `id`.
   */
  requestId?: string;
  /**
   * The request is a list of parts, one per row (a multipart form's files): its rows are named `<id>/<row>` for
   * labels fed back even when it holds one, as its answer is a list. Otherwise a one-row request is named `<id>`.
   */
  rowsArePartsOfList?: boolean;
  /** W3C trace context from the client (HTTP header or gRPC metadata `traceparent`), for tracing. */
  traceparent?: string;
  /** performance.now() milliseconds after which the client no longer waits (a gRPC deadline): queued work is dropped. */
  deadline?: number;
  /**
   * Waits its turn however long the queue ahead: no refusal for the expected wait (the server's
   * max queue wait), though its deadline, its queue timeout and the queue's size still apply. Set on
   * a handler's context.infer calls and on the images of a request that holds several: their
   * request was weighed once when its model admitted it, and a request that fans out (the OCR
   * pipeline's lines, a form of photos) would otherwise see its own parts as a backlog and refuse itself.
   */
  patient?: boolean;
  /** Written by the model once it has answered: rows its out-of-distribution detector scored and flagged, for the front end's access log. */
  ood?: { checked: number; flagged: number };
  /**
   * Run on the answer before the request's outcome is counted (the gRPC front end encodes it there): an answer it
   * cannot send (larger than the send limit) throws, and the request is counted as a failure, not a success.
   */
  prepareAnswer?: (response: InferenceResponse) => unknown;
}

export interface InferOutput extends Tensor {
  name: string;
  parameters?: Parameters;
}

export interface InferenceResponse {
  model: string;
  version: string;
  id?: string;
  parameters?: Parameters;
  outputs: InferOutput[];
  /** Where the request's time went; for in-process callers (jobs, tools), never sent on the wire. */
  timings?: RequestTimings;
  /**
   * The class names of the answered outputs whose config names a label_filename, by output name, in index order: the
   * version that answered read them, so a caller in process (a handler's context.inferResponse) decodes with the
   * labels of the model it called. Never sent on the wire (a V2 client asks for classification instead).
   */
  labels?: Record<string, readonly string[]>;
}
