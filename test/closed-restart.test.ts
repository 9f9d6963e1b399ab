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
