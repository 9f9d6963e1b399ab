/** Offline batch inference: local jobs in this process, distributed jobs over a Redis queue (BullMQ). */
export { runLocalBatchJob, type LocalBatchOptions, type BatchInputOptions } from './local-batch-job.js';
export { runDistributedBatchJob, type DistributedBatchOptions } from './distributed-batch-job.js';
export { startBatchWorker, type BatchWorker, type BatchWorkerOptions } from './batch-worker.js';
export {
  batchJobList,
  batchJobsSource,
  batchJobStatus,
  cancelBatchJob,
  formatCancel,
  formatStatus,
  type BatchCancelResult,
  type BatchJobListOptions,
  type BatchJobsSource,
  type BatchStatus,
  type BatchStatusOptions,
} from './batch-status.js';
export { BATCH_EXIT, batchFailure, batchJobOutcome, type BatchError } from './batch-outcome.js';
export { formatSummary, JobProgress, type BatchSummary, type ProgressMode } from './job-progress.js';
export { openInput, type InputFormat, type InputRecord, type InputSource } from './input-source.js';
export { JobOutput } from './job-output.js';
export { RecordProcessor, type RecordProcessorOptions } from './record-processor.js';
export { runPipeline } from './record-pipeline.js';
export { DEFAULT_QUEUE_NAME, chunkJobId, defaultJobName, type ChunkData, type ChunkResult } from './chunk-queue.js';
export type { JobRecord, RecordId } from './job-record.js';
