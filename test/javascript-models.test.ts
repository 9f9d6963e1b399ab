/**
 * JavaScript handler models (backend "javascript") on a real server over loopback HTTP: handlers in
 * worker threads answering batches, calling generated ONNX models through context.infer (BLS), one
 * request of a batch failing alone, a runaway handler stopped and replaced, BYTES in and out, and
 * the --allow-code-models opt-in refusing them (and load requests that would switch to them) when off.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { bytesElements } from '../src/core/datatype.js';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { readFile } from 'node:fs/promises';
import { runLocalBatchJob } from '../src/jobs/local-batch-job.js';
import { GrpcClient, HttpClient } from '../src/client/index.js';
import { runCli, serveChild, stopChild } from './support/cli-server.js';
import { startGrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer, type TestServer } from './support/test-server.js';

type Json = any;

/** Writes a handler model: config.pbtxt beside version 1, the handler as 1/<file>. */
async function writeHandler(repoDir: string, name: string, config: string, code: string, file = 'model.mjs'): Promise<void> {
  await mkdir(join(repoDir, name, '1'), { recursive: true });
  await writeFile(join(repoDir, name, 'config.pbtxt'), `name: "${name}"\nbackend: "javascript"\n${config}`);
  await writeFile(join(repoDir, name, '1', file), code);
}

const FP32_4 = (name: string) => `{ name: "${name}" data_type: TYPE_FP32 dims: [ 4 ] }`;

/** Doubles IN; also answers how many requests its batch held, and the parameter `tag` it was given. */
const DOUBLE = `
export function execute(requests) {
  return requests.map((request) => {
    const input = request.inputs.IN;
    return {
      OUT: { datatype: 'FP32', shape: input.shape, data: input.data.map((value) => value * 2) },
      BATCH: { shape: [input.shape[0], 1], data: Array(input.shape[0]).fill(requests.length) },
    };
  });
}
`;

/** Calls two ONNX models (×2 and ×3) through context.infer and adds their answers: ×5. */
const COMBINE = `
let context;
export function initialize(given) { context = given; context.log('combine ready for', given.modelName); }
export async function execute(requests) {
  return Promise.all(requests.map(async (request) => {
    const input = { INPUT0: request.inputs.IN };
    const [doubled, tripled] = await Promise.all([context.infer('times2', input), context.infer('times3', input, { outputs: ['OUTPUT0'] })]);
    const a = doubled.OUTPUT0.data, b = tripled.OUTPUT0.data;
    return { OUT: { shape: doubled.OUTPUT0.shape, data: a.map((value, index) => value + b[index]) } };
  }));
}
`;

/** A CommonJS handler: fails a request whose input holds a negative value, answering the others. */
const PICKY = `
module.exports = {
  execute(requests) {
    return requests.map(async (request) => {
      const data = request.inputs.IN.data;
      if (data.some((value) => value < 0)) throw Object.assign(new Error('negative values are not accepted, got ' + Array.from(data).join(',')), { code: 'INVALID_ARGUMENT' });
      return { OUT: { shape: request.inputs.IN.shape, data }, BATCH: { shape: [request.inputs.IN.shape[0], 1], data: [requests.length] } };
    });
  },
};
`;

/** Upper-cases BYTES elements. */
const UPPER = `
export function execute(requests) {
  return requests.map(({ inputs }) => ({ OUT: { shape: inputs.TEXT.shape, data: inputs.TEXT.data.map((bytes) => bytes.toString('utf8').toUpperCase()) } }));
}
`;

/** Never returns when asked to spin (request parameter spin: true); echoes otherwise. */
const RUNAWAY = `
export function execute(requests) {
  if (requests.some((request) => request.parameters.spin === true)) for (;;) {}
  return requests.map((request) => ({ OUT: request.inputs.IN }));
}
`;

/**
 * Holds its batch until the file named by request parameter \`gate\` exists, logging 'start' and 'end' to <gate>.log:
 * the order in which things happen to a held batch, read without a clock.
 */
const HELD = `
import { appendFileSync, existsSync } from 'node:fs';
export async function execute(requests) {
  const gate = requests[0].parameters.gate;
  appendFileSync(gate + '.log', 'start\\n');
  while (!existsSync(gate)) await new Promise((resolve) => setTimeout(resolve, 5));
  appendFileSync(gate + '.log', 'end\\n');
  return requests.map((request) => ({ OUT: request.inputs.IN }));
}
`;

/** Keeps its core busy for 300 ms, then echoes IN. */
const BUSY = `
export function execute(requests) {
  const until = performance.now() + 300;
  while (performance.now() < until) {}
  return requests.map((request) => ({ OUT: request.inputs.IN }));
}
`;

/** Only waits on another model: context.infer('busy'). */
const WAITER = `
let context;
export function initialize(given) { context = given; }
export async function execute(requests) {
  return Promise.all(requests.map(async (request) => ({ OUT: (await context.infer('busy', { IN: request.inputs.IN })).OUT })));
}
`;

/** Upper-cases TEXT, except 'self', which it passes to itself: a call that never ends but by a timeout. */
const CALLER = `
let context;
export function initialize(given) { context = given; }
export async function execute(requests) {
  return Promise.all(requests.map(async (request) => {
    const text = request.inputs.TEXT.data[0].toString();
    if (text === 'self') return { OUT: (await context.infer('caller', { TEXT: request.inputs.TEXT }, { request })).OUT };
    return { OUT: { shape: [1], data: [text.toUpperCase()] } };
  }));
}
`;

const BATCHED = (preferred: number) => `
max_batch_size: 8
input [ ${FP32_4('IN')} ]
output [ ${FP32_4('OUT')}, { name: "BATCH" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { preferred_batch_size: [ ${preferred} ] max_queue_delay_microseconds: 30000000 }
`;

/** An ensemble: times2 on IN, then `second` (a handler taking IN, giving OUT) on that. */
async function writeTimesTwoThen(repoDir: string, name: string, second: string): Promise<void> {
  await mkdir(join(repoDir, name, '1'), { recursive: true });
  await writeFile(
    join(repoDir, name, 'config.pbtxt'),
    `name: "${name}"\nplatform: "ensemble"\nmax_batch_size: 8\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\n` +
      `ensemble_scheduling { step [ { model_name: "times2" model_version: -1 input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "DOUBLED" } }, ` +
      `{ model_name: "${second}" model_version: -1 input_map { key: "IN" value: "DOUBLED" } output_map { key: "OUT" value: "OUT" } } ] }\n`,
  );
}

async function writeModels(repoDir: string): Promise<void> {
  await writeModel(repoDir, 'times2', 1, scaleModel(2), 'max_batch_size: 8\n');
  await writeModel(repoDir, 'times3', 1, scaleModel(3), 'max_batch_size: 8\n');
  await writeHandler(repoDir, 'double', BATCHED(4), DOUBLE);
  await writeHandler(repoDir, 'combine', `max_batch_size: 8\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\n`, COMBINE);
  await writeHandler(repoDir, 'picky', BATCHED(3), PICKY, 'model.js');
  const echo4 = `max_batch_size: 0\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\n`;
  await writeHandler(repoDir, 'busy', echo4, BUSY);
  await writeHandler(repoDir, 'waiter', echo4, WAITER);
  await writeHandler(
    repoDir,
    'caller',
    `max_batch_size: 0\ninput [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]\noutput [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]\n` +
      `instance_group [ { count: 2 } ]\nparameters { key: "execute_timeout_ms" value: { string_value: "1000" } }\n`,
    CALLER,
  );
  await writeHandler(
    repoDir,
    'parameters',
    `max_batch_size: 0\ninput [ ${FP32_4('IN')} ]\noutput [ { name: "PARAMETERS" data_type: TYPE_STRING dims: [ 1 ] } ]\n`,
    `export const execute = (requests) => requests.map((request) => ({ PARAMETERS: { shape: [1], data: [JSON.stringify(request.parameters)] } }));`,
  );
  await writeHandler(repoDir, 'upper', `max_batch_size: 0\ninput [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]\noutput [ { name: "OUT" data_type: TYPE_STRING dims: [ -1 ] } ]\n`, UPPER);
  await writeHandler(
    repoDir,
    'runaway',
    `max_batch_size: 0\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\noutput [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\nparameters { key: "execute_timeout_ms" value: { string_value: "1000" } }\n`,
    RUNAWAY,
  );
  // Its timeout is only reached by a broken build, which answers a cancelled caller when the batch ends.
  await writeHandler(
    repoDir,
    'held',
    `max_batch_size: 0\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\nparameters { key: "execute_timeout_ms" value: { string_value: "20000" } }\n`,
    HELD,
  );
  // An ensemble whose second step is a handler (which itself calls two ONNX models): 2·IN, then 5·that.
  await writeTimesTwoThen(repoDir, 'js_pipeline', 'combine');
  // An ensemble whose second step fails as the server's fault (an Error without a client's code).
  await writeHandler(repoDir, 'broken', `max_batch_size: 8\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\n`, `export const execute = (requests) => requests.map(() => new Error('the broken step broke'));`);
  await writeTimesTwoThen(repoDir, 'broken_pipeline', 'broken');
  // A handler that calls `broken` and lets its failure escape.
  await writeHandler(
    repoDir,
    'broken_caller',
    `max_batch_size: 8\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\n`,
    `let context;\nexport function initialize(given) { context = given; }\nexport const execute = (requests) => requests.map(async (request) => ({ OUT: (await context.infer('broken', { IN: request.inputs.IN }, { request })).OUT }));`,
  );
  await writeHandler(repoDir, 'no_file', `max_batch_size: 0\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\n`, '', 'README.txt');
  await writeHandler(repoDir, 'no_outputs', `max_batch_size: 0\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\n`, UPPER);
  // A handler file that is a link to code outside its version folder (still inside the repository).
  await writeHandler(repoDir, 'escaping', `max_batch_size: 0\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')} ]\n`, RUNAWAY, 'unused.mjs');
  await writeFile(join(repoDir, 'escaping', 'shared.mjs'), RUNAWAY);
  await symlink(join(repoDir, 'escaping', 'shared.mjs'), join(repoDir, 'escaping', '1', 'model.mjs'));
}

async function infer(url: string, model: string, body: Json): Promise<{ status: number; body: Json }> {
  const response = await fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

const fp32 = (name: string, rows: number[][], parameters?: Json) => ({
  inputs: [{ name, datatype: 'FP32', shape: [rows.length, rows[0].length], data: rows.flat() }],
  ...(parameters ? { parameters } : {}),
});

async function statistics(url: string, model: string): Promise<Json> {
  return (await (await fetch(`${url}/v2/models/${model}/stats`)).json()).model_stats[0];
}

async function indexEntry(url: string, model: string): Promise<Json> {
  const index: Json[] = await (await fetch(`${url}/v2/repository/index`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).json();
  return index.find((entry) => entry.name === model);
}

describe('javascript handler models with --allow-code-models', () => {
  let served: TestServer;
  /** The server's log lines, as JSON objects. */
  const logged: Json[] = [];
  before(async () => {
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    served = await startTestServer({ models: writeModels, server: { allowCodeModels: true, logger } });
  });
  after(async () => served?.close());

  test('a handler doubles its input; metadata comes from its config', async () => {
    const metadata = await (await fetch(`${served.url}/v2/models/double`)).json();
    assert.equal(metadata.platform, 'javascript');
    assert.deepEqual(metadata.inputs, [{ name: 'IN', datatype: 'FP32', shape: [-1, 4] }]);
    // Alone it would wait for company (preferred size 4): four at once make one batch.
    const answers = await Promise.all([1, 2, 3, 4].map((seed) => infer(served.url, 'double', fp32('IN', [[seed, -seed, 0.5, seed * 10]]))));
    answers.forEach((answer, index) => {
      const seed = index + 1;
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const out = answer.body.outputs.find((output: Json) => output.name === 'OUT');
      assert.deepEqual(out.data, [seed * 2, -seed * 2, 1, seed * 20]);
      assert.deepEqual(out.shape, [1, 4]);
      assert.deepEqual(answer.body.outputs.find((output: Json) => output.name === 'BATCH').data, [4], 'execute() got the four requests together');
    });
    const stats = await statistics(served.url, 'double');
    assert.equal(stats.inference_count, 4);
    assert.equal(stats.execution_count, 1, 'four requests, one execution');
    assert.equal(stats.inference_stats.success.count, 4);
  });

  test("a handler's compute_infer holds its wait on the models it calls, as Triton's Python backend counts it; its cost is its own compute and what they computed for it", async () => {
    const answer = await infer(served.url, 'waiter', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [4], data: [1, 2, 3, 4] }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const busy = (await statistics(served.url, 'busy')).inference_stats.compute_infer.ns;
    const waiter = (await statistics(served.url, 'waiter')).inference_stats;
    assert.ok(busy >= 300e6, `busy computed ${busy} ns`);
    // The wait was booked as compute_input (getting the inputs ready), so the phases of a pipeline did not add up to its request.
    assert.ok(waiter.compute_infer.ns >= busy, `the waiter's compute_infer (${waiter.compute_infer.ns} ns) holds its wait on busy (${busy} ns)`);
    assert.ok(waiter.compute_input.ns < waiter.compute_infer.ns / 2, `compute_input (${waiter.compute_input.ns} ns) is the hand-over only`);
    // Its cost is its own compute and what it had busy compute for it, as an ensemble's is its steps'.
    const busyCost = (await statistics(served.url, 'busy')).cost.compute_seconds;
    const waiterCost = (await statistics(served.url, 'waiter')).cost.compute_seconds;
    assert.ok(busyCost >= 0.3, `busy cost ${busyCost} core-seconds`);
    assert.ok(waiterCost >= busyCost && waiterCost - busyCost < busyCost / 2, `the waiter's cost (${waiterCost}) is busy's (${busyCost}) and its own`);
  });

  test('a handler calls two ONNX models through context.infer and combines their answers (BLS)', async () => {
    const answer = await infer(served.url, 'combine', fp32('IN', [[1, 2, 3, 4], [-1, 0, 0.25, 8]]));
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.outputs[0].data, [5, 10, 15, 20, -5, 0, 1.25, 40]);
    assert.deepEqual(answer.body.outputs[0].shape, [2, 4]);
    // The calls went through the server: each ONNX model counts the request the handler made.
    assert.equal((await statistics(served.url, 'times2')).inference_stats.success.count, 1);
    assert.equal((await statistics(served.url, 'times3')).inference_stats.success.count, 1);
  });

  test('a request the handler fails, in a batch, fails alone with its message and code', async () => {
    const rows = [[1, 2, 3, 4], [5, -6, 7, 8], [9, 10, 11, 12]];
    const answers = await Promise.all(rows.map((row) => infer(served.url, 'picky', fp32('IN', [row]))));
    assert.equal(answers[1].status, 400, JSON.stringify(answers[1].body));
    // In the handler's words: the client is not told which instance of it refused; the log says.
    assert.equal(answers[1].body.error, 'negative values are not accepted, got 5,-6,7,8');
    assert.ok(
      logged.some((line) => /^handler of model 'picky' version 1 \(instance \d+\): request failed: negative values are not accepted, got 5,-6,7,8$/.test(line.msg)),
      'the log names the instance',
    );
    for (const index of [0, 2]) {
      assert.equal(answers[index].status, 200, JSON.stringify(answers[index].body));
      assert.deepEqual(answers[index].body.outputs.find((output: Json) => output.name === 'OUT').data, rows[index]);
      assert.deepEqual(answers[index].body.outputs.find((output: Json) => output.name === 'BATCH').data, [3], 'all three were one batch');
    }
    assert.equal((await statistics(served.url, 'picky')).execution_count, 1);
    // A batch the handler refused whole is no execution (as a failed run is none): counted, it made executions outnumber
    // inferences, and the dashboard's "mean batch" read 0.7.
    // Three at once, so that the batch fills at once rather than after the model's 30 s queue delay.
    const refused = await Promise.all([[-1, 2, 3, 4], [-5, 6, 7, 8], [-9, 10, 11, 12]].map((row) => infer(served.url, 'picky', fp32('IN', [row]))));
    for (const answer of refused) assert.equal(answer.status, 400, JSON.stringify(answer.body));
    const stats = await statistics(served.url, 'picky');
    assert.equal(stats.inference_stats.fail.count, 4);
    assert.equal(stats.execution_count, 1);
    assert.equal(stats.inference_count, 2);
    assert.deepEqual(
      stats.batch_stats.map((batch: Json) => [batch.batch_size, batch.compute_infer.count]),
      [[3, 1]],
      'the mixed batch of three counts all its rows, as Triton counts a batch that ran',
    );
  });

  test('BYTES in and out: strings upper-cased', async () => {
    const answer = await infer(served.url, 'upper', { inputs: [{ name: 'TEXT', datatype: 'BYTES', shape: [3], data: ['hello', 'wörld', ''] }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.outputs[0], { name: 'OUT', datatype: 'BYTES', shape: [3], data: ['HELLO', 'WÖRLD', ''] });
    // nereid profile refuses a handler: /monitor does not send people to it.
    const monitor = (await (await fetch(`${served.url}/v2/models/upper/monitor`)).json()) as Json;
    assert.equal(monitor.monitored, false);
    assert.match(monitor.reason, /^monitoring by reference profile \(OOD flags, drift, feedback\) is not available for backend 'javascript'/);
  });

  test('a library caller giving BYTES as strings is refused with what to give, and the handler serves on', async () => {
    const text = (data: unknown[]) => ({ model: 'upper', inputs: [{ name: 'TEXT', datatype: 'BYTES' as const, shape: [1], data: data as Buffer[] }] });
    await assert.rejects(served.server.infer(text(['abc'])), (error: Json) => {
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, /input 'TEXT' is BYTES, whose elements are Buffers \(Buffer\.from\(text\) for a string\); element 0 is string "abc"/);
      return true;
    });
    const answer = await served.server.infer(text([Buffer.from('abc')]));
    assert.deepEqual(bytesElements(answer.outputs[0].data).map(String), ['ABC']);
  });

  test('a library caller giving another typed array than the datatype\'s, or no inputs, is refused as INVALID_ARGUMENT, by ONNX Runtime models and handlers alike', async () => {
    const call = (model: string, input: string, data: unknown) => served.server.infer({ model, inputs: [{ name: input, datatype: 'FP32', shape: [1, 4], data: data as Float32Array }] });
    for (const [model, input] of [['double', 'IN'], ['times2', 'INPUT0']]) {
      await assert.rejects(call(model, input, new Float64Array(4)), (error: Json) => {
        assert.equal(error.code, 'INVALID_ARGUMENT', error.message);
        assert.match(error.message, new RegExp(`input '${input}' is FP32, whose data is a Float32Array \\(or a plain array of values\\); got a Float64Array`));
        return true;
      });
      // A plain array is read as JSON's would be: the model gets a Float32Array. Four at once: 'double' holds a batch
      // until it has its preferred four rows (or 30 s).
      for (const answer of await Promise.all(Array.from({ length: 4 }, () => call(model, input, [1, 2, 3, 4])))) {
        assert.ok(answer.outputs[0].data instanceof Float32Array);
        assert.deepEqual([...(answer.outputs[0].data as Float32Array)], [2, 4, 6, 8]);
      }
      await assert.rejects(served.server.infer({ model } as never), (error: Json) => {
        assert.equal(error.code, 'INVALID_ARGUMENT', error.message);
        assert.match(error.message, /the request's inputs must be an array of \{ name, datatype, shape, data \}, got undefined/);
        return true;
      });
    }
  });

  test("a handler sees the request's parameters without the wire's binary_data_output, over HTTP as over gRPC", async () => {
    const endpoint = await startGrpcEndpoint(served.server);
    const grpc = new GrpcClient({ address: `127.0.0.1:${endpoint.port}` });
    try {
      const parameters = { foo: 'bar', n: 3, flag: true, binary_data_output: true };
      const input = { IN: { datatype: 'FP32', shape: [4], data: Float32Array.of(1, 2, 3, 4) } } as const;
      for (const client of [new HttpClient({ url: served.url }), grpc]) {
        const answer = await client.infer('parameters', input, { parameters });
        assert.deepEqual(JSON.parse(String((answer.outputs.PARAMETERS.data as unknown[])[0])), { foo: 'bar', n: 3, flag: true }, client.constructor.name);
      }
    } finally {
      grpc.close();
      await endpoint.close();
    }
  });

  test('a runaway handler is stopped after execute_timeout_ms, its request failed, and the model keeps serving', async () => {
    const stuck = await infer(served.url, 'runaway', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [4], data: [1, 2, 3, 4] }], parameters: { spin: true } });
    assert.equal(stuck.status, 500, JSON.stringify(stuck.body));
    assert.match(stuck.body.error, /did not answer within 1000 ms \(parameter execute_timeout_ms\); its worker was stopped/);
    const after = await infer(served.url, 'runaway', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [4], data: [4, 3, 2, 1] }] });
    assert.equal(after.status, 200, JSON.stringify(after.body));
    assert.deepEqual(after.body.outputs[0].data, [4, 3, 2, 1]);
    assert.equal((await indexEntry(served.url, 'runaway')).state, 'READY');
  });

  test('a caller that cancels while the handler runs its batch is answered at once (CANCELLED), and the model serves on', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'nereid-held-'));
    const gate = join(folder, 'gate');
    const log = async () => (await readFile(`${gate}.log`, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const input = { model: 'held', inputs: [{ name: 'IN', datatype: 'FP32' as const, shape: [4], data: Float32Array.of(1, 2, 3, 4) }], parameters: { gate } };
    try {
      const caller = new AbortController();
      const abandoned = served.server.infer(input, { signal: caller.signal });
      while ((await log()).length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      caller.abort();
      await assert.rejects(abandoned, (error: Json) => error.code === 'CANCELLED' && /cancelled by the client/.test(error.message));
      assert.deepEqual(await log(), ['start'], 'the caller was answered while the handler still held its batch');
      await writeFile(gate, '');
      const next = await served.server.infer(input);
      assert.deepEqual(Array.from(next.outputs[0].data as Float32Array), [1, 2, 3, 4]);
      // A build that answered the caller only when its batch ended would have had it stopped at the timeout: no 'end'.
      assert.deepEqual(await log(), ['start', 'end', 'start', 'end'], 'the held batch ran to its end, on the same worker, before the next');
    } finally {
      await writeFile(gate, '');
      await rm(folder, { recursive: true, force: true });
    }
  });

  test("a handler calling itself times out once: the calls its stopped worker made are called off, and its instances serve again", async () => {
    const text = (data: string) => ({ inputs: [{ name: 'TEXT', datatype: 'BYTES', shape: [1], data: [data] }] });
    const self = await infer(served.url, 'caller', text('self'));
    assert.equal(self.status, 500, JSON.stringify(self.body));
    assert.match(self.body.error, /did not answer within 1000 ms/);
    // Served once a new worker is up (the stopped ones are replaced)...
    const plain = await infer(served.url, 'caller', text('plain'));
    assert.equal(plain.status, 200, JSON.stringify(plain.body));
    assert.deepEqual(plain.body.outputs[0].data, ['PLAIN']);
    // ...and nothing is left calling itself, to time out again and again after the client had its answer.
    const failures = async () => (await statistics(served.url, 'caller')).inference_stats.fail.count;
    const before = await failures();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(await failures(), before, 'requests kept failing after the client had its answer');
  });

  test('a handler serves as an ensemble step', async () => {
    const answer = await infer(served.url, 'js_pipeline', fp32('IN', [[1, -2, 0.5, 3]]));
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.outputs[0].data, [10, -20, 5, 30]);
  });

  test("a step that fails as the server's fault fails its ensemble naming the step, and is logged at error level once, by the step's model", async () => {
    const answer = await infer(served.url, 'broken_pipeline', fp32('IN', [[1, 2, 3, 4]]));
    assert.equal(answer.status, 500, JSON.stringify(answer.body));
    assert.match(answer.body.error, /^ensemble 'broken_pipeline' step 1 \(model 'broken'\): handler of model 'broken' version 1 \(instance 0\): request failed: the broken step broke$/);
    const errorLines = logged.filter((line) => line.level === 50 && /the broken step broke/.test(line.msg));
    assert.deepEqual(errorLines.map((line) => line.model), ['broken'], JSON.stringify(errorLines));
    // Its stack is the handler's own, where the failure was made.
    assert.match(errorLines[0].err.stack, /model\.mjs/);
    // The ensemble's view, naming the step, stays in the log at debug, with the same request id.
    const ensembleLine = logged.find((line) => line.model === 'broken_pipeline' && /^inference failed: ensemble 'broken_pipeline' step 1/.test(line.msg));
    assert.equal(ensembleLine?.level, 20);
    assert.equal(ensembleLine?.reqId, errorLines[0].reqId);
  });

  test("a called model's internal failure that a handler lets escape is logged at error level once, by the called model", async () => {
    const before = logged.length;
    const answer = await infer(served.url, 'broken_caller', fp32('IN', [[1, 2, 3, 4]]));
    assert.equal(answer.status, 500, JSON.stringify(answer.body));
    assert.match(answer.body.error, /^handler of model 'broken_caller' version 1 \(instance 0\): request failed: context\.infer\('broken'\): handler of model 'broken' version 1 \(instance 0\): request failed: the broken step broke$/);
    const errorLines = logged.slice(before).filter((line) => line.level === 50 && /the broken step broke/.test(line.msg));
    assert.deepEqual(errorLines.map((line) => line.model), ['broken'], JSON.stringify(errorLines));
    assert.ok(logged.slice(before).some((line) => line.model === 'broken_caller' && line.level === 20 && /^inference failed: handler of model 'broken_caller'/.test(line.msg)));
  });

  test('a javascript config without outputs is refused at load, saying what to declare', async () => {
    const entry = await indexEntry(served.url, 'no_outputs');
    assert.equal(entry.state, 'UNAVAILABLE');
    assert.match(entry.reason, /a javascript model declares its inputs and outputs in its config, and this config has no output/);
  });

  test('a version folder without model.js or model.mjs is refused, naming both', async () => {
    const entry = await indexEntry(served.url, 'no_file');
    assert.equal(entry.state, 'UNAVAILABLE');
    assert.match(entry.reason, /no_file\/1 holds no model file: backend 'javascript' reads model\.js or model\.mjs/);
  });

  test('a handler file that links outside its version folder is refused', async () => {
    const entry = await indexEntry(served.url, 'escaping');
    assert.equal(entry.state, 'UNAVAILABLE');
    assert.match(entry.reason, /model file 'model\.mjs' is a link to a file outside escaping\/1/);
  });
});

describe('javascript handler models without --allow-code-models', () => {
  let served: TestServer;
  before(async () => {
    served = await startTestServer({
      models: async (repoDir) => {
        await writeModel(repoDir, 'times2', 1, scaleModel(2), 'max_batch_size: 8\n');
        await writeHandler(repoDir, 'double', BATCHED(4), DOUBLE);
      },
      server: { modelControlMode: 'explicit' },
    });
  });
  after(async () => served?.close());

  const load = (model: string, config?: Json) =>
    fetch(`${served.url}/v2/repository/models/${model}/load`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(config ? { parameters: { config: JSON.stringify(config) } } : {}),
    });

  test('loading a javascript model is refused, naming the option that allows it (a library server: its key)', async () => {
    const answer = await load('double');
    assert.ok(answer.status >= 400, `status ${answer.status}`);
    assert.match((await answer.json()).error, /backend 'javascript', which runs code from the model repository; the server loads such models only with allowCodeModels: true/);
    assert.equal((await indexEntry(served.url, 'double')).state, 'UNAVAILABLE');
  });

  test('a load request cannot switch a model to backend javascript', async () => {
    const answer = await load('times2', { backend: 'javascript', max_batch_size: 8, input: [{ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [4] }], output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4] }] });
    assert.equal(answer.status, 400);
    assert.match((await answer.json()).error, /allowCodeModels: true/);
    assert.notEqual((await indexEntry(served.url, 'times2')).state, 'READY');
  });
});

test('nereid serve --allow-code-models serves a handler; its log lines and finalize() reach the server log', async () => {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-js-cli-'));
  try {
    const logged = `
      let context;
      export function initialize(given) { context = given; given.log('hello from', given.modelName, 'instance', given.instance); }
      export function finalize() { context.log.warn('goodbye from', context.modelName); }
      ${UPPER}`;
    await writeHandler(repo, 'upper', `max_batch_size: 0\ninput [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]\noutput [ { name: "OUT" data_type: TYPE_STRING dims: [ -1 ] } ]\n`, logged);
    // Without the flag the model is refused, and the refusal names the flag (a library server names its option key).
    const refused = await serveChild(repo, ['--allow-metrics', 'false', '--strict-readiness', 'false']);
    try {
      const answer = await fetch(`${refused.url}/v2/models/upper/ready`);
      assert.equal(answer.status, 400);
    } finally {
      await stopChild(refused);
    }
    assert.match(refused.output(), /runs code from the model repository; the server loads such models only with --allow-code-models/);
    const served = await serveChild(repo, ['--allow-code-models', '--allow-metrics', 'false']);
    try {
      const answer = await infer(served.url, 'upper', { inputs: [{ name: 'TEXT', datatype: 'BYTES', shape: [1], data: ['cli'] }] });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.deepEqual(answer.body.outputs[0].data, ['CLI']);
      assert.match(served.output(), /"instance":0.*"msg":"hello from upper instance 0"/);
    } finally {
      await stopChild(served);
    }
    assert.match(served.output(), /"msg":"goodbye from upper"/);
  } finally {
    await rm(repo, { recursive: true, force: true });
  }
});

test('a batch job runs a handler model when allowed (nereid batch --allow-code-models)', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'nereid-js-batch-'));
  try {
    const repo = join(folder, 'models');
    await writeHandler(repo, 'double', `max_batch_size: 8\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')}, { name: "BATCH" data_type: TYPE_FP32 dims: [ 1 ] } ]\ndynamic_batching { }\n`, DOUBLE);
    await writeFile(join(folder, 'in.jsonl'), [1, 2, 3].map((seed) => JSON.stringify({ IN: [seed, seed, seed, seed] })).join('\n') + '\n');
    const options = { model: 'double', input: join(folder, 'in.jsonl'), output: join(folder, 'out.jsonl'), modelRepository: repo, progress: 'none' as const };
    await assert.rejects(runLocalBatchJob(options), /only with --allow-code-models/);
    const summary = await runLocalBatchJob({ ...options, allowCodeModels: true });
    assert.deepEqual([summary.processed, summary.failed], [3, 0], JSON.stringify(summary));
    const lines = (await readFile(join(folder, 'out.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line));
    const doubled = lines.sort((a, b) => a.id - b.id).map((line) => line.outputs.find((output: Json) => output.name === 'OUT').data);
    assert.deepEqual(doubled, [[2, 2, 2, 2], [4, 4, 4, 4], [6, 6, 6, 6]]);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('nereid eval loads a handler model only with --allow-code-models, and its refusal names that flag', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'nereid-js-eval-'));
  try {
    const repo = join(folder, 'models');
    await writeHandler(repo, 'double', `max_batch_size: 8\ninput [ ${FP32_4('IN')} ]\noutput [ ${FP32_4('OUT')}, { name: "BATCH" data_type: TYPE_FP32 dims: [ 1 ] } ]\n`, DOUBLE);
    await writeFile(join(folder, 'in.jsonl'), [1, 2, 3].map((seed) => JSON.stringify({ IN: [seed, seed, seed, seed] })).join('\n') + '\n');
    const args = ['eval', '--model-repository', repo, '--model', 'double', '--data', join(folder, 'in.jsonl'), '--output', 'OUT', '--json'];
    const refused = await runCli(args);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /runs code from the model repository; the server loads such models only with --allow-code-models/);
    const allowed = await runCli([...args, '--allow-code-models']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(JSON.parse(allowed.stdout).examples, 3, allowed.stdout);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test("changing a handler's instance count adds or removes only the difference, as Triton's instance update: initialize and finalize counted, requests answered throughout", async () => {
  const events: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void events.push(String(JSON.parse(line).msg)) });
  const COUNTED = `
    let context;
    export function initialize(given) { context = given; given.log('initialize'); }
    export function finalize() { context.log('finalize'); }
    export const execute = (requests) => requests.map(({ inputs }) => ({ OUT: inputs.IN }));`;
  const config = (count: number) => ({
    backend: 'javascript',
    max_batch_size: 0,
    input: [{ name: 'IN', data_type: 'TYPE_FP32', dims: [4] }],
    output: [{ name: 'OUT', data_type: 'TYPE_FP32', dims: [4] }],
    instance_group: [{ count, kind: 'KIND_CPU' }],
  });
  const served = await startTestServer({
    models: (repoDir) => writeHandler(repoDir, 'counted', 'max_batch_size: 0\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\noutput [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\ninstance_group [ { count: 3 kind: KIND_CPU } ]\n', COUNTED),
    server: { allowCodeModels: true, modelControlMode: 'explicit', loadModels: ['counted'], logger },
  });
  try {
    const tally = () => [events.filter((msg) => msg === 'initialize').length, events.filter((msg) => msg === 'finalize').length];
    // Finalize runs when a removed instance is released, after the load has answered: waited for, not assumed.
    const settled = async (expected: number[]) => {
      for (let tries = 0; tries < 100 && String(tally()) !== String(expected); tries++) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(tally(), expected);
    };
    await settled([3, 0]);
    for (const [count, expected] of [[4, [4, 0]], [3, [4, 1]], [4, [5, 1]]] as const) {
      const during = Array.from({ length: 10 }, () => infer(served.url, 'counted', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [4], data: [1, 2, 3, 4] }] }));
      const loaded = await fetch(`${served.url}/v2/repository/models/counted/load`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ parameters: { config: JSON.stringify(config(count)) } }),
      });
      assert.equal(loaded.status, 200, await loaded.text());
      for (const answer of await Promise.all(during)) assert.equal(answer.status, 200, JSON.stringify(answer.body));
      await settled([...expected]);
    }
    assert.ok(events.some((msg) => /updated the instances of model 'counted' version 1 without reloading it: 3 → 4 \(1 added, 0 removed\)/.test(msg)), events.join('\n'));
    const unloaded = await fetch(`${served.url}/v2/repository/models/counted/unload`, { method: 'POST' });
    assert.equal(unloaded.status, 200);
    await settled([5, 5]);
  } finally {
    await served.close();
  }
});

test("a handler sees a called model's out-of-distribution verdict, the version that answered and its labels through context.inferResponse", { timeout: 120_000 }, async (t) => {
  // The handler of review s31: a garment photo passed on to fashion_mnist, which has a reference profile.
  const GARMENT = `
let context;
export function initialize(given) { context = given; }
export async function execute(requests) {
  return Promise.all(requests.map(async (request) => {
    const answer = await context.inferResponse('fashion_mnist', { image: request.inputs.IMAGE }, { request });
    const logits = answer.outputs.logits;
    const best = logits.data.indexOf(Math.max(...logits.data));
    const seen = { model_name: answer.model_name, model_version: answer.model_version, parameters: answer.parameters, logits: logits.shape, labels: answer.labels, label: answer.labels.logits[best] };
    return { VERDICT: { shape: [1], data: [JSON.stringify(seen)] } };
  }));
}
`;
  const served = await startTestServer({
    models: async (repoDir) => {
      await cp(join(process.cwd(), 'models', 'fashion_mnist'), join(repoDir, 'fashion_mnist'), { recursive: true });
      await writeHandler(repoDir, 'garment', `max_batch_size: 0\ninput [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]\noutput [ { name: "VERDICT" data_type: TYPE_STRING dims: [ 1 ] } ]\n`, GARMENT);
    },
    server: { allowCodeModels: true },
  });
  t.after(() => served.close());
  const post = async (model: string, file: string) => {
    const response = await fetch(`${served.url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': file.endsWith('.png') ? 'image/png' : 'image/jpeg' }, body: await readFile(join(process.cwd(), 'examples', 'images', file)) });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    return body;
  };
  const labels = (await readFile(join(process.cwd(), 'models', 'fashion_mnist', 'labels.txt'), 'utf8')).trim().split('\n');
  for (const [file, outOfDistribution] of [['cat.jpg', true], ['sneaker.png', false]] as const) {
    const direct = await post('fashion_mnist', file);
    const seen = JSON.parse((await post('garment', file)).outputs[0].data[0]);
    // The label /classify answers is the one the handler decodes with the labels of the model it called.
    const classified = await (await fetch(`${served.url}/v2/models/fashion_mnist/classify?top_k=1`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: await readFile(join(process.cwd(), 'examples', 'images', file)) })).json();
    assert.deepEqual(seen, { model_name: 'fashion_mnist', model_version: '1', parameters: direct.parameters, logits: [1, 10], labels: { logits: labels }, label: classified.predictions[0].label }, file);
    assert.equal(seen.parameters.ood, outOfDistribution, `${file}: the verdict the handler saw`);
  }
});
