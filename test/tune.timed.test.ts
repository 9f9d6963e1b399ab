/**
 * `nereid tune` end to end on a generated model whose config is a poor start (no batching, one
 * single-threaded instance in a worker thread): the search stays within its budget, writes a config
 * the server loads, and the written config measures at least as well as the one it replaced.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { parse } from 'yaml';
import { smallCnnModel, writeModel } from '../src/onnx/test-models.js';
import { measureConfigs, type TuneReport } from '../src/tools/index.js';
import { judgedLevel } from '../src/tools/tune-search.js';
import { runCli } from './support/cli-server.js';
import { startTestServer } from './support/test-server.js';

const POOR_CONFIG = `# a first guess, never measured
max_batch_size: 1
instance_group: [{ count: 1, kind: KIND_CPU }]
parameters: { intra_op_thread_count: "1", execution_thread: worker }
`;

test('nereid tune searches within its budget, writes a config the server loads, and the written config measures no worse than the old one', async () => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-tune-'));
  try {
    await writeModel(repository, 'cnn', 1, smallCnnModel(), undefined, { 'config.yaml': POOR_CONFIG });
    const budget = 30;
    const chart = join(repository, 'tune.svg');
    const args = ['tune', '--model', 'cnn', '--model-repository', repository, '--concurrency', '1,16', '--warmup-s', '0.2', '--duration-s', '0.5', '--budget-s', String(budget), '--max-batch-size', '32', '--confirm-rounds', '1'];
    const { code, stdout, stderr } = await runCli([...args, '--write', '--chart', chart, '--json'], 180_000);
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout) as TuneReport & { written: { path: string; backup: string } | null };
    assert.equal(report.written?.path, join(repository, 'cnn', 'config.yaml'));
    // The budget decides which measurements start: each candidate only while what it and a confirmation are planned to
    // take still fits, each later confirmation only while its own does (the time a measurement then takes is the machine's).
    const planned = report.candidateSeconds! + report.confirmationSeconds!;
    for (const measured of report.results.slice(1)) {
      assert.ok(measured.startedAtSeconds! + planned <= budget, `${measured.step} started at ${measured.startedAtSeconds} s, with ${planned} s planned and a budget of ${budget} s`);
    }
    for (const later of [...(report.notConfirmed ?? []), report.confirmation].slice(1)) {
      if (later) assert.ok(later.startedAtSeconds! + report.confirmationSeconds! <= budget, `a confirmation started at ${later.startedAtSeconds} s`);
    }
    assert.equal(report.results[0].step, 'current config');
    assert.ok(report.results.length >= 3, `${report.results.length} configs measured`);
    assert.deepEqual(report.batchCurve.map((point) => point.batchSize), [1, 2, 4, 8, 16, 32]);
    assert.ok(report.best !== undefined && report.best > 0, `a poor start is improved on: ${JSON.stringify(report.confirmation)}`);
    // The gain held when both were measured again, in turn, before anything was written.
    assert.equal(report.confirmation?.candidate, report.best);
    assert.equal(report.confirmation?.rounds.length, 1);
    assert.equal(report.confirmation?.held, true);
    // What is written beat the config as written by --min-gain in the search too (the fastest overall, or one preferred within it).
    const judged = (index: number) => judgedLevel(report.results[index], report.objective)!.throughput;
    assert.ok(judged(report.best) >= judged(0) * (1 + report.minGain), `${judged(report.best)} against ${judged(0)}`);
    assert.match(await readFile(chart, 'utf8'), /^<svg[^>]*>[\s\S]*Pareto front[\s\S]*<\/svg>$/);

    const files = await readdir(join(repository, 'cnn'));
    const backup = files.find((file) => file.startsWith('config.yaml.bak-'));
    assert.ok(backup, files.join(', '));
    assert.equal(await readFile(join(repository, 'cnn', backup), 'utf8'), POOR_CONFIG);
    const writtenText = await readFile(join(repository, 'cnn', 'config.yaml'), 'utf8');
    assert.match(writtenText, /^# nereid tune, \d{4}-\d\d-\d\d, \d+ cores: [\s\S]*\n# a first guess, never measured\n/, 'the measurement is noted, the old comment stays');
    const written = parse(writtenText) as Record<string, unknown>;
    const winner = report.results[report.best].candidate;
    assert.equal(written.max_batch_size, winner.maxBatchSize);
    assert.deepEqual(written.instance_group, [{ count: winner.instances, kind: 'KIND_CPU' }]);

    const served = await startTestServer({ repoDir: repository });
    try {
      const rows = winner.maxBatchSize > 0 ? [1] : [];
      const response = await fetch(`${served.url}/v2/models/cnn/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [...rows, 1, 28, 28], data: new Array(784).fill(0.5) }] }),
      });
      assert.equal(response.status, 200, await response.text());
    } finally {
      await served.close();
    }

    // Both configs again, interleaved three times, in one server: the best of each is compared, the
    // written one no worse (order only).
    const settings = { modelRepository: repository, model: 'cnn', concurrency: [16], warmupSeconds: 0.3, durationSeconds: 1 };
    const old = parse(POOR_CONFIG) as Record<string, unknown>;
    const throughputs = (await measureConfigs(settings, [old, written, old, written, old, written], pino({ level: 'silent' }))).map((levels) => levels[0].throughput);
    const before = Math.max(...throughputs.filter((_, index) => index % 2 === 0));
    const after = Math.max(...throughputs.filter((_, index) => index % 2 === 1));
    const figures = `tuned ${after.toFixed(0)} inferences/s against ${before.toFixed(0)} (c=16); chose ${JSON.stringify(winner)}`;
    assert.ok(after >= before, figures);
    console.log(`# ${figures}`);
  } finally {
    await rm(repository, { recursive: true, force: true });
  }
});

test('tune refuses what it cannot do before measuring, and describes a config without instance_group by the threads it gets', async () => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-tune-'));
  try {
    await writeModel(repository, 'cnn', 1, smallCnnModel(), undefined, {});
    const quick = ['tune', '--model', 'cnn', '--model-repository', repository, '--concurrency', '1', '--warmup-s', '0', '--duration-s', '0.2', '--budget-s', '1'];
    const both = await runCli([...quick, '--p99-ms', '5', '--max-cost', '0.01'], 60_000);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--p99-ms and --max-cost are two objectives; give one/);
    // A model without a config file whose model file cannot load: a search run before the check would fail on it, so
    // the refusal can only come from the check made before the search (no clock needed to tell the order).
    const unloadable = join(repository, 'unloadable-repository');
    await writeModel(unloadable, 'unloadable', 1, new TextEncoder().encode('not an ONNX model'), undefined, {});
    const unloadableQuick = quick.map((arg) => (arg === 'cnn' ? 'unloadable' : arg === repository ? unloadable : arg));
    const unwritable = await runCli([...unloadableQuick, '--budget-s', '120', '--write'], 60_000);
    assert.equal(unwritable.code, 2, unwritable.stderr);
    assert.match(unwritable.stderr, /unloadable has no config file for --write to update; write one \(config.yaml\) first/);
    const unknownInput = await runCli([...quick, '--input-shape', 'nope=1,2'], 60_000);
    assert.equal(unknownInput.code, 2);
    assert.match(unknownInput.stderr, /--input-shape nope: 'cnn' has no such input; its inputs: image/);

    // No instance_group: ONNX Runtime's plan is single-threaded instances, whatever the cores.
    const { code, stdout, stderr } = await runCli([...quick, '--json'], 60_000);
    assert.equal(code, 0, stderr);
    const current = (JSON.parse(stdout) as TuneReport).results[0].candidate;
    assert.equal(current.threadsPerInstance, 1, JSON.stringify(current));
  } finally {
    await rm(repository, { recursive: true, force: true });
  }
});

test('tune exits 1 when no config meets --p99-ms, naming the bound and the config that came closest; --min-gain takes a fraction up to 1; --help shows the defaults', async () => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-tune-'));
  try {
    await writeModel(repository, 'cnn', 1, smallCnnModel(), undefined, {});
    const quick = ['tune', '--model', 'cnn', '--model-repository', repository, '--concurrency', '1', '--warmup-s', '0', '--duration-s', '0.2', '--budget-s', '1'];
    // No request through the core answers within a microsecond at its 99th percentile.
    const unmet = await runCli([...quick, '--p99-ms', '0.001', '--json'], 60_000);
    assert.equal(unmet.code, 1, unmet.stderr);
    assert.match(unmet.stderr, /nereid: no configuration met p99 ≤ 0\.001 ms \(--p99-ms\); the best seen: #0 v1 .*, p99 \d+\.\d\d ms at c=1 \(\d+\.\d inferences\/s\)/);
    const unmetReport = JSON.parse(unmet.stdout) as TuneReport;
    assert.equal(unmetReport.winner, undefined);
    // A candidate (0.2 s) and its confirmation (3 rounds of two) do not fit --budget-s 1: none starts, each is listed.
    assert.deepEqual(unmetReport.results.map((measured) => measured.step), ['current config']);
    assert.ok(unmetReport.skipped.length > 0 && unmetReport.skipped.every((line) => line.endsWith('(--budget-s reached)')), unmetReport.skipped.join('\n'));

    const percent = await runCli([...quick, '--min-gain', '5'], 60_000);
    assert.equal(percent.code, 2);
    assert.match(percent.stderr, /option '--min-gain <fraction>' argument '5' is invalid\. expected a number from 0 to 1/);

    const help = await runCli(['tune', '--help'], 60_000);
    assert.equal(help.code, 0, help.stderr);
    const flat = help.stdout.replace(/\s+/g, ' ');
    for (const shown of ['at (default: 1,16)', '(default: 600)', '(0.05: 5 %) (default: 0.05)', '(default: 1)', '(default: 3)']) assert.ok(flat.includes(shown), `${shown} in ${flat}`);
    assert.doesNotMatch(flat, /default: \{\}|default: \[/);
  } finally {
    await rm(repository, { recursive: true, force: true });
  }
});
