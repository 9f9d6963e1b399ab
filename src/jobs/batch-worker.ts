/**
 * A worker of distributed batch jobs: takes chunks from the queue, loads each chunk's model on
 * demand into its own Server (explicit model control), runs the records through the same
 * processor a local job uses, and returns one output line per record. Start any number, on any
 * machine that reaches Redis and has the model repository.
 *
 * A worker that dies mid-chunk stops renewing the chunk's lock; after `lockDurationMs` another
 * worker's stalled check (every `stalledIntervalMs`) puts the chunk back in the queue, and it runs
 * again elsewhere. Its records were never returned, so nothing is written twice.
 */
import { hostname } from 'node:os';
import { Worker, type Job } from 'bullmq';
import { pino, type Logger } from 'pino';
import { Server } from '../server/server.js';
import { CHUNK_FORMAT, DEFAULT_QUEUE_NAME, redisConnection, type ChunkData, type ChunkResult } from './chunk-queue.js';
import { fromWire, type RecordId } from './job-record.js';
import { RecordProcessor } from './record-processor.js';
import { runPipeline } from './record-pipeline.js';

export interface BatchWorkerOptions {
  /** redis://host:port */
  queue: string;
  queueName?: string;
  modelRepository: string;
  /** Chunks this worker runs at once (default 2, so one chunk's reading overlaps another's inference). */
  concurrency?: number;
  /** Records in flight within a chunk (default: 4 × batch size). */
  recordConcurrency?: number;
  /** Shown in the queue as the chunk's processedBy (default host:pid). */
  name?: string;
  /** How long a chunk stays locked to this worker without a renewal (default 30000 ms). */
  lockDurationMs?: number;
  /** How often this worker looks for chunks whose worker died (default: half the lock duration). */
  stalledIntervalMs?: number;
  /** Times a chunk may be recovered from a dead worker before it fails (default 2). */
  maxStalledCount?: number;
  logger?: Logger;
  /** A started Server to use instead of one made for the worker (explicit model control). */
  server?: Server;
}

export interface BatchWorker {
  name: string;
  server: Server;
  worker: Worker<ChunkData, ChunkResult>;
  close(): Promise<void>;
}

export async function startBatchWorker(options: BatchWorkerOptions): Promise<BatchWorker> {
  const logger = options.logger ?? pino({ level: 'info' }, pino.destination(2));
  const name = options.name ?? `${hostname()}:${process.pid}`;
  const ownServer = !options.server;
  const server =
    options.server ?? (await new Server({ modelRepository: options.modelRepository, modelControlMode: 'explicit', logger }).start());
  const loading = new Map<string, Promise<void>>();
  /** Model execution already attributed to a chunk, per model version. */
  const reported = new Map<string, number>();

  const ensureModel = async (model: string, version?: string): Promise<void> => {
    if (server.modelReady(model, version)) return;
    let load = loading.get(model);
    if (!load) {
      logger.info({ model }, `loading model '${model}'`);
      load = server.loadModel(model).finally(() => loading.delete(model));
      loading.set(model, load);
    }
    await load;
    if (!server.modelReady(model, version)) server.model(model, version); // throws why not
  };

  const processChunk = async (job: Job<ChunkData, ChunkResult>): Promise<ChunkResult> => {
    const data = job.data;
    if (data?.format !== CHUNK_FORMAT || !Array.isArray(data.records) || typeof data.model !== 'string') {
      throw new Error(`chunk ${job.id} is not a Nereid batch chunk of format ${CHUNK_FORMAT}`);
    }
    const started = performance.now();
    await ensureModel(data.model, data.version);
    const processor = RecordProcessor.create(server, { model: data.model, version: data.version, topK: data.topK });
    const batchSize = data.batchSize ?? processor.maxBatchSize;
    const ids: RecordId[] = [];
    const lines: string[] = [];
    const records = data.records.map((wire) => {
      const record = fromWire(wire);
      return { id: record.id, load: async () => record };
    });
    await runPipeline(
      records,
      (group) => processor.run(group),
      { batchSize, concurrency: options.recordConcurrency ?? 4 * batchSize },
      (results) => {
        for (const { id, line } of results) {
          ids.push(id);
          lines.push(line);
        }
      },
    );
    const key = `${processor.model}/${processor.version}`;
    const execution = processor.executionNs();
    const executionNs = Math.max(0, execution - (reported.get(key) ?? 0));
    reported.set(key, execution);
    logger.info(
      { chunk: job.id, records: ids.length, attempt: job.attemptsMade + 1, ms: Math.round(performance.now() - started) },
      `chunk ${job.id} completed`,
    );
    return { ids, lines, worker: name, executionNs };
  };

  const lockDuration = options.lockDurationMs ?? 30_000;
  const worker = new Worker<ChunkData, ChunkResult>(options.queueName ?? DEFAULT_QUEUE_NAME, processChunk, {
    connection: redisConnection(options.queue),
    name,
    concurrency: options.concurrency ?? 2,
    lockDuration,
    stalledInterval: options.stalledIntervalMs ?? Math.max(500, Math.floor(lockDuration / 2)),
    maxStalledCount: options.maxStalledCount ?? 2,
  });
  worker.on('failed', (job, error) => logger.warn({ chunk: job?.id, attempt: job?.attemptsMade }, `chunk ${job?.id} failed: ${error.message}`));
  worker.on('error', (error) => logger.error(`queue error: ${error.message}`));
  await worker.waitUntilReady();
  logger.info({ worker: name, queue: options.queueName ?? DEFAULT_QUEUE_NAME }, `worker ${name} waiting for chunks`);
  return {
    name,
    server,
    worker,
    async close() {
      await worker.close();
      if (ownServer) await server.close();
    },
  };
}
