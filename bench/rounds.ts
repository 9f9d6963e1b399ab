/**
 * `--rounds N`: the order of the measurements (one target after another, or every cell's targets
 * back to back once per round), and how the measurements of one cell or one in-process batch size
 * taken in several rounds combine into one.
 */
import type { CeilingPoint } from './in-process.js';
import { summarise, type LoadResult } from './load-generator.js';
import type { Encoding, ServerTarget } from './options.js';
import { floorEncodingOf, markdownTable, ratio, ratiosOf, type Cell, type Ratios, type SchedulerSummary } from './report.js';

/** One server cell of one round. */
export interface CellStep {
  round: number;
  target: ServerTarget;
  encoding: Encoding;
  concurrency: number;
}
/** One measurement of the run: the in-process ceiling (every batch size), or one server cell. */
export type Step = { round: number; target: 'ceiling' } | CellStep;

export const isCellStep = (step: Step): step is CellStep => step.target !== 'ceiling';

export interface PlanSpec {
  rounds: number;
  ceiling: boolean;
  /** Server targets, in the order of the first round. */
  targets: readonly ServerTarget[];
  encodings: readonly Encoding[];
  concurrency: readonly number[];
  /** The encodings a target is measured with (none: it is skipped). */
  encodingsOf: (target: ServerTarget) => Encoding[];
}

/** The server targets in round `round` (from 1): the first round's order, reversed every other round. */
export function roundOrder<T>(targets: readonly T[], round: number): T[] {
  return round % 2 === 1 ? [...targets] : [...targets].reverse();
}

/**
 * The measurements in the order they are taken. One round: the ceiling, then every cell of one
 * target after another (each target's child started and stopped in turn). More: each round
 * measures the ceiling, then for each encoding and concurrency every target back to back (the
 * floor at its own encoding, see floorEncodingOf), each (target, encoding, concurrency) once.
 */
export function measurementPlan(spec: PlanSpec): Step[] {
  const ceiling = (round: number): Step[] => (spec.ceiling ? [{ round, target: 'ceiling' }] : []);
  if (spec.rounds === 1) {
    return [
      ...ceiling(1),
      ...spec.targets.flatMap((target) =>
        spec.encodingsOf(target).flatMap((encoding) => spec.concurrency.map((concurrency): Step => ({ round: 1, target, encoding, concurrency }))),
      ),
    ];
  }
  const steps: Step[] = [];
  for (let round = 1; round <= spec.rounds; round++) {
    steps.push(...ceiling(round));
    const seen = new Set<string>();
    for (const cellEncoding of spec.encodings) {
      for (const concurrency of spec.concurrency) {
        for (const target of roundOrder(spec.targets, round)) {
          const encoding = target === 'floor' || target === 'peer' ? floorEncodingOf(cellEncoding) : cellEncoding;
          const key = cellKey(target, encoding, concurrency);
          if (!spec.encodingsOf(target).includes(encoding) || seen.has(key)) continue;
          seen.add(key);
          steps.push({ round, target, encoding, concurrency });
        }
      }
    }
  }
  return steps;
}

export function cellKey(target: ServerTarget, encoding: Encoding, concurrency: number): string {
  return `${target} ${encoding} ${concurrency}`;
}

/**
 * The mean of values weighted by weights, over the entries with a positive weight: NaN when there
 * are none, undefined when one of them has no value (a figure missing in one round is missing).
 */
function weightedMean(values: readonly (number | undefined)[], weights: readonly number[]): number | undefined {
  let total = 0;
  let weight = 0;
  for (let i = 0; i < values.length; i++) {
    if (!(weights[i] > 0)) continue;
    const value = values[i];
    if (value === undefined) return undefined;
    total += value * weights[i];
    weight += weights[i];
  }
  return weight > 0 ? total / weight : NaN;
}

const sum = <T>(items: readonly T[], pick: (item: T) => number) => items.reduce((total, item) => total + pick(item), 0);

/** Several windows as one: counts summed, requests/s over the summed seconds, percentiles of every sample. */
export function combineLoadResults(results: readonly LoadResult[]): LoadResult {
  const completed = sum(results, (r) => r.completed);
  const seconds = sum(results, (r) => r.seconds);
  const latenciesMs = results.flatMap((r) => r.latenciesMs);
  return {
    completed,
    errors: sum(results, (r) => r.errors),
    answered: sum(results, (r) => r.answered),
    failed: sum(results, (r) => r.failed),
    errorSamples: [...new Set(results.flatMap((r) => r.errorSamples))].slice(0, 5),
    verified: sum(results, (r) => r.verified),
    verifyFailed: sum(results, (r) => r.verifyFailed),
    verifyFailures: results.flatMap((r) => r.verifyFailures).slice(0, 5),
    // The span from the first window's start to the last one's end.
    windowStartNs: results[0].windowStartNs,
    windowEndNs: results[results.length - 1].windowEndNs,
    seconds,
    requestsPerSecond: completed / seconds,
    latency: summarise(latenciesMs),
    responseBytes: sum(results, (r) => r.responseBytes),
    latenciesMs,
  };
}

/** Nereid's /stats over several cells as over one: counts summed, means weighted by what they are means of. */
export function combineSchedulers(summaries: readonly (SchedulerSummary | undefined)[]): SchedulerSummary | undefined {
  if (summaries.some((summary) => summary === undefined)) return undefined;
  const all = summaries as readonly SchedulerSummary[];
  const mean = (pick: (s: SchedulerSummary) => number, weight: (s: SchedulerSummary) => number) =>
    weightedMean(all.map(pick), all.map(weight)) ?? NaN;
  const executionsBySize = new Map<number, number>();
  for (const { batchSize, executions } of all.flatMap((s) => s.batches)) executionsBySize.set(batchSize, (executionsBySize.get(batchSize) ?? 0) + executions);
  const perRequest = (pick: (s: SchedulerSummary) => number) => mean(pick, (s) => s.successes);
  return {
    cacheHits: sum(all, (s) => s.cacheHits),
    cacheMisses: sum(all, (s) => s.cacheMisses),
    meanCacheHitMs: mean((s) => s.meanCacheHitMs, (s) => s.cacheHits),
    meanCacheMissMs: mean((s) => s.meanCacheMissMs, (s) => s.cacheMisses),
    successes: sum(all, (s) => s.successes),
    executions: sum(all, (s) => s.executions),
    batches: [...executionsBySize].sort((a, b) => a[0] - b[0]).map(([batchSize, executions]) => ({ batchSize, executions })),
    meanBatch: mean((s) => s.meanBatch, (s) => s.executions),
    meanRequestMs: perRequest((s) => s.meanRequestMs),
    meanQueueMs: perRequest((s) => s.meanQueueMs),
    meanComputeInputMs: perRequest((s) => s.meanComputeInputMs),
    meanComputeInferMs: perRequest((s) => s.meanComputeInferMs),
    meanComputeOutputMs: perRequest((s) => s.meanComputeOutputMs),
  };
}

/** One cell's measurements (one per round) as one cell; a single measurement is returned as it is. */
export function combineCells(cells: readonly Cell[]): Cell {
  if (cells.length === 1) return cells[0];
  const seconds = cells.map((cell) => cell.result.seconds);
  const cores = (pick: (cell: Cell) => number | undefined) => weightedMean(cells.map(pick), seconds);
  const { target, encoding, concurrency, requestBytes } = cells[0];
  return {
    scheduler: combineSchedulers(cells.map((cell) => cell.scheduler)),
    target,
    encoding,
    concurrency,
    requestBytes,
    result: combineLoadResults(cells.map((cell) => cell.result)),
    inferencesPerSecond: cores((cell) => cell.inferencesPerSecond)!,
    serverCores: cores((cell) => cell.serverCores),
    clientCores: cores((cell) => cell.clientCores)!,
    otherCores: cores((cell) => cell.otherCores),
    attempts: sum(cells, (cell) => cell.attempts ?? 1),
  };
}

/** One batch size's in-process measurements (one per round) as one; a single one is returned as it is. */
export function combineCeilingPoints(points: readonly CeilingPoint[]): CeilingPoint {
  if (points.length === 1) return points[0];
  const { batch } = points[0];
  const runs = sum(points, (p) => p.runs);
  const seconds = sum(points, (p) => p.seconds);
  const cpuSeconds = sum(points, (p) => p.ownCores * p.seconds);
  const latenciesMs = points.flatMap((p) => p.latenciesMs);
  return {
    batch,
    runs,
    seconds,
    runsPerSecond: runs / seconds,
    inferencesPerSecond: (runs * batch) / seconds,
    latency: summarise(latenciesMs),
    ownCores: cpuSeconds / seconds,
    otherCores: weightedMean(
      points.map((p) => p.otherCores),
      points.map((p) => p.seconds),
    ),
    cpuSecondsPerInference: cpuSeconds / (runs * batch),
    latenciesMs,
  };
}

export function median(values: readonly (number | undefined)[]): number | undefined {
  const sorted = values.filter((value): value is number => value !== undefined && !Number.isNaN(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The median of the finite values (a cell that answered nothing has an infinite latency), NaN when there is none: for a table. */
export function finiteMedian(values: readonly number[]): number {
  return median(values.filter(Number.isFinite)) ?? NaN;
}

/** The ratios shown round by round. */
const ROUND_RATIOS = ['toCeiling', 'toPeer', 'toFloor'] as const;
const ROUND_RATIO_LABELS = { toCeiling: '×ceiling', toPeer: '×peer', toFloor: '×floor' } as const;
export type RoundRatios = Pick<Ratios, (typeof ROUND_RATIOS)[number]>;

/** One cell's per-round figures: each round's ratios (from that round's measurements alone) and their median. */
export interface PerRoundRatios {
  target: ServerTarget;
  encoding: Encoding;
  concurrency: number;
  rounds: (RoundRatios & { round: number; inferencesPerSecond: number; requestsPerSecond: number })[];
  median: RoundRatios;
  /** The same ratios from the combined cell (the main table's). */
  combined: RoundRatios;
}

/** What the JSON holds of the rounds (--rounds > 1). */
export interface RoundsReport {
  count: number;
  /** The server targets in each round's order (each cell's targets back to back in that order). */
  order: ServerTarget[][];
  /** Each round's in-process measurements (the ceiling of that round's ratios). */
  ceiling: CeilingPoint[][];
  ratios: PerRoundRatios[];
}

/**
 * A combined cell's ratios round by round: each round's measurement of it against that round's
 * measurements of the peer and the floor and that round's ceiling. `measured`: every cell's
 * measurements, one per round; `ceilingRounds`: each round's in-process points.
 */
export function perRoundRatios(
  combined: Cell & { ratios: Ratios },
  measured: ReadonlyMap<string, readonly Cell[]>,
  ceilingRounds: readonly (readonly CeilingPoint[])[],
): PerRoundRatios {
  const pick = (ratios: Ratios): RoundRatios => Object.fromEntries(ROUND_RATIOS.map((key) => [key, ratios[key]]));
  const rounds = measured.get(cellKey(combined.target, combined.encoding, combined.concurrency))!.map((cell, index) => {
    const sameRound = [...measured.values()].map((cells) => cells[index]);
    return { cell, ratios: ratiosOf(cell, sameRound, ceilingRounds[index] ?? []) };
  });
  return {
    target: combined.target,
    encoding: combined.encoding,
    concurrency: combined.concurrency,
    rounds: rounds.map(({ cell, ratios }, index) => ({
      round: index + 1,
      inferencesPerSecond: cell.inferencesPerSecond,
      requestsPerSecond: cell.result.requestsPerSecond,
      ...pick(ratios),
    })),
    median: Object.fromEntries(ROUND_RATIOS.map((key) => [key, median(rounds.map(({ ratios }) => ratios[key]))])),
    combined: pick(combined.ratios),
  };
}

/** Per cell, a row per ratio measured in some round: each round's value, their median and the combined cells' value. */
export function perRoundTable(rows: readonly PerRoundRatios[]): string {
  const roundCount = Math.max(0, ...rows.map((row) => row.rounds.length));
  const lines = rows.flatMap((row) =>
    ROUND_RATIOS.filter((key) => row.rounds.some((round) => round[key] !== undefined)).map((key) => [
      row.target,
      row.encoding,
      String(row.concurrency),
      ROUND_RATIO_LABELS[key],
      ...row.rounds.map((round) => ratio(round[key])),
      ratio(row.median[key]),
      ratio(row.combined[key]),
    ]),
  );
  const rounds = Array.from({ length: roundCount }, (_, index) => `round ${index + 1}`);
  return markdownTable(
    ['target', 'enc', 'conc', 'ratio', ...rounds, 'median', 'all rounds'],
    lines,
    [false, false, true, false, ...rounds.map(() => true), true, true],
  );
}
