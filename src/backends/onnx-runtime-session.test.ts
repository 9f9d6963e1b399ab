import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { OnnxSession, type SessionSpec } from './onnx-runtime-session.js';

test("a session that cannot open rejects with ONNX Runtime's reason, awaited (as it must be once onnxruntime-node's binding loads asynchronously, from 1.31), never left unhandled", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-ort-session-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const modelPath = join(dir, 'model.onnx');
  await writeFile(modelPath, 'not a model');
  const spec: SessionSpec = { modelPath, options: {}, providers: ['cpu'], deviceId: 0 };
  // A function that threw at once (as open did on 1.30's synchronous binding) fails assert.rejects.
  await assert.rejects(
    () => OnnxSession.open(spec, () => assert.fail('CPU has nothing to fall back from')),
    /^Error: ONNX Runtime [\d.]+ cannot load model file .*model\.onnx: Protobuf parsing failed/,
  );
});
