/**
 * A bound on the bytes of one CSV record, applied to the bytes before the CSV parser sees them. csv-parse's own
 * `max_record_size` cannot be the bound: it stops the whole parse at the first long record, and with
 * `skip_records_with_error` it drops the rest of the chunk it was reading, the rows after the long one included. Here a
 * longer record is held back whole (its bytes dropped as they pass) and said in its place, so a file with one huge row,
 * or a binary file named .csv, costs no more memory than one record, and the rows around it are read as before.
 *
 * Records end where the parser ends them: at a line break outside quotes, a quote opening a field only at its start
 * and `""` inside quotes standing for one quote (csv-parse's defaults: quote `"`, delimiter `,`).
 */

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;
const LF_ONLY = Buffer.from('\n');
const CRLF = Buffer.from('\r\n');

/** A record held back for its size: the line it ends on (as csv-parse's `info.lines` counts) and its bytes. */
export interface TooLongRecord {
  line: number;
  bytes: number;
}

/**
 * The bytes of `chunks`, each record longer than `maxRecordBytes` replaced by its line breaks alone (empty lines, which
 * the parser skips, so that the lines after it keep their numbers) and pushed onto `tooLong` before the bytes after it
 * are passed on.
 */
export async function* boundCsvRecords(chunks: AsyncIterable<Buffer>, maxRecordBytes: number, tooLong: TooLongRecord[]): AsyncGenerator<Buffer> {
  let inQuotes = false;
  /** Inside quotes, the byte before was a quote: this one says whether it closed the field or was doubled. */
  let quotePending = false;
  let atFieldStart = true;
  let previousWasCr = false;
  /** Line breaks before the current record, and inside it (quoted) so far. */
  let linesBefore = 0;
  let linesInside = 0;
  /** The current record's bytes from earlier chunks, while it fits; its size in any case. */
  let held: Buffer[] = [];
  let size = 0;
  /** The last line break as written, replayed for each of a dropped record's. */
  let lineBreak = LF_ONLY;
  const dropped = (breaks: number) => Buffer.concat(Array.from({ length: breaks }, () => lineBreak));

  for await (const chunk of chunks) {
    const out: Buffer[] = [];
    /** Where the current record's bytes start in this chunk, and where the kept records before it do. */
    let recordStart = 0;
    let keptStart = 0;
    // Spans without a quote are skipped to the next line break by indexOf, not read byte by byte: a CSV file of
    // numbers is read at the speed of a search for line breaks, and a huge quoted field at that of one for quotes.
    let nextQuote = chunk.indexOf(QUOTE);
    /** Bytes from `from` up to `to` (excluded) change nothing but the line count inside quotes and the CR before a break. */
    const skip = (from: number, to: number): void => {
      if (to <= from) return;
      if (inQuotes) {
        for (let lf = chunk.indexOf(LF, from); lf !== -1 && lf < to; lf = chunk.indexOf(LF, lf + 1)) linesInside += 1;
      } else {
        let last = to - 1;
        while (last >= from && chunk[last] === CR) last -= 1;
        if (last >= from) atFieldStart = chunk[last] === COMMA;
      }
      previousWasCr = chunk[to - 1] === CR;
    };
    let nextLf = chunk.indexOf(LF);
    for (let at = 0; at < chunk.length; at++) {
      if (nextQuote !== -1 && nextQuote < at) nextQuote = chunk.indexOf(QUOTE, at);
      if (nextLf !== -1 && nextLf < at) nextLf = chunk.indexOf(LF, at);
      if (!quotePending) {
        // Inside quotes only a quote matters (line breaks up to it are counted); outside, a quote or a line break.
        const quote = nextQuote === -1 ? chunk.length : nextQuote;
        const to = inQuotes ? quote : Math.min(quote, nextLf === -1 ? chunk.length : nextLf);
        skip(at, to);
        at = to;
        if (at === chunk.length) break;
      }
      const byte = chunk[at]!;
      const wasCr = previousWasCr;
      previousWasCr = byte === CR;
      if (inQuotes) {
        if (quotePending) {
          quotePending = false;
          if (byte !== QUOTE) inQuotes = false;
        } else if (byte === QUOTE) {
          quotePending = true;
        }
        if (inQuotes) {
          if (byte === LF) linesInside += 1;
          continue;
        }
      }
      if (byte === QUOTE && atFieldStart) {
        inQuotes = true;
        atFieldStart = false;
      } else if (byte === COMMA) {
        atFieldStart = true;
      } else if (byte === LF) {
        lineBreak = wasCr ? CRLF : LF_ONLY;
        size += at + 1 - recordStart;
        if (size > maxRecordBytes) {
          tooLong.push({ line: linesBefore + linesInside + 1, bytes: size - lineBreak.length });
          out.push(chunk.subarray(keptStart, recordStart), dropped(linesInside + 1));
          keptStart = at + 1;
        } else if (held.length > 0) {
          // A record begun in an earlier chunk is the first of this one: its start goes before the kept bytes.
          out.push(...held);
        }
        linesBefore += linesInside + 1;
        linesInside = 0;
        held = [];
        size = 0;
        recordStart = at + 1;
        atFieldStart = true;
      } else if (byte !== CR) {
        atFieldStart = false;
      }
    }
    out.push(chunk.subarray(keptStart, recordStart));
    // The rest of the chunk begins (or goes on with) a record that has not ended yet.
    const rest = chunk.subarray(recordStart);
    size += rest.length;
    if (size <= maxRecordBytes) held.push(rest);
    else held = [];
    const ready = Buffer.concat(out);
    if (ready.length > 0) yield ready;
  }
  if (size > maxRecordBytes) {
    tooLong.push({ line: linesBefore + linesInside + 1, bytes: size });
    if (linesInside > 0) yield dropped(linesInside);
  } else if (held.length > 0) {
    yield Buffer.concat(held);
  }
}
