import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { defaultOf } from '../config/schema-defaults.js';
import { tuneOptionsSchema } from '../tools/tune-options.js';
import { chartPath, inputShape, integer, integerList, number, oneRepository, seconds, versionList } from './arguments.js';
import { allowCodeModelsOption, commandLogger, verdictCommand } from './command-support.js';
import { checkWritableFile } from './output-files.js';

/** `nereid tune`. */
export function addTuneCommand(program: Command): void {
  verdictCommand(program, 'tune', 'no config met --p99-ms or --max-cost, or --write could not write the winner')
    .description(
      "find the serving config that does best for a model on this machine by measuring it: the batch curve first, then instance × thread splits and execution thread, batch size, queue delay (fixed, and latency-aware batching), graph optimisation and the model's versions one at a time, each under real requests through the server core; prints the table with the Pareto front, and writes the winner into the config with --write",
    )
    .requiredOption('--model <name>', 'model to tune')
    .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
    .addOption(allowCodeModelsOption())
    .option('--versions <list>', "the versions the version step measures, e.g. 1,2 (default: every version folder, served by the model's policy or not; the report says which it serves)", versionList)
    .addOption(
      new Option('--concurrency <list>', 'closed-loop client concurrency levels each config is measured at').argParser(integerList).default(defaultOf(tuneOptionsSchema, 'concurrency'), defaultOf(tuneOptionsSchema, 'concurrency').join(',')),
    )
    .option('--p99-ms <ms>', 'objective: the best throughput whose p99 latency stays under this (judged at the levels that meet it; the others must not lose throughput either)', number(0.001))
    .option('--max-cost <usd>', 'objective: the best throughput whose compute cost per 1,000 inferences stays under this', number(0))
    .option('--cost-per-core-hour <usd>', 'price of one core-hour, for costs', number(0), defaultOf(tuneOptionsSchema, 'usdPerCoreHour'))
    .option('--budget-s <seconds>', 'stop starting new measurements after this many seconds', seconds(1), defaultOf(tuneOptionsSchema, 'budgetSeconds'))
    .option('--min-gain <fraction>', 'write another config only when it beats the current one by this much at the level the objective judges, and loses no other level measured by more (below 1/(1 + this)); a fraction from 0 to 1 (0.05: 5 %)', number(0, 1), defaultOf(tuneOptionsSchema, 'minGain'))
    .option('--confirm-rounds <n>', 'rounds in which the current config and the chosen one are measured again in turn before the chosen one is written (its gain must hold in their median, at every level); when it does not, the next of the search\'s best is tried, up to three; 0: trust the search (then only a config that lost no level in it)', integer(0), defaultOf(tuneOptionsSchema, 'confirmRounds'))
    .option('--warmup-s <seconds>', 'warm-up before each measurement', seconds(0), defaultOf(tuneOptionsSchema, 'warmupSeconds'))
    .option('--duration-s <seconds>', 'length of each measurement', seconds(0.1), defaultOf(tuneOptionsSchema, 'durationSeconds'))
    .option('--repeats <n>', 'measurements per concurrency level (the median is kept)', integer(1), defaultOf(tuneOptionsSchema, 'repeats'))
    .option('--max-batch-size <n>', "largest max_batch_size tried (default: 64, or the config's own when larger)", integer(1))
    .option('--input-shape <name=dims>', 'dims after the batch dimension of an input with dynamic dims, e.g. x=3,48,320; for an image input, the synthetic image\'s HEIGHT,WIDTH (default 64,64) (repeatable)', inputShape)
    .option('--over-http', 'send the requests over HTTP on loopback (binary tensors) instead of calling the core in process')
    .option('--chart <file>', 'draw throughput against p99 latency, as .svg or .png', chartPath)
    .option('--write', "write the winner's settings into the model's config (config.yaml/.json), keeping a backup of the old file")
    .option('--dry-run', 'print the settings the winner would write, and write nothing (the default without --write)')
    .option('--json', 'print the whole report as JSON')
    .action(async (flags) => {
      if (flags.write && flags.dryRun) throw new Error('--write and --dry-run contradict each other: --write writes the winner, --dry-run only prints it');
      const [{ formatTuneReport, runTune, settingsToWrite, unmetObjective, writableConfigOf, writeTunedConfig, writeTuneChart }, { Presets, SingleBar }] = await Promise.all([import('../tools/index.js'), import('cli-progress')]);
      // Found out now rather than after the whole search; what is read now is what the result may replace.
      const readAtStart = flags.write ? await writableConfigOf(resolve(flags.modelRepository, flags.model)) : undefined;
      if (flags.chart) await checkWritableFile('--chart', flags.chart);
      const logger = commandLogger();
      const bar = process.stderr.isTTY && !flags.json ? new SingleBar({ format: 'tune |{bar}| {value}/{total} configs | {elapsed} s of {budget} s | {label}', hideCursor: true }, Presets.shades_classic) : undefined;
      bar?.start(1, 0, { label: 'starting', elapsed: 0, budget: flags.budgetS });
      const report = await runTune(
        {
          modelRepository: flags.modelRepository,
          allowCodeModels: flags.allowCodeModels,
          model: flags.model,
          versions: flags.versions,
          concurrency: flags.concurrency,
          p99Ms: flags.p99Ms,
          maxCostUsd: flags.maxCost,
          usdPerCoreHour: flags.costPerCoreHour,
          budgetSeconds: flags.budgetS,
          minGain: flags.minGain,
          confirmRounds: flags.confirmRounds,
          warmupSeconds: flags.warmupS,
          durationSeconds: flags.durationS,
          repeats: flags.repeats,
          maxBatchSizeLimit: flags.maxBatchSize,
          inputShapes: flags.inputShape,
          overHttp: Boolean(flags.overHttp),
        },
        logger,
        (progress) => {
          bar?.setTotal(Math.max(progress.planned, progress.done));
          bar?.update(progress.done, { label: progress.label, elapsed: progress.elapsedSeconds.toFixed(0), budget: progress.budgetSeconds });
        },
      ).finally(() => bar?.stop());
      if (flags.chart) await writeTuneChart(report, flags.chart);
      const changed = report.best !== undefined && report.best > 0;
      // A write that fails (the config changed while tune measured) still shows the winner, then exits 1.
      let written: { path: string; backup: string } | undefined;
      let notWritten: string | undefined;
      if (changed && readAtStart) {
        written = await writeTunedConfig(resolve(flags.modelRepository, flags.model), report, readAtStart).catch((error: Error) => {
          notWritten = error.message;
          return undefined;
        });
      }
      if (notWritten) process.exitCode = 1;
      // The backup's path is in the JSON too: a script that wrote a config must be able to undo it.
      if (flags.json) console.log(JSON.stringify({ ...report, written: written ?? null, ...(notWritten ? { notWritten } : {}) }));
      else {
        console.log(formatTuneReport(report, flags.costPerCoreHour));
        if (written) console.log(`wrote ${written.path} (the old one: ${written.backup})`);
        else if (changed) {
          // config.pbtxt (which --write does not edit) or no file: the settings as a new file would take them.
          const file = await writableConfigOf(resolve(flags.modelRepository, flags.model)).catch(() => ({ text: '' }));
          console.log(`settings it would write (--write): ${JSON.stringify(settingsToWrite(report.results[report.best!].candidate, file))}`);
        }
      }
      if (notWritten) console.error(`nereid: ${notWritten}`);
      // A bound nothing met is a failure a script must see; the text report already says it on stdout.
      const unmet = unmetObjective(report);
      if (unmet) {
        process.exitCode = 1;
        if (flags.json) console.error(`nereid: ${unmet}`);
      }
    });
}
