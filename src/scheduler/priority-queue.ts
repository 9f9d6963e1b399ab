/**
 * The waiting room of one model version, as Triton's scheduler_utils keeps it: one queue per
 * priority level, each with its queue policy (size limit, timeout, REJECT or DELAY), a hard cap
 * across levels, and deadlines. Entries sit in intrusive doubly linked lists, so that a request
 * leaving early (cancelled, timed out, past its deadline) is removed in O(1).
 */
import { NereidError } from '../core/errors.js';

export interface QueuePolicy {
  /** 0: no limit of its own (the queue's hard cap still applies). */
  maxQueueSize: number;
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

export interface PriorityQueueOptions {
  /** 0: a single queue. Otherwise levels 1 (highest) to priorityLevels. */
  priorityLevels: number;
  defaultPriorityLevel: number;
  defaultQueuePolicy: QueuePolicy;
  /** Overrides per priority level (1-based). */
  priorityQueuePolicies?: ReadonlyMap<number, QueuePolicy>;
  /** Hard cap on entries across all levels, so the queue is never unbounded. */
  maxQueuedRequests: number;
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
}

/** One queued value; owned by the queue while `queued` is true. */
export class QueueEntry<T> {
  prev?: QueueEntry<T>;
  next?: QueueEntry<T>;
  list?: EntryList<T>;
  timer?: NodeJS.Timeout;
  /** Moved behind the rest of its level by a DELAY timeout. */
  delayed = false;

  constructor(
    readonly value: T,
    readonly level: number,
    /** performance.now() milliseconds. */
    readonly enqueuedAt: number,
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
  }

  get size(): number {
    return this.count;
  }

  private policyOf(level: number): QueuePolicy {
    return this.options.priorityQueuePolicies?.get(level + 1) ?? this.options.defaultQueuePolicy;
  }

  private levelOf(priority: number | undefined): number {
    const levels = this.options.priorityLevels;
    if (levels === 0) return 0;
    // Only absent or 0 means the default: NaN (a double parameter can carry one) is refused like 1.5.
    const chosen = priority === undefined || priority === 0 ? this.options.defaultPriorityLevel || levels : priority;
    if (!Number.isInteger(chosen) || chosen < 1 || chosen > levels) {
      throw new NereidError('INVALID_ARGUMENT', `${this.options.label}: priority must be 1 (highest) to ${levels}, got ${priority}`);
    }
    return chosen - 1;
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
   * Queues a value behind the others of its level; throws UNAVAILABLE when its level or the whole
   * queue is full, DEADLINE_EXCEEDED when its deadline has already passed.
   */
  push(value: T, admission: Admission, now: number): QueueEntry<T> {
    const level = this.levelOf(admission.priority);
    const policy = this.policyOf(level);
    const timeout = this.timeoutOf(policy, admission.timeoutMicroseconds);
    const levelSize = this.waiting[level].size + this.delayed[level].size;
    const cap = this.options.maxQueuedRequests;
    const levelFull = policy.maxQueueSize > 0 && levelSize >= policy.maxQueueSize;
    const capFull = this.count >= cap;
    if (levelFull || capFull) {
      // The limit that refused it: the level's own, or the cap across levels (the smaller when both are reached).
      const limit = levelFull && capFull ? Math.min(policy.maxQueueSize, cap) : levelFull ? policy.maxQueueSize : cap;
      throw new NereidError('UNAVAILABLE', `${this.options.label}: the queue is full (${limit} requests waiting); retry later`);
    }
    if (admission.deadline !== undefined && admission.deadline <= now) {
      // Already past: refused here, or an idle instance would run it before a 0 ms timer could drop it.
      throw new NereidError('DEADLINE_EXCEEDED', `${this.options.label}: the request's deadline passed before it was queued`);
    }
    const entry = new QueueEntry(value, level, now);
    this.waiting[level].append(entry);
    this.count += 1;
    const timeoutMs = timeout > 0 ? timeout / 1000 : Infinity;
    const deadlineMs = admission.deadline === undefined ? Infinity : admission.deadline - now;
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
      this.drop(entry, new NereidError('UNAVAILABLE', `${this.options.label}: request timeout expired after ${timeout} us in the queue`));
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
