/**
 * `nereid eval` end to end on real data: Fashion-MNIST test images written as PNG into a folder per
 * class, two versions of the bundled model (the same weights twice, so they must agree entirely),
 * the report's figures consistent with each other, the gate's exit codes, and the chart --plot writes.
 */
import assert from 'node:assert/strict';
import { access, cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { classFolderName, comparisonChartSvg, readLabelledImages, runEval, type ClassificationReport, type EvalReport } from '../src/eval/index.js';
import { identityModel, writeModel } from '../src/onnx/test-models.js';
import { runCli } from './support/cli-server.js';
import { runMonitor } from '../src/tools/reference-profiling.js';
import { readFashionMnist, writeFashionMnistPngs } from './support/fashion-mnist.js';
import { HF_IMAGE_SCHEMA, writeParquet } from './support/parquet-fixtures.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const COUNT = 200;

let work: string;
let repository: string;
let data: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'nereid-eval-'));
  repository = join(work, 'models');
  data = join(work, 'data');
  const model = join(repository, 'fashion_mnist');
  // Version 2 here is version 1 copied, not the bundled int8 version 2 (left out), so the two must agree entirely.
  await cp(join(ROOT, 'models', 'fashion_mnist'), model, { recursive: true, filter: (source) => !/fashion_mnist\/2$/.test(source) });
  await cp(join(model, '1'), join(model, '2'), { recursive: true });
  const labels = (await readFile(join(model, 'labels.txt'), 'utf8')).trim().split('\n');
  await writeFashionMnistPngs(data, 't10k', COUNT, (label) => classFolderName(labels[label]));
});

after(() => rm(work, { recursive: true, force: true }));

const nereid = (args: string[]) => runCli(args, 120_000);

/** Version 1's scores on the folder of images, kept by the first test for the Parquet file of the same images. */
let folderScores: ClassificationReport | undefined;

const evalArgs = (...more: string[]) => ['eval', '--model', 'fashion_mnist', '--model-repository', repository, '--data', data, '--versions', '1,2', ...more];

test('two versions scored on real labelled images: consistent figures, full agreement, the gate passes with exit 0', async () => {
  const chart = join(work, 'passed.svg');
  const { code, stdout, stderr } = await nereid(evalArgs('--json', '--top-k', '3', '--gate', 'agreement>=0.99,accuracy_drop<=0', '--plot', chart));
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as EvalReport;
  // Said where the report's JSON is not.
  assert.ok(stderr.split('\n').includes(`wrote ${chart}`), stderr);
  // The chart --plot wrote is the one the report draws.
  assert.equal(await readFile(chart, 'utf8'), comparisonChartSvg(report));
  assert.equal(report.examples, COUNT);
  assert.deepEqual(report.versions.map((version) => version.version), ['1', '2']);
  for (const version of report.versions) {
    const classification = version.classification!;
    const total = classification.confusion.flat().reduce((sum, value) => sum + value, 0);
    const diagonal = classification.confusion.reduce((sum, row, index) => sum + row[index], 0);
    assert.equal(total, COUNT);
    assert.equal(classification.top1Accuracy, diagonal / COUNT);
    assert.ok(classification.topKAccuracy >= classification.top1Accuracy);
    // The bundled model scores 91.9 % on the whole test set.
    assert.ok(classification.top1Accuracy > 0.85, `top-1 ${classification.top1Accuracy}`);
    assert.ok(classification.ece >= 0 && classification.ece < 0.1, `ECE ${classification.ece}`);
  }
  assert.equal(report.versions[0].classification!.top1Accuracy, report.versions[1].classification!.top1Accuracy);
  folderScores = report.versions[0].classification;
  assert.equal(report.versions[1].agreement?.agreement, 1);
  assert.equal(report.versions[1].agreement?.maxAbsDelta, 0);
  assert.deepEqual(report.gate, { spec: 'agreement>=0.99,accuracy_drop<=0', passed: true, failures: [], measured: { 'agreement>=0.99': 1, 'accuracy_drop<=0': 0 } });
});

test('the same images as a Hugging Face Parquet file (image struct, int64 label, several row groups) score exactly as the folder does', async () => {
  const { labels } = await readFashionMnist('t10k', COUNT);
  const names = (await readFile(join(repository, 'fashion_mnist', 'labels.txt'), 'utf8')).trim().split('\n');
  // The very PNG files of the folder, so that any difference is the reader's.
  const pngs = await Promise.all(labels.map((label, index) => readFile(join(data, classFolderName(names[label]), `${index}.png`))));
  const parquet = await writeParquet(
    join(work, 'test-00000-of-00001.parquet'),
    [
      { name: 'image', data: pngs.map((png, index) => ({ bytes: new Uint8Array(png), path: `${index}.png` })) },
      { name: 'label', data: labels.map(BigInt) },
    ],
    { schema: HF_IMAGE_SCHEMA, rowGroupSize: 64 },
  );
  const silent = pino({ level: 'silent' });
  const evaluate = (from: string) => runEval({ model: 'fashion_mnist', modelRepository: repository, data: from, versions: ['1'] }, silent);
  const fromParquet = await evaluate(parquet);
  assert.equal(fromParquet.examples, COUNT);
  folderScores ??= (await evaluate(data)).versions[0].classification!;
  const parquetScores = fromParquet.versions[0].classification!;
  assert.ok(parquetScores.top1Accuracy > 0.85, `top-1 ${parquetScores.top1Accuracy}`);
  assert.equal(parquetScores.top1Accuracy, folderScores.top1Accuracy);
  assert.deepEqual(parquetScores.confusion, folderScores.confusion);
  assert.ok(Math.abs(parquetScores.ece - folderScores.ece) < 1e-6, `ECE ${parquetScores.ece} against ${folderScores.ece}`);
  // monitor reads the label column as it reads class folders: the accuracy reached, said as from the label column.
  const monitored = await runMonitor({ model: 'fashion_mnist', modelRepository: repository, version: '1', data: parquet }, silent);
  assert.equal(monitored.realisedAccuracy, parquetScores.top1Accuracy);
  assert.equal(monitored.realisedAccuracyFrom, 'label column');
});

test('a gate the candidate misses exits 1 and says which clause; the table names every class; --plot still writes the chart', async () => {
  const chart = join(work, 'failed.png');
  const { code, stdout } = await nereid(evalArgs('--gate', 'accuracy>=0.9999', '--plot', chart));
  assert.equal(code, 1);
  assert.match(stdout, /gate "accuracy>=0\.9999": FAILED\n  accuracy>=0\.9999: measured accuracy = 0\.\d+/);
  assert.match(stdout, /\| Ankle boot \| /);
  assert.ok(stdout.endsWith(`\nwrote ${chart}\n`), stdout);
  const png = await readFile(chart);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const metadata = await sharp(png).metadata();
  assert.equal(metadata.format, 'png');
  // The chart is 960 wide, rendered at twice its size.
  assert.equal(metadata.width, 1920);
});

test('a version folder not named in --versions is not loaded: an empty one beside them does not stop the evaluation', async (t) => {
  const empty = join(repository, 'fashion_mnist', '11');
  await mkdir(empty);
  t.after(() => rm(empty, { recursive: true, force: true }));
  const { code, stdout, stderr } = await nereid(evalArgs('--json'));
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /11\/model\.onnx/);
  assert.deepEqual((JSON.parse(stdout) as EvalReport).versions.map((version) => version.version), ['1', '2']);
});

test('--plot to a file that is neither .svg nor .png is refused before any evaluation, naming both', async () => {
  const chart = join(work, 'chart.jpg');
  const { code, stdout, stderr } = await nereid(evalArgs('--plot', chart));
  assert.equal(code, 2);
  assert.match(stderr, /\.svg \(vector\) or \.png \(image\); '.*chart\.jpg' ends in '\.jpg'/);
  assert.equal(stdout, '', 'no report: nothing was evaluated');
  await assert.rejects(access(chart));
  const nowhere = await nereid(evalArgs('--plot', join(work, 'no-such-folder', 'chart.png')));
  assert.equal(nowhere.code, 2);
  assert.match(nowhere.stderr, /no-such-folder\/chart\.png: its folder does not exist or cannot be written/);
  assert.equal(nowhere.stdout, '');
  // A folder named like a chart, and a folder where no file can be made even by root.
  const folder = join(work, 'folder.svg');
  await mkdir(folder);
  for (const plot of [folder, `${folder}/`]) {
    const refused = await nereid(evalArgs('--plot', plot));
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--plot .*folder\.svg\/?: is a folder; expected a file name, e.g. .*folder\.svg\/chart\.svg/);
    assert.equal(refused.stdout, '');
  }
  const proc = await nereid(evalArgs('--plot', '/proc/chart.svg'));
  assert.equal(proc.code, 2);
  assert.match(proc.stderr, /--plot \/proc\/chart\.svg: its folder does not exist or cannot be written/);
  assert.equal(proc.stdout, '');
});

test('a --top-k above the number of classes is refused before any evaluation, instead of being lowered to it unsaid', async () => {
  const { code, stdout, stderr } = await nereid(evalArgs('--top-k', '11'));
  assert.equal(code, 2);
  assert.match(stderr, /--top-k 11: output 'logits' of 'fashion_mnist' has 10 classes, so top-11 accuracy would count every example right; give at most 10/);
  assert.equal(stdout, '');
});

test('--versions quotes a version that is not one; a model the repository lacks is named with those it has', async () => {
  const versions = await nereid(evalArgs().map((arg) => (arg === '1,2' ? '1,v2' : arg)));
  assert.equal(versions.code, 2);
  assert.match(versions.stderr, /--versions: 'v2' is not a version: a version is a positive integer/);
  const model = await nereid(evalArgs().map((arg) => (arg === 'fashion_mnist' ? 'fashion_mnst' : arg)));
  assert.equal(model.code, 2);
  assert.match(model.stderr, /no model 'fashion_mnst' in the repository \S+ \(it has fashion_mnist\)/);
});

test('a gate bound a share cannot reach is refused before any evaluation, saying what it likely meant', async () => {
  const { code, stdout, stderr } = await nereid(evalArgs('--gate', 'agreement>=99'));
  assert.equal(code, 2);
  assert.match(stderr, /--gate clause 'agreement>=99': agreement is a share from 0 to 1 \(0 % to 100 %\): did you mean 0\.99 \(or 99%\)\?/);
  assert.equal(stdout, '');
});

test('images without class folders are compared by agreement alone; a gate on accuracy then fails as not measured', async () => {
  const unlabelled = join(work, 'unlabelled');
  await mkdir(unlabelled);
  for (const folder of (await readdir(data)).slice(0, 3)) {
    for (const file of await readdir(join(data, folder))) await cp(join(data, folder, file), join(unlabelled, `${folder}-${file}`));
  }
  const images = (await readdir(unlabelled)).length;
  const { code, stdout } = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', repository, '--data', unlabelled, '--versions', '1,2', '--json', '--gate', 'agreement>=0.99,accuracy_drop<=0']);
  assert.equal(code, 1);
  const report = JSON.parse(stdout) as EvalReport;
  assert.equal(report.examples, images);
  assert.ok(report.versions.every((version) => version.classification === undefined));
  assert.equal(report.versions[1].agreement?.agreement, 1);
  assert.deepEqual(report.gate?.failures, ["accuracy_drop<=0: accuracy_drop was not measured (the data are unlabelled (images directly in the --data folder, or records without a 'label' field), so nothing was scored against labels; give a sub-folder per class or a 'label' field to measure it)"]);
});

test('a classifier without a labels file is compared by top-1 agreement on unlabelled images; class folders are refused, saying why', async () => {
  const bare = join(work, 'bare-models', 'fashion_mnist');
  await cp(join(repository, 'fashion_mnist'), bare, { recursive: true });
  const config = await readFile(join(bare, 'config.yaml'), 'utf8');
  await writeFile(join(bare, 'config.yaml'), config.replace(/^\s*label_filename: labels.txt\n/m, ''));
  const unlabelled = join(work, 'unlabelled');
  const { code, stdout, stderr } = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', dirname(bare), '--data', unlabelled, '--versions', '1,2', '--json', '--gate', 'agreement>=0.99']);
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as EvalReport;
  assert.equal(report.kind, 'classification');
  assert.equal(report.classes, undefined);
  assert.equal(report.versions[1].agreement?.measure, 'top-1');
  assert.equal(report.versions[1].agreement?.agreement, 1);
  const folders = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', dirname(bare), '--data', data, '--versions', '1,2']);
  assert.equal(folders.code, 2);
  assert.match(folders.stderr, /has class sub-folders, but the model has no labels file to name its classes/);
});

test('a labels file shorter than the output is refused naming both counts, and warned of when the model loads', async () => {
  const short = join(work, 'short-labels');
  await cp(join(repository, 'fashion_mnist'), join(short, 'fashion_mnist'), { recursive: true, filter: (source) => !/fashion_mnist\/(2|11)$/.test(source) });
  const labels = (await readFile(join(short, 'fashion_mnist', 'labels.txt'), 'utf8')).trim().split('\n');
  await writeFile(join(short, 'fashion_mnist', 'labels.txt'), `${labels.slice(0, 5).join('\n')}\n`);
  const { code, stdout, stderr } = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', short, '--data', data]);
  assert.equal(code, 2);
  assert.equal(stdout, '');
  assert.match(stderr, /output 'logits' has 10 scores but its labels file labels\.txt names 5 classes; classes 5\.\.9 are answered by their index/);
  assert.match(stderr, /nereid: output 'logits' of 'fashion_mnist' has 10 scores but its labels file labels\.txt has 5 lines; give it one line per score, in index order/);
  // profile counts class shares by the same labels: refused the same way, before it reads the data.
  const profiled = await nereid(['profile', '--model', 'fashion_mnist', '--model-repository', short, '--data', data]);
  assert.notEqual(profiled.code, 0, profiled.stderr);
  assert.match(profiled.stderr, /nereid: output 'logits' of 'fashion_mnist' has 10 scores but its labels file labels\.txt has 5 lines; give it one line per score, in index order/);
});

test('class folders and images that are symbolic links are read as what they point to, not left out unsaid', async () => {
  const labels = (await readFile(join(repository, 'fashion_mnist', 'labels.txt'), 'utf8')).trim().split('\n');
  const folders = (await readdir(data)).sort();
  assert.equal(folders.length, 10);
  const linked = join(work, 'linked-classes');
  await mkdir(linked);
  // Nine class folders linked in, one real (holding linked images and a real one).
  for (const folder of folders.slice(1)) await symlink(join(data, folder), join(linked, folder));
  const real = join(linked, folders[0]);
  await mkdir(real);
  const images = (await readdir(join(data, folders[0]))).sort();
  for (const [index, image] of images.entries()) {
    if (index === 0) await cp(join(data, folders[0], image), join(real, image));
    else await symlink(join(data, folders[0], image), join(real, image));
  }
  const original = await readLabelledImages(data, labels);
  const read = await readLabelledImages(linked, labels);
  assert.equal(read.files.length, COUNT);
  assert.deepEqual(read.files.map((file) => [file.path.slice(linked.length), file.label]), original.files.map((file) => [file.path.slice(data.length), file.label]));
  // Images without class folders, every one a link.
  const loose = join(work, 'linked-images');
  await mkdir(loose);
  for (const image of images) await symlink(join(data, folders[0], image), join(loose, image));
  assert.equal((await readLabelledImages(loose, labels)).files.length, images.length);
});

test('a class folder that names no label of the model is refused, naming the labels', async () => {
  await mkdir(join(data, 'Hat'));
  try {
    const { code, stderr } = await nereid(evalArgs());
    assert.equal(code, 2);
    assert.match(stderr, /folder\(s\) 'Hat' name no class of the model; its classes: T-shirt_top, Trouser/);
  } finally {
    await rm(join(data, 'Hat'), { recursive: true });
  }
});

test('images beside the class folders are refused rather than left out of the figures unsaid', async () => {
  const [folder] = await readdir(data);
  const [image] = await readdir(join(data, folder));
  await cp(join(data, folder, image), join(data, 'stray.png'));
  try {
    const { code, stderr } = await nereid(evalArgs());
    assert.equal(code, 2);
    assert.match(stderr, /has class sub-folders and also 1 image\(s\) beside them \(stray\.png\), which no folder labels/);
  } finally {
    await rm(join(data, 'stray.png'));
  }
});

test('a CSV of tensors with a label column is scored exactly: an identity "classifier" whose scores are its inputs', async () => {
  const csvRepository = join(work, 'csv-models');
  const config = 'max_batch_size: 8\ninput { name: "INPUT0" data_type: TYPE_FP32 dims: [3] }\noutput { name: "OUTPUT0" data_type: TYPE_FP32 dims: [3] label_filename: "labels.txt" }\n';
  for (const version of [1, 2]) await writeModel(csvRepository, 'pick', version, identityModel('float32'), config, { 'labels.txt': 'cat\ndog\nbird\n' });
  // Rows 1-3 are right (argmax = label), row 4 is not: top-1 3/4; labels by name and by index.
  const csv = join(work, 'scores.csv');
  await writeFile(csv, 'INPUT0.0,INPUT0.1,INPUT0.2,label\n9,1,1,cat\n1,9,1,1\n1,1,9,bird\n9,1,1,dog\n');
  const { code, stdout, stderr } = await nereid(['eval', '--model', 'pick', '--model-repository', csvRepository, '--data', csv, '--versions', '1,2', '--json', '--gate', 'accuracy>=0.75,agreement>=1', '--min-gate-examples', '4']);
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as EvalReport;
  assert.equal(report.kind, 'classification');
  assert.equal(report.examples, 4);
  assert.equal(report.versions[0].classification!.top1Accuracy, 0.75);
  assert.deepEqual(report.versions[0].classification!.confusion, [[1, 0, 0], [1, 1, 0], [0, 0, 1]]);
  assert.deepEqual(report.versions[0].classification!.perClass.map((metrics) => metrics.class), ['cat', 'dog', 'bird']);
  assert.equal(report.versions[1].agreement!.agreement, 1);
  // Without lowering the minimum, four examples cannot pass a gate, and a version compared with itself is refused.
  const few = await nereid(['eval', '--model', 'pick', '--model-repository', csvRepository, '--data', csv, '--versions', '1,2', '--json', '--gate', 'accuracy>=0.75,agreement>=1']);
  assert.equal(few.code, 1);
  assert.match((JSON.parse(few.stdout) as EvalReport).gate!.failures[0], /^judged on 4 example\(s\), fewer than the 30 a gate needs/);
  // Gzipped, the same file scores the same.
  await writeFile(`${csv}.gz`, gzipSync(await readFile(csv)));
  const gzipped = await runEval({ model: 'pick', modelRepository: csvRepository, data: `${csv}.gz`, versions: ['1'] }, pino({ level: 'silent' }));
  assert.deepEqual(gzipped.versions[0].classification, report.versions[0].classification);
  const itself = await nereid(['eval', '--model', 'pick', '--model-repository', csvRepository, '--data', csv, '--versions', '2,2']);
  assert.equal(itself.code, 2);
  assert.equal(itself.stderr.trim(), 'nereid: --versions: a version is named twice; a version compared with itself passes any gate');

  await writeFile(csv, 'INPUT0.0,INPUT0.1,INPUT0.2,label\n9,1,1,cat\n1,9,1,horse\n');
  const refused = await nereid(['eval', '--model', 'pick', '--model-repository', csvRepository, '--data', csv, '--versions', '1']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /record 3: label "horse" is neither a class of the model nor an index 0\.\.2/);

  // A label column named otherwise is not guessed at, but said: the data are then judged unlabelled.
  await writeFile(csv, 'INPUT0.0,INPUT0.1,INPUT0.2,Label\n9,1,1,cat\n1,9,1,dog\n');
  const misnamed = await nereid(['eval', '--model', 'pick', '--model-repository', csvRepository, '--data', csv, '--versions', '1']);
  assert.equal(misnamed.code, 0, misnamed.stderr);
  assert.match(misnamed.stderr, /'Label' is not read as the label, which is the field or column named 'label': the data are judged unlabelled/);
  assert.match(misnamed.stdout, /unlabelled \(agreement only\)/);

  // A record the model refuses is named as a label error is, not only by what the model said.
  const jsonl = join(work, 'shapes.jsonl');
  const record = (data: number[]) => JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, data.length], data }], label: 'cat' });
  await writeFile(jsonl, `${record([9, 1, 1])}\n${record([9, 1])}\n`);
  const misshapen = await nereid(['eval', '--model', 'pick', '--model-repository', csvRepository, '--data', jsonl, '--versions', '1']);
  assert.equal(misshapen.code, 2, misshapen.stderr);
  assert.match(misshapen.stderr, new RegExp(`--data ${jsonl}, record 2: input 'INPUT0' expects`));
});

test('an output that declares its activation is scored after it once: the calibration error of a CSV of logits is that of one softmax', async () => {
  const softmaxRepository = join(work, 'softmax-models');
  const config = [
    'max_batch_size: 8',
    'input: [{ name: INPUT0, data_type: TYPE_FP32, dims: [3] }]',
    'output: [{ name: OUTPUT0, data_type: TYPE_FP32, dims: [3], label_filename: labels.txt, postprocess: { activation: softmax } }]',
    '',
  ].join('\n');
  await writeModel(softmaxRepository, 'logits', 1, identityModel('float32'), undefined, { 'config.yaml': config, 'labels.txt': 'cat\ndog\nbird\n' });
  const csv = join(work, 'logits.csv');
  await writeFile(csv, 'INPUT0.0,INPUT0.1,INPUT0.2,label\n2,0,0,cat\n');
  const { code, stdout, stderr } = await nereid(['eval', '--model', 'logits', '--model-repository', softmaxRepository, '--data', csv, '--json']);
  assert.equal(code, 0, stderr);
  const confidence = Math.exp(2) / (Math.exp(2) + 2); // 0.787; a second softmax over the probabilities would give 0.497
  const { classification } = (JSON.parse(stdout) as EvalReport).versions[0];
  assert.equal(classification!.top1Accuracy, 1);
  assert.ok(Math.abs(classification!.ece - (1 - confidence)) < 1e-4, `ECE ${classification!.ece}, expected ${1 - confidence}`);
});

test('a gate on a comparison fails when only one version was evaluated, saying to name two, instead of passing against the version itself', async () => {
  const { code, stdout } = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', repository, '--data', data, '--versions', '2', '--json', '--gate', 'accuracy>=0.5,agreement>=0.99,accuracy_drop<=0.005']);
  assert.equal(code, 1);
  const report = JSON.parse(stdout) as EvalReport;
  assert.deepEqual(report.gate?.failures, [
    'agreement>=0.99: agreement was not measured (it compares two versions, and only version 2 was evaluated; name both with --versions, e.g. --versions 1,2)',
    'accuracy_drop<=0.005: accuracy_drop was not measured (it compares two versions, and only version 2 was evaluated; name both with --versions, e.g. --versions 1,2)',
  ]);
});

test('the versions a one-version gate failure suggests exist on disk and differ, or it says there is no other', async (t) => {
  const first = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', repository, '--data', data, '--versions', '1', '--json', '--gate', 'agreement>=0.99']);
  assert.equal(first.code, 1, first.stderr);
  assert.deepEqual((JSON.parse(first.stdout) as EvalReport).gate?.failures, [
    'agreement>=0.99: agreement was not measured (it compares two versions, and only version 1 was evaluated; name both with --versions, e.g. --versions 1,2)',
  ]);
  const alone = join(work, 'one-version');
  t.after(() => rm(alone, { recursive: true, force: true }));
  await cp(join(repository, 'fashion_mnist'), join(alone, 'fashion_mnist'), { recursive: true, filter: (source) => !/fashion_mnist\/2$/.test(source) });
  const only = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', alone, '--data', data, '--versions', '1', '--json', '--gate', 'agreement>=0.99']);
  assert.equal(only.code, 1, only.stderr);
  assert.deepEqual((JSON.parse(only.stdout) as EvalReport).gate?.failures, [
    'agreement>=0.99: agreement was not measured (it compares two versions, and only version 1 was evaluated; the model has no other version on disk to compare it with (nereid quantize writes one))',
  ]);
});


test('without --versions, a version the policy names that fails to load fails the run with its reason, instead of the gate passing on an older one', async () => {
  const broken = join(work, 'broken-newest');
  const model = join(broken, 'fashion_mnist');
  await cp(join(repository, 'fashion_mnist'), model, { recursive: true });
  const config = await readFile(join(model, 'config.yaml'), 'utf8');
  assert.match(config, /^version_policy: .*$/m);
  await writeFile(join(model, 'config.yaml'), config.replace(/^version_policy: .*$/m, 'version_policy: { all: {} }'));
  await mkdir(join(model, '5'));
  await writeFile(join(model, '5', 'model.onnx'), (await readFile(join(model, '1', 'model.onnx'))).subarray(0, 1000));
  const { code, stdout, stderr } = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', broken, '--data', data, '--gate', 'agreement>=0.98,accuracy_drop<=0.005']);
  assert.notEqual(code, 0, stdout);
  assert.match(stderr, /model 'fashion_mnist': its version policy names a version that did not load[^\n]*version 5: /);
});

test('monitor says why it gives no realised accuracy when some image folders name no class', async () => {
  const folder = join(work, 'half-labelled');
  const [known, other] = (await readdir(data)).slice(0, 2);
  for (const [source, target] of [[known, known], [other, 'shoes']]) {
    await mkdir(join(folder, target!), { recursive: true });
    for (const file of (await readdir(join(data, source!))).slice(0, 5)) await cp(join(data, source!, file), join(folder, target!, file));
  }
  const monitored = await nereid(['monitor', '--model', 'fashion_mnist', '--model-repository', repository, '--data', folder]);
  assert.equal(monitored.code, 0, monitored.stderr);
  assert.match(monitored.stdout, /no realised accuracy: the folder 'shoes' names no class of the model \(its classes: T-shirt\/top, /);
  assert.doesNotMatch(monitored.stdout, /realised \(class folders\)/);
});

test('a corrupt image among many is named by its path: eval stops at it, monitor lists it and scores the others', async () => {
  const folder = join(work, 'with-corrupt');
  await mkdir(folder);
  const sources = (await readdir(data)).slice(0, 2);
  for (const source of sources) {
    for (const file of (await readdir(join(data, source))).slice(0, 10)) await cp(join(data, source, file), join(folder, `${source}-${file}`));
  }
  const whole = await readFile(join(folder, (await readdir(folder))[0]));
  const corrupt = join(folder, 'zz-truncated.png');
  await writeFile(corrupt, whole.subarray(0, Math.floor(whole.length / 2)));
  const evaluated = await nereid(['eval', '--model', 'fashion_mnist', '--model-repository', repository, '--data', folder, '--versions', '1']);
  assert.equal(evaluated.code, 2);
  assert.match(evaluated.stderr, new RegExp(`--data ${corrupt.replaceAll('/', '\\/')}: `));
  const monitored = await nereid(['monitor', '--model', 'fashion_mnist', '--model-repository', repository, '--data', folder]);
  assert.equal(monitored.code, 0, monitored.stderr);
  assert.match(monitored.stdout, /^fashion_mnist version \d+: 20 examples/);
  assert.match(monitored.stdout, /left out 1 file\(s\) that could not be read: zz-truncated\.png \(/);
});
