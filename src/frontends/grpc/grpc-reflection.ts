/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so that grpcurl, Postman and other tools
 * list and call the services without the .proto files. It comes from `@grpc/reflection`, an optional
 * package: without it the server runs as before, with no reflection.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR, PROTO_LOADER_OPTIONS } from './v2-grpc-proto.js';

interface ReflectionPackage {
  ReflectionService: new (definition: protoLoader.PackageDefinition) => { addToServer(server: Pick<grpc.Server, 'addService'>): void };
}

/** @grpc/reflection when it is installed; undefined when it is not. */
export function reflectionPackage(): ReflectionPackage | undefined {
  try {
    return createRequire(import.meta.url)('@grpc/reflection') as ReflectionPackage;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && String((error as Error).message).includes('@grpc/reflection')) return undefined;
    throw error;
  }
}

/** Adds reflection over the inference and health services when @grpc/reflection is installed; says whether it did. */
export function addReflectionService(grpcServer: grpc.Server): boolean {
  const reflection = reflectionPackage();
  if (!reflection) return false;
  const definition = protoLoader.loadSync([join(PROTO_DIR, 'grpc_service.proto'), join(PROTO_DIR, 'health.proto')], PROTO_LOADER_OPTIONS);
  new reflection.ReflectionService(definition).addToServer(grpcServer);
  return true;
}
