/**
 * `nereid batch status`: where a distributed job stands, from the queue (each chunk's state) and
 * the job's hash (records written by the submitter).
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { notFound } from '../core/errors.js';
import { requireRedis } from './redis-reachability.js';
import { DEFAULT_QUEUE_NAME, checkJobName, chunkJobId, jobMetaKey, redisConnection } from './chunk-queue.js';

export interface BatchStatusOptions {
  queue: string;
  queueName?: string;
  job: string;
}

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
  /** Chunks being worked on, with the worker holding each. */
  activeChunks: { chunk: string; worker?: string; attempt: number }[];
  recordsWritten: number;
  recordsFailed: number;
  submittedAt?: string;
  updatedAt?: string;
}

export async function batchJobStatus(options: BatchStatusOptions): Promise<BatchStatus> {
  const job = checkJobName(options.job);
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  await requireRedis(options.queue);
  const connection = redisConnection(options.queue);
  const redis = new Redis(connection);
  redis.on('error', () => undefined); // a failure reaches the caller through the command that met it
  const queue = new Queue(queueName, { connection });
  try {
    const meta = await redis.hgetall(jobMetaKey(queueName, job));
    if (meta.chunks === undefined) throw notFound(`no batch job '${job}' on queue '${queueName}' at ${options.queue}`);
    const chunks = Number(meta.chunks);
    const states = { waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0, notQueued: 0 };
    const activeIds: string[] = [];
    for (let start = 0; start < chunks; start += 500) {
      const ids = Array.from({ length: Math.min(500, chunks - start) }, (_, offset) => chunkJobId(job, start + offset));
      const found = await Promise.all(ids.map((id) => queue.getJobState(id)));
      found.forEach((state, offset) => {
        if (state === 'waiting' || state === 'prioritized' || state === 'waiting-children') states.waiting += 1;
        else if (state === 'active') {
          states.active += 1;
          activeIds.push(ids[offset]);
        } else if (state === 'delayed') states.delayed += 1;
        else if (state === 'completed') states.completed += 1;
        else if (state === 'failed') states.failed += 1;
        else states.notQueued += 1;
      });
    }
    const collected = Math.min(states.notQueued, Number(meta.chunks_collected ?? 0));
    states.completed += collected;
    states.notQueued -= collected;
    const activeChunks = await Promise.all(
      activeIds.map(async (id) => {
        const job = await queue.getJob(id);
        return { chunk: id, worker: job?.processedBy, attempt: (job?.attemptsMade ?? 0) + 1 };
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
      recordsWritten: Number(meta.records_written ?? 0),
      recordsFailed: Number(meta.records_failed ?? 0),
      submittedAt: meta.submitted_at,
      updatedAt: meta.updated_at,
    };
  } finally {
    await queue.close().catch(() => undefined);
    redis.disconnect();
  }
}

export function formatStatus(status: BatchStatus): string {
  const { chunkStates: s } = status;
  return [
    `job ${status.job}: model ${status.model}, ${status.records} records in ${status.chunks} chunk(s) of ${status.chunkSize}`,
    `  input ${status.input}`,
    `  output ${status.output}`,
    `chunks: ${s.completed} completed, ${s.active} active, ${s.waiting} waiting, ${s.delayed} retrying, ${s.failed} failed, ${s.notQueued} not queued`,
    ...status.activeChunks.map((chunk) => `  ${chunk.chunk} on ${chunk.worker ?? '?'} (attempt ${chunk.attempt})`),
    `records: ${status.recordsWritten}/${status.records} written to the output, ${status.recordsFailed} with errors` +
      (status.updatedAt ? ` (as of ${status.updatedAt})` : ''),
  ].join('\n');
}
