/**
 * Distributed batch jobs against a real redis-server: three `nereid worker` processes, a job
 * submitted with `nereid batch --queue`, one worker killed with SIGKILL while it holds a chunk.
 * Its chunk is redelivered after the lock expires and the output still holds every record once,
 * each checked against the Server API. A chunk that always fails ends in the failed set after its
 * attempts and its records are left unwritten for a rerun; a model no worker has fails the job with exit 3.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { batchJobStatus, cancelBatchJob, chunkJobId, DEFAULT_QUEUE_NAME, formatStatus, runDistributedBatchJob } from '../src/jobs/index.js';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { createServer } from '../src/server/create-server.js';
import type { Server } from '../src/server/server.js';
import sharp from 'sharp';
import { CNN_LABELS, patternImage, readOutput, writeBatchModels, writeImageFolder, type OutputRecord } from './support/batch-fixtures.js';
import { HF_IMAGE_SCHEMA, writeParquet } from './support/parquet-fixtures.js';
import { freePort, startRedisServer, type RedisTestServer } from './support/redis-server.js';
import { NEREID_COMMAND } from './support/cli-server.js';

const CHUNK_SIZE = 25;

let dir: string;
let repo: string;
let redis: RedisTestServer;
let queueUrl: string;
let reference: Server;
let queue: Queue;
const workers: { name: string; child: ChildProcess; log: () => string; exited: Promise<unknown> }[] = [];

/** w3's Prometheus port (the others serve none). */
let metricsPort: number;

function startWorker(name: string, extraArgs: string[] = []) {
  const child = spawn(
    process.execPath,
    [
      // A worker given its own repository gets that one only: the flag names one folder.
      ...NEREID_COMMAND, 'worker', '--queue', queueUrl, ...(extraArgs.includes('--model-repository') ? [] : ['--model-repository', repo]), '--name', name,
      '--concurrency', '1', '--record-concurrency', '2', '--lock-duration-ms', '2500', '--stalled-interval-ms', '500', ...extraArgs,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (chunk) => (log += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  workers.push({ name, child, log: () => log, exited });
  return { child, log: () => log };
}

/** Runs the CLI to the end; its stdout, stderr and exit code. */
function cli(args: string[], onSpawn?: (child: ChildProcess) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...NEREID_COMMAND, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  onSpawn?.(child);
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nereid-batch-distributed-'));
  repo = join(dir, 'repo');
  await writeBatchModels(repo);
  redis = await startRedisServer();
  queueUrl = `redis://127.0.0.1:${redis.port}`;
  queue = new Queue(DEFAULT_QUEUE_NAME, { connection: { host: '127.0.0.1', port: redis.port } });
  metricsPort = await freePort();
  for (const name of ['w1', 'w2']) startWorker(name);
  startWorker('w3', ['--metrics-port', String(metricsPort)]);
  reference = await (await createServer({ modelRepository: repo, logger: pino({ level: 'silent' }) })).start();
  // Every worker is up and listening before a job is submitted. A worker that exits first fails the file at once; a
  // slow start on a loaded machine is waited for (the deadline only ends a hang).
  let exitedEarly: string | undefined;
  for (const worker of workers) void worker.exited.then(() => (exitedEarly ??= worker.name));
  const deadline = Date.now() + 180_000;
  while (!workers.every((worker) => worker.log().includes('waiting for chunks'))) {
    if (exitedEarly !== undefined || Date.now() > deadline) {
      throw new Error(`workers did not start${exitedEarly ? ` (${exitedEarly} exited)` : ''}:\n${workers.map((worker) => worker.log()).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

after(async () => {
  for (const worker of workers) worker.child.kill('SIGKILL');
  await Promise.all(workers.map((worker) => worker.exited));
  await reference?.close();
  await queue?.close();
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A PNG of pseudo-random pixels: it does not compress, so its size is about side² × 3 bytes. */
function noisePng(side: number, seed: number): Promise<Buffer> {
  const pixels = Buffer.alloc(side * side * 3);
  let state = seed;
  for (let index = 0; index < pixels.length; index++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    pixels[index] = state >>> 24;
  }
  return sharp(pixels, { raw: { width: side, height: side, channels: 3 } }).png().toBuffer();
}

function assertClassification(record: OutputRecord, probabilities: number[]): void {
  assert.equal(record.error, null, `record ${record.id}: ${record.error}`);
  const lowestPredicted = Math.min(...record.predictions!.map((prediction) => prediction.score));
  const predicted = new Set(record.predictions!.map((prediction) => prediction.index));
  for (const prediction of record.predictions!) {
    assert.equal(prediction.label, CNN_LABELS[prediction.index]);
    assert.ok(Math.abs(prediction.score - probabilities[prediction.index]) < 1e-5);
  }
  probabilities.forEach((probability, index) => {
    if (!predicted.has(index)) assert.ok(probability <= lowestPredicted + 1e-5, `record ${record.id}: class ${index} should be in the top 3`);
  });
}

describe('distributed batch jobs', () => {
  test('3 workers, one killed mid-chunk: every record exactly once', { timeout: 90_000 }, async () => {
    const images = join(dir, 'images');
    // Larger images than the model takes, so decoding makes each chunk last long enough to be caught active.
    const ids = [...(await writeImageFolder(images, 300, { size: 160 })), 'set1/zz-broken.png'].sort();
    await writeFile(join(images, 'set1', 'zz-broken.png'), 'not a PNG at all');
    const output = join(dir, 'out.jsonl');
    const job = 'fashion-test';

    let killed: string | undefined;
    let submitterDone = false;
    const w1 = workers[0].child;
    // w2 and w3 are frozen until w1 has been caught with a chunk, so on a loaded machine they cannot
    // take every chunk before w1 is seen holding one; they then finish the job, w1's chunk included.
    const others = [workers[1].child, workers[2].child];
    for (const other of others) other.kill('SIGSTOP');
    const resumeOthers = () => others.forEach((other) => other.kill('SIGCONT'));
    /** As soon as w1 holds a chunk: freeze it, check it still holds that chunk unfinished, then kill it. */
    const killW1MidChunk = async () => {
      try {
        await catchW1();
      } finally {
        resumeOthers();
      }
    };
    const catchW1 = async () => {
      const deadline = Date.now() + 30_000;
      while (!killed && !submitterDone && Date.now() < deadline) {
        for (const candidate of await queue.getActive()) {
          const held = await queue.getJob(candidate.id!);
          if (held?.processedBy !== 'w1') continue;
          w1.kill('SIGSTOP');
          const still = await queue.getJob(held.id!);
          if ((await queue.getJobState(held.id!)) === 'active' && still?.processedBy === 'w1' && !still.finishedOn) {
            w1.kill('SIGKILL');
            killed = held.id;
            return;
          }
          w1.kill('SIGCONT'); // it finished that chunk in the meantime; wait for its next one
        }
        await new Promise((resolve) => setTimeout(resolve, 3));
      }
    };
    const args = ['batch', '--model', 'cnn', '--input', images, '--output', output, '--queue', queueUrl, '--job', job, '--chunk-size', String(CHUNK_SIZE), '--progress', 'lines'];
    let killer: Promise<void> | undefined;
    const { code, stdout, stderr } = await cli(args, () => (killer = killW1MidChunk())).finally(() => (submitterDone = true));
    await killer;
    assert.equal(code, 0, stderr);
    assert.ok(killed, 'w1 was seen holding a chunk and killed');
    await workers[0].exited;
    assert.doesNotMatch(workers[0].log(), new RegExp(`chunk ${killed} completed`), 'w1 died before finishing its chunk');
    // The killed worker's chunk was redelivered and completed by another worker.
    assert.match(workers[1].log() + workers[2].log(), new RegExp(`chunk ${killed} completed`));

    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      records: number;
      processed: number;
      failed: number;
      chunks: number;
      failedChunks: { chunk: number; records: number; reason: string }[];
    };
    assert.equal(summary.records, ids.length);
    assert.equal(summary.processed, ids.length);
    assert.equal(summary.chunks, Math.ceil(ids.length / CHUNK_SIZE));
    assert.deepEqual(summary.failedChunks, []);
    const errors = async () => [...new Set([...(await readOutput(output)).values()].flatMap((record) => (record.error ? [record.error.replace(/\d+/g, 'N')] : [])))];
    assert.equal(summary.failed, 1, `the broken file; errors: ${(await errors()).join(' | ')}`);

    // Record by record: every id exactly once; the rest agree with server.infer.
    const records = await readOutput(output);
    assert.deepEqual([...records.keys()].sort(), ids);
    for (const id of ids) {
      const record = records.get(id)!;
      if (id === 'set1/zz-broken.png') {
        assert.match(record.error!, /not an image in a supported format/);
      } else {
        const response = await reference.infer({
          model: 'cnn',
          inputs: [{ name: 'image', datatype: 'BYTES', shape: [1, 1], data: [await readFile(join(images, id as string))] }],
        });
        assertClassification(record, Array.from(response.outputs[0].data as Float32Array));
      }
    }

    // What `nereid batch status --job --json` prints (test/batch-cli-exit.test.ts runs the command), read in process.
    const parsed = await batchJobStatus({ queue: queueUrl, job });
    assert.deepEqual(parsed.chunkStates, { waiting: 0, active: 0, delayed: 0, completed: summary.chunks, failed: 0, notQueued: 0 });
    assert.equal(parsed.recordsWritten, ids.length);
    assert.equal(parsed.recordsFailed, 1);
    // Without --job: the queue's recent jobs, this one among them.
    const listed = await cli(['batch', 'status', '--queue', queueUrl, '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as { job: string }[]).some((entry) => entry.job === job), listed.stdout);

    // w3's metrics: the chunks and records it returned, and the inference metrics of the model it ran.
    const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const valueOf = (pattern: RegExp) => Number(pattern.exec(scraped)?.[1] ?? NaN);
    const w3Chunks = valueOf(/^nereid_batch_chunks_total\{model="cnn",status="completed"\} (\d+)/m);
    assert.ok(w3Chunks >= 1, scraped.split('\n').filter((line) => line.startsWith('nereid_batch')).join('\n'));
    const w3Records = valueOf(/^nereid_batch_records_total\{model="cnn",outcome="ok"\} (\d+)/m) + (valueOf(/^nereid_batch_records_total\{model="cnn",outcome="error"\} (\d+)/m) || 0);
    assert.ok(w3Records >= w3Chunks && w3Records <= w3Chunks * CHUNK_SIZE, `${w3Records} records in ${w3Chunks} chunks`);
    assert.match(scraped, /^nereid_batch_chunk_duration_seconds_count\{model="cnn",status="completed"\} \d+/m);
    assert.ok(valueOf(/^nereid_inference_request_success_total\{model="cnn",version="1"\} (\d+)/m) >= w3Records - 1, 'each record is one inference request on the worker\'s server');

    // Submitting the same job again adds nothing and writes nothing twice.
    const again = await cli(args);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout.trim().split('\n').at(-1)!).processed, 0);
    assert.equal((await readOutput(output)).size, ids.length);
  });

  test('large images end a chunk sooner, and one larger than a chunk may carry is its own error while the rest run', { timeout: 60_000 }, async () => {
    const images = join(dir, 'large');
    await mkdir(images, { recursive: true });
    // Noise does not compress: a 420-pixel square PNG is about 0.5 MiB, a 900-pixel one about 2.3 MiB.
    for (let n = 0; n < 6; n++) await writeFile(join(images, `img-${n}.png`), await noisePng(420, n + 1));
    await writeFile(join(images, 'huge.png'), await noisePng(900, 99));
    const output = join(dir, 'large-out.jsonl');
    const { code, stdout, stderr } = await cli([
      'batch', '--model', 'cnn', '--input', images, '--output', output, '--queue', queueUrl, '--chunk-max-mib', '1', '--progress', 'none',
    ]);
    assert.equal(code, 0, stderr);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as { processed: number; failed: number; chunks: number };
    assert.equal(summary.processed, 7);
    assert.equal(summary.failed, 1);
    // One record per chunk (two of 0.5 MiB pass 1 MiB), the 64 records --chunk-size allows notwithstanding.
    assert.equal(summary.chunks, 7);
    const records = await readOutput(output);
    assert.match(records.get('huge.png')!.error!, /^the record is 2\.\d MiB, more than a chunk carries through Redis \(--chunk-max-mib 1\); run it in a local job$/);
    for (let n = 0; n < 6; n++) assert.equal(records.get(`img-${n}.png`)!.error, null);
  });

  test('large JSONL lines and CSV rows end a chunk sooner as large images do, and one larger than a chunk may carry is its own error', { timeout: 60_000 }, async () => {
    // About 1.5 MiB of values: more than --chunk-max-mib 1 lets one chunk carry.
    const huge = Array.from({ length: 800_000 }, (_, n) => n % 10).join(' ');
    const jsonl = join(dir, 'large-lines.jsonl');
    await writeFile(jsonl, [JSON.stringify({ INPUT0: [1, 1, 2, 3] }), JSON.stringify({ INPUT0: huge }), JSON.stringify({ INPUT0: [3, 1, 2, 3] })].join('\n') + '\n');
    const csv = join(dir, 'large-rows.csv');
    await writeFile(csv, `INPUT0\n1 1 2 3\n${huge}\n3 1 2 3\n`);
    for (const [input, hugeId] of [[jsonl, 2], [csv, 3]] as const) {
      const output = `${input}.out.jsonl`;
      const { code, stdout, stderr } = await cli([
        'batch', '--model', 'scale', '--input', input, '--output', output, '--queue', queueUrl, '--chunk-max-mib', '1', '--progress', 'none',
      ]);
      assert.equal(code, 0, stderr);
      const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as { processed: number; failed: number; chunks: number };
      assert.deepEqual([summary.processed, summary.failed, summary.chunks], [3, 1, 3], `${input}: the large record alone in a chunk, the next in another`);
      const records = await readOutput(output);
      assert.match(records.get(hugeId)!.error!, /^the record is 1\.\d MiB, more than a chunk carries through Redis \(--chunk-max-mib 1\); run it in a local job$/, input);
      for (const [id, record] of records) if (id !== hugeId) assert.equal(record.error, null, `${input} record ${id}: ${record.error}`);
    }
    // A run in this process queues no chunks: the flag is named as ignored.
    const local = await cli(['batch', '--model', 'scale', '--input', jsonl, '--output', join(dir, 'large-local.jsonl'), '--model-repository', repo, '--chunk-max-mib', '1', '--progress', 'none']);
    assert.equal(local.code, 0, local.stderr);
    assert.match(local.stderr, /--chunk-max-mib is for a distributed job \(--queue\); a run in this process queues no chunks and ignores it/);
  });

  test('a Parquet file of images (the Hugging Face layout) and a gzipped CSV go through the queue as they run locally: images as images, rows as their fields', { timeout: 60_000 }, async () => {
    const images = await Promise.all(Array.from({ length: 6 }, (_, n) => patternImage(n, 'png')));
    const parquet = await writeParquet(join(dir, 'hf.parquet'), [
      { name: 'image', data: images.map((image, n) => ({ bytes: new Uint8Array(image), path: `${n}.png` })) },
      { name: 'label', data: images.map((_, n) => BigInt(n)) },
    ], { schema: HF_IMAGE_SCHEMA, rowGroupSize: 4 });
    const csv = join(dir, 'rows.csv.gz');
    await writeFile(csv, gzipSync('id,INPUT0\na,1 2 3 4\nb,5 6 7 8\n'));
    const submit = (model: string, input: string, options: { idColumn?: string; passThrough?: string[] } = {}) =>
      runDistributedBatchJob({ model, input, output: `${input}.out.jsonl`, queue: queueUrl, chunkSize: 4, pollMs: 100, progress: 'none', logger: pino({ level: 'silent' }), ...options });
    const [imagesRun, rowsRun] = await Promise.all([submit('cnn', parquet, { passThrough: ['label'] }), submit('scale', csv, { idColumn: 'id' })]);
    assert.deepEqual([imagesRun.processed, imagesRun.failed, imagesRun.chunks], [6, 0, 2]);
    const answered = await readOutput(`${parquet}.out.jsonl`);
    for (const [n, image] of images.entries()) {
      const response = await reference.infer({ model: 'cnn', inputs: [{ name: 'image', datatype: 'BYTES', shape: [1, 1], data: [image] }] });
      assertClassification(answered.get(n)!, Array.from(response.outputs[0]!.data as Float32Array));
      assert.deepEqual(answered.get(n)!.pass_through, { label: n });
    }
    assert.deepEqual([rowsRun.processed, rowsRun.failed], [2, 0]);
    const rows = await readOutput(`${csv}.out.jsonl`);
    assert.deepEqual(rows.get('b')!.outputs![0]!.data, [10, 12, 14, 16]);
  });

  test('files added to the input between runs: chunks queued with other records are submitted again, and every record is answered', { timeout: 60_000 }, async () => {
    const images = join(dir, 'changing');
    await writeImageFolder(images, 10, { subfolders: 1 });
    const output = join(dir, 'changing-out.jsonl');
    // No worker listens on this queue yet: the first run queues its chunks and is interrupted.
    const args = ['batch', '--model', 'cnn', '--input', images, '--output', output, '--queue', queueUrl, '--queue-name', 'changing', '--chunk-size', '5', '--progress', 'none'];
    const changing = new Queue('changing', { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      const first = await cli(args, (child) => {
        void (async () => {
          while ((await changing.getWaitingCount()) < 2) await new Promise((resolve) => setTimeout(resolve, 50));
          child.kill('SIGINT');
        })();
      });
      assert.equal(first.code, 130, first.stderr);
      // Three images that sort first move every chunk's bounds.
      for (let n = 0; n < 3; n++) await writeFile(join(images, `a-${n}.png`), await patternImage(100 + n, 'png'));
      startWorker('w-changing', ['--queue-name', 'changing']);
      // A chunk still queued is submitted again; one the worker already runs with its old records leaves the records
      // it did not hold for the next run, which then submits them.
      let logs = '';
      for (let run = 0; run < 3; run++) {
        const again = await cli(args);
        logs += again.stderr;
        if (again.code === 0) break;
        assert.equal(again.code, 1, again.stderr);
      }
      assert.match(logs, /chunk 0 of job '[^']+' (was queued with other records \(the input changed since\); it is submitted again|ran with other records than it holds now)/);
      const records = await readOutput(output);
      assert.equal(records.size, 13);
      for (const record of records.values()) assert.equal(record.error, null, `${record.id}: ${record.error}`);
    } finally {
      await changing.close();
    }
  });

  test('--model-version names a version the policy leaves out: the workers load it, and a job naming none gets the policy\'s', { timeout: 60_000 }, async () => {
    // Version 1 doubles, version 2 triples; the policy (latest) serves 2.
    await writeModel(repo, 'scaled', 1, scaleModel(2), 'max_batch_size: 8\n');
    await writeModel(repo, 'scaled', 2, scaleModel(3), 'max_batch_size: 8\n');
    const input = join(dir, 'scaled.jsonl');
    await writeFile(input, `${Array.from({ length: 6 }, (_, n) => JSON.stringify({ INPUT0: [n, 1, 2, 3] })).join('\n')}\n`);
    const run = async (output: string, version?: string) => {
      const { code, stderr } = await cli([
        'batch', '--model', 'scaled', ...(version ? ['--model-version', version] : []), '--input', input, '--output', output, '--queue', queueUrl, '--chunk-size', '2', '--progress', 'none',
      ]);
      assert.equal(code, 0, stderr);
      return [...(await readOutput(output)).values()];
    };
    for (const record of await run(join(dir, 'scaled-v1.jsonl'), '1')) {
      assert.equal(record.error, null, String(record.error));
      assert.equal(record.model_version, '1');
      assert.deepEqual(record.outputs![0].data.slice(1), [2, 4, 6]);
    }
    for (const record of await run(join(dir, 'scaled-default.jsonl'))) {
      assert.equal(record.error, null, String(record.error));
      assert.equal(record.model_version, '2');
      assert.deepEqual(record.outputs![0].data.slice(1), [3, 6, 9]);
    }
  });

  test('the same --job with another --output is refused up front, naming the output it was submitted for, and loses no record', { timeout: 60_000 }, async () => {
    const input = join(dir, 'same-job.jsonl');
    await writeFile(input, `${Array.from({ length: 4 }, (_, n) => JSON.stringify({ INPUT0: [n, 1, 2, 3] })).join('\n')}\n`);
    const args = (output: string) => ['batch', '--model', 'scale', '--job', 'same-job', '--input', input, '--output', output, '--queue', queueUrl, '--chunk-size', '2', '--progress', 'none'];
    const first = await cli(args(join(dir, 'same-job-a.jsonl')));
    assert.equal(first.code, 0, first.stderr);
    const second = await cli(args(join(dir, 'same-job-b.jsonl')));
    assert.notEqual(second.code, 0, second.stderr);
    assert.match(second.stderr, /job 'same-job' was submitted for .*output '[^']*same-job-a\.jsonl'.*; this run asks for another --output [^;]*same-job-b\.jsonl; use another --job, the same options, or --restart/);
    assert.doesNotMatch(second.stderr, /vanished from Redis/);
    assert.equal((await readOutput(join(dir, 'same-job-a.jsonl'))).size, 4);
  });

  test('chunks that vanish from Redis (a flush) are left unwritten and listed, and a rerun submits their records again', { timeout: 60_000 }, async () => {
    const input = join(dir, 'lost.jsonl');
    await writeFile(input, `${Array.from({ length: 6 }, (_, n) => JSON.stringify({ INPUT0: [n, 1, 2, 3] })).join('\n')}\n`);
    const output = join(dir, 'lost-out.jsonl');
    const args = ['batch', '--model', 'scale', '--input', input, '--output', output, '--queue', queueUrl, '--queue-name', 'lost', '--chunk-size', '3', '--progress', 'none'];
    const lost = new Queue('lost', { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      const first = await cli(args, () => {
        void (async () => {
          while ((await lost.getWaitingCount()) < 2) await new Promise((resolve) => setTimeout(resolve, 50));
          await lost.obliterate({ force: true });
        })();
      });
      assert.equal(first.code, 1, first.stderr);
      assert.match(first.stderr, /chunk 0 vanished from Redis before it finished \(a restart or a flush\?\): 3 of its record\(s\) are not written; rerun the same command/);
      const summary = JSON.parse(first.stdout.trim().split('\n').at(-1)!) as { lostChunks: { chunk: number; records: number }[]; processed: number };
      assert.deepEqual(summary.lostChunks.map(({ chunk, records }) => ({ chunk, records })), [{ chunk: 0, records: 3 }, { chunk: 1, records: 3 }]);
      assert.equal(summary.processed, 0);
      startWorker('w-lost', ['--queue-name', 'lost']);
      const second = await cli(args);
      assert.equal(second.code, 0, second.stderr);
      const records = await readOutput(output);
      assert.equal(records.size, 6);
      for (const record of records.values()) assert.equal(record.error, null, String(record.error));
    } finally {
      await lost.close();
    }
  });

  test('batch cancel takes the waiting chunks off the queue and stops the submitter without writing or losing a record; the same command resumes', { timeout: 60_000 }, async () => {
    const input = join(dir, 'cancel.jsonl');
    await writeFile(input, `${Array.from({ length: 8 }, (_, n) => JSON.stringify({ INPUT0: [n, 1, 2, 3] })).join('\n')}\n`);
    const output = join(dir, 'cancel-out.jsonl');
    const job = 'to-cancel';
    const args = ['batch', '--model', 'scale', '--input', input, '--output', output, '--queue', queueUrl, '--queue-name', 'cancel', '--job', job, '--chunk-size', '2', '--progress', 'none'];
    const cancelQueue = new Queue('cancel', { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      // No worker listens on this queue yet: every chunk waits, and the cancel finds them all.
      let cancel: Promise<{ code: number | null; stdout: string; stderr: string }> | undefined;
      const first = await cli(args, () => {
        void (async () => {
          while ((await cancelQueue.getWaitingCount()) < 4) await new Promise((resolve) => setTimeout(resolve, 50));
          cancel = cli(['batch', 'cancel', '--queue', queueUrl, '--queue-name', 'cancel', '--job', job, '--json']);
        })();
      });
      const cancelled = await cancel!;
      assert.equal(cancelled.code, 0, cancelled.stderr);
      const result = JSON.parse(cancelled.stdout) as { job: string; removedChunks: number; runningChunks: number; recordsLeft: number; cancelledAt: string };
      // The submitter may see the mark and withdraw its chunks before this command reaches them: none waits either way.
      assert.deepEqual({ ...result, cancelledAt: undefined, removedChunks: undefined }, { job, removedChunks: undefined, runningChunks: 0, recordsLeft: 8, cancelledAt: undefined });
      assert.ok(result.removedChunks <= 4, String(result.removedChunks));
      assert.equal(await cancelQueue.getWaitingCount(), 0);

      assert.equal(first.code, 1, `a cancelled job is work not done: ${first.stderr}`);
      assert.match(first.stderr, /job 'to-cancel' was cancelled at .*: no more chunks are queued/);
      assert.match(first.stderr, /cancelled: 0 record\(s\).*the job was cancelled at .* \(nereid batch cancel\): 8 record\(s\) not written; rerun the same command to resume it/s);
      assert.doesNotMatch(first.stderr, /vanished from Redis/);
      const summary = JSON.parse(first.stdout.trim().split('\n').at(-1)!) as { cancelled: { at: string; recordsLeft: number }; processed: number; lostChunks?: unknown };
      assert.deepEqual(summary.cancelled, { at: result.cancelledAt, recordsLeft: 8 });
      assert.equal(summary.processed, 0);
      assert.equal(summary.lostChunks, undefined);
      assert.equal((await readOutput(output)).size, 0);

      // What `nereid batch status` prints, read in process (test/batch-cli-exit.test.ts runs the command on a cancelled job).
      const status = formatStatus(await batchJobStatus({ queue: queueUrl, queueName: 'cancel', job }));
      assert.match(status, /cancelled at .* \(nereid batch cancel\); the same nereid batch command resumes it/);

      startWorker('w-cancel', ['--queue-name', 'cancel']);
      const resumed = await cli(args);
      assert.equal(resumed.code, 0, resumed.stderr);
      const records = await readOutput(output);
      assert.equal(records.size, 8);
      for (const record of records.values()) assert.equal(record.error, null, String(record.error));
      const after = await batchJobStatus({ queue: queueUrl, queueName: 'cancel', job });
      assert.equal(after.cancelledAt, undefined, 'the rerun cleared the cancel');
      assert.equal(after.recordsWritten, 8);

      // A finished job has nothing to cancel, and an unknown one is named: what the command refuses with (its exit
      // statuses for both are test/batch-cli-exit.test.ts's), in process.
      await assert.rejects(cancelBatchJob({ queue: queueUrl, queueName: 'cancel', job }), /batch job 'to-cancel' has written all its 8 record\(s\): nothing is left to cancel/);
      await assert.rejects(cancelBatchJob({ queue: queueUrl, queueName: 'cancel', job: 'nope' }), /no batch job 'nope' on queue 'cancel'/);
    } finally {
      await cancelQueue.close();
    }
  });

  test("a rerun collects chunks finished while no submitter ran, and leaves them out of its rate and compute share", { timeout: 60_000 }, async () => {
    const input = join(dir, 'earlier.jsonl');
    await writeFile(input, `${Array.from({ length: 4 }, (_, n) => JSON.stringify({ INPUT0: [n, 1, 2, 3] })).join('\n')}\n`);
    const output = join(dir, 'earlier-out.jsonl');
    const args = ['batch', '--model', 'scale', '--input', input, '--output', output, '--queue', queueUrl, '--queue-name', 'earlier', '--job', 'earlier', '--chunk-size', '2', '--progress', 'none'];
    const earlier = new Queue('earlier', { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      // Submitted with no worker listening, then the submitter is killed: both chunks wait in Redis.
      await cli(args, (child) => {
        void (async () => {
          while ((await earlier.getWaitingCount()) < 2) await new Promise((resolve) => setTimeout(resolve, 50));
          child.kill('SIGKILL');
        })();
      });
      startWorker('w-earlier', ['--queue-name', 'earlier']);
      while ((await earlier.getCompletedCount()) < 2) await new Promise((resolve) => setTimeout(resolve, 50));
      const rerun = await cli(args);
      assert.equal(rerun.code, 0, rerun.stderr);
      const summary = JSON.parse(rerun.stdout.trim().split('\n').at(-1)!) as { processed: number; collectedEarlier?: number; recordsPerSecond: number; computeSeconds: number };
      assert.deepEqual({ processed: summary.processed, collectedEarlier: summary.collectedEarlier, recordsPerSecond: summary.recordsPerSecond, computeSeconds: summary.computeSeconds }, {
        processed: 4,
        collectedEarlier: 4,
        recordsPerSecond: 0,
        computeSeconds: 0,
      });
      assert.match(rerun.stderr, /leaving out 4 whose chunks finished before this run/);
      assert.equal((await readOutput(output)).size, 4);
    } finally {
      await earlier.close();
    }
  });

  test('a chunk that fails (its model missing on the workers) leaves its records unwritten and the job exits 3; the same command, once the model is there, answers them all', { timeout: 60_000 }, async () => {
    const input = join(dir, 'late.jsonl');
    const line = (n: number) => JSON.stringify({ INPUT0: [n, 1, 2, 3] });
    await writeFile(input, `${[0, 1, 2, 3].map(line).join('\n')}\n`);
    const output = join(dir, 'late-out.jsonl');
    const args = ['batch', '--model', 'late', '--input', input, '--output', output, '--queue', queueUrl, '--chunk-size', '8', '--attempts', '1', '--progress', 'none'];
    // No model 'late' yet: chunk 0 fails, and its four records are left for a rerun (written as errors, a rerun would take them as answered).
    const first = await cli(args);
    assert.equal(first.code, 3, first.stderr);
    assert.deepEqual([...(await readOutput(output).catch(() => new Map())).keys()], []);
    await writeModel(repo, 'late', 1, scaleModel(2), 'max_batch_size: 8\n');
    await writeFile(input, `${[0, 1, 2, 3, 4].map(line).join('\n')}\n`);
    const second = await cli(args);
    assert.equal(second.code, 0, second.stderr);
    const records = await readOutput(output);
    assert.equal(records.size, 5);
    for (const [id, record] of records) {
      assert.equal(record.error, null, String(record.error));
      assert.deepEqual(record.outputs![0].data, [2 * (Number(id) - 1), 2, 4, 6]);
    }
  });

  test('one model version answers a whole job: a newer repository on a later worker answers with the version the job began with, and a worker without it fails the chunks naming both', { timeout: 90_000 }, async () => {
    // Version 1 doubles, version 2 triples. The first worker's repository has only version 1; the second's has both
    // (its policy serves 2), the third's only version 2. The job runs on its own queue, on one worker at a time.
    const queueName = 'pinned-versions';
    const repos = { old: join(dir, 'pin-old'), both: join(dir, 'pin-both'), newest: join(dir, 'pin-newest') };
    for (const [repoDir, versions] of [[repos.old, [1]], [repos.both, [1, 2]], [repos.newest, [2]]] as const) {
      for (const version of versions) await writeModel(repoDir, 'pinned', version, scaleModel(version + 1), 'max_batch_size: 8\n');
    }
    const input = join(dir, 'pinned.jsonl');
    const output = join(dir, 'pinned-out.jsonl');
    const records = (from: number, count: number) => Array.from({ length: count }, (_, n) => `${JSON.stringify({ INPUT0: [from + n, 1, 2, 3] })}\n`).join('');
    const run = (extra: string[] = []) => cli(['batch', '--model', 'pinned', '--input', input, '--output', output, '--queue', queueUrl, '--queue-name', queueName, '--chunk-size', '2', '--attempts', '1', '--progress', 'none', ...extra]);
    const onlyWorker = async (name: string, repoDir: string) => {
      const started = startWorker(name, ['--queue-name', queueName, '--model-repository', repoDir]);
      while (!started.log().includes('waiting for chunks')) await new Promise((resolve) => setTimeout(resolve, 50));
      return async () => {
        started.child.kill('SIGTERM');
        await workers.find((worker) => worker.name === name)!.exited;
      };
    };
    await writeFile(input, records(0, 4));
    let stop = await onlyWorker('pin-old', repos.old);
    const first = await run();
    assert.equal(first.code, 0, first.stderr);
    assert.equal(JSON.parse(first.stdout.trim().split('\n').at(-1)!).modelVersion, '1');
    await stop();

    // Records added, and a worker whose policy now serves version 2: the job goes on with version 1.
    await writeFile(input, records(0, 8));
    stop = await onlyWorker('pin-both', repos.both);
    const second = await run();
    assert.equal(second.code, 0, second.stderr);
    const answered = await readOutput(output);
    assert.equal(answered.size, 8);
    for (const record of answered.values()) {
      assert.equal(record.error, null, String(record.error));
      assert.equal(record.model_version, '1', `record ${record.id}`);
      assert.deepEqual(record.outputs![0].data, [2 * (Number(record.id) - 1), 2, 4, 6]);
    }
    await stop();

    // A worker that has no version 1 fails the chunks, naming the version wanted and those it has; their records are not written.
    await writeFile(input, records(0, 10));
    stop = await onlyWorker('pin-newest', repos.newest);
    const third = await run();
    assert.equal(third.code, 3, third.stderr);
    const reasons = (JSON.parse(third.stdout.trim().split('\n').at(-1)!) as { failedChunks: { reason: string }[] }).failedChunks;
    assert.match(reasons[0]!.reason, /job '[^']+' is answered by model 'pinned' version 1, which worker pin-newest cannot load: model 'pinned' has no version 1 in the repository \(its versions: 2\)/);
    assert.equal((await readOutput(output)).size, 8);
    await stop();

    // Naming another version for the same output is refused before anything is submitted: its answers would mix.
    const other = await run(['--model-version', '2']);
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /pinned-out\.jsonl holds answers of pinned version 1, and this run answers with pinned version 2: choose another --output, or --restart to overwrite it, or --model-version 1/);
  });

  test('a worker without the model gives its chunks back to the one that has it, and no record fails', { timeout: 60_000 }, async () => {
    // The worker without the model is idle whenever the other computes, so it takes chunks, and each attempt would fail in milliseconds.
    const queueName = 'refusing-worker';
    const repos = { lacking: join(dir, 'refusing-lacking'), having: join(dir, 'refusing-having') };
    await writeModel(repos.lacking, 'other', 1, scaleModel(5), 'max_batch_size: 8\n');
    await writeModel(repos.having, 'scaled', 1, scaleModel(3), 'max_batch_size: 8\n');
    const input = join(dir, 'refusing.jsonl');
    const output = join(dir, 'refusing-out.jsonl');
    await writeFile(input, Array.from({ length: 12 }, (_, n) => `${JSON.stringify({ INPUT0: [n, 1, 2, 3] })}\n`).join(''));
    const lacking = startWorker('refusing-lacking', ['--queue-name', queueName, '--model-repository', repos.lacking]);
    const having = startWorker('refusing-having', ['--queue-name', queueName, '--model-repository', repos.having]);
    while (![lacking, having].every((started) => started.log().includes('waiting for chunks'))) await new Promise((resolve) => setTimeout(resolve, 50));
    const { code, stderr } = await cli(['batch', '--model', 'scaled', '--input', input, '--output', output, '--queue', queueUrl, '--queue-name', queueName, '--chunk-size', '1', '--attempts', '1', '--backoff-ms', '100', '--progress', 'none']);
    assert.equal(code, 0, stderr);
    const answered = await readOutput(output);
    assert.equal(answered.size, 12);
    for (const record of answered.values()) {
      assert.equal(record.error, null, String(record.error));
      assert.deepEqual(record.outputs![0].data, [3 * (Number(record.id) - 1), 3, 6, 9]);
    }
    assert.match(lacking.log(), /chunk scaled-[^ ]+ given back for another worker \(1 connected have not tried it\): job '[^']+' is answered by model 'scaled', which worker refusing-lacking cannot load/);
    for (const started of [lacking, having]) started.child.kill('SIGTERM');
    await Promise.all(workers.filter((worker) => worker.name.startsWith('refusing-')).map((worker) => worker.exited));
  });

  test('a model no worker has: the chunks fail after their attempts, no record is written, and the job exits 3 as a local one whose model does not load', { timeout: 60_000 }, async () => {
    const input = join(dir, 'ghost.jsonl');
    await writeFile(input, `${Array.from({ length: 10 }, (_, n) => JSON.stringify({ INPUT0: [n] })).join('\n')}\n`);
    const output = join(dir, 'ghost-out.jsonl');
    const { code, stdout, stderr } = await cli([
      'batch', '--model', 'ghost', '--input', input, '--output', output, '--queue', queueUrl,
      '--chunk-size', '4', '--attempts', '2', '--backoff-ms', '50', '--max-pending-chunks', '1', '--progress', 'none',
    ]);
    assert.equal(code, 3, stderr);
    assert.match(stderr, /chunk 0 of job '[^']+' failed after 2 attempt\(s\): .*model 'ghost'.*its 4 record\(s\) are not written, and no more chunks are queued/);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as { failed: number; processed: number; failedChunks: { chunk: number; reason: string }[]; error: { code: string; message: string } };
    assert.equal(summary.processed, 0);
    assert.deepEqual(summary.failedChunks.map((chunk) => chunk.chunk), [0], 'the first failure stops the queuing, as a local job stops');
    assert.equal(summary.error.code, 'UNAVAILABLE');
    assert.match(summary.error.message, /model 'ghost'.*run the same command again once the cause is fixed/);
    assert.equal((await readOutput(output).catch(() => new Map())).size, 0);
  });

  test("a finished job's hash and failed chunks expire --keep-finished-s after its last record is written; a rerun keeps them while it runs", { timeout: 60_000 }, async () => {
    await writeModel(repo, 'kept', 1, scaleModel(2), 'max_batch_size: 8\n');
    const input = join(dir, 'kept.jsonl');
    await writeFile(input, `${[0, 1, 2].map((n) => JSON.stringify({ INPUT0: [n, 1, 2, 3] })).join('\n')}\n`);
    const run = (model: string, job: string, extra: string[]) =>
      cli(['batch', '--model', model, '--input', input, '--output', join(dir, `${job}-out.jsonl`), '--queue', queueUrl, '--job', job, '--chunk-size', '2', '--attempts', '1', '--backoff-ms', '50', '--progress', 'none', ...extra]);
    const client = new Redis({ host: '127.0.0.1', port: redis.port });
    try {
      const hash = (job: string) => `nereid:batch:${DEFAULT_QUEUE_NAME}:${job}`;
      const finished = await run('kept', 'kept-job', ['--keep-finished-s', '600']);
      assert.equal(finished.code, 0, finished.stderr);
      const ttl = await client.ttl(hash('kept-job'));
      assert.ok(ttl > 0 && ttl <= 600, `ttl ${ttl}`);
      const finishedAt = await client.hget(hash('kept-job'), 'finished_at');
      assert.ok(finishedAt && Date.parse(finishedAt) <= Date.now(), String(finishedAt));
      // What `nereid batch status` prints, read in process.
      assert.match(formatStatus(await batchJobStatus({ queue: queueUrl, job: 'kept-job' })), new RegExp(`finished at ${finishedAt}`));
      // Run again with 0: the hash stays for good.
      const kept = await run('kept', 'kept-job', ['--keep-finished-s', '0', '--restart']);
      assert.equal(kept.code, 0, kept.stderr);
      assert.equal(await client.ttl(hash('kept-job')), -1);
      // A chunk that failed is kept for inspection as long, then removed by BullMQ; its records are not written, so the job's hash stays.
      const failed = await run('kept-missing', 'kept-failing', ['--keep-finished-s', '600']);
      assert.equal(failed.code, 3, failed.stderr);
      const chunk = await queue.getJob(chunkJobId('kept-failing', 0));
      assert.deepEqual(chunk?.opts.removeOnFail, { age: 600 });
      assert.equal(await client.ttl(hash('kept-failing')), -1, 'records not written: the job did not finish');
    } finally {
      client.disconnect();
    }
  });

  test("finished chunks' results do not pile up in BullMQ's event stream after they were written", async () => {
    const client = new Redis({ host: '127.0.0.1', port: redis.port });
    try {
      // Set by each submitter's queue; BullMQ's own default keeps 10,000 events, each with a chunk's output lines.
      assert.equal(await client.hget(`bull:${DEFAULT_QUEUE_NAME}:meta`, 'opts.maxLenEvents'), '100');
      const events = await client.xlen(`bull:${DEFAULT_QUEUE_NAME}:events`);
      assert.ok(events <= 300, `${events} events kept`);
    } finally {
      client.disconnect();
    }
  });
});
