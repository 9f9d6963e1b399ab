/**
 * loadModelVersion's plan for a model: the instances a config without instance_group gets are the
 * backend's choice (Backend.defaultInstances: how many, and the threads of each), written into the
 * completed config as Triton's auto-complete writes them; a config that names its instance_group
 * keeps it, the cores split among its instances. An auto-completed max_batch_size brings the
 * dynamic batcher with it: requests that arrive together then run as one batch.
 * Over the fake backend (what the loader asks and creates, exactly) and over ONNX Runtime.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino, type Logger } from 'pino';
import { capturingLogger, doublerBackend, type FakeBackend } from '../../test/support/fake-backend.js';
import type { Backend } from '../backends/backend.js';
import { OnnxRuntimeBackend } from '../backends/onnx-runtime-backend.js';
import { dynamicBatchingSchema, parseModelConfig, type ModelConfig } from '../config/model-config.js';
import type { InferenceRequest } from '../core/inference.js';
import type { ModelVersion } from '../model/model-version.js';
import { addSubModel } from '../onnx/test-models.js';
import { loadModelVersion } from './model-loader.js';

type TestContext = { after: (fn: () => Promise<void>) => void };

const DEFAULT_MAX_BATCH_SIZE = 4;

/** Loads model 'm' version 1 from `bytes` with `config`; unloaded when the test ends. */
async function loadVersion(
  t: TestContext,
  backend: Backend,
  config: Record<string, unknown>,
  bytes: Uint8Array | string = 'weights',
  logger: Logger = pino({ level: 'silent' }),
): Promise<ModelVersion> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-model-loader-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const modelPath = join(dir, 'model.onnx');
  await writeFile(modelPath, bytes);
  const version = await loadModelVersion({
    ...{ name: 'm', version: '1', modelPath, config: parseModelConfig(config, 'test config'), backend },
    ...{ logger, defaultMaxBatchSize: DEFAULT_MAX_BATCH_SIZE, maxQueueSize: 16, readLabels: async () => [] },
  });
  t.after(async () => {
    if (version.state === 'READY') await version.unload();
  });
  return version;
}

/** A fake backend that plans its own instances, and remembers what it was asked. */
function planningBackend(plan: { count: number; threadsPerInstance: number }): FakeBackend & { asked: { config: ModelConfig; cores: number }[] } {
  const asked: { config: ModelConfig; cores: number }[] = [];
  return Object.assign(doublerBackend(), {
    asked,
    async defaultInstances(_modelPath: string, config: ModelConfig, cores: number) {
      asked.push({ config, cores });
      return plan;
    },
  });
}

/** The options of each instance the backend created: [index, kind, intraOpThreads]. */
const created = (backend: FakeBackend) => backend.instances.map(({ options }) => [options.index, options.kind, options.intraOpThreads]);

test('without instance_group, the backend\'s defaultInstances decides: its count in the completed config, its threads for each instance', async (t) => {
  const backend = planningBackend({ count: 3, threadsPerInstance: 2 });
  const version = await loadVersion(t, backend, { max_batch_size: 4 });
  assert.deepEqual(version.config.instance_group, [{ kind: 'KIND_CPU', count: 3, name: 'm_0' }], 'named as Triton names groups');
  assert.deepEqual(created(backend), [
    [0, 'CPU', 2],
    [1, 'CPU', 2],
    [2, 'CPU', 2],
  ]);
  assert.equal(backend.asked.length, 1);
  assert.equal(backend.asked[0].cores, availableParallelism(), 'asked for this machine\'s cores');
  assert.equal(backend.asked[0].config.max_batch_size, 4, 'with the config as written');
});

test('a config that names its instance_group keeps it, the cores split among its instances, whatever the backend would choose', async (t) => {
  const backend = planningBackend({ count: 3, threadsPerInstance: 2 });
  const group = { kind: 'KIND_CPU', count: 2, name: 'mine' };
  const version = await loadVersion(t, backend, { max_batch_size: 4, instance_group: [group] });
  assert.deepEqual(version.config.instance_group, [group]);
  const threads = Math.max(1, Math.floor(availableParallelism() / 2));
  assert.deepEqual(created(backend), [
    [0, 'CPU', threads],
    [1, 'CPU', threads],
  ]);
});

test('a backend without defaultInstances: one instance computing with every core', async (t) => {
  const backend = doublerBackend();
  assert.equal((backend as Backend).defaultInstances, undefined);
  const version = await loadVersion(t, backend, { max_batch_size: 4 });
  assert.deepEqual(version.config.instance_group, [{ kind: 'KIND_CPU', count: 1, name: 'm_0' }]);
  assert.deepEqual(created(backend), [[0, 'CPU', availableParallelism()]]);
});

/** The doubler's INPUT0 rows of 4 as a request. */
const doublerRequest = (row: number[]): InferenceRequest => ({ model: 'm', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(row) }] });

/**
 * The doubler with rows of any width: no calibration at load (it needs fixed dims), so the batcher
 * has no learned costs to cut by, and a batch holds whatever arrived together.
 */
const anyWidth = (): FakeBackend =>
  doublerBackend({
    signature: {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, -1] }],
      outputs: ['OUTPUT0', 'OUTPUT1'].map((name) => ({ name, datatype: 'FP32' as const, shape: [-1, -1] })),
    },
  });

test('an auto-completed max_batch_size comes with the dynamic batcher: requests that arrive together run as one batch', async (t) => {
  const backend = anyWidth();
  const version = await loadVersion(t, backend, {});
  assert.equal(version.config.max_batch_size, DEFAULT_MAX_BATCH_SIZE);
  assert.deepEqual(version.config.dynamic_batching, dynamicBatchingSchema.parse({}));
  assert.deepEqual(backend.rows, [], 'nothing ran at load');
  const answers = await Promise.all([1, 2, 3].map((value) => version.infer(doublerRequest([value, value, value, value]))));
  assert.deepEqual(backend.rows, [3], 'one execution of 3 rows');
  answers.forEach((answer, index) => assert.deepEqual(Array.from(answer.outputs.find((output) => output.name === 'OUTPUT0')!.data as Float32Array), Array(4).fill((index + 1) * 2)));
});

test('a config that names max_batch_size but not its tensors is auto-completed with the dynamic batcher too, as Triton\'s ONNX Runtime backend completes it', async (t) => {
  const backend = anyWidth();
  const version = await loadVersion(t, backend, { max_batch_size: DEFAULT_MAX_BATCH_SIZE });
  assert.deepEqual(version.config.dynamic_batching, dynamicBatchingSchema.parse({}));
  await Promise.all([1, 2, 3].map((value) => version.infer(doublerRequest([value, value, value, value]))));
  assert.deepEqual(backend.rows, [3]);
});

test('a config that lists its inputs and outputs with max_batch_size, without dynamic_batching, runs each request on its own, as in Triton', async (t) => {
  const backend = anyWidth();
  const tensor = (name: string) => ({ name, data_type: 'TYPE_FP32', dims: [-1] });
  const version = await loadVersion(t, backend, { max_batch_size: DEFAULT_MAX_BATCH_SIZE, input: [tensor('INPUT0')], output: [tensor('OUTPUT0'), tensor('OUTPUT1')] });
  assert.equal(version.config.dynamic_batching, undefined);
  await Promise.all([1, 2, 3].map((value) => version.infer(doublerRequest([value, value, value, value]))));
  assert.deepEqual(backend.rows, [1, 1, 1]);
});

test('a failure while calibrating batch costs is logged as a warning with its cause, and the model loads and serves uncalibrated', async (t) => {
  const backend = doublerBackend();
  const broken = new Error('the engine refused a calibration batch');
  backend.failNext(broken);
  const { logger, lines } = capturingLogger();
  const version = await loadVersion(t, backend, { max_batch_size: 4, dynamic_batching: {} }, 'weights', logger);
  assert.equal(version.state, 'READY');
  assert.ok(backend.rows.length > 0, 'calibration ran');
  const warnings = lines.filter((line) => line.level === 40);
  assert.equal(warnings.length, 1, JSON.stringify(lines));
  assert.match(warnings[0].msg, /calibrating batch costs of model 'm' version 1 failed.*the engine refused a calibration batch/);
  assert.equal((warnings[0].err as { message: string }).message, broken.message);
  const answer = await version.infer(doublerRequest([1, 2, 3, 4]));
  assert.deepEqual(Array.from(answer.outputs.find((output) => output.name === 'OUTPUT0')!.data as Float32Array), [2, 4, 6, 8]);
});

// ONNX Runtime's plan, through the loader, on the generated add/sub model (a few hundred bytes: small).

const addSubRequest = (): InferenceRequest => ({
  model: 'm',
  inputs: [
    { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: new Int32Array(16).fill(5) },
    { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: new Int32Array(16).fill(2) },
  ],
});

async function assertAddSubServes(version: ModelVersion): Promise<void> {
  const answer = await version.infer(addSubRequest());
  const values = Object.fromEntries(answer.outputs.map((output) => [output.name, Array.from(output.data as Int32Array)]));
  assert.deepEqual(values, { OUTPUT0: Array(16).fill(7), OUTPUT1: Array(16).fill(3) });
}

test('ONNX Runtime, no instance_group: a small model gets one instance; with execution_thread worker, one per core', async (t) => {
  const backend = new OnnxRuntimeBackend();
  const small = await loadVersion(t, backend, {}, addSubModel());
  assert.deepEqual(small.config.instance_group, [{ kind: 'KIND_CPU', count: 1, name: 'm_0' }]);
  assert.deepEqual(small.config.dynamic_batching, dynamicBatchingSchema.parse({}), 'max_batch_size was auto-completed');
  await assertAddSubServes(small);
  const workers = await loadVersion(t, backend, { parameters: { execution_thread: 'worker' } }, addSubModel());
  assert.deepEqual(workers.config.instance_group, [{ kind: 'KIND_CPU', count: availableParallelism(), name: 'm_0' }]);
  await assertAddSubServes(workers);
});

test('ONNX Runtime, an instance_group in the config is kept as it is (named <model>_<index> when it has no name, as in Triton)', async (t) => {
  const group = { kind: 'KIND_CPU', count: 3 };
  const version = await loadVersion(t, new OnnxRuntimeBackend(), { instance_group: [group, { ...group, name: 'mine' }] }, addSubModel());
  assert.deepEqual(version.config.instance_group, [{ ...group, name: 'm_0' }, { ...group, name: 'mine' }]);
  await assertAddSubServes(version);
});
