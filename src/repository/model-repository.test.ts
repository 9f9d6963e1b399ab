import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { OnnxRuntimeBackend } from '../backends/onnx-runtime-backend.js';
import { NereidError, type ErrorCode } from '../core/errors.js';
import type { ModelVersion } from '../model/model-version.js';
import { buildOnnxModel, buildOnnxModelWithExternalData, type ModelSpec } from '../onnx/onnx-model-builder.js';
import { accumulatorModel, addSubModel, identityModel, scaleModel, writeModel } from '../onnx/test-models.js';
import { capturingLogger } from '../../test/support/fake-backend.js';
import { RepositoryConfig } from './config-override.js';
import { checkModelName } from './model-name.js';
import { ModelRepository } from './model-repository.js';

const backend = new OnnxRuntimeBackend();
const logger = pino({ level: 'silent' });
const DEFAULT_MAX_BATCH_SIZE = 8;

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'nereid-repo-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let counter = 0;
/** A fresh, empty repository folder and a ModelRepository on it; closed when the test ends. */
async function repository(t: { after: (fn: () => Promise<void>) => void }): Promise<{ root: string; repo: ModelRepository }> {
  const root = join(scratch, `repo${counter++}`);
  await mkdir(root, { recursive: true });
  const repo = new ModelRepository({ root, backends: [backend], logger, defaultMaxBatchSize: DEFAULT_MAX_BATCH_SIZE, maxQueueSize: 16 });
  t.after(() => repo.close());
  return { root, repo };
}

function isCode(code: ErrorCode, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof NereidError, `expected a NereidError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

/** Runs the scale model once and returns the factor it multiplies by, i.e. which version served. */
async function scaleFactor(version: ModelVersion): Promise<number> {
  const response = await version.infer({
    model: version.name,
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: new Float32Array([1, 1, 1, 1]) }],
  });
  return (response.outputs[0].data as Float32Array)[0];
}

/** Writes versions 1..n of a scale model whose factor is its version number. */
async function writeVersions(root: string, name: string, versions: number[], config?: string): Promise<void> {
  for (const version of versions) await writeModel(root, name, version, scaleModel(version), config);
}

// ---------- names and discovery ----------

test('checkModelName refuses paths, parents, URLs and empty names', () => {
  for (const bad of ['..', '.', 'a/b', '/abs', 'http://x', '', 'a\\b', '.hidden', 'a..b', 'name with space', 'x'.repeat(256)]) {
    assert.throws(() => checkModelName(bad), isCode('INVALID_ARGUMENT', /invalid model name/), `'${bad}' must be refused`);
  }
  for (const good of ['simple', 'model_1.v2', 'a-b', '0', 'ResNet50', 'x'.repeat(255)]) checkModelName(good);
  // Each says the rule it breaks.
  const rules: [string, RegExp][] = [
    ['x'.repeat(300), /: a model name has at most 255 characters, this one 300$/],
    ['-rf', /^invalid model name '-rf': a model name may not start with '\.' or '-'$/],
    ['.hidden', /: a model name may not start with '\.' or '-'$/],
    ['a..b', /: a model name may not contain '\.\.'$/],
    ['', /: a model name may not be empty$/],
    ['a/b', /: use letters, digits, '_', '-' and '\.' only \(models are folders directly inside the repository\)$/],
  ];
  for (const [bad, rule] of rules) assert.throws(() => checkModelName(bad), isCode('INVALID_ARGUMENT', rule), bad);
});

test('discovery lists model folders only, sorted; index() shows them unloaded', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'zeta', 1, scaleModel());
  await writeModel(root, 'alpha', 1, scaleModel());
  await mkdir(join(root, 'empty_model'));
  await mkdir(join(root, '.git'));
  await mkdir(join(root, 'has space'));
  await writeFile(join(root, 'README.md'), 'not a model');
  assert.deepEqual(await repo.discover(), ['alpha', 'empty_model', 'zeta']);
  assert.deepEqual(await repo.index(), [{ name: 'alpha' }, { name: 'empty_model' }, { name: 'zeta' }]);
  assert.deepEqual(await repo.index(true), []);
});

test('a folder no client could name is not listed, and unservableFolders says which rule of a name it breaks, worded for a folder', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'fine', 1, scaleModel());
  for (const folder of ['has space', '-rf', 'a..b', '.git', 'lost+found']) await mkdir(join(root, folder));
  assert.deepEqual(await repo.discover(), ['fine'], "the listing keeps to the names a request may have: not 'a..b'");
  assert.deepEqual(await repo.unservableFolders(), [
    { folder: '-rf', problem: "a model name may not start with '.' or '-'" },
    { folder: 'a..b', problem: "a model name may not contain '..'" },
    { folder: 'has space', problem: "a model's name uses letters, digits, '_', '-' and '.' only, as the folder's name must" },
  ]);
});

test('while a load is under way the index says LOADING and requests are told it is loading, first load and reload after an unload alike', async (t) => {
  const { root, repo } = await repository(t);
  // Warmup runs make the load last long enough to be looked at, by the repository's own means.
  const warmup = 'model_warmup: [ { name: w, batch_size: 8, count: 200, inputs: { INPUT0: { data_type: TYPE_FP32, dims: [4], random_data: true } } } ]\n';
  await writeModel(root, 'slow', 1, scaleModel(), `max_batch_size: 8\n${warmup}`);
  for (const round of ['first load', 'after an unload']) {
    const loading = repo.load('slow');
    assert.throws(() => repo.get('slow'), isCode('NOT_FOUND', /has no available versions \(it is loading\)/), round);
    const during = await repo.index();
    assert.equal(during.length, 1);
    assert.equal(during[0].state, 'LOADING', `${round}: ${JSON.stringify(during)}`);
    assert.equal(during[0].reason, 'loading');
    assert.deepEqual(await repo.index(true), [], 'not ready while it loads');
    await loading;
    assert.deepEqual(await repo.index(), [{ name: 'slow', version: '1', state: 'READY', reason: '' }], round);
    await repo.unload('slow');
    assert.deepEqual(await repo.index(), [{ name: 'slow', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' }]);
    assert.throws(() => repo.get('slow'), isCode('NOT_FOUND', /\(it was unloaded\)/));
  }
});

test('a repository folder that does not exist is reported', async () => {
  const repo = new ModelRepository({
    root: join(scratch, 'no-such-repo'),
    backends: [backend],
    logger,
    defaultMaxBatchSize: 8,
    maxQueueSize: 1,
  });
  await assert.rejects(repo.discover(), /model repository .* does not exist/);
});

// ---------- versions ----------

test('default version policy loads only the latest version', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1, 2, 3]);
  await repo.load('m');
  assert.deepEqual(repo.versionsOf('m'), ['3']);
  assert.equal(await scaleFactor(repo.get('m')), 3);
  assert.throws(() => repo.get('m', '1'), isCode('NOT_FOUND', /version 1 is not found \(loaded: 3\)/));
});

test('latest { num_versions: 2 } loads the two highest versions; get() serves the highest', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1, 2, 3, 10], 'version_policy: { latest: { num_versions: 2 } }');
  await repo.load('m');
  assert.deepEqual(repo.versionsOf('m'), ['3', '10'], 'numeric, not lexical, order');
  assert.equal(repo.get('m').version, '10');
  assert.equal(await scaleFactor(repo.get('m')), 10);
  assert.equal(repo.get('m', '3').version, '3');
  assert.equal(await scaleFactor(repo.get('m', '3')), 3);
  assert.throws(() => repo.get('m', '2'), isCode('NOT_FOUND'));
  assert.ok(repo.isReady('m', '3'));
  assert.ok(!repo.isReady('m', '2'));
});

test('all loads every version', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1, 2, 3], 'version_policy: { all: {} }');
  await mkdir(join(root, 'm', 'not_a_version'));
  // Triton ignores version folders whose name starts with '0': '02' must not be read as version 2 (or 1/2 twice).
  await writeModel(root, 'm', 0, scaleModel(100));
  await mkdir(join(root, 'm', '02'));
  await repo.load('m');
  assert.deepEqual(repo.versionsOf('m'), ['1', '2', '3']);
  assert.deepEqual((await repo.index()).map((row) => row.state), ['READY', 'READY', 'READY']);
  for (const version of ['1', '2', '3']) assert.equal(await scaleFactor(repo.get('m', version)), Number(version));
  assert.equal(repo.get('m').version, '3');
});

test('specific { versions: [1, 3] } loads exactly those', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1, 2, 3, 4], 'version_policy: { specific: { versions: [1, 3] } }');
  await repo.load('m');
  assert.deepEqual(repo.versionsOf('m'), ['1', '3']);
  assert.equal(await scaleFactor(repo.get('m')), 3);
  assert.equal(await scaleFactor(repo.get('m', '1')), 1);
  assert.throws(() => repo.get('m', '2'), isCode('NOT_FOUND'));
  assert.throws(() => repo.get('m', '4'), isCode('NOT_FOUND'));
  const rows = await repo.index();
  assert.deepEqual(
    rows.map(({ name, version, state }) => ({ name, version, state })),
    [
      { name: 'm', version: '1', state: 'READY' },
      { name: 'm', version: '3', state: 'READY' },
    ],
  );
});

test('a specific version that has no folder is reported UNAVAILABLE while the others load; with none left the model fails naming them', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1], 'version_policy: { specific: { versions: [1, 5] } }');
  await repo.load('m');
  assert.equal(repo.get('m', '1').state, 'READY');
  assert.deepEqual((await repo.index()).find((row) => row.version === '5'), { name: 'm', version: '5', state: 'UNAVAILABLE', reason: 'version_policy names this version, which has no folder' });
  await writeVersions(root, 'n', [1], 'version_policy: { specific: { versions: [4, 5] } }');
  await assert.rejects(repo.load('n'), isCode('UNAVAILABLE', /version\(s\) 4, 5/));
});

test('a model folder without version folders is UNAVAILABLE', async (t) => {
  const { root, repo } = await repository(t);
  await mkdir(join(root, 'empty'));
  await assert.rejects(repo.load('empty'), isCode('UNAVAILABLE', /no version folders/));
});

test('get: unknown model and version are NOT_FOUND, a malformed version INVALID_ARGUMENT', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1]);
  assert.throws(() => repo.get('m'), isCode('NOT_FOUND', /unknown model: 'm'/), 'not loaded yet');
  await repo.load('m');
  assert.throws(() => repo.get('nope'), isCode('NOT_FOUND', /unknown model: 'nope'/));
  assert.throws(() => repo.get('../m'), isCode('NOT_FOUND'));
  assert.throws(() => repo.get('m', '7'), isCode('NOT_FOUND', /version 7 is not found/));
  assert.throws(() => repo.get('m', 'latest'), isCode('INVALID_ARGUMENT'));
  assert.equal(repo.get('m', '').version, '1', 'an empty version means the current one');
  await assert.rejects(repo.load('nope'), isCode('NOT_FOUND', /not in the model repository/));
  await assert.rejects(repo.load('..'), isCode('INVALID_ARGUMENT'));
  await assert.rejects(repo.load('a/b'), isCode('INVALID_ARGUMENT'));
  await assert.rejects(repo.load('/etc'), isCode('INVALID_ARGUMENT'));
});

// ---------- failures ----------

test('a broken model file is UNAVAILABLE with its reason while other models load', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'good', 1, scaleModel());
  await writeModel(root, 'broken', 1, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  const results = await Promise.allSettled([repo.load('broken'), repo.load('good')]);
  assert.equal(results[0].status, 'rejected');
  assert.equal(results[1].status, 'fulfilled');
  assert.throws(() => repo.get('broken'), isCode('NOT_FOUND', /Request for unknown model: 'broken' has no available versions: .+/));
  assert.throws(() => repo.get('broken', '1'), isCode('UNAVAILABLE', /Request for unknown model: 'broken' version 1 is not at ready state: .+/));
  assert.equal(await scaleFactor(repo.get('good')), 2);
  const rows = await repo.index();
  const broken = rows.find((row) => row.name === 'broken')!;
  assert.equal(broken.state, 'UNAVAILABLE');
  assert.equal(broken.version, '1');
  assert.ok(broken.reason && broken.reason.length > 0, 'the reason is reported');
  assert.deepEqual(
    rows.find((row) => row.name === 'good'),
    { name: 'good', version: '1', state: 'READY', reason: '' },
  );
  assert.deepEqual((await repo.index(true)).map((row) => row.name), ['good']);
  assert.deepEqual(repo.unavailableModels(), ['broken']);
});

test('a model with an invalid config is UNAVAILABLE in index() with the field named', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'good', 1, scaleModel());
  await writeModel(root, 'bad', 1, scaleModel(), 'max_batch_size: 4\ninstance_group [ { kind: KIND_TPU } ]\n');
  await assert.rejects(repo.load('bad'), isCode('UNAVAILABLE', /config\.pbtxt: instance_group\.0\.kind/));
  await repo.load('good');
  assert.deepEqual(await repo.index(), [
    { name: 'bad', state: 'UNAVAILABLE', reason: (await repo.index()).find((row) => row.name === 'bad')!.reason },
    { name: 'good', version: '1', state: 'READY', reason: '' },
  ]);
  const bad = (await repo.index()).find((row) => row.name === 'bad')!;
  assert.match(bad.reason!, /invalid config\.pbtxt: instance_group\.0\.kind/);
  assert.throws(() => repo.get('bad'), isCode('NOT_FOUND', /instance_group\.0\.kind/));
  assert.throws(() => repo.get('bad', '1'), isCode('UNAVAILABLE', /instance_group\.0\.kind/));
});

test('config syntax errors name the config file, for pbtxt, JSON and YAML', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'p', 1, scaleModel(), 'max_batch_size: 4\ninput { name: "x" \n');
  await writeModel(root, 'j', 1, scaleModel(), undefined, { 'config.json': '{"max_batch_size": 4,' });
  await writeModel(root, 'y', 1, scaleModel(), undefined, { 'config.yaml': 'max_batch_size: [4\n' });
  await writeModel(root, 'y2', 1, scaleModel(), undefined, { 'config.yaml': 'max_batch_size: [8\ninput: secret_value\n' });
  await writeModel(root, 'j2', 1, scaleModel(), undefined, { 'config.json': '{"max_batch_size": 4\n "input": []}' });
  await assert.rejects(repo.load('p'), isCode('UNAVAILABLE', /config\.pbtxt line \d+/));
  await assert.rejects(repo.load('j'), isCode('UNAVAILABLE', /config\.json: |config\.json line 1, column 22: /));
  await assert.rejects(repo.load('y'), isCode('UNAVAILABLE', /config\.yaml line 2, column 1: /));
  // One line, as pbtxt's: the file's text is neither sent to clients nor spread over the log.
  await Promise.allSettled([repo.load('y2'), repo.load('j2')]);
  const reasons = Object.fromEntries((await repo.index()).map((row) => [row.name, row.reason]));
  assert.equal(reasons.y2, 'config.yaml line 2, column 1: Flow sequence in block collection must be sufficiently indented and end with a ]');
  assert.equal(reasons.j2, "config.json line 2, column 2: Expected ',' or '}' after property value");
  assert.throws(() => repo.get('y2'), (error: Error) => !error.message.includes('secret_value') && !error.message.includes('\n'));
});

test('a config whose name differs from the folder is refused', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(), 'name: "other"');
  await assert.rejects(repo.load('m'), isCode('UNAVAILABLE', /config name 'other' differs from the model's folder name 'm'/));
});

test('an unknown backend or platform is refused naming what is available', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'b', 1, scaleModel(), 'backend: "tensorrt"');
  await writeModel(root, 'p', 1, scaleModel(), 'platform: "tensorflow_savedmodel"');
  await writeModel(root, 'ok', 1, scaleModel(), 'platform: "onnxruntime_onnx" backend: "onnxruntime"');
  await assert.rejects(repo.load('b'), isCode('UNAVAILABLE', /backend 'tensorrt'.*onnxruntime/));
  await assert.rejects(repo.load('p'), isCode('UNAVAILABLE', /platform 'tensorflow_savedmodel'/));
  await repo.load('ok');
});

// ---------- auto-complete ----------

test('no config: inputs, outputs and max_batch_size come from the ONNX model (dynamic first dim)', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'simple', 1, addSubModel());
  await repo.load('simple');
  const config = repo.get('simple').config;
  assert.equal(config.name, 'simple');
  assert.equal(config.max_batch_size, DEFAULT_MAX_BATCH_SIZE);
  assert.equal(config.backend, 'onnxruntime');
  assert.equal(config.platform, 'onnxruntime_onnx');
  assert.deepEqual(
    config.input.map(({ name, data_type, dims, optional }) => ({ name, data_type, dims, optional })),
    [
      { name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16], optional: false },
      { name: 'INPUT1', data_type: 'TYPE_INT32', dims: [16], optional: false },
    ],
  );
  assert.deepEqual(
    config.output.map(({ name, data_type, dims }) => ({ name, data_type, dims })),
    [
      { name: 'OUTPUT0', data_type: 'TYPE_INT32', dims: [16] },
      { name: 'OUTPUT1', data_type: 'TYPE_INT32', dims: [16] },
    ],
  );
  assert.deepEqual(repo.get('simple').metadata([repo.get('simple')]).inputs[0], { name: 'INPUT0', datatype: 'INT32', shape: [-1, 16] });
});

test('no config on a model with fixed dims: max_batch_size 0 and full dims', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'fixed', 1, addSubModel({ batch: false }));
  await writeModel(root, 'strings', 1, identityModel('string', [2, 'n']));
  await repo.load('fixed');
  await repo.load('strings');
  const fixed = repo.get('fixed').config;
  assert.equal(fixed.max_batch_size, 0);
  assert.deepEqual(fixed.input[0].dims, [16]);
  assert.deepEqual(fixed.output[1].dims, [16]);
  const strings = repo.get('strings').config;
  assert.equal(strings.max_batch_size, 0);
  assert.deepEqual(strings.input[0], { name: 'INPUT0', data_type: 'TYPE_STRING', dims: [2, -1], optional: false, allow_ragged_batch: false });
});

test('a partial config is completed: max_batch_size kept, missing tensors added from the model', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(
    root,
    'simple',
    1,
    addSubModel(),
    'max_batch_size: 2\ninput { name: "INPUT1" data_type: TYPE_INT32 dims: 16 }\n',
  );
  await repo.load('simple');
  const config = repo.get('simple').config;
  assert.equal(config.max_batch_size, 2);
  assert.deepEqual(
    config.input.map((input) => [input.name, input.optional]),
    [
      ['INPUT1', false],
      ['INPUT0', false],
    ],
  );
  assert.deepEqual(config.output.map((output) => output.name), ['OUTPUT0', 'OUTPUT1']);
});

test('max_batch_size: 0 on a model with a dynamic first dim keeps that dim in dims', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'simple', 1, addSubModel(), 'max_batch_size: 0');
  await repo.load('simple');
  assert.deepEqual(repo.get('simple').config.input[0].dims, [-1, 16]);
});

test('a config that contradicts the model is UNAVAILABLE with a clear reason', async (t) => {
  const { root, repo } = await repository(t);
  const cases: [string, Uint8Array, string, RegExp][] = [
    [
      'wrong_type',
      addSubModel(),
      'input { name: "INPUT0" data_type: TYPE_FP32 dims: [16] }',
      /configuration expects datatype TYPE_FP32 for input 'INPUT0', model provides TYPE_INT32/,
    ],
    [
      'wrong_output_type',
      addSubModel(),
      'output { name: "OUTPUT1" data_type: TYPE_INT64 dims: [16] }',
      /configuration expects datatype TYPE_INT64 for output 'OUTPUT1', model provides TYPE_INT32/,
    ],
    [
      'wrong_dims',
      addSubModel(),
      'max_batch_size: 4 input { name: "INPUT0" data_type: TYPE_INT32 dims: [8] }',
      /config input 'INPUT0' has dims \[8\] but the model has \[16\] after the batch dimension/,
    ],
    [
      'wrong_rank',
      addSubModel(),
      'input { name: "INPUT0" data_type: TYPE_INT32 dims: [16, 1] }',
      /config input 'INPUT0' has dims \[16,\s?1\] but the model has \[16\]/,
    ],
    [
      'unknown_input',
      addSubModel(),
      'input { name: "IMAGE" data_type: TYPE_INT32 dims: [16] }',
      /unexpected inference input 'IMAGE', allowed inputs are: INPUT0, INPUT1 \(the config names a tensor the model does not have\)/,
    ],
    [
      'optional_but_required',
      addSubModel(),
      'max_batch_size: 2\ninput { name: "INPUT1" data_type: TYPE_INT32 dims: 16 optional: true }\n',
      /config input 'INPUT1' is optional, but the model requires it: the ONNX graph gives it no default value \(no initializer\).*remove optional: true/,
    ],
    [
      'batch_on_fixed',
      addSubModel({ batch: false }),
      'max_batch_size: 4',
      /model does not support batching while non-zero max_batch_size is specified: max_batch_size 4 needs a dynamic first dimension .*'INPUT0' is \[16\].*max_batch_size: 0/,
    ],
  ];
  for (const [name, model, config] of cases) await writeModel(root, name, 1, model, config);
  await writeModel(root, 'fine', 1, addSubModel());
  for (const [name, , , reason] of cases) {
    await assert.rejects(repo.load(name), isCode('UNAVAILABLE', reason), name);
    assert.throws(() => repo.get(name), isCode('NOT_FOUND', reason), name);
    assert.match((await repo.index()).find((row) => row.name === name)!.reason!, reason, name);
  }
  await repo.load('fine');
  assert.ok(repo.isReady('fine'));
});

test('a tensor the ONNX file gives no shape (unknown rank) is no scalar: a config declares its dims, and without one the load says to', async (t) => {
  const { root, repo } = await repository(t);
  // onnxruntime reports [] for these as for a scalar; the file tells them apart.
  const shapeless = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: null }],
    outputs: [{ name: 'y', type: 'float32', shape: null }],
    nodes: [{ opType: 'Neg', inputs: ['x'], outputs: ['y'] }],
  });
  const reshaped = buildOnnxModel({
    inputs: [{ name: 'x', type: 'float32', shape: ['b', 6] }, { name: 'shape', type: 'int64', shape: [2] }],
    outputs: [{ name: 'y', type: 'float32', shape: null }],
    nodes: [{ opType: 'Reshape', inputs: ['x', 'shape'], outputs: ['y'] }],
  });
  await writeModel(root, 'unknown_in', 1, shapeless);
  await writeModel(root, 'unknown_out', 1, reshaped);
  await writeModel(root, 'declared', 1, shapeless, 'input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]\n');
  await writeModel(root, 'declared_batched', 1, shapeless, 'max_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]\n');
  await writeModel(root, 'declared_out', 1, reshaped, 'output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]\n');
  await assert.rejects(repo.load('unknown_in'), isCode('UNAVAILABLE', /gives input 'x' and output 'y' no shape \(the rank is unknown, not a scalar\).*declare their data_type and dims in the config/));
  await assert.rejects(repo.load('unknown_out'), isCode('UNAVAILABLE', /gives output 'y' no shape .*declare its data_type and dims/));
  await repo.load('declared');
  const declared = repo.get('declared');
  assert.equal(declared.config.max_batch_size, 0);
  const negated = await declared.infer({ model: 'declared', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }] });
  assert.deepEqual(negated.outputs[0].shape, [2, 3]);
  assert.deepEqual([...(negated.outputs[0].data as Float32Array)], [-1, -2, -3, -4, -5, -6]);
  await repo.load('declared_batched');
  assert.equal(repo.get('declared_batched').config.max_batch_size, 4);
  const batched = await repo.get('declared_batched').infer({ model: 'declared_batched', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: new Float32Array(6).fill(1) }] });
  assert.deepEqual(batched.outputs[0].shape, [2, 3]);
  await repo.load('declared_out');
  const config = repo.get('declared_out').config;
  assert.equal(config.max_batch_size, 0, 'an output of unknown rank shows no batch dimension to complete');
  assert.deepEqual(config.output[0].dims, [-1, -1]);
  assert.deepEqual(config.input.map((input) => input.dims), [[-1, 6], [2]]);
});

test('a -1 in the model accepts a concrete dim in the config; reshape is compared instead of dims', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'id', 1, identityModel('float32', ['batch', 'n']), 'max_batch_size: 4 input { name: "INPUT0" data_type: TYPE_FP32 dims: [6] }');
  await writeModel(
    root,
    'reshaped',
    1,
    addSubModel(),
    'max_batch_size: 4 input { name: "INPUT0" data_type: TYPE_INT32 dims: [4, 4] reshape: { shape: [16] } }',
  );
  await repo.load('id');
  await repo.load('reshaped');
  assert.deepEqual(repo.get('id').config.input[0].dims, [6]);
  const response = await repo.get('reshaped').infer({
    model: 'reshaped',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 4, 4], data: new Int32Array(16).fill(3) },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: new Int32Array(16).fill(1) },
    ],
    outputs: [{ name: 'OUTPUT0' }],
  });
  assert.deepEqual([...(response.outputs[0].data as Int32Array)], new Array(16).fill(4));
});

// ---------- files named by the config ----------

test('default_model_filename and label_filename that escape their folder are refused', async (t) => {
  const { root, repo } = await repository(t);
  await writeFile(join(scratch, 'outside.onnx'), scaleModel());
  await writeFile(join(scratch, 'outside.txt'), 'secret\n');
  const cases: [string, string, RegExp][] = [
    ['parent_model', 'default_model_filename: "../../outside.onnx"', /default_model_filename '\.\.\/\.\.\/outside\.onnx' must be a relative path/],
    ['parent_model2', 'default_model_filename: "../x"', /default_model_filename '\.\.\/x' must be a relative path/],
    ['abs_model', `default_model_filename: "${join(scratch, 'outside.onnx')}"`, /default_model_filename '\/.*' must be a relative path/],
    ['dot_model', 'default_model_filename: "."', /default_model_filename '\.' must be a relative path/],
    [
      'parent_labels',
      'output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] label_filename: "../../outside.txt" }',
      /label_filename '\.\.\/\.\.\/outside\.txt' must be a relative path/,
    ],
    [
      'abs_labels',
      `output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] label_filename: "${join(scratch, 'outside.txt')}" }`,
      /label_filename '\/.*' must be a relative path/,
    ],
  ];
  for (const [name, config, reason] of cases) {
    await writeModel(root, name, 1, scaleModel(), config);
    await assert.rejects(repo.load(name), isCode('UNAVAILABLE', reason), name);
  }
});

test('default_model_filename and label_filename inside the model folder work', async (t) => {
  const { root, repo } = await repository(t);
  await mkdir(join(root, 'custom', '1'), { recursive: true });
  await writeFile(join(root, 'custom', '1', 'net.onnx'), scaleModel(5));
  await writeFile(
    join(root, 'custom', 'config.yaml'),
    'default_model_filename: net.onnx\noutput: {name: OUTPUT0, data_type: FP32, dims: [4], label_filename: "..labels.txt"}\n',
  );
  await writeFile(join(root, 'custom', '..labels.txt'), 'a\r\nb\r\nc\r\nd\r\n');
  await repo.load('custom');
  assert.equal(await scaleFactor(repo.get('custom')), 5);
  assert.deepEqual(repo.get('custom').labelsOf('OUTPUT0'), ['a', 'b', 'c', 'd']);
  // The default filename is then missing: the reason says which file.
  await writeModel(root, 'missing', 1, scaleModel(), 'default_model_filename: "other.onnx"');
  // Named relative to the repository: clients never see the server's absolute paths.
  // The ONNX file the folder does hold is named, with the two ways to make it the model file.
  await assert.rejects(
    repo.load('missing'),
    isCode('UNAVAILABLE', /default_model_filename 'other\.onnx': missing\/1\/other\.onnx does not exist; the folder holds model\.onnx: rename it to other\.onnx or set default_model_filename: model\.onnx in the config$/),
  );
  await writeModel(root, 'no_labels', 1, scaleModel(), 'output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] label_filename: "labels.txt" }');
  await assert.rejects(repo.load('no_labels'), isCode('UNAVAILABLE', /labels\.txt/));
});

test('a symlinked model folder that points outside the repository is refused', async (t) => {
  const { root, repo } = await repository(t);
  const outside = join(scratch, `outside-model-${counter}`);
  await writeModel(outside, 'm', 1, scaleModel());
  await symlink(join(outside, 'm'), join(root, 'escape'), 'dir');
  await writeModel(root, 'real', 1, scaleModel());
  await assert.rejects(repo.load('escape'), isCode('INVALID_ARGUMENT', /resolves outside the model repository/));
  assert.throws(() => repo.get('escape'), isCode('NOT_FOUND'));
  assert.ok(!(await repo.discover()).includes('escape'));
  await repo.load('real');
});

test('a model folder that is a link out of the repository, or to nothing, is warned of once in the log, naming the link and its target', async (t) => {
  const root = join(scratch, `repo${counter++}`);
  await mkdir(root, { recursive: true });
  const { logger: capturing, lines } = capturingLogger();
  const repo = new ModelRepository({ root, backends: [backend], logger: capturing, defaultMaxBatchSize: DEFAULT_MAX_BATCH_SIZE, maxQueueSize: 16 });
  t.after(() => repo.close());
  const outside = join(scratch, `shared-store-${counter}`);
  await writeModel(outside, 'evil', 1, scaleModel());
  await symlink(join(outside, 'evil'), join(root, 'evil'), 'dir');
  await symlink(join(scratch, 'nowhere'), join(root, 'dangling'), 'dir');
  await writeModel(root, 'real', 1, scaleModel());
  for (let scan = 0; scan < 3; scan++) assert.deepEqual(await repo.discover(), ['real']);
  const warnings = lines.filter((line) => line.level === 40).map((line) => line.msg);
  assert.deepEqual(warnings.sort(), [
    `the folder 'dangling' in the model repository ${root} is a link to nothing (${join(root, 'dangling')} leads to no file): model 'dangling' is not served`,
    `the folder 'evil' in the model repository ${root} is a link to ${join(outside, 'evil')}, outside the model repository: model 'evil' is not served (a model folder may be a link only to a folder inside the repository; copy or mount it there)`,
  ]);
  // A client asking for it is not told where it leads.
  await assert.rejects(repo.load('evil'), (error: Error) => !error.message.includes(outside) && /resolves outside the model repository/.test(error.message));
  // Removed and made again: said again.
  await rm(join(root, 'evil'));
  await repo.discover();
  await symlink(join(outside, 'evil'), join(root, 'evil'), 'dir');
  await repo.discover();
  assert.equal(lines.filter((line) => line.level === 40 && line.msg.startsWith("the folder 'evil'")).length, 2);
});

// ---------- quantization records ----------

/** What `nereid quantize` writes beside a version it made from version 1 (its quantized size is version 2's model file), with the fields serving reads. */
const QUANTIZATION_RECORD = JSON.stringify({
  model: 'm',
  sourceVersion: '1',
  outputVersion: '2',
  method: 'static',
  calibration: { images: 40, heldOut: 10, sha256: 'ab'.repeat(32), ranges: 'percentile 99.99' },
  sizes: { sourceBytes: 1000, quantizedBytes: scaleModel(2).length, ratio: 0.283 },
});

test('a version with a quantization record says so; the others do not, and the model file size is kept per version', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1, 2], 'version_policy: { all: {} }');
  await writeFile(join(root, 'm', '2', 'quantization.json'), QUANTIZATION_RECORD);
  await repo.load('m');
  assert.equal(repo.get('m', '1').quantization, undefined);
  assert.deepEqual(repo.get('m', '2').quantization, { method: 'static', description: 'int8 static QDQ', precision: 'int8', sourceVersion: '1', sizeRatio: 0.283 });
  assert.equal(repo.get('m', '2').modelFileBytes, scaleModel(2).length);
  const [one, two] = repo.loadedVersions('m');
  assert.deepEqual(two.metadata([one, two]).parameters, { quantized_versions: '2', quantization: 'int8 static QDQ', quantized_from_version: '1', quantized_size_ratio: 0.283 });
  assert.deepEqual(one.metadata([one, two]).parameters, { quantized_versions: '2' }, 'the listed versions are named, details only of a quantized one');
  assert.equal('parameters' in one.metadata([one]), false, 'a float version alone answers as before');
});

test('a quantization record that does not parse makes its version UNAVAILABLE naming the file; the other versions serve', async (t) => {
  const { root, repo } = await repository(t);
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"method": "static",', /m\/2\/quantization\.json is not valid JSON: /],
    ['a field missing', JSON.stringify({ ...JSON.parse(QUANTIZATION_RECORD), sizes: undefined }), /m\/2\/quantization\.json is not a quantization record: sizes: /],
    ['a wrong type', JSON.stringify({ ...JSON.parse(QUANTIZATION_RECORD), sourceVersion: 1 }), /m\/2\/quantization\.json is not a quantization record: sourceVersion: /],
    ['too large', JSON.stringify({ ...JSON.parse(QUANTIZATION_RECORD), padding: 'x'.repeat(1024 * 1024) }), /m\/2\/quantization\.json is \d+ bytes; a quantization record is at most 1048576$/],
  ];
  await writeVersions(root, 'm', [1, 2], 'version_policy: { all: {} }');
  for (const [what, record, reason] of cases) {
    await writeFile(join(root, 'm', '2', 'quantization.json'), record);
    await repo.load('m');
    assert.throws(() => repo.get('m', '2'), isCode('UNAVAILABLE', reason), what);
    assert.equal(await scaleFactor(repo.get('m')), 1, `${what}: version 1 serves`);
  }
});

test('a quantization record that links outside the repository is refused', async (t) => {
  const { root, repo } = await repository(t);
  const outside = join(scratch, `outside-record-${counter}.json`);
  await writeFile(outside, QUANTIZATION_RECORD);
  await writeVersions(root, 'm', [1]);
  await symlink(outside, join(root, 'm', '1', 'quantization.json'));
  await assert.rejects(repo.load('m'), isCode('UNAVAILABLE', /quantization record 'quantization\.json' is a link to a file outside the model repository/));
});

// ---------- lifecycle ----------

test('reload keeps serving: get() works during the reload, in-flight requests finish, the new version takes over', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(2));
  await repo.load('m');
  const before = repo.get('m');
  await writeModel(root, 'm', 1, scaleModel(7));
  const inflight = scaleFactor(before);
  const reloading = repo.load('m');
  assert.equal(repo.get('m'), before, 'the old version serves while the new one loads');
  assert.equal(await scaleFactor(repo.get('m')), 2);
  await reloading;
  assert.equal(await inflight, 2);
  const afterReload = repo.get('m');
  assert.notEqual(afterReload, before);
  assert.equal(await scaleFactor(afterReload), 7);
  assert.equal(before.state, 'UNAVAILABLE');
  await assert.rejects(before.infer({ model: 'm', inputs: [] }), isCode('UNAVAILABLE'));
});

/** A config with `count` CPU instances of one thread each, so that the plans are alike on any machine. */
function instancesConfig(count: number, extra = ''): string {
  return `instance_group [{ count: ${count}, kind: KIND_CPU }]\nparameters { key: "intra_op_thread_count" value { string_value: "1" } }\n${extra}`;
}

test("a load whose config changes only the instance groups changes the instances of the version serving, as Triton's model update, and answers throughout", async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(3), instancesConfig(3));
  await repo.load('m');
  const serving = repo.get('m');
  const first = serving.instances.instances;
  assert.equal(first.length, 3);
  const counts = [4, 3, 4, 1];
  for (const count of counts) {
    const before = serving.instances.instances;
    await writeFile(join(root, 'm', 'config.pbtxt'), instancesConfig(count));
    // Requests sent while the instances change are all answered, by the same version.
    const during = Array.from({ length: 20 }, () => scaleFactor(repo.get('m')));
    await repo.load('m');
    assert.deepEqual(await Promise.all(during), Array(20).fill(3));
    assert.equal(repo.get('m'), serving, `count ${count}: the version that served is updated, not replaced`);
    const after = serving.instances.instances;
    assert.equal(after.length, count);
    const kept = after.filter((instance) => before.includes(instance)).length;
    assert.equal(kept, Math.min(before.length, count), `count ${before.length} → ${count}: only the difference is made or released`);
    assert.equal(serving.config.instance_group[0].count, count);
    assert.equal(await scaleFactor(repo.get('m')), 3);
  }
  assert.equal(serving.state, 'READY');
  assert.equal((await repo.index()).find((row) => row.name === 'm')?.state, 'READY');
});

test('a sequence model whose instance count changes keeps its live sequences, and each its state: the version is updated in place', async (t) => {
  const { root, repo } = await repository(t);
  const config = (count: number) =>
    instancesConfig(
      count,
      `max_batch_size: 2\nsequence_batching {\n direct { }\n control_input [\n { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },\n` +
        ` { name: "END" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] },\n { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY fp32_false_true: [ 0, 1 ] } ] }\n ]\n` +
        ` state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] initial_state: { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } } ]\n}\n`,
    );
  await writeModel(root, 'acc', 1, accumulatorModel(), config(1));
  await repo.load('acc');
  const serving = repo.get('acc');
  const step = async (id: number, value: number, flags: Record<string, boolean> = {}) => {
    const response = await repo.get('acc').infer({ model: 'acc', parameters: { sequence_id: id, ...flags }, inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [1, 1], data: new Float32Array([value]) }], outputs: [{ name: 'OUTPUT' }] });
    return (response.outputs[0].data as Float32Array)[0];
  };
  assert.equal(await step(1, 5, { sequence_start: true }), 5);
  assert.equal(await step(2, 1, { sequence_start: true }), 1);
  await writeFile(join(root, 'acc', 'config.pbtxt'), config(2));
  await repo.load('acc');
  assert.equal(repo.get('acc'), serving, 'updated, not reloaded');
  assert.equal(serving.instances.instances.length, 2);
  assert.equal(await step(3, 10, { sequence_start: true }), 10, 'a new sequence starts');
  assert.equal(await step(1, 2), 7, 'a sequence live before the change goes on with its state');
  // Back to one instance: the sequences of the one removed go on to their END.
  await writeFile(join(root, 'acc', 'config.pbtxt'), config(1));
  await repo.load('acc');
  assert.equal(repo.get('acc'), serving);
  assert.deepEqual([await step(1, 1, { sequence_end: true }), await step(2, 1, { sequence_end: true }), await step(3, 1, { sequence_end: true })], [8, 2, 11]);
  assert.equal(serving.instances.instances.length, 1);
});

test('instances are made anew when more than the instance groups changed: another setting, other weights, or a model file added', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(3), instancesConfig(2));
  await repo.load('m');
  const first = repo.get('m');
  await writeFile(join(root, 'm', 'config.pbtxt'), instancesConfig(3, 'dynamic_batching { max_queue_delay_microseconds: 100 }'));
  await repo.load('m');
  const second = repo.get('m');
  assert.notEqual(second, first, 'a batching change reloads');
  assert.equal(first.state, 'UNAVAILABLE');
  await writeModel(root, 'm', 1, scaleModel(5), instancesConfig(2, 'dynamic_batching { max_queue_delay_microseconds: 100 }'));
  await repo.load('m');
  const third = repo.get('m');
  assert.notEqual(third, second, 'new weights reload');
  assert.equal(await scaleFactor(third), 5);
  await writeFile(join(root, 'm', 'labels.txt'), 'a\nb\n');
  await writeFile(join(root, 'm', 'config.pbtxt'), instancesConfig(1, 'dynamic_batching { max_queue_delay_microseconds: 100 }'));
  await repo.load('m');
  assert.notEqual(repo.get('m'), third, 'a file added to the model folder reloads');
  // A load with the config as it was, and no file changed, reloads too: only a change of instances updates in place.
  const fourth = repo.get('m');
  await repo.load('m');
  assert.notEqual(repo.get('m'), fourth);
});

test('a config override that changes only the instances updates the version in place; the plain load after it does too', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(4), instancesConfig(1));
  await repo.load('m');
  const serving = repo.get('m');
  await repo.load('m', { instance_group: [{ count: 2, kind: 'KIND_CPU' }], parameters: { intra_op_thread_count: { string_value: '1' } } });
  assert.equal(repo.get('m'), serving);
  assert.equal(serving.instances.instances.length, 2);
  await repo.load('m', undefined, { fromFiles: true });
  assert.equal(repo.get('m'), serving);
  assert.equal(serving.instances.instances.length, 1);
  assert.equal(await scaleFactor(serving), 4);
});

test('a reload that fails leaves the loaded version serving (Triton semantics)', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(2));
  await repo.load('m');
  const loaded = repo.get('m');
  await writeFile(join(root, 'm', 'config.pbtxt'), 'max_batch_size: -3');
  await assert.rejects(repo.load('m'), isCode('UNAVAILABLE', /max_batch_size/));
  assert.equal(repo.get('m'), loaded);
  assert.equal(await scaleFactor(repo.get('m')), 2);
  await writeFile(join(root, 'm', 'config.pbtxt'), '');
  await writeFile(join(root, 'm', '1', 'model.onnx'), 'garbage');
  await assert.rejects(repo.load('m'), isCode('UNAVAILABLE'));
  assert.equal(await scaleFactor(repo.get('m')), 2);
});

test('a failed load is one log line with its reason: no stack but at debug, an expected refusal none at all, a reload that keeps serving one warning', async (t) => {
  const root = join(scratch, `repo${counter++}`);
  await mkdir(root, { recursive: true });
  const { logger: capturing, lines } = capturingLogger('debug');
  const repo = new ModelRepository({ root, backends: [backend], logger: capturing, defaultMaxBatchSize: DEFAULT_MAX_BATCH_SIZE, maxQueueSize: 16 });
  t.after(() => repo.close());
  const about = (model: string) => lines.filter((line) => line.model === model && line.level >= 40);
  const said = () => lines.map((line) => `${line.level} ${line.msg}`).join('\n');

  await writeModel(root, 'corrupt', 1, new Uint8Array(Array.from({ length: 512 }, (_, index) => (index * 37) % 256)));
  await assert.rejects(repo.load('corrupt'));
  const [failure, ...others] = about('corrupt');
  assert.deepEqual(others, [], said());
  assert.equal(failure.level, 50);
  assert.equal(failure.err, undefined, 'no stack at error level');
  assert.match(failure.msg, /^failed to load model 'corrupt' version 1: ONNX Runtime \S+ cannot load model file \S+: /);
  assert.equal(failure.msg.split(join(root, 'corrupt')).length - 1, 1, `the file's path said once: ${failure.msg}`);
  const debug = lines.find((line) => line.model === 'corrupt' && line.level === 20);
  assert.match(String((debug?.err as { stack?: string } | undefined)?.stack), /cannot load model file/, 'the stack at debug');

  const outside = join(scratch, `outside-file-${counter}`);
  await writeModel(outside, 'm', 1, scaleModel());
  await mkdir(join(root, 'linked', '1'), { recursive: true });
  await symlink(join(outside, 'm', '1', 'model.onnx'), join(root, 'linked', '1', 'model.onnx'));
  await assert.rejects(repo.load('linked'), isCode('UNAVAILABLE', /model file 'model\.onnx' is a link to a file outside the model repository/));
  assert.deepEqual(
    lines.filter((line) => line.model === 'linked').map((line) => [line.level, line.err]),
    [[50, undefined]],
    'an expected refusal: one line, no stack, nothing at debug',
  );

  await writeModel(root, 'serving', 1, scaleModel(2));
  await repo.load('serving');
  await writeFile(join(root, 'serving', 'config.pbtxt'), 'max_batch_size: -3');
  await assert.rejects(repo.load('serving'));
  await writeFile(join(root, 'serving', 'config.pbtxt'), '');
  await writeFile(join(root, 'serving', '1', 'model.onnx'), 'garbage');
  await assert.rejects(repo.load('serving'));
  assert.equal(await scaleFactor(repo.get('serving')), 2);
  const reloads = about('serving');
  assert.deepEqual(reloads.map((line) => line.level), [40, 40], `each failed reload once, as a warning:\n${said()}`);
  assert.match(reloads[0].msg, /^reload of model 'serving' failed; the loaded version\(s\) keep serving: .*max_batch_size/);
  assert.match(reloads[1].msg, /^reload of model 'serving' failed; the loaded version\(s\) keep serving: version 1: ONNX Runtime/);
});

test("a version that served and went, or that a failed reload tried to add, is not at ready state (503) as in Triton, with why", async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(2), 'version_policy: { all: {} }\n');
  await writeModel(root, 'm', 2, scaleModel(3));
  await repo.load('m');
  await rm(join(root, 'm', '1'), { recursive: true, force: true });
  await repo.load('m');
  assert.throws(() => repo.get('m', '1'), isCode('UNAVAILABLE', /^Request for unknown model: 'm' version 1 is not at ready state: it was unloaded/));
  assert.throws(() => repo.get('m', '7'), isCode('NOT_FOUND', /version 7 is not found/), 'a version it never had');

  // Latest policy, and a version 2 that cannot load: the reload fails, version 1 keeps serving, version 2 says why.
  await writeModel(root, 'r', 1, scaleModel(2));
  await repo.load('r');
  await writeModel(root, 'r', 2, new Uint8Array([1, 2, 3, 4]));
  await assert.rejects(repo.load('r'), isCode('UNAVAILABLE', /load failed for model 'r': version 2 is at UNAVAILABLE state: .*r\/2\/model\.onnx/));
  assert.equal(await scaleFactor(repo.get('r')), 2);
  assert.throws(() => repo.get('r', '2'), isCode('UNAVAILABLE', /^Request for unknown model: 'r' version 2 is not at ready state: .*r\/2\/model\.onnx/));
  const rows = (await repo.index()).filter((row) => row.name === 'r');
  assert.deepEqual(rows.map((row) => [row.version, row.state]), [['1', 'READY'], ['2', 'UNAVAILABLE']]);
  assert.match(rows[1].reason!, /r\/2\/model\.onnx/);
});

test('unload makes get() NOT_FOUND (a version asked by number: not at ready state, as Triton) and index() UNAVAILABLE; load brings it back', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(2));
  await repo.load('m');
  const loaded = repo.get('m');
  await repo.unload('m');
  assert.throws(() => repo.get('m'), isCode('NOT_FOUND', /has no available versions \(it was unloaded\)/));
  assert.throws(() => repo.get('m', '1'), isCode('UNAVAILABLE', /^Request for unknown model: 'm' version 1 is not at ready state: it was unloaded$/));
  assert.throws(() => repo.get('m', '2'), isCode('NOT_FOUND'), 'a version it never served');
  assert.equal(loaded.state, 'UNAVAILABLE');
  assert.deepEqual(await repo.index(), [{ name: 'm', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' }]);
  assert.deepEqual(repo.unavailableModels(), []);
  await repo.unload('m'); // twice is fine
  await repo.unload('never_loaded'); // not in the repository either: nothing to unload, as in Triton
  await assert.rejects(repo.unload('../x'), isCode('INVALID_ARGUMENT'));
  await repo.load('m');
  assert.equal(await scaleFactor(repo.get('m')), 2);
});

test('load and unload of one model are serialised', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(2));
  const steps = await Promise.allSettled([repo.load('m'), repo.unload('m'), repo.load('m'), repo.load('m')]);
  assert.deepEqual(steps.map((step) => step.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
  assert.equal(await scaleFactor(repo.get('m')), 2);
});

test('an ensemble whose steps run one model twice loads that model once, not once per step', async (t) => {
  const root = join(scratch, `repo${counter++}`);
  const { logger: capturing, lines } = capturingLogger();
  const repo = new ModelRepository({ root, backends: [backend], logger: capturing, defaultMaxBatchSize: DEFAULT_MAX_BATCH_SIZE, maxQueueSize: 16 });
  t.after(() => repo.close());
  await writeModel(root, 'double', 1, scaleModel(2));
  await mkdir(join(root, 'quadruple', '1'), { recursive: true });
  const chain = {
    platform: 'ensemble',
    max_batch_size: 4,
    input: [{ name: 'IN', data_type: 'TYPE_FP32', dims: [4] }],
    output: [{ name: 'OUT', data_type: 'TYPE_FP32', dims: [4] }],
    ensemble_scheduling: {
      step: [
        { model_name: 'double', model_version: -1, input_map: { INPUT0: 'IN' }, output_map: { OUTPUT0: 'TWICE' } },
        { model_name: 'double', model_version: -1, input_map: { INPUT0: 'TWICE' }, output_map: { OUTPUT0: 'OUT' } },
      ],
    },
  };
  await writeFile(join(root, 'quadruple', 'config.json'), JSON.stringify(chain));
  await repo.load('quadruple');
  const stepLoads = lines.filter((line) => line.msg === "loaded model 'double' version 1");
  assert.equal(stepLoads.length, 1, lines.map((line) => line.msg).join('\n'));
  assert.ok(repo.isReady('quadruple'));
});

test("a config built from the repository's own (a tool loading named versions) is not held to a client's bounds", async (t) => {
  const { root, repo } = await repository(t);
  // A config written on a machine with more cores (by nereid tune, say): one thread more than this machine has.
  const threads = String(availableParallelism() + 1);
  await writeVersions(root, 'm', [1, 2], `max_batch_size: 0\nparameters: { intra_op_thread_count: { string_value: "${threads}" } }`);
  const own = { ...(await repo.configOf('m')), version_policy: { specific: { versions: [1, 2] } } };
  await assert.rejects(repo.load('m', own), isCode('INVALID_ARGUMENT', /may not set intra_op_thread_count to \d+: at most \d+ on this machine/), 'from a client: refused');
  await repo.load('m', new RepositoryConfig(own));
  assert.deepEqual(repo.versionsOf('m'), ['1', '2']);
});

test('a config override on load replaces the config file', async (t) => {
  const { root, repo } = await repository(t);
  await writeVersions(root, 'm', [1, 2, 3], 'max_batch_size: 0');
  await repo.load('m');
  assert.equal(repo.get('m').config.max_batch_size, 0);
  assert.deepEqual(repo.versionsOf('m'), ['3']);
  // Triton's JSON form, as the load API carries it.
  await repo.load('m', { max_batch_size: 2, version_policy: { specific: { versions: ['1', '2'] } }, parameters: { intra_op_thread_count: { string_value: '1' } } });
  assert.deepEqual(repo.versionsOf('m'), ['1', '2']);
  assert.equal(repo.get('m').config.max_batch_size, 2);
  assert.equal(await scaleFactor(repo.get('m')), 2);
  // A config the client sent is the client's mistake: 4xx, not 503.
  await assert.rejects(repo.load('m', { max_batch_size: 'two' }), isCode('INVALID_ARGUMENT', /with the config given: invalid config override: max_batch_size/));
  await assert.rejects(
    repo.load('m', { default_model_filename: '../../x.onnx' }),
    isCode('INVALID_ARGUMENT', /default_model_filename/),
  );
  assert.equal(repo.get('m').config.max_batch_size, 2, 'failed overrides leave the loaded model serving');
  // A load the server makes by itself (a poll, an on-demand return) keeps the last config given; after an unload, or
  // on a load request without one (fromFiles, as Triton reads the files then), the file applies again.
  await repo.load('m');
  assert.equal(repo.get('m').config.max_batch_size, 2);
  await repo.unload('m');
  await repo.load('m');
  assert.equal(repo.get('m').config.max_batch_size, 0);
  await repo.load('m', { max_batch_size: 2 });
  await repo.load('m', undefined, { fromFiles: true });
  assert.equal(repo.get('m').config.max_batch_size, 0);
  await repo.load('m');
  assert.equal(repo.get('m').config.max_batch_size, 0, 'the override is gone for good');
});

test('with a config given, a config that does not fit the model is INVALID_ARGUMENT, but a model the engine cannot open is UNAVAILABLE with its cause', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'm', 1, scaleModel(2));
  await writeModel(root, 'broken', 1, new TextEncoder().encode('not an ONNX model'));
  await assert.rejects(
    repo.load('m', { input: [{ name: 'NOT_THERE', data_type: 'TYPE_FP32', dims: [4] }] }),
    isCode('INVALID_ARGUMENT', /with the config given: .*unexpected inference input 'NOT_THERE', allowed inputs are/),
  );
  let failure: NereidError | undefined;
  await assert.rejects(repo.load('broken', { max_batch_size: 0 }), (error: unknown) => {
    assert.ok(isCode('UNAVAILABLE', /load failed for model 'broken'/)(error));
    failure = error as NereidError;
    return true;
  });
  assert.ok(failure!.cause instanceof Error, 'the engine\'s error is the cause');
  assert.doesNotMatch(failure!.message, /with the config given/);
  await mkdir(join(root, 'no_versions'));
  await assert.rejects(repo.load('no_versions', { max_batch_size: 0 }), isCode('UNAVAILABLE', /no version folders/));
  await assert.rejects(
    repo.load('m', { version_policy: { specific: { versions: [7] } } }),
    isCode('INVALID_ARGUMENT', /with the config given: version_policy names version\(s\) 7/),
  );
});

test('config.yaml and config.json are read like config.pbtxt and complete to the same config', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'p', 1, addSubModel(), 'max_batch_size: 4\ninput { name: "INPUT0" data_type: TYPE_INT32 dims: 16 }\nparameters { key: "intra_op_thread_count" value { string_value: "1" } }\n');
  await writeModel(root, 'y', 1, addSubModel(), undefined, {
    'config.yaml': 'max_batch_size: 4\ninput: {name: INPUT0, data_type: INT32, dims: 16}\nparameters: {intra_op_thread_count: 1}\n',
  });
  await writeModel(root, 'j', 1, addSubModel(), undefined, {
    'config.json': JSON.stringify({
      max_batch_size: 4,
      input: [{ name: 'INPUT0', data_type: 'TYPE_INT32', dims: ['16'] }],
      parameters: { intra_op_thread_count: { string_value: '1' } },
    }),
  });
  for (const name of ['p', 'y', 'j']) await repo.load(name);
  const strip = (name: string) => {
    const { config } = repo.get(name);
    return JSON.parse(JSON.stringify({ ...config, name: undefined, instance_group: config.instance_group.map((group) => ({ ...group, name: undefined })) }));
  };
  assert.deepEqual(strip('y'), strip('p'));
  assert.deepEqual(strip('j'), strip('p'));
  assert.equal(repo.get('p').config.max_batch_size, 4);
});

// completeConfig fills max_batch_size from the model, then re-checks dynamic_batching against it, as Triton does.
test(
  'dynamic_batching on a model that auto-completes to max_batch_size 0 is UNAVAILABLE',
  async (t) => {
    const { root, repo } = await repository(t);
    await writeModel(root, 'fixed', 1, addSubModel({ batch: false }), 'dynamic_batching { }');
    await assert.rejects(repo.load('fixed'), isCode('UNAVAILABLE', /dynamic_batching needs max_batch_size > 0/));
  },
);

test(
  'preferred_batch_size above the auto-completed max_batch_size is UNAVAILABLE',
  async (t) => {
    const { root, repo } = await repository(t);
    await writeModel(root, 'simple', 1, addSubModel(), `dynamic_batching { preferred_batch_size: [${DEFAULT_MAX_BATCH_SIZE * 2}] }`);
    await assert.rejects(repo.load('simple'), isCode('UNAVAILABLE', /preferred_batch_size 16 exceeds max_batch_size 8/));
  },
);

test('a model ONNX Runtime refuses is reported with its own sentence, the model file named in the repository and a hint, not its C++ internals', async (t) => {
  const { root, repo } = await repository(t);
  const relu = (spec: Partial<ModelSpec> & { type?: 'float32' | 'int16' } = {}) =>
    buildOnnxModel({
      inputs: [{ name: 'x', type: spec.type ?? 'float32', shape: ['b', 4] }],
      outputs: [{ name: 'y', type: spec.type ?? 'float32', shape: ['b', 4] }],
      nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
      ...spec,
    });
  await writeModel(root, 'ir_99', 1, relu({ irVersion: 99 }));
  await writeModel(root, 'opset_40', 1, relu({ opset: 40 }));
  await writeModel(root, 'opset_1', 1, relu({ opset: 1 }));
  await writeModel(root, 'relu_int16', 1, relu({ opset: 14, type: 'int16' }));
  const external = buildOnnxModelWithExternalData(
    { inputs: [{ name: 'x', type: 'float32', shape: ['b', 4] }], outputs: [{ name: 'y', type: 'float32', shape: ['b', 4] }], initializers: [{ name: 'w', type: 'float32', dims: [4], values: [1, 2, 3, 4] }], nodes: [{ opType: 'Add', inputs: ['x', 'w'], outputs: ['y'] }] },
    'model.onnx.data',
  );
  await writeModel(root, 'no_data', 1, external.model); // model.onnx.data left behind
  const cases: [string, RegExp][] = [
    ['ir_99', /model file ir_99\/1\/model\.onnx: Unsupported model IR version: 99, max supported IR version: \d+; this ONNX Runtime reads IR versions up to \d+/],
    ['opset_40', /model file opset_40\/1\/model\.onnx: ONNX Runtime only \*guarantees\*.*; this ONNX Runtime supports ai\.onnx up to opset \d+, and the model asks for opset 40/],
    ['opset_1', /model file opset_1\/1\/model\.onnx: Could not find an implementation for Relu\(1\) node with name 'Relu_0'; .*older than ONNX Runtime implements/],
    ['relu_int16', /model file relu_int16\/1\/model\.onnx: Could not find an implementation for Relu\(14\).*no Relu kernel .*for the data type/],
    ['no_data', /model file no_data\/1\/model\.onnx: .*External data path does not exist: "model\.onnx\.data".*must sit beside model\.onnx/],
  ];
  for (const [name, reason] of cases) {
    await assert.rejects(repo.load(name), isCode('UNAVAILABLE', reason), name);
    const row = (await repo.index()).find((entry) => entry.name === name)!;
    assert.match(row.reason!, reason, name);
    assert.doesNotMatch(row.reason!, /onnxruntime_src|onnxruntime::|\.cc:\d|\.h:\d|<model repository>/, name);
    assert.ok(!row.reason!.includes(root), name);
  }
});

test("Triton's layout for a model with external data: model.onnx as a folder holds model.onnx and its weights", async (t) => {
  const { root, repo } = await repository(t);
  const external = buildOnnxModelWithExternalData(
    { inputs: [{ name: 'x', type: 'float32', shape: ['b', 4] }], outputs: [{ name: 'y', type: 'float32', shape: ['b', 4] }], initializers: [{ name: 'w', type: 'float32', dims: [4], values: [1, 2, 3, 4] }], nodes: [{ opType: 'Add', inputs: ['x', 'w'], outputs: ['y'] }] },
    'weights.bin',
  );
  const folder = join(root, 'packaged', '1', 'model.onnx');
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'model.onnx'), external.model);
  await writeFile(join(folder, 'weights.bin'), external.data);
  await repo.load('packaged');
  const answer = await repo.get('packaged').infer({ model: 'packaged', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: new Float32Array([1, 1, 1, 1]) }] });
  assert.deepEqual([...(answer.outputs[0].data as Float32Array)], [2, 3, 4, 5]);
});

test('an empty model file is reported as empty, not with the engine internals', async (t) => {
  const { root, repo } = await repository(t);
  await writeModel(root, 'hollow', 1, new Uint8Array(0));
  await assert.rejects(repo.load('hollow'), isCode('UNAVAILABLE', /model file hollow\/1\/model\.onnx is empty \(0 bytes\)/));
  const [row] = await repo.index();
  assert.doesNotMatch(row!.reason!, /onnxruntime|ModelProto/);
});
