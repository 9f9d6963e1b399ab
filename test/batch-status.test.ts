/**
 * `nereid batch status` of a job whose chunks failed an attempt and wait for another: each of the first few says why
 * its last attempt failed, cut short, in the status object (what --json prints) and in its text. Against a real
 * redis-server, the chunks failed by a plain BullMQ worker. A chunk held by a worker whose connections are gone, and a
 * job whose submitter was killed, are named as such; a job of an older submitter, which does not name its connection, is
 * not declared without one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { batchJobStatus, chunkJobId, formatStatus } from '../src/jobs/index.js';
import { RETRY_REASON_CHARS, RETRYING_CHUNKS_LISTED } from '../src/jobs/batch-status.js';
import { jobMetaKey } from '../src/jobs/chunk-queue.js';
import { until } from './support/checks.js';
import { startRedisServer, type RedisTestServer } from './support/redis-server.js';
import { NEREID_COMMAND } from './support/cli-server.js';

let redis: RedisTestServer;

before(async () => {
  redis = await startRedisServer();
});

after(async () => {
  await redis?.stop();
});

test('retrying chunks show their last failure: the first few, each cut short, in the status and its text', { timeout: 30_000 }, async () => {
  const queueName = 'status-retrying';
  const job = 'retrying';
  const chunks = RETRYING_CHUNKS_LISTED + 2;
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const client = new Redis(connection);
  const queue = new Queue(queueName, { connection });
  const worker = new Worker(
    queueName,
    async (chunk) => {
      throw new Error(`model 'scale' failed on ${chunk.id}:\n  ${'x'.repeat(RETRY_REASON_CHARS)}`);
    },
    { connection },
  );
  try {
    await client.hset(jobMetaKey(queueName, job), { model: 'scale', input: '/in.jsonl', output: '/out.jsonl', records: chunks * 2, chunks, chunk_size: 2, submitted_at: new Date().toISOString() });
    // Added last first: the listing follows the chunk index, not the order they were queued or failed in.
    for (let index = chunks - 1; index >= 0; index--) {
      await queue.add('chunk', { index }, { jobId: chunkJobId(job, index), attempts: 3, backoff: { type: 'fixed', delay: 60_000 } });
    }
    for (const deadline = Date.now() + 20_000; (await queue.getDelayedCount()) < chunks; await new Promise((resolve) => setTimeout(resolve, 50))) {
      if (Date.now() > deadline) throw new Error(`${await queue.getDelayedCount()} of ${chunks} chunks failed an attempt`);
    }
    await worker.close();

    const status = await batchJobStatus({ queue: `redis://127.0.0.1:${redis.port}`, queueName, job });
    assert.equal(status.chunkStates.delayed, chunks);
    assert.deepEqual(
      status.retryingChunks.map(({ chunk, failedAttempts, attempts }) => ({ chunk, failedAttempts, attempts })),
      Array.from({ length: RETRYING_CHUNKS_LISTED }, (_, index) => ({ chunk: chunkJobId(job, index), failedAttempts: 1, attempts: 3 })),
    );
    for (const [index, { reason }] of status.retryingChunks.entries()) {
      const shown = `model 'scale' failed on ${chunkJobId(job, index)}: ${'x'.repeat(RETRY_REASON_CHARS)}`;
      assert.equal(reason, `${shown.slice(0, RETRY_REASON_CHARS)}… (${shown.length - RETRY_REASON_CHARS} more characters)`);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(status)).retryingChunks, status.retryingChunks, 'the JSON status carries them');

    const text = formatStatus(status);
    assert.match(text, /0 completed, 0 active, 0 waiting, 7 retrying, 0 failed, 0 not queued/);
    assert.match(text, new RegExp(`\\n  retrying/0 retrying after 1 of 3 attempt\\(s\\) failed, the last with: model 'scale' failed on retrying/0: x{${RETRY_REASON_CHARS - 40}}`));
    assert.equal(text.match(/ retrying after /g)?.length, RETRYING_CHUNKS_LISTED);
    assert.match(text, /\n  … and 2 more chunk\(s\) retrying\n/);
    assert.ok(text.split('\n').every((line) => line.length < RETRY_REASON_CHARS + 200), 'each line bounded');
    // The hash was written as an older nereid writes it, whose submitter does not name its connection: not declared dead.
    assert.equal(status.workersConnected, 0);
    assert.equal(status.submitterConnected, undefined);
    assert.doesNotMatch(text, /no submitter is running/);
    assert.match(text, /whether a submitter is running is unknown: the job was submitted by an older nereid/);
  } finally {
    await worker.close();
    await queue.close();
    client.disconnect();
  }
});

test('a chunk held by a worker that died, and a job whose submitter died, are said so by the progress and the status', { timeout: 60_000 }, async () => {
  const queueName = 'status-dead';
  const job = 'dead-job';
  const dir = await mkdtemp(join(tmpdir(), 'nereid-status-dead-'));
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const queue = new Queue(queueName, { connection });
  // Workers that take a chunk and never finish it, with a lock that outlasts the test: only their connections tell them
  // dead. The doomed one is a process of its own, killed as a crash would.
  const holdForever = (name: string): Worker => new Worker(queueName, () => new Promise<unknown>(() => undefined), { connection, name, lockDuration: 120_000 });
  const doomed = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import { Worker } from 'bullmq'; new Worker(${JSON.stringify(queueName)}, () => new Promise(() => {}), { connection: ${JSON.stringify(connection)}, name: 'doomed', lockDuration: 120000 });`],
    { stdio: 'ignore' },
  );
  const doomedExited = new Promise((resolve) => doomed.once('exit', resolve));
  let alive: Worker | undefined;
  const input = join(dir, 'in.jsonl');
  await writeFile(input, `${[1, 2, 3].map((n) => JSON.stringify({ INPUT0: [n] })).join('\n')}\n`);
  const submitter = spawn(process.execPath, [...NEREID_COMMAND, 'batch', '--model', 'scaled', '--input', input, '--output', join(dir, 'out.jsonl'), '--queue', `redis://127.0.0.1:${redis.port}`, '--queue-name', queueName, '--job', job, '--progress', 'lines'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  submitter.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => submitter.once('exit', resolve));
  const untilSeen = (what: string, check: () => Promise<boolean> | boolean) => until(what, check, { timeoutMs: 30_000, everyMs: 100, detail: () => `submitter's stderr:\n${stderr}` });
  const statusText = async () => formatStatus(await batchJobStatus({ queue: `redis://127.0.0.1:${redis.port}`, queueName, job }));
  try {
    await untilSeen('the chunk taken by doomed', async () => (await queue.getActive()).some((chunk) => chunk.processedBy === 'doomed'));
    const started = holdForever('alive');
    alive = started;
    await started.waitUntilReady();
    doomed.kill('SIGKILL'); // the chunk stays active until its lock expires
    await doomedExited;
    await untilSeen('the progress naming the dead worker', () => /held by worker doomed, which is not connected \(stopped or dead\)/.test(stderr));
    const status = await batchJobStatus({ queue: `redis://127.0.0.1:${redis.port}`, queueName, job });
    assert.deepEqual(status.activeChunks.map(({ worker, workerConnected }) => ({ worker, workerConnected })), [{ worker: 'doomed', workerConnected: false }]);
    assert.equal(status.submitterConnected, true);
    assert.match(await statusText(), new RegExp(`${job}/0 on doomed \\(attempt 1\\): doomed is not connected \\(stopped or dead\\); the chunk goes back to the queue once its lock expires`));
    assert.doesNotMatch(await statusText(), /no submitter is running/);
    submitter.kill('SIGKILL');
    await exited;
    await untilSeen('the status seeing the submitter gone', async () => /no submitter is running .*nothing more is queued or written to the output until the job's command runs again/.test(await statusText()));
  } finally {
    submitter.kill('SIGKILL');
    doomed.kill('SIGKILL');
    await Promise.all([alive?.close(true), queue.close()]);
    await rm(dir, { recursive: true, force: true });
  }
});
