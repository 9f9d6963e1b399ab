import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { identityModel, smallCnnModel, writeModel } from '../onnx/test-models.js';
import { runTune, type TuneReport } from './tune.js';
import { formatTuneReport, unmetObjective, writableConfigOf, writeTunedConfig } from './tune-report.js';
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

test('tune --versions measures only the versions named, refuses one without a folder, and the report says which versions the policy serves', async (t) => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-tune-versions-'));
  t.after(() => rm(repository, { recursive: true, force: true }));
  const config = 'max_batch_size: 1\nversion_policy: { specific: { versions: [1] } }\n';
  for (const version of [1, 2, 3]) await writeModel(repository, 'cnn', version, smallCnnModel(), undefined, { 'config.yaml': config });
  const options = { modelRepository: repository, model: 'cnn', concurrency: [1], warmupSeconds: 0, durationSeconds: 0.1, budgetSeconds: 0.01, maxBatchSizeLimit: 1, cores: 2 };
  await assert.rejects(runTune({ ...options, versions: ['2', '4'] }, pino({ level: 'silent' })), /^Error: --versions 2,4: 'cnn' has no folder for version 4 \(its version folders: 1, 2, 3\)$/);
  // The budget measures the config as written only; what the version step would have measured is listed as not measured.
  const report = await runTune({ ...options, versions: ['2'] }, pino({ level: 'silent' }));
  assert.deepEqual([report.servedVersions, report.versions], [['1'], ['2']]);
  assert.deepEqual(report.skipped.filter((line) => line.startsWith('version:')).map((line) => line.split(' ')[1]), ['v2'], report.skipped.join('\n'));
  const text = formatTuneReport(report, 0.05);
  assert.ok(text.includes('\nversions: the policy serves v1; the version step measures v2, of which v2 is not served (reported, never written; --versions chooses which are measured)\n'), text);
  assert.match(text, /\n\| 0 \| current config \| v1 /, 'the served version\'s row is not marked');
  assert.match(formatTuneReport({ ...report, versions: ['1', '2', '3'], results: [...report.results, { ...report.results[0], step: 'version', candidate: { ...report.results[0].candidate, version: '3' } }] }, 0.05), /\n\| 1 \| version \(not served\) \| v3 /);
});

test('a model that refuses the request tune sends stops the search with its reason, instead of measuring a config that serves nothing', async (t) => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-tune-refused-'));
  t.after(() => rm(repository, { recursive: true, force: true }));
  // Input [batch, 3, n]: --input-shape INPUT0=3 leaves out a dimension, which the model refuses.
  await writeModel(repository, 'identity', 1, identityModel('float32', ['batch', 3, 'n']), 'max_batch_size: 4\n');
  const tune = runTune({ modelRepository: repository, model: 'identity', inputShapes: { INPUT0: [3] }, concurrency: [1], warmupSeconds: 0, durationSeconds: 0.1, budgetSeconds: 5 }, pino({ level: 'silent' }));
  await assert.rejects(tune, /the request tune sends to 'identity' fails: input 'INPUT0' expects FP32 \[-1,3,-1\], got FP32 \[1,3\]/);
});

const level = (throughput: number): LevelResult => ({ concurrency: 8, throughput, p50Ms: 1, p95Ms: 2, p99Ms: 3, cpuSecondsPerInference: 0.001, meanBatchRows: 1, errors: 0 });
const candidate = (maxBatchSize: number): Candidate => ({ version: '1', maxBatchSize, maxQueueDelayUs: 100, targetLatencyUs: 0, instances: 1, threadsPerInstance: 1, executionThread: 'main', graphLevel: 'all' });
/** A search whose winner raises max_batch_size from 1 to `maxBatchSize`. */
const report = (maxBatchSize: number): TuneReport => ({
  model: 'm',
  objective: { kind: 'throughput' },
  cores: 2,
  batchCurve: [],
  results: [
    { candidate: candidate(1), step: 'current config', levels: [level(100)], paretoLevels: [] },
    { candidate: candidate(maxBatchSize), step: 'batch size', levels: [level(200)], paretoLevels: [8] },
  ],
  winner: 1,
  best: 1,
  minGain: 0.05,
  skipped: [],
  seconds: 1,
  date: '2026-12-04T05:10:00.000Z',
});

test('two tune --write runs in the same second keep the original config: each backup gets its own name, and the note names it', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'nereid-tune-backup-'));
  t.after(() => rm(directory, { recursive: true, force: true }));
  const original = 'max_batch_size: 1\ninstance_group: [{ count: 1, kind: KIND_CPU }]\n';
  await writeFile(join(directory, 'config.yaml'), original);
  const first = await writeTunedConfig(directory, report(4), await writableConfigOf(directory));
  const second = await writeTunedConfig(directory, report(8), await writableConfigOf(directory));
  assert.notEqual(first.backup, second.backup);
  assert.equal(await readFile(first.backup, 'utf8'), original, 'the original is kept');
  assert.match(await readFile(second.backup, 'utf8'), /max_batch_size: 4/);
  const written = await readFile(join(directory, 'config.yaml'), 'utf8');
  assert.match(written, /max_batch_size: 8/);
  assert.ok(written.includes(`(${basename(second.backup)}).`), written);
});

test('tune --write refuses a config that is a link, leaving the file it names as it was', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'nereid-tune-link-'));
  t.after(() => rm(directory, { recursive: true, force: true }));
  const other = join(directory, 'other-model-config.yaml');
  await writeFile(other, 'max_batch_size: 1\n');
  await symlink(other, join(directory, 'config.yaml'));
  await assert.rejects(writeTunedConfig(directory, report(4), await writableConfigOf(directory)), /config\.yaml is a link to .*other-model-config\.yaml, so it was not written/);
  assert.equal(await readFile(other, 'utf8'), 'max_batch_size: 1\n');
  assert.deepEqual((await readdir(directory)).sort(), ['config.yaml', 'other-model-config.yaml'], 'no backup written');
});

test("the note of a written config gives the confirmation rounds' ratios beside the search's one measurement", async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'nereid-tune-note-'));
  t.after(() => rm(directory, { recursive: true, force: true }));
  await writeFile(join(directory, 'config.yaml'), 'max_batch_size: 1\n');
  const confirmed: TuneReport = { ...report(4), confirmation: { candidate: 1, rounds: [{ current: 100, chosen: 205 }, { current: 100, chosen: 179 }], ratios: [2.05, 1.79], ratio: 1.79, needed: 1.05, held: true, lost: [] } };
  const { backup } = await writeTunedConfig(directory, confirmed, await writableConfigOf(directory));
  const note = (await readFile(join(directory, 'config.yaml'), 'utf8')).split('\n')[0];
  assert.equal(note, `# nereid tune, 2026-12-04, 2 cores: 200.0 inferences/s at concurrency 8 (p99 3.0 ms) against 100.0 at concurrency 8 (p99 3.0 ms) with the settings before (${basename(backup)}); measured again in turn, 2 round(s): 2.05×, 1.79× (median 1.79×).`);
});

test('tune --write changes only the lines of the settings it writes: flow collections keep their one line and their spacing', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'nereid-tune-layout-'));
  t.after(() => rm(directory, { recursive: true, force: true }));
  const kept = [
    'input:',
    '  - { name: x, data_type: TYPE_FP32, dims: [1, 28, 28], reshape: { shape: [784] }, format: FORMAT_NONE, optional: false }',
    'output: [{name: y, data_type: TYPE_FP32, dims: [10]}]  # tight, as its author wrote it',
  ];
  await writeFile(join(directory, 'config.yaml'), ['max_batch_size: 1', ...kept, 'instance_group: [{count: 1, kind: KIND_CPU}]', ''].join('\n'));
  await writeTunedConfig(directory, report(4), await writableConfigOf(directory));
  const written = (await readFile(join(directory, 'config.yaml'), 'utf8')).split('\n');
  for (const line of kept) assert.ok(written.includes(line), `${line}\nis not a line of\n${written.join('\n')}`);
  assert.ok(written.includes('max_batch_size: 4'));
  assert.ok(written.includes('instance_group: [{count: 1, kind: KIND_CPU}]'), 'new flow collections are written in the style most of the file uses');
});

test('tune --write writes a latency-aware winner\'s target, and a fixed-delay winner clears the target the file had (YAML and JSON)', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'nereid-tune-target-'));
  t.after(() => rm(directory, { recursive: true, force: true }));
  const latencyAware = report(8);
  latencyAware.results[1].candidate = { ...latencyAware.results[1].candidate, maxQueueDelayUs: 2000, targetLatencyUs: 20_000 };
  await writeFile(join(directory, 'config.yaml'), 'max_batch_size: 1\ndynamic_batching: { max_queue_delay_microseconds: 100 }\n');
  await writeTunedConfig(directory, latencyAware, await writableConfigOf(directory));
  const written = await readFile(join(directory, 'config.yaml'), 'utf8');
  assert.match(written, /dynamic_batching: \{ max_queue_delay_microseconds: 2000, target_latency_us: 20000 \}/);
  await writeTunedConfig(directory, report(4), await writableConfigOf(directory));
  assert.match(await readFile(join(directory, 'config.yaml'), 'utf8'), /dynamic_batching: \{ max_queue_delay_microseconds: 100, target_latency_us: 0 \}/);
  // A fixed delay over a file without a target adds none.
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory);
  await writeFile(join(directory, 'config.yaml'), 'max_batch_size: 1\n');
  await writeTunedConfig(directory, report(4), await writableConfigOf(directory));
  assert.doesNotMatch(await readFile(join(directory, 'config.yaml'), 'utf8'), /target_latency_us/);

  await rm(join(directory, 'config.yaml'));
  await writeFile(join(directory, 'config.json'), JSON.stringify({ max_batch_size: 1, dynamic_batching: { target_latency_us: 5000, preferred_batch_size: [2] } }));
  await writeTunedConfig(directory, report(4), await writableConfigOf(directory));
  assert.deepEqual(JSON.parse(await readFile(join(directory, 'config.json'), 'utf8')).dynamic_batching, { target_latency_us: 0, preferred_batch_size: [2], max_queue_delay_microseconds: 100 });
  await writeTunedConfig(directory, latencyAware, await writableConfigOf(directory));
  assert.deepEqual(JSON.parse(await readFile(join(directory, 'config.json'), 'utf8')).dynamic_batching, { target_latency_us: 20_000, preferred_batch_size: [2], max_queue_delay_microseconds: 2000 });
});

test('tune --write refuses to write over a config that changed on disk while it measured, and leaves the change as it is', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'nereid-tune-changed-'));
  t.after(() => rm(directory, { recursive: true, force: true }));
  await writeFile(join(directory, 'config.yaml'), 'max_batch_size: 1\n');
  const readAtStart = await writableConfigOf(directory);
  // The user's edit (or another tune's write) while this one measured.
  const edited = 'max_batch_size: 1\ndynamic_batching: { max_queue_delay_microseconds: 500 }\n';
  await writeFile(join(directory, 'config.yaml'), edited);
  await assert.rejects(
    writeTunedConfig(directory, report(4), readAtStart),
    new RegExp(`^Error: ${join(directory, 'config.yaml')} changed on disk while tune measured, so it was not written \\(the change is kept\\): the winner was measured against the config read at the start; run tune again`),
  );
  assert.equal(await readFile(join(directory, 'config.yaml'), 'utf8'), edited);
  assert.deepEqual(await readdir(directory), ['config.yaml'], 'no backup either');

  // A config.json put in place of the YAML one is a change too.
  await rm(join(directory, 'config.yaml'));
  await writeFile(join(directory, 'config.json'), '{ "max_batch_size": 1 }\n');
  await assert.rejects(writeTunedConfig(directory, report(4), readAtStart), /config\.yaml was replaced by config\.json while tune measured, so it was not written/);
});

test('a --p99-ms or --max-cost bound that no config met is said, with the config that came closest', () => {
  const searched = report(4);
  const unmet: TuneReport = { ...searched, objective: { kind: 'p99', maxMs: 1 }, winner: undefined, best: undefined };
  const expected = "no configuration met p99 ≤ 1 ms (--p99-ms); the best seen: #0 v1 batch 1 delay 100 µs, 1×1 threads (main), graph all, p99 3.00 ms at c=8 (100.0 inferences/s)";
  assert.equal(unmetObjective(unmet), expected);
  assert.ok(formatTuneReport(unmet, 0.05).includes(`\nN${expected.slice(1)}.`), formatTuneReport(unmet, 0.05));
  const costly: TuneReport = { ...unmet, objective: { kind: 'cost', maxUsdPer1000: 1e-9, usdPerCoreHour: 0.05 } };
  assert.match(unmetObjective(costly)!, /^no configuration met a cost ≤ \$1e-9 per 1,000 inferences \(--max-cost\); the best seen: #0 .*, \$0\.0000139 per 1,000 inferences at c=8/);
  assert.equal(unmetObjective(searched), undefined, 'met');
  assert.equal(unmetObjective({ ...searched, winner: undefined }), undefined, 'no bound to meet');
});
