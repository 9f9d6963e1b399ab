import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NereidError, notFound, unavailable } from '../core/errors.js';
import { parseOptions } from '../core/options.js';
import { distributedJobSettingsSchema } from './job-options.js';
import { BATCH_EXIT, batchFailure, batchJobOutcome } from './batch-outcome.js';
import type { BatchSummary } from './job-progress.js';

test('a failure exits 2 when the command cannot be done as given, 3 when it could not run, with its code and message', () => {
  const refusedOption = (() => {
    try {
      parseOptions('runDistributedBatchJob', distributedJobSettingsSchema, { chunkSize: 0 });
    } catch (error) {
      return error;
    }
  })();
  assert.ok(refusedOption instanceof TypeError, 'a refused option stays a TypeError');
  const cases: [unknown, number, string][] = [
    [new NereidError('INVALID_ARGUMENT', 'batch needs --model'), BATCH_EXIT.usage, 'INVALID_ARGUMENT'],
    [notFound("no batch job 'x' on queue 'q'"), BATCH_EXIT.usage, 'NOT_FOUND'],
    [new NereidError('FAILED_PRECONDITION', 'nothing is left to cancel'), BATCH_EXIT.usage, 'FAILED_PRECONDITION'],
    [refusedOption, BATCH_EXIT.usage, 'INVALID_ARGUMENT'],
    [unavailable('cannot reach Redis at 127.0.0.1:1'), BATCH_EXIT.unavailable, 'UNAVAILABLE'],
    [new NereidError('INTERNAL', 'model failed to load'), BATCH_EXIT.unavailable, 'INTERNAL'],
    [new TypeError('x is not a function'), BATCH_EXIT.unavailable, 'INTERNAL'],
    ['a string thrown', BATCH_EXIT.unavailable, 'INTERNAL'],
  ];
  for (const [error, exitCode, code] of cases) {
    const failure = batchFailure(error);
    assert.deepEqual({ exitCode: failure.exitCode, code: failure.error.code }, { exitCode, code }, String(error));
    assert.equal(failure.error.message, error instanceof Error ? error.message : String(error));
  }
  assert.deepEqual(Object.values(BATCH_EXIT), [0, 1, 2, 3, 130]);
});

test("a job that ran exits 0, or 130 or 1 with why it is not complete, the first that applies", () => {
  const done: BatchSummary = { output: 'o.jsonl', records: 4, resumed: 0, processed: 4, failed: 1, outOfDistribution: 0, failedTotal: 1, wallSeconds: 1, recordsPerSecond: 4, computeSeconds: 0.1, computeShare: 0.1 };
  assert.deepEqual(batchJobOutcome(done), { exitCode: 0 });
  const allFailed = { ...done, failed: 4, failedTotal: 4 };
  assert.deepEqual(batchJobOutcome(allFailed).error?.code, 'ALL_RECORDS_FAILED');
  assert.equal(batchJobOutcome(allFailed).exitCode, 1);
  assert.deepEqual(batchJobOutcome(allFailed, { allowAllFailed: true }), { exitCode: 0 });
  assert.deepEqual(batchJobOutcome({ ...done, processed: 0, failed: 0, resumed: 4, failedTotal: 1 }), { exitCode: 0 }, 'nothing left to run is not a failure');
  // Judged on the job: a rerun that finds every record done and failed exits 1 again; a resumed tail of bad records does not.
  assert.equal(batchJobOutcome({ ...done, resumed: 4, processed: 0, failed: 0, failedTotal: 4 }).error?.code, 'ALL_RECORDS_FAILED');
  assert.deepEqual(batchJobOutcome({ ...done, resumed: 3, processed: 1, failed: 1, failedTotal: 1 }), { exitCode: 0 });
  assert.deepEqual(batchJobOutcome({ ...done, records: 0, processed: 0, failed: 0, failedTotal: 0 }), { exitCode: 0 }, 'no records: nothing failed');
  const lost = { ...done, lostChunks: [{ chunk: 2, records: 3, reason: 'vanished from Redis' }, { chunk: 5, records: 2, reason: 'vanished from Redis' }] };
  assert.deepEqual(batchJobOutcome(lost), {
    exitCode: 1,
    error: { code: 'RECORDS_LOST', message: '5 record(s) of 2 chunk(s) got no answer (see lostChunks) and are not written; run the same command again to submit them' },
  });
  // A chunk no worker could run (the model missing on the workers): as a local job whose model does not load, 3.
  const unrun = { chunk: 1, records: 4, reason: "no worker can run this chunk: model 'ghost' is not in the repository", writtenAsErrors: false };
  const failedChunks = batchJobOutcome({ ...lost, failedChunks: [unrun] });
  assert.equal(failedChunks.exitCode, 3);
  assert.equal(failedChunks.error?.code, 'UNAVAILABLE');
  assert.match(failedChunks.error!.message, /^1 chunk\(s\) failed after their attempts, no worker able to run them, the first \(chunk 1\) with: no worker can run this chunk: model 'ghost' is not in the repository; their 4 record\(s\) are not written/);
  assert.deepEqual(batchJobOutcome({ ...done, failedChunks: [] }), { exitCode: 0 });
  // A chunk whose records were written with its error (its workers lost: a record crashing them) counts as its records do.
  const stalled = { chunk: 2, records: 1, reason: 'job stalled more than allowable limit', writtenAsErrors: true };
  assert.deepEqual(batchJobOutcome({ ...done, failedChunks: [stalled] }), { exitCode: 0 });
  assert.equal(batchJobOutcome({ ...done, failedChunks: [stalled, unrun] }).exitCode, 3);
  const cancelled = { ...allFailed, ...lost, cancelled: { at: '2026-01-02T03:04:05.000Z', recordsLeft: 7 } };
  assert.deepEqual(batchJobOutcome(cancelled), {
    exitCode: 1,
    error: { code: 'CANCELLED', message: 'the job was cancelled at 2026-01-02T03:04:05.000Z (nereid batch cancel): 7 record(s) not written; run the same command again to resume it' },
  });
  const interrupted = batchJobOutcome({ ...cancelled, interrupted: true });
  assert.deepEqual({ exitCode: interrupted.exitCode, code: interrupted.error?.code }, { exitCode: 130, code: 'INTERRUPTED' });
});
