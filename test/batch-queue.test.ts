/**
 * Distributed batch jobs against a real redis-server, in the cases that need no worker: what the
 * submitter refuses before it queues anything.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { runDistributedBatchJob } from '../src/jobs/index.js';
import { writeImageFolder } from './support/batch-fixtures.js';
import { startRedisServer, type RedisTestServer } from './support/redis-server.js';

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
    /out\.jsonl holds a record with id "photos\/elsewhere\.png", which the input .*images does not have \(1 of its 1 records are not the input's\): it is another job's output; choose another --output, or --restart/,
  );
  const queue = new Queue('foreign', { connection: { host: '127.0.0.1', port: redis.port } });
  try {
    assert.equal(await queue.count(), 0);
  } finally {
    await queue.close();
  }
  assert.equal(await readFile(output, 'utf8'), foreign);
});
