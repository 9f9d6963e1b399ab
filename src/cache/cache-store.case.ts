/**
 * What every ResponseCacheStore must do, as one suite each implementation's test file runs against
 * a store of its own (the in-memory LRU, Redis on a real redis-server). What only one of them does
 * (eviction by bytes, sharing between replicas, outages) stays in that implementation's tests.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { newCounters, type ResponseCacheStore } from './cache-store.js';

export interface StoreUnderTest {
  store: ResponseCacheStore;
  /** Closes the store (again) and anything the factory started for it. */
  close(): Promise<void>;
}

export type StoreFactory = (options: { capacityBytes: number }) => Promise<StoreUnderTest>;

/** Room for the largest value below and everything else a test stores. */
const CAPACITY_BYTES = 8 * 1024 * 1024;

/** Every byte value, 0x00 and invalid UTF-8 included. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, index) => index));

/** 1 MiB of a pattern that is not periodic in short runs. */
const ONE_MIB = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, index) => (index * 31 + (index >>> 8) * 7) & 0xff));

export function responseCacheStoreConformance(name: string, make: StoreFactory): void {
  describe(`${name} is a ResponseCacheStore`, () => {
    const open = async (t: { after: (fn: () => Promise<void>) => void }): Promise<ResponseCacheStore> => {
      const { store, close } = await make({ capacityBytes: CAPACITY_BYTES });
      t.after(close);
      return store;
    };

    test('get of a missing key is undefined and counts one miss, nothing else', async (t) => {
      const store = await open(t);
      assert.equal(await store.get('never-set'), undefined);
      assert.deepEqual(store.counters, { ...newCounters(), misses: 1 });
    });

    test('set then get returns the same bytes (0x00, invalid UTF-8, 1 MiB) and counts hits and insertions', async (t) => {
      const store = await open(t);
      await store.set('all-bytes', ALL_BYTES, 0);
      await store.set('one-mib', ONE_MIB, 0);
      await store.set('empty-value', Buffer.alloc(0), 0);
      const allBytes = await store.get('all-bytes');
      assert.ok(Buffer.isBuffer(allBytes), `a Buffer comes back, got ${typeof allBytes}`);
      assert.ok(allBytes.equals(ALL_BYTES), `got ${allBytes.toString('hex')}`);
      const big = await store.get('one-mib');
      assert.ok(big, 'the 1 MiB value is there');
      assert.equal(big.length, ONE_MIB.length);
      assert.ok(big.equals(ONE_MIB), 'the 1 MiB value comes back byte for byte');
      const empty = await store.get('empty-value');
      assert.ok(empty !== undefined && empty.length === 0, 'an empty value is stored as an empty value, not a miss');
      assert.deepEqual(store.counters, { ...newCounters(), hits: 3, insertions: 3 });
    });

    test('a second set of a key replaces its value entirely', async (t) => {
      const store = await open(t);
      await store.set('k', Buffer.from('a longer first value'), 0);
      await store.set('k', Buffer.from('short'), 0);
      assert.deepEqual(await store.get('k'), Buffer.from('short'));
      assert.equal(store.counters.insertions, 2);
    });

    test('an entry with ttlSeconds expires; ttl 0 and a long ttl keep theirs', async (t) => {
      const store = await open(t);
      await store.set('one-second', Buffer.from('1'), 1);
      await store.set('half-second', Buffer.from('0.5'), 0.5);
      await store.set('forever', Buffer.from('0'), 0);
      await store.set('an-hour', Buffer.from('3600'), 3600);
      await sleep(1500);
      assert.equal(await store.get('one-second'), undefined, 'expired after its ttl of 1 s');
      assert.equal(await store.get('half-second'), undefined, 'fractional ttls expire too');
      assert.deepEqual(await store.get('forever'), Buffer.from('0'), 'ttl 0 keeps the entry');
      assert.deepEqual(await store.get('an-hour'), Buffer.from('3600'), 'an entry within its ttl is kept');
      assert.deepEqual({ hits: store.counters.hits, misses: store.counters.misses }, { hits: 2, misses: 2 });
    });

    test('keys are independent: no prefix, separator or encoding collisions', async (t) => {
      const store = await open(t);
      const keys = ['a', 'ab', 'a:b', 'a b', 'A', 'b', '', 'ключ', 'key\nwith\nnewlines', 'x'.repeat(1000)];
      for (const [index, key] of keys.entries()) await store.set(key, Buffer.from(`value ${index}`), 0);
      for (const [index, key] of keys.entries()) {
        assert.deepEqual(await store.get(key), Buffer.from(`value ${index}`), `key ${JSON.stringify(key.slice(0, 20))}`);
      }
      for (const absent of ['abc', 'a:', ' a', 'ab ', 'ключи']) assert.equal(await store.get(absent), undefined, `key ${JSON.stringify(absent)}`);
    });

    test('many concurrent sets and gets settle consistently', async (t) => {
      const store = await open(t);
      const count = 200;
      const value = (index: number, round: number) => Buffer.from(`entry ${index}, round ${round}, `.repeat(1 + (index % 5)));
      await Promise.all(Array.from({ length: count }, (_, index) => store.set(`key-${index}`, value(index, 0), 0)));
      const first = await Promise.all(Array.from({ length: count }, (_, index) => store.get(`key-${index}`)));
      first.forEach((found, index) => assert.deepEqual(found, value(index, 0), `key-${index}`));
      // Writers and readers of the same keys at once: each read sees a whole value that was written.
      const mixed = await Promise.all(
        Array.from({ length: count }, (_, index) => (index % 2 === 0 ? store.set(`key-${index >> 1}`, value(index >> 1, 1), 0) : store.get(`key-${index >> 1}`))),
      );
      mixed.forEach((found, index) => {
        if (index % 2 === 0) return;
        const key = index >> 1;
        assert.ok(found && (found.equals(value(key, 0)) || found.equals(value(key, 1))), `key-${key}: ${found?.toString()}`);
      });
      for (let index = 0; index < count / 2; index++) assert.deepEqual(await store.get(`key-${index}`), value(index, 1), `key-${index} after the second round`);
      assert.equal(store.counters.insertions, count + count / 2);
      assert.equal(store.counters.hits, count + count / 2 + count / 2);
      assert.equal(store.counters.misses, 0);
    });

    test('kind, health and usage are as documented; close() resolves and a closed store answers misses', async (t) => {
      const store = await open(t);
      assert.ok(store.kind === 'local' || store.kind === 'redis', `kind ${store.kind}`);
      assert.equal(store.healthy, true, 'a reachable store is healthy');
      await store.set('k', Buffer.from('v'), 0);
      if (store.kind === 'local') {
        assert.equal(store.usage?.capacityBytes, CAPACITY_BYTES, 'a local store reports its budget');
        assert.equal(store.usage?.entries, 1);
        assert.ok(store.usage!.bytes >= 1);
      } else {
        assert.equal(store.usage, undefined, 'usage is the local store\'s alone');
      }
      await store.close();
      assert.equal(await store.get('k'), undefined, 'nothing is answered after close');
      await store.set('k2', Buffer.from('v'), 0); // resolves without throwing
    });
  });
}
