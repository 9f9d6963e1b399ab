/**
 * A scheduler owns time for one model version: it queues requests, decides what runs together
 * and on which instance, and enforces queue limits. It knows nothing of wire formats.
 */
import type { CancelSignal } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { RequestTimings } from '../core/timings.js';

export interface ScheduledRequest {
  inputs: Record<string, Tensor>;
  /** Rows along the batch dimension; 0 for models without one. */
  batchSize: number;
  outputNames: readonly string[];
  /** Priority level, 1 the highest; undefined or 0 for the model's default. */
  priority?: number;
  /** Queue timeout asked for by the request, in microseconds (honoured only where the queue policy allows). */
  timeoutMicroseconds?: number;
  /** Aborted when the client goes away: a queued request is then dropped, never executed. */
  signal?: CancelSignal;
}

export interface ScheduledResult {
  outputs: Record<string, Tensor>;
  timings: RequestTimings;
}

export interface Scheduler {
  schedule(request: ScheduledRequest): Promise<ScheduledResult>;
  /** Throws what schedule() would for the request's scheduling parameters, before any work is done for it. */
  validate(request: Pick<ScheduledRequest, 'priority' | 'timeoutMicroseconds'>): void;
  /** Requests waiting for an instance. */
  readonly queued: number;
  /** Rejects what is still queued and waits for running work to finish. */
  stop(): Promise<void>;
}
