/**
 * The bound on a CSV record's bytes: records end where csv-parse ends them (quoted line breaks and "" inside quotes,
 * across chunk boundaries), a longer one leaves only its line breaks, and the bytes around it pass unchanged.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'csv-parse/sync';
import { boundCsvRecords, type TooLongRecord } from './csv-record-bound.js';

/** `text` cut into chunks of `size` bytes and bounded at `max`; what passes, and what was held back. */
async function bounded(text: string, max: number, size: number): Promise<{ text: string; tooLong: TooLongRecord[] }> {
  const bytes = Buffer.from(text);
  const chunks = async function* () {
    for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
  };
  const tooLong: TooLongRecord[] = [];
  const out: Buffer[] = [];
  for await (const chunk of boundCsvRecords(chunks(), max, tooLong)) out.push(chunk);
  return { text: Buffer.concat(out).toString(), tooLong };
}

const lines = (text: string) => (parse(text, { skip_empty_lines: true, info: true, relax_column_count: true }) as unknown as { record: string[]; info: { lines: number } }[]).map(({ record, info }) => [info.lines, record]);

test('records within the bound pass unchanged, whatever the chunks; quoted line breaks, doubled quotes and CRLF included', async () => {
  const text = 'x,y\r\n"a\r\nb ""c"", d",2\r\n3,"4"\r\n"",5';
  for (const size of [1, 2, 3, 7, 100]) assert.deepEqual(await bounded(text, 100, size), { text, tooLong: [] }, `chunks of ${size}`);
});

test('a longer record leaves its line breaks, as written, so the records after it keep their line numbers', async () => {
  const long = `"${'z'.repeat(30)}\n${'z'.repeat(30)}",1`;
  const text = `x,y\n1,2\n${long}\n3,4\n"q""\n",5\n`;
  for (const size of [1, 5, 16, 1000]) {
    const { text: passed, tooLong } = await bounded(text, 40, size);
    assert.deepEqual(tooLong, [{ line: 4, bytes: Buffer.byteLength(long) }], `chunks of ${size}`);
    assert.equal(passed, 'x,y\n1,2\n\n\n3,4\n"q""\n",5\n', `chunks of ${size}`);
    assert.deepEqual(lines(passed), [[1, ['x', 'y']], [2, ['1', '2']], [5, ['3', '4']], [7, ['q"\n', '5']]]);
    assert.deepEqual(lines(text).filter(([line]) => line !== 4), lines(passed), 'the other records as the whole file gives them');
  }
  const crlf = await bounded(`x\r\n${'z'.repeat(50)}\r\n1\r\n`, 10, 8);
  assert.deepEqual(crlf, { text: 'x\r\n\r\n1\r\n', tooLong: [{ line: 2, bytes: 50 }] });
  // The last record, with no line break after it; a quote inside an unquoted field opens nothing.
  assert.deepEqual(await bounded(`x\n${'z'.repeat(50)}`, 10, 8), { text: 'x\n', tooLong: [{ line: 2, bytes: 50 }] });
  assert.deepEqual(await bounded('x\na"b\n1\n', 10, 2), { text: 'x\na"b\n1\n', tooLong: [] });
});
