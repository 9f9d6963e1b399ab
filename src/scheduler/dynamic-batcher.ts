/**
 * The dynamic batcher of one model version: it forms batches from the priority queue for whichever
 * instance is free, and nothing else (the queue owns levels, policies and timeouts). A batch is cut
 * where the model is cheapest per row (learned in BatchCosts), or, when the config names preferred
 * batch sizes, as Triton's GetDynamicBatch: the largest preferred size the queued rows fill goes at
 * once and only the rows past it wait for company. A batch waits for company only while
 * max_queue_delay allows and more rows could still make it cheaper. With a target latency (Nereid's
 * target_latency_us) it holds a batch only while more rows are expected soon and the oldest request
 * can still be answered in time (see batch-hold.ts), max_queue_delay bounding the hold. With
 * batching off it is Triton's default scheduler: one request per execution, first come first served.
 */
import { COMPUTE_NS, type BackendInstance, type RequestAnswers, type RunOutputs } from '../backends/backend.js';
import { asNereidError, cancelled, NereidError } from '../core/errors.js';
import type { ExecutionObserver } from '../core/inference-observer.js';
import type { Tensor } from '../core/tensor.js';
import type { ExecutionTimings } from '../core/timings.js';
import { executionCoreSeconds } from '../observability/cost.js';
import { bytesOf, concatRows, sameRowShape, sliceRows, type RaggedBatching, type SequencePadding } from './batch-tensors.js';
import { ArrivalRate } from './arrival-rate.js';
import { BatchCosts } from './batch-costs.js';
import { holdBatchUntil } from './batch-hold.js';
import { DrainRate } from './drain-rate.js';
import { NO_QUEUE_POLICY, PriorityQueue, type Admission, type PriorityQueueOptions, type QueueEntry } from './priority-queue.js';
import { unloadingError, type ScheduledRequest, type ScheduledResult, type Scheduler } from './scheduler.js';
import { WaitingRequest, type WaitingQueue } from './waiting-request.js';

export { NO_QUEUE_POLICY, type QueuePolicy } from './priority-queue.js';

/** What bounds a version's queue, from the server's options: count, bytes and the wait a request may expect. */
export type QueueLimits = Pick<PriorityQueueOptions, 'maxQueuedRequests' | 'maxQueuedRequestsSetting' | 'maxQueuedBytes' | 'maxQueueWaitMs'>;

export interface BatcherPolicy extends Omit<PriorityQueueOptions, 'label' | 'drainRate'> {
  /** Rows one execution may hold; 0 runs each request on its own. */
  maxBatchSize: number;
  preferredBatchSizes: readonly number[];
  maxQueueDelayMicroseconds: number;
  preserveOrdering: boolean;
  /**
   * Cut batches where the measured cost per row is lowest, and stop waiting for company once more
   * rows would not make a batch cheaper (default true). Off: batches fill up to max_batch_size.
   */
  cutAtCheapest?: boolean;
  /**
   * Latency-aware batching: hold a batch for more rows only while its oldest request can still be
   * answered within this many µs (or its own timeout or deadline, when sooner) and rows are arriving
   * fast enough to fill it; maxQueueDelayMicroseconds then bounds the hold (0: no bound). 0 or
   * absent: wait a fixed maxQueueDelayMicroseconds.
   */
  targetLatencyMicroseconds?: number;
  /** Ragged inputs and batch inputs (Triton's ragged batching): every batch, even of one request, is assembled by it. */
  ragged?: RaggedBatching;
  /** Inputs padded to the batch's longest (Nereid's pad_value): requests of different lengths batch together. */
  padding?: SequencePadding;
}

export const UNBATCHED_POLICY: Omit<BatcherPolicy, keyof QueueLimits> = {
  maxBatchSize: 0,
  preferredBatchSizes: [],
  maxQueueDelayMicroseconds: 0,
  preserveOrdering: false,
  priorityLevels: 0,
  defaultPriorityLevel: 0,
  defaultQueuePolicy: NO_QUEUE_POLICY,
};

/** A queued request of the dynamic batcher. */
class Pending extends WaitingRequest {
  sequence = 0;
  entry: QueueEntry<Pending> | undefined = undefined;

  constructor(
    batcher: DynamicBatcher,
    request: ScheduledRequest,
    readonly rows: number,
    resolve: (result: ScheduledResult) => void,
    reject: (error: Error) => void,
  ) {
    super(batcher, request, resolve, reject);
  }
}

const now = () => performance.now();
const msToNs = (ms: number) => ms * 1e6;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Input elements of a batch, the unit BatchCosts learns in. */
function elementsOf(inputs: Record<string, Tensor>): number {
  let elements = 0;
  for (const name in inputs) elements += inputs[name].data.length;
  return elements;
}

/** An instance that takes several batches at once is free that many times over. */
function slotsOf(instance: BackendInstance): BackendInstance[] {
  return Array.from({ length: Math.max(1, instance.concurrency ?? 1) }, () => instance);
}

export class DynamicBatcher implements Scheduler, WaitingQueue {
  /** What each batch size costs this model, as measured; the batcher cuts batches by it. */
  readonly costs: BatchCosts;
  /** How fast the queue drains under a backlog; the queue refuses requests it could not answer in time by it. */
  readonly drainRate: DrainRate;
  private readonly idle: BackendInstance[];
  /** Batches that may run at once, over all instances. */
  private slots: number;
  /** Instances taken out (changeInstances) that still run a batch: each is released when its last batch ends. */
  private readonly retiring = new Map<BackendInstance, () => void>();
  private readonly queue: PriorityQueue<Pending>;
  private readonly largestPreferred: number;
  private readonly cutAtCheapest: boolean;
  /** The instances answer each request of a batch apart (runRequests): rows are never joined, so shapes need not match. */
  private readonly requestWise: boolean;
  /** How fast rows arrive; kept only with a target latency, which is all it is for. */
  private readonly arrivals?: ArrivalRate;
  private running = 0;
  /** Rows of the batches running now. */
  private rowsRunning = 0;
  /** Batches each instance holds now. */
  private readonly holding = new Map<BackendInstance, number>();
  private nextSequence = 0;
  private nextToDeliver = 0;
  private readonly undelivered = new Map<number, () => void>();
  private delayTimer?: NodeJS.Timeout;
  private delayDeadline = 0;
  private stopped = false;
  private turnOpen = false;
  /** Requests scheduled in this turn of the event loop, and in the last finished one (1: traffic is light). */
  private turnRequests = 0;
  private lastTurnRequests = Infinity;
  private onIdle?: () => void;

  constructor(
    instances: readonly BackendInstance[],
    private readonly policy: BatcherPolicy,
    private readonly observer: ExecutionObserver,
    private readonly label: string,
  ) {
    this.idle = instances.flatMap(slotsOf);
    this.slots = this.idle.length;
    this.requestWise = instances.length > 0 && instances.every((instance) => instance.runRequests !== undefined);
    this.costs = new BatchCosts(Math.max(1, policy.maxBatchSize));
    this.largestPreferred = policy.preferredBatchSizes.length ? Math.max(...policy.preferredBatchSizes) : 0;
    this.cutAtCheapest = policy.cutAtCheapest ?? true;
    if ((policy.targetLatencyMicroseconds ?? 0) > 0) this.arrivals = new ArrivalRate();
    const rows = Math.max(1, policy.maxBatchSize);
    // Before a backlog is measured: every instance running full batches at the engine's measured speed.
    this.drainRate = new DrainRate(() => (this.slots * rows) / (this.costs.batchNs(rows) / 1e6));
    this.queue = new PriorityQueue<Pending>(
      { ...policy, label, drainRate: this.drainRate, rowsInService: () => this.rowsRunning },
      (entry, error) => this.settleDropped(entry.value, error),
    );
  }

  get queued(): number {
    return this.queue.size;
  }

  get admits(): number {
    return this.queue.defaultLevelCapacity + this.slots * Math.max(1, this.policy.maxBatchSize);
  }

  validate(request: Admission): void {
    this.queue.validate(request);
  }

  admit(request: Admission): void {
    if (this.stopped) throw unloadingError(this.label);
    this.withRoom(() => this.queue.admit(request, now()));
  }

  get queuedBytes(): number {
    return this.queue.bytes;
  }

  readonly liveSequences = 0;

  schedule(request: ScheduledRequest): Promise<ScheduledResult> {
    if (this.stopped) return Promise.reject(unloadingError(this.label));
    const signal = request.signal;
    if (signal?.aborted) return Promise.reject(cancelled());
    return new Promise<ScheduledResult>((resolve, reject) => {
      const pending = new Pending(this, request, Math.max(1, request.batchSize), resolve, reject);
      const admission = {
        priority: request.priority,
        timeoutMicroseconds: request.timeoutMicroseconds,
        deadline: request.deadline,
        rows: pending.rows,
        bytes: bytesOf(request.inputs),
        patient: request.context?.patient,
      };
      pending.entry = this.withRoom(() => this.queue.push(pending, admission, now())); // throws when full: the promise rejects with it
      pending.sequence = this.nextSequence++;
      this.arrivals?.arrived(pending.rows, pending.entry.enqueuedAt);
      pending.listen();
      this.dispatchSoon();
    });
  }

  /**
   * Runs `take` (a queue admission), and when the queue refuses for its load while an instance is
   * idle, first sends what may go now and tries once more. The requests of a turn wait for its end
   * to be batched, but a full queue can take no more of them anyway: the batch that goes now is the
   * one the turn's end would send, and the request behind it is queued instead of refused (Triton's
   * batcher thread takes a batch as soon as it forms, not once the front end is done).
   */
  private withRoom<T>(take: () => T): T {
    try {
      return take();
    } catch (error) {
      if (!(error instanceof NereidError && error.overloaded) || this.idle.length === 0 || this.stopped) throw error;
      const queued = this.queue.size;
      this.dispatch();
      if (this.queue.size === queued) throw error;
      return take();
    }
  }

  /**
   * Dispatches on the event loop's next check phase, once for all the requests scheduled in this
   * turn, so that requests arriving together (one socket read's worth, the records of a job) join
   * one batch. While traffic is light (the last turn brought a single request), the first request
   * of a turn goes at once when an instance is idle: waiting a turn would only add latency.
   */
  private dispatchSoon(): void {
    this.turnRequests += 1;
    if (!this.turnOpen) {
      this.turnOpen = true;
      setImmediate(() => {
        this.turnOpen = false;
        this.lastTurnRequests = this.turnRequests;
        this.turnRequests = 0;
        this.dispatch();
      });
    }
    if (this.turnRequests === 1 && this.lastTurnRequests <= 1 && this.queue.size === 1 && this.idle.length > 0) this.dispatch();
  }

  /** A request the queue gave up on (timeout, deadline, client gone): answered, in order when ordering is preserved. */
  private settleDropped(pending: Pending, error: NereidError): void {
    pending.stopListening();
    this.deliver(pending, () => pending.reject(error));
    this.dispatch(); // the request behind it may now be able to go
  }

  /** A queued request whose client has gone: answered cancelled, its place freed. */
  cancelWaiting(pending: Pending): void {
    if (pending.entry && this.queue.remove(pending.entry)) this.settleDropped(pending, cancelled());
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

  /** Picks the next batch, or nothing when it is better to wait for more requests to join. */
  private nextBatch(): Pending[] | undefined {
    const head = this.queue.first();
    if (!head) return undefined;
    const first = head.value;
    const { maxBatchSize, preferredBatchSizes } = this.policy;
    if (maxBatchSize === 0) return [first];
    const batch = [first];
    const sizes = [first.rows];
    let rows = first.rows;
    let closed = false; // nothing more can join this batch, so waiting would only add latency
    // With preferred sizes, as Triton's batcher: a batch never grows past the largest one while its
    // head is within max_queue_delay; once the head has waited it out, up to max_batch_size rows go.
    const delayExceeded = this.delayExceeded(head);
    const limit =
      this.largestPreferred > 0 && !delayExceeded ? Math.min(maxBatchSize, Math.max(this.largestPreferred, first.rows)) : maxBatchSize;
    for (let entry = this.queue.after(head); entry; entry = this.queue.after(entry)) {
      const candidate = entry.value;
      if (rows + candidate.rows > limit || (!this.requestWise && !sameRowShape(first.request.inputs, candidate.request.inputs, this.policy.ragged?.raggedInputs, this.policy.padding))) {
        closed = true;
        break;
      }
      batch.push(candidate);
      rows += candidate.rows;
      sizes.push(rows);
    }
    // A preferred size reached exactly goes at once: waiting could only make it a size nobody asked for.
    if (rows >= limit || preferredBatchSizes.includes(rows)) closed = true;
    // As Triton's GetDynamicBatch: the largest preferred size the queued rows fill goes now, whatever
    // rows queue past it; only those rows wait for company. Once the head has waited out
    // max_queue_delay, everything queued goes (up to max_batch_size).
    const preferred = preferredBatchSizes.length && !delayExceeded ? this.preferredCut(sizes) : 0;
    if (!closed && !this.stopped && preferred === 0 && this.shouldHold(head, sizes)) return undefined;
    const cut = preferredBatchSizes.length ? preferred || sizes.length : this.cutAtCheapest ? this.costs.choose(this.fairShare(sizes)) + 1 : sizes.length;
    return cut < batch.length ? batch.slice(0, cut) : batch;
  }

  /** Whether the head has waited out max_queue_delay (never, when it is 0: no delay is set). */
  private delayExceeded(head: QueueEntry<Pending>): boolean {
    const delayMicroseconds = this.policy.maxQueueDelayMicroseconds;
    return delayMicroseconds > 0 && (now() - head.enqueuedAt) * 1000 >= delayMicroseconds;
  }

  /**
   * Whether to leave the batch starting at `head` (`sizes`: its cumulative rows) open for company,
   * with a wake-up set for when to look again: a fixed max_queue_delay, or with a target latency,
   * as batch-hold.ts decides.
   */
  private shouldHold(head: QueueEntry<Pending>, sizes: readonly number[]): boolean {
    const { maxQueueDelayMicroseconds, targetLatencyMicroseconds = 0 } = this.policy;
    const clock = now();
    if (this.arrivals) {
      const until = holdBatchUntil({
        nowMs: clock,
        headEnqueuedMs: head.enqueuedAt,
        headDueMs: Math.min(head.enqueuedAt + targetLatencyMicroseconds / 1000, head.dueAt),
        rows: sizes[sizes.length - 1],
        maxRows: this.largestPreferred || this.policy.maxBatchSize,
        holdLimitMs: maxQueueDelayMicroseconds > 0 ? maxQueueDelayMicroseconds / 1000 : Infinity,
        arrivalRowsPerMs: this.arrivals.rowsPerMs(clock),
        costs: this.costs,
      });
      if (until === undefined) return false;
      this.wakeAfter((until - clock) * 1000);
      return true;
    }
    const waitedMicroseconds = (clock - head.enqueuedAt) * 1000;
    if (waitedMicroseconds < maxQueueDelayMicroseconds && this.couldGetCheaper(sizes)) {
      this.wakeAfter(maxQueueDelayMicroseconds - waitedMicroseconds);
      return true;
    }
    return false;
  }

  /**
   * With several instances idle, what is queued is spread over them: one batch takes no more than
   * an even share (the cut that reaches it), so the others run beside it instead of waiting.
   */
  private fairShare(sizes: readonly number[]): readonly number[] {
    const idleInstances = this.idle.length < 2 ? this.idle.length : new Set(this.idle).size;
    if (idleInstances < 2) return sizes;
    const share = Math.ceil(sizes[sizes.length - 1] / idleInstances);
    const reaching = sizes.findIndex((size) => size >= share);
    return sizes.slice(0, reaching + 1);
  }

  /** With preferred sizes configured, the requests that fill the largest one exactly; 0 when none is filled. */
  private preferredCut(sizes: readonly number[]): number {
    for (let index = sizes.length - 1; index >= 0; index--) {
      if (this.policy.preferredBatchSizes.includes(sizes[index])) return index + 1;
    }
    return 0;
  }

  /**
   * Whether waiting for company could give a batch cheaper per row than the cheapest cut of what is
   * queued now (`sizes`, the cumulative rows); pointless otherwise. Judged from the cheapest cut, not
   * from all the rows queued: 6 rows that will be cut to 2 anyway must not wait out the delay.
   */
  private couldGetCheaper(sizes: readonly number[]): boolean {
    if (this.policy.preferredBatchSizes.length || !this.cutAtCheapest) return true;
    let cheapest = sizes[sizes.length - 1];
    for (const size of sizes) if (this.costs.estimate(size) < this.costs.estimate(cheapest)) cheapest = size;
    return this.costs.largerCouldBeCheaper(cheapest);
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
    while (this.idle.length > 0 && this.queue.size > 0) {
      const batch = this.nextBatch();
      if (!batch) break;
      let rows = 0;
      for (const pending of batch) {
        this.queue.remove(pending.entry!);
        pending.stopListening();
        rows += pending.rows;
      }
      this.drainRate.taken(rows, now(), this.queue.size > 0);
      if (this.queue.size === 0 && this.delayTimer) {
        clearTimeout(this.delayTimer);
        this.delayTimer = undefined;
      }
      this.execute(this.idle.pop()!, batch, rows);
    }
  }

  /**
   * Runs a batch on an instance. An instance that computes on this thread answers synchronously:
   * its batch is answered at once, timed exactly, and the instance is idle again when this returns
   * (the dispatch loop goes on with it). Otherwise the answer comes with the promise, and the
   * instance goes back to dispatching then.
   */
  private execute(instance: BackendInstance, batch: Pending[], rows: number): void {
    this.running += 1;
    this.rowsRunning += rows;
    const alone = !this.holding.get(instance);
    this.holding.set(instance, (this.holding.get(instance) ?? 0) + 1);
    const started = now();
    let inputReady = started;
    let elements = 0;
    if (this.requestWise) return this.executeRequests(instance, batch, rows, started, alone);
    let outcome: RunOutputs | Promise<RunOutputs>;
    try {
      ({ elements, inputReady, outcome } = this.runOn(instance, batch));
    } catch (error) {
      if (this.isolates(batch, error)) {
        void this.runApart(instance, batch, alone).then(() => {
          this.release(instance, rows);
          this.dispatch();
        });
        return;
      }
      this.fail(batch, error);
      this.release(instance, rows);
      return;
    }
    const settle = (outputs: RunOutputs) => {
      try {
        this.answer(instance, batch, outputs, rows, elements, started, inputReady, alone);
      } catch (error) {
        this.fail(batch, error); // settles only those not answered yet
      }
    };
    if (!(outcome instanceof Promise)) {
      settle(outcome);
      this.release(instance, rows);
      return;
    }
    outcome
      .then(settle, (error: unknown) => (this.isolates(batch, error) ? this.runApart(instance, batch, alone) : this.fail(batch, error)))
      .then(() => {
        this.release(instance, rows);
        this.dispatch();
      });
  }

  /**
   * Whether a failed batch of several requests is run again in parts: when the engine blamed the inputs (a token id
   * beyond the vocabulary in one request), the others are not to fail with it. Triton fails them all.
   */
  private isolates(batch: readonly Pending[], error: unknown): boolean {
    return batch.length > 1 && error instanceof NereidError && error.code === 'INVALID_ARGUMENT';
  }

  /**
   * A failed batch again, halved, one half after the other on the same instance; a half that fails for its inputs is
   * halved again, down to the request that is to blame, which gets its own error. One bad request among n costs about
   * 2·log2(n) runs (n request by request), and the others still run batched; a batch of bad requests only, 2n − 1.
   */
  private async runApart(instance: BackendInstance, batch: readonly Pending[], alone: boolean): Promise<void> {
    const half = Math.ceil(batch.length / 2);
    for (const halfOf of [batch.slice(0, half), batch.slice(half)]) {
      // A client that has gone (meanwhile, too) is not computed for again.
      const part = halfOf.filter((pending) => {
        if (!pending.request.signal?.aborted) return true;
        this.fail([pending], cancelled());
        return false;
      });
      if (part.length === 0) continue;
      const started = now();
      let elements = 0;
      let outputs: RunOutputs;
      try {
        const run = this.runOn(instance, part);
        elements = run.elements;
        outputs = await run.outcome;
      } catch (error) {
        if (this.isolates(part, error)) await this.runApart(instance, part, alone);
        else this.fail(part, error);
        continue;
      }
      try {
        this.answer(instance, part, outputs, part.reduce((sum, pending) => sum + pending.rows, 0), elements, started, started, alone);
      } catch (error) {
        this.fail(part, error); // settles only those not answered yet
      }
    }
  }

  /**
   * Hands a batch's inputs to an instance: a request alone with its own buffers (a ragged one only reshaped by the join),
   * a joined batch as this scheduler's own, whose buffers the instance may take (a worker's transfer) instead of copying
   * them. `elements` is counted before the run, while the buffers are still here; `inputReady` is when they were.
   */
  private runOn(instance: BackendInstance, batch: readonly Pending[]): { elements: number; inputReady: number; outcome: RunOutputs | Promise<RunOutputs> } {
    const only = batch.length === 1 ? batch[0].request : undefined;
    const inputs = only && !this.policy.ragged ? only.inputs : this.joinInputs(batch);
    const elements = elementsOf(inputs);
    const inputReady = now();
    const outcome = only
      ? instance.run(inputs, only.outputNames)
      : instance.run(inputs, [...new Set(batch.flatMap((pending) => pending.request.outputNames))], { inputsOwned: true });
    return { elements, inputReady, outcome };
  }

  /** Runs a batch on an instance that answers each request apart: one request's error fails that request alone. */
  private executeRequests(instance: BackendInstance, batch: Pending[], rows: number, started: number, alone: boolean): void {
    const requests = batch.map(({ request }) => ({ inputs: request.inputs, outputNames: request.outputNames, parameters: request.parameters, context: request.context }));
    let elements = 0;
    for (const { inputs } of requests) elements += elementsOf(inputs);
    const inputReady = now();
    instance
      .runRequests!(requests)
      .then(
        (outcome) => this.answerEach(batch, outcome, { instance, rows, elements, started, inputReady, alone }),
        (error: unknown) => this.fail(batch, error),
      )
      .catch((error: unknown) => this.fail(batch, error))
      .then(() => {
        this.release(instance, rows);
        this.dispatch();
      });
  }

  /** Each request's own answer or error, with the batch's timings. */
  private answerEach(batch: readonly Pending[], outcome: RequestAnswers, run: { instance: BackendInstance; rows: number; elements: number; started: number; inputReady: number; alone: boolean }): void {
    const { instance, rows, elements, started, inputReady, alone } = run;
    if (outcome.answers.length !== batch.length) throw new Error(`the instance answered ${outcome.answers.length} requests of a batch of ${batch.length}`);
    const outputs: RunOutputs = {};
    outputs[COMPUTE_NS] = outcome.computeNs;
    const answeredNone = outcome.answers.every((answer) => answer instanceof Error);
    const called = { coreSeconds: outcome.calledCoreSeconds, awaitedNs: outcome.awaitedNs };
    const execution = this.executionTimings(instance, outputs, rows, elements, started, inputReady, now(), alone, called, answeredNone);
    const coreSecondsPerRow = executionCoreSeconds(execution, instance.threads) / rows;
    for (let index = 0; index < batch.length; index++) {
      const pending = batch[index];
      const answer = outcome.answers[index];
      if (answer instanceof Error) {
        const failure = asNereidError(answer, this.label);
        this.deliver(pending, () => pending.reject(failure));
        continue;
      }
      const timings = { queueNs: msToNs(started - pending.entry!.enqueuedAt), ...execution, batchRows: rows, coreSeconds: coreSecondsPerRow * pending.rows };
      const result = { outputs: answer, timings };
      this.deliver(pending, () => pending.resolve(result));
    }
  }

  /** The length a batch's padded inputs are filled out to: its longest request's. */
  private paddedLength(padding: SequencePadding, batch: readonly Pending[]): number {
    let length = 0;
    for (const pending of batch) length = Math.max(length, padding.lengthOf(pending.request.inputs));
    return length;
  }

  /** The instance is free for the next batch. */
  private release(instance: BackendInstance, rows: number): void {
    this.running -= 1;
    this.rowsRunning -= rows;
    const holds = this.holding.get(instance)! - 1;
    this.holding.set(instance, holds);
    const retired = this.retiring.get(instance);
    if (!retired) this.idle.push(instance);
    else if (holds === 0) retired();
    if (this.running === 0) this.onIdle?.();
  }

  /**
   * Takes `added` into service and `removed` out of it, the other instances serving on (Triton's instance update):
   * batches go to the added ones from now on, none to the removed ones, and the promise settles once no batch runs on a
   * removed one, which its caller may then release.
   */
  async changeInstances(added: readonly BackendInstance[], removed: readonly BackendInstance[]): Promise<void> {
    const leaving = new Set(removed);
    for (let index = this.idle.length - 1; index >= 0; index--) if (leaving.has(this.idle[index])) this.idle.splice(index, 1);
    const arriving = added.flatMap(slotsOf);
    this.slots += arriving.length - removed.flatMap(slotsOf).length;
    // The rate measured with the instances before says nothing of these: wait estimates start from the costs again.
    this.drainRate.reset();
    this.idle.push(...arriving);
    if (added.length > 0) this.dispatch();
    const busy = removed.filter((instance) => (this.holding.get(instance) ?? 0) > 0);
    await Promise.all(busy.map((instance) => new Promise<void>((resolve) => this.retiring.set(instance, resolve))));
    for (const instance of removed) {
      this.retiring.delete(instance);
      this.holding.delete(instance);
    }
  }

  private joinInputs(batch: readonly Pending[]): Record<string, Tensor> {
    if (this.policy.ragged) return this.policy.ragged.join(batch.map((pending) => ({ inputs: pending.request.inputs, rows: pending.rows })));
    const padding = this.policy.padding;
    if (padding) return padding.join(batch.map((pending) => pending.request.inputs), this.paddedLength(padding, batch));
    const inputs: Record<string, Tensor> = {};
    for (const name of Object.keys(batch[0].request.inputs)) inputs[name] = concatRows(batch.map((pending) => pending.request.inputs[name]));
    return inputs;
  }

  private answer(
    instance: BackendInstance,
    batch: readonly Pending[],
    outputs: RunOutputs,
    rows: number,
    elements: number,
    started: number,
    inputReady: number,
    /** Nothing else was on the instance: the round trip beyond computing is pure hand-off. */
    alone: boolean,
  ): void {
    const inferred = now();
    const results: Record<string, Tensor>[] = [];
    if (batch.length === 1) {
      results.push(outputs);
    } else {
      for (const name in outputs) {
        if (outputs[name].shape[0] !== rows) {
          return this.fail(batch, new Error(`output '${name}' has ${outputs[name].shape[0]} rows for a batch of ${rows}; the model does not keep the batch dimension`));
        }
      }
      let row = 0;
      const padding = this.policy.padding;
      const batchLength = padding ? this.paddedLength(padding, batch) : 0;
      for (const pending of batch) {
        const own: Record<string, Tensor> = {};
        const ownLength = padding?.lengthOf(pending.request.inputs) ?? 0;
        for (const name of pending.request.outputNames) {
          const rows = sliceRows(outputs[name], row, pending.rows);
          own[name] = padding && ownLength !== batchLength ? padding.cut(name, rows, batchLength, ownLength) : rows;
        }
        results.push(own);
        row += pending.rows;
      }
    }
    const execution = this.executionTimings(instance, outputs, rows, elements, started, inputReady, inferred, alone);
    const coreSecondsPerRow = executionCoreSeconds(execution, instance.threads) / rows;
    for (let index = 0; index < batch.length; index++) {
      const pending = batch[index];
      const timings = { queueNs: msToNs(started - pending.entry!.enqueuedAt), ...execution, batchRows: rows, coreSeconds: coreSecondsPerRow * pending.rows };
      const result = { outputs: results[index], timings };
      this.deliver(pending, () => pending.resolve(result));
    }
  }

  /** An execution's timings, recorded in the batch costs and reported to the observer. */
  private executionTimings(
    instance: BackendInstance,
    outputs: RunOutputs,
    rows: number,
    elements: number,
    started: number,
    inputReady: number,
    inferred: number,
    alone: boolean,
    called: { coreSeconds?: number; awaitedNs?: number } = {},
    answeredNone = false,
  ): ExecutionTimings {
    const finished = now();
    // An engine that timed itself says what computing took; handing the batch over to it (and
    // waiting behind the batch it was computing) counts as getting the inputs ready.
    const handedOverNs = msToNs(inferred - inputReady);
    const reported = outputs[COMPUTE_NS];
    const engineNs = reported !== undefined && reported >= 0 ? Math.min(reported, handedOverNs) : handedOverNs;
    const execution: ExecutionTimings = {
      computeInputNs: msToNs(inputReady - started) + handedOverNs - engineNs,
      computeInferNs: engineNs,
      computeOutputNs: msToNs(finished - inferred),
    };
    if (called.coreSeconds) execution.calledCoreSeconds = called.coreSeconds;
    if (called.awaitedNs) execution.awaitedNs = Math.min(called.awaitedNs, engineNs);
    // A batch refused whole is no measure of what computing a batch of its size costs (a refusal is quick).
    const batched = this.policy.maxBatchSize > 0 && !answeredNone;
    if (batched) {
      this.costs.record(rows, elements, execution.computeInferNs);
      if (alone) this.costs.recordOverhead(handedOverNs - engineNs);
    }
    // Rows executed, as Triton's batch_stats count them: a batching model without dynamic_batching runs each request alone, with all its rows.
    this.observer.onExecution({ batchSize: rows, timings: execution, threads: instance.threads, ...(answeredNone ? { answeredNone } : {}) });
    return execution;
  }

  private fail(batch: readonly Pending[], error: unknown): void {
    const failure = asNereidError(error, this.label);
    for (const pending of batch) this.deliver(pending, () => pending.reject(failure));
  }

  /**
   * Seeds the batch costs before any traffic: on one instance, each power-of-two batch size up to
   * max_batch_size (and that size itself), after one unmeasured run, the fastest of up to 5 runs
   * (interference only ever adds time), within `budgetMs` in all. `sample` makes the inputs of a
   * batch of the given rows. Sizes whose inputs are more than the queue may hold are left out:
   * such a batch can never form, and its zero-filled sample would cost memory until the next
   * garbage collection (max_batch_size rows of a 9 MB input are 2.3 GB).
   */
  async calibrate(sample: (rows: number) => Record<string, Tensor>, outputNames: readonly string[], budgetMs = 3000): Promise<void> {
    const instance = this.idle[0];
    // A handler is not run on made-up inputs: its costs are learned from traffic.
    if (this.policy.maxBatchSize === 0 || !instance || this.requestWise) return;
    const sizes: number[] = [];
    for (let rows = 1; rows < this.policy.maxBatchSize; rows *= 2) sizes.push(rows);
    sizes.push(this.policy.maxBatchSize);
    const oneRow = sample(1);
    const bytesPerRow = bytesOf(oneRow);
    const queueBytes = this.policy.maxQueuedBytes ?? 0;
    const deadline = now() + budgetMs;
    for (const rows of sizes) {
      // A queue holding less than one request's bytes still takes one, so one row always fits.
      if (rows > 1 && queueBytes > 0 && rows * bytesPerRow > queueBytes) break;
      const stacked = rows === 1 ? oneRow : sample(rows);
      const inputs = this.policy.ragged ? this.policy.ragged.joinRows(stacked, rows) : stacked;
      await instance.run(inputs, outputNames);
      let fastest = Infinity;
      for (let run = 0; run < 5 && (run === 0 || now() < deadline); run++) {
        const measuredFrom = now();
        const outputs = await instance.run(inputs, outputNames);
        const wallNs = msToNs(now() - measuredFrom);
        const engineNs = Math.min(outputs[COMPUTE_NS] ?? wallNs, wallNs);
        fastest = Math.min(fastest, engineNs);
        this.costs.recordOverhead(wallNs - engineNs);
      }
      this.costs.record(rows, elementsOf(inputs), fastest);
      if (now() > deadline) break;
    }
    this.costs.markCalibrated();
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
    while (this.running > 0 || this.queue.size > 0) {
      await new Promise<void>((resolve) => (this.onIdle = resolve));
      this.dispatch();
    }
    this.onIdle = undefined;
  }
}
