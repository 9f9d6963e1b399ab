/**
 * Warmup at load: model_warmup samples and `parameters { warmup: auto }` run on every instance of a
 * version before the load returns (so before it is READY), with the shapes and data they declare;
 * a mistake in them or a failing run leaves the version UNAVAILABLE with the reason; a warmup file
 * is read only from inside the model's folder. Over the fake backend, which records every run.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino, type Logger } from "pino";
import { capturingLogger, doubler, DOUBLER_SIGNATURE, doublerBackend, fakeRepository, type FakeBackend } from '../../test/support/fake-backend.js';
import { ModelRepository } from './model-repository.js';

type TestContext = { after: (fn: () => Promise<void>) => void };

/** A repository holding model 'm' (the doubler: FP32 INPUT0 [-1, 4]) with `config`, loaded on `backend`. */
async function loadWith(t: TestContext, config: string, backend: FakeBackend, options: { logger?: Logger; extraFiles?: Record<string, string | Uint8Array> } = {}) {
  const root = await fakeRepository(t, { m: config, other: undefined });
  for (const [path, contents] of Object.entries(options.extraFiles ?? {})) {
    await mkdir(join(root, 'm', path, '..'), { recursive: true });
    await writeFile(join(root, 'm', path), contents);
  }
  const repo = new ModelRepository({ root, backends: [backend], logger: options.logger ?? pino({ level: 'silent' }), defaultMaxBatchSize: 8, maxQueueSize: 16 });
  t.after(() => repo.close());
  const loaded = await repo.load('m').then(
    () => undefined,
    (error: Error) => error,
  );
  return { root, repo, error: loaded };
}

const TWO_INSTANCES = `
max_batch_size: 8
instance_group: [{ count: 2, kind: KIND_CPU }]
input: [{ name: INPUT0, data_type: TYPE_FP32, dims: [4] }]
`;

/** The runs of the load before the batcher's calibration: warmup's, as [instance, shape, first value]. */
function warmupRuns(backend: FakeBackend, count: number): [number, number[], number][] {
  return backend.batches.slice(0, count).map((batch) => [batch.instance, batch.inputs.INPUT0.shape, (batch.inputs.INPUT0.data as Float32Array)[0]]);
}

test('each model_warmup sample runs count times on every instance before the load returns, with [batch_size, ...dims] of its data', async (t) => {
  const backend = doublerBackend();
  const { repo, error } = await loadWith(
    t,
    `${TWO_INSTANCES}
model_warmup:
  - { name: zeros, batch_size: 3, count: 2, inputs: { INPUT0: { data_type: TYPE_FP32, dims: [4], zero_data: true } } }
  - { name: noise, inputs: { INPUT0: { data_type: TYPE_FP32, dims: [4], random_data: true } } }
`,
    backend,
  );
  assert.equal(error, undefined);
  const runs = warmupRuns(backend, 6);
  for (const instance of [0, 1]) {
    const own = runs.filter(([index]) => index === instance);
    assert.deepEqual(own.map(([, shape]) => shape), [[3, 4], [3, 4], [1, 4]], `instance ${instance} ran every sample in order`);
    assert.deepEqual(own.slice(0, 2).map(([, , first]) => first), [0, 0]);
  }
  const noise = backend.batches.slice(0, 6).filter((batch) => batch.rows === 1).flatMap((batch) => [...(batch.inputs.INPUT0.data as Float32Array)]);
  assert.equal(noise.length, 8);
  assert.ok(noise.every((value) => value >= 0 && value < 1) && new Set(noise).size > 1, `random data in [0, 1): ${noise}`);
  assert.equal(repo.get('m').state, 'READY');
});

test('parameters warmup: auto runs zeros at each preferred batch size and max_batch_size on every instance, without a model_warmup block', async (t) => {
  const backend = doublerBackend();
  const { logger, lines } = capturingLogger();
  const { error } = await loadWith(t, `${TWO_INSTANCES}\ndynamic_batching: { preferred_batch_size: [4, 2] }\nparameters: { warmup: auto }\n`, backend, { logger });
  assert.equal(error, undefined);
  const runs = warmupRuns(backend, 6);
  for (const instance of [0, 1]) assert.deepEqual(runs.filter(([index]) => index === instance).map(([, shape]) => shape[0]), [2, 4, 8]);
  const warmed = lines.find((line) => /^warmed up model 'm' version 1 in \d+ ms \(3 sample\(s\) on 2 instance\(s\)\)$/.test(line.msg));
  assert.ok(warmed, `an info line says how long warmup took: ${lines.map((line) => line.msg).join(' | ')}`);
  assert.equal(warmed.level, 30);
  assert.equal(typeof (warmed.warmup as { ms: unknown }).ms, 'number');
});

test('automatic warmup of an input with dynamic dims is skipped with an info line naming it, unless a model_warmup entry gives its dims', async (t) => {
  const dynamic = `max_batch_size: 4\ninput: [{ name: INPUT0, data_type: TYPE_FP32, dims: [-1] }]\nparameters: { warmup: auto }\n`;
  // The doubler with a dynamic second dimension, as a text model's sequence length is.
  const dynamicBackend = () =>
    doublerBackend({
      signature: {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, -1] }],
        outputs: DOUBLER_SIGNATURE.outputs.map((output) => ({ ...output, shape: [-1, -1] })),
      },
    });
  const skipped = dynamicBackend();
  const { logger, lines } = capturingLogger();
  assert.equal((await loadWith(t, dynamic, skipped, { logger })).error, undefined);
  assert.equal(skipped.batches.length, 0, 'nothing ran: no calibration either, the dims are dynamic');
  assert.ok(
    lines.some((line) => line.level === 30 && line.msg === "automatic warmup of model 'm' version 1 skipped: input(s) INPUT0 [-1] have dynamic dims; give their dims in a model_warmup entry"),
    lines.map((line) => line.msg).join(' | '),
  );

  const shaped = dynamicBackend();
  const withDims = `${dynamic}model_warmup: [{ name: line, inputs: { INPUT0: { data_type: TYPE_FP32, dims: [4], zero_data: true } } }]\n`;
  assert.equal((await loadWith(t, withDims, shaped)).error, undefined);
  assert.deepEqual(shaped.batches.map((batch) => batch.inputs.INPUT0.shape), [[1, 4], [4, 4]], 'the entry itself, then auto at max_batch_size 4 with its dims');
});

test('a warmup run that fails leaves the version UNAVAILABLE with the reason, its instances released', async (t) => {
  const backend = doublerBackend();
  backend.failNext(new Error('kernel exploded'));
  const { repo, error } = await loadWith(t, `${TWO_INSTANCES}parameters: { warmup: auto }\n`, backend);
  assert.match(String(error), /load failed for model 'm'.*warmup sample 'auto batch 8' failed on instance \d: kernel exploded/);
  const [row] = await repo.index();
  assert.equal(row.state, 'UNAVAILABLE');
  assert.match(row.reason!, /warmup sample 'auto batch 8' failed on instance \d: kernel exploded/);
  assert.ok(backend.instances.length === 2 && backend.instances.every((instance) => instance.released), 'no session outlives the failed load');
});

test('a model_warmup entry that does not fit the model is refused before any instance starts, naming the entry and what is wrong', async (t) => {
  const entry = (fields: string) => `max_batch_size: 8\ninput: [{ name: INPUT0, data_type: TYPE_FP32, dims: [4] }]\nmodel_warmup: [{ name: w, ${fields} }]\n`;
  const cases: [string, RegExp][] = [
    ['inputs: { IMAGE: { data_type: TYPE_FP32, dims: [4], zero_data: true } }', /model_warmup 'w' names input 'IMAGE', which the model does not have \(inputs: INPUT0\)/],
    ['batch_size: 9, inputs: { INPUT0: { data_type: TYPE_FP32, dims: [4], zero_data: true } }', /model_warmup 'w': batch_size 9 exceeds max_batch_size 8/],
    ['inputs: { INPUT0: { data_type: TYPE_INT32, dims: [4], zero_data: true } }', /model_warmup 'w': input 'INPUT0' is TYPE_INT32 but the model's input is TYPE_FP32/],
    ['inputs: { INPUT0: { data_type: TYPE_FP32, dims: [5], zero_data: true } }', /model_warmup 'w': input 'INPUT0' dims \[5\] do not fit the input's dims \[4\]/],
    ['inputs: {}', /model_warmup 'w' leaves out input\(s\) INPUT0, which the model requires/],
  ];
  for (const [fields, message] of cases) {
    const backend = doublerBackend();
    const { repo, error } = await loadWith(t, entry(fields), backend);
    assert.match(String(error), message, fields);
    assert.equal(backend.instances.length, 0, `no instance started for: ${fields}`);
    assert.match((await repo.index())[0].reason!, message);
  }
  const backend = doublerBackend();
  assert.match(String((await loadWith(t, `${TWO_INSTANCES}parameters: { warmup: always }\n`, backend)).error), /parameters\.warmup must be 'auto' \(or left out\), got 'always'/);
});

test('input_data_file is read from the model\'s warmup folder, one row repeated to batch_size; a link out of the model\'s folder or a missing file is refused', async (t) => {
  const row = new Float32Array([1.5, -2, 3, 0.25]);
  const fromFile = (file: string) =>
    `max_batch_size: 8\ninput: [{ name: INPUT0, data_type: TYPE_FP32, dims: [4] }]\nmodel_warmup: [{ name: f, batch_size: 2, inputs: { INPUT0: { data_type: TYPE_FP32, dims: [4], input_data_file: ${file} } } }]\n`;
  const backend = doublerBackend();
  const { error } = await loadWith(t, fromFile('row.bin'), backend, { extraFiles: { 'warmup/row.bin': new Uint8Array(row.buffer) } });
  assert.equal(error, undefined);
  assert.deepEqual([...(backend.batches[0].inputs.INPUT0.data as Float32Array)], [...row, ...row]);

  const short = doublerBackend();
  assert.match(
    String((await loadWith(t, fromFile('row.bin'), short, { extraFiles: { 'warmup/row.bin': new Uint8Array(8) } })).error),
    /input_data_file 'row\.bin' of input 'INPUT0' holds 8 bytes; one row of FP32 \[4\] takes 16/,
  );
  assert.match(String((await loadWith(t, fromFile('absent.bin'), doublerBackend())).error), /input_data_file 'absent\.bin': m\/warmup\/absent\.bin does not exist/);

  // A link to another model's file stays inside the repository but leaves the model's folder: refused all the same.
  const linked = doublerBackend();
  const root = await fakeRepository(t, { m: fromFile('stolen.bin'), other: undefined });
  await writeFile(join(root, 'other', 'secret.bin'), new Uint8Array(row.buffer));
  await mkdir(join(root, 'm', 'warmup'));
  await symlink(join(root, 'other', 'secret.bin'), join(root, 'm', 'warmup', 'stolen.bin'));
  const repo = new ModelRepository({ root, backends: [linked], logger: pino({ level: 'silent' }), defaultMaxBatchSize: 8, maxQueueSize: 16 });
  t.after(() => repo.close());
  await assert.rejects(repo.load('m'), /input_data_file 'stolen\.bin' is a link to a file outside m$/);
  assert.equal(linked.instances.length, 0);
});

test('a config sent with a load request may not name a warmup file the repository\'s config does not, nor ask for unbounded warmup', async (t) => {
  const backend = doublerBackend();
  const { repo, error } = await loadWith(t, TWO_INSTANCES, backend, { extraFiles: { 'warmup/row.bin': new Uint8Array(16) } });
  assert.equal(error, undefined);
  const override = (entry: Record<string, unknown>) => ({ max_batch_size: 8, input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4] }], model_warmup: [entry] });
  await assert.rejects(
    repo.load('m', override({ name: 'probe', inputs: { INPUT0: { data_type: 'TYPE_FP32', dims: [4], input_data_file: 'row.bin' } } })),
    /may not name a warmup input_data_file the repository's config does not name \('row\.bin'\)/,
  );
  await assert.rejects(
    repo.load('m', override({ name: 'forever', batch_size: 8, count: 100_000, inputs: { INPUT0: { data_type: 'TYPE_FP32', dims: [4], zero_data: true } } })),
    /may not ask its warmup for more than 10000 rows in all \(count × batch_size over every entry: 800000\)/,
  );
  assert.equal(repo.get('m').state, 'READY', 'the loaded version keeps serving');
});

test('warmup yields to the event loop between runs, so the versions already serving keep answering while a new one warms', async (t) => {
  let runsWhenTheLoopTurned: number | undefined;
  const backend = doublerBackend({
    compute: (inputs) => {
      // The first run asks to be told when the event loop next gets a turn.
      if (backend.batches.length === 1) setImmediate(() => (runsWhenTheLoopTurned = backend.batches.length));
      return doubler(inputs);
    },
  });
  const { error } = await loadWith(t, `max_batch_size: 8\ninput: [{ name: INPUT0, data_type: TYPE_FP32, dims: [4] }]\nmodel_warmup: [{ name: many, count: 500, inputs: { INPUT0: { data_type: TYPE_FP32, dims: [4], zero_data: true } } }]\n`, backend);
  assert.equal(error, undefined);
  assert.ok(backend.batches.length >= 500);
  assert.equal(runsWhenTheLoopTurned, 1, 'the loop turned right after the first run, not after all 500');
});
