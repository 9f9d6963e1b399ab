/**
 * RedisCacheStore against a real redis-server (test/support/redis-server.ts): the shared store
 * conformance suite, then what only Redis does (sharing between stores by prefix, an unreachable
 * server). Every store gets a key prefix of its own, so tests never see each other's entries.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { capturingLogger } from '../../test/support/fake-backend.js';
import { freePort, startRedisServer, type RedisTestServer } from '../../test/support/redis-server.js';
import { newCounters } from './cache-store.js';
import { responseCacheStoreConformance } from './cache-store.case.js';
import { RedisCacheStore, type RedisCacheOptions } from './redis-cache-store.js';

let redis: RedisTestServer;
const RUN = `nereid-test:${process.pid}:${randomUUID()}`;
let stores = 0;
const silent = pino({ level: 'silent' });

before(async () => {
  redis = await startRedisServer();
});

after(async () => {
  await redis?.stop();
});

/** A store on the test's redis-server, connected; `prefix` defaults to one no other store uses. */
async function connect(options: Partial<RedisCacheOptions> = {}): Promise<RedisCacheStore> {
  const store = new RedisCacheStore({ host: '127.0.0.1', port: redis.port, prefix: `${RUN}:${stores++}:`, logger: silent, ...options });
  assert.ok(await store.waitUntilReady(10_000), `connected to redis-server on port ${redis.port}`);
  return store;
}

responseCacheStoreConformance('RedisCacheStore', async () => {
  const store = await connect();
  return { store, close: () => store.close() };
});

test('stores with the same prefix share entries (replicas); another prefix sees none of them', async (t) => {
  const prefix = `${RUN}:shared:`;
  const [replicaA, replicaB, otherDeployment] = await Promise.all([connect({ prefix }), connect({ prefix }), connect({ prefix: `${RUN}:other:` })]);
  t.after(() => Promise.all([replicaA, replicaB, otherDeployment].map((store) => store.close())));
  await replicaA.set('answer', Buffer.from([1, 0, 2]), 0);
  assert.deepEqual(await replicaB.get('answer'), Buffer.from([1, 0, 2]), 'a replica reads what another wrote');
  assert.equal(await otherDeployment.get('answer'), undefined, 'another prefix is another namespace');
  assert.deepEqual([replicaA.counters.insertions, replicaB.counters.hits, otherDeployment.counters.misses], [1, 1, 1]);
});

test('a store whose redis is unreachable is unhealthy, answers misses without waiting and never throws; one warning is logged', async (t) => {
  const { logger, lines } = capturingLogger();
  const port = await freePort(); // nothing listens there
  const store = new RedisCacheStore({ host: '127.0.0.1', port, prefix: `${RUN}:nowhere:`, logger });
  t.after(() => store.close());
  for (let waited = 0; !lines.some((line) => line.level === 40) && waited < 10_000; waited += 20) await sleep(20);
  // ioredis keeps retrying (every 100, 200, 300 ms …): give it a few failed attempts more.
  assert.equal(await store.waitUntilReady(700), false, 'it never connects');
  assert.equal(store.healthy, false);
  // Answered from this turn of the event loop: no command is sent or waited on.
  const noIo = new Promise<'waited'>((resolve) => setImmediate(() => resolve('waited')));
  assert.equal(await Promise.race([store.get('k'), noIo]), undefined, 'get answers a miss before any I/O');
  assert.equal(await Promise.race([store.set('k', Buffer.from('v'), 0).then(() => 'stored'), noIo]), 'stored', 'set resolves before any I/O');
  assert.deepEqual(store.counters, { ...newCounters(), misses: 1, errors: 2 });
  const warnings = lines.filter((line) => line.level === 40);
  assert.equal(warnings.length, 1, `one warning for the outage, got ${JSON.stringify(lines)}`);
  assert.match(warnings[0].msg, new RegExp(`redis 127\\.0\\.0\\.1:${port} unreachable`));
});
