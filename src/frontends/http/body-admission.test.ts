/**
 * readBody: a body of announced length is copied into one buffer as its chunks arrive, and every
 * body keeps the limits Fastify's own reader keeps (413 past the limit, 400 when the length differs
 * from Content-Length).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { readBody } from './body-admission.js';

const requestWith = (headers: Record<string, string>) => ({ headers }) as unknown as FastifyRequest;
const chunksOf = (...texts: string[]) => Readable.from(texts.map((text) => Buffer.from(text)), { objectMode: false });

test('a body of announced length arrives whole, in a buffer of exactly that length', async () => {
  const body = await readBody(requestWith({ 'content-length': '11' }), chunksOf('hello', ' ', 'world'), 100);
  assert.equal(body.toString(), 'hello world');
  assert.equal(body.length, 11);
});

test('a body of unannounced length (chunked) or compressed is joined at its end', async () => {
  assert.equal((await readBody(requestWith({ 'transfer-encoding': 'chunked' }), chunksOf('a', 'bc'), 100)).toString(), 'abc');
  // Content-Length counts the compressed bytes: the inflated body (here, what the stream gives) may be longer.
  assert.equal((await readBody(requestWith({ 'content-length': '2', 'content-encoding': 'gzip' }), chunksOf('abc', 'def'), 100)).toString(), 'abcdef');
});

test('a body over the limit is refused with 413, announced or found as it arrives', async () => {
  await assert.rejects(readBody(requestWith({ 'content-length': '101' }), chunksOf('x'), 100), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
  await assert.rejects(readBody(requestWith({ 'transfer-encoding': 'chunked' }), chunksOf('x'.repeat(60), 'y'.repeat(60)), 100), { statusCode: 413 });
});

test('a body longer or shorter than its Content-Length is refused with 400 saying both lengths', async () => {
  await assert.rejects(readBody(requestWith({ 'content-length': '3' }), chunksOf('ab', 'cd'), 100), {
    code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH',
    statusCode: 400,
    message: 'request body is 4 bytes but Content-Length said 3',
  });
  await assert.rejects(readBody(requestWith({ 'content-length': '5' }), chunksOf('ab'), 100), { message: 'request body is 2 bytes but Content-Length said 5' });
});

test('a stream that fails gives its error, as a client error', async () => {
  const failing = new Readable({
    read() {
      this.destroy(new Error('socket hang up'));
    },
  });
  await assert.rejects(readBody(requestWith({ 'content-length': '5' }), failing, 100), { message: 'socket hang up', statusCode: 400 });
});
