import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { smallCnnModel, writeModel } from '../onnx/test-models.js';
import { runTune, type TuneReport } from './tune.js';
import { writeTunedConfig } from './tune-report.js';
import type { Candidate, LevelResult } from './tune-search.js';

test('the config as written is read with its parameters, as tune --write writes them, and candidates derived from it carry them', async (t) => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-tune-current-'));
  t.after(() => rm(repository, { recursive: true, force: true }));
  const config = 'max_batch_size: 1\ninstance_group: [{ count: 1, kind: KIND_CPU }]\nparameters: { intra_op_thread_count: "1", execution_thread: worker, graph_optimization_level: basic }\n';
  await writeModel(repository, 'cnn', 1, smallCnnModel(), undefined, { 'config.yaml': config });
  // A budget spent by the first measurement: the config as written is measured and every other candidate is listed as skipped.
  const report = await runTune({ modelRepository: repository, model: 'cnn', concurrency: [1], warmupSeconds: 0, durationSeconds: 0.1, budgetSeconds: 0.01, cores: 2 }, pino({ level: 'silent' }));
  const current = report.results[0].candidate;
  assert.deepEqual([current.threadsPerInstance, current.executionThread, current.graphLevel], [1, 'worker', 'basic']);
  assert.ok(report.skipped.length > 0);
  for (const line of report.skipped) assert.doesNotMatch(line, /object Object/);
});

test('two tune --write runs in the same second keep the original config: each backup gets its own name, and the note names it', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'nereid-tune-backup-'));
  t.after(() => rm(directory, { recursive: true, force: true }));
  const original = 'max_batch_size: 1\ninstance_group: [{ count: 1, kind: KIND_CPU }]\n';
  await writeFile(join(directory, 'config.yaml'), original);
  const level = (throughput: number): LevelResult => ({ concurrency: 8, throughput, p50Ms: 1, p95Ms: 2, p99Ms: 3, cpuSecondsPerInference: 0.001, meanBatchRows: 1, errors: 0 });
  const candidate = (maxBatchSize: number): Candidate => ({ version: '1', maxBatchSize, maxQueueDelayUs: 100, instances: 1, threadsPerInstance: 1, executionThread: 'main', graphLevel: 'all' });
  const report = (maxBatchSize: number): TuneReport => ({
    model: 'm',
    objective: { kind: 'throughput' },
    cores: 2,
    batchCurve: [],
    results: [
      { candidate: candidate(1), step: 'current config', levels: [level(100)], pareto: false },
      { candidate: candidate(maxBatchSize), step: 'batch size', levels: [level(200)], pareto: true },
    ],
    winner: 1,
    best: 1,
    skipped: [],
    seconds: 1,
    date: '2026-12-04T05:10:00.000Z',
  });
  const first = await writeTunedConfig(directory, report(4));
  const second = await writeTunedConfig(directory, report(8));
  assert.notEqual(first.backup, second.backup);
  assert.equal(await readFile(first.backup, 'utf8'), original, 'the original is kept');
  assert.match(await readFile(second.backup, 'utf8'), /max_batch_size: 4/);
  const written = await readFile(join(directory, 'config.yaml'), 'utf8');
  assert.match(written, /max_batch_size: 8/);
  assert.ok(written.includes(`(${basename(second.backup)})`), written);
});
