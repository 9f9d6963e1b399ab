/**
 * The JavaScript handler backend: the shared BackendInstance suite run against handlers that do
 * what its generated ONNX models do (add/sub, identity per datatype), then what only handlers do:
 * answers checked against the config, per-request failures, a worker over its memory limit
 * replaced, and context.infer answered through the callModel the server gives.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseModelConfig, type CompletedModelConfig } from '../config/model-config.js';
import { NereidError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { BackendInstance } from './backend.js';
import { backendInstanceConformance, TEST_INSTANCE_OPTIONS } from './backend-instance.case.js';
import { JavaScriptBackend } from './javascript-backend.js';

const backend = new JavaScriptBackend();
let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'nereid-js-backend-'));
});
after(async () => rm(root, { recursive: true, force: true }));

let made = 0;
/** An instance of `code` (saved as model.mjs in a folder of its own) under `config` (completed as the repository completes it). */
async function handlerInstance(code: string, config: Record<string, unknown>, callModel?: Parameters<typeof backend.createInstance>[2]['callModel']): Promise<BackendInstance> {
  const folder = join(root, String(made++));
  await mkdir(folder);
  await writeFile(join(folder, 'model.mjs'), code);
  const parsed = parseModelConfig({ backend: 'javascript', ...config }, 'test config');
  backend.checkConfig(parsed);
  const completed: CompletedModelConfig = { ...parsed, name: `handler_${made}`, max_batch_size: parsed.max_batch_size!, backend: 'javascript', platform: 'javascript' };
  return backend.createInstance(join(folder, 'model.mjs'), completed, { ...TEST_INSTANCE_OPTIONS, version: '1', callModel });
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

/** The suite names ONNX files; each becomes the handler that computes what that model computes. */
backendInstanceConformance('JavaScriptInstance', (modelPath) => {
  const model = basename(modelPath, '.onnx');
  if (model === 'addsub') {
    return handlerInstance(ADD_SUB, { max_batch_size: 8, input: [INT32_16('INPUT0'), INT32_16('INPUT1')], output: [INT32_16('OUTPUT0'), INT32_16('OUTPUT1')] });
  }
  const type = CONFIG_TYPES[model.replace('identity_', '')];
  return handlerInstance(IDENTITY, { max_batch_size: 8, input: [{ name: 'INPUT0', data_type: type, dims: [-1] }], output: [{ name: 'OUTPUT0', data_type: type, dims: [-1] }] });
});

describe('JavaScriptInstance beyond the shared suite', () => {
  const FP32 = { max_batch_size: 0, input: [{ name: 'IN', data_type: 'TYPE_FP32', dims: [2] }], output: [{ name: 'OUT', data_type: 'TYPE_FP32', dims: [2] }] };
  const input = (values: number[]) => ({ IN: { datatype: 'FP32' as const, shape: [2], data: Float32Array.from(values) } });

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

  test('execute() that returns the wrong number of answers fails the batch, saying how many it owes', async () => {
    const instance = await handlerInstance(`export const execute = () => [];`, FP32);
    try {
      await assert.rejects(async () => instance.run(input([1, 2]), ['OUT']), /execute\(\) must return one answer per request \(an array of 1\), got 0 answers/);
    } finally {
      await instance.release();
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

  test('a config without max_batch_size or without inputs is refused, saying what to add', () => {
    assert.throws(() => backend.checkConfig(parseModelConfig({ backend: 'javascript', input: FP32.input, output: FP32.output }, 'c')), /sets max_batch_size in its config/);
    assert.throws(() => backend.checkConfig(parseModelConfig({ backend: 'javascript', max_batch_size: 0, output: FP32.output }, 'c')), /this config has no input/);
    assert.throws(
      () => backend.checkConfig(parseModelConfig({ ...FP32, backend: 'javascript', parameters: { execute_timeout_ms: { string_value: 'soon' } } }, 'c')),
      /execute_timeout_ms.*must be a whole number of milliseconds, got 'soon'/,
    );
  });
});
