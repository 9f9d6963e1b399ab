/**
 * What HttpClient's image calls put on the wire, read by a loopback HTTP server that records each request: the
 * Content-Type an image goes with, since the server tells the format by the bytes and the header is what proxies see.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HttpClient } from './http-client.js';

test('classify and detect send an image as application/octet-stream unless contentType names its type', async (t) => {
  const received: { url: string; contentType: string | undefined }[] = [];
  const recorder = createServer((request, response) => {
    received.push({ url: request.url ?? '', contentType: request.headers['content-type'] });
    request.resume().on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
  const client = new HttpClient({ url: `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`, retry: { tries: 1 } });
  t.after(() => {
    client.close();
    recorder.close();
  });
  // A JPEG's first bytes: a fixed image/png would call it a PNG.
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0]);
  await client.classify('m', jpeg);
  await client.detect('m', jpeg);
  await client.classify('m', jpeg, { contentType: 'image/jpeg' });
  await client.detect('m', jpeg, { contentType: 'image/jpeg' });
  assert.deepEqual(received, [
    { url: '/v2/models/m/classify', contentType: 'application/octet-stream' },
    { url: '/v2/models/m/detect', contentType: 'application/octet-stream' },
    { url: '/v2/models/m/classify', contentType: 'image/jpeg' },
    { url: '/v2/models/m/detect', contentType: 'image/jpeg' },
  ]);
});
