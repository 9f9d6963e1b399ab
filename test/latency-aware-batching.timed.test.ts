/**
 * Latency-aware batching (dynamic_batching.target_latency_us) through a real server over HTTP, on a
 * generated chain of matrix products: a lone request is not held for company that is not coming,
 * where a fixed max_queue_delay holds it, and concurrent requests still run in batches larger
 * than 1. Compared by order only: the two models differ in target_latency_us alone.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { matMulChainModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer, type TestServer } from './support/test-server.js';

const WIDTH = 512;

/**
 * One instance computing in a worker thread (the event loop goes on reading requests meanwhile),
 * and a 400 ms delay that a preferred size of 8 makes the fixed batcher wait out for a lone request.
 */
const BATCHING = `max_batch_size: 8
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "execution_thread" value: { string_value: "worker" } }
dynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 400000`;
const FIXED_CONFIG = `${BATCHING} }\n`;
/** A target as loose as the delay: what keeps a lone request from waiting is the arrival rate, not the target. */
const LATENCY_AWARE_CONFIG = `${BATCHING} target_latency_us: 10000000 }\n`;

let server: TestServer;

before(async () => {
  server = await startTestServer({
    models: async (repo) => {
      // About 2 ms a row: requests sent together queue behind a running batch.
      const model = matMulChainModel({ width: WIDTH, layers: 96 });
      await writeModel(repo, 'fixed', 1, model, FIXED_CONFIG);
      await writeModel(repo, 'latency_aware', 1, model, LATENCY_AWARE_CONFIG);
    },
  });
});

after(() => server.close());

function body(seed: number): string {
  const data = Array.from({ length: WIDTH }, (_, index) => ((seed + index) % 13) / 13);
  return JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data }] });
}

/** Sends one request; it must be answered with one row of 4 finite values. Returns the milliseconds it took. */
async function timedInfer(model: string, seed: number): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${server.url}/v2/models/${model}/infer`, { method: 'POST', body: body(seed) });
  const answer = (await response.json()) as { outputs?: { name: string; shape: number[]; data: number[] }[]; error?: string };
  const elapsed = performance.now() - started;
  assert.equal(response.status, 200, answer.error);
  assert.deepEqual(answer.outputs![0].shape, [1, 4]);
  assert.ok(answer.outputs![0].data.every(Number.isFinite));
  return elapsed;
}

async function stats(model: string) {
  const response = await fetch(`${server.url}/v2/models/${model}/stats`);
  const answer = (await response.json()) as {
    model_stats: { inference_count: number; execution_count: number; inference_stats: { queue: { ns: number; count: number } } }[];
  };
  return answer.model_stats[0];
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

test('a lone request is not held for company with target_latency_us, where the same fixed max_queue_delay holds it', async () => {
  const latencies: Record<string, number[]> = { fixed: [], latency_aware: [] };
  // Interleaved, one at a time, a pause between: the lightest traffic there is.
  for (let round = 0; round < 3; round++) {
    for (const model of ['fixed', 'latency_aware']) {
      latencies[model].push(await timedInfer(model, round * 100));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const fixed = await stats('fixed');
  const latencyAware = await stats('latency_aware');
  const queueMs = (model: typeof fixed) => model.inference_stats.queue.ns / model.inference_stats.queue.count / 1e6;
  assert.ok(
    queueMs(latencyAware) < queueMs(fixed),
    `mean queue time: latency-aware ${queueMs(latencyAware).toFixed(1)} ms, fixed ${queueMs(fixed).toFixed(1)} ms`,
  );
  assert.ok(
    median(latencies.latency_aware) < median(latencies.fixed),
    `median latency: latency-aware ${median(latencies.latency_aware).toFixed(1)} ms, fixed ${median(latencies.fixed).toFixed(1)} ms`,
  );
  assert.equal(latencyAware.execution_count, 3, 'each lone request ran on its own');
});

test('under concurrent load the latency-aware batcher still forms batches larger than 1', async () => {
  const before = await stats('latency_aware');
  // 8 clients, each sending its next request when the last is answered: more requests outstanding than the instance takes at once.
  const clients = 8;
  const perClient = 10;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let request = 0; request < perClient; request++) await timedInfer('latency_aware', client * 100 + request);
    }),
  );
  const after = await stats('latency_aware');
  const inferences = after.inference_count - before.inference_count;
  const executions = after.execution_count - before.execution_count;
  assert.equal(inferences, clients * perClient);
  assert.ok(executions < inferences, `${inferences} inferences ran in ${executions} executions: some batches held more than one`);
});
