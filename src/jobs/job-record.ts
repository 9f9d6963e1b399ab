/**
 * One input record of a batch job, as it is read (locally) or as it travels in a queued chunk
 * (distributed), and the one output line it becomes. Every record has an id: the image's path
 * relative to the input folder, or the line number in a JSONL or CSV file.
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
 * The id of an output line. Lines are written as `{"id":<id>,...`, so the id is read from the
 * front without parsing the (possibly large) rest; anything else is parsed in full.
 * Returns undefined when the line is not a record.
 */
export function idOfLine(line: string): RecordId | undefined {
  const prefix = '{"id":';
  if (line.startsWith(prefix)) {
    const rest = line.slice(prefix.length);
    if (rest.startsWith('"')) {
      let end = 1;
      while (end < rest.length && rest[end] !== '"') end += rest[end] === '\\' ? 2 : 1;
      if (end < rest.length) {
        try {
          return JSON.parse(rest.slice(0, end + 1)) as string;
        } catch {
          // fall through to the full parse
        }
      }
    } else {
      const match = /^(-?\d+)[,}]/.exec(rest);
      if (match) return Number(match[1]);
    }
  }
  try {
    const parsed = JSON.parse(line) as { id?: unknown };
    if (typeof parsed === 'object' && parsed !== null && (typeof parsed.id === 'string' || typeof parsed.id === 'number')) return parsed.id;
  } catch {
    // not JSON
  }
  return undefined;
}

/** The model name and version a result line carries, as RecordProcessor writes them. */
const ANSWERED_BY = /"model_name":("(?:[^"\\]|\\.)*"),"model_version":("(?:[^"\\]|\\.)*")/;

/** The model and version that answered a record's line ("fashion_mnist version 1"), or undefined for a failed record's. */
export function answeredByOfLine(line: string): string | undefined {
  const match = ANSWERED_BY.exec(line);
  return match ? `${JSON.parse(match[1]) as string} version ${JSON.parse(match[2]) as string}` : undefined;
}

/** True when an output line records a failure (`"error": "<message>"` rather than `"error": null`). */
export function isErrorLine(line: string): boolean {
  return !line.endsWith(',"error":null}');
}
