import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { smallCnnModel, writeModel } from '../onnx/test-models.js';
import { runTune } from './tune.js';

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
