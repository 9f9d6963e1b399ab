/**
 * The one internal request and response that every front end (HTTP, gRPC, batch jobs, the
 * library API) translates to and from.
 */
import { invalidArgument } from './errors.js';
import type { Tensor } from './tensor.js';

export type ParameterValue = string | number | boolean;
export type Parameters = Record<string, ParameterValue>;

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

/**
 * A requested output from its wire parameters: Triton's classification extension asks for the top
 * `class_count` classes (0 means the plain tensor). Every front end reads it the same way.
 */
/** Triton's clients ask for classification with the output parameter `classification`; `class_count` (their argument's name) is accepted too. */
export function requestedOutputOf(name: string, parameters: Parameters | undefined): RequestedOutput {
  const key = parameters?.classification !== undefined ? 'classification' : 'class_count';
  const classCount = parameters?.[key];
  if (classCount !== undefined && typeof classCount !== 'number') {
    throw invalidArgument(`output '${name}': ${key} must be a number`);
  }
  return { name, classCount: classCount === 0 ? undefined : classCount, parameters };
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
  /** Aborted when the client goes away, so queued work can be dropped. */
  signal?: AbortSignal;
  /** W3C trace context from the client (HTTP header or gRPC metadata `traceparent`), for tracing. */
  traceparent?: string;
  /**
   * The transport's request id (the client's `x-request-id`, else generated), which the front end's
   * log lines carry; observers fall back to it when the V2 `id` is absent. Never echoed as `id`.
   */
  requestId?: string;
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
}
