/**
 * Prometheus metrics of a distributed batch worker (`nereid worker --metrics-port`): the chunks it
 * finished and failed, the records it returned and how many of them carry an error, and how long
 * a chunk takes — so that a fleet of workers is watched as servers are, beside the inference
 * metrics of the models they run.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

/** One chunk's attempt as the worker ends it. */
export interface ChunkOutcome {
  model: string;
  /** completed: its records were returned (some may carry errors); failed: the attempt threw, the queue retries it or gives up. */
  status: 'completed' | 'failed';
  records: number;
  /** Records returned with an error line (a bad record, not a failed chunk). */
  failedRecords: number;
  seconds: number;
}

export const CHUNK_DURATION_BUCKETS_SECONDS: readonly number[] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Registers the worker's metrics on `registry`; answers what to call as each chunk ends. */
export function registerBatchWorkerMetrics(registry: Registry): (outcome: ChunkOutcome) => void {
  const chunks = new Counter({
    name: 'nereid_batch_chunks_total',
    help: 'Chunk attempts this worker ended, by model and status (completed: records returned; failed: the attempt threw)',
    labelNames: ['model', 'status'],
    registers: [registry],
  });
  const records = new Counter({
    name: 'nereid_batch_records_total',
    help: 'Records this worker returned, by model and outcome (ok, or error: written with the reason it failed)',
    labelNames: ['model', 'outcome'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'nereid_batch_chunk_duration_seconds',
    help: 'Seconds from taking a chunk to ending its attempt, by model and status',
    labelNames: ['model', 'status'],
    buckets: [...CHUNK_DURATION_BUCKETS_SECONDS],
    registers: [registry],
  });
  return ({ model, status, records: count, failedRecords, seconds }) => {
    chunks.inc({ model, status });
    duration.observe({ model, status }, seconds);
    if (status !== 'completed') return;
    records.inc({ model, outcome: 'ok' }, count - failedRecords);
    if (failedRecords > 0) records.inc({ model, outcome: 'error' }, failedRecords);
  };
}
