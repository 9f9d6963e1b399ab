/**
 * The server's image pre-processing must not cost accuracy: Fashion-MNIST test images, encoded as
 * PNG and JPEG, classified through /classify and through V2 /infer, score within one point of the
 * same model run in-process on the dataset's own pixels.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import { parse as parseYaml } from 'yaml';
import sharp from 'sharp';
import { binaryBody, lengthPrefixed, readInferResponse, startTestServer, type TestServer } from './support/test-server.js';

const DATASET = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';
const MODEL_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'models', 'fashion_mnist');
const COUNT = 1000;
const SIDE = 28;

function readIdx(file: string): Buffer {
  return gunzipSync(readFileSync(join(DATASET, file)));
}

const imagesIdx = readIdx('t10k-images-idx3-ubyte.gz');
const labelsIdx = readIdx('t10k-labels-idx1-ubyte.gz');
const pixelsOf = (index: number) => imagesIdx.subarray(16 + index * SIDE * SIDE, 16 + (index + 1) * SIDE * SIDE);
const labelOf = (index: number) => labelsIdx[8 + index];
const indices = Array.from({ length: COUNT }, (_, index) => index);

let server: TestServer;
let inProcessAccuracy: number;

async function encode(index: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const image = sharp(pixelsOf(index), { raw: { width: SIDE, height: SIDE, channels: 1 } });
  return format === 'png' ? image.png().toBuffer() : image.jpeg({ quality: 95 }).toBuffer();
}

before(async () => {
  // The reference: the same ONNX file in-process, normalised exactly as the config declares, on the raw pixels.
  const config = parseYaml(readFileSync(join(MODEL_DIR, 'config.yaml'), 'utf8'));
  const { scale, mean, std } = config.input[0].preprocess.image;
  const session = await ort.InferenceSession.create(join(MODEL_DIR, '1', 'model.onnx'));
  const batch = new Float32Array(COUNT * SIDE * SIDE);
  indices.forEach((index) => pixelsOf(index).forEach((pixel, p) => (batch[index * SIDE * SIDE + p] = (pixel * scale - mean[0]) / std[0])));
  const { logits } = await session.run({ image: new ort.Tensor('float32', batch, [COUNT, 1, SIDE, SIDE]) });
  const scores = logits.data as Float32Array;
  let correct = 0;
  for (const index of indices) {
    const row = scores.subarray(index * 10, index * 10 + 10);
    if (row.indexOf(Math.max(...row)) === labelOf(index)) correct += 1;
  }
  inProcessAccuracy = correct / COUNT;
  await session.release();
  server = await startTestServer({
    repoDir: join(MODEL_DIR, '..'),
    server: { modelControlMode: 'explicit', loadModels: ['fashion_mnist'] },
  });
});

after(() => server?.close());

test('PNG images through /classify (multipart) match in-process accuracy within 1 point', async (t) => {
  let correct = 0;
  for (let start = 0; start < COUNT; start += 50) {
    const form = new FormData();
    for (const index of indices.slice(start, start + 50)) {
      form.append('images', new Blob([new Uint8Array(await encode(index, 'png'))], { type: 'image/png' }), `${index}.png`);
    }
    // 50 images are 50 requests on the model: on a machine busy with other tests the server may refuse them for now (503 with
    // Retry-After), which a client is expected to honour.
    let response = await fetch(`${server.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: form });
    for (let retries = 0; response.status === 503 && retries < 5; retries++) {
      await response.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, Number(response.headers.get('retry-after') ?? 1) * 1000));
      response = await fetch(`${server.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: form });
    }
    assert.equal(response.status, 200, await response.clone().text());
    const body = (await response.json()) as { results: { file: string; predictions: { index: number }[] }[] };
    for (const result of body.results) {
      if (result.predictions[0].index === labelOf(Number.parseInt(result.file, 10))) correct += 1;
    }
  }
  const accuracy = correct / COUNT;
  t.diagnostic(`server ${(accuracy * 100).toFixed(1)}% vs in-process ${(inProcessAccuracy * 100).toFixed(1)}% on ${COUNT} test images`);
  assert.ok(Math.abs(accuracy - inProcessAccuracy) <= 0.01, `server ${accuracy} vs in-process ${inProcessAccuracy}`);
});

test('JPEG images through V2 /infer (BYTES input, classification extension) match in-process accuracy within 1 point', async (t) => {
  let correct = 0;
  for (let start = 0; start < COUNT; start += 64) {
    const chunk = indices.slice(start, start + 64);
    const images = await Promise.all(chunk.map((index) => encode(index, 'jpeg')));
    const payload = lengthPrefixed(images);
    const { body, headerLength } = binaryBody(
      {
        inputs: [{ name: 'image', datatype: 'BYTES', shape: [chunk.length, 1], parameters: { binary_data_size: payload.length } }],
        outputs: [{ name: 'logits', parameters: { class_count: 1, binary_data: false } }],
      },
      [payload],
    );
    const response = await fetch(`${server.url}/v2/models/fashion_mnist/infer`, {
      method: 'POST',
      headers: { 'Inference-Header-Content-Length': String(headerLength) },
      body: new Uint8Array(body),
    });
    assert.equal(response.status, 200);
    const { header } = await readInferResponse(response);
    const classes = (header.outputs[0] as { data: string[] }).data;
    classes.forEach((entry, row) => {
      if (Number(entry.split(':')[1]) === labelOf(chunk[row])) correct += 1;
    });
  }
  const accuracy = correct / COUNT;
  t.diagnostic(`server ${(accuracy * 100).toFixed(1)}% vs in-process ${(inProcessAccuracy * 100).toFixed(1)}% on ${COUNT} test images`);
  assert.ok(Math.abs(accuracy - inProcessAccuracy) <= 0.01, `server ${accuracy} vs in-process ${inProcessAccuracy}`);
});

test('the statistics report pre-processing apart from inference', async () => {
  const response = await fetch(`${server.url}/v2/models/fashion_mnist/stats`);
  const stats = ((await response.json()) as { model_stats: { inference_stats: Record<string, { count: number; ns: number }> }[] })
    .model_stats[0].inference_stats;
  assert.ok(stats.preprocess.count > 0 && stats.preprocess.ns > 0);
  assert.ok(stats.compute_infer.count > 0 && stats.compute_infer.ns > 0);
  assert.equal(stats.preprocess.count, stats.success.count);
});
