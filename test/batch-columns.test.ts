/**
 * Choosing what of a CSV row or JSONL object is input, id and pass-through: ids and labels travel
 * from the input to the output lines (locally and through the CLI), are never taken as features,
 * and repeated or missing ids and unknown column names are refused with what was expected.
 */
import assert from 'node:assert/strict';
import { access, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import type { NereidError } from '../src/core/errors.js';
import { runLocalBatchJob } from '../src/jobs/index.js';
import { addSubModel, identityModel, scaleModel, writeModel } from '../src/onnx/test-models.js';
import { ADDSUB_CONFIG } from './support/batch-fixtures.js';
import { runCli, spawnCli } from './support/cli-server.js';

const silent = pino({ level: 'silent' });

async function workspace(): Promise<{ dir: string; repo: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-columns-'));
  const repo = join(dir, 'repo');
  await writeModel(repo, 'scale', 1, scaleModel(2));
  return { dir, repo };
}

type Line = { id: string | number; pass_through?: Record<string, unknown>; outputs?: { data: number[] }[]; error: string | null };

const linesOf = async (path: string): Promise<Line[]> => (await readFile(path, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Line);

test('a CSV with a numeric id column and a label: the id names each output line, the label is carried through, neither is a feature', async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'rows.csv');
  await writeFile(input, 'sample,a,b,c,d,label\n101,1,2,3,4,cat\n102,5,6,7,8,dog\n103,x,6,7,8,dog\n101,0,0,0,0,cat\n');
  const output = join(dir, 'out.jsonl');
  const summary = await runLocalBatchJob({ model: 'scale', input, output, modelRepository: repo, csvInput: 'INPUT0', idColumn: 'sample', passThrough: ['label'], progress: 'none', logger: silent });
  assert.equal(summary.processed, 4);
  // Lines are written as records finish; each is found by its id.
  const byId = new Map((await linesOf(output)).map((line) => [line.id, line]));
  assert.deepEqual([...byId.keys()].sort(), [5, '101', '102', '103'].sort(), 'ids from the column; a repeated id keeps its line number');
  assert.deepEqual(byId.get('101')!.outputs![0]!.data, [2, 4, 6, 8], 'four features: the id and the label are not among them');
  assert.deepEqual(byId.get('102')!.pass_through, { label: 'dog' });
  assert.match(byId.get('103')!.error!, /column 'a' is "x", not a number/);
  assert.deepEqual(byId.get('103')!.pass_through, { label: 'dog' }, 'a failed record still carries its label');
  assert.match(byId.get(5)!.error!, /id "101" \(column 'sample'\) was already used on line 2; ids must be unique/);
});

test('--csv-input naming no input of the model is refused before any record runs, with the inputs it has', async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'rows.csv');
  await writeFile(input, 'a,b,c,d\n1,2,3,4\n');
  const output = join(dir, 'never.jsonl');
  await assert.rejects(
    runLocalBatchJob({ model: 'scale', input, output, modelRepository: repo, csvInput: 'NOPE', progress: 'none', logger: silent }),
    (error: NereidError) => error.code === 'INVALID_ARGUMENT' && /^csvInput: 'NOPE': model 'scale' has no such input; its inputs: INPUT0$/.test(error.message),
  );
  assert.equal(await readFile(output, 'utf8').catch(() => ''), '', 'no record was written');
});

test('--csv-input leaves out columns named id and label even when their cells are numbers and no flag names them', async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'rows.csv');
  await writeFile(input, 'ID,a,b,c,d,Label\n7,1,2,3,4,3\n8,5,6,7,8,0\n');
  const output = join(dir, 'out.jsonl');
  const summary = await runLocalBatchJob({ model: 'scale', input, output, modelRepository: repo, csvInput: 'INPUT0', progress: 'none', logger: silent });
  assert.equal(summary.failed, 0, await readFile(output, 'utf8'));
  const byId = new Map((await linesOf(output)).map((line) => [line.id, line]));
  assert.deepEqual(byId.get(2)!.outputs![0]!.data, [2, 4, 6, 8], 'four features: a numeric id and a class index are not among them');
  assert.deepEqual(byId.get(3)!.outputs![0]!.data, [10, 12, 14, 16]);
  await runLocalBatchJob({ model: 'scale', input, output: join(dir, 'chosen.jsonl'), modelRepository: repo, csvInput: 'INPUT0', inputColumns: ['b', 'c', 'd', 'Label'], progress: 'none', logger: silent });
  assert.deepEqual((await linesOf(join(dir, 'chosen.jsonl')))[0]!.outputs![0]!.data, [4, 6, 8, 6], '--input-columns may still name the label');
});

test('--input-columns picks and orders the features; a column the header lacks stops the job with the header named', async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'rows.csv');
  await writeFile(input, 'd,c,b,a,noise\n4,3,2,1,99\n');
  const output = join(dir, 'out.jsonl');
  await runLocalBatchJob({ model: 'scale', input, output, modelRepository: repo, csvInput: 'INPUT0', inputColumns: ['a', 'b', 'c', 'd'], progress: 'none', logger: silent });
  assert.deepEqual((await linesOf(output))[0]!.outputs![0]!.data, [2, 4, 6, 8]);
  await assert.rejects(
    runLocalBatchJob({ model: 'scale', input, output: join(dir, 'other.jsonl'), modelRepository: repo, csvInput: 'INPUT0', idColumn: 'sample', progress: 'none', logger: silent }),
    /idColumn names column 'sample', which the CSV header does not have \(columns: d, c, b, a, noise\)/,
  );
});

test('JSONL objects through the CLI: --id-column and --pass-through take fields out of the inputs and into the output', async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'rows.jsonl');
  await writeFile(input, '{"key":"first","INPUT0":[1,1,1,1],"label":3}\n{"key":"second","INPUT0":[2,2,2,2],"label":7}\n');
  const output = join(dir, 'out.jsonl');
  const run = await runCli(['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', output, '--id-column', 'key', '--pass-through', 'label', '--progress', 'none'], 120_000);
  assert.equal(run.code, 0, run.stderr);
  const lines = (await linesOf(output)).sort((a, b) => String(a.id).localeCompare(String(b.id)));
  assert.deepEqual(lines.map((line) => [line.id, line.pass_through, line.outputs![0]!.data]), [
    ['first', { label: 3 }, [2, 2, 2, 2]],
    ['second', { label: 7 }, [4, 4, 4, 4]],
  ]);
});

test('INT64 beyond 2^53 in JSONL named fields, a CSV JSON-array cell and a JSONL id field stays exact, as in the V2 form', async () => {
  const { dir, repo } = await workspace();
  await writeModel(repo, 'ident64', 1, identityModel('int64', ['batch', 4]));
  const run = async (name: string, text: string, options: { idColumn?: string; passThrough?: string[] } = {}) => {
    const input = join(dir, name);
    await writeFile(input, text);
    const output = `${input}.out.jsonl`;
    await runLocalBatchJob({ model: 'ident64', input, output, modelRepository: repo, progress: 'none', logger: silent, ...options });
    // Read as text: JSON.parse would round the very digits under test.
    return (await readFile(output, 'utf8')).trim().split('\n').sort();
  };
  assert.deepEqual(await run('fields.jsonl', '{"INPUT0":[9007199254740993,1,2,3]}\n{"INPUT0":[9223372036854775807,-9223372036854775808,2,3]}\n'), [
    '{"id":1,"model_name":"ident64","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"INT64","shape":[1,4],"data":[9007199254740993,1,2,3]}],"error":null}',
    '{"id":2,"model_name":"ident64","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"INT64","shape":[1,4],"data":[9223372036854775807,-9223372036854775808,2,3]}],"error":null}',
  ]);
  assert.deepEqual(await run('cells.csv', 'INPUT0\n"[9007199254740993,1,2,3]"\n'), [
    '{"id":2,"model_name":"ident64","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"INT64","shape":[1,4],"data":[9007199254740993,1,2,3]}],"error":null}',
  ]);
  // Two ids that differ only past 2^53 stay two ids; a carried integer that large keeps its digits (as a string: queued chunks are plain JSON).
  const split = '{"key":12345678901234567891,"big":9007199254740993,"INPUT0":[9007199254740993,1,2,3]}\n{"key":12345678901234567892,"big":1,"INPUT0":[1,2,3,4]}\n';
  assert.deepEqual(await run('split.jsonl', split, { idColumn: 'key', passThrough: ['big'] }), [
    '{"id":"12345678901234567891","pass_through":{"big":"9007199254740993"},"model_name":"ident64","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"INT64","shape":[1,4],"data":[9007199254740993,1,2,3]}],"error":null}',
    '{"id":"12345678901234567892","pass_through":{"big":1},"model_name":"ident64","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"INT64","shape":[1,4],"data":[1,2,3,4]}],"error":null}',
  ]);
});

test('what the CSV header or the model makes certain to fail is refused before any record runs: no column for an input, --csv-input on a model of two inputs', async () => {
  const { dir, repo } = await workspace();
  await writeModel(repo, 'addsub', 1, addSubModel(), undefined, { 'config.yaml': ADDSUB_CONFIG });
  const refused = async (model: string, csv: string, options: { csvInput?: string; inputColumns?: string[]; idColumn?: string }, message: RegExp) => {
    const input = join(dir, `${model}-${Object.keys(options).join('-') || 'plain'}.csv`);
    await writeFile(input, csv);
    const output = `${input}.out.jsonl`;
    await assert.rejects(
      runLocalBatchJob({ model, input, output, modelRepository: repo, progress: 'none', logger: silent, ...options }),
      (error: NereidError) => error.code === 'INVALID_ARGUMENT' && message.test(error.message),
    );
    await assert.rejects(access(output), 'no output is left behind');
    await assert.rejects(access(`${output}.job.json`), 'nor its manifest');
  };
  // As the tensor example's table.csv without --csv-input: every row would fail alone with the same missing input.
  await refused('scale', 'id,a,b,c,d,label\n1,1,2,3,4,0\n', {}, /scale-plain\.csv has no column for the model's input INPUT0 \(its input columns: id, a, b, c, d, label; model 'scale' takes INPUT0\): name a column after each input \(or NAME\.0, NAME\.1, … one per element\), or csvInput: 'INPUT0' to form it of every numeric column$/);
  await refused('addsub', 'INPUT0,other\n1 2,3\n', {}, /has no column for the model's input INPUT1 \(its input columns: INPUT0, other; model 'addsub' takes INPUT0, INPUT1\): name a column after each input \(or NAME\.0, NAME\.1, … one per element\)$/);
  await refused('addsub', 'INPUT0,INPUT1,key\n1,2,k\n', { inputColumns: ['INPUT0', 'key'] }, /has no column for the model's input INPUT1 \(its input columns: INPUT0, key;/);
  await refused('addsub', 'a,b\n1,2\n', { csvInput: 'INPUT0' }, /^csvInput: 'INPUT0' forms one input of every numeric column, and model 'addsub' also needs INPUT1 \(its inputs: INPUT0, INPUT1\): leave csvInput out and name a column after each input/);
  // A column per element (NAME.0, NAME.1, …) covers its input.
  const wide = join(dir, 'wide.csv');
  await writeFile(wide, 'INPUT0.0,INPUT0.1,INPUT0.2,INPUT0.3\n1,2,3,4\n');
  await runLocalBatchJob({ model: 'scale', input: wide, output: join(dir, 'wide.jsonl'), modelRepository: repo, progress: 'none', logger: silent });
  assert.deepEqual((await linesOf(join(dir, 'wide.jsonl')))[0]!.outputs![0]!.data, [2, 4, 6, 8]);
});

test("JSONL --id-column: a line without the field says it has no such field; one whose value is null or blank says it is empty", async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'ids.jsonl');
  await writeFile(input, '{"key":"a","INPUT0":[1,1,1,1]}\n{"INPUT0":[2,2,2,2]}\n{"key":null,"INPUT0":[3,3,3,3]}\n{"key":" ","INPUT0":[3,3,3,3]}\n');
  const output = join(dir, 'ids-out.jsonl');
  await runLocalBatchJob({ model: 'scale', input, output, modelRepository: repo, idColumn: 'key', progress: 'none', logger: silent });
  const byId = new Map((await linesOf(output)).map((line) => [line.id, line]));
  assert.equal(byId.get('a')!.error, null);
  assert.equal(byId.get(2)!.error, "the line has no field 'key' (idColumn)");
  assert.equal(byId.get(3)!.error, "the id column 'key' is empty");
  assert.equal(byId.get(4)!.error, "the id column 'key' is empty");
});

test('--output - writes the answers to stdout and the summary to stderr, saying it cannot be resumed; an output in a folder that does not exist is refused', async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'rows.jsonl');
  await writeFile(input, '{"INPUT0":[1,1,1,1]}\n{"INPUT0":[2,2,2,2]}\n');
  const run = await runCli(['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', '-', '--progress', 'none'], 120_000);
  assert.equal(run.code, 0, run.stderr);
  const answers = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { id: number; outputs: { data: number[] }[] });
  assert.deepEqual(answers.map((answer) => [answer.id, answer.outputs[0]!.data]).sort(), [[1, [2, 2, 2, 2]], [2, [4, 4, 4, 4]]]);
  assert.match(run.stderr, /--output -: the answers go to stdout as they complete; a run stopped early cannot be resumed/);
  assert.equal((JSON.parse(run.stderr.trim().split('\n').at(-1)!) as { processed: number }).processed, 2, 'the summary line on stderr');
  await assert.rejects(access(join(dir, '-')), 'no file named -');

  // With --json a failure goes to stderr too: on stdout it would read as one more record.
  const refusedJson = await runCli(['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', '-', '--retry-failed', '--json', '--progress', 'none'], 120_000);
  assert.equal(refusedJson.code, 2, refusedJson.stderr);
  assert.equal(refusedJson.stdout, '');
  assert.equal((JSON.parse(refusedJson.stderr.trim().split('\n').at(-1)!) as { error: { code: string } }).error.code, 'INVALID_ARGUMENT');

  const missing = join(dir, 'no-such-folder', 'out.jsonl');
  const refused = await runCli(['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', missing, '--progress', 'none'], 120_000);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /--output .*out\.jsonl: the folder .*no-such-folder does not exist; create it first/);
  await assert.rejects(access(join(dir, 'no-such-folder')), 'the folder is not made');
});

test('--output - read by a reader that stops early (| head): the job ends quietly with 141, as a tool that SIGPIPE ends', async () => {
  const { dir, repo } = await workspace();
  const input = join(dir, 'many.jsonl');
  await writeFile(input, `${Array.from({ length: 3000 }, (_, n) => JSON.stringify({ INPUT0: [n, 1, 1, 1] })).join('\n')}\n`);
  const child = spawnCli(['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', '-', '--progress', 'none']);
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // As head does: one line read, then its end of the pipe closed.
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  child.stdout!.destroy();
  assert.equal(await exited, 141, stderr);
  assert.doesNotMatch(stderr, /EPIPE|\n\s+at /, 'no stack');
});
