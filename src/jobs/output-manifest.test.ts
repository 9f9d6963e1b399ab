/**
 * Replacing a job's files whole: the folder's flush after the rename is best-effort, since some filesystems refuse to
 * flush a folder (procfs here, as some FUSE and network mounts and Windows do), and a job must still start there. The
 * flags a job records, which a rerun must match.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { answerOptionsOf, syncFolder } from './output-manifest.js';

test('a folder whose filesystem refuses to flush it (EINVAL) is let be; a folder that is not there is still an error', { skip: process.platform !== 'linux' && 'needs procfs' }, async () => {
  await syncFolder('/proc');
  await assert.rejects(syncFolder('/no/such/folder/here'), { code: 'ENOENT' });
});
test("an empty list is recorded as the flag left out, so a rerun without it is the same job's", () => {
  assert.deepEqual(answerOptionsOf({ model: 'm', passThrough: [], inputColumns: [] }), answerOptionsOf({ model: 'm' }));
});
