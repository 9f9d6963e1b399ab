/**
 * The output of a batch job: an append-only JSONL file, one line per input record, each written
 * once the record is complete. Opening it again resumes: the lines already there are the records
 * done, a partial last line (the process died mid-write) is cut off, and those records are skipped.
 * A lock file beside it keeps two jobs from writing the same output.
 */
import { constants } from 'node:fs';
import { open, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { NereidError } from '../core/errors.js';
import { optionKeyName, type SettingName } from '../core/options.js';
import { isErrorLine, isOutOfDistributionLine, readOutputLine, recordIdOfKey, recordKey, type RecordId } from './job-record.js';
import { checkAnswerOptions, chooseAnotherOutput, fingerprintInput, manifestPath, readManifest, refuseChangedInput, removeManifest, replaceFile, writeManifest, type InputFingerprint, type JobDescription } from './output-manifest.js';

export interface OpenOutputOptions {
  /** Start over: the existing output is emptied. */
  restart?: boolean;
  /** Drop the lines of records that failed, so they run again. */
  retryFailed?: boolean;
  /** The job's input: the output must not be it (a JSONL input's lines would read as records already done). */
  input?: string;
  /**
   * The input's records, to refuse an output that is another job's before anything in it changes (failed
   * lines dropped, a partial last line cut): resumed, it would count the other job's records as done and
   * mix two jobs in one file. Every record the output holds must be one of the input's.
   */
  inputRecords?: { count(): Promise<number>; ids(): AsyncIterable<RecordId> };
  /**
   * What this run asks (the options that decide what a record's line holds), checked against the manifest beside the
   * output (OUTPUT.job.json) before the output is resumed, and recorded there for the next run.
   */
  job?: JobDescription;
  /** Said to the person running the job (a resumed output whose records all failed, one with no manifest). */
  warn?: (message: string) => void;
  /** How messages name the job's options (default: as option keys; the CLI's names its flags). */
  settingName?: SettingName;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Locks held by this process. A lock file naming this process's pid is otherwise taken for one left
 * by a dead process whose pid was reused (common in containers), so this process's own are tracked here.
 */
const heldHere = new Set<string>();

async function takeLock(lockPath: string): Promise<void> {
  if (heldHere.has(resolve(lockPath))) {
    throw new NereidError('FAILED_PRECONDITION', `another batch job in this process is writing this output (${lockPath})`);
  }
  await takeLockFile(lockPath);
  heldHere.add(resolve(lockPath));
}

async function releaseLock(lockPath: string): Promise<void> {
  await rm(lockPath, { force: true });
  heldHere.delete(resolve(lockPath));
}

async function takeLockFile(lockPath: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lockPath, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new NereidError(
          'FAILED_PRECONDITION',
          `another batch job (pid ${pid}) is writing this output; wait for it, or remove ${lockPath} if that process is not a batch job`,
        );
      }
      await rm(lockPath, { force: true }); // left by a process that died
    }
  }
  throw new NereidError('FAILED_PRECONDITION', `could not take the lock ${lockPath}`);
}

/** The `--output` that writes the answers to stdout instead of a file. */
export const STDOUT_OUTPUT = '-';

/** Where an output's lines go: its file, or stdout. */
interface OutputSink {
  write(text: string): Promise<unknown>;
  close(): Promise<void>;
}

/** stdout as an output: each write resolves once the stream took it (a slow reader slows the job instead of filling memory). */
const stdoutSink: OutputSink = {
  write: (text) => new Promise<void>((resolve, reject) => process.stdout.write(text, (error) => (error ? reject(error) : resolve()))),
  close: async () => undefined,
};

/** An output named for another format is a mistake a job would otherwise only show by writing JSONL into it. */
export function checkOutputName(path: string): void {
  const format = /\.(csv|tsv|json|parquet)$/i.exec(path)?.[1];
  if (format) throw new NereidError('INVALID_ARGUMENT', `${path}: a batch job writes JSONL (one JSON object per record), not ${format.toUpperCase()}; name the output .jsonl`);
}

/** Refuses an output holding a record that is not one of the input's (see OpenOutputOptions.inputRecords); reads the input only until all are found. */
async function checkRecordsOf(path: string, done: ReadonlySet<string>, input: string, inputRecords: NonNullable<OpenOutputOptions['inputRecords']>, settingName: SettingName): Promise<void> {
  const startOver = `it is another job's output; ${chooseAnotherOutput(settingName)}`;
  const total = await inputRecords.count();
  if (done.size > total) {
    throw new NereidError('FAILED_PRECONDITION', `${path} holds ${done.size} records, more than the ${total} of the input: ${startOver}`);
  }
  const unmatched = new Set(done);
  for await (const id of inputRecords.ids()) {
    unmatched.delete(recordKey(id));
    if (unmatched.size === 0) return;
  }
  const [stranger] = unmatched;
  throw new NereidError(
    'FAILED_PRECONDITION',
    `${path} holds a record with id ${JSON.stringify(recordIdOfKey(stranger!))}, which the input ${input} does not have (${unmatched.size} of its ${done.size} records are not the input's): ${startOver}`,
  );
}

/**
 * An output resumed must be this job's: answered by the model version that answers this run (a distributed job's
 * pinned one), so that one output never mixes two versions' answers. The input's records are checked when it opens.
 */
export function checkAnsweredBy(output: JobOutput, path: string, model: string, version: string, settingName: SettingName = optionKeyName): void {
  const serving = `${model} version ${version}`;
  const others = [...output.resumed.answeredBy].filter((answeredBy) => answeredBy !== serving);
  if (others.length === 0) return;
  const prefix = `${model} version `;
  const sameModel = others.length === 1 && others[0].startsWith(prefix) ? others[0].slice(prefix.length) : undefined;
  throw new NereidError(
    'FAILED_PRECONDITION',
    `${path} holds answers of ${others.join(', ')}, and this run answers with ${serving}: ${chooseAnotherOutput(settingName)}${
      sameModel === undefined ? '' : `, or ${settingName('version', sameModel)} to go on with the version that answered it`
    }`,
  );
}

export class JobOutput {
  /** Records with a line in the output (before and during this run), by recordKey. */
  private readonly done = new Set<string>();
  /** Records found in the output when it was opened, and how many of them had failed. */
  /** What the output held when opened: its records, how many failed, and which model versions answered the others. */
  readonly resumed: { records: number; failed: number; answeredBy: ReadonlySet<string> };
  private writes: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: OutputSink,
    /** Undefined for stdout, which no other job can be writing to. */
    private readonly lockPath: string | undefined,
    resumed: { records: number; failed: number; answeredBy: ReadonlySet<string> },
    done: Iterable<string>,
    /** The file did not exist before this job opened it. */
    private readonly createdNow: boolean,
  ) {
    this.resumed = resumed;
    for (const key of done) this.done.add(key);
  }

  static async open(path: string, options: OpenOutputOptions = {}): Promise<JobOutput> {
    const named = options.settingName ?? optionKeyName;
    const output = named('output', path);
    checkOutputName(path);
    if (options.restart && options.retryFailed) {
      throw new NereidError('INVALID_ARGUMENT', `${named('restart', true)} runs every record again and ${named('retryFailed', true)} only those written with an error: give one of them`);
    }
    if (options.input !== undefined && resolve(options.input) === resolve(path)) {
      throw new NereidError('INVALID_ARGUMENT', `${output} is the input itself; write the answers to another file`);
    }
    if (path === STDOUT_OUTPUT) {
      // Nothing to resume from: no lock, no manifest; every record runs.
      if (options.retryFailed) throw new NereidError('INVALID_ARGUMENT', `${output} writes to stdout, which a rerun cannot read back: ${named('retryFailed', true)} needs an output file`);
      options.warn?.(`${output}: the answers go to stdout as they complete; a run stopped early cannot be resumed (its rerun runs every record again): give an output file to resume`);
      return new JobOutput(path, stdoutSink, undefined, { records: 0, failed: 0, answeredBy: new Set() }, [], false);
    }
    const found = await stat(path).catch(() => undefined);
    if (found?.isDirectory()) {
      throw new NereidError('INVALID_ARGUMENT', `${output} is a folder; name a file in it, e.g. ${join(path, 'answers.jsonl')}`);
    }
    // A folder is not made for the output: a mistyped path would otherwise be written to unseen.
    const folder = await stat(dirname(resolve(path))).catch(() => undefined);
    if (!folder?.isDirectory()) {
      throw new NereidError('INVALID_ARGUMENT', `${output}: the folder ${dirname(resolve(path))} ${folder ? 'is not a folder' : 'does not exist'}; create it first, or name an output in an existing folder`);
    }
    const lockPath = `${path}.lock`;
    await takeLock(lockPath);
    try {
      const done = new Set<string>();
      const answeredBy = new Set<string>();
      let records = 0;
      let failed = 0;
      let inputFingerprint: InputFingerprint | undefined;
      if (options.restart) {
        await writeFile(path, '');
      } else {
        // Read before the output: a file there that is no manifest is refused before anything is read or changed.
        const recorded = options.job ? await readManifest(path, named) : undefined;
        const scan = await scanOutput(path, Boolean(options.retryFailed), named);
        const keep = options.retryFailed ? scan.lines.filter((line) => !line.failed) : scan.lines;
        for (const line of keep) {
          const key = recordKey(line.id);
          if (done.has(key)) continue;
          done.add(key);
          records += 1;
          if (line.failed) failed += 1;
          if (line.answeredBy) answeredBy.add(line.answeredBy);
        }
        // Only records kept count: with --retry-failed an output whose records all failed keeps none, and runs them all again.
        if (options.job && recorded && done.size > 0) checkAnswerOptions(path, recorded, options.job, { held: records, failed }, named);
        if (options.job?.lineNumbered) {
          // Before the records' ids are matched: an input that lost lines would otherwise read as another job's.
          const earlier = done.size > 0 ? recorded?.input_fingerprint : undefined;
          const { now, changed } = await fingerprintInput(options.job.input, earlier);
          if (changed) refuseChangedInput(path, recorded!, options.job.input, changed, named);
          inputFingerprint = now;
        }
        if (options.inputRecords && done.size > 0) await checkRecordsOf(path, done, options.input ?? 'the input', options.inputRecords, named);
        if (options.job && !recorded && done.size > 0) {
          options.warn?.(
            `${path} has no ${manifestPath(path)} (written by an older nereid, or removed): whether its records were answered with this run's options, from this input as it is, cannot be checked; both are recorded there from now on`,
          );
        }
        if (options.retryFailed && keep.length !== scan.lines.length) {
          // Rewrite without the failed records, atomically: a crash leaves either file, never half of one.
          await replaceFile(path, keep.map((line) => `${line.text}\n`).join(''));
        } else if (scan.partialFrom !== undefined) {
          options.warn?.(`${path}: its last line was cut short at byte ${scan.partialFrom} (the job was stopped while writing it); cut off, and its record runs again`);
          const handle = await open(path, 'r+');
          await handle.truncate(scan.partialFrom);
          await handle.close();
        }
      }
      // After the output is emptied or resumed: a job killed in between leaves the old options beside no records, or the
      // same options beside the records, never new options beside records answered with the old ones.
      if (options.job) {
        if (options.job.lineNumbered && inputFingerprint === undefined) inputFingerprint = (await fingerprintInput(options.job.input)).now;
        await writeManifest(path, options.job, inputFingerprint);
      }
      if (records > 0 && failed === records) {
        options.warn?.(`${path}: all ${records} record(s) it holds are errors, and a rerun skips the records its output holds, so none of them is run again; ${named('retryFailed', true)} runs them again`);
      }
      const handle = await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT);
      return new JobOutput(path, handle, lockPath, { records, failed, answeredBy }, done, found === undefined);
    } catch (error) {
      await releaseLock(lockPath);
      throw error;
    }
  }

  has(id: RecordId): boolean {
    return this.done.has(recordKey(id));
  }

  get doneCount(): number {
    return this.done.size;
  }

  /**
   * Appends the lines of records not written yet (a record is written once, however often it is
   * offered) in one write, so they reach the file together. Resolves when the write is done.
   */
  append(entries: readonly { id: RecordId; line: string }[]): Promise<{ written: number; failed: number; outOfDistribution: number }> {
    let text = '';
    let written = 0;
    let failed = 0;
    let outOfDistribution = 0;
    for (const { id, line } of entries) {
      const key = recordKey(id);
      if (this.done.has(key)) continue;
      this.done.add(key);
      text += `${line}\n`;
      written += 1;
      if (isErrorLine(line)) failed += 1;
      else if (isOutOfDistributionLine(line)) outOfDistribution += 1;
    }
    if (written === 0) return Promise.resolve({ written, failed, outOfDistribution });
    const write = this.writes.then(async () => {
      if (this.closed) throw new Error(`the output ${this.path} is closed`);
      await this.handle.write(text);
    });
    this.writes = write.catch(() => undefined);
    return write.then(() => ({ written, failed, outOfDistribution }));
  }

  /**
   * `discardIfUntouched`: also remove the file when this job created it and wrote nothing, so that a job that failed to
   * start leaves no empty output behind.
   */
  async close(options: { discardIfUntouched?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    await this.writes;
    this.closed = true;
    await this.handle.close();
    // Before the lock goes: a job that takes it next must not lose the file it creates.
    if (options.discardIfUntouched && this.createdNow && this.done.size === 0) {
      await rm(this.path, { force: true });
      await removeManifest(this.path);
    }
    if (this.lockPath !== undefined) await releaseLock(this.lockPath);
  }
}

interface ScannedLine {
  id: RecordId;
  failed: boolean;
  /** Which model and version answered it (readOutputLine). */
  answeredBy?: string;
  /** The line itself, kept only when the output is to be rewritten. */
  text?: string;
}

/** Every complete line of an existing output with its record id; where a partial last line starts. */
async function scanOutput(path: string, keepText: boolean, settingName: SettingName): Promise<{ lines: ScannedLine[]; partialFrom?: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [] };
    throw error;
  }
  const lines: ScannedLine[] = [];
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    let carry: Buffer = Buffer.alloc(0);
    let offset = 0;
    let lineNumber = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
      let data = carry.length > 0 ? Buffer.concat([carry, buffer.subarray(0, bytesRead)]) : buffer.subarray(0, bytesRead);
      let start = 0;
      for (let newline = data.indexOf(10, start); newline !== -1; newline = data.indexOf(10, start)) {
        const text = data.toString('utf8', start, newline);
        start = newline + 1;
        lineNumber += 1;
        if (text.trim() === '') continue;
        const facts = readOutputLine(text);
        if (facts === undefined) {
          throw new NereidError(
            'FAILED_PRECONDITION',
            `${path} line ${lineNumber} is not a batch record (a JSON object with an "id"); ${chooseAnotherOutput(settingName)}`,
          );
        }
        lines.push({ ...facts, text: keepText ? text : undefined });
      }
      carry = Buffer.from(data.subarray(start));
      data = Buffer.alloc(0);
    }
    return { lines, partialFrom: carry.length > 0 ? offset - carry.length : undefined };
  } finally {
    await handle.close();
  }
}
