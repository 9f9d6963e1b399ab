/**
 * folderStamps, which decides whether a load may change a version's instances in place: it must change whenever a file
 * the model reads changes (hidden ones, those beside a linked model file), stay equal when only the config does, and
 * never be equal for a folder it cannot see whole.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { folderStamps } from './model-fingerprint.js';

const CONFIGS: ReadonlySet<string> = new Set(['config.pbtxt']);

test('folderStamps: equal while only the config changes; different when a model file, a hidden file or a file beside a linked model file changes; never equal for a folder too deep to see whole', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'nereid-stamps-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const model = join(root, 'm');
  await mkdir(join(model, '1'), { recursive: true });
  await writeFile(join(model, '1', 'model.onnx'), 'weights v1');
  await writeFile(join(model, 'config.pbtxt'), 'instance_group [{ count: 1 }]');
  const first = await folderStamps(model, CONFIGS);
  await writeFile(join(model, 'config.pbtxt'), 'instance_group [{ count: 2 }]');
  assert.equal(await folderStamps(model, CONFIGS), first, 'the config is not one of the files compared');

  await writeFile(join(model, '1', 'model.onnx'), 'weights v2 written');
  const second = await folderStamps(model, CONFIGS);
  assert.notEqual(second, first, 'a model file written');

  await writeFile(join(model, '.hidden'), 'an editor swap file');
  const third = await folderStamps(model, CONFIGS);
  assert.notEqual(third, second, 'a hidden file counts');

  // Version 2's model file links to a file elsewhere, whose external data lies beside it.
  const shared = join(root, 'shared');
  await mkdir(shared);
  await writeFile(join(shared, 'model.onnx'), 'graph');
  await writeFile(join(shared, 'weights.bin'), 'data v1');
  await mkdir(join(model, '2'));
  await symlink(join(shared, 'model.onnx'), join(model, '2', 'model.onnx'));
  const linked = await folderStamps(model, CONFIGS);
  await writeFile(join(shared, 'weights.bin'), 'data v2, longer');
  assert.notEqual(await folderStamps(model, CONFIGS), linked, 'a file beside the linked model file counts');

  await mkdir(join(model, 'a', 'b', 'c', 'd', 'e'), { recursive: true });
  await writeFile(join(model, 'a', 'b', 'c', 'd', 'e', 'deep.bin'), 'out of sight');
  assert.notEqual(await folderStamps(model, CONFIGS), await folderStamps(model, CONFIGS), 'a folder not seen whole never stamps equal');
});
