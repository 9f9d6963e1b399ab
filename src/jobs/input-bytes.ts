/**
 * The bytes of a batch job's text input (JSONL, CSV), decompressed when the file is gzipped (`.jsonl.gz`, `.csv.gz`):
 * every reader of the input (its records, their count, the fingerprint a resumed output checks) sees the same text, so
 * a compressed input behaves as the plain file would.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { invalidArgument } from '../core/errors.js';

export const isGzipped = (path: string): boolean => extname(path).toLowerCase() === '.gz';

/** The extension that says what the input holds: `.csv` for `data.csv.gz`, as for `data.csv`. */
export function contentExtension(path: string): string {
  const name = basename(path);
  return extname(isGzipped(name) ? name.slice(0, -3) : name).toLowerCase();
}

/**
 * The input's text as a stream of bytes. A gzip file that is cut short (an interrupted download) or corrupt fails the
 * stream with an error naming the file and the compressed byte where the data went wrong, not zlib's bare
 * "unexpected end of file"; what was read before it was read as the plain file's records.
 */
export function inputBytes(path: string): Readable {
  if (!isGzipped(path)) return createReadStream(path);
  return Readable.from(gunzipped(path));
}

async function* gunzipped(path: string): AsyncGenerator<Buffer> {
  const gunzip = createGunzip();
  const file = createReadStream(path);
  file.on('error', (error) => gunzip.destroy(error));
  let text = 0;
  try {
    for await (const chunk of file.pipe(gunzip) as AsyncIterable<Buffer>) {
      text += chunk.length;
      yield chunk;
    }
  } catch (error) {
    const zlibCode = (error as NodeJS.ErrnoException).code;
    if (typeof zlibCode !== 'string' || !zlibCode.startsWith('Z_')) throw error;
    const size = await stat(path).then((found) => found.size, () => undefined);
    // bytesWritten counts the compressed bytes the decompressor took in: where it stopped understanding them.
    const at = gunzip.bytesWritten;
    const cutShort = zlibCode === 'Z_BUF_ERROR';
    throw invalidArgument(
      `input ${path} is not a whole gzip file: ${cutShort ? 'it ends in the middle of its compressed data' : `its compressed data is corrupt (${(error as Error).message})`} ` +
        `at byte ${at}${size === undefined ? '' : ` of ${size}`}, after ${text} byte(s) of text; ` +
        `${cutShort ? 'a file cut short (an interrupted download or copy): fetch it again' : 'fetch or write it again'} (gzip -t ${path} checks a file). ` +
        'The output keeps the records it holds, and the same command resumes once the file is whole',
    );
  } finally {
    file.destroy();
    gunzip.destroy();
  }
}
