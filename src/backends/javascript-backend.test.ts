/**
 * The JavaScript handler backend: the shared BackendInstance suite run against handlers that do
 * what its generated ONNX models do (add/sub, identity per datatype), then what only handlers do:
 * answers checked against the config, per-request failures, a worker over its memory limit
 * replaced, and context.infer answered through the callModel the server gives.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino, type Logger } from 'pino';
import { parseModelConfig, type CompletedModelConfig } from '../config/model-config.js';
import { halfToNumber } from '../core/datatype.js';
import { imageDecodeSlots } from '../core/decode-slots.js';
import { NereidError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { BackendInstance } from './backend.js';
import { backendInstanceConformance, TEST_INSTANCE_OPTIONS } from './backend-instance.case.js';
import { HANDLER_ERROR_CODES, handlerError, JavaScriptBackend } from './javascript-backend.js';

const backend = new JavaScriptBackend();
let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'nereid-js-backend-'));
});
after(async () => rm(root, { recursive: true, force: true }));

let made = 0;
/** An instance of `code` (saved as model.mjs in a folder of its own) under `config` (completed as the repository completes it). */
async function handlerInstance(
  code: string,
  config: Record<string, unknown>,
  callModel?: Parameters<typeof backend.createInstance>[2]['callModel'],
  file = 'model.mjs',
  options: { logger?: Logger; packageJson?: object } = {},
): Promise<BackendInstance> {
  const folder = join(root, String(made++));
  await mkdir(folder);
  if (options.packageJson) await writeFile(join(folder, 'package.json'), JSON.stringify(options.packageJson));
  await writeFile(join(folder, file), code);
  const parsed = parseModelConfig({ backend: 'javascript', ...config }, 'test config');
  backend.checkConfig(parsed);
  const completed: CompletedModelConfig = { ...parsed, name: `handler_${made}`, max_batch_size: parsed.max_batch_size!, backend: 'javascript', platform: 'javascript' };
  return backend.createInstance(join(folder, file), completed, { ...TEST_INSTANCE_OPTIONS, ...(options.logger ? { logger: options.logger } : {}), version: '1', callModel });
}

const ADD_SUB = `
export function execute(requests) {
  return requests.map(({ inputs: { INPUT0: a, INPUT1: b } }) => ({
    OUTPUT0: { datatype: 'INT32', shape: a.shape, data: a.data.map((value, index) => value + b.data[index]) },
    OUTPUT1: { datatype: 'INT32', shape: a.shape, data: a.data.map((value, index) => value - b.data[index]) },
  }));
}`;
const IDENTITY = `export const execute = (requests) => requests.map(({ inputs }) => ({ OUTPUT0: inputs.INPUT0 }));`;
const INT32_16 = (name: string) => ({ name, data_type: 'TYPE_INT32', dims: [16] });
const CONFIG_TYPES: Record<string, string> = { float16: 'TYPE_FP16', int64: 'TYPE_INT64', bool: 'TYPE_BOOL', string: 'TYPE_STRING' };

const ADD_SUB_CONFIG = { max_batch_size: 8, input: [INT32_16('INPUT0'), INT32_16('INPUT1')], output: [INT32_16('OUTPUT0'), INT32_16('OUTPUT1')] };

/** The suite names ONNX files; each becomes the handler that computes what that model computes. */
backendInstanceConformance(
  'JavaScriptInstance',
  (modelPath) => {
    const model = basename(modelPath, '.onnx');
    if (model === 'addsub') return handlerInstance(ADD_SUB, ADD_SUB_CONFIG);
    const type = CONFIG_TYPES[model.replace('identity_', '')];
    return handlerInstance(IDENTITY, { max_batch_size: 8, input: [{ name: 'INPUT0', data_type: type, dims: [-1] }], output: [{ name: 'OUTPUT0', data_type: type, dims: [-1] }] });
  },
  // A handler's config is its declaration: describe() reads it, not the file.
  { describe: (modelPath) => backend.describe(modelPath, parseModelConfig({ backend: 'javascript', ...ADD_SUB_CONFIG }, 'test config')) },
);

test("a handler's failure keeps a code a handler may give (the client's status); any other code, or none, is INTERNAL", () => {
  const given = [...HANDLER_ERROR_CODES, 'PERMISSION_DENIED', 'ENOENT', undefined];
  const errors = given.map((code) => handlerError({ message: 'refused', code, stack: 'Error: refused\n    at execute (model.mjs:1:1)' }, "model 'm' version 1"));
  assert.deepEqual(
    errors.map((error) => error.code),
    given.map((code) => (code !== undefined && HANDLER_ERROR_CODES.has(code) ? code : 'INTERNAL')),
  );
  assert.ok(HANDLER_ERROR_CODES.has('NOT_FOUND') && !HANDLER_ERROR_CODES.has('PERMISSION_DENIED'), 'the codes docs/javascript-models.md lists');
  assert.equal(errors[0].message, "model 'm' version 1: refused");
  assert.match(String((errors[0].cause as Error).stack), /model\.mjs:1:1/, "the handler's stack stays with its cause, for the log");
});

describe('JavaScriptInstance beyond the shared suite', () => {
  const FP32 = { max_batch_size: 0, input: [{ name: 'IN', data_type: 'TYPE_FP32', dims: [2] }], output: [{ name: 'OUT', data_type: 'TYPE_FP32', dims: [2] }] };
  const input = (values: number[]) => ({ IN: { datatype: 'FP32' as const, shape: [2], data: Float32Array.from(values) } });

  test("the handler's environment lacks the server's own settings (NEREID_*: tokens, the Redis password) and keeps the rest", async (t) => {
    process.env.NEREID_HTTP_AUTH_TOKEN_FOR_TEST = 'secret';
    process.env.HANDLER_VISIBLE_FOR_TEST = 'shown';
    t.after(() => {
      delete process.env.NEREID_HTTP_AUTH_TOKEN_FOR_TEST;
      delete process.env.HANDLER_VISIBLE_FOR_TEST;
    });
    const instance = await handlerInstance(
      `export const execute = (requests) => requests.map(() => ({ OUT: { shape: [2], data: [process.env.NEREID_HTTP_AUTH_TOKEN_FOR_TEST === undefined ? 1 : 0, process.env.HANDLER_VISIBLE_FOR_TEST === 'shown' ? 1 : 0] } }));`,
      FP32,
    );
    try {
      const { answers } = await instance.runRequests!([{ inputs: input([0, 0]), outputNames: ['OUT'] }]);
      assert.deepEqual([...((answers[0] as Record<string, { data: Float32Array }>).OUT.data)], [1, 1]);
    } finally {
      await instance.release();
    }
  });

  test('an answer that does not fit the config fails its request, naming the output and what was declared', async () => {
    const instance = await handlerInstance(
      `export const execute = (requests) => requests.map(({ inputs }) => inputs.IN.data[0] > 0 ? { OUT: { shape: [3], data: [1, 2, 3] } } : { OUT: { shape: [2], data: [1, 'two'] } });`,
      FP32,
    );
    try {
      const { answers } = await instance.runRequests!([
        { inputs: input([1, 1]), outputNames: ['OUT'] },
        { inputs: input([-1, 1]), outputNames: ['OUT'] },
      ]);
      assert.match(String(answers[0]), /output 'OUT' has shape \[3\], but the config declares \[2\]/);
      assert.match(String(answers[1]), /output 'OUT': element 1 is "two", not a FP32 value/);
    } finally {
      await instance.release();
    }
  });

  test('integers a datatype cannot hold, and more or fewer rows than the request had, fail the request instead of being wrapped', async () => {
    const config = {
      max_batch_size: 4,
      input: [{ name: 'MODE', data_type: 'TYPE_INT32', dims: [1] }],
      output: [
        { name: 'I32', data_type: 'TYPE_INT32', dims: [1] },
        { name: 'U8', data_type: 'TYPE_UINT8', dims: [1] },
      ],
    };
    const instance = await handlerInstance(
      `const CASES = [[7, 200], [2 ** 40, 0], [1.5, 0], [Number.NaN, 0], [0, -1], [0, 300], [7, 200, 'two rows']];
export const execute = (requests) => requests.map(({ inputs }) => {
  const [i32, u8, rows] = CASES[inputs.MODE.data[0]];
  const count = rows ? 2 : 1;
  return { I32: { shape: [count, 1], data: Array(count).fill(i32) }, U8: { shape: [count, 1], data: Array(count).fill(u8) } };
});`,
      config,
    );
    try {
      const mode = (value: number) => ({ inputs: { MODE: { datatype: 'INT32' as const, shape: [1, 1], data: Int32Array.of(value) } }, outputNames: ['I32', 'U8'] });
      const { answers } = await instance.runRequests!([0, 1, 2, 3, 4, 5, 6].map(mode));
      const first = answers[0] as Record<string, Tensor>;
      assert.deepEqual([(first.I32.data as Int32Array)[0], (first.U8.data as Uint8Array)[0]], [7, 200], 'values the datatypes hold pass');
      assert.match(String(answers[1]), /output 'I32': element 0 is 1099511627776, outside INT32 \(-2147483648 to 2147483647\)/);
      assert.match(String(answers[2]), /output 'I32': element 0 is 1\.5, not an integer \(INT32\)/);
      assert.match(String(answers[3]), /output 'I32': element 0 is NaN, not an integer/);
      assert.match(String(answers[4]), /output 'U8': element 0 is -1, outside UINT8 \(0 to 255\)/);
      assert.match(String(answers[5]), /output 'U8': element 0 is 300, outside UINT8/);
      assert.match(String(answers[6]), /output 'I32' has 2 row\(s\), but its request has 1/);
    } finally {
      await instance.release();
    }
  });

  test('an FP16 output given as plain numbers is stored as their half-precision bits; a Uint16Array is taken as bits', async () => {
    const config = { max_batch_size: 0, input: [{ name: 'IN', data_type: 'TYPE_FP32', dims: [2] }], output: [{ name: 'H', data_type: 'TYPE_FP16', dims: [2] }] };
    const instance = await handlerInstance(
      `export const execute = (requests) => requests.map((_, index) => ({ H: { shape: [2], data: index === 0 ? [1.5, -2] : Uint16Array.of(0x3e00, 0xc000) } }));`,
      config,
    );
    try {
      const request = { inputs: { IN: { datatype: 'FP32' as const, shape: [2], data: Float32Array.of(0, 0) } }, outputNames: ['H'] };
      const { answers } = await instance.runRequests!([request, request]);
      for (const answer of answers) assert.deepEqual(Array.from((answer as Record<string, Tensor>).H.data as Uint16Array, halfToNumber), [1.5, -2]);
    } finally {
      await instance.release();
    }
  });

  test('model.cjs is read as CommonJS, even under a "type": "module" package (handler-module.test.ts has the message that suggests it)', async () => {
    const CJS = `module.exports = { execute: (requests) => requests.map(({ inputs }) => ({ OUT: inputs.IN })) };`;
    const cjs = await handlerInstance(CJS, FP32, undefined, 'model.cjs', { packageJson: { type: 'module' } });
    try {
      const { answers } = await cjs.runRequests!([{ inputs: input([1, 2]), outputNames: ['OUT'] }]);
      assert.deepEqual(Array.from((answers[0] as Record<string, Tensor>).OUT.data as Float32Array), [1, 2]);
    } finally {
      await cjs.release();
    }
  });

  test('a CommonJS model.js under a "type": "module" package is told to become model.cjs, whichever loader imports it', async () => {
    // Plain Node refuses the import (handler-module.test.ts); a loader such as tsx (Nereid run from source, as here)
    // imports it with nothing exported: both say the same.
    const CJS = `module.exports.execute = (requests) => requests.map(({ inputs }) => ({ OUT: inputs.IN }));`;
    await assert.rejects(handlerInstance(CJS, FP32, undefined, 'model.js', { packageJson: { type: 'module' } }), /model\.js uses require\/module\.exports \(CommonJS\) but is read as an ES module.*rename it model\.cjs/);
    await assert.rejects(handlerInstance('export const run = () => [];', FP32, undefined, 'model.js', { packageJson: { type: 'module' } }), /the model file exports no execute\(requests\) function/);
  });

  test('context.log writes an Error with its message and stack, not {}', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
    const instance = await handlerInstance(
      `export function initialize(context) { context.log.warn('a warning', new Error('an error object')); }
export const execute = (requests) => requests.map(({ inputs }) => ({ OUT: inputs.IN }));`,
      FP32,
      undefined,
      'model.mjs',
      { logger },
    );
    try {
      const line = lines.map((text) => JSON.parse(text) as { msg: string }).find((entry) => entry.msg.startsWith('a warning'));
      assert.match(line?.msg ?? '', /^a warning Error: an error object\n\s+at /);
    } finally {
      await instance.release();
    }
  });

  test('execute() that returns the wrong number of answers fails the batch, saying how many it owes', async () => {
    const instance = await handlerInstance(`export const execute = () => [];`, FP32);
    try {
      await assert.rejects(async () => instance.run(input([1, 2]), ['OUT']), (error: Error) => {
        assert.match(error.message, /: execute\(\) must return one answer per request \(an array of 1\), got 0 answers$/);
        assert.doesNotMatch(error.message, /threw/, 'it returned, it did not throw');
        return true;
      });
    } finally {
      await instance.release();
    }
    const single = await handlerInstance(`export const execute = () => ({ OUT: { shape: [2], data: [1, 2] } });`, FP32);
    try {
      await assert.rejects(async () => single.run(input([1, 2]), ['OUT']), /an array of 1\), got an object with keys OUT$/);
    } finally {
      await single.release();
    }
  });

  test('a worker over its heap limit fails its batch, and a new worker serves the next', async () => {
    const instance = await handlerInstance(
      `const kept = [];
      export const execute = (requests) => requests.map(({ inputs }) => {
        if (inputs.IN.data[0] < 0) for (;;) kept.push(new Array(1 << 16).fill({ grow: kept.length }));
        return { OUT: inputs.IN };
      });`,
      { ...FP32, parameters: { max_old_generation_mb: { string_value: '16' } } },
    );
    try {
      await assert.rejects(async () => instance.run(input([-1, 0]), ['OUT']), /ran out of memory \(parameters max_old_generation_mb 16/);
      const { OUT } = await instance.run(input([3, 4]), ['OUT']);
      assert.deepEqual(Array.from(OUT.data as Float32Array), [3, 4]);
    } finally {
      await instance.release();
    }
  });

  test('a batch whose callers all cancel is answered CANCELLED at once; the next batch waits until the worker has finished it', async () => {
    // The handler holds its batch until the test opens a gate (a file), and logs when each batch starts and ends: the
    // cancelled caller must be answered while the gate is still shut, and the next batch must start after the first ends.
    const folder = await mkdtemp(join(root, 'gate-'));
    const gate = join(folder, 'open');
    const log = join(folder, 'log');
    const instance = await handlerInstance(
      `import { appendFileSync, existsSync } from 'node:fs';
      export const execute = async (requests) => {
        const batch = requests[0].inputs.IN.data[0];
        appendFileSync(${JSON.stringify(log)}, 'start ' + batch + '\\n');
        while (!existsSync(${JSON.stringify(gate)})) await new Promise((resolve) => setTimeout(resolve, 5));
        appendFileSync(${JSON.stringify(log)}, 'end ' + batch + '\\n');
        return requests.map(({ inputs }) => ({ OUT: inputs.IN }));
      };`,
      // The timeout only ends a broken build's wait (its error is then INTERNAL, not CANCELLED); a sound one never nears it.
      { ...FP32, parameters: { execute_timeout_ms: { string_value: '10000' } } },
    );
    const logged = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    try {
      const caller = new AbortController();
      const abandoned = instance.runRequests!([{ inputs: input([1, 2]), outputNames: ['OUT'], context: { signal: caller.signal } }]);
      while (!(await logged()).includes('start 1')) await new Promise((resolve) => setTimeout(resolve, 5));
      caller.abort();
      await assert.rejects(abandoned, (error: NereidError) => error.code === 'CANCELLED');
      assert.deepEqual(await logged(), ['start 1'], 'answered while the handler still held the batch');
      const next = instance.runRequests!([{ inputs: input([3, 4]), outputNames: ['OUT'] }]);
      await writeFile(gate, '');
      const { answers } = await next;
      assert.deepEqual(Array.from((answers[0] as Record<string, Tensor>).OUT.data as Float32Array), [3, 4]);
      assert.deepEqual(await logged(), ['start 1', 'end 1', 'start 3', 'end 3'], 'the next batch started after the worker finished the cancelled one');
    } finally {
      await writeFile(gate, '');
      await instance.release();
    }
  });

  test("a decode slot a handler holds comes back when its worker is stopped (its timeout), and one it waits for is never handed to it", async () => {
    const instance = await handlerInstance(
      `let context;
      export const initialize = (given) => { context = given; };
      export const execute = (requests) => requests.map((request) => context.withDecodeSlot(request, () => new Promise(() => {})));`,
      { ...FP32, parameters: { execute_timeout_ms: { string_value: '300' } } },
    );
    try {
      // All slots but one held here: the handler takes the last; a second batch waits, then its worker is stopped too.
      for (let held = 0; held < imageDecodeSlots.size - 1; held++) await imageDecodeSlots.take(undefined);
      await assert.rejects(instance.runRequests!([{ inputs: input([1, 2]), outputNames: ['OUT'] }]), /did not answer within 300 ms/);
      for (let tries = 0; tries < 100 && imageDecodeSlots.busy > imageDecodeSlots.size - 1; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(imageDecodeSlots.busy, imageDecodeSlots.size - 1, 'the stopped worker gave its slot back');
      await imageDecodeSlots.take(undefined);
      await assert.rejects(instance.runRequests!([{ inputs: input([1, 2]), outputNames: ['OUT'] }]), /did not answer within 300 ms/);
      assert.equal(imageDecodeSlots.queued, 1, "the stopped worker's wait is still queued until a slot comes free");
      imageDecodeSlots.give();
      for (let tries = 0; tries < 100 && imageDecodeSlots.busy === imageDecodeSlots.size; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(imageDecodeSlots.busy, imageDecodeSlots.size - 1, 'the slot it would have had went straight back');
    } finally {
      while (imageDecodeSlots.busy > 0) imageDecodeSlots.give();
      await instance.release();
    }
  });

  test('after its callers cancelled, a running batch finishes before finalize(), and its context.infer calls are refused', async () => {
    const seen: string[] = [];
    const instance = await handlerInstance(
      `let context;
      let running = false;
      export const initialize = (given) => { context = given; };
      export const execute = async (requests) => {
        running = true;
        await new Promise((resolve) => setTimeout(resolve, 300));
        // The caller's signal (a plain AbortSignal) fired before this call was made.
        const called = await context.infer('other', { X: requests[0].inputs.IN }, { request: requests[0] }).then(() => 'answered', (error) => error.code);
        context.log.info('context.infer after cancel: ' + called);
        running = false;
        return requests.map(({ inputs }) => ({ OUT: inputs.IN }));
      };
      export const finalize = () => { context.log.info('finalize while running: ' + running); };`,
      FP32,
      async (request, context) => {
        if (context?.signal?.aborted) throw new NereidError('CANCELLED', 'request cancelled by the client');
        return { model: request.model, version: '1', outputs: [] };
      },
      'model.mjs',
      { logger: pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (seen.push((JSON.parse(String(chunk)) as { msg: string }).msg), done()) })) },
    );
    const abandoned = instance.runRequests!([{ inputs: input([1, 2]), outputNames: ['OUT'], context: { signal: AbortSignal.timeout(50) } }]);
    await assert.rejects(abandoned, (error: NereidError) => error.code === 'CANCELLED');
    await instance.release();
    assert.ok(seen.some((line) => line.endsWith('context.infer after cancel: CANCELLED')), seen.join(' | '));
    assert.ok(seen.some((line) => line.endsWith('finalize while running: false')), seen.join(' | '));
  });

  test('a request cancelled while its batch runs is answered CANCELLED, not with the answer; the others of the batch are answered', async () => {
    let calling!: () => void;
    const called = new Promise<void>((resolve) => (calling = resolve));
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    const instance = await handlerInstance(
      `let context;
      export const initialize = (given) => { context = given; };
      export const execute = async (requests) => {
        await context.infer('other', { X: requests[1].inputs.IN }, { request: requests[1] });
        return requests.map(({ inputs }) => ({ OUT: inputs.IN }));
      };`,
      FP32,
      async (request) => {
        calling();
        await held;
        return { model: request.model, version: '1', outputs: [] };
      },
    );
    try {
      const leaving = new AbortController();
      const answered = instance.runRequests!([
        { inputs: input([1, 2]), outputNames: ['OUT'], context: { signal: leaving.signal } },
        { inputs: input([3, 4]), outputNames: ['OUT'], context: { signal: new AbortController().signal } },
      ]);
      await called;
      leaving.abort();
      letGo();
      const { answers } = await answered;
      assert.equal((answers[0] as NereidError).code, 'CANCELLED');
      assert.deepEqual(Array.from((answers[1] as Record<string, Tensor>).OUT.data as Float32Array), [3, 4]);
    } finally {
      await instance.release();
    }
  });

  test('context.infer goes through callModel, and a refusal there reaches the handler with its code', async () => {
    const calls: unknown[] = [];
    const instance = await handlerInstance(
      `let context;
      export const initialize = (given) => { context = given; };
      export const execute = (requests) => requests.map(async (request) => {
        const { inputs } = request;
        try {
          const answer = await context.infer(inputs.IN.data[0] > 0 ? 'other' : 'missing', { X: { datatype: 'FP32', shape: [2], data: inputs.IN.data } }, { version: 2, request });
          return { OUT: { shape: [2], data: answer.Y.data } };
        } catch (error) {
          return { OUT: { shape: [2], data: [error.code === 'NOT_FOUND' ? -404 : 0, 0] } };
        }
      });`,
      FP32,
      async (request, context) => {
        calls.push({ model: request.model, version: request.version, inputs: request.inputs.map((tensor) => [tensor.name, Array.from(tensor.data as Float32Array)]), requestId: context.requestId });
        if (request.model === 'missing') throw new NereidError('NOT_FOUND', "model 'missing' is not in the model repository");
        return { model: request.model, version: '2', outputs: [{ name: 'Y', datatype: 'FP32', shape: [2], data: Float32Array.from([7, 8]) }] };
      },
    );
    try {
      const { answers } = await instance.runRequests!([
        { inputs: input([1, 2]), outputNames: ['OUT'], context: { requestId: 'first' } },
        { inputs: input([5, 6]), outputNames: ['OUT'], context: { requestId: 'second' } },
      ]);
      assert.deepEqual(answers.map((answer) => Array.from((answer as Record<string, Tensor>).OUT.data as Float32Array)), [[7, 8], [7, 8]]);
      // Each call carries the request it was made for (its id, trace and deadline).
      assert.deepEqual(calls, [
        { model: 'other', version: '2', inputs: [['X', [1, 2]]], requestId: 'first' },
        { model: 'other', version: '2', inputs: [['X', [5, 6]]], requestId: 'second' },
      ]);
      assert.deepEqual(Array.from((await instance.run(input([-1, 2]), ['OUT'])).OUT.data as Float32Array), [-404, 0], 'the handler saw the refusal with its code');
    } finally {
      await instance.release();
    }
  });

  test('context.infer sends the parameters a handler gives, refuses an option it does not know, and names the model a failed call asked', async () => {
    const sent: unknown[] = [];
    const seen: string[] = [];
    const instance = await handlerInstance(
      `let context;
      export const initialize = (given) => { context = given; };
      export const execute = (requests) => requests.map(async (request) => {
        const X = { datatype: 'FP32', shape: [2], data: request.inputs.IN.data };
        const outcome = (promise) => promise.then(() => 'answered', (error) => error.message);
        const results = [
          await outcome(context.infer('other', { X }, { request, parameters: { sequence_id: 7, sequence_start: true, note: 'x' } })),
          await outcome(context.infer('other', { X }, { request, parameters: { sequence_id: 18446744073709551615n } })),
          await outcome(context.infer('other', { X }, { request, paramters: { sequence_id: 7 } })),
          await outcome(context.infer('other', { X }, { request, parameters: { nested: { a: 1 } } })),
          await outcome(context.infer('refusing', { X }, { request })),
        ];
        context.log.info(JSON.stringify(results));
        return { OUT: { shape: [2], data: [0, 0] } };
      });`,
      FP32,
      async (request) => {
        sent.push(request.parameters);
        if (request.model === 'refusing') throw new NereidError('INVALID_ARGUMENT', "inference request to model 'refusing' must specify a non-zero or non-empty correlation ID");
        return { model: request.model, version: '1', outputs: [{ name: 'Y', datatype: 'FP32', shape: [2], data: Float32Array.from([7, 8]) }] };
      },
      'model.mjs',
      { logger: pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (seen.push((JSON.parse(String(chunk)) as { msg: string }).msg), done()) })) },
    );
    try {
      await instance.run(input([1, 2]), ['OUT']);
      assert.deepEqual(sent, [{ sequence_id: 7, sequence_start: true, note: 'x' }, { sequence_id: 18446744073709551615n }, undefined], 'the refused options never reached the server');
      const logged = JSON.parse(/\[".*\]$/.exec(seen.find((line) => line.endsWith('"]')) ?? '')?.[0] ?? '[]') as string[];
      assert.deepEqual(logged.slice(0, 2), ['answered', 'answered'], 'a bigint sequence id is a parameter too');
      assert.equal(logged[2], "context.infer('other'): unknown option 'paramters' (known: outputs, parameters, request, version; did you mean 'parameters'?)");
      assert.equal(logged[3], "context.infer('other'): parameter 'nested' must be a string, number, bigint or boolean, got object");
      assert.equal(logged[4], "context.infer('refusing'): inference request to model 'refusing' must specify a non-zero or non-empty correlation ID");
    } finally {
      await instance.release();
    }
  });

  test('a config without max_batch_size or without inputs is refused, saying what to add', () => {
    assert.throws(() => backend.checkConfig(parseModelConfig({ backend: 'javascript', input: FP32.input, output: FP32.output }, 'c')), /sets max_batch_size in its config/);
    assert.throws(() => backend.checkConfig(parseModelConfig({ backend: 'javascript', max_batch_size: 0, output: FP32.output }, 'c')), /this config has no input/);
    assert.throws(
      () => backend.checkConfig(parseModelConfig({ ...FP32, backend: 'javascript', parameters: { execute_timeout_ms: { string_value: 'soon' } } }, 'c')),
      /execute_timeout_ms.*must be a whole number of milliseconds, got 'soon'/,
    );
  });
});
