/**
 * Results: per-cell ratios to the ceiling, the peer and the floor, the goals, and the markdown
 * written next to the JSON (aligned, so the console shows the same table).
 */
import type { CeilingPoint } from './in-process.js';
import type { LoadResult } from './load-generator.js';
import { COMPUTING_NEREID_TARGETS, type Encoding, type ServerTarget } from './options.js';
import type { ProfileSummary } from './cpu-profile.js';
import type { RoundsReport } from './rounds.js';

export interface SchedulerSummary {
  executions: number;
  meanBatch: number;
  meanRequestMs: number;
  meanQueueMs: number;
  meanComputeInputMs: number;
  meanComputeInferMs: number;
  meanComputeOutputMs: number;
  /** Response cache: lookups that hit and missed over the cell (warm-up included), and the mean time of each. */
  cacheHits: number;
  cacheMisses: number;
  meanCacheHitMs: number;
  meanCacheMissMs: number;
  /** Successful requests the server counted over the cell (warm-up included). */
  successes: number;
  /** Executions per batch size over the cell (warm-up included), from /stats batch_stats; sizes that ran only. */
  batches: BatchExecutions[];
}

export interface BatchExecutions {
  batchSize: number;
  executions: number;
}

export interface Cell {
  target: ServerTarget;
  encoding: Encoding;
  concurrency: number;
  requestBytes: number;
  result: LoadResult;
  /** Rows inferred per second (the floor infers nothing: 0). */
  inferencesPerSecond: number;
  /** CPU cores the server process used over the measured window (all its threads). */
  serverCores?: number;
  /** CPU cores the benchmark process (load generator) used over the measured window. */
  clientCores: number;
  /** CPU cores everything else on the machine used over the window (noise); undefined off Linux. */
  otherCores?: number;
  /** Measurements taken of this cell (more than 1 when noisy ones were retried). */
  attempts?: number;
  /** Nereid only: its statistics over the cell. */
  scheduler?: SchedulerSummary;
  profile?: ProfileSummary;
}

export interface Ratios {
  toCeiling?: number;
  toPeer?: number;
  toFloor?: number;
  /** p50 minus the in-process batch-1 p50, in ms. */
  addedP50Ms?: number;
  /** p50 minus the floor's p50 at the same concurrency (gRPC: the HTTP binary floor), in ms. */
  addedP50VsFloorMs?: number;
  /** Server CPU seconds per inference over the measured window (server cores ÷ inferences/s). */
  serverCpuPerInference?: number;
  /** In-process CPU seconds per inference at the batch sizes the server ran (see inProcessCpuPerInference). */
  inProcessCpuPerInference?: number;
  /** serverCpuPerInference ÷ inProcessCpuPerInference. */
  cpuVsInProcess?: number;
}

/** One condition of a goal; met is undefined when what it needs was not measured. */
export interface GoalCheck {
  condition: string;
  measured: string;
  met?: boolean;
}

export interface Goal {
  id: 'compute-bound' | 'tiny' | 'latency';
  target: ServerTarget;
  model: string;
  encoding: Encoding;
  /** The cell's concurrency, or where it applies when no cell was measured (e.g. '>= 16'). */
  concurrency: number | string;
  checks: GoalCheck[];
  /** MET: every check measured and met; NOT MET: one measured and not met; otherwise (PARTLY) NOT MEASURED. */
  status: 'MET' | 'NOT MET' | 'NOT MEASURED' | 'PARTLY MEASURED';
}

export interface Report {
  meta: Record<string, unknown>;
  ceiling: CeilingPoint[];
  cells: (Cell & { ratios: Ratios })[];
  goals: Goal[];
  /** --rounds > 1: each round's ceiling and ratios (the cells and ceiling above combine the rounds). */
  rounds?: RoundsReport;
}

export function bestCeiling(ceiling: readonly CeilingPoint[]): CeilingPoint | undefined {
  return ceiling.reduce<CeilingPoint | undefined>((best, point) => (!best || point.inferencesPerSecond > best.inferencesPerSecond ? point : best), undefined);
}

/**
 * The floor and peer speak plain HTTP only: a gRPC or shared-memory cell is compared with their
 * binary cell (the same tensor bytes, carried in the body).
 */
export function floorEncodingOf(encoding: Encoding): Encoding {
  return encoding === 'grpc' || encoding === 'shm' ? 'binary' : encoding;
}

export function ratiosOf(cell: Cell, cells: readonly Cell[], ceiling: readonly CeilingPoint[]): Ratios {
  const find = (target: ServerTarget, encoding: Encoding) =>
    cells.find((other) => other.target === target && other.encoding === encoding && other.concurrency === cell.concurrency);
  const best = bestCeiling(ceiling);
  const batchOne = ceiling.find((point) => point.batch === 1);
  if (cell.target === 'floor') return {};
  // gRPC has no peer (the peer is HTTP only); a cache hit computes nothing, so no ×ceiling or ×peer.
  const peer = cell.encoding === 'grpc' ? undefined : find('peer', floorEncodingOf(cell.encoding));
  const floor = find('floor', floorEncodingOf(cell.encoding));
  const computes = cell.target !== 'nereid-cache';
  const isNereid = COMPUTING_NEREID_TARGETS.includes(cell.target);
  const serverCpuPerInference =
    isNereid && cell.serverCores !== undefined && cell.inferencesPerSecond > 0 ? cell.serverCores / cell.inferencesPerSecond : undefined;
  const inProcessCpu = isNereid && cell.scheduler ? inProcessCpuPerInference(ceiling, cell.scheduler.batches) : undefined;
  return {
    toCeiling: best && computes ? cell.inferencesPerSecond / best.inferencesPerSecond : undefined,
    toPeer: isNereid && peer ? cell.inferencesPerSecond / peer.inferencesPerSecond : undefined,
    toFloor: floor ? cell.result.requestsPerSecond / floor.result.requestsPerSecond : undefined,
    addedP50Ms: batchOne && computes ? cell.result.latency.p50 - batchOne.latency.p50 : undefined,
    addedP50VsFloorMs: floor ? cell.result.latency.p50 - floor.result.latency.p50 : undefined,
    serverCpuPerInference,
    inProcessCpuPerInference: inProcessCpu,
    cpuVsInProcess: serverCpuPerInference !== undefined && inProcessCpu ? serverCpuPerInference / inProcessCpu : undefined,
  };
}

/**
 * In-process CPU seconds per inference at one batch size: the ceiling's own figure where it measured
 * that size, else linear between the nearest measured sizes below and above (the nearest one past
 * either end). Undefined without a ceiling.
 */
export function inProcessCpuAt(ceiling: readonly CeilingPoint[], batchSize: number): number | undefined {
  const points = [...ceiling].sort((a, b) => a.batch - b.batch);
  if (points.length === 0) return undefined;
  const above = points.findIndex((point) => point.batch >= batchSize);
  if (above === -1) return points[points.length - 1].cpuSecondsPerInference;
  const high = points[above];
  if (high.batch === batchSize || above === 0) return high.cpuSecondsPerInference;
  const low = points[above - 1];
  const t = (batchSize - low.batch) / (high.batch - low.batch);
  return low.cpuSecondsPerInference + t * (high.cpuSecondsPerInference - low.cpuSecondsPerInference);
}

/**
 * In-process CPU seconds per inference at the batch sizes a server ran: each size's in-process
 * figure weighted by the rows the server executed at that size (batch size × executions).
 */
export function inProcessCpuPerInference(ceiling: readonly CeilingPoint[], batches: readonly BatchExecutions[]): number | undefined {
  let rows = 0;
  let cpu = 0;
  for (const { batchSize, executions } of batches) {
    const perInference = inProcessCpuAt(ceiling, batchSize);
    if (perInference === undefined) return undefined;
    rows += batchSize * executions;
    cpu += batchSize * executions * perInference;
  }
  return rows > 0 ? cpu / rows : undefined;
}

/** Issue 11's thresholds. */
export const GOALS = {
  computeBound: { minConcurrency: 16, toPeer: 1.1, toCeiling: 0.9, cpuVsInProcess: 1.15 },
  tiny: { model: 'simple', concurrency: 64, toPeer: 1.3, toFloor: 0.6 },
  latency: { model: 'simple', concurrency: 1, encoding: 'json', addedP50VsFloorMs: 0.05 },
} as const;

/** The goals that apply to a model, in words (above the goal lines). */
export function goalsNote(model: string): string {
  const c = GOALS.computeBound;
  const t = GOALS.tiny;
  const l = GOALS.latency;
  return model === t.model
    ? `For '${t.model}': tiny — ${t.concurrency} clients, JSON and binary: >= ${t.toPeer} x peer and >= ${t.toFloor} x floor (requests/s); ` +
        `latency — ${l.encoding}, concurrency ${l.concurrency}: p50 <= the floor's p50 + ${l.addedP50VsFloorMs} ms, same run.`
    : `Compute-bound (every model but '${t.model}'; binary cells at concurrency >= ${c.minConcurrency}; issue 11 measures ocr_recognition ` +
        `--input-shape x=3,48,320 at 16 and ocr_direction x=3,48,192 at 64): >= ${c.toPeer} x peer, >= ${c.toCeiling} x the best in-process ` +
        `inferences/s, and CPU/inf vs in-process <= ${c.cpuVsInProcess}.`;
}

/** A figure and the condition it must pass; not measured when the figure is missing. */
function check(condition: string, value: number | undefined, passes: (value: number) => boolean, shown: (value: number) => string): GoalCheck {
  if (value === undefined || Number.isNaN(value)) return { condition, measured: 'not measured' };
  return { condition, measured: shown(value), met: passes(value) };
}
/** A ratio to `what` that must be at least `bound`. */
const atLeast = (value: number | undefined, bound: number, what: string) =>
  check(`>= ${bound} x ${what}`, value, (v) => v >= bound, (v) => `${v.toFixed(2)} x ${what}`);

function statusOf(checks: readonly GoalCheck[]): Goal['status'] {
  if (checks.some((c) => c.met === false)) return 'NOT MET';
  if (checks.every((c) => c.met === true)) return 'MET';
  return checks.some((c) => c.met === true) ? 'PARTLY MEASURED' : 'NOT MEASURED';
}

/**
 * Issue 11's goals for each Nereid target that computes (nereid, and before when run), by model name:
 * - compute-bound: any model but 'simple', binary, concurrency >= 16 (the issue measures ocr_recognition
 *   x=3,48,320 at 16 and ocr_direction x=3,48,192 at 64): >= 1.1 x peer, >= 0.9 x the best in-process
 *   inferences/s, and server CPU per inference <= 1.15 x in-process CPU per inference at the batch sizes
 *   the server ran;
 * - tiny: 'simple', JSON and binary, concurrency 64: >= 1.3 x peer and >= 0.6 x floor (requests/s);
 * - latency: 'simple', JSON, concurrency 1: p50 <= the floor's p50 + 0.05 ms.
 * A goal whose cell (or the peer, floor or ceiling it is compared with) was not measured says so.
 */
export function evaluateGoals(model: string, cells: readonly (Cell & { ratios: Ratios })[]): Goal[] {
  const goals: Goal[] = [];
  const targets = COMPUTING_NEREID_TARGETS.filter((target) => target === 'nereid' || cells.some((cell) => cell.target === target));
  for (const target of targets) {
    const own = cells.filter((cell) => cell.target === target);
    const at = (encoding: Encoding, concurrency: number) => own.find((cell) => cell.encoding === encoding && cell.concurrency === concurrency);
    if (model !== GOALS.tiny.model) {
      const g = GOALS.computeBound;
      const applicable = own.filter((cell) => cell.encoding === 'binary' && cell.concurrency >= g.minConcurrency);
      const checksOf = (r: Ratios | undefined): GoalCheck[] => [
        atLeast(r?.toPeer, g.toPeer, 'peer'),
        atLeast(r?.toCeiling, g.toCeiling, 'ceiling'),
        check(
          `CPU/inference <= ${g.cpuVsInProcess} x in-process at the batch sizes run`,
          r?.cpuVsInProcess,
          (v) => v <= g.cpuVsInProcess,
          (v) => `${v.toFixed(2)} x in-process (${cpuMs(r?.serverCpuPerInference)} vs ${cpuMs(r?.inProcessCpuPerInference)} ms CPU/inf)`,
        ),
      ];
      for (const cell of applicable.length ? applicable : [undefined]) {
        const checks = checksOf(cell?.ratios);
        goals.push({ id: 'compute-bound', target, model, encoding: 'binary', concurrency: cell?.concurrency ?? `>= ${g.minConcurrency}`, checks, status: statusOf(checks) });
      }
      continue;
    }
    const tiny = GOALS.tiny;
    for (const encoding of ['json', 'binary'] as const) {
      const r = at(encoding, tiny.concurrency)?.ratios;
      const checks = [atLeast(r?.toPeer, tiny.toPeer, 'peer'), atLeast(r?.toFloor, tiny.toFloor, 'floor')];
      goals.push({ id: 'tiny', target, model, encoding, concurrency: tiny.concurrency, checks, status: statusOf(checks) });
    }
    const latency = GOALS.latency;
    const cell = at(latency.encoding, latency.concurrency);
    const checks = [
      check(
        `p50 <= floor p50 + ${latency.addedP50VsFloorMs} ms`,
        cell?.ratios.addedP50VsFloorMs,
        (v) => v <= latency.addedP50VsFloorMs,
        (v) => `${signedMs(v)} ms (p50 ${ms(cell!.result.latency.p50)} ms)`,
      ),
    ];
    goals.push({ id: 'latency', target, model, encoding: latency.encoding, concurrency: latency.concurrency, checks, status: statusOf(checks) });
  }
  return goals;
}

export function markdownTable(header: string[], rows: string[][], alignRight: boolean[] = []): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, column) => (alignRight[column] ? cell.padStart(widths[column]) : cell.padEnd(widths[column]))).join(' | ')} |`;
  const rule = `|${widths.map((width, column) => (alignRight[column] ? `${'-'.repeat(width + 1)}:` : '-'.repeat(width + 2))).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

const ms = (value: number) => (Number.isNaN(value) ? '—' : value.toFixed(3));
const rate = (value: number) => (value >= 1000 ? value.toFixed(0) : value.toFixed(1));
export const ratio = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '—' : value.toFixed(2));
const signedMs = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '—' : `${value >= 0 ? '+' : ''}${value.toFixed(3)}`);
/** CPU seconds as milliseconds, three significant digits. */
const cpuMs = (seconds: number | undefined) => (seconds === undefined || Number.isNaN(seconds) ? '—' : (seconds * 1e3).toPrecision(3));
const bytes = (value: number) => (value >= 1 << 20 ? `${(value / (1 << 20)).toFixed(2)} MiB` : value >= 1024 ? `${(value / 1024).toFixed(1)} KiB` : `${value} B`);

export function ceilingTable(ceiling: readonly CeilingPoint[]): string {
  const best = bestCeiling(ceiling);
  return markdownTable(
    ['batch', 'runs/s', 'inferences/s', 'p50 ms/run', 'p95 ms/run', 'p99 ms/run', 'CPU', 'CPU ms/inf', 'other CPU', ''],
    ceiling.map((point) => [
      String(point.batch),
      rate(point.runsPerSecond),
      rate(point.inferencesPerSecond),
      ms(point.latency.p50),
      ms(point.latency.p95),
      ms(point.latency.p99),
      `${(point.ownCores * 100).toFixed(0)}%`,
      cpuMs(point.cpuSecondsPerInference),
      point.otherCores === undefined ? '—' : `${(point.otherCores * 100).toFixed(0)}%`,
      point === best ? 'ceiling' : '',
    ]),
    [true, true, true, true, true, true, true, true, true, false],
  );
}

/** The cells in run order, except that each 'before' cell comes right after the nereid cell of the same encoding and concurrency. */
export function beforeBesideNereid<T extends Cell>(cells: readonly T[]): T[] {
  const sameCell = (a: Cell, b: Cell) => a.encoding === b.encoding && a.concurrency === b.concurrency;
  const paired = (cell: Cell) => cell.target === 'before' && cells.some((other) => other.target === 'nereid' && sameCell(other, cell));
  return cells.flatMap((cell) => {
    if (paired(cell)) return [];
    const before = cell.target === 'nereid' ? cells.find((other) => other.target === 'before' && sameCell(other, cell)) : undefined;
    return before ? [cell, before] : [cell];
  });
}

export function cellTable(cells: readonly (Cell & { ratios: Ratios })[]): string {
  return markdownTable(
    ['target', 'enc', 'conc', 'inf/s', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', '×ceiling', '×peer', '×floor', '+p50 vs b1 ms', '+p50 vs floor ms', 'CPU/inf vs in-process', 'errors', 'server CPU', 'client CPU', 'other CPU', 'req body', 'resp body'],
    beforeBesideNereid(cells).map((cell) => [
      cell.target,
      cell.encoding,
      String(cell.concurrency),
      cell.target === 'floor' || cell.target === 'nereid-cache' ? '—' : rate(cell.inferencesPerSecond),
      rate(cell.result.requestsPerSecond),
      ms(cell.result.latency.p50),
      ms(cell.result.latency.p95),
      ms(cell.result.latency.p99),
      ratio(cell.ratios.toCeiling),
      ratio(cell.ratios.toPeer),
      ratio(cell.ratios.toFloor),
      signedMs(cell.ratios.addedP50Ms),
      signedMs(cell.ratios.addedP50VsFloorMs),
      ratio(cell.ratios.cpuVsInProcess),
      String(cell.result.errors),
      cell.serverCores === undefined ? '—' : `${(cell.serverCores * 100).toFixed(0)}%`,
      `${(cell.clientCores * 100).toFixed(0)}%`,
      cell.otherCores === undefined ? '—' : `${(cell.otherCores * 100).toFixed(0)}%`,
      bytes(cell.requestBytes),
      cell.result.completed ? bytes(Math.round(cell.result.responseBytes / cell.result.completed)) : '—',
    ]),
    [false, false, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true],
  );
}

/** Executions per batch size, e.g. "1×3 8×120". */
export function batchMix(batches: readonly BatchExecutions[]): string {
  return batches.length ? batches.map(({ batchSize, executions }) => `${batchSize}×${executions}`).join(' ') : '—';
}

export function schedulerTable(cells: readonly (Cell & { ratios: Ratios })[]): string {
  const rows = beforeBesideNereid(cells).filter((cell) => cell.scheduler && COMPUTING_NEREID_TARGETS.includes(cell.target));
  return markdownTable(
    ['target', 'enc', 'conc', 'executions', 'mean batch', 'batch size×executions', 'request ms', 'queue ms', 'compute input ms', 'compute infer ms', 'compute output ms', 'server CPU ms/inf', 'in-process CPU ms/inf at these batches'],
    rows.map((cell) => {
      const s = cell.scheduler!;
      return [
        cell.target,
        cell.encoding,
        String(cell.concurrency),
        String(s.executions),
        s.meanBatch.toFixed(2),
        batchMix(s.batches),
        ms(s.meanRequestMs),
        ms(s.meanQueueMs),
        ms(s.meanComputeInputMs),
        ms(s.meanComputeInferMs),
        ms(s.meanComputeOutputMs),
        cpuMs(cell.ratios.serverCpuPerInference),
        cpuMs(cell.ratios.inProcessCpuPerInference),
      ];
    }),
    [false, false, true, true, true, false, true, true, true, true, true, true, true],
  );
}

export function goalLines(goals: readonly Goal[]): string[] {
  return goals.map(
    (goal) =>
      `- **${goal.status}** — ${goal.id}, ${goal.target} (${goal.model}, ${goal.encoding}, concurrency ${goal.concurrency}): ` +
      goal.checks.map((c) => `${c.condition}: ${c.measured}${c.met === undefined ? '' : c.met ? ' ✓' : ' ✗'}`).join('; '),
  );
}

/**
 * Cache hits next to the floor: each nereid-cache cell with the floor cell it is compared with, and
 * the server's own cache counts over the cell (warm-up included) against the answers the client got.
 */
export function cacheTable(cells: readonly (Cell & { ratios: Ratios })[]): string {
  const rows: string[][] = [];
  for (const cell of cells.filter((c) => c.target === 'nereid-cache')) {
    const floorEncoding = floorEncodingOf(cell.encoding);
    const floor = cells.find((c) => c.target === 'floor' && c.encoding === floorEncoding && c.concurrency === cell.concurrency);
    const s = cell.scheduler;
    const line = (row: Cell, what: string, hits: string, misses: string, lookup: string): string[] => [
      what,
      row.encoding,
      String(row.concurrency),
      rate(row.result.requestsPerSecond),
      ms(row.result.latency.p50),
      ms(row.result.latency.p95),
      ms(row.result.latency.p99),
      row === cell ? ratio(cell.ratios.toFloor) : '',
      row === cell ? signedMs(cell.ratios.addedP50VsFloorMs) : '',
      hits,
      misses,
      lookup,
      row === cell ? `${row.result.verified}/${row.result.verifyFailed}` : '',
      String(row.result.errors),
      row.serverCores === undefined ? '—' : `${(row.serverCores * 100).toFixed(0)}%`,
      `${(row.clientCores * 100).toFixed(0)}%`,
      row.otherCores === undefined ? '—' : `${(row.otherCores * 100).toFixed(0)}%`,
    ];
    rows.push(
      line(
        cell,
        'cache hit',
        s ? `${s.cacheHits} / ${cell.result.answered}` : '—',
        s ? String(s.cacheMisses) : '—',
        s ? ms(s.meanCacheHitMs) : '—',
      ),
    );
    if (floor) rows.push(line(floor, `floor (${floorEncoding})`, '', '', ''));
  }
  return markdownTable(
    ['', 'enc', 'conc', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', '×floor', '+p50 vs floor ms', 'cache_hit Δ / answered', 'cache_miss Δ', 'hit lookup ms', 'checked/wrong', 'errors', 'server CPU', 'client CPU', 'other CPU'],
    rows,
    [false, false, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true],
  );
}
