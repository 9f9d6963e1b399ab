/**
 * A scheduler owns time for one model version: it queues requests, decides what runs together
 * and on which instance, and enforces queue limits. It knows nothing of wire formats.
 */
import type { BackendInstance } from '../backends/backend.js';
import { NereidError } from '../core/errors.js';
import type { CancelSignal, Parameters, RequestContext } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { RequestTimings } from '../core/timings.js';
import type { Admission } from './priority-queue.js';
import type { SequenceFlags } from './sequence-control.js';

export interface ScheduledRequest extends Admission {
  inputs: Record<string, Tensor>;
  /** Rows along the batch dimension; 0 for models without one. */
  batchSize: number;
  outputNames: readonly string[];
  /** Aborted when the client goes away: a queued request is then dropped, never executed. */
  signal?: CancelSignal;
  /** The request's parameters, for an instance that answers each request itself (a handler reads them). */
  parameters?: Parameters;
  /** What travelled beside the request (request id, trace parent), for a scheduler that calls other models with it. */
  context?: RequestContext;
  /** For a model with sequence batching: the sequence the request belongs to (its correlation id and START/END flags). */
  sequence?: SequenceFlags;
}

export interface ScheduledResult {
  outputs: Record<string, Tensor>;
  timings: RequestTimings;
  /** Response parameters the work produced beside its outputs: an ensemble's, its monitored step's out-of-distribution verdict. */
  parameters?: Parameters;
}

export interface Scheduler {
  schedule(request: ScheduledRequest): Promise<ScheduledResult>;
  /** Throws what schedule() would for the request's scheduling parameters, before any work is done for it. */
  validate(request: Admission): void;
  /**
   * Throws what schedule() would for the request were it scheduled now: invalid parameters, a full
   * queue (by count or bytes), a wait longer than it may have. Asked before a request's body is read.
   */
  admit(request: Admission): void;
  /** Requests waiting for an instance. */
  readonly queued: number;
  /** Bytes of the inputs of the requests waiting. */
  readonly queuedBytes: number;
  /** Sequences whose state it keeps between their requests: an unload drops them. */
  readonly liveSequences: number;
  /**
   * Requests of the default priority it holds at once, waiting or running, when nothing else is
   * sent to it: a client that keeps no more than this in flight is not refused for a full queue.
   */
  readonly admits: number;
  /**
   * Sends work to `added` from now on and no new work to `removed`; settles once no removed instance runs a batch or
   * holds a live sequence (its caller may then release them). Absent: the scheduler's instances change by a reload.
   */
  changeInstances?(added: readonly BackendInstance[], removed: readonly BackendInstance[]): Promise<void>;
  /** Accepts nothing new, runs what is queued, and settles once every accepted request is answered. */
  stop(): Promise<void>;
}

/**
 * What a scheduler answers, from admit() and schedule(), once stop() was called: the version is unloading, and the
 * request may succeed on the version that serves next (a reload, another policy's choice), so UNAVAILABLE.
 */
export function unloadingError(label: string): NereidError {
  return new NereidError('UNAVAILABLE', `${label} is unloading`);
}
