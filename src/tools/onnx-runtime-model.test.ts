/**
 * quantize, profile and monitor read a model's ONNX file: a model another backend serves is refused from its config,
 * naming its backend, before it loads (a javascript handler's code never runs), instead of failing on a missing file.
 */
import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { runQuantize } from '../quantize/index.js';
import { runMonitor, runProfile } from './index.js';

const silent = pino({ level: 'silent' });
let folder: string;
let repo: string;
let data: string;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'nereid-onnx-only-'));
  repo = join(folder, 'models');
  data = join(folder, 'in.jsonl');
  const tensor = '{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }';
  const io = `max_batch_size: 8\ninput [ ${tensor} ]\noutput [ ${tensor.replace('IN', 'OUT')} ]\n`;
  await mkdir(join(repo, 'handler', '1'), { recursive: true });
  await writeFile(join(repo, 'handler', 'config.pbtxt'), `backend: "javascript"\n${io}`);
  // Were it loaded, its code would leave a file behind.
  await writeFile(join(repo, 'handler', '1', 'model.mjs'), `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(join(folder, 'ran'))}, 'ran');\nexport function execute(requests) { return requests.map(() => ({})); }\n`);
  await mkdir(join(repo, 'graph', '1'), { recursive: true });
  await writeFile(join(repo, 'graph', 'config.pbtxt'), `backend: "tfjs"\n${io}`);
  await writeFile(data, Array.from({ length: 60 }, (_, index) => JSON.stringify({ IN: [index, index, index, index] })).join('\n') + '\n');
});
after(() => rm(folder, { recursive: true, force: true }));

for (const [model, backend] of [['handler', 'javascript'], ['graph', 'tfjs']] as const) {
  test(`a ${backend} model is refused by quantize, profile and monitor, naming its backend`, async () => {
    const refusal = new RegExp(`model '${model}' is served by backend '${backend}'; .*works on models of backend 'onnxruntime' only`);
    await assert.rejects(runQuantize({ modelRepository: repo, model, calibration: data }, silent), /quantize rewrites ONNX files/);
    await assert.rejects(runQuantize({ modelRepository: repo, model, calibration: data }, silent), refusal);
    await assert.rejects(runProfile({ modelRepository: repo, model, data }, silent), refusal);
    await assert.rejects(runMonitor({ modelRepository: repo, model, data }, silent), refusal);
    await assert.rejects(access(join(folder, 'ran')), { code: 'ENOENT' });
  });
}
