/**
 * The Server core over a temporary repository served by the fake backend: lifecycle and readiness,
 * a model that fails to load beside ones that serve, the errors of the model-control API, and that
 * importing the core loads no engine and no Redis client (the composition root chooses those).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { capturingLogger, doubler, doublerBackend, fakeRepository, FakeBackend, rejectsWith } from '../../test/support/fake-backend.js';
import { LruCacheStore } from '../cache/lru-cache-store.js';
import { httpStatusOf, NereidError } from '../core/errors.js';
import type { InferenceRequest } from '../core/inference.js';
import { addSubModel } from '../onnx/test-models.js';
import { bytesElements } from '../core/datatype.js';
import { createServer } from './create-server.js';
import { Server } from './server.js';
import { serveFlagName, type ServerOptions } from './server-options.js';

const silent = pino({ level: 'silent' });

/** A started server over `repo`, closed after the test. */
async function started(t: { after: (fn: () => Promise<void>) => void }, options: Partial<ServerOptions> & Pick<ServerOptions, 'modelRepository'>): Promise<Server> {
  const server = new Server({ backends: [doublerBackend()], logger: silent, ...options });
  t.after(() => server.close());
  return server.start();
}

const request = (model: string, values = [1, 2, 3, 4]): InferenceRequest => ({
  model,
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(values) }],
});

async function doubledBy(server: Server, model: string): Promise<number[]> {
  const response = await server.infer(request(model));
  assert.equal(response.model, model);
  return Array.from(response.outputs.find((output) => output.name === 'OUTPUT0')!.data as Float32Array);
}

/** A backend named 'broken' whose describe() fails, as one that cannot read a model file would. */
const brokenBackend = () =>
  new FakeBackend({
    name: 'broken',
    signature: (modelPath) => {
      throw new Error(`cannot read the weights in ${modelPath}`);
    },
    compute: doubler,
  });

test('start() loads every model in the repository, and readiness follows', async (t) => {
  const repo = await fakeRepository(t, { configured: 'max_batch_size: 2\n', unconfigured: undefined });
  const server = new Server({ modelRepository: repo, backends: [doublerBackend()], logger: silent });
  t.after(() => server.close());
  assert.deepEqual([server.live, server.ready, server.modelReady('configured')], [true, false, false], 'not ready before start()');
  await server.start();
  assert.deepEqual([server.ready, server.modelReady('configured'), server.modelReady('unconfigured')], [true, true, true]);
  assert.deepEqual(await server.repositoryIndex(), [
    { name: 'configured', version: '1', state: 'READY', reason: '' },
    { name: 'unconfigured', version: '1', state: 'READY', reason: '' },
  ]);
  assert.equal((await server.modelConfig('configured')).max_batch_size, 2, 'from config.yaml');
  assert.equal((await server.modelConfig('unconfigured')).max_batch_size, 4, "completed from the backend's signature with the default");
  assert.deepEqual(await doubledBy(server, 'configured'), [2, 4, 6, 8]);
  assert.deepEqual(await doubledBy(server, 'unconfigured'), [2, 4, 6, 8]);
});

test('a library caller asks for classes in an output\'s parameters as the wire does (classification), or by classCount', async (t) => {
  const repo = await fakeRepository(t, { good: 'max_batch_size: 2\n' });
  const server = await started(t, { modelRepository: repo });
  const classesOf = async (output: InferenceRequest['outputs']) =>
    bytesElements((await server.infer({ ...request('good'), outputs: output })).outputs[0].data).map((element) => element.toString('utf8'));
  assert.deepEqual(await classesOf([{ name: 'OUTPUT0', parameters: { classification: 2 } }]), ['8.000000:3', '6.000000:2']);
  assert.deepEqual(await classesOf([{ name: 'OUTPUT0', parameters: { class_count: 1 } }]), ['8.000000:3']);
  assert.deepEqual(await classesOf([{ name: 'OUTPUT0', classCount: 1 }]), ['8.000000:3']);
  await rejectsWith(server.infer({ ...request('good'), outputs: [{ name: 'OUTPUT0', parameters: { classification: 'two' } }] }), 'INVALID_ARGUMENT', /classification must be a number/);
});

test("a model whose backend cannot describe it is UNAVAILABLE in the index, its requests NOT_FOUND with the reason, and the others serve", async (t) => {
  const repo = await fakeRepository(t, { good: undefined, broken: 'backend: broken\n' });
  const server = await started(t, { modelRepository: repo, backends: [doublerBackend(), brokenBackend()] });
  const index = await server.repositoryIndex();
  const broken = index.find((entry) => entry.name === 'broken');
  assert.equal(broken?.state, 'UNAVAILABLE');
  assert.match(broken?.reason ?? '', /cannot read the weights in .*broken\/1\/model\.onnx/);
  assert.equal(index.find((entry) => entry.name === 'good')?.state, 'READY');
  assert.deepEqual(await doubledBy(server, 'good'), [2, 4, 6, 8]);
  await rejectsWith(server.infer(request('broken')), 'NOT_FOUND', /'broken' has no available versions: .*cannot read the weights/);
  assert.deepEqual([server.modelReady('good'), server.modelReady('broken')], [true, false]);
  assert.equal(server.ready, false, 'strict readiness: a model loaded at start is not ready');
  const lenient = await started(t, { modelRepository: repo, backends: [doublerBackend(), brokenBackend()], strictReadiness: false });
  assert.equal(lenient.ready, true, 'without strict readiness the server is ready regardless');
});

test('infer() of a model the repository does not have is NOT_FOUND; a name that is a path is INVALID_ARGUMENT', async (t) => {
  const server = await started(t, { modelRepository: await fakeRepository(t, { good: undefined }) });
  await rejectsWith(server.infer(request('missing')), 'NOT_FOUND', /unknown model: 'missing'/);
  await rejectsWith(server.infer(request('../good')), 'INVALID_ARGUMENT', /invalid model name/);
  assert.equal(server.modelReady('missing'), false);
});

test('while start() is still loading, a model not known yet is UNAVAILABLE with a retry hint (a proxy tries another replica), not NOT_FOUND', async (t) => {
  const repo = await fakeRepository(t, { good: undefined });
  const server = new Server({ modelRepository: repo, backends: [doublerBackend()], logger: silent });
  t.after(() => server.close());
  const starting = server.start();
  const error = await server.infer(request('good')).then(
    () => assert.fail('answered before start()'),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof NereidError);
  assert.equal(error.code, 'UNAVAILABLE');
  assert.match(error.message, /model 'good' is not available yet: the server is starting and still loading its models; retry in 1 s/);
  assert.equal(error.retryAfterMs, 1000);
  assert.equal(httpStatusOf(error.code), 503);
  await starting;
  assert.deepEqual(await doubledBy(server, 'good'), [2, 4, 6, 8]);
  await rejectsWith(server.infer(request('missing')), 'NOT_FOUND', /unknown model: 'missing'/);
});

test('a request before start() was called says that start() loads the models, rather than to retry a start nothing runs', async (t) => {
  const repo = await fakeRepository(t, { good: undefined });
  const server = new Server({ modelRepository: repo, backends: [doublerBackend()], logger: silent });
  t.after(() => server.close());
  await rejectsWith(server.infer(request('good')), 'UNAVAILABLE', /^model 'good' is not available yet: the server's models load at start\(\), which has not been called$/);
  // A front end listening before its composition root calls start() (nereid serve does) tells its clients the server is starting.
  const detach = server.attachFrontEnd({ drain: async () => undefined });
  await rejectsWith(server.infer(request('good')), 'UNAVAILABLE', /^model 'good' is not available yet: the server is starting and still loading its models; retry in 1 s$/);
  detach();
  await server.start();
  assert.deepEqual(await doubledBy(server, 'good'), [2, 4, 6, 8]);
});

test("model control mode 'none' refuses load and unload with UNAVAILABLE and the option that allows them", async (t) => {
  const server = await started(t, { modelRepository: await fakeRepository(t, { good: undefined }) });
  await rejectsWith(server.loadModel('good'), 'UNAVAILABLE', /modelControlMode: 'none' \(start it with modelControlMode: 'explicit' or on_demand\)/);
  await rejectsWith(server.unloadModel('good'), 'UNAVAILABLE', /modelControlMode: 'explicit'/);
  assert.deepEqual(await doubledBy(server, 'good'), [2, 4, 6, 8], 'the model keeps serving');
});

test("explicit mode: a load whose config is not JSON or does not parse is the caller's mistake (INVALID_ARGUMENT), a good load serves", async (t) => {
  const repo = await fakeRepository(t, { good: undefined });
  const server = await started(t, { modelRepository: repo, modelControlMode: 'explicit' });
  assert.deepEqual(await server.repositoryIndex(), [{ name: 'good' }], 'nothing loads at start without --load-model');
  const refusals: [Record<string, unknown>, RegExp][] = [
    [{ config: 'not json' }, /load parameter 'config' is not valid JSON/],
    // Deeper than any request may nest: a field kept as it is (metric_tags) held it, and the config answer overflowed the stack.
    [{ config: `{"metric_tags":{"a":${'['.repeat(100)}${']'.repeat(100)}}}` }, /^JSON nesting depth exceeds maximum allowed limit \(100\): the JSON of load parameter 'config' nests deeper than 100 levels$/],
    [{ config: 42 }, /^load parameter 'config' must be a JSON string \(JSON\.stringify\(config\) from a library caller\), got number 42$/],
    [{ config: { max_batch_size: 4 } }, /^load parameter 'config' must be a JSON string \(JSON\.stringify\(config\) from a library caller\), got an object$/],
    [{ config: JSON.stringify({ max_batch_size: 'many' }) }, /load failed for model 'good' with the config given: invalid config override: max_batch_size/],
    [{ config: JSON.stringify({ input: [{ name: 'NOPE', data_type: 'TYPE_FP32', dims: [4] }] }) }, /unexpected inference input 'NOPE', allowed inputs are: /],
    [{ 'file:1/model.onnx': 'AAAA' }, /uploading model files is disabled/],
    [{ colour: 'blue' }, /unknown load parameter 'colour'/],
  ];
  for (const [parameters, message] of refusals) {
    await assert.rejects(server.loadModel('good', parameters), (error: unknown) => {
      assert.ok(error instanceof NereidError && error.code === 'INVALID_ARGUMENT', `INVALID_ARGUMENT for ${JSON.stringify(parameters)}, got ${String(error)}`);
      assert.equal(httpStatusOf(error.code), 400);
      assert.match(error.message, message);
      return true;
    });
  }
  await server.loadModel('good', { config: JSON.stringify({ max_batch_size: 2 }) });
  assert.equal((await server.modelConfig('good')).max_batch_size, 2, 'the config given replaces the repository one');
  assert.deepEqual(await doubledBy(server, 'good'), [2, 4, 6, 8]);
  await server.unloadModel('good');
  await rejectsWith(server.infer(request('good')), 'NOT_FOUND', /has no available versions \(it was unloaded\)/);
});

test("several repositories are served as one, as Triton serves them: a name in two of them is served from neither, its reason in the index", async (t) => {
  const base = await fakeRepository(t, { base_model: undefined, shared: undefined });
  const team = await fakeRepository(t, { team_model: undefined, shared: undefined });
  const server = await started(t, { modelRepository: [base, team, `${base}/`], modelControlMode: 'explicit', loadModels: ['base_model', 'team_model', 'shared'] });
  assert.deepEqual(await doubledBy(server, 'base_model'), [2, 4, 6, 8]);
  assert.deepEqual(await doubledBy(server, 'team_model'), [2, 4, 6, 8]);
  const index = await server.repositoryIndex();
  assert.deepEqual(index.map((row) => row.name), ['base_model', 'shared', 'team_model'], 'one list, a folder named twice counting once');
  const shared = index.find((row) => row.name === 'shared')!;
  assert.equal(shared.state, 'UNAVAILABLE');
  // Triton's reason first, then which repositories by their folder's name: a client is told no server path.
  const both = `model appears in two or more repositories: '${basename(base)}' and '${basename(team)}'`;
  assert.equal(shared.reason, both);
  assert.ok(!shared.reason!.includes(tmpdir()), shared.reason);
  await rejectsWith(server.infer(request('shared')), 'NOT_FOUND', new RegExp(`^Request for unknown model: 'shared' has no available versions: ${both}$`));
  await rejectsWith(server.loadModel('shared'), 'INVALID_ARGUMENT', new RegExp(`^failed to load 'shared', ${both}$`));
  // Removed from one of them, it loads from the other.
  await rm(join(team, 'shared'), { recursive: true });
  await server.loadModel('shared');
  assert.deepEqual(await doubledBy(server, 'shared'), [2, 4, 6, 8]);
  // Found in a second repository again, it stops serving, as in Triton: which one is meant cannot be told.
  await writeFile(join(team, 'shared'), 'a file is no model folder');
  await server.loadModel('shared');
  assert.deepEqual(await doubledBy(server, 'shared'), [2, 4, 6, 8], 'a file of its name in another repository is no second model');
  await rm(join(team, 'shared'));
  await cp(join(base, 'shared'), join(team, 'shared'), { recursive: true });
  await rejectsWith(server.loadModel('shared'), 'INVALID_ARGUMENT', new RegExp(`^failed to load 'shared', ${both}$`));
  await rejectsWith(server.infer(request('shared')), 'NOT_FOUND', /has no available versions: model appears in two or more repositories/);
  // A repository inside another would make its folder one of the outer repository's models.
  const nested = new Server({ modelRepository: [base, join(base, 'base_model')], backends: [doublerBackend()], logger: silent });
  t.after(() => nested.close());
  await rejectsWith(nested.start(), 'INVALID_ARGUMENT', /model repository .*base_model lies inside model repository .*: its folder would be one of the outer repository's models/);
});

test('close() makes infer() UNAVAILABLE, releases the instances and closes the cache store', async (t) => {
  const backend = doublerBackend();
  const store = new LruCacheStore(1024 * 1024);
  const repo = await fakeRepository(t, { cached: 'max_batch_size: 4\nresponse_cache: { enable: true }\n' });
  const server = await started(t, { modelRepository: repo, backends: [backend], responseCache: store });
  assert.deepEqual(await doubledBy(server, 'cached'), [2, 4, 6, 8]);
  assert.equal(store.usage?.entries, 1, 'the model used the server-wide store');
  await server.close();
  assert.deepEqual([server.live, server.ready], [false, false]);
  await rejectsWith(server.infer(request('cached')), 'UNAVAILABLE', /shutting down/);
  await rejectsWith(server.loadModel('cached'), 'UNAVAILABLE', /shutting down/);
  assert.ok(backend.instances.length > 0 && backend.instances.every((instance) => instance.released), 'every instance released');
  assert.equal(store.usage?.entries, 0, 'the store was closed');
});

// ---------------------------------------------------------------------------------------------
// Importing the core loads no engine and no Redis client

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const source = (path: string) => new URL(`../${path}`, import.meta.url).href;

/** Imports `modules` in a fresh Node, optionally describes a model through ONNX Runtime, and lists the onnxruntime/ioredis packages it then holds. */
async function packagesLoadedBy(modules: string[], describeModel?: string): Promise<string[]> {
  const probe = `
    const [modules, describeModel, backend] = JSON.parse(process.argv[1]);
    for (const module of modules) await import(module);
    if (describeModel) await new (await import(backend)).OnnxRuntimeBackend().describe(describeModel);
    const { createRequire } = await import('node:module');
    const loaded = Object.keys(createRequire(import.meta.url).cache).map((path) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(path)?.[1]);
    console.log(JSON.stringify([...new Set(loaded.filter((name) => /onnxruntime|ioredis/.test(name ?? '')))].sort()));
  `;
  const args = ['--import', 'tsx', '--input-type=module', '-e', probe, JSON.stringify([modules, describeModel, source('backends/onnx-runtime-backend.ts')])];
  const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as string[];
}

test('importing server.ts loads neither onnxruntime-node nor ioredis (and the check sees them when they are loaded)', async (t) => {
  assert.deepEqual(await packagesLoadedBy([source('server/server.ts')]), []);
  // The control: the same check after what the composition root does for ONNX Runtime and a Redis cache.
  const dir = await mkdtemp(join(tmpdir(), 'nereid-import-probe-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'model.onnx'), addSubModel());
  const loaded = await packagesLoadedBy([source('server/server.ts'), source('cache/redis-cache-store.ts')], join(dir, 'model.onnx'));
  for (const name of ['ioredis', 'onnxruntime-node']) assert.ok(loaded.includes(name), `the check sees ${name}: ${loaded.join(', ')}`);
});

test('a wrong server option is refused with what was expected, naming the option', () => {
  assert.throws(
    () => new Server({ backends: [doublerBackend()], logger: silent, modelRepository: 'models', modelMemoryBudget: 'lots' }),
    /^TypeError: Server: option 'modelMemoryBudget': a memory budget is bytes .* got 'lots'$/,
  );
});

test('the idle memory reclaimer collects only while nothing runs, however the request came, and is off with reclaimIdleMemory: false', async (t) => {
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n' });
  const backend = doublerBackend();
  const server = new Server({ modelRepository: repo, backends: [backend], logger: silent, reclaimIdleMemory: { growthBytes: 1, checkEveryMs: 3_600_000 } });
  t.after(() => server.close());
  await server.start();
  const reclaimer = server.memoryReclaimer!;
  const grow = () => Buffer.alloc(1024 * 1024, 1);
  let garbage = grow();
  reclaimer.check();
  reclaimer.check();
  const quietCollections = reclaimer.collected;
  assert.ok(quietCollections >= 1, 'a quiet server whose ArrayBuffers grew is collected');

  // A request held inside the model: in flight, and started by a caller that bypasses admission (a job, tune, eval).
  const gate = backend.hold();
  const answer = server.model('m').infer(request('m'));
  await gate.whenWaiting();
  garbage = grow();
  reclaimer.check();
  reclaimer.check();
  reclaimer.check();
  assert.equal(reclaimer.collected, quietCollections, 'no collection while a request runs');
  gate.open();
  await answer;
  assert.ok(garbage.length > 0);

  const off = new Server({ modelRepository: repo, backends: [doublerBackend()], logger: silent, reclaimIdleMemory: false });
  t.after(() => off.close());
  assert.equal(off.memoryReclaimer, undefined);
});

test("a library caller's server names its options by key in its messages; one the CLI starts, by its flags", async (t) => {
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n' });
  const messages = async (settingName?: ServerOptions['settingName']) => {
    const { logger, lines } = capturingLogger('warn');
    const backend = doublerBackend();
    const server = await started(t, { modelRepository: repo, logger, backends: [backend], loadModels: ['m'], pinModels: ['m'], monitoring: false, maxQueueSize: 1, settingName });
    const load = await rejectsWith(server.loadModel('m'), 'UNAVAILABLE');
    const shm = (() => {
      try {
        server.sharedMemory.register('r', { key: '/k', byte_size: 4 });
      } catch (error) {
        return (error as Error).message;
      }
    })();
    // Requests held in the model until one finds the queue full.
    const gate = backend.hold();
    const sent: Promise<unknown>[] = [];
    let queueFull: string | undefined;
    for (let i = 0; i < 10 && queueFull === undefined; i++) {
      sent.push(server.infer(request('m')).catch((error: Error) => (queueFull = error.message)));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    gate.open();
    await Promise.all(sent);
    const queueCap = /\(1 requests waiting, the most (.*) allows\)/.exec(queueFull ?? '')?.[1] ?? queueFull;
    return { warnings: lines.filter((line) => !/refused a request/.test(line.msg)).map((line) => line.msg), load: load.message, shm, monitor: server.modelMonitor('m').reason, queueCap };
  };
  assert.deepEqual(await messages(), {
    warnings: [
      "loadModels has no effect with modelControlMode: 'none', which loads every model at start; use explicit or on_demand to choose",
      "pinModels has no effect with modelControlMode: 'none', which never unloads a model to make room; it is for on_demand",
    ],
    load: "explicit model load / unload is not allowed (load): the server runs with modelControlMode: 'none' (start it with modelControlMode: 'explicit' or on_demand)",
    shm: 'client shared memory is off on this server; start it with allowClientShm: true to register regions, or send tensors in the request',
    monitor: 'the server runs with monitoring off (monitoring: false)',
    queueCap: "the server's maxQueueSize",
  });
  assert.deepEqual(await messages(serveFlagName), {
    warnings: [
      '--load-model has no effect with --model-control-mode none, which loads every model at start; use explicit or on_demand to choose',
      '--pin-model has no effect with --model-control-mode none, which never unloads a model to make room; it is for on_demand',
    ],
    load: 'explicit model load / unload is not allowed (load): the server runs with --model-control-mode none (start it with --model-control-mode explicit or on_demand)',
    shm: 'client shared memory is off on this server; start it with --allow-client-shm to register regions, or send tensors in the request',
    monitor: 'the server runs with monitoring off (--monitoring false)',
    queueCap: "the server's --max-queue-size",
  });
  await assert.rejects(createServer({ modelRepository: repo, logger: silent, backends: [doublerBackend()], cacheConfig: 'memcached' }), /^TypeError: cacheConfig: unknown cache 'memcached'/);
  await assert.rejects(
    createServer({ modelRepository: repo, logger: silent, backends: [doublerBackend()], cacheConfig: 'memcached', settingName: serveFlagName }),
    /^TypeError: --cache-config: unknown cache 'memcached'/,
  );
});
