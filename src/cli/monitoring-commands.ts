import { Command, Option } from 'commander';
import { defaultOf } from '../config/schema-defaults.js';
import { type DriftLevel, failsAt } from '../monitoring/drift-report.js';
import { profileOptionsSchema } from '../tools/profile-options.js';
import { integer, number, oneRepository, versionNumber } from './arguments.js';
import { commandLogger, serverClient, serverConnectionOptions, verdictCommand } from './command-support.js';

/** `nereid monitor --url … --fail-on …`'s exit status when the version has no profile, so no state to judge: not 1 (drift), not 0 (a silent pass). */
const EXIT_NOT_MONITORED = 3;

/** The parts of a server's /monitor answer `nereid monitor --url` prints. */
interface LiveMonitor {
  model: string;
  version: string;
  monitored: boolean;
  reason?: string;
  state: string;
  since?: string;
  drift_score?: number;
  state_evaluation?: { at?: string; drift_score?: number };
  transitions?: { from: string; to: string; at: string; score?: number }[];
  thresholds: { warning: number; drift: number };
  window: { rows: number; capacity: number };
  rows_since_load: number;
  ood?: { share?: number; expected_share?: number };
  accuracy?: { expected?: number; realised?: number; labelled: number; caution?: string };
  features: { feature: string; psi: number; chance_psi?: number; ks?: number; level: string; informational?: boolean }[];
}

/** The live state as `nereid monitor` prints a report: the state and why, then one row per monitored value. */
function formatLiveMonitor(live: LiveMonitor, origin: string): string {
  if (!live.monitored) return `${live.model} version ${live.version} (${origin}): not monitored: ${live.reason}`;
  const percent = (value: number | undefined) => (value === undefined ? '—' : `${(value * 100).toFixed(1)} %`);
  const score = (value: number | undefined) => value?.toFixed(3) ?? '—';
  // The last state evaluation need not have moved the state (hysteresis): the move is the last transition, with its own score.
  const moved = live.transitions?.at(-1);
  const move = moved
    ? `the state last moved ${moved.from} → ${moved.to}${moved.score === undefined ? '' : ` on ${score(moved.score)}`} at ${moved.at}`
    : 'the state has not moved since load';
  return [
    `${live.model} version ${live.version} (${origin}): state ${live.state.toUpperCase()} since ${live.since ?? '—'}; ${live.window.rows} of ${live.window.capacity} rows in the window (${live.rows_since_load} since load)`,
    `drift score now ${score(live.drift_score)}, at the last state evaluation ${score(live.state_evaluation?.drift_score)} (${live.state_evaluation?.at ?? '—'}); ${move} (warning ${live.thresholds.warning}, drift ${live.thresholds.drift})`,
    ...(live.ood ? [`out of distribution: ${percent(live.ood.share)} of the window (expected ${percent(live.ood.expected_share)})`] : []),
    ...(live.accuracy ? [`accuracy expected from confidence: ${percent(live.accuracy.expected)}${live.accuracy.labelled > 0 ? `; realised on ${live.accuracy.labelled} labelled rows: ${percent(live.accuracy.realised)}` : ''}`] : []),
    ...(live.accuracy?.caution ? [`caution: ${live.accuracy.caution}`] : []),
    ...featureDriftTable(live.features.map((feature) => ({ ...feature, chance: feature.chance_psi }))),
  ].join('\n');
}

/**
 * One row per monitored value, as both kinds of `nereid monitor` report print them. The level is judged on PSI beyond
 * what chance gives a window of its size, so that column is shown beside the raw PSI the thresholds would seem to read.
 */
function featureDriftTable(features: readonly { feature: string; psi: number; chance?: number; ks?: number; level: string; informational?: boolean }[]): string[] {
  return [
    '| value | PSI | PSI beyond chance | KS D | level |',
    '|---|---:|---:|---:|---|',
    ...features.map(
      (feature) =>
        `| ${feature.feature} | ${feature.psi.toFixed(3)} | ${Math.max(0, feature.psi - (feature.chance ?? 0)).toFixed(3)} | ${feature.ks?.toFixed(3) ?? '–'} | ${feature.level}${feature.informational ? ' (not counted: images are resized)' : ''} |`,
    ),
  ];
}

/** `nereid profile` and `nereid monitor`. */
export function addMonitoringCommands(program: Command): void {
  program
    .command('profile')
    .addHelpText('after', ['', 'Exit status:', '  0    the profile was written', '  1    not written: a bad or missing option, a model or data that cannot be read, too few examples, an internal error'].join('\n'))
    .description("build a model version's reference profile from in-distribution data (what it was trained or validated on) and store it beside the version as reference.json: an out-of-distribution detector on the representation its classifier head reads, with the threshold set for --false-positive-rate on held-out examples")
    .requiredOption('--model <name>', 'model to profile')
    .requiredOption('--data <path>', "in-distribution examples: a folder of images (through the model's pre-processing), a Parquet file with a column of images, or a JSONL, CSV or Parquet file of input tensors")
    .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
    .option('--version <n>', "version to profile (default: the one the model's policy serves)", versionNumber)
    .option('--false-positive-rate <p>', 'share of held-out in-distribution examples the OOD flag may raise', number(0, 1, { min: true, max: true }), defaultOf(profileOptionsSchema, 'falsePositiveRate'))
    .option('--max-examples <n>', 'examples read at most (80 % fit the detector, 10 % set the threshold, 10 % check it)', integer(50), defaultOf(profileOptionsSchema, 'maxExamples'))
    .option('--tensor <name>', 'representation to score (default: the tensor the classifier head reads, pooled per channel)')
    .option('--json', 'print the summary as one JSON object')
    .action(async (flags) => {
      const { runProfile } = await import('../tools/index.js');
      const profile = await runProfile(
        { modelRepository: flags.modelRepository, model: flags.model, version: flags.version, data: flags.data, falsePositiveRate: flags.falsePositiveRate, maxExamples: flags.maxExamples, tensor: flags.tensor },
        commandLogger(),
      );
      const ood = profile.ood!;
      const summary = {
        path: profile.path,
        examples: profile.provenance.data.examples,
        tensor: ood.tensor,
        features: ood.precision.length,
        threshold: ood.threshold,
        targetFalsePositiveRate: ood.targetFalsePositiveRate,
        heldOutFalsePositiveRate: ood.heldOutFalsePositiveRate,
        monitored: Object.keys(profile.features),
        calibration: profile.calibration ? { examples: profile.calibration.examples, ece: profile.calibration.ece } : undefined,
        warnings: profile.warnings,
        replaced: profile.replaced,
      };
      for (const warning of profile.warnings) console.error(`nereid profile: warning: ${warning}`);
      console.log(
        flags.json
          ? JSON.stringify(summary)
          : [
              `wrote ${summary.path}: ${summary.examples} examples`,
              ...(summary.replaced ? [`replaced ${summary.path} ${'unreadable' in summary.replaced ? `(unreadable: ${summary.replaced.unreadable})` : `(built from ${summary.replaced.examples} examples on ${summary.replaced.created})`}`] : []),
              `OOD detector on '${summary.tensor}' (${summary.features} features): threshold ${summary.threshold.toFixed(2)} for ${(summary.targetFalsePositiveRate * 100).toFixed(1)} % false positives, ${(summary.heldOutFalsePositiveRate * 100).toFixed(1)} % measured on held-out examples`,
              `monitored values: ${summary.monitored.join(', ')}`,
              summary.calibration ? `calibration from the labels: ECE ${(summary.calibration.ece * 100).toFixed(2)} % over ${summary.calibration.examples} examples` : 'no labels (class folders or a label column): no calibration (the accuracy estimate needs one)',
            ].join('\n'),
      );
    });

  const monitor = verdictCommand(program, 'monitor', `the state is at or beyond --fail-on; ${EXIT_NOT_MONITORED}: --fail-on with --url, and the version is not monitored`)
    .description("score new data against a model version's reference profile (nereid profile): how many examples are out of distribution, how far each monitored value (output confidence, entropy, margin, image properties, predicted class shares) has drifted, and the accuracy expected from confidence (realised too when --data has class folders or a label column)")
    .requiredOption('--model <name>', 'model whose profile to use')
    .option('--data <path>', 'examples to check: a folder of images, a Parquet file with a column of images, or a JSONL, CSV or Parquet file of input tensors (or --url)')
    .option('--url <url>', "instead of --data: read the live state a running server keeps for the version (its /monitor), e.g. http://127.0.0.1:8000");
  serverConnectionOptions(monitor, 'inference')
    .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
    .option('--version <n>', "version (default: the one the model's policy serves)", versionNumber)
    .option('--reference <file>', "a reference profile to compare with instead of the version's own <model>/<version>/reference.json")
    .option('--json', 'print the report, with every example\'s score, as one JSON object')
    .addOption(
      new Option('--fail-on <state>', `exit 1 when the state is this or worse (for CI: warning, or drift); insufficient_data never fails; with --url, exit ${EXIT_NOT_MONITORED} when the version is not monitored (no reference profile)`).choices(['warning', 'drift']),
    )
    .action(async (flags) => {
      const failOn = (state: string) => {
        if (!flags.failOn || !failsAt(state as DriftLevel | 'insufficient_data', flags.failOn)) return;
        process.exitCode = 1;
        console.error(`nereid monitor: state ${state}, at or beyond --fail-on ${flags.failOn}; exiting 1`);
      };
      if (flags.url) {
        if (flags.data || flags.reference) throw new Error('--url reads the state the server keeps: give it without --data or --reference');
        const live = (await (await serverClient(flags, 'inference')).modelMonitor(flags.model, flags.version)) as unknown as LiveMonitor;
        if (live.monitored) failOn(live.state);
        else if (flags.failOn) {
          // A gate that cannot see the state must not pass: the version serves without drift monitoring.
          process.exitCode = EXIT_NOT_MONITORED;
          console.error(`nereid monitor: --fail-on ${flags.failOn} cannot be judged: ${flags.model} version ${live.version} is not monitored (${live.reason}); exiting ${EXIT_NOT_MONITORED}`);
        }
        if (flags.json) return console.log(JSON.stringify(live));
        console.log(formatLiveMonitor(live, new URL(flags.url).origin));
        return;
      }
      if (!flags.data) throw new Error('give --data <examples> to score, or --url <server> to read the state a running server keeps');
      const { runMonitor } = await import('../tools/index.js');
      const report = await runMonitor({ modelRepository: flags.modelRepository, model: flags.model, version: flags.version, data: flags.data, reference: flags.reference }, commandLogger());
      failOn(report.state);
      if (flags.json) return console.log(JSON.stringify(report));
      const percent = (value: number) => `${(value * 100).toFixed(1)} %`;
      console.log(
        [
          `${report.model} version ${report.version}: ${report.examples} examples, state ${report.state.toUpperCase()}`,
          `out of distribution: ${report.outOfDistribution} (${percent(report.share)}, score above ${report.threshold.toFixed(2)})`,
          ...(report.classShares ? [`predicted class shares: Jensen–Shannon ${report.classShares.divergence.toFixed(4)} bits from the reference (${report.classShares.level})`] : []),
          ...(report.expectedAccuracy === undefined ? [] : [`accuracy expected from confidence: ${percent(report.expectedAccuracy)}${report.realisedAccuracy === undefined ? '' : `; realised (${report.realisedAccuracyFrom ?? 'class folders'}): ${percent(report.realisedAccuracy)}`}`]),
          ...(report.accuracyCaution ? [`caution: ${report.accuracyCaution}`] : []),
          ...(report.realisedAccuracyNote ? [report.realisedAccuracyNote] : []),
          ...featureDriftTable(report.features.map((feature) => ({ ...feature, chance: feature.chancePsi }))),
          ...(report.unreadable.length === 0
            ? []
            : [`left out ${report.unreadable.length} file(s) that could not be read: ${report.unreadable.slice(0, 5).map((file) => `${file.id} (${file.reason})`).join('; ')}${report.unreadable.length > 5 ? '; …' : ''}`]),
        ].join('\n'),
      );
    });
}
