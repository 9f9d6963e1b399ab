/**
 * The direct inference path (src/frontends/http/direct-inference.ts) answers the common /infer request from Node's
 * request listener, without Fastify. Each request here is sent twice over real HTTP: as a client sends it (taken by the
 * direct path) and with a same-origin `Origin` header, which passes the cross-site check unchanged but sends the
 * request through Fastify's route and hooks. Both answers must be the same status, headers and bytes; the front end's
 * count of direct answers shows which way each one went.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { overloaded } from '../src/core/errors.js';
import { directlyAnswered } from '../src/frontends/http/v2-http.js';
import { inferPathOf } from '../src/frontends/http/direct-inference.js';
import { binaryBody, startTestServer, writeSimpleModel, type TestServer } from './support/test-server.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function send(base: TestServer, path: string, body: Buffer | string, headers: Record<string, string | number> = {}, method = 'POST'): Promise<Answer> {
  const url = new URL(base.url);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: url.hostname, port: url.port, path, method, headers: { 'content-length': Buffer.byteLength(body), ...headers }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** The headers two answers to the same request must share: all but the date. */
function comparable(headers: Answer['headers']): Answer['headers'] {
  const { date: _date, ...rest } = headers;
  return rest;
}

/** Sends the request both ways; asserts the direct path took exactly the first and both answers are the same. */
async function bothWays(base: TestServer, path: string, body: Buffer | string, headers: Record<string, string | number> = {}): Promise<Answer> {
  const fixed = { 'x-request-id': 'same-id-both-ways', ...headers };
  const before = directlyAnswered(base.app);
  const direct = await send(base, path, body, fixed);
  assert.equal(directlyAnswered(base.app), before + 1, `${path} as a client sends it is answered directly`);
  const throughFastify = await send(base, path, body, { ...fixed, origin: base.url });
  assert.equal(directlyAnswered(base.app), before + 1, `${path} with an Origin goes through Fastify`);
  assert.equal(direct.status, throughFastify.status, `status of ${path}: ${direct.body.toString().slice(0, 200)}`);
  assert.deepEqual(comparable(direct.headers), comparable(throughFastify.headers), `headers of ${path}`);
  assert.ok(direct.body.equals(throughFastify.body), `body of ${path}: ${direct.body.toString().slice(0, 200)} against ${throughFastify.body.toString().slice(0, 200)}`);
  return direct;
}

/** Waits for `done` to hold, two seconds at most: what a server does after a client hangs up has no answer to wait for. */
async function until(done: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!(await done())) {
    if (Date.now() > deadline) assert.fail(`${what}, within 2 s`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A connection that writes `requests` as they are (pipelined, or cut short) and whose answers nobody reads. */
function rawConnection(base: TestServer, requests: string): net.Socket {
  const url = new URL(base.url);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.on('error', () => undefined);
  socket.write(requests);
  return socket;
}

const SIMPLE_REQUEST = {
  inputs: [
    { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array.from({ length: 16 }, (_, index) => index) },
    { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array.from({ length: 16 }, () => 1) },
  ],
};

describe('the direct inference path answers as the Fastify route does', () => {
  let base: TestServer;
  before(async () => {
    base = await startTestServer({ server: { strictReadiness: false }, http: { maxBodyBytes: 64 * 1024 } });
  });
  after(async () => {
    await base?.close();
  });

  test('a JSON request, by model and by version, with the id and outputs it names', async () => {
    const answer = await bothWays(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { 'content-type': 'application/json' });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['x-request-id'], 'same-id-both-ways');
    assert.equal(answer.headers['x-frame-options'], 'DENY');
    assert.deepEqual(JSON.parse(answer.body.toString()).outputs[0].data, Array.from({ length: 16 }, (_, index) => index + 1));
    const named = { id: 'r-7', ...SIMPLE_REQUEST, outputs: [{ name: 'OUTPUT1' }] };
    const byVersion = await bothWays(base, '/v2/models/simple/versions/1/infer', JSON.stringify(named), { 'content-type': 'Application/JSON ; charset=utf-8' });
    assert.deepEqual(
      JSON.parse(byVersion.body.toString()).outputs.map((output: { name: string }) => output.name),
      ['OUTPUT1'],
    );
  });

  test('binary tensors in and out, and a raw binary body (Inference-Header-Content-Length: 0)', async () => {
    const rows = new Int32Array(16).map((_, index) => index * 3);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        ],
        outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }, { name: 'OUTPUT1' }],
      },
      [new Uint8Array(rows.buffer), new Uint8Array(rows.buffer)],
    );
    const answer = await bothWays(base, '/v2/models/simple/infer', body, { 'inference-header-content-length': headerLength, 'content-type': 'application/octet-stream' });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['content-type'], 'application/octet-stream');
    const raw = await bothWays(base, '/v2/models/identity_fp32/infer', Buffer.from(new Float32Array([1.5, -2]).buffer), { 'inference-header-content-length': 0 });
    assert.equal(raw.status, 200, raw.body.toString());
  });

  test('an answer compressed as the client asks', async () => {
    const data = Array.from({ length: 600 }, (_, index) => index / 7);
    const answer = await bothWays(base, '/v2/models/fp32_identity/infer', JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [600], data }] }), { 'accept-encoding': 'gzip' });
    assert.equal(answer.status, 200, answer.body.toString());
    assert.equal(answer.headers['content-encoding'], 'gzip');
  });

  test('refusals: unknown model, missing input, malformed JSON, a form, an image to a tensor model, a model that failed to load', async () => {
    const refusals: [string, string, Record<string, string>, number][] = [
      ['/v2/models/nope/infer', JSON.stringify(SIMPLE_REQUEST), {}, 404],
      ['/v2/models/simple/versions/9/infer', JSON.stringify(SIMPLE_REQUEST), {}, 404],
      ['/v2/models/simple/infer', JSON.stringify({ inputs: [] }), {}, 400],
      ['/v2/models/simple/infer', '{"inputs": [', {}, 400],
      ['/v2/models/simple/infer', 'GIF89a....', {}, 400],
      ['/v2/models/simple/infer', 'GIF89a....', { 'content-type': 'image/gif' }, 400],
      ['/v2/models/broken/infer', JSON.stringify(SIMPLE_REQUEST), {}, 400],
    ];
    for (const [path, body, headers, status] of refusals) {
      const answer = await bothWays(base, path, body, headers);
      assert.equal(answer.status >= 400 && answer.status < 500, true, `${path}: ${answer.status} ${answer.body.toString()}`);
      if (status !== 400) assert.equal(answer.status, status, `${path}: ${answer.body.toString()}`);
      assert.deepEqual(Object.keys(JSON.parse(answer.body.toString())), ['error']);
    }
  });

  test('a Content-Type quoted in a refusal is cut to 80 characters, as every client value is', async () => {
    const answer = await bothWays(base, '/v2/models/simple/infer', 'GIF89a....', { 'content-type': `text/${'x'.repeat(2000)}` });
    assert.equal(answer.status, 400);
    assert.match(JSON.parse(answer.body.toString()).error, /^the body is not V2 JSON \(Content-Type 'text\/x{75}…', first byte 0x47\)/);
  });

  test('an overloaded model: 503 with Retry-After, the same both ways', async () => {
    const admit = base.server.admit.bind(base.server);
    base.server.admit = () => {
      throw overloaded(`the queue of 'simple' is full`, 1500);
    };
    try {
      const refused = await bothWays(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST));
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '2');
    } finally {
      base.server.admit = admit;
    }
  });

  test('requests of other shapes go on to Fastify and are answered there', async () => {
    const before = directlyAnswered(base.app);
    const compressed = await send(base, '/v2/models/simple/infer', gzipSync(JSON.stringify(SIMPLE_REQUEST)), { 'content-encoding': 'gzip' });
    assert.equal(compressed.status, 200, compressed.body.toString());
    const escaped = await send(base, '/v2/models/simp%6ce/infer', JSON.stringify(SIMPLE_REQUEST));
    assert.equal(escaped.status, 200, escaped.body.toString());
    const withQuery = await send(base, '/v2/models/simple/infer?outputs=OUTPUT0', JSON.stringify(SIMPLE_REQUEST));
    assert.equal(withQuery.status, 400, 'a JSON request names its outputs in the body');
    const browser = await send(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { 'sec-fetch-site': 'cross-site' });
    assert.equal(browser.status, 403);
    const tooLong = await send(base, '/v2/models/simple/infer', Buffer.alloc(65 * 1024, 0x20));
    assert.equal(tooLong.status, 413);
    // A Content-Type that is no media type is Fastify's 415, which the direct path must not answer 200.
    for (const contentType of ['', 'json', 'application/json garbage', 'undefined']) {
      const unreadable = await send(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { 'content-type': contentType });
      assert.equal(unreadable.status, 415, `Content-Type '${contentType}': ${unreadable.body.toString()}`);
      assert.match(JSON.parse(unreadable.body.toString()).error, /^the Content-Type ".*" is not a media type: send type\/subtype/);
    }
    const get = await send(base, '/v2/models/simple/infer', '', {}, 'GET');
    assert.equal(get.status, 405);
    assert.equal(directlyAnswered(base.app), before, 'none of these was taken directly');
  });

  test("a client that hangs up frees its bodies' bytes: requests pipelined behind an unanswered one, one whose admission waits", async () => {
    const { server } = base;
    const body = JSON.stringify(SIMPLE_REQUEST);
    const host = new URL(base.url).host;
    const infer = server.infer.bind(server);
    const admit = server.admit.bind(server);
    try {
      for (const origin of ['', `Origin: ${base.url}\r\n`]) {
        const way = origin ? 'through Fastify' : 'directly';
        const request = `POST /v2/models/simple/infer HTTP/1.1\r\nHost: ${host}\r\n${origin}Content-Length: ${body.length}\r\n\r\n${body}`;
        const taken = directlyAnswered(base.app);
        // Node gives a pipelined request's answer no socket until its turn, and closed none of them with the connection.
        let runInference!: () => void;
        const inferenceHeld = new Promise<void>((resolve) => (runInference = resolve));
        server.infer = (...args) => inferenceHeld.then(() => infer(...args));
        const pipelined = rawConnection(base, request.repeat(3));
        await until(() => server.bodies.inUse === 3 * body.length, `${way}: the three bodies reserved`);
        pipelined.destroy();
        await until(() => server.bodies.inUse === 0, `${way}: the three bodies released once the client hung up`);
        runInference();
        server.infer = infer;
        // An admission that waits (an on-demand model loading) and ends after the client left.
        let admitNow!: () => void;
        const admissionHeld = new Promise<void>((resolve) => (admitNow = resolve));
        let asked = 0;
        server.admit = (...args) => ((asked += 1), admissionHeld.then(() => admit(...args)));
        const waiting = rawConnection(base, request);
        await until(() => asked === 1, `${way}: admission asked`);
        waiting.destroy();
        await until(() => new Promise((resolve) => base.app.server.getConnections((_error, open) => resolve(open === 0))), `${way}: the connection closed`);
        admitNow();
        await until(() => server.bodies.inUse === 0, `${way}: the body admitted after its client left released`);
        server.admit = admit;
        assert.equal(directlyAnswered(base.app), taken + (origin ? 0 : 4), `${way}: which path took them`);
      }
    } finally {
      server.infer = infer;
      server.admit = admit;
    }
  });
});

test('with tokens, the direct path asks for the inference scope as the Fastify hook does', async (t) => {
  const base = await startTestServer({ http: { authTokens: { inference: ['infer-token'], management: ['admin-token'] } } });
  t.after(() => base.close());
  const missing = await bothWays(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST));
  assert.equal(missing.status, 401);
  assert.equal(missing.headers['www-authenticate'], 'Bearer');
  const wrong = await bothWays(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { authorization: 'Bearer nope' });
  assert.equal(wrong.status, 401);
  const right = await bothWays(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { authorization: 'Bearer infer-token' });
  assert.equal(right.status, 200);
  // The scheme in any case (RFC 7235); a token of another scope is 403 naming the scope it lacks, with insufficient_scope.
  for (const scheme of ['bearer', 'BEARER']) {
    const cased = await bothWays(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { authorization: `${scheme} infer-token` });
    assert.equal(cased.status, 200, `${scheme}: ${cased.body.toString()}`);
  }
  const otherScope = await bothWays(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { authorization: 'Bearer admin-token' });
  assert.equal(otherScope.status, 403);
  assert.equal(otherScope.headers['www-authenticate'], 'Bearer error="insufficient_scope"');
  assert.match(JSON.parse(otherScope.body.toString()).error, /^this token opens the management scope, not the inference scope this needs/);
});

test('with the access log on, a request answered directly leaves the line that Fastify\'s hook writes', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const base = await startTestServer({ models: writeSimpleModel, server: { logger }, http: { accessLog: true } });
  t.after(() => base.close());
  const accessLines = () => lines.filter((line) => line.msg === 'request completed');
  /** A line as both paths must write it: all but its time and duration. */
  const comparable = ({ time: _time, ms, ...rest }: Record<string, unknown>): Record<string, unknown> => ({ ...rest, ms: typeof ms });
  for (const [body, status] of [
    [JSON.stringify(SIMPLE_REQUEST), 200],
    [JSON.stringify({ inputs: [] }), 400],
  ] as const) {
    const answer = await bothWays(base, '/v2/models/simple/versions/1/infer', body);
    assert.equal(answer.status, status);
    // The line is written once the answer is sent; the client may read it first.
    while (accessLines().length < 2) await new Promise((resolve) => setImmediate(resolve));
    const [direct, throughFastify] = accessLines().splice(-2).map(comparable);
    lines.length = 0;
    assert.deepEqual(direct, throughFastify);
    assert.equal(direct!.status, status);
    assert.equal(direct!.level, status === 200 ? 30 : 40, 'a failure is logged at warn');
    assert.equal(direct!.reqId, 'same-id-both-ways');
    assert.equal(direct!.model, 'simple');
    assert.equal(direct!.version, '1');
    if (status === 400) assert.equal(direct!.code, 'INVALID_ARGUMENT');
    assert.ok(Number(direct!.bytesOut) > 0, 'bytesOut is read from the answer sent');
  }
});

test('an internal failure answered directly is logged once at error with its cause', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const base = await startTestServer({ models: writeSimpleModel, server: { logger } });
  t.after(() => base.close());
  const original = base.server.infer.bind(base.server);
  base.server.infer = () => Promise.reject(new TypeError('the engine lost its way'));
  t.after(() => (base.server.infer = original));
  const answer = await send(base, '/v2/models/simple/infer', JSON.stringify(SIMPLE_REQUEST), { 'x-request-id': 'broken-1' });
  assert.equal(answer.status, 500);
  assert.equal(directlyAnswered(base.app), 1);
  const errors = lines.filter((line) => line.level === 50);
  assert.equal(errors.length, 1, JSON.stringify(lines));
  assert.equal(errors[0]!.reqId, 'broken-1');
  assert.match(JSON.stringify(errors[0]!.err), /the engine lost its way/);
});

test("a request that arrives as the front end closes is Fastify's 503 with Connection: close, not answered directly", async (t) => {
  const base = await startTestServer({ models: writeSimpleModel });
  t.after(() => base.close());
  const infer = base.server.infer.bind(base.server);
  let runInference!: () => void;
  const inferenceHeld = new Promise<void>((resolve) => (runInference = resolve));
  base.server.infer = (...args) => inferenceHeld.then(() => infer(...args));
  const body = JSON.stringify(SIMPLE_REQUEST);
  const request = `POST /v2/models/simple/infer HTTP/1.1\r\nHost: ${new URL(base.url).host}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  // A busy keep-alive connection outlives app.close()'s closing of idle ones; the request sent on it next is the one that arrives as it closes.
  const connection = rawConnection(base, request);
  let answers = '';
  connection.on('data', (chunk: Buffer) => (answers += chunk.toString()));
  await until(() => directlyAnswered(base.app) === 1, 'the first request taken directly');
  const closed = base.app.close();
  await until(() => !base.app.server.listening, 'the front end closing');
  connection.write(request);
  runInference();
  await until(() => answers.split('HTTP/1.1 ').length === 3, 'both requests answered');
  connection.destroy();
  await closed;
  const [, first, second] = answers.split('HTTP/1.1 ');
  assert.match(first!, /^200 /);
  assert.match(second!, /^503 /, second);
  assert.match(second!, /\r\nconnection: close\r\n/i, second);
  assert.equal(directlyAnswered(base.app), 1);
});

test('inferPathOf reads the two /infer paths and nothing else', () => {
  assert.deepEqual(inferPathOf('/v2/models/simple/infer', 1024), { model: 'simple', version: undefined });
  assert.deepEqual(inferPathOf('/v2/models/simple/versions/2/infer', 1024), { model: 'simple', version: '2' });
  assert.deepEqual(inferPathOf('/v2/models/versions/infer', 1024), { model: 'versions', version: undefined });
  for (const path of ['/v2/models//infer', '/v2/models/infer', '/v2/models/a/b/infer', '/v2/models/a/versions//infer', '/v2/models/a%20b/infer', '/v2/models/a/infer?x=1', '/v2/models/a/infer/', `/v2/models/${'m'.repeat(1025)}/infer`]) {
    assert.equal(inferPathOf(path, 1024), undefined, path);
  }
});
