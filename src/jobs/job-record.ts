/**
 * One input record of a batch job, as it is read (locally) or as it travels in a queued chunk
 * (distributed), and the one output line it becomes. Every record has an id: the image's path
 * relative to the input folder, the line number in a JSONL or CSV file, or the row index in a Parquet file.
 */

export type RecordId = string | number;

/** A record ready to run. Exactly one of image / json / fields / error is set. */
export interface JobRecord {
  id: RecordId;
  /** Encoded image bytes (JPEG, PNG, …), for a model whose input declares image pre-processing. */
  image?: Buffer;
  /** One JSONL line as written: a V2 `inputs` array, `{"inputs": [...]}`, or an object of named fields. */
  json?: string;
  /** Named fields from a CSV row: input name → a cell (a scalar, a list, or JSON) or the cells of several columns. */
  fields?: Record<string, string | string[]>;
  /** The record could not even be read; it is written with this error and never runs. */
  error?: string;
  /** Columns or fields copied into the output line as they are (--pass-through: e.g. a label to score against). */
  passThrough?: Record<string, unknown>;
  /** The value of the label column (RecordColumns.labelColumn) of a CSV or Parquet file that has one; local only, never queued. */
  label?: unknown;
}

/** What kind of input a batch job reads. */
export type InputFormat = 'images' | 'jsonl' | 'csv' | 'parquet';

/** A record not yet loaded: its id is known, its bytes are read by `load()`. */
export interface InputRecord {
  id: RecordId;
  /** Its size before loading (an image file's, a JSONL line's, a CSV row's cells', a Parquet row's image or JSON fields): what a distributed chunk will carry. */
  bytes?: number;
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
  /**
   * A CSV file's columns that become each record's named fields (its header, less the id and pass-through columns, or
   * the --input-columns): known before any row is read, so a model input none of them holds is refused up front.
   * Undefined for other inputs and with --csv-input (whose one input takes every numeric column).
   */
  fieldColumns?(): Promise<string[] | undefined>;
  /**
   * A Parquet file whose records are images: the column that holds them (encoded bytes, or a struct {bytes, path} as
   * Hugging Face datasets write images).
   */
  imageColumn?: string;
  /**
   * Refuses, before any record runs, an input column the model reads (one named like an input, or `NAME.0`) whose type
   * no input can take, naming it, its type and what is taken: every record would otherwise fail for the same reason.
   */
  checkInputColumns?(inputNames: readonly string[]): void;
  /** The columns with their types, for a refusal that lists them. */
  describeColumns?(): string;
  /** A Parquet file's column names, all of them (read or not). */
  columnNames?: readonly string[];
}

/** The JSON form a record has inside a queued chunk: image bytes as base64, the rest as is. */
export interface WireRecord {
  id: RecordId;
  image?: string;
  json?: string;
  fields?: Record<string, string | string[]>;
  passThrough?: Record<string, unknown>;
}

/**
 * The bytes of input a record carries into a queued chunk, as --chunk-max-mib counts them: an image's, a JSONL line's
 * or a CSV row's cells, and what it passes through.
 */
export function recordBytes(record: JobRecord): number {
  const cells = Object.values(record.fields ?? {}).flat();
  return (
    (record.image?.length ?? 0) +
    (record.json === undefined ? 0 : Buffer.byteLength(record.json)) +
    cells.reduce((sum, cell) => sum + Buffer.byteLength(cell), 0) +
    (record.passThrough ? Buffer.byteLength(JSON.stringify(record.passThrough)) : 0)
  );
}

export function toWire(record: JobRecord): WireRecord {
  const { id, image, json, fields, passThrough } = record;
  const carried = passThrough ? { passThrough } : {};
  if (image) return { id, image: image.toString('base64'), ...carried };
  if (json !== undefined) return { id, json, ...carried };
  return { id, fields, ...carried };
}

export function fromWire(record: WireRecord): JobRecord {
  const { id, image, json, fields, passThrough } = record;
  const carried = passThrough ? { passThrough } : {};
  if (image !== undefined) return { id, image: Buffer.from(image, 'base64'), ...carried };
  if (json !== undefined) return { id, json, ...carried };
  if (fields !== undefined) return { id, fields, ...carried };
  return { id, error: 'the queued record carries no input (expected image, json or fields)', ...carried };
}

/** The key a record id is remembered under: 12 (a line), "12" (a file named 12) and "#12" (an id column's value) stay apart. */
export function recordKey(id: RecordId): string {
  return typeof id === 'number' ? `#${id}` : id.startsWith('#') ? `#${id}` : id;
}

/** The id a recordKey was made from. */
export function recordIdOfKey(key: string): RecordId {
  return key.startsWith('##') ? key.slice(1) : key.startsWith('#') ? Number(key.slice(1)) : key;
}

/** How every output line starts: the record's id, then what it carries through from the input. */
export function lineHead(id: RecordId, passThrough?: Record<string, unknown>): string {
  return `{"id":${JSON.stringify(id)}${passThrough ? `,"pass_through":${JSON.stringify(passThrough)}` : ''}`;
}

/** The output line of a record that failed; the job goes on. */
export function errorLine(id: RecordId, message: string, passThrough?: Record<string, unknown>): string {
  return `${lineHead(id, passThrough)},"error":${JSON.stringify(message)}}`;
}

/**
 * The index just past the JSON value that starts at `from` (a string, an object or array, or a scalar), or -1 when it
 * does not end in `text`. Strings are skipped whole, so brackets and quotes inside them do not count.
 */
function jsonValueEnd(text: string, from: number): number {
  const first = text.charCodeAt(from);
  if (first === 0x22 /* " */) {
    for (let index = from + 1; index < text.length; index++) {
      const char = text.charCodeAt(index);
      if (char === 0x5c /* \ */) index += 1;
      else if (char === 0x22) return index + 1;
    }
    return -1;
  }
  if (first === 0x7b /* { */ || first === 0x5b /* [ */) {
    let depth = 0;
    for (let index = from; index < text.length; index++) {
      const char = text.charCodeAt(index);
      if (char === 0x22) {
        const end = jsonValueEnd(text, index);
        if (end < 0) return -1;
        index = end - 1;
      } else if (char === 0x7b || char === 0x5b) {
        depth += 1;
      } else if (char === 0x7d /* } */ || char === 0x5d /* ] */) {
        depth -= 1;
        if (depth === 0) return index + 1;
      }
    }
    return -1;
  }
  let index = from;
  while (index < text.length && !',}]'.includes(text[index]!)) index += 1;
  return index > from ? index : -1;
}

/** What resuming a job needs to know of one output line. */
export interface OutputLineFacts {
  id: RecordId;
  /** The record failed: its `error` is not null. */
  failed: boolean;
  /** "<model> version <v>" of a line that names the model and version that answered it. */
  answeredBy?: string;
}

const answeredBy = (model: unknown, version: unknown): string | undefined =>
  typeof model === 'string' && (typeof version === 'string' || typeof version === 'number') ? `${model} version ${version}` : undefined;

/**
 * A line as Nereid writes it (`{"id":…[,"pass_through":{…}],"error":"<message>"}`, or `{"id":…[,"pass_through":{…}],
 * "model_name":…,"model_version":…,<the answer>,"error":null}`), read from its head and its end without parsing the
 * answer, which may be large; undefined for any other line.
 */
function readLineAsWritten(line: string): OutputLineFacts | undefined {
  const head = '{"id":';
  if (!line.startsWith(head)) return undefined;
  const idEnd = jsonValueEnd(line, head.length);
  if (idEnd < 0) return undefined;
  const idText = line.slice(head.length, idEnd);
  let id: RecordId;
  if (idText.startsWith('"')) {
    try {
      id = JSON.parse(idText) as string;
    } catch {
      return undefined;
    }
  } else if (/^-?\d+$/.test(idText)) {
    id = Number(idText);
  } else {
    return undefined;
  }
  let at = idEnd;
  if (line.startsWith(',"pass_through":', at)) {
    at = jsonValueEnd(line, at + ',"pass_through":'.length);
    if (at < 0) return undefined;
  }
  const error = ',"error":"';
  if (line.startsWith(error, at) && line.endsWith('"}') && jsonValueEnd(line, at + error.length - 1) === line.length - 1) return { id, failed: true };
  const model = ',"model_name":"';
  const version = ',"model_version":"';
  if (!line.startsWith(model, at) || !line.endsWith(',"error":null}')) return undefined;
  const modelEnd = jsonValueEnd(line, at + model.length - 1);
  if (modelEnd < 0 || !line.startsWith(version, modelEnd)) return undefined;
  const versionEnd = jsonValueEnd(line, modelEnd + version.length - 1);
  if (versionEnd < 0) return undefined;
  try {
    return { id, failed: false, answeredBy: answeredBy(JSON.parse(line.slice(at + model.length - 1, modelEnd)), JSON.parse(line.slice(modelEnd + version.length - 1, versionEnd))) };
  } catch {
    return undefined;
  }
}

/**
 * What an output line says: its record's id, whether the record failed, and which model version answered it. Lines
 * as Nereid writes them are read without parsing their answers; any other line is parsed whole, so that the same
 * records rewritten by another tool (Python's json.dumps puts spaces after `:` and `,`; others reorder keys) count as
 * they did. A line counts as answered only when its `error` is null: one without an `error` is run again by
 * --retry-failed rather than trusted. Undefined when the line is not a record (not a JSON object with an id).
 */
export function readOutputLine(line: string): OutputLineFacts | undefined {
  const asWritten = readLineAsWritten(line);
  if (asWritten) return asWritten;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const record = value as { id?: unknown; error?: unknown; model_name?: unknown; model_version?: unknown };
  if (typeof record.id !== 'string' && typeof record.id !== 'number') return undefined;
  const by = answeredBy(record.model_name, record.model_version);
  return { id: record.id, failed: record.error !== null, ...(by ? { answeredBy: by } : {}) };
}

/**
 * True when an answered line's image was judged out of distribution (its `ood` verdict). Read from the text: inside a
 * JSON string a quote is escaped, so `"out_of_distribution":true` can only be the verdict's own key and value.
 */
export function isOutOfDistributionLine(line: string): boolean {
  return line.includes('"out_of_distribution":true');
}

/** True when an output line records a failure (its `error` is not null), or is not a record at all. */
export function isErrorLine(line: string): boolean {
  return readOutputLine(line)?.failed ?? true;
}
