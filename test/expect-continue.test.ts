/**
 * A client refused before its body is read hears the refusal instead of a reset: one that asks
 * first (`Expect: 100-continue`, as curl does for bodies over 1 MiB) is told to send its body only
 * once its headers passed every check, and one that sends a body the server refuses as it arrives
 * has it read and thrown away, so the answer is not lost to a reset and the connection stays usable.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer, type TestServer } from './support/test-server.js';

const LIMIT = 1 << 20;
const TOKEN = 'expect-continue-token';
let server: TestServer;
let port: number;

before(async () => {
  server = await startTestServer({
    models: (repo) => writeModel(repo, 'simple', 1, addSubModel()),
    http: { maxBodyBytes: LIMIT, authTokens: [TOKEN] },
  });
  port = Number(new URL(server.url).port);
});

after(() => server.close());

const INFER = JSON.stringify({
  inputs: [
    { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
    { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(2) },
  ],
});

/** A raw connection that collects what the server sends, and whether it ended the connection or reset it. */
class RawConnection {
  received = '';
  ended = false;
  error?: Error;
  private readonly socket: Socket;
  private readonly waiters: (() => void)[] = [];

  constructor() {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => this.changed(() => (this.received += chunk)));
    this.socket.on('end', () => this.changed(() => (this.ended = true)));
    this.socket.on('error', (error) => this.changed(() => (this.error = error)));
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Resolves once `done` holds (or rejects after 10 s with what arrived). */
  async until(done: () => boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out; received: ${JSON.stringify(this.received.slice(0, 400))}, ended ${this.ended}, error ${this.error?.message}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  /** The status codes of the answers received so far, interim ones included. */
  statuses(): number[] {
    return [...this.received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => Number(match[1]));
  }

  close(): void {
    this.socket.destroy();
  }

  private changed(apply: () => void): void {
    apply();
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

function headers(length: number, extra: Record<string, string> = {}): string {
  const lines = Object.entries({ host: '127.0.0.1', 'content-type': 'application/json', 'content-length': String(length), authorization: `Bearer ${TOKEN}`, ...extra });
  return `POST /v2/models/simple/infer HTTP/1.1\r\n${lines.map(([name, value]) => `${name}: ${value}`).join('\r\n')}\r\n\r\n`;
}

test('a client that asks first is told to send its body once its headers passed, and answered', async () => {
  const connection = new RawConnection();
  try {
    connection.write(headers(Buffer.byteLength(INFER), { expect: '100-continue' }));
    await connection.until(() => connection.statuses().length >= 1);
    assert.deepEqual(connection.statuses(), [100]);
    connection.write(INFER);
    await connection.until(() => connection.statuses().length >= 2 && connection.received.includes('"outputs"'));
    assert.deepEqual(connection.statuses(), [100, 200]);
  } finally {
    connection.close();
  }
});

test('a body announced over the limit, or headers without a valid token, are refused without asking for the body', async () => {
  for (const [extra, length, status] of [
    [{}, LIMIT + 1, 413],
    [{ authorization: 'Bearer wrong' }, Buffer.byteLength(INFER), 401],
  ] as const) {
    const connection = new RawConnection();
    try {
      connection.write(headers(length, { expect: '100-continue', ...extra }));
      // The client never sends the body it was not asked for: the server answers and closes.
      await connection.until(() => connection.ended);
      assert.deepEqual(connection.statuses(), [status], connection.received);
      assert.match(connection.received, /connection: close/i);
      assert.equal(connection.error, undefined);
    } finally {
      connection.close();
    }
  }
});

test('a body over the limit sent without asking is read to its end and thrown away: the refusal arrives and the connection serves the next request', async () => {
  const connection = new RawConnection();
  try {
    const body = Buffer.alloc(8 * LIMIT, 0x20);
    connection.write(headers(body.length));
    connection.write(body);
    await connection.until(() => connection.statuses().length >= 1 && connection.received.includes('}'));
    assert.deepEqual(connection.statuses(), [413]);
    assert.match(connection.received, /larger than the limit of 1048576 bytes/);
    assert.doesNotMatch(connection.received, /connection: close/i);
    connection.write(headers(Buffer.byteLength(INFER)) + INFER);
    await connection.until(() => connection.statuses().length >= 2 && connection.received.includes('"outputs"'));
    assert.deepEqual(connection.statuses(), [413, 200]);
    assert.equal(connection.error, undefined);
  } finally {
    connection.close();
  }
});
