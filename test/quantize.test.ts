/**
 * `nereid quantize` end to end on real data: the bundled Fashion-MNIST model calibrated on training
 * images through its own pre-processing, written as version 2 beside version 1 with its report,
 * then checked against version 1 by `nereid eval` on test images — the workflow docs/eval.md and
 * issue 13 describe.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { classFolderName } from '../src/eval/index.js';
import { mulberry32, smallCnnModel, writeModel } from '../src/onnx/test-models.js';
import { runQuantize, type QuantizeReport } from '../src/quantize/index.js';
import { splitHeldOut } from '../src/quantize/run-quantize.js';
import { runCli, NEREID_COMMAND } from './support/cli-server.js';
import { writeFashionMnistPngs } from './support/fashion-mnist.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
let work: string;
let repository: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'nereid-quantize-'));
  repository = join(work, 'models');
  // Without the bundled int8 version 2: the first test writes its own version 2 and the others number theirs after it.
  await cp(join(ROOT, 'models', 'fashion_mnist'), join(repository, 'fashion_mnist'), { recursive: true, filter: (source) => !/fashion_mnist\/2$/.test(source) });
  const labels = (await readFile(join(repository, 'fashion_mnist', 'labels.txt'), 'utf8')).trim().split('\n');
  await writeFashionMnistPngs(join(work, 'calibration'), 'train', 150);
  await writeFashionMnistPngs(join(work, 'test'), 't10k', 300, (label) => classFolderName(labels[label]));
});

after(() => rm(work, { recursive: true, force: true }));

const nereid = (args: string[]) => runCli(args, 180_000);

test('quantize writes a smaller int8 version beside the original with its report, and eval finds it agreeing', async () => {
  // A gate below the default, so that a held-out set this small (30 examples) cannot fail it on one example; eval then
  // applies the default one to the whole test set.
  const quantized = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--gate', 'agreement>=0.95', '--json']);
  assert.equal(quantized.code, 0, quantized.stderr);
  const report = JSON.parse(quantized.stdout);
  assert.equal(report.outputVersion, '2');
  assert.deepEqual(report.floatNodes, []);
  assert.equal(report.quantizedNodes.length, 3, 'two convolutions and the classifier');
  assert.equal(report.calibration.examples + report.calibration.heldOut, 150);
  assert.ok(report.sizes.ratio < 0.3, `size ratio ${report.sizes.ratio}`);
  assert.ok(report.agreement.agreement >= 0.9, `held-out agreement ${report.agreement.agreement}`);
  const written = JSON.parse(await readFile(join(repository, 'fashion_mnist', '2', 'quantization.json'), 'utf8'));
  assert.equal(written.method, 'static');
  assert.equal(written.calibration.sha256, report.calibration.sha256);
  assert.equal((await readFile(join(repository, 'fashion_mnist', '2', 'model.onnx'))).length, report.sizes.quantizedBytes);
  const permissions = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);
  assert.equal(await permissions(join(repository, 'fashion_mnist', '2')), await permissions(join(repository, 'fashion_mnist')), 'readable by whoever can read the model');

  const evaluated = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', repository, '--data', join(work, 'test'), '--versions', '1,2', '--json', '--gate', 'agreement>=0.97,accuracy_drop<=0.02']);
  assert.equal(evaluated.code, 0, evaluated.stdout + evaluated.stderr);
  const comparison = JSON.parse(evaluated.stdout);
  assert.ok(comparison.versions[1].sizeBytes < comparison.versions[0].sizeBytes * 0.3);
  assert.equal(comparison.gate.passed, true);

  const again = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--output-version', '2']);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /version 2 of 'fashion_mnist' exists already/);

  // A policy that serves only version 2 (the bundled one names only version 1) leaves no float version to default to:
  // quantizing the int8 one again is refused, naming its source.
  const config = join(repository, 'fashion_mnist', 'config.yaml');
  const bundled = await readFile(config, 'utf8');
  assert.match(bundled, /^version_policy: .*$/m);
  await writeFile(config, bundled.replace(/^version_policy: .*$/m, 'version_policy: { latest: { num_versions: 1 } }'));
  const twice = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration')]);
  assert.equal(twice.code, 2);
  assert.match(twice.stderr, /version 2 of 'fashion_mnist' is already quantized \(int8 static QDQ, from version 1\), and its version policy serves no float version; quantize the float version it came from: --version 1/);
  // Serving both, the default source is the newest float version, not the int8 one beside it.
  await writeFile(config, bundled.replace(/^version_policy: .*$/m, 'version_policy: { all: {} }'));
  const both = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--method', 'fp16', '--output-version', '9', '--json']);
  assert.equal(both.code, 0, both.stderr);
  assert.equal(JSON.parse(both.stdout).sourceVersion, '1');
  await rm(join(repository, 'fashion_mnist', '9'), { recursive: true });
  const named = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '2']);
  assert.equal(named.code, 2);
  assert.match(named.stderr, /version 2 of 'fashion_mnist' is already quantized \(int8 static QDQ, from version 1\); quantize the float version it came from: --version 1/);
  await writeFile(config, bundled);
});

test('held-out examples are every n-th of the data, so a class-sorted folder gives each class its share', () => {
  const classSorted = Array.from({ length: 100 }, (_, index) => Math.floor(index / 10));
  const { calibrationFeeds, evaluationFeeds } = splitHeldOut(classSorted, 20);
  assert.equal(calibrationFeeds.length, 80);
  assert.deepEqual(evaluationFeeds, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]);
});

test('the gate is judged on held-out examples spread over the data, and refused on fewer than it needs before any work', async () => {
  const few = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--max-examples', '50', '--output-version', '7']);
  assert.equal(few.code, 2);
  assert.match(few.stderr, /50 example\(s\) hold out 10 to judge the gate on, fewer than the 30 it needs .*give at least 150 examples/);
  const labelsOnly = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--gate', 'accuracy_drop<=0.01', '--output-version', '7']);
  assert.equal(labelsOnly.code, 2);
  assert.match(labelsOnly.stderr, /--gate 'accuracy_drop<=0.01': quantize .* measures only agreement, character_agreement, max_abs_delta; judge accuracy afterwards with nereid eval --gate/);
  await assert.rejects(stat(join(repository, 'fashion_mnist', '7')));
});

test('a flag out of range is refused naming the flag, what it takes and what it got; a hold-out that leaves too few to calibrate on is refused', async () => {
  const quantize = (...more: string[]) => nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--output-version', '7', ...more]);
  for (const [flag, value, expected] of [
    ['--hold-out', '0', 'expected a number above 0 and below 1'],
    ['--output-version', '0', 'expected a version number: 1, 2, …'],
    ['--ranges', '50', 'expected a number above 50 and up to 100'],
  ]) {
    const refused = await quantize(flag, value);
    assert.equal(refused.code, 2);
    assert.ok(refused.stderr.includes(`option '${flag} <`) && refused.stderr.includes(`argument '${value}' is invalid. ${expected}`), refused.stderr);
  }
  const most = await quantize('--hold-out', '0.99', '--method', 'fp16');
  assert.equal(most.code, 2);
  assert.match(most.stderr, /--hold-out 0\.99: of 150 example\(s\) it leaves 1 to calibrate on; calibration needs at least 5/);
  await assert.rejects(stat(join(repository, 'fashion_mnist', '7')));
});

test('the --version quantized is the only one loaded: an empty version folder beside it does not stop the run', async (t) => {
  const model = join(repository, 'fashion_mnist');
  await mkdir(join(model, '11'));
  t.after(() => Promise.all(['11', '13'].map((version) => rm(join(model, version), { recursive: true, force: true }))));
  const { code, stdout, stderr } = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--method', 'fp16', '--output-version', '13', '--json']);
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /11\/model\.onnx/);
  assert.equal((JSON.parse(stdout) as QuantizeReport).agreement.agreement, 1);
  await stat(join(model, '13', 'model.onnx'));
});

test('the hint to profile the new version names it and the repository written into, so following it cannot replace another profile', async (t) => {
  const model = join(repository, 'fashion_mnist');
  t.after(() => rm(join(model, '14'), { recursive: true, force: true }));
  const { code, stdout, stderr } = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--method', 'fp16', '--output-version', '14']);
  assert.equal(code, 0, stderr);
  assert.ok(
    stdout.includes(`version 14 has no reference profile, where version 1 has one: build it so the new version is monitored too: nereid profile --model fashion_mnist --version 14 --model-repository ${repository} --data <in-distribution data>`),
    stdout,
  );
});

test('fp16 halves the file and agrees entirely; dynamic quantizes only the classifier, leaving the convolutions float, and warns that batch-mates change its answers', async () => {
  const fp16 = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--method', 'fp16', '--output-version', '3', '--json']);
  assert.equal(fp16.code, 0, fp16.stderr);
  const halved = JSON.parse(fp16.stdout) as QuantizeReport;
  assert.ok(halved.sizes.ratio > 0.45 && halved.sizes.ratio < 0.55, `fp16 size ratio ${halved.sizes.ratio}`);
  assert.equal(halved.agreement.agreement, 1);
  assert.equal(halved.calibration.ranges, undefined, 'fp16 needs no activation ranges');
  assert.equal(JSON.parse(await readFile(join(repository, 'fashion_mnist', '3', 'quantization.json'), 'utf8')).method, 'fp16');

  const dynamic = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--method', 'dynamic', '--output-version', '4', '--json']);
  assert.equal(dynamic.code, 0, dynamic.stderr);
  const report = JSON.parse(dynamic.stdout) as QuantizeReport;
  assert.equal(report.quantizedNodes.length, 1);
  assert.match(report.quantizedNodes[0], /Gemm/);
  assert.equal(report.floatNodes.length, 2);
  assert.ok(report.floatNodes.every((entry) => /Conv/.test(entry.node)));
  assert.match(dynamic.stderr, /warning: version 4 is dynamic int8: .* a request's answer can change with the requests batched with it/);
  assert.doesNotMatch(fp16.stderr, /dynamic int8/);
});

test('auto keeps the costliest nodes float until the gate holds, and writes nothing when only an all-float model meets it', async () => {
  const { code, stdout } = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--method', 'auto', '--gate', 'max_abs_delta<=0.0001', '--output-version', '9', '--json']);
  assert.equal(code, 1);
  const report = JSON.parse(stdout) as QuantizeReport;
  assert.deepEqual(report.search!.map((step) => step.floatNodes), [0, 1, 2, 3]);
  assert.deepEqual(report.search!.map((step) => step.passed), [false, false, false, true]);
  assert.deepEqual(report.decision, { written: false, reason: 'kept float: the gate holds only with every node float' });
  await assert.rejects(stat(join(repository, 'fashion_mnist', '9')), /ENOENT/);
});

test('a static version that misses the gate is not written, and the command exits 1 saying which clause failed', async () => {
  const { code, stdout } = await nereid(['quantize', '--model', 'fashion_mnist', '--model-repository', repository, '--calibration', join(work, 'calibration'), '--version', '1', '--gate', 'max_abs_delta<=0', '--output-version', '8']);
  assert.equal(code, 1);
  assert.match(stdout, /no version written — the gate "max_abs_delta<=0" failed on the held-out examples: max_abs_delta<=0: measured max_abs_delta = \d+\.\d+/);
  await assert.rejects(stat(join(repository, 'fashion_mnist', '8')), /ENOENT/);
});

/** A repository of one tiny CNN, whose static int8 version (QDQ nodes around 90 weights) is about three times its float file, and 40 tensors to calibrate it on. */
async function tinyRepository(name: string): Promise<{ repo: string; calibration: string; model: string }> {
  const repo = join(work, name);
  await writeModel(repo, 'cnn', 1, smallCnnModel());
  const random = mulberry32(7);
  const calibration = join(work, `${name}.jsonl`);
  await writeFile(calibration, Array.from({ length: 40 }, () => `${JSON.stringify({ image: Array.from({ length: 784 }, random) })}\n`).join(''));
  return { repo, calibration, model: join(repo, 'cnn') };
}

const tinyFlags = (repo: string, calibration: string) => ['quantize', '--model-repository', repo, '--model', 'cnn', '--calibration', calibration, '--min-gate-examples', '1', '--gate', 'agreement>=0'];

test('a write that fails midway (file too large) leaves no version folder for the server to load, and the next run writes the version whole', async () => {
  const { repo, calibration, model } = await tinyRepository('failing-write');
  // A real failure of the final write: files are limited to 2 KiB, which the normalised model (~1 KB) fits and the
  // int8 model (~3 KB) does not (Node ignores SIGXFSZ, so the write fails with EFBIG). The child's own TMPDIR keeps
  // the compile cache it cannot write whole out of the one other runs read.
  const tmp = join(work, 'failing-write-tmp');
  await mkdir(tmp);
  const cli = [process.execPath, ...NEREID_COMMAND, ...tinyFlags(repo, calibration)];
  const failed = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile('bash', ['-c', 'ulimit -f 2 && exec "$@"', 'bash', ...cli], { cwd: ROOT, env: { ...process.env, TMPDIR: tmp }, timeout: 180_000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stderr }),
    ),
  );
  assert.equal(failed.code, 2, failed.stderr);
  assert.match(failed.stderr, /writing version 2 of 'cnn' failed, so nothing was written \(no version folder is left\): EFBIG/);
  assert.deepEqual(await readdir(model), ['1'], 'neither a version folder nor the temporary one it was written in');

  const written = await nereid([...tinyFlags(repo, calibration), '--json']);
  assert.equal(written.code, 0, written.stderr);
  assert.equal((JSON.parse(written.stdout) as QuantizeReport).outputVersion, '2');
  assert.deepEqual((await readdir(model)).sort(), ['1', '2']);
  assert.deepEqual((await readdir(join(model, '2'))).sort(), ['model.onnx', 'quantization.json']);
});

test('a version another run writes while this one quantizes is left alone: the next free one is taken, or a chosen --output-version fails saying so', async () => {
  const { repo, calibration, model } = await tinyRepository('concurrent');
  /** A logger whose "loaded" line (the versions are counted by then) makes another run's version 2 appear, as a second quantize would. */
  const logged: string[] = [];
  const otherRunWritesVersion2 = () =>
    pino({ level: 'info' }, {
      write(line: string) {
        logged.push(line);
        if (!line.includes("loaded model 'cnn' version 1")) return;
        mkdirSync(join(model, '2'));
        copyFileSync(join(model, '1', 'model.onnx'), join(model, '2', 'model.onnx'));
      },
    });
  const options = { modelRepository: repo, model: 'cnn', calibration, minGateExamples: 1, gate: 'agreement>=0' };
  const phases: string[] = [];
  const report = await runQuantize(options, otherRunWritesVersion2(), (phase) => phases.push(phase));
  assert.equal(report.outputVersion, '3');
  // Each step is said as it starts (the CLI prints them on stderr): a long run is not silent.
  assert.deepEqual(
    phases.map((phase) => phase.replace(/\d+/g, 'N').split(' ').slice(0, 3).join(' ')),
    ['reading up to', 'N examples: N', 'calibrating activation ranges', 'comparing and timing'],
  );
  assert.ok(logged.some((line) => line.includes("version 2 of 'cnn' was written by another run meanwhile; this one is version 3")), logged.join(''));
  assert.equal(report.path, join(model, '3'));
  assert.deepEqual(await readdir(join(model, '2')), ['model.onnx'], "the other run's version is untouched");
  assert.equal(JSON.parse(await readFile(join(model, '3', 'quantization.json'), 'utf8')).outputVersion, '3');

  await rm(join(model, '2'), { recursive: true });
  await assert.rejects(
    runQuantize({ ...options, version: '1', outputVersion: '2' }, otherRunWritesVersion2()),
    /version 2 of 'cnn' appeared while this run quantized \(another nereid quantize\?\); it was left as it is and nothing was written: choose another --output-version/,
  );
  assert.deepEqual(await readdir(join(model, '2')), ['model.onnx']);
  assert.deepEqual((await readdir(model)).sort(), ['1', '2', '3']);
});

test("--keep-float leaves the named nodes float whatever the method (ONNX Runtime's nodes_to_exclude), and a name the model lacks is refused listing the nodes it has", async () => {
  const { repo, calibration, model } = await tinyRepository('keep-float');
  const options = { modelRepository: repo, model: 'cnn', calibration, minGateExamples: 1, gate: 'agreement>=0' };
  const refused = await runQuantize({ ...options, keepFloat: ['conv9'] }, pino({ level: 'silent' })).then(
    () => assert.fail('an unknown node was accepted'),
    (error: Error) => error.message,
  );
  const listed = /^--keep-float 'conv9': no such node in 'cnn' version 1; its Conv, MatMul and Gemm nodes: (.+)$/.exec(refused);
  assert.ok(listed, refused);
  const nodes = listed[1].split(', ');
  assert.ok(nodes.length >= 2, refused);
  assert.deepEqual(await readdir(model), ['1'], 'refused before anything was written');

  // Comma-separated and repeated, the flag adds up (the tiny CNN has a Conv and a Gemm: the first is kept float).
  const [kept, ...others] = nodes;
  const written = await nereid([...tinyFlags(repo, calibration), '--keep-float', `${kept},${kept}`, '--keep-float', kept, '--json']);
  assert.equal(written.code, 0, written.stderr);
  const report = JSON.parse(written.stdout) as QuantizeReport;
  assert.deepEqual(report.floatNodes, [{ node: kept, reason: 'kept float by --keep-float' }]);
  assert.deepEqual(report.quantizedNodes, others);
});
