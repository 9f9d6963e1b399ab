/**
 * How the batch commands (`nereid batch`, `batch status`, `batch cancel`, `worker`) end, for the scripts that run them:
 * an exit status per kind of outcome, and an error as `{code, message}` (what `--json` prints on stdout as
 * `{"error": {…}}`, and what a job's summary carries when the job did not end complete).
 */
import { NereidError, type ErrorCode } from '../core/errors.js';
import { OptionError } from '../core/options.js';
import type { BatchSummary } from './job-progress.js';

export const BATCH_EXIT = {
  /** Done as asked: the job ran to its end (records with errors included), the status was read, the job cancelled. */
  ok: 0,
  /** The job ran but did not end complete: cancelled, chunks lost from Redis, or every record of the job (this run's and those resumed) failed. */
  incomplete: 1,
  /** Not done as given: a bad or missing option, an unknown job, or one whose state refuses it (nothing left to cancel, its --job used for another input). */
  usage: 2,
  /** Could not run: Redis unreachable, a model that does not load (locally, or on the workers: chunks no worker could run), an internal error; the same command may succeed later. */
  unavailable: 3,
  /** Stopped by SIGINT or SIGTERM after the records in flight; the same command resumes. */
  interrupted: 130,
} as const;

export interface BatchError {
  /** A NereidError's code (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, INTERNAL, …), or for a job that did not end complete INTERRUPTED, CANCELLED, RECORDS_LOST or ALL_RECORDS_FAILED. */
  code: string;
  message: string;
}

/** The error codes of a command that cannot be done as given (exit 2); every other one exits 3. */
const USAGE_CODES: ReadonlySet<ErrorCode> = new Set(['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION', 'ALREADY_EXISTS']);

/** A batch command's failure: its exit status and its error. Anything but a NereidError or a refused option is INTERNAL. */
export function batchFailure(error: unknown): { exitCode: number; error: BatchError } {
  if (error instanceof OptionError) return { exitCode: BATCH_EXIT.usage, error: { code: error.code, message: error.message } };
  const code: ErrorCode = error instanceof NereidError ? error.code : 'INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  return { exitCode: USAGE_CODES.has(code) ? BATCH_EXIT.usage : BATCH_EXIT.unavailable, error: { code, message } };
}

/**
 * How a job that ran ends: 0, or why it is not complete (the first that applies: interrupted, cancelled, chunks no worker
 * could run (exit 3), records lost, all failed).
 */
export function batchJobOutcome(summary: BatchSummary, options: { allowAllFailed?: boolean } = {}): { exitCode: number; error?: BatchError } {
  if (summary.interrupted) {
    return { exitCode: BATCH_EXIT.interrupted, error: { code: 'INTERRUPTED', message: 'stopped after the records in flight; run the same command again to continue' } };
  }
  if (summary.cancelled) {
    const { at, recordsLeft } = summary.cancelled;
    return { exitCode: BATCH_EXIT.incomplete, error: { code: 'CANCELLED', message: `the job was cancelled at ${at} (nereid batch cancel): ${recordsLeft} record(s) not written; run the same command again to resume it` } };
  }
  // Chunks written with their error count as their records do (below); those no worker could run are not the records'
  // fault: the exit status a local job gives for the same fault.
  const unrun = summary.failedChunks?.filter((chunk) => !chunk.writtenAsErrors) ?? [];
  if (unrun.length > 0) {
    const records = unrun.reduce((sum, chunk) => sum + chunk.records, 0);
    const [first] = unrun;
    return {
      exitCode: BATCH_EXIT.unavailable,
      error: {
        code: 'UNAVAILABLE',
        message: `${unrun.length} chunk(s) failed after their attempts, no worker able to run them, the first (chunk ${first!.chunk}) with: ${first!.reason}; their ${records} record(s) are not written: run the same command again once the cause is fixed`,
      },
    };
  }
  if (summary.lostChunks?.length) {
    const records = summary.lostChunks.reduce((sum, chunk) => sum + chunk.records, 0);
    return {
      exitCode: BATCH_EXIT.incomplete,
      error: { code: 'RECORDS_LOST', message: `${records} record(s) of ${summary.lostChunks.length} chunk(s) got no answer (see lostChunks) and are not written; run the same command again to submit them` },
    };
  }
  // The job's records, not this run's: the same command over the same data ends the same way every time (a rerun that
  // finds every record done and failed exits 1 again), and a resumed job whose last records are its only bad ones does not.
  const written = summary.resumed + summary.processed;
  if (written > 0 && summary.failedTotal >= written && !options.allowAllFailed) {
    return {
      exitCode: BATCH_EXIT.incomplete,
      error: { code: 'ALL_RECORDS_FAILED', message: `every record of the job failed (${summary.failedTotal}), each written with its error; --retry-failed runs them again once the cause is fixed; --allow-all-failed exits 0` },
    };
  }
  return { exitCode: BATCH_EXIT.ok };
}
