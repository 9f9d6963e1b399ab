/**
 * How a worker-thread instance (execution_thread worker) takes its inputs and answers, on a real
 * ONNX Runtime session in a real worker: with `inputsOwned`, a tensor whose typed array spans its
 * whole ArrayBuffer is transferred to the worker (the caller's buffer is detached afterwards), while
 * a view into a larger buffer, a SharedArrayBuffer, or any input without `inputsOwned` is copied and
 * left as it was; the outputs carry the engine's own time (COMPUTE_NS); the instance takes two
 * batches at once; and through the dynamic batcher, only the batch it joined itself is given away.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseModelConfig } from '../config/model-config.js';
import type { Tensor } from '../core/tensor.js';
import { ModelStatistics } from '../observability/model-statistics.js';
import { addSubModel } from '../onnx/test-models.js';
import { DynamicBatcher, UNBATCHED_POLICY } from '../scheduler/dynamic-batcher.js';
import { COMPUTE_NS, type BackendInstance, type RunOptions, type RunOutputs } from './backend.js';
import { TEST_INSTANCE_OPTIONS } from './backend-instance.case.js';
import { OnnxRuntimeBackend } from './onnx-runtime-backend.js';
import { WorkerThreadInstance } from './onnx-runtime-worker-instance.js';

const WIDTH = 16;

/** INT32 [rows, 16] over `data` (which may be a view into a larger buffer). */
const int32 = (data: Int32Array): Tensor => ({ datatype: 'INT32', shape: [data.length / WIDTH, WIDTH], data });

/** rows × 16 values, each different, from `seed`. */
const valuesOf = (rows: number, seed: number) => Int32Array.from({ length: rows * WIDTH }, (_, index) => seed * 1000 + index * 3 - 7);

/** OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1 in INT32 (wrapping), from copies of the inputs' values taken before the run. */
function expectedOf(a: readonly number[], b: readonly number[]): { OUTPUT0: number[]; OUTPUT1: number[] } {
  return { OUTPUT0: a.map((x, i) => (x + b[i]) | 0), OUTPUT1: a.map((x, i) => (x - b[i]) | 0) };
}

function assertAddSub(outputs: RunOutputs, expected: { OUTPUT0: number[]; OUTPUT1: number[] }, rows: number): void {
  for (const name of ['OUTPUT0', 'OUTPUT1'] as const) {
    assert.deepEqual(outputs[name].shape, [rows, WIDTH], name);
    assert.deepEqual(Array.from(outputs[name].data as Int32Array), expected[name], name);
  }
}

const detached = (buffer: ArrayBufferLike) => buffer.byteLength === 0;

describe('WorkerThreadInstance: inputs by transfer, outputs with the engine\'s time', () => {
  let dir: string;
  let modelPath: string;
  let instance: WorkerThreadInstance;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nereid-worker-transfer-'));
    modelPath = join(dir, 'addsub.onnx');
    await writeFile(modelPath, addSubModel());
    const created = await new OnnxRuntimeBackend().createInstance(modelPath, parseModelConfig({ parameters: { execution_thread: 'worker' } }, 'test'), TEST_INSTANCE_OPTIONS);
    assert.ok(created instanceof WorkerThreadInstance, 'execution_thread worker runs in a worker thread');
    instance = created;
  });

  after(async () => {
    await instance?.release();
    await rm(dir, { recursive: true, force: true });
  });

  it('with inputsOwned, typed arrays that span their whole buffer are transferred: the caller\'s buffers are detached, the answer is right', async () => {
    const a = valuesOf(2, 1);
    const b = valuesOf(2, 2);
    const expected = expectedOf(Array.from(a), Array.from(b));
    const outputs = await instance.run({ INPUT0: int32(a), INPUT1: int32(b) }, ['OUTPUT0', 'OUTPUT1'], { inputsOwned: true });
    assert.ok(detached(a.buffer), `INPUT0's buffer went to the worker (byteLength ${a.buffer.byteLength})`);
    assert.ok(detached(b.buffer), `INPUT1's buffer went to the worker (byteLength ${b.buffer.byteLength})`);
    assertAddSub(outputs, expected, 2);
  });

  for (const [what, options] of [
    ['without options', undefined],
    ['with inputsOwned false', { inputsOwned: false }],
  ] as [string, RunOptions | undefined][]) {
    it(`${what}, the caller's buffers are copied and left untouched`, async () => {
      const a = valuesOf(3, 4);
      const b = valuesOf(3, 5);
      const before = { a: Array.from(a), b: Array.from(b) };
      const outputs = await instance.run({ INPUT0: int32(a), INPUT1: int32(b) }, ['OUTPUT0', 'OUTPUT1'], options);
      assert.equal(a.buffer.byteLength, 3 * WIDTH * 4);
      assert.equal(b.buffer.byteLength, 3 * WIDTH * 4);
      assert.deepEqual(Array.from(a), before.a);
      assert.deepEqual(Array.from(b), before.b);
      assertAddSub(outputs, expectedOf(before.a, before.b), 3);
    });
  }

  it('with inputsOwned, views into a larger buffer (a request body) are copied: the buffer is left whole and unchanged', async () => {
    const body = new ArrayBuffer(8 + 2 * WIDTH * 4 * 2 + 8);
    const bytesBefore = new Uint8Array(body).map((_, index) => index % 251);
    new Uint8Array(body).set(bytesBefore);
    const a = new Int32Array(body, 8, 2 * WIDTH); // inside the body
    const b = new Int32Array(body, 8 + 2 * WIDTH * 4, 2 * WIDTH);
    const atStart = new Int32Array(new ArrayBuffer(2 * WIDTH * 4 + 16), 0, 2 * WIDTH); // offset 0, yet not the whole buffer
    atStart.set(valuesOf(2, 6));
    const expected = expectedOf(Array.from(a), Array.from(b));
    const outputs = await instance.run({ INPUT0: int32(a), INPUT1: int32(b) }, ['OUTPUT0', 'OUTPUT1'], { inputsOwned: true });
    assert.equal(body.byteLength, 8 + 2 * WIDTH * 4 * 2 + 8, 'not detached');
    assert.deepEqual(new Uint8Array(body), bytesBefore, 'not modified');
    assertAddSub(outputs, expected, 2);

    const atStartValues = Array.from(atStart);
    const second = await instance.run({ INPUT0: int32(atStart), INPUT1: int32(atStart) }, ['OUTPUT0', 'OUTPUT1'], { inputsOwned: true });
    assert.equal(atStart.buffer.byteLength, 2 * WIDTH * 4 + 16, 'a typed array over part of its buffer is not transferred');
    assert.deepEqual(Array.from(atStart), atStartValues);
    assertAddSub(second, expectedOf(atStartValues, atStartValues), 2);
  });

  it('with inputsOwned, one buffer given for two inputs is sent once and answers right', async () => {
    const shared = valuesOf(2, 7);
    const values = Array.from(shared);
    const tensor = int32(shared);
    const outputs = await instance.run({ INPUT0: tensor, INPUT1: tensor }, ['OUTPUT0', 'OUTPUT1'], { inputsOwned: true });
    assert.ok(detached(shared.buffer), 'transferred once');
    assertAddSub(outputs, expectedOf(values, values), 2);
  });

  it('with inputsOwned, a SharedArrayBuffer is never transferred', async () => {
    const a = new Int32Array(new SharedArrayBuffer(WIDTH * 4));
    a.set(valuesOf(1, 8));
    const values = Array.from(a);
    const outputs = await instance.run({ INPUT0: int32(a), INPUT1: int32(a) }, ['OUTPUT0', 'OUTPUT1'], { inputsOwned: true });
    assert.equal(a.buffer.byteLength, WIDTH * 4);
    assert.deepEqual(Array.from(a), values);
    assertAddSub(outputs, expectedOf(values, values), 1);
  });

  it('outputs carry COMPUTE_NS, a positive number of nanoseconds, beside exactly the requested outputs', async () => {
    const a = valuesOf(4, 9);
    const outputs = await instance.run({ INPUT0: int32(a), INPUT1: int32(a) }, ['OUTPUT1']);
    const computeNs = outputs[COMPUTE_NS];
    assert.equal(typeof computeNs, 'number');
    assert.ok(Number.isFinite(computeNs) && computeNs! > 0, `COMPUTE_NS ${computeNs}`);
    assert.deepEqual(Object.keys(outputs), ['OUTPUT1'], 'the symbol is no output');
    assert.deepEqual(Array.from(outputs.OUTPUT1.data as Int32Array), Array(4 * WIDTH).fill(0));
  });

  it('declares concurrency 2 and answers two batches given at once, each its own', async () => {
    assert.equal(instance.concurrency, 2);
    const inputs = [1, 2].map((rows) => ({ a: valuesOf(rows, 10 + rows), b: valuesOf(rows, 20 + rows) }));
    const expected = inputs.map(({ a, b }) => expectedOf(Array.from(a), Array.from(b)));
    const answers = await Promise.all(inputs.map(({ a, b }) => instance.run({ INPUT0: int32(a), INPUT1: int32(b) }, ['OUTPUT0', 'OUTPUT1'], { inputsOwned: true })));
    answers.forEach((outputs, index) => assertAddSub(outputs, expected[index], index + 1));
  });

  it('through the dynamic batcher: a batch it joined is handed over by transfer, the callers\' own buffers stay theirs', async () => {
    const calls: { inputs: Record<string, Tensor>; options?: RunOptions }[] = [];
    const recording: BackendInstance = {
      threads: instance.threads,
      concurrency: instance.concurrency,
      run: (inputs, outputNames, options) => {
        calls.push({ inputs, options });
        return instance.run(inputs, outputNames, options);
      },
      release: async () => undefined,
    };
    const statistics = new ModelStatistics('addsub', '1');
    const batcher = new DynamicBatcher([recording], { ...UNBATCHED_POLICY, maxBatchSize: 8, maxQueuedRequests: 16, cutAtCheapest: false }, statistics, "model 'addsub' version 1");
    const requests = [1, 2].map((rows) => ({ a: valuesOf(rows, 30 + rows), b: valuesOf(rows, 40 + rows) }));
    const expected = requests.map(({ a, b }) => expectedOf(Array.from(a), Array.from(b)));
    // One turn: one joined batch of 3 rows.
    const answers = await Promise.all(
      requests.map(({ a, b }) => batcher.schedule({ inputs: { INPUT0: int32(a), INPUT1: int32(b) }, batchSize: a.length / WIDTH, outputNames: ['OUTPUT0', 'OUTPUT1'] })),
    );
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0].options, { inputsOwned: true });
    assert.deepEqual(calls[0].inputs.INPUT0.shape, [3, WIDTH]);
    assert.ok(detached((calls[0].inputs.INPUT0.data as Int32Array).buffer), 'the joined batch went to the worker');
    assert.ok(detached((calls[0].inputs.INPUT1.data as Int32Array).buffer));
    requests.forEach(({ a, b }, index) => {
      assert.equal(a.buffer.byteLength, a.length * 4, 'the caller\'s INPUT0 is its own still');
      assert.equal(b.buffer.byteLength, b.length * 4);
      assertAddSub(answers[index].outputs, expected[index], index + 1);
      assert.equal(answers[index].timings.batchRows, 3);
    });

    // A single request is passed as it is, so its buffers are copied, never taken.
    const lone = { a: valuesOf(2, 50), b: valuesOf(2, 51) };
    const loneAnswer = await batcher.schedule({ inputs: { INPUT0: int32(lone.a), INPUT1: int32(lone.b) }, batchSize: 2, outputNames: ['OUTPUT0', 'OUTPUT1'] });
    assert.equal(calls.length, 2);
    assert.equal(calls[1].options, undefined);
    assert.equal(lone.a.buffer.byteLength, lone.a.length * 4);
    assert.equal(lone.b.buffer.byteLength, lone.b.length * 4);
    assertAddSub(loneAnswer.outputs, expectedOf(Array.from(lone.a), Array.from(lone.b)), 2);

    // The engine's own time is compute_infer, the hand-off compute_input; both learned per batch size.
    for (const answer of [...answers, loneAnswer]) {
      assert.ok(answer.timings.computeInferNs > 0, `compute_infer ${answer.timings.computeInferNs}`);
      assert.ok(answer.timings.computeInputNs > 0, `compute_input ${answer.timings.computeInputNs}`);
    }
    assert.deepEqual(
      batcher.costs.snapshot().map((entry) => [entry.rows, entry.samples]),
      [
        [2, 1],
        [3, 1],
      ],
    );
    await batcher.stop();
  });
});
