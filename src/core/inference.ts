/**
 * The one internal request and response that every front end (HTTP, gRPC, batch jobs, the
 * library API) translates to and from.
 */
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
