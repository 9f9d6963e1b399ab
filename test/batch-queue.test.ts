/**
 * Distributed batch jobs against a real redis-server, in the cases that need no worker: what the
 * submitter refuses before it queues anything, and how the submitter and an idle worker report
 * Redis going away and coming back.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { runDistributedBatchJob } from '../src/jobs/index.js';
import { writeImageFolder } from './support/batch-fixtures.js';
import { startRedisServer, type RedisTestServer } from './support/redis-server.js';
import { NEREID_COMMAND } from './support/cli-server.js';

const silent = pino({ level: 'silent' });
let dir: string;
let redis: RedisTestServer;
let queueUrl: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nereid-batch-queue-'));
  redis = await startRedisServer();
  queueUrl = `redis://127.0.0.1:${redis.port}`;
});

after(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("an output holding a record the input does not have is another job's: refused before a chunk is queued", { timeout: 30_000 }, async () => {
  const images = join(dir, 'images');
  await writeImageFolder(images, 4);
  const output = join(dir, 'out.jsonl');
  const foreign = '{"id":"photos/elsewhere.png","error":"written by another job"}\n';
  await writeFile(output, foreign);
  await assert.rejects(
    runDistributedBatchJob({ model: 'cnn', input: images, output, queue: queueUrl, queueName: 'foreign', progress: 'none', logger: silent }),
    /out\.jsonl holds a record with id "photos\/elsewhere\.png", which the input .*images does not have \(1 of its 1 records are not the input's\): it is another job's output; choose another output, or restart: true/,
  );
  const queue = new Queue('foreign', { connection: { host: '127.0.0.1', port: redis.port } });
  try {
    assert.equal(await queue.count(), 0);
  } finally {
    await queue.close();
  }
  assert.equal(await readFile(output, 'utf8'), foreign);
});

/** A CLI process whose stderr is kept; `until` waits for a pattern in it. */
function startCli(args: string[]) {
  const child = spawn(process.execPath, [...NEREID_COMMAND, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    exited,
    stderr: () => stderr,
    async until(pattern: RegExp, timeoutMs = 30_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stderr)) {
        if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms; stderr:\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}

test('Redis down under a waiting job and an idle worker: one warning every few seconds and the progress saying so, no stack dumps; both go on once it is back', { timeout: 90_000 }, async () => {
  const images = join(dir, 'outage-images');
  await writeImageFolder(images, 3);
  const emptyRepo = join(dir, 'empty-repo');
  await mkdir(emptyRepo, { recursive: true });
  const url = `redis://127.0.0.1:${redis.port}`;
  const submitter = startCli(['batch', '--model', 'cnn', '--input', images, '--output', join(dir, 'outage.jsonl'), '--queue', url, '--queue-name', 'outage', '--progress', 'lines']);
  const worker = startCli(['worker', '--queue', url, '--queue-name', 'outage-idle', '--model-repository', emptyRepo, '--log-format', 'json']);
  try {
    await Promise.all([submitter.until(/no worker is listening on queue 'outage'/), worker.until(/waiting for chunks/)]);
    await redis.stop();
    const down = Date.now();
    // ioredis retries several times a second; over 8 s that is one outage, warned of at its start and every 5 s.
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    await redis.restart();
    const back = new RegExp(`Redis at redis://127\\.0\\.0\\.1:${redis.port} is reachable again after \\d+ s`);
    await Promise.all([submitter.until(back), worker.until(back)]);
    const seconds = (Date.now() - down) / 1000;
    for (const [name, process] of [['submitter', submitter], ['worker', worker]] as const) {
      const stderr = process.stderr();
      assert.doesNotMatch(stderr, /ECONNREFUSED[^\n]*\n\s+at |errno: -111/, `${name}: no raw client errors:\n${stderr}`);
      const warnings = stderr.split('\n').filter((line) => /unreachable for \d+ s \(connect ECONNREFUSED[^)]*\); retrying/.test(line));
      assert.ok(warnings.length >= 2 && warnings.length <= Math.ceil(seconds / 5) + 1, `${name}: ${warnings.length} warnings in ${seconds} s:\n${stderr}`);
      assert.doesNotMatch(stderr, /queue error|"Redis: connect/, `${name}: each failed retry is not a line of its own`);
    }
    assert.match(submitter.stderr(), /batch [^:]+: 0\/3 records \(0\.0%\), 0 failed, 0\.0 records\/s, no ETA: Redis at redis:\/\/127\.0\.0\.1:\d+ unreachable for \d+ s/);
  } finally {
    submitter.child.kill('SIGKILL');
    worker.child.kill('SIGKILL');
    await Promise.all([submitter.exited, worker.exited]);
  }
});

test('a worker stopped while Redis is down exits instead of waiting for it', { timeout: 60_000 }, async () => {
  const emptyRepo = join(dir, 'empty-repo-sigterm');
  await mkdir(emptyRepo, { recursive: true });
  const worker = startCli(['worker', '--queue', `redis://127.0.0.1:${redis.port}`, '--queue-name', 'sigterm-idle', '--model-repository', emptyRepo, '--log-format', 'json']);
  try {
    await worker.until(/waiting for chunks/);
    await redis.stop();
    await worker.until(/unreachable for \d+ s/);
    worker.child.kill('SIGTERM');
    const exited = await Promise.race([worker.exited.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 15_000))]);
    assert.ok(exited, `still running 15 s after SIGTERM:\n${worker.stderr()}`);
  } finally {
    worker.child.kill('SIGKILL');
    await worker.exited;
    await redis.restart();
  }
});

test("chunks queued under other answer-deciding flags, none written yet, are refused on a rerun (exit 2, naming the flag) unless --restart", { timeout: 60_000 }, async () => {
  const input = join(dir, 'options.jsonl');
  await writeFile(input, `${[1, 2, 3].map((n) => JSON.stringify({ INPUT0: [n], tag: n })).join('\n')}\n`);
  const output = join(dir, 'options-out.jsonl');
  const queueName = 'answer-options';
  const queue = new Queue(queueName, { connection: { host: '127.0.0.1', port: redis.port } });
  /** Runs the job with no worker on its queue until its three chunks are queued with its --top-k (or it ends), then stops it. */
  const submitAndStop = async (extra: { topK: number; passThrough?: string[]; restart?: boolean }) => {
    const controller = new AbortController();
    const run = runDistributedBatchJob({ model: 'scaled', input, output, queue: queueUrl, queueName, job: 'options-job', chunkSize: 1, progress: 'none', logger: silent, signal: controller.signal, ...extra });
    const deadline = Date.now() + 15_000;
    const watch = (async () => {
      const queued = async () => (await queue.getWaiting()).filter((chunk) => chunk.data.topK === extra.topK).length;
      while ((await queued()) < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      controller.abort();
    })();
    try {
      return await run;
    } finally {
      controller.abort();
      await watch;
    }
  };
  try {
    const first = await submitAndStop({ topK: 1, passThrough: ['tag'] });
    assert.equal(first.interrupted, true);
    assert.equal(first.processed, 0);
    // Nothing was written, so no manifest beside the output can refuse the rerun: the job's hash must.
    await assert.rejects(submitAndStop({ topK: 2 }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'FAILED_PRECONDITION');
      assert.match(error.message, /job 'options-job' was submitted with topK: 1, passThrough: 'tag', and this run asks topK: 2, passThrough not given: its 3 chunk\(s\) queued and not yet written would be answered otherwise/);
      assert.match(error.message, /use another job, or restart: true to remove its chunks/);
      return true;
    });
    // --restart removes the old chunks and queues new ones with this run's flags.
    const restarted = await submitAndStop({ topK: 2, restart: true });
    assert.equal(restarted.interrupted, true);
    const chunks = await queue.getWaiting();
    assert.deepEqual(chunks.map((chunk) => chunk.data.topK), [2, 2, 2]);
  } finally {
    await queue.close();
  }
});
