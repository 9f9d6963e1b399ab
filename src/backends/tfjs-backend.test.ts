/**
 * The TF.js backend: the shared BackendInstance suite on both TF.js backends (wasm and cpu), run
 * against graph models that compute what its generated ONNX models compute, then what is its own:
 * the signature read from model.json, weights read from shards, and shards outside the model's
 * folder refused.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseModelConfig } from '../config/model-config.js';
import { backendInstanceConformance, TEST_INSTANCE_OPTIONS } from './backend-instance.case.js';
import { TfjsBackend } from './tfjs-backend.js';
import { tfjsAddSubModel, tfjsAffineModel, tfjsIdentityModel, writeTfjsModel, type TfjsModelFiles } from './tfjs-test-models.js';

const backend = new TfjsBackend();
let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'nereid-tfjs-backend-'));
});
after(async () => rm(root, { recursive: true, force: true }));

let made = 0;
const configFor = (engine: string) => parseModelConfig({ backend: 'tfjs', parameters: { tfjs_backend: engine } }, 'test config');

/** The suite names ONNX files; each becomes the graph model that computes what that model computes. */
function tfjsModelFor(onnxPath: string): TfjsModelFiles {
  const model = basename(onnxPath, '.onnx');
  if (model === 'addsub') return tfjsAddSubModel();
  if (model === 'identity_bool') return tfjsIdentityModel('DT_BOOL');
  if (model === 'identity_string') return tfjsIdentityModel('DT_STRING');
  throw new Error(`no TF.js model for ${model}`);
}

const UNSUPPORTED = { float16: 'TF.js has no float16 tensors (it computes halves as float32)', int64: 'TF.js has no int64 tensors (it computes them as int32)' };

for (const engine of ['wasm', 'cpu']) {
  backendInstanceConformance(
    `TF.js (${engine}) instance`,
    async (modelPath) => backend.createInstance(await writeTfjsModel(join(root, String(made++)), tfjsModelFor(modelPath)), configFor(engine), TEST_INSTANCE_OPTIONS),
    { unsupported: UNSUPPORTED, describe: async (modelPath) => backend.describe(await writeTfjsModel(join(root, String(made++)), tfjsModelFor(modelPath))) },
  );
}

describe('TfjsBackend beyond the shared suite', () => {
  test('describe reads inputs and outputs from model.json, without starting TF.js', async () => {
    const path = await writeTfjsModel(join(root, String(made++)), tfjsAddSubModel());
    const int32Rows = (...names: string[]) => names.map((name) => ({ name, datatype: 'INT32', shape: [-1, 16] }));
    assert.deepEqual(await backend.describe(path), { inputs: int32Rows('INPUT0', 'INPUT1'), outputs: int32Rows('OUTPUT0', 'OUTPUT1') });
  });

  test('weights come from the shard the manifest names', async () => {
    const path = await writeTfjsModel(join(root, String(made++)), tfjsAffineModel([1, 2, 3, 4], [0.5, -1, 0, 10]));
    const instance = await backend.createInstance(path, configFor('wasm'), TEST_INSTANCE_OPTIONS);
    try {
      const { y } = await instance.run({ x: { datatype: 'FP32', shape: [2, 4], data: Float32Array.from([1, 1, 1, 1, 2, -2, 0.5, 0]) } }, ['y']);
      assert.deepEqual(y.shape, [2, 4]);
      assert.deepEqual(Array.from(y.data as Float32Array), [1.5, 1, 3, 14, 2.5, -5, 1.5, 10]);
    } finally {
      await instance.release();
    }
  });

  test("a weights path out of the model's folder is refused, by name, whether by '..' or by a link", async () => {
    const secret = join(root, 'secret.bin');
    await writeFile(secret, new Uint8Array(32));
    const escaping = await writeTfjsModel(join(root, String(made++)), { ...tfjsAffineModel([1, 1, 1, 1], [0, 0, 0, 0], '../secret.bin') });
    await assert.rejects(backend.createInstance(escaping, configFor('cpu'), TEST_INSTANCE_OPTIONS), /weights path '\.\.\/secret\.bin' in model\.json must be a relative path inside the model's folder/);
    const folder = join(root, String(made++));
    const linked = await writeTfjsModel(folder, tfjsAffineModel([1, 1, 1, 1], [0, 0, 0, 0], 'linked.bin'));
    await symlink(secret, join(folder, 'linked.bin'));
    await assert.rejects(backend.createInstance(linked, configFor('cpu'), TEST_INSTANCE_OPTIONS), /weights file 'linked\.bin' named in model\.json is a link out of the model's folder/);
  });

  test('a weight shard cut short is refused before TF.js reads it, naming the file, its size and the size the manifest needs', async () => {
    const files = tfjsAffineModel([1, 2, 3, 4], [0, 0, 0, 0]);
    const path = await writeTfjsModel(join(root, String(made++)), { ...files, 'weights.bin': (files['weights.bin'] as Uint8Array).slice(0, 20) });
    await assert.rejects(
      backend.createInstance(path, configFor('cpu'), TEST_INSTANCE_OPTIONS),
      /weights file 'weights\.bin' is 20 bytes, but model\.json's weightsManifest needs 32 bytes in it \(32 bytes for scale, bias\): it is truncated/,
    );
  });

  test('a layers model and an unknown tfjs_backend are refused with what is expected', async () => {
    const folder = join(root, String(made++));
    const path = await writeTfjsModel(folder, { 'model.json': JSON.stringify({ format: 'layers-model', modelTopology: {} }) });
    await assert.rejects(backend.describe(path), /is a TF\.js 'layers-model'; the tfjs backend serves graph models/);
    assert.throws(() => backend.checkConfig(configFor('gpu')), /tfjs_backend: must be 'wasm' or 'cpu', got 'gpu'/);
  });
});
