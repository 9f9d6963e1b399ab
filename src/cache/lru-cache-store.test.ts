import assert from 'node:assert/strict';
import { test } from 'node:test';
import { responseCacheStoreConformance } from './cache-store.case.js';
import { LruCacheStore } from './lru-cache-store.js';

/** A value of `n` bytes; with 1-character keys an entry costs n + 1 bytes of the budget. */
const bytes = (n: number, fill = 0x61) => Buffer.alloc(n, fill);

async function present(store: LruCacheStore, keys: string[]): Promise<string[]> {
  // Note: get() refreshes recency and counts hits/misses; call this last in a test.
  const found: string[] = [];
  for (const key of keys) if (await store.get(key)) found.push(key);
  return found;
}

test('counts hits and misses, and returns what was stored', async () => {
  const store = new LruCacheStore(1000);
  assert.equal(await store.get('a'), undefined);
  await store.set('a', Buffer.from('hello'), 0);
  assert.deepEqual(await store.get('a'), Buffer.from('hello'));
  assert.deepEqual(await store.get('a'), Buffer.from('hello'));
  assert.equal(await store.get('b'), undefined);
  assert.deepEqual(store.counters, { hits: 2, misses: 2, insertions: 1, evictions: 0, oversized: 0, errors: 0 });
  assert.equal(store.kind, 'local');
  assert.equal(store.healthy, true);
});

test('evicts least recently used first, by bytes; a get refreshes recency', async () => {
  const store = new LruCacheStore(100);
  await store.set('a', bytes(19), 0); // 20
  await store.set('b', bytes(29), 0); // 30 -> 50
  await store.set('c', bytes(9), 0); // 10 -> 60
  await store.set('d', bytes(39), 0); // 40 -> 100: exactly full, nothing evicted
  assert.deepEqual(store.usage, { bytes: 100, entries: 4, capacityBytes: 100 });
  assert.equal(store.counters.evictions, 0);

  // Use 'a' so that 'b' becomes the oldest.
  assert.ok(await store.get('a'));
  await store.set('e', bytes(4), 0); // 5 more: 'b' (30) goes, 'c' stays
  assert.equal(store.counters.evictions, 1);
  assert.deepEqual(store.usage, { bytes: 75, entries: 4, capacityBytes: 100 });
  // Order now (oldest first): c, d, a, e. Check without disturbing it more than needed: 'b' alone is gone.
  assert.equal(await store.get('b'), undefined);

  // A big entry evicts as many of the oldest as it needs: c (10) + d (40) free 50, with 25 left that makes 75 room for 70.
  await store.set('f', bytes(69), 0);
  assert.equal(store.counters.evictions, 3);
  assert.deepEqual(store.usage, { bytes: 95, entries: 3, capacityBytes: 100 });
  assert.deepEqual(await present(store, ['a', 'b', 'c', 'd', 'e', 'f']), ['a', 'e', 'f']);
});

test('an entry larger than the whole budget is not cached and evicts nothing', async () => {
  const store = new LruCacheStore(50);
  await store.set('a', bytes(19), 0);
  await store.set('b', bytes(19), 0);
  await store.set('z', bytes(50), 0); // 51 bytes with its key
  assert.equal(store.counters.oversized, 1);
  assert.equal(store.counters.evictions, 0);
  assert.equal(store.counters.insertions, 2);
  assert.deepEqual(store.usage, { bytes: 40, entries: 2, capacityBytes: 50 });
  assert.deepEqual(await present(store, ['a', 'b', 'z']), ['a', 'b']);
  // Exactly the budget fits (after evicting everything else).
  await store.set('y', bytes(49), 0);
  assert.equal(store.counters.oversized, 1);
  assert.deepEqual(store.usage, { bytes: 50, entries: 1, capacityBytes: 50 });
});

test('entries expire after their TTL (injected clock); TTL 0 never expires', async () => {
  let now = 1_000;
  const store = new LruCacheStore(1000, () => now);
  await store.set('t', bytes(9), 2); // expires at 3000
  await store.set('p', bytes(9), 0);
  now = 2_999;
  assert.ok(await store.get('t'));
  now = 3_000;
  assert.equal(await store.get('t'), undefined, 'expired at exactly its TTL');
  assert.equal(store.usage!.entries, 1, 'an expired entry found on lookup is dropped');
  assert.equal(store.usage!.bytes, 10);
  now = 1e12;
  assert.ok(await store.get('p'));
  assert.deepEqual({ hits: store.counters.hits, misses: store.counters.misses }, { hits: 2, misses: 1 });
  // Fractional seconds work too.
  await store.set('f', bytes(1), 0.25);
  now += 249;
  assert.ok(await store.get('f'));
  now += 1;
  assert.equal(await store.get('f'), undefined);
});

test('replacing a key keeps byte accounting exact and does not evict others needlessly', async () => {
  const store = new LruCacheStore(100);
  await store.set('a', bytes(39), 0); // 40
  await store.set('b', bytes(39), 0); // 80
  await store.set('a', bytes(9), 0); // a: 40 -> 10
  assert.deepEqual(store.usage, { bytes: 50, entries: 2, capacityBytes: 100 });
  await store.set('a', bytes(59), 0); // a: 10 -> 60, total 100: b stays
  assert.deepEqual(store.usage, { bytes: 100, entries: 2, capacityBytes: 100 });
  assert.equal(store.counters.evictions, 0);
  assert.deepEqual(await store.get('a'), bytes(59));
  await store.set('b', bytes(69), 0); // b: 40 -> 70; a (60) must go
  assert.deepEqual(store.usage, { bytes: 70, entries: 1, capacityBytes: 100 });
  assert.equal(store.counters.evictions, 1);
  // Keys count with their length.
  await store.set('longer-key', bytes(20), 0);
  assert.equal(store.usage!.bytes, 100);
  await store.close();
  assert.deepEqual(store.usage, { bytes: 0, entries: 0, capacityBytes: 100 });
});

responseCacheStoreConformance('LruCacheStore', async ({ capacityBytes }) => {
  const store = new LruCacheStore(capacityBytes);
  return { store, close: () => store.close() };
});
