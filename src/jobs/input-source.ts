/**
 * The input of a batch job, read lazily and always in the same order (so a rerun, and chunk
 * numbering in a distributed job, see the same records): a folder of images (recursively, sorted
 * by path), a JSONL file (one record per non-blank line), a CSV file (header row, then one
 * record per row), either gzipped, or a Parquet file (one record per row, a row group at a time).
 * Nothing is held beyond what the caller asks for next.
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { parse as parseCsv, type CsvError } from 'csv-parse';
import { invalidArgument } from '../core/errors.js';
import { optionKeyName, type SettingName } from '../core/options.js';
import { parseExactJson, stringifyExactJson } from '../protocol/v2-json.js';
import { boundCsvRecords, type TooLongRecord } from './csv-record-bound.js';
import { contentExtension, inputBytes } from './input-bytes.js';
import type { InputFormat, InputSource, JobRecord, RecordId } from './job-record.js';
import { parquetFile } from './parquet-input.js';
import { columnIndexes, idAndCarriedColumns, labelIndexIn, RESERVED_CSV_COLUMNS, SeenIds, type RecordColumns } from './record-columns.js';

export type { InputFormat, InputRecord, InputSource } from './job-record.js';

/** The ids of a source's records, in input order. */
export async function* idsOf(source: InputSource): AsyncGenerator<RecordId> {
  for await (const record of source.records()) yield record.id;
}

export interface InputOptions {
  /** CSV: put every numeric column of a row into this one input, in column order (but the id, label and pass-through ones: see RESERVED_CSV_COLUMNS). */
  csvInput?: string;
  /** CSV columns (or JSONL object fields) that are the model's inputs; default: all but the id and pass-through ones. */
  inputColumns?: readonly string[];
  /** The CSV column (or JSONL field) whose value is the record's id, instead of its line number. */
  idColumn?: string;
  /** CSV columns (or JSONL fields) copied into each output line as they are, e.g. a label. */
  passThrough?: readonly string[];
  /** The CSV or Parquet column read as each record's label when the file has it (see RecordColumns); a JSONL line keeps its label field. */
  labelColumn?: string;
  /** How messages name these options (default: as their keys; `nereid batch` passes its flags' names). */
  settingName?: SettingName;
}

export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif']);
const JSONL_EXTENSIONS: ReadonlySet<string> = new Set(['.jsonl', '.ndjson']);
const DATA_EXTENSIONS: ReadonlySet<string> = new Set([...JSONL_EXTENSIONS, '.csv', '.parquet']);

export async function openInput(path: string, options: InputOptions = {}): Promise<InputSource> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    // The system's message repeats the path (ENOENT: no such file or directory, stat '…'): said once, in words.
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file or folder' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw invalidArgument(`input '${path}' cannot be read: ${why}`);
  }
  const extension = contentExtension(path);
  const kind = info.isDirectory() ? 'images' : JSONL_EXTENSIONS.has(extension) ? 'jsonl' : extension === '.csv' ? 'csv' : extension === '.parquet' ? 'parquet' : undefined;
  refuseFlagsNotFor(path, kind, options);
  if (info.isDirectory()) return imageFolder(path);
  const columns: RecordColumns = { idColumn: options.idColumn, passThrough: options.passThrough ?? [], inputColumns: options.inputColumns, labelColumn: options.labelColumn, settingName: options.settingName ?? optionKeyName };
  if (kind === 'jsonl') return countedOnce(jsonlFile(path, columns));
  if (kind === 'csv') return countedOnce(csvFile(path, options.csvInput, columns));
  // Compressed inside (its pages), not around: a gzipped Parquet file would be read whole to find its footer.
  if (kind === 'parquet' && !path.toLowerCase().endsWith('.gz')) return parquetFile(path, options.csvInput, columns);
  throw invalidArgument(
    `input '${path}' must be a folder of images, a .jsonl file, a .csv file (either may be gzipped: .jsonl.gz, .csv.gz) or a .parquet file${kind === 'parquet' ? ' (not gzipped: Parquet compresses its own pages; gunzip it first)' : ''}`,
  );
}

/**
 * Refuses a flag that the input's kind has no use for: ignored, it would leave the user believing it applied (a label
 * carried through, ids taken from a column), or fail every record for a reason that does not name it.
 */
function refuseFlagsNotFor(path: string, kind: InputFormat | undefined, options: InputOptions): void {
  if (kind === undefined || kind === 'csv' || kind === 'parquet') return;
  const named = options.settingName ?? optionKeyName;
  const given: [keyof InputOptions, unknown][] = [
    ['csvInput', options.csvInput],
    ['inputColumns', options.inputColumns],
    ['idColumn', options.idColumn],
    ['passThrough', options.passThrough],
  ];
  const kindOf = { images: `a folder of images, whose records are its files (each one image, its id its path in the folder)`, jsonl: 'a JSONL file' }[kind];
  for (const [key, value] of given) {
    // A library caller's empty list or string asks nothing of the input, as a flag left out.
    if (value === undefined || value === '' || (Array.isArray(value) && value.length === 0)) continue;
    const setting = named(key);
    if (kind === 'images') throw invalidArgument(`${setting} is for a JSONL, CSV or Parquet input, and the input ${path} is ${kindOf}: leave ${setting} out`);
    if (key === 'csvInput') throw invalidArgument(`${setting} is for a CSV or Parquet input, and the input ${path} is ${kindOf}, whose lines name their inputs as fields (${named('inputColumns')} picks them): leave ${setting} out`);
  }
}

/** A file's records are counted by reading it whole: a job asks more than once (to check a resumed output, then for its progress). */
function countedOnce(source: InputSource): InputSource {
  let counted: Promise<number> | undefined;
  const count = source.count;
  return { ...source, count: () => (counted ??= count()) };
}

/** A folder entry, of the kind of what it names once symbolic links are followed. */
export interface FollowedEntry {
  name: string;
  isDirectory(): boolean;
  isFile(): boolean;
}

/**
 * A folder's entries, a symbolic link taking the kind of what it points to: folders and files linked in from
 * elsewhere are read, not left out unsaid. A dangling link counts as a file, so that reading it names it.
 */
export async function entriesFollowingLinks(dir: string): Promise<FollowedEntry[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return Promise.all(
    entries.map(async (entry) => {
      if (!entry.isSymbolicLink()) return entry;
      const target = await stat(join(dir, entry.name)).catch(() => undefined);
      const isDirectory = target?.isDirectory() ?? false;
      const isFile = target?.isFile() ?? true;
      return { name: entry.name, isDirectory: () => isDirectory, isFile: () => isFile };
    }),
  );
}

/** Every file under `root`, as sorted relative paths with '/' separators. */
async function listFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  // Real paths of the folders walked: a link back up the tree (a cycle) or to a folder already read is not read again.
  const visited = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    const real = await realpath(dir);
    if (visited.has(real)) return;
    visited.add(real);
    // A dangling link counts as a file: it is reported as an unreadable record.
    for (const entry of await entriesFollowingLinks(dir)) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) found.push(relative(root, full).split(sep).join('/'));
    }
  };
  await walk(root);
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

async function imageFolder(root: string): Promise<InputSource> {
  const files = await listFiles(root);
  const images = files.filter((file) => IMAGE_EXTENSIONS.has(extname(file).toLowerCase()));
  // A dataset split into files (train-00000-of-00004.parquet, …) is not a folder of images: said, not run as no records.
  const dataFiles = images.length === 0 ? files.filter((file) => DATA_EXTENSIONS.has(contentExtension(file))) : [];
  if (dataFiles.length > 0) {
    throw invalidArgument(
      `input ${root} is a folder, which a job reads as images, and it holds no image but ${dataFiles.length} data file(s) (${dataFiles.slice(0, 3).join(', ')}${dataFiles.length > 3 ? ', …' : ''}): ` +
        'give each file as the input of a run of its own',
    );
  }
  return {
    format: 'images',
    path: root,
    ignoredFiles: files.length - images.length,
    count: async () => images.length,
    async *records() {
      for (const file of images) {
        yield {
          id: file,
          bytes: await stat(join(root, file)).then((found) => found.size, () => 0),
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

/**
 * The most bytes one JSONL line or CSV row may hold: as much as one HTTP request body may (the HTTP front end's
 * default). A longer one is that record's error, its bytes dropped as they pass, so a file with no line breaks (a binary
 * file named .jsonl or .csv, a dump on one line) costs no more memory than one record.
 */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;

/** Why a record longer than MAX_RECORD_BYTES was not read; `what` names it ("line 3"). */
const recordTooLong = (what: string, bytes: number) => `${what} holds ${bytes} bytes, more than the ${MAX_RECORD_BYTES} one record may (as much as one HTTP request body); it was not read`;

type JsonlLine = { line: number; text: string } | { line: number; tooLong: number };

async function* jsonlLines(path: string, maxLineBytes = MAX_RECORD_BYTES): AsyncGenerator<JsonlLine> {
  let number = 0;
  let parts: Buffer[] = [];
  let size = 0;
  const finished = (): JsonlLine | undefined => {
    number += 1;
    const line = size > maxLineBytes ? ({ line: number, tooLong: size } as const) : lineText(number, Buffer.concat(parts));
    parts = [];
    size = 0;
    return line;
  };
  for await (const chunk of inputBytes(path) as AsyncIterable<Buffer>) {
    for (let start = 0; start < chunk.length; ) {
      const end = chunk.indexOf(0x0a, start);
      const piece = chunk.subarray(start, end === -1 ? chunk.length : end);
      size += piece.length;
      if (size <= maxLineBytes) parts.push(piece);
      else parts = [];
      if (end === -1) break;
      const line = finished();
      if (line) yield line;
      start = end + 1;
    }
  }
  if (size > 0) {
    const line = finished();
    if (line) yield line;
  }
}

/** A line's text, its CR (of a CRLF file) and a first line's UTF-8 byte order mark left out; undefined when blank. */
function lineText(number: number, bytes: Buffer): JsonlLine | undefined {
  let text = bytes.toString('utf8');
  if (text.endsWith('\r')) text = text.slice(0, -1);
  // A UTF-8 byte order mark (as some editors write) is no part of the first record, as in a CSV file.
  if (number === 1 && text.startsWith('\uFEFF')) text = text.slice(1);
  return text.trim() === '' ? undefined : { line: number, text };
}

/**
 * A JSONL line with an id field, pass-through fields or chosen input fields: an object of named
 * fields, split into the record's id, what it carries through and the fields that are inputs.
 * Lines stay unparsed (as the processor reads them) when none of these is asked for.
 */
function splitJsonlLine(line: number, text: string, columns: RecordColumns, ids: SeenIds): JobRecord {
  let value: unknown;
  try {
    value = parseExactJson(Buffer.from(text, 'utf8'), `line ${line}`);
  } catch (error) {
    return { id: line, error: (error as Error).message };
  }
  if (!value || typeof value !== 'object' || Array.isArray(value) || 'inputs' in value) {
    return { id: line, error: `${columns.settingName('idColumn')}, ${columns.settingName('passThrough')} and ${columns.settingName('inputColumns')} need each line to be an object of named fields, e.g. {"id": "a", "x": [1, 2]}` };
  }
  const object = value as Record<string, unknown>;
  // A queued chunk is plain JSON, which has no bigint: a carried integer beyond 2^53 keeps its digits as a string.
  const carry = (item: unknown): unknown => JSON.parse(JSON.stringify(item ?? null, (_key, nested: unknown) => (typeof nested === 'bigint' ? nested.toString() : nested)));
  const passThrough = columns.passThrough.length > 0 ? Object.fromEntries(columns.passThrough.map((name) => [name, carry(object[name])])) : undefined;
  let id: RecordId = line;
  if (columns.idColumn !== undefined) {
    // A field that is missing is a misspelt --id-column more often than an empty value: said as such.
    if (!Object.hasOwn(object, columns.idColumn)) return { id: line, error: `the line has no field '${columns.idColumn}' (${columns.settingName('idColumn')})`, passThrough };
    const checked = ids.check(object[columns.idColumn], columns.idColumn, `line ${line}`);
    if ('error' in checked) return { id: line, error: checked.error, passThrough };
    id = checked.id;
  }
  const notInputs = new Set([columns.idColumn, ...columns.passThrough]);
  const inputs = columns.inputColumns
    ? Object.fromEntries(columns.inputColumns.map((name) => [name, object[name]]))
    : Object.fromEntries(Object.entries(object).filter(([name]) => !notInputs.has(name)));
  const missing = columns.inputColumns?.find((name) => object[name] === undefined);
  if (missing !== undefined) return { id, error: `the line has no field '${missing}' (${columns.settingName('inputColumns')})`, passThrough };
  return { id, json: stringifyExactJson(inputs, `line ${line}`), ...(passThrough ? { passThrough } : {}) };
}

function jsonlFile(path: string, columns: RecordColumns): InputSource {
  const split = columns.idColumn !== undefined || columns.passThrough.length > 0 || columns.inputColumns !== undefined;
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
      const ids = new SeenIds();
      for await (const found of jsonlLines(path)) {
        if ('tooLong' in found) {
          const error = recordTooLong(`line ${found.line}`, found.tooLong);
          yield { id: found.line, bytes: 0, load: async () => ({ id: found.line, error }) };
          continue;
        }
        const { line, text } = found;
        const record: JobRecord = split ? splitJsonlLine(line, text, columns, ids) : { id: line, json: text };
        yield { id: record.id, bytes: Buffer.byteLength(text), load: async () => record };
      }
    },
  };
}

type CsvRow = { line: number; cells: string[] } | { line: number; error: string };

/**
 * The rows of a CSV file, header included, each with the line it ends on. A row the parser
 * rejects (wrong number of fields, a quote never closed) comes out as an error in its place, and so does one longer
 * than a record may be (`maxRecordBytes`), its bytes never held.
 */
async function* csvRows(path: string, maxRecordBytes = MAX_RECORD_BYTES): AsyncGenerator<CsvRow> {
  const errors: { line: number; error: string }[] = [];
  const tooLong: TooLongRecord[] = [];
  const bytes = Readable.from(boundCsvRecords(inputBytes(path), maxRecordBytes, tooLong));
  const parser = bytes.pipe(parseCsv({ bom: true, skip_empty_lines: true, skip_records_with_error: true, info: true }));
  // pipe() does not pass on a failure of its source (a gzip file cut short): the rows would just stop.
  bytes.on('error', (error) => parser.destroy(error));
  // One bad row can raise several errors (a stray quote, then the wrong number of fields): it is one record, with both.
  let lastErrorLine = -1;
  parser.on('skip', (error: CsvError & { lines?: number }) => {
    const line = error.lines ?? 0;
    const previous = errors.at(-1);
    if (previous?.line === line) previous.error += `; ${error.message}`;
    else if (line !== lastErrorLine) errors.push({ line, error: `malformed CSV row: ${error.message}` });
  });
  // The parser's errors and the rows held back for their size, in line order, up to `line` (or all).
  function* failedBefore(line = Infinity): Generator<CsvRow> {
    for (;;) {
      const parsed = errors[0]?.line ?? Infinity;
      const long = tooLong[0]?.line ?? Infinity;
      if (Math.min(parsed, long) >= line || (parsed === Infinity && long === Infinity)) return;
      if (parsed <= long) {
        const row = errors.shift()!;
        lastErrorLine = row.line;
        yield row;
      } else {
        const row = tooLong.shift()!;
        yield { line: row.line, error: recordTooLong(`the row ending on line ${row.line}`, row.bytes) };
      }
    }
  }
  for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
    yield* failedBefore(info.lines);
    yield { line: info.lines, cells: record };
  }
  yield* failedBefore();
}

const isNumber = (cell: string) => cell.trim() !== '' && Number.isFinite(Number(cell));

function csvFile(path: string, csvInput: string | undefined, selected: RecordColumns): InputSource {
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
    async fieldColumns() {
      if (csvInput !== undefined) return undefined;
      for await (const row of csvRows(path)) {
        if (!('cells' in row)) continue;
        const header = row.cells;
        const { idIndex, carried } = idAndCarriedColumns(header, selected, 'the CSV header');
        const notInputs = new Set([idIndex, ...carried, labelIndexIn(header, selected)]);
        return selected.inputColumns ? [...selected.inputColumns] : header.filter((_, index) => !notInputs.has(index));
      }
      return undefined; // no header: no records, nothing to refuse
    },
    async *records() {
      const ids = new SeenIds();
      let header: string[] | undefined;
      let idIndex: number | undefined;
      let carried: number[] = [];
      let labelIndex: number | undefined;
      let inputs: number[] = [];
      for await (const row of csvRows(path)) {
        let id: RecordId = row.line;
        let record: JobRecord;
        if ('error' in row) {
          record = { id, error: row.error };
        } else if (!header) {
          header = row.cells;
          ({ idIndex, carried } = idAndCarriedColumns(header, selected, 'the CSV header'));
          labelIndex = labelIndexIn(header, selected);
          // A numeric id or label is not a feature: only the columns chosen, or all the others, are inputs; with
          // --csv-input, a column named id or label is not one either, though no flag names it.
          const reserved = csvInput ? header.flatMap((name, index) => (RESERVED_CSV_COLUMNS.test(name.trim()) ? [index] : [])) : [];
          const notInputs = new Set([idIndex, ...carried, ...reserved, labelIndex]);
          inputs = selected.inputColumns
            ? columnIndexes(header, selected.inputColumns, selected.settingName('inputColumns'), 'the CSV header')
            : (csvInput ? await findNumericColumns() : header.map((_, index) => index)).filter((index) => !notInputs.has(index));
          continue;
        } else {
          const cells = row.cells;
          const passThrough = carried.length > 0 ? Object.fromEntries(carried.map((index) => [header![index], cells[index] ?? null])) : undefined;
          const checked = idIndex === undefined ? { id } : ids.check(cells[idIndex], header[idIndex]!, `line ${row.line}`);
          if ('id' in checked) id = checked.id;
          const bad = csvInput ? inputs.findIndex((index) => !isNumber(cells[index] ?? '')) : -1;
          record =
            'error' in checked
              ? { id, error: checked.error }
              : bad >= 0
                ? { id, error: `column '${header[inputs[bad]!]}' is ${JSON.stringify(cells[inputs[bad]!])}, not a number` }
                : csvInput
                  ? { id, fields: { [csvInput]: inputs.map((index) => cells[index]!) } }
                  : { id, fields: Object.fromEntries(inputs.map((index) => [header![index], cells[index]!])) };
          if (passThrough) record.passThrough = passThrough;
          if (labelIndex !== undefined) record.label = cells[labelIndex];
        }
        const loaded = record;
        // A row's size ends a queued chunk sooner as an image's does (--chunk-max-mib).
        yield { id, bytes: 'cells' in row ? row.cells.reduce((sum, cell) => sum + Buffer.byteLength(cell), 0) : 0, load: async () => loaded };
      }
    },
  };
}
