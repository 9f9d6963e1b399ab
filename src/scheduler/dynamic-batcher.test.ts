/**
 * The dynamic batcher's semantics, deterministically: a gated in-test backend instance records
 * every batch it is given and answers only when the test releases it, computing its outputs from
 * its inputs (OUTPUT0 = INPUT0 * 2, OUTPUT1 = INPUT0 + 1, batch dimension kept), so every test can
 * say exactly which requests ran together, in which order, and that each caller got its own rows
 * back. Statistics go to a real ModelStatistics. Timer cases use short real delays and wait for
 * events (a batch reaching the instance, a promise settling), never for durations.
 *
 * schedule() dispatches on the next check phase (setImmediate), once for everything scheduled in
 * the same turn, so tests `await flush()` after scheduling before looking at the batches. The one
 * exception is light traffic: after a turn that brought a single request, the next lone request
 * goes to an idle instance inside schedule() (its own tests below). The Harness turns cutAtCheapest off: the gated
 * instance's timings are whatever the test's pace makes them, so learned costs would be noise;
 * batches fill up to max_batch_size as Triton's do, and the learned cut has its own tests with an
 * instance whose run time per batch size the test sets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isError, watchTimeoutOverflow } from '../../test/support/checks.js';
import { CountWaiters } from '../../test/support/count-waiters.js';
import { COMPUTE_NS, type BackendInstance, type ModelSignature, type RunOptions, type RunOutputs } from '../backends/backend.js';
import { NereidError } from '../core/errors.js';
import { ClientCancellation } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import { ModelStatistics } from '../observability/model-statistics.js';
import { DynamicBatcher, UNBATCHED_POLICY, type BatcherPolicy, type QueuePolicy } from './dynamic-batcher.js';
import { schedulerConformance } from './scheduler.case.js';
import type { ScheduledRequest, ScheduledResult } from './scheduler.js';

// ---------------------------------------------------------------------------------------------
// The gated instance

interface RunCall {
  /** Which instance ran it (its index in the batcher's instance list). */
  instance: number;
  inputs: Record<string, Tensor>;
  outputNames: readonly string[];
  /** The options the batcher passed (inputsOwned for a batch it joined). */
  options?: RunOptions;
  /** performance.now() when the batcher called run(). */
  ranAt: number;
  /** Lets the execution finish, computing its outputs from its inputs. */
  release(): void;
  /** Makes the execution fail with `error`. */
  fail(error: Error): void;
}

type Model = (inputs: Record<string, Tensor>, outputNames: readonly string[]) => RunOutputs;

function mapData(tensor: Tensor, numeric: (value: number) => number, big: (value: bigint) => bigint): Tensor {
  const { data } = tensor;
  if (Array.isArray(data)) return { ...tensor, data: data.map((buffer) => Buffer.concat([buffer, buffer])) };
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    return { ...tensor, shape: [...tensor.shape], data: (data as BigInt64Array).map(big) };
  }
  return { ...tensor, shape: [...tensor.shape], data: (data as Float32Array).map(numeric) };
}

/** OUTPUT0 = INPUT0 * 2 and OUTPUT1 = INPUT0 + 1, any shape, any datatype; the batch dimension is kept. */
const doubler: Model = (inputs, outputNames) => {
  const outputs: Record<string, Tensor> = {};
  for (const name of outputNames) {
    if (name === 'OUTPUT0') outputs[name] = mapData(inputs.INPUT0, (v) => v * 2, (v) => v * 2n);
    else if (name === 'OUTPUT1') outputs[name] = mapData(inputs.INPUT0, (v) => v + 1, (v) => v + 1n);
    else throw new Error(`unknown output '${name}'`);
  }
  return outputs;
};

class GatedInstance implements BackendInstance {
  readonly signature: ModelSignature = {
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, -1] }],
    outputs: [
      { name: 'OUTPUT0', datatype: 'FP32', shape: [-1, -1] },
      { name: 'OUTPUT1', datatype: 'FP32', shape: [-1, -1] },
    ],
  };
  readonly threads = 1;

  constructor(
    private readonly index: number,
    private readonly harness: Harness,
    readonly concurrency?: number,
  ) {}

  run(inputs: Record<string, Tensor>, outputNames: readonly string[], options?: RunOptions): Promise<RunOutputs> {
    if (this.harness.throwOnRun) throw new Error('the instance threw synchronously');
    const ranAt = performance.now();
    return new Promise((resolve, reject) => {
      this.harness.record({
        instance: this.index,
        inputs,
        outputNames: [...outputNames],
        options,
        ranAt,
        release: () => {
          try {
            resolve(this.harness.model(inputs, outputNames));
          } catch (error) {
            reject(error);
          }
        },
        fail: reject,
      });
    });
  }

  async release(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------------
// Harness, requests and checks

const NO_TIMEOUT: QueuePolicy = { maxQueueSize: 0, defaultTimeoutMicroseconds: 0, timeoutAction: 'REJECT', allowTimeoutOverride: false };

function policyOf(overrides: Partial<BatcherPolicy> = {}): BatcherPolicy {
  return {
    maxBatchSize: 8,
    preferredBatchSizes: [],
    maxQueueDelayMicroseconds: 0,
    preserveOrdering: false,
    priorityLevels: 0,
    defaultPriorityLevel: 0,
    defaultQueuePolicy: NO_TIMEOUT,
    maxQueuedRequests: 1000,
    cutAtCheapest: false,
    ...overrides,
  };
}

class Harness {
  readonly calls: RunCall[] = [];
  readonly stats = new ModelStatistics('gated', '1');
  readonly batcher: DynamicBatcher;
  readonly instances: GatedInstance[];
  model: Model = doubler;
  throwOnRun = false;
  private readonly runs = new CountWaiters(() => this.calls.length);

  /** `concurrency`: what each instance declares (left out: the default, one batch at a time). */
  constructor(overrides: Partial<BatcherPolicy> = {}, instanceCount = 1, concurrency?: number) {
    this.instances = Array.from({ length: instanceCount }, (_, index) => new GatedInstance(index, this, concurrency));
    this.batcher = new DynamicBatcher(this.instances, policyOf(overrides), this.stats, "model 'gated' version 1");
  }

  record(call: RunCall): void {
    this.calls.push(call);
    this.runs.notify();
  }

  /** Resolves once the instances have been handed `count` batches in all. */
  waitForCalls(count: number): Promise<void> {
    return this.runs.until(count);
  }

  schedule(request: ScheduledRequest): Promise<ScheduledResult> {
    return this.batcher.schedule(request);
  }

  /** Request ids of every batch so far, in execution order. */
  batches(): number[][] {
    return this.calls.map(idsOf);
  }

  /** [batch_size, executions] pairs of the statistics' batch_stats. */
  batchStats(): [number, number][] {
    return this.stats.toJSON().batch_stats.map((entry) => [entry.batch_size, entry.compute_infer.count]);
  }
}

const COLS = 3;
/** A batch window for tests that wait it out: long against back-to-back synchronous calls, short for a test. */
const BATCH_WINDOW_US = 250_000;

/** A row of request `id`: [id, id + 0.25, id + 0.5, ...]; exact in FP32 and after doubling. */
const rowOf = (id: number, cols = COLS) => Array.from({ length: cols }, (_, col) => id + col * 0.25);

interface RequestOptions extends Omit<Partial<ScheduledRequest>, 'inputs' | 'batchSize'> {
  cols?: number;
}

/** One FP32 request whose rows carry the given ids (one row per id), shape [ids.length, cols]. */
function fp32Request(ids: number[], options: RequestOptions = {}): ScheduledRequest {
  const { cols = COLS, ...rest } = options;
  const input: Tensor = { datatype: 'FP32', shape: [ids.length, cols], data: Float32Array.from(ids.flatMap((id) => rowOf(id, cols))) };
  return { inputs: { INPUT0: input }, batchSize: ids.length, outputNames: ['OUTPUT0'], ...rest };
}

/** The same with INT32 data: row of id `id` is [id * 10, id * 10 + 1, id * 10 + 2]. */
function int32Request(ids: number[], options: RequestOptions = {}): ScheduledRequest {
  const input: Tensor = {
    datatype: 'INT32',
    shape: [ids.length, COLS],
    data: Int32Array.from(ids.flatMap((id) => [id * 10, id * 10 + 1, id * 10 + 2])),
  };
  return { inputs: { INPUT0: input }, batchSize: ids.length, outputNames: ['OUTPUT0'], ...options };
}

/** The id of every row of a batch, read back from the first element of each row. */
function idsOf(call: RunCall): number[] {
  const input = call.inputs.INPUT0;
  const rows = input.shape[0];
  const perRow = input.data.length / rows;
  const data = input.data as Float32Array | Int32Array;
  return Array.from({ length: rows }, (_, row) => (input.datatype === 'INT32' ? data[row * perRow] / 10 : data[row * perRow]));
}

/** The result is this request's own rows, doubled, with its own shape. */
function assertOwnResult(result: ScheduledResult, ids: number[], cols = COLS): void {
  const output = result.outputs.OUTPUT0;
  assert.ok(output, 'OUTPUT0 is in the result');
  assert.equal(output.datatype, 'FP32');
  assert.deepEqual(output.shape, [ids.length, cols]);
  assert.deepEqual([...(output.data as Float32Array)], ids.flatMap((id) => rowOf(id, cols).map((value) => value * 2)));
  for (const value of Object.values(result.timings)) assert.ok(Number.isFinite(value) && value >= 0);
}

/** Watches a promise without awaiting it, and keeps a rejection from going unhandled. */
function track<T>(promise: Promise<T>) {
  const state: { settled: 'pending' | 'fulfilled' | 'rejected'; value?: T; error?: unknown; promise: Promise<T> } = {
    settled: 'pending',
    promise,
  };
  promise.then(
    (value) => Object.assign(state, { settled: 'fulfilled', value }),
    (error) => Object.assign(state, { settled: 'rejected', error }),
  );
  return state;
}

/**
 * One setImmediate: lets every queued promise reaction run, and the batcher's dispatch of what was
 * scheduled before it (its setImmediate was armed first, so it runs first in the same check phase).
 */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Releases batch `index` and waits for what follows it (results delivered, the next batch dispatched). */
async function release(h: Harness, index: number): Promise<void> {
  h.calls[index].release();
  await flush();
}

/**
 * Stops the batcher, which sends the one batch it holds at once, runs it, and checks every result
 * (`results[i]` carries row `firstId + i`).
 */
async function finishHeld(h: Harness, results: readonly Promise<ScheduledResult>[], firstId = 1): Promise<void> {
  const count = h.calls.length + 1;
  const stopped = h.batcher.stop();
  await h.waitForCalls(count);
  await release(h, count - 1);
  await stopped;
  for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + firstId]);
}


// ---------------------------------------------------------------------------------------------

describe('DynamicBatcher: dispatch without a queue delay', () => {
  it('runs a lone request on the next turn of the event loop, never in the caller\'s turn, as a batch of 1', async () => {
    const h = new Harness({ maxBatchSize: 8, maxQueueDelayMicroseconds: 0 });
    const result = h.schedule(fp32Request([1]));
    assert.equal(h.calls.length, 0, 'not inside schedule()');
    await Promise.resolve();
    assert.equal(h.calls.length, 0, 'not in a microtask of the same turn either');
    assert.equal(h.batcher.queued, 1);
    // flush() is the setImmediate armed right after schedule()'s: the dispatch runs just before it,
    // in the same check phase, with no timer in between.
    await flush();
    assert.deepEqual(h.batches(), [[1]]);
    assert.deepEqual(h.calls[0].outputNames, ['OUTPUT0']);
    assert.equal(h.batcher.queued, 0);
    h.calls[0].release();
    assertOwnResult(await result, [1]);
    assert.equal(h.stats.toJSON().execution_count, 1);
    assert.deepEqual(h.batchStats(), [[1, 1]]);
  });

  it('requests scheduled in the same turn form ONE batch, even with no queue delay', async () => {
    const h = new Harness({ maxBatchSize: 8, maxQueueDelayMicroseconds: 0 });
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2, 3]));
    const c = h.schedule(fp32Request([4]));
    assert.equal(h.calls.length, 0);
    assert.equal(h.batcher.queued, 3);
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3, 4]], 'one execution of 4 rows, in arrival order');
    assert.deepEqual(h.calls[0].inputs.INPUT0.shape, [4, COLS]);
    assert.equal(h.batcher.queued, 0);
    await release(h, 0);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2, 3]);
    assertOwnResult(await c, [4]);
    assert.equal(h.calls.length, 1);
    const timings = (await b).timings;
    assert.equal(timings.batchRows, 4, 'each answer says how many rows its execution had');
    assert.equal((await a).timings.computeInferNs, timings.computeInferNs, 'the same execution');
    assert.deepEqual(h.batchStats(), [[4, 1]]);
  });

  it('joins requests queued behind a busy instance into one batch when it frees, up to maxBatchSize rows', async () => {
    const h = new Harness({ maxBatchSize: 4 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    assert.deepEqual(h.batches(), [[0]]);
    // Queued while busy: 1 + 2 + 1 rows fill a batch of 4; the next 2-row request does not fit.
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2, 3]));
    const c = h.schedule(fp32Request([4]));
    const d = h.schedule(fp32Request([5, 6]));
    const e = h.schedule(fp32Request([7]));
    await flush();
    assert.equal(h.calls.length, 1, 'nothing else runs while the only instance is busy');
    assert.equal(h.batcher.queued, 5);

    // The next batch goes as soon as the execution ends, in the same turn: an immediate armed
    // before the release sees it already.
    const seen = new Promise<number>((resolve) => setImmediate(() => resolve(h.calls.length)));
    h.calls[0].release();
    assert.equal(await seen, 2, 'dispatched when the instance freed, not a turn later');
    assertOwnResult(await blocker, [0]);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3, 4]]);
    assert.deepEqual(h.calls[1].inputs.INPUT0.shape, [4, COLS]);
    assert.equal(h.batcher.queued, 2);

    await release(h, 1);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2, 3]);
    assertOwnResult(await c, [4]);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3, 4], [5, 6, 7]]);

    await release(h, 2);
    assertOwnResult(await d, [5, 6]);
    assertOwnResult(await e, [7]);
    assert.equal(h.batcher.queued, 0);
    assert.equal(h.stats.toJSON().execution_count, 3);
    assert.deepEqual(h.batchStats(), [
      [1, 1],
      [3, 1],
      [4, 1],
    ]);
  });

  it('a request that does not fit waits for the next batch; later ones do not overtake it', async () => {
    const h = new Harness({ maxBatchSize: 4 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2, 3]));
    const c = h.schedule(fp32Request([4, 5])); // 3 + 2 > 4
    const d = h.schedule(fp32Request([6])); // would fit the first batch, but must not jump ahead of c
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3]]);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3], [4, 5, 6]]);
    await release(h, 2);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2, 3]);
    assertOwnResult(await c, [4, 5]);
    assertOwnResult(await d, [6]);
    assert.deepEqual(h.batchStats(), [
      [1, 1],
      [3, 2],
    ]);
  });

  it('a single request of exactly maxBatchSize rows runs alone', async () => {
    const h = new Harness({ maxBatchSize: 4 });
    h.schedule(fp32Request([0]));
    await flush();
    const full = h.schedule(fp32Request([1, 2, 3, 4]));
    const next = h.schedule(fp32Request([5]));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3, 4]]);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3, 4], [5]]);
    await release(h, 2);
    assertOwnResult(await full, [1, 2, 3, 4]);
    assertOwnResult(await next, [5]);
  });

  it('with two instances, two lone requests run at once on different instances', async () => {
    const h = new Harness({ maxBatchSize: 8 }, 2);
    const a = h.schedule(fp32Request([1]));
    await flush();
    const b = h.schedule(fp32Request([2]));
    await flush();
    assert.deepEqual(h.batches(), [[1], [2]]);
    assert.notEqual(h.calls[0].instance, h.calls[1].instance);
    const c = h.schedule(fp32Request([3]));
    await flush();
    assert.equal(h.calls.length, 2, 'a third waits for an instance');
    await release(h, 1);
    assert.deepEqual(h.batches(), [[1], [2], [3]]);
    assert.equal(h.calls[2].instance, h.calls[1].instance, 'it runs on the instance that freed');
    await release(h, 0);
    await release(h, 2);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    assertOwnResult(await c, [3]);
  });

  it('with two instances idle, requests arriving together are spread over both (cutAtCheapest)', async () => {
    const h = new Harness({ maxBatchSize: 8, cutAtCheapest: true }, 2);
    const results = [1, 2, 3, 4].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2], [3, 4]]);
    assert.notEqual(h.calls[0].instance, h.calls[1].instance);
    await release(h, 0);
    await release(h, 1);
    (await Promise.all(results)).forEach((result, index) => assertOwnResult(result, [index + 1]));
  });

  it('gives each request of a batch only the outputs it asked for, and asks the instance for all of them', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    h.schedule(fp32Request([0]));
    await flush();
    const a = h.schedule(fp32Request([1], { outputNames: ['OUTPUT0'] }));
    const b = h.schedule(fp32Request([2, 3], { outputNames: ['OUTPUT1'] }));
    const c = h.schedule(fp32Request([4], { outputNames: ['OUTPUT1', 'OUTPUT0'] }));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3, 4]]);
    assert.deepEqual([...h.calls[1].outputNames].sort(), ['OUTPUT0', 'OUTPUT1']);
    await release(h, 1);
    const ra = await a;
    const rb = await b;
    const rc = await c;
    assert.deepEqual(Object.keys(ra.outputs), ['OUTPUT0']);
    assertOwnResult(ra, [1]);
    assert.deepEqual(Object.keys(rb.outputs), ['OUTPUT1']);
    assert.deepEqual(rb.outputs.OUTPUT1.shape, [2, COLS]);
    assert.deepEqual([...(rb.outputs.OUTPUT1.data as Float32Array)], [2, 3].flatMap((id) => rowOf(id).map((v) => v + 1)));
    assert.deepEqual(Object.keys(rc.outputs).sort(), ['OUTPUT0', 'OUTPUT1']);
    assertOwnResult(rc, [4]);
    assert.deepEqual([...(rc.outputs.OUTPUT1.data as Float32Array)], rowOf(4).map((v) => v + 1));
  });

  it('without batching (maxBatchSize 0) runs every request on its own, FIFO, recorded as batch size 1', async () => {
    const h = new Harness({ ...UNBATCHED_POLICY, maxQueuedRequests: 100 });
    // A model without a batch dimension: shape [3], batchSize 0.
    const plain = (id: number): ScheduledRequest => ({
      inputs: { INPUT0: { datatype: 'FP32', shape: [3], data: Float32Array.from(rowOf(id)) } },
      batchSize: 0,
      outputNames: ['OUTPUT0'],
    });
    // Scheduled in the same turn, yet never joined: batching is off.
    const results = [h.schedule(plain(1)), h.schedule(plain(2)), h.schedule(plain(3))];
    await flush();
    assert.equal(h.calls.length, 1);
    assert.equal(h.batcher.queued, 2);
    await release(h, 0);
    await release(h, 1);
    await release(h, 2);
    assert.deepEqual(
      h.calls.map((call) => [...(call.inputs.INPUT0.data as Float32Array)]),
      [rowOf(1), rowOf(2), rowOf(3)],
    );
    for (const [index, promise] of results.entries()) {
      const output = (await promise).outputs.OUTPUT0;
      assert.deepEqual(output.shape, [3]);
      assert.deepEqual([...(output.data as Float32Array)], rowOf(index + 1).map((v) => v * 2));
    }
    assert.equal(h.stats.toJSON().execution_count, 3);
    assert.deepEqual(h.batchStats(), [[1, 3]]);
  });

  it("a batching model without dynamic_batching runs each request alone, recorded with its rows as Triton's batch_stats count them", async () => {
    const h = new Harness({ ...UNBATCHED_POLICY, maxQueuedRequests: 100 });
    const results = [h.schedule(fp32Request([1, 2])), h.schedule(fp32Request([3, 4, 5, 6]))];
    await flush();
    await release(h, 0);
    await flush();
    await release(h, 1);
    assertOwnResult(await results[0], [1, 2]);
    assertOwnResult(await results[1], [3, 4, 5, 6]);
    assert.deepEqual(h.batchStats(), [
      [2, 1],
      [4, 1],
    ]);
  });
});

describe('DynamicBatcher: max_queue_delay', () => {
  it('with a delay, three requests on an idle instance run as ONE batch of 3, even across turns', async () => {
    // The delay only has to outlast a turn of the event loop between the requests; it is generous
    // so that a descheduled test process on a loaded machine cannot see it run out between them.
    const h = new Harness({ maxBatchSize: 8, maxQueueDelayMicroseconds: BATCH_WINDOW_US });
    const a = h.schedule(fp32Request([1]));
    await flush();
    assert.equal(h.calls.length, 0, 'the first request waits for others to join');
    const b = h.schedule(fp32Request([2]));
    const c = h.schedule(fp32Request([3]));
    await flush();
    assert.equal(h.calls.length, 0);
    assert.equal(h.batcher.queued, 3);
    await h.waitForCalls(1);
    assert.deepEqual(h.batches(), [[1, 2, 3]]);
    assert.equal(h.batcher.queued, 0);
    await release(h, 0);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    assertOwnResult(await c, [3]);
    assert.equal(h.calls.length, 1);
    assert.deepEqual(h.batchStats(), [[3, 1]]);
  });

  it('with delay 0 a lone request runs alone at once and those queued behind it follow together', async () => {
    const h = new Harness({ maxBatchSize: 8, maxQueueDelayMicroseconds: 0 });
    const a = h.schedule(fp32Request([1]));
    await flush();
    assert.deepEqual(h.batches(), [[1]], 'no waiting for company');
    const b = h.schedule(fp32Request([2]));
    await flush();
    const c = h.schedule(fp32Request([3]));
    await flush();
    assert.deepEqual(h.batches(), [[1]]);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[1], [2, 3]]);
    await release(h, 1);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    assertOwnResult(await c, [3]);
    assert.deepEqual(h.batchStats(), [
      [1, 1],
      [2, 1],
    ]);
  });

  it('a batch that reaches maxBatchSize is sent without waiting out the delay', async () => {
    const h = new Harness({ maxBatchSize: 3, maxQueueDelayMicroseconds: 60_000_000 });
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2]));
    await flush();
    assert.equal(h.calls.length, 0);
    const c = h.schedule(fp32Request([3]));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3]], 'full: sent on the next turn');
    await release(h, 0);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    assertOwnResult(await c, [3]);
  });

  it('a delay longer than setTimeout can hold (~24.8 days) keeps the request waiting, without a timer that fires every ms', async () => {
    const overflows = watchTimeoutOverflow();
    try {
      const h = new Harness({ maxBatchSize: 8, maxQueueDelayMicroseconds: 30 * 86_400 * 1_000_000 });
      const waiting = h.schedule(fp32Request([1]));
      await sleep(30);
      assert.equal(h.calls.length, 0);
      const stopped = h.batcher.stop(); // stopping sends what waits for company at once
      await release(h, 0);
      await stopped;
      assertOwnResult(await waiting, [1]);
    } finally {
      assert.deepEqual(overflows.stop(), []);
    }
  });

  it('a batch the next request cannot join is sent without waiting out the delay', async () => {
    const h = new Harness({ maxBatchSize: 8, maxQueueDelayMicroseconds: 60_000_000 });
    const a = h.schedule(fp32Request([1], { cols: 3 }));
    await flush();
    assert.equal(h.calls.length, 0);
    const b = h.schedule(fp32Request([2], { cols: 5 }));
    await flush();
    assert.deepEqual(h.batches(), [[1]], 'the [1,3] request goes alone as soon as a [1,5] one queues behind it');
    await release(h, 0);
    assertOwnResult(await a, [1], 3);
    // b now waits for company (or its delay); stop() ends the wait by running it.
    assert.equal(h.batcher.queued, 1);
    assert.equal(h.calls.length, 1);
    const stopped = h.batcher.stop();
    await release(h, 1);
    await stopped;
    assertOwnResult(await b, [2], 5);
  });
});

describe('DynamicBatcher: preferred_batch_size', () => {
  it('with preferred [4] and a large delay, 4 queued rows dispatch at once', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [4], maxQueueDelayMicroseconds: 60_000_000 });
    const results = [h.schedule(fp32Request([1])), h.schedule(fp32Request([2])), h.schedule(fp32Request([3]))];
    await flush();
    assert.equal(h.calls.length, 0, 'three rows wait for a preferred size');
    results.push(h.schedule(fp32Request([4])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3, 4]], 'the fourth row completes the preferred size: sent on the next turn');
    await release(h, 0);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
    assert.deepEqual(h.batchStats(), [[4, 1]]);
  });

  it('counts rows, not requests: 2 + 2 rows make the preferred 4', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [4], maxQueueDelayMicroseconds: 60_000_000 });
    const a = h.schedule(fp32Request([1, 2]));
    await flush();
    assert.equal(h.calls.length, 0);
    const b = h.schedule(fp32Request([3, 4]));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3, 4]]);
    await release(h, 0);
    assertOwnResult(await a, [1, 2]);
    assertOwnResult(await b, [3, 4]);
  });

  it('6 queued rows with preferred [2,4] and maxBatchSize 8 are cut to 4; the other 2, a preferred size, follow at once', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 10_000 });
    const blocker = h.schedule(fp32Request([10, 11, 12, 13])); // a preferred size: runs at once
    await flush();
    assert.deepEqual(h.batches(), [[10, 11, 12, 13]]);
    const results = [1, 2, 3, 4, 5, 6].map((id) => h.schedule(fp32Request([id])));
    assert.equal(h.batcher.queued, 6);
    await release(h, 0);
    assertOwnResult(await blocker, [10, 11, 12, 13]);
    assert.deepEqual(h.batches(), [[10, 11, 12, 13], [1, 2, 3, 4]], 'the largest preferred size reached exactly');
    await release(h, 1);
    await h.waitForCalls(3);
    assert.deepEqual(h.batches(), [[10, 11, 12, 13], [1, 2, 3, 4], [5, 6]]);
    await release(h, 2);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
    assert.deepEqual(h.batchStats(), [
      [2, 1],
      [4, 2],
    ]);
  });

  it('3 rows queued in one turn with preferred [2,4]: the preferred 2 goes at once, and only the third waits for company (as Triton)', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 60_000_000 });
    const results = [1, 2, 3].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2]], 'not held for the 60 s delay: a preferred size is queued');
    await release(h, 0);
    assert.equal(h.calls.length, 1, 'the third row alone is no preferred size: it waits for company');
    results.push(h.schedule(fp32Request([4])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2], [3, 4]], 'company came: the preferred 2 again, at once');
    await release(h, 1);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
    assert.deepEqual(h.batchStats(), [[2, 2]]);
  });

  it('the same 3 rows arriving one turn apart make the same batches', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 60_000_000 });
    const results: Promise<ScheduledResult>[] = [];
    for (const id of [1, 2, 3]) {
      results.push(h.schedule(fp32Request([id])));
      await flush();
    }
    assert.deepEqual(h.batches(), [[1, 2]]);
    await release(h, 0);
    assert.equal(h.calls.length, 1, 'the third waits for company');
    await finishHeld(h, results);
    assert.deepEqual(h.batches(), [[1, 2], [3]]);
  });

  it('5 rows queued in one turn with preferred [2,4]: the preferred 4 goes at once, the fifth waits', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 60_000_000 });
    const results = [1, 2, 3, 4, 5].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3, 4]]);
    await release(h, 0);
    assert.equal(h.calls.length, 1, 'one row is no preferred size');
    assert.equal(h.batcher.queued, 1);
    await finishHeld(h, results);
    assert.deepEqual(h.batchStats(), [
      [1, 1],
      [4, 1],
    ]);
  });

  it('rows piled up behind a busy instance: when it frees, the largest preferred size goes, then the next preferred one, and the rest waits', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 60_000_000 });
    const blocker = h.schedule(fp32Request([10, 11, 12, 13]));
    await flush();
    const results = [1, 2, 3, 4, 5, 6, 7].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.equal(h.batcher.queued, 7);
    await release(h, 0);
    assertOwnResult(await blocker, [10, 11, 12, 13]);
    assert.deepEqual(h.batches().slice(1), [[1, 2, 3, 4]], 'never past the largest preferred size while the delay runs');
    await release(h, 1);
    assert.deepEqual(h.batches().slice(2), [[5, 6]], 'the preferred 2 of the 3 left goes at once');
    await release(h, 2);
    assert.equal(h.calls.length, 3, 'the last row waits for company');
    await finishHeld(h, results);
  });

  it('rows that waited out the delay behind a busy instance go together when it frees, not cut to a preferred size (as Triton)', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 20_000 });
    const blocker = h.schedule(fp32Request([10, 11, 12, 13]));
    await flush();
    const results = [1, 2, 3].map((id) => h.schedule(fp32Request([id])));
    await sleep(40);
    await release(h, 0);
    assertOwnResult(await blocker, [10, 11, 12, 13]);
    assert.deepEqual(h.batches().slice(1), [[1, 2, 3]]);
    await release(h, 1);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
  });

  it('rows that waited out the delay go together up to max_batch_size, past the largest preferred size (as Triton)', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 20_000 });
    const blocker = h.schedule(fp32Request([10, 11, 12, 13]));
    await flush();
    const results = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((id) => h.schedule(fp32Request([id])));
    await sleep(40);
    await release(h, 0);
    assertOwnResult(await blocker, [10, 11, 12, 13]);
    assert.deepEqual(h.batches().slice(1), [[1, 2, 3, 4, 5, 6, 7, 8]], 'max_batch_size rows, not the preferred 4');
    await release(h, 1);
    await h.waitForCalls(3);
    assert.deepEqual(h.batches().slice(2), [[9]], 'the row past max_batch_size has waited out the delay too');
    await release(h, 2);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
  });

  it('a batch never grows past the largest preferred size: 3 rows then 2 go as 3, and the 2 wait for company (as Triton)', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [4], maxQueueDelayMicroseconds: 60_000_000 });
    const a = h.schedule(fp32Request([1, 2, 3]));
    await flush();
    assert.equal(h.calls.length, 0, '3 rows wait for the preferred 4');
    const b = h.schedule(fp32Request([4, 5])); // 3 + 2 would pass the preferred 4
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3]]);
    await release(h, 0);
    assertOwnResult(await a, [1, 2, 3]);
    const c = h.schedule(fp32Request([6, 7])); // 2 + 2: the preferred 4 exactly, at once
    await h.waitForCalls(2);
    assert.deepEqual(h.batches(), [
      [1, 2, 3],
      [4, 5, 6, 7],
    ]);
    await release(h, 1);
    assertOwnResult(await b, [4, 5]);
    assertOwnResult(await c, [6, 7]);
  });

  it('a preferred size reached exactly goes at once, without waiting out the delay for a larger one', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 6], maxQueueDelayMicroseconds: 10_000_000 });
    const a = h.schedule(fp32Request([1, 2]));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2]]);
    await release(h, 0);
    assertOwnResult(await a, [1, 2]);
  });
});

describe('DynamicBatcher: requests that cannot share a batch', () => {
  it('never merges requests whose non-batch dims differ ([1,3] vs [1,5]); each gets its own result', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const blocker = h.schedule(fp32Request([0], { cols: 3 }));
    await flush();
    const a = h.schedule(fp32Request([1], { cols: 3 }));
    const b = h.schedule(fp32Request([2], { cols: 5 }));
    const c = h.schedule(fp32Request([3], { cols: 3 }));
    const d = h.schedule(fp32Request([4], { cols: 3 }));
    await release(h, 0);
    await release(h, 1);
    await release(h, 2);
    await release(h, 3);
    assert.deepEqual(h.batches(), [[0], [1], [2], [3, 4]]);
    assert.deepEqual(
      h.calls.map((call) => call.inputs.INPUT0.shape),
      [
        [1, 3],
        [1, 3],
        [1, 5],
        [2, 3],
      ],
    );
    assertOwnResult(await blocker, [0], 3);
    assertOwnResult(await a, [1], 3);
    assertOwnResult(await b, [2], 5);
    assertOwnResult(await c, [3], 3);
    assertOwnResult(await d, [4], 3);
    assert.deepEqual(h.batchStats(), [
      [1, 3],
      [2, 1],
    ]);
  });

  it('never merges requests of one turn whose shapes differ, either', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const a = h.schedule(fp32Request([1], { cols: 3 }));
    const b = h.schedule(fp32Request([2], { cols: 5 }));
    await flush();
    assert.deepEqual(h.batches(), [[1]]);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[1], [2]]);
    await release(h, 1);
    assertOwnResult(await a, [1], 3);
    assertOwnResult(await b, [2], 5);
  });

  it('never merges requests whose datatypes differ (FP32 vs INT32); each gets its own result', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    h.schedule(fp32Request([0]));
    await flush();
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(int32Request([2]));
    const c = h.schedule(int32Request([3]));
    await release(h, 0);
    await release(h, 1);
    await release(h, 2);
    assert.deepEqual(h.batches(), [[0], [1], [2, 3]]);
    assert.deepEqual(
      h.calls.map((call) => call.inputs.INPUT0.datatype),
      ['FP32', 'FP32', 'INT32'],
    );
    assertOwnResult(await a, [1]);
    for (const [promise, id] of [
      [b, 2],
      [c, 3],
    ] as const) {
      const output = (await promise).outputs.OUTPUT0;
      assert.equal(output.datatype, 'INT32');
      assert.ok(output.data instanceof Int32Array);
      assert.deepEqual(output.shape, [1, COLS]);
      assert.deepEqual([...output.data], [id * 20, id * 20 + 2, id * 20 + 4]);
    }
  });

  it('batches INT64 (BigInt64Array) and BYTES requests and splits them back per caller', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    h.schedule(fp32Request([0]));
    await flush();
    const int64 = (values: bigint[]): ScheduledRequest => ({
      inputs: { INPUT0: { datatype: 'INT64', shape: [values.length / 2, 2], data: BigInt64Array.from(values) } },
      batchSize: values.length / 2,
      outputNames: ['OUTPUT0'],
    });
    const text = (values: string[]): ScheduledRequest => ({
      inputs: { INPUT0: { datatype: 'BYTES', shape: [values.length], data: values.map((v) => Buffer.from(v)) } },
      batchSize: values.length,
      outputNames: ['OUTPUT0'],
    });
    const big = 2n ** 61n;
    const i1 = h.schedule(int64([1n, big]));
    const i2 = h.schedule(int64([3n, 4n, 5n, -big]));
    const t1 = h.schedule(text(['ab']));
    const t2 = h.schedule(text(['c', 'de']));
    await release(h, 0);
    assert.deepEqual(h.calls[1].inputs.INPUT0.shape, [3, 2]);
    assert.deepEqual([...(h.calls[1].inputs.INPUT0.data as BigInt64Array)], [1n, big, 3n, 4n, 5n, -big]);
    await release(h, 1);
    assert.deepEqual(h.calls[2].inputs.INPUT0.shape, [3]);
    await release(h, 2);
    const o1 = (await i1).outputs.OUTPUT0;
    const o2 = (await i2).outputs.OUTPUT0;
    assert.deepEqual(o1.shape, [1, 2]);
    assert.deepEqual([...(o1.data as BigInt64Array)], [2n, 2n * big]);
    assert.deepEqual(o2.shape, [2, 2]);
    assert.deepEqual([...(o2.data as BigInt64Array)], [6n, 8n, 10n, -2n * big]);
    const s1 = (await t1).outputs.OUTPUT0;
    const s2 = (await t2).outputs.OUTPUT0;
    assert.deepEqual(s1.shape, [1]);
    assert.deepEqual((s1.data as Buffer[]).map(String), ['abab']);
    assert.deepEqual(s2.shape, [2]);
    assert.deepEqual((s2.data as Buffer[]).map(String), ['cc', 'dede']);
    assert.deepEqual(h.batchStats(), [
      [1, 1],
      [3, 2],
    ]);
  });
});

describe('DynamicBatcher: preserve_ordering', () => {
  async function raceTwoInstances(preserveOrdering: boolean) {
    const h = new Harness({ maxBatchSize: 4, preserveOrdering }, 2);
    const order: string[] = [];
    const a = track(h.schedule(fp32Request([1])).then((r) => (order.push('a'), r)));
    await flush();
    const b = track(h.schedule(fp32Request([2])).then((r) => (order.push('b'), r)));
    await flush();
    assert.deepEqual(h.batches(), [[1], [2]]);
    assert.notEqual(h.calls[0].instance, h.calls[1].instance);
    // The later request's batch finishes first.
    await release(h, 1);
    const bSettledEarly = b.settled;
    await release(h, 0);
    assertOwnResult(await a.promise, [1]);
    assertOwnResult(await b.promise, [2]);
    return { order, bSettledEarly };
  }

  it('delivers responses in arrival order when a later batch finishes first', async () => {
    const { order, bSettledEarly } = await raceTwoInstances(true);
    assert.equal(bSettledEarly, 'pending', 'b is held back until a is answered');
    assert.deepEqual(order, ['a', 'b']);
  });

  it('without it, a later batch that finishes first is answered first', async () => {
    const { order, bSettledEarly } = await raceTwoInstances(false);
    assert.equal(bSettledEarly, 'fulfilled');
    assert.deepEqual(order, ['b', 'a']);
  });

  it('holds later answers behind an earlier failure, then delivers them all in order', async () => {
    const h = new Harness({ maxBatchSize: 1, preserveOrdering: true }, 2);
    const order: string[] = [];
    const a = track(h.schedule(fp32Request([1])).catch((error) => (order.push('a'), Promise.reject(error))));
    const b = track(h.schedule(fp32Request([2])).then((r) => (order.push('b'), r)));
    await flush();
    assert.deepEqual(h.batches(), [[1], [2]], 'batches of 1 row: one per instance');
    await release(h, 1);
    assert.equal(b.settled, 'pending');
    h.calls[0].fail(new Error('boom'));
    await flush();
    await assert.rejects(a.promise, isError('INTERNAL', /boom/));
    assertOwnResult(await b.promise, [2]);
    assert.deepEqual(order, ['a', 'b']);
  });
});

describe('DynamicBatcher: priorities', () => {
  it('runs a high-priority request ahead of earlier low-priority ones', async () => {
    const h = new Harness({ maxBatchSize: 1, priorityLevels: 2, defaultPriorityLevel: 2 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const low1 = h.schedule(fp32Request([1])); // default level 2
    const low2 = h.schedule(fp32Request([2], { priority: 0 })); // 0 also means the default
    const high = h.schedule(fp32Request([3], { priority: 1 }));
    assert.equal(h.batcher.queued, 3);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [3]]);
    await release(h, 1);
    await release(h, 2);
    await release(h, 3);
    assert.deepEqual(h.batches(), [[0], [3], [1], [2]]);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await low1, [1]);
    assertOwnResult(await low2, [2]);
    assertOwnResult(await high, [3]);
  });

  it('puts higher-priority requests first within a batch, too', async () => {
    const h = new Harness({ maxBatchSize: 8, priorityLevels: 2, defaultPriorityLevel: 2 });
    h.schedule(fp32Request([0]));
    await flush();
    const low = h.schedule(fp32Request([1], { priority: 2 }));
    const high = h.schedule(fp32Request([2, 3], { priority: 1 }));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [2, 3, 1]]);
    await release(h, 1);
    assertOwnResult(await low, [1]);
    assertOwnResult(await high, [2, 3]);
  });

  it('orders a batch formed in one turn by priority as well', async () => {
    const h = new Harness({ maxBatchSize: 8, priorityLevels: 3, defaultPriorityLevel: 3 });
    const low = h.schedule(fp32Request([1]));
    const middle = h.schedule(fp32Request([2], { priority: 2 }));
    const high = h.schedule(fp32Request([3], { priority: 1 }));
    await flush();
    assert.deepEqual(h.batches(), [[3, 2, 1]]);
    await release(h, 0);
    assertOwnResult(await low, [1]);
    assertOwnResult(await middle, [2]);
    assertOwnResult(await high, [3]);
  });

  // A priority past the last level runs at the default level, as Triton runs it (priority-queue.test.ts).
  for (const priority of [-1, 1.5]) {
    it(`rejects priority ${priority} with INVALID_ARGUMENT and never runs it`, async () => {
      const h = new Harness({ maxBatchSize: 8, priorityLevels: 2, defaultPriorityLevel: 2 });
      assert.throws(() => h.batcher.validate({ priority }), isError('INVALID_ARGUMENT', /priority/));
      await assert.rejects(h.schedule(fp32Request([1], { priority })), isError('INVALID_ARGUMENT', /priority/));
      await flush();
      assert.equal(h.calls.length, 0);
      assert.equal(h.batcher.queued, 0);
      // The batcher still serves valid requests.
      const ok = h.schedule(fp32Request([2], { priority: 2 }));
      await flush();
      assert.deepEqual(h.batches(), [[2]]);
      await release(h, 0);
      assertOwnResult(await ok, [2]);
    });
  }

  it('applies per-level queue policies: a full level-1 queue does not block level 2', async () => {
    const h = new Harness({
      maxBatchSize: 1,
      priorityLevels: 2,
      defaultPriorityLevel: 2,
      priorityQueuePolicies: new Map([[1, { ...NO_TIMEOUT, maxQueueSize: 1 }]]),
    });
    h.schedule(fp32Request([0]));
    await flush();
    const high = h.schedule(fp32Request([1], { priority: 1 }));
    await assert.rejects(h.schedule(fp32Request([2], { priority: 1 })), isError('UNAVAILABLE', /queue is full/));
    const low = h.schedule(fp32Request([3], { priority: 2 }));
    await release(h, 0);
    await release(h, 1);
    await release(h, 2);
    assert.deepEqual(h.batches(), [[0], [1], [3]]);
    assertOwnResult(await high, [1]);
    assertOwnResult(await low, [3]);
  });
});

describe('DynamicBatcher: queue caps', () => {
  it('rejects a request beyond defaultQueuePolicy.maxQueueSize with UNAVAILABLE "queue is full" and never runs it', async () => {
    const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: { ...NO_TIMEOUT, maxQueueSize: 2 } });
    const blocker = h.schedule(fp32Request([0]));
    await flush(); // running, not queued
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2]));
    await assert.rejects(h.schedule(fp32Request([3])), isError('UNAVAILABLE', /queue is full \(2 requests/));
    assert.equal(h.batcher.queued, 2);
    await release(h, 0);
    // Room again: one left the queue.
    const d = h.schedule(fp32Request([4]));
    await release(h, 1);
    await release(h, 2);
    await release(h, 3);
    assert.deepEqual(h.batches(), [[0], [1], [2], [4]]);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    assertOwnResult(await d, [4]);
  });

  it('counts requests of the same turn against the cap while none of them may go yet', async () => {
    const h = new Harness({ maxBatchSize: 8, maxQueuedRequests: 2, maxQueueDelayMicroseconds: 60_000_000 });
    const results = [1, 2].map((id) => h.schedule(fp32Request([id])));
    await assert.rejects(h.schedule(fp32Request([3])), isError('UNAVAILABLE', /queue is full \(2 requests/));
    await flush();
    assert.equal(h.calls.length, 0, 'held for company: the queue stays full');
    await finishHeld(h, results);
    assert.deepEqual(h.batches(), [[1, 2]]);
  });

  it('a queue full in the turn its requests arrive, with an instance idle, sends the batch that may go and takes the request behind it', async () => {
    // Triton's repro: one instance, preferred [2,4], a 60 s delay, room for 3; five requests at once.
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicroseconds: 60_000_000, defaultQueuePolicy: { ...NO_TIMEOUT, maxQueueSize: 3 } });
    const results = [1, 2, 3, 4, 5].map((id) => h.schedule(fp32Request([id])));
    assert.deepEqual(h.batches(), [[1, 2]], 'the fourth request found the queue full: the preferred 2 went to make room');
    assert.equal(h.batcher.queued, 3);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[1, 2], [3, 4]]);
    await release(h, 1);
    assert.equal(h.batcher.queued, 1, 'the fifth waits for company');
    await finishHeld(h, results);
  });

  it('the same with no delay: the batch of the turn goes when the queue is full, and the next request waits for the next batch', async () => {
    const h = new Harness({ maxBatchSize: 8, maxQueuedRequests: 2 });
    const results = [1, 2, 3].map((id) => h.schedule(fp32Request([id])));
    assert.deepEqual(h.batches(), [[1, 2]]);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[1, 2], [3]]);
    await release(h, 1);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
  });

  it('applies the hard cap maxQueuedRequests when maxQueueSize is 0', async () => {
    const h = new Harness({ maxBatchSize: 1, maxQueuedRequests: 2 });
    h.schedule(fp32Request([0]));
    await flush();
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2]));
    await assert.rejects(h.schedule(fp32Request([3])), isError('UNAVAILABLE', /queue is full/));
    await release(h, 0);
    await release(h, 1);
    await release(h, 2);
    assert.deepEqual(h.batches(), [[0], [1], [2]]);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
  });

  it('the hard cap also bounds a larger per-level maxQueueSize', async () => {
    const h = new Harness({ maxBatchSize: 1, maxQueuedRequests: 1, defaultQueuePolicy: { ...NO_TIMEOUT, maxQueueSize: 5 } });
    h.schedule(fp32Request([0]));
    await flush();
    h.schedule(fp32Request([1]));
    await assert.rejects(h.schedule(fp32Request([2])), isError('UNAVAILABLE', /queue is full \(1 requests/));
    await release(h, 0);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [1]]);
  });
});

describe('DynamicBatcher: queue timeouts', () => {
  const reject = (defaultTimeoutMicroseconds: number, allowTimeoutOverride = false): QueuePolicy => ({
    maxQueueSize: 0,
    defaultTimeoutMicroseconds,
    timeoutAction: 'REJECT',
    allowTimeoutOverride,
  });

  // The default timeout applies to the first request too, between schedule() and its dispatch a turn
  // later: 100 ms keeps a loaded machine's slow turn from timing it out there.
  it('REJECT: a request that waits past the default timeout is rejected UNAVAILABLE and never executed', async () => {
    const h = new Harness({ maxBatchSize: 8, defaultQueuePolicy: reject(100_000) });
    const blocker = h.schedule(fp32Request([0]));
    await flush(); // dispatched: its timeout no longer applies
    assert.deepEqual(h.batches(), [[0]]);
    const late = h.schedule(fp32Request([1]));
    await assert.rejects(late, isError('UNAVAILABLE', /timeout/));
    assert.equal(h.batcher.queued, 0);
    const next = h.schedule(fp32Request([2]));
    await release(h, 0);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [2]], 'the expired request never reached the instance');
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await next, [2]);
  });

  it('a request that arrives past its deadline is DEADLINE_EXCEEDED although an instance is idle, and never runs', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    await assert.rejects(h.schedule(fp32Request([1], { deadline: performance.now() - 1 })), isError('DEADLINE_EXCEEDED', /deadline/));
    const ok = h.schedule(fp32Request([2], { deadline: performance.now() + 60_000 }));
    await flush();
    assert.deepEqual(h.batches(), [[2]], 'only the request in time reached the instance');
    assert.equal(h.batcher.queued, 0);
    await release(h, 0);
    assertOwnResult(await ok, [2]);
  });

  it('a deadline that passes while the request waits drops it with DEADLINE_EXCEEDED', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    h.schedule(fp32Request([0]));
    await flush();
    const late = h.schedule(fp32Request([1], { deadline: performance.now() + 10 }));
    await assert.rejects(late, isError('DEADLINE_EXCEEDED'));
    assert.equal(h.batcher.queued, 0);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0]]);
  });

  it('a running request is not timed out', async () => {
    const h = new Harness({ maxBatchSize: 8, defaultQueuePolicy: reject(100_000) });
    const running = track(h.schedule(fp32Request([1])));
    await flush();
    assert.equal(h.calls.length, 1);
    await sleep(150);
    assert.equal(h.calls.length, 1);
    assert.equal(running.settled, 'pending');
    await release(h, 0);
    assertOwnResult(await running.promise, [1]);
  });

  it('allowTimeoutOverride: a shorter request timeout applies', async () => {
    const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: reject(5_000_000, true) });
    h.schedule(fp32Request([0]));
    await flush();
    const patient = track(h.schedule(fp32Request([1])));
    const hasty = h.schedule(fp32Request([2], { timeoutMicroseconds: 5_000 }));
    await assert.rejects(hasty, isError('UNAVAILABLE', /timeout/));
    assert.equal(patient.settled, 'pending', 'the default (5 s) still holds for the other request');
    await release(h, 0);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [1]]);
    assertOwnResult(await patient.promise, [1]);
  });

  it('allowTimeoutOverride: a longer request timeout does not lengthen the default', { timeout: 5_000 }, async () => {
    const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: reject(100_000, true) });
    h.schedule(fp32Request([0]));
    await flush();
    assert.equal(h.calls.length, 1);
    const slow = h.schedule(fp32Request([1], { timeoutMicroseconds: 60_000_000 }));
    await assert.rejects(slow, isError('UNAVAILABLE', /timeout/));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0]]);
  });

  it('allowTimeoutOverride false: a request timeout is ignored', async () => {
    const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: reject(0, false) });
    h.schedule(fp32Request([0]));
    await flush();
    const ignored = track(h.schedule(fp32Request([1], { timeoutMicroseconds: 1_000 })));
    await sleep(30);
    assert.equal(ignored.settled, 'pending');
    await release(h, 0);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [1]]);
    assertOwnResult(await ignored.promise, [1]);
  });

  it('allowTimeoutOverride true with no default: the request timeout applies', async () => {
    const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: reject(0, true) });
    h.schedule(fp32Request([0]));
    await flush();
    await assert.rejects(h.schedule(fp32Request([1], { timeoutMicroseconds: 1_000 })), isError('UNAVAILABLE', /timeout/));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0]]);
  });

  it('a request timeout longer than setTimeout can hold (~24.8 days) does not expire at once', async () => {
    const overflows = watchTimeoutOverflow();
    try {
      const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: reject(0, true) });
      h.schedule(fp32Request([0]));
      await flush();
      // 30 days, in microseconds: beyond setTimeout's 2^31-1 ms, which it would shorten to 1 ms.
      const patient = track(h.schedule(fp32Request([1], { timeoutMicroseconds: 30 * 86_400 * 1_000_000 })));
      await sleep(30);
      assert.equal(patient.settled, 'pending');
      await release(h, 0);
      await release(h, 1);
      assertOwnResult(await patient.promise, [1]);
    } finally {
      assert.deepEqual(overflows.stop(), []);
    }
  });

  it('the same for a default timeout from the config', async () => {
    const overflows = watchTimeoutOverflow();
    try {
      const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: reject(30 * 86_400 * 1_000_000) });
      h.schedule(fp32Request([0]));
      await flush();
      const patient = track(h.schedule(fp32Request([1])));
      await sleep(30);
      assert.equal(patient.settled, 'pending');
      await release(h, 0);
      await release(h, 1);
      assertOwnResult(await patient.promise, [1]);
    } finally {
      assert.deepEqual(overflows.stop(), []);
    }
  });

  it('rejects an invalid request timeout with INVALID_ARGUMENT where overrides are allowed', async () => {
    const h = new Harness({ maxBatchSize: 1, defaultQueuePolicy: reject(0, true) });
    await assert.rejects(h.schedule(fp32Request([1], { timeoutMicroseconds: -5 })), isError('INVALID_ARGUMENT'));
    await assert.rejects(h.schedule(fp32Request([1], { timeoutMicroseconds: 1.5 })), isError('INVALID_ARGUMENT'));
    assert.throws(() => h.batcher.validate({ timeoutMicroseconds: -5 }), isError('INVALID_ARGUMENT', /timeout/));
    await flush();
    assert.equal(h.calls.length, 0);
    assert.equal(h.batcher.queued, 0);
  });

  it('DELAY: an expired request moves behind a later-arriving one, but still runs and succeeds', async () => {
    const h = new Harness({
      maxBatchSize: 1,
      defaultQueuePolicy: { maxQueueSize: 0, defaultTimeoutMicroseconds: 5_000, timeoutAction: 'DELAY', allowTimeoutOverride: false },
    });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const early = h.schedule(fp32Request([1]));
    await sleep(30); // past early's 5 ms timeout: it is now delayed
    const later = h.schedule(fp32Request([2]));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [2]], 'the later request runs first');
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [2], [1]]);
    await release(h, 2);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await early, [1]);
    assertOwnResult(await later, [2]);
  });

  it('DELAY: a delayed high-priority request stays ahead of lower levels, as in Triton', async () => {
    const delayAfter5ms = { maxQueueSize: 0, defaultTimeoutMicroseconds: 5_000, timeoutAction: 'DELAY' as const, allowTimeoutOverride: false };
    const h = new Harness({
      maxBatchSize: 1,
      priorityLevels: 2,
      defaultPriorityLevel: 2,
      priorityQueuePolicies: new Map([[1, delayAfter5ms]]),
    });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const high = h.schedule(fp32Request([1], { priority: 1 }));
    await sleep(30); // high's timeout expires: delayed within level 1
    const low = h.schedule(fp32Request([2]));
    await release(h, 0);
    await release(h, 1);
    await release(h, 2);
    assert.deepEqual(h.batches(), [[0], [1], [2]]);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await high, [1]);
    assertOwnResult(await low, [2]);
  });

  it('DELAY: a delayed request still joins a batch, behind the others', async () => {
    const h = new Harness({
      maxBatchSize: 4,
      defaultQueuePolicy: { maxQueueSize: 0, defaultTimeoutMicroseconds: 5_000, timeoutAction: 'DELAY', allowTimeoutOverride: false },
    });
    h.schedule(fp32Request([0]));
    await flush();
    const early = h.schedule(fp32Request([1]));
    await sleep(30);
    const later = h.schedule(fp32Request([2, 3]));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [2, 3, 1]]);
    await release(h, 1);
    assertOwnResult(await early, [1]);
    assertOwnResult(await later, [2, 3]);
  });

  it('DELAY: a delayed request can still be cancelled', async () => {
    const h = new Harness({
      maxBatchSize: 1,
      defaultQueuePolicy: { maxQueueSize: 0, defaultTimeoutMicroseconds: 5_000, timeoutAction: 'DELAY', allowTimeoutOverride: false },
    });
    h.schedule(fp32Request([0]));
    await flush();
    const controller = new AbortController();
    const delayed = h.schedule(fp32Request([1], { signal: controller.signal }));
    await sleep(30);
    controller.abort();
    await assert.rejects(delayed, isError('CANCELLED'));
    assert.equal(h.batcher.queued, 0);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0]]);
  });
});

describe('DynamicBatcher: cancellation', () => {
  it('aborting a queued request rejects it with CANCELLED and it never executes', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const controller = new AbortController();
    const a = h.schedule(fp32Request([1]));
    const cancelled = h.schedule(fp32Request([2], { signal: controller.signal }));
    const c = h.schedule(fp32Request([3]));
    controller.abort();
    await assert.rejects(cancelled, isError('CANCELLED'));
    assert.equal(h.batcher.queued, 2);
    await release(h, 0);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [1, 3]]);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await a, [1]);
    assertOwnResult(await c, [3]);
  });

  it("the core's ClientCancellation cancels a queued request too, and a request that left the queue stops listening", async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const gone = new ClientCancellation();
    const staying = new ClientCancellation();
    const cancelled = h.schedule(fp32Request([1], { signal: gone }));
    const kept = h.schedule(fp32Request([2], { signal: staying }));
    gone.abort();
    await assert.rejects(cancelled, isError('CANCELLED'));
    assert.equal(h.batcher.queued, 1);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [2]]);
    // Its batch has left the queue: a client leaving now changes nothing for the batch under way.
    assert.equal((staying as unknown as { listeners: unknown[] }).listeners.length, 0);
    staying.abort();
    await release(h, 1);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await kept, [2]);
  });

  it('aborting a request in the turn it was scheduled drops it before the dispatch', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const controller = new AbortController();
    const cancelled = h.schedule(fp32Request([1], { signal: controller.signal }));
    const b = h.schedule(fp32Request([2]));
    controller.abort();
    await assert.rejects(cancelled, isError('CANCELLED'));
    await flush();
    assert.deepEqual(h.batches(), [[2]]);
    await release(h, 0);
    assertOwnResult(await b, [2]);
  });

  it('aborting a request that waits for the batch delay drops it from the batch', async () => {
    const h = new Harness({ maxBatchSize: 3, maxQueueDelayMicroseconds: 60_000_000 });
    const controller = new AbortController();
    const cancelled = h.schedule(fp32Request([1], { signal: controller.signal }));
    const b = h.schedule(fp32Request([2]));
    await flush();
    assert.equal(h.calls.length, 0, 'waiting for the delay (or a full batch)');
    controller.abort();
    await assert.rejects(cancelled, isError('CANCELLED'));
    assert.equal(h.batcher.queued, 1);
    const c = h.schedule(fp32Request([3, 4])); // fills the batch of 3 in the cancelled one's place
    await flush();
    assert.deepEqual(h.batches(), [[2, 3, 4]]);
    await release(h, 0);
    assertOwnResult(await b, [2]);
    assertOwnResult(await c, [3, 4]);
  });

  it('aborting a running request lets it finish with its result', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const controller = new AbortController();
    const running = h.schedule(fp32Request([1], { signal: controller.signal }));
    await flush();
    assert.equal(h.calls.length, 1);
    controller.abort();
    await flush();
    await release(h, 0);
    assertOwnResult(await running, [1]);
  });

  it('an already-aborted signal is rejected at once and never queued', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(h.schedule(fp32Request([1], { signal: controller.signal })), isError('CANCELLED'));
    await flush();
    assert.equal(h.calls.length, 0);
    assert.equal(h.batcher.queued, 0);
  });
});

describe('DynamicBatcher: failures', () => {
  const LABEL = "model 'gated' version 1: ";

  it('an execution that fails rejects every request of its batch with INTERNAL, and the next requests are served', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2, 3]));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3]]);
    const original = new Error('the device fell over');
    const failed = (error: unknown) => {
      isError('INTERNAL', /the device fell over/)(error);
      assert.ok((error as NereidError).message.startsWith(LABEL), (error as NereidError).message);
      assert.equal((error as NereidError).cause, original, 'the original error is the cause');
      return true;
    };
    const aFailed = assert.rejects(a, failed);
    const bFailed = assert.rejects(b, failed);
    h.calls[1].fail(original);
    await aFailed;
    await bFailed;
    const c = h.schedule(fp32Request([4]));
    await flush();
    const d = h.schedule(fp32Request([5]));
    await flush();
    assert.deepEqual(h.batches(), [[0], [1, 2, 3], [4]]);
    await release(h, 2);
    await release(h, 3);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3], [4], [5]]);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await c, [4]);
    assertOwnResult(await d, [5]);
  });

  it('an instance whose run throws synchronously rejects its batch with INTERNAL and the batcher keeps serving', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    h.throwOnRun = true;
    let thrown: unknown;
    const first = h.schedule(fp32Request([1])); // does not throw here: the instance runs on the next turn
    await first.catch((error) => (thrown = error));
    isError('INTERNAL', /threw synchronously/)(thrown);
    assert.ok((thrown as Error).message.startsWith(LABEL));
    assert.ok((thrown as Error).cause instanceof Error);
    assert.equal(((thrown as Error).cause as Error).message, 'the instance threw synchronously');
    h.throwOnRun = false;
    const ok = h.schedule(fp32Request([2]));
    await flush();
    assert.deepEqual(h.batches(), [[2]]);
    await release(h, 0);
    assertOwnResult(await ok, [2]);
  });

  it('a model that drops the batch dimension fails the batch with INTERNAL instead of mis-slicing', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    h.schedule(fp32Request([0]));
    await flush();
    const a = assert.rejects(h.schedule(fp32Request([1])), isError('INTERNAL', /batch dimension/));
    const b = assert.rejects(h.schedule(fp32Request([2])), isError('INTERNAL', /batch dimension/));
    h.model = () => ({ OUTPUT0: { datatype: 'FP32', shape: [1], data: Float32Array.from([0]) } });
    await release(h, 0);
    await release(h, 1);
    assert.deepEqual(h.batches(), [[0], [1, 2]]);
    await a;
    await b;
  });

  it("a batch the engine refuses for its inputs runs again in halves: one request's bad input fails it alone", async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const good = h.schedule(fp32Request([1]));
    const bad = h.schedule(fp32Request([99]));
    const alsoGood = h.schedule(fp32Request([2, 3]));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[0], [1, 99, 2, 3]]);
    const refused = assert.rejects(bad, isError('INVALID_ARGUMENT', /token id 99 is beyond the vocabulary/));
    const beyond = new NereidError('INVALID_ARGUMENT', 'token id 99 is beyond the vocabulary');
    h.calls[1].fail(beyond);
    // The first half (two requests) fails again and is halved; the second half runs as it is, on the same instance.
    await h.waitForCalls(3);
    h.calls[2].fail(beyond);
    await h.waitForCalls(4);
    await release(h, 3);
    await h.waitForCalls(5);
    h.calls[4].fail(beyond);
    await h.waitForCalls(6);
    await release(h, 5);
    assert.deepEqual(h.batches(), [[0], [1, 99, 2, 3], [1, 99], [1], [99], [2, 3]]);
    // Only a joined part is the batcher's to hand over; a request alone keeps its own buffers, as in a first run.
    assert.deepEqual(h.calls.slice(2).map((call) => call.options?.inputsOwned === true), [true, false, false, false]);
    assertOwnResult(await blocker, [0]);
    assertOwnResult(await good, [1]);
    assertOwnResult(await alsoGood, [2, 3]);
    await refused;
  });

  it('one bad request in a batch of eight costs six more runs, not eight, and the good halves run batched', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const blocker = h.schedule(fp32Request([0]));
    await flush();
    const answers = [1, 2, 3, 4, 5, 6, 7, 8].map((id) => h.schedule(fp32Request([id])));
    const refused = assert.rejects(answers[6], isError('INVALID_ARGUMENT', /bad 7/));
    await release(h, 0);
    const bad = new NereidError('INVALID_ARGUMENT', 'bad 7');
    // Each call holding request 7 fails, every other is released, until no call follows.
    for (let call = 1; h.calls.length > call; call++) {
      if (h.batches()[call].includes(7)) h.calls[call].fail(bad);
      else h.calls[call].release();
      await flush();
    }
    assert.deepEqual(h.batches(), [[0], [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4], [5, 6, 7, 8], [5, 6], [7, 8], [7], [8]]);
    assertOwnResult(await blocker, [0]);
    for (const [index, answer] of answers.entries()) if (index !== 6) assertOwnResult(await answer, [index + 1]);
    await refused;
  });

  it('a NereidError from the instance keeps its code', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const a = h.schedule(fp32Request([1]));
    await h.waitForCalls(1);
    h.calls[0].fail(new NereidError('INVALID_ARGUMENT', 'bad shape'));
    await assert.rejects(a, isError('INVALID_ARGUMENT', /bad shape/));
  });
});

describe('DynamicBatcher: stop()', () => {
  it('runs what was queued, lets running work finish, rejects new requests, and settles when all have answered', async () => {
    const h = new Harness({ maxBatchSize: 1 });
    const running = h.schedule(fp32Request([0]));
    await flush();
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2]));
    const stopped = track(h.batcher.stop());
    await flush();
    assert.equal(stopped.settled, 'pending', 'stop() waits for accepted requests');
    await assert.rejects(h.schedule(fp32Request([3])), isError('UNAVAILABLE', /unloading/));
    await release(h, 0);
    await release(h, 1);
    assert.equal(stopped.settled, 'pending');
    await release(h, 2);
    await stopped.promise;
    assertOwnResult(await running, [0]);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    assert.deepEqual(h.batches(), [[0], [1], [2]], 'every accepted request ran, in order');
    await assert.rejects(h.schedule(fp32Request([4])), isError('UNAVAILABLE'));
  });

  it('runs requests scheduled in the turn stop() is called in, before their dispatch was due', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2]));
    const stopped = h.batcher.stop();
    await flush();
    assert.deepEqual(h.batches(), [[1, 2]]);
    await release(h, 0);
    await stopped;
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
  });

  it('sends a request waiting for the batch delay at once and leaves no timer behind', async () => {
    const h = new Harness({ maxBatchSize: 8, maxQueueDelayMicroseconds: 60_000_000 });
    const waiting = h.schedule(fp32Request([1]));
    await flush();
    assert.equal(h.calls.length, 0);
    const stopped = h.batcher.stop();
    assert.deepEqual(h.batches(), [[1]], 'stop() dispatches synchronously');
    await release(h, 0);
    await stopped;
    assertOwnResult(await waiting, [1]);
  });
});

describe('DynamicBatcher: changeInstances()', () => {
  it('sends what waits to an added instance at once, none to a removed one, and settles once the removed one has finished its batch', async () => {
    const h = new Harness({ maxBatchSize: 1 });
    const running = h.schedule(fp32Request([0]));
    await flush();
    const waiting = h.schedule(fp32Request([1]));
    await flush();
    assert.deepEqual(h.calls.map((call) => call.instance), [0], 'the one instance is busy');
    const changed = track(h.batcher.changeInstances([new GatedInstance(1, h)], [h.instances[0]]));
    await flush();
    assert.deepEqual(h.calls.map((call) => call.instance), [0, 1], 'the added instance takes the waiting request');
    assert.equal(changed.settled, 'pending', 'the removed instance still runs a batch');
    await release(h, 0);
    await changed.promise;
    assertOwnResult(await running, [0]);
    await release(h, 1);
    assertOwnResult(await waiting, [1]);
    const later = [h.schedule(fp32Request([2])), h.schedule(fp32Request([3]))];
    await flush();
    await release(h, 2);
    await release(h, 3);
    for (const [index, result] of later.entries()) assertOwnResult(await result, [index + 2]);
    assert.deepEqual(h.calls.map((call) => call.instance), [0, 1, 1, 1], 'no batch goes to the removed instance');
  });

  it('settles at once when the instances it removes are idle, and counts the slots of those it adds', async () => {
    const h = new Harness({ maxBatchSize: 1 }, 2);
    await h.batcher.changeInstances([new GatedInstance(2, h), new GatedInstance(3, h)], [h.instances[1]]);
    const results = [1, 2, 3, 4].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.calls.map((call) => call.instance).sort(), [0, 2, 3], 'three instances serve: the removed one takes none');
    for (let index = 0; index < 4; index++) await release(h, index);
    for (const [index, result] of results.entries()) assertOwnResult(await result, [index + 1]);
  });
});

describe('DynamicBatcher: statistics', () => {
  it('execution_count and batch_stats match the batches executed', async () => {
    const h = new Harness({ maxBatchSize: 4 });
    const pending: Promise<ScheduledResult>[] = [h.schedule(fp32Request([0]))]; // batch of 1
    await flush();
    pending.push(h.schedule(fp32Request([1])), h.schedule(fp32Request([2, 3]))); // batch of 3
    await release(h, 0);
    pending.push(h.schedule(fp32Request([4, 5]))); // batch of 2
    await release(h, 1);
    pending.push(h.schedule(fp32Request([6])), h.schedule(fp32Request([7, 8]))); // batch of 3
    await release(h, 2);
    await release(h, 3);
    assert.deepEqual(h.batches(), [[0], [1, 2, 3], [4, 5], [6, 7, 8]]);
    const results = await Promise.all(pending);
    assert.deepEqual(
      results.map((result) => result.timings.batchRows),
      [1, 3, 3, 2, 3, 3],
    );
    const json = h.stats.toJSON();
    assert.equal(json.execution_count, 4);
    assert.deepEqual(
      json.batch_stats.map((entry) => ({
        size: entry.batch_size,
        input: entry.compute_input.count,
        infer: entry.compute_infer.count,
        output: entry.compute_output.count,
      })),
      [
        { size: 1, input: 1, infer: 1, output: 1 },
        { size: 2, input: 1, infer: 1, output: 1 },
        { size: 3, input: 2, infer: 2, output: 2 },
      ],
    );
    for (const entry of json.batch_stats) {
      for (const duration of [entry.compute_input, entry.compute_infer, entry.compute_output]) {
        assert.ok(Number.isInteger(duration.ns) && duration.ns >= 0);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Light traffic, instances that take several batches, and what instances are told and tell

const msToNs = (ms: number) => ms * 1e6;

/**
 * Returns once performance.now() reads at least 1 µs past `from` (it moves within that): a
 * hand-off that began at `from` then certainly took longer than the few ns an engine says it
 * computed, whatever the machine's load.
 */
function clockPast(from: number): void {
  while (performance.now() - from < 0.001) {
    // the clock moves on its own
  }
}

/** `doubler`, with the engine saying it computed 1 ns per input element (COMPUTE_NS). */
const selfTimedDoubler: Model = (inputs, outputNames) => Object.assign(doubler(inputs, outputNames), { [COMPUTE_NS]: inputs.INPUT0.data.length });

/**
 * Runs request [1, 2] alone on a harness with `model`, held until the clock has moved past the
 * batch's hand-off; returns its result and a lower bound of the hand-off (run() to its answer), in ns.
 */
async function runHeld(model: Model): Promise<{ h: Harness; result: ScheduledResult; handOffNs: number }> {
  const h = new Harness({ maxBatchSize: 8 });
  h.model = model;
  const scheduled = h.schedule(fp32Request([1, 2]));
  await flush();
  const { ranAt } = h.calls[0];
  clockPast(ranAt);
  const releasedAt = performance.now();
  await release(h, 0);
  const result = await scheduled;
  assertOwnResult(result, [1, 2]);
  return { h, result, handOffNs: msToNs(releasedAt - ranAt) };
}

describe('DynamicBatcher: light traffic sends a lone request at once', () => {
  it('after a turn that brought a single request, the next lone request reaches an idle instance inside schedule()', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const first = h.schedule(fp32Request([1]));
    assert.equal(h.calls.length, 0, 'a fresh batcher knows nothing of the traffic: the first request waits for its turn');
    await flush();
    assert.deepEqual(h.batches(), [[1]]);
    await release(h, 0);
    assertOwnResult(await first, [1]);

    const second = h.schedule(fp32Request([2]));
    assert.deepEqual(h.batches(), [[1], [2]], 'the instance had it before schedule() returned');
    assert.equal(h.batcher.queued, 0);
    await release(h, 1);
    assertOwnResult(await second, [2]);

    // Steady light traffic: every lone request goes at once.
    for (const id of [3, 4, 5]) {
      const result = h.schedule(fp32Request([id]));
      assert.equal(h.calls.length, id, `request ${id} reached the instance inside schedule()`);
      await release(h, id - 1);
      assertOwnResult(await result, [id]);
    }
    assert.deepEqual(h.batchStats(), [[1, 5]]);
  });

  it('a turn that brings several requests switches back to batching: the others of that turn join one batch, and the next lone request waits for its turn', async () => {
    const h = new Harness({ maxBatchSize: 8 }, 2);
    const warmUp = h.schedule(fp32Request([0]));
    await flush();
    await release(h, 0);
    assertOwnResult(await warmUp, [0]);

    // Request i carries row i; results[i - 1] is its answer.
    const results = [1, 2, 3].map((id) => h.schedule(fp32Request([id])));
    assert.deepEqual(h.batches(), [[0], [1]], 'only the first request of the turn went inside schedule()');
    assert.equal(h.batcher.queued, 2);
    await flush();
    assert.deepEqual(h.batches(), [[0], [1], [2, 3]], 'the rest of the turn: one batch, when the turn ends');
    assert.notEqual(h.calls[2].instance, h.calls[1].instance, 'on the other instance');
    await release(h, 1);
    await release(h, 2);

    // The last turn brought three: a lone request now waits for the end of its turn, and what else comes in it joins.
    results.push(h.schedule(fp32Request([4])));
    assert.equal(h.calls.length, 3, 'not sent inside schedule(): traffic is not light');
    results.push(h.schedule(fp32Request([5])));
    await flush();
    assert.deepEqual(h.batches().slice(3), [[4, 5]]);
    await release(h, 3);
    // That turn brought two: still not light.
    results.push(h.schedule(fp32Request([6])));
    assert.equal(h.calls.length, 4);
    await flush();
    assert.deepEqual(h.batches().slice(4), [[6]]);
    await release(h, 4);
    // After a turn of one request, a lone request goes at once again.
    results.push(h.schedule(fp32Request([7])));
    assert.deepEqual(h.batches().slice(5), [[7]]);
    await release(h, 5);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
  });
});

describe('DynamicBatcher: instances that take several batches at once (concurrency)', () => {
  it('concurrency 2: a second batch reaches the instance while its first still runs; a third waits for one of them to end', async () => {
    const h = new Harness({ maxBatchSize: 8 }, 1, 2);
    const a = h.schedule(fp32Request([1]));
    await flush();
    const b = h.schedule(fp32Request([2]));
    await flush();
    assert.deepEqual(h.batches(), [[1], [2]]);
    assert.deepEqual(
      h.calls.map((call) => call.instance),
      [0, 0],
      'both batches on the one instance',
    );
    const c = h.schedule(fp32Request([3]));
    const d = h.schedule(fp32Request([4]));
    await flush();
    assert.equal(h.calls.length, 2, 'two batches at once is all it takes');
    assert.equal(h.batcher.queued, 2);
    await release(h, 1); // the second batch ends first
    assertOwnResult(await b, [2]);
    assert.deepEqual(h.batches(), [[1], [2], [3, 4]], 'the freed place takes what queued');
    assert.equal(h.calls[2].instance, 0);
    await release(h, 0);
    await release(h, 2);
    assertOwnResult(await a, [1]);
    assertOwnResult(await c, [3]);
    assertOwnResult(await d, [4]);
    assert.equal(h.batcher.queued, 0);
  });

  for (const concurrency of [undefined, 1]) {
    it(`concurrency ${concurrency ?? 'left out (default 1)'}: the next batch waits until the instance's batch ends, light traffic or not`, async () => {
      const h = new Harness({ maxBatchSize: 8 }, 1, concurrency);
      const a = h.schedule(fp32Request([1]));
      await flush(); // a turn of one request: traffic is light
      const b = h.schedule(fp32Request([2]));
      assert.equal(h.calls.length, 1, 'no idle instance: not sent inside schedule()');
      await flush();
      assert.deepEqual(h.batches(), [[1]], 'nor at the end of the turn');
      assert.equal(h.batcher.queued, 1);
      await release(h, 0);
      assert.deepEqual(h.batches(), [[1], [2]]);
      await release(h, 1);
      assertOwnResult(await a, [1]);
      assertOwnResult(await b, [2]);
    });
  }

  it('one instance of concurrency 2 counts as one instance when work is spread: requests arriving together are not split for it (cutAtCheapest)', async () => {
    const h = new Harness({ maxBatchSize: 8, cutAtCheapest: true }, 1, 2);
    const results = [1, 2, 3, 4].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3, 4]], 'two idle instances would have taken [1, 2] and [3, 4]');
    assert.equal(h.batcher.queued, 0);
    await release(h, 0);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
  });

  it('under light traffic, a lone request goes at once to an instance of concurrency 2 that still runs a batch', async () => {
    const h = new Harness({ maxBatchSize: 8 }, 1, 2);
    const a = h.schedule(fp32Request([1]));
    await flush();
    const b = h.schedule(fp32Request([2]));
    assert.deepEqual(h.batches(), [[1], [2]], 'the instance had a free place: sent inside schedule()');
    const c = h.schedule(fp32Request([3]));
    assert.equal(h.calls.length, 2, 'no free place for a third');
    await release(h, 0);
    assert.deepEqual(h.batches(), [[1], [2], [3]]);
    await release(h, 1);
    await release(h, 2);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    assertOwnResult(await c, [3]);
  });
});

describe('DynamicBatcher: what an instance is told (inputsOwned) and tells (COMPUTE_NS)', () => {
  it('a joined batch is passed with inputsOwned, in buffers of its own; a single request is passed its own inputs, without it', async () => {
    const h = new Harness({ maxBatchSize: 8 });
    const lone = fp32Request([1, 2]);
    const a = h.schedule(lone);
    await flush();
    assert.deepEqual(h.batches(), [[1, 2]]);
    assert.equal(h.calls[0].options, undefined, 'the caller\'s buffers are not the batcher\'s to give away');
    assert.equal(h.calls[0].inputs, lone.inputs, 'a single request\'s inputs go as they are');
    const joined = [fp32Request([3]), fp32Request([4, 5])];
    const results = joined.map((request) => h.schedule(request));
    await release(h, 0);
    assert.deepEqual(h.batches(), [[1, 2], [3, 4, 5]]);
    assert.deepEqual(h.calls[1].options, { inputsOwned: true });
    const batchBuffer = (h.calls[1].inputs.INPUT0.data as Float32Array).buffer;
    for (const request of joined) assert.notEqual(batchBuffer, (request.inputs.INPUT0.data as Float32Array).buffer, 'not a caller\'s buffer');
    await release(h, 1);
    assertOwnResult(await a, [1, 2]);
    assertOwnResult(await results[0], [3]);
    assertOwnResult(await results[1], [4, 5]);
  });

  it('with COMPUTE_NS on the outputs, compute_infer is the engine\'s time, the rest of the hand-off is compute_input, and BatchCosts learns the engine\'s time', async () => {
    const { h, result, handOffNs } = await runHeld(selfTimedDoubler);
    const engineNs = 2 * COLS; // 1 ns per element
    assert.equal(result.timings.computeInferNs, engineNs);
    assert.ok(result.timings.computeInputNs >= handOffNs - engineNs - 1, `compute_input ${result.timings.computeInputNs} ns holds the hand-off (${handOffNs} ns at least)`);
    const [entry] = h.stats.toJSON().batch_stats;
    assert.equal(entry.batch_size, 2);
    assert.deepEqual(entry.compute_infer, { count: 1, ns: engineNs });
    assert.deepEqual(entry.compute_input, { count: 1, ns: Math.round(result.timings.computeInputNs) });
    assert.deepEqual(h.batcher.costs.snapshot(), [{ rows: 2, nsPerElement: 1, samples: 1 }]);
  });

  it('without COMPUTE_NS, the whole hand-off is compute_infer, and BatchCosts learns that', async () => {
    const { h, result: { timings }, handOffNs } = await runHeld(doubler);
    assert.ok(timings.computeInferNs >= handOffNs, `compute_infer ${timings.computeInferNs} ns, the hand-off at least ${handOffNs} ns`);
    const [learned] = h.batcher.costs.snapshot();
    assert.equal(learned.rows, 2);
    assert.equal(learned.nsPerElement, timings.computeInferNs / (2 * COLS));
  });

  it('a COMPUTE_NS longer than the hand-off itself is capped at the hand-off', async () => {
    const claimedNs = 1e15; // some eleven days
    const { h, result: { timings }, handOffNs } = await runHeld((inputs, outputNames) => Object.assign(doubler(inputs, outputNames), { [COMPUTE_NS]: claimedNs }));
    assert.ok(timings.computeInferNs < claimedNs, `capped: ${timings.computeInferNs} ns`);
    assert.ok(timings.computeInferNs >= handOffNs, 'the whole hand-off');
    assert.ok(h.batcher.costs.snapshot()[0].nsPerElement < claimedNs / (2 * COLS));
  });

  it('a batch that ran beside another on its instance (concurrency 2) teaches its cost but no hand-off overhead; a batch alone teaches both', async () => {
    const h = new Harness({ maxBatchSize: 8 }, 1, 2);
    h.model = selfTimedDoubler;
    const a = h.schedule(fp32Request([1, 2]));
    await flush();
    const b = h.schedule(fp32Request([3, 4]));
    await flush();
    assert.deepEqual(h.batches(), [
      [1, 2],
      [3, 4],
    ]);
    await release(h, 1); // b waited behind a: that wait is no hand-off overhead
    assertOwnResult(await b, [3, 4]);
    assert.deepEqual(h.batcher.costs.snapshot(), [{ rows: 2, nsPerElement: 1, samples: 1 }]);
    assert.equal(h.batcher.costs.estimate(2), 1, 'no per-batch overhead learned from it');
    clockPast(h.calls[0].ranAt);
    await release(h, 0); // a had the instance to itself when it started
    assertOwnResult(await a, [1, 2]);
    assert.deepEqual(h.batcher.costs.snapshot(), [{ rows: 2, nsPerElement: 1, samples: 2 }]);
    assert.ok(h.batcher.costs.estimate(2) > 1, `its hand-off beyond the engine's 6 ns is a per-batch overhead: estimate ${h.batcher.costs.estimate(2)}`);
  });
});

// ---------------------------------------------------------------------------------------------
// The learned cut: an instance whose run takes a real time set per batch size

/**
 * Runs `doubler` after `msOf(rows, run)` real milliseconds (a timer, so the event loop stays free;
 * `run` counts this instance's runs from 0), and records the rows of every run. calibrate() and the
 * batcher measure it with performance.now().
 */
class TimedInstance implements BackendInstance {
  readonly threads = 1;
  readonly rows: number[] = [];

  constructor(private readonly msOf: (rows: number, run: number) => number) {}

  async run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Promise<RunOutputs> {
    const rows = inputs.INPUT0.shape[0];
    this.rows.push(rows);
    const ms = this.msOf(rows, this.rows.length - 1);
    await sleep(ms);
    // As a worker-thread engine does, it says how long it computed: the batcher learns the cost it was given, not how
    // late a busy machine woke this test (a starved run once learned batch 2 dearer than 8 and held a lone row 60 s).
    return Object.assign(doubler(inputs, outputNames), { [COMPUTE_NS]: ms * 1e6 });
  }

  async release(): Promise<void> {}
}

/** Inputs of a batch of `rows` rows, for calibrate(). */
const sampleOf = (rows: number) => fp32Request(Array.from({ length: rows }, (_, row) => row + 1)).inputs;

/**
 * Milliseconds per execution: batch 2 is by far the cheapest per row (0.5 ms a row, against 8 at
 * sizes 1, 4 and 8: sixteen times), so that what a loaded machine adds to a run cannot change which
 * size wins: calibrate() keeps the fastest of several runs, and the 1 ms runs of batch 2 that the
 * test itself makes (smoothed in at 20 % each) would need some 20 ms added to every one of them.
 */
const COST_MS: Record<number, number> = { 1: 8, 2: 1, 4: 32, 8: 64 };
const costMsOf = (rows: number) => COST_MS[rows] ?? 8 * rows;

function timedBatcher(overrides: Partial<BatcherPolicy> = {}, msOf: (rows: number, run: number) => number = costMsOf) {
  const instance = new TimedInstance(msOf);
  // cutAtCheapest left out unless overridden: the default, which is on.
  const { cutAtCheapest: _off, ...defaults } = policyOf({ maxBatchSize: 8 });
  const policy: BatcherPolicy = { ...defaults, ...overrides };
  const batcher = new DynamicBatcher([instance], policy, new ModelStatistics('timed', '1'), "model 'timed' version 1");
  return { instance, batcher };
}

/** Cost per row (ns) of each measured size, from the batcher's learned ns per element. */
function costPerRow(batcher: DynamicBatcher): Map<number, number> {
  return new Map(batcher.costs.snapshot().map((entry) => [entry.rows, entry.nsPerElement * COLS]));
}

/** Seconds per element, far above anything a gated run's real time (smoothed in at 20 %) could move. */
function recordSeconds(batcher: DynamicBatcher, perElement: Record<number, number>): void {
  for (const [rows, seconds] of Object.entries(perElement)) batcher.costs.record(Number(rows), Number(rows) * COLS, Number(rows) * COLS * seconds * 1e9);
}

describe('DynamicBatcher: calibrate()', () => {
  it('measures each power-of-two batch size and max_batch_size, smallest first, on one instance: one sample each', async () => {
    const { instance, batcher } = timedBatcher({ maxBatchSize: 6 }, () => 1);
    await batcher.calibrate(sampleOf, ['OUTPUT0']);
    // Runs grouped by size, in ascending order; each size run at least twice (an unmeasured run first).
    const groups: [number, number][] = [];
    for (const rows of instance.rows) {
      if (groups.at(-1)?.[0] === rows) groups.at(-1)![1] += 1;
      else groups.push([rows, 1]);
    }
    assert.deepEqual(
      groups.map(([rows]) => rows),
      [1, 2, 4, 6],
    );
    for (const [rows, runs] of groups) assert.ok(runs >= 2, `size ${rows} ran ${runs} times`);
    assert.deepEqual(
      batcher.costs.snapshot().map((entry) => [entry.rows, entry.samples]),
      [
        [1, 1],
        [2, 1],
        [4, 1],
        [6, 1],
      ],
    );
    for (const entry of batcher.costs.snapshot()) assert.ok(entry.nsPerElement > 0 && Number.isFinite(entry.nsPerElement));
  });

  it('records the fastest measured run, not the unmeasured first one nor a slow one', async () => {
    // Size 1 only: the first two runs take 40 ms, the rest 1 ms.
    const { instance, batcher } = timedBatcher({ maxBatchSize: 1 }, (_rows, run) => (run < 2 ? 40 : 1));
    await batcher.calibrate(sampleOf, ['OUTPUT0']);
    assert.ok(instance.rows.length >= 3, `ran ${instance.rows.length} times`);
    const [measured] = batcher.costs.snapshot();
    const ms = (measured.nsPerElement * COLS) / 1e6;
    assert.ok(ms < 30, `recorded ${ms.toFixed(1)} ms, the fastest run being about 1 ms`);
  });

  it('stops once its budget is spent, and does nothing without batching', async () => {
    const { instance, batcher } = timedBatcher({ maxBatchSize: 8 }, () => 1);
    await batcher.calibrate(sampleOf, ['OUTPUT0'], 0);
    assert.deepEqual(instance.rows, [1, 1], 'the first size is measured once, then the budget (0 ms) is spent');
    assert.deepEqual(
      batcher.costs.snapshot().map((entry) => entry.rows),
      [1],
    );

    const unbatchedInstance = new TimedInstance(() => 1);
    const unbatched = new DynamicBatcher([unbatchedInstance], { ...UNBATCHED_POLICY, maxQueuedRequests: 10 }, new ModelStatistics('timed', '1'), 'x');
    await unbatched.calibrate(sampleOf, ['OUTPUT0']);
    assert.deepEqual(unbatchedInstance.rows, []);
    assert.deepEqual(unbatched.costs.snapshot(), []);
  });

  it('leaves out the sizes whose inputs are more than the queue may hold (such a batch never forms), never making their samples', async () => {
    const rowBytes = COLS * 4;
    const sampled: number[] = [];
    const countingSample = (rows: number) => {
      sampled.push(rows);
      return sampleOf(rows);
    };
    // Room for 5 rows: sizes 1, 2 and 4 fit, 8 does not.
    const { instance, batcher } = timedBatcher({ maxBatchSize: 8, maxQueuedBytes: 5 * rowBytes }, () => 1);
    await batcher.calibrate(countingSample, ['OUTPUT0']);
    assert.deepEqual([...new Set(instance.rows)], [1, 2, 4]);
    assert.deepEqual(sampled, [1, 2, 4], 'the sample of 8 rows is never allocated, and the one of a row is made once');
    // A queue smaller than one request still takes one, so a row is always measured.
    const tiny = timedBatcher({ maxBatchSize: 8, maxQueuedBytes: 1 }, () => 1);
    await tiny.batcher.calibrate(sampleOf, ['OUTPUT0']);
    assert.deepEqual([...new Set(tiny.instance.rows)], [1]);
  });
});

describe('DynamicBatcher: cut where a row is cheapest (learned costs)', () => {
  it('after calibrate(): max_queue_delay holds a batch only while more rows could make it cheaper, and 8 queued rows run as batches of 2, never 8', { timeout: 30_000 }, async () => {
    // A 60 s max_queue_delay: whatever runs in this test runs because waiting could not make it cheaper.
    const { instance, batcher } = timedBatcher({ maxQueueDelayMicroseconds: 60_000_000 });
    await batcher.calibrate(sampleOf, ['OUTPUT0']);
    const perRow = costPerRow(batcher);
    assert.deepEqual([...perRow.keys()], [1, 2, 4, 8]);
    for (const rows of [1, 4, 8]) {
      assert.ok(perRow.get(2)! * 4 < perRow.get(rows)!, `batch 2 measured far cheaper per row than ${rows}: ${JSON.stringify([...perRow])}`);
    }
    instance.rows.length = 0;

    // One row: a second would make each row cheaper, so it waits for company.
    const a = batcher.schedule(fp32Request([1]));
    await flush();
    assert.deepEqual(instance.rows, [], 'a lone row waits: batch 2 is cheaper per row');
    // Two rows: no larger batch is cheaper per row; waiting out the delay would only add latency.
    const b = batcher.schedule(fp32Request([2]));
    await flush();
    assert.deepEqual(instance.rows, [2], 'sent on the next turn, not held for the delay');
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);

    // Eight rows at once: cut into batches of 2, each sent as soon as the instance frees.
    instance.rows.length = 0;
    const results = [1, 2, 3, 4, 5, 6, 7, 8].map((id) => batcher.schedule(fp32Request([id])));
    const answered = await Promise.all(results);
    assert.deepEqual(instance.rows, [2, 2, 2, 2]);
    for (const [index, result] of answered.entries()) {
      assertOwnResult(result, [index + 1]);
      assert.equal(result.timings.batchRows, 2);
    }
    assert.equal(batcher.queued, 0);
    await batcher.stop();
  });

  it('with recorded costs (no timing involved), cuts at the cheapest size at every cut', async () => {
    const h = new Harness({ maxBatchSize: 4, cutAtCheapest: true });
    // Of the cumulative sizes 1, 2, 3, 4, 2 is the cheapest; of 1, 2 (what is left), 2 again.
    recordSeconds(h.batcher, { 1: 10, 2: 5, 4: 20 });
    const results = [1, 2, 3, 4].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2]]);
    assert.equal(h.batcher.queued, 2);
    await release(h, 0);
    assert.deepEqual(h.batches(), [[1, 2], [3, 4]]);
    await release(h, 1);
    for (const [index, promise] of results.entries()) assertOwnResult(await promise, [index + 1]);
  });

  it('with recorded costs, a lone row waits for the delay only while a larger batch is cheaper per row', async () => {
    const h = new Harness({ maxBatchSize: 4, cutAtCheapest: true, maxQueueDelayMicroseconds: 60_000_000 });
    recordSeconds(h.batcher, { 1: 10, 2: 5, 4: 20 });
    const a = h.schedule(fp32Request([1]));
    await flush();
    assert.equal(h.calls.length, 0, '1 row: 2 would be cheaper, so it waits');
    const b = h.schedule(fp32Request([2]));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2]], '2 rows: nothing larger is cheaper, so it goes');
    await release(h, 0);
    assertOwnResult(await a, [1]);
    assertOwnResult(await b, [2]);
    // Where the largest is the cheapest, a lone row waits as before (and stop() ends the wait).
    const flat = new Harness({ maxBatchSize: 4, cutAtCheapest: true, maxQueueDelayMicroseconds: 60_000_000 });
    recordSeconds(flat.batcher, { 1: 10, 2: 8, 4: 5 });
    const c = flat.schedule(fp32Request([3]));
    const d = flat.schedule(fp32Request([4]));
    await flush();
    assert.equal(flat.calls.length, 0, '2 rows: 4 would be cheaper, so they wait');
    const stopped = flat.batcher.stop();
    await release(flat, 0);
    await stopped;
    assert.deepEqual(flat.batches(), [[3, 4]]);
    assertOwnResult(await c, [3]);
    assertOwnResult(await d, [4]);
  });

  it('with cutAtCheapest off, the same learned costs neither cut nor send early: 8 queued rows run as one batch of 8', async () => {
    const h = new Harness({ maxBatchSize: 8, cutAtCheapest: false, maxQueueDelayMicroseconds: 60_000_000 });
    recordSeconds(h.batcher, { 1: 10, 2: 5, 4: 20, 8: 20 });
    const a = h.schedule(fp32Request([1]));
    const b = h.schedule(fp32Request([2]));
    await flush();
    assert.equal(h.calls.length, 0, '2 rows wait for the delay although 2 is the cheapest');
    const rest = [3, 4, 5, 6, 7, 8].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.batches(), [[1, 2, 3, 4, 5, 6, 7, 8]]);
    await release(h, 0);
    for (const [index, promise] of [a, b, ...rest].entries()) assertOwnResult(await promise, [index + 1]);
  });
});

describe('DynamicBatcher: latency-aware hold (target latency)', () => {
  /** Seeds the learned costs (3 elements a row): one row `oneRowMs`, four rows `fourRowsMs`; five times, so a test-paced execution does not move the medians. */
  function seedCosts(h: Harness, oneRowMs: number, fourRowsMs: number): void {
    for (let time = 0; time < 5; time++) {
      h.batcher.costs.record(1, COLS, oneRowMs * 1e6);
      h.batcher.costs.record(4, 4 * COLS, fourRowsMs * 1e6);
    }
  }

  /** Runs request 1 alone, then queues request 2 (the next turn) behind it while it runs, and releases request 1. */
  async function secondQueuedBehindFirst(h: Harness, second: ScheduledRequest) {
    const first = h.schedule(fp32Request([1]));
    await flush();
    assert.deepEqual(h.batches(), [[1]], 'the first request runs at once: nothing is known of the arrival rate yet');
    const queued = track(h.schedule(second));
    await flush();
    assert.equal(h.batcher.queued, 1, 'request 2 waits behind the busy instance');
    await release(h, 0);
    assertOwnResult(await first, [1]);
    return queued;
  }

  it('holds a batch for company while requests arrive faster than it would run, and sends it once full', async () => {
    const h = new Harness({ maxBatchSize: 4, targetLatencyMicroseconds: 60_000_000 });
    // One row takes a second, four rows 1.1 s: batching pays, and requests ms apart come long before one row would have run.
    seedCosts(h, 1000, 1100);
    const second = await secondQueuedBehindFirst(h, fp32Request([2]));
    assert.equal(h.calls.length, 1, 'the instance is idle, yet request 2 is held for company');
    const rest = [3, 4, 5].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.deepEqual(h.batches(), [[1], [2, 3, 4, 5]], 'sent as soon as the batch is full');
    await release(h, 1);
    assertOwnResult(await second.promise, [2]);
    for (const [index, result] of rest.entries()) assertOwnResult(await result, [index + 3]);
  });

  it('with preferred sizes, a preferred size queued goes at once even where the latency-aware hold would wait for more (as Triton)', async () => {
    const h = new Harness({ maxBatchSize: 8, preferredBatchSizes: [2, 4], targetLatencyMicroseconds: 60_000_000 });
    seedCosts(h, 1000, 1100);
    const first = h.schedule(fp32Request([1]));
    await flush();
    assert.deepEqual(h.batches(), [[1]]);
    const queued = [2, 3, 4].map((id) => h.schedule(fp32Request([id])));
    await flush();
    assert.equal(h.batcher.queued, 3);
    await release(h, 0);
    assertOwnResult(await first, [1]);
    assert.deepEqual(h.batches(), [[1], [2, 3]], 'the preferred 2 went; the third row is left to the hold');
    await release(h, 1);
    await finishHeld(h, queued, 2);
  });

  it('does not hold a request whose own timeout leaves no room for a larger batch', async () => {
    const h = new Harness({
      maxBatchSize: 4,
      targetLatencyMicroseconds: 60_000_000,
      defaultQueuePolicy: { ...NO_TIMEOUT, allowTimeoutOverride: true },
    });
    seedCosts(h, 1000, 1100);
    // 1.05 s: the larger batch's 1.1 s alone would overrun it, whatever the target says.
    await secondQueuedBehindFirst(h, fp32Request([2], { timeoutMicroseconds: 1_050_000 }));
    assert.deepEqual(h.batches(), [[1], [2]], 'request 2 ran as soon as the instance was free');
    await release(h, 1);
  });

  it('at low traffic sends a lone request at once, where a fixed max_queue_delay holds it', async () => {
    const held = new Harness({ maxBatchSize: 4, maxQueueDelayMicroseconds: BATCH_WINDOW_US });
    const latencyAware = new Harness({ maxBatchSize: 4, maxQueueDelayMicroseconds: BATCH_WINDOW_US, targetLatencyMicroseconds: 60_000_000 });
    for (const h of [held, latencyAware]) {
      // One row takes 1 ms, four rows 1.2 ms: batching pays, if company comes.
      seedCosts(h, 1, 1.2);
      const first = h.schedule(fp32Request([1]));
      await h.waitForCalls(1); // the fixed delay holds even the first request for company
      await release(h, 0);
      assertOwnResult(await first, [1]);
      // Requests 20 ms apart against a 1 ms batch: company would come long after this one could have run.
      await sleep(20);
      h.schedule(fp32Request([2]));
      await flush();
    }
    assert.equal(held.calls.length, 1, 'the fixed delay holds request 2 for company');
    assert.deepEqual(latencyAware.batches(), [[1], [2]], 'the latency-aware batcher sends it at once');
    await release(latencyAware, 1);
    const stopped = held.batcher.stop(); // sends what it holds at once
    await held.waitForCalls(2);
    await release(held, 1);
    await stopped;
  });
});

schedulerConformance('DynamicBatcher', {
  make: (instance) => new DynamicBatcher([instance], { ...UNBATCHED_POLICY, maxBatchSize: 8, maxQueuedRequests: 64 }, new ModelStatistics('addsub', '1'), "model 'addsub' version 1"),
});
