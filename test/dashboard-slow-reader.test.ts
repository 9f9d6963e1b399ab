/**
 * The dashboard stream under strain: a client that stops reading is let go (its connection closed and the snapshots
 * queued for it freed, so that a client cannot hold a slot's worth of memory per connection by opening streams it never
 * reads), and snapshots slower to read than the interval are read one at a time and sent in order.
 */
import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import Fastify from 'fastify';
import { pino } from 'pino';
import { registerDashboardRoutes } from '../src/frontends/http/dashboard-http.js';
import { openDashboardStream } from './support/dashboard-stream.js';
import { startTestServer, writeSimpleModel, type TestServer } from './support/test-server.js';

let served: TestServer;
before(async () => {
  served = await startTestServer({ models: writeSimpleModel, server: { logger: pino({ level: 'silent' }) } });
});
after(() => served?.close());

test('a stream whose client does not read is closed with its connection, its queued bytes freed', async (t) => {
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

test('snapshots slower to read than the interval are read one at a time, and each event is later than the one before', async (t) => {
  // The server's repository index, read with each snapshot, made to take 30 ms: fifteen 2-ms ticks come during one read.
  const server = served.server;
  const readIndex = server.repositoryIndex;
  let reading = 0;
  let mostAtOnce = 0;
  server.repositoryIndex = async (...args) => {
    reading += 1;
    mostAtOnce = Math.max(mostAtOnce, reading);
    try {
      await delay(30);
      return await readIndex.apply(server, args);
    } finally {
      reading -= 1;
    }
  };
  t.after(() => {
    server.repositoryIndex = readIndex;
  });
  const app = Fastify();
  registerDashboardRoutes(app, server, { streamIntervalMs: 2 });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const stream = await openDashboardStream(`${url}/dashboard/api/stream`);
  // The stream first, so that the close does not wait for its connection.
  t.after(async () => {
    stream.close();
    await app.close();
  });
  const events = [await stream.next()];
  // The stream's own first snapshot, read as it opened, may overlap a tick's: from then on, one read at a time.
  mostAtOnce = reading;
  while (events.length < 6) events.push(await stream.next());
  assert.ok(mostAtOnce <= 1, `${mostAtOnce} snapshots were read at once`);
  for (const [index, event] of events.entries()) {
    if (index === 0) continue;
    assert.ok(event.snapshot.at >= events[index - 1]!.snapshot.at, `event ${index} was read before the one sent ahead of it`);
    assert.ok(event.interval!.seconds > 0);
  }
});
