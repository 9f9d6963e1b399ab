/**
 * The scheduler of one model version: priority queues with Triton's queue policies, and a dynamic
 * batcher that joins queued requests into batches for whichever instance is free. With batching
 * off it is Triton's default scheduler: one request per execution, first come first served.
 */
import type { BackendInstance } from '../backends/backend.js';
import { NereidError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { ExecutionObserver } from '../core/inference-observer.js';
import type { RequestTimings } from '../core/timings.js';
import { concatRows, sameRowShape, sliceRows } from './batch-tensors.js';
import type { ScheduledRequest, ScheduledResult, Scheduler } from './scheduler.js';

export interface QueuePolicy {
  /** 0: no limit of its own (the scheduler's hard cap still applies). */
  maxQueueSize: number;
  /** 0: requests never time out in the queue. */
  defaultTimeoutMicroseconds: number;
  timeoutAction: 'REJECT' | 'DELAY';
  allowTimeoutOverride: boolean;
}

export interface BatcherPolicy {
  /** Rows one execution may hold; 0 runs each request on its own. */
  maxBatchSize: number;
  preferredBatchSizes: readonly number[];
  maxQueueDelayMicroseconds: number;
  preserveOrdering: boolean;
  /** 0: a single queue. Otherwise levels 1 (highest) to priorityLevels. */
  priorityLevels: number;
  defaultPriorityLevel: number;
  defaultQueuePolicy: QueuePolicy;
  /** Overrides per priority level. */
  priorityQueuePolicies?: ReadonlyMap<number, QueuePolicy>;
  /** Hard cap on requests waiting across all levels, so the queue is never unbounded. */
  maxQueuedRequests: number;
}

export const UNBATCHED_POLICY: Omit<BatcherPolicy, 'maxQueuedRequests'> = {
  maxBatchSize: 0,
  preferredBatchSizes: [],
  maxQueueDelayMicroseconds: 0,
  preserveOrdering: false,
  priorityLevels: 0,
  defaultPriorityLevel: 0,
  defaultQueuePolicy: { maxQueueSize: 0, defaultTimeoutMicroseconds: 0, timeoutAction: 'REJECT', allowTimeoutOverride: false },
};

interface Pending {
  request: ScheduledRequest;
  rows: number;
  level: number;
  sequence: number;
  enqueuedAt: number; // performance.now() milliseconds
  delayed: boolean;
  timer?: NodeJS.Timeout;
  onAbort?: () => void;
  resolve: (result: ScheduledResult) => void;
  reject: (error: Error) => void;
}

const now = () => performance.now();
const msToNs = (ms: number) => ms * 1e6;
/** setTimeout holds at most 2^31-1 ms (about 24.8 days); a longer delay would fire after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class DynamicBatcher implements Scheduler {
  private readonly idle: BackendInstance[];
  /** One queue per priority level (index 0 is level 1, the highest), and per level the requests delayed by a timeout. */
  private readonly queues: Pending[][];
  private readonly delayedQueues: Pending[][];
  private readonly running = new Set<Promise<void>>();
  private queuedCount = 0;
  private nextSequence = 0;
  private nextToDeliver = 0;
  private readonly undelivered = new Map<number, () => void>();
  private delayTimer?: NodeJS.Timeout;
  private delayDeadline = 0;
  private stopped = false;

  constructor(
    instances: readonly BackendInstance[],
    private readonly policy: BatcherPolicy,
    private readonly observer: ExecutionObserver,
    private readonly label: string,
  ) {
    this.idle = [...instances];
    const levels = Math.max(1, policy.priorityLevels);
    this.queues = Array.from({ length: levels }, () => []);
    this.delayedQueues = Array.from({ length: levels }, () => []);
  }

  get queued(): number {
    return this.queuedCount;
  }

  private queuePolicy(level: number): QueuePolicy {
    return this.policy.priorityQueuePolicies?.get(level + 1) ?? this.policy.defaultQueuePolicy;
  }

  private levelOf(priority: number | undefined): number {
    const levels = this.policy.priorityLevels;
    if (levels === 0) return 0;
    const chosen = !priority ? this.policy.defaultPriorityLevel || levels : priority;
    if (!Number.isInteger(chosen) || chosen < 1 || chosen > levels) {
      throw new NereidError('INVALID_ARGUMENT', `${this.label}: priority must be 1 (highest) to ${levels}, got ${priority}`);
    }
    return chosen - 1;
  }

  /** A request may shorten the queue timeout (never lengthen it) only where the policy allows it, as in Triton. */
  private timeoutMicroseconds(policy: QueuePolicy, requested: number | undefined): number {
    const fallback = policy.defaultTimeoutMicroseconds;
    if (requested === undefined || !policy.allowTimeoutOverride) return fallback;
    if (!Number.isInteger(requested) || requested < 0) {
      throw new NereidError('INVALID_ARGUMENT', `${this.label}: timeout must be a non-negative integer of microseconds, got ${requested}`);
    }
    if (requested === 0) return fallback;
    return fallback === 0 ? requested : Math.min(requested, fallback);
  }

  /** Checks a request's scheduling parameters (priority, timeout) without queueing it. */
  validate(request: Pick<ScheduledRequest, 'priority' | 'timeoutMicroseconds'>): void {
    this.timeoutMicroseconds(this.queuePolicy(this.levelOf(request.priority)), request.timeoutMicroseconds);
  }

  schedule(request: ScheduledRequest): Promise<ScheduledResult> {
    try {
      if (this.stopped) throw new NereidError('UNAVAILABLE', `${this.label} is unloading`);
      if (request.signal?.aborted) throw new NereidError('CANCELLED', 'request cancelled by the client');
      const level = this.levelOf(request.priority);
      const policy = this.queuePolicy(level);
      const levelQueued = this.queues[level].length + this.delayedQueues[level].length;
      if (this.queuedCount >= this.policy.maxQueuedRequests || (policy.maxQueueSize > 0 && levelQueued >= policy.maxQueueSize)) {
        const limit = policy.maxQueueSize > 0 ? Math.min(policy.maxQueueSize, this.policy.maxQueuedRequests) : this.policy.maxQueuedRequests;
        throw new NereidError('UNAVAILABLE', `${this.label}: the queue is full (${limit} requests waiting); retry later`);
      }
      const timeout = this.timeoutMicroseconds(policy, request.timeoutMicroseconds);
      return new Promise((resolve, reject) => {
        const pending: Pending = {
          request,
          rows: Math.max(1, request.batchSize),
          level,
          sequence: this.nextSequence++,
          enqueuedAt: now(),
          delayed: false,
          resolve,
          reject,
        };
        if (request.signal) {
          pending.onAbort = () => this.dropQueued(pending, new NereidError('CANCELLED', 'request cancelled by the client'));
          request.signal.addEventListener('abort', pending.onAbort, { once: true });
        }
        if (timeout > 0) this.armTimeout(pending, policy, timeout, timeout / 1000);
        this.queues[level].push(pending);
        this.queuedCount += 1;
        this.dispatch();
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Waits out a queue timeout in steps setTimeout can hold. */
  private armTimeout(pending: Pending, policy: QueuePolicy, timeout: number, remainingMs: number): void {
    const step = Math.min(remainingMs, MAX_TIMER_MS);
    pending.timer = setTimeout(
      () => (remainingMs > step ? this.armTimeout(pending, policy, timeout, remainingMs - step) : this.expire(pending, policy, timeout)),
      step,
    );
  }

  private expire(pending: Pending, policy: QueuePolicy, timeout: number): void {
    pending.timer = undefined;
    if (policy.timeoutAction === 'DELAY') {
      const queue = this.queues[pending.level];
      const index = queue.indexOf(pending);
      if (index < 0) return;
      queue.splice(index, 1);
      pending.delayed = true;
      this.delayedQueues[pending.level].push(pending);
      return;
    }
    this.dropQueued(pending, new NereidError('UNAVAILABLE', `${this.label}: request timeout expired after ${timeout} us in the queue`));
  }

  /** Removes a request that has not started; one already running is left to finish. */
  private dropQueued(pending: Pending, error: NereidError): void {
    const queue = pending.delayed ? this.delayedQueues[pending.level] : this.queues[pending.level];
    const index = queue.indexOf(pending);
    if (index < 0) return;
    queue.splice(index, 1);
    this.queuedCount -= 1;
    this.detach(pending);
    this.deliver(pending, () => pending.reject(error));
    this.dispatch(); // the request behind it may now be able to go
  }

  private detach(pending: Pending): void {
    if (pending.timer) clearTimeout(pending.timer);
    pending.timer = undefined;
    if (pending.onAbort) pending.request.signal!.removeEventListener('abort', pending.onAbort);
  }

  /** With preserve_ordering, answers leave in the order requests arrived. */
  private deliver(pending: Pending, settle: () => void): void {
    if (!this.policy.preserveOrdering) return settle();
    this.undelivered.set(pending.sequence, settle);
    for (let next = this.undelivered.get(this.nextToDeliver); next; next = this.undelivered.get(this.nextToDeliver)) {
      this.undelivered.delete(this.nextToDeliver);
      this.nextToDeliver += 1;
      next();
    }
  }

  /** Priority order; within a level, requests whose timeout expired under DELAY come after the rest of that level, as in Triton. */
  private *inOrder(): Generator<Pending> {
    for (let level = 0; level < this.queues.length; level++) {
      yield* this.queues[level];
      yield* this.delayedQueues[level];
    }
  }

  /** Picks the next batch, or nothing when it is better to wait for more requests to join. */
  private nextBatch(): Pending[] | undefined {
    const { maxBatchSize, maxQueueDelayMicroseconds, preferredBatchSizes } = this.policy;
    const order = this.inOrder();
    const first = order.next().value as Pending | undefined;
    if (!first) return undefined;
    if (maxBatchSize === 0) return [first];
    const batch = [first];
    let rows = first.rows;
    let closed = false; // nothing more can join this batch, so waiting would only add latency
    for (const candidate of order) {
      if (rows + candidate.rows > maxBatchSize || !sameRowShape(first.request.inputs, candidate.request.inputs)) {
        closed = true;
        break;
      }
      batch.push(candidate);
      rows += candidate.rows;
    }
    if (rows >= maxBatchSize) closed = true;
    const largestPreferred = preferredBatchSizes.length ? Math.max(...preferredBatchSizes) : 0;
    const waitedMicroseconds = (now() - first.enqueuedAt) * 1000;
    const delayOver = this.stopped || waitedMicroseconds >= maxQueueDelayMicroseconds;
    if (!closed && !delayOver && !(largestPreferred > 0 && rows >= largestPreferred)) {
      this.wakeAfter(maxQueueDelayMicroseconds - waitedMicroseconds);
      return undefined;
    }
    // Prefer the largest preferred size the queued requests fill exactly.
    if (preferredBatchSizes.length && !preferredBatchSizes.includes(rows)) {
      let cumulative = 0;
      let cut = 0;
      batch.forEach((pending, index) => {
        cumulative += pending.rows;
        if (preferredBatchSizes.includes(cumulative)) cut = index + 1;
      });
      if (cut > 0) return batch.slice(0, cut);
    }
    return batch;
  }

  /** Wakes the dispatcher when the head of the queue has waited long enough; an earlier deadline replaces a later one. */
  private wakeAfter(microseconds: number): void {
    const delayMs = Math.min(MAX_TIMER_MS, Math.max(0, microseconds / 1000));
    const deadline = now() + delayMs;
    if (this.delayTimer && this.delayDeadline <= deadline) return;
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayDeadline = deadline;
    this.delayTimer = setTimeout(() => {
      this.delayTimer = undefined;
      this.dispatch();
    }, delayMs);
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queuedCount > 0) {
      const batch = this.nextBatch();
      if (!batch) return;
      for (const pending of batch) {
        const queue = pending.delayed ? this.delayedQueues[pending.level] : this.queues[pending.level];
        queue.splice(queue.indexOf(pending), 1);
        this.detach(pending);
      }
      this.queuedCount -= batch.length;
      if (this.queuedCount === 0 && this.delayTimer) {
        clearTimeout(this.delayTimer);
        this.delayTimer = undefined;
      }
      const instance = this.idle.pop()!;
      const execution = this.execute(instance, batch).finally(() => {
        this.running.delete(execution);
        this.idle.push(instance);
        this.dispatch();
      });
      this.running.add(execution);
    }
  }

  private async execute(instance: BackendInstance, batch: Pending[]): Promise<void> {
    const started = now();
    const batched = this.policy.maxBatchSize > 0;
    try {
      const inputs: Record<string, Tensor> =
        batch.length === 1
          ? batch[0].request.inputs
          : Object.fromEntries(
              Object.keys(batch[0].request.inputs).map((name) => [name, concatRows(batch.map((p) => p.request.inputs[name]))]),
            );
      const outputNames = [...new Set(batch.flatMap((pending) => pending.request.outputNames))];
      const inputReady = now();
      const outputs = await instance.run(inputs, outputNames);
      const inferred = now();
      const totalRows = batch.reduce((sum, pending) => sum + pending.rows, 0);
      const results: Record<string, Tensor>[] = [];
      if (batch.length === 1) {
        results.push(outputs);
      } else {
        for (const [name, tensor] of Object.entries(outputs)) {
          if (tensor.shape[0] !== totalRows) {
            throw new Error(`output '${name}' has ${tensor.shape[0]} rows for a batch of ${totalRows}; the model does not keep the batch dimension`);
          }
        }
        let row = 0;
        for (const pending of batch) {
          results.push(
            Object.fromEntries(pending.request.outputNames.map((name) => [name, sliceRows(outputs[name], row, pending.rows)])),
          );
          row += pending.rows;
        }
      }
      const finished = now();
      const execution = {
        computeInputNs: msToNs(inputReady - started),
        computeInferNs: msToNs(inferred - inputReady),
        computeOutputNs: msToNs(finished - inferred),
      };
      this.observer.onExecution({ batchSize: batched ? totalRows : 1, timings: execution, threads: instance.threads });
      batch.forEach((pending, index) => {
        const timings: RequestTimings = { queueNs: msToNs(started - pending.enqueuedAt), ...execution };
        this.deliver(pending, () => pending.resolve({ outputs: results[index], timings }));
      });
    } catch (error) {
      const failure =
        error instanceof NereidError ? error : new NereidError('INTERNAL', `${this.label}: ${(error as Error).message}`);
      for (const pending of batch) this.deliver(pending, () => pending.reject(failure));
    }
  }

  /**
   * Accepts nothing new and finishes what was accepted, as Triton does on unload: queued requests
   * run at once (no more waiting for company), and the promise settles when all have answered.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    this.dispatch();
    while (this.running.size > 0) await Promise.allSettled(this.running);
  }
}
