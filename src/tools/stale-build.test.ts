import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { staleBuildWarning } from './stale-build.js';

test('a build older than a source file is named with that file; a fresh build or an installed package (no src/) says nothing', async () => {
  const root = await mkdtemp(join(tmpdir(), 'nereid-stale-build-'));
  try {
    await mkdir(join(root, 'dist'));
    await mkdir(join(root, 'src', 'model'), { recursive: true });
    await writeFile(join(root, 'dist', 'cli.js'), '');
    assert.equal(staleBuildWarning(root), undefined, 'src/ without files');
    await writeFile(join(root, 'src', 'model', 'model-version.ts'), '');
    const built = new Date('2026-12-01T10:00:00Z');
    await utimes(join(root, 'dist', 'cli.js'), built, built);
    await utimes(join(root, 'src', 'model', 'model-version.ts'), new Date('2026-12-01T09:00:00Z'), new Date('2026-12-01T09:00:00Z'));
    assert.equal(staleBuildWarning(root), undefined, 'built after the last change');
    await utimes(join(root, 'src', 'model', 'model-version.ts'), new Date('2026-12-01T11:00:00Z'), new Date('2026-12-01T11:00:00Z'));
    assert.match(staleBuildWarning(root) ?? '', /dist\/ was built before src\/model\/model-version\.ts last changed.*npm run build/);
    await utimes(join(root, 'src', 'model', 'model-version.ts'), new Date('2026-12-01T09:00:00Z'), new Date('2026-12-01T09:00:00Z'));
    await writeFile(join(root, 'src', 'model', 'model-version.test.ts'), '');
    assert.equal(staleBuildWarning(root), undefined, 'only a test changed since the build, and tests are not built');
    await rm(join(root, 'src'), { recursive: true });
    assert.equal(staleBuildWarning(root), undefined, 'an installed package');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
