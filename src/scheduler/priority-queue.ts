/**
 * The waiting room of one model version, as Triton's scheduler_utils keeps it: one queue per
 * priority level, each with its queue policy (size limit, timeout, REJECT or DELAY), a hard cap
 * across levels, and deadlines. Entries sit in intrusive doubly linked lists, so that a request
 * leaving early (cancelled, timed out, past its deadline) is removed in O(1).
 *
 * It is also where overload is refused, before any work is spent on a request: by count and by
 * bytes (what the queue holds in memory), and by the wait it would have, estimated from how fast
 * the queue has been draining, against the time the request may wait (its deadline, the queue
 * timeout, else the server's limit). A request that would be answered too late is refused at once
 * instead of served late, so that under overload the work done is work a client still waits for.
 */
import { NereidError, overloaded } from '../core/errors.js';
import type { DrainRate } from './drain-rate.js';

export interface QueuePolicy {
  /** 0: no limit of its own (the queue's hard cap still applies). */
  maxQueueSize: number;
  /** Bytes of inputs the level may hold; 0 or absent: no limit of its own. */
  maxQueueBytes?: number;
  /** 0: requests never time out in the queue. */
  defaultTimeoutMicroseconds: number;
  timeoutAction: 'REJECT' | 'DELAY';
  allowTimeoutOverride: boolean;
}

export const NO_QUEUE_POLICY: QueuePolicy = {
  maxQueueSize: 0,
  defaultTimeoutMicroseconds: 0,
  timeoutAction: 'REJECT',
  allowTimeoutOverride: false,
};

/**
 * The server's cap on a version's waiting requests as a refusal names it: by the option's key unless whoever started the
 * server named it otherwise (the CLI: --max-queue-size).
 */
export const SERVER_QUEUE_CAP_SETTING = 'maxQueueSize';

/** "the server's maxQueueSize" (or the setting given): the words both schedulers' refusals at the cap use. */
export function serverQueueCap(setting = SERVER_QUEUE_CAP_SETTING): string {
  return `the server's ${setting}`;
}

export interface PriorityQueueOptions {
  /** 0: a single queue. Otherwise levels 1 (highest) to priorityLevels. */
  priorityLevels: number;
  defaultPriorityLevel: number;
  defaultQueuePolicy: QueuePolicy;
  /** Overrides per priority level (1-based). */
  priorityQueuePolicies?: ReadonlyMap<number, QueuePolicy>;
  /** Hard cap on entries across all levels, so the queue is never unbounded. */
  maxQueuedRequests: number;
  /** How a refusal at that cap names the server's setting that sets it (default: the option's key, SERVER_QUEUE_CAP_SETTING). */
  maxQueuedRequestsSetting?: string;
  /** Hard cap on the bytes of inputs queued across all levels; absent: none. */
  maxQueuedBytes?: number;
  /**
   * The longest a request may expect to wait when neither its deadline nor its level's queue
   * timeout says: beyond it, a request finding a backlog is refused. Absent: no limit.
   */
  maxQueueWaitMs?: number;
  /** How fast the queue drains, measured by its owner; without it, waits are not estimated. */
  drainRate?: DrainRate;
  /** Rows its owner is running now, which a request behind a backlog waits for as well. */
  rowsInService?: () => number;
  /** Names the model version in messages: "model 'x' version 1". */
  label: string;
}

/** What a request asks of the queue. */
export interface Admission {
  /** Priority level, 1 the highest; undefined or 0 for the default. */
  priority?: number;
  /** Queue timeout asked for by the request, in microseconds (honoured only where the policy allows). */
  timeoutMicroseconds?: number;
  /** performance.now() milliseconds after which the request is dropped with DEADLINE_EXCEEDED. */
  deadline?: number;
  /** Rows along the batch dimension (1 when absent), which is what the drain rate counts. */
  rows?: number;
  /** Bytes of its inputs, which the queue holds while it waits. */
  bytes?: number;
  /** Not refused for the expected wait (see RequestContext.patient). */
  patient?: boolean;
}

/** One queued value; owned by the queue while `queued` is true. */
export class QueueEntry<T> {
  prev?: QueueEntry<T>;
  next?: QueueEntry<T>;
  list?: EntryList<T>;
  timer?: NodeJS.Timeout;
  /** Moved behind the rest of its level by a DELAY timeout. */
  delayed = false;
  /** performance.now() ms when its queue timeout or deadline, whichever is sooner, runs out; Infinity: neither. */
  dueAt = Infinity;

  constructor(
    readonly value: T,
    readonly level: number,
    /** performance.now() milliseconds. */
    readonly enqueuedAt: number,
    readonly rows: number,
    readonly bytes: number,
  ) {}

  get queued(): boolean {
    return this.list !== undefined;
  }
}

class EntryList<T> {
  head?: QueueEntry<T>;
  tail?: QueueEntry<T>;
  size = 0;

  append(entry: QueueEntry<T>): void {
    entry.list = this;
    entry.prev = this.tail;
    entry.next = undefined;
    if (this.tail) this.tail.next = entry;
    else this.head = entry;
    this.tail = entry;
    this.size += 1;
  }

  unlink(entry: QueueEntry<T>): void {
    if (entry.prev) entry.prev.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.tail = entry.prev;
    entry.prev = entry.next = entry.list = undefined;
    this.size -= 1;
  }
}

/** setTimeout holds at most 2^31-1 ms (about 24.8 days); a longer delay would fire after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class PriorityQueue<T> {
  /** Per level (index 0 is level 1, the highest): those waiting in order, then those a DELAY timeout moved back. */
  private readonly waiting: EntryList<T>[];
  private readonly delayed: EntryList<T>[];
  private count = 0;
  private totalBytes = 0;
  /** Per level: rows and bytes of its entries. */
  private readonly levelRows: Float64Array;
  private readonly levelBytes: Float64Array;

  /**
   * `onDropped` hears of an entry the queue removed by itself (a REJECT timeout, a deadline), with
   * the error to answer it with; the entry is no longer queued then.
   */
  constructor(
    private readonly options: PriorityQueueOptions,
    private readonly onDropped: (entry: QueueEntry<T>, error: NereidError) => void,
  ) {
    const levels = Math.max(1, options.priorityLevels);
    this.waiting = Array.from({ length: levels }, () => new EntryList<T>());
    this.delayed = Array.from({ length: levels }, () => new EntryList<T>());
    this.levelRows = new Float64Array(levels);
    this.levelBytes = new Float64Array(levels);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes of the inputs queued. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** Entries of the default priority level it takes, when nothing else waits, before it refuses more. */
  get defaultLevelCapacity(): number {
    const own = this.policyOf(this.levelOf(undefined)).maxQueueSize;
    return own > 0 ? Math.min(own, this.options.maxQueuedRequests) : this.options.maxQueuedRequests;
  }

  private policyOf(level: number): QueuePolicy {
    return this.options.priorityQueuePolicies?.get(level + 1) ?? this.options.defaultQueuePolicy;
  }

  private levelOf(priority: number | undefined): number {
    const levels = this.options.priorityLevels;
    if (levels === 0) return 0;
    const defaultLevel = this.options.defaultPriorityLevel || levels;
    if (priority === undefined) return defaultLevel - 1;
    // NaN (a double parameter can carry one), 1.5 or -1 is no priority at all; 0 or one past the last level runs at
    // the default level, as Triton runs it (so one priority sent to every model is never refused by those with fewer levels).
    if (!Number.isInteger(priority) || priority < 0) {
      throw new NereidError('INVALID_ARGUMENT', `${this.options.label}: priority must be a non-negative integer (1 is the highest of ${levels} levels), got ${priority}`);
    }
    return (priority === 0 || priority > levels ? defaultLevel : priority) - 1;
  }

  /** A request may shorten the queue timeout (never lengthen it) only where the policy allows it, as in Triton. */
  private timeoutOf(policy: QueuePolicy, requested: number | undefined): number {
    const fallback = policy.defaultTimeoutMicroseconds;
    if (requested === undefined || !policy.allowTimeoutOverride) return fallback;
    if (!Number.isInteger(requested) || requested < 0) {
      throw new NereidError('INVALID_ARGUMENT', `${this.options.label}: timeout must be a non-negative integer of microseconds, got ${requested}`);
    }
    if (requested === 0) return fallback;
    return fallback === 0 ? requested : Math.min(requested, fallback);
  }

  /** Throws what push() would for the request's priority and timeout, without queueing anything. */
  validate(admission: Admission): void {
    this.timeoutOf(this.policyOf(this.levelOf(admission.priority)), admission.timeoutMicroseconds);
  }

  /**
   * Throws what push() would for the request now (invalid parameters, a full queue, a wait it
   * cannot afford, a passed deadline), without queueing anything: a front end asks before it reads
   * the request's body, with the bytes the body announces.
   */
  admit(admission: Admission, now: number): void {
    const level = this.levelOf(admission.priority);
    const policy = this.policyOf(level);
    this.checkRoom(level, policy, this.timeoutOf(policy, admission.timeoutMicroseconds), admission, now);
  }

  /** Rows waiting at this level or a higher one: what a request of this level waits behind. */
  private rowsAhead(level: number): number {
    let rows = 0;
    for (let index = 0; index <= level; index++) rows += this.levelRows[index];
    return rows;
  }

  /** How long a request of this priority would wait, from how fast the queue has drained: rows ahead and rows running over the rate; 0 when nothing is queued ahead, NaN when unknown. */
  estimatedWaitMs(priority?: number): number {
    return this.waitAtLevelMs(this.levelOf(priority));
  }

  private waitAtLevelMs(level: number): number {
    const rows = this.rowsAhead(level);
    // An empty queue is never a wait to refuse for, however long the running batches take.
    if (rows === 0) return 0;
    return (rows + (this.options.rowsInService?.() ?? 0)) / (this.options.drainRate?.rowsPerMs ?? NaN);
  }

  private checkRoom(level: number, policy: QueuePolicy, timeoutMicroseconds: number, admission: Admission, now: number): void {
    const label = this.options.label;
    const levelSize = this.waiting[level].size + this.delayed[level].size;
    const cap = this.options.maxQueuedRequests;
    const levelFull = policy.maxQueueSize > 0 && levelSize >= policy.maxQueueSize;
    const capFull = this.count >= cap;
    const waitMs = this.waitAtLevelMs(level);
    // A refused client is told to come back once the queue ahead of it could have drained.
    const retryAfterMs = Number.isFinite(waitMs) ? waitMs : 1000;
    if (levelFull || capFull) {
      // The limit that refused it: the level's own, or the cap across levels (the smaller when both are reached), named
      // so that an operator knows which setting to raise.
      const byPolicy = levelFull && (!capFull || policy.maxQueueSize <= cap);
      const limit = byPolicy ? policy.maxQueueSize : cap;
      const policyName = this.options.priorityQueuePolicies?.has(level + 1) ? `priority_queue_policy ${level + 1}` : 'default_queue_policy';
      const setting = byPolicy ? `the model config's dynamic_batching.${policyName}.max_queue_size` : serverQueueCap(this.options.maxQueuedRequestsSetting);
      throw overloaded(`${label}: Exceeds maximum queue size: the queue is full (${limit} requests waiting, the most ${setting} allows)`, retryAfterMs);
    }
    // A request larger than a byte cap on its own is still taken into an empty queue, or it could never be served.
    const bytes = admission.bytes ?? 0;
    const levelBytesCap = policy.maxQueueBytes ?? 0;
    if (levelBytesCap > 0 && this.levelBytes[level] > 0 && this.levelBytes[level] + bytes > levelBytesCap) {
      throw overloaded(`${label}: the queue is full (${this.levelBytes[level]} of its ${levelBytesCap} bytes held, this request brings ${bytes})`, retryAfterMs);
    }
    const bytesCap = this.options.maxQueuedBytes ?? 0;
    if (bytesCap > 0 && this.totalBytes > 0 && this.totalBytes + bytes > bytesCap) {
      throw overloaded(`${label}: the queue is full (${this.totalBytes} of its ${bytesCap} bytes held, this request brings ${bytes})`, retryAfterMs);
    }
    if (admission.deadline !== undefined && admission.deadline <= now) {
      // Already past: refused here, or an idle instance would run it before a 0 ms timer could drop it.
      throw new NereidError('DEADLINE_EXCEEDED', `${label}: the request's deadline passed before it was queued`);
    }
    if (waitMs > 0) {
      // What it may wait: the shorter of its deadline and the queue timeout that would reject it; with
      // neither, the server's limit (unless patient). A client's deadline longer than that limit is its own choice.
      const rejectAfterMs = timeoutMicroseconds > 0 && policy.timeoutAction === 'REJECT' ? timeoutMicroseconds / 1000 : undefined;
      const deadlineMs = admission.deadline === undefined ? undefined : admission.deadline - now;
      const serverLimitMs = admission.patient ? Infinity : (this.options.maxQueueWaitMs ?? Infinity);
      const affordableMs = rejectAfterMs === undefined && deadlineMs === undefined ? serverLimitMs : Math.min(rejectAfterMs ?? Infinity, deadlineMs ?? Infinity);
      if (waitMs > affordableMs) {
        throw overloaded(`${label}: overloaded — the queue ahead would take about ${Math.ceil(waitMs)} ms, longer than the ${Math.floor(affordableMs)} ms this request may wait`, waitMs - affordableMs);
      }
    }
  }

  /**
   * Queues a value behind the others of its level; throws UNAVAILABLE when its level or the whole
   * queue is full or it could not be answered in time (see admit), DEADLINE_EXCEEDED when its
   * deadline has already passed.
   */
  push(value: T, admission: Admission, now: number): QueueEntry<T> {
    const level = this.levelOf(admission.priority);
    const policy = this.policyOf(level);
    const timeout = this.timeoutOf(policy, admission.timeoutMicroseconds);
    this.checkRoom(level, policy, timeout, admission, now);
    const entry = new QueueEntry(value, level, now, admission.rows ?? 1, admission.bytes ?? 0);
    this.waiting[level].append(entry);
    this.count += 1;
    this.totalBytes += entry.bytes;
    this.levelRows[level] += entry.rows;
    this.levelBytes[level] += entry.bytes;
    const timeoutMs = timeout > 0 ? timeout / 1000 : Infinity;
    const deadlineMs = admission.deadline === undefined ? Infinity : admission.deadline - now;
    entry.dueAt = now + Math.min(timeoutMs, deadlineMs);
    if (deadlineMs <= timeoutMs && deadlineMs !== Infinity) {
      this.arm(entry, deadlineMs, () => this.drop(entry, new NereidError('DEADLINE_EXCEEDED', `${this.options.label}: the request's deadline passed while it waited in the queue`)));
    } else if (timeoutMs !== Infinity) {
      this.arm(entry, timeoutMs, () => this.expire(entry, policy, timeout, deadlineMs - timeoutMs));
    }
    return entry;
  }

  /** Waits out a delay in steps setTimeout can hold. */
  private arm(entry: QueueEntry<T>, remainingMs: number, fire: () => void): void {
    const step = Math.min(Math.max(0, remainingMs), MAX_TIMER_MS);
    entry.timer = setTimeout(() => (remainingMs > step ? this.arm(entry, remainingMs - step, fire) : fire()), step);
  }

  private expire(entry: QueueEntry<T>, policy: QueuePolicy, timeout: number, deadlineAfterMs: number): void {
    entry.timer = undefined;
    if (!entry.queued) return;
    if (policy.timeoutAction === 'REJECT') {
      this.drop(entry, new NereidError('UNAVAILABLE', `${this.options.label}: Request timeout expired after ${timeout} us in the queue`, { retryAfterMs: 1000 }));
      return;
    }
    entry.list!.unlink(entry);
    entry.delayed = true;
    this.delayed[entry.level].append(entry);
    if (deadlineAfterMs !== Infinity) {
      this.arm(entry, deadlineAfterMs, () => this.drop(entry, new NereidError('DEADLINE_EXCEEDED', `${this.options.label}: the request's deadline passed while it waited in the queue`)));
    }
  }

  private drop(entry: QueueEntry<T>, error: NereidError): void {
    if (!this.remove(entry)) return;
    this.onDropped(entry, error);
  }

  /** Takes an entry out of the queue (for a batch, or because its client left); false when it was not queued. */
  remove(entry: QueueEntry<T>): boolean {
    if (!entry.list) return false;
    entry.list.unlink(entry);
    this.count -= 1;
    this.totalBytes -= entry.bytes;
    this.levelRows[entry.level] -= entry.rows;
    this.levelBytes[entry.level] -= entry.bytes;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    return true;
  }

  /** The entry that goes next: priority order; within a level, those a DELAY timeout moved back come after the rest, as in Triton. */
  first(): QueueEntry<T> | undefined {
    for (let level = 0; level < this.waiting.length; level++) {
      const head = this.waiting[level].head ?? this.delayed[level].head;
      if (head) return head;
    }
    return undefined;
  }

  /** The entry after `entry` in the order first() starts. */
  after(entry: QueueEntry<T>): QueueEntry<T> | undefined {
    if (entry.next) return entry.next;
    let level = entry.level;
    if (!entry.delayed && this.delayed[level].head) return this.delayed[level].head;
    for (level += 1; level < this.waiting.length; level++) {
      const head = this.waiting[level].head ?? this.delayed[level].head;
      if (head) return head;
    }
    return undefined;
  }
}
