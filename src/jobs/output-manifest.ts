/**
 * `<output>.job.json`, beside a batch job's output: what the runs that wrote the output were asked (the options that
 * decide what a record's line holds). A rerun resumes the output only when it asks the same, so that one output never
 * holds records answered two ways (another --top-k, other input columns) under one name. The output's own lines cannot
 * say it: a failed record's line names no model, and no line says which columns were the inputs.
 */
import { rename, readFile, rm, writeFile } from 'node:fs/promises';
import { NereidError } from '../core/errors.js';

export const MANIFEST_SUFFIX = '.job.json';

/** A flag that decides what a record's output line holds, and its value as given (null when not given). */
export type AnswerOptions = Record<string, string | number | null>;

/** What a run asks of its output, recorded in the manifest and compared with the one there. */
export interface JobDescription {
  answerOptions: AnswerOptions;
  /** The input, as given: shown, never compared (a renamed input is the same records). */
  input: string;
}

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
    '--input-columns': options.inputColumns?.join(',') ?? null,
    '--id-column': options.idColumn ?? null,
    '--pass-through': options.passThrough ? [...options.passThrough].sort().join(',') : null,
  };
}

interface Manifest {
  written_by: 'nereid batch';
  format: 1;
  answer_options: AnswerOptions;
  input: string;
}

export const manifestPath = (output: string): string => `${output}${MANIFEST_SUFFIX}`;

/** The manifest beside `output`, undefined when there is none; one that is not a manifest is refused, not overwritten. */
export async function readManifest(output: string): Promise<Manifest | undefined> {
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
      `${path} is not the description of a batch job that nereid writes beside ${output}; remove it (the rerun then cannot check that ${output} was written with the same options), or --restart to overwrite both`,
    );
  }
  return manifest as Manifest;
}

/** Written whole or not at all (a new file renamed over the old), so a killed job never leaves half of one. */
export async function writeManifest(output: string, job: JobDescription): Promise<void> {
  const manifest: Manifest = { written_by: 'nereid batch', format: 1, answer_options: job.answerOptions, input: job.input };
  const path = manifestPath(output);
  const temporary = `${path}.tmp-${process.pid}`;
  await writeFile(temporary, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(temporary, path);
}

export const removeManifest = (output: string): Promise<void> => rm(manifestPath(output), { force: true });

const shown = (flag: string, value: string | number | null | undefined) => (value === null || value === undefined ? `${flag} not given` : `${flag} ${value}`);

/**
 * Refuses a run that asks its output's records to be answered otherwise than the runs that wrote them (a flag that
 * decides what a line holds, given another value), naming each flag with both values. Flags the manifest does not
 * record (written by an older nereid) are not compared.
 */
export function checkAnswerOptions(output: string, recorded: Manifest, job: JobDescription, records: { held: number; failed: number }): void {
  const differing = Object.keys(job.answerOptions).filter((flag) => flag in recorded.answer_options && recorded.answer_options[flag] !== job.answerOptions[flag]);
  if (differing.length === 0) return;
  const written = differing.map((flag) => shown(flag, recorded.answer_options[flag])).join(', ');
  const asked = differing.map((flag) => shown(flag, job.answerOptions[flag])).join(', ');
  const allFailed = records.failed === records.held ? `; every record it holds is an error, so --retry-failed with this run's options runs them all again` : '';
  throw new NereidError(
    'FAILED_PRECONDITION',
    `${output} was written with ${written}, and this run asks ${asked}: the ${records.held} record(s) it holds were answered otherwise than this run would answer the rest. ` +
      `Rerun with the options that wrote it (${manifestPath(output)} lists them), choose another --output, or --restart to overwrite it${allFailed}`,
  );
}
