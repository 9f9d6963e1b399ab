import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { writeFashionMnistPngs } from '../../test/support/fashion-mnist.js';
import { HF_IMAGE_SCHEMA, writeParquet } from '../../test/support/parquet-fixtures.js';
import { identityModel, writeModel } from '../onnx/test-models.js';
import { createServer } from '../server/create-server.js';
import type { Server } from '../server/server.js';
import { readModelInputs } from './model-inputs.js';

const MODELS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models');
let work: string;
let server: Server;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'nereid-model-inputs-'));
  server = await createServer({ modelRepository: MODELS, modelControlMode: 'explicit', loadModels: ['fashion_mnist'], logger: pino({ level: 'silent' }) });
  await server.start();
});

after(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

test('images go through the model pre-processing; past the limit they are taken evenly, so every class folder is represented', async () => {
  // 30 images in three class folders, listed class by class.
  await writeFashionMnistPngs(join(work, 'images'), 't10k', 30, (label) => `class${label % 3}`);
  const model = server.model('fashion_mnist');
  const read = await readModelInputs(join(work, 'images'), 6, server, 'fashion_mnist', model.config);
  assert.equal(read.feeds.length, 6);
  assert.deepEqual(read.feeds[0].image.dims, [1, 1, 28, 28]);
  assert.deepEqual(new Set(read.ids.map((id) => String(id).split('/')[0])), new Set(['class0', 'class1', 'class2']));
  assert.equal(read.images?.length, 6);
  const all = await readModelInputs(join(work, 'images'), 100, server, 'fashion_mnist', model.config);
  assert.equal(all.feeds.length, 30);
  assert.match(all.sha256, /^[0-9a-f]{64}$/);
  await assert.rejects(readModelInputs(join(work, 'x.jsonl'), 5, server, 'fashion_mnist', model.config, '--calibration'), /^Error: --calibration: input '.*x\.jsonl' cannot be read/);
  // The same images as a Parquet file in Hugging Face's layout: the same tensors, by row.
  const files = all.ids;
  const parquet = await writeParquet(join(work, 'images.parquet'), [
    { name: 'image', data: await Promise.all(files.map(async (file) => ({ bytes: new Uint8Array(await readFile(join(work, 'images', String(file)))), path: String(file) }))) },
    { name: 'label', data: files.map(() => 0n) },
  ], { schema: HF_IMAGE_SCHEMA });
  const rows = await readModelInputs(parquet, 100, server, 'fashion_mnist', model.config);
  assert.deepEqual(rows.ids, files.map((_, index) => index));
  assert.deepEqual(rows.feeds.map((feed) => Array.from(feed.image.data as Float32Array)), all.feeds.map((feed) => Array.from(feed.image.data as Float32Array)));
  assert.equal(rows.images?.length, 30);
});

test('JSONL records become the tensors nereid batch would send, and a bad record names itself', async () => {
  const repository = join(work, 'repo');
  await writeModel(repository, 'pick', 1, identityModel('float32'), 'max_batch_size: 4\ninput { name: "INPUT0" data_type: TYPE_FP32 dims: [3] }\noutput { name: "OUTPUT0" data_type: TYPE_FP32 dims: [3] }\n');
  const local = await createServer({ modelRepository: repository, modelControlMode: 'explicit', loadModels: ['pick'], logger: pino({ level: 'silent' }) });
  await local.start();
  try {
    const path = join(work, 'rows.jsonl');
    await writeFile(path, '{"INPUT0": [1, 2, 3]}\n{"INPUT0": [4, 5, 6]}\n');
    const read = await readModelInputs(path, 10, local, 'pick', local.model('pick').config);
    assert.deepEqual(read.feeds.map((feed) => Array.from(feed.INPUT0.data as Float32Array)), [[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(read.ids, [1, 2]);
    assert.equal(read.images, undefined);
    await writeFile(path, '{"INPUT0": [1, 2, 3]}\n{"INPUT0": [4, 5]}\n');
    await assert.rejects(readModelInputs(path, 10, local, 'pick', local.model('pick').config), /--data .*rows\.jsonl, record 2: input 'INPUT0' expects/);
    // A record in the V2 form names its own shape: one the model, served, refuses is refused here too (quantize calibrates on these).
    await writeFile(path, '{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}\n');
    await assert.rejects(readModelInputs(path, 10, local, 'pick', local.model('pick').config, '--calibration'), /--calibration .*rows\.jsonl, record 1: input 'INPUT0' expects FP32 \[-1,3\], got FP32 \[1,4\]/);
  } finally {
    await local.close();
  }
});
