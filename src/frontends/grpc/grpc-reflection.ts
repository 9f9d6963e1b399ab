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
  new reflection.ReflectionService(withMapEntriesNamedAsProtoc(definition)).addToServer(grpcServer);
  return true;
}

interface DescribedMessage {
  name?: string;
  field?: { name?: string; typeName?: string }[];
  nestedType?: DescribedMessage[];
  options?: { mapEntry?: boolean } | null;
}

interface FileDescriptorCodec {
  decode(bytes: Uint8Array): { messageType?: DescribedMessage[] };
  encode(message: unknown): { finish(): Uint8Array };
}

/**
 * The package's file descriptors with each map field's entry type named as protoc names it (field
 * `priority_queue_policy` → `PriorityQueuePolicyEntry`): protobufjs names it after the field, and
 * descriptor pools that check the name (Python's, grpcurl's) refuse the whole file — "map_entry
 * should not be set explicitly" — so a tool could describe nothing.
 */
export function withMapEntriesNamedAsProtoc(definition: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  const { FileDescriptorProto } = createRequire(import.meta.url)('protobufjs/ext/descriptor') as { FileDescriptorProto: FileDescriptorCodec };
  const renamed = new Map<Buffer, Buffer>();
  const rename = (message: DescribedMessage) => {
    for (const nested of message.nestedType ?? []) {
      rename(nested);
      if (!nested.options?.mapEntry || !nested.name) continue;
      const field = message.field?.find((each) => each.typeName === nested.name || each.typeName?.endsWith(`.${nested.name}`));
      if (!field?.name || !field.typeName) continue;
      const entryName = `${field.name.replace(/(?:^|_)([a-z0-9])/g, (_, letter: string) => letter.toUpperCase())}Entry`;
      field.typeName = field.typeName.slice(0, field.typeName.length - nested.name.length) + entryName;
      nested.name = entryName;
    }
  };
  const fixed = (bytes: Buffer) => {
    let result = renamed.get(bytes);
    if (!result) {
      const file = FileDescriptorProto.decode(bytes);
      for (const message of file.messageType ?? []) rename(message);
      result = Buffer.from(FileDescriptorProto.encode(file).finish());
      renamed.set(bytes, result);
    }
    return result;
  };
  return Object.fromEntries(
    Object.entries(definition).map(([name, entry]) => {
      const described = entry as { fileDescriptorProtos?: Buffer[] };
      return [name, Array.isArray(described.fileDescriptorProtos) ? { ...entry, fileDescriptorProtos: described.fileDescriptorProtos.map(fixed) } : entry];
    }),
  ) as protoLoader.PackageDefinition;
}
