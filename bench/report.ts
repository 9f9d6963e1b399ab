/**
 * Results: per-cell ratios to the ceiling, the peer and the floor, the goals, and the markdown
 * written next to the JSON (aligned, so the console shows the same table).
 */
import type { CeilingPoint } from './in-process.js';
import type { LoadResult } from './load-generator.js';
import type { Encoding, ServerTarget } from './options.js';
import type { ProfileSummary } from './cpu-profile.js';

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
}

export interface Goal {
  id: string;
  description: string;
  encoding: Encoding;
  concurrency: number;
  measured: string;
  met: boolean;
}

export interface Report {
  meta: Record<string, unknown>;
  ceiling: CeilingPoint[];
  cells: (Cell & { ratios: Ratios })[];
  goals: Goal[];
}

export function bestCeiling(ceiling: readonly CeilingPoint[]): CeilingPoint | undefined {
  return ceiling.reduce<CeilingPoint | undefined>((best, point) => (!best || point.inferencesPerSecond > best.inferencesPerSecond ? point : best), undefined);
}

/** The floor and peer speak HTTP only: a gRPC cell is compared with the HTTP binary floor (same tensor bytes). */
export function floorEncodingOf(encoding: Encoding): Encoding {
  return encoding === 'grpc' ? 'binary' : encoding;
}

export function ratiosOf(cell: Cell, cells: readonly Cell[], ceiling: readonly CeilingPoint[]): Ratios {
  const find = (target: ServerTarget, encoding: Encoding) =>
    cells.find((other) => other.target === target && other.encoding === encoding && other.concurrency === cell.concurrency);
  const best = bestCeiling(ceiling);
  const batchOne = ceiling.find((point) => point.batch === 1);
  if (cell.target === 'floor') return {};
  // gRPC has no peer (the peer is HTTP only); a cache hit computes nothing, so no ×ceiling or ×peer.
  const peer = cell.encoding === 'grpc' ? undefined : find('peer', cell.encoding);
  const floor = find('floor', floorEncodingOf(cell.encoding));
  const computes = cell.target !== 'nereid-cache';
  return {
    toCeiling: best && computes ? cell.inferencesPerSecond / best.inferencesPerSecond : undefined,
    toPeer: cell.target === 'nereid' && peer ? cell.inferencesPerSecond / peer.inferencesPerSecond : undefined,
    toFloor: floor ? cell.result.requestsPerSecond / floor.result.requestsPerSecond : undefined,
    addedP50Ms: batchOne && computes ? cell.result.latency.p50 - batchOne.latency.p50 : undefined,
    addedP50VsFloorMs: floor ? cell.result.latency.p50 - floor.result.latency.p50 : undefined,
  };
}

/**
 * The goals, each where it applies: compute-bound (an in-process batch-1 run of 1 ms or more) at
 * concurrency >= 2 x max_batch_size; tiny (under 1 ms) at concurrency >= 64; latency at concurrency 1.
 */
export function evaluateGoals(cells: readonly (Cell & { ratios: Ratios })[], ceiling: readonly CeilingPoint[], maxBatchSize: number): Goal[] {
  const goals: Goal[] = [];
  const nereid = cells.filter((cell) => cell.target === 'nereid');
  const batchOne = ceiling.find((point) => point.batch === 1);
  const computeBound = batchOne ? batchOne.latency.p50 >= 1 : undefined;
  const fmt = (value: number | undefined, digits = 2) => (value === undefined || Number.isNaN(value) ? 'n/a' : value.toFixed(digits));
  if (maxBatchSize > 0 && computeBound) {
    for (const cell of nereid.filter((c) => c.concurrency >= 2 * maxBatchSize)) {
      if (cell.ratios.toCeiling === undefined) continue;
      goals.push({
        id: 'compute-bound',
        description: `concurrency >= 2 x max_batch_size (${2 * maxBatchSize}): Nereid throughput >= 0.9 x ceiling`,
        encoding: cell.encoding,
        concurrency: cell.concurrency,
        measured: `${fmt(cell.ratios.toCeiling)} x ceiling`,
        met: cell.ratios.toCeiling >= 0.9,
      });
    }
  }
  if (computeBound === false) {
    for (const cell of nereid.filter((c) => c.concurrency >= 64)) {
      if (cell.ratios.toFloor === undefined || cell.ratios.toPeer === undefined) continue;
      goals.push({
        id: 'tiny',
        description: `concurrency >= 64: Nereid requests/s >= 0.8 x floor and >= peer`,
        encoding: cell.encoding,
        concurrency: cell.concurrency,
        measured: `${fmt(cell.ratios.toFloor)} x floor, ${fmt(cell.ratios.toPeer)} x peer`,
        met: cell.ratios.toFloor >= 0.8 && cell.ratios.toPeer >= 1,
      });
    }
  }
  for (const cell of cells.filter((c) => c.target === 'nereid-cache' && c.concurrency === 1)) {
    if (cell.ratios.addedP50VsFloorMs === undefined) continue;
    const hits = cell.scheduler ? `, ${cell.scheduler.cacheHits} cache hits / ${cell.result.answered} answered` : '';
    goals.push({
      id: 'cache-hit',
      description: `concurrency 1: a cache hit's p50 <= the ${floorEncodingOf(cell.encoding)} floor's p50 + 0.1 ms`,
      encoding: cell.encoding,
      concurrency: 1,
      measured: `+${fmt(cell.ratios.addedP50VsFloorMs, 3)} ms (p50 ${fmt(cell.result.latency.p50, 3)} ms${hits})`,
      met: cell.ratios.addedP50VsFloorMs <= 0.1 && cell.result.verifyFailed === 0,
    });
  }
  for (const cell of nereid.filter((c) => c.concurrency === 1)) {
    if (cell.ratios.addedP50Ms === undefined) continue;
    goals.push({
      id: 'latency',
      description: 'concurrency 1: p50 added over in-process batch-1 p50 <= 0.3 ms',
      encoding: cell.encoding,
      concurrency: 1,
      measured: `+${fmt(cell.ratios.addedP50Ms, 3)} ms (p50 ${fmt(cell.result.latency.p50, 3)} ms)`,
      met: cell.ratios.addedP50Ms <= 0.3,
    });
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
const ratio = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '—' : value.toFixed(2));
const signedMs = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '—' : `${value >= 0 ? '+' : ''}${value.toFixed(3)}`);
const bytes = (value: number) => (value >= 1 << 20 ? `${(value / (1 << 20)).toFixed(2)} MiB` : value >= 1024 ? `${(value / 1024).toFixed(1)} KiB` : `${value} B`);

export function ceilingTable(ceiling: readonly CeilingPoint[]): string {
  const best = bestCeiling(ceiling);
  return markdownTable(
    ['batch', 'runs/s', 'inferences/s', 'p50 ms/run', 'p95 ms/run', 'p99 ms/run', 'CPU', 'other CPU', ''],
    ceiling.map((point) => [
      String(point.batch),
      rate(point.runsPerSecond),
      rate(point.inferencesPerSecond),
      ms(point.latency.p50),
      ms(point.latency.p95),
      ms(point.latency.p99),
      `${(point.ownCores * 100).toFixed(0)}%`,
      point.otherCores === undefined ? '—' : `${(point.otherCores * 100).toFixed(0)}%`,
      point === best ? 'ceiling' : '',
    ]),
    [true, true, true, true, true, true, true, true, false],
  );
}

export function cellTable(cells: readonly (Cell & { ratios: Ratios })[]): string {
  return markdownTable(
    ['target', 'enc', 'conc', 'inf/s', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', '×ceiling', '×peer', '×floor', '+p50 vs b1 ms', '+p50 vs floor ms', 'errors', 'server CPU', 'client CPU', 'other CPU', 'req body', 'resp body'],
    cells.map((cell) => [
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
      String(cell.result.errors),
      cell.serverCores === undefined ? '—' : `${(cell.serverCores * 100).toFixed(0)}%`,
      `${(cell.clientCores * 100).toFixed(0)}%`,
      cell.otherCores === undefined ? '—' : `${(cell.otherCores * 100).toFixed(0)}%`,
      bytes(cell.requestBytes),
      cell.result.completed ? bytes(Math.round(cell.result.responseBytes / cell.result.completed)) : '—',
    ]),
    [false, false, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true],
  );
}

export function schedulerTable(cells: readonly Cell[]): string {
  const rows = cells.filter((cell) => cell.scheduler && cell.target === 'nereid');
  return markdownTable(
    ['enc', 'conc', 'executions', 'mean batch', 'request ms', 'queue ms', 'compute input ms', 'compute infer ms', 'compute output ms'],
    rows.map((cell) => {
      const s = cell.scheduler!;
      return [
        cell.encoding,
        String(cell.concurrency),
        String(s.executions),
        s.meanBatch.toFixed(2),
        ms(s.meanRequestMs),
        ms(s.meanQueueMs),
        ms(s.meanComputeInputMs),
        ms(s.meanComputeInferMs),
        ms(s.meanComputeOutputMs),
      ];
    }),
    [false, true, true, true, true, true, true, true, true],
  );
}

export function goalLines(goals: readonly Goal[]): string[] {
  return goals.map(
    (goal) => `- **${goal.met ? 'MET' : 'NOT MET'}** — ${goal.id} (${goal.encoding}, concurrency ${goal.concurrency}): ${goal.description}; measured ${goal.measured}`,
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
