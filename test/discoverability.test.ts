/**
 * What a newcomer or a tool finds without reading the docs: `GET /` points the way, `GET /v2/models`
 * lists the models, and gRPC answers the standard health service that probes and load balancers call.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadHealthProto } from '../src/frontends/grpc/grpc-health.js';
import { startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer, type TestServer } from './support/test-server.js';

let served: TestServer;
let endpoint: GrpcEndpoint;
let health: grpc.Client & Record<string, any>;

before(async () => {
  served = await startTestServer({ server: { strictReadiness: false } });
  // Tokens on every RPC: the health service must still answer probes, which carry none.
  endpoint = await startGrpcEndpoint(served.server, { authTokens: ['s3cret'] });
  const address = endpoint.client.getChannel().getTarget().replace(/^dns:/, '');
  const { Client } = loadHealthProto();
  health = new Client(address, grpc.credentials.createInsecure()) as typeof health;
});
after(async () => {
  health?.close();
  await endpoint?.close();
  await served?.close();
});

test('GET / answers the server name and version and links that each answer', async () => {
  const response = await fetch(`${served.url}/`);
  assert.equal(response.status, 200);
  const body = (await response.json()) as { name: string; version: string; links: Record<string, string> };
  assert.equal(body.name, 'nereid');
  assert.match(body.version, /^\d+\.\d+\.\d+/);
  assert.deepEqual(Object.keys(body.links).sort(), ['dashboard', 'docs', 'live', 'metadata', 'models', 'openapi', 'ready']);
  for (const link of Object.values(body.links)) assert.equal((await fetch(`${served.url}${link}`)).status, 200, link);
});

test('GET /v2/models lists every model with its ready versions and state, and why one is unavailable', async () => {
  const response = await fetch(`${served.url}/v2/models`);
  assert.equal(response.status, 200);
  const { models } = (await response.json()) as { models: { name: string; state: string; versions: string[]; reason?: string }[] };
  const byName = new Map(models.map((model) => [model.name, model]));
  assert.deepEqual(models.map((model) => model.name), [...models.map((model) => model.name)].sort(), 'sorted by name');
  assert.deepEqual(byName.get('simple'), { name: 'simple', state: 'READY', versions: ['1'] });
  assert.deepEqual(byName.get('multi_all'), { name: 'multi_all', state: 'READY', versions: ['1', '2'] });
  assert.deepEqual(byName.get('multi_latest')?.versions, ['2']);
  const broken = byName.get('bad_config');
  assert.equal(broken?.state, 'UNAVAILABLE');
  assert.deepEqual(broken?.versions, []);
  assert.match(broken?.reason ?? '', /TYPE_NOPE/);
});

function check(service: string): Promise<{ status: string }> {
  return new Promise((resolve, reject) => health.Check({ service }, (error: grpc.ServiceError | null, answer: { status: string }) => (error ? reject(error) : resolve(answer))));
}

test('grpc.health.v1 Check: SERVING for the server and the inference service, NOT_FOUND for another, no token needed', async () => {
  assert.deepEqual(await check(''), { status: 'SERVING' });
  assert.deepEqual(await check('inference.GRPCInferenceService'), { status: 'SERVING' });
  await assert.rejects(check('no.such.Service'), (error: grpc.ServiceError) => {
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.match(error.details, /unknown service 'no\.such\.Service'/);
    return true;
  });
});

test('grpc.health.v1 Check quotes at most 80 characters of an unknown service name, so a long one cannot stall the channel', async () => {
  await assert.rejects(check('x'.repeat(100_000)), (error: grpc.ServiceError) => {
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.match(error.details, new RegExp(`unknown service '${'x'.repeat(80)}…'`));
    assert.ok(error.details.length < 200, `details of ${error.details.length} characters`);
    return true;
  });
  assert.deepEqual(await check(''), { status: 'SERVING' }, 'the channel still answers');
});

test('grpc.health.v1 Watch: SERVING at once, then NOT_SERVING when the server drains; Check agrees', async () => {
  const call = health.Watch({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
  const statuses: string[] = [];
  const seen = (status: string) =>
    new Promise<void>((resolve, reject) => {
      if (statuses.includes(status)) return resolve();
      call.on('data', () => statuses.includes(status) && resolve());
      call.on('error', reject);
    });
  call.on('data', (message) => statuses.push(message.status));
  await seen('SERVING');
  served.server.drain();
  await seen('NOT_SERVING');
  assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING']);
  assert.deepEqual(await check(''), { status: 'NOT_SERVING' });
  call.cancel();
});
