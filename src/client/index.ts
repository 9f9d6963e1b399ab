/** Nereid's client library (`nereid-serve/client`): V2 over HTTP and gRPC, for Nereid and Triton alike. */
export { type ClientTensor, type OutputTensor } from './client-tensors.js';
export { GrpcCallError, GrpcClient, type GrpcClientOptions } from './grpc-client.js';
export { ClientError, ConnectionError, HttpClient, type HttpClientOptions, type InferOptions, type InferResult } from './http-client.js';
export { type RetryOptions } from '../core/retry.js';
