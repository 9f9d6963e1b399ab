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
