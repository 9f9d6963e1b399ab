/**
 * A client refused before its body is read hears the refusal instead of a reset: one that asks
 * first (`Expect: 100-continue`, as curl does for bodies over 1 MiB) is told to send its body only
 * once its headers passed every check, and one that sends a body the server refuses as it arrives
 * has it read on and thrown away after the answer, so the answer is not lost to a reset.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer, type TestServer } from './support/test-server.js';

const LIMIT = 1 << 20;
const TOKEN = 'expect-continue-token';
const MAX_INFLATIONS = 2;
let server: TestServer;
let port: number;

before(async () => {
  server = await startTestServer({
    models: (repo) => writeModel(repo, 'simple', 1, addSubModel()),
    http: { maxBodyBytes: LIMIT, maxConcurrentInflations: MAX_INFLATIONS, authTokens: [TOKEN] },
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

test('a body over the limit sent without asking is read on after the refusal, not reset: the client reads the 413 and the server closes cleanly', async () => {
  const connection = new RawConnection();
  try {
    const body = Buffer.alloc(8 * LIMIT, 0x20);
    connection.write(headers(body.length));
    connection.write(body);
    await connection.until(() => connection.ended);
    assert.deepEqual(connection.statuses(), [413]);
    assert.match(connection.received, /larger than the limit of 1048576 bytes/);
    assert.match(connection.received, /connection: close/i);
    assert.equal(connection.error, undefined, 'no reset');
  } finally {
    connection.close();
  }
});

/** A gzip member whose header carries a comment of `commentBytes`: many compressed bytes that inflate to nothing. */
function gzipWithComment(commentBytes: number, data: Buffer): Buffer {
  const gzipped = gzipSync(data);
  const header = Buffer.from(gzipped.subarray(0, 10));
  header[3] = 0x10; // FCOMMENT
  return Buffer.concat([header, Buffer.alloc(commentBytes, 0x61), Buffer.from([0]), gzipped.subarray(10)]);
}

test('a compressed body refused for its compressed size gives back its inflation slot: compressed requests are still served after more of them than slots', async () => {
  // The first member's comment passes the limit before anything inflates; the second member keeps the decoder busy.
  const body = Buffer.concat([gzipWithComment(LIMIT + 1000, Buffer.from('x'.repeat(100))), gzipWithComment(LIMIT, Buffer.from('y'))]);
  for (let attempt = 0; attempt < MAX_INFLATIONS + 1; attempt++) {
    const connection = new RawConnection();
    try {
      connection.write(headers(body.length, { 'content-encoding': 'gzip' }));
      for (let offset = 0; offset < body.length; offset += 16_384) {
        connection.write(body.subarray(offset, offset + 16_384));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await connection.until(() => connection.received.includes('}'));
      assert.deepEqual(connection.statuses(), [413], connection.received);
    } finally {
      connection.close();
    }
  }
  const compressed = gzipSync(INFER);
  const connection = new RawConnection();
  try {
    connection.write(headers(compressed.length, { 'content-encoding': 'gzip' }));
    connection.write(compressed);
    await connection.until(() => connection.received.includes('}'));
    assert.deepEqual(connection.statuses(), [200], connection.received);
  } finally {
    connection.close();
  }
});

test('an encoding the server cannot inflate is refused before the body is asked for', async () => {
  const connection = new RawConnection();
  try {
    connection.write(headers(100, { expect: '100-continue', 'content-encoding': 'br' }));
    await connection.until(() => connection.ended);
    assert.deepEqual(connection.statuses(), [400], connection.received);
    assert.match(connection.received, /unsupported Content-Encoding 'br'/);
  } finally {
    connection.close();
  }
});
