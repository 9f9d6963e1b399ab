/**
 * What a rerun finds in an existing output before it resumes it: lines rewritten by other tools read as the lines
 * Nereid wrote, so that their failures and the model version that answered them are counted as they were.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { runLocalBatchJob } from '../src/jobs/index.js';
import { addSubJsonLine, readOutput, writeBatchModels } from './support/batch-fixtures.js';

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
    runLocalBatchJob({ model: 'addsub', input, output, modelRepository: repo, progress: 'none', logger: silent, ...options });
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
