/**
 * gRPC server reflection, through the optional package @grpc/reflection: a tool that has no .proto
 * lists the services and fetches their definitions. Skipped where the package is not installed.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { reflectionPackage } from '../src/frontends/grpc/grpc-reflection.js';
import { writeSimpleModel, startTestServer, type TestServer } from './support/test-server.js';
import { startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';

const installed = reflectionPackage() !== undefined;
const skip = installed ? false : 'needs the optional package @grpc/reflection, which is not installed';

let served: TestServer;
const endpoints: GrpcEndpoint[] = [];

before(async () => {
  if (installed) served = await startTestServer({ models: writeSimpleModel });
});
after(async () => {
  for (const endpoint of endpoints) await endpoint.close();
  await served?.close();
});

/** A reflection client built from the package's own reflection.proto, as a tool without Nereid's protos would have. */
function reflectionClient(endpoint: GrpcEndpoint): grpc.Client & Record<string, any> {
  const folder = dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json'));
  const definition = protoLoader.loadSync(join(folder, 'build/proto/grpc/reflection/v1/reflection.proto'), { keepCase: true, oneofs: true });
  const root = grpc.loadPackageDefinition(definition) as any;
  const address = endpoint.client.getChannel().getTarget().replace(/^dns:/, '');
  return new root.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
}

/** One request on the bidirectional reflection stream, and its answer. */
function ask(client: grpc.Client & Record<string, any>, request: Record<string, unknown>): Promise<any> {
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo();
    call.on('data', (answer: unknown) => {
      resolve(answer);
      call.end();
    });
    call.on('error', reject);
    call.write({ host: '', ...request });
  });
}

test('reflection lists the inference and health services and describes the inference service', { skip }, async () => {
  const endpoint = await startGrpcEndpoint(served.server);
  endpoints.push(endpoint);
  assert.equal(endpoint.front.reflection, true);
  const client = reflectionClient(endpoint);
  try {
    const listed = await ask(client, { list_services: '' });
    const names = listed.list_services_response.service.map((service: { name: string }) => service.name);
    assert.deepEqual([...names].sort(), ['grpc.health.v1.Health', 'inference.GRPCInferenceService']);
    const described = await ask(client, { file_containing_symbol: 'inference.GRPCInferenceService' });
    const files: Buffer[] = described.file_descriptor_response.file_descriptor_proto;
    assert.ok(files.some((file) => file.includes('ModelInfer')), 'the descriptor holds the ModelInfer RPC');
    // Descriptor pools (Python's, grpcurl's) refuse a file whose map entry is not named as protoc names it.
    const { FileDescriptorProto } = createRequire(import.meta.url)('protobufjs/ext/descriptor');
    type Message = { name: string; field: { name: string; typeName?: string }[]; nestedType: Message[]; options?: { mapEntry?: boolean } };
    const mapFields: string[] = [];
    const check = (message: Message, scope: string) => {
      for (const nested of message.nestedType) {
        check(nested, `${scope}.${nested.name}`);
        if (!nested.options?.mapEntry) continue;
        const field = message.field.find((each) => each.typeName?.split('.').pop() === nested.name);
        assert.ok(field, `${scope}: the map entry ${nested.name} has its field`);
        const camel = field.name.replace(/(?:^|_)([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
        assert.equal(nested.name, `${camel}Entry`, `${scope}.${field.name}'s entry type`);
        mapFields.push(`${scope}.${field.name}`);
      }
    };
    for (const file of files) for (const message of FileDescriptorProto.decode(file).messageType as Message[]) check(message, message.name);
    assert.ok(mapFields.includes('ModelDynamicBatching.priority_queue_policy') && mapFields.includes('ModelInferRequest.parameters'), mapFields.join(', '));
  } finally {
    client.close();
  }
});

test('reflection: false leaves it off (UNIMPLEMENTED)', { skip }, async () => {
  const endpoint = await startGrpcEndpoint(served.server, { reflection: false });
  endpoints.push(endpoint);
  assert.equal(endpoint.front.reflection, false);
  const client = reflectionClient(endpoint);
  try {
    await assert.rejects(ask(client, { list_services: '' }), (error: grpc.ServiceError) => error.code === grpc.status.UNIMPLEMENTED);
  } finally {
    client.close();
  }
});
