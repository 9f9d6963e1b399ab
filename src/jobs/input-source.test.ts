/**
 * Inputs are read in a fixed order with stable ids: sorted image paths, JSONL line numbers,
 * CSV line numbers with malformed rows in their place.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openInput, type InputSource } from './input-source.js';

let dir: string;
before(async () => (dir = await mkdtemp(join(tmpdir(), 'nereid-input-'))));
after(() => rm(dir, { recursive: true, force: true }));

async function all(source: InputSource) {
  const records = [];
  for await (const record of source.records()) records.push(await record.load());
  return records;
}

test('an image folder: recursive, sorted, non-images left out', async () => {
  const folder = join(dir, 'images');
  await mkdir(join(folder, 'b'), { recursive: true });
  await writeFile(join(folder, 'b', '2.PNG'), 'x');
  await writeFile(join(folder, 'a.jpg'), 'y');
  await writeFile(join(folder, 'readme.txt'), 'z');
  const source = await openInput(folder);
  assert.equal(source.format, 'images');
  assert.equal(source.ignoredFiles, 1);
  assert.equal(await source.count(), 2);
  assert.deepEqual((await all(source)).map((record) => [record.id, record.image?.toString()]), [['a.jpg', 'y'], ['b/2.PNG', 'x']]);
});

test('JSONL: one record per non-blank line, its id the line number', async () => {
  const path = join(dir, 'in.jsonl');
  await writeFile(path, '{"a":1}\n\n  \n{"a":2}\n');
  const source = await openInput(path);
  assert.equal(await source.count(), 2);
  assert.deepEqual((await all(source)).map((record) => [record.id, record.json]), [[1, '{"a":1}'], [4, '{"a":2}']]);
});

test('CSV: rows by line, a wrong-length row and an unclosed quote become errors in place', async () => {
  const path = join(dir, 'in.csv');
  await writeFile(path, 'x,y\n1,2\n3\n"4\n5",6\n7,"8\n');
  const source = await openInput(path);
  assert.equal(await source.count(), 4);
  const records = await all(source);
  assert.deepEqual(records.map((record) => record.id), [2, 3, 5, 6]);
  assert.deepEqual(records[0].fields, { x: '1', y: '2' });
  assert.match(records[1].error!, /malformed CSV row: .*expect 2, got 1/);
  assert.deepEqual(records[2].fields, { x: '4\n5', y: '6' });
  assert.match(records[3].error!, /malformed CSV row: Quote Not Closed/);
});

test('CSV: a row with a stray quote is one record with both of its errors, counted once', async () => {
  const path = join(dir, 'stray.csv');
  await writeFile(path, 'id,x,y\n1,"0 1","2 3"\n100,"0 1 2,"0 1 2"\n3,"4 5","6 7"\n');
  const source = await openInput(path);
  assert.equal(await source.count(), 3);
  const records = await all(source);
  assert.deepEqual(records.map((record) => record.id), [2, 3, 4]);
  assert.match(records[1].error!, /^malformed CSV row: Invalid Closing Quote: .*; Invalid Record Length: expect 3, got 2 on line 3$/);
});

test('CSV with --csv-input: the mostly numeric columns, in order', async () => {
  const path = join(dir, 'wide.csv');
  await writeFile(path, 'name,a,b,c\nfirst,1,2,3\nsecond,4,oops,6\nthird,7,8,9\n');
  const records = await all(await openInput(path, { csvInput: 'v' }));
  assert.deepEqual(records[0].fields, { v: ['1', '2', '3'] });
  assert.match(records[1].error!, /column 'b' is "oops", not a number/);
});

test('other files are refused with what is accepted', async () => {
  await writeFile(join(dir, 'data.parquet'), '');
  await assert.rejects(openInput(join(dir, 'data.parquet')), /must be a folder of images, a \.jsonl file or a \.csv file/);
});

test('a JSONL file that starts with a UTF-8 byte order mark reads its first record as the others', async () => {
  const path = join(dir, 'bom.jsonl');
  await writeFile(path, '\uFEFF{"id": "a", "x": [1]}\n{"id": "b", "x": [2]}\n');
  const records = await all(await openInput(path, { idColumn: 'id' }));
  assert.deepEqual(records.map((record) => [record.id, record.error]), [['a', undefined], ['b', undefined]]);
});

test('a folder link that loops back up the tree is read once, not once per turn of the loop', async () => {
  const folder = join(dir, 'loop');
  await mkdir(join(folder, 'sub'), { recursive: true });
  await writeFile(join(folder, 'a.png'), 'x');
  await writeFile(join(folder, 'sub', 'b.png'), 'y');
  await symlink('..', join(folder, 'sub', 'up'));
  const records = await all(await openInput(folder));
  assert.deepEqual(records.map((record) => record.id), ['a.png', 'sub/b.png']);
});

test('a flag the input kind has no use for is refused, naming it and why, not silently ignored', async () => {
  const folder = join(dir, 'flag-images');
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'a.png'), 'x');
  const jsonl = join(dir, 'flags.jsonl');
  await writeFile(jsonl, '{"INPUT0":[1]}\n');
  const refused = async (path: string, options: Parameters<typeof openInput>[1], pattern: RegExp) =>
    assert.rejects(openInput(path, options), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, pattern);
      return true;
    });
  await refused(folder, { idColumn: 'foo' }, /^--id-column is for a JSONL or CSV input, and the input .*flag-images is a folder of images, whose records are its files .*: leave --id-column out$/);
  await refused(folder, { passThrough: ['bar'] }, /^--pass-through is for a JSONL or CSV input/);
  await refused(folder, { csvInput: 'baz' }, /^--csv-input is for a JSONL or CSV input/);
  await refused(folder, { inputColumns: ['x'] }, /^--input-columns is for a JSONL or CSV input/);
  await refused(jsonl, { csvInput: 'INPUT0' }, /^--csv-input is for a CSV input, and the input .*flags\.jsonl is a JSONL file/);
  // What a JSONL input does use stays accepted.
  assert.equal((await openInput(jsonl, { inputColumns: ['INPUT0'] })).format, 'jsonl');
  // A library caller's empty values ask nothing of the input: not refused as if the flags were given.
  assert.equal((await openInput(folder, { passThrough: [], inputColumns: [], idColumn: '', csvInput: '' })).format, 'images');
});
