/**
 * A closed server or front end is closed for good: starting it again is refused with what to do instead, rather than
 * loading models into a repository that was shut (nothing could reach them, nothing would release them) or failing
 * inside grpc-js.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { createGrpcFrontEnd, Server } from '../src/index.js';
import { doublerBackend, fakeRepository } from './support/fake-backend.js';

test('start() called twice starts once: the models load once, and both calls resolve to the server', async (t) => {
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n', n: 'max_batch_size: 4\n' });
  const backend = doublerBackend();
  const server = new Server({ modelRepository: repo, backends: [backend], logger: pino({ level: 'silent' }) });
  const [first, second] = await Promise.all([server.start(), server.start()]);
  assert.equal(first, server);
  assert.equal(second, server);
  const created = backend.instances.length;
  assert.equal(created, 2, 'one instance for each of the two models');
  assert.equal(await server.start(), server);
  assert.equal(backend.instances.length, created, 'a third start() created no instance');
  assert.deepEqual((await server.repository.index(true)).map((entry) => `${entry.name} ${entry.version} ${entry.state}`).sort(), ['m 1 READY', 'n 1 READY']);
  await server.close();
});

test('start() after close() is refused, and loads nothing; a closed gRPC front end cannot listen again', async (t) => {
  const repo = await fakeRepository(t, { m: 'max_batch_size: 4\n' });
  const backend = doublerBackend();
  const server = new Server({ modelRepository: repo, backends: [backend], logger: pino({ level: 'silent' }) });
  await server.start();
  const grpc = createGrpcFrontEnd(server);
  await grpc.listen('127.0.0.1', 0);
  await grpc.close();
  await assert.rejects(grpc.listen('127.0.0.1', 0), /^Error: listen\(\) after close\(\): a closed gRPC front end cannot listen again; create a new one with createGrpcFrontEnd$/);
  await server.close();
  const created = backend.instances.length;
  await assert.rejects(server.start(), /^Error: start\(\) after close\(\): a closed Server cannot start again; create a new one \(createServer\)$/);
  assert.equal(backend.instances.length, created, 'no instance was created after close()');
  assert.deepEqual(await server.repository.index(true), [], 'no model is ready after close()');
});
