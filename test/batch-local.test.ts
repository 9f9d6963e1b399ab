/**
 * Local batch jobs over real inputs: a folder of PNG/JPEG images rendered with sharp for an image
 * classifier, JSONL and CSV files for Triton's add/sub model. Every output record is checked
 * against what the Server API answers for the same input; malformed records get errors and the
 * job goes on; a job killed with SIGKILL mid-run and started again ends with every record once.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, appendFile, cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { runLocalBatchJob } from '../src/jobs/index.js';
import { createServer } from '../src/server/create-server.js';
import type { Server } from '../src/server/server.js';
import { writeHandlerModel } from './support/test-server.js';
import { NEREID_COMMAND } from './support/cli-server.js';
import {
  addSubCsv,
  addSubJsonLine,
  addSubValues,
  CNN_LABELS,
  readOutput,
  writeBatchModels,
  writeImageFolder,
  type OutputRecord,
} from './support/batch-fixtures.js';

let dir: string;
let repo: string;
/** The reference: the same repository behind the Server API, as the HTTP front end calls it. */
let reference: Server;
const silent = pino({ level: 'silent' });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nereid-batch-local-'));
  repo = join(dir, 'repo');
  await writeBatchModels(repo);
  reference = await (await createServer({ modelRepository: repo, logger: silent })).start();
});

after(async () => {
  await reference?.close();
  await rm(dir, { recursive: true, force: true });
});

/** What server.infer answers for one encoded image: the model's probabilities. */
async function referenceProbabilities(image: Buffer): Promise<number[]> {
  const response = await reference.infer({ model: 'cnn', inputs: [{ name: 'image', datatype: 'BYTES', shape: [1, 1], data: [image] }] });
  return Array.from(response.outputs[0].data as Float32Array);
}

/** A classification record agrees with server.infer: the top 3 classes, their labels and scores. */
function assertClassification(record: OutputRecord, probabilities: number[]): void {
  assert.equal(record.error, null, `record ${record.id}`);
  assert.equal(record.model_name, 'cnn');
  assert.equal(record.predictions!.length, 3);
  const predicted = new Set(record.predictions!.map((prediction) => prediction.index));
  const lowestPredicted = Math.min(...record.predictions!.map((prediction) => prediction.score));
  for (const prediction of record.predictions!) {
    assert.equal(prediction.label, CNN_LABELS[prediction.index]);
    assert.ok(Math.abs(prediction.score - probabilities[prediction.index]) < 1e-5, `record ${record.id}: score of class ${prediction.index}`);
  }
  // No class left out scores above the ones predicted (up to float noise between batch sizes).
  probabilities.forEach((probability, index) => {
    if (!predicted.has(index)) assert.ok(probability <= lowestPredicted + 1e-5, `record ${record.id}: class ${index} should be in the top 3`);
  });
  assert.ok(Math.abs(record.confidence!.probability - Math.max(...probabilities)) < 1e-5);
}

/** An add/sub record agrees with server.infer on the same values. */
async function assertAddSub(record: OutputRecord, n: number): Promise<void> {
  assert.equal(record.error, null, `record ${record.id}: ${record.error}`);
  const { input0, input1 } = addSubValues(n);
  const expected = await reference.infer({
    model: 'addsub',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Int32Array.from(input0) },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Int32Array.from(input1) },
    ],
  });
  assert.deepEqual(
    record.outputs,
    expected.outputs.map((output) => ({ name: output.name, datatype: output.datatype, shape: output.shape, data: Array.from(output.data as Int32Array) })),
  );
}

describe('local batch jobs', () => {
  test('a folder of images: every image classified as server.infer answers; a text file named .png is an error, not the end', async () => {
    const images = join(dir, 'images');
    const ids = await writeImageFolder(images, 40);
    await writeFile(join(images, 'set1', 'broken.png'), 'this is not a PNG');
    await writeFile(join(images, 'notes.txt'), 'not an image extension: left out');
    const output = join(dir, 'images.jsonl');
    const summary = await runLocalBatchJob({ model: 'cnn', input: images, output, modelRepository: repo, progress: 'none', logger: silent });
    assert.equal(summary.records, 41);
    assert.equal(summary.processed, 41);
    assert.equal(summary.failed, 1);
    assert.ok(summary.computeSeconds > 0 && summary.computeShare > 0 && summary.computeShare < 10);
    const records = await readOutput(output);
    assert.deepEqual([...records.keys()].sort(), [...ids, 'set1/broken.png'].sort());
    for (const id of ids) assertClassification(records.get(id)!, await referenceProbabilities(await readFile(join(images, id))));
    assert.match(records.get('set1/broken.png')!.error!, /not an image in a supported format/);
  });

  test("a record that crashes the model's worker fails alone: the records batched with it are sent again and answered", async () => {
    const crashRepo = join(dir, 'crash-repo');
    await writeHandlerModel(
      crashRepo,
      'crashy',
      'max_batch_size: 16\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]\noutput [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]\ndynamic_batching { max_queue_delay_microseconds: 50000 }\n',
      `export function execute(requests) {
  if (requests.some((request) => request.inputs.X.data[0] === 666)) process.exit(3);
  return requests.map((request) => ({ Y: { shape: request.inputs.X.shape, data: Float32Array.from(request.inputs.X.data, (v) => v * 2) } }));
}
`,
    );
    const input = join(dir, 'crashy.jsonl');
    const values = Array.from({ length: 24 }, (_, n) => (n === 9 ? 666 : n));
    await writeFile(input, values.map((value) => JSON.stringify({ X: [value, 1] })).join('\n') + '\n');
    const output = join(dir, 'crashy-out.jsonl');
    const summary = await runLocalBatchJob({ model: 'crashy', input, output, modelRepository: crashRepo, allowCodeModels: true, progress: 'none', logger: silent, concurrency: 16 });
    const records = await readOutput(output);
    assert.equal(records.size, 24);
    assert.equal(summary.failed, 1, 'only the poison record');
    assert.match(records.get(10)!.error!, /worker thread exited/);
    for (const [line, record] of records) if (line !== 10) assert.equal(record.error, null, `record ${line}: ${record.error}`);
  });

  test('a JSONL file in all three forms: outputs equal server.infer; a bad JSON line and a wrong shape are errors', async () => {
    const lines = Array.from({ length: 30 }, (_, n) => addSubJsonLine(n));
    lines.splice(10, 0, '{"inputs": [{"name": "INPUT0", "datatype": "INT32"'); // line 11: cut short
    lines.splice(20, 0, JSON.stringify({ INPUT0: [1, 2, 3], INPUT1: [4, 5, 6] })); // line 21: 3 values, not 16
    lines.splice(25, 0, ''); // line 26: blank, not a record
    const input = join(dir, 'addsub.jsonl');
    await writeFile(input, `${lines.join('\n')}\n`);
    const output = join(dir, 'addsub-out.jsonl');
    const summary = await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent });
    assert.equal(summary.records, 32);
    assert.equal(summary.failed, 2);
    const records = await readOutput(output);
    assert.equal(records.size, 32);
    assert.match(records.get(11)!.error!, /^malformed JSON/);
    assert.match(records.get(21)!.error!, /input 'INPUT0' expects INT32 \[1,16\]: 16 value\(s\), got 3/);
    assert.equal(records.has(26), false);
    // Line numbers of records n = 0..29 after the insertions above.
    const lineOf = (n: number) => n + 1 + (n >= 10 ? 1 : 0) + (n >= 19 ? 1 : 0) + (n >= 23 ? 1 : 0);
    for (let n = 0; n < 30; n++) await assertAddSub(records.get(lineOf(n))!, n);
  });

  test('a CSV file with columns named for the inputs; a row with the wrong number of fields is an error', async () => {
    const csv = addSubCsv(25);
    const input = join(dir, 'addsub.csv');
    await writeFile(input, `${csv.text}25,1 2 3\n`); // line 27: two fields where the header has three
    const output = join(dir, 'addsub-csv.jsonl');
    const summary = await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent });
    assert.equal(summary.records, 26);
    assert.equal(summary.failed, 1);
    const records = await readOutput(output);
    assert.equal(records.size, 26);
    assert.match(records.get(27)!.error!, /malformed CSV row: .*expect 3, got 2/);
    for (let n = 0; n < 25; n++) await assertAddSub(records.get(csv.lineOf(n))!, n);
  });

  test('a CSV with --csv-input: the numeric columns of a row form one input vector', async () => {
    const input = join(dir, 'scale.csv');
    await writeFile(input, 'name,a,b,c,d\nfirst,1,2,3,4\nsecond,0.5,-1,10,2\nthird,1,x,3,4\n');
    const output = join(dir, 'scale.jsonl');
    await runLocalBatchJob({ model: 'scale', input, output, csvInput: 'INPUT0', modelRepository: repo, progress: 'none', logger: silent });
    const records = await readOutput(output);
    assert.deepEqual(records.get(2)!.outputs, [{ name: 'OUTPUT0', datatype: 'FP32', shape: [1, 4], data: [2, 4, 6, 8] }]);
    assert.deepEqual(records.get(3)!.outputs![0].data, [1, -2, 20, 4]);
    assert.match(records.get(4)!.error!, /column 'b' is "x", not a number/);
  });

  test('resuming: a partial last line is cut off, done records are skipped, --retry-failed runs the failed ones again', async () => {
    const input = join(dir, 'resume.jsonl');
    await writeFile(input, `${Array.from({ length: 20 }, (_, n) => addSubJsonLine(n)).join('\n')}\n`);
    const output = join(dir, 'resume-out.jsonl');
    // A first run stopped early (aborted after its first group is written).
    const controller = new AbortController();
    const first = runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent, concurrency: 2, signal: controller.signal });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !((await stat(output).catch(() => undefined))?.size ?? 0)) await new Promise((resolve) => setTimeout(resolve, 2));
    controller.abort();
    const stopped = await first;
    assert.equal(stopped.interrupted, true);
    assert.ok(stopped.processed > 0 && stopped.processed < 20, `processed ${stopped.processed}`);
    // A crash mid-write: half a line, and a record written as failed.
    await appendFile(output, '{"id":5,"error":null,"outp');
    await assert.rejects(readOutput(output), 'the partial line makes the file unreadable as JSONL');
    const resumed = await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent });
    assert.equal(resumed.resumed, stopped.processed);
    assert.equal(resumed.processed, 20 - stopped.processed);
    let records = await readOutput(output);
    assert.equal(records.size, 20);
    for (let n = 0; n < 20; n++) await assertAddSub(records.get(n + 1)!, n);
    // Nothing left to do: a rerun writes nothing.
    const again = await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent });
    assert.equal(again.processed, 0);
    assert.equal(again.resumed, 20);
    // Mark one as failed by hand; --retry-failed runs it again, --restart runs everything.
    const text = (await readFile(output, 'utf8')).split('\n').filter((line) => !line.startsWith('{"id":7,'));
    await writeFile(output, `${text.filter(Boolean).join('\n')}\n{"id":7,"error":"transient"}\n`);
    const retried = await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent, retryFailed: true });
    assert.equal(retried.processed, 1);
    records = await readOutput(output);
    await assertAddSub(records.get(7)!, 6);
    const restarted = await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent, restart: true });
    assert.equal(restarted.processed, 20);
    assert.equal((await readOutput(output)).size, 20);
  });

  test("an output answered by another model version, or holding more records than the input, is another job's: refused, not resumed", async () => {
    const versioned = join(dir, 'versioned-repo');
    await writeBatchModels(versioned);
    await cp(join(versioned, 'addsub', '1'), join(versioned, 'addsub', '2'), { recursive: true });
    const input = join(dir, 'versions.jsonl');
    await writeFile(input, `${Array.from({ length: 6 }, (_, n) => addSubJsonLine(n)).join('\n')}\n`);
    const output = join(dir, 'versions-out.jsonl');
    // Version 1 is outside the default policy (latest 1 serves version 2), and is loaded for the job when named.
    const first = await runLocalBatchJob({ model: 'addsub', version: '1', input, output, modelRepository: versioned, progress: 'none', logger: silent });
    assert.equal(first.processed, 6);
    assert.ok([...(await readOutput(output)).values()].every((record) => record.model_version === '1'));
    await assert.rejects(
      runLocalBatchJob({ model: 'addsub', input, output, modelRepository: versioned, progress: 'none', logger: silent }),
      new RegExp(`${output.replace(/[/.]/g, '\\$&')} holds answers of addsub version 1, and this run answers with addsub version 2: choose another output, or restart: true to overwrite it, or version: '1' to go on with the version that answered it`),
    );
    // Naming the version that answered it goes on with it.
    assert.equal((await runLocalBatchJob({ model: 'addsub', version: '1', input, output, modelRepository: versioned, progress: 'none', logger: silent })).resumed, 6);
    await assert.rejects(
      runLocalBatchJob({ model: 'addsub', version: '7', input, output: join(dir, 'v7.jsonl'), modelRepository: versioned, progress: 'none', logger: silent }),
      /model 'addsub' has no version 7 in the repository \(its versions: 1, 2\)/,
    );
    await assert.rejects(access(join(dir, 'v7.jsonl')), 'a job that could not start leaves no empty output behind');
    const shorter = join(dir, 'versions-short.jsonl');
    await writeFile(shorter, `${addSubJsonLine(0)}\n`);
    await assert.rejects(
      runLocalBatchJob({ model: 'addsub', version: '1', input: shorter, output, modelRepository: versioned, progress: 'none', logger: silent }),
      /versions-out\.jsonl holds answers to records numbered by their line, and the input .*versions-short\.jsonl is not the .*versions\.jsonl it was written from, as it was \(it is \d+ bytes long, and was \d+\); .* If it is another job's input, choose another output;/,
    );
    const restarted = await runLocalBatchJob({ model: 'addsub', input: shorter, output, modelRepository: versioned, progress: 'none', logger: silent, restart: true });
    assert.equal(restarted.processed, 1);
  });

  test("an output holding a record the input does not have is another job's: refused with the id, never counted as done", async () => {
    const keyed = (keys: string[]) => `${keys.map((key, n) => JSON.stringify({ key, INPUT0: addSubValues(n).input0, INPUT1: addSubValues(n).input1 })).join('\n')}\n`;
    const run = (input: string, output: string, restart = false, retryFailed = false) =>
      runLocalBatchJob({ model: 'addsub', input, output, idColumn: 'key', modelRepository: repo, progress: 'none', logger: silent, restart, retryFailed });
    const first = join(dir, 'keys-ab.jsonl');
    await writeFile(first, keyed(['a', 'b']));
    const output = join(dir, 'keys-out.jsonl');
    assert.equal((await run(first, output)).processed, 2);
    const written = await readFile(output, 'utf8');
    const other = join(dir, 'keys-cdef.jsonl');
    await writeFile(other, keyed(['c', 'd', 'e', 'f']));
    await assert.rejects(
      run(other, output),
      /keys-out\.jsonl holds a record with id "a", which the input .*keys-cdef\.jsonl does not have \(2 of its 2 records are not the input's\): it is another job's output; choose another output, or restart: true to overwrite it/,
    );
    const overlapping = join(dir, 'keys-acd.jsonl');
    await writeFile(overlapping, keyed(['a', 'c', 'd']));
    await assert.rejects(run(overlapping, output), /holds a record with id "b", which the input .* does not have \(1 of its 2 records/);
    assert.equal(await readFile(output, 'utf8'), written, 'a refused job leaves the output as it was');
    // Nor does it first drop the failed lines (--retry-failed) or cut a partial last line of the other job's file.
    const untouched = `${written}{"id":"x","error":"failed in the other job"}\n{"id":"y","outp`;
    await writeFile(output, untouched);
    await assert.rejects(run(other, output, false, true), /holds a record with id "a"/);
    await assert.rejects(run(other, output), /holds a record with id "a"/);
    assert.equal(await readFile(output, 'utf8'), untouched, 'a refused job changes nothing in the output');
    await writeFile(output, written);
    // Line numbers and id-column values are different ids, though both print as 1.
    const numbered = join(dir, 'numbered-out.jsonl');
    await writeFile(numbered, '{"id":1,"error":"from a job whose ids were line numbers"}\n');
    await assert.rejects(run(join(dir, 'keys-ab.jsonl'), numbered), /holds a record with id 1, which the input/);
    const resumed = await run(overlapping, join(dir, 'keys-out.jsonl'), true);
    assert.deepEqual([resumed.resumed, resumed.processed, resumed.records], [0, 3, 3]);
    const larger = join(dir, 'keys-dcab.jsonl');
    await writeFile(larger, keyed(['d', 'c', 'a', 'b']));
    const rerun = await run(larger, output);
    assert.deepEqual([rerun.resumed, rerun.processed, rerun.records], [3, 1, 4], "an output whose records are all the input's resumes");
  });

  test('nereid batch killed with SIGKILL mid-run and run again: every image exactly once, all correct', async () => {
    const images = join(dir, 'many');
    const ids = await writeImageFolder(images, 1500, { subfolders: 4 });
    const output = join(dir, 'many.jsonl');
    // One record in flight, so the run lasts long enough to be killed in the middle.
    const args = [
      ...NEREID_COMMAND, 'batch', '--model', 'cnn', '--input', images, '--output', output,
      '--model-repository', repo, '--concurrency', '1', '--progress', 'lines',
    ];
    const first = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let firstStderr = '';
    first.stderr.on('data', (chunk) => (firstStderr += chunk));
    const firstExit = new Promise<NodeJS.Signals | number | null>((resolve) => first.once('exit', (code, signal) => resolve(signal ?? code)));
    const deadline = Date.now() + 20_000;
    let lines = 0;
    while (Date.now() < deadline) {
      lines = (await readFile(output, 'utf8').catch(() => '')).split('\n').length - 1;
      if (lines >= 100) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(lines >= 100, `the first run wrote ${lines} lines in 20 s: ${firstStderr}`);
    first.kill('SIGKILL');
    assert.equal(await firstExit, 'SIGKILL');
    const afterKill = (await readFile(output, 'utf8')).split('\n').length - 1;
    assert.ok(afterKill < ids.length, `the first run finished (${afterKill} lines) before it was killed`);

    const second = spawn(process.execPath, args.map((arg) => (arg === '1' ? '8' : arg)), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    second.stdout.on('data', (chunk) => (stdout += chunk));
    second.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => second.once('exit', resolve));
    assert.equal(code, 0, stderr);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as { resumed: number; processed: number; records: number; failed: number };
    assert.equal(summary.records, ids.length);
    assert.equal(summary.resumed, afterKill, 'every complete line is a record done');
    assert.equal(summary.resumed + summary.processed, ids.length);
    assert.equal(summary.failed, 0);
    assert.match(stderr, /done: \d+ record\(s\) in .* records\/s/);

    const records = await readOutput(output); // fails on any id written twice
    assert.deepEqual([...records.keys()].sort(), ids);
    // Every record against the Server API, in batches (the reference itself is batched here).
    for (let start = 0; start < ids.length; start += 8) {
      const group = ids.slice(start, start + 8);
      const bytes = await Promise.all(group.map((id) => readFile(join(images, id))));
      const response = await reference.infer({ model: 'cnn', inputs: [{ name: 'image', datatype: 'BYTES', shape: [group.length, 1], data: bytes }] });
      const probabilities = Array.from(response.outputs[0].data as Float32Array);
      group.forEach((id, row) => assertClassification(records.get(id)!, probabilities.slice(row * 10, row * 10 + 10)));
    }
  });
});
