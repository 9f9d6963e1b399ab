/**
 * ModelVersion as the repository builds it (loadModelVersion), over the fake backend: the real
 * validator, scheduler, statistics and response cache, with an engine whose answers, failures and
 * timing the tests decide. Nothing here waits on a clock: a gate holds the engine where order matters.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino, type Logger } from 'pino';
import { capturingLogger, doublerBackend, rejectsWith, type FakeBackend } from '../../test/support/fake-backend.js';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import { LruCacheStore } from '../cache/lru-cache-store.js';
import { parseModelConfig } from '../config/model-config.js';
import type { InferenceObserverFactory, RequestRecord } from '../core/inference-observer.js';
import type { InferenceRequest, InferenceResponse } from '../core/inference.js';
import { loadModelVersion } from '../repository/model-loader.js';
import type { ModelVersion } from './model-version.js';

interface Loaded {
  version: ModelVersion;
  backend: FakeBackend;
}

/** Model 'm' version 1 over a doubler fake backend; the load's calibration runs are forgotten. */
async function load(
  t: { after: (fn: () => Promise<void>) => void },
  config: Record<string, unknown>,
  options: { logger?: Logger; store?: ResponseCacheStore; observers?: InferenceObserverFactory[] } = {},
): Promise<Loaded> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-model-version-'));
  const modelPath = join(dir, 'model.onnx');
  await writeFile(modelPath, 'weights the fake backend never reads');
  const backend = doublerBackend();
  const version = await loadModelVersion({
    name: 'm',
    version: '1',
    modelPath,
    config: parseModelConfig(config, 'test config'),
    backend,
    logger: options.logger ?? pino({ level: 'silent' }),
    defaultMaxBatchSize: 4,
    maxQueueSize: 16,
    responseCacheStore: options.store,
    observers: options.observers,
    readLabels: async () => [],
  });
  backend.reset();
  t.after(async () => {
    backend.gate?.open();
    if (version.state === 'READY') await version.unload();
    await rm(dir, { recursive: true, force: true });
  });
  return { version, backend };
}

/** A version whose one instance is busy: a first request ([1, 1, 1, 1]) holds it at the gate until the test opens it. */
async function busy(t: { after: (fn: () => Promise<void>) => void }) {
  const { version, backend } = await load(t, { max_batch_size: 4 });
  const gate = backend.hold();
  const running = version.infer(request([[1, 1, 1, 1]]));
  await gate.whenWaiting(1);
  return { version, backend, gate, running };
}

/** A request of FP32 rows of 4 for INPUT0. */
function request(rows: number[][], extra: Partial<InferenceRequest> = {}): InferenceRequest {
  return { model: 'm', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows.length, 4], data: Float32Array.from(rows.flat()) }], ...extra };
}

/** An output's values as plain numbers, with its shape. */
function output(response: InferenceResponse, name: string): { shape: number[]; values: number[] } {
  const found = response.outputs.find((candidate) => candidate.name === name);
  assert.ok(found, `output ${name} in ${response.outputs.map((o) => o.name).join(', ')}`);
  return { shape: found.shape, values: Array.from(found.data as Float32Array) };
}

const doubled = (rows: number[][]) => ({ shape: [rows.length, 4], values: rows.flat().map((value) => value * 2) });

const stats = (version: ModelVersion) => version.statistics.toJSON();

test('a valid request is answered with its own rows, its requested outputs and its V2 id', async (t) => {
  const { version, backend } = await load(t, { max_batch_size: 4 });
  const first = [
    [1, 2, 3, 4],
    [5, 6, 7, 8],
  ];
  const second = [[10, 20, 30, 40]];
  const [a, b, c] = await Promise.all([
    version.infer(request(first, { id: 'first' })),
    version.infer(request(second, { id: 'second', outputs: [{ name: 'OUTPUT1' }] })),
    version.infer(request([[0, 0, 0, 1]]), { requestId: 'transport-id' }),
  ]);
  assert.deepEqual([a.model, a.version, a.id], ['m', '1', 'first']);
  assert.deepEqual(a.outputs.map((o) => o.name), ['OUTPUT0', 'OUTPUT1']);
  assert.deepEqual(output(a, 'OUTPUT0'), doubled(first));
  assert.deepEqual(output(a, 'OUTPUT1'), { shape: [2, 4], values: first.flat().map((value) => value + 1) });
  assert.equal(b.id, 'second');
  assert.deepEqual(b.outputs.map((o) => o.name), ['OUTPUT1'], 'only the requested output');
  assert.deepEqual(output(b, 'OUTPUT1'), { shape: [1, 4], values: [11, 21, 31, 41] });
  assert.equal(c.id, undefined, "the transport's request id is never echoed as the V2 id");
  assert.deepEqual(output(c, 'OUTPUT0'), doubled([[0, 0, 0, 1]]));
  assert.equal(backend.rows.reduce((sum, rows) => sum + rows, 0), 4, 'the engine saw each row once');
  assert.equal(stats(version).inference_count, 4);
  assert.equal(stats(version).inference_stats.success.count, 3);
});

test('invalid requests are INVALID_ARGUMENT with what was expected and what arrived, counted as failures, never run', async (t) => {
  const { logger, lines } = capturingLogger();
  const { version, backend } = await load(t, { max_batch_size: 4 }, { logger });
  const row = [1, 2, 3, 4];
  const cases: [InferenceRequest, RegExp][] = [
    [{ model: 'm', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 4], data: new Int32Array(4) }] }, /input 'INPUT0' expects FP32 \[-1,4\], got INT32 \[1,4\]/],
    [{ model: 'm', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 3], data: new Float32Array(3) }] }, /input 'INPUT0' expects FP32 \[-1,4\], got FP32 \[1,3\]/],
    [request([row, row, row, row, row]), /inference request batch-size must be <= 4 for 'm': input 'INPUT0' has batch size 5; the model accepts 1 to 4 \(max_batch_size\)/],
    [{ model: 'm', inputs: [] }, /model 'm' expects input 'INPUT0', which the request lacks/],
    [{ model: 'm', inputs: [{ name: 'INPUTX', datatype: 'FP32', shape: [1, 4], data: new Float32Array(4) }] }, /unexpected inference input 'INPUTX' for model 'm': it has no such input \(its inputs: INPUT0\)/],
    [{ model: 'm', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: new Float32Array(3) }] }, /has shape \[1,4\], which holds 4 elements, but 3 were sent/],
    [request([row], { outputs: [{ name: 'NOPE' }] }), /unexpected inference output 'NOPE' for model 'm': it has no such output \(its outputs: OUTPUT0, OUTPUT1\)/],
  ];
  for (const [bad, message] of cases) await rejectsWith(version.infer(bad), 'INVALID_ARGUMENT', message);
  const json = stats(version);
  assert.equal(json.inference_stats.fail.count, cases.length);
  assert.equal(json.inference_stats.success.count, 0);
  assert.equal(json.inference_count, 0);
  assert.equal(version.statistics.failures.get('INVALID_ARGUMENT'), cases.length);
  assert.deepEqual(backend.batches, [], 'nothing reached the engine');
  assert.deepEqual(lines.filter((line) => line.level >= 50), [], "a client's mistake is not logged as an error");
});

test('an engine failure is INTERNAL with the thrown error as its cause, logged once with its stack; other requests keep working', async (t) => {
  const { logger, lines } = capturingLogger();
  const { version, backend } = await load(t, { max_batch_size: 4 }, { logger });
  const boom = new Error('the engine ran out of tensors');
  backend.failNext(boom);
  const failure = await rejectsWith(version.infer(request([[1, 2, 3, 4]], { id: 'unlucky' })), 'INTERNAL', /model 'm' version 1: the engine ran out of tensors/);
  assert.equal(failure.cause, boom);
  const errors = lines.filter((line) => line.level === 50);
  assert.equal(errors.length, 1, `one error line, got ${JSON.stringify(errors)}`);
  const err = errors[0].err as { stack: string };
  assert.ok(err.stack.includes(boom.stack!), `the cause's stack is logged:\n${err.stack}`);
  assert.match(String(errors[0].msg), /^inference failed: model 'm' version 1: the engine ran out of tensors/);
  assert.equal(errors[0].reqId, 'unlucky');
  const next = await version.infer(request([[5, 6, 7, 8]]));
  assert.deepEqual(output(next, 'OUTPUT0'), doubled([[5, 6, 7, 8]]));
  assert.equal(version.statistics.failures.get('INTERNAL'), 1);
  assert.deepEqual([stats(version).inference_stats.fail.count, stats(version).inference_stats.success.count], [1, 1]);
  assert.equal(lines.filter((line) => line.level === 50).length, 1, 'the success logged no error');
});

test('an observer that throws is logged and skipped: the request succeeds, is reported once, and the other observers still see it', async (t) => {
  const { logger, lines } = capturingLogger();
  const seen: RequestRecord[] = [];
  const executions: number[] = [];
  const broken: InferenceObserverFactory = () => ({
    onRequestStart: () => {
      throw new Error('broken at start');
    },
    onRequestEnd: () => {
      throw new Error('broken at end');
    },
    onExecution: () => {
      throw new Error('broken at execution');
    },
  });
  const watching: InferenceObserverFactory = () => ({ onRequestEnd: (record) => seen.push(record), onExecution: (record) => executions.push(record.batchSize) });
  const { version } = await load(t, { max_batch_size: 4 }, { logger, observers: [broken, watching] });
  executions.length = 0; // the load's calibration runs
  const answer = await version.infer(request([[1, 2, 3, 4]]));
  assert.deepEqual(output(answer, 'OUTPUT0'), doubled([[1, 2, 3, 4]]));
  assert.deepEqual(seen.map((record) => [record.success, record.errorCode]), [[true, undefined]], 'reported once, as a success');
  assert.deepEqual(executions, [1], 'the execution reached the observer after the broken one');
  assert.deepEqual([stats(version).inference_stats.success.count, stats(version).inference_stats.fail.count], [1, 0]);
  const failures = lines.filter((line) => line.level === 50).map((line) => [line.hook, (line.err as { message: string }).message]);
  assert.deepEqual(failures, [
    ['onRequestStart', 'broken at start'],
    ['onExecution', 'broken at execution'],
    ['onRequestEnd', 'broken at end'],
  ]);
});

test('requests scheduled together run as one batch, each answered with its own rows', async (t) => {
  const { version, backend } = await load(t, { max_batch_size: 4, dynamic_batching: { preferred_batch_size: [4] } });
  const rows = [
    [1, 1, 1, 1],
    [2, 2, 2, 2],
    [3, 3, 3, 3],
    [4, 4, 4, 4],
  ];
  const answers = await Promise.all(rows.map((row) => version.infer(request([row]))));
  answers.forEach((answer, index) => assert.deepEqual(output(answer, 'OUTPUT0'), doubled([rows[index]])));
  assert.equal(backend.batches.length, 1, `one execution, got batches of ${backend.rows.join(', ')}`);
  assert.equal(backend.batches[0].rows, 4);
  assert.deepEqual(Array.from(backend.batches[0].inputs.INPUT0.data as Float32Array), rows.flat(), 'rows joined in arrival order');
  const json = stats(version);
  assert.equal(json.execution_count, 1);
  assert.equal(json.inference_count, 4);
  assert.deepEqual(json.batch_stats.map((batch) => [batch.batch_size, batch.compute_infer.count]), [[4, 1]]);
});

test('with two instances, requests that arrive while one is busy run on the other', async (t) => {
  const { version, backend } = await load(t, { max_batch_size: 4, instance_group: [{ kind: 'KIND_CPU', count: 2 }] });
  assert.equal(backend.instances.length, 2);
  const gate = backend.hold();
  const first = version.infer(request([[1, 1, 1, 1]]));
  await gate.whenWaiting(1);
  const second = version.infer(request([[2, 2, 2, 2]]));
  await gate.whenWaiting(2); // both held at once: the second did not wait for the first
  assert.deepEqual(backend.batches.map((batch) => batch.instance).sort(), [0, 1]);
  gate.open();
  assert.deepEqual(output(await first, 'OUTPUT0'), doubled([[1, 1, 1, 1]]));
  assert.deepEqual(output(await second, 'OUTPUT0'), doubled([[2, 2, 2, 2]]));
});

test('priority and timeout parameters of the wrong type or out of range are INVALID_ARGUMENT, before any work', async (t) => {
  const { version, backend } = await load(t, { max_batch_size: 4, dynamic_batching: { priority_levels: 2, default_priority_level: 2 } });
  const row = [[1, 2, 3, 4]];
  await rejectsWith(version.infer(request(row, { parameters: { priority: 'high' } })), 'INVALID_ARGUMENT', /request parameter 'priority' must be a non-negative integer, got "high"/);
  await rejectsWith(version.infer(request(row, { parameters: { timeout: '100' } })), 'INVALID_ARGUMENT', /request parameter 'timeout' must be a non-negative integer of microseconds, got "100"/);
  // Both are unsigned integers in Triton's protocol, whether or not the model's queue uses them.
  await rejectsWith(version.infer(request(row, { parameters: { timeout: -5 } })), 'INVALID_ARGUMENT', /'timeout' must be a non-negative integer of microseconds, got -5/);
  await rejectsWith(version.infer(request(row, { parameters: { timeout: 1.5 } })), 'INVALID_ARGUMENT', /'timeout' must be a non-negative integer/);
  await rejectsWith(version.infer(request(row, { parameters: { priority: true } })), 'INVALID_ARGUMENT', /'priority' must be a non-negative integer/);
  await rejectsWith(version.infer(request(row, { parameters: { priority: -1 } })), 'INVALID_ARGUMENT', /'priority' must be a non-negative integer/);
  assert.deepEqual(backend.batches, []);
  const fine = await version.infer(request(row, { parameters: { priority: 2 } }));
  assert.deepEqual(output(fine, 'OUTPUT0'), doubled(row));
  // Past the last level, as in Triton: the default level, not a refusal.
  const beyond = await version.infer(request(row, { parameters: { priority: 3 } }));
  assert.deepEqual(output(beyond, 'OUTPUT0'), doubled(row));
});

test('with a response cache, an identical request is a hit the engine never sees; cache_bypass skips the cache', async (t) => {
  const store = new LruCacheStore(1024 * 1024);
  const { version, backend } = await load(t, { max_batch_size: 4, response_cache: { enable: true } }, { store });
  const row = [[1, 2, 3, 4]];
  const computed = await version.infer(request(row, { id: 'a' }));
  const hit = await version.infer(request(row, { id: 'b' }));
  assert.equal(backend.batches.length, 1, 'the second request was not run');
  assert.equal(hit.id, 'b', 'a hit answers with its own id');
  assert.deepEqual(output(hit, 'OUTPUT0'), output(computed, 'OUTPUT0'));
  assert.deepEqual(output(hit, 'OUTPUT1'), output(computed, 'OUTPUT1'));
  assert.deepEqual([store.counters.hits, store.counters.insertions], [1, 1]);
  let json = stats(version);
  assert.deepEqual([json.inference_stats.cache_hit.count, json.inference_stats.cache_miss.count], [1, 1]);
  // Triton's statistics: a hit is a success that passed the queue, but no inference or execution.
  assert.deepEqual([json.inference_stats.success.count, json.inference_stats.queue.count, json.inference_count, json.execution_count], [2, 2, 1, 1]);

  const bypassed = await version.infer(request(row, { parameters: { cache_bypass: true } }));
  assert.deepEqual(output(bypassed, 'OUTPUT0'), doubled(row));
  assert.equal(backend.batches.length, 2, 'cache_bypass runs the model');
  // A request a miss would refuse is refused, not answered from the cache.
  await rejectsWith(version.infer(request(row, { parameters: { priority: 'high' } })), 'INVALID_ARGUMENT', /'priority' must be a non-negative integer/);
  await version.infer(request([[4, 3, 2, 1]]));
  assert.equal(backend.batches.length, 3, 'other inputs are a miss');
  json = stats(version);
  assert.deepEqual([json.inference_stats.cache_hit.count, json.inference_stats.cache_miss.count], [1, 2], 'a bypass is neither hit nor miss');
});

test('a queued request whose client goes away is CANCELLED and never runs', async (t) => {
  const { version, backend, gate, running } = await busy(t);
  const client = new AbortController();
  const queued = version.infer(request([[2, 2, 2, 2]]), { signal: client.signal });
  assert.equal(version.queued, 1, 'the second request waits for the busy instance');
  client.abort();
  await rejectsWith(queued, 'CANCELLED');
  assert.equal(version.queued, 0);
  gate.open();
  assert.deepEqual(output(await running, 'OUTPUT0'), doubled([[1, 1, 1, 1]]));
  assert.deepEqual(backend.rows, [1], 'only the first request ran');
  assert.equal(version.statistics.failures.get('CANCELLED'), 1);
  // A signal aborted before the request arrives is refused at once.
  await rejectsWith(version.infer(request([[3, 3, 3, 3]]), { signal: AbortSignal.abort() }), 'CANCELLED');
  assert.deepEqual(backend.rows, [1]);
});

test('a request that arrives past its deadline is DEADLINE_EXCEEDED and never runs, even with an instance idle', async (t) => {
  const { version, backend } = await load(t, { max_batch_size: 4 });
  await rejectsWith(version.infer(request([[2, 2, 2, 2]]), { deadline: performance.now() - 1 }), 'DEADLINE_EXCEEDED', /deadline passed before it was queued/);
  assert.deepEqual(backend.batches, [], 'the engine never saw it');
  assert.equal(version.statistics.failures.get('DEADLINE_EXCEEDED'), 1);
});

test('a queued request whose deadline passes while it waits is DEADLINE_EXCEEDED and never runs', async (t) => {
  const { version, backend, gate, running } = await busy(t);
  // The instance stays busy until the gate opens, which is after the deadline has dropped the request.
  const waiting = version.infer(request([[2, 2, 2, 2]]), { deadline: performance.now() + 50 });
  assert.equal(version.queued, 1);
  await rejectsWith(waiting, 'DEADLINE_EXCEEDED', /deadline passed while it waited in the queue/);
  assert.equal(version.queued, 0);
  gate.open();
  await running;
  assert.deepEqual(backend.rows, [1], 'only the first request ran');
});

test('unload() answers the requests it accepted, refuses new ones with UNAVAILABLE and releases the instances', async (t) => {
  const { version, backend, gate, running } = await busy(t);
  const queued = version.infer(request([[2, 2, 2, 2]]));
  const unloading = version.unload();
  assert.equal(version.state, 'UNLOADING');
  await rejectsWith(version.infer(request([[3, 3, 3, 3]])), 'UNAVAILABLE', /model 'm' version 1 is not ready \(unloading\)/);
  gate.open();
  assert.deepEqual(output(await running, 'OUTPUT0'), doubled([[1, 1, 1, 1]]));
  assert.deepEqual(output(await queued, 'OUTPUT0'), doubled([[2, 2, 2, 2]]));
  await unloading;
  assert.equal(version.state, 'UNAVAILABLE');
  assert.deepEqual(backend.instances.map((instance) => instance.released), [true]);
  await rejectsWith(version.infer(request([[4, 4, 4, 4]])), 'UNAVAILABLE', /is not ready \(unavailable\)/);
  assert.deepEqual(backend.rows, [1, 1], 'the two accepted requests ran, nothing after');
});

test('unload() waits for a request still ahead of the queue (here in a slow cache lookup) and answers it, never "is unloading"', async (t) => {
  const store = new LruCacheStore(1024 * 1024);
  let release!: () => void;
  const lookupHeld = new Promise<void>((resolve) => (release = resolve));
  let lookupStarted!: () => void;
  const lookingUp = new Promise<void>((resolve) => (lookupStarted = resolve));
  const get = store.get.bind(store);
  store.get = async (key) => {
    lookupStarted();
    await lookupHeld;
    return get(key);
  };
  const { version, backend } = await load(t, { max_batch_size: 4, response_cache: { enable: true } }, { store });
  const accepted = version.infer(request([[5, 5, 5, 5]]));
  await lookingUp;
  const unloading = version.unload();
  assert.equal(version.state, 'UNLOADING');
  release();
  assert.deepEqual(output(await accepted, 'OUTPUT0'), doubled([[5, 5, 5, 5]]));
  await unloading;
  assert.equal(version.state, 'UNAVAILABLE');
  assert.deepEqual(backend.rows, [1]);
});
