/**
 * `nereid batch status`: where a distributed job stands, from the queue (each chunk's state) and
 * the job's hash (records written by the submitter); every job of a queue, for the dashboard; and
 * `nereid batch cancel`, which takes a job's waiting chunks off the queue.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { NereidError, notFound } from '../core/errors.js';
import { refuseUnknownOptions } from '../core/options.js';
import { loadQueueLibrary } from './queue-library.js';
import { requireRedis } from './redis-reachability.js';
import { CANCELLED_FIELD, DEFAULT_QUEUE_NAME, FINISHED_FIELD, SUBMITTER_NAMED_FIELD, checkJobName, chunkIdRuns, isJobName, jobMetaKey, namedClientList, redisConnection, shownRedisUrl, submittersIn, workerNamesIn } from './chunk-queue.js';

export interface BatchStatusOptions {
  queue: string;
  queueName?: string;
  job: string;
}

export interface BatchJobListOptions {
  queue: string;
  queueName?: string;
  /** The most recently submitted jobs shown (default 20). */
  limit?: number;
}

/** Failed chunks a status lists with their reasons, at most; the count in chunkStates is whole. */
const FAILED_CHUNKS_LISTED = 20;
/** Retrying chunks a status lists with their last failure, at most (the first by chunk index); the count in chunkStates is whole. */
export const RETRYING_CHUNKS_LISTED = 5;
/** Characters of a retrying chunk's last failure a status shows; a longer one is cut, saying how much was left out. */
export const RETRY_REASON_CHARS = 300;

export interface BatchStatus {
  job: string;
  model: string;
  input: string;
  output: string;
  records: number;
  chunks: number;
  chunkSize: number;
  /** Chunks by state. `completed` counts chunks already written to the output (and removed from the queue) too. */
  chunkStates: { waiting: number; active: number; delayed: number; completed: number; failed: number; notQueued: number };
  /**
   * Chunks being worked on, with the worker holding each; `recovered`: times it was taken back from a worker that stopped;
   * `workerConnected` false: that worker has no connection to Redis (it died), and the chunk goes back to the queue once
   * its lock expires (unset where Redis does not show its client list).
   */
  activeChunks: { chunk: string; worker?: string; attempt: number; recovered: number; workerConnected?: boolean }[];
  /** Chunks that failed after their attempts, with the last attempt's error (the first 20). */
  failedChunks: { chunk: string; reason: string; attempts: number }[];
  /**
   * Chunks waiting to be tried again after a failed attempt (`delayed` in chunkStates), with the last attempt's error
   * on one line, cut to 300 characters: the first 5 by chunk index. `failedAttempts` of the `attempts` the chunk is given.
   */
  retryingChunks: { chunk: string; reason: string; failedAttempts: number; attempts: number }[];
  recordsWritten: number;
  recordsFailed: number;
  submittedAt?: string;
  updatedAt?: string;
  /** When `nereid batch cancel` stopped the job (until its command is run again). */
  cancelledAt?: string;
  /** When a run wrote the job's last record; the job's hash expires `--keep-finished-s` after it. */
  finishedAt?: string;
  /** Workers connected to the queue now (unset where Redis does not show its client list). */
  workersConnected?: number;
  /**
   * Whether the job's submitter (`nereid batch --queue`) is connected now: without it nothing more is queued or written.
   * Unset where it cannot be told: Redis shows no client list or no connection names (a proxy), or the job was submitted
   * by an older nereid, whose submitter does not name its connection.
   */
  submitterConnected?: boolean;
}

/** Who is connected to a queue's Redis now: workers by name, submitters by job; undefined where CLIENT LIST is refused. */
interface Connected {
  workers: ReadonlySet<string>;
  submitters: ReadonlySet<string>;
}

async function connectedTo(redis: Redis, queueName: string): Promise<Connected | undefined> {
  // Where it cannot be told, the status says nothing of who is connected rather than "nobody".
  const list = await namedClientList(redis, READER_CONNECTION_NAME);
  return list === undefined ? undefined : { workers: workerNamesIn(list, queueName), submitters: submittersIn(list, queueName) };
}

/** The name of a status reader's own Redis connection, looked for in the client list to tell that names are shown. */
const READER_CONNECTION_NAME = `nereid:batch-reader:${process.pid}`;

type StatusQueue = Pick<Queue, 'getJobState' | 'getJob'>;

/** Opens the queue and a Redis client for one reading (or cancelling), and closes both after it. */
async function readingQueue<T>(url: string, queueName: string, read: (redis: Redis, queue: Queue) => Promise<T>): Promise<T> {
  await requireRedis(url);
  const { Queue, Redis } = await loadQueueLibrary();
  const connection = redisConnection(url);
  const redis = new Redis({ ...connection, connectionName: READER_CONNECTION_NAME });
  redis.on('error', () => undefined); // a failure reaches the caller through the command that met it
  // The queue's settings (the event stream's length) stay the submitter's.
  const queue = new Queue(queueName, { connection, skipMetasUpdate: true });
  try {
    return await read(redis, queue);
  } finally {
    await queue.close().catch(() => undefined);
    redis.disconnect();
  }
}

const STATUS_OPTION_KEYS: readonly (keyof BatchStatusOptions)[] = ['queue', 'queueName', 'job'];
const LIST_OPTION_KEYS: readonly (keyof BatchJobListOptions)[] = ['queue', 'queueName', 'limit'];

export async function batchJobStatus(options: BatchStatusOptions): Promise<BatchStatus> {
  refuseUnknownOptions('batchJobStatus', options, STATUS_OPTION_KEYS);
  const job = checkJobName(options.job);
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  return readingQueue(options.queue, queueName, async (redis, queue) => {
    const meta = await redis.hgetall(jobMetaKey(queueName, job));
    if (meta.chunks === undefined) throw notFound(`no batch job '${job}' on queue '${queueName}' at ${shownRedisUrl(options.queue)}`);
    return statusOf(queue, job, meta, await connectedTo(redis, queueName));
  });
}

/** Every job submitted to the queue, the most recent first, each as `batchJobStatus` reports it. */
export async function batchJobList(options: BatchJobListOptions): Promise<BatchStatus[]> {
  refuseUnknownOptions('batchJobList', options, LIST_OPTION_KEYS);
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  return readingQueue(options.queue, queueName, async (redis, queue) => {
    const prefix = jobMetaKey(queueName, '');
    const names: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 500);
      cursor = next;
      // A job name has no ':': a longer key belongs to another queue whose name starts like this one's.
      names.push(...keys.map((key) => key.slice(prefix.length)).filter((name) => isJobName(name)));
    } while (cursor !== '0');
    const metas = await Promise.all([...new Set(names)].map(async (job) => ({ job, meta: await redis.hgetall(jobMetaKey(queueName, job)) })));
    const recent = metas
      .filter(({ meta }) => meta.chunks !== undefined)
      .sort((a, b) => (b.meta.submitted_at ?? '').localeCompare(a.meta.submitted_at ?? '') || a.job.localeCompare(b.job))
      .slice(0, options.limit ?? 20);
    const connected = await connectedTo(redis, queueName);
    return Promise.all(recent.map(({ job, meta }) => statusOf(queue, job, meta, connected)));
  });
}

/** A queue's jobs for a reader that polls them (the dashboard): where the queue is, and a fresh reading per call. */
export interface BatchJobsSource {
  /** redis://host:port[/db], credentials left out: fit to show. */
  queue: string;
  queueName: string;
  jobs(): Promise<BatchStatus[]>;
}

export function batchJobsSource(options: BatchJobListOptions): BatchJobsSource {
  refuseUnknownOptions('batchJobsSource', options, LIST_OPTION_KEYS);
  redisConnection(options.queue); // a URL that is not Redis's fails here, before any reading
  return { queue: shownRedisUrl(options.queue), queueName: options.queueName ?? DEFAULT_QUEUE_NAME, jobs: () => batchJobList(options) };
}

/** A job's status from its hash (`meta`) and its chunks' states in the queue. */
async function statusOf(queue: StatusQueue, job: string, meta: Record<string, string>, connected: Connected | undefined): Promise<BatchStatus> {
  const chunks = Number(meta.chunks);
  const states = { waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0, notQueued: 0 };
  const activeIds: string[] = [];
  const failedIds: string[] = [];
  const retryingIds: string[] = [];
  for (const ids of chunkIdRuns(job, chunks, 500)) {
    const found = await Promise.all(ids.map((id) => queue.getJobState(id)));
    found.forEach((state, offset) => {
      if (state === 'waiting' || state === 'prioritized' || state === 'waiting-children') states.waiting += 1;
      else if (state === 'active') {
        states.active += 1;
        activeIds.push(ids[offset]);
      } else if (state === 'delayed') {
        states.delayed += 1;
        retryingIds.push(ids[offset]);
      }
      else if (state === 'completed') states.completed += 1;
      else if (state === 'failed') {
        states.failed += 1;
        failedIds.push(ids[offset]);
      } else states.notQueued += 1;
    });
  }
  const collected = Math.min(states.notQueued, Number(meta.chunks_collected ?? 0));
  states.completed += collected;
  states.notQueued -= collected;
  const activeChunks = await Promise.all(
    activeIds.map(async (id) => {
      const chunk = await queue.getJob(id);
      const worker = chunk?.processedBy;
      return {
        chunk: id,
        worker,
        attempt: (chunk?.attemptsMade ?? 0) + 1,
        recovered: chunk?.stalledCounter ?? 0,
        ...(connected && worker !== undefined ? { workerConnected: connected.workers.has(worker) } : {}),
      };
    }),
  );
  const failedChunks = await Promise.all(
    failedIds.slice(0, FAILED_CHUNKS_LISTED).map(async (id) => {
      const chunk = await queue.getJob(id);
      return { chunk: id, reason: chunk?.failedReason || 'unknown error', attempts: chunk?.attemptsMade ?? 0 };
    }),
  );
  const retryingChunks = await Promise.all(
    retryingIds.slice(0, RETRYING_CHUNKS_LISTED).map(async (id) => {
      const chunk = await queue.getJob(id);
      return {
        chunk: id,
        reason: cut((chunk?.failedReason || 'no reason recorded').replace(/\s*\n\s*/g, ' '), RETRY_REASON_CHARS),
        failedAttempts: chunk?.attemptsMade ?? 0,
        attempts: chunk?.opts.attempts ?? 1,
      };
    }),
  );
  return {
    job,
    model: meta.model,
    input: meta.input,
    output: meta.output,
    records: Number(meta.records),
    chunks,
    chunkSize: Number(meta.chunk_size),
    chunkStates: states,
    activeChunks,
    failedChunks,
    retryingChunks,
    recordsWritten: Number(meta.records_written ?? 0),
    recordsFailed: Number(meta.records_failed ?? 0),
    submittedAt: meta.submitted_at,
    updatedAt: meta.updated_at,
    ...(meta[CANCELLED_FIELD] ? { cancelledAt: meta[CANCELLED_FIELD] } : {}),
    ...(meta[FINISHED_FIELD] ? { finishedAt: meta[FINISHED_FIELD] } : {}),
    ...(connected ? { workersConnected: connected.workers.size } : {}),
    ...(connected && meta[SUBMITTER_NAMED_FIELD] ? { submitterConnected: connected.submitters.has(job) } : {}),
  };
}

/** `text`, or its first `max` characters and how many more there were. */
function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

export interface BatchCancelResult {
  job: string;
  cancelledAt: string;
  /** Chunks taken off the queue before any worker took them (waiting, or waiting to be retried). */
  removedChunks: number;
  /** Chunks a worker holds: they run to the end, and their records are written by the submitter or by a rerun. */
  runningChunks: number;
  /** Records of the job not written to its output when it was cancelled. */
  recordsLeft: number;
}

/**
 * Cancels a distributed job: marks it cancelled in its hash (its submitter, if one runs, stops submitting and ends once
 * the chunks already running are written) and removes its chunks that no worker holds yet. Nothing written is lost and
 * nothing is marked failed: the same `nereid batch` command run again resumes the job where it stood.
 */
export async function cancelBatchJob(options: BatchStatusOptions): Promise<BatchCancelResult> {
  refuseUnknownOptions('cancelBatchJob', options, STATUS_OPTION_KEYS);
  const job = checkJobName(options.job);
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  return readingQueue(options.queue, queueName, async (redis, queue) => {
    const metaKey = jobMetaKey(queueName, job);
    const meta = await redis.hgetall(metaKey);
    if (meta.chunks === undefined) throw notFound(`no batch job '${job}' on queue '${queueName}' at ${shownRedisUrl(options.queue)}`);
    const recordsLeft = Math.max(0, Number(meta.records) - Number(meta.records_written ?? 0));
    if (recordsLeft === 0) throw new NereidError('FAILED_PRECONDITION', `batch job '${job}' has written all its ${meta.records} record(s): nothing is left to cancel`);
    // Marked first: a submitter that sees its chunks disappear then knows why, and queues no more.
    const cancelledAt = meta[CANCELLED_FIELD] || new Date().toISOString();
    await redis.hset(metaKey, CANCELLED_FIELD, cancelledAt);
    let removedChunks = 0;
    let runningChunks = 0;
    const chunks = Number(meta.chunks);
    for (const ids of chunkIdRuns(job, chunks, 200)) {
      const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
      await Promise.all(
        ids.map(async (id, offset) => {
          const state = states[offset];
          if (state === 'waiting' || state === 'prioritized' || state === 'delayed' || state === 'waiting-children') {
            // A worker may take it between the reading and the removal: then it runs, as those already running do.
            if ((await queue.remove(id)) === 1) removedChunks += 1;
            else runningChunks += 1;
          } else if (state === 'active') runningChunks += 1;
        }),
      );
    }
    return { job, cancelledAt, removedChunks, runningChunks, recordsLeft };
  });
}

export function formatCancel(result: BatchCancelResult): string {
  return [
    // The submitter, when it runs, withdraws the chunks it queued as soon as it sees the mark: some may be gone before
    // this command reached them, so what it says is that none waits now, and how many it removed itself.
    `job ${result.job} cancelled at ${result.cancelledAt}: no chunk of it waits in the queue now (${result.removedChunks} taken off by this command), ${result.recordsLeft} record(s) not written`,
    result.runningChunks > 0 ? `${result.runningChunks} chunk(s) held by workers run to the end; their records are written by the job's submitter, or by a rerun` : '',
    "once its submitter has exited, run the same `nereid batch` command again to resume the job, or with --restart to start it over",
  ]
    .filter(Boolean)
    .join('\n');
}

export function formatStatus(status: BatchStatus): string {
  const { chunkStates: s } = status;
  // Records left to write and no run ended it: who is (not) submitting it matters.
  const unfinished = !status.finishedAt && !status.cancelledAt && status.recordsWritten < status.records;
  return [
    `job ${status.job}: model ${status.model}, ${status.records} records in ${status.chunks} chunk(s) of ${status.chunkSize}`,
    `  input ${status.input}`,
    `  output ${status.output}`,
    `chunks: ${s.completed} completed, ${s.active} active, ${s.waiting} waiting, ${s.delayed} retrying, ${s.failed} failed, ${s.notQueued} not queued`,
    ...status.activeChunks.map(
      (chunk) =>
        `  ${chunk.chunk} on ${chunk.worker ?? 'a worker just starting it'} (attempt ${chunk.attempt}${chunk.recovered ? `; taken back from a stopped worker ${chunk.recovered} time(s)` : ''})` +
        (chunk.workerConnected === false ? `: ${chunk.worker} is not connected (stopped or dead); the chunk goes back to the queue once its lock expires (worker --lock-duration-ms, 30 s by default)` : ''),
    ),
    ...(status.workersConnected === 0 && s.waiting + s.delayed + s.active > 0 ? [`no worker is connected to the queue: its chunks wait until one starts (nereid worker --queue …)`] : []),
    ...status.retryingChunks.map((chunk) => `  ${chunk.chunk} retrying after ${chunk.failedAttempts} of ${chunk.attempts} attempt(s) failed, the last with: ${chunk.reason}`),
    ...(s.delayed > status.retryingChunks.length ? [`  … and ${s.delayed - status.retryingChunks.length} more chunk(s) retrying`] : []),
    ...status.failedChunks.map((chunk) => `  ${chunk.chunk} failed after ${chunk.attempts} attempt(s): ${chunk.reason}`),
    `records: ${status.recordsWritten}/${status.records} written to the output, ${status.recordsFailed} with errors` +
      (status.updatedAt ? ` (as of ${status.updatedAt})` : ''),
    ...(status.cancelledAt ? [`cancelled at ${status.cancelledAt} (nereid batch cancel); the same nereid batch command resumes it`] : []),
    ...(status.finishedAt ? [`finished at ${status.finishedAt}`] : []),
    ...(status.submitterConnected === false && unfinished
      ? ["no submitter is running (its `nereid batch --queue` ended or died): nothing more is queued or written to the output until the job's command runs again"]
      : []),
    ...(status.submitterConnected === undefined && status.workersConnected !== undefined && unfinished
      ? ['whether a submitter is running is unknown: the job was submitted by an older nereid, whose submitter Redis does not name']
      : []),
  ].join('\n');
}
