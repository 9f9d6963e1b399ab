import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseModelConfig } from '../config/model-config.js';
import { BuiltinBackend } from './builtin-backend.js';

const backend = new BuiltinBackend();
const configWith = (parameters: Record<string, string>) =>
  parseModelConfig({
    backend: 'builtin',
    max_batch_size: 0,
    input: [{ name: 'image', data_type: 'TYPE_STRING', dims: [1] }],
    output: [{ name: 'text', data_type: 'TYPE_STRING', dims: [-1] }],
    parameters,
  }, 'config.yaml');

test('a builtin model runs a handler of the package, picked by name: never a path the config gives', () => {
  const path = backend.builtinModelPath(configWith({ handler: 'ocr' }));
  assert.ok(existsSync(path), path);
  assert.equal(relative(dirname(fileURLToPath(import.meta.url)), path).startsWith('ocr'), true, path);
  assert.throws(() => backend.builtinModelPath(configWith({ handler: '../../tmp/evil' })), /parameter handler '..\/..\/tmp\/evil' is not a built-in handler \(there are: ocr\)/);
  assert.throws(() => backend.builtinModelPath(configWith({ handler: 'toString' })), /is not a built-in handler/);
  assert.throws(() => backend.checkConfig(configWith({})), /names its handler in its parameters \(handler: one of ocr\)/);
});

test("the ocr handler's settings are checked at load, and name the models it calls", () => {
  assert.deepEqual(backend.stepModels(configWith({ handler: 'ocr' })), ['ocr_detection', 'ocr_direction', 'ocr_recognition']);
  assert.deepEqual(backend.stepModels(configWith({ handler: 'ocr', direction_model: 'none' })), ['ocr_detection', 'ocr_recognition']);
  assert.throws(() => backend.checkConfig(configWith({ handler: 'ocr', det_db_thresh: 'lots' })), /parameters\.det_db_thresh: must be a number, got 'lots'/);
  assert.throws(() => backend.checkConfig(configWith({ handler: 'ocr', det_limit_type: 'sideways' })), /parameters\.det_limit_type: must be 'max' or 'min'/);
});
