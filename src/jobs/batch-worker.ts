/**
 * A worker of distributed batch jobs: takes chunks from the queue, loads each chunk's model on
 * demand into its own Server (explicit model control), runs the records through the same
 * processor a local job uses, and returns one output line per record. Start any number, on any
 * machine that reaches Redis and has the model repository.
 *
 * A worker that dies mid-chunk stops renewing the chunk's lock; after `lockDurationMs` another
 * worker's stalled check (every `stalledIntervalMs`) puts the chunk back in the queue, and it runs
 * again elsewhere. Its records were never returned, so nothing is written twice.
 *
 * A worker that cannot load a chunk's model (its repository lacks it, or the load fails there) gives the chunk back
 * for the other workers, without counting an attempt, as long as a connected worker has not tried it yet: one
 * misconfigured worker would otherwise take every waiting chunk and spend their attempts in seconds, failing records
 * the others could answer. Once every connected worker has refused it, the attempt fails, its reason marked as the
 * fleet's fault (UNRUNNABLE_CHUNK_REASON), so that the job leaves the records of a chunk that fails so unwritten.
 *
 * Before running a chunk a worker reads its job's cancel mark: a chunk of a job `nereid batch cancel` stopped (one
 * recovered from a dead worker after the cancel, say) is taken off the queue unrun, as the cancel takes off those no
 * worker holds, so that the same command run again resumes it.
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import { pino, type Logger } from 'pino';
import { quoteName, shortened } from '../core/errors.js';
import { parseOptions } from '../core/options.js';
import { createCommandServer } from '../server/create-server.js';
import type { Server } from '../server/server.js';
import type { InferenceObserverFactory } from '../core/inference-observer.js';
import type { ChunkOutcome } from '../observability/index.js';
import { z } from 'zod';
import { CANCELLED_FIELD, CHUNK_FORMAT, isJobName, jobMetaKey, pinJobVersion, PINNED_VERSION_FIELD, redisConnection, UNRUNNABLE_CHUNK_REASON, workerNamesIn, type ChunkData, type ChunkResult } from './chunk-queue.js';
import { batchWorkerSettingsSchema, JOB_MONITORING, recordConcurrency } from './job-options.js';
import { fromWire, isErrorLine, type RecordId } from './job-record.js';
import { RecordProcessor } from './record-processor.js';
import { loadQueueLibrary } from './queue-library.js';
import { RedisOutage, requireRedis } from './redis-reachability.js';
import { runPipeline } from './record-pipeline.js';

/** How often a stopping worker looks whether Redis is away (its close would then wait for it). */
const REDIS_DOWN_CHECK_MS = 500;

/** How long a chunk given back by a worker that cannot load its model waits for another, when its job sets no backoff. */
const REFUSED_CHUNK_DELAY_MS = 1_000;

/** A chunk's model failed to load on this worker: another worker may have it. */
class ModelUnavailableHere extends Error {}

/** How long a chunk of a cancelled job that could not be taken off the queue waits before a worker looks at it again. */
const CANCELLED_CHUNK_RECHECK_MS = 5_000;

export type BatchWorkerOptions = z.input<typeof batchWorkerSettingsSchema> & {
  /** redis://host:port */
  queue: string;
  /** Records in flight within a chunk (default: four of the model's batches; at most the model's queue admits, shared by the chunks run at once). */
  recordConcurrency?: number;
  /** Shown in the queue as the chunk's processedBy (default host:pid). */
  name?: string;
  /** How often this worker looks for chunks whose worker died (default: half the lock duration). */
  stalledIntervalMs?: number;
  logger?: Logger;
  /** A started Server to use instead of one made for the worker (explicit model control). */
  server?: Server;
  /** Services that watch the worker's own server's requests (its metrics); ignored when `server` is given. */
  observers?: InferenceObserverFactory[];
  /** Told as each chunk's attempt ends (the worker's metrics). */
  onChunk?: (outcome: ChunkOutcome) => void;
};

/** The keys of BatchWorkerOptions beyond its settings' schema, so that a misspelt option is refused by name. */
const WORKER_OTHER_OPTIONS: Record<Exclude<keyof BatchWorkerOptions, keyof z.input<typeof batchWorkerSettingsSchema>>, true> = {
  queue: true,
  recordConcurrency: true,
  name: true,
  stalledIntervalMs: true,
  logger: true,
  server: true,
  observers: true,
  onChunk: true,
};

/** A running worker. BullMQ's own Worker stays inside: its types (and ioredis's) are not part of the library's. */
export interface BatchWorker {
  name: string;
  server: Server;
  close(): Promise<void>;
}

export async function startBatchWorker(options: BatchWorkerOptions): Promise<BatchWorker> {
  const settings = parseOptions('startBatchWorker', batchWorkerSettingsSchema, options, Object.keys(WORKER_OTHER_OPTIONS));
  await requireRedis(options.queue);
  const { DelayedError, Redis, Worker } = await loadQueueLibrary();
  const logger = options.logger ?? pino({ level: 'info' }, pino.destination(2));
  const name = options.name ?? `${hostname()}:${process.pid}`;
  const ownServer = !options.server;
  const server =
    options.server ??
    (await (
      await createCommandServer({ modelRepository: settings.modelRepository, allowCodeModels: settings.allowCodeModels, monitoring: JOB_MONITORING, logger, observers: options.observers })
    ).start());
  const loading = new Map<string, Promise<void>>();

  /** Models last loaded by their version policy: a chunk that names no version is answered by the version it serves. */
  const byPolicy = new Set<string>();
  /**
   * A version the job names is loaded beside those ready (as a local job loads one the policy leaves out); without one,
   * the model loads by its policy, so a chunk that names no version is answered by the version the policy serves even
   * when an earlier chunk had another loaded. Loads of one model run one at a time.
   */
  const loadFor = async (model: string, version?: string): Promise<void> => {
    // A first load is by policy: where the policy serves the version named, that one load is enough.
    if (version === undefined || !server.modelReady(model)) {
      await server.loadModel(model, {}, { everyVersion: false });
      byPolicy.add(model);
      if (version === undefined || server.modelReady(model, version)) return;
    }
    const ready = (await server.repositoryIndex(true)).filter((entry) => entry.name === model && entry.version !== undefined).map((entry) => entry.version!);
    await server.loadVersions(model, [...new Set([...ready, version])]);
    // The highest ready version now answers a chunk that names none, which need not be the policy's: such a chunk reloads by policy.
    byPolicy.delete(model);
  };
  const isLoaded = (model: string, version?: string) => server.modelReady(model, version) && (version !== undefined || byPolicy.has(model));

  const ensureModel = async (model: string, version?: string): Promise<void> => {
    while (!isLoaded(model, version)) {
      const under = loading.get(model);
      if (under) {
        // Its failure is this chunk's too: each waiting chunk trying the same broken load again would only repeat it.
        await under;
        continue;
      }
      logger.info({ model, version }, `loading model ${quoteName(model)}${version ? ` version ${shortened(version)}` : ''}`);
      const load = loadFor(model, version).finally(() => loading.delete(model));
      loading.set(model, load);
      await load;
      if (!server.modelReady(model, version)) server.model(model, version); // throws why not
    }
  };

  /** ensureModel for a chunk: its failure is this worker's, told as such (another worker may have the model). */
  const ensureChunkModel = async (data: ChunkData, version?: string): Promise<void> => {
    try {
      await ensureModel(data.model, version);
    } catch (error) {
      throw new ModelUnavailableHere(`job ${quoteName(data.job)} is answered by model ${quoteName(data.model)}${version === undefined ? '' : ` version ${shortened(version)}`}, which worker ${name} cannot load: ${(error as Error).message}`, { cause: error });
    }
  };

  const outage = new RedisOutage(options.queue, logger);
  const redis = new Redis(redisConnection(options.queue));
  redis.on('error', outage.error);
  /**
   * The one version that answers every chunk of a job: the one the chunk names, else the one recorded for its job,
   * else (the job's first chunk) the one this worker's policy serves, recorded for the others. A version a new folder
   * brings mid-job, or another worker's newer repository, then answers no chunk of a job begun with another.
   */
  const versionFor = async (data: ChunkData): Promise<string> => {
    if (data.version !== undefined) return data.version;
    const metaKey = jobMetaKey(settings.queueName, data.job);
    const recorded = await redis.hget(metaKey, PINNED_VERSION_FIELD);
    if (recorded) return recorded;
    await ensureChunkModel(data);
    const served = server.model(data.model).version;
    return (await pinJobVersion(redis, metaKey, served)) ?? served;
  };

  /**
   * When the chunk's job is marked cancelled, puts the chunk aside unrun and says so. BullMQ lets the worker holding a
   * chunk give it back only through the delayed set; from there it is removed, as `nereid batch cancel` removes the
   * chunks no worker holds: nothing is returned or written, no attempt counts as failed, and a rerun of the job's
   * command (which clears the mark) queues it again. Should the removal fail, it comes back after a while and is looked
   * at again (the mark cleared meanwhile, it then runs).
   */
  const setAsideIfCancelled = async (job: Job<ChunkData, ChunkResult>, token: string | undefined): Promise<boolean> => {
    const jobName = job.data?.job;
    // What is not a chunk of ours fails in runChunk, as such.
    if (typeof jobName !== 'string' || !isJobName(jobName)) return false;
    const cancelledAt = await redis.hget(jobMetaKey(settings.queueName, jobName), CANCELLED_FIELD);
    if (!cancelledAt) return false;
    await job.moveToDelayed(Date.now() + CANCELLED_CHUNK_RECHECK_MS, token);
    const removed = await job.remove().then(
      () => true,
      (error: Error) => {
        logger.warn({ chunk: job.id }, `chunk ${job.id} of cancelled job '${jobName}' could not be taken off the queue (${error.message}); it is looked at again in ${CANCELLED_CHUNK_RECHECK_MS / 1000} s`);
        return false;
      },
    );
    if (removed) logger.info({ chunk: job.id, job: jobName }, `chunk ${job.id} not run: job '${jobName}' was cancelled at ${cancelledAt} (nereid batch cancel); the same nereid batch command resumes it`);
    return true;
  };

  /**
   * Gives a chunk whose model this worker cannot load back to the queue for the connected workers that have not
   * refused it yet, and says whether it did; when none is left, the chunk fails here and counts an attempt.
   */
  const givenBack = async (job: Job<ChunkData, ChunkResult>, token: string | undefined, error: ModelUnavailableHere): Promise<boolean> => {
    const refusedBy = [...new Set([...(Array.isArray(job.data.refusedBy) ? job.data.refusedBy : []), name])];
    const connected = workerNamesIn(String(await redis.client('LIST')), settings.queueName);
    const untried = [...connected].filter((worker) => !refusedBy.includes(worker));
    if (untried.length === 0) {
      if (refusedBy.length > 1) error.message += ` (nor could workers ${refusedBy.filter((worker) => worker !== name).join(', ')})`;
      return false;
    }
    const backoff = job.opts.backoff;
    const delay = (typeof backoff === 'number' ? backoff : backoff?.delay) || REFUSED_CHUNK_DELAY_MS;
    await job.updateData({ ...job.data, refusedBy });
    await job.moveToDelayed(Date.now() + delay, token);
    logger.warn({ chunk: job.id, model: job.data.model }, `chunk ${job.id} given back for another worker (${untried.length} connected have not tried it): ${error.message}`);
    return true;
  };

  const processChunk = async (job: Job<ChunkData, ChunkResult>, token?: string): Promise<ChunkResult> => {
    // Before anything is loaded or counted: a chunk recovered from a dead worker after its job's cancel would run.
    if (await setAsideIfCancelled(job, token)) throw new DelayedError();
    const started = performance.now();
    try {
      return await runChunk(job, started);
    } catch (error) {
      if (error instanceof ModelUnavailableHere) {
        if (await givenBack(job, token, error)) throw new DelayedError();
        // Marked as the fleet's fault, so that the submitter leaves the chunk's records unwritten instead of failing them.
        error.message = `${UNRUNNABLE_CHUNK_REASON}${error.message}`;
      }
      const model = typeof job.data?.model === 'string' ? job.data.model : 'unknown';
      options.onChunk?.({ model, status: 'failed', records: Array.isArray(job.data?.records) ? job.data.records.length : 0, failedRecords: 0, seconds: (performance.now() - started) / 1000 });
      throw error;
    }
  };

  const runChunk = async (job: Job<ChunkData, ChunkResult>, started: number): Promise<ChunkResult> => {
    const data = job.data;
    if (data?.format !== CHUNK_FORMAT || !Array.isArray(data.records) || typeof data.model !== 'string' || typeof data.job !== 'string') {
      throw new Error(`${UNRUNNABLE_CHUNK_REASON}chunk ${job.id} is not a Nereid batch chunk of format ${CHUNK_FORMAT} (a worker of another nereid version?)`);
    }
    const version = await versionFor(data);
    await ensureChunkModel(data, version);
    const processor = RecordProcessor.create(server, { model: data.model, version, topK: data.topK });
    const ids: RecordId[] = [];
    const lines: string[] = [];
    const records = data.records.map((wire) => {
      const record = fromWire(wire);
      return { id: record.id, load: async () => record };
    });
    let executionNs = 0;
    let failedRecords = 0;
    await runPipeline(records, (record) => processor.run(record), { concurrency: recordConcurrency(processor, options.recordConcurrency, settings.concurrency) }, (results) => {
      for (const { id, line, computeNs } of results) {
        ids.push(id);
        lines.push(line);
        executionNs += computeNs;
        if (isErrorLine(line)) failedRecords += 1;
      }
    });
    options.onChunk?.({ model: data.model, status: 'completed', records: ids.length, failedRecords, seconds: (performance.now() - started) / 1000 });
    logger.info(
      { chunk: job.id, records: ids.length, attempt: job.attemptsMade + 1, ms: Math.round(performance.now() - started) },
      `chunk ${job.id} completed`,
    );
    return { ids, lines, worker: name, executionNs };
  };

  const lockDuration = settings.lockDurationMs;
  const worker = new Worker<ChunkData, ChunkResult>(settings.queueName, processChunk, {
    connection: redisConnection(options.queue),
    name,
    concurrency: settings.concurrency,
    lockDuration,
    stalledInterval: options.stalledIntervalMs ?? Math.max(500, Math.floor(lockDuration / 2)),
    maxStalledCount: settings.maxStalledCount,
  });
  worker.on('failed', (job, error) => logger.warn({ chunk: job?.id, attempt: job?.attemptsMade }, `chunk ${job?.id} failed: ${error.message}`));
  worker.on('error', outage.error);
  await worker.waitUntilReady();
  worker.backend.on('ready', outage.ready);
  logger.info({ worker: name, queue: settings.queueName }, `worker ${name} waiting for chunks`);
  return {
    name,
    server,
    async close() {
      // BullMQ's close waits for Redis to report the chunks in hand, for as long as Redis is away. Without Redis
      // nothing can be reported: the worker stops, and those chunks go to another worker when their locks expire.
      const closing = worker.close();
      closing.catch(() => undefined);
      while (!(await Promise.race([closing.then(() => true, () => true), sleep(REDIS_DOWN_CHECK_MS).then(() => false)]))) {
        if (!outage.down) continue;
        logger.warn(`stopping without waiting for Redis: ${outage.describe()}; the chunks in hand go to another worker once their locks expire`);
        break;
      }
      outage.stop();
      redis.disconnect();
      if (ownServer) await server.close();
    },
  };
}
