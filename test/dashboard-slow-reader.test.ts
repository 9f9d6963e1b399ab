/**
 * A dashboard stream whose client stops reading is let go: its connection is closed and the snapshots queued for it
 * freed, so that a client cannot hold a slot's worth of memory per connection by opening streams it never reads.
 */
import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import Fastify from 'fastify';
import { pino } from 'pino';
import { registerDashboardRoutes } from '../src/frontends/http/dashboard-http.js';
import { startTestServer, writeSimpleModel } from './support/test-server.js';

test('a stream whose client does not read is closed with its connection, its queued bytes freed', async (t) => {
  const served = await startTestServer({ models: writeSimpleModel, server: { logger: pino({ level: 'silent' }) } });
  t.after(() => served.close());
  const warnings: string[] = [];
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => void warnings.push(JSON.parse(line).msg) } } });
  // Snapshots every 2 ms fill the 4 MiB allowance in seconds.
  registerDashboardRoutes(app, served.server, { streamIntervalMs: 2 });
  const serverSockets: Socket[] = [];
  app.server.on('connection', (socket: Socket) => serverSockets.push(socket));
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());
  const client = connect((app.server.address() as AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  await new Promise((resolve) => client.once('connect', resolve));
  client.write('GET /dashboard/api/stream HTTP/1.1\r\nHost: localhost\r\n\r\n');
  client.pause();
  const deadline = Date.now() + 60_000;
  while (!warnings.includes('dashboard stream closed: its client has not read the last snapshots')) {
    assert.ok(Date.now() < deadline, 'the stream was never let go');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(serverSockets.length, 1);
  assert.equal(serverSockets[0].destroyed, true, 'the connection is closed, not left to hold its unread bytes');
  assert.equal(serverSockets[0].writableLength, 0);
});
