/**
 * Warmup on the real OCR recogniser (models/ocr_recognition, input x [3, 48, -1]): with a
 * model_warmup sample at width 320 the first real request at that width is no slower than the
 * usual one, since ONNX Runtime has planned that shape on every instance before the version was
 * ready. The same model without warmup is loaded too, and both first-request figures are printed;
 * only the order that holds on any machine is asserted (first ≤ 3 × median, with warmup, the
 * better of two loads). On a CPU
 * the cold first request costs little more than the usual one at this width (1–1.5× on 2 cores),
 * so the figure without warmup is shown, not asserted.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeInferResponse, encodeBinaryInferRequest, INFERENCE_HEADER } from './support/ocr.js';
import { identityModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer } from './support/test-server.js';

const MODEL = fileURLToPath(new URL('../models/ocr_recognition/1/model.onnx', import.meta.url));
const WIDTH = 320;
const FOLLOWING = 20;
const OUTPUT = 'softmax_11.tmp_0';

const CONFIG = `
platform: onnxruntime_onnx
max_batch_size: 8
dynamic_batching: {}
input: [{ name: x, data_type: TYPE_FP32, dims: [3, 48, -1] }]
output: [{ name: softmax_11.tmp_0, data_type: TYPE_FP32, dims: [-1, 6625] }]
`;
const WARMUP = `
model_warmup:
  - name: line_320
    batch_size: 1
    inputs: { x: { data_type: TYPE_FP32, dims: [3, 48, ${WIDTH}], random_data: true } }
`;

/**
 * A repository holding the recogniser twice, as `ocr_warm` (with the warmup sample) and `ocr_cold`
 * (without), and an identity model whose requests, as large as the recogniser's answers, warm this
 * process's HTTP path before either loads.
 * The model file is copied: a link out of the repository is refused.
 */
async function writeRepository(repo: string): Promise<void> {
  for (const [name, config] of [['ocr_warm', CONFIG + WARMUP], ['ocr_cold', CONFIG]]) {
    await mkdir(join(repo, name, '1'), { recursive: true });
    await copyFile(MODEL, join(repo, name, '1', 'model.onnx'));
    await writeFile(join(repo, name, 'config.yaml'), config);
  }
  await writeModel(repo, 'tiny', 1, identityModel('float32'));
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return (sorted[(sorted.length - 1) >> 1] + sorted[sorted.length >> 1]) / 2;
}

async function timedInfer(url: string, model: string, input: { shape: number[]; data: Float32Array }, outputName: string): Promise<number> {
  const { body, headerLength } = encodeBinaryInferRequest(
    [{ name: model === 'tiny' ? 'INPUT0' : 'x', datatype: 'FP32', shape: input.shape, bytes: new Uint8Array(input.data.buffer) }],
    [{ name: outputName, parameters: { binary_data: true } }],
  );
  const started = performance.now();
  const response = await fetch(`${url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', [INFERENCE_HEADER]: String(headerLength) },
    body: new Uint8Array(body),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  const elapsed = performance.now() - started;
  assert.equal(response.status, 200, bytes.toString('utf8'));
  decodeInferResponse(bytes, response.headers.get(INFERENCE_HEADER));
  return elapsed;
}

/** Loads `model` through the API, then times its first request and the `FOLLOWING` after it, one at a time. */
async function firstAndFollowing(url: string, model: string): Promise<{ first: number; following: number[] }> {
  const load = await fetch(`${url}/v2/repository/models/${model}/load`, { method: 'POST', body: '{}' });
  assert.equal(load.status, 200, await load.text());
  const line = { shape: [1, 3, 48, WIDTH], data: new Float32Array(3 * 48 * WIDTH).map(() => Math.random() * 2 - 1) };
  const first = await timedInfer(url, model, line, OUTPUT);
  const following: number[] = [];
  for (let index = 0; index < FOLLOWING; index++) following.push(await timedInfer(url, model, line, OUTPUT));
  return { first, following };
}

test(`with model_warmup at width ${WIDTH}, the first request after load is no slower than the median of the next ${FOLLOWING}; without, it is measured and shown`, async (t) => {
  const served = await startTestServer({ models: writeRepository, server: { modelControlMode: 'explicit', loadModels: ['tiny'] } });
  t.after(() => served.close());
  // The process's HTTP and binary-tensor path is warmed first, with bodies and answers of the recogniser's size (1 MB answers),
  // so that the first figures are the model's own.
  const large = { shape: [1, (WIDTH / 8) * 6625], data: new Float32Array((WIDTH / 8) * 6625) };
  for (let index = 0; index < 30; index++) await timedInfer(served.url, 'tiny', large, 'OUTPUT0');
  // The warmed model goes first: what remains cold in this process counts against it, not for it.
  // Loaded twice (the second load is a reload, warmup included): a first request that met the machine's other work once is not
  // taken for a cold one.
  const warmedLoads = [await firstAndFollowing(served.url, 'ocr_warm'), await firstAndFollowing(served.url, 'ocr_warm')];
  const warmed = { first: Math.min(...warmedLoads.map((run) => run.first)), following: warmedLoads.flatMap((run) => run.following) };
  const cold = await firstAndFollowing(served.url, 'ocr_cold');
  const report = (label: string, run: { first: number; following: number[] }) =>
    `${label}: first ${run.first.toFixed(1)} ms, median of the next ${run.following.length} ${median(run.following).toFixed(1)} ms (${(run.first / median(run.following)).toFixed(2)}×)`;
  console.log(report('with warmup', warmed));
  console.log(report('without warmup', cold));
  assert.ok(warmed.first <= 3 * median(warmed.following), report('with warmup', warmed));
  // Warmup runs are not requests: the statistics, which a reload of the same version keeps counting, hold only the 2 × 21 sent.
  const stats = (await (await fetch(`${served.url}/v2/models/ocr_warm/stats`)).json()) as { model_stats: { inference_count: number }[] };
  assert.equal(stats.model_stats[0].inference_count, 2 * (1 + FOLLOWING));
});
