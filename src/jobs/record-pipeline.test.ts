/**
 * runPipeline with a runner the test settles by hand: however the job fails, its promise settles
 * only after every record already started has settled and been handed on, so nothing of the job
 * runs or writes after its caller got the answer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { InputRecord } from './input-source.js';
import type { JobRecord } from './job-record.js';
import { runPipeline, type FinishedRecord, type RecordResult } from './record-pipeline.js';

/** A runner whose runs wait until the test settles them, one by one or all at once. */
function heldRunner() {
  const held: { id: JobRecord['id']; settle: (failure?: Error) => void }[] = [];
  const run = (record: JobRecord) =>
    new Promise<RecordResult>((resolve, reject) =>
      held.push({ id: record.id, settle: (failure) => (failure ? reject(failure) : resolve({ line: `{"id":${record.id}}`, computeNs: 0 })) }),
    );
  return { held, run };
}

const recordOf = (id: number): InputRecord => ({ id, load: async () => ({ id, json: '{}' }) });

/** The pipeline's outcome, and whether it has settled yet. */
function watch(pipeline: Promise<void>) {
  const state = { settled: false };
  const outcome = pipeline.then(
    () => ((state.settled = true), undefined),
    (error: unknown) => ((state.settled = true), error),
  );
  return { state, outcome };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await turn();
}

test('a source that fails while records run: the pipeline waits for them, hands them on, then rejects with the source\'s error', async () => {
  const { held, run } = heldRunner();
  const handed: FinishedRecord[] = [];
  async function* source() {
    yield recordOf(1);
    yield recordOf(2);
    throw new Error('the input file became unreadable');
  }
  const { state, outcome } = watch(runPipeline(source(), run, { concurrency: 4 }, (results) => void handed.push(...results)));
  await until(() => held.length === 2);
  for (let index = 0; index < 5; index++) await turn();
  assert.equal(state.settled, false, 'not settled while two records are still running');
  for (const { settle } of held) settle();
  const error = await outcome;
  assert.match(String(error), /the input file became unreadable/);
  assert.deepEqual(handed.map((result) => result.id).sort(), [1, 2], 'both records were handed on before the rejection');
});

test('a record that fails for the job: the others in flight settle first and no new record starts', async () => {
  const { held, run } = heldRunner();
  const handed: FinishedRecord[] = [];
  const { state, outcome } = watch(runPipeline([1, 2, 3, 4, 5].map(recordOf), run, { concurrency: 3 }, (results) => void handed.push(...results)));
  await until(() => held.length === 3);
  held[0].settle(new Error('the model was unloaded'));
  for (let index = 0; index < 5; index++) await turn();
  assert.equal(state.settled, false, 'not settled while records 2 and 3 run');
  assert.equal(held.length, 3, 'record 4 never started');
  held[1].settle();
  held[2].settle();
  assert.match(String(await outcome), /the model was unloaded/);
  assert.deepEqual(handed.map((result) => result.id).sort(), [2, 3]);
});

test('a failure to hand results on rejects once the records in flight settle, with that failure', async () => {
  const { held, run } = heldRunner();
  const { outcome } = watch(
    runPipeline([1, 2].map(recordOf), run, { concurrency: 2 }, () => {
      throw new Error('the output disk is full');
    }),
  );
  await until(() => held.length === 2);
  held[0].settle();
  held[1].settle();
  assert.match(String(await outcome), /the output disk is full/);
});
