/**
 * A Parquet file as a batch job's input: one record per row, its id the row's index (0-based, as pandas and
 * Hugging Face datasets count rows) or an --id-column's value, read a row group at a time so that a file of any size
 * holds only one group in memory. Columns map to inputs as a CSV file's do; a column of encoded images (bytes, or the
 * struct {bytes, path} Hugging Face datasets write) makes each record that image.
 */
import { brotliDecompressSync, unzipSync } from 'node:zlib';
import type { Compressors, FileMetaData, SchemaTree } from 'hyparquet';
import { compressors as parquetCompressors } from 'hyparquet-compressors';
import { invalidArgument } from '../core/errors.js';
import { stringifyExactJson } from '../protocol/v2-json.js';
import type { InputSource, JobRecord } from './job-record.js';
import { columnIndexes, idAndCarriedColumns, labelIndexIn, RESERVED_CSV_COLUMNS, SeenIds, type RecordColumns } from './record-columns.js';

/**
 * What a column holds, as a model input sees it: a number, a (nested) list of numbers, text, encoded images, or
 * something no input takes (a timestamp, a decimal, a map, a list of text…).
 */
type ColumnKind = 'number' | 'numbers' | 'text' | 'image' | 'other';

interface Column {
  name: string;
  kind: ColumnKind;
  /** Its type as a reader of the file would name it: INT64, LIST<FLOAT>, STRUCT<bytes: BINARY, path: STRING>. */
  type: string;
}

const ACCEPTED = 'input columns hold numbers, lists of numbers (a tensor), text, or encoded images (BINARY, or a struct {bytes, path} as Hugging Face datasets write them)';

/** Codecs read without a package of their own: hyparquet's (SNAPPY) and node:zlib's. */
// Node's zlib for GZIP and BROTLI (native); hyparquet-compressors for the codecs Node 20 lacks (polars writes ZSTD by
// default). SNAPPY is hyparquet's own.
const COMPRESSORS: Compressors = {
  ZSTD: parquetCompressors.ZSTD,
  LZ4: parquetCompressors.LZ4,
  LZ4_RAW: parquetCompressors.LZ4_RAW,
  GZIP: (input) => unzipSync(input),
  BROTLI: (input) => brotliDecompressSync(input),
};
const READABLE_CODECS: ReadonlySet<string> = new Set(['UNCOMPRESSED', 'SNAPPY', ...Object.keys(COMPRESSORS)]);

const NUMERIC_TYPES: ReadonlySet<string> = new Set(['BOOLEAN', 'INT32', 'INT64', 'FLOAT', 'DOUBLE']);
/** Annotations that make a number or bytes something else: a date, a decimal, JSON… */
const NOT_PLAIN = /^(DATE|TIME|TIMESTAMP|DECIMAL|INTERVAL|JSON|BSON|UUID|FLOAT16|GEOMETRY|GEOGRAPHY|VARIANT|MAP|MAP_KEY_VALUE)/;

function classify(node: SchemaTree): Omit<Column, 'name'> {
  const { type, converted_type: converted, logical_type: logical } = node.element;
  const annotation = logical?.type ?? converted;
  if (node.children.length === 0) {
    if (annotation === 'STRING' || annotation === 'UTF8' || annotation === 'ENUM') return { kind: 'text', type: 'STRING' };
    if (annotation !== undefined && NOT_PLAIN.test(annotation)) return { kind: 'other', type: annotation };
    const integer = logical?.type === 'INTEGER' ? `${logical.isSigned ? '' : 'U'}INT${logical.bitWidth}` : undefined;
    const leaf = type !== undefined && NUMERIC_TYPES.has(type) ? { kind: 'number' as const, type: integer ?? type } : type === 'BYTE_ARRAY' ? { kind: 'image' as const, type: 'BINARY' } : { kind: 'other' as const, type: type ?? 'unknown' };
    // A repeated leaf is a list written the old way (two levels).
    if (node.element.repetition_type !== 'REPEATED') return leaf;
    return { kind: leaf.kind === 'number' ? 'numbers' : 'other', type: `LIST<${leaf.type}>` };
  }
  if (annotation === 'LIST') {
    const repeated = node.children[0]!;
    const element = repeated.children.length === 1 ? repeated.children[0]! : repeated;
    const inner = classify(element);
    return { kind: inner.kind === 'number' || inner.kind === 'numbers' ? 'numbers' : 'other', type: `LIST<${inner.type}>` };
  }
  if (annotation !== undefined) return { kind: 'other', type: annotation };
  const fields = node.children.map((child) => ({ name: child.element.name, ...classify(child) }));
  const struct = `STRUCT<${fields.map((field) => `${field.name}: ${field.type}`).join(', ')}>`;
  // Hugging Face's Image feature: {bytes: binary, path: string}.
  return { kind: fields.some((field) => field.name === 'bytes' && field.type === 'BINARY') ? 'image' : 'other', type: struct };
}

/** A cell as JSON carries it: integers beyond 2^53 as their digits (a queued chunk is plain JSON), bytes as base64. */
function carried(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value ?? null, (_key, item: unknown) =>
      typeof item === 'bigint' ? (Number.isSafeInteger(Number(item)) ? Number(item) : item.toString()) : item instanceof Uint8Array ? Buffer.from(item).toString('base64') : item,
    ),
  );
}

/** The encoded image a cell holds (bytes, or a {bytes, path} struct), or why there is none. */
function imageOf(value: unknown, column: string): Buffer | string {
  const bytes = value instanceof Uint8Array ? value : (value as { bytes?: unknown } | null)?.bytes;
  if (bytes instanceof Uint8Array) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const path = (value as { path?: unknown } | null)?.path;
  return typeof path === 'string'
    ? `column '${column}' holds no image bytes, only a path (${path}): the images must be in the file (a Hugging Face dataset with its images embedded, as push_to_hub and to_parquet write)`
    : `column '${column}' is null: the row has no image`;
}

function unreadable(path: string, error: unknown): never {
  const message = (error as Error).message;
  const cutShort = /footer|too short|exceeds available buffer/.test(message);
  throw invalidArgument(
    `input ${path} is not a readable Parquet file (${message})` +
      (cutShort ? ': it does not end with the footer every Parquet file ends with, as a file cut short (an interrupted download or copy) does; fetch it again' : ''),
  );
}

export async function parquetFile(path: string, csvInput: string | undefined, selected: RecordColumns): Promise<InputSource> {
  // Loaded on use: a job over other inputs, and the library's core, never load the reader.
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } = await import('hyparquet');
  const file = await asyncBufferFromFile(path);
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (error) {
    unreadable(path, error);
  }
  const columns: Column[] = parquetSchema(metadata).children.map((node) => ({ name: node.element.name, ...classify(node) }));
  const names = columns.map((column) => column.name);
  const { idIndex, carried: carriedIndexes } = idAndCarriedColumns(names, selected, path);
  const refuse = (column: Column, flag: string, accepted: string) =>
    invalidArgument(`${flag} names column '${column.name}' of ${path}, which is ${column.type}: ${accepted}`);
  if (idIndex !== undefined && !['number', 'text'].includes(columns[idIndex]!.kind)) throw refuse(columns[idIndex]!, selected.settingName('idColumn'), 'an id column holds numbers or text');
  const labelIndex = labelIndexIn(names, selected);
  const notInputs = new Set([idIndex, ...carriedIndexes, labelIndex]);
  const reserved = csvInput ? columns.flatMap((column, index) => (RESERVED_CSV_COLUMNS.test(column.name.trim()) ? [index] : [])) : [];
  const chosen = selected.inputColumns ? columnIndexes(names, selected.inputColumns, selected.settingName('inputColumns'), path) : undefined;
  for (const index of chosen ?? []) {
    const column = columns[index]!;
    if (csvInput && column.kind !== 'number') throw refuse(column, selected.settingName('inputColumns'), `with ${selected.settingName('csvInput', csvInput)}, each column is one number of the input`);
    if (column.kind === 'other') throw refuse(column, selected.settingName('inputColumns'), ACCEPTED);
  }
  // With --csv-input, the number columns form the one input, as a CSV file's numeric columns do.
  const inputIndexes = chosen ?? columns.flatMap((column, index) => (notInputs.has(index) || reserved.includes(index) || (csvInput && column.kind !== 'number') ? [] : [index]));
  const images = csvInput ? [] : inputIndexes.filter((index) => columns[index]!.kind === 'image');
  if (images.length > 1) {
    throw invalidArgument(
      `${path} has ${images.length} columns of encoded images (${images.map((index) => `${names[index]} ${columns[index]!.type}`).join(', ')}), and a record is one image: name the one the model reads with ${selected.settingName('inputColumns')}`,
    );
  }
  const imageIndex = images[0];
  // Fields of kinds no input takes are left out of the records: a model that reads one is refused up front (checkInputColumns).
  const fieldIndexes = imageIndex !== undefined ? [] : inputIndexes.filter((index) => columns[index]!.kind !== 'other' && columns[index]!.kind !== 'image');
  const read = [...new Set([...(imageIndex !== undefined ? [imageIndex] : fieldIndexes), ...(idIndex !== undefined ? [idIndex] : []), ...carriedIndexes, ...(labelIndex !== undefined ? [labelIndex] : [])])].map((index) => names[index]!);
  refuseUnreadableCodecs(path, metadata, new Set(read));
  const describeColumns = () => columns.map((column) => `${column.name} ${column.type}`).join(', ');

  const recordOf = (row: Record<string, unknown>, index: number, ids: SeenIds): JobRecord => {
    const passThrough = carriedIndexes.length > 0 ? Object.fromEntries(carriedIndexes.map((at) => [names[at]!, carried(row[names[at]!])])) : undefined;
    const label = labelIndex !== undefined ? { label: carried(row[names[labelIndex]!]) } : {};
    const withCarried = (record: JobRecord): JobRecord => ({ ...record, ...(passThrough ? { passThrough } : {}), ...label });
    let id: JobRecord['id'] = index;
    if (idIndex !== undefined) {
      const checked = ids.check(row[names[idIndex]!], names[idIndex]!, `row ${index}`);
      if ('error' in checked) return withCarried({ id, error: checked.error });
      id = checked.id;
    }
    if (imageIndex !== undefined) {
      const image = imageOf(row[names[imageIndex]!], names[imageIndex]!);
      return withCarried(typeof image === 'string' ? { id, error: image } : { id, image });
    }
    if (csvInput) {
      const empty = fieldIndexes.find((at) => row[names[at]!] === null || row[names[at]!] === undefined);
      if (empty !== undefined) return withCarried({ id, error: `column '${names[empty]}' is null, not a number` });
      return withCarried({ id, json: stringifyExactJson({ [csvInput]: fieldIndexes.map((at) => row[names[at]!]) }, `row ${index}`) });
    }
    // A null cell is a missing field: an optional input is left out, a required one is the record's error.
    const fields = Object.fromEntries(fieldIndexes.flatMap((at) => (row[names[at]!] === null || row[names[at]!] === undefined ? [] : [[names[at]!, row[names[at]!]]])));
    return withCarried({ id, json: stringifyExactJson(fields, `row ${index}`) });
  };

  return {
    format: 'parquet',
    path,
    ignoredFiles: 0,
    count: async () => Number(metadata.num_rows),
    ...(imageIndex !== undefined ? { imageColumn: names[imageIndex] } : {}),
    describeColumns,
    columnNames: names,
    async fieldColumns() {
      return imageIndex !== undefined || csvInput !== undefined ? undefined : fieldIndexes.map((index) => names[index]!);
    },
    checkInputColumns(inputNames) {
      for (const index of inputIndexes) {
        const column = columns[index]!;
        const read = inputNames.some((name) => column.name === name || column.name.startsWith(`${name}.`));
        if (read && column.kind === 'other') throw invalidArgument(`column '${column.name}' of ${path} is ${column.type}, which no model input takes: ${ACCEPTED}`);
      }
    },
    async *records() {
      const ids = new SeenIds();
      let groupStart = 0;
      for (const [group, { num_rows }] of metadata.row_groups.entries()) {
        const rowCount = Number(num_rows);
        const rowEnd = groupStart + rowCount;
        let rows: Record<string, unknown>[] | undefined;
        let failure: string | undefined;
        try {
          // Bytes stay bytes (utf8: false): a column of text is annotated as such, and is still read as text.
          rows = await parquetReadObjects({ file, metadata, columns: read, rowStart: groupStart, rowEnd, utf8: false, compressors: COMPRESSORS });
        } catch (error) {
          // A group that does not decode fails its own rows, as a malformed CSV row fails its record: the job goes on.
          failure = `row group ${group} of ${path} (rows ${groupStart} to ${rowEnd - 1}) cannot be read: ${(error as Error).message}`;
        }
        for (let offset = 0; offset < rowCount; offset++) {
          const index = groupStart + offset;
          const record: JobRecord = rows ? recordOf(rows[offset] ?? {}, index, ids) : { id: index, error: failure! };
          const bytes = record.image?.length ?? Buffer.byteLength(record.json ?? '');
          yield { id: record.id, bytes, load: async () => record };
        }
        groupStart = rowEnd;
      }
    },
  };
}

/** A codec that needs a package this nereid does not have is refused before any record runs, naming it and the columns. */
function refuseUnreadableCodecs(path: string, metadata: FileMetaData, read: ReadonlySet<string>): void {
  const unread = new Map<string, Set<string>>();
  for (const group of metadata.row_groups) {
    for (const chunk of group.columns) {
      const meta = chunk.meta_data;
      if (!meta || READABLE_CODECS.has(meta.codec) || !read.has(meta.path_in_schema[0]!)) continue;
      const columns = unread.get(meta.codec) ?? new Set<string>();
      columns.add(meta.path_in_schema.join('.'));
      unread.set(meta.codec, columns);
    }
  }
  if (unread.size === 0) return;
  const which = [...unread].map(([codec, columns]) => `${codec} (column${columns.size > 1 ? 's' : ''} ${[...columns].join(', ')})`).join(', ');
  throw invalidArgument(
    `${path} is compressed with ${which}, which nereid does not read: it reads Parquet pages uncompressed or compressed with ${[...READABLE_CODECS].filter((codec) => codec !== 'UNCOMPRESSED').join(', ')}. ` +
      `Write the file again with one of those (pyarrow: pq.write_table(table, path, compression="snappy"); pandas: df.to_parquet(path, compression="snappy"); polars: df.write_parquet(path, compression="snappy"))`,
  );
}
