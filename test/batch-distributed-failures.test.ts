/**
 * How a distributed job ends when a chunk fails, and when a rerun asks other answer flags, against a real redis-server
 * with the submitter and a live worker in this process:
 * - a chunk lost with its workers more than --max-stalled-count times (what a record that crashes every worker does) is
 *   written as its records' errors and the job ends: no rerun meets it again, and --retry-failed sends its records again;
 * - a rerun with other answer flags is refused while chunks queued with the old ones are not yet written, before its
 *   output (or OUTPUT.job.json) changes; once none is queued, the output's own rules decide.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { batchJobOutcome, cancelBatchJob, chunkJobId, runDistributedBatchJob, startBatchWorker, type BatchWorker } from '../src/jobs/index.js';
import { errorLine } from '../src/jobs/job-record.js';
import { until } from './support/checks.js';
import { readOutput } from './support/batch-fixtures.js';
import { distributedWorkspace, takeChunkAndDie } from './support/distributed-fixtures.js';

const silent = pino({ level: 'silent' });
const workspace = distributedWorkspace('batch-failures');

test("a chunk whose workers are lost more than --max-stalled-count times is written as its records' errors and the job ends; --retry-failed sends them again", { timeout: 60_000 }, async () => {
  const { dir, repo, queueUrl } = workspace;
  const input = join(dir, 'poison.jsonl');
  await writeFile(input, `${[1, 2, 3, 4].map((n) => JSON.stringify({ INPUT0: [n, 0, 0, 0] })).join('\n')}\n`);
  const output = join(dir, 'poison-out.jsonl');
  const queueName = 'poison';
  const job = 'poison-job';
  const options = { model: 'scale', input, output, queue: queueUrl, queueName, job, chunkSize: 2, pollMs: 100, progress: 'none', logger: silent } as const;

  const first = runDistributedBatchJob(options);
  let live: BatchWorker | undefined;
  try {
    // The worker a record of chunk 0 crashes: it takes the chunk and dies holding it.
    assert.equal(await takeChunkAndDie(workspace, queueName), chunkJobId(job, 0));
    // Lost once is more than it may be (--max-stalled-count 0): the live worker's stalled check fails it, and runs chunk 1.
    live = await startBatchWorker({ queue: queueUrl, queueName, modelRepository: repo, lockDurationMs: 10_000, stalledIntervalMs: 200, maxStalledCount: 0, logger: silent });

    const summary = await first;
    assert.deepEqual(
      summary.failedChunks?.map(({ chunk, records, writtenAsErrors }) => ({ chunk, records, writtenAsErrors })),
      [{ chunk: 0, records: 2, writtenAsErrors: true }],
      JSON.stringify(summary),
    );
    assert.equal(summary.processed, 4);
    assert.equal(summary.failed, 2);
    assert.deepEqual(batchJobOutcome(summary), { exitCode: 0 }, 'the job ended: its failed records are lines, as a failed record is');
    const written = await readOutput(output);
    for (const id of [1, 2]) assert.match(String(written.get(id)?.error), /^chunk 0 failed after 1 attempt\(s\), its worker lost 1 time\(s\): job stalled more than allowable limit$/);
    for (const id of [3, 4]) assert.equal(written.get(id)?.error, null);

    // The same command finds every record written: nothing is queued again, and it ends at once.
    const again = await runDistributedBatchJob(options);
    assert.deepEqual({ processed: again.processed, failedChunks: again.failedChunks }, { processed: 0, failedChunks: [] });

    // --retry-failed replaces the failed chunk: this time a worker answers it.
    const retried = await runDistributedBatchJob({ ...options, retryFailed: true });
    assert.deepEqual({ processed: retried.processed, failed: retried.failed, failedChunks: retried.failedChunks }, { processed: 2, failed: 0, failedChunks: [] });
    const answered = await readOutput(output);
    assert.equal(answered.size, 4);
    for (const [id, record] of answered) {
      assert.equal(record.error, null, String(record.error));
      assert.deepEqual(record.outputs![0].data, [2 * Number(id), 0, 0, 0]);
    }
  } finally {
    await live?.close();
    await first.catch(() => undefined);
  }
});

test('other answer flags: refused while chunks queued with the old ones wait, before the output changes; let through once none waits', { timeout: 60_000 }, async () => {
  const { dir, repo, queueUrl, redis } = workspace;
  const input = join(dir, 'flags.jsonl');
  await writeFile(input, `${[1, 2, 3, 4].map((n) => JSON.stringify({ INPUT0: [n, 0, 0, 0], label: `l${n}`, other: `o${n}` })).join('\n')}\n`);
  const output = join(dir, 'flags-out.jsonl');
  const manifest = `${output}.job.json`;
  const queueName = 'flags';
  const job = 'flags-job';
  const options = { model: 'scale', input, output, queue: queueUrl, queueName, job, chunkSize: 2, pollMs: 100, progress: 'none', logger: silent } as const;
  const queue = new Queue(queueName, { connection: { host: '127.0.0.1', port: redis.port } });
  let live: BatchWorker | undefined;
  try {
    // No worker yet: the first run queues both chunks under --pass-through label and is stopped.
    const stop = new AbortController();
    const first = runDistributedBatchJob({ ...options, passThrough: ['label'], signal: stop.signal });
    await until('both chunks queued', async () => (await queue.getWaitingCount()) === 2);
    stop.abort();
    assert.equal((await first).interrupted, true);
    // Its records, as if an earlier run had written them all as errors.
    await writeFile(output, `${[1, 2, 3, 4].map((n) => errorLine(n, 'the model was not ready')).join('\n')}\n`);
    const before = { output: await readFile(output, 'utf8'), manifest: await readFile(manifest, 'utf8') };

    // Every record an error, so the output alone would let --retry-failed with new flags through; the queued chunks do not.
    await assert.rejects(runDistributedBatchJob({ ...options, passThrough: ['other'], retryFailed: true }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'FAILED_PRECONDITION');
      assert.match(error.message, /^job 'flags-job' was submitted with passThrough: 'label', and this run asks passThrough: 'other': its 2 chunk\(s\) queued and not yet written/);
      return true;
    });
    assert.deepEqual({ output: await readFile(output, 'utf8'), manifest: await readFile(manifest, 'utf8') }, before, 'the output and OUTPUT.job.json as they were');

    // Its chunks taken off the queue, nothing is queued under the old flags: the output's rule lets --retry-failed through.
    assert.equal((await cancelBatchJob({ queue: queueUrl, queueName, job })).removedChunks, 2);
    live = await startBatchWorker({ queue: queueUrl, queueName, modelRepository: repo, lockDurationMs: 10_000, logger: silent });
    const retried = await runDistributedBatchJob({ ...options, passThrough: ['other'], retryFailed: true });
    assert.deepEqual({ processed: retried.processed, failed: retried.failed }, { processed: 4, failed: 0 });
    for (const [id, record] of await readOutput(output)) assert.deepEqual(record.pass_through, { other: `o${id}` });

    // Finished, its hash kept for batch status: a new output under the same job asks what it likes.
    await rm(output);
    await rm(manifest);
    const fresh = await runDistributedBatchJob({ ...options, passThrough: ['label'] });
    assert.equal(fresh.processed, 4);
    for (const [id, record] of await readOutput(output)) assert.deepEqual(record.pass_through, { label: `l${id}` });
  } finally {
    await live?.close();
    await queue.close();
  }
});
