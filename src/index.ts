/** The library API: the same core the server's front ends and batch jobs use. */
export { Server, SERVER_EXTENSIONS } from './server/server.js';
export { serverOptionsSchema, type ServerOptions } from './server/server-options.js';
export { createServer, createCacheStore, type CreateServerOptions } from './server/create-server.js';
export { createHttpFrontEnd, dashboardAddress, type HttpFrontEndOptions } from './frontends/http/v2-http.js';
export { createGrpcFrontEnd, grpcFrontEndOptionsSchema, type GrpcFrontEnd, type GrpcFrontEndOptions } from './frontends/grpc/v2-grpc.js';
export { loadInferenceProto, PROTO_DIR, PROTO_LOADER_OPTIONS, type InferenceProto } from './frontends/grpc/v2-grpc-proto.js';
export { ModelRepository } from './repository/model-repository.js';
export { type RepositoryIndexEntry } from './repository/repository-index.js';
export { BUNDLED_REPOSITORY } from './repository/bundled-repository.js';
export {
  createMetricsListener,
  createTracing,
  PrometheusMetrics,
  Tracing,
  type CostSummary,
  type MetricsListener,
  type PrometheusMetricsOptions,
  type TracingOptions,
} from './observability/index.js';
export { parseModelConfig, type ModelConfig, type CompletedModelConfig } from './config/model-config.js';
export { parsePbtxt } from './config/pbtxt.js';
export { OnnxRuntimeBackend } from './backends/onnx-runtime-backend.js';
// Importing it loads no TF.js: the engine starts only in an instance's worker thread.
export { TfjsBackend } from './backends/tfjs-backend.js';
export type { Detection } from './processing/object-detection.js';
export type { Backend, BackendInstance, InstanceOptions, ModelSignature } from './backends/backend.js';
export type { Scheduler, ScheduledRequest } from './scheduler/scheduler.js';
export { NereidError, httpStatusOf, grpcStatusOf, type ErrorCode } from './core/errors.js';
export { OptionError } from './core/options.js';
export type { InferenceRequest, InferenceResponse, InferInput, InferOutput, RequestContext, RequestedOutput } from './core/inference.js';
export type { Tensor } from './core/tensor.js';
export { readTlsFiles, type TlsCredentials } from './core/tls.js';
export { bytesElements, DATATYPES, PackedBytes, type BytesData, type Datatype, type TensorData } from './core/datatype.js';
export { runLocalBatchJob, runDistributedBatchJob, startBatchWorker, batchJobStatus, batchJobList, cancelBatchJob, type BatchCancelResult, batchJobsSource, type BatchSummary, type LocalBatchOptions, type DistributedBatchOptions, type BatchWorkerOptions } from './jobs/index.js';
