/**
 * The sequence batcher's choices, seen by an instance that records each execution's inputs and
 * answers when told: which rows run together, where direct puts each sequence, what the control
 * and state inputs hold, and that one sequence's requests never overlap.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import type { BackendInstance, RunOutputs } from '../backends/backend.js';
import type { NereidError } from '../core/errors.js';
import { ClientCancellation } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import { ModelStatistics } from '../observability/model-statistics.js';
import { schedulerConformance } from './scheduler.case.js';
import type { ScheduledResult } from './scheduler.js';
import { SequenceBatcher, type SequencePolicy } from './sequence-batcher.js';

interface Execution {
  inputs: Record<string, Tensor>;
  answer(): void;
}

/** An accumulator computed in JS (STATE_OUT = STATE_IN × (1 − START) + INPUT; OUTPUT the same), answering when the test says. */
function recordingInstance(executions: Execution[]): BackendInstance {
  return {
    threads: 1,
    run(inputs) {
      return new Promise<RunOutputs>((resolve) => {
        const input = inputs.INPUT.data as Float32Array;
        const start = inputs.START.data as Float32Array;
        const state = inputs.STATE_IN.data as Float32Array;
        const sum = input.map((value, row) => state[row] * (1 - start[row]) + value);
        const rows = inputs.INPUT.shape[0];
        executions.push({ inputs, answer: () => resolve({ OUTPUT: { datatype: 'FP32', shape: [rows, 1], data: sum }, STATE_OUT: { datatype: 'FP32', shape: [rows, 1], data: sum.slice() } }) });
      });
    },
    release: async () => undefined,
  };
}

function policy(overrides: Partial<SequencePolicy>): SequencePolicy {
  return {
    strategy: 'direct',
    maxBatchSize: 4,
    maxCandidateSequences: 4,
    preferredBatchSizes: [],
    maxQueueDelayMicroseconds: 0,
    maxSequenceIdleMicroseconds: 60_000_000,
    controls: [
      { name: 'START', kind: 'START', datatype: 'FP32', values: [0, 1] },
      { name: 'READY', kind: 'READY', datatype: 'FP32', values: [0, 1] },
      { name: 'CORRID', kind: 'CORRID', datatype: 'INT64', values: [0, 0] },
    ],
    states: [{ input: 'STATE_IN', output: 'STATE_OUT', initial: { datatype: 'FP32', shape: [1], data: new Float32Array(1) } }],
    maxQueuedRequests: 0,
    ...overrides,
  };
}

function setup(overrides: Partial<SequencePolicy>, logger?: Logger) {
  const executions: Execution[] = [];
  const batcher = new SequenceBatcher([recordingInstance(executions)], policy(overrides), new ModelStatistics('acc', '1'), "model 'acc' version 1", 'acc', logger);
  const send = (id: number, value: number, flags: { start?: boolean; end?: boolean } = {}): Promise<ScheduledResult> =>
    batcher.schedule({ inputs: { INPUT: { datatype: 'FP32', shape: [1, 1], data: new Float32Array([value]) } }, batchSize: 1, outputNames: ['OUTPUT'], sequence: { id: BigInt(id), start: flags.start ?? false, end: flags.end ?? false } });
  return { batcher, executions, send };
}

const column = (execution: Execution, name: string) => Array.from(execution.inputs[name].data as ArrayLike<number | bigint>, Number);
const settled = () => new Promise((resolve) => setImmediate(resolve));
/** The first element of a numeric output. */
const firstOf = (tensor: Tensor) => (tensor.data as ArrayLike<number>)[0];

/**
 * A direct batcher with one slot on one instance, sequence `id` live on it (its START answered), then a change that
 * adds a second instance and removes the first; `letGo` says whether the change has settled.
 */
async function secondInstanceFor(id: number) {
  const onFirst: Execution[] = [];
  const onSecond: Execution[] = [];
  const [first, second] = [recordingInstance(onFirst), recordingInstance(onSecond)];
  const batcher = new SequenceBatcher([first], policy({ maxBatchSize: 1 }), new ModelStatistics('acc', '1'), "model 'acc' version 1", 'acc');
  const send = (sequence: number, value: number, flags: { start?: boolean; end?: boolean } = {}) =>
    batcher.schedule({ inputs: { INPUT: { datatype: 'FP32', shape: [1, 1], data: new Float32Array([value]) } }, batchSize: 1, outputNames: ['OUTPUT'], sequence: { id: BigInt(sequence), start: flags.start ?? false, end: flags.end ?? false } });
  const started = send(id, 1, { start: true });
  await settled();
  onFirst[0].answer();
  await started;
  let settledChange = false;
  const changed = batcher.changeInstances([second], [first]).then(() => void (settledChange = true));
  return { batcher, onFirst, onSecond, send, changed, letGo: () => settledChange };
}

describe('SequenceBatcher', () => {
  it('an unload with live sequences says it drops them, and a next request of one is told a reload or unload may be why', async () => {
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
    const { batcher, executions, send } = setup({}, logger);
    const started = send(1, 1, { start: true });
    await settled();
    executions[0].answer();
    await started;
    await batcher.stop();
    assert.deepEqual(warnings, ["model 'acc' version 1 unloads with 1 live sequence(s); their state is dropped and their next requests need the START flag"]);
    const { send: sendToNewLoad } = setup({});
    await assert.rejects(sendToNewLoad(1, 2), /must specify the START flag .*a reload or unload of the model drops the sequences it held/);
  });

  it("changeInstances (direct): new sequences start on the added instance; a removed one takes none but runs its live sequence to its END, with its state, and only then is it let go", async () => {
    const { batcher, onFirst, onSecond, send, changed, letGo } = await secondInstanceFor(1);
    const other = send(2, 10, { start: true, end: true });
    await settled();
    assert.equal(onSecond.length, 1, 'a new sequence starts on the added instance');
    onSecond[0].answer();
    assert.equal(firstOf((await other).outputs.OUTPUT), 10);
    const last = send(1, 5, { end: true });
    await settled();
    assert.equal(onFirst.length, 2, 'the live sequence goes on where it was');
    assert.equal(letGo(), false, 'the removed instance holds a live sequence');
    onFirst[1].answer();
    assert.equal(firstOf((await last).outputs.OUTPUT), 6, 'its state came with it');
    await changed;
    assert.equal(batcher.capacity, 1, 'one instance serves, with one slot');
    const next = send(3, 7, { start: true });
    await settled();
    assert.deepEqual([onFirst.length, onSecond.length], [2, 2], 'the removed instance runs nothing more');
    onSecond[1].answer();
    await next;
  });

  it('changeInstances (direct): a START that reuses the id of a sequence on a removed instance begins elsewhere, so the instance can leave', async () => {
    const { onFirst, onSecond, send, changed, letGo } = await secondInstanceFor(1);
    // The same id started again while its sequence is live: a new sequence, which goes to the added instance.
    const again = send(1, 5, { start: true });
    await settled();
    assert.deepEqual([onFirst.length, onSecond.length], [1, 1], 'the new sequence runs on the added instance');
    onSecond[0].answer();
    assert.equal(firstOf((await again).outputs.OUTPUT), 5, 'from the initial state');
    await changed;
    assert.equal(letGo(), true);
  });

  it('changeInstances (oldest): the capacity follows the instances serving when max_candidate_sequences is not set', async () => {
    const batcher = new SequenceBatcher([recordingInstance([])], policy({ strategy: 'oldest', maxBatchSize: 2, maxCandidateSequences: undefined }), new ModelStatistics('acc', '1'), "model 'acc' version 1", 'acc');
    assert.equal(batcher.capacity, 2);
    await batcher.changeInstances([recordingInstance([]), recordingInstance([])], []);
    assert.equal(batcher.capacity, 6);
  });

  it('direct: each sequence keeps its slot row; rows without a request are padded with READY false', async () => {
    const { executions, send } = setup({});
    const a = send(1, 1, { start: true });
    await settled();
    const b = send(2, 10, { start: true });
    const c = send(3, 100, { start: true });
    assert.equal(executions.length, 1, 'the instance is busy with sequence 1: 2 and 3 wait');
    executions[0].answer();
    assert.equal(firstOf((await a).outputs.OUTPUT), 1);
    await settled();
    assert.equal(executions.length, 2);
    assert.deepEqual(column(executions[1], 'READY'), [0, 1, 1], 'slot 0 (sequence 1) has no request: padded');
    assert.deepEqual(column(executions[1], 'START'), [0, 1, 1]);
    assert.deepEqual(column(executions[1], 'CORRID'), [0, 2, 3]);
    executions[1].answer();
    assert.deepEqual([firstOf((await b).outputs.OUTPUT), firstOf((await c).outputs.OUTPUT)], [10, 100]);
    const next = send(3, 5, { end: true });
    await settled();
    assert.deepEqual(column(executions[2], 'READY'), [0, 0, 1], 'sequence 3 stays in row 2');
    assert.deepEqual(column(executions[2], 'STATE_IN'), [0, 0, 100], 'its state came back from its last run');
    executions[2].answer();
    assert.equal(firstOf((await next).outputs.OUTPUT), 105);
  });

  it('oldest: ready requests of different sequences are packed, oldest first, up to the preferred size', async () => {
    const { executions, send } = setup({ strategy: 'oldest', preferredBatchSizes: [2], maxQueueDelayMicroseconds: 60_000_000 });
    const answers = [send(7, 1, { start: true }), send(8, 2, { start: true }), send(9, 3, { start: true })];
    await settled();
    assert.equal(executions.length, 1, 'the preferred size 2 goes at once; the third waits for company');
    assert.deepEqual(column(executions[0], 'CORRID'), [7, 8]);
    assert.deepEqual(column(executions[0], 'READY'), [1, 1]);
    executions[0].answer();
    await Promise.all(answers.slice(0, 2));
    const fourth = send(7, 1);
    await settled();
    assert.deepEqual(column(executions[1], 'CORRID'), [9, 7], 'the oldest request first');
    assert.deepEqual(column(executions[1], 'STATE_IN'), [0, 1]);
    executions[1].answer();
    assert.equal(firstOf((await fourth).outputs.OUTPUT), 2);
  });

  it('one sequence runs one request at a time, in the order they came', async () => {
    const { executions, send } = setup({ strategy: 'oldest' });
    const answers = [send(4, 1, { start: true }), send(4, 2), send(4, 3, { end: true })];
    for (let step = 0; step < 3; step++) {
      await settled();
      assert.equal(executions.length, step + 1, 'the next request waits for the previous answer');
      assert.deepEqual(column(executions[step], 'INPUT'), [step + 1]);
      executions[step].answer();
    }
    assert.deepEqual(await Promise.all(answers.map(async (answer) => firstOf((await answer).outputs.OUTPUT))), [1, 3, 6]);
  });

  it('a START beyond the slots waits, and gets the slot its predecessor freed', async () => {
    const { batcher, executions, send } = setup({ maxBatchSize: 1 });
    const first = send(1, 1, { start: true, end: false });
    await settled();
    const second = send(2, 2, { start: true });
    executions[0].answer();
    await first;
    await settled();
    assert.equal(executions.length, 1, 'one slot, held by sequence 1');
    assert.equal(batcher.queued, 1);
    const ending = send(1, 0, { end: true });
    await settled();
    executions[1].answer();
    await ending;
    await settled();
    assert.deepEqual(column(executions[2], 'CORRID'), [2]);
    executions[2].answer();
    assert.equal(firstOf((await second).outputs.OUTPUT), 2);
  });

  it('more waiting requests than --max-queue-size are refused with a retry hint', async () => {
    const { executions, send } = setup({ maxQueuedRequests: 1 });
    const first = send(1, 1, { start: true });
    await settled();
    const waiting = send(1, 1);
    await assert.rejects(send(1, 1), (error: NereidError) => error.code === 'UNAVAILABLE' && error.retryAfterMs !== undefined && /1 requests waiting/.test(error.message));
    executions[0].answer();
    await first;
    await settled();
    executions[1].answer();
    assert.equal(firstOf((await waiting).outputs.OUTPUT), 2);
  });

  it('a waiting request whose client went away is dropped, and the rest of its sequence goes on', async () => {
    const { batcher, executions, send } = setup({});
    const first = send(1, 1, { start: true });
    await settled();
    const gone = new ClientCancellation();
    const cancelled = batcher.schedule({ inputs: { INPUT: { datatype: 'FP32', shape: [1, 1], data: new Float32Array([50]) } }, batchSize: 1, outputNames: ['OUTPUT'], signal: gone, sequence: { id: 1n, start: false, end: false } });
    const kept = send(1, 2);
    gone.abort();
    await assert.rejects(cancelled, (error: NereidError) => error.code === 'CANCELLED');
    executions[0].answer();
    await first;
    await settled();
    assert.equal(executions.length, 2);
    executions[1].answer();
    assert.equal(firstOf((await kept).outputs.OUTPUT), 3, 'the cancelled request never ran');
  });
});

for (const strategy of ['direct', 'oldest'] as const) {
  schedulerConformance(`SequenceBatcher (${strategy})`, {
    // No control or state inputs: the add/sub model takes none, and each request is a whole sequence of its own.
    make: (instance) => new SequenceBatcher([instance], policy({ strategy, controls: [], states: [] }), new ModelStatistics('addsub', '1'), "model 'addsub' version 1", 'addsub'),
    sequenceOf: (index) => ({ id: BigInt(index + 1), start: true, end: true }),
  });
}
