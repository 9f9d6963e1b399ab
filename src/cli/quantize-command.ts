import { access } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { defaultOf } from '../config/schema-defaults.js';
import { OUTPUT_KINDS } from '../eval/output-comparison.js';
import { REFERENCE_PROFILE_FILE, profileCommand } from '../monitoring/reference-profile.js';
import { DEFAULT_GATES, quantizeOptionsSchema } from '../quantize/quantize-options.js';
import { repositoryForHints } from '../repository/bundled-repository.js';
import { integer, nodeNames, number, oneRepository, versionNumber } from './arguments.js';
import { commandLogger, verdictCommand } from './command-support.js';

/** How the calibration set was used, where the method calibrates ranges at all (dynamic and fp16 do not). */
function calibrationDetail({ ranges, biasCorrection }: { ranges?: string; biasCorrection?: boolean }): string {
  const parts = [ranges, biasCorrection ? 'biases corrected' : undefined].filter((part) => part !== undefined);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** Which nodes stayed float and why, while the list is short enough to read on one line (quantization.json has them all). */
function floatNodesShown(floatNodes: readonly { node: string; reason: string }[]): string {
  if (floatNodes.length === 0 || floatNodes.length > 8) return floatNodes.length === 0 ? '' : ' (quantization.json lists them)';
  return ` (${floatNodes.map(({ node, reason }) => `${node}: ${reason}`).join('; ')})`;
}

/** `nereid quantize`. */
export function addQuantizeCommand(program: Command): void {
  verdictCommand(program, 'quantize', 'no version was written (the gate failed, or auto found nothing faster that passes)')
    .description('write a smaller version of a model beside the original — static int8 (QDQ) calibrated on sample inputs, dynamic int8 MatMuls, fp16 weights, or auto: static with the costliest nodes kept float until the gate holds, and only if faster — with its size, speed and agreement on held-out examples (then check it with nereid eval); exit 1 when no version was written')
    .requiredOption('--model <name>', 'model to quantize')
    .requiredOption('--calibration <path>', 'sample inputs: a folder of images (through the model\'s pre-processing), a Parquet file with a column of images, or a JSONL, CSV or Parquet file of input tensors as nereid batch reads them')
    .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
    .option('--version <n>', "version to quantize (default: the newest float version the model's policy serves)", versionNumber)
    .option('--output-version <n>', 'version folder to write (default: one above the highest, or the next free one if another run wrote that meanwhile; under the default version policy it then serves)', versionNumber)
    .addOption(new Option('--method <method>', 'quantization method').choices(quantizeOptionsSchema.shape.method.unwrap().options).default(defaultOf(quantizeOptionsSchema, 'method')))
    .option('--ranges <how>', "activation ranges: 'minmax' or a percentile of the values kept, e.g. 99.99", (value: string) => (value === 'minmax' ? value : number(50, 100, { min: true })(value)), defaultOf(quantizeOptionsSchema, 'ranges'))
    .option('--no-bias-correction', "static and auto: keep Conv and Gemm biases as they are instead of correcting them for the shift their int8 weights cause (from the calibration inputs' channel means)")
    .option('--keep-float <nodes>', "nodes to leave float whatever the method (ONNX Runtime's nodes_to_exclude), by name, comma-separated or repeated; auto's search keeps others float on top of them", nodeNames, [])
    .option('--max-examples <n>', 'calibration examples read at most (--hold-out of them, spread over the data, held out to measure agreement and speed)', integer(5), defaultOf(quantizeOptionsSchema, 'maxExamples'))
    .option('--hold-out <share>', 'share of the examples held out of calibration to judge the gate on', number(0, 1, { min: true, max: true }), defaultOf(quantizeOptionsSchema, 'holdOut'))
    .option('--min-gate-examples <n>', 'held-out examples the gate needs at least; fewer, and nothing is quantized', integer(1), defaultOf(quantizeOptionsSchema, 'minGateExamples'))
    .option('--gate <clauses>', `what the new version must meet on the held-out examples (auto searches until it does); default by output kind: ${Object.entries(DEFAULT_GATES).map(([kind, gate]) => `${kind} "${gate}"`).join(', ')}`)
    .addOption(new Option('--kind <kind>', 'what the first output means (default: from its declaration, as nereid eval reads it)').choices(OUTPUT_KINDS))
    .option('--threshold <p>', 'probability map: values at or above it form the region compared by IoU', number(0, 1), defaultOf(quantizeOptionsSchema, 'threshold'))
    .option('--json', 'print the report as one JSON object')
    .action(async (flags) => {
      const { runQuantize } = await import('../quantize/index.js');
      const started = performance.now();
      const report = await runQuantize(
        {
          modelRepository: flags.modelRepository,
          model: flags.model,
          version: flags.version,
          outputVersion: flags.outputVersion,
          calibration: flags.calibration,
          method: flags.method,
          ranges: flags.ranges,
          biasCorrection: flags.biasCorrection,
          maxExamples: flags.maxExamples,
          keepFloat: flags.keepFloat,
          holdOut: flags.holdOut,
          minGateExamples: flags.minGateExamples,
          gate: flags.gate,
          kind: flags.kind,
          threshold: flags.threshold,
        },
        commandLogger(),
        (phase) => process.stderr.write(`nereid quantize: [${((performance.now() - started) / 1000).toFixed(0)} s] ${phase}\n`),
      );
      process.exitCode = report.decision.written ? 0 : 1;
      // On stderr even with --json: the held-out agreement cannot show it, and a script serving the version should see it.
      if (report.decision.written && report.method === 'dynamic') {
        console.error(
          `nereid quantize: warning: version ${report.outputVersion} is dynamic int8: each batch's activations are quantized with that batch's own range, so behind the dynamic batcher a request's answer can change with the requests batched with it (the agreement above was measured one example at a time); use --method static where answers must not depend on traffic`,
        );
      }
      if (flags.json) return console.log(JSON.stringify(report));
      const { agreement, msPerExample, sizes } = report;
      const percent = (value: number | undefined) => (value === undefined ? '—' : `${(value * 100).toFixed(2)} %`);
      const keptFloat = report.floatNodes.filter((entry) => entry.reason === 'excluded').length;
      console.log(
        [
          report.decision.written ? `${report.model} version ${report.sourceVersion} -> ${report.outputVersion} (${report.path}): ${report.decision.reason}` : `${report.model} version ${report.sourceVersion}: no version written — ${report.decision.reason}`,
          // Dynamic and fp16 calibrate nothing: the examples only judge agreement and speed.
          report.method === 'dynamic' || report.method === 'fp16'
            ? `calibration: none (${report.method === 'dynamic' ? 'dynamic int8 quantizes activations at run time' : 'fp16 keeps activations in float'}); ${report.calibration.heldOut} examples held out judge the gate; sha256 ${report.calibration.sha256.slice(0, 16)}…`
            : `calibration: ${report.calibration.examples} examples${calibrationDetail(report.calibration)}, ${report.calibration.heldOut} held out; sha256 ${report.calibration.sha256.slice(0, 16)}…`,
          // fp16 converts weight tensors, not nodes: its list names initializers.
          report.method === 'fp16'
            ? `weights: ${report.quantizedNodes.length} tensor(s) stored as fp16, ${report.floatNodes.length} left float32`
            : `nodes: ${report.quantizedNodes.length} quantized, ${report.floatNodes.length} left float${floatNodesShown(report.floatNodes)}`,
          ...(report.search ? [`search: ${report.search.map((step) => `${step.floatNodes} float -> ${percent(step.agreement)}${step.passed ? (step.floatNodes === keptFloat ? ' (passes, kept)' : ' (passes)') : ''}`).join(', ')}`] : []),
          `size: ${sizes.sourceBytes} -> ${sizes.quantizedBytes} bytes (${sizes.ratio.toFixed(3)}x)`,
          `held-out agreement (${agreement.measure}): ${percent(agreement.agreement)}${agreement.characterAgreement === undefined ? '' : `, characters ${percent(agreement.characterAgreement)}`}, largest delta of the raw output ${agreement.maxAbsDelta.toFixed(4)}; gate "${report.gate.spec}" ${report.gate.passed ? 'passed' : 'FAILED'}`,
          `ms per example (batch 1, 1 thread): source ${msPerExample.source.toFixed(3)}, quantized ${msPerExample.quantized.toFixed(3)} (${msPerExample.speedup.toFixed(2)}x)`,
        ].join('\n'),
      );
      // Only auto judges speed: a version another method wrote slower than its source is said to be so before it serves.
      if (report.decision.written && msPerExample.speedup < 1) {
        console.error(
          `nereid quantize: warning: version ${report.outputVersion} ran ${msPerExample.speedup.toFixed(2)}x as fast as version ${report.sourceVersion} (batch 1, 1 thread): compare them with nereid eval --versions ${report.sourceVersion},${report.outputVersion} before the model's version_policy serves it (--method auto keeps a model float when int8 is not faster)`,
        );
      }
      // The source's profile describes the float model's features: the new version needs its own to be monitored.
      const sourceProfile = report.path && join(dirname(report.path), report.sourceVersion, REFERENCE_PROFILE_FILE);
      if (sourceProfile && (await access(sourceProfile).then(() => true, () => false))) {
        console.log(`version ${report.outputVersion} has no reference profile, where version ${report.sourceVersion} has one: build it so the new version is monitored too: ${profileCommand(report.model, report.outputVersion!, await repositoryForHints(flags.modelRepository))}`);
      }
    });
}
