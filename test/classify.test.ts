/**
 * Photos in, labels out, end to end: a real server on a loopback port, real HTTP, a real ONNX model
 * (the small CNN) behind declarative image pre-processing, configured by config.yaml and by
 * config.pbtxt parameters; and the `nereid classify` CLI as a child process.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { HttpClient } from '../src/client/index.js';
import { identityModel, mulberry32, smallCnnModel, writeModel } from '../src/onnx/test-models.js';
import { binaryBody, lengthPrefixed, readInferResponse, startTestServer, type TestServer } from './support/test-server.js';
import { NEREID_COMMAND, serveChild, stopChild } from './support/cli-server.js';
import { RawConnection } from './support/raw-http.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LABELS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
const MAX_BATCH = 4;

/** The same pre/post-processing, once as YAML and once as the JSON a config.pbtxt parameter carries. */
const PREPROCESS = { color: 'grayscale', resize: 'stretch', interpolation: 'linear' };
const POSTPROCESS = { top_k: 3, low_confidence_threshold: 0.2 };

const YAML_CONFIG = `
name: cnn_yaml
max_batch_size: ${MAX_BATCH}
input:
  - name: image
    data_type: TYPE_FP32
    dims: [1, 28, 28]
    preprocess:
      image: {color: grayscale, resize: stretch, interpolation: linear}
output:
  - name: probs
    data_type: TYPE_FP32
    dims: [10]
    label_filename: labels.txt
    postprocess:
      top_k: 3
      low_confidence_threshold: 0.2
`;

const pbtxtString = (value: unknown) => JSON.stringify(JSON.stringify(value)); // a pbtxt string literal holding JSON
const PBTXT_CONFIG = `
name: "cnn_pbtxt"
platform: "onnxruntime_onnx"
max_batch_size: ${MAX_BATCH}
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]
output [ { name: "probs" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
parameters { key: "preprocess.image" value { string_value: ${pbtxtString({ image: PREPROCESS })} } }
parameters { key: "postprocess.probs" value { string_value: ${pbtxtString(POSTPROCESS)} } }
`;

async function writeClassifierModels(repoDir: string): Promise<void> {
  const labels = { 'labels.txt': `${LABELS.join('\n')}\n` };
  await writeModel(repoDir, 'cnn_yaml', 1, smallCnnModel(), undefined, { 'config.yaml': YAML_CONFIG, ...labels });
  await writeModel(repoDir, 'cnn_pbtxt', 1, smallCnnModel(), PBTXT_CONFIG, labels);
  // The same network without pre-processing: it takes the FP32 tensor itself.
  await writeModel(repoDir, 'cnn_plain', 1, smallCnnModel(), `max_batch_size: ${MAX_BATCH}\n`, labels);
  // One BYTES input the model reads itself (as the ocr pipeline does): not an image route's model, but /infer's.
  await writeModel(repoDir, 'bytes_reader', 1, identityModel('string', ['batch', 1]), 'max_batch_size: 4\n');
  // Two versions whose traffic policy sends every unversioned request to the older one.
  const canaryConfig = `${YAML_CONFIG.replace('name: cnn_yaml', 'name: cnn_canary')}version_policy: { all: {} }\ntraffic: { weights: { "1": 1 } }\n`;
  await writeModel(repoDir, 'cnn_canary', 1, smallCnnModel(), undefined, { 'config.yaml': canaryConfig, ...labels });
  await writeModel(repoDir, 'cnn_canary', 2, smallCnnModel());
}

// ---------------------------------------------------------------------------------------------
// Images

/** A 28x28 gray image of seeded noise with a bright bar, so different seeds give different answers. */
function grayPixels(seed: number): number[] {
  const rand = mulberry32(seed);
  return Array.from({ length: 28 * 28 }, (_, i) => {
    const [x, y] = [i % 28, Math.floor(i / 28)];
    const bar = seed % 2 === 0 ? x >= 10 && x < 14 : y >= 10 && y < 14;
    return bar ? 250 : Math.floor(rand() * 120);
  });
}
const grayPng = (seed: number) => sharp(Buffer.from(grayPixels(seed)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
/** A colour JPEG of another size, which pre-processing must turn gray and resize. */
const colourJpeg = (seed: number) => {
  const rand = mulberry32(seed);
  const pixels = Buffer.from(Array.from({ length: 40 * 30 * 3 }, () => Math.floor(rand() * 256)));
  return sharp(pixels, { raw: { width: 40, height: 30, channels: 3 } }).jpeg().toBuffer();
};

// ---------------------------------------------------------------------------------------------
// HTTP helpers

type Json = Record<string, any>;

let srv: TestServer;
let images: { a: Buffer; b: Buffer; c: Buffer; jpeg: Buffer };

before(async () => {
  srv = await startTestServer({ models: writeClassifierModels });
  const [a, b, c, jpeg] = await Promise.all([grayPng(1), grayPng(2), grayPng(3), colourJpeg(4)]);
  images = { a, b, c, jpeg };
});
after(async () => {
  await srv?.close();
});

function post(path: string, body: BodyInit, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(`${srv.url}${path}`, { method: 'POST', body, headers, signal });
}

const bytes = (buffer: Buffer) => new Uint8Array(buffer);

async function okJson(response: Response): Promise<Json> {
  const text = await response.text();
  assert.equal(response.status, 200, `expected 200, got ${response.status}: ${text}`);
  return JSON.parse(text);
}

async function assertError(response: Response, status: number, ...fragments: (string | RegExp)[]): Promise<string> {
  const text = await response.text();
  assert.equal(response.status, status, `expected ${status}, got ${response.status}: ${text}`);
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body), ['error'], text);
  for (const fragment of fragments) {
    if (typeof fragment === 'string') assert.ok(body.error.includes(fragment), `error '${body.error}' lacks '${fragment}'`);
    else assert.match(body.error, fragment);
  }
  return body.error;
}

const classify = (model: string, image: Buffer, type = 'image/png', query = '') =>
  post(`/v2/models/${model}/classify${query}`, bytes(image), { 'content-type': type });

/** All ten probabilities of a classify answer, by index (top_k 10). */
async function classifyProbabilities(model: string, image: Buffer, type = 'image/png'): Promise<number[]> {
  const body = await okJson(await classify(model, image, type, '?top_k=10'));
  const probabilities = Array<number>(10);
  for (const prediction of body.predictions) probabilities[prediction.index] = prediction.score;
  return probabilities;
}

/** A V2 infer request carrying encoded images as a BYTES input in the binary extension. */
function inferImages(model: string, encoded: Buffer[], shape: number[], outputs: Json[] = [{ name: 'probs', parameters: { binary_data: false } }]) {
  const data = lengthPrefixed(encoded);
  const { body, headerLength } = binaryBody(
    { inputs: [{ name: 'image', datatype: 'BYTES', shape, parameters: { binary_data_size: data.length } }], outputs },
    [data],
  );
  return post(`/v2/models/${model}/infer`, bytes(body), {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(headerLength),
  });
}

function closeTo(actual: readonly number[], expected: readonly number[], tolerance = 1e-6): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((value, index) => assert.ok(Math.abs(value - expected[index]) <= tolerance, `at ${index}: ${value} vs ${expected[index]}`));
}

// ---------------------------------------------------------------------------------------------

describe('POST /v2/models/{model}/classify', () => {
  test('HttpClient.classify answers what the route sends, as its type declares it (checked by tsc)', async () => {
    const client = new HttpClient({ url: srv.url });
    try {
      const answer = await client.classify('cnn_yaml', images.a);
      assert.deepEqual(Object.keys(answer).sort(), ['confidence', 'model_name', 'model_version', 'predictions', 'timing']);
      assert.equal(answer.model_name, 'cnn_yaml');
      assert.equal(answer.model_version, '1');
      assert.equal(answer.predictions[0]!.label, LABELS[answer.predictions[0]!.index]);
      assert.equal(typeof answer.confidence.probability, 'number');
      assert.equal(typeof answer.confidence.low_confidence, 'boolean');
      assert.equal(typeof answer.timing.total_ms, 'number');
    } finally {
      client.close();
    }
  });

  test('a raw PNG body: predictions with labels, confidence and timing', async () => {
    const body = await okJson(await classify('cnn_yaml', images.a));
    assert.deepEqual(Object.keys(body).sort(), ['confidence', 'model_name', 'model_version', 'predictions', 'timing']);
    assert.equal(body.model_name, 'cnn_yaml');
    assert.equal(body.model_version, '1');
    assert.equal(body.predictions.length, 3, 'top_k 3 from the config');
    for (const prediction of body.predictions) {
      assert.deepEqual(Object.keys(prediction).sort(), ['index', 'label', 'score']);
      assert.equal(prediction.label, LABELS[prediction.index]);
      assert.ok(prediction.score > 0 && prediction.score < 1);
    }
    const scores = body.predictions.map((p: Json) => p.score);
    assert.deepEqual(scores, [...scores].sort((x, y) => y - x), 'highest score first');
    const { confidence } = body;
    assert.deepEqual(Object.keys(confidence).sort(), ['entropy', 'low_confidence', 'margin', 'probability', 'temperature', 'threshold']);
    assert.equal(confidence.probability, scores[0]);
    closeTo([confidence.margin], [scores[0] - scores[1]], 1e-12);
    assert.ok(confidence.entropy > 0 && confidence.entropy <= 1);
    assert.equal(confidence.threshold, 0.2);
    assert.equal(confidence.temperature, 1);
    assert.equal(confidence.low_confidence, scores[0] < 0.2);
    for (const key of ['preprocess_ms', 'queue_ms', 'inference_ms', 'postprocess_ms', 'total_ms']) {
      assert.equal(typeof body.timing[key], 'number', key);
      assert.ok(body.timing[key] >= 0, key);
    }
    assert.ok(body.timing.preprocess_ms > 0 && body.timing.inference_ms > 0, JSON.stringify(body.timing));
  });

  test('pre-processing yields exactly the tensor the model would take: same probabilities as FP32 pixels / 255 to the plain model', async () => {
    const fromImage = await classifyProbabilities('cnn_yaml', images.a);
    const pixels = grayPixels(1).map((p) => p / 255);
    const answer = await okJson(
      await post('/v2/models/cnn_plain/infer', JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: pixels }] }), {
        'content-type': 'application/json',
      }),
    );
    closeTo(fromImage, answer.outputs[0].data);
    closeTo([fromImage.reduce((a, b) => a + b, 0)], [1], 1e-5);
  });

  test('a raw JPEG body of another size and in colour is converted and resized', async () => {
    const body = await okJson(await classify('cnn_yaml', images.jpeg, 'image/jpeg'));
    assert.equal(body.predictions.length, 3);
    // application/octet-stream is accepted too (what the CLI sends).
    const again = await okJson(await classify('cnn_yaml', images.jpeg, 'application/octet-stream'));
    assert.deepEqual(again.predictions, body.predictions);
  });

  test('the YAML and the config.pbtxt parameter forms both load and give identical answers', async () => {
    for (const [image, type] of [[images.a, 'image/png'], [images.b, 'image/png'], [images.jpeg, 'image/jpeg']] as const) {
      const yaml = await okJson(await classify('cnn_yaml', image, type));
      const pbtxt = await okJson(await classify('cnn_pbtxt', image, type));
      assert.equal(pbtxt.model_name, 'cnn_pbtxt');
      assert.deepEqual(pbtxt.predictions, yaml.predictions);
      assert.deepEqual(pbtxt.confidence, yaml.confidence);
    }
    const config = await okJson(await fetch(`${srv.url}/v2/models/cnn_pbtxt/config`));
    assert.equal(config.input[0].preprocess.image.color, 'grayscale');
    assert.equal(config.output[0].postprocess.top_k, 3);
  });

  test('top_k query: fewer or more predictions; invalid values are refused', async () => {
    assert.equal((await okJson(await classify('cnn_yaml', images.a, 'image/png', '?top_k=1'))).predictions.length, 1);
    const ten = await okJson(await classify('cnn_yaml', images.a, 'image/png', '?top_k=10'));
    assert.deepEqual(
      ten.predictions.map((p: Json) => p.index).sort((x: number, y: number) => x - y),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert.equal((await okJson(await classify('cnn_yaml', images.a, 'image/png', '?top_k=50'))).predictions.length, 10);
    await assertError(await classify('cnn_yaml', images.a, 'image/png', '?top_k=0'), 400, "top_k must be a positive integer, got '0'");
    await assertError(await classify('cnn_yaml', images.a, 'image/png', '?top_k=two'), 400, "got 'two'");
    await assertError(await classify('cnn_yaml', images.a, 'image/png', '?top_k=0x3'), 400, "got '0x3'");
    await assertError(await classify('cnn_yaml', images.a, 'image/png', '?top_k=1&top_k=2'), 400, 'top_k is given 2 times; give it once');
    await assertError(await classify('cnn_yaml', images.a, 'image/png', '?topk=3'), 400, "unknown option 'topk'; /classify takes top_k");
  });

  test('the versioned route answers too', async () => {
    const body = await okJson(await post('/v2/models/cnn_yaml/versions/1/classify', bytes(images.a), { 'content-type': 'image/png' }));
    assert.equal(body.model_version, '1');
    await assertError(await post('/v2/models/cnn_yaml/versions/7/classify', bytes(images.a), { 'content-type': 'image/png' }), 404);
  });

  test('multipart with several files: one result per file, in order, with the file names', async () => {
    const form = new FormData();
    form.append('note', 'fields are ignored');
    form.append('file', new Blob([bytes(images.a)], { type: 'image/png' }), 'a.png');
    form.append('file', new Blob([bytes(images.jpeg)], { type: 'image/jpeg' }), 'photo.jpg');
    form.append('other', new Blob([bytes(images.b)], { type: 'image/png' }), 'b.png');
    const body = await okJson(await post('/v2/models/cnn_yaml/classify?top_k=2', form));
    assert.deepEqual(Object.keys(body).sort(), ['model_name', 'model_version', 'results', 'timing']);
    assert.deepEqual(
      body.results.map((result: Json) => result.file),
      ['a.png', 'photo.jpg', 'b.png'],
    );
    const single = await Promise.all(
      [[images.a, 'image/png'], [images.jpeg, 'image/jpeg'], [images.b, 'image/png']].map(async ([image, type]) =>
        okJson(await classify('cnn_yaml', image as Buffer, type as string, '?top_k=2')),
      ),
    );
    body.results.forEach((result: Json, index: number) => {
      assert.equal(result.predictions.length, 2);
      assert.deepEqual(result.predictions.map((p: Json) => [p.index, p.label]), single[index].predictions.map((p: Json) => [p.index, p.label]));
      closeTo(result.predictions.map((p: Json) => p.score), single[index].predictions.map((p: Json) => p.score));
      assert.equal(typeof result.confidence.entropy, 'number');
    });
  });

  test('multipart with more files than max_batch_size is split into batches the model accepts', async () => {
    const form = new FormData();
    const files = Array.from({ length: MAX_BATCH * 2 + 1 }, (_, i) => [images.a, images.b, images.c][i % 3]);
    files.forEach((image, i) => form.append('file', new Blob([bytes(image)], { type: 'image/png' }), `f${i}.png`));
    const body = await okJson(await post('/v2/models/cnn_yaml/classify', form));
    assert.equal(body.results.length, files.length);
    const tops = body.results.map((result: Json) => result.predictions[0].index);
    body.results.forEach((result: Json, i: number) => {
      assert.equal(result.file, `f${i}.png`);
      assert.equal(tops[i], tops[i % 3], `file ${i} answers like the same image earlier`);
    });
  });

  test('a form of more files than the limit (64) is a 413 that names it', async () => {
    const form = new FormData();
    for (let index = 0; index < 65; index++) form.append('file', new Blob([bytes(images.a)], { type: 'image/png' }), `f${index}.png`);
    await assertError(await post('/v2/models/cnn_yaml/classify', form), 413, 'the form holds more than 64 files; send at most 64 in one request');
  });

  test('multipart without files, or malformed, is a 400', async () => {
    const form = new FormData();
    form.append('note', 'no files here');
    await assertError(await post('/v2/models/cnn_yaml/classify', form), 400, 'no files', 'file part');
    await assertError(await post('/v2/models/cnn_yaml/classify', 'garbage', { 'content-type': 'multipart/form-data' }), 400, 'multipart/form-data body is malformed', 'Boundary not found');
    const cut = '--XX\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n\r\nabc';
    await assertError(await post('/v2/models/cnn_yaml/classify', cut, { 'content-type': 'multipart/form-data; boundary=XX' }), 400, 'malformed');
  });

  test('body limits: one file, or all the files of a form together, over --http-max-body-bytes is a 413', async () => {
    const limited = await startTestServer({ repoDir: srv.repoDir, http: { maxBodyBytes: 64 * 1024 } });
    try {
      const big = Buffer.alloc(40 * 1024, 7);
      const each = new FormData();
      each.append('file', new Blob([bytes(images.a)]), 'a.png');
      each.append('file', new Blob([bytes(images.b)]), 'b.png');
      await okJson(await fetch(`${limited.url}/v2/models/cnn_yaml/classify`, { method: 'POST', body: each }));
      const together = new FormData();
      for (let i = 0; i < 3; i++) together.append('file', new Blob([bytes(big)]), `big${i}.png`);
      const response = await fetch(`${limited.url}/v2/models/cnn_yaml/classify`, { method: 'POST', body: together });
      await assertError(response, 413, 'larger than the limit of 65536 bytes');
      const one = new FormData();
      one.append('file', new Blob([bytes(Buffer.alloc(100 * 1024))]), 'huge.png');
      assert.equal((await fetch(`${limited.url}/v2/models/cnn_yaml/classify`, { method: 'POST', body: one })).status, 413);
      const raw = await fetch(`${limited.url}/v2/models/cnn_yaml/classify`, { method: 'POST', body: bytes(Buffer.alloc(100 * 1024)), headers: { 'content-type': 'image/png' } });
      await assertError(raw, 413, 'larger than the limit');
    } finally {
      await limited.close();
    }
  });

  /** A form of one file as a chunked body (no Content-Length), cut into pieces of `piece` bytes: the head, each chunk, the end. */
  function chunkedForm(file: Buffer, piece: number): { head: Record<string, string>; chunks: string[]; end: string } {
    const body = Buffer.concat([
      Buffer.from('--XX\r\nContent-Disposition: form-data; name="file"; filename="noise.png"\r\nContent-Type: image/png\r\n\r\n'),
      file,
      Buffer.from('\r\n--XX--\r\n'),
    ]);
    const chunks: string[] = [];
    for (let at = 0; at < body.length; at += piece) {
      const part = body.subarray(at, at + piece);
      chunks.push(`${part.length.toString(16)}\r\n${part.toString('latin1')}\r\n`);
    }
    return { head: { 'content-type': 'multipart/form-data; boundary=XX', 'transfer-encoding': 'chunked' }, chunks, end: '0\r\n\r\n' };
  }

  test('a chunked multipart form (no Content-Length) larger than a stream buffer is read and answered', async () => {
    // Noise does not compress: a PNG of ~190 KB, many times the 16 KiB a stream buffers.
    const rand = mulberry32(7);
    const noise = await sharp(Buffer.from(Array.from({ length: 256 * 256 * 3 }, () => Math.floor(rand() * 256))), { raw: { width: 256, height: 256, channels: 3 } }).png().toBuffer();
    assert.ok(noise.length > 100_000, `the noise PNG is ${noise.length} bytes`);
    const { head, chunks, end } = chunkedForm(noise, 32 * 1024);
    const connection = new RawConnection(srv.url);
    try {
      const answer = connection.request('POST', '/v2/models/cnn_yaml/classify', head);
      for (const chunk of chunks) connection.send(Buffer.from(chunk, 'latin1'));
      connection.send(end);
      const { status, body } = await answer;
      assert.equal(status, 200, body);
      assert.equal(JSON.parse(body).results[0].file, 'noise.png');
    } finally {
      connection.close();
    }
  });

  test('a chunked form refused part-way (too many pieces) is answered, read to its end and its connection closed', async () => {
    const limited = await startTestServer({ repoDir: srv.repoDir, http: { maxBodyChunks: 32 } });
    const connection = new RawConnection(limited.url);
    try {
      // 4 MB in 1 KiB chunks: far past the 32 pieces, and more than the socket buffers hold if the server stopped reading.
      const { head, chunks, end } = chunkedForm(Buffer.alloc(4 * 1024 * 1024, 1), 1024);
      const answer = connection.request('POST', '/v2/models/cnn_yaml/classify', head);
      for (const chunk of chunks) connection.send(Buffer.from(chunk, 'latin1'));
      connection.send(end);
      const { status, body } = await answer;
      assert.equal(status, 400, body);
      assert.match(body, /pieces|chunks/);
      // Not left unread under backpressure until the 30 s request timeout, the client's writes stuck behind it.
      await connection.closed;
    } finally {
      connection.close();
      await limited.close();
    }
  });

  test('a client that leaves in the middle of a chunked multipart form leaves the server serving', async () => {
    // A process of its own: the unhandled stream error this once raised ended the process, which in this one would be the test runner.
    const served = await serveChild(srv.repoDir, ['--allow-metrics', 'false']);
    try {
      const { head, chunks } = chunkedForm(Buffer.alloc(64 * 1024, 1), 4 * 1024);
      for (let attempt = 0; attempt < 3; attempt++) {
        const connection = new RawConnection(served.url);
        void connection.request('POST', '/v2/models/cnn_yaml/classify', head).catch(() => undefined);
        for (const chunk of chunks.slice(0, 2)) connection.send(Buffer.from(chunk, 'latin1'));
        await new Promise((resolve) => setTimeout(resolve, 100));
        connection.close();
        await connection.closed;
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(served.child.exitCode, null, `the server exited: ${served.output().slice(-600)}`);
      await okJson(await fetch(`${served.url}/v2/models/cnn_yaml/classify`, { method: 'POST', body: bytes(images.a), headers: { 'content-type': 'image/png' } }));
    } finally {
      await stopChild(served);
    }
  });

  // That the images still waiting are skipped is decode slots' unit test (src/core/decode-slots.test.ts): timed here, on a shared machine, it would measure the machine.
  test('a form whose client leaves while its images decode: the next client is answered', async () => {
    // Large images decode for a long time each (WebP of 2400x2400: a third of a second): a form of 16 is seconds of both cores.
    const large = await sharp({ create: { width: 2400, height: 2400, channels: 3, background: '#606060' } }).webp().toBuffer();
    const form = () => {
      const body = new FormData();
      for (let index = 0; index < 16; index++) body.append('file', new Blob([bytes(large)], { type: 'image/webp' }), `large${index}.webp`);
      return body;
    };
    const started = performance.now();
    await okJson(await post('/v2/models/cnn_yaml/classify', form()));
    const whole = performance.now() - started;
    const leaving = new AbortController();
    const left = post('/v2/models/cnn_yaml/classify', form(), {}, leaving.signal).catch(() => 'left');
    await new Promise((resolve) => setTimeout(resolve, whole / 8));
    leaving.abort();
    assert.equal(await left, 'left');
    await okJson(await classify('cnn_yaml', images.a, 'image/png'));
  });

  test('a compressed multipart form is a 400 that says to send it uncompressed', async () => {
    const form = '--XX\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc\r\n--XX--\r\n';
    const response = await post('/v2/models/cnn_yaml/classify', bytes(gzipSync(form)), { 'content-type': 'multipart/form-data; boundary=XX', 'content-encoding': 'gzip' });
    await assertError(response, 400, 'multipart/form-data', 'Content-Encoding gzip', 'uncompressed');
  });

  test('a wrong content type is a 400 naming what is expected', async () => {
    await assertError(await classify('cnn_yaml', images.a, 'text/plain'), 400, "Content-Type image/* or application/octet-stream (got 'text/plain')", 'multipart/form-data');
    await assertError(
      await post('/v2/models/cnn_yaml/classify', JSON.stringify({ image: 'x' }), { 'content-type': 'application/json' }),
      400,
      "got 'application/json'",
    );
  });

  test('an invalid image is a 400 naming the problem', async () => {
    await assertError(await classify('cnn_yaml', Buffer.from('this is text, not a picture')), 400, 'not an image in a supported format');
    await assertError(await classify('cnn_yaml', images.a.subarray(0, 40)), 400, /truncated or corrupt|not an image/);
    await assertError(await classify('cnn_yaml', Buffer.alloc(0)), 400, 'empty');
    const form = new FormData();
    form.append('file', new Blob(['not an image']), 'bad.txt');
    form.append('file', new Blob(['nor this']), 'worse.txt');
    await assertError(await post('/v2/models/cnn_yaml/classify', form), 400, "image 0: it is not an image", "image 1: it is not an image");
    // The server keeps serving.
    await okJson(await classify('cnn_yaml', images.a));
  });

  test("a form's file that is not an image gets its error in its place, the others their results (200)", async () => {
    const form = new FormData();
    for (let i = 0; i < MAX_BATCH * 2; i++) form.append('file', new Blob([bytes(images.a)]), `f${i}.png`);
    form.append('file', new Blob(['not an image']), 'bad.txt');
    form.append('file', new Blob([bytes(images.a)]), 'last.png');
    const answer = await okJson(await post('/v2/models/cnn_yaml/classify', form));
    assert.equal(answer.results.length, MAX_BATCH * 2 + 2);
    assert.deepEqual(answer.results[MAX_BATCH * 2].file, 'bad.txt');
    assert.match(answer.results[MAX_BATCH * 2].error, /^it is not an image/);
    assert.equal(answer.results[MAX_BATCH * 2].predictions, undefined);
    for (const index of [0, MAX_BATCH * 2 - 1, MAX_BATCH * 2 + 1]) {
      assert.equal(answer.results[index].error, undefined);
      assert.deepEqual(answer.results[index].predictions, answer.results[0].predictions, `file ${answer.results[index].file} answered`);
    }
    assert.equal(answer.results.at(-1).file, 'last.png');
  });

  test('a model without image pre-processing cannot classify: 400', async () => {
    await assertError(await classify('cnn_plain', images.a), 400, "model 'cnn_plain' does not take a single image input", 'preprocess.image');
    await assertError(await classify('bytes_reader', images.a), 400, "model 'bytes_reader' takes its input 'INPUT0' as BYTES that it reads itself", 'send the image to POST /v2/models/bytes_reader/infer as the body');
    await assertError(await classify('no_such_model', images.a), 404);
  });
});

describe('the V2 protocol with an image input', () => {
  test('metadata shows the image input as BYTES [-1, 1]', async () => {
    const metadata = await okJson(await fetch(`${srv.url}/v2/models/cnn_yaml`));
    assert.deepEqual(metadata.inputs, [{ name: 'image', datatype: 'BYTES', shape: [-1, 1] }]);
    assert.deepEqual(metadata.outputs, [{ name: 'probs', datatype: 'FP32', shape: [-1, 10] }]);
    const pbtxt = await okJson(await fetch(`${srv.url}/v2/models/cnn_pbtxt`));
    assert.deepEqual(pbtxt.inputs, metadata.inputs);
  });

  for (const shape of [[2], [2, 1]]) {
    test(`/infer with encoded images as BYTES [${shape}] (binary extension) gives the probabilities /classify gives`, async () => {
      const response = await inferImages('cnn_yaml', [images.a, images.jpeg], shape);
      const body = await okJson(response);
      const [output] = body.outputs;
      assert.equal(output.name, 'probs');
      assert.equal(output.datatype, 'FP32');
      assert.deepEqual(output.shape, [2, 10]);
      closeTo(output.data.slice(0, 10), await classifyProbabilities('cnn_yaml', images.a));
      closeTo(output.data.slice(10), await classifyProbabilities('cnn_yaml', images.jpeg, 'image/jpeg'));
    });
  }

  test('/infer with a binary output returns the same FP32 bytes', async () => {
    const response = await inferImages('cnn_pbtxt', [images.b], [1, 1], [{ name: 'probs', parameters: { binary_data: true } }]);
    assert.equal(response.status, 200);
    const { header, binary } = await readInferResponse(response);
    assert.deepEqual(header.outputs[0].shape, [1, 10]);
    const probs = Array.from(new Float32Array(binary.probs.buffer.slice(binary.probs.byteOffset, binary.probs.byteOffset + binary.probs.length)));
    closeTo(probs, await classifyProbabilities('cnn_pbtxt', images.b));
  });

  test('/infer with class_count answers "score:index:label", matching /classify', async () => {
    const body = await okJson(await inferImages('cnn_yaml', [images.a, images.c], [2], [{ name: 'probs', parameters: { class_count: 3 } }]));
    const [output] = body.outputs;
    assert.equal(output.datatype, 'BYTES');
    assert.deepEqual(output.shape, [2, 3]);
    for (const [row, image] of [images.a, images.c].entries()) {
      const expected = (await okJson(await classify('cnn_yaml', image))).predictions;
      const got = output.data.slice(row * 3, row * 3 + 3) as string[];
      got.forEach((entry, k) => {
        const [score, index, label] = entry.split(':');
        assert.match(score, /^\d\.\d{6}$/);
        assert.equal(Number(index), expected[k].index);
        assert.equal(label, expected[k].label);
        assert.ok(Math.abs(Number(score) - expected[k].score) <= 5e-7, `${entry} vs ${expected[k].score}`);
      });
    }
  });

  test("/infer with Triton's own classification parameter (what tritonclient.http sends for class_count)", async () => {
    const body = await okJson(await inferImages('cnn_yaml', [images.a], [1], [{ name: 'probs', parameters: { classification: 2, binary_data: false } }]));
    assert.equal(body.outputs[0].datatype, 'BYTES');
    assert.deepEqual(body.outputs[0].shape, [1, 2]);
  });

  test('/infer with a bad image in the batch is a 400 naming which one', async () => {
    await assertError(await inferImages('cnn_yaml', [images.a, Buffer.from('nope')], [2]), 400, "input 'image' image 1:", 'not an image');
  });

  test('/infer with FP32 data for the image input is refused: it takes encoded images', async () => {
    const response = await post(
      '/v2/models/cnn_yaml/infer',
      JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: Array(784).fill(0) }] }),
      { 'content-type': 'application/json' },
    );
    await assertError(response, 400, "input 'image' expects BYTES [-1,1], got FP32 [1,1,28,28]: encoded images (PNG, JPEG, WebP…), one per row, which the config's preprocess decodes");
  });

  test('/stats counts pre-processing separately from compute_infer', async () => {
    await okJson(await classify('cnn_pbtxt', images.a));
    const { model_stats } = await okJson(await fetch(`${srv.url}/v2/models/cnn_pbtxt/stats`));
    const stats = model_stats[0].inference_stats;
    for (const phase of ['preprocess', 'compute_infer', 'postprocess']) {
      assert.ok(stats[phase].count > 0, `${phase}.count ${JSON.stringify(stats[phase])}`);
    }
    assert.ok(stats.preprocess.ns > 0 && stats.compute_infer.ns > 0, JSON.stringify(stats));
    assert.equal(stats.preprocess.count, stats.success.count, 'one pre-processing per successful request');
  });
});

describe('nereid classify (CLI)', () => {
  let dir: string;
  let files: { png: string; jpeg: string; bad: string; missing: string };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nereid-classify-cli-'));
    files = { png: join(dir, 'a.png'), jpeg: join(dir, 'b.jpg'), bad: join(dir, 'bad.txt'), missing: join(dir, 'missing.png') };
    await writeFile(files.png, images.a);
    await writeFile(files.jpeg, images.jpeg);
    await writeFile(files.bad, 'not an image\n');
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, [...NEREID_COMMAND, 'classify', ...args], { cwd: ROOT, timeout: 30_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      });
    });

  const expectLines = async (stdout: string, model: string) => {
    const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as Json);
    assert.deepEqual(
      lines.map((line) => line.file),
      [files.png, files.jpeg, files.bad, files.missing],
    );
    const [png, jpeg, bad, missing] = lines;
    for (const [line, image, type] of [[png, images.a, 'image/png'], [jpeg, images.jpeg, 'image/jpeg']] as const) {
      assert.equal(line.model_name, model);
      assert.equal(line.predictions.length, 2, '--top-k 2');
      const expected = (await okJson(await classify(model, image, type, '?top_k=2'))).predictions;
      assert.deepEqual(line.predictions.map((p: Json) => [p.index, p.label]), expected.map((p: Json) => [p.index, p.label]));
      closeTo(line.predictions.map((p: Json) => p.score), expected.map((p: Json) => p.score));
      assert.equal(typeof line.confidence.probability, 'number');
      assert.deepEqual(Object.keys(line.timing), ['preprocess_ms', 'queue_ms', 'inference_ms', 'postprocess_ms', 'total_ms'], 'the route\'s timings, in process too');
    }
    assert.match(bad.error, /not an image in a supported format/);
    assert.equal(bad.predictions, undefined);
    assert.match(missing.error, /ENOENT.*missing\.png/, 'a file that cannot be read is reported on its line; the others are still answered');
  };

  test('in process and through --url: one JSON line per file, the bad and missing ones with an error, exit code 1', async () => {
    const [local, remote] = await Promise.all([
      cli(['--model', 'cnn_yaml', '--model-repository', srv.repoDir, '--top-k', '2', files.png, files.jpeg, files.bad, files.missing]),
      cli(['--model', 'cnn_pbtxt', '--url', srv.url, '--top-k', '2', files.png, files.jpeg, files.bad, files.missing]),
    ]);
    assert.equal(local.code, 1, `local stderr: ${local.stderr}`);
    await expectLines(local.stdout, 'cnn_yaml');
    assert.match(local.stderr, /4 image\(s\), 2 failed/);
    assert.equal(remote.code, 1, `remote stderr: ${remote.stderr}`);
    await expectLines(remote.stdout, 'cnn_pbtxt');
    assert.match(remote.stderr, /4 image\(s\), 2 failed/);
    assert.doesNotMatch(remote.stderr, /--model-repository is for a run in this process/, 'the bundled repository filled in by default is not a flag the user gave');
    const told = await cli(['--model', 'cnn_pbtxt', '--url', srv.url, '--model-repository', srv.repoDir, files.png]);
    assert.match(told.stderr, /nereid classify: --model-repository is for a run in this process; with --url the server's own settings decide/);
  });

  test("in process, --model-version loads the version named even where the model's policy leaves it out (the bundled int8 Fashion-MNIST)", async () => {
    const named = await cli(['--model', 'fashion_mnist', '--model-version', '2', join(ROOT, 'examples/images/bag.png')]);
    assert.equal(named.code, 0, named.stderr);
    assert.equal((JSON.parse(named.stdout) as Json).model_version, '2');
    assert.equal((JSON.parse(named.stdout) as Json).predictions[0].label, 'Bag');
  });
});

test('/classify without a version follows the model\'s traffic policy, as /infer does; a named version is honoured', async () => {
  const drawn = await okJson(await post('/v2/models/cnn_canary/classify', bytes(images.a), { 'content-type': 'image/png' }));
  assert.equal(drawn.model_version, '1');
  const named = await okJson(await post('/v2/models/cnn_canary/versions/2/classify', bytes(images.a), { 'content-type': 'image/png' }));
  assert.equal(named.model_version, '2');
});
