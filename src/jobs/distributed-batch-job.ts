/**
 * The submitting side of a distributed batch job: reads the input in order, splits it into chunks
 * of `chunkSize` records or `chunkMaxMib` MiB, whichever comes first (decided from the whole
 * input's records and sizes, done ones included, so the numbering is the same on every rerun of the
 * same input), puts each chunk with its records' bytes on the
 * queue, and writes the workers' results to the output as chunks finish. The output is resumed
 * as in a local job and deduplicated by record id, so a rerun, a redelivered chunk or a
 * resubmitted one never writes a record twice. At most `maxPendingChunks` chunks wait in Redis
 * at a time, so a large input never sits in Redis all at once.
 */
import { resolve } from 'node:path';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { defaultLibraryLogger } from '../observability/library-logger.js';
import { z } from 'zod';
import { asNereidError, NereidError } from '../core/errors.js';
import { optionKeyName, parseOptions, type SettingName } from '../core/options.js';
import { checkModelName } from '../repository/model-name.js';
import {
  CANCELLED_FIELD,
  CHUNK_FORMAT,
  CHUNK_QUEUE_OPTIONS,
  checkJobName,
  chunkIndexOf,
  chunkIdRuns,
  chunkJobId,
  defaultJobName,
  FINISHED_FIELD,
  isUnrunnableChunk,
  jobMetaKey,
  namedClientList,
  PINNED_VERSION_FIELD,
  redisConnection,
  shownRedisUrl,
  SUBMITTER_NAMED_FIELD,
  submitterConnectionName,
  workerNamesIn,
  type ChunkData,
  type ChunkResult,
} from './chunk-queue.js';
import { idsOf, openInput, type InputRecord } from './input-source.js';
import { errorLine, recordBytes, recordKey, toWire, type RecordId } from './job-record.js';
import { checkAnsweredBy, JobOutput, STDOUT_OUTPUT } from './job-output.js';
import { answerOptionsOf, chooseAnotherOutput, differingAnswerOptions, type AnswerOptions } from './output-manifest.js';
import { JobProgress, summarize, type BatchSummary } from './job-progress.js';
import { loadQueueLibrary } from './queue-library.js';
import { RedisOutage, requireRedis } from './redis-reachability.js';
import { distributedJobSettingsSchema } from './job-options.js';
import { BATCH_INPUT_OPTION_KEYS, type BatchInputOptions } from './local-batch-job.js';

interface DistributedJobOptions extends BatchInputOptions {
  /** redis://host:port of the queue the workers listen to. */
  queue: string;
  /** The job's name (default: the model and a hash of input, output and version). */
  job?: string;
}

export type DistributedBatchOptions = DistributedJobOptions & z.input<typeof distributedJobSettingsSchema>;

interface Pending {
  index: number;
  ids: RecordId[];
}

export async function runDistributedBatchJob(options: DistributedBatchOptions): Promise<BatchSummary> {
  const { chunkSize, chunkMaxMib, queueName, maxPendingChunks: maxPending, attempts, backoffMs, pollMs, keepFinishedS } = parseOptions('runDistributedBatchJob', distributedJobSettingsSchema, options, [
    ...BATCH_INPUT_OPTION_KEYS,
    'queue',
    'job',
  ]);
  const logger = options.logger ?? defaultLibraryLogger();
  const named = options.settingName ?? optionKeyName;
  // The workers hold the repository; a name no repository can hold is refused here, before any chunk is queued.
  checkModelName(options.model);
  if (options.output === STDOUT_OUTPUT) {
    throw new NereidError('INVALID_ARGUMENT', `${named('output', STDOUT_OUTPUT)} (stdout) is for a run in this process: a distributed job's chunks are collected into its output file across runs; name a file`);
  }
  const job = checkJobName(options.job ?? defaultJobName(options.model, options.version, options.input, options.output));
  const chunkMaxBytes = chunkMaxMib * 1024 * 1024;
  // A URL that is not Redis's is refused here, naming the option it came in.
  const connection = redisConnection(options.queue, named('queue'));
  await requireRedis(options.queue);
  const { Queue, QueueEvents, Redis } = await loadQueueLibrary();
  const source = await openInput(options.input, options);
  const answerOptions = answerOptionsOf(options);
  if (source.ignoredFiles > 0) logger.warn(`${source.ignoredFiles} file(s) in ${options.input} are not images (by extension) and are left out`);
  /** Opened once the job's hash allowed this run, in the try below: a refused run leaves the output as it was. */
  let output!: JobOutput;
  let progress: JobProgress | undefined;
  const outage = new RedisOutage(options.queue, logger, () => progress?.stalledChanged());
  const queue = new Queue<ChunkData, ChunkResult>(queueName, { connection, ...CHUNK_QUEUE_OPTIONS });
  const events = new QueueEvents(queueName, { connection });
  // Named, so that `batch status` can tell from Redis's client list whether a submitter still runs the job.
  const redis = new Redis({ ...connection, connectionName: submitterConnectionName(queueName, job) });
  queue.on('error', outage.error);
  events.on('error', outage.error);
  redis.on('error', outage.error);
  // Whichever client reconnects first ends the outage: the job may finish on it before the others are back.
  queue.backend.on('ready', outage.ready);
  events.backend.on('ready', outage.ready);
  redis.on('ready', outage.ready);
  const metaKey = jobMetaKey(queueName, job);
  const pending = new Map<number, Pending>();
  const collecting = new Set<number>();
  const failedChunks: NonNullable<BatchSummary['failedChunks']> = [];
  const lostChunks: NonNullable<BatchSummary['lostChunks']> = [];
  let wake: (() => void) | undefined;
  const signalChange = () => {
    wake?.();
    wake = undefined;
  };
  const changed = () => new Promise<void>((resolve) => (wake = resolve));
  options.signal?.addEventListener('abort', signalChange, { once: true });
  let poll: NodeJS.Timeout | undefined;
  let fatal: unknown;
  let processed = 0;
  let failed = 0;
  let outOfDistribution = 0;
  let executionNs = 0;
  /** Records of chunks that finished before this run began (a submitter killed, a cancel): written now, computed earlier. */
  let collectedEarlier = 0;
  const runStartedAt = Date.now();
  let finished = false;
  /** Why no more chunks are queued though the job is not done (a chunk failed after its attempts), as a local job stops. */
  let stopSubmitting: string | undefined;
  /** When `nereid batch cancel` cancelled the job while this run submitted it; then nothing more is queued. */
  let cancelledAt: string | undefined;
  /** Whether this run queues no more chunks: a fatal error, an interrupt, a cancel seen, or a chunk no worker can run. */
  const submissionOver = () => Boolean(fatal) || options.signal?.aborted === true || cancelledAt !== undefined || stopSubmitting !== undefined;
  /** The one version that answers the job: named, recorded in the job's hash, or that of the output resumed. */
  let pinned: string | undefined;

  const write = async (entries: { id: RecordId; line: string }[]) => {
    const written = await output.append(entries);
    processed += written.written;
    failed += written.failed;
    outOfDistribution += written.outOfDistribution;
    progress?.add(written.written, written.failed);
    if (written.written > 0) {
      await redis.hset(metaKey, {
        records_written: output.doneCount,
        records_failed: output.resumed.failed + failed,
        updated_at: new Date().toISOString(),
      });
    }
  };

  /** Why chunks of the job wait on the workers now (none connected, or one holding a chunk died), for the progress. */
  let fleetNote: string | undefined;
  /** Reads Redis's client list (undefined where it is refused) and the queue's active chunks of this job with their holders. */
  const workersNote = async (): Promise<{ text: string; noWorker: boolean } | undefined> => {
    const list = await namedClientList(redis, submitterConnectionName(queueName, job));
    if (list === undefined) return undefined;
    const workers = workerNamesIn(list, queueName);
    if (workers.size === 0) return { text: `no worker is connected to queue '${queueName}'`, noWorker: true };
    const active = (await redis.lrange(queue.toKey('active'), 0, -1)).filter((id) => chunkIndexOf(job, id) !== undefined);
    // BullMQ keeps a chunk's processedBy in the field 'pb' of its hash.
    const holders = await Promise.all(active.map((id) => redis.hget(queue.toKey(id), 'pb')));
    const gone = [...new Set(holders.filter((worker): worker is string => worker !== null && !workers.has(worker)))];
    if (gone.length === 0) return undefined;
    const held = holders.filter((worker) => worker !== null && gone.includes(worker)).length;
    return { text: `${held} chunk(s) held by worker ${gone.join(', ')}, which is not connected (stopped or dead): back in the queue once the lock expires`, noWorker: false };
  };

  const leaveForRerun = (index: number, records: number, reason: string) => {
    logger.warn(`chunk ${index} of job '${job}' ${reason}; ${records} of its record(s) are left for a rerun`);
    lostChunks.push({ chunk: index, records, reason });
  };

  /** Writes a finished chunk's records (its results, or its error for each) and forgets it. Idempotent. */
  const collect = async (index: number): Promise<void> => {
    const chunk = pending.get(index);
    if (!chunk || collecting.has(index)) return;
    collecting.add(index);
    try {
      const id = chunkJobId(job, index);
      // The state first: a job read before it finished would carry no result even if it finished a moment later.
      const state = await queue.getJobState(id);
      if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return;
      // A completed chunk is read without its inputs (its records' images, base64, until it is removed): reading them
      // back made a distributed job of 10 MB photos ten times slower than a local one.
      const completed = state === 'completed' ? await finishedChunk(redis, queue, id) : undefined;
      const failed = state === 'failed' ? await queue.getJob(id) : undefined;
      const gone = !completed && !failed && (state !== 'unknown' || (await redis.exists(queue.toKey(id))) === 0);
      if (gone) {
        // Nothing ran them: they stay out of the output, so a rerun submits them again (no --retry-failed needed).
        // Taken off the queue by `nereid batch cancel`, their records stay out of the output as well, for a rerun.
        if (!(await cancelled())) leaveForRerun(index, chunk.ids.length, 'vanished from Redis before it finished (a restart or a flush?)');
      } else if (completed) {
        const result = completed.returnvalue;
        const lines = new Map<string, string>();
        result?.ids?.forEach((record, position) => lines.set(recordKey(record), result.lines[position]));
        const answered = chunk.ids.filter((record) => lines.has(recordKey(record)));
        const processedBefore = processed;
        await write(answered.map((record) => ({ id: record, line: lines.get(recordKey(record))! })));
        // A chunk queued before the input changed, and already running when this run came, held other records.
        if (answered.length < chunk.ids.length) leaveForRerun(index, chunk.ids.length - answered.length, 'ran with other records than it holds now (the input changed since it was queued)');
        // Work done while no submitter ran is not this run's: its rate and compute share leave it out.
        if (completed.finishedOn !== undefined && completed.finishedOn < runStartedAt) collectedEarlier += processed - processedBefore;
        else executionNs += result?.executionNs ?? 0;
        await queue.remove(id).catch(() => undefined); // its inputs and results now live in the output
        await redis.hincrby(metaKey, 'chunks_collected', 1);
      } else if (failed) {
        const reason = failed.failedReason || 'unknown error';
        const attempts = failed.attemptsMade;
        // Kept in the failed set for inspection (status), without the inputs it carried; a rerun replaces it.
        const keepForInspection = () => failed.updateData({ ...failed.data, records: [] }).catch(() => undefined);
        if (isUnrunnableChunk(reason)) {
          // No worker can run it (the model missing or not loading on the workers, a chunk they cannot read): the fleet's
          // fault, not the records'. They are left unwritten, as a local job leaves them when its model fails, so that
          // the same command, rerun once the cause is fixed, runs them; written as errors, a rerun would take them for answered.
          stopSubmitting ??= `chunk ${index} failed after ${attempts} attempt(s)`;
          logger.warn(`chunk ${index} of job '${job}' failed after ${attempts} attempt(s): ${reason}; its ${chunk.ids.length} record(s) are not written, and no more chunks are queued: the same command, run again once the cause is fixed, submits them`);
          failedChunks.push({ chunk: index, records: chunk.ids.length, reason, writtenAsErrors: false });
          await keepForInspection();
        } else {
          // Any other failure (its workers lost more than --max-stalled-count times: one of its records may crash every
          // worker that takes it) is its records' errors, as a failed record's: the job ends, and a rerun does not meet
          // the same chunk again; --retry-failed sends them again.
          // Only the records it carried failed: one queued before the input changed carried others than it holds now.
          const carried = new Set((Array.isArray(failed.data?.records) ? failed.data.records : []).map((record) => recordKey(record.id)));
          const failedIds = carried.size > 0 ? chunk.ids.filter((record) => carried.has(recordKey(record))) : chunk.ids;
          const lost = failed.stalledCounter > 0 ? `, its worker lost ${failed.stalledCounter} time(s)` : '';
          const failure = `chunk ${index} failed after ${attempts} attempt(s)${lost}: ${reason}`;
          await write(failedIds.map((record) => ({ id: record, line: errorLine(record, failure) })));
          logger.warn(`${failure}; its ${failedIds.length} record(s) of job '${job}' are written with that error (${named('retryFailed', true)} runs them again)`);
          failedChunks.push({ chunk: index, records: failedIds.length, reason, writtenAsErrors: true });
          if (failedIds.length < chunk.ids.length) leaveForRerun(index, chunk.ids.length - failedIds.length, 'failed with other records than it holds now (the input changed since it was queued)');
          await keepForInspection();
        }
      } else {
        return; // it came back between the two reads; look again later
      }
      pending.delete(index);
      signalChange();
    } catch (error) {
      fatal ??= error;
      signalChange();
    } finally {
      collecting.delete(index);
    }
  };

  /** Whether the job has been cancelled; once seen, the chunks this run queued that no worker took yet are withdrawn. */
  const cancelled = async (): Promise<boolean> => {
    if (cancelledAt !== undefined) return true;
    const at = await redis.hget(metaKey, CANCELLED_FIELD);
    if (!at) return false;
    cancelledAt = at;
    logger.warn(`job '${job}' was cancelled at ${at} (nereid batch cancel): no more chunks are queued; the chunks workers hold are written when they finish`);
    // Chunks queued between the cancel's removals and now would otherwise still run.
    await Promise.all([...pending.keys()].map((index) => queue.remove(chunkJobId(job, index)).catch(() => 0)));
    signalChange();
    return true;
  };

  const submit = async (index: number, records: InputRecord[]) => {
    const loaded = await Promise.all(records.map((record) => record.load()));
    const unreadable = loaded.filter((record) => record.error !== undefined);
    if (unreadable.length > 0) await write(unreadable.map((record) => ({ id: record.id, line: errorLine(record.id, record.error!, record.passThrough) })));
    const oversized = loaded.filter((record) => record.error === undefined && recordBytes(record) > chunkMaxBytes);
    if (oversized.length > 0) {
      await write(oversized.map((record) => ({ id: record.id, line: errorLine(record.id, `the record is ${(recordBytes(record) / 1024 / 1024).toFixed(1)} MiB, more than a chunk carries through Redis (${named('chunkMaxMib', chunkMaxMib)}); run it in a local job`, record.passThrough) })));
    }
    const runnable = loaded.filter((record) => record.error === undefined && !oversized.includes(record));
    if (runnable.length === 0) return;
    while (pending.size >= maxPending && !submissionOver()) await changed();
    // The mark is read before each chunk is queued, not only on the poll: a slot freed just after a cancel would
    // otherwise queue a chunk that an idle worker starts at once.
    if (submissionOver() || (await cancelled())) return;
    const id = chunkJobId(job, index);
    let state = await queue.getJobState(id);
    if (state === 'failed' && (options.retryFailed || isUnrunnableChunk((await queue.getJob(id))?.failedReason))) {
      // Failed in an earlier run, its records left unwritten for this one (no worker could run it) or written with the
      // error that --retry-failed runs again: tried again. Any other, failed while no submitter ran, is collected below.
      await queue.remove(id);
      state = 'unknown';
    } else if (state !== 'unknown' && state !== 'active' && !(await holdsRecords(queue, id, runnable.map((record) => record.id)))) {
      // Queued by an earlier run of an input that has changed since (files added or removed move the chunks' bounds):
      // its results would belong to other records. It is done again with the records it holds now.
      logger.warn(`chunk ${index} of job '${job}' was queued with other records (the input changed since); it is submitted again`);
      await queue.remove(id);
      state = 'unknown';
    }
    const data: ChunkData = {
      format: CHUNK_FORMAT,
      job,
      index,
      model: options.model,
      ...(pinned !== undefined ? { version: pinned } : {}),
      ...(options.topK ? { topK: options.topK } : {}),
      records: runnable.map(toWire),
    };
    // An id already in the queue (a rerun, another submitter) is not added again; its result is collected.
    await queue.add('chunk', data, {
      jobId: id,
      attempts,
      backoff: { type: 'fixed', delay: backoffMs },
      removeOnComplete: false,
      // Kept after they fail, for inspection (batch status), as long as the job's hash is: their records are written with the
      // error or, when no worker could run them, left for a rerun, which replaces them.
      removeOnFail: keepFinishedS > 0 ? { age: keepFinishedS } : false,
    });
    pending.set(index, { index, ids: runnable.map((record) => record.id) });
    // Cancelled while it was being added: withdrawn as those queued before.
    if (await cancelled()) await queue.remove(id).catch(() => 0);
    if (state === 'completed' || state === 'failed') void collect(index);
  };

  try {
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    const meta = await redis.hgetall(metaKey);
    // The chunk bounds follow the chunk size and byte budget: another of either would renumber every chunk.
    const submittedMib = meta.chunk_max_mib === undefined ? chunkMaxMib : Number(meta.chunk_max_mib);
    // Another output (or version) under the same job name would find the chunks written to the first output collected
    // and gone, its records lost; the same for another input, model or chunk bounds.
    const submitted = { model: meta.model, version: meta.version || '(by policy)', input: meta.input, output: meta.output, chunkSize: Number(meta.chunk_size), chunkMaxMib: submittedMib };
    const asked = { model: options.model, version: options.version || '(by policy)', input: resolve(options.input), output: resolve(options.output), chunkSize, chunkMaxMib };
    const differing = (Object.keys(asked) as (keyof typeof asked)[]).filter((key) => submitted[key] !== undefined && submitted[key] !== asked[key]);
    if (!options.restart && meta.input !== undefined && differing.length > 0) {
      throw new NereidError(
        'FAILED_PRECONDITION',
        `job '${job}' was submitted for model '${meta.model}' version ${submitted.version}, input '${meta.input}', output '${meta.output}', ${named('chunkSize', meta.chunk_size)}, ${named('chunkMaxMib', submittedMib)}; this run asks for another ${differing.map((key) => named(key, asked[key])).join(', ')}; use another ${named('job')}, the same options, or ${named('restart', true)}`,
      );
    }
    // Chunks queued under other flags and not yet collected would be written beside this run's answers (another
    // --top-k, records read from other columns): refused as the output's manifest refuses them once any is written.
    // Read before the output is opened, which may rewrite it (--retry-failed) and records this run's flags beside it.
    const submittedWith = options.restart ? undefined : answerOptionsIn(meta);
    const differingOptions = submittedWith && differingAnswerOptions(submittedWith, answerOptions, named);
    const queuedUnder = differingOptions && !meta[FINISHED_FIELD] ? await chunksNotCollected(queue, job, Number(meta.chunks) || 0) : 0;
    if (differingOptions && queuedUnder > 0) {
      throw new NereidError(
        'FAILED_PRECONDITION',
        `job '${job}' was submitted with ${differingOptions.written}, and this run asks ${differingOptions.asked}: its ${queuedUnder} chunk(s) queued and not yet written would be answered otherwise than this run's. ` +
          `Rerun with the options that submitted it (once they are written, other options are let through as the output allows), use another ${named('job')}, or ${named('restart', true)} to remove its chunks and start over`,
      );
    }
    output = await JobOutput.open(options.output, {
      restart: options.restart,
      retryFailed: options.retryFailed,
      input: options.input,
      inputRecords: { count: () => source.count(), ids: () => idsOf(source) },
      job: { answerOptions, input: options.input, lineNumbered: source.format !== 'images' && options.idColumn === undefined },
      warn: (message) => logger.warn(message),
      settingName: named,
    });
    const total = await source.count();
    let chunks = Math.ceil(total / chunkSize);
    if (total === 0) logger.warn(`${options.input} holds no records: nothing to submit`);
    if (options.restart && meta.chunks) await removeChunks(queue, job, Number(meta.chunks), logger);
    // A rerun knows the chunks by count only as far as it has read: an earlier run's larger count (chunks cut by bytes) stays.
    if (!options.restart && meta.chunks !== undefined) chunks = Math.max(chunks, Number(meta.chunks));
    // One version answers the whole job, whatever each worker's repository holds or gains while it runs: the one named,
    // else the one recorded for the job (the first worker to take a chunk records the version its policy serves), else
    // that of the output resumed (the job's hash lost with a flushed Redis).
    pinned = options.version ?? (options.restart ? undefined : meta[PINNED_VERSION_FIELD] || undefined) ?? versionOfOutput(output, options.model);
    if (pinned !== undefined) checkAnsweredBy(output, options.output, options.model, pinned, named);
    else if (output.resumed.answeredBy.size > 0) {
      throw new NereidError(
        'FAILED_PRECONDITION',
        `${options.output} holds answers of ${[...output.resumed.answeredBy].join(', ')}, and a job's output holds the answers of one version of its model: ${chooseAnotherOutput(named)}`,
      );
    }
    if (options.restart) await redis.del(metaKey);
    // Running the job's command again after `nereid batch cancel` resumes it.
    else await redis.hdel(metaKey, CANCELLED_FIELD);
    await redis.hset(metaKey, {
      ...(pinned !== undefined ? { [PINNED_VERSION_FIELD]: pinned } : {}),
      model: options.model,
      version: options.version ?? '',
      input: resolve(options.input),
      output: resolve(options.output),
      format: source.format,
      records: total,
      chunks,
      chunk_size: chunkSize,
      chunk_max_mib: chunkMaxMib,
      [ANSWER_OPTIONS_FIELD]: JSON.stringify(answerOptions),
      [SUBMITTER_NAMED_FIELD]: 1,
      records_written: output.doneCount,
      records_failed: output.resumed.failed,
      submitted_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
    });
    // An earlier run that finished set the hash to expire: this one may take longer than what was left.
    await redis.persist(metaKey);
    await redis.hdel(metaKey, FINISHED_FIELD);
    events.on('completed', ({ jobId }) => {
      const index = chunkIndexOf(job, jobId);
      if (index !== undefined) void collect(index);
    });
    events.on('failed', ({ jobId }) => {
      const index = chunkIndexOf(job, jobId);
      if (index !== undefined) void collect(index);
    });
    // Events are not replayed (a chunk may finish while no submitter listens), so also look now and then.
    let warnedOfNoWorker = false;
    poll = setInterval(() => {
      void cancelled().then(
        () => {
          for (const index of pending.keys()) void collect(index);
        },
        (error) => {
          fatal ??= error;
          signalChange();
        },
      );
      if (pending.size === 0) return;
      // A progress that only stops moving hides a dead fleet: say who is missing while chunks wait on them.
      void workersNote().then((note) => {
        if (note?.noWorker && !warnedOfNoWorker) {
          warnedOfNoWorker = true;
          logger.warn(`no worker is listening on queue '${queueName}' at ${shownRedisUrl(options.queue)}; chunks wait until one starts (nereid worker --queue … --queue-name ${queueName})`);
        }
        if (note?.text !== fleetNote) {
          fleetNote = note?.text;
          progress?.stalledChanged();
        }
      }, () => undefined);
    }, pollMs);

    const resumed = output.resumed.records;
    progress = new JobProgress({ total, alreadyDone: resumed, mode: options.progress, label: `batch ${job}`, stalled: () => outage.describe() ?? fleetNote }).start();
    const started = performance.now();
    let chunkRecords: InputRecord[] = [];
    let chunkIndex = 0;
    let inChunk = 0;
    let chunkBytes = 0;
    for await (const record of source.records()) {
      if (submissionOver()) break;
      const bytes = record.bytes ?? 0;
      if (inChunk > 0 && (inChunk >= chunkSize || chunkBytes + bytes > chunkMaxBytes)) {
        if (chunkRecords.length > 0) await submit(chunkIndex, chunkRecords);
        chunkRecords = [];
        chunkIndex += 1;
        inChunk = 0;
        chunkBytes = 0;
        // More chunks than records / chunk size when bytes cut them: the status reads this many.
        if (chunkIndex + 1 > chunks) {
          chunks = chunkIndex + 1;
          await redis.hset(metaKey, 'chunks', chunks);
        }
      }
      inChunk += 1;
      chunkBytes += bytes;
      if (!output.has(record.id)) chunkRecords.push(record);
    }
    if (chunkRecords.length > 0 && !submissionOver()) await submit(chunkIndex, chunkRecords);
    while (pending.size > 0 && !fatal && !options.signal?.aborted) await changed();
    if (fatal) throw asNereidError(fatal);
    progress.stop();
    finished = true;
    // Every record written (none lost, none left by a cancel or an interrupt): the job's hash is kept a while for `batch status`.
    if (!options.signal?.aborted && cancelledAt === undefined && lostChunks.length === 0 && failedChunks.length === 0 && output.doneCount >= total) {
      await redis.hset(metaKey, FINISHED_FIELD, new Date().toISOString());
      if (keepFinishedS > 0) await redis.expire(metaKey, keepFinishedS);
    }
    const modelVersionOf = async () => {
      const version = pinned ?? ((await redis.hget(metaKey, PINNED_VERSION_FIELD)) || undefined);
      return version === undefined ? {} : { modelVersion: version };
    };
    return {
      ...summarize({
        output: options.output,
        records: total,
        resumed,
        processed,
        failed,
        outOfDistribution,
        failedBefore: output.resumed.failed,
        wallSeconds: (performance.now() - started) / 1000,
        computeSeconds: executionNs / 1e9,
        interrupted: options.signal?.aborted ?? false,
        collectedEarlier,
      }),
      job,
      ...(await modelVersionOf()),
      chunks,
      failedChunks: failedChunks.sort((a, b) => a.chunk - b.chunk),
      ...(lostChunks.length > 0 ? { lostChunks: lostChunks.sort((a, b) => a.chunk - b.chunk) } : {}),
      ...(cancelledAt !== undefined ? { cancelled: { at: cancelledAt, recordsLeft: Math.max(0, total - output.doneCount) } } : {}),
    };
  } finally {
    if (poll) clearInterval(poll);
    outage.stop();
    progress?.stop();
    // Let collections under way finish writing before the output closes.
    while (collecting.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    // A job that could not run (another job's name, Redis gone) leaves no empty output behind.
    if (output) await output.close({ discardIfUntouched: !finished });
    await Promise.allSettled([events.close(), queue.close()]);
    redis.disconnect();
  }
}

/** The field of a job's hash with the answer-affecting flags its chunks were queued with (answerOptionsOf, as JSON). */
const ANSWER_OPTIONS_FIELD = 'answer_options';

/** The flags a job's chunks were queued with, undefined for a hash without them (new, or written by an older nereid). */
function answerOptionsIn(meta: Record<string, string>): AnswerOptions | undefined {
  const recorded = meta[ANSWER_OPTIONS_FIELD];
  if (!recorded) return undefined;
  try {
    const parsed: unknown = JSON.parse(recorded);
    return typeof parsed === 'object' && parsed !== null ? (parsed as AnswerOptions) : undefined;
  } catch {
    return undefined;
  }
}

/** The version that answered every answered record of the output, when one model version did. */
function versionOfOutput(output: JobOutput, model: string): string | undefined {
  const [answeredBy, ...others] = output.resumed.answeredBy;
  const prefix = `${model} version `;
  return answeredBy?.startsWith(prefix) && others.length === 0 ? answeredBy.slice(prefix.length) : undefined;
}

/** What collecting a completed chunk needs of it, read field by field from its hash (BullMQ's own layout); undefined when it is gone. */
async function finishedChunk(redis: Redis, queue: Queue<ChunkData, ChunkResult>, id: string): Promise<{ returnvalue: ChunkResult | undefined; finishedOn: number | undefined } | undefined> {
  const [name, returnvalue, finishedOn] = await redis.hmget(queue.toKey(id), 'name', 'returnvalue', 'finishedOn');
  if (name === null) return undefined;
  return { returnvalue: returnvalue ? (JSON.parse(returnvalue) as ChunkResult) : undefined, finishedOn: finishedOn ? Number(finishedOn) : undefined };
}

/** Whether the queued chunk `id` carries exactly these records. */
async function holdsRecords(queue: Queue<ChunkData, ChunkResult>, id: string, ids: readonly RecordId[]): Promise<boolean> {
  const queued = await queue.getJob(id);
  // What is not a chunk of ours fails on the workers as such.
  if (!queued || !Array.isArray(queued.data?.records)) return true;
  // A failed chunk collected keeps no records (see collect): written with their errors, its records are all in the
  // output, so any record this run still has for it is one it never carried.
  if (queued.data.records.length === 0) return ids.length === 0;
  return queued.data.records.length === ids.length && queued.data.records.every((record, position) => recordKey(record.id) === recordKey(ids[position]));
}

/** How many of a job's chunks are in the queue and not yet written to its output (waiting, running, retrying, or done and not collected). */
async function chunksNotCollected(queue: Queue, job: string, chunks: number): Promise<number> {
  let count = 0;
  for (const ids of chunkIdRuns(job, chunks, 200)) {
    const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
    // A failed chunk holds no answer to write: its records are written with the error, or run again by this run.
    count += states.filter((state) => state !== 'unknown' && state !== 'failed').length;
  }
  return count;
}

/** Removes a job's chunks from the queue (for --restart). A chunk a worker holds right now cannot be removed; it is reported. */
async function removeChunks(queue: Queue, job: string, chunks: number, logger: { warn(message: string): void }): Promise<void> {
  for (const ids of chunkIdRuns(job, chunks, 200)) {
    const results = await Promise.all(ids.map((id) => queue.remove(id).then((removed) => ({ id, removed }))));
    for (const { id, removed } of results) {
      if (removed === 0 && (await queue.getJobState(id)) !== 'unknown') logger.warn(`chunk ${id} is being processed and was not removed`);
    }
  }
}
