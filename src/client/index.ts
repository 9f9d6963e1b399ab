/** Nereid's client library (`nereid-serve/client`): V2 over HTTP and gRPC, for Nereid and Triton alike. */
export { type ClientInput, type ClientTensor, type OutputTensor, type SharedMemoryInput, type SharedMemoryTensor } from './client-tensors.js';
export { createSharedMemoryObject, readSharedMemoryTensor, removeSharedMemoryObject, writeSharedMemoryTensors } from './shared-memory.js';
export { GrpcAbortError, GrpcCallError, GrpcClient, GrpcTimeoutError, type GrpcClientOptions, type StreamRequest } from './grpc-client.js';
export { ClientError, ConnectionError, HttpAbortError, HttpClient, HttpTimeoutError, type ClassifyAnswer, type Compression, type DetectAnswer, type HttpClientOptions, type InferOptions, type InferResult, type ModelMetadataAnswer, type RepositoryIndexRow, type SharedMemoryRegionStatus } from './http-client.js';
export { DATATYPES, type Datatype } from '../core/datatype.js';
export { NereidError, type ErrorCode } from '../core/errors.js';
export { OptionError } from '../core/options.js';
export { type RetryOptions } from '../core/retry.js';
export { type ClientTlsOptions } from '../core/tls.js';
