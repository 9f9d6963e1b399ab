/**
 * The server's log lines as a person and as a collector read them: text on request (and by default
 * on a terminal), JSON otherwise, and to a file with --log-file.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, serveChild, spawnCli, stopChild } from './support/cli-server.js';

async function repository(): Promise<string> {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-logs-'));
  await writeModel(repo, 'scale', 1, scaleModel(2));
  return repo;
}

test('--log-format text writes one readable line per event; without it, a pipe gets JSON', async () => {
  const repo = await repository();
  const text = await serveChild(repo, ['--log-format', 'text', '--allow-metrics', 'false']);
  await stopChild(text);
  const line = text.output().split('\n').find((candidate) => candidate.includes("loaded model 'scale' version 1"));
  assert.ok(line, text.output());
  assert.match(line, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: loaded model 'scale' version 1/);
  assert.doesNotMatch(text.output(), /"level":/);

  const json = await serveChild(repo, ['--allow-metrics', 'false']);
  await stopChild(json);
  const loaded = json.output().split('\n').find((candidate) => candidate.includes("loaded model 'scale' version 1"))!;
  assert.equal(JSON.parse(loaded).level, 'info', 'not a terminal: JSON, one object per line, its level by name as log collectors read it');
});

test('an IPv6 --host is written in brackets in every listening line', async () => {
  const repo = await repository();
  const [grpcPort, metricsPort] = [await freePort(), await freePort()];
  const served = await serveChild(repo, ['--host', '::1', '--grpc-port', String(grpcPort), '--metrics-port', String(metricsPort)]);
  await stopChild(served);
  assert.match(served.url, /^http:\/\/\[::1\]:\d+$/);
  assert.match(served.output(), new RegExp(`gRPC \\(KServe V2, inference\\.GRPCInferenceService\\) listening on \\[::1\\]:${grpcPort}[,"]`));
  assert.equal(served.metricsUrl, `http://[::1]:${metricsPort}/metrics`);
});

test('--log-file appends the log to a file (created with its folder) instead of the terminal', async () => {
  const repo = await repository();
  const file = join(await mkdtemp(join(tmpdir(), 'nereid-logfile-')), 'logs', 'nereid.log');
  const child = spawnCli(['serve', '--model-repository', repo, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false', '--log-file', file]);
  let terminal = '';
  child.stdout!.on('data', (chunk: Buffer) => (terminal += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let written = '';
  while (!written.includes('server ready')) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    written = await readFile(file, 'utf8').catch(() => '');
  }
  child.kill('SIGTERM');
  await exited;
  assert.match(written, /"msg":"loaded model 'scale' version 1"/);
  assert.equal(terminal, '', 'nothing logged to the terminal');
});

test('a failed request logs its reason at debug (tensor values left out), and a start with a failed model says so as a warning', async () => {
  const repo = await repository();
  await writeModel(repo, 'broken', 1, new TextEncoder().encode('not an ONNX model'));
  const served = await serveChild(repo, ['--allow-metrics', 'false', '--log-verbose', '1', '--log-access', '--strict-readiness', 'false']);
  const infer = (data: unknown[], shape: number[]) =>
    fetch(`${served.url}/v2/models/scale/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape, data }] }) });
  const wrongShape = await infer([1, 2, 3], [1, 3]);
  assert.equal(wrongShape.status, 400);
  const { error } = (await wrongShape.json()) as { error: string };
  assert.equal((await infer(['SECRET-VALUE-1234', 2, 3, 4], [1, 4])).status, 400);
  await stopChild(served);
  const lines = served.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: string; msg: string; reason?: string });
  const failures = lines.filter((line) => line.msg === 'request failed');
  assert.deepEqual(failures.map((line) => line.reason), [error, "input 'INPUT0': element 0 is not a number for datatype FP32 (its value is not logged)"]);
  assert.doesNotMatch(served.output(), /SECRET-VALUE-1234/);
  const summary = lines.find((line) => /^server ready: 1 model version\(s\) ready, 1 failed \(broken version 1\)/.test(line.msg));
  assert.equal(summary?.level, 'warn', served.output());
});
