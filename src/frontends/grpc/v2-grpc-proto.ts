/**
 * Loads the KServe V2 / Triton gRPC definitions (`proto/grpc_service.proto`, `proto/model_config.proto`).
 * The .proto files live in the package's top-level `proto/` folder, which ships beside `dist/`, so
 * the same relative path works from `src/frontends/grpc` (tsx) and `dist/frontends/grpc` (compiled).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));

/**
 * How messages look in JS, for the server and for clients that want the same shapes:
 * - keepCase: field names as in the .proto (`raw_input_contents`), as Triton's JSON uses them;
 * - longs: String: int64/uint64 values (shapes, int64_contents, uint64_contents, statistics) arrive as
 *   decimal strings, exact over the whole 64-bit range; outgoing values may be numbers or strings;
 * - enums: String (`TYPE_FP32`), defaults: true (absent scalars read as 0/''/false, messages as null),
 *   oneofs: true (a oneof's name tells which member is set, e.g. `parameter_choice: 'int64_param'`);
 * - bytes stay Buffers (views of the received message, not copies).
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export const SERVICE_NAME = 'inference.GRPCInferenceService';

export interface InferenceProto {
  /** The service definition to add to a grpc-js server. */
  service: grpc.ServiceDefinition;
  /** A grpc-js client class for the service (`new Client('127.0.0.1:8001', grpc.credentials.createInsecure())`). */
  Client: grpc.ServiceClientConstructor;
}

/** Loads the service definition from the .proto files (synchronously; a few milliseconds). */
export function loadInferenceProto(): InferenceProto {
  const definition = protoLoader.loadSync(join(PROTO_DIR, 'grpc_service.proto'), PROTO_LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(definition) as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
  const Client = root.inference.GRPCInferenceService;
  return { service: Client.service, Client };
}
