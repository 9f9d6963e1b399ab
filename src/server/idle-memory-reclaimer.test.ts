// test: own process — it measures the heap and resident memory of the process it runs in.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdleMemoryReclaimer, processMemory } from './idle-memory-reclaimer.js';

const MB = 1024 * 1024;

/** A server and a heap whose numbers the test sets; collect frees what `garbage` says. */
function fixture(options: { growthMb?: number; recheckChecks?: number } = {}) {
  const state = { requests: 0, inFlight: 0, bodyBytes: 0, arrayBuffers: 10 * MB, garbage: 0, collections: 0, trims: 0, resident: 200 * MB, freePages: 0 };
  const reclaimer = new IdleMemoryReclaimer(
    () => ({ requestsStarted: state.requests, requestsInFlight: state.inFlight, bodyBytesHeld: state.bodyBytes }),
    {
      arrayBufferBytes: () => state.arrayBuffers,
      collect: () => {
        state.collections += 1;
        state.arrayBuffers -= state.garbage;
        state.garbage = 0;
      },
      returnFreePages: () => {
        state.trims += 1;
        state.resident -= state.freePages;
        state.freePages = 0;
      },
      residentBytes: () => state.resident,
    },
    { growthBytes: (options.growthMb ?? 64) * MB, checkEveryMs: 1000, recheckMs: (options.recheckChecks ?? 10) * 1000, maxRecheckMs: 40_000 },
  );
  return { state, reclaimer };
}

test('a quiet server whose ArrayBuffers grew past the threshold is collected once', () => {
  const { state, reclaimer } = fixture();
  state.requests = 120;
  state.arrayBuffers += 300 * MB;
  state.garbage = 300 * MB;
  reclaimer.check(); // requests started since the last look: not quiet yet
  assert.equal(state.collections, 0);
  reclaimer.check();
  assert.equal(state.collections, 1);
  assert.equal(state.arrayBuffers, 10 * MB);
  reclaimer.check();
  assert.equal(state.collections, 1, 'nothing new to collect');
});

test('no collection while a request body is held, a request is in flight or requests keep arriving', () => {
  const { state, reclaimer } = fixture();
  state.arrayBuffers += 200 * MB;
  state.garbage = 200 * MB;
  state.bodyBytes = 9 * MB;
  reclaimer.check();
  reclaimer.check();
  assert.equal(state.collections, 0, 'a body is held');
  state.bodyBytes = 0;
  state.inFlight = 1;
  reclaimer.check();
  assert.equal(state.collections, 0, 'a long request is running');
  state.inFlight = 0;
  for (let look = 0; look < 3; look += 1) {
    state.requests += 1;
    reclaimer.check();
  }
  assert.equal(state.collections, 0, 'requests started between every look');
  reclaimer.check();
  assert.equal(state.collections, 1);
});

test('growth under the threshold is left to V8', () => {
  const { state, reclaimer } = fixture({ growthMb: 64 });
  state.arrayBuffers += 63 * MB;
  reclaimer.check();
  reclaimer.check();
  assert.equal(state.collections, 0);
  state.arrayBuffers += 2 * MB;
  reclaimer.check();
  assert.equal(state.collections, 1);
});

test('a look that fails (process.memoryUsage out of file descriptors) is skipped, and the timer goes on', async () => {
  let looks = 0;
  const warnings: string[] = [];
  const reclaimer = new IdleMemoryReclaimer(
    () => ({ requestsStarted: 0, requestsInFlight: 0, bodyBytesHeld: 0 }),
    {
      arrayBufferBytes: () => {
        looks += 1;
        if (looks > 1) throw Object.assign(new Error('EMFILE: too many open files, uv_resident_set_memory'), { code: 'EMFILE' });
        return 0;
      },
      collect: () => undefined,
    },
    { checkEveryMs: 5 },
    { warn: (_: unknown, message: string) => warnings.push(message), debug: () => undefined } as never,
  );
  reclaimer.start();
  // Looks after the failing one show the timer went on; waited for rather than timed (a loaded machine runs timers late).
  for (const deadline = Date.now() + 10_000; looks < 3 && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 10));
  reclaimer.stop();
  assert.ok(looks >= 3, `looks: ${looks}`);
  assert.match(warnings[0], /idle memory check skipped: EMFILE/);
});

test('growth counts from the lowest level seen, so memory V8 freed on its own is not counted as new', () => {
  const { state, reclaimer } = fixture({ growthMb: 64 });
  state.arrayBuffers += 50 * MB;
  reclaimer.check();
  state.arrayBuffers = 5 * MB; // V8 collected under load
  reclaimer.check();
  state.arrayBuffers += 60 * MB;
  reclaimer.check();
  assert.equal(state.collections, 0, '60 MB over the lowest level, under the threshold');
});

test('the process probe finds a collector without --expose-gc and leaves no gc global behind', () => {
  const exposedBefore = (globalThis as { gc?: unknown }).gc;
  const probe = processMemory();
  assert.equal(typeof probe.collect, 'function');
  // Started with --expose-gc (NODE_OPTIONS), the process's own gc is the one used.
  assert.equal((globalThis as { gc?: unknown }).gc, exposedBefore);
  let garbage: Buffer[] | undefined = Array.from({ length: 8 }, () => Buffer.alloc(4 * MB, 1));
  assert.ok(probe.arrayBufferBytes() >= 32 * MB);
  garbage = undefined;
  probe.collect!();
  assert.equal(garbage, undefined);
  assert.ok(probe.arrayBufferBytes() < 32 * MB, `ArrayBuffers after the collection: ${probe.arrayBufferBytes()} bytes`);
});

test('memory a collection could not free (still referenced then) is collected again after a quiet while, less often each time it stays', () => {
  const { state, reclaimer } = fixture({ recheckChecks: 10 });
  // A burst: 300 MB, of which 100 MB still referenced at the first collection (open keep-alive connections, say).
  state.requests = 1;
  state.arrayBuffers += 300 * MB;
  state.garbage = 200 * MB;
  reclaimer.check();
  reclaimer.check();
  assert.equal(state.collections, 1);
  assert.equal(state.arrayBuffers, 110 * MB);
  state.garbage = 100 * MB; // the connections closed
  const looksUntilCollected = () => {
    const before = state.collections;
    for (let look = 1; look <= 100; look += 1) {
      reclaimer.check();
      if (state.collections > before) return look;
    }
    return Infinity;
  };
  assert.equal(looksUntilCollected(), 10, 'ten quiet looks after the first collection');
  assert.equal(state.arrayBuffers, 10 * MB, 'back to where it started');
  // Legitimately held memory (a cache): rechecks back off, 10, 20, 40 looks, then stay at the 40 s bound.
  state.arrayBuffers += 100 * MB;
  state.requests += 1;
  reclaimer.check();
  reclaimer.check();
  assert.equal(state.collections, 3, 'grown by 100 MB: collected (nothing freed)');
  assert.deepEqual([looksUntilCollected(), looksUntilCollected(), looksUntilCollected(), looksUntilCollected()], [10, 20, 40, 40]);
});

test('free pages are handed back at the next quiet look after a collection, once, and never while busy', () => {
  const { state, reclaimer } = fixture();
  state.arrayBuffers += 300 * MB;
  state.garbage = 300 * MB;
  reclaimer.check();
  assert.equal(state.collections, 1);
  assert.equal(state.trims, 0, 'V8 frees what it collected in the background: not in the same look');
  state.requests += 1;
  reclaimer.check();
  assert.equal(state.trims, 0, 'a request started since the last look');
  reclaimer.check();
  assert.equal(state.trims, 1);
  reclaimer.check();
  reclaimer.check();
  assert.equal(state.trims, 1, 'nothing collected since');
  assert.equal(reclaimer.trimmed, 1);
});

test('a resident set grown by the threshold without garbage Buffers (native memory freed) is trimmed once, and memory still in use is not trimmed again', () => {
  const { state, reclaimer } = fixture({ growthMb: 64 });
  state.resident += 63 * MB;
  reclaimer.check();
  assert.equal(state.trims, 0, 'under the threshold');
  state.resident += 200 * MB;
  state.freePages = 150 * MB;
  state.requests += 1;
  reclaimer.check();
  assert.equal(state.trims, 0, 'not quiet');
  reclaimer.check();
  assert.equal(state.trims, 1);
  assert.equal(state.resident, 313 * MB);
  assert.equal(reclaimer.returnedBytes, 150 * MB, 'what the resident set fell by across the trim');
  assert.equal(state.collections, 0, 'no garbage Buffers: no collection');
  for (let look = 0; look < 5; look += 1) reclaimer.check();
  assert.equal(state.trims, 1, '113 MB still in use is the new level growth counts from');
  state.resident += 64 * MB;
  reclaimer.check();
  assert.equal(state.trims, 2);
});

test("on glibc, the process probe returns freed heap pages that malloc kept (a burst of 100 KiB buffers, some still held)", async (t) => {
  const probe = processMemory();
  if (!probe.returnFreePages) {
    t.skip('no glibc malloc_trim on this platform');
    return;
  }
  // 100 KiB is under glibc's mmap threshold: the buffers come from its heap, and every 80th one kept pins the pages between them.
  let burst: Buffer[] | undefined = Array.from({ length: 3000 }, () => Buffer.alloc(100 * 1024, 1));
  const pinned = burst.filter((_, index) => index % 80 === 0);
  burst = undefined;
  probe.collect!();
  for (let wait = 0; wait < 40 && probe.arrayBufferBytes() > 64 * MB; wait += 1) await new Promise((resolve) => setTimeout(resolve, 50));
  const held = probe.residentBytes!();
  probe.returnFreePages();
  const after = probe.residentBytes!();
  assert.ok(held - after >= 150 * MB, `resident ${Math.round(held / MB)} MB before, ${Math.round(after / MB)} MB after handing back ~290 MB freed`);
  assert.equal(pinned.length, 38);
});
