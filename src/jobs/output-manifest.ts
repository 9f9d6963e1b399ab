/**
 * `<output>.job.json`, beside a batch job's output: what the runs that wrote the output were asked (the options that
 * decide what a record's line holds) and, when records are numbered by line, a fingerprint of the input they read. A
 * rerun resumes the output only when it asks the same of the same records, so that one output never holds records
 * answered two ways (another --top-k, other input columns) nor answers taken for other records (a line removed from the
 * input renumbers every later one). The output's own lines cannot say it: a failed record's line names no model, and no
 * line says which columns were the inputs or what the record held.
 */
import { createHash } from 'node:crypto';
import { open, rename, readFile, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { NereidError } from '../core/errors.js';
import { optionKeyName, type SettingName } from '../core/options.js';
import { inputBytes } from './input-bytes.js';

export const MANIFEST_SUFFIX = '.job.json';

/** A flag that decides what a record's output line holds, and its value as given (null when not given). */
export type AnswerOptions = Record<string, string | number | null>;

/** What a run asks of its output, recorded in the manifest and compared with the one there. */
export interface JobDescription {
  answerOptions: AnswerOptions;
  /** The input (recorded as an absolute path, to be shown; compared only through its fingerprint: a renamed input is the same records). */
  input: string;
  /** The input's records are numbered by line (a JSONL or CSV file without --id-column): it is fingerprinted. */
  lineNumbered?: boolean;
}

/** A file's length and the SHA-256 of its bytes. */
export interface InputFingerprint {
  bytes: number;
  sha256: string;
}

/** The option of a batch job a key of AnswerOptions records: the manifest's keys are `nereid batch`'s flags, each its option's key in kebab case. */
const optionOfFlag = (flag: string): string => flag.replace(/^--/, '').replace(/-([a-z])/g, (_dash, letter: string) => letter.toUpperCase());

/** The options of a batch job that decide what its records' lines hold, keyed by their flag, as the manifest records them. */
export function answerOptionsOf(options: {
  model: string;
  csvInput?: string;
  inputColumns?: readonly string[];
  idColumn?: string;
  passThrough?: readonly string[];
  topK?: number;
}): AnswerOptions {
  return {
    '--model': options.model,
    '--top-k': options.topK ?? null,
    '--csv-input': options.csvInput ?? null,
    // The order of the input columns is the order of the values in the input; that of the pass-through fields is not.
    // An empty list (a library caller's) asks what the flag left out asks: recorded the same, a rerun without it matches.
    '--input-columns': options.inputColumns?.length ? options.inputColumns.join(',') : null,
    '--id-column': options.idColumn ?? null,
    '--pass-through': options.passThrough?.length ? [...options.passThrough].sort().join(',') : null,
  };
}

interface Manifest {
  written_by: 'nereid batch';
  format: 1;
  answer_options: AnswerOptions;
  input: string;
  /** Of the input when the last run began, when its records are numbered by line. */
  input_fingerprint?: InputFingerprint;
}

export const manifestPath = (output: string): string => `${output}${MANIFEST_SUFFIX}`;

/** The way out of an output that is another job's (or was answered otherwise), named as the job's caller sets options. */
export const chooseAnotherOutput = (settingName: SettingName): string => `choose another ${settingName('output')}, or ${settingName('restart', true)} to overwrite it`;

/** The manifest beside `output`, undefined when there is none; one that is not a manifest is refused, not overwritten. */
export async function readManifest(output: string, settingName: SettingName = optionKeyName): Promise<Manifest | undefined> {
  const path = manifestPath(output);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch {
    manifest = undefined;
  }
  const answerOptions = (manifest as Partial<Manifest> | undefined)?.answer_options;
  if (typeof answerOptions !== 'object' || answerOptions === null) {
    throw new NereidError(
      'FAILED_PRECONDITION',
      `${path} is not the description of a batch job that nereid writes beside ${output}; remove it (the rerun then cannot check that ${output} was written with the same options), or ${settingName('restart', true)} to overwrite both`,
    );
  }
  return manifest as Manifest;
}

/** Written whole or not at all (a new file renamed over the old), so a killed job never leaves half of one. */
export async function writeManifest(output: string, job: JobDescription, inputFingerprint?: InputFingerprint): Promise<void> {
  const manifest: Manifest = { written_by: 'nereid batch', format: 1, answer_options: job.answerOptions, input: resolve(job.input), ...(inputFingerprint ? { input_fingerprint: inputFingerprint } : {}) };
  await replaceFile(manifestPath(output), `${JSON.stringify(manifest, null, 2)}\n`);
}

/**
 * Replaces `path` with `text` whole or not at all, a power cut included: a new file, flushed to the disk, renamed over
 * the old, and the rename flushed with its folder. A rename of unflushed data can leave an empty file after a power cut
 * on some filesystems (ext4 without auto_da_alloc, XFS), which would lose every answer of an output rewritten this way.
 */
export async function replaceFile(path: string, text: string): Promise<void> {
  const temporary = `${path}.tmp-${process.pid}`;
  const file = await open(temporary, 'w');
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  await syncFolder(dirname(resolve(path)));
}

/**
 * Errors of opening or flushing a folder from filesystems that do not flush folders (some FUSE and network mounts,
 * Windows): there the rename is as durable as the filesystem makes it, and the job goes on; the file's own flush, before
 * the rename, is what keeps its contents.
 */
const FOLDER_SYNC_REFUSED: ReadonlySet<string> = new Set(['EINVAL', 'EISDIR', 'EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP', 'EBADF']);

/** Flushes a folder's entries (a rename in it) to the disk, where its filesystem allows it. */
export async function syncFolder(folder: string): Promise<void> {
  const refused = (error: unknown) => {
    if (!FOLDER_SYNC_REFUSED.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
  };
  const handle = await open(folder, 'r').catch(refused);
  if (!handle) return;
  try {
    await handle.sync().catch(refused);
  } finally {
    await handle.close();
  }
}

export const removeManifest = (output: string): Promise<void> => rm(manifestPath(output), { force: true });

/**
 * The flags that decide what a line holds whose values differ between what was `recorded` and what is `asked`, each
 * shown with its value on either side; undefined when none does. Flags not recorded (an older nereid) are not compared.
 */
export function differingAnswerOptions(recorded: AnswerOptions, asked: AnswerOptions, settingName: SettingName = optionKeyName): { written: string; asked: string } | undefined {
  const differing = Object.keys(asked).filter((flag) => flag in recorded && recorded[flag] !== asked[flag]);
  if (differing.length === 0) return undefined;
  const shown = (flag: string, value: string | number | null | undefined) => {
    const option = optionOfFlag(flag);
    return value === null || value === undefined ? `${settingName(option)} not given` : settingName(option, value);
  };
  return { written: differing.map((flag) => shown(flag, recorded[flag])).join(', '), asked: differing.map((flag) => shown(flag, asked[flag])).join(', ') };
}

/**
 * Refuses a run that asks its output's records to be answered otherwise than the runs that wrote them (a flag that
 * decides what a line holds, given another value), naming each flag with both values. Flags the manifest does not
 * record (written by an older nereid) are not compared.
 */
export function checkAnswerOptions(output: string, recorded: Manifest, job: JobDescription, records: { held: number; failed: number }, settingName: SettingName = optionKeyName): void {
  const differing = differingAnswerOptions(recorded.answer_options, job.answerOptions, settingName);
  if (!differing) return;
  const { written, asked } = differing;
  const allFailed = records.failed === records.held ? `; every record it holds is an error, so ${settingName('retryFailed', true)} with this run's options runs them all again` : '';
  throw new NereidError(
    'FAILED_PRECONDITION',
    `${output} was written with ${written}, and this run asks ${asked}: the ${records.held} record(s) it holds were answered otherwise than this run would answer the rest. ` +
      `Rerun with the options that wrote it (${manifestPath(output)} lists them), ${chooseAnotherOutput(settingName)}${allFailed}`,
  );
}

/**
 * The input's fingerprint now, read in one pass, and why it no longer holds the records `earlier` was taken of, if it
 * does not: its first `earlier.bytes` bytes must be the same, and a last line that had no newline must not have grown.
 * Records appended after them keep every earlier record's line number, so an input may grow between runs.
 */
export async function fingerprintInput(path: string, earlier?: InputFingerprint): Promise<{ now: InputFingerprint; changed?: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  /** The SHA-256 of the input's first earlier.bytes bytes, once read. */
  let covered = earlier?.bytes === 0 ? hash.copy().digest('hex') : undefined;
  /** The byte before the end of what `earlier` covered, and the one after it (absent at the end of the input). */
  const around: number[] = [];
  const aroundFrom = earlier && earlier.bytes > 0 ? earlier.bytes - 1 : Infinity;
  // A gzipped input is fingerprinted by its text: records appended to it (another gzip member) keep the ones before.
  for await (const chunk of inputBytes(path) as AsyncIterable<Buffer>) {
    if (earlier && covered === undefined && bytes + chunk.length >= earlier.bytes) {
      const split = earlier.bytes - bytes;
      hash.update(chunk.subarray(0, split));
      covered = hash.copy().digest('hex');
      hash.update(chunk.subarray(split));
    } else {
      hash.update(chunk);
    }
    for (let at = Math.max(aroundFrom, bytes); around.length < 2 && at < bytes + chunk.length; at++) around.push(chunk[at - bytes]!);
    bytes += chunk.length;
  }
  const aroundRead = around.length;
  const now = { bytes, sha256: hash.digest('hex') };
  if (!earlier) return { now };
  const newline = (byte: number) => byte === 0x0a || byte === 0x0d;
  const changed =
    bytes < earlier.bytes
      ? `it is ${bytes} bytes long, and was ${earlier.bytes}`
      : covered !== earlier.sha256
        ? `its first ${earlier.bytes} bytes are not those the earlier run read`
        : aroundRead === 2 && !newline(around[0]!) && !newline(around[1]!)
          ? 'its last line, which had no newline, goes on'
          : undefined;
  return changed ? { now, changed } : { now };
}

/**
 * Refuses an input that no longer holds, under the same line numbers, the records an output's answers were given to:
 * resumed, those answers would be taken for whatever records now have their numbers, and the records that moved would
 * run twice or never.
 */
export function refuseChangedInput(output: string, recorded: Manifest, input: string, changed: string, settingName: SettingName = optionKeyName): never {
  const sameFile = recorded.input === resolve(input);
  const what = sameFile ? `the input ${input} changed since it was written` : `the input ${input} is not the ${recorded.input} it was written from, as it was`;
  const restart = settingName('restart', true);
  const ownIds = `give the records ids of their own (${settingName('idColumn')}, with ${restart} once), or ${restart} to run them all again`;
  const remedy = sameFile ? `${ownIds[0]!.toUpperCase()}${ownIds.slice(1)}` : `If it is another job's input, choose another ${settingName('output')}; else ${ownIds}`;
  throw new NereidError(
    'FAILED_PRECONDITION',
    `${output} holds answers to records numbered by their line, and ${what} (${changed}); other records would now have those numbers ` +
      `(a line removed or inserted renumbers every later one). Records may be appended to the input, but those before must not change. ${remedy}`,
  );
}
