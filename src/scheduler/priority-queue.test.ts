/**
 * PriorityQueue alone: the order first()/after() walk (levels, then DELAY-moved entries after the
 * rest of their level), size limits per level and across levels, timeouts (REJECT drops, DELAY
 * moves), deadlines, validation of priority and timeout, the override rules, and O(1) removal.
 * Timeouts use short real timers; the tests wait for the drop itself, never for a duration, except
 * to show that something did NOT happen.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isError, watchTimeoutOverflow } from '../../test/support/checks.js';
import { CountWaiters } from '../../test/support/count-waiters.js';
import type { NereidError } from '../core/errors.js';
import { DrainRate } from './drain-rate.js';
import { NO_QUEUE_POLICY, PriorityQueue, type PriorityQueueOptions, type QueueEntry, type QueuePolicy } from './priority-queue.js';

const LABEL = "model 'q' version 1";
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const now = () => performance.now();

const reject = (defaultTimeoutMicroseconds: number, allowTimeoutOverride = false): QueuePolicy => ({
  maxQueueSize: 0,
  defaultTimeoutMicroseconds,
  timeoutAction: 'REJECT',
  allowTimeoutOverride,
});
const delay = (defaultTimeoutMicroseconds: number): QueuePolicy => ({
  maxQueueSize: 0,
  defaultTimeoutMicroseconds,
  timeoutAction: 'DELAY',
  allowTimeoutOverride: false,
});

interface Drop {
  value: string;
  error: NereidError;
  /** Whether the entry was already out of the queue when onDropped heard of it. */
  queued: boolean;
}

/** A queue of strings that records what it drops by itself. */
class Harness {
  readonly queue: PriorityQueue<string>;
  readonly dropped: Drop[] = [];
  private readonly drops = new CountWaiters(() => this.dropped.length);

  constructor(options: Partial<PriorityQueueOptions> = {}) {
    this.queue = new PriorityQueue<string>(
      {
        priorityLevels: 0,
        defaultPriorityLevel: 0,
        defaultQueuePolicy: NO_QUEUE_POLICY,
        maxQueuedRequests: 1000,
        label: LABEL,
        ...options,
      },
      (entry, error) => {
        this.dropped.push({ value: entry.value, error, queued: entry.queued });
        this.drops.notify();
      },
    );
  }

  /** Resolves once `count` entries have been dropped in all. */
  waitForDrops(count: number): Promise<void> {
    return this.drops.until(count);
  }

  /** Values in the order first()/after() walk them. */
  order(): string[] {
    const values: string[] = [];
    for (let entry = this.queue.first(); entry; entry = this.queue.after(entry)) values.push(entry.value);
    return values;
  }

  /** Empties the queue, so that no timer outlives the test. */
  clear(): void {
    for (let entry = this.queue.first(); entry; entry = this.queue.first()) this.queue.remove(entry);
  }
}

describe('PriorityQueue: order', () => {
  it('without priority levels is one FIFO queue, and ignores a request priority', () => {
    const h = new Harness();
    const a = h.queue.push('a', {}, 1);
    h.queue.push('b', { priority: 7 }, 2);
    h.queue.push('c', { priority: 1 }, 3);
    assert.deepEqual(h.order(), ['a', 'b', 'c']);
    assert.equal(h.queue.size, 3);
    assert.equal(h.queue.first(), a);
    assert.equal(a.enqueuedAt, 1);
    assert.equal(a.level, 0);
    assert.ok(a.queued);
  });

  it('walks level 1 (highest) first, each level in arrival order; 0 or no priority means the default level', () => {
    const h = new Harness({ priorityLevels: 3, defaultPriorityLevel: 2 });
    h.queue.push('a', {}, now()); // level 2
    h.queue.push('b', { priority: 1 }, now());
    h.queue.push('c', { priority: 3 }, now());
    h.queue.push('d', { priority: 1 }, now());
    h.queue.push('e', { priority: 0 }, now()); // level 2
    h.queue.push('f', { priority: 3 }, now());
    assert.deepEqual(h.order(), ['b', 'd', 'a', 'e', 'c', 'f']);
    assert.deepEqual(
      [h.queue.first()!.level, h.queue.after(h.queue.after(h.queue.first()!)!)!.level],
      [0, 1],
      'levels are 0-based inside the queue',
    );
  });

  it('with defaultPriorityLevel 0 the default is the lowest level', () => {
    const h = new Harness({ priorityLevels: 2, defaultPriorityLevel: 0 });
    h.queue.push('low', {}, now());
    h.queue.push('high', { priority: 1 }, now());
    assert.deepEqual(h.order(), ['high', 'low']);
  });

  it('an empty queue has no first entry; a level with nothing in it is skipped', () => {
    const h = new Harness({ priorityLevels: 3, defaultPriorityLevel: 3 });
    assert.equal(h.queue.first(), undefined);
    const one = h.queue.push('one', { priority: 1 }, now());
    const three = h.queue.push('three', { priority: 3 }, now());
    assert.equal(h.queue.after(one), three);
    assert.equal(h.queue.after(three), undefined);
  });

  it('DELAY: an entry whose timeout expired goes after the rest of its level, still ahead of lower levels', async () => {
    const h = new Harness({ priorityLevels: 2, defaultPriorityLevel: 2, priorityQueuePolicies: new Map([[1, delay(5_000)]]) });
    const x = h.queue.push('x', { priority: 1 }, now());
    const low = h.queue.push('low', { priority: 2 }, now());
    assert.equal(x.delayed, false);
    await sleep(30); // x's 5 ms timeout expires: moved behind its level
    assert.equal(x.delayed, true);
    assert.ok(x.queued, 'DELAY keeps it queued');
    assert.equal(h.queue.size, 2);
    assert.deepEqual(h.order(), ['x', 'low'], 'alone in its level, it is still first');
    const y = h.queue.push('y', { priority: 1 }, now());
    const w = h.queue.push('w', { priority: 1 }, now());
    assert.deepEqual(h.order(), ['y', 'w', 'x', 'low']);
    assert.equal(h.queue.first(), y);
    assert.equal(h.queue.after(w), x, 'from the end of the waiting entries to the delayed ones');
    assert.equal(h.queue.after(x), low, 'from the end of the delayed ones to the next level');
    assert.deepEqual(h.dropped, [], 'DELAY never drops');
    // Removing the waiting ones leaves the delayed entry at the head.
    h.queue.remove(y);
    h.queue.remove(w);
    assert.equal(h.queue.first(), x);
    h.clear();
    assert.equal(h.queue.size, 0);
  });

  it('DELAY: several delayed entries keep their order among themselves', async () => {
    const h = new Harness({ defaultQueuePolicy: delay(5_000) });
    h.queue.push('a', {}, now());
    h.queue.push('b', {}, now());
    await sleep(30);
    h.queue.push('c', {}, now());
    assert.deepEqual(h.order(), ['c', 'a', 'b']);
    await sleep(30);
    assert.deepEqual(h.order(), ['a', 'b', 'c'], 'c, delayed in turn, goes after them');
    h.queue.push('d', {}, now());
    assert.deepEqual(h.order(), ['d', 'a', 'b', 'c']);
    h.clear();
  });
});

describe('PriorityQueue: size limits', () => {
  it('a level full at its max_queue_size refuses with UNAVAILABLE naming the limit; other levels still accept', () => {
    const h = new Harness({
      priorityLevels: 2,
      defaultPriorityLevel: 2,
      priorityQueuePolicies: new Map([[1, { ...NO_QUEUE_POLICY, maxQueueSize: 2 }]]),
    });
    const first = h.queue.push('h1', { priority: 1 }, now());
    h.queue.push('h2', { priority: 1 }, now());
    assert.throws(() => h.queue.push('h3', { priority: 1 }, now()), isError('UNAVAILABLE', /model 'q' version 1: Exceeds maximum queue size: the queue is full \(2 requests waiting, the most the model config's dynamic_batching\.priority_queue_policy 1\.max_queue_size allows\)/));
    assert.equal(h.queue.size, 2);
    for (let i = 0; i < 5; i++) h.queue.push(`l${i}`, { priority: 2 }, now());
    assert.equal(h.queue.size, 7);
    // Room again once one leaves.
    h.queue.remove(first);
    h.queue.push('h3', { priority: 1 }, now());
    assert.deepEqual(h.order(), ['h2', 'h3', 'l0', 'l1', 'l2', 'l3', 'l4']);
  });

  it('DELAY-moved entries still count against their level', async () => {
    const h = new Harness({ defaultQueuePolicy: { ...delay(5_000), maxQueueSize: 1 } });
    const a = h.queue.push('a', {}, now());
    await sleep(30);
    assert.ok(a.delayed);
    assert.throws(() => h.queue.push('b', {}, now()), isError('UNAVAILABLE', /queue is full \(1 requests/));
    h.clear();
  });

  it('the hard cap maxQueuedRequests bounds all levels together, and a message names it, not a larger level limit', () => {
    const h = new Harness({
      priorityLevels: 2,
      defaultPriorityLevel: 2,
      defaultQueuePolicy: { ...NO_QUEUE_POLICY, maxQueueSize: 10 },
      priorityQueuePolicies: new Map([[1, { ...NO_QUEUE_POLICY, maxQueueSize: 2 }]]),
      maxQueuedRequests: 3,
    });
    h.queue.push('l1', {}, now());
    h.queue.push('l2', {}, now());
    h.queue.push('l3', {}, now());
    // Level 2 is below its own 10 and level 1 is empty (its own limit is 2): the cap of 3 refuses both.
    assert.throws(() => h.queue.push('l4', {}, now()), isError('UNAVAILABLE', /queue is full \(3 requests waiting, the most the server's maxQueueSize allows\)/));
    assert.throws(() => h.queue.push('h1', { priority: 1 }, now()), isError('UNAVAILABLE', /queue is full \(3 requests waiting, the most the server's maxQueueSize allows\)/));
    assert.equal(h.queue.size, 3);
    h.queue.remove(h.queue.first()!);
    h.queue.push('h1', { priority: 1 }, now());
    assert.deepEqual(h.order(), ['h1', 'l2', 'l3']);
  });

  it('with maxQueueSize 0 only the hard cap applies', () => {
    const h = new Harness({ maxQueuedRequests: 2 });
    h.queue.push('a', {}, now());
    h.queue.push('b', {}, now());
    assert.throws(() => h.queue.push('c', {}, now()), isError('UNAVAILABLE', /queue is full \(2 requests waiting, the most the server's maxQueueSize allows\)/));
    assert.deepEqual(h.order(), ['a', 'b']);
  });

  it("the hard cap's refusal names the server's setting as whoever started it named it: the option's key, or the CLI's flag", () => {
    const h = new Harness({ maxQueuedRequests: 1, maxQueuedRequestsSetting: '--max-queue-size' });
    h.queue.push('a', {}, now());
    assert.throws(() => h.queue.push('b', {}, now()), isError('UNAVAILABLE', /queue is full \(1 requests waiting, the most the server's --max-queue-size allows\)/));
    h.clear();
  });

  it('when both limits are reached, the message names the smaller', () => {
    const h = new Harness({ defaultQueuePolicy: { ...NO_QUEUE_POLICY, maxQueueSize: 2 }, maxQueuedRequests: 2 });
    h.queue.push('a', {}, now());
    h.queue.push('b', {}, now());
    assert.throws(() => h.queue.push('c', {}, now()), isError('UNAVAILABLE', /\(2 requests waiting, the most the model config's dynamic_batching\.default_queue_policy\.max_queue_size allows\)/));
  });
});

describe('PriorityQueue: timeouts and deadlines', () => {
  it('REJECT: an entry past its timeout is removed and onDropped hears of it with UNAVAILABLE', async () => {
    const h = new Harness({ defaultQueuePolicy: reject(10_000) });
    const a = h.queue.push('a', {}, now());
    await h.waitForDrops(1);
    assert.equal(h.dropped.length, 1);
    const [drop] = h.dropped;
    assert.equal(drop.value, 'a');
    assert.equal(drop.queued, false, 'no longer queued when onDropped runs');
    isError('UNAVAILABLE', /^model 'q' version 1: Request timeout expired after 10000 us in the queue$/)(drop.error);
    assert.equal(a.queued, false);
    assert.equal(h.queue.size, 0);
    assert.equal(h.queue.first(), undefined);
    assert.equal(h.queue.remove(a), false, 'already out');
  });

  it('REJECT: drops only the expired entry, in the middle of others, and keeps the order of the rest', async () => {
    const h = new Harness({
      priorityLevels: 2,
      defaultPriorityLevel: 2,
      priorityQueuePolicies: new Map([[1, reject(10_000)]]),
    });
    h.queue.push('h1', { priority: 1 }, now());
    h.queue.push('l1', {}, now());
    h.queue.push('l2', {}, now());
    await h.waitForDrops(1);
    assert.deepEqual(h.order(), ['l1', 'l2']);
    assert.equal(h.queue.size, 2);
  });

  it('a removed entry is never dropped later: removal clears its timer', async () => {
    const h = new Harness({ defaultQueuePolicy: reject(5_000) });
    const a = h.queue.push('a', {}, now());
    const b = h.queue.push('b', { deadline: now() + 5 }, now());
    assert.equal(h.queue.remove(a), true);
    assert.equal(h.queue.remove(b), true);
    await sleep(30);
    assert.deepEqual(h.dropped, []);
  });

  it('DELAY: moves the entry, never drops it, and calls onDropped for nothing', async () => {
    const h = new Harness({ defaultQueuePolicy: delay(5_000) });
    const a = h.queue.push('a', {}, now());
    const b = h.queue.push('b', {}, now() + 1_000); // enqueued "later": its own timer still runs 5 ms from now
    await sleep(30);
    assert.ok(a.delayed && b.delayed);
    assert.ok(a.queued && b.queued);
    assert.equal(h.queue.size, 2);
    assert.deepEqual(h.dropped, []);
    h.clear();
  });

  it('a deadline before a longer timeout drops the entry with DEADLINE_EXCEEDED', async () => {
    const h = new Harness({ defaultQueuePolicy: reject(5_000_000) }); // 5 s
    const started = now();
    h.queue.push('a', { deadline: started + 10 }, started);
    await h.waitForDrops(1);
    assert.ok(now() - started < 4_000, 'well before the 5 s timeout');
    isError('DEADLINE_EXCEEDED', /^model 'q' version 1: the request's deadline passed while it waited in the queue$/)(h.dropped[0].error);
    assert.equal(h.queue.size, 0);
  });

  it('a deadline already past (or now) is refused at push() with DEADLINE_EXCEEDED, queueing nothing', async () => {
    const h = new Harness();
    const at = now();
    for (const deadline of [at - 1, at]) {
      assert.throws(
        () => h.queue.push('late', { deadline }, at),
        isError('DEADLINE_EXCEEDED', /^model 'q' version 1: the request's deadline passed before it was queued$/),
      );
    }
    assert.equal(h.queue.size, 0);
    assert.equal(h.queue.first(), undefined);
    h.queue.push('in time', { deadline: at + 1 }, at);
    await h.waitForDrops(1);
    assert.deepEqual(
      h.dropped.map((drop) => [drop.value, drop.error.code]),
      [['in time', 'DEADLINE_EXCEEDED']],
      'refused ones are never dropped later',
    );
  });

  it('a deadline without any timeout drops the entry too', async () => {
    const h = new Harness();
    h.queue.push('a', {}, now());
    h.queue.push('b', { deadline: now() + 10 }, now());
    await h.waitForDrops(1);
    assert.equal(h.dropped[0].value, 'b');
    assert.equal(h.dropped[0].error.code, 'DEADLINE_EXCEEDED');
    assert.deepEqual(h.order(), ['a']);
  });

  it('REJECT: a timeout before a later deadline drops with UNAVAILABLE, once', async () => {
    const h = new Harness({ defaultQueuePolicy: reject(10_000) });
    h.queue.push('a', { deadline: now() + 40 }, now());
    await h.waitForDrops(1);
    assert.equal(h.dropped[0].error.code, 'UNAVAILABLE');
    await sleep(60);
    assert.equal(h.dropped.length, 1, 'the deadline does not drop it a second time');
  });

  it('DELAY: after its timeout moved it, the entry is still dropped at its deadline', async () => {
    const h = new Harness({ defaultQueuePolicy: delay(5_000) });
    const started = now();
    const a = h.queue.push('a', { deadline: started + 40 }, started);
    await sleep(20);
    assert.ok(a.delayed, 'moved at 5 ms');
    assert.equal(h.dropped.length, 0, 'not dropped before its deadline');
    await h.waitForDrops(1);
    assert.equal(h.dropped[0].value, 'a');
    assert.equal(h.dropped[0].error.code, 'DEADLINE_EXCEEDED');
    assert.ok(now() - started >= 39, 'not before the deadline');
    assert.equal(h.queue.size, 0);
  });

  it('timeouts and deadlines longer than setTimeout can hold (~24.8 days) neither fire early nor warn', async () => {
    const overflows = watchTimeoutOverflow();
    try {
      const days30Us = 30 * 86_400 * 1_000_000;
      const h = new Harness({ defaultQueuePolicy: reject(days30Us) });
      h.queue.push('timeout', {}, now());
      h.queue.push('deadline', { deadline: now() + days30Us / 1000 }, now());
      await sleep(30);
      assert.deepEqual(h.dropped, []);
      assert.equal(h.queue.size, 2);
      h.clear();
    } finally {
      assert.deepEqual(overflows.stop(), []);
    }
  });
});

describe('PriorityQueue: validation and the timeout override', () => {
  for (const priority of [-1, 1.5, Number.NaN]) {
    it(`refuses priority ${priority} with INVALID_ARGUMENT, in validate() and push(), queueing nothing`, () => {
      const h = new Harness({ priorityLevels: 2, defaultPriorityLevel: 2 });
      const expected = isError('INVALID_ARGUMENT', /^model 'q' version 1: priority must be a non-negative integer \(1 is the highest of 2 levels\), got /);
      assert.throws(() => h.queue.validate({ priority }), expected);
      assert.throws(() => h.queue.push('a', { priority }, now()), expected);
      assert.equal(h.queue.size, 0);
      assert.equal(h.queue.first(), undefined);
    });
  }

  it('queues a priority past the last level at the default level, as Triton does', () => {
    for (const defaultPriorityLevel of [1, 2]) {
      const h = new Harness({ priorityLevels: 2, defaultPriorityLevel });
      h.queue.push('level 2', { priority: 2 }, now());
      h.queue.push('past the last', { priority: 3 }, now());
      h.queue.push('level 1', { priority: 1 }, now());
      assert.deepEqual(h.order(), defaultPriorityLevel === 1 ? ['past the last', 'level 1', 'level 2'] : ['level 1', 'level 2', 'past the last']);
      h.clear();
    }
  });

  it('accepts every level and the default in validate()', () => {
    const h = new Harness({ priorityLevels: 2, defaultPriorityLevel: 2 });
    for (const priority of [undefined, 0, 1, 2]) h.queue.validate({ priority });
    assert.equal(h.queue.size, 0);
  });

  for (const timeoutMicroseconds of [-5, 1.5, Number.NaN]) {
    it(`refuses timeout ${timeoutMicroseconds} with INVALID_ARGUMENT where overrides are allowed, and ignores it where not`, () => {
      const allowed = new Harness({ defaultQueuePolicy: reject(0, true) });
      const expected = isError('INVALID_ARGUMENT', /timeout must be a non-negative integer of microseconds/);
      assert.throws(() => allowed.queue.validate({ timeoutMicroseconds }), expected);
      assert.throws(() => allowed.queue.push('a', { timeoutMicroseconds }, now()), expected);
      assert.equal(allowed.queue.size, 0);
      const ignored = new Harness({ defaultQueuePolicy: reject(0, false) });
      ignored.queue.validate({ timeoutMicroseconds });
      ignored.queue.push('a', { timeoutMicroseconds }, now());
      assert.equal(ignored.queue.size, 1);
    });
  }

  it('validates the timeout against the policy of the request\'s own level', () => {
    const h = new Harness({
      priorityLevels: 2,
      defaultPriorityLevel: 2,
      defaultQueuePolicy: reject(0, false),
      priorityQueuePolicies: new Map([[1, reject(0, true)]]),
    });
    assert.throws(() => h.queue.validate({ priority: 1, timeoutMicroseconds: -1 }), isError('INVALID_ARGUMENT'));
    h.queue.validate({ priority: 2, timeoutMicroseconds: -1 });
  });

  /** The timeout an entry got, read from the message of its drop. */
  async function effectiveTimeouts(policy: QueuePolicy, requests: Record<string, number | undefined>): Promise<Record<string, string>> {
    const h = new Harness({ defaultQueuePolicy: policy });
    const entries: QueueEntry<string>[] = [];
    for (const [name, timeoutMicroseconds] of Object.entries(requests)) entries.push(h.queue.push(name, { timeoutMicroseconds }, now()));
    await h.waitForDrops(entries.length);
    return Object.fromEntries(h.dropped.map((drop) => [drop.value, /after (\d+) us/.exec(drop.error.message)![1]]));
  }

  it('with allowTimeoutOverride, a request may shorten the timeout, never lengthen it; 0 means the default', async () => {
    const timeouts = await effectiveTimeouts(reject(40_000, true), { none: undefined, shorter: 5_000, longer: 60_000_000, zero: 0 });
    assert.deepEqual(timeouts, { none: '40000', shorter: '5000', longer: '40000', zero: '40000' });
  });

  it('the shorter timeout drops its request first', async () => {
    const h = new Harness({ defaultQueuePolicy: reject(200_000, true) });
    h.queue.push('patient', {}, now());
    h.queue.push('hasty', { timeoutMicroseconds: 5_000 }, now());
    await h.waitForDrops(1);
    assert.deepEqual(
      h.dropped.map((drop) => drop.value),
      ['hasty'],
    );
    assert.deepEqual(h.order(), ['patient']);
    h.clear();
  });

  it('without allowTimeoutOverride, a request timeout is ignored: the default applies', async () => {
    const timeouts = await effectiveTimeouts(reject(10_000, false), { shorter: 1_000, longer: 60_000_000 });
    assert.deepEqual(timeouts, { shorter: '10000', longer: '10000' });
  });

  it('with allowTimeoutOverride and no default timeout, the request timeout applies; without it nothing times out', async () => {
    const timeouts = await effectiveTimeouts(reject(0, true), { asked: 5_000 });
    assert.deepEqual(timeouts, { asked: '5000' });
    const h = new Harness({ defaultQueuePolicy: reject(0, false) });
    h.queue.push('a', { timeoutMicroseconds: 1_000 }, now());
    await sleep(30);
    assert.deepEqual(h.dropped, []);
    h.clear();
  });
});

describe('PriorityQueue: remove()', () => {
  it('removes from the head, the middle and the tail, keeping the order, and says whether it removed anything', () => {
    const h = new Harness({ priorityLevels: 2, defaultPriorityLevel: 2 });
    const entries = ['a', 'b', 'c', 'd'].map((value) => h.queue.push(value, {}, now()));
    const high = h.queue.push('h', { priority: 1 }, now());
    assert.equal(h.queue.remove(entries[1]), true);
    assert.deepEqual(h.order(), ['h', 'a', 'c', 'd']);
    assert.equal(h.queue.remove(high), true);
    assert.deepEqual(h.order(), ['a', 'c', 'd']);
    assert.equal(h.queue.remove(entries[3]), true);
    assert.deepEqual(h.order(), ['a', 'c']);
    assert.equal(h.queue.remove(entries[3]), false, 'twice: nothing to remove');
    assert.equal(h.queue.size, 2);
    h.queue.push('e', {}, now());
    assert.deepEqual(h.order(), ['a', 'c', 'e'], 'the tail is right after removing the old one');
    assert.deepEqual(h.dropped, [], 'remove() is not a drop');
  });

  it('is O(1): 100 000 entries, the middle 50 000 removed, each touching only its neighbours\' links', () => {
    const count = 100_000;
    const h = new Harness({ maxQueuedRequests: count });
    const started = now();
    const entries: QueueEntry<string>[] = [];
    for (let i = 0; i < count; i++) entries.push(h.queue.push(String(i), {}, started));
    assert.equal(h.queue.size, count);
    assert.throws(() => h.queue.push('one too many', {}, started), isError('UNAVAILABLE'));
    // Every read of an entry's links is counted: a removal reads a few (its own and its neighbours'), a search along
    // the list reads one per entry it passes, and stops here at once instead of taking some 10^9 steps.
    let linkReads = 0;
    let removed = 0;
    const counted = (entry: QueueEntry<string>, link: 'prev' | 'next') => {
      let value = entry[link];
      Object.defineProperty(entry, link, {
        get: () => {
          if (++linkReads > 8 * (removed + 1)) throw new Error(`${linkReads} link reads for ${removed + 1} removals`);
          return value;
        },
        set: (given) => (value = given),
      });
    };
    for (const entry of entries) (['prev', 'next'] as const).forEach((link) => counted(entry, link));
    // From the middle outwards, where a search from either end has the farthest to go.
    for (let offset = 0; offset < count / 4; offset++) {
      assert.equal(h.queue.remove(entries[count / 2 + offset]), true);
      removed += 1;
      assert.equal(h.queue.remove(entries[count / 2 - 1 - offset]), true);
      removed += 1;
    }
    assert.equal(h.queue.size, count / 2);
    removed = Infinity; // the order is read below by walking the list
    const values = h.order();
    assert.equal(values.length, count / 2);
    assert.equal(values[count / 4 - 1], String(count / 4 - 1));
    assert.equal(values[count / 4], String((3 * count) / 4));
    assert.equal(values.at(-1), String(count - 1));
  });
});

/** A drain rate fixed at `rowsPerMs`, as if measured. */
const drainingAt = (rowsPerMs: number) => new DrainRate(() => rowsPerMs);

describe('PriorityQueue: admission under overload', () => {
  it('bytes bound the queue as well as count: beyond max bytes a request is refused with a retry hint, and room comes back as bytes leave', () => {
    const h = new Harness({ maxQueuedBytes: 1000 });
    const first = h.queue.push('a', { bytes: 600 }, now());
    h.queue.push('b', { bytes: 300 }, now());
    assert.equal(h.queue.bytes, 900);
    assert.throws(
      () => h.queue.push('c', { bytes: 200 }, now()),
      (error: NereidError) => isError('UNAVAILABLE', /queue is full \(900 of its 1000 bytes held, this request brings 200\); retry in \d+ s/)(error) && error.retryAfterMs! > 0,
    );
    h.queue.remove(first);
    assert.equal(h.queue.bytes, 300);
    h.queue.push('c', { bytes: 200 }, now());
    assert.deepEqual(h.order(), ['b', 'c']);
  });

  it('a request larger than the byte limit on its own is taken into an empty queue, or it could never be served', () => {
    const h = new Harness({ maxQueuedBytes: 100, defaultQueuePolicy: { ...NO_QUEUE_POLICY, maxQueueBytes: 50 } });
    h.queue.push('huge', { bytes: 5000 }, now());
    assert.throws(() => h.queue.push('small', { bytes: 1 }, now()), isError('UNAVAILABLE', /of its 50 bytes held/));
  });

  it("a level's max_queue_bytes bounds that level alone", () => {
    const h = new Harness({
      priorityLevels: 2,
      defaultPriorityLevel: 2,
      priorityQueuePolicies: new Map([[2, { ...NO_QUEUE_POLICY, maxQueueBytes: 100 }]]),
    });
    h.queue.push('low', { bytes: 80 }, now());
    assert.throws(() => h.queue.push('low2', { bytes: 80 }, now()), isError('UNAVAILABLE', /80 of its 100 bytes/));
    h.queue.push('high', { priority: 1, bytes: 80 }, now());
    assert.equal(h.queue.size, 2);
  });

  it('a request whose estimated wait is longer than it may wait is refused at once, with the time the backlog needs to drain as its hint', () => {
    // 10 rows per ms: 100 rows ahead is a 10 ms wait.
    const h = new Harness({ drainRate: drainingAt(10), maxQueueWaitMs: 5 });
    h.queue.push('backlog', { rows: 100 }, now());
    assert.equal(h.queue.estimatedWaitMs(), 10);
    assert.throws(
      () => h.queue.push('late', {}, now()),
      (error: NereidError) => isError('UNAVAILABLE', /overloaded — the queue ahead would take about 10 ms, longer than the 5 ms this request may wait/)(error) && Math.abs(error.retryAfterMs! - 5) < 1e-9,
    );
    assert.equal(h.queue.size, 1);
  });

  it("a request's own deadline is what it may wait, longer or shorter than the server's limit, as overload.md says", () => {
    const h = new Harness({ drainRate: drainingAt(10), maxQueueWaitMs: 5 });
    // One instant for the deadlines and the pushes: what a request may wait is then exact, however slow the machine.
    const t = now();
    h.queue.push('backlog', { rows: 100 }, t);
    h.queue.push('willing to wait 50 ms', { deadline: t + 50 }, t);
    assert.throws(() => h.queue.push('in a hurry', { deadline: t + 3 }, t), isError('UNAVAILABLE', /longer than the 3 ms this request may wait/));
    assert.equal(h.queue.size, 2);
    h.clear();
  });

  it('a patient request is not refused for the expected wait, but still for its deadline and a full queue', () => {
    const h = new Harness({ drainRate: drainingAt(10), maxQueueWaitMs: 5, maxQueuedRequests: 3 });
    const t = now();
    h.queue.push('backlog', { rows: 100 }, t);
    h.queue.push('patient', { patient: true }, t);
    assert.throws(() => h.queue.push('hurried', { patient: true, deadline: t + 5 }, t), isError('UNAVAILABLE', /overloaded — the queue ahead would take about 11 ms, longer than the 5 ms this request may wait/));
    h.queue.push('also patient', { patient: true }, t);
    assert.throws(() => h.queue.push('one too many', { patient: true }, t), isError('UNAVAILABLE', /Exceeds maximum queue size: the queue is full \(3 requests waiting, the most the server's maxQueueSize allows\)/));
    h.clear();
  });

  it('behind a backlog a request also waits for the rows running now; with nothing queued it is never refused for them', () => {
    let running = 0;
    const h = new Harness({ drainRate: drainingAt(10), maxQueueWaitMs: 5, rowsInService: () => running });
    running = 1000; // a long batch running, nothing queued
    h.queue.admit({}, now());
    h.queue.push('a', { rows: 40 }, now());
    running = 20;
    assert.equal(h.queue.estimatedWaitMs(), 6);
    assert.throws(() => h.queue.admit({}, now()), isError('UNAVAILABLE'), 'running rows count once something is queued');
    running = 0;
    h.queue.admit({}, now());
    h.clear();
  });

  it('the wait a request may have is its deadline, else its REJECT queue timeout, else the server limit', () => {
    const h = new Harness({ drainRate: drainingAt(1), maxQueueWaitMs: 1_000_000 });
    for (let i = 0; i < 50; i++) h.queue.push(`r${i}`, {}, now()); // 50 ms ahead
    const t = now();
    assert.throws(() => h.queue.admit({ deadline: t + 20 }, t), isError('UNAVAILABLE', /longer than the 20 ms/));
    h.queue.admit({ deadline: t + 200 }, t);
    const withTimeout = new Harness({ drainRate: drainingAt(1), defaultQueuePolicy: reject(10_000) });
    withTimeout.queue.push('backlog', { rows: 50 }, now());
    assert.throws(() => withTimeout.queue.admit({}, now()), isError('UNAVAILABLE', /longer than the 10 ms/));
    // A DELAY timeout does not refuse: the request is still served after it.
    const delayed = new Harness({ drainRate: drainingAt(1), defaultQueuePolicy: delay(10_000) });
    for (let i = 0; i < 50; i++) delayed.queue.push(`r${i}`, {}, now());
    delayed.queue.admit({}, now());
    h.clear();
    withTimeout.clear();
    delayed.clear();
  });

  it('rows, not requests, make the wait, and a higher priority waits only behind its own level and those above', () => {
    const h = new Harness({ priorityLevels: 2, defaultPriorityLevel: 2, drainRate: drainingAt(1), maxQueueWaitMs: 30 });
    h.queue.push('big', { rows: 40 }, now());
    assert.equal(h.queue.estimatedWaitMs(), 40);
    assert.equal(h.queue.estimatedWaitMs(1), 0);
    assert.throws(() => h.queue.admit({}, now()), isError('UNAVAILABLE', /overloaded/));
    h.queue.admit({ priority: 1 }, now());
  });

  it('admit() judges like push() but queues nothing; without a known drain rate no wait is estimated', () => {
    const h = new Harness({ maxQueuedRequests: 1, maxQueueWaitMs: 1 });
    h.queue.push('a', {}, now());
    assert.ok(Number.isNaN(h.queue.estimatedWaitMs()));
    assert.throws(() => h.queue.admit({}, now()), isError('UNAVAILABLE', /queue is full \(1 requests waiting, the most the server's maxQueueSize allows\)/));
    h.clear();
    h.queue.admit({ bytes: 10 }, now());
    assert.equal(h.queue.size, 0);
    assert.equal(h.queue.bytes, 0);
  });
});

describe('DrainRate', () => {
  it('measures only while a backlog lasts, so idle time does not lower it', () => {
    const rate = new DrainRate();
    assert.ok(Number.isNaN(rate.rowsPerMs));
    rate.taken(8, 0, false); // no backlog: nothing measured
    rate.taken(8, 1000, true); // a backlog starts
    rate.taken(8, 1020, true);
    rate.taken(8, 1040, true);
    rate.taken(4, 1060, true); // 20 rows over 60 ms
    assert.ok(Math.abs(rate.rowsPerMs - 20 / 60) < 1e-9, String(rate.rowsPerMs));
    rate.taken(8, 1070, false); // the backlog ends: the idle time after it is not counted
    rate.taken(8, 9000, true);
    rate.taken(100, 9050, true); // 100 rows over 50 ms, blended in: the newest window weighs 0.3
    assert.ok(Math.abs(rate.rowsPerMs - (20 / 60 + 0.3 * (2 - 20 / 60))) < 1e-9, String(rate.rowsPerMs));
  });

  it('stands in with its estimate until a backlog is measured', () => {
    assert.equal(new DrainRate(() => 3).rowsPerMs, 3);
  });
});
