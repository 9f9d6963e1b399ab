/**
 * What a rerun finds in an existing output before it resumes it: lines rewritten by other tools read as the lines
 * Nereid wrote, so that their failures and the model version that answered them are counted as they were; a rerun
 * that would answer the rest otherwise (other flags) is refused, through the library and through the CLI.
 */
import assert from 'node:assert/strict';
import { appendFile, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { runLocalBatchJob } from '../src/jobs/index.js';
// Messages name the CLI's flags here, as `nereid batch` has them: the job functions' own naming is tested in batch-local.
import { batchFlagName } from '../src/jobs/job-options.js';
import { runCli } from './support/cli-server.js';
import { addSubJsonLine, addSubValues, readOutput, writeBatchModels, writeImageFolder } from './support/batch-fixtures.js';

const silent = pino({ level: 'silent' });
let dir: string;
let repo: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nereid-batch-resume-'));
  repo = join(dir, 'repo');
  await writeBatchModels(repo);
  // Version 2 beside 1: the default policy (latest 1) serves 2, and 1 is loaded when named.
  await cp(join(repo, 'addsub', '1'), join(repo, 'addsub', '2'), { recursive: true });
});

after(() => rm(dir, { recursive: true, force: true }));

/** JSON as Python's json.dumps writes it: a space after each ':' and ','. */
function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  if (typeof value === 'object' && value !== null) return `{${Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${pythonJson(item)}`).join(', ')}}`;
  return JSON.stringify(value);
}

/** A logger that keeps the messages it is given at warn and above. */
function recordingLogger(): { logger: pino.Logger; messages: string[] } {
  const messages: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      messages.push((JSON.parse(chunk.toString()) as { msg: string }).msg);
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), messages };
}

const rewriteAsPython = async (path: string, keep: (record: { id: unknown }) => boolean = () => true) => {
  const records = (await readFile(path, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { id: unknown });
  await writeFile(path, records.filter(keep).map((record) => `${pythonJson(record)}\n`).join(''));
};

test('an output rewritten by another tool (json.dumps spacing) resumes as written: its failures and its model version are read from every line', async () => {
  const input = join(dir, 'python.jsonl');
  const lines = Array.from({ length: 6 }, (_, n) => addSubJsonLine(n));
  lines[2] = JSON.stringify({ INPUT0: [1, 2, 3], INPUT1: [4, 5, 6] }); // 3 values where 16 are expected
  await writeFile(input, `${lines.join('\n')}\n`);
  const output = join(dir, 'python-out.jsonl');
  const run = (options: { version?: string; retryFailed?: boolean } = {}) =>
    runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent, settingName: batchFlagName, ...options });
  const first = await run({ version: '1' });
  assert.deepEqual([first.processed, first.failed], [6, 1]);
  await rewriteAsPython(output);
  assert.match(await readFile(output, 'utf8'), /"error": null\}/);

  const again = await run({ version: '1' });
  assert.deepEqual([again.resumed, again.processed, again.failedTotal], [6, 0, 1], 'one record failed, not six');
  const retried = await run({ version: '1', retryFailed: true });
  assert.deepEqual([retried.resumed, retried.processed], [5, 1], '--retry-failed runs the failed record only');
  assert.equal((await readOutput(output)).size, 6);

  // Two lines dropped to run them again: the version guard reads the rewritten lines, and version 2 is refused.
  await rewriteAsPython(output, (record) => record.id !== 1 && record.id !== 2);
  await assert.rejects(run(), /python-out\.jsonl holds answers of addsub version 1, and this run answers with addsub version 2: .*--model-version 1 to go on/);
  const goOn = await run({ version: '1' });
  assert.deepEqual([goOn.resumed, goOn.processed], [4, 2]);
  assert.ok([...(await readOutput(output)).values()].every((record) => record.error !== null || record.model_version === '1'));
});

test('a rerun asking another --top-k is refused naming both values; --restart starts over; an output with no manifest is resumed with a warning', async () => {
  const images = join(dir, 'topk-images');
  await writeImageFolder(images, 3);
  const output = join(dir, 'topk.jsonl');
  const run = (options: { topK?: number; restart?: boolean; logger?: pino.Logger } = {}) =>
    runLocalBatchJob({ model: 'cnn', input: images, output, modelRepository: repo, progress: 'none', logger: silent, settingName: batchFlagName, ...options });
  assert.equal((await run()).processed, 3);
  const manifest = JSON.parse(await readFile(`${output}.job.json`, 'utf8')) as { answer_options: Record<string, unknown> };
  assert.deepEqual(manifest.answer_options, { '--model': 'cnn', '--top-k': null, '--csv-input': null, '--input-columns': null, '--id-column': null, '--pass-through': null });
  const before = await readFile(output, 'utf8');
  await assert.rejects(
    run({ topK: 1 }),
    (error: Error & { code?: string }) =>
      error.code === 'FAILED_PRECONDITION' &&
      /topk\.jsonl was written with --top-k not given, and this run asks --top-k 1: the 3 record\(s\) it holds were answered otherwise than this run would answer the rest\. Rerun with the options that wrote it \(.*topk\.jsonl\.job\.json lists them\), choose another --output, or --restart to overwrite it$/.test(error.message),
  );
  assert.equal(await readFile(output, 'utf8'), before, 'a refused rerun leaves the output as it was');
  const restarted = await run({ topK: 1, restart: true });
  assert.equal(restarted.processed, 3);
  assert.ok([...(await readOutput(output)).values()].every((record) => record.predictions!.length === 1));
  await assert.rejects(run(), /written with --top-k 1, and this run asks --top-k not given/);

  // An output written before manifests existed: resumed, with a warning, and recorded from then on.
  await rm(`${output}.job.json`);
  const { logger, messages } = recordingLogger();
  assert.equal((await run({ topK: 1, logger })).resumed, 3);
  assert.match(messages.join('\n'), /topk\.jsonl has no .*topk\.jsonl\.job\.json \(written by an older nereid, or removed\): whether its records were answered with this run's options, from this input as it is, cannot be checked/);
  await assert.rejects(run(), /written with --top-k 1/);
});

test('CLI: a first run whose every record failed, fixed by a flag, is refused with exit 2 naming the flag; the same command warns that nothing runs again; --retry-failed with the fix runs them', async () => {
  // 'sample' is numeric, so --csv-input takes it as a fifth feature of a model that takes four: every row fails.
  const input = join(dir, 'samples.csv');
  await writeFile(input, 'sample,a,b,c,d\n101,1,2,3,4\n102,5,6,7,8\n103,0,1,0,1\n');
  const output = join(dir, 'samples.jsonl');
  const args = ['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', output, '--csv-input', 'INPUT0', '--progress', 'none'];
  const first = await runCli(args, 120_000);
  assert.equal(first.code, 1, first.stderr);
  assert.ok([...(await readOutput(output)).values()].every((record) => /expects FP32 \[1,4\]: 4 value\(s\), got 5/.test(record.error ?? '')));

  const fixed = await runCli([...args, '--id-column', 'sample'], 120_000);
  assert.equal(fixed.code, 2, fixed.stderr);
  assert.match(fixed.stderr, /nereid: .*samples\.jsonl was written with --id-column not given, and this run asks --id-column sample: .*--restart to overwrite it; every record it holds is an error, so --retry-failed with this run's options runs them all again/);
  assert.equal(fixed.stdout, '', 'refused before it ran: no summary');

  const same = await runCli(args, 120_000);
  assert.match(same.stderr, /samples\.jsonl: all 3 record\(s\) it holds are errors, and a rerun skips the records its output holds, so none of them is run again; --retry-failed runs them again/);
  assert.equal(JSON.parse(same.stdout.trim().split('\n').at(-1)!).processed, 0);
  assert.equal(same.code, 1, 'every record of the job failed, though this run ran none');

  const retried = await runCli([...args, '--id-column', 'sample', '--retry-failed'], 120_000);
  assert.equal(retried.code, 0, retried.stderr);
  const records = await readOutput(output);
  assert.deepEqual([...records.keys()].sort(), ['101', '102', '103']);
  assert.deepEqual(records.get('102')!.outputs![0]!.data, [10, 12, 14, 16]);
});

test('records numbered by line: a rerun over an input edited before its end is refused (lines shifted, or changed in place at the same size); records appended resume', async () => {
  // The reviewer's case: line 2 is malformed; it is deleted and a corrected record appended, which shifts lines 3-5 up.
  const input = join(dir, 'shift.jsonl');
  const line = (n: number) => JSON.stringify({ INPUT0: addSubValues(n).input0, INPUT1: addSubValues(n).input1 });
  await writeFile(input, `${line(1)}\n{"INPUT0": [2,\n${line(3)}\n${line(4)}\n${line(5)}\n`);
  const output = join(dir, 'shift-out.jsonl');
  const run = (options: { retryFailed?: boolean; restart?: boolean } = {}) =>
    runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent, settingName: batchFlagName, ...options });
  assert.deepEqual([(await run()).processed, (await readOutput(output)).get(2)!.error !== null], [5, true]);
  const written = await readFile(output, 'utf8');
  await writeFile(input, `${[1, 3, 4, 5, 6].map(line).join('\n')}\n`);
  await assert.rejects(
    run({ retryFailed: true }),
    (error: Error & { code?: string }) =>
      error.code === 'FAILED_PRECONDITION' &&
      /shift-out\.jsonl holds answers to records numbered by their line, and the input .*shift\.jsonl changed since it was written \(its first \d+ bytes are not those the earlier run read\); other records would now have those numbers .* Give the records ids of their own \(--id-column, with --restart once\), or --restart to run them all again$/.test(error.message),
  );
  assert.equal(await readFile(output, 'utf8'), written, 'a refused rerun leaves the output as it was');
  // --restart runs the edited input afresh: record 5 is the one that holds 6.
  assert.equal((await run({ restart: true })).processed, 5);
  assert.deepEqual((await readOutput(output)).get(5)!.outputs![0]!.data, addSubValues(6).input0.map((value, i) => value + addSubValues(6).input1[i]!));

  // Records appended keep every earlier line's number: the rerun runs only them.
  await appendFile(input, `${line(7)}\n${line(8)}\n`);
  const grown = await run();
  assert.deepEqual([grown.resumed, grown.processed], [5, 2]);

  // A digit changed in place keeps the file's size and every line's number, but not the record's values.
  const text = await readFile(input, 'utf8');
  await writeFile(input, text.replace('{"INPUT0":[48,', '{"INPUT0":[49,')); // record 2 holds 3: 3 × 16 = 48
  assert.notEqual(await readFile(input, 'utf8'), text);
  assert.equal((await readFile(input)).length, Buffer.byteLength(text));
  await assert.rejects(run(), /changed since it was written \(its first \d+ bytes are not those the earlier run read\)/);
  await writeFile(input, text);
  assert.equal((await run()).processed, 0, 'the input as it was resumes');
});

test('a CSV whose last line had no newline: appending records after a newline resumes; extending that line is refused; another file in its place is named', async () => {
  const input = join(dir, 'tail.csv');
  await writeFile(input, 'a,b,c,d\n1,2,3,4\n5,6,7,8');
  const output = join(dir, 'tail-out.jsonl');
  const run = (path = input) => runLocalBatchJob({ model: 'scale', input: path, output, csvInput: 'INPUT0', modelRepository: repo, progress: 'none', logger: silent });
  assert.equal((await run()).processed, 2);
  await appendFile(input, '0');
  await assert.rejects(run(), /changed since it was written \(its last line, which had no newline, goes on\)/);
  await writeFile(input, 'a,b,c,d\n1,2,3,4\n5,6,7,8\n9,9,9,9\n');
  assert.deepEqual([(await run()).resumed, (await readOutput(output)).get(4)!.outputs![0]!.data], [2, [18, 18, 18, 18]]);
  const other = join(dir, 'tail-other.csv');
  await writeFile(other, 'a,b,c,d\n1,2,3,4\n');
  await assert.rejects(run(other), /and the input .*tail-other\.csv is not the .*tail\.csv it was written from, as it was \(it is 16 bytes long, and was 32\)/);
});

test('CLI: "every record failed" (exit 1) is judged on the job: the same command over all-bad data exits 1 each time; a resumed job whose last records are its only bad ones exits 0', async () => {
  const bad = join(dir, 'all-bad.jsonl');
  await writeFile(bad, '{"WRONG":[1,2,3,4]}\n{"WRONG":[5,6,7,8]}\n');
  const args = (input: string, output: string) => ['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', output, '--progress', 'none'];
  const summaryOf = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!) as { resumed: number; processed: number; failedTotal: number; error?: { code: string } };
  const badOut = join(dir, 'all-bad-out.jsonl');
  for (const [run, expected] of [['first', { resumed: 0, processed: 2 }], ['rerun', { resumed: 2, processed: 0 }]] as const) {
    const result = await runCli(args(bad, badOut), 120_000);
    assert.equal(result.code, 1, `${run}: ${result.stderr}`);
    assert.match(result.stderr, /nereid batch: every record of the job failed \(2\); exiting 1 \(--allow-all-failed exits 0\)/);
    const summary = summaryOf(result.stdout);
    assert.deepEqual([summary.resumed, summary.processed, summary.failedTotal, summary.error?.code], [expected.resumed, expected.processed, 2, 'ALL_RECORDS_FAILED'], run);
  }

  const tail = join(dir, 'good-then-bad.jsonl');
  await writeFile(tail, '{"INPUT0":[1,2,3,4]}\n{"INPUT0":[5,6,7,8]}\n');
  const tailOut = join(dir, 'good-then-bad-out.jsonl');
  assert.equal((await runCli(args(tail, tailOut), 120_000)).code, 0);
  await appendFile(tail, '{"WRONG":[0,0,0,0]}\n');
  const resumed = await runCli(args(tail, tailOut), 120_000);
  assert.equal(resumed.code, 0, resumed.stderr);
  const summary = summaryOf(resumed.stdout);
  assert.deepEqual([summary.resumed, summary.processed, summary.failedTotal, summary.error], [2, 1, 1, undefined], 'the run\'s only record failed, the job\'s others did not');
});
