/**
 * A cancelled job's chunk that a worker held when it died: the cancel cannot take it off the queue (it is locked), BullMQ's
 * stalled check puts it back once the dead worker's lock expires, and a live worker takes it. The live worker reads the
 * job's cancel mark first and puts the chunk aside unrun: nothing is written, nothing is failed, and the same job run
 * again answers its records. Against a real redis-server, with the submitter and the live worker in this process.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { cancelBatchJob, chunkJobId, runDistributedBatchJob, startBatchWorker, type BatchWorker } from '../src/jobs/index.js';
import type { ChunkOutcome } from '../src/observability/index.js';
import { readOutput } from './support/batch-fixtures.js';
import { distributedWorkspace, takeChunkAndDie } from './support/distributed-fixtures.js';

const silent = pino({ level: 'silent' });
const workspace = distributedWorkspace('batch-cancel-recovered');

test('a chunk recovered from a dead worker after its job was cancelled is not run, written or failed; the same job run again answers it', { timeout: 60_000 }, async () => {
  const { dir, repo, queueUrl } = workspace;
  const input = join(dir, 'in.jsonl');
  await writeFile(input, `${JSON.stringify({ INPUT0: [1, 2, 3, 4] })}\n${JSON.stringify({ INPUT0: [5, 6, 7, 8] })}\n`);
  const output = join(dir, 'out.jsonl');
  const job = 'recovered-after-cancel';
  const queueName = 'cancel-recovered';
  const options = { model: 'scale', input, output, queue: queueUrl, queueName, job, chunkSize: 2, pollMs: 100, progress: 'none', logger: silent } as const;

  const first = runDistributedBatchJob(options);
  let live: BatchWorker | undefined;
  const outcomes: ChunkOutcome[] = [];
  const logged: string[] = [];
  try {
    // The worker that dies: it takes the job's one chunk with a short lock, never renews it and never answers.
    assert.equal(await takeChunkAndDie(workspace, queueName), chunkJobId(job, 0));

    const cancelled = await cancelBatchJob({ queue: queueUrl, queueName, job });
    assert.deepEqual({ removed: cancelled.removedChunks, running: cancelled.runningChunks }, { removed: 0, running: 1 }, 'the chunk held by the dead worker cannot be taken off');

    // The live worker's stalled check gives it the chunk once the dead worker's lock has expired.
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(line) });
    // Its own lock is long: a 1 s lock lapses under load while it runs the chunk, which then runs twice.
    live = await startBatchWorker({ queue: queueUrl, queueName, modelRepository: repo, lockDurationMs: 10_000, stalledIntervalMs: 200, logger, onChunk: (outcome) => outcomes.push(outcome) });

    const summary = await first;
    assert.deepEqual(summary.cancelled, { at: cancelled.cancelledAt, recordsLeft: 2 }, JSON.stringify(summary));
    assert.equal(summary.processed, 0, 'no record of the cancelled job was answered');
    assert.deepEqual(summary.failedChunks, []);
    assert.equal(summary.lostChunks, undefined);
    assert.equal((await readOutput(output)).size, 0);
    assert.ok(logged.some((line) => line.includes(`chunk ${chunkJobId(job, 0)} not run: job '${job}' was cancelled`)), logged.join(''));
    assert.equal(outcomes.length, 0, 'the chunk counts neither as completed nor as failed');

    // The same job run again clears the mark and queues the chunk anew: every record is answered once.
    const rerun = await runDistributedBatchJob(options);
    assert.equal(rerun.cancelled, undefined);
    assert.equal(rerun.processed, 2);
    assert.equal(rerun.failed, 0);
    const records = await readOutput(output);
    assert.deepEqual([...records.keys()].sort(), [1, 2]);
    for (const record of records.values()) assert.equal(record.error, null, String(record.error));
    assert.deepEqual(outcomes.map((outcome) => outcome.status), ['completed'], logged.join(''));
  } finally {
    await live?.close();
    await first.catch(() => undefined);
  }
});
