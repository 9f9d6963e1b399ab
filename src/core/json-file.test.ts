import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readJsonFile } from './json-file.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nereid-json-file-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const options = { shownAs: 'm/1/record.json', maxBytes: 64, kind: 'a record' };

test('a file within its bound is parsed; one over it, not JSON, or missing is refused naming it as shown, never by its path here', async () => {
  const path = join(dir, 'record.json');
  await writeFile(path, '{"a":[1,2]}');
  assert.deepEqual(await readJsonFile(path, options), { a: [1, 2] });
  await writeFile(path, JSON.stringify({ padding: 'x'.repeat(64) }));
  await assert.rejects(readJsonFile(path, options), { message: 'm/1/record.json is 78 bytes; a record is at most 64' });
  await writeFile(path, '{"a":');
  await assert.rejects(readJsonFile(path, options), (error: Error) => {
    assert.match(error.message, /^m\/1\/record\.json is not valid JSON: /);
    assert.ok(error.cause instanceof SyntaxError, "the parser's error is the cause");
    return true;
  });
  await assert.rejects(readJsonFile(join(dir, 'absent.json'), options), (error: NodeJS.ErrnoException) => {
    assert.equal(error.message, 'cannot read m/1/record.json: ENOENT');
    assert.equal(error.code, 'ENOENT', 'the code stays, so a caller can tell a file that is not there');
    assert.equal((error.cause as NodeJS.ErrnoException).path, join(dir, 'absent.json'));
    return true;
  });
});
