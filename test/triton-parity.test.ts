/**
 * Behaviours Triton's clients and QA suite rely on, over real HTTP: raw binary requests
 * (Inference-Header-Content-Length: 0, chunked too), strict request field types and the JSON depth limit.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestServer, type TestServer } from './support/test-server.js';

let served: TestServer;
before(async () => {
  served = await startTestServer();
});
after(() => served.close());

const raw = (model: string, body: BodyInit, extra: RequestInit = {}) =>
  fetch(`${served.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' },
    body,
    ...extra,
  });

/** The answer's first output as raw bytes (a raw request's answer is binary). */
async function firstOutput(response: Response): Promise<{ header: { outputs: { name: string; shape: number[]; datatype: string }[] }; bytes: Buffer }> {
  const body = Buffer.from(await response.arrayBuffer());
  const headerLength = Number(response.headers.get('inference-header-content-length'));
  return { header: JSON.parse(body.subarray(0, headerLength).toString('utf8')), bytes: body.subarray(headerLength) };
}

test('a raw binary request is the one input of a single-input model, typed by its config; the answer is binary', async () => {
  const values = Float32Array.of(1.5, -2, 3.25);
  const response = await raw('identity_fp32', new Uint8Array(values.buffer));
  assert.equal(response.status, 200, await response.clone().text());
  const { header, bytes } = await firstOutput(response);
  assert.deepEqual(header.outputs[0].shape, [1, 3], 'one row of the variable dimension the body fills');
  assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(bytes).buffer)), [1.5, -2, 3.25]);

  const unbatched = await raw('fp32_identity', new Uint8Array(Float32Array.of(7, 8).buffer));
  assert.equal(unbatched.status, 200);
  assert.deepEqual((await firstOutput(unbatched)).header.outputs[0].shape, [2]);

  const text = await raw('identity_bytes', new TextEncoder().encode('hello raw'));
  assert.equal(text.status, 200);
  const answer = await firstOutput(text);
  assert.deepEqual(answer.header.outputs[0].shape, [1, 1]);
  assert.equal(answer.bytes.subarray(4).toString('utf8'), 'hello raw', 'one BYTES element, length-prefixed in the answer');
});

test('a raw binary request arrives chunked (Transfer-Encoding: chunked) as well', async () => {
  const values = Float32Array.from({ length: 1000 }, (_, index) => index);
  const bytes = new Uint8Array(values.buffer);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let offset = 0; offset < bytes.length; offset += 333) controller.enqueue(bytes.slice(offset, offset + 333));
      controller.close();
    },
  });
  const response = await raw('identity_fp32', stream, { duplex: 'half' } as RequestInit);
  assert.equal(response.status, 200, await response.clone().text());
  const { header, bytes: answer } = await firstOutput(response);
  assert.deepEqual(header.outputs[0].shape, [1, 1000]);
  assert.equal(new Float32Array(Uint8Array.from(answer).buffer)[999], 999);
});

test('raw binary requests that cannot be read say why: several inputs, a size that is not whole elements', async () => {
  const several = await raw('simple', new Uint8Array(64));
  assert.equal(several.status, 400);
  assert.match(((await several.json()) as { error: string }).error, /one input; 'simple' has 2 \(INPUT0, INPUT1\)/);
  const ragged = await raw('identity_fp32', new Uint8Array(6));
  assert.equal(ragged.status, 400);
  assert.match(((await ragged.json()) as { error: string }).error, /needs a multiple of 4 bytes; the body has 6/);
});

test("the repository index takes 'ready' as a boolean only, and JSON nested deeper than 100 levels is refused", async () => {
  const index = (body: string) => fetch(`${served.url}/v2/repository/index`, { method: 'POST', body });
  const wrong = await index('{"ready": "no"}');
  assert.equal(wrong.status, 400);
  assert.match(((await wrong.json()) as { error: string }).error, /'ready' must be true or false, got "no"/);
  assert.equal((await index('{"ready": true}')).status, 200);
  const deep = await fetch(`${served.url}/v2/models/simple/infer`, { method: 'POST', body: `${'['.repeat(101)}${']'.repeat(101)}` });
  assert.equal(deep.status, 400);
  assert.match(((await deep.json()) as { error: string }).error, /nests deeper than 100 levels/);
  // Brackets inside strings do not count.
  const quoted = await index(JSON.stringify({ ready: false, note: '['.repeat(500) }));
  assert.equal(quoted.status, 200);
});
