/**
 * What a server feature costs a request: two server children that differ only in that feature (one
 * with it on, one with it off), driven in turn (on, off, off, on, …) by a closed loop of undici
 * requests at a fixed concurrency. Interleaving, and comparing each back-to-back pair of rounds,
 * cancels the slow drifts of a shared machine; the server's own CPU time per request (from /proc)
 * is disturbed by other load much less than its throughput is.
 */
import { Pool } from 'undici';
import { machineBusySeconds, waitForQuiet, type ChildServer } from './child-process.js';
import { describeSource, machine, sourceState } from './environment.js';
import { runClosedLoop } from './load-generator.js';
import { markdownTable } from './report.js';
import { median } from './rounds.js';

export type Side = 'on' | 'off';

export interface OnOffServer {
  side: Side;
  /** As the tables name it, e.g. 'metrics on'. */
  label: string;
  child: ChildServer;
  /** Started with each round of this server and stopped after it (a Prometheus scraper, say). */
  alongside?: () => () => void;
}

/** The request a client sends `sequence`-th (counting every request to the server so far in the round) to `server`. */
export type RequestOf = (sequence: number, server: OnOffServer) => { path: string; headers: Record<string, string>; body: Buffer | string };

export interface RoundFigures {
  side: Side;
  label: string;
  /** 200 answers over the round, and the rest. */
  answered: number;
  failed: number;
  errorSamples: string[];
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU microseconds per answered request (all threads); undefined off Linux. */
  cpuUs?: number;
  /** Cores the rest of the machine (not the server, not this process) used over the round, on average; undefined off Linux. */
  otherCores?: number;
  /** The round's window in process.hrtime.bigint() nanoseconds (to cut a CPU profile). */
  windowStartNs: bigint;
  windowEndNs: bigint;
}

export interface RoundPlan {
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  concurrency: number;
  /** Before each round, wait up to this long for the rest of the machine to go quiet (see waitForQuiet). */
  quietSeconds?: number;
}

/**
 * One round: `concurrency` clients, each POSTing its next request as soon as the last is answered,
 * for `seconds`. Server CPU is read before the first request and after the last answer, so it covers
 * every request answered, including those that finished just past the window.
 */
export async function driveRound(server: OnOffServer, concurrency: number, seconds: number, requestOf: RequestOf): Promise<RoundFigures> {
  const pool = new Pool(server.child.origin, { connections: concurrency, pipelining: 1 });
  let sequence = 0;
  const stopAlongside = server.alongside?.();
  const cpuBefore = server.child.cpuSeconds();
  const busyBefore = machineBusySeconds();
  const ownBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  try {
    const result = await runClosedLoop({ concurrency, warmupSeconds: 0, durationSeconds: seconds, verifyEvery: Number.MAX_SAFE_INTEGER }, async () => {
      const { path, headers, body } = requestOf(sequence++, server);
      const answer = await pool.request({ path, method: 'POST', headers, body });
      const text = await answer.body.text();
      if (answer.statusCode === 200) return { ok: true, bytes: text.length };
      return { ok: false, bytes: text.length, problem: `HTTP ${answer.statusCode}: ${text.slice(0, 300)}` };
    });
    const cpuAfter = server.child.cpuSeconds();
    const busyAfter = machineBusySeconds();
    const own = process.cpuUsage(ownBefore);
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    const known = cpuBefore !== undefined && cpuAfter !== undefined && busyBefore !== undefined && busyAfter !== undefined;
    return {
      side: server.side,
      label: server.label,
      answered: result.answered,
      failed: result.failed,
      errorSamples: result.errorSamples,
      rps: result.requestsPerSecond,
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      cpuUs: cpuBefore === undefined || cpuAfter === undefined || result.answered === 0 ? undefined : ((cpuAfter - cpuBefore) * 1e6) / result.answered,
      otherCores: known ? Math.max(0, (busyAfter - busyBefore - (cpuAfter - cpuBefore) - (own.user + own.system) / 1e6) / elapsed) : undefined,
      windowStartNs: result.windowStartNs,
      windowEndNs: result.windowEndNs,
    };
  } finally {
    stopAlongside?.();
    await pool.close();
  }
}

export interface OnOffRun {
  rounds: RoundFigures[];
  /** Each round's two measurements, taken back to back. */
  pairs: { on: RoundFigures; off: RoundFigures }[];
}

/** A warm-up of each server (not kept), then `rounds` rounds, each measuring both servers back to back, in turn first. */
export async function interleavedRounds(servers: readonly [OnOffServer, OnOffServer], plan: RoundPlan, requestOf: RequestOf): Promise<OnOffRun> {
  for (const server of servers) await driveRound(server, plan.concurrency, plan.warmupSeconds, requestOf);
  const run: OnOffRun = { rounds: [], pairs: [] };
  const width = Math.max(...servers.map((server) => server.label.length));
  for (let round = 0; round < plan.rounds; round++) {
    const pair: RoundFigures[] = [];
    for (const server of round % 2 === 0 ? servers : [...servers].reverse()) {
      if (plan.quietSeconds) await waitForQuiet([...new Set(servers.map((each) => each.child.pid))], plan.quietSeconds);
      const result = await driveRound(server, plan.concurrency, plan.seconds, requestOf);
      pair.push(result);
      run.rounds.push(result);
      console.error(
        `${result.label.padEnd(width)} ${result.rps.toFixed(0).padStart(6)} req/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  ` +
          `server CPU ${result.cpuUs?.toFixed(1) ?? 'n/a'} us/req  other load ${result.otherCores?.toFixed(2) ?? 'n/a'} cores${result.failed ? `  ${result.failed} failed: ${result.errorSamples.join(' | ')}` : ''}`,
      );
    }
    run.pairs.push({ on: pair.find((result) => result.side === 'on')!, off: pair.find((result) => result.side === 'off')! });
  }
  return run;
}

export interface SideSummary {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUs: number;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface OnOffSummary {
  on: SideSummary;
  off: SideSummary;
  /** on ÷ off of each back-to-back pair. */
  rpsRatio: Spread;
  cpuRatio: Spread;
  failed: number;
  /** The most cores the rest of the machine used in any round. */
  maxOtherCores?: number;
}

function spread(values: number[]): Spread {
  const known = values.filter((value) => !Number.isNaN(value));
  return { median: median(known) ?? NaN, min: Math.min(...known), max: Math.max(...known) };
}

/** Medians of each side's rounds, and of the on/off ratios of each pair. */
export function summariseOnOff(run: OnOffRun): OnOffSummary {
  const side = (which: Side): SideSummary => {
    const mine = run.rounds.filter((round) => round.side === which);
    const of = (pick: (round: RoundFigures) => number | undefined) => median(mine.map(pick)) ?? NaN;
    return { rps: of((r) => r.rps), p50Ms: of((r) => r.p50Ms), p99Ms: of((r) => r.p99Ms), cpuUs: of((r) => r.cpuUs) };
  };
  return {
    on: side('on'),
    off: side('off'),
    rpsRatio: spread(run.pairs.map(({ on, off }) => on.rps / off.rps)),
    cpuRatio: spread(run.pairs.map(({ on, off }) => (on.cpuUs === undefined || off.cpuUs === undefined ? NaN : on.cpuUs / off.cpuUs))),
    failed: run.rounds.reduce((sum, round) => sum + round.failed, 0),
    maxOtherCores: run.rounds.every((round) => round.otherCores !== undefined) ? Math.max(...run.rounds.map((round) => round.otherCores!)) : undefined,
  };
}

/** The on, off and on/off rows (the ratio of the medians), and the per-pair ratios below. */
export function onOffTable(summary: OnOffSummary, labels: Record<Side, string>): string {
  const row = (label: string, side: SideSummary) => [label, side.rps.toFixed(0), side.p50Ms.toFixed(2), side.p99Ms.toFixed(2), side.cpuUs.toFixed(1)];
  const { on, off } = summary;
  const ratioRow = ['on / off', on.rps / off.rps, on.p50Ms / off.p50Ms, on.p99Ms / off.p99Ms, on.cpuUs / off.cpuUs].map((cell) => (typeof cell === 'number' ? cell.toFixed(3) : cell));
  const pair = (name: string, ratio: Spread) => `${name} on/off per back-to-back pair: median ${ratio.median.toFixed(3)} (min ${ratio.min.toFixed(3)}, max ${ratio.max.toFixed(3)})`;
  return [
    markdownTable(['server', 'requests/s', 'p50 ms', 'p99 ms', 'server CPU µs/request'], [row(labels.on, on), row(labels.off, off), ratioRow], [false, true, true, true, true]),
    '',
    pair('requests/s', summary.rpsRatio),
    pair('server CPU per request', summary.cpuRatio),
    ...(summary.maxOtherCores !== undefined ? [`other load on the machine: at most ${summary.maxOtherCores.toFixed(2)} cores in any round (see the rounds above)`] : []),
    ...(summary.failed ? [`${summary.failed} requests failed (see the rounds above)`] : []),
  ].join('\n');
}

/** Where and on what it ran: cores and CPU, Node, the date, and the commit measured. */
export function environmentLine(): string {
  const where = machine();
  return `${where.cores} cores (${where.cpuModel}), Node ${where.node}, onnxruntime-node ${where.onnxruntimeNode}, ${new Date().toISOString().slice(0, 10)}, ${describeSource(sourceState())}`;
}
