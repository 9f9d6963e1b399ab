/**
 * How the batch commands end, for scripts: the exit status tells a command that cannot be done as given (2) from one
 * that could not reach Redis (3) and from a job that ran but is not complete (1); with --json a failure is one JSON
 * object on stdout, `{"error": {"code", "message"}}`, and a job's summary says why it is not complete. Real processes
 * against a real redis-server (and one address where nothing listens).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { cancelBatchJob } from '../src/jobs/index.js';
import { writeBatchModels } from './support/batch-fixtures.js';
import { runCli, spawnCli } from './support/cli-server.js';
import { freePort, startRedisServer, type RedisTestServer } from './support/redis-server.js';

let dir: string;
let repo: string;
let input: string;
let redis: RedisTestServer;
let queueUrl: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nereid-batch-cli-exit-'));
  repo = join(dir, 'repo');
  await writeBatchModels(repo);
  input = join(dir, 'in.jsonl');
  await writeFile(input, `${Array.from({ length: 4 }, (_, n) => JSON.stringify({ INPUT0: [n, 1, 2, 3] })).join('\n')}\n`);
  redis = await startRedisServer();
  queueUrl = `redis://127.0.0.1:${redis.port}`;
});

after(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the commands, `limit` at a time (each is a Node process compiling the CLI). */
async function runAll(commands: string[][], limit = 4) {
  const results: Awaited<ReturnType<typeof runCli>>[] = [];
  for (let start = 0; start < commands.length; start += limit) results.push(...(await Promise.all(commands.slice(start, start + limit).map((args) => runCli(args, 60_000)))));
  return results;
}

test('with --json a failure is one {"error": {code, message}} on stdout, and the exit status tells usage (2) from Redis unreachable (3)', { timeout: 180_000 }, async () => {
  const nowhere = `redis://127.0.0.1:${await freePort()}`;
  const submit = ['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', join(dir, 'never.jsonl'), '--progress', 'none'];
  const cases: { args: string[]; exit: number; code: string; message: RegExp }[] = [
    { args: ['batch', 'status', '--queue', nowhere, '--job', 'j'], exit: 3, code: 'UNAVAILABLE', message: /^cannot reach Redis at 127\.0\.0\.1:\d+/ },
    { args: ['batch', 'cancel', '--queue', nowhere, '--job', 'j'], exit: 3, code: 'UNAVAILABLE', message: /^cannot reach Redis at/ },
    { args: [...submit, '--queue', nowhere], exit: 3, code: 'UNAVAILABLE', message: /^cannot reach Redis at/ },
    // A name no repository can hold is refused by the submitter itself, before Redis is asked.
    { args: [...submit.map((arg) => (arg === 'scale' ? '../scale' : arg)), '--queue', nowhere], exit: 2, code: 'INVALID_ARGUMENT', message: /^invalid model name '\.\.\/scale'/ },
    { args: ['batch', 'status', '--queue', queueUrl, '--job', 'nope'], exit: 2, code: 'NOT_FOUND', message: /^no batch job 'nope' on queue 'nereid-batch'/ },
    { args: ['batch', 'cancel', '--queue', queueUrl, '--job', 'nope'], exit: 2, code: 'NOT_FOUND', message: /^no batch job 'nope'/ },
    { args: ['batch', 'status', '--queue', queueUrl, '--job', 'bad name'], exit: 2, code: 'INVALID_ARGUMENT', message: /^job name 'bad name' may use only/ },
    { args: ['batch', 'status', '--queue', queueUrl, '--jobs', 'j'], exit: 2, code: 'INVALID_ARGUMENT', message: /^unknown option '--jobs'/ },
    { args: ['batch', 'cancel', '--job', 'j'], exit: 2, code: 'INVALID_ARGUMENT', message: /^required option '--queue <url>' not specified/ },
    { args: [...submit, '--queue', queueUrl, '--chunk-size', '0'], exit: 2, code: 'INVALID_ARGUMENT', message: /^option '--chunk-size <n>' argument '0' is invalid/ },
    { args: ['batch', '--input', input, '--output', join(dir, 'never.jsonl')], exit: 2, code: 'INVALID_ARGUMENT', message: /^batch needs --model/ },
    { args: submit.map((arg) => (arg === 'scale' ? 'nosuchmodel' : arg)), exit: 2, code: 'NOT_FOUND', message: /^no model 'nosuchmodel' in the repository .* \(it has / },
    { args: submit.map((arg) => (arg === input ? join(dir, 'missing.jsonl') : arg)), exit: 2, code: 'INVALID_ARGUMENT', message: /^input '.*missing\.jsonl' cannot be read/ },
  ];
  // --json anywhere among the command's flags, even after the one refused.
  const results = await runAll(cases.map(({ args }) => [...args, '--json']));
  results.forEach(({ code, stdout, stderr }, index) => {
    const expected = cases[index]!;
    const what = `${expected.args.join(' ')} --json`;
    assert.equal(code, expected.exit, `${what}: ${stdout}${stderr}`);
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1, `${what}: one line on stdout: ${stdout}`);
    const printed = JSON.parse(lines[0]!) as { error: { code: string; message: string } };
    assert.deepEqual(Object.keys(printed), ['error'], what);
    assert.deepEqual(Object.keys(printed.error), ['code', 'message'], what);
    assert.equal(printed.error.code, expected.code, what);
    assert.match(printed.error.message, expected.message, what);
    assert.doesNotMatch(stderr, /nereid: |error: /, `${what}: the failure is not also text on stderr`);
  });

  // Without --json: the same exit statuses, the failure as text on stderr, nothing on stdout.
  const plain = await runAll([
    ['batch', 'status', '--queue', queueUrl, '--job', 'nope'],
    ['batch', 'status', '--queue', queueUrl, '--jobs', 'j'],
    ['batch', 'status', '--queue', nowhere, '--job', 'j'],
    ['worker', '--queue', nowhere, '--model-repository', repo],
    ['worker', '--queue', queueUrl, '--concurrency', 'x'],
    ['worker', '--queue', queueUrl, '--model-repository', join(dir, 'no-repo')],
  ]);
  assert.deepEqual(plain.map(({ code }) => code), [2, 2, 3, 3, 2, 2], plain.map(({ stderr }) => stderr).join('\n'));
  assert.deepEqual(plain.map(({ stdout }) => stdout), ['', '', '', '', '', '']);
  assert.match(plain[0]!.stderr, /^nereid: no batch job 'nope' on queue 'nereid-batch'/m);
  assert.match(plain[1]!.stderr, /^error: unknown option '--jobs'/m);
  assert.match(plain[2]!.stderr, /^nereid: cannot reach Redis at/m);
  assert.match(plain[3]!.stderr, /^nereid: cannot reach Redis at/m);
  assert.match(plain[4]!.stderr, /option '--concurrency <n>' argument 'x' is invalid/);
  assert.match(plain[5]!.stderr, /^nereid: model repository '.*no-repo' does not exist/m);
});

test('a cancelled job: its submitter exits 1 and its JSON summary says why; status and cancel of it exit 0, and a finished one refuses a cancel with 2', { timeout: 120_000 }, async () => {
  const queueName = 'exit-cancel';
  const job = 'exit-cancel';
  const output = join(dir, 'cancel-out.jsonl');
  const common = ['--queue', queueUrl, '--queue-name', queueName, '--job', job];
  const submit = ['batch', '--model', 'scale', '--input', input, '--output', output, ...common, '--chunk-size', '2', '--progress', 'none', '--json'];
  const queue = new Queue(queueName, { connection: { host: '127.0.0.1', port: redis.port } });
  try {
    // No worker listens on this queue: the chunks wait until the job is cancelled.
    const child = spawnCli(submit);
    let stdout = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    for (const deadline = Date.now() + 60_000; (await queue.getWaitingCount()) < 2; await new Promise((resolve) => setTimeout(resolve, 50))) {
      if (child.exitCode !== null) throw new Error(`the submitter exited with ${child.exitCode} before its chunks were queued:\n${stdout}${stderr}`);
      if (Date.now() > deadline) throw new Error('the chunks were never queued');
    }
    const cancelled = await cancelBatchJob({ queue: queueUrl, queueName, job });
    assert.equal(await exited, 1);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as { cancelled: { at: string; recordsLeft: number }; error: { code: string; message: string } };
    assert.deepEqual(summary.cancelled, { at: cancelled.cancelledAt, recordsLeft: 4 });
    assert.deepEqual(summary.error, {
      code: 'CANCELLED',
      message: `the job was cancelled at ${cancelled.cancelledAt} (nereid batch cancel): 4 record(s) not written; run the same command again to resume it`,
    });

    const [status, again] = await runAll([
      ['batch', 'status', ...common, '--json'],
      ['batch', 'cancel', ...common, '--json'],
    ]);
    assert.equal(status!.code, 0, status!.stderr);
    assert.equal((JSON.parse(status!.stdout) as { cancelledAt: string }).cancelledAt, cancelled.cancelledAt);
    assert.equal(again!.code, 0, again!.stderr);
    assert.equal((JSON.parse(again!.stdout) as { recordsLeft: number }).recordsLeft, 4);

    // Run again with a worker, the job completes (exit 0, no error); then nothing is left to cancel (2).
    const worker = spawnCli(['worker', '--queue', queueUrl, '--queue-name', queueName, '--model-repository', repo]);
    const workerExited = new Promise((resolve) => worker.once('exit', resolve));
    try {
      const resumed = await runCli(submit, 60_000);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.equal((JSON.parse(resumed.stdout.trim().split('\n').at(-1)!) as { error?: unknown }).error, undefined);
    } finally {
      worker.kill('SIGTERM');
      await workerExited;
    }
    const finished = await runCli(['batch', 'cancel', ...common, '--json'], 60_000);
    assert.equal(finished.code, 2, finished.stderr);
    assert.equal((JSON.parse(finished.stdout) as { error: { code: string } }).error.code, 'FAILED_PRECONDITION');
  } finally {
    await queue.close();
  }
});

test("with --queue, a flag for a run in this process is named with the worker's flag that decides it instead", async () => {
  const nowhere = `redis://127.0.0.1:${await freePort()}`;
  const { code, stderr } = await runCli(['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', join(dir, 'never.jsonl'), '--progress', 'none', '--queue', nowhere, '--concurrency', '4']);
  assert.equal(code, 3, stderr);
  assert.match(stderr, /--concurrency is for a run in this process; with --queue each worker's own flag decides \(nereid worker --record-concurrency …\)/);
  assert.match(stderr, /--model-repository is for a run in this process; .*\(nereid worker --model-repository …\)/);
});
