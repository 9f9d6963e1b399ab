/**
 * Keeps a bounded number of records in flight: records are read (files loaded) only when there is
 * room, each goes to the core on its own (the model's batcher forms the batches), and finished
 * records are handed on in groups as they complete, so that writing never holds up the model.
 */
import type { InputRecord } from './input-source.js';
import type { JobRecord, RecordId } from './job-record.js';

export interface PipelineOptions {
  /** Records in flight at most (loaded, decoding, queued or running). */
  concurrency: number;
  /** Stops taking new records; those in flight finish. */
  signal?: AbortSignal;
}

export interface RecordResult {
  line: string;
  /** Model execution time attributable to the record: its share of the executions it was part of. */
  computeNs: number;
}

export type RecordRunner = (record: JobRecord) => Promise<RecordResult>;

export type FinishedRecord = RecordResult & { id: RecordId };

/**
 * Runs every record through `run` and hands finished records to `done`, in groups of those that
 * finished while the previous group was being handled. Rejects with the first failure that is not
 * a record's own (the source's included), only after the records in flight have settled and been
 * handed on, so that nothing of the job runs or writes once its caller has the answer.
 */
export async function runPipeline(
  records: AsyncIterable<InputRecord> | Iterable<InputRecord>,
  run: RecordRunner,
  options: PipelineOptions,
  done: (results: FinishedRecord[]) => Promise<unknown> | void,
): Promise<void> {
  const concurrency = Math.max(1, options.concurrency);
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  let finished: FinishedRecord[] = [];
  let handing: Promise<void> | undefined;

  const handOn = async () => {
    while (finished.length > 0) {
      const group = finished;
      finished = [];
      await done(group);
    }
    handing = undefined;
  };
  const launch = (record: InputRecord) => {
    const task = (async () => {
      const loaded = await record.load();
      const result = await run(loaded);
      finished.push({ id: loaded.id, ...result });
      handing ??= handOn();
      await handing;
    })()
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
  };

  try {
    for await (const record of records) {
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure || options.signal?.aborted) break;
      launch(record);
    }
  } catch (error) {
    // The source failed (an unreadable file, say): it is the job's failure, once what runs has settled.
    failure ??= { error };
  }
  await Promise.all(inFlight);
  await handing?.catch((error: unknown) => void (failure ??= { error }));
  if (failure) throw failure.error;
}
