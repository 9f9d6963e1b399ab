/**
 * A batch job in this process: the input read lazily, every record through the same Server API
 * the HTTP front end calls (same repository, batcher, instances, pre/post-processing), the output
 * appended record by record and resumed after a crash.
 */
import type { Logger } from 'pino';
import { defaultLibraryLogger } from '../observability/library-logger.js';
import { NereidError } from '../core/errors.js';
import { optionKeyName, parseOptions, type SettingName } from '../core/options.js';
import { createCommandServer } from '../server/create-server.js';
import type { Server } from '../server/server.js';
import { idsOf, openInput, type InputSource } from './input-source.js';
import { checkAnsweredBy, checkOutputName, JobOutput } from './job-output.js';
import { answerOptionsOf } from './output-manifest.js';
import { JobProgress, summarize, type BatchSummary, type ProgressMode } from './job-progress.js';
import { RecordProcessor } from './record-processor.js';
import { runPipeline } from './record-pipeline.js';
import { JOB_MONITORING, localJobSettingsSchema, recordConcurrency } from './job-options.js';

export interface BatchInputOptions {
  model: string;
  version?: string;
  /** A folder of images, a .jsonl or .csv file (either may be gzipped) or a .parquet file. */
  input: string;
  /** The JSONL output, appended to and resumed. */
  output: string;
  /** CSV: every numeric column of a row forms this one input, but those named id or label and the id and pass-through columns. */
  csvInput?: string;
  /** CSV columns (JSONL fields) that are inputs; default: all but the id and pass-through ones. */
  inputColumns?: readonly string[];
  /** The CSV column (JSONL field) that is each record's id, instead of its line number. */
  idColumn?: string;
  /** CSV columns (JSONL fields) copied into each output line, e.g. a label. */
  passThrough?: readonly string[];
  /** Predictions per image for classifiers. */
  topK?: number;
  /** Empty the output first. */
  restart?: boolean;
  /** Run again the records the output holds with an error. */
  retryFailed?: boolean;
  progress?: ProgressMode;
  logger?: Logger;
  /** Stops taking records; those in flight are written, and a rerun continues. */
  signal?: AbortSignal;
  /** How messages name these options (default: as their keys, `restart: true`; the CLI passes batchFlagName, `--restart`). */
  settingName?: SettingName;
}

/** Every key of BatchInputOptions, so that a misspelt option is refused by name instead of ignored. */
const BATCH_INPUT_OPTIONS: Record<keyof BatchInputOptions, true> = {
  model: true,
  version: true,
  input: true,
  output: true,
  csvInput: true,
  inputColumns: true,
  idColumn: true,
  passThrough: true,
  topK: true,
  restart: true,
  retryFailed: true,
  progress: true,
  logger: true,
  signal: true,
  settingName: true,
};
export const BATCH_INPUT_OPTION_KEYS = Object.keys(BATCH_INPUT_OPTIONS);

export interface LocalBatchOptions extends BatchInputOptions {
  /** The repository to load the model from (ignored when `server` is given). */
  modelRepository?: string;
  /** The model may run code from the repository (a javascript handler); ignored when `server` is given. */
  allowCodeModels?: boolean;
  /** A started Server to use instead of one made for the job (it is left running). */
  server?: Server;
  /** Records in flight (default: 4 × the model's max_batch_size; at most what the model's queue admits); the model's batcher forms the batches. */
  concurrency?: number;
}

/** The repository's reason, when the model did not load. */
async function requireReady(server: Server, model: string, version?: string): Promise<void> {
  if (server.modelReady(model, version)) return;
  const index = await server.repositoryIndex();
  const reasons = index.filter((entry) => entry.name === model && entry.reason).map((entry) => entry.reason);
  throw new NereidError('UNAVAILABLE', `model '${model}'${version ? ` version ${version}` : ''} is not ready${reasons.length ? `: ${reasons.join('; ')}` : ''}`);
}

export async function checkInputFits(source: InputSource, processor: RecordProcessor, csvInput?: string, settingName: SettingName = optionKeyName): Promise<void> {
  const csvInputNamed = settingName('csvInput', csvInput);
  // Found before any record runs: each would otherwise fail on its own with the same missing input, and a rerun with
  // the mistake fixed would find them all done.
  if (csvInput !== undefined && !processor.inputNames.includes(csvInput)) {
    throw new NereidError('INVALID_ARGUMENT', `${csvInputNamed}: model '${processor.model}' has no such input; its inputs: ${processor.inputNames.join(', ')}`);
  }
  const others = processor.requiredInputNames.filter((name) => name !== csvInput);
  if (csvInput !== undefined && others.length > 0) {
    throw new NereidError(
      'INVALID_ARGUMENT',
      `${csvInputNamed} forms one input of every numeric column, and model '${processor.model}' also needs ${others.join(', ')} (its inputs: ${processor.inputNames.join(', ')}): ` +
        `leave ${settingName('csvInput')} out and name a column after each input (or NAME.0, NAME.1, … one per element)`,
    );
  }
  if (source.format === 'parquet' && processor.takesImages && source.imageColumn === undefined) {
    throw new NereidError(
      'INVALID_ARGUMENT',
      `model '${processor.model}' takes images, and ${source.path} has no column of them among its input columns (its columns: ${source.describeColumns?.()}): ` +
        'an image column holds encoded images (PNG, JPEG, …) as BINARY, or as a struct {bytes, path} as Hugging Face datasets write them',
    );
  }
  if (source.imageColumn !== undefined && !processor.takesImages) {
    throw new NereidError(
      'FAILED_PRECONDITION',
      `model '${processor.model}' does not take images, and column '${source.imageColumn}' of ${source.path} holds encoded images: ` +
        `name the columns that are the model's inputs (${processor.inputNames.join(', ')}) with ${settingName('inputColumns')}, or choose a model whose input declares preprocess.image`,
    );
  }
  if (source.imageColumn === undefined) source.checkInputColumns?.(processor.inputNames);
  const columns = await source.fieldColumns?.();
  const uncovered = columns ? processor.requiredInputNames.filter((name) => !columns.includes(name) && !columns.includes(`${name}.0`)) : [];
  if (columns && uncovered.length > 0) {
    throw new NereidError(
      'INVALID_ARGUMENT',
      `${source.path} has no column for ${uncovered.length === 1 ? "the model's input" : "the model's inputs"} ${uncovered.join(', ')} (its input columns: ${columns.join(', ') || 'none'}; model '${processor.model}' takes ${processor.inputNames.join(', ')}): ` +
        `name a column after each input (or NAME.0, NAME.1, … one per element)${processor.inputNames.length === 1 ? `, or ${settingName('csvInput', processor.inputNames[0])} to form it of every numeric column` : ''}`,
    );
  }
  if (source.format === 'images' && !processor.takesImages) {
    throw new NereidError(
      'FAILED_PRECONDITION',
      `model '${processor.model}' does not take images: a folder of images needs a model whose one input declares preprocess.image or is one encoded image (BYTES [1], as the ocr pipeline's) (give a .jsonl or .csv of tensors instead)`,
    );
  }
}

export async function runLocalBatchJob(options: LocalBatchOptions): Promise<BatchSummary> {
  const settings = parseOptions('runLocalBatchJob', localJobSettingsSchema, options, [...BATCH_INPUT_OPTION_KEYS, 'server', 'concurrency']);
  const logger = options.logger ?? defaultLibraryLogger();
  const source = await openInput(options.input, options);
  if (source.ignoredFiles > 0) logger.warn(`${source.ignoredFiles} file(s) in ${options.input} are not images (by extension) and are left out`);
  checkOutputName(options.output);
  // The model first: a name the repository lacks is refused before the output (and its lock) is created.
  const ownServer = !options.server;
  const server =
    options.server ??
    (await createCommandServer({ modelRepository: settings.modelRepository, loadModels: [options.model], allowCodeModels: settings.allowCodeModels, monitoring: JOB_MONITORING, logger }));
  let output: JobOutput | undefined;
  let progress: JobProgress | undefined;
  try {
    const opened = await JobOutput.open(options.output, {
      restart: options.restart,
      retryFailed: options.retryFailed,
      input: options.input,
      inputRecords: { count: () => source.count(), ids: () => idsOf(source) },
      job: { answerOptions: answerOptionsOf(options), input: options.input, lineNumbered: source.format !== 'images' && options.idColumn === undefined },
      warn: (message) => logger.warn(message),
      settingName: options.settingName,
    });
    output = opened;
    const [total] = await Promise.all([source.count(), ownServer ? server.start() : undefined]);
    if (total === 0) logger.warn(`${options.input} holds no records: nothing to run`);
    // A version the policy leaves out (a float original beside the quantized one it serves) is loaded for the job.
    if (ownServer && options.version && !server.modelReady(options.model, options.version)) await server.loadVersions(options.model, [options.version]);
    await requireReady(server, options.model, options.version);
    const processor = RecordProcessor.create(server, { model: options.model, version: options.version, topK: options.topK });
    await checkInputFits(source, processor, options.csvInput, options.settingName);
    checkAnsweredBy(opened, options.output, processor.model, processor.version, options.settingName);
    const concurrency = recordConcurrency(processor, options.concurrency);
    const resumed = opened.resumed.records;
    progress = new JobProgress({ total, alreadyDone: resumed, mode: settings.progress }).start();
    const started = performance.now();
    let processed = 0;
    let failed = 0;
    let outOfDistribution = 0;
    let computeNs = 0;
    async function* pending() {
      for await (const record of source.records()) if (!opened.has(record.id)) yield record;
    }
    let interrupted = false;
    try {
      await runPipeline(pending(), (record) => processor.run(record), { concurrency, signal: options.signal }, async (results) => {
        for (const result of results) computeNs += result.computeNs;
        const written = await opened.append(results);
        processed += written.written;
        failed += written.failed;
        outOfDistribution += written.outOfDistribution;
        progress!.add(written.written, written.failed);
      });
      interrupted = options.signal?.aborted ?? false;
    } finally {
      progress.stop();
    }
    return summarize({
      output: options.output,
      records: total,
      resumed,
      processed,
      failed,
      outOfDistribution,
      failedBefore: opened.resumed.failed,
      wallSeconds: (performance.now() - started) / 1000,
      computeSeconds: computeNs / 1e9,
      interrupted,
    });
  } catch (error) {
    await output?.close({ discardIfUntouched: true });
    throw error;
  } finally {
    progress?.stop();
    await output?.close();
    if (ownServer) await server.close();
  }
}
