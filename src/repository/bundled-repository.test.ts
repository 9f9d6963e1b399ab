import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { BUNDLED_REPOSITORY, isBundledRepository, prepareBundledRepository } from './bundled-repository.js';

test('the bundled repository is recognised by a relative path and through a symlink, and no other folder is', async (t) => {
  const scratch = await mkdtemp(join(tmpdir(), 'nereid-bundled-'));
  t.after(() => rm(scratch, { recursive: true, force: true }));
  await symlink(BUNDLED_REPOSITORY, join(scratch, 'linked'));
  assert.equal(await isBundledRepository(relative(process.cwd(), BUNDLED_REPOSITORY) || '.'), true);
  assert.equal(await isBundledRepository(join(scratch, 'linked')), true);
  assert.equal(await isBundledRepository(scratch), false);
  assert.equal(await isBundledRepository(join(scratch, 'missing')), false);
});

test('preparing the bundled repository puts the files dependencies ship in place, and copies nothing the second time', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => done(void lines.push(JSON.parse(String(chunk)).msg)) }));
  await prepareBundledRepository(logger);
  assert.ok(existsSync(join(BUNDLED_REPOSITORY, 'ocr_detection', '1', 'model.onnx')));
  lines.length = 0;
  await prepareBundledRepository(logger);
  assert.deepEqual(lines, []);
});
