import { Command, Option } from 'commander';
import { defaultOf } from '../config/schema-defaults.js';
import { GATE_METRICS } from '../eval/accuracy-gate.js';
import { DEFAULT_TOP_K, evalOptionsSchema } from '../eval/eval-options.js';
import { OUTPUT_KINDS } from '../eval/output-comparison.js';
import { chartPath, integer, number, oneRepository, versionList } from './arguments.js';
import { allowCodeModelsOption, commandLogger, verdictCommand } from './command-support.js';
import { checkWritableFile } from './output-files.js';

/** `nereid eval`. */
export function addEvalCommand(program: Command): void {
  verdictCommand(program, 'eval', 'the last version failed --gate')
    .description("score a model's versions side by side on the same examples: against labels (accuracy, per-class figures, calibration; text accuracy for CTC recognisers) and against the first version (agreement, output deltas), with size and speed; with --gate, exit 1 when the last version fails it")
    .requiredOption('--model <name>', 'model to evaluate')
    .requiredOption('--data <path>', "a folder of images (one sub-folder per class, named as the model's labels, or none: unlabelled), a Parquet file with a column of images, or a JSONL, CSV or Parquet file of input tensors; an optional label field or column")
    .option('--versions <list>', 'versions to compare, the first as the reference, e.g. 1,2 (default: those the model\'s policy loads)', versionList)
    .option('--model-repository <dir>', 'model repository to load the model from, in this process (default: the example repository that ships with Nereid)', oneRepository)
    .addOption(allowCodeModelsOption())
    .option('--output <name>', 'output to judge (default: the first)')
    .addOption(new Option('--kind <kind>', 'what the output means (default: from its declaration: a vector of scores = classification, labelled matrix = CTC text, any other = a probability map)').choices(OUTPUT_KINDS))
    .option('--threshold <p>', `probability map: values at or above it form the region compared by IoU (default: ${defaultOf(evalOptionsSchema, 'threshold')})`, number(0, 1))
    .option('--top-k <n>', `k of the top-k accuracy, at most the number of classes (default: ${DEFAULT_TOP_K}, or the number of classes when fewer)`, integer(1))
    .option('--gate <clauses>', `what the last version must meet against the first, e.g. "accuracy_drop<=0.005,agreement>=0.99"; metrics: ${Object.keys(GATE_METRICS).join(', ')}`)
    .option('--min-gate-examples <n>', 'examples the gate needs at least; on fewer it fails, whatever the figures', integer(1), defaultOf(evalOptionsSchema, 'minGateExamples'))
    .option('--json', 'print the report as one JSON object')
    .option('--plot <file>', 'also write a chart of the comparison, as SVG (file ending in .svg) or PNG (.png)', chartPath)
    .action(async (flags) => {
      // Found out now rather than after a long evaluation.
      if (flags.plot) await checkWritableFile('--plot', flags.plot);
      const { formatEvalReport, runEval, writeComparisonChart } = await import('../eval/index.js');
      const report = await runEval(
        { modelRepository: flags.modelRepository, allowCodeModels: flags.allowCodeModels, model: flags.model, versions: flags.versions, data: flags.data, output: flags.output, kind: flags.kind, threshold: flags.threshold, topK: flags.topK, gate: flags.gate, minGateExamples: flags.minGateExamples },
        commandLogger(),
      );
      console.log(flags.json ? JSON.stringify(report) : formatEvalReport(report));
      if (flags.plot) {
        await writeComparisonChart(report, flags.plot);
        // On stderr beside --json, whose stdout is the report alone.
        (flags.json ? console.error : console.log)(`wrote ${flags.plot}`);
      }
      process.exitCode = report.gate && !report.gate.passed ? 1 : 0;
    });
}
