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
import { serveChild, spawnCli, stopChild } from './support/cli-server.js';

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
  assert.doesNotMatch(text.output(), /"level":30/);

  const json = await serveChild(repo, ['--allow-metrics', 'false']);
  await stopChild(json);
  const loaded = json.output().split('\n').find((candidate) => candidate.includes("loaded model 'scale' version 1"))!;
  assert.equal(JSON.parse(loaded).level, 30, 'not a terminal: JSON, one object per line');
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
