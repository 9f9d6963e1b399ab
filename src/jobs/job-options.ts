/**
 * The settings of batch jobs and workers, with their defaults: the job functions apply them and
 * the CLI's --help shows them, from here.
 */
import { z } from 'zod';
import { flagNames, type SettingName } from '../core/options.js';
import { DEFAULT_QUEUE_NAME } from './chunk-queue.js';

const positive = z.number().int().positive();

/**
 * A batch job's options named as `nereid batch`'s flags, for a job the CLI starts (option settingName): `--restart`,
 * `--output out.jsonl`, `--model-version 2`; a library caller's messages name the option keys (`restart: true`).
 */
export const batchFlagName: SettingName = flagNames('', { version: '--model-version' }, new Set(['--restart', '--retry-failed']));

export const localJobSettingsSchema = z.object({
  /** The repository to load the model from when no server is given. */
  modelRepository: z.string().min(1).default('models'),
  /** Progress on stderr: a bar on a terminal, a line every 2 s otherwise. */
  progress: z.enum(['auto', 'bar', 'lines', 'none']).default('auto'),
  /** Models that run code from the repository (backend "javascript") may load, as serve's --allow-code-models. */
  allowCodeModels: z.boolean().default(false),
});

export const distributedJobSettingsSchema = z.object({
  /** The BullMQ queue the workers listen to. */
  queueName: z.string().min(1).default(DEFAULT_QUEUE_NAME),
  /** Records per queued chunk. */
  chunkSize: positive.default(64),
  /**
   * MiB of record bytes a queued chunk carries at most (it ends sooner when its records are large): a chunk is one
   * Redis value, JSON in one string, and 64 phone photos of 7 MB would pass V8's string limit. A larger record alone fails.
   * At most 256: the records travel as base64, a third larger, and V8's strings end at 512 MiB.
   */
  chunkMaxMib: positive.max(256).default(64),
  /** Tries of a chunk before it fails: when no worker can run it the job then stops (exit 3) and leaves its records for a rerun; otherwise they are written with the error. */
  attempts: positive.default(3),
  /** Wait before a failed chunk is tried again, in milliseconds. */
  backoffMs: z.number().int().nonnegative().default(1000),
  /** Chunks in Redis at once, submitted and not yet written. */
  maxPendingChunks: positive.default(64),
  /** How often unfinished chunks are checked besides the queue's events, in milliseconds. */
  pollMs: positive.default(1000),
  /**
   * Seconds a finished job's hash (what `batch status` reads) and its failed chunks stay in Redis after the run that
   * wrote its last record; 0 keeps them until removed. A rerun after that starts from its output, as after a flush.
   */
  keepFinishedS: z.number().int().nonnegative().default(7 * 24 * 3600),
});

export const batchWorkerSettingsSchema = z.object({
  queueName: z.string().min(1).default(DEFAULT_QUEUE_NAME),
  /** The model repository; models load on demand. */
  modelRepository: z.string().min(1).default('models'),
  /** Chunks processed at once, so one chunk's reading overlaps another's inference. */
  concurrency: positive.default(2),
  /** How long a chunk stays locked to a worker without a renewal before another worker takes it, in milliseconds. */
  lockDurationMs: z.number().int().min(100).default(30_000),
  /** Times a chunk may be recovered from dead workers before it fails. */
  maxStalledCount: z.number().int().nonnegative().default(2),
  /** Models that run code from the repository (backend "javascript") may load, as serve's --allow-code-models. */
  allowCodeModels: z.boolean().default(false),
});

/**
 * Records in flight for a model: those asked for, by default four batches' worth (so reading the
 * next overlaps running the current), but never more than the model admits at once, shared between
 * `sharers` pipelines feeding it: records beyond that would only be refused for a full queue.
 */
export function recordConcurrency(model: { maxBatchSize: number; admits: number }, requested?: number, sharers = 1): number {
  const wanted = requested ?? 4 * Math.max(1, model.maxBatchSize);
  return Math.max(1, Math.min(wanted, Math.floor(model.admits / sharers)));
}

/**
 * A job's server reads reference profiles for their out-of-distribution flags, but keeps no drift windows: records come
 * in the data's order (a folder sorted by class), which windows over traffic would report as drift. `nereid monitor
 * --data` judges a dataset's drift as a whole.
 */
export const JOB_MONITORING = { driftWindows: false } as const;
