/**
 * What `nereid tune` shows and writes: the table of candidates with the Pareto front marked, the
 * throughput–latency chart (self-contained SVG, or PNG rendered from it by sharp), and the winning
 * settings written into the model's config (YAML or JSON) with a backup of the old file and, in
 * YAML, a comment that says what was measured and when.
 */
import { constants } from 'node:fs';
import { copyFile, lstat, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { loadSharp } from '../core/sharp.js';
import { parseDocument } from 'yaml';
import { setYamlValues } from '../config/yaml-edit.js';
import { chartFormatOf, escapeXml } from '../eval/comparison-chart.js';
import { batchingFields, confirmationOrder, describeCandidate, judgedLevel, levelsLost, type LostLevel, shownLevel, usdPer1000, type Candidate, type LevelResult } from './tune-search.js';
import type { Confirmation, TuneReport } from './tune.js';

const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '—');

/** The level a row of the table shows (see shownLevel). */
const shownLevelOf = (report: TuneReport, index: number): LevelResult => shownLevel(report.results[index], report.objective);

export function formatTuneReport(report: TuneReport, usdPerCoreHour: number): string {
  const lines: string[] = [];
  const objective =
    report.objective.kind === 'p99'
      ? `best throughput with p99 ≤ ${report.objective.maxMs} ms`
      : report.objective.kind === 'cost'
        ? `best throughput at ≤ $${report.objective.maxUsdPer1000} per 1,000 inferences`
        : 'best throughput';
  lines.push(`${report.model}: ${report.results.length} config${report.results.length === 1 ? '' : 's'} measured in ${report.seconds.toFixed(0)} s on ${report.cores} cores; objective: ${objective}`);
  if (report.batchCurve.length) {
    lines.push(`batch curve (compute per row, one instance, ${report.cores} threads): ${report.batchCurve.map((point) => `${point.batchSize}: ${(point.computeNsPerRow / 1e6).toFixed(3)} ms`).join(', ')}`);
  }
  if (report.servedVersions && report.versions) lines.push(versionsLine(report.servedVersions, report.versions));
  const levels = report.results[0].levels.map((level) => level.concurrency);
  lines.push('');
  lines.push(`| # | step | config | ${levels.map((c) => `c=${c} inf/s`).join(' | ')} | p50 / p95 / p99 ms | CPU ms/inf | $/1k inf | rows/batch | front |`);
  lines.push(`|---|---|---|${levels.map(() => '---:').join('|')}|---:|---:|---:|---:|:-:|`);
  report.results.forEach((measured, index) => {
    const shown = shownLevelOf(report, index);
    const marks = `${measured.paretoLevels.length ? `● c=${measured.paretoLevels.join(',')}` : ''}${index === report.winner ? ' ← best' : ''}${index === report.best && index !== report.winner ? ' ← best of the served version' : ''}`;
    const unserved = report.servedVersions && !report.servedVersions.includes(measured.candidate.version) ? ' (not served)' : '';
    lines.push(
      `| ${index} | ${measured.step}${unserved} | ${describeCandidate(measured.candidate)} | ${measured.levels.map((level) => fixed(level.throughput, 1)).join(' | ')} | ${fixed(shown.p50Ms, 2)} / ${fixed(shown.p95Ms, 2)} / ${fixed(shown.p99Ms, 2)} (c=${shown.concurrency}) | ${fixed(shown.cpuSecondsPerInference * 1000, 3)} | ${fixed(usdPer1000(shown.cpuSecondsPerInference, usdPerCoreHour), 6)} | ${fixed(shown.meanBatchRows, 1)} | ${marks} |`,
    );
  });
  lines.push('');
  // Each config at its own shown level: under a p99 bound one may hold it at a concurrency where another cannot, so the levels are named.
  const gainOf = (index: number) => {
    const [found, current] = [shownLevelOf(report, index), shownLevelOf(report, 0)];
    // Under a bound the current config meets at no level, its best throughput is no yardstick: it is not allowed.
    if (report.objective.kind !== 'throughput' && !judgedLevel(report.results[0], report.objective)) {
      const seen = report.objective.kind === 'p99' ? `p99 ${fixed(current.p99Ms, 2)} ms` : `$${usdPer1000(current.cpuSecondsPerInference, report.objective.usdPerCoreHour).toPrecision(3)} per 1,000 inferences`;
      return { ratio: 'meets the bound, which', at: `the current config meets at no level measured (${seen} at c=${current.concurrency}); this one gives ${fixed(found.throughput, 1)} inf/s at c=${found.concurrency}` };
    }
    const at = found.concurrency === current.concurrency ? `both at c=${found.concurrency}` : `${fixed(found.throughput, 1)} inf/s at c=${found.concurrency} against ${fixed(current.throughput, 1)} at c=${current.concurrency}`;
    return { ratio: `${(found.throughput / current.throughput).toFixed(2)}× the current config's throughput`, at };
  };
  if (report.winner === undefined) lines.push(`${unmetObjective(report)?.replace(/^n/, 'N') ?? 'No config met the objective'}.`);
  else if (report.winner === 0 && report.results.length === 1)
    lines.push(report.budgetTooShort ? `Only the current config was measured: ${report.budgetTooShort}.` : 'Only the current config was measured before --budget-s ran out: nothing to compare it with.');
  else if (report.winner === 0) lines.push('The current config is the best measured: nothing to change.');
  else {
    const gain = gainOf(report.winner);
    lines.push(`Best: ${describeCandidate(report.results[report.winner].candidate)} — ${gain.ratio} (${gain.at}).`);
    const { confirmation } = report;
    for (const tried of [...(report.notConfirmed ?? []), ...(confirmation ? [confirmation] : [])]) lines.push(confirmationLine(report, tried));
    if (report.best !== undefined && report.best !== report.winner && !(confirmation && !confirmation.held)) {
      const served = `For the version served now (v${report.results[0].candidate.version})`;
      if (report.best === 0) lines.push(`${served} nothing measured beat the current config by the least gain worth a change (--min-gain); --write leaves it.`);
      else {
        const bestGain = gainOf(report.best);
        const chosen = report.results[report.best].candidate;
        const why = reasonsWritten(report, report.best, report.winner) ?? served;
        lines.push(`${why}: ${describeCandidate(chosen)} — ${bestGain.ratio} (${bestGain.at}); that is what --write writes.`);
      }
    }
  }
  // One a line: a dozen configs of a hundred characters each in one line were unreadable.
  if (report.skipped.length) lines.push('Not measured:', ...report.skipped.map((line) => `- ${line}`));
  return lines.join('\n');
}

/**
 * Which versions serve and which the version step measures: a faster version the policy leaves out is a finding for
 * the team (switching is theirs to decide), not something --write does.
 */
function versionsLine(served: readonly string[], measured: readonly string[]): string {
  const list = (versions: readonly string[]) => versions.map((version) => `v${version}`).join(', ') || 'none';
  const unserved = measured.filter((version) => !served.includes(version));
  return (
    `versions: the policy serves ${list(served)}; the version step measures ${list(measured)}` +
    (unserved.length ? `, of which ${list(unserved)} ${unserved.length === 1 ? 'is' : 'are'} not served (reported, never written; --versions chooses which are measured)` : '')
  );
}

/**
 * Why the config written is not the fastest measured, when it is of the same version, from what decided the order the
 * confirmation tried (confirmationOrder) and what the rounds found; undefined when another version is the fastest.
 */
function reasonsWritten(report: TuneReport, best: number, winner: number): string | undefined {
  if (report.results[best].candidate.version !== report.results[winner].candidate.version) return undefined;
  const preference = confirmationOrder(report.results, report.objective, report.minGain)?.find((entry) => entry.index === best);
  const reasons: string[] = [];
  if (report.notConfirmed?.length) reasons.push(`the ${report.notConfirmed.length === 1 ? 'config' : `${report.notConfirmed.length} configs`} before it in the search's order did not hold when measured again`);
  const lostByFastest = levelsLost([{ current: report.results[0], chosen: report.results[winner] }], report.objective, report.minGain);
  if (preference?.keptLevels && lostByFastest.length) reasons.push(`it kept every level measured where the fastest gave up ${describeLost(lostByFastest)}`);
  if (preference?.latencyAwareNearFastest) reasons.push('latency-aware batching measured within --min-gain of the fastest that kept the same levels, and follows the traffic where a fixed delay suits one load');
  return reasons.length ? `Preferred, as ${reasons.join(', and ')}` : undefined;
}

/** Lost levels as the report names them: the median ratio, or the bound missed or the errors where it fell to 0. */
function describeLost(levels: readonly LostLevel[]): string {
  const what = { throughput: (level: LostLevel) => `${fixed(level.ratio, 2)}×`, bound: () => 'missed the bound', errors: () => 'answered with errors' };
  return levels.map((level) => `${what[level.reason](level)} at c=${level.concurrency}`).join(', ');
}

// JSON carries an infinite ratio (the config as written met the objective at no level that round) as null.
const unbounded = (ratio: number | null) => ratio === null || ratio === Number.POSITIVE_INFINITY;
const ratioText = (ratio: number | null) => (unbounded(ratio) ? '∞' : `${fixed(ratio!, 2)}×`);

/**
 * The confirmation rounds of the config written, for the note at the top of the file: the search's one measurement the
 * note quotes first can be much luckier (2.34× in the search, rounds of 2.05× and 1.79×, on a busy machine).
 */
function confirmedNote(report: TuneReport): string {
  const confirmation = report.confirmation;
  if (!confirmation?.held || confirmation.candidate !== report.best) return '';
  return `; measured again in turn, ${confirmation.rounds.length} round(s): ${confirmation.ratios.map(ratioText).join(', ')} (median ${ratioText(confirmation.ratio)})`;
}

/** What measuring a candidate again against the config as written found. */
function confirmationLine(report: TuneReport, confirmation: Confirmation): string {
  const metNowhere = report.objective.kind === 'throughput' ? 'answered without errors at no level' : 'met the bound at no level';
  const note = confirmation.ratios.some(unbounded) ? ` (∞: the current config ${metNowhere} that round)` : '';
  const again = `${describeCandidate(report.results[confirmation.candidate].candidate)} and the current config measured again in turn, ${confirmation.rounds.length} round(s): ${confirmation.ratios.map(ratioText).join(', ')}${note} (median ${ratioText(confirmation.ratio)}; --min-gain asks ${fixed(confirmation.needed, 2)}×)`;
  if (confirmation.held) return `Confirmed: ${again}; no other level measured fell below 1/${fixed(confirmation.needed, 2)} of the current config's throughput.`;
  const next = confirmation === report.confirmation ? '--write leaves the config as it is.' : "the next in the search's order was tried.";
  const lost = confirmation.lost?.length ? describeLost(confirmation.lost) : undefined;
  if (!unbounded(confirmation.ratio) && confirmation.ratio < confirmation.needed) {
    return `Not confirmed: ${again}${lost ? `, and it gave up ${lost} (the rounds' median)` : ''}. The search's gain did not hold, so it is taken for noise on this machine; ${next}`;
  }
  return `Not confirmed: ${again}, but it gave up another level measured: ${lost} (the rounds' median). A gain at one level does not pay for a loss at another; ${next}`;
}

/** When no config measured met the bound of --p99-ms or --max-cost: which bound, and the config that came closest to it. */
export function unmetObjective(report: TuneReport): string | undefined {
  const { objective } = report;
  if (report.winner !== undefined || objective.kind === 'throughput') return undefined;
  const measure = (level: LevelResult) => (objective.kind === 'p99' ? level.p99Ms : usdPer1000(level.cpuSecondsPerInference, objective.usdPerCoreHour));
  let closest: { index: number; level: LevelResult } | undefined;
  report.results.forEach((measured, index) => {
    for (const level of measured.levels) if (level.errors === 0 && level.throughput > 0 && (!closest || measure(level) < measure(closest.level))) closest = { index, level };
  });
  const bound = objective.kind === 'p99' ? `p99 ≤ ${objective.maxMs} ms (--p99-ms)` : `a cost ≤ $${objective.maxUsdPer1000} per 1,000 inferences (--max-cost)`;
  if (!closest) return `no configuration met ${bound}: every measurement had errors`;
  const seen = objective.kind === 'p99' ? `p99 ${fixed(closest.level.p99Ms, 2)} ms` : `$${measure(closest.level).toPrecision(3)} per 1,000 inferences`;
  return `no configuration met ${bound}; the best seen: #${closest.index} ${describeCandidate(report.results[closest.index].candidate)}, ${seen} at c=${closest.level.concurrency} (${fixed(closest.level.throughput, 1)} inferences/s)`;
}

/**
 * Throughput against p99 of every operating point: each candidate's levels joined by a thin line in
 * concurrency order (its curve, as Model Analyzer draws one per config), its shown level labelled with
 * its row, and the Pareto front over all the points joined in blue.
 */
export function tuneChartSvg(report: TuneReport): string {
  const width = 760;
  const height = 480;
  const left = 70;
  const right = 20;
  const top = 40;
  const bottom = 60;
  const measuredPoints = (index: number) => report.results[index].levels.filter((level) => level.errors === 0 && level.throughput > 0).sort((a, b) => a.concurrency - b.concurrency);
  const curves = report.results.map((_, index) => ({ index, levels: measuredPoints(index), shown: shownLevelOf(report, index) }));
  const all = curves.flatMap((curve) => [...curve.levels, curve.shown]);
  // Math.max of nothing is -Infinity (no run answered): the axes then span 1, not NaN coordinates.
  const axisEnd = (values: number[]) => {
    const largest = Math.max(...values.filter(Number.isFinite));
    return largest > 0 ? largest * 1.1 : 1;
  };
  const maxX = axisEnd(all.map((level) => level.p99Ms));
  const maxY = axisEnd(all.map((level) => level.throughput));
  const x = (ms: number) => left + (ms / maxX) * (width - left - right);
  const y = (throughput: number) => height - bottom - (throughput / maxY) * (height - top - bottom);
  const at = (level: LevelResult) => `${x(level.p99Ms).toFixed(1)},${y(level.throughput).toFixed(1)}`;
  const levels = report.results[0].levels.map((level) => level.concurrency);
  const svg: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="'DejaVu Sans', Verdana, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="24" font-size="15" font-weight="bold">${escapeXml(`${report.model}: throughput against p99 latency (${report.cores} cores)`)}</text>`,
    `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="#333"/>`,
    `<text x="${(left + width - right) / 2}" y="${height - 18}" font-size="13" text-anchor="middle">p99 latency (ms)</text>`,
    `<text x="18" y="${(top + height - bottom) / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 18 ${(top + height - bottom) / 2})">inferences / s</text>`,
  ];
  for (let tick = 0; tick <= 4; tick++) {
    const ms = (maxX * tick) / 4;
    const rate = (maxY * tick) / 4;
    svg.push(`<text x="${x(ms).toFixed(1)}" y="${height - bottom + 18}" font-size="11" text-anchor="middle">${ms.toFixed(ms < 10 ? 1 : 0)}</text>`);
    svg.push(`<text x="${left - 6}" y="${(y(rate) + 4).toFixed(1)}" font-size="11" text-anchor="end">${rate.toFixed(0)}</text>`);
  }
  const colourOf = (index: number) => (index === report.winner ? '#D55E00' : index === 0 ? '#000' : '#999');
  for (const curve of curves) {
    if (curve.levels.length > 1) svg.push(`<polyline fill="none" stroke="${colourOf(curve.index)}" stroke-opacity="0.5" stroke-width="1" points="${curve.levels.map(at).join(' ')}"/>`);
    for (const level of curve.levels) svg.push(`<circle cx="${x(level.p99Ms).toFixed(1)}" cy="${y(level.throughput).toFixed(1)}" r="2.5" fill="${colourOf(curve.index)}"/>`);
  }
  const front = curves
    .flatMap((curve) => curve.levels.filter((level) => report.results[curve.index].paretoLevels.includes(level.concurrency)))
    .sort((a, b) => a.p99Ms - b.p99Ms);
  if (front.length > 1) svg.push(`<polyline fill="none" stroke="#0072B2" stroke-width="1.5" points="${front.map(at).join(' ')}"/>`);
  for (const level of front) svg.push(`<circle cx="${x(level.p99Ms).toFixed(1)}" cy="${y(level.throughput).toFixed(1)}" r="3.5" fill="none" stroke="#0072B2" stroke-width="1.5"/>`);
  // Labels placed greedily, the current config and the winner first, each at the first offset clear of those placed before.
  const placed: { x: number; y: number; width: number }[] = [];
  const offsets = [[8, -6], [8, 12], [8, -20], [8, 26], [-8, -6], [-8, 12]];
  const placeLabel = (cx: number, cy: number, label: string, colour: string) => {
    const labelWidth = label.length * 6.5;
    const leftOf = (dx: number) => (dx < 0 ? cx + dx - labelWidth : cx + dx);
    const clear = (lx: number, ly: number) => placed.every((other) => Math.abs(other.y - ly) >= 12 || lx + labelWidth <= other.x || other.x + other.width <= lx);
    const [dx, dy] = offsets.find(([ox, oy]) => clear(leftOf(ox), cy + oy)) ?? offsets[0];
    placed.push({ x: leftOf(dx), y: cy + dy, width: labelWidth });
    svg.push(`<text x="${leftOf(dx).toFixed(1)}" y="${(cy + dy).toFixed(1)}" font-size="11" fill="${colour}">${escapeXml(label)}</text>`);
  };
  const labelOrder = [...curves].sort((a, b) => Number(b.index === report.winner || b.index === 0) - Number(a.index === report.winner || a.index === 0));
  for (const curve of labelOrder) {
    if (!Number.isFinite(curve.shown.p99Ms)) continue;
    const emphasised = curve.index === report.winner || curve.index === 0;
    const [cx, cy] = [x(curve.shown.p99Ms), y(curve.shown.throughput)];
    svg.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="${emphasised ? 5.5 : 4}" fill="${colourOf(curve.index)}"/>`);
    placeLabel(cx, cy, curve.index === 0 ? '0 current' : curve.index === report.winner ? `${curve.index} best` : String(curve.index), colourOf(curve.index));
  }
  // A point on the front at another level than its row shows is named with its level, or the front's low-latency end would be anonymous.
  for (const curve of curves) {
    for (const level of curve.levels) {
      if (level.concurrency !== curve.shown.concurrency && report.results[curve.index].paretoLevels.includes(level.concurrency)) {
        placeLabel(x(level.p99Ms), y(level.throughput), `${curve.index} (c=${level.concurrency})`, '#0072B2');
      }
    }
  }
  svg.push(`<text x="${width - right}" y="${top}" font-size="11" text-anchor="end" fill="#0072B2">${escapeXml(`blue: Pareto front of every point; thin lines: each config at c=${levels.join(', ')}; numbered: the level its row shows`)}</text>`);
  svg.push('</svg>');
  return svg.join('\n');
}

export async function writeTuneChart(report: TuneReport, path: string): Promise<void> {
  const svg = Buffer.from(tuneChartSvg(report));
  const sharp = await loadSharp();
  await writeFile(path, chartFormatOf(path) === 'svg' ? svg : await sharp(svg, { density: 144 }).png().toBuffer());
}

/**
 * The tuned fields as they go into a config written by hand (YAML's plain {key: value} parameters). A fixed delay
 * leaves target_latency_us out unless the file set one (`hadTarget`), which it then clears with 0.
 */
function tunedFields(candidate: Candidate, hadTarget: boolean): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    max_batch_size: candidate.maxBatchSize,
    instance_group: [{ count: candidate.instances, kind: 'KIND_CPU' }],
  };
  if (candidate.maxBatchSize > 0) {
    const { max_queue_delay_microseconds, target_latency_us } = batchingFields(candidate);
    fields.dynamic_batching = target_latency_us > 0 || hadTarget ? { max_queue_delay_microseconds, target_latency_us } : { max_queue_delay_microseconds };
  }
  return fields;
}

const TUNED_PARAMETERS = (candidate: Candidate): Record<string, string> => ({
  intra_op_thread_count: String(candidate.threadsPerInstance),
  execution_thread: candidate.executionThread,
  graph_optimization_level: candidate.graphLevel,
});

/** Whether a config file's text (YAML, or JSON, which YAML reads) sets dynamic_batching.target_latency_us. */
const setsTargetLatency = (text: string) => parseDocument(text).hasIn(['dynamic_batching', 'target_latency_us']);

/** The settings --write sets in `file` for the candidate, as --dry-run prints them. */
export function settingsToWrite(candidate: Candidate, file: { text: string }): Record<string, unknown> {
  return { ...tunedFields(candidate, setsTargetLatency(file.text)), parameters: TUNED_PARAMETERS(candidate) };
}

/** The config file --write would update (config.yaml/.yml or config.json) and its text, or why there is none. */
export async function writableConfigOf(modelDirectory: string): Promise<{ name: string; text: string }> {
  const files = await readdir(modelDirectory).catch((error: NodeJS.ErrnoException) => {
    throw new Error(error.code === 'ENOENT' ? `${modelDirectory}: no such model folder` : `${modelDirectory}: ${error.message}`);
  });
  const name = ['config.yaml', 'config.yml', 'config.json', 'config.pbtxt'].find((file) => files.includes(file));
  if (!name) throw new Error(`${modelDirectory} has no config file for --write to update; write one (config.yaml) first, or run without --write to see the settings`);
  if (name === 'config.pbtxt') throw new Error('--write updates config.yaml or config.json; for config.pbtxt, copy the settings that --dry-run prints');
  return { name, text: await readFile(join(modelDirectory, name), 'utf8') };
}

/**
 * Copies `path` to `wanted`, or to `wanted-2`, `-3`… when that exists: never over an older backup,
 * which may hold the only copy of the original (two tune runs writing in the same second).
 */
async function backUp(path: string, wanted: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const backup = attempt === 1 ? wanted : `${wanted}-${attempt}`;
    try {
      await copyFile(path, backup, constants.COPYFILE_EXCL);
      return backup;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}

/**
 * Writes the winner's settings into the model's config file (config.yaml/.yml or config.json),
 * after copying the old file to `<name>.bak-<timestamp>`. Other fields stay, and in YAML every line
 * but those of the written settings, comments included. A different version winning is reported,
 * never written: which version serves decides the answers clients get, which a speed measurement
 * must not change. config.pbtxt is refused, and so
 * is a config that is no longer `readAtStart` (edited, or written by another tune, while this one
 * measured): the measurement was of the old one, and writing would undo the edit.
 */
export async function writeTunedConfig(modelDirectory: string, report: TuneReport, readAtStart: { name: string; text: string }): Promise<{ path: string; backup: string }> {
  if (report.best === undefined || report.best === 0) throw new Error('nothing to write: the current config is the best measured for the version it serves');
  const candidate = report.results[report.best].candidate;
  const { name, text } = await writableConfigOf(modelDirectory);
  const path = join(modelDirectory, name);
  if (name !== readAtStart.name || text !== readAtStart.text) {
    const what = name === readAtStart.name ? `${path} changed on disk` : `${join(modelDirectory, readAtStart.name)} was replaced by ${name}`;
    throw new Error(`${what} while tune measured, so it was not written (the change is kept): the winner was measured against the config read at the start; run tune again, or copy the settings by hand`);
  }
  // Written through a link, the settings would land in whatever file it names (another model's config).
  if ((await lstat(path)).isSymbolicLink()) {
    throw new Error(`${path} is a link to ${await readlink(path)}, so it was not written: tune writes only a model's own config file; copy the settings into the file it names by hand, or replace the link with a copy of it`);
  }
  const backup = await backUp(path, `${path}.bak-${report.date.replace(/[-:]/g, '').replace(/\..*$/, '')}`);
  const winner = shownLevelOf(report, report.best);
  const before = shownLevelOf(report, 0);
  const note = ` nereid tune, ${report.date.slice(0, 10)}, ${report.cores} cores: ${winner.throughput.toFixed(1)} inferences/s at concurrency ${winner.concurrency} (p99 ${winner.p99Ms.toFixed(1)} ms) against ${before.throughput.toFixed(1)} at concurrency ${before.concurrency} (p99 ${before.p99Ms.toFixed(1)} ms) with the settings before (${basename(backup)})${confirmedNote(report)}.`;
  const fields = tunedFields(candidate, setsTargetLatency(text));
  if (name === 'config.json') {
    const config = JSON.parse(text) as Record<string, Record<string, unknown> | unknown>;
    config.max_batch_size = fields.max_batch_size;
    config.instance_group = fields.instance_group;
    if (fields.dynamic_batching) config.dynamic_batching = { ...(config.dynamic_batching as object | undefined), ...(fields.dynamic_batching as object) };
    const parameters = Object.fromEntries(Object.entries(TUNED_PARAMETERS(candidate)).map(([key, value]) => [key, { string_value: value }]));
    config.parameters = { ...(config.parameters as object | undefined), ...parameters };
    await writeFile(path, `${JSON.stringify(config, null, 2)}\n`);
    return { path, backup };
  }
  const edited = setYamlValues(text, [
    { path: ['max_batch_size'], value: fields.max_batch_size },
    { path: ['instance_group'], value: fields.instance_group, flow: true },
    ...Object.entries(fields.dynamic_batching ?? {}).map(([key, value]) => ({ path: ['dynamic_batching', key], value })),
    ...Object.entries(TUNED_PARAMETERS(candidate)).map(([key, value]) => ({ path: ['parameters', key], value })),
  ]);
  // The newest measurement first, above the comments the file had.
  await writeFile(path, `#${note}\n${edited}`);
  return { path, backup };
}
