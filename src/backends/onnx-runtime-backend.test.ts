import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildOnnxModel, buildOnnxModelWithExternalData, type ModelSpec } from '../onnx/onnx-model-builder.js';
import { addSubModel } from '../onnx/test-models.js';
import { parseModelConfig } from '../config/model-config.js';
import { OnnxRuntimeBackend } from './onnx-runtime-backend.js';
import { onnxRuntimeParameters, sessionOptionsOf } from './onnx-runtime-options.js';
import type { InstanceOptions, ModelSignature } from './backend.js';
import { bytesElements, PackedBytes, type Datatype } from '../core/datatype.js';

async function modelFile(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'model.onnx');
  await writeFile(path, addSubModel());
  return path;
}

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

function instanceOptions(overrides: Partial<InstanceOptions>, logger = pino({ level: 'silent' })): InstanceOptions {
  return { index: 0, kind: 'CPU', deviceId: 0, intraOpThreads: 2, interOpThreads: 1, logger, ...overrides };
}

const inputs = {
  INPUT0: { datatype: 'INT32' as const, shape: [1, 16], data: new Int32Array(16).fill(3) },
  INPUT1: { datatype: 'INT32' as const, shape: [1, 16], data: new Int32Array(16).fill(1) },
};

test('a GPU instance without CUDA binaries falls back to CPU with a logged warning, and still serves', async (t) => {
  const path = await modelFile(t);
  const { logger, lines } = capturingLogger();
  const backend = new OnnxRuntimeBackend();
  const instance = await backend.createInstance(path, parseModelConfig({}, 'test'), instanceOptions({ kind: 'GPU' }, logger));
  t.after(() => instance.release());
  const outputs = await instance.run(inputs, ['OUTPUT0']);
  assert.deepEqual(Array.from(outputs.OUTPUT0.data as Int32Array), Array(16).fill(4));
  const warning = lines.find((line) => String(line.msg).includes('falling back to CPU'));
  assert.ok(warning, `expected a fallback warning, got ${JSON.stringify(lines)}`);
  assert.deepEqual(warning.requested, ['cuda', 'cpu']);
});

test('execution_providers from the config are tried in order, CPU closing the list', async (t) => {
  const path = await modelFile(t);
  const { logger, lines } = capturingLogger();
  const config = parseModelConfig({ parameters: { execution_providers: 'tensorrt, cuda' } }, 'test');
  const instance = await new OnnxRuntimeBackend().createInstance(path, config, instanceOptions({}, logger));
  t.after(() => instance.release());
  assert.deepEqual(lines.find((line) => line.requested)?.requested, ['tensorrt', 'cuda', 'cpu']);
});

test('session options come from config parameters; thread counts decide the instance threads', async (t) => {
  const path = await modelFile(t);
  const backend = new OnnxRuntimeBackend();
  const config = parseModelConfig(
    { parameters: { intra_op_thread_count: '1', inter_op_thread_count: '1', graph_optimization_level: 'basic', execution_mode: '0' } },
    'test',
  );
  const instance = await backend.createInstance(path, config, instanceOptions({ intraOpThreads: 2 }));
  t.after(() => instance.release());
  assert.equal(instance.threads, 1, 'intra_op_thread_count overrides the default');
  const defaults = await backend.createInstance(path, parseModelConfig({}, 'test'), instanceOptions({ intraOpThreads: 2 }));
  t.after(() => defaults.release());
  assert.equal(defaults.threads, 2, 'the model version divides the cores among instances');
});

test("Triton's names: optimization.graph.level as its ONNX Runtime backend reads it (2 disables), enable_mem_arena for the arena, its GPU parameters named as without effect", () => {
  const sessionOf = (raw: Record<string, unknown>) => sessionOptionsOf(onnxRuntimeParameters(parseModelConfig(raw, 'test')), { intraOpThreads: 1, interOpThreads: 1 });
  const levels = [-1, 0, 1, 2, 3].map((level) => sessionOf({ optimization: { graph: { level } } }).graphOptimizationLevel);
  assert.deepEqual(levels, ['basic', 'all', 'extended', 'disabled', 'all']);
  assert.equal(sessionOf({ optimization: { graph: { level: 2 } }, parameters: { graph_optimization_level: 'basic' } }).graphOptimizationLevel, 'basic', "Nereid's own parameter wins");
  assert.equal(sessionOf({ parameters: { enable_mem_arena: '0' } }).enableCpuMemArena, false);
  assert.equal(sessionOf({ parameters: { enable_mem_arena: '1', enable_cpu_mem_arena: 'false' } }).enableCpuMemArena, true, "Triton's name wins where both are given");
  assert.equal(sessionOf({}).enableCpuMemArena, true);
  const backend = new OnnxRuntimeBackend();
  const config = parseModelConfig({ parameters: { cudnn_conv_algo_search: '1', 'memory.enable_memory_arena_shrinkage': 'cpu:0', team: 'vision', enable_mem_arena: '1' } }, 'test');
  assert.deepEqual(backend.parametersWithoutEffect(config), ['memory.enable_memory_arena_shrinkage', 'cudnn_conv_algo_search'], "the model's own metadata (team) is not named");
});

test('invalid session parameters fail the load with the parameter named', async (t) => {
  const path = await modelFile(t);
  const backend = new OnnxRuntimeBackend();
  for (const [key, value, pattern] of [
    ['graph_optimization_level', 'fastest', /parameters\.graph_optimization_level: must be one of disabled, basic, extended, all, got 'fastest'/],
    ['intra_op_thread_count', 'two', /parameters\.intra_op_thread_count: must be a non-negative integer, got 'two'/],
    ['enable_mem_pattern', 'maybe', /parameters\.enable_mem_pattern: must be true or false, got 'maybe'/],
  ] as const) {
    await assert.rejects(
      backend.createInstance(path, parseModelConfig({ parameters: { [key]: value } }, 'test'), instanceOptions({})),
      pattern,
    );
  }
});

test('execution_thread worker: the session runs in a worker thread with the same results, BYTES included', async (t) => {
  const { identityModel } = await import('../onnx/test-models.js');
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-worker-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const backend = new OnnxRuntimeBackend();
  const worker = { parameters: { execution_thread: 'worker' } };
  await writeFile(join(dir, 'add.onnx'), addSubModel());
  const addSub = await backend.createInstance(join(dir, 'add.onnx'), parseModelConfig(worker, 'test'), instanceOptions({}));
  t.after(() => addSub.release());
  assert.equal(addSub.constructor.name, 'WorkerThreadInstance');
  const signature = await backend.describe(join(dir, 'add.onnx'));
  assert.deepEqual(signature.inputs.map((input) => input.name), ['INPUT0', 'INPUT1']);
  assert.deepEqual(signature.outputs[0], { name: 'OUTPUT0', datatype: 'INT32', shape: [-1, 16] });
  const [sum, difference] = await Promise.all([addSub.run(inputs, ['OUTPUT0']), addSub.run(inputs, ['OUTPUT1'])]);
  assert.deepEqual(Array.from(sum.OUTPUT0.data as Int32Array), Array(16).fill(4));
  assert.deepEqual(Array.from(difference.OUTPUT1.data as Int32Array), Array(16).fill(2));
  await writeFile(join(dir, 'bytes.onnx'), identityModel('string'));
  const bytes = await backend.createInstance(join(dir, 'bytes.onnx'), parseModelConfig(worker, 'test'), instanceOptions({}));
  t.after(() => bytes.release());
  const echoed = await bytes.run({ INPUT0: { datatype: 'BYTES', shape: [1, 2], data: [Buffer.from('wörld'), Buffer.from('日本')] } }, ['OUTPUT0']);
  assert.ok(echoed.OUTPUT0.data instanceof PackedBytes, 'BYTES come back packed, as the worker sent them');
  assert.deepEqual(bytesElements(echoed.OUTPUT0.data).map(String), ['wörld', '日本']);
  const packed = await bytes.run({ INPUT0: { datatype: 'BYTES', shape: [1, 2], data: PackedBytes.of([Buffer.from('a'), Buffer.from('')]) } }, ['OUTPUT0']);
  assert.deepEqual(bytesElements(packed.OUTPUT0.data).map(String), ['a', ''], 'packed inputs go as they are');
  await assert.rejects(
    async () => addSub.run({ INPUT0: inputs.INPUT0 }, ['OUTPUT0']),
    /input/i,
    'an ONNX Runtime error in the worker reaches the caller',
  );
});

test('execution_thread auto: a small model that takes BYTES runs in a worker thread, judged by the model\'s own tensors, not the config\'s client view', async (t) => {
  const { identityModel } = await import('../onnx/test-models.js');
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-bytes-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const backend = new OnnxRuntimeBackend();
  const strings = join(dir, 'strings.onnx');
  await writeFile(strings, identityModel('string'));
  const bytes = await backend.createInstance(strings, parseModelConfig({}, 'test'), instanceOptions({ signature: await backend.describe(strings) }));
  t.after(() => bytes.release());
  assert.equal(bytes.constructor.name, 'WorkerThreadInstance');
  // An image input is BYTES to clients and FP32 (here INT32) to the model: the model's tensors decide.
  const path = await modelFile(t);
  const clientView = parseModelConfig({ input: [{ name: 'INPUT0', data_type: 'TYPE_STRING', dims: [16] }] }, 'test');
  const numeric = await backend.createInstance(path, clientView, instanceOptions({ signature: await backend.describe(path) }));
  t.after(() => numeric.release());
  assert.equal(numeric.constructor.name, 'MainThreadInstance');
});

test('execution_thread auto keeps small models on the JS thread; bad values fail the load', async (t) => {
  const path = await modelFile(t);
  const backend = new OnnxRuntimeBackend();
  const small = await backend.createInstance(path, parseModelConfig({}, 'test'), instanceOptions({}));
  t.after(() => small.release());
  assert.equal(small.constructor.name, 'MainThreadInstance');
  await assert.rejects(
    backend.createInstance(path, parseModelConfig({ parameters: { execution_thread: 'gpu' } }, 'test'), instanceOptions({})),
    /parameters\.execution_thread: must be one of auto, main, worker, got 'gpu'/,
  );
});

test('a worker whose session cannot open fails the load with ONNX Runtime\'s reason', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-broken-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'model.onnx'), Buffer.from('not a model'));
  await assert.rejects(
    new OnnxRuntimeBackend().createInstance(join(dir, 'model.onnx'), parseModelConfig({ parameters: { execution_thread: 'worker' } }, 'test'), instanceOptions({})),
    /protobuf parsing failed|failed/i,
  );
});

test('a worker thread that dies is replaced: the next request is served', async (t) => {
  const path = await modelFile(t);
  const config = parseModelConfig({ parameters: { execution_thread: 'worker' } }, 'test');
  const { WorkerThreadInstance } = await import('./onnx-runtime-worker-instance.js');
  const instance = await new OnnxRuntimeBackend().createInstance(path, config, instanceOptions({}));
  assert.ok(instance instanceof WorkerThreadInstance);
  t.after(() => instance.release());
  await (await instance.workerThread()).terminate(); // a crash
  let served: Awaited<ReturnType<typeof instance.run>> | undefined;
  for (let attempt = 0; attempt < 50 && !served; attempt++) {
    served = await (async () => instance.run(inputs, ["OUTPUT0"]))().catch(() => undefined);
  }
  assert.ok(served, 'a new worker serves after the crash');
  assert.deepEqual(Array.from(served.OUTPUT0.data as Int32Array), Array(16).fill(4));
});

/** What describe() finds for a model of these datatypes; defaultInstances reads only the datatypes. */
const signatureOf = (...datatypes: Datatype[]): ModelSignature => ({
  inputs: datatypes.map((datatype, index) => ({ name: `IN${index}`, datatype, shape: [-1] })),
  outputs: [{ name: 'OUT', datatype: 'INT32', shape: [-1] }],
});
const INT32_SIGNATURE = signatureOf('INT32');

test('defaultInstances: a small model gets one single-threaded instance (on the JS thread), execution_thread worker one single-threaded instance per core', async (t) => {
  const path = await modelFile(t);
  const backend = new OnnxRuntimeBackend();
  const withThread = (thread?: string) => parseModelConfig(thread ? { parameters: { execution_thread: thread } } : {}, 'test');
  for (const cores of [1, 2, 8]) {
    assert.deepEqual(await backend.defaultInstances(path, withThread(), cores, INT32_SIGNATURE), { count: 1, threadsPerInstance: 1 }, `auto, ${cores} cores`);
    assert.deepEqual(await backend.defaultInstances(path, withThread('main'), cores, INT32_SIGNATURE), { count: 1, threadsPerInstance: 1 }, `main, ${cores} cores`);
    assert.deepEqual(await backend.defaultInstances(path, withThread('worker'), cores, INT32_SIGNATURE), { count: cores, threadsPerInstance: 1 }, `worker, ${cores} cores`);
  }
  await assert.rejects(backend.defaultInstances(path, withThread('gpu'), 2, INT32_SIGNATURE), /parameters\.execution_thread/);
});

test('defaultInstances with execution_thread auto: a small model that takes or gives BYTES runs in workers (the binding converts each element on its thread); main keeps it in place', async (t) => {
  const path = await modelFile(t);
  const backend = new OnnxRuntimeBackend();
  assert.deepEqual(await backend.defaultInstances(path, parseModelConfig({}, 'test'), 2, signatureOf('INT32', 'BYTES')), { count: 2, threadsPerInstance: 1 });
  const bytesOut: ModelSignature = { inputs: INT32_SIGNATURE.inputs, outputs: [{ name: 'OUT', datatype: 'BYTES', shape: [-1] }] };
  assert.deepEqual(await backend.defaultInstances(path, parseModelConfig({}, 'test'), 2, bytesOut), { count: 2, threadsPerInstance: 1 });
  const main = parseModelConfig({ parameters: { execution_thread: 'main' } }, 'test');
  assert.deepEqual(await backend.defaultInstances(path, main, 2, signatureOf('BYTES')), { count: 1, threadsPerInstance: 1 });
});

test('defaultInstances with execution_thread auto: a model file of 256 KiB or more is compute-bound, one worker instance per core; an explicit main keeps it at one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-sizes-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // Only the file's size decides (the model is not opened), so plain bytes stand in for the weights.
  const large = join(dir, 'large.onnx');
  const below = join(dir, 'below.onnx');
  await writeFile(large, Buffer.alloc(256 * 1024));
  await writeFile(below, Buffer.alloc(256 * 1024 - 1));
  const backend = new OnnxRuntimeBackend();
  const auto = parseModelConfig({}, 'test');
  assert.deepEqual(await backend.defaultInstances(large, auto, 4, INT32_SIGNATURE), { count: 4, threadsPerInstance: 1 });
  assert.deepEqual(await backend.defaultInstances(below, auto, 4, INT32_SIGNATURE), { count: 1, threadsPerInstance: 1 });
  assert.deepEqual(await backend.defaultInstances(large, parseModelConfig({ parameters: { execution_thread: 'main' } }, 'test'), 4, INT32_SIGNATURE), { count: 1, threadsPerInstance: 1 });
});

/** x + offset, with `width` float weights. */
const offsetModel = (width: number): ModelSpec => ({
  graphName: 'offset',
  inputs: [{ name: 'x', type: 'float32', shape: ['batch', width] }],
  outputs: [{ name: 'y', type: 'float32', shape: ['batch', width] }],
  initializers: [{ name: 'offset', type: 'float32', dims: [width], values: new Float32Array(width).fill(1) }],
  nodes: [{ opType: 'Add', inputs: ['x', 'offset'], outputs: ['y'] }],
});

/** describe(path), and whether the event loop turned while it ran (it does when the model is opened in a worker). */
async function describeWatchingLoop(backend: OnnxRuntimeBackend, path: string): Promise<{ signature: ModelSignature; loopTurned: boolean }> {
  const describing = backend.describe(path);
  let loopTurned = false;
  setImmediate(() => (loopTurned = true));
  const signature = await describing;
  return { signature, loopTurned };
}

test('a model whose weights are in an external data file is as large as its weights: described off the event loop, one worker instance per core, and it serves', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-external-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const width = 100_000; // 400 KB of weights beside a model.onnx of a few hundred bytes
  const { model, data } = buildOnnxModelWithExternalData(offsetModel(width), 'model.onnx.data');
  assert.ok(model.length < 1024, `model.onnx is ${model.length} bytes`);
  const path = join(dir, 'model.onnx');
  await writeFile(path, model);
  await writeFile(join(dir, 'model.onnx.data'), data);
  const backend = new OnnxRuntimeBackend();
  const { signature, loopTurned } = await describeWatchingLoop(backend, path);
  assert.ok(loopTurned, 'the model and its weights were opened off the event loop');
  assert.deepEqual(signature.inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, width] }]);
  const auto = parseModelConfig({}, 'test');
  assert.deepEqual(await backend.defaultInstances(path, auto, 4, signature), { count: 4, threadsPerInstance: 1 }, 'the weights count, not model.onnx alone');
  const instance = await backend.createInstance(path, auto, instanceOptions({ signature }));
  t.after(() => instance.release());
  const outputs = await instance.run({ x: { datatype: 'FP32', shape: [1, width], data: new Float32Array(width).fill(2) } }, ['y']);
  assert.equal((outputs.y.data as Float32Array)[width - 1], 3);
  assert.notEqual(instance.constructor.name, 'MainThreadInstance');
});

test('describe reads a large model off the event loop: the loop turns while it is read, and the signature is the same as in place', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-describe-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const width = 100_000; // 400 KB of weights: above the size that goes to a worker thread
  const large = join(dir, 'large.onnx');
  await writeFile(
    large,
    buildOnnxModel(offsetModel(width)),
  );
  const backend = new OnnxRuntimeBackend();
  const { signature, loopTurned } = await describeWatchingLoop(backend, large);
  assert.ok(loopTurned, 'other work ran while the model was being read');
  assert.deepEqual(signature, {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, width] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, width] }],
    inputsRequired: true,
  });
  const small = await modelFile(t);
  assert.deepEqual((await backend.describe(small)).inputs.map((input) => input.name), ['INPUT0', 'INPUT1'], 'a small model is described in place');
  await assert.rejects(backend.describe(join(dir, 'missing.onnx')), /ENOENT|no such file/);
});
