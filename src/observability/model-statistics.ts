/**
 * The one aggregator of a model version's events, in the shape of Triton's statistics extension:
 * request outcomes and where their time went, per executed batch size what the executions cost,
 * and what the metrics read at scrape time (requests in flight, failures by reason, core-seconds).
 * Each event is counted here once; Prometheus keeps only its histograms.
 */
import type { ErrorCode } from '../core/errors.js';
import type { ExecutionRecord, InferenceObserver, RequestRecord } from '../core/inference-observer.js';
import type { ExecutionTimings, RequestTimings } from '../core/timings.js';
import { costSummary, executionCoreSeconds } from './cost.js';

export interface Duration {
  count: number;
  ns: number;
}

const zero = (): Duration => ({ count: 0, ns: 0 });

function add(duration: Duration, ns: number): void {
  duration.count += 1;
  duration.ns += Math.round(ns);
}

export class ModelStatistics implements InferenceObserver {
  /**
   * When these counters started (ms since the epoch): the version's first load, since its reloads keep counting. Two
   * readings with the same value count from the same start; another value means the counts started again from 0 (the
   * version left the model and came back), which a count that grew since cannot tell.
   */
  readonly countingSince = Date.now();
  lastInference = 0;
  /** Rows computed for successful requests; as in Triton, cache hits are not counted (see cachedRows). */
  inferenceCount = 0;
  /** Rows answered from the response cache. */
  cachedRows = 0;
  executionCount = 0;
  readonly success = zero();
  readonly fail = zero();
  readonly queue = zero();
  readonly computeInput = zero();
  readonly computeInfer = zero();
  readonly computeOutput = zero();
  readonly preprocess = zero();
  readonly postprocess = zero();
  readonly cacheHit = zero();
  readonly cacheMiss = zero();
  readonly batches = new Map<number, { computeInput: Duration; computeInfer: Duration; computeOutput: Duration }>();
  /** Core-seconds the executions used (compute_infer time × instance threads), for cost per prediction; an ensemble's: its steps' shares. */
  computeSeconds = 0;
  /** How long loading this version took (set by the repository), for the load-time metric. */
  loadNs?: number;
  /** Requests inside the model now (validation to answer). */
  inFlight = 0;
  /** Failed requests by error code. */
  readonly failures = new Map<ErrorCode, number>();
  /** Of those, the requests whose answer could not be sent (larger than the gRPC send limit), by error code. */
  readonly unsent = new Map<ErrorCode, number>();
  /** Rows the out-of-distribution detector scored, and those it flagged. */
  oodChecked = 0;
  oodFlagged = 0;

  constructor(
    readonly name: string,
    readonly version: string,
  ) {}

  onExecution(record: ExecutionRecord): void {
    if (!record.answeredNone) this.recordExecution(record.batchSize, record.timings);
    // A handler pipeline's cost is its own compute and what the models it called computed for it, as an ensemble's is its steps'.
    this.computeSeconds += executionCoreSeconds(record.timings, record.threads);
  }

  onRequestStart(): void {
    this.inFlight += 1;
  }

  onRequestEnd(record: RequestRecord): void {
    this.inFlight -= 1;
    if (record.cache) add(record.cache.hit ? this.cacheHit : this.cacheMiss, record.cache.ns);
    if (record.ood) {
      this.oodChecked += record.ood.checked;
      this.oodFlagged += record.ood.flagged;
    }
    if (!record.success) {
      const code = record.errorCode ?? 'INTERNAL';
      this.failures.set(code, (this.failures.get(code) ?? 0) + 1);
      if (record.unsent) this.unsent.set(code, (this.unsent.get(code) ?? 0) + 1);
      return this.recordFailure(record.totalNs);
    }
    if (record.cache?.hit) {
      // As Triton's statistics say: a hit is a success and passes the queue (in no time), but is no inference or execution.
      this.cachedRows += record.rows;
      this.lastInference = Date.now();
      add(this.success, record.totalNs);
      add(this.queue, 0);
    } else if (record.timings) {
      this.recordSuccess(record.rows, record.totalNs, record.timings);
      // An ensemble executes nothing itself: what its requests cost is its steps' shares of their executions.
      if (record.timings.steps) this.computeSeconds += record.timings.coreSeconds ?? 0;
    }
  }

  recordExecution(batchSize: number, timings: ExecutionTimings): void {
    this.executionCount += 1;
    let batch = this.batches.get(batchSize);
    if (!batch) {
      batch = { computeInput: zero(), computeInfer: zero(), computeOutput: zero() };
      this.batches.set(batchSize, batch);
    }
    add(batch.computeInput, timings.computeInputNs);
    add(batch.computeInfer, timings.computeInferNs);
    add(batch.computeOutput, timings.computeOutputNs);
  }

  /** A request answered successfully; `rows` is how many inferences it carried (its batch size, at least 1). */
  recordSuccess(rows: number, totalNs: number, timings: RequestTimings): void {
    this.inferenceCount += rows;
    this.lastInference = Date.now();
    add(this.success, totalNs);
    add(this.queue, timings.queueNs);
    add(this.computeInput, timings.computeInputNs);
    add(this.computeInfer, timings.computeInferNs);
    add(this.computeOutput, timings.computeOutputNs);
    if (timings.preprocessNs !== undefined) add(this.preprocess, timings.preprocessNs);
    if (timings.postprocessNs !== undefined) add(this.postprocess, timings.postprocessNs);
  }

  recordFailure(totalNs: number): void {
    this.lastInference = Date.now();
    add(this.fail, totalNs);
  }

  /**
   * Triton's JSON form of one model_stats entry, plus Nereid's `cost` (priced when `usdPerCoreHour`
   * is given) and `counting_since`. JSON.stringify passes a key string here, which prices nothing.
   */
  toJSON(pricing: { usdPerCoreHour?: number } | string = {}) {
    const usdPerCoreHour = typeof pricing === 'string' ? undefined : pricing.usdPerCoreHour;
    return {
      name: this.name,
      version: this.version,
      last_inference: this.lastInference,
      inference_count: this.inferenceCount,
      execution_count: this.executionCount,
      inference_stats: {
        success: { ...this.success },
        fail: { ...this.fail },
        queue: { ...this.queue },
        compute_input: { ...this.computeInput },
        compute_infer: { ...this.computeInfer },
        compute_output: { ...this.computeOutput },
        // Nereid's phases around the model, beside Triton's: image decoding before, activation after.
        preprocess: { ...this.preprocess },
        postprocess: { ...this.postprocess },
        cache_hit: { ...this.cacheHit },
        cache_miss: { ...this.cacheMiss },
      },
      batch_stats: [...this.batches.entries()]
        .sort(([a], [b]) => a - b)
        .map(([batchSize, batch]) => ({
          batch_size: batchSize,
          compute_input: { ...batch.computeInput },
          compute_infer: { ...batch.computeInfer },
          compute_output: { ...batch.computeOutput },
        })),
      memory_usage: [],
      cost: costSummary(this.computeSeconds, this.inferenceCount, usdPerCoreHour),
      counting_since: this.countingSince,
    };
  }
}
