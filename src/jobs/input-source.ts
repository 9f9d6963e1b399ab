/**
 * The input of a batch job, read lazily and always in the same order (so a rerun, and chunk
 * numbering in a distributed job, see the same records): a folder of images (recursively, sorted
 * by path), a JSONL file (one record per non-blank line) or a CSV file (header row, then one
 * record per row). Nothing is held beyond what the caller asks for next.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { parse as parseCsv, type CsvError } from 'csv-parse';
import { invalidArgument } from '../core/errors.js';
import type { JobRecord, RecordId } from './job-record.js';

export type InputFormat = 'images' | 'jsonl' | 'csv';

/** A record not yet loaded: its id is known, its bytes are read by `load()`. */
export interface InputRecord {
  id: RecordId;
  load(): Promise<JobRecord>;
}

export interface InputSource {
  format: InputFormat;
  path: string;
  /** Records in the input, read errors included (one pass over the file for JSONL and CSV). */
  count(): Promise<number>;
  /** Records in input order. */
  records(): AsyncIterable<InputRecord>;
  /** Files in an image folder that are not images (by extension) and are left out. */
  ignoredFiles: number;
}

export interface InputOptions {
  /** CSV: put every numeric column of a row into this one input, in column order. */
  csvInput?: string;
}

export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif']);
const JSONL_EXTENSIONS: ReadonlySet<string> = new Set(['.jsonl', '.ndjson']);

export async function openInput(path: string, options: InputOptions = {}): Promise<InputSource> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    throw invalidArgument(`input '${path}' cannot be read: ${(error as Error).message}`);
  }
  if (info.isDirectory()) return imageFolder(path);
  const extension = extname(path).toLowerCase();
  if (JSONL_EXTENSIONS.has(extension)) return jsonlFile(path);
  if (extension === '.csv') return csvFile(path, options.csvInput);
  throw invalidArgument(`input '${path}' must be a folder of images, a .jsonl file or a .csv file`);
}

/** Every file under `root`, as sorted relative paths with '/' separators. */
async function listFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      const full = join(dir, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(full).catch(() => undefined);
        isDir = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? true; // a dangling link is reported as an unreadable record
      }
      if (isDir) await walk(full);
      else if (isFile) found.push(relative(root, full).split(sep).join('/'));
    }
  };
  await walk(root);
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

async function imageFolder(root: string): Promise<InputSource> {
  const files = await listFiles(root);
  const images = files.filter((file) => IMAGE_EXTENSIONS.has(extname(file).toLowerCase()));
  return {
    format: 'images',
    path: root,
    ignoredFiles: files.length - images.length,
    count: async () => images.length,
    async *records() {
      for (const file of images) {
        yield {
          id: file,
          load: async (): Promise<JobRecord> => {
            try {
              return { id: file, image: await readFile(join(root, file)) };
            } catch (error) {
              return { id: file, error: `cannot read the file: ${(error as Error).message}` };
            }
          },
        };
      }
    },
  };
}

async function* jsonlLines(path: string): AsyncGenerator<{ line: number; text: string }> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let number = 0;
  for await (const text of lines) {
    number += 1;
    if (text.trim() !== '') yield { line: number, text };
  }
}

function jsonlFile(path: string): InputSource {
  return {
    format: 'jsonl',
    path,
    ignoredFiles: 0,
    async count() {
      let count = 0;
      for await (const _ of jsonlLines(path)) count += 1;
      return count;
    },
    async *records() {
      for await (const { line, text } of jsonlLines(path)) {
        const record: JobRecord = { id: line, json: text };
        yield { id: line, load: async () => record };
      }
    },
  };
}

type CsvRow = { line: number; cells: string[] } | { line: number; error: string };

/**
 * The rows of a CSV file, header included, each with the line it ends on. A row the parser
 * rejects (wrong number of fields, a quote never closed) comes out as an error in its place.
 */
async function* csvRows(path: string): AsyncGenerator<CsvRow> {
  const skipped: { line: number; error: string }[] = [];
  const parser = createReadStream(path).pipe(
    parseCsv({ bom: true, skip_empty_lines: true, skip_records_with_error: true, info: true }),
  );
  parser.on('skip', (error: CsvError & { lines?: number }) => skipped.push({ line: error.lines ?? 0, error: error.message }));
  for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
    while (skipped.length > 0 && skipped[0].line < info.lines) yield skipped.shift()!;
    yield { line: info.lines, cells: record };
  }
  yield* skipped;
}

const isNumber = (cell: string) => cell.trim() !== '' && Number.isFinite(Number(cell));

function csvFile(path: string, csvInput: string | undefined): InputSource {
  let numericColumns: number[] | undefined;
  /** With --csv-input, a column is numeric when most of its non-empty cells are numbers (a stray bad cell fails only its row). */
  const findNumericColumns = async (): Promise<number[]> => {
    if (numericColumns) return numericColumns;
    let header: string[] | undefined;
    let numbers: number[] = [];
    let filled: number[] = [];
    for await (const row of csvRows(path)) {
      if (!('cells' in row)) continue;
      if (!header) {
        header = row.cells;
        numbers = header.map(() => 0);
        filled = header.map(() => 0);
        continue;
      }
      row.cells.forEach((cell, index) => {
        if (cell.trim() === '') return;
        filled[index] += 1;
        if (isNumber(cell)) numbers[index] += 1;
      });
    }
    numericColumns = numbers.flatMap((count, index) => (count > 0 && count * 2 > filled[index] ? [index] : []));
    return numericColumns;
  };
  return {
    format: 'csv',
    path,
    ignoredFiles: 0,
    async count() {
      let sawHeader = false;
      let count = 0;
      for await (const row of csvRows(path)) {
        if ('cells' in row && !sawHeader) sawHeader = true;
        else count += 1;
      }
      return count;
    },
    async *records() {
      const columns = csvInput ? await findNumericColumns() : [];
      let header: string[] | undefined;
      for await (const row of csvRows(path)) {
        const id = row.line;
        let record: JobRecord;
        if ('error' in row) {
          record = { id, error: `malformed CSV row: ${row.error}` };
        } else if (!header) {
          header = row.cells;
          continue;
        } else if (csvInput) {
          const values = columns.map((index) => row.cells[index]);
          const bad = columns.findIndex((index) => !isNumber(row.cells[index] ?? ''));
          record =
            bad >= 0
              ? { id, error: `column '${header[columns[bad]]}' is ${JSON.stringify(row.cells[columns[bad]])}, not a number` }
              : { id, fields: { [csvInput]: values } };
        } else {
          const fields: Record<string, string> = {};
          header.forEach((name, index) => (fields[name] = row.cells[index]));
          record = { id, fields };
        }
        const loaded = record;
        yield { id, load: async () => loaded };
      }
    },
  };
}
