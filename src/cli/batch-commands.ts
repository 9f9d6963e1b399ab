/**
 * Batch jobs (offline inference over the same core): `nereid batch`, `nereid batch status`, `nereid worker`. Records go
 * to --output (JSONL); the summary goes to stderr as text and to stdout as one JSON line. Their exit status tells a
 * script what happened (BATCH_EXIT); with --json a failure is one JSON object on stdout.
 */
import { Command, CommanderError, Option } from 'commander';
import { ZodError } from 'zod';
import { defaultOf } from '../config/schema-defaults.js';
import { invalidArgument } from '../core/errors.js';
import { BATCH_EXIT, batchFailure } from '../jobs/batch-outcome.js';
import { shownRedisUrl } from '../jobs/chunk-queue.js';
import { batchFlagName, batchWorkerSettingsSchema, distributedJobSettingsSchema, localJobSettingsSchema } from '../jobs/job-options.js';
import { createLogger } from '../observability/log-output.js';
import { collect, integer, list, milliseconds, oneRepository, port, redisUrl } from './arguments.js';
import { authTokensOf } from './auth-tokens.js';
import { allowCodeModelsOption, commandLogger, describeOptionIssues, endBySignal, listening, logLevel } from './command-support.js';
import { prepareLogFile } from './output-files.js';

// Defaults come from each component's options schema, so --help shows the values the components apply.
const distributedDefault = <K extends keyof typeof distributedJobSettingsSchema.shape & string>(key: K) => defaultOf(distributedJobSettingsSchema, key);
const workerDefault = <K extends keyof typeof batchWorkerSettingsSchema.shape & string>(key: K) => defaultOf(batchWorkerSettingsSchema, key);

/** Whether the command line asks for --json, read from it whole: a refused flag stops commander before it parses those after. */
function jsonAsked(): boolean {
  const args = process.argv.slice(2);
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

/** Whether the command line writes a job's records to stdout (`--output -`): stdout then carries nothing else. */
function recordsOnStdout(): boolean {
  const args = process.argv.slice(2);
  return args.some((arg, index) => arg === '--output=-' || (arg === '--output' && args[index + 1] === '-'));
}

/**
 * The exit status of a job whose stdout (`--output -`) was closed by its reader (`| head`): a Unix tool's that SIGPIPE
 * ends (128 + 13), which a shell's pipefail reads as such. Nothing more can be written; the job is not resumable anyway.
 */
const STDOUT_CLOSED_EXIT = 141;

/** Ends the process quietly once its reader closed stdout, instead of a stack for an 'error' no one listens to. */
function endQuietlyOnClosedStdout(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(STDOUT_CLOSED_EXIT);
    throw error;
  });
}

/** `nereid batch …` and `nereid worker …`, which end by BATCH_EXIT (the other commands exit 1 on any failure). */
export const BATCH_COMMANDS: ReadonlySet<string> = new Set(['batch', 'worker']);

/** The exit statuses a batch command's --help lists: a job's own (`nereid batch`), a reader's (status, cancel) or a worker's. */
function batchExitHelp(kind: 'job' | 'reader' | 'worker'): string {
  const rows = [
    `  ${BATCH_EXIT.ok}    ${kind === 'job' ? "the job ran to its end (records written with their errors included: see the summary's failed)" : kind === 'worker' ? 'stopped by SIGTERM/SIGINT after the chunks in hand' : 'done'}`,
    ...(kind === 'job' ? [`  ${BATCH_EXIT.incomplete}    the job ran but did not end complete: cancelled, chunks lost from Redis, or every record of the job failed`] : []),
    `  ${BATCH_EXIT.usage}    not done as given: a bad or missing option, ${kind === 'worker' ? 'a model repository that is not one' : 'an unknown job, or one whose state refuses it'}`,
    `  ${BATCH_EXIT.unavailable}    could not run: Redis unreachable${kind === 'job' ? ', a model that does not load' : ''}, an internal error`,
    ...(kind === 'job' ? [`  ${BATCH_EXIT.interrupted}  interrupted (SIGINT/SIGTERM) after the records in flight; the same command resumes`] : []),
    ...(kind === 'job' ? [`  ${STDOUT_CLOSED_EXIT}  --output -: stdout closed by its reader (| head), as a tool that SIGPIPE ends`] : []),
  ];
  const json = kind === 'worker' ? [] : [`With --json a failure prints {"error": {"code": "...", "message": "..."}} on stdout instead of text on stderr${kind === 'job' ? ' (on stderr with --output -, whose stdout holds the records)' : ''}.`];
  return ['', 'Exit status:', ...rows, ...json].join('\n');
}

/**
 * A batch command's failure: text on stderr (commander has already printed its own refusals), or with --json one
 * `{"error": {code, message}}` on stdout (on stderr with --output -); then its exit status. Help and --version end with 0.
 */
export function endBatchCommand(error: unknown, program: Command): never {
  if (error instanceof CommanderError && error.exitCode === 0) process.exit(0);
  const refused =
    error instanceof CommanderError
      ? invalidArgument(error.message.replace(/^error: /, ''))
      : error instanceof ZodError
        ? invalidArgument(describeOptionIssues(error, program))
        : error;
  if ((error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE' && recordsOnStdout()) process.exit(STDOUT_CLOSED_EXIT);
  const failure = batchFailure(refused);
  // With --output - stdout holds the records: the failure there would read as one more.
  if (jsonAsked()) (recordsOnStdout() ? console.error : console.log)(JSON.stringify({ error: failure.error }));
  else if (!(error instanceof CommanderError)) console.error(`nereid: ${failure.error.message}`);
  process.exit(failure.exitCode);
}

/** Commander's refusals (unknown option, bad value, missing option) thrown to endBatchCommand, and with --json not printed. */
function batchCommandErrors(command: Command, kind: 'job' | 'reader' | 'worker'): Command {
  return command
    .exitOverride()
    .configureOutput({ outputError: (text, write) => (jsonAsked() ? undefined : write(text)) })
    .addHelpText('after', batchExitHelp(kind));
}

/**
 * `batch status` and `batch cancel`: both name a job of a queue and answer in text or JSON, with the same options in
 * the same order; `job` differs (optional for status, which then lists the queue's jobs).
 */
function jobReaderCommand(command: Command, { job, printed }: { job: Option; printed: string }): Command {
  return batchCommandErrors(command, 'reader')
    .requiredOption('--queue <url>', 'the Redis of the job (redis://host:port)', redisUrl)
    .addOption(job)
    .option('--queue-name <name>', 'BullMQ queue of the job', distributedDefault('queueName'))
    .option('--json', `print ${printed} as JSON, and a failure as {"error": {"code", "message"}}`, false);
}

/** `nereid batch` (and its status, cancel) and `nereid worker`. */
export function addBatchCommands(program: Command): void {
  // `batch status` takes --queue and --job as `batch` does; positional options hand them to the subcommand.
  program.enablePositionalOptions();
  const batch = batchCommandErrors(program.command('batch'), 'job')
    .description('run a model over a folder of images, a .jsonl or .csv file (or .jsonl.gz, .csv.gz) or a .parquet file; one JSONL output line per record; resumable; in this process or over a Redis queue (--queue)')
    .enablePositionalOptions()
    .option('--model <name>', 'model to run (required)')
    .option('--model-version <version>', 'model version (default: the latest ready one)')
    .option('--input <path>', 'a folder of images (recursive), a .jsonl or .csv file (either may be gzipped: .jsonl.gz, .csv.gz) or a .parquet file (required)')
    .option('--output <path>', 'JSONL output, appended to; rerunning the same command resumes it (required); its folder must exist (it is not created); - writes to stdout (the summary and a --json failure then go to stderr; not resumable; a reader that closes it, as head does, ends the job with exit 141)')
    .option('--model-repository <dir>', 'model repository to load the model from, in this process (default: the example repository that ships with Nereid)', oneRepository)
    .addOption(allowCodeModelsOption())
    .option('--concurrency <n>', "records in flight in this process (default: 4 × the model's max_batch_size); the model's batcher forms the batches", integer(1))
    .option('--top-k <n>', "predictions per image for classifiers (default: the model's top_k)", integer(1))
    .option('--csv-input <name>', 'CSV, Parquet: every numeric column of a row forms this one input, but the columns named id or label and those of --id-column and --pass-through (default: columns are matched to inputs by name; --input-columns picks them)')
    .option('--input-columns <names>', 'CSV or Parquet columns (JSONL fields) that are inputs, comma-separated, in order (default: all but --id-column and --pass-through)', list)
    .option('--id-column <name>', "CSV or Parquet column (JSONL field) whose value is each record's id in the output (default: the line number; a Parquet row's index from 0)")
    .option('--pass-through <names>', 'CSV or Parquet columns (JSONL fields) copied into each output line as "pass_through", e.g. a label; comma-separated', list)
    .option('--restart', 'empty the output (and, with --queue, the job\'s chunks) and start over', false)
    .option('--retry-failed', 'run again the records the output holds with an error', false)
    .option('--allow-all-failed', 'exit 0 even when every record of the job failed, resumed ones included (each is written with its error either way)', false)
    .addOption(
      new Option('--progress <mode>', 'progress on stderr: a bar on a terminal, a line every 2 s otherwise')
        .choices(localJobSettingsSchema.shape.progress.unwrap().options)
        .default(defaultOf(localJobSettingsSchema, 'progress')),
    )
    .option('--queue <url>', 'distribute over workers through this Redis (redis://host:port); see `nereid worker`', redisUrl)
    .option('--queue-name <name>', 'BullMQ queue the workers listen to', distributedDefault('queueName'))
    .option('--job <name>', 'distributed job name (default: the model and a hash of input, output and version)')
    .option('--chunk-size <n>', 'records per queued chunk', integer(1), distributedDefault('chunkSize'))
    .option('--chunk-max-mib <n>', 'MiB of record bytes a queued chunk carries at most (large images, JSONL lines or CSV rows end a chunk sooner; one larger than this fails)', integer(1, 256), distributedDefault('chunkMaxMib'))
    .option('--attempts <n>', 'tries of a chunk before it fails; when no worker can run it (the model missing on the workers…) the job then stops and exits 3, its records left for a rerun, else they are written with the error', integer(1), distributedDefault('attempts'))
    .option('--backoff-ms <ms>', 'wait before a failed chunk is tried again', milliseconds(0), distributedDefault('backoffMs'))
    .option('--max-pending-chunks <n>', 'chunks in Redis at once, submitted and not yet written', integer(1), distributedDefault('maxPendingChunks'))
    .option('--keep-finished-s <s>', "seconds a finished job's hash (for batch status) and failed chunks stay in Redis; 0 keeps them", integer(0), distributedDefault('keepFinishedS'))
    .option('--json', 'a failure before the summary prints {"error": {"code", "message"}} on stdout instead of text on stderr (the summary is a JSON line on stdout either way, with "error" when the exit status is not 0; both go to stderr with --output -)', false)
    .action(async (flags, command: Command) => {
      for (const required of ['model', 'input', 'output'] as const) {
        if (!flags[required]) throw invalidArgument(`batch needs --${required} (see nereid batch --help)`);
      }
      if (flags.queue) {
        // The workers load the model, with their own flags: these would otherwise be dropped without a word.
        // Each with the worker's flag that decides it: records in flight are a worker's --record-concurrency.
        const localOnly = { modelRepository: ['--model-repository', '--model-repository'], allowCodeModels: ['--allow-code-models', '--allow-code-models'], concurrency: ['--concurrency', '--record-concurrency'] } as const;
        for (const [key, [flag, workerFlag]] of Object.entries(localOnly)) {
          if (command.getOptionValueSource(key) === 'cli') console.error(`nereid batch: ${flag} is for a run in this process; with --queue each worker's own flag decides (nereid worker ${workerFlag} …)`);
        }
      } else {
        // A run in this process queues no chunks: these would otherwise be dropped without a word.
        const queuedOnly = { queueName: '--queue-name', job: '--job', chunkSize: '--chunk-size', chunkMaxMib: '--chunk-max-mib', attempts: '--attempts', backoffMs: '--backoff-ms', maxPendingChunks: '--max-pending-chunks', keepFinishedS: '--keep-finished-s' } as const;
        for (const [key, flag] of Object.entries(queuedOnly)) {
          if (command.getOptionValueSource(key) === 'cli') console.error(`nereid batch: ${flag} is for a distributed job (--queue); a run in this process queues no chunks and ignores it`);
        }
      }
      const controller = new AbortController();
      const interrupt = () => {
        if (controller.signal.aborted) return endBySignal('SIGINT');
        console.error('nereid batch: stopping after the records in flight (again to stop now); rerun the same command to continue');
        controller.abort();
      };
      process.on('SIGINT', interrupt);
      process.on('SIGTERM', interrupt);
      if (flags.output === '-') endQuietlyOnClosedStdout();
      const common = {
        model: flags.model,
        version: flags.modelVersion,
        input: flags.input,
        output: flags.output,
        csvInput: flags.csvInput,
        inputColumns: flags.inputColumns,
        idColumn: flags.idColumn,
        passThrough: flags.passThrough,
        topK: flags.topK,
        restart: flags.restart,
        retryFailed: flags.retryFailed,
        progress: flags.progress,
        signal: controller.signal,
        logger: commandLogger(),
        settingName: batchFlagName,
      };
      const { batchJobOutcome, formatSummary, runDistributedBatchJob, runLocalBatchJob } = await import('../jobs/index.js');
      const summary = flags.queue
        ? await runDistributedBatchJob({
            ...common,
            queue: flags.queue,
            queueName: flags.queueName,
            job: flags.job,
            chunkSize: flags.chunkSize,
            chunkMaxMib: flags.chunkMaxMib,
            attempts: flags.attempts,
            backoffMs: flags.backoffMs,
            maxPendingChunks: flags.maxPendingChunks,
            keepFinishedS: flags.keepFinishedS,
          })
        : await runLocalBatchJob({ ...common, modelRepository: flags.modelRepository, allowCodeModels: flags.allowCodeModels, concurrency: flags.concurrency });
      console.error(formatSummary(summary));
      // Records left unwritten (their chunks vanished from Redis, or the job was cancelled) are work not done: a script must not take the run as complete.
      const outcome = batchJobOutcome(summary, { allowAllFailed: flags.allowAllFailed });
      const summaryLine = JSON.stringify(outcome.error ? { ...summary, error: outcome.error } : summary);
      // With --output - stdout is the answers': the summary line would read as one more record.
      if (flags.output === '-') console.error(summaryLine);
      else console.log(summaryLine);
      if (outcome.error?.code === 'ALL_RECORDS_FAILED') console.error(`nereid batch: every record of the job failed (${summary.failedTotal}); exiting 1 (--allow-all-failed exits 0)`);
      process.exit(outcome.exitCode);
    });

  jobReaderCommand(batch.command('status'), {
    job: new Option('--job <name>', 'the job name (printed in the summary of `nereid batch --queue`); default: list the 20 most recently submitted jobs'),
    printed: 'the status',
  })
    .description('progress of a distributed batch job: chunks waiting/active/completed/failed, records written; without --job, the queue\'s recent jobs')
    .action(async (flags) => {
      const { batchJobList, batchJobStatus, formatStatus } = await import('../jobs/batch-status.js');
      if (flags.job === undefined) {
        const jobs = await batchJobList({ queue: flags.queue, queueName: flags.queueName });
        if (flags.json) console.log(JSON.stringify(jobs));
        else console.log(jobs.length ? jobs.map(formatStatus).join('\n\n') : `no batch jobs in queue '${flags.queueName}' at ${shownRedisUrl(flags.queue)}`);
        process.exit(0);
      }
      const status = await batchJobStatus({ queue: flags.queue, queueName: flags.queueName, job: flags.job });
      console.log(flags.json ? JSON.stringify(status) : formatStatus(status));
      process.exit(0);
    });

  jobReaderCommand(batch.command('cancel'), {
    job: new Option('--job <name>', 'the job name (printed by `nereid batch --queue` and listed by `nereid batch status`)').makeOptionMandatory(),
    printed: 'the result',
  })
    .description("cancel a distributed batch job: its waiting chunks leave the queue, chunks workers hold run to the end, its submitter stops; nothing written is lost, and the same `nereid batch` command resumes the job")
    .action(async (flags) => {
      const { cancelBatchJob, formatCancel } = await import('../jobs/batch-status.js');
      const result = await cancelBatchJob({ queue: flags.queue, queueName: flags.queueName, job: flags.job });
      console.log(flags.json ? JSON.stringify(result) : formatCancel(result));
      process.exit(0);
    });

  batchCommandErrors(program.command('worker'), 'worker')
    .description('process chunks of distributed batch jobs from a Redis queue; start any number, anywhere with the model repository')
    .requiredOption('--queue <url>', 'Redis to take chunks from (redis://host:port) (required)', redisUrl)
    .option('--queue-name <name>', 'BullMQ queue to listen to', workerDefault('queueName'))
    .option('--model-repository <dir>', 'model repository; models load on demand (default: the example repository that ships with Nereid)', oneRepository)
    .addOption(allowCodeModelsOption())
    .option('--concurrency <n>', 'chunks processed at once', integer(1), workerDefault('concurrency'))
    .option('--record-concurrency <n>', "records in flight within a chunk (default: 4 × the model's max_batch_size)", integer(1))
    .option('--name <name>', 'worker name shown as the processedBy of its chunks (default host:pid)')
    .option('--lock-duration-ms <ms>', 'a chunk whose worker stops renewing its lock this long is given to another worker', milliseconds(100), workerDefault('lockDurationMs'))
    .option('--stalled-interval-ms <ms>', 'how often to look for chunks of dead workers (default: half the lock duration)', milliseconds(100))
    .option('--max-stalled-count <n>', 'times a chunk may be recovered from dead workers before it fails (its records then written with the error: a record that crashes every worker cannot block its job)', integer(0), workerDefault('maxStalledCount'))
    .option('--log-verbose <level>', 'log verbosity: 0 info, 1 debug, 2 trace', integer(0), 0)
    .addOption(new Option('--log-format <format>', 'log lines as text (for a person) or json (for a collector); default: text on a terminal, else json').choices(['text', 'json']))
    .option('--log-file <path>', 'append logs to this file instead of the terminal')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port, GET /metrics: chunks, records and chunk durations, and the inference metrics of the models run (0 picks a free one; default: none)', port)
    .option('--metrics-host <host>', 'address the metrics port binds', '127.0.0.1')
    .option('--metrics-auth-token <token>', 'require Authorization: Bearer <token> on the metrics port (repeatable; env NEREID_METRICS_AUTH_TOKEN)', collect, [])
    .action(async (flags) => {
      if (flags.logFile !== undefined) await prepareLogFile(flags.logFile);
      const logger = createLogger({ level: logLevel(flags.logVerbose), format: flags.logFormat, file: flags.logFile, fd: 2, base: { service: 'nereid-worker' } });
      const [{ startBatchWorker }, { createMetricsListener, PrometheusMetrics, registerBatchWorkerMetrics }] = await Promise.all([import('../jobs/batch-worker.js'), import('../observability/index.js')]);
      const metrics = flags.metricsPort === undefined ? undefined : new PrometheusMetrics();
      const metricsListener = metrics && createMetricsListener(metrics, { logger, authTokens: await authTokensOf({ metricsAuthToken: flags.metricsAuthToken }) });
      const worker = await startBatchWorker({
        observers: metrics ? [metrics.observer] : undefined,
        onChunk: metrics ? registerBatchWorkerMetrics(metrics.registry) : undefined,
        queue: flags.queue,
        queueName: flags.queueName,
        modelRepository: flags.modelRepository,
        allowCodeModels: flags.allowCodeModels,
        concurrency: flags.concurrency,
        recordConcurrency: flags.recordConcurrency,
        name: flags.name,
        lockDurationMs: flags.lockDurationMs,
        stalledIntervalMs: flags.stalledIntervalMs,
        maxStalledCount: flags.maxStalledCount,
        logger,
      });
      metrics?.attach(worker.server);
      if (metricsListener) {
        const bound = await listening('--metrics-port', flags.metricsHost, flags.metricsPort, () => metricsListener.listen(flags.metricsHost, flags.metricsPort));
        logger.info(`Prometheus metrics on http://${flags.metricsHost}:${bound}/metrics`);
      }
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return endBySignal('SIGINT');
        stopping = true;
        logger.info({ signal }, 'finishing the chunks in hand, then stopping');
        await worker.close();
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
    });
}
