import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { modelVersionsOnDisk } from './model-versions.js';

let repository: string;
before(async () => {
  repository = await mkdtemp(join(tmpdir(), 'nereid-versions-'));
  for (const version of ['10', '2', '1']) await mkdir(join(repository, 'garments', version), { recursive: true });
  await mkdir(join(repository, 'text'));
});
after(() => rm(repository, { recursive: true, force: true }));

test("a model's version folders, in numeric order", async () => {
  assert.deepEqual(await modelVersionsOnDisk(repository, 'garments'), [1, 2, 10]);
});

test('a model the repository lacks is refused naming the models it has', async () => {
  await assert.rejects(modelVersionsOnDisk(repository, 'shoes'), { message: `no model 'shoes' in the repository ${repository} (it has garments, text)` });
});

test('a repository that does not exist is said to be missing, not to hold no models', async () => {
  const missing = join(repository, 'nowhere');
  await assert.rejects(modelVersionsOnDisk(missing, 'garments'), { message: `model repository '${missing}' does not exist (expected a folder holding one folder per model: <model>/<version>/model.onnx)` });
});
