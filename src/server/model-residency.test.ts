/**
 * The residency rules on a repository whose models each take a known number of bytes, counted by a
 * resident set the test keeps: least recently used idle models go first, pinned and leased ones
 * never, a request waits for its model's load (within a bound), and a budget is parsed as written.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { NereidError } from '../core/errors.js';
import { ModelResidency, parseMemoryBudget, type ModelResidencyOptions } from './model-residency.js';
import { serveFlagName } from './server-options.js';

const MB = 1_000_000;

/** Models of known sizes: loading one grows the resident set by its size, evicting it shrinks it back. */
function repositoryOf(sizes: Record<string, number>, loadMs = 0) {
  let resident = 100 * MB;
  const events: string[] = [];
  const failing = new Set<string>();
  const sequences = new Map<string, number>();
  const repository: ModelResidencyOptions['repository'] = {
    load: async (name: string) => {
      await new Promise((resolve) => setTimeout(resolve, loadMs));
      if (failing.has(name)) throw new Error(`${name} is broken`);
      resident += sizes[name]!;
      events.push(`load ${name}`);
    },
    evict: async (name: string) => {
      resident -= sizes[name]!;
      events.push(`evict ${name}`);
    },
    folderOf: async () => '/nonexistent-model-folder',
    liveSequences: (name: string) => sequences.get(name) ?? 0,
  };
  return { repository, events, failing, sequences, residentSet: () => resident };
}

function residencyOf(sizes: Record<string, number>, options: Partial<ModelResidencyOptions> & { loadMs?: number } = {}) {
  const fake = repositoryOf(sizes, options.loadMs);
  const residency = new ModelResidency({
    repository: fake.repository,
    budgetBytes: 250 * MB,
    loadWaitMs: 2_000,
    maxWaiting: 8,
    logger: pino({ level: 'silent' }),
    residentSetBytes: fake.residentSet,
    ...options,
  });
  for (const name of Object.keys(sizes)) residency.declare(name, 'on_demand');
  return { residency, ...fake };
}

/** Uses a model for one request, as the server does. */
async function use(residency: ModelResidency, name: string): Promise<void> {
  const lease = residency.lease(name);
  assert.ok(lease !== undefined, `${name} is declared`);
  (await lease)();
}

test('a budget for two of three models unloads the least recently used one', async () => {
  const { residency, events } = residencyOf({ a: 100 * MB, b: 100 * MB, c: 100 * MB });
  await use(residency, 'a');
  await use(residency, 'b');
  await use(residency, 'a'); // b is now the least recently used
  await use(residency, 'c');
  assert.deepEqual(events, ['load a', 'load b', 'evict b', 'load c']);
  assert.equal(residency.usedBytes, 200 * MB, 'each is charged its measured growth');
  assert.ok(residency.evicted('b'));
  await use(residency, 'b');
  assert.deepEqual(events.slice(4), ['evict a', 'load b'], 'a was used before c');
  const summary = Object.fromEntries(residency.summary().map((row) => [row.model, row]));
  assert.equal(summary.b!.loads, 2);
  assert.equal(summary.b!.evictions, 1);
  assert.equal(summary.a!.resident, false);
});

test('a model with a request in flight is never unloaded: the next idle one goes instead', async () => {
  const { residency, events } = residencyOf({ a: 100 * MB, b: 100 * MB, c: 100 * MB });
  const holdA = await residency.lease('a')!; // a is in flight, and the least recently used
  await use(residency, 'b');
  await use(residency, 'c');
  assert.deepEqual(events, ['load a', 'load b', 'evict b', 'load c']);
  holdA();
});

test('a model keeping live sequences is not unloaded while an idle one can go, and a load waits for its sequences to end', async () => {
  const { residency, events, sequences } = residencyOf({ a: 100 * MB, b: 100 * MB, c: 100 * MB });
  await use(residency, 'a');
  sequences.set('a', 1); // a is the least recently used, but holds a stream's state between its requests
  await use(residency, 'b');
  await use(residency, 'c');
  assert.deepEqual(events, ['load a', 'load b', 'evict b', 'load c']);
  sequences.set('c', 2);
  const b = residency.lease('b')!;
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.deepEqual(events.slice(4), [], 'both resident models keep sequences: nothing to unload yet');
  sequences.set('a', 0); // its sequence ended (or went idle past its timeout): no lease announces that
  (await b)();
  assert.deepEqual(events.slice(4), ['evict a', 'load b']);
});

test('a model measured over budget once loaded stays loaded when the only model to unload keeps live sequences', async () => {
  const { residency, events, sequences } = residencyOf({ a: 100 * MB, c: 200 * MB });
  await use(residency, 'a');
  sequences.set('a', 1);
  await use(residency, 'c'); // expected at a's 100 MB, measured at 200: over the 250 MB budget, with a keeping its streams
  assert.deepEqual(events, ['load a', 'load c']);
  const summary = Object.fromEntries(residency.summary().map((row) => [row.model, row]));
  assert.equal(summary.c!.resident, true);
  assert.equal(summary.a!.resident, true);
});

test('when every model that could make room is busy, the load waits for one to finish', async () => {
  const { residency, events } = residencyOf({ a: 100 * MB, b: 100 * MB, c: 100 * MB });
  const holdA = await residency.lease('a')!;
  const holdB = await residency.lease('b')!;
  const c = residency.lease('c')!;
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(events, ['load a', 'load b'], 'nothing idle to unload yet');
  holdB();
  (await c)();
  assert.deepEqual(events, ['load a', 'load b', 'evict b', 'load c']);
  holdA();
});

test('pinned models are never unloaded; a model that cannot fit beside them is refused with the sizes', async () => {
  const { residency, repository, events } = residencyOf({ big: 200 * MB, a: 100 * MB });
  residency.declare('big', 'pinned');
  await residency.load('big', () => repository.load('big'));
  await assert.rejects(
    async () => use(residency, 'a'),
    (error: NereidError) => error.code === 'UNAVAILABLE' && /needs about .*budget of 238\.4 MiB \(modelMemoryBudget\) has 47\.7 MiB left/.test(error.message),
  );
  assert.deepEqual(events, ['load big']);
});

test('a model charged more than the whole budget at one load still loads when nothing else is in memory', async () => {
  const { residency, events } = residencyOf({ a: 300 * MB, b: 100 * MB });
  await use(residency, 'a'); // charged 300 MB of a 250 MB budget: it stays, alone
  await use(residency, 'b');
  await use(residency, 'a');
  assert.deepEqual(events, ['load a', 'evict a', 'load b', 'evict b', 'load a']);
});

test('requests for a model that is loading share its one load; a failed load is every waiter\'s 503 with the reason', async () => {
  const { residency, events, failing } = residencyOf({ a: 10 * MB, broken: 10 * MB }, { loadMs: 30 });
  const leases = await Promise.all([1, 2, 3].map(() => residency.lease('a')!));
  assert.deepEqual(events, ['load a'], 'one load for three requests');
  leases.forEach((release) => release());
  failing.add('broken');
  const failures = await Promise.allSettled([1, 2].map(() => residency.lease('broken')!));
  for (const failure of failures) {
    assert.equal(failure.status, 'rejected');
    assert.match((failure as PromiseRejectedResult).reason.message, /could not be loaded on demand: broken is broken/);
  }
  failing.delete('broken');
  await use(residency, 'broken'); // a later request tries again
  assert.ok(residency.summary().find((row) => row.model === 'broken')!.resident);
});

test('a request waits at most loadWaitMs for its model, then gets a 503 with a retry hint; the load goes on', async () => {
  const { residency } = residencyOf({ slow: 10 * MB }, { loadMs: 300, loadWaitMs: 50 });
  await assert.rejects(async () => (await residency.lease('slow')!)(), (error: NereidError) => error.code === 'UNAVAILABLE' && error.overloaded && /not ready within 50 ms \(modelLoadWaitMs\)/.test(error.message));
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(typeof residency.lease('slow'), 'function', 'loaded meanwhile: the next request is served at once');
});

test("a server the CLI started names its flags in these refusals", async () => {
  const { residency } = residencyOf({ slow: 10 * MB }, { loadMs: 300, loadWaitMs: 50, maxWaiting: 1, settingName: serveFlagName });
  const waiting = residency.lease('slow')!;
  await assert.rejects(async () => residency.lease('slow')!, /already waiting for model 'slow' to load, the most one model may have \(--max-queue-size\)/);
  await assert.rejects(async () => (await waiting)(), /not ready within 50 ms \(--model-load-wait-ms\)/);
  await new Promise((resolve) => setTimeout(resolve, 300));
});

test('more requests waiting for one load than maxWaiting are refused at once', async () => {
  const { residency } = residencyOf({ a: 10 * MB }, { loadMs: 100, maxWaiting: 2 });
  const waiting = [residency.lease('a')!, residency.lease('a')!];
  await assert.rejects(async () => residency.lease('a')!, /^NereidError: 2 requests are already waiting for model 'a' to load, the most one model may have \(maxQueueSize\); retry in \d+ s$/);
  for (const lease of await Promise.all(waiting)) lease();
});

test('models not declared are left to the control mode', () => {
  const { residency } = residencyOf({});
  assert.equal(residency.lease('other'), undefined);
});

test('a memory budget is bytes with a unit, or a fraction of the machine', () => {
  const total = 16 * 1024 ** 3;
  assert.equal(parseMemoryBudget('0.5', total), 8 * 1024 ** 3);
  assert.equal(parseMemoryBudget('8GB', total), 8e9);
  assert.equal(parseMemoryBudget('512MiB', total), 512 * 1024 ** 2);
  assert.equal(parseMemoryBudget('1.5 GiB', total), 1.5 * 1024 ** 3);
  assert.equal(parseMemoryBudget(300_000_000, total), 300_000_000);
  assert.throws(() => parseMemoryBudget('lots', total), /bytes \(e\.g\. 8000000000, 8GB, 512MiB\) or a fraction.*got 'lots'/);
  assert.throws(() => parseMemoryBudget('5 parsecs', total), /got '5 parsecs'/);
  assert.throws(() => parseMemoryBudget('2.5', total), /without a unit is a whole number of bytes or a fraction up to 1.*got '2\.5' \(a unit: 2\.5GB, 2\.5GiB\)/);
});
