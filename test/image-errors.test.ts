/**
 * What a client is told about the images it sends to the bundled image models, through each
 * endpoint that takes them: /detect (object_detection), /classify (fashion_mnist) and the OCR
 * pipeline's /infer (ocr), on a real server over loopback HTTP. The same file is answered the same
 * way by all three, and a refusal says what is wrong with the image and where it may go instead.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from './support/test-server.js';

const MODELS = fileURLToPath(new URL('../models', import.meta.url));
const CAT = new URL('../examples/images/cat.jpg', import.meta.url);

/**
 * A real HEIC (HEIF coded with HEVC, what an iPhone saves): examples/images/cat.jpg resized to 96
 * pixels wide, encoded by libheif's `heif-enc -q 30` (Debian libheif-examples 1.15). sharp reads its
 * header (format 'heif', compression 'hevc') but has no HEVC decoder.
 */
const HEIC = Buffer.from(
  'AAAAHGZ0eXBoZWljAAAAAG1pZjFoZWljbWlhZgAAAUJtZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAAAAAAAAAAAAAAAA5waXRtAAAAAAABAAAAImlsb2MAAAAAREAAAQAB' +
  'AAAAAAFmAAEAAAAAAAABtwAAACNpaW5mAAAAAAABAAAAFWluZmUCAAAAAAEAAGh2YzEAAAAAwmlwcnAAAACkaXBjbwAAAHhodmNDAQNwAAAAAAAAAAAAHvAA/P34+AAADwMgAAEAGEAB' +
  'DAH//wNwAAADAJAAAAMAAAMAHroCQCEAAQArQgEBA3AAAAMAkAAAAwAAAwAeoDCBBZbqSSmubgQEDAgAAAMACAAAAwAIQCIAAQAHRAHBcrAiQAAAABRpc3BlAAAAAAAAAGAAAABAAAAA' +
  'EHBpeGkAAAAAAwgICAAAABZpcG1hAAAAAAAAAAEAAQOBAoMAAAG/bWRhdAAAAbMoAa8ZgJxPCRq7I8xfS7jxb99tuTUX42OLNt0rqB+ISM3V3nyckp/rlPNxk+Q5xlhgegp3o38QiHRN' +
  'J9aLluVqoXwcrO43Lm02piKq6WE1QrMQC5/ckaTjpIbdrlfqjaIr6L2sqm5hoHfz23KSR6GcTfiFU3LFgF6XiR6G2o4HXOshtJ0/q6kzIHCKcObhOvtEm9sLCYRgl4qZrXCK4i+GLtzL' +
  'jvxKMbEli/EyUgonMhkSNQOm79/FaK5w7sKe0J01QzGOBYD/OgO9LiSYqrtARNUkaBN/yllWuruLHe5A24aau3T6pmFnSeQ4ttn1f44roGUoplY2d4hubKmAL+w0b0hKaZhvqPepQ1Ol' +
  'genheKMPK01Nq5ZX4Cg5rn9dEFOseIfaF3HHLNc+7a7rMxEAu8X3v3trnAlMDsbwzjX3FuDtsWQ6rOxEDcC8TiwF70BQnyqCV6n1GKka50A5JFD21VS0dsge5w9SwV61ogmEUlxN/7PL' +
  'X3BIfYa7+D6BgmFVEpghI/+3R+5I/hNN/Dt3+mzbjVP5I80At1fMLVBP7WpvouJ6WJ4Scw/bbIMU6y35EN4=',
  'base64',
);

/** The endpoint of each bundled image model. */
const ENDPOINTS = [
  { model: 'object_detection', path: '/v2/models/object_detection/detect' },
  { model: 'fashion_mnist', path: '/v2/models/fashion_mnist/classify' },
  { model: 'ocr', path: '/v2/models/ocr/infer' },
] as const;

let srv: TestServer;
let cat: Buffer;

before(async () => {
  srv = await startTestServer({ repoDir: MODELS, server: { modelControlMode: 'explicit', loadModels: ENDPOINTS.map((endpoint) => endpoint.model) } });
  cat = await readFile(CAT);
});
after(async () => srv?.close());

async function post(path: string, body: BodyInit, contentType?: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`${srv.url}${path}`, { method: 'POST', body, headers: contentType ? { 'content-type': contentType } : {} });
  return { status: response.status, body: await response.text() };
}

/** The refusal's message, after checking that it is a 400 {"error"}. */
function refusal(answer: { status: number; body: string }): string {
  assert.equal(answer.status, 400, answer.body);
  const parsed = JSON.parse(answer.body) as { error?: string };
  assert.deepEqual(Object.keys(parsed), ['error'], answer.body);
  return parsed.error!;
}

describe('image formats', () => {
  test('a HEIC photo is refused by every endpoint as HEIC that cannot be decoded, with what to send instead, not as corrupt', async () => {
    for (const { path } of ENDPOINTS) {
      const message = refusal(await post(path, new Uint8Array(HEIC), 'image/heic'));
      assert.match(message, /HEIC image \(HEIF coded with HEVC\), which this server cannot decode \(AVIF, HEIF coded with AV1, it can\): convert it to JPEG or PNG/, `${path}: ${message}`);
      assert.doesNotMatch(message, /corrupt|bad seek/, `${path}: ${message}`);
    }
  });

  test('a JPEG damaged in its middle is read by every endpoint (as image viewers show it), and one cut short is refused by every endpoint', async () => {
    const damaged = Buffer.from(cat);
    damaged.fill(0x55, Math.floor(cat.length / 2), Math.floor(cat.length / 2) + 400);
    for (const { path } of ENDPOINTS) {
      const answer = await post(path, new Uint8Array(damaged), 'image/jpeg');
      assert.equal(answer.status, 200, `${path}: ${answer.body}`);
    }
    for (const { path } of ENDPOINTS) {
      const message = refusal(await post(path, new Uint8Array(cat.subarray(0, cat.length / 2)), 'image/jpeg'));
      assert.match(message, /truncated or corrupt \(VipsJpeg: premature end of JPEG image\)/, `${path}: ${message}`);
    }
  });
});

describe('hints name only endpoints that take the model', () => {
  /** The /classify and /detect endpoints a message names, each answered 200 for the cat as a multipart file. */
  async function namedEndpointsTake(message: string): Promise<string[]> {
    const named = [...message.matchAll(/\/v2\/models\/(\w+)\/(classify|detect)/g)].map((match) => match[0]);
    for (const path of named) {
      const form = new FormData();
      form.append('file', new Blob([new Uint8Array(cat)], { type: 'image/jpeg' }), 'cat.jpg');
      const answer = await post(path, form);
      assert.equal(answer.status, 200, `${path}, named in "${message}": ${answer.body}`);
    }
    return named;
  }

  test('a multipart upload to /infer is sent to the endpoints that take that model', async () => {
    const expected: Record<string, string[]> = {
      object_detection: ['/v2/models/object_detection/detect'],
      fashion_mnist: ['/v2/models/fashion_mnist/classify'],
      ocr: [],
    };
    for (const { model } of ENDPOINTS) {
      const form = new FormData();
      form.append('file', new Blob([new Uint8Array(cat)], { type: 'image/jpeg' }), 'cat.jpg');
      const message = refusal(await post(`/v2/models/${model}/infer`, form));
      assert.match(message, /^\/infer does not take multipart uploads/, message);
      assert.deepEqual(await namedEndpointsTake(message), expected[model], message);
      // Each of these models takes one image as the body of /infer.
      assert.match(message, /send one image as the body with Content-Type image\/\*/, message);
      assert.equal((await post(`/v2/models/${model}/infer`, new Uint8Array(cat), 'image/jpeg')).status, 200, model);
    }
  });

  test("a base64 image in V2 JSON for the OCR pipeline is told how to send it to /infer, not to /classify, which does not take 'ocr'", async () => {
    const request = { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [cat.toString('base64')] }] };
    const message = refusal(await post('/v2/models/ocr/infer', JSON.stringify(request), 'application/json'));
    assert.match(message, /it is base64 text of an image: a V2 BYTES element carries the raw bytes, so send the image as binary tensor data .* or as the body with Content-Type image\/\*$/, message);
    assert.deepEqual(await namedEndpointsTake(message), []);
    assert.doesNotMatch(message, /classify|detect/, message);
  });
});

describe('refusals name the image and the problem, and nothing of the server', () => {
  const truncated = () => new Uint8Array(cat.subarray(0, cat.length / 2));
  const IMAGE_ROUTES = ENDPOINTS.filter(({ model }) => model !== 'ocr');

  test('a single image as the body of /detect or /classify is "the image"', async () => {
    for (const { path } of IMAGE_ROUTES) {
      assert.match(refusal(await post(path, truncated(), 'image/jpeg')), /^the image is truncated or corrupt \(VipsJpeg: premature end of JPEG image\)$/, path);
      assert.match(refusal(await post(path, new TextEncoder().encode('not a picture'), 'image/jpeg')), /^the file is not an image in a supported format \(JPEG, PNG/, path);
      assert.match(refusal(await post(path, new Uint8Array(HEIC), 'image/heic')), /^the image is a HEIC image/, path);
    }
  });

  test("a multipart form's file is named by its place in the form when none can be read, one file as well as several; with a readable one, the others are answered each", async () => {
    for (const { path } of IMAGE_ROUTES) {
      const one = new FormData();
      one.append('file', new Blob([]), 'empty.jpg');
      assert.equal(refusal(await post(path, one)), 'image 0: the image is empty (0 bytes)', path);
      const two = new FormData();
      two.append('file', new Blob([]), 'empty.jpg');
      two.append('file', new Blob([truncated()], { type: 'image/jpeg' }), 'cut.jpg');
      // libvips's detail is lost now and then when two images fail at once (its error buffer is shared): the naming is what counts.
      assert.match(refusal(await post(path, two)), /^image 0: the image is empty \(0 bytes\); image 1: it is truncated or corrupt \((VipsJpeg: premature end of JPEG image|the decoder gave no detail)\)$/, path);
      const mixed = new FormData();
      mixed.append('file', new Blob([new Uint8Array(cat)], { type: 'image/jpeg' }), 'cat.jpg');
      mixed.append('file', new Blob([truncated()], { type: 'image/jpeg' }), 'cut.jpg');
      const response = await post(path, mixed);
      assert.equal(response.status, 200, path);
      const { results } = JSON.parse(response.body) as { results: { file: string; error?: string }[] };
      assert.deepEqual(results.map((result) => [result.file, result.error === undefined]), [['cat.jpg', true], ['cut.jpg', false]], path);
      assert.match(results[1].error!, /^it is truncated or corrupt/, path);
    }
  });

  test("the OCR pipeline's refusal says what is wrong with the image, not which handler instance found it", async () => {
    for (const body of [truncated(), new Uint8Array(0)]) {
      const message = refusal(await post('/v2/models/ocr/infer', body, 'image/jpeg'));
      assert.match(message, /^input 'image' must be one encoded image, but (it is truncated or corrupt|the image is empty)/, message);
      assert.doesNotMatch(message, /handler|instance|request failed/, message);
    }
  });
});

describe('Content-Type', () => {
  test('/detect and /classify take the body as image/* or application/octet-stream, and a refusal of another type names both', async () => {
    for (const { path } of ENDPOINTS.filter(({ model }) => model !== 'ocr')) {
      for (const type of ['image/jpeg', 'application/octet-stream']) assert.equal((await post(path, new Uint8Array(cat), type)).status, 200, `${path} ${type}`);
      const message = refusal(await post(path, new Uint8Array(cat), 'text/plain'));
      assert.equal(message, "send the image as the body with Content-Type image/* or application/octet-stream (got 'text/plain'), or as multipart/form-data files", path);
    }
  });
});

describe('timings', () => {
  interface Phase {
    count: number;
    ns: number;
  }
  const inferenceStats = async (model: string) =>
    ((await (await fetch(`${srv.url}/v2/models/${model}/stats`)).json()) as { model_stats: { inference_stats: Record<string, Phase> }[] }).model_stats[0].inference_stats;

  test("/detect's post-processing (the boxes) is the statistics' postprocess phase, the time the answers report", async () => {
    const before = await inferenceStats('object_detection');
    const form = new FormData();
    for (const name of ['a.jpg', 'b.jpg']) form.append('file', new Blob([new Uint8Array(cat)], { type: 'image/jpeg' }), name);
    const answers = [await post('/v2/models/object_detection/detect', new Uint8Array(cat), 'image/jpeg'), await post('/v2/models/object_detection/detect', form)];
    const reported = answers.map((answer) => {
      assert.equal(answer.status, 200, answer.body);
      return (JSON.parse(answer.body) as { timing: { postprocess_ms: number } }).timing.postprocess_ms;
    });
    const after = await inferenceStats('object_detection');
    const delta = (phase: string) => ({ count: after[phase].count - before[phase].count, ns: after[phase].ns - before[phase].ns });
    assert.equal(delta('success').count, 3);
    assert.equal(delta('postprocess').count, 3, "each image's boxes are counted");
    assert.ok(delta('postprocess').ns > 0);
    // Each answer's postprocess_ms is its images' post-processing, summed (rounded to hundredths of a millisecond).
    assert.ok(Math.abs(delta('postprocess').ns / 1e6 - (reported[0] + reported[1])) < 0.03, `statistics ${delta('postprocess').ns / 1e6} ms, answers ${reported.join(' + ')} ms`);
  });
});
