/**
 * What every Scheduler must do, as one suite each implementation's test file runs (the dynamic
 * batcher, the sequence batcher, the ensemble scheduler): requests go through it to a real ONNX
 * Runtime instance of the add/sub model, answers are checked element by element, and what the
 * interface promises around them — cancellation, failures, its counters, stop() — is checked the
 * same way for each. Policies (batch forming, sequence slots, step graphs) stay in each one's tests.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addSubInputs as addSubRows, assertAddSub, TEST_INSTANCE_OPTIONS } from '../backends/backend-instance.case.js';
import type { BackendInstance } from '../backends/backend.js';
import { OnnxRuntimeBackend } from '../backends/onnx-runtime-backend.js';
import { parseModelConfig } from '../config/model-config.js';
import { NereidError } from '../core/errors.js';
import { ClientCancellation } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import { addSubModel } from '../onnx/test-models.js';
import type { SequenceFlags } from './sequence-control.js';
import type { ScheduledRequest, Scheduler } from './scheduler.js';

export interface SchedulerFactory {
  /** A scheduler whose requests the add/sub model answers on `instance` (INPUT0, INPUT1 INT32 [rows,16]; OUTPUT0 = sum, OUTPUT1 = difference). */
  make(instance: BackendInstance): Scheduler;
  /** The sequence the request numbered `index` belongs to, for a scheduler that requires one. */
  sequenceOf?(index: number): SequenceFlags;
}

/** One row of add/sub inputs, from `seed`: each request of the suite is one row, as a sequence's requests must be. */
const addSubInputs = (seed: number) => addSubRows(1, seed);

export function schedulerConformance(name: string, factory: SchedulerFactory): void {
  describe(`${name} is a Scheduler`, () => {
    let dir: string;
    let instance: BackendInstance;
    let sent = 0;
    /** A request of one row, numbered so that each has its own sequence where the scheduler needs one. */
    const request = (inputs: Record<string, Tensor>, outputNames: readonly string[], extra: Partial<ScheduledRequest> = {}): ScheduledRequest => ({
      inputs,
      batchSize: 1,
      outputNames,
      ...(factory.sequenceOf && { sequence: factory.sequenceOf(sent++) }),
      ...extra,
    });

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'nereid-scheduler-case-'));
      await writeFile(join(dir, 'addsub.onnx'), addSubModel());
      const config = parseModelConfig({ parameters: { execution_thread: 'main' } }, 'addsub');
      instance = await new OnnxRuntimeBackend().createInstance(join(dir, 'addsub.onnx'), config, TEST_INSTANCE_OPTIONS);
    });

    after(async () => {
      await instance.release();
      await rm(dir, { recursive: true, force: true });
    });

    test('a request is answered with exactly its requested outputs and its timings; admits is a positive count', async () => {
      const scheduler = factory.make(instance);
      assert.ok(Number.isInteger(scheduler.admits) && scheduler.admits > 0, `admits ${scheduler.admits}`);
      for (const names of [['OUTPUT0', 'OUTPUT1'], ['OUTPUT1']]) {
        const inputs = addSubInputs(names.length);
        const scheduled = request(inputs, names);
        scheduler.validate(scheduled);
        scheduler.admit(scheduled);
        const { outputs, timings } = await scheduler.schedule(scheduled);
        assertAddSub(outputs, inputs, names);
        for (const key of ['queueNs', 'computeInputNs', 'computeInferNs', 'computeOutputNs'] as const) {
          assert.ok(Number.isFinite(timings[key]) && timings[key] >= 0, `${key} ${timings[key]}`);
        }
      }
      await scheduler.stop();
    });

    test('concurrent requests each get their own answer; nothing stays queued once they are answered', async () => {
      const scheduler = factory.make(instance);
      const names = (index: number) => (index % 2 ? ['OUTPUT1'] : ['OUTPUT0', 'OUTPUT1']);
      const inputs = Array.from({ length: 12 }, (_, index) => addSubInputs(index + 1));
      const answers = await Promise.all(inputs.map((each, index) => scheduler.schedule(request(each, names(index)))));
      answers.forEach(({ outputs }, index) => assertAddSub(outputs, inputs[index], names(index)));
      assert.deepEqual({ queued: scheduler.queued, queuedBytes: scheduler.queuedBytes }, { queued: 0, queuedBytes: 0 });
      await scheduler.stop();
    });

    test('a request whose client has already gone is refused CANCELLED', async () => {
      const scheduler = factory.make(instance);
      const signal = new ClientCancellation();
      signal.abort();
      await assert.rejects(scheduler.schedule(request(addSubInputs(3), ['OUTPUT0'], { signal })), (error: unknown) => {
        assert.ok(error instanceof NereidError, `a NereidError, got ${String(error)}`);
        assert.equal(error.code, 'CANCELLED');
        return true;
      });
      assert.equal(scheduler.queued, 0);
      await scheduler.stop();
    });

    test("a request the instance cannot run fails with an Error naming the input, and the next one is answered", async () => {
      const scheduler = factory.make(instance);
      const { INPUT0 } = addSubInputs(4);
      await assert.rejects(scheduler.schedule(request({ INPUT0 }, ['OUTPUT0'])), (error: unknown) => {
        assert.ok(error instanceof Error, `an Error, got ${String(error)}`);
        assert.match(error.message, /INPUT1/, 'names the missing input');
        return true;
      });
      const inputs = addSubInputs(5);
      assertAddSub((await scheduler.schedule(request(inputs, ['OUTPUT0']))).outputs, inputs, ['OUTPUT0']);
      await scheduler.stop();
    });

    test('stop() answers every request accepted before it, then admit() and schedule() refuse UNAVAILABLE', async () => {
      const scheduler = factory.make(instance);
      const inputs = Array.from({ length: 6 }, (_, index) => addSubInputs(index + 20));
      const answers = inputs.map((each) => scheduler.schedule(request(each, ['OUTPUT0', 'OUTPUT1'])));
      const answered: boolean[] = inputs.map(() => false);
      answers.forEach((answer, index) => void answer.then(() => (answered[index] = true), () => {}));
      await scheduler.stop();
      assert.deepEqual(answered, inputs.map(() => true), 'stop() settles only once every accepted request is answered');
      (await Promise.all(answers)).forEach(({ outputs }, index) => assertAddSub(outputs, inputs[index], ['OUTPUT0', 'OUTPUT1']));
      const refusedUnavailable = (error: unknown) => {
        assert.ok(error instanceof NereidError, `a NereidError, got ${String(error)}`);
        assert.equal(error.code, 'UNAVAILABLE');
        return true;
      };
      const late = request(addSubInputs(30), ['OUTPUT0']);
      // admit() throws what schedule() would (the interface's promise), so a front end refuses before reading the body.
      assert.throws(() => scheduler.admit(late), refusedUnavailable);
      await assert.rejects(scheduler.schedule(late), refusedUnavailable);
    });
  });
}
