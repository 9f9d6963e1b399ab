/**
 * Inputs are read in a fixed order with stable ids: sorted image paths, JSONL line numbers,
 * CSV line numbers with malformed rows in their place, Parquet row indexes; gzipped text as the plain file.
 */
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { HF_IMAGE_SCHEMA, schemaOf, writeParquet } from '../../test/support/parquet-fixtures.js';
import { MAX_RECORD_BYTES, openInput, type InputSource } from './input-source.js';

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

test('CSV and Parquet label columns are the records\' labels, never inputs', async () => {
  const csv = join(dir, 'labelled.csv');
  await writeFile(csv, 'x,label\n1,cat\n2,dog\n');
  const source = await openInput(csv, { labelColumn: 'label' });
  assert.deepEqual(await source.fieldColumns?.(), ['x']);
  assert.deepEqual((await all(source)).map((record) => [record.fields, record.label]), [[{ x: '1' }, 'cat'], [{ x: '2' }, 'dog']]);
  const parquet = await writeParquet(join(dir, 'labelled.parquet'), [{ name: 'x', data: [1, 2] }, { name: 'label', data: ['cat', 'dog'] }], { schema: schemaOf({ x: 'DOUBLE', label: 'STRING' }) });
  const rows = await openInput(parquet, { labelColumn: 'label' });
  assert.deepEqual(await rows.fieldColumns?.(), ['x']);
  assert.deepEqual((await all(rows)).map((record) => [record.json, record.label]), [['{"x":1}', 'cat'], ['{"x":2}', 'dog']]);
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

test('a folder of data files and no image (a dataset split in Parquet files) is refused, asking for a job per file', async () => {
  const split = join(dir, 'split');
  await mkdir(split, { recursive: true });
  await writeFile(join(split, 'train-00000-of-00002.parquet'), '');
  await writeFile(join(split, 'train-00001-of-00002.parquet'), '');
  await writeFile(join(split, 'README.md'), '');
  await assert.rejects(openInput(split), /^NereidError: input .*split is a folder, which a job reads as images, and it holds no image but 2 data file\(s\) \(train-00000-of-00002\.parquet, train-00001-of-00002\.parquet\): give each file as the input of a run of its own$/);
});

test('other files are refused with what is accepted; a gzipped Parquet file is told to be gunzipped', async () => {
  await writeFile(join(dir, 'data.xlsx'), '');
  await writeFile(join(dir, 'data.parquet.gz'), '');
  await assert.rejects(openInput(join(dir, 'data.xlsx')), /must be a folder of images, a \.jsonl file, a \.csv file \(either may be gzipped: \.jsonl\.gz, \.csv\.gz\) or a \.parquet file$/);
  await assert.rejects(openInput(join(dir, 'data.parquet.gz')), /or a \.parquet file \(not gzipped: Parquet compresses its own pages; gunzip it first\)$/);
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
  await refused(folder, { idColumn: 'foo' }, /^idColumn is for a JSONL, CSV or Parquet input, and the input .*flag-images is a folder of images, whose records are its files .*: leave idColumn out$/);
  await refused(folder, { passThrough: ['bar'] }, /^passThrough is for a JSONL, CSV or Parquet input/);
  await refused(folder, { csvInput: 'baz' }, /^csvInput is for a JSONL, CSV or Parquet input/);
  await refused(folder, { inputColumns: ['x'] }, /^inputColumns is for a JSONL, CSV or Parquet input/);
  await refused(jsonl, { csvInput: 'INPUT0' }, /^csvInput is for a CSV or Parquet input, and the input .*flags\.jsonl is a JSONL file/);
  // What a JSONL input does use stays accepted.
  assert.equal((await openInput(jsonl, { inputColumns: ['INPUT0'] })).format, 'jsonl');
  // A library caller's empty values ask nothing of the input: not refused as if the flags were given.
  assert.equal((await openInput(folder, { passThrough: [], inputColumns: [], idColumn: '', csvInput: '' })).format, 'images');
});

test('Parquet in the Hugging Face image layout: a record per row, read a row group at a time, each the image of its struct; a row with only a path is its error', async () => {
  const images: { bytes: Uint8Array | null; path: string }[] = ['a', 'b', 'c', 'd', 'e'].map((text) => ({ bytes: new Uint8Array(Buffer.from(text)), path: `${text}.png` }));
  images[3] = { bytes: null, path: 'd.png' };
  const path = await writeParquet(join(dir, 'hf.parquet'), [
    { name: 'image', data: images },
    { name: 'label', data: [0n, 1n, 2n, 3n, 4n] },
  ], { schema: HF_IMAGE_SCHEMA, rowGroupSize: 2 });
  const source = await openInput(path, { passThrough: ['label'] });
  assert.equal(source.format, 'parquet');
  assert.equal(source.imageColumn, 'image');
  assert.equal(await source.count(), 5);
  const records = await all(source);
  assert.deepEqual(records.map((record) => [record.id, record.image?.toString(), record.passThrough]), [
    [0, 'a', { label: 0 }],
    [1, 'b', { label: 1 }],
    [2, 'c', { label: 2 }],
    [3, undefined, { label: 3 }],
    [4, 'e', { label: 4 }],
  ]);
  assert.match(records[3].error!, /^column 'image' holds no image bytes, only a path \(d\.png\): the images must be in the file/);
  assert.equal(await source.fieldColumns?.(), undefined, 'an image record has no fields to match to inputs');
  // Read as the label (as eval reads it): the int64 a number, beside the image, carried or not.
  const labelled = await all(await openInput(path, { labelColumn: 'label' }));
  assert.deepEqual(labelled.map((record) => [record.image?.toString(), record.label]), [['a', 0], ['b', 1], ['c', 2], [undefined, 3], ['e', 4]]);
  assert.equal((await all(await openInput(path, { labelColumn: 'class' })))[0].label, undefined, 'a file without the label column is unlabelled, not refused');
});

test('Parquet numbers: lists are tensors, scalars are values, INT64 beyond 2^53 keeps its digits; --id-column, --pass-through and --csv-input as for CSV', async () => {
  const path = await writeParquet(join(dir, 'numbers.parquet'), [
    { name: 'id', data: ['r1', 'r2'] },
    { name: 'x', data: [[1, 2], [3, 4.5]] },
    { name: 'big', data: [9007199254740993n, 1n] },
    { name: 'a', data: [1.5, 2] },
    { name: 'label', data: [7, 8] },
  ], { schema: schemaOf({ id: 'STRING', x: 'LIST<DOUBLE>', big: 'INT64', a: 'DOUBLE', label: 'INT32' }) });
  const named = await all(await openInput(path, { idColumn: 'id', passThrough: ['label'] }));
  assert.deepEqual(named.map((record) => [record.id, record.json, record.passThrough]), [
    ['r1', '{"x":[1,2],"big":9007199254740993,"a":1.5}', { label: 7 }],
    ['r2', '{"x":[3,4.5],"big":1,"a":2}', { label: 8 }],
  ]);
  // --csv-input: the number columns but id and label, in column order.
  const formed = await all(await openInput(path, { csvInput: 'v' }));
  assert.deepEqual(formed.map((record) => [record.id, record.json]), [[0, '{"v":[9007199254740993,1.5]}'], [1, '{"v":[1,2]}']]);
  await assert.rejects(openInput(path, { csvInput: 'v', inputColumns: ['a', 'x'] }), /^NereidError: inputColumns names column 'x' of .*numbers\.parquet, which is LIST<DOUBLE>: with csvInput: 'v', each column is one number of the input$/);
  await assert.rejects(openInput(path, { idColumn: 'nope' }), /idColumn names column 'nope', which .*numbers\.parquet does not have \(columns: id, x, big, a, label\)/);
});

test('Parquet columns no input takes are refused naming the column, its type and what is taken; two image columns ask which', async () => {
  const path = await writeParquet(join(dir, 'kinds.parquet'), [
    { name: 'when', data: [new Date(0)], type: 'TIMESTAMP' },
    { name: 'x', data: ['[1]'], type: 'JSON' },
    { name: 'photo', data: [new Uint8Array([1])], type: 'BYTE_ARRAY' },
    { name: 'scan', data: [new Uint8Array([2])], type: 'BYTE_ARRAY' },
  ]);
  await assert.rejects(openInput(path), /kinds\.parquet has 2 columns of encoded images \(photo BINARY, scan BINARY\), and a record is one image: name the one the model reads with inputColumns/);
  await assert.rejects(openInput(path, { inputColumns: ['when'] }), /inputColumns names column 'when' of .*, which is TIMESTAMP_MILLIS: input columns hold numbers, lists of numbers \(a tensor\), text, or encoded images/);
  const source = await openInput(path, { inputColumns: ['photo'] });
  assert.equal(source.imageColumn, 'photo');
  const tensors = await openInput(path, { passThrough: ['photo', 'scan'] });
  assert.throws(() => tensors.checkInputColumns!(['when']), /^NereidError: column 'when' of .*kinds\.parquet is TIMESTAMP_MILLIS, which no model input takes: input columns hold numbers/);
  assert.throws(() => tensors.checkInputColumns!(['x']), /column 'x' of .* is JSON, which no model input takes/);
  tensors.checkInputColumns!(['y']);
  assert.deepEqual((await all(tensors))[0].passThrough, { photo: 'AQ==', scan: 'Ag==' });
});

test('Parquet: a file cut short is refused for its missing footer; GZIP and ZSTD pages are read; LZO pages are refused naming the codec and column', async () => {
  const whole = await writeParquet(join(dir, 'whole.parquet'), [{ name: 'x', data: [[1, 2]] }], { schema: schemaOf({ x: 'LIST<INT32>' }), codec: 'GZIP', compressors: { GZIP: (input) => gzipSync(input) } });
  assert.deepEqual((await all(await openInput(whole))).map((record) => record.json), ['{"x":[1,2]}']);
  const bytes = await readFile(whole);
  const cut = join(dir, 'cut.parquet');
  await writeFile(cut, bytes.subarray(0, bytes.length - 20));
  await assert.rejects(openInput(cut), /^NereidError: input .*cut\.parquet is not a readable Parquet file \(.*\): it does not end with the footer every Parquet file ends with, as a file cut short .* does; fetch it again$/);
  // ZSTD (polars' default), compressed by the zstd command.
  const zstd = await writeParquet(join(dir, 'zstd.parquet'), [{ name: 'x', data: [[1, 2], [3, 4]] }], { schema: schemaOf({ x: 'LIST<INT32>' }), codec: 'ZSTD', compressors: { ZSTD: (input) => execFileSync('zstd', ['-q', '-c'], { input }) } });
  assert.deepEqual((await all(await openInput(zstd))).map((record) => record.json), ['{"x":[1,2]}', '{"x":[3,4]}']);
  // LZO, which no reader here has. The pages are stored as they are: the codec's name in the metadata is what a reader decides on.
  const lzo = await writeParquet(join(dir, 'lzo.parquet'), [{ name: 'x', data: [[1, 2]] }, { name: 'y', data: [1] }], { schema: schemaOf({ x: 'LIST<INT32>', y: 'INT32' }), codec: 'LZO', compressors: { LZO: (input) => input } });
  await assert.rejects(openInput(lzo), /lzo\.parquet is compressed with LZO \(columns x\.list\.element, y\), which nereid does not read: it reads Parquet pages uncompressed or compressed with SNAPPY, ZSTD, LZ4, LZ4_RAW, GZIP, BROTLI\. Write the file again/);
  // Only the columns read count.
  assert.equal((await openInput(lzo, { inputColumns: [] })).format, 'parquet');
});

test('a JSONL line longer than one request body is that record\'s error, not read; the lines around it, CRLF ends and blank lines are as before', async () => {
  const path = join(dir, 'one-huge-line.jsonl');
  await writeFile(path, Buffer.concat([Buffer.from('{"x": [1]}\r\n\n'), Buffer.alloc(MAX_RECORD_BYTES + 1, 0x78), Buffer.from('\n{"x": [2]}')]));
  const records = await all(await openInput(path));
  assert.deepEqual(records.map((record) => record.id), [1, 3, 4]);
  assert.deepEqual([records[0]!.json, records[2]!.json], ['{"x": [1]}', '{"x": [2]}']);
  assert.equal(records[1]!.error, `line 3 holds ${MAX_RECORD_BYTES + 1} bytes, more than the ${MAX_RECORD_BYTES} one record may (as much as one HTTP request body); it was not read`);
  await rm(path);
});

test('a CSV row longer than one request body is that record\'s error, not read; the rows after it keep their line numbers', async () => {
  const path = join(dir, 'one-huge-row.csv');
  // The huge row spans two lines (a quoted line break), as a pasted text cell would.
  const huge = Buffer.concat([Buffer.from('"'), Buffer.alloc(MAX_RECORD_BYTES, 0x78), Buffer.from('\ny",3')]);
  await writeFile(path, Buffer.concat([Buffer.from('x,y\n1,2\n'), huge, Buffer.from('\n4,5\n6\n')]));
  const source = await openInput(path);
  const records = await all(source);
  assert.deepEqual(records.map((record) => record.id), [2, 4, 5, 6]);
  assert.deepEqual([records[0]!.fields, records[2]!.fields], [{ x: '1', y: '2' }, { x: '4', y: '5' }]);
  assert.equal(records[1]!.error, `the row ending on line 4 holds ${huge.length} bytes, more than the ${MAX_RECORD_BYTES} one record may (as much as one HTTP request body); it was not read`);
  assert.match(records[3]!.error!, /^malformed CSV row: Invalid Record Length: expect 2, got 1 on line 6/);
  assert.equal(await source.count(), 4);
  await rm(path);
});

test('gzipped JSONL and CSV read as the plain files; one cut short fails its reading naming the file and the byte', async () => {
  const jsonl = '{"a":1}\n\n{"a":2}\n';
  const csv = 'x,y\n1,2\n3\n';
  await writeFile(join(dir, 'plain.jsonl'), jsonl);
  await writeFile(join(dir, 'packed.jsonl.gz'), gzipSync(jsonl));
  await writeFile(join(dir, 'plain.csv'), csv);
  await writeFile(join(dir, 'packed.CSV.GZ'), gzipSync(csv));
  const plainJsonl = await openInput(join(dir, 'plain.jsonl'));
  const packedJsonl = await openInput(join(dir, 'packed.jsonl.gz'));
  assert.equal(packedJsonl.format, 'jsonl');
  assert.equal(await packedJsonl.count(), 2);
  assert.deepEqual(await all(packedJsonl), await all(plainJsonl));
  const packedCsv = await openInput(join(dir, 'packed.CSV.GZ'));
  assert.equal(packedCsv.format, 'csv');
  assert.deepEqual(await all(packedCsv), await all(await openInput(join(dir, 'plain.csv'))));
  const long = gzipSync(Array.from({ length: 2000 }, (_, index) => `{"a":${index}}`).join('\n'));
  const cut = join(dir, 'cut.jsonl.gz');
  await writeFile(cut, long.subarray(0, 300));
  await assert.rejects(all(await openInput(cut)), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, /^input .*cut\.jsonl\.gz is not a whole gzip file: it ends in the middle of its compressed data at byte 300 of 300, after \d+ byte\(s\) of text; a file cut short/);
    return true;
  });
});
