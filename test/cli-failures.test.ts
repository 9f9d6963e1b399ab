/**
 * Commands fail fast and say why: with Redis unreachable every command that needs it exits non-zero
 * with "cannot reach Redis at …" (after one short connection attempt, not retrying forever), and a
 * batch job whose records all failed exits 1 unless told otherwise; tune refuses a chart it could not
 * write before measuring anything.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { TRITON_SERVE_FLAGS } from '../src/tools/triton-flags.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { httpFlagName } from '../src/frontends/http/http-options.js';
import { grpcFlagName } from '../src/frontends/grpc/grpc-options.js';
import { serveFlagName } from '../src/server/server-options.js';
import { freePort, runCli } from './support/cli-server.js';

test('every command that needs Redis exits non-zero (3) with the address when Redis is unreachable', async () => {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-noredis-'));
  await writeModel(repo, 'scale', 1, scaleModel(2));
  const input = join(repo, 'in.jsonl');
  await writeFile(input, '{"INPUT0":[1,2,3,4]}\n');
  const queue = `redis://127.0.0.1:${await freePort()}`; // nothing listens there
  const commands = [
    ['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--output', join(repo, 'out.jsonl'), '--queue', queue],
    ['batch', 'status', '--queue', queue, '--job', 'anything'],
    ['worker', '--queue', queue, '--model-repository', repo],
  ];
  // The limit only stops a command that would hang; the assertion is on how it ends.
  const results = await Promise.all(commands.map((args) => runCli(args, 120_000)));
  results.forEach((result, index) => {
    assert.equal(result.code, 3, `${commands[index]!.join(' ')} exits 3 (could not run)`);
    assert.match(result.stderr, new RegExp(`nereid: cannot reach Redis at 127\\.0\\.0\\.1:\\d+ \\(${queue.replace(/[/.]/g, '\\$&')}\\): connect ECONNREFUSED`), result.stderr);
    assert.doesNotMatch(result.stderr, /Unhandled error event|at TCPConnectWrap/, 'no client stack traces');
  });
});

test('a batch job whose records all failed exits 1, and 0 with --allow-all-failed; each record is written with its error', async () => {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-allfail-'));
  await writeModel(repo, 'scale', 1, scaleModel(2));
  const input = join(repo, 'in.jsonl');
  await writeFile(input, '{"WRONG":[1,2,3,4]}\n{"WRONG":[5,6,7,8]}\n');
  const args = ['batch', '--model', 'scale', '--model-repository', repo, '--input', input, '--progress', 'none'];
  const failing = await runCli([...args, '--output', join(repo, 'a.jsonl')], 120_000);
  assert.equal(failing.code, 1, failing.stderr);
  assert.match(failing.stderr, /every record of the job failed \(2\); exiting 1/);
  assert.deepEqual(JSON.parse(failing.stdout.trim().split('\n').at(-1)!).error, {
    code: 'ALL_RECORDS_FAILED',
    message: 'every record of the job failed (2), each written with its error; --retry-failed runs them again once the cause is fixed; --allow-all-failed exits 0',
  });
  const lines = (await readFile(join(repo, 'a.jsonl'), 'utf8')).trim().split('\n');
  assert.equal(lines.length, 2);
  assert.ok(lines.every((line) => JSON.parse(line).error), 'each record carries its error');
  const allowed = await runCli([...args, '--output', join(repo, 'b.jsonl'), '--allow-all-failed'], 120_000);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(JSON.parse(allowed.stdout.trim().split('\n').at(-1)!).error, undefined);
});

test('tune --chart to a missing folder or to a folder is refused before the search, which would otherwise run its whole budget first', async () => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-tune-chart-'));
  // A model file that cannot load: a search run before the check would fail on it, so the --chart refusal can only
  // come from the check made before the search (no clock needed to tell the order).
  await writeModel(repository, 'scale', 1, new TextEncoder().encode('not an ONNX model'), undefined, { 'config.yaml': 'max_batch_size: 8\n' });
  await mkdir(join(repository, 'chart.svg'));
  const tune = ['tune', '--model', 'scale', '--model-repository', repository, '--concurrency', '1', '--warmup-s', '0', '--budget-s', '600', '--write'];
  for (const [chart, why] of [
    [join(repository, 'no-such-folder', 't.svg'), /no-such-folder\/t\.svg: its folder does not exist or cannot be written/],
    [join(repository, 'chart.svg'), /chart\.svg: is a folder; expected a file name/],
  ] as const) {
    const { code, stdout, stderr } = await runCli([...tune, '--chart', chart], 60_000);
    assert.equal(code, 2, stderr);
    assert.match(stderr, new RegExp(`--chart .*${why.source}`));
    assert.equal(stdout, '');
  }
  assert.equal(await readFile(join(repository, 'scale', 'config.yaml'), 'utf8'), 'max_batch_size: 8\n', 'nothing written');
});

test('--log-file under a file, or in a folder that cannot be made (/proc), is refused at once naming the flag', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'nereid-logfile-bad-'));
  await writeFile(join(folder, 'plain'), '');
  for (const [file, why] of [
    [join(folder, 'plain', 'x.log'), /--log-file .*plain\/x\.log: .*plain is a file, not a folder; expected a file in a folder this user can write to/],
    ['/proc/nope/x.log', /--log-file \/proc\/nope\/x\.log: its folder \/proc\/nope cannot be created \(E[A-Z]+\)/],
  ] as const) {
    // A recursive mkdir under /proc never returns: the limit is the failure.
    const { code, stderr } = await runCli(['serve', '--model-repository', folder, '--http-port', '0', '--grpc-port', '0', '--log-file', file], 30_000);
    assert.equal(code, 1, stderr);
    assert.match(stderr, why);
  }
});

test('--model-repository given twice: serve takes both (as Triton serves several), a command that reads one repository refuses the second rather than reading only the last', async () => {
  // serve checks every folder it was given: both were taken, the first missing one is named.
  const serve = await runCli(['serve', '--model-repository', '/tmp/nereid-no-base', '--model-repository', '/tmp/nereid-no-team', '--http-port', '0', '--grpc-port', '0'], 30_000);
  assert.equal(serve.code, 1, serve.stderr);
  assert.match(serve.stderr, /model repository '\/tmp\/nereid-no-base' does not exist/);
  assert.doesNotMatch(serve.stderr, /more than once/);
  // Each command's exit status for a usage mistake: batch's 2 (batch-cli-exit.test.ts).
  const batch = await runCli(['batch', '--model', 'm', '--input', 'in.jsonl', '--model-repository', '/tmp/base', '--model-repository', '/tmp/team'], 30_000);
  assert.equal(batch.code, 2, batch.stderr);
  assert.match(batch.stderr, /--model-repository is given more than once \('\/tmp\/base', then '\/tmp\/team'\): this command reads one model repository \(nereid serve takes several\)/);
  // The same folder twice (a wrapper's default and its caller's own) is one repository: the next flag is what fails here.
  const same = await runCli(['batch', '--model', 'm', '--input', 'in.jsonl', '--model-repository', '/tmp/base', '--model-repository', '/tmp/base/', '--chunk-size', 'x'], 30_000);
  assert.doesNotMatch(same.stderr, /more than once/);
  assert.match(same.stderr, /--chunk-size/);
});

test("tritonserver's flags that serve does not take are answered with Nereid's equivalent, before anything starts", async () => {
  for (const [args, said] of [
    [['--exit-timeout-secs=30'], /--exit-timeout-secs is tritonserver's flag; nereid serve takes --shutdown-timeout \(seconds, the same meaning\)/],
    [['--model-repository', '/tmp/nereid-no-repo', '--allow-grpc', 'false'], /--allow-grpc is tritonserver's flag; nereid serve takes --grpc-port 0 to turn gRPC off/],
    [['--strict-model-config=false'], /--strict-model-config is tritonserver's flag; nereid serve takes nothing: configs are always completed from the model file/],
    // Its common use has an equivalent: following the hint keeps the setting.
    [['--backend-config=onnxruntime,default-max-batch-size=8'], /--backend-config is tritonserver's flag; nereid serve takes --default-max-batch-size N for its default-max-batch-size=N/],
    [['--model-store=/models'], /--model-store is tritonserver's flag; nereid serve takes --model-repository/],
  ] as const) {
    const { code, stderr } = await runCli(['serve', ...args], 30_000);
    assert.equal(code, 1, stderr);
    assert.match(stderr, said);
  }
  // Each hint is for a flag serve does not take itself (--log-format, say, is Nereid's as well as Triton's).
  const help = (await runCli(['serve', '--help'], 60_000)).stdout;
  const hinted = Object.keys(TRITON_SERVE_FLAGS);
  assert.deepEqual(hinted.filter((flag) => new RegExp(`(^|\\s)${flag}[\\s,=]`).test(help)), []);
});

test("nereid serve's server names its flags, each one serve takes, where a library caller's names the option", async () => {
  const help = (await runCli(['serve', '--help'], 60_000)).stdout;
  // Every option the server's messages name: the flag each is set from.
  for (const key of ['loadModels', 'pinModels', 'modelControlMode', 'maxInflightBytes', 'modelLoadWaitMs', 'modelMemoryBudget', 'allowClientShm', 'monitoring', 'cacheConfig', 'traceSettings', 'traceEndpoint', 'modelRepository', 'monitoring.window.capacity', 'monitoring.evaluateEvery']) {
    const flag = serveFlagName(key).split(' ')[0]!;
    assert.match(help, new RegExp(`(^|\\s)${flag}[ ,\\n]`), `${key} → ${flag}, a flag of serve`);
  }
  // And the front ends' refusals, named by their own settingName.
  for (const [name, keys] of [[httpFlagName, ['maxBodyBytes', 'headersTimeoutMs', 'requestTimeoutMs']], [grpcFlagName, ['maxReceiveMessageBytes', 'maxSendMessageBytes']]] as const) {
    for (const key of keys) assert.match(help, new RegExp(`(^|\\s)${name(key)}[ ,\\n]`), `${key} → ${name(key)}, a flag of serve`);
  }
  assert.equal(serveFlagName('monitoring', false), '--monitoring false');
  assert.equal(serveFlagName('allowClientShm', true), '--allow-client-shm');
  const repo = await mkdtemp(join(tmpdir(), 'nereid-flags-'));
  const refused = await runCli(['serve', '--model-repository', repo, '--cache-config', 'memcached', '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false'], 60_000);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^nereid: --cache-config: unknown cache 'memcached'/m);
});
