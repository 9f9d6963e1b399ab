/**
 * Keeps a bounded number of records in flight: records are read (files loaded) only when there is
 * room, grouped into calls of `batchSize`, and several calls run at once so that reading and
 * decoding the next records overlaps the model running the current ones.
 */
import type { InputRecord } from './input-source.js';
import type { JobRecord, RecordId } from './job-record.js';

export interface PipelineOptions {
  /** Records per call of the processor. */
  batchSize: number;
  /** Records in flight at most (loaded, decoding, queued or running). */
  concurrency: number;
  /** Stops taking new records; those in flight finish. */
  signal?: AbortSignal;
}

export type RecordRunner = (records: JobRecord[]) => Promise<string[]>;

/**
 * Runs every record through `run` and hands each group's lines to `done` as soon as they are
 * complete. Rejects with the first failure that is not a record's own, after the calls in
 * flight have settled.
 */
export async function runPipeline(
  records: AsyncIterable<InputRecord> | Iterable<InputRecord>,
  run: RecordRunner,
  options: PipelineOptions,
  done: (results: { id: RecordId; line: string }[]) => Promise<unknown> | void,
): Promise<void> {
  const batchSize = Math.max(1, options.batchSize);
  const concurrency = Math.max(batchSize, options.concurrency);
  const inFlight = new Set<Promise<void>>();
  let inFlightRecords = 0;
  let failure: { error: unknown } | undefined;

  const launch = (group: InputRecord[]) => {
    inFlightRecords += group.length;
    const task = (async () => {
      const loaded = await Promise.all(group.map((record) => record.load()));
      const lines = await run(loaded);
      await done(loaded.map((record, index) => ({ id: record.id, line: lines[index] })));
    })()
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => {
        inFlightRecords -= group.length;
        inFlight.delete(task);
      });
    inFlight.add(task);
  };
  const makeRoom = async (needed: number) => {
    while (inFlight.size > 0 && inFlightRecords + needed > concurrency) await Promise.race(inFlight);
  };

  let group: InputRecord[] = [];
  for await (const record of records) {
    if (failure || options.signal?.aborted) break;
    group.push(record);
    if (group.length >= batchSize) {
      await makeRoom(group.length);
      if (failure || options.signal?.aborted) break;
      launch(group);
      group = [];
    }
  }
  if (group.length > 0 && !failure && !options.signal?.aborted) {
    await makeRoom(group.length);
    if (!failure) launch(group);
  }
  await Promise.all(inFlight);
  if (failure) throw failure.error;
}
