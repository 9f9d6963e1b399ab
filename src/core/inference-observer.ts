/**
 * The named points where cross-cutting services (statistics, metrics, tracing, cost) watch the
 * path of a request without the path knowing them: a request ends, a batch executes.
 */
import type { ErrorCode } from './errors.js';
import type { ExecutionTimings, RequestTimings } from './timings.js';

export interface RequestRecord {
  /** Inferences the request carried (its batch rows, at least 1). */
  rows: number;
  success: boolean;
  errorCode?: ErrorCode;
  /** Why it failed, as logs may carry it (without tensor data a client's message may quote: loggedMessage). */
  errorReason?: string;
  /** The request was answered by the model but its answer could not be sent (RequestContext.prepareAnswer failed). */
  unsent?: boolean;
  totalNs: number;
  /** Phase timings, for a request that reached the scheduler. */
  timings?: RequestTimings;
  requestId?: string;
  /** Response cache outcome, when the model's cache is on: lookup (and, on a miss, insert) time. */
  cache?: { hit: boolean; ns: number };
  /** Rows the version's out-of-distribution detector scored, and how many it flagged (versions with a reference profile). */
  ood?: { checked: number; flagged: number };
  /** Wall-clock start, milliseconds since the epoch (span start times). */
  startedAt: number;
  /** The client's W3C trace context: the request's span is its child. */
  traceparent?: string;
}

export interface ExecutionRecord {
  batchSize: number;
  timings: ExecutionTimings;
  /** Threads the executing instance computes with (for compute-seconds). */
  threads: number;
  /**
   * A handler refused every request of the batch: its time is still cost, but the batch counts as no execution, as a run
   * that fails counts as none (Triton counts only batches that produced an answer). Counted as one, a model whose
   * requests are refused showed fewer inferences than executions ("mean batch 0.7").
   */
  answeredNone?: true;
}

export interface ExecutionObserver {
  onExecution(record: ExecutionRecord): void;
}

export interface InferenceObserver extends ExecutionObserver {
  onRequestStart?(): void;
  /**
   * Called as a request starts, by an observer that traces requests: the W3C traceparent of the
   * span it starts for this one, so that work done on its behalf (an ensemble's steps, a handler's
   * context.infer calls) joins the trace as its children. Undefined when it is not traced; the
   * span is ended by onRequestEnd with the same record.
   */
  traceStart?(record: RequestRecord): string | undefined;
  onRequestEnd(record: RequestRecord): void;
}

/** Makes the observer of one model version; the server's metrics, for example, label by model and version. */
export type InferenceObserverFactory = (model: string, version: string) => InferenceObserver;

/** Where an observer's own failure is reported (a pino Logger fits). */
export interface ObserverFailureLog {
  error(details: { err: unknown; hook: string }, message: string): void;
}

const CONSOLE_LOG: ObserverFailureLog = { error: (details, message) => console.error(message, details.err) };

/**
 * Fans one event out to several observers. An observer that throws is logged and skipped: watching
 * a request must never fail it, turn its success into a failure or keep the other observers from
 * seeing it.
 */
export class ObserverGroup implements InferenceObserver {
  constructor(
    private readonly observers: readonly InferenceObserver[],
    private readonly log: ObserverFailureLog = CONSOLE_LOG,
  ) {
    this.tracers = observers.filter((observer) => observer.traceStart !== undefined);
  }

  /** Most groups hold none: a request that is not traced costs one empty loop. */
  private readonly tracers: readonly InferenceObserver[];

  onRequestStart(): void {
    this.each('onRequestStart', (observer) => observer.onRequestStart?.());
  }

  /** Every tracing observer starts its span; the work done for the request carries the first one's context. */
  traceStart(record: RequestRecord): string | undefined {
    let spanTraceparent: string | undefined;
    for (const observer of this.tracers) {
      try {
        const own = observer.traceStart!(record);
        spanTraceparent ??= own;
      } catch (error) {
        this.failed('traceStart', error);
      }
    }
    return spanTraceparent;
  }

  onRequestEnd(record: RequestRecord): void {
    this.each('onRequestEnd', (observer) => observer.onRequestEnd(record));
  }

  onExecution(record: ExecutionRecord): void {
    this.each('onExecution', (observer) => observer.onExecution(record));
  }

  private each(hook: string, call: (observer: InferenceObserver) => void): void {
    for (const observer of this.observers) {
      try {
        call(observer);
      } catch (error) {
        this.failed(hook, error);
      }
    }
  }

  private failed(hook: string, error: unknown): void {
    this.log.error({ err: error, hook }, `an inference observer failed in ${hook} (the request is unaffected): ${(error as Error)?.message ?? String(error)}`);
  }
}
