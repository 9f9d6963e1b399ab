/**
 * The response cache end to end: real servers over real HTTP, generated ONNX models with
 * response_cache { enable: true } and dynamic batching, an in-process LRU and a real Redis shared
 * by two servers. What a client and an operator can see is checked: answers (byte for byte),
 * /v2/models/{m}/stats cache_hit/cache_miss and execution_count, the store's health and counters, logs.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { Client } from 'undici';
import { bytesElements } from '../src/core/datatype.js';
import { RedisCacheStore } from '../src/cache/redis-cache-store.js';
import type { ResponseCacheStore } from '../src/cache/cache-store.js';
import { addSubModel, identityModel, scaleModel, writeModel } from '../src/onnx/test-models.js';
import { until } from './support/checks.js';
import { freePort, startRedisServer, type RedisTestServer } from './support/redis-server.js';
import { startTestServer, type TestServer } from './support/test-server.js';

// ---------------------------------------------------------------------------------------------
// Models

const cachedConfig = (delayUs: number, cache = '', queuePolicy = '') => `
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: ${delayUs} ${queuePolicy} }
response_cache { enable: true ${cache} }
`;

/** Long enough that a request waits in the queue while the test aborts it or sends identical ones. */
const SLOW_DELAY_US = 500_000;

async function writeLocalModels(repo: string): Promise<void> {
  await writeModel(repo, 'addsub', 1, addSubModel(), cachedConfig(2000));
  await writeModel(repo, 'addsub_sf', 1, addSubModel(), cachedConfig(5000));
  await writeModel(repo, 'addsub_ttl', 1, addSubModel(), cachedConfig(1000, 'ttl_seconds: 0.2'));
  await writeModel(repo, 'addsub_val', 1, addSubModel(), cachedConfig(1000));
  await writeModel(repo, 'addsub_slow', 1, addSubModel(), cachedConfig(SLOW_DELAY_US, '', 'default_queue_policy { allow_timeout_override: true }'));
  await writeModel(repo, 'addsub_plain', 1, addSubModel(), 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1000 }\n');
  // Two versions with different behaviour under one name: ×1 and ×2.
  await writeModel(repo, 'scale', 1, scaleModel(1), 'max_batch_size: 4\nversion_policy: { all: {} }\ndynamic_batching { }\nresponse_cache { enable: true }\n');
  await writeModel(repo, 'scale', 2, scaleModel(2));
  await writeModel(repo, 'text', 1, identityModel('string'), 'max_batch_size: 8\nresponse_cache { enable: true }\n');
}

async function writeRedisModels(repo: string): Promise<void> {
  await writeModel(repo, 'shared', 1, addSubModel(), cachedConfig(1000));
  await writeModel(repo, 'traffic', 1, addSubModel(), cachedConfig(500));
}

// ---------------------------------------------------------------------------------------------
// Wire helpers

interface AddSubRequest {
  body: string;
  expected: { OUTPUT0: number[]; OUTPUT1: number[] };
}

/** One row of the add/sub model; `base` picks the input, so equal bases are identical requests. */
function addSub(base: number, options: { id?: string; parameters?: Record<string, unknown>; binary?: boolean } = {}): AddSubRequest {
  const input0 = Array.from({ length: 16 }, (_, index) => base * 100 + index);
  const input1 = Array.from({ length: 16 }, (_, index) => ((index * 7) % 5) - 2);
  const parameters = { ...options.parameters, ...(options.binary ? { binary_data_output: true } : {}) };
  return {
    body: JSON.stringify({
      ...(options.id ? { id: options.id } : {}),
      ...(Object.keys(parameters).length ? { parameters } : {}),
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: input0 },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: input1 },
      ],
    }),
    expected: {
      OUTPUT0: input0.map((value, index) => value + input1[index]),
      OUTPUT1: input0.map((value, index) => value - input1[index]),
    },
  };
}

interface Raw {
  status: number;
  body: Buffer;
  headers: Headers;
}

async function post(base: string, path: string, body: string): Promise<Raw> {
  const response = await fetch(`${base}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()), headers: response.headers };
}

const infer = (server: TestServer, model: string, body: string, version?: string) =>
  post(server.url, `/v2/models/${model}${version ? `/versions/${version}` : ''}/infer`, body);

/** The outputs of a JSON or binary response, as numbers by output name. */
function outputsOf(raw: Raw): Record<string, number[]> {
  assert.equal(raw.status, 200, raw.body.toString('utf8'));
  const lengthHeader = raw.headers.get('inference-header-content-length');
  const headerLength = lengthHeader === null ? raw.body.length : Number(lengthHeader);
  const header = JSON.parse(raw.body.subarray(0, headerLength).toString('utf8')) as {
    outputs: { name: string; datatype: string; data?: number[]; parameters?: { binary_data_size?: number } }[];
  };
  let offset = headerLength;
  const outputs: Record<string, number[]> = {};
  for (const output of header.outputs) {
    const size = output.parameters?.binary_data_size;
    if (size === undefined) {
      outputs[output.name] = output.data!;
      continue;
    }
    const bytes = Buffer.from(raw.body.subarray(offset, offset + size));
    offset += size;
    const values = output.datatype === 'FP32' ? new Float32Array(bytes.buffer, bytes.byteOffset, size / 4) : new Int32Array(bytes.buffer, bytes.byteOffset, size / 4);
    outputs[output.name] = Array.from(values);
  }
  return outputs;
}

function assertAnswer(raw: Raw, request: AddSubRequest, what = 'answer'): void {
  assert.deepEqual(outputsOf(raw), request.expected, what);
}

interface Stats {
  inference_count: number;
  execution_count: number;
  inference_stats: Record<'success' | 'fail' | 'queue' | 'cache_hit' | 'cache_miss', { count: number; ns: number }>;
}

async function stats(server: TestServer, model: string, version?: string): Promise<Stats> {
  const response = await fetch(`${server.url}/v2/models/${model}${version ? `/versions/${version}` : ''}/stats`);
  assert.equal(response.status, 200);
  const body = (await response.json()) as { model_stats: Stats[] };
  assert.equal(body.model_stats.length, 1);
  return body.model_stats[0];
}

/** execution_count and the cache counts of a model's stats, for compact assertions. */
async function counts(server: TestServer, model: string, version?: string) {
  const s = await stats(server, model, version);
  return { executions: s.execution_count, hits: s.inference_stats.cache_hit.count, misses: s.inference_stats.cache_miss.count };
}


// ---------------------------------------------------------------------------------------------
// In-process LRU cache

describe('local cache', () => {
  let cached: TestServer;
  let plain: TestServer;
  const plainLog: string[] = [];
  let store: ResponseCacheStore;

  before(async () => {
    cached = await startTestServer({ models: writeLocalModels, server: { cacheConfig: 'local,size=1048576' } });
    // The same repository served without any cache: the reference for byte-identical answers.
    plain = await startTestServer({ repoDir: cached.repoDir, server: { logger: capturingLogger(plainLog) } });
    store = cached.server.responseCache!;
    assert.equal(store.kind, 'local');
    assert.equal(plain.server.responseCache, undefined);
    // Its models ask for a cache the server does not have: said once per version, not silently ignored.
    const warned = warnings(plainLog).map((line) => line.msg).filter((message) => /enables response_cache, but the server has no cache/.test(message));
    assert.ok(warned.some((message) => message.startsWith("model 'addsub' version 1 enables response_cache")), warned.join('\n'));
  });

  after(async () => {
    await plain?.close();
    await cached?.close();
  });

  test('a repeated request is a hit: counted in stats, not executed again, and answered byte for byte the same (JSON and binary)', async () => {
    const json = addSub(1, { id: 'same-request' });
    const first = await infer(cached, 'addsub', json.body);
    assertAnswer(first, json);
    assert.deepEqual(await counts(cached, 'addsub'), { executions: 1, hits: 0, misses: 1 });

    const second = await infer(cached, 'addsub', json.body);
    assert.deepEqual(await counts(cached, 'addsub'), { executions: 1, hits: 1, misses: 1 });
    assert.ok(second.body.equals(first.body), `hit:\n${second.body}\nmiss:\n${first.body}`);

    // cache_bypass: computed again, and neither looked up nor counted as hit or miss.
    const bypass = addSub(1, { id: 'same-request', parameters: { cache_bypass: true } });
    const bypassed = await infer(cached, 'addsub', bypass.body);
    assert.deepEqual(await counts(cached, 'addsub'), { executions: 2, hits: 1, misses: 1 });
    assert.ok(bypassed.body.equals(first.body), 'bypassed answer');

    // A server with no cache at all answers the same bytes.
    const uncached = await infer(plain, 'addsub', json.body);
    assert.ok(uncached.body.equals(first.body), 'answer of a server without cache');

    // Binary outputs: binary_data_output is wire format, not part of the key, so this is a hit on the entry above.
    const binary = addSub(1, { id: 'same-request', binary: true });
    const binaryHit = await infer(cached, 'addsub', binary.body);
    assert.deepEqual(await counts(cached, 'addsub'), { executions: 2, hits: 2, misses: 1 });
    assertAnswer(binaryHit, binary, 'binary hit');
    const binaryBypass = await infer(cached, 'addsub', addSub(1, { id: 'same-request', binary: true, parameters: { cache_bypass: true } }).body);
    const binaryUncached = await infer(plain, 'addsub', binary.body);
    assert.deepEqual(await counts(cached, 'addsub'), { executions: 3, hits: 2, misses: 1 });
    for (const [what, raw] of [['bypassed', binaryBypass], ['uncached server', binaryUncached]] as const) {
      assert.equal(raw.headers.get('content-type'), binaryHit.headers.get('content-type'), what);
      assert.equal(raw.headers.get('inference-header-content-length'), binaryHit.headers.get('inference-header-content-length'), what);
      assert.ok(raw.body.equals(binaryHit.body), `binary ${what} answer differs from the cached one`);
    }

    // As Triton's statistics count them: a hit is a success and passes the queue, but is neither an inference nor an execution.
    const s = await stats(cached, 'addsub');
    assert.equal(s.inference_stats.success.count, 5);
    assert.equal(s.inference_stats.queue.count, 5);
    assert.equal(s.inference_count, 3);
    assert.ok(s.inference_stats.cache_hit.ns > 0 && s.inference_stats.cache_miss.ns > 0, 'cache time is recorded');

    // A different input is a miss.
    const other = addSub(2);
    assertAnswer(await infer(cached, 'addsub', other.body), other);
    assert.deepEqual(await counts(cached, 'addsub'), { executions: 4, hits: 2, misses: 2 });
  });

  test('a hit answers its outputs in the order its request asked for them, byte for byte as without the cache', async () => {
    const request = JSON.parse(addSub(11).body);
    const asking = (outputs: string[]) => JSON.stringify({ ...request, outputs: outputs.map((name) => ({ name })) });
    const names = (raw: Raw) => (JSON.parse(raw.body.toString('utf8')) as { outputs: { name: string }[] }).outputs.map((output) => output.name);
    const first = await infer(cached, 'addsub', asking(['OUTPUT1', 'OUTPUT0']));
    assert.deepEqual(names(first), ['OUTPUT1', 'OUTPUT0']);
    const before = await counts(cached, 'addsub');
    for (const order of [['OUTPUT0', 'OUTPUT1'], ['OUTPUT1', 'OUTPUT0']]) {
      const hit = await infer(cached, 'addsub', asking(order));
      assert.deepEqual(names(hit), order);
      assert.equal(hit.body.toString('utf8'), (await infer(plain, 'addsub', asking(order))).body.toString('utf8'));
    }
    assert.equal((await counts(cached, 'addsub')).hits, before.hits + 2, 'both were hits');
  });

  test('a cache_bypass that is not a boolean is refused (400), never read as false and answered from the cache', async () => {
    const request = addSub(12);
    assertAnswer(await infer(cached, 'addsub', request.body), request, 'fills the cache');
    const before = await counts(cached, 'addsub');
    for (const [value, shown] of [['yes', 'string "yes"'], ['true', 'string "true"'], [1, 'number 1']] as const) {
      const raw = await infer(cached, 'addsub', addSub(12, { parameters: { cache_bypass: value } }).body);
      assert.equal(raw.status, 400, raw.body.toString('utf8'));
      assert.match(JSON.parse(raw.body.toString('utf8')).error, new RegExp(`request parameter 'cache_bypass' must be a boolean \\(true or false\\), got ${shown}`));
    }
    assert.equal((await counts(cached, 'addsub')).hits, before.hits, 'no hit answered them');
    assertAnswer(await infer(cached, 'addsub', addSub(12, { parameters: { cache_bypass: true } }).body), request, 'true computes');
  });

  test('BYTES answers come from the cache intact, and changing an answer in place (library API) does not change the cache', async () => {
    const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, 3], data: ['héllo', '', 'wörld ✓'] }] });
    const computed = await infer(cached, 'text', body);
    assert.equal(computed.status, 200, computed.body.toString('utf8'));
    const hit = await infer(cached, 'text', body);
    assert.ok(hit.body.equals(computed.body), `hit:\n${hit.body}\ncomputed:\n${computed.body}`);
    assert.ok((await infer(plain, 'text', body)).body.equals(computed.body), 'a server without cache answers the same');
    assert.deepEqual(JSON.parse(hit.body.toString('utf8')).outputs[0].data, ['héllo', '', 'wörld ✓']);

    const request = () => ({
      model: 'text',
      inputs: [{ name: 'INPUT0', datatype: 'BYTES' as const, shape: [1, 3], data: ['héllo', '', 'wörld ✓'].map((text) => Buffer.from(text)) }],
    });
    const inProcess = await cached.server.infer(request());
    bytesElements(inProcess.outputs[0].data)[0].fill(0x21);
    const again = await cached.server.infer(request());
    assert.deepEqual(bytesElements(again.outputs[0].data).map((element) => element.toString('utf8')), ['héllo', '', 'wörld ✓']);
    assert.deepEqual(await counts(cached, 'text'), { executions: 1, hits: 3, misses: 1 });
  });

  test('an entry expires after ttl_seconds and the request is computed again', async () => {
    const request = addSub(3);
    assertAnswer(await infer(cached, 'addsub_ttl', request.body), request);
    assertAnswer(await infer(cached, 'addsub_ttl', request.body), request);
    assert.deepEqual(await counts(cached, 'addsub_ttl'), { executions: 1, hits: 1, misses: 1 });
    await sleep(250);
    assertAnswer(await infer(cached, 'addsub_ttl', request.body), request);
    assert.deepEqual(await counts(cached, 'addsub_ttl'), { executions: 2, hits: 1, misses: 2 });
    assertAnswer(await infer(cached, 'addsub_ttl', request.body), request);
    assert.deepEqual(await counts(cached, 'addsub_ttl'), { executions: 2, hits: 2, misses: 2 });
  });

  test('versions of a model are cached apart: the same input gets each version its own answer', async () => {
    const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3.5, -4] }] });
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(outputsOf(await infer(cached, 'scale', body, '1')).OUTPUT0, [1, 2, 3.5, -4], `v1 round ${round}`);
      assert.deepEqual(outputsOf(await infer(cached, 'scale', body, '2')).OUTPUT0, [2, 4, 7, -8], `v2 round ${round}`);
    }
    // Without a version the latest (2) answers, from its own entry.
    assert.deepEqual(outputsOf(await infer(cached, 'scale', body)).OUTPUT0, [2, 4, 7, -8]);
    assert.deepEqual(await counts(cached, 'scale', '1'), { executions: 1, hits: 1, misses: 1 });
    assert.deepEqual(await counts(cached, 'scale', '2'), { executions: 1, hits: 2, misses: 1 });
  });

  test('a model without response_cache never caches, even on a server with a cache', async () => {
    const before = { ...store.counters };
    const request = addSub(4);
    for (let round = 0; round < 3; round++) assertAnswer(await infer(cached, 'addsub_plain', request.body), request);
    assert.deepEqual(await counts(cached, 'addsub_plain'), { executions: 3, hits: 0, misses: 0 });
    assert.deepEqual(store.counters, before, 'the store was not touched');
  });

  test('single-flight: 20 identical concurrent requests run the model once and all get the right answer', async () => {
    const request = addSub(5);
    const answers = await Promise.all(Array.from({ length: 20 }, () => infer(cached, 'addsub_sf', request.body)));
    answers.forEach((answer, index) => assertAnswer(answer, request, `client ${index}`));
    assert.ok(answers.every((answer) => answer.body.equals(answers[0].body)));
    const s = await stats(cached, 'addsub_sf');
    assert.equal(s.execution_count, 1);
    assert.equal(s.inference_stats.cache_miss.count, 1);
    assert.equal(s.inference_stats.cache_hit.count, 19);
    assert.equal(s.inference_stats.success.count, 20);
    assert.equal(s.inference_count, 1);
  });

  test('validation failures are never cached; a failure after the key (bad priority) is not cached either', async () => {
    const before = { ...store.counters };
    const valid = addSub(6);
    const parsed = JSON.parse(valid.body);
    const invalid = [
      // 15 elements for [1,15]: the model expects [-1,16]
      { inputs: [{ ...parsed.inputs[0], shape: [1, 15], data: parsed.inputs[0].data.slice(0, 15) }, parsed.inputs[1]] },
      { inputs: [{ ...parsed.inputs[0], datatype: 'FP32' }, parsed.inputs[1]] },
      { inputs: [parsed.inputs[0]] },
      { inputs: parsed.inputs, outputs: [{ name: 'NOPE' }] },
    ];
    for (const body of invalid) {
      for (let round = 0; round < 2; round++) {
        const raw = await infer(cached, 'addsub_val', JSON.stringify(body));
        assert.equal(raw.status, 400, raw.body.toString('utf8'));
      }
    }
    assert.deepEqual(store.counters, before, 'the store was not touched by invalid requests');
    // The same inputs as `valid` (so the same key), with a priority that fails in the scheduler.
    const badPriority = JSON.stringify({ ...parsed, parameters: { priority: 'high' } });
    for (let round = 0; round < 2; round++) {
      const raw = await infer(cached, 'addsub_val', badPriority);
      assert.equal(raw.status, 400, raw.body.toString('utf8'));
      assert.match(raw.body.toString('utf8'), /priority/);
    }
    assert.equal(store.counters.insertions, before.insertions, 'a failed computation is not inserted');
    assertAnswer(await infer(cached, 'addsub_val', valid.body), valid);
    assertAnswer(await infer(cached, 'addsub_val', valid.body), valid);
    const s = await stats(cached, 'addsub_val');
    assert.equal(s.execution_count, 1);
    assert.equal(s.inference_stats.cache_hit.count, 1, 'only the repeated valid request hits');
    assert.equal(s.inference_stats.success.count, 2);
    assert.equal(s.inference_stats.fail.count, 2 * invalid.length + 2);
    // With the answer now cached, the same inputs with a bad priority are still refused, not answered by a hit.
    const refused = await infer(cached, 'addsub_val', badPriority);
    assert.equal(refused.status, 400, refused.body.toString('utf8'));
  });

  test('a leader whose client aborts does not poison identical requests waiting on it, nor the cache', async () => {
    const request = addSub(7);
    const before = await counts(cached, 'addsub_slow');
    const leaderClient = new Client(cached.url);
    const abort = new AbortController();
    try {
      const leader = leaderClient
        .request({ path: '/v2/models/addsub_slow/infer', method: 'POST', body: request.body, signal: abort.signal })
        .then(
          async (response) => ({ status: response.statusCode, body: await response.body.text() }),
          (error: Error) => error,
        );
      await sleep(50); // the leader now waits in the batcher's queue (max_queue_delay 500 ms)
      const waiters = Array.from({ length: 4 }, () => infer(cached, 'addsub_slow', request.body));
      await sleep(100); // they now wait on the leader's computation
      abort.abort();
      const leaderOutcome = await leader;
      assert.ok(leaderOutcome instanceof Error, `the leader was answered: ${JSON.stringify(leaderOutcome)}`);
      assert.equal(leaderOutcome.name, 'AbortError');
      (await Promise.all(waiters)).forEach((raw, index) => assertAnswer(raw, request, `waiter ${index}`));
    } finally {
      await leaderClient.close();
    }
    const s = await stats(cached, 'addsub_slow');
    assert.equal(s.inference_stats.fail.count, 1, 'the cancelled leader is the only failure');
    assert.equal(s.execution_count - before.executions, 1, 'the waiters computed together, in one batch');
    // The next identical request is answered correctly, and then from the cache.
    assertAnswer(await infer(cached, 'addsub_slow', request.body), request, 'later request');
    const executions = (await counts(cached, 'addsub_slow')).executions;
    assertAnswer(await infer(cached, 'addsub_slow', request.body), request, 'later request, again');
    const after = await counts(cached, 'addsub_slow');
    assert.equal(after.executions, executions, 'the later request was cached');
    assert.ok(after.hits > before.hits);
  });

  test('a leader that times out in the queue does not fail the identical requests waiting on it', async () => {
    const request = addSub(8);
    // timeout is not a key parameter: the same key as the requests without it.
    const leader = infer(cached, 'addsub_slow', addSub(8, { parameters: { timeout: 100_000 } }).body);
    await sleep(30);
    const waiters = Array.from({ length: 3 }, () => infer(cached, 'addsub_slow', request.body));
    const leaderAnswer = await leader;
    assert.equal(leaderAnswer.status, 503, leaderAnswer.body.toString('utf8'));
    assert.match(leaderAnswer.body.toString('utf8'), /timeout expired/);
    (await Promise.all(waiters)).forEach((raw, index) => assertAnswer(raw, request, `waiter ${index}`));
  });
});

// ---------------------------------------------------------------------------------------------
// Redis shared by two servers

/** A pino logger writing JSON lines into `lines`. */
function capturingLogger(lines: string[]): Logger {
  return pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
}

function logEntries(lines: string[]): { level: number; msg: string; cache?: string; reason?: string }[] {
  return lines.map((line) => JSON.parse(line));
}

function warnings(lines: string[]) {
  return logEntries(lines).filter((entry) => entry.level === 40);
}

/** Four clients cycling through 6 distinct requests (bases from `base`), checking every answer, until stopped. */
function startTraffic(server: TestServer, model: string, base: number) {
  const state = { answered: 0, failures: [] as string[], running: true };
  /** Per client, how many of its requests were sent and how many came back (answered or failed): each sends one at a time. */
  const sent = [0, 0, 0, 0];
  const settled = [0, 0, 0, 0];
  const client = async (id: number) => {
    for (let round = 0; state.running; round++) {
      const request = addSub(base + ((id + round) % 6));
      sent[id] += 1;
      try {
        const raw = await infer(server, model, request.body);
        if (raw.status !== 200) state.failures.push(`HTTP ${raw.status}: ${raw.body}`);
        else assert.deepEqual(outputsOf(raw), request.expected);
        state.answered += 1;
      } catch (error) {
        state.failures.push(String(error));
      }
      settled[id] += 1;
    }
  };
  const clients = sent.map((_, id) => client(id));
  return {
    get answered() {
      return state.answered;
    },
    failures: state.failures,
    /** How many requests each client has sent so far. */
    sent: () => [...sent],
    /** Whether every client has had an answer to a request it sent after `sentBefore` (a `sent()` taken earlier). */
    eachAnsweredSince: (sentBefore: readonly number[]) => settled.every((count, id) => count > sentBefore[id]),
    async stop() {
      state.running = false;
      await Promise.all(clients);
    },
  };
}

describe('redis cache', () => {
  let redis: RedisTestServer;
  let serverA: TestServer;
  let serverB: TestServer;
  const logA: string[] = [];

  const redisStore = (server: TestServer) => {
    const store = server.server.responseCache;
    assert.ok(store instanceof RedisCacheStore, 'the server uses a RedisCacheStore');
    return store;
  };

  before(async () => {
    redis = await startRedisServer();
    const cacheConfig = `redis,host=127.0.0.1,port=${redis.port}`;
    serverA = await startTestServer({ models: writeRedisModels, server: { cacheConfig, logger: capturingLogger(logA) } });
    serverB = await startTestServer({ repoDir: serverA.repoDir, server: { cacheConfig } });
    assert.ok(await redisStore(serverA).waitUntilReady(), 'server A connected to redis');
    assert.ok(await redisStore(serverB).waitUntilReady(), 'server B connected to redis');
  });

  after(async () => {
    await serverB?.close();
    await serverA?.close();
    await redis?.stop();
  });

  test('an answer computed on server A is a hit on server B, byte for byte', async () => {
    const request = addSub(10, { id: 'shared' });
    const onA = await infer(serverA, 'shared', request.body);
    assertAnswer(onA, request);
    assert.deepEqual(await counts(serverA, 'shared'), { executions: 1, hits: 0, misses: 1 });
    const onB = await infer(serverB, 'shared', request.body);
    assert.ok(onB.body.equals(onA.body), `from redis:\n${onB.body}\ncomputed:\n${onA.body}`);
    assert.deepEqual(await counts(serverB, 'shared'), { executions: 0, hits: 1, misses: 0 });
    assert.equal(redisStore(serverB).counters.hits, 1);
    assert.equal(redisStore(serverA).counters.insertions, 1);
    // Binary from B, computed nowhere.
    const binary = await infer(serverB, 'shared', addSub(10, { id: 'shared', binary: true }).body);
    assertAnswer(binary, request);
    assert.equal((await counts(serverB, 'shared')).executions, 0);
  });

  test('redis killed mid-traffic: requests keep succeeding uncached, one warning is logged; after a restart hits resume', async () => {
    const storeA = redisStore(serverA);
    const traffic = startTraffic(serverA, 'traffic', 20);
    try {
      await until('some traffic was cached', () => storeA.counters.hits >= 10);
      const errorsBefore = storeA.counters.errors;
      assert.equal(warnings(logA).length, 0);

      await redis.stop('SIGKILL');
      await until('server A notices redis is gone', () => !storeA.healthy);
      const answeredAtKill = traffic.answered;
      await until('requests went on while redis was down', () => traffic.answered >= answeredAtKill + 40 && storeA.counters.errors >= errorsBefore + 20);
      assert.deepEqual(traffic.failures, []);
      assert.equal(storeA.healthy, false);
      const logged = warnings(logA);
      assert.equal(logged.length, 1, `exactly one warning, got:\n${logged.map((w) => w.msg).join('\n')}`);
      assert.match(logged[0].msg, /unreachable/);
      assert.match(logged[0].msg, new RegExp(`127\\.0\\.0\\.1:${redis.port}`));
      assert.equal(logged[0].cache, 'redis');

      await redis.restart();
      await until('server A reconnects to redis', () => storeA.healthy, { timeoutMs: 8000 });
      const hitsAtRecovery = storeA.counters.hits;
      await until('hits resume', () => storeA.counters.hits >= hitsAtRecovery + 10);
    } finally {
      await traffic.stop();
    }
    assert.deepEqual(traffic.failures, []);
    const entries = logEntries(logA);
    assert.equal(entries.filter((entry) => /unreachable/.test(entry.msg)).length, 1, 'one warning for the whole outage');
    assert.ok(entries.some((entry) => entry.level === 30 && /connected to redis/.test(entry.msg)), 'the recovery is logged');
    const s = await stats(serverA, 'traffic');
    assert.equal(s.inference_stats.fail.count, 0);
    assert.equal(s.inference_stats.success.count, traffic.answered);
  });

  test('redis that stops answering (SIGSTOP) is given up on within the command timeout; after SIGCONT hits resume', async () => {
    const storeA = redisStore(serverA);
    await until('server A is connected', () => storeA.healthy, { timeoutMs: 8000 });
    const warningsBefore = warnings(logA).length;
    const traffic = startTraffic(serverA, 'traffic', 30);
    const pid = redis.pid!;
    try {
      await until('some traffic was cached', () => storeA.counters.hits >= 10);
      const sentAtPause = traffic.sent();
      process.kill(pid, 'SIGSTOP');
      await until('server A gives up on the silent redis', () => !storeA.healthy);
      const answeredAtPause = traffic.answered;
      await until('requests went on while redis was silent', () => traffic.answered >= answeredAtPause + 40);
      // Redis is still stopped: a request whose lookup were left waiting on it (no timeout) holds its client until SIGCONT.
      await until('every client was answered a request it sent after redis went silent', () => traffic.eachAnsweredSince(sentAtPause));
      assert.deepEqual(traffic.failures, []);
      const logged = warnings(logA).slice(warningsBefore);
      assert.equal(logged.length, 1, logged.map((w) => w.msg).join('\n'));
      assert.match(logged[0].msg, /unreachable \(no answer within 500 ms\)/);
      process.kill(pid, 'SIGCONT');
      await until('server A reconnects to redis', () => storeA.healthy, { timeoutMs: 8000 });
      const hitsAtRecovery = storeA.counters.hits;
      await until('hits resume', () => storeA.counters.hits >= hitsAtRecovery + 10);
    } finally {
      if (redis.pid === pid) process.kill(pid, 'SIGCONT');
      await traffic.stop();
    }
    assert.deepEqual(traffic.failures, []);
    assert.equal(warnings(logA).length, warningsBefore + 1);
  });

  test('a server whose redis is down from the start serves uncached and warns once', async () => {
    const lines: string[] = [];
    const deadPort = await freePort();
    const server = await startTestServer({
      repoDir: serverA.repoDir,
      server: { cacheConfig: `redis,host=127.0.0.1,port=${deadPort}`, logger: capturingLogger(lines) },
    });
    try {
      const store = redisStore(server);
      const request = addSub(40);
      for (let round = 0; round < 3; round++) assertAnswer(await infer(server, 'shared', request.body), request);
      assert.equal(store.healthy, false);
      assert.deepEqual(await counts(server, 'shared'), { executions: 3, hits: 0, misses: 3 });
      assert.ok(store.counters.errors >= 3);
      await until('the outage is logged', () => logEntries(lines).some((entry) => entry.level === 40));
      await sleep(300); // reconnection attempts go on; they must not log again
      const warnings = logEntries(lines).filter((entry) => entry.level === 40);
      assert.equal(warnings.length, 1, warnings.map((w) => w.msg).join('\n'));
      assert.match(warnings[0].msg, new RegExp(`redis 127\\.0\\.0\\.1:${deadPort} unreachable`));
    } finally {
      await server.close();
    }
  });
});

test('a reload with new weights under the same version never answers from the old entries', async () => {
  const server = await startTestServer({
    models: (repo) => writeModel(repo, 'swapped', 1, scaleModel(2), 'max_batch_size: 4\nresponse_cache { enable: true }\n'),
    server: { cacheConfig: 'local,size=1048576', modelControlMode: 'explicit', loadModels: ['swapped'] },
  });
  try {
    const request = () =>
      server.server.infer({
        model: 'swapped',
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: new Float32Array([1, 1, 1, 1]) }],
      });
    assert.deepEqual(Array.from((await request()).outputs[0].data as Float32Array), [2, 2, 2, 2]);
    assert.deepEqual(Array.from((await request()).outputs[0].data as Float32Array), [2, 2, 2, 2], 'a hit');
    await writeModel(server.repoDir, 'swapped', 1, scaleModel(3));
    await server.server.loadModel('swapped');
    assert.deepEqual(Array.from((await request()).outputs[0].data as Float32Array), [3, 3, 3, 3]);
  } finally {
    await server.close();
  }
});

test("a reload after a change to any file of the version (a module a handler imports) never answers from the old entries", async () => {
  const server = await startTestServer({
    models: async (repo) => {
      await mkdir(join(repo, 'suffixed', '1'), { recursive: true });
      await writeFile(
        join(repo, 'suffixed', 'config.pbtxt'),
        'backend: "javascript"\nmax_batch_size: 4\ninput [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]\noutput [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]\nresponse_cache { enable: true }\n',
      );
      await writeFile(
        join(repo, 'suffixed', '1', 'model.mjs'),
        "import { SUFFIX } from './suffix.mjs';\nexport const execute = (requests) => requests.map((request) => ({ OUT: { shape: request.inputs.TEXT.shape, data: request.inputs.TEXT.data.map((text) => text.toString() + SUFFIX) } }));\n",
      );
      await writeFile(join(repo, 'suffixed', '1', 'suffix.mjs'), "export const SUFFIX = '?';\n");
    },
    server: { cacheConfig: 'local,size=1048576', modelControlMode: 'explicit', loadModels: ['suffixed'], allowCodeModels: true },
  });
  try {
    const answer = async () => {
      const response = await server.server.infer({ model: 'suffixed', inputs: [{ name: 'TEXT', datatype: 'BYTES', shape: [1, 1], data: [Buffer.from('xyz')] }] });
      return bytesElements(response.outputs[0].data).map(String);
    };
    assert.deepEqual(await answer(), ['xyz?']);
    assert.deepEqual(await answer(), ['xyz?'], 'a hit');
    await writeFile(join(server.repoDir, 'suffixed', '1', 'suffix.mjs'), "export const SUFFIX = '#';\n");
    await server.server.loadModel('suffixed');
    assert.deepEqual(await answer(), ['xyz#']);
  } finally {
    await server.close();
  }
});

test('a reload that only tunes serving (instances, batching, queue, threads, max_batch_size) keeps the cached answers; one that changes post-processing does not', async () => {
  const cached = 'response_cache { enable: true ttl_seconds: 0 }\n';
  const server = await startTestServer({
    models: (repo) => writeModel(repo, 'tuned', 1, scaleModel(2), `max_batch_size: 4\n${cached}`),
    server: { cacheConfig: 'local,size=1048576', modelControlMode: 'explicit', loadModels: ['tuned'] },
  });
  try {
    const request = async () => {
      const response = await server.server.infer({
        model: 'tuned',
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: new Float32Array([1, 1, 1, 1]) }],
      });
      const { cache_hit, cache_miss } = server.server.modelStatistics('tuned').model_stats[0].inference_stats;
      return { data: Array.from(response.outputs[0].data as Float32Array), hits: cache_hit.count, misses: cache_miss.count };
    };
    assert.deepEqual(await request(), { data: [2, 2, 2, 2], hits: 0, misses: 1 });
    await writeModel(
      server.repoDir,
      'tuned',
      1,
      scaleModel(2),
      `max_batch_size: 8\ninstance_group [{ count: 2 kind: KIND_CPU }]\n` +
        `dynamic_batching { max_queue_delay_microseconds: 500 default_queue_policy { max_queue_size: 16 } }\n` +
        `parameters { key: "intra_op_thread_count" value { string_value: "1" } }\n${cached}`,
    );
    await server.server.loadModel('tuned');
    // A reload of the same version keeps its statistics counting: the first miss is still counted.
    assert.deepEqual(await request(), { data: [2, 2, 2, 2], hits: 1, misses: 1 }, 'answered from the entry the first config made');
    await writeModel(
      server.repoDir,
      'tuned',
      1,
      scaleModel(2),
      `max_batch_size: 8\noutput [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] }]\nparameters { key: "postprocess.OUTPUT0" value { string_value: "{\\"activation\\": \\"sigmoid\\"}" } }\n${cached}`,
    );
    await server.server.loadModel('tuned');
    const postprocessed = await request();
    assert.deepEqual([postprocessed.hits, postprocessed.misses], [1, 2], 'other post-processing is computed afresh');
    assert.ok(postprocessed.data.every((value) => Math.abs(value - 1 / (1 + Math.exp(-2))) < 1e-6), `sigmoid of 2, got ${postprocessed.data}`);
  } finally {
    await server.close();
  }
});
