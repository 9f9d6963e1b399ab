/**
 * A response message as grpc-js reads it (PROTO_LOADER_OPTIONS) turned into the values the same answer has in the V2
 * JSON the HTTP client reads, so that both clients answer a call alike: 64-bit integers as numbers when exact (else
 * decimal strings, never rounded), no unset sub-message (proto-loader's `null`, absent in JSON) and no oneof marker
 * (`policy_choice: 'latest'` beside `latest`). The field types come from the same .proto files the client speaks.
 */
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../frontends/grpc/v2-grpc-proto.js';

const INT64_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

let root: protobuf.Root | undefined;

/** A message type of the service's .proto files, parsed once (a few milliseconds) the first time one is asked for. */
function messageType(name: string): protobuf.Type {
  if (!root) {
    root = new protobuf.Root().loadSync(join(PROTO_DIR, 'grpc_service.proto'), { keepCase: true });
    root.resolveAll();
  }
  return root.lookupType(name);
}

function int64Value(value: unknown): number | string {
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : String(value);
}

function fieldValue(field: protobuf.Field, value: unknown): unknown {
  const element = (item: unknown) =>
    field.resolvedType instanceof protobuf.Type ? plainOf(field.resolvedType, item as Record<string, unknown>) : INT64_TYPES.has(field.type) ? int64Value(item) : item;
  if (field.map) return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([key, item]) => [key, element(item)]));
  if (field.repeated) return (value as unknown[]).map(element);
  return element(value);
}

function plainOf(type: protobuf.Type, message: Record<string, unknown>): Record<string, unknown> {
  const plain: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message)) {
    if (value === null || value === undefined) continue;
    const field = type.fields[key];
    // No field of that name: proto-loader's marker of a oneof's member (oneofs: true), which JSON does not have.
    if (field === undefined) {
      if (!type.oneofs?.[key]) plain[key] = value;
      continue;
    }
    plain[key] = fieldValue(field, value);
  }
  return plain;
}

/** `message`, of the .proto type `typeName` (e.g. 'inference.ModelConfigResponse'), as plain JSON-like values. */
export function plainMessage<T = Record<string, unknown>>(typeName: string, message: unknown): T {
  return plainOf(messageType(typeName), message as Record<string, unknown>) as T;
}
