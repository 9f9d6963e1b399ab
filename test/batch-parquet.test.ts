/**
 * Batch jobs over Parquet and gzipped text, with real models: Fashion-MNIST test images in the layout Hugging Face
 * datasets write (an image struct {bytes, path} and a label) answered by the bundled fashion_mnist exactly as the same
 * PNGs in a folder are, through an interruption and a resume; numeric Parquet columns answered as the same JSONL
 * records are; wrong column types and mismatched models refused before any record runs; gzipped JSONL and CSV as
 * the plain files, and one cut short refused naming the file and the byte, the output kept.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import sharp from 'sharp';
import type { NereidError } from '../src/core/errors.js';
import { runLocalBatchJob } from '../src/jobs/index.js';
import { JOB_MONITORING } from '../src/jobs/job-options.js';
import { BUNDLED_REPOSITORY } from '../src/repository/bundled-repository.js';
import { createCommandServer } from '../src/server/create-server.js';
import type { Server } from '../src/server/server.js';
import { addSubCsv, addSubJsonLine, addSubValues, readOutput, writeBatchModels } from './support/batch-fixtures.js';
import { readFashionMnist } from './support/fashion-mnist.js';
import { HF_IMAGE_SCHEMA, schemaOf, writeParquet } from './support/parquet-fixtures.js';

const COUNT = 300;
const silent = pino({ level: 'silent' });
let dir: string;
let repo: string;
let labels: number[];
/** The same Fashion-MNIST test images as PNG files in a folder and as rows of a Parquet file. */
let folder: string;
let parquet: string;
/** The bundled fashion_mnist, loaded once for the jobs that compare its answers (a job loads it itself otherwise). */
let fashionMnist: Server;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nereid-batch-parquet-'));
  repo = join(dir, 'repo');
  await writeBatchModels(repo);
  const loading = createCommandServer({ modelRepository: BUNDLED_REPOSITORY, loadModels: ['fashion_mnist'], monitoring: JOB_MONITORING, logger: silent }).then((server) => server.start());
  const dataset = await readFashionMnist('t10k', COUNT);
  labels = dataset.labels;
  const pngs = await Promise.all(dataset.pixels.map((pixels) => sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer()));
  folder = join(dir, 'fashion-mnist');
  await mkdir(folder);
  await Promise.all(pngs.map((png, index) => writeFile(join(folder, `${index}.png`), png)));
  // Several row groups, as a dataset of any size has: the job reads one at a time.
  parquet = await writeParquet(
    join(dir, 'test-00000-of-00001.parquet'),
    [
      { name: 'image', data: pngs.map((png, index) => ({ bytes: new Uint8Array(png), path: `${index}.png` })) },
      { name: 'label', data: labels.map(BigInt) },
    ],
    { schema: HF_IMAGE_SCHEMA, rowGroupSize: 64 },
  );
  fashionMnist = await loading;
});

after(async () => {
  await fashionMnist?.close();
  await rm(dir, { recursive: true, force: true });
});

const lineCount = async (path: string) => (await readFile(path, 'utf8').catch(() => '')).split('\n').length - 1;

test('Fashion-MNIST in the Hugging Face Parquet layout: interrupted and resumed, every row answered once, as the same PNG in a folder is, with the same accuracy', async () => {
  const folderOutput = join(dir, 'folder.jsonl');
  await runLocalBatchJob({ model: 'fashion_mnist', input: folder, output: folderOutput, server: fashionMnist, progress: 'none', logger: silent });

  const output = join(dir, 'parquet.jsonl');
  const job = { model: 'fashion_mnist', input: parquet, output, server: fashionMnist, passThrough: ['label'], progress: 'none' as const, logger: silent };
  const interrupt = new AbortController();
  // Interrupted once its first records are written, as Ctrl-C would: those in flight are written, the rest wait for the rerun.
  const watching = (async () => {
    while (!interrupt.signal.aborted && (await lineCount(output)) === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    interrupt.abort();
  })();
  const first = await runLocalBatchJob({ ...job, concurrency: 8, signal: interrupt.signal });
  interrupt.abort();
  await watching;
  assert.equal(first.interrupted, true);
  assert.ok(first.processed > 0 && first.processed < COUNT, `the first run stopped part way (${first.processed} of ${COUNT})`);
  const second = await runLocalBatchJob(job);
  assert.equal(second.resumed, first.processed);
  assert.equal(second.processed, COUNT - first.processed);

  const fromFolder = await readOutput(folderOutput);
  const fromParquet = await readOutput(output);
  assert.equal(fromParquet.size, COUNT, 'every row once');
  let correct = 0;
  for (let index = 0; index < COUNT; index++) {
    const row = fromParquet.get(index)!;
    const file = fromFolder.get(`${index}.png`)!;
    assert.equal(row.error, null, `row ${index}: ${row.error}`);
    assert.deepEqual(row.pass_through, { label: labels[index] }, 'the int64 label is carried as a number');
    assert.deepEqual(row.predictions!.map((prediction) => prediction.index), file.predictions!.map((prediction) => prediction.index), `row ${index}: the classes ${index}.png gets`);
    row.predictions!.forEach((prediction, rank) => assert.ok(Math.abs(prediction.score - file.predictions![rank]!.score) < 1e-5, `row ${index}: score of class ${prediction.index}`));
    if (row.predictions![0]!.index === labels[index]) correct += 1;
  }
  // The model's test accuracy is 91.86 %; a few hundred images land near it.
  assert.ok(correct / COUNT > 0.85, `accuracy ${correct}/${COUNT}`);
});

/** Records n = 0 … count-1 of add/sub as Parquet rows: an id, the two inputs as lists of int32, a label. */
async function addSubParquet(path: string, count: number, input1Type = 'LIST<INT32>', input1?: unknown[]): Promise<string> {
  const rows = Array.from({ length: count }, (_, n) => addSubValues(n));
  return writeParquet(
    path,
    [
      { name: 'id', data: rows.map((_, n) => `r${n}`) },
      { name: 'INPUT0', data: rows.map((row) => row.input0) },
      { name: 'INPUT1', data: input1 ?? rows.map((row) => row.input1) },
      { name: 'label', data: rows.map((_, n) => BigInt(n)) },
    ],
    { schema: schemaOf({ id: 'STRING', INPUT0: 'LIST<INT32>', INPUT1: input1Type, label: 'INT64' }), rowGroupSize: 8 },
  );
}

test('numeric Parquet columns: list columns are the tensors, answered as the same records in JSONL; the id and label columns name and follow each line', async () => {
  const count = 20;
  const input = await addSubParquet(join(dir, 'addsub.parquet'), count);
  const jsonl = join(dir, 'addsub.jsonl');
  await writeFile(jsonl, Array.from({ length: count }, (_, n) => addSubJsonLine(n)).join('\n') + '\n');
  const output = join(dir, 'addsub-parquet.jsonl');
  const jsonlOutput = join(dir, 'addsub-jsonl.jsonl');
  await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, idColumn: 'id', passThrough: ['label'], progress: 'none', logger: silent });
  await runLocalBatchJob({ model: 'addsub', input: jsonl, output: jsonlOutput, modelRepository: repo, progress: 'none', logger: silent });
  const fromParquet = await readOutput(output);
  const fromJsonl = await readOutput(jsonlOutput);
  for (let n = 0; n < count; n++) {
    const row = fromParquet.get(`r${n}`)!;
    assert.equal(row.error, null, `row r${n}: ${row.error}`);
    assert.deepEqual(row.pass_through, { label: n });
    assert.deepEqual(row.outputs, fromJsonl.get(n + 1)!.outputs, `row r${n} answered as line ${n + 1} of the JSONL`);
    const { input0, input1 } = addSubValues(n);
    assert.deepEqual(row.outputs![0]!.data, input0.map((value, index) => value + input1[index]!));
  }
});

test('what a Parquet file and the model make certain to fail is refused before any record runs: a column of a type no input takes, images for a tensor model, no images for an image model', async () => {
  const refused = async (model: string, input: string, code: string, pattern: RegExp) => {
    const output = join(dir, `refused-${model}.jsonl`);
    await assert.rejects(runLocalBatchJob({ model, input, output, modelRepository: repo, progress: 'none', logger: silent }), (error: NereidError) => {
      assert.equal(error.code, code);
      assert.match(error.message, pattern);
      return true;
    });
    await assert.rejects(stat(output), 'no output is left behind');
  };
  const dated = await addSubParquet(join(dir, 'dated.parquet'), 2, 'TIMESTAMP_MILLIS', [new Date(0), new Date(1)]);
  await refused('addsub', dated, 'INVALID_ARGUMENT', /^column 'INPUT1' of .*dated\.parquet is TIMESTAMP_MILLIS, which no model input takes: input columns hold numbers, lists of numbers \(a tensor\), text, or encoded images/);
  await refused('addsub', parquet, 'FAILED_PRECONDITION', /^model 'addsub' does not take images, and column 'image' of .*\.parquet holds encoded images: name the columns that are the model's inputs \(INPUT0, INPUT1\) with inputColumns/);
  await refused('cnn', dated, 'INVALID_ARGUMENT', /^model 'cnn' takes images, and .*dated\.parquet has no column of them among its input columns \(its columns: id STRING, INPUT0 LIST<INT32>, INPUT1 TIMESTAMP_MILLIS, label INT64\): an image column holds encoded images/);
});

test('gzipped JSONL and CSV are answered as the plain files; one cut short is refused naming the file and the byte, and the output keeps its records', async () => {
  const count = 12;
  const jsonlText = Array.from({ length: count }, (_, n) => addSubJsonLine(n)).join('\n') + '\n';
  const csvText = addSubCsv(count).text;
  const answers = async (name: string, content: string | Buffer) => {
    const input = join(dir, name);
    await writeFile(input, content);
    const output = join(dir, `${name}.out.jsonl`);
    await runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent });
    return { input, output, records: await readOutput(output) };
  };
  const plainJsonl = await answers('rows.jsonl', jsonlText);
  const packedJsonl = await answers('rows.jsonl.gz', gzipSync(jsonlText));
  assert.deepEqual([...packedJsonl.records].sort(), [...plainJsonl.records].sort());
  const plainCsv = await answers('rows.csv', csvText);
  const packedCsv = await answers('rows.csv.gz', gzipSync(csvText));
  assert.deepEqual([...packedCsv.records].sort(), [...plainCsv.records].sort());
  assert.equal(packedCsv.records.size, count);

  // The same file, cut short by an interrupted download: the rerun reads it and stops, naming where it ends.
  const whole = await readFile(packedJsonl.input);
  const cut = whole.length - 30;
  await writeFile(packedJsonl.input, whole.subarray(0, cut));
  const before = await readFile(packedJsonl.output, 'utf8');
  await assert.rejects(runLocalBatchJob({ model: 'addsub', input: packedJsonl.input, output: packedJsonl.output, modelRepository: repo, progress: 'none', logger: silent }), (error: NereidError) => {
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, new RegExp(`^input .*rows\\.jsonl\\.gz is not a whole gzip file: it ends in the middle of its compressed data at byte ${cut} of ${cut}, after \\d+ byte\\(s\\) of text`));
    return true;
  });
  assert.equal(await readFile(packedJsonl.output, 'utf8'), before, 'the records written are kept');
});
