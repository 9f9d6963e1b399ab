/**
 * Goodput mode of `npm run bench -- --open-loop 1,2,4`: how each target holds up when offered more
 * than it can serve. First each target's closed-loop capacity and unloaded latency, then per
 * multiple of that capacity an open-loop load (bench/open-loop.ts on worker threads) with the
 * server's memory read meanwhile and its recovery probed after; one table at the end.
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { waitForIdleProcesses, type ChildServer } from './child-process.js';
import { describeSource, machine, resultPath, sourceState } from './environment.js';
import { runLoad, type LatencySummary } from './load-generator.js';
import { startOpenLoop } from './open-loop-threads.js';
import { probeRecovery, rssBytes, RssSampler, unloadedLatencyMs, type OpenLoopResult, type ProbeRequest, type RecoveryResult } from './open-loop.js';
import type { BenchOptions, HttpEncoding, ServerTarget } from './options.js';
import { floorResponseCheck, inferResponseCheck, type OutputSpec, type RequestBody } from './workload.js';

export interface GoodputContext {
  options: BenchOptions;
  modelName: string;
  /** One line describing the model and the config Nereid serves, for the report's header. */
  modelLine: string;
  outputs: OutputSpec[];
  bodies: Map<HttpEncoding, RequestBody>;
  started: Date;
  /** Starts a target's server child (the caller stops it). */
  startServer(target: ServerTarget): Promise<ChildServer>;
}

/**
 * Where the server's CPU went while a load ran (warm-up included): its event loop's thread against the others
 * (ONNX Runtime's, libuv's, GC helpers). On a machine whose cores the model shares with the event loop and the load
 * generator, what the loop spends on requests it refuses comes out of the forward passes.
 */
interface ServerCpu {
  mainThreadCores: number;
  otherThreadsCores: number;
  /** All threads' CPU over the load ÷ (answers per second × its seconds). */
  msPerSuccess: number;
}

interface Capacity {
  target: ServerTarget;
  concurrency: number;
  requestsPerSecond: number;
  latency: LatencySummary;
  errors: number;
  /** p50 of requests sent one at a time to the idle server. */
  unloadedP50Ms: number;
  serverCpu?: ServerCpu;
}

/** A server's CPU seconds so far, all threads and its main thread's, and when they were read (undefined off Linux). */
interface CpuReading {
  atMs: number;
  all?: number;
  main?: number;
}

const readCpu = (server: ChildServer): CpuReading => ({ atMs: performance.now(), all: server.cpuSeconds(), main: server.mainThreadCpuSeconds() });

/** Where a server's CPU went between two readings, given the answers per second the load got. */
function serverCpuBetween(start: CpuReading, end: CpuReading, successesPerSecond: number): ServerCpu | undefined {
  const seconds = (end.atMs - start.atMs) / 1000;
  if (start.all === undefined || start.main === undefined || end.all === undefined || end.main === undefined || seconds <= 0) return undefined;
  const mainThreadCores = (end.main - start.main) / seconds;
  const allCores = (end.all - start.all) / seconds;
  return { mainThreadCores, otherThreadsCores: allCores - mainThreadCores, msPerSuccess: successesPerSecond > 0 ? (allCores * 1000) / successesPerSecond : NaN };
}

const cpuText = (cpu: ServerCpu | undefined) =>
  cpu ? `${(cpu.mainThreadCores * 100).toFixed(0)}% / ${(cpu.otherThreadsCores * 100).toFixed(0)}% | ${cpu.msPerSuccess.toFixed(1)}` : '– | –';

interface GoodputCell {
  target: ServerTarget;
  multiple: number;
  capacityPerSecond: number;
  result: OpenLoopResult;
  goodputOverCapacity: number;
  /** Requests sent while the window ran ÷ requests its schedule held. */
  sentShare: number;
  /** The generator fell behind its schedule or its event loop was saturated: the row measures the generator as much as the server. */
  generatorBehind: boolean;
  rssBeforeBytes?: number;
  rssPeakBytes?: number;
  rssAfterBytes?: number;
  recovery: RecoveryResult;
  /** Whether the server had gone idle before this cell started (it may still be serving abandoned requests). */
  idleBefore: boolean;
  serverCpu?: ServerCpu;
}

/**
 * A row whose generator sent less than this share of the requests scheduled in its window describes
 * the generator. Against the schedule rather than the nominal rate, as a few seconds of Poisson
 * arrivals at a low rate hold noticeably more or fewer than rate × seconds.
 */
const KEPT_UP = 0.95;
const RECOVERY_LIMIT_SECONDS = 30;
const RECOVERY_PROBE_EVERY_MS = 50;
/** How long after the load stops the server's memory is read again. */
const RSS_AFTER_MS = 2000;
/** Most seconds to wait, before a measurement, for the servers to stop working through earlier load. */
const IDLE_WAIT_SECONDS = 60;
const UNLOADED_REQUESTS = 20;
/** A generator thread whose event loop was busier than this over the load was the bottleneck, or near it. */
const GENERATOR_SATURATED = 0.9;
/** A closed-loop window with fewer answers than this per client measures its edges more than the server. */
const FEW_ANSWERS_PER_CLIENT = 5;

/** A probe that recovered answers 200 within this: twice the unloaded p50, and at least 5 ms above it. */
export const recoveryThresholdMs = (unloadedP50Ms: number) => Math.max(2 * unloadedP50Ms, unloadedP50Ms + 5);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mb = (bytes: number | undefined) => (bytes === undefined ? '?' : (bytes / 2 ** 20).toFixed(0));
const ms = (value: number) => (Number.isNaN(value) ? '–' : value >= 100 ? value.toFixed(0) : value.toFixed(1));

function refusals(result: OpenLoopResult): string {
  const entries = Object.entries(result.refusalsByStatus);
  return entries.length ? entries.map(([status, count]) => `${status}×${count}`).join(', ') : '0';
}

function retryAfter(result: OpenLoopResult): string {
  const refused = Object.values(result.refusalsByStatus).reduce((total, count) => total + count, 0);
  if (refused === 0) return '–';
  return `${result.refusalsWithRetryAfter}/${refused}${result.retryAfter.length ? ` (${result.retryAfter.map((value) => `'${value}'`).join(', ')})` : ''}`;
}

function recoveryText(recovery: RecoveryResult): string {
  return recovery.seconds === undefined ? `>${recovery.limitSeconds} s` : `${recovery.seconds.toFixed(2)} s`;
}

function cellLine(cell: GoodputCell): string {
  const r = cell.result;
  return (
    `${cell.target} ×${cell.multiple}: offered ${r.targetRatePerSecond.toFixed(1)}/s, achieved ${r.achievedRatePerSecond.toFixed(1)}/s, ` +
    `goodput ${r.goodputPerSecond.toFixed(1)}/s = ${cell.goodputOverCapacity.toFixed(2)}× capacity; ` +
    `${r.successes} of ${r.scheduled} succeeded, p50 ${ms(r.successLatency.p50)} p99 ${ms(r.successLatency.p99)} ms; ` +
    `refused ${refusals(r)} (Retry-After ${retryAfter(r)}, p50 ${ms(r.refusalLatency.p50)} ms); client timeouts ${r.clientTimeouts}; ` +
    `connection errors ${r.connectionErrors}; RSS before ${mb(cell.rssBeforeBytes)} MB, peak ${mb(cell.rssPeakBytes)} MB, +2 s ${mb(cell.rssAfterBytes)} MB; ` +
    `recovery ${recoveryText(cell.recovery)} (${cell.recovery.probes} probes, first ${cell.recovery.firstProbe}); ` +
    `generator: sent ${(cell.sentShare * 100).toFixed(0)}% of the window's schedule, send lag p99 ${ms(r.sendLagP99Ms)} ms, event loop busy ${(r.generatorBusy * 100).toFixed(0)}%, ` +
    `client queue max ${r.clientQueuedMax}; server CPU main / other threads | ms per success: ${cpuText(cell.serverCpu)}` +
    (cell.generatorBehind ? ' — GENERATOR BEHIND' : '') +
    (cell.idleBefore ? '' : ' — the server was still busy with earlier load when this started')
  );
}

function capacityTable(capacities: Capacity[]): string {
  return [
    '| target | closed-loop capacity req/s | concurrency | p50 ms | p99 ms | errors | unloaded p50 ms | recovered within ms | server CPU main / other threads | server CPU ms per success |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...capacities.map(
      (c) =>
        `| ${c.target} | ${c.requestsPerSecond.toFixed(1)} | ${c.concurrency} | ${ms(c.latency.p50)} | ${ms(c.latency.p99)} | ${c.errors} | ${c.unloadedP50Ms.toFixed(2)} | ${recoveryThresholdMs(c.unloadedP50Ms).toFixed(1)} | ${cpuText(c.serverCpu)} |`,
    ),
  ].join('\n');
}

function goodputTable(cells: GoodputCell[], connections: number): string {
  return [
    '| target | × | offered/s | achieved/s | goodput/s | ÷ capacity | success p50 ms | success p99 ms | refused | Retry-After | refusal p50 ms | client timeouts | conn. errors | RSS before / peak / +2 s MB | recovery | client queue max | server CPU main / other threads | server CPU ms per success | notes |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|',
    ...cells.map((cell) => {
      const r = cell.result;
      const notes = [
        cell.generatorBehind ? `**GENERATOR BEHIND** (${(cell.sentShare * 100).toFixed(0)}% sent, loop ${(r.generatorBusy * 100).toFixed(0)}% busy)` : '',
        r.clientQueuedMax > 0 ? `all ${connections} connections busy at times` : '',
        cell.idleBefore ? '' : 'server still busy at the start',
        r.verifyFailed ? `${r.verifyFailed} WRONG answers` : '',
      ].filter(Boolean);
      return (
        `| ${cell.target} | ${cell.multiple} | ${r.targetRatePerSecond.toFixed(1)} | ${r.achievedRatePerSecond.toFixed(1)} | ${r.goodputPerSecond.toFixed(1)} | ${cell.goodputOverCapacity.toFixed(2)} | ` +
        `${ms(r.successLatency.p50)} | ${ms(r.successLatency.p99)} | ${refusals(r)} | ${retryAfter(r)} | ${ms(r.refusalLatency.p50)} | ${r.clientTimeouts} | ${r.connectionErrors} | ` +
        `${mb(cell.rssBeforeBytes)} / ${mb(cell.rssPeakBytes)} / ${mb(cell.rssAfterBytes)} | ${recoveryText(cell.recovery)} | ${r.clientQueuedMax} | ${cpuText(cell.serverCpu)} | ${notes.join('; ')} |`
      );
    }),
  ].join('\n');
}

export async function runGoodput(context: GoodputContext): Promise<void> {
  const { options, modelName, outputs } = context;
  const multiples = options.openLoop!;
  const encoding: HttpEncoding = options.encodings.includes('binary') ? 'binary' : options.encodings.includes('json') ? 'json' : 'binary';
  const body = context.bodies.get(encoding) ?? context.bodies.get('binary')!;
  const path = `/v2/models/${modelName}/infer`;
  const concurrency = Math.max(...options.concurrency);
  const targets = options.targets as ServerTarget[];
  const checkOf = (target: ServerTarget) => (target === 'floor' ? floorResponseCheck : inferResponseCheck(outputs, encoding));
  const probeOf = (server: ChildServer): ProbeRequest => ({ origin: server.origin, path, headers: body.headers, body: body.body });

  // Every target runs from the start, so that capacities and cells are measured close in time.
  const servers = new Map<ServerTarget, ChildServer>();
  for (const target of targets) servers.set(target, await context.startServer(target));
  const allPids = () => [...servers.values()].map((server) => server.pid);
  const waitForIdle = async (): Promise<boolean> => {
    const startedMs = performance.now();
    const idle = await waitForIdleProcesses(allPids(), IDLE_WAIT_SECONDS);
    const waited = (performance.now() - startedMs) / 1000;
    if (!idle) console.log(`  (a server was still busy after ${IDLE_WAIT_SECONDS} s; measuring anyway)`);
    else if (waited > 3) console.log(`  (waited ${waited.toFixed(0)} s for the servers to go idle)`);
    return idle;
  };

  const offeredBase = options.capacityFrom ? `${options.capacityFrom}'s capacity` : 'capacity';
  console.log(
    `goodput: ${encoding} requests of ${body.body.length} bytes; capacity = closed loop at concurrency ${concurrency}; then ${multiples.join(', ')} × ${offeredBase} open-loop, ` +
      `${options.warmup} s unmeasured + ${options.duration} s measured, client timeout ${options.clientTimeout} s, ${options.openLoopConnections} connections, ` +
      `${options.generatorThreads} generator thread(s)`,
  );
  const capacities = new Map<ServerTarget, Capacity>();
  for (const target of targets) {
    const server = servers.get(target)!;
    await waitForIdle();
    const cpuAtStart = readCpu(server);
    const closed = await runLoad({
      origin: server.origin,
      path,
      headers: body.headers,
      body: body.body,
      check: checkOf(target),
      concurrency,
      warmupSeconds: options.warmup,
      durationSeconds: options.duration,
      verifyEvery: options.verifyEvery,
    });
    const serverCpu = serverCpuBetween(cpuAtStart, readCpu(server), closed.requestsPerSecond);
    await waitForIdle();
    const unloadedP50Ms = await unloadedLatencyMs(probeOf(server), UNLOADED_REQUESTS);
    const capacity = { target, concurrency, requestsPerSecond: closed.requestsPerSecond, latency: closed.latency, errors: closed.errors, unloadedP50Ms, serverCpu };
    capacities.set(target, capacity);
    console.log(
      `${target} capacity: ${closed.requestsPerSecond.toFixed(1)} req/s at c=${concurrency} (p50 ${ms(closed.latency.p50)} p99 ${ms(closed.latency.p99)} ms, ${closed.errors} errors); ` +
        `unloaded p50 ${unloadedP50Ms.toFixed(2)} ms; server CPU main / other threads | ms per success: ${cpuText(serverCpu)}`,
    );
    for (const sample of closed.errorSamples) console.log(`    error: ${sample}`);
    for (const failure of closed.verifyFailures) console.log(`    WRONG RESPONSE: ${failure}`);
    if (closed.requestsPerSecond <= 0) throw new Error(`${target} answered nothing closed-loop; no capacity to offer multiples of`);
    if (closed.completed < FEW_ANSWERS_PER_CLIENT * concurrency) {
      console.log(
        `  warning: only ${closed.completed} answers in ${options.duration} s at c=${concurrency}: requests cut by the window's edges weigh on this capacity; a longer --duration measures it better`,
      );
    }
  }

  const cells: GoodputCell[] = [];
  for (const multiple of multiples) {
    for (const target of targets) {
      const server = servers.get(target)!;
      const capacity = capacities.get(target)!;
      const idleBefore = await waitForIdle();
      const rssBeforeBytes = rssBytes(server.pid);
      const sampler = new RssSampler(server.pid);
      const cpuAtStart = readCpu(server);
      try {
        const load = await startOpenLoop(
          {
            origin: server.origin,
            path,
            headers: body.headers,
            body: body.body,
            checkKind: target === 'floor' ? 'floor' : 'infer',
            outputs,
            encoding,
            ratePerSecond: multiple * capacities.get(options.capacityFrom ?? target)!.requestsPerSecond,
            warmupSeconds: options.warmup,
            durationSeconds: options.duration,
            clientTimeoutSeconds: options.clientTimeout,
            connections: options.openLoopConnections,
            openPath: '/v2/health/ready',
            verifyEvery: options.verifyEvery,
            seed: multiple * 100,
          },
          options.generatorThreads,
        );
        const loadStopMs = (await load.stopped) - performance.timeOrigin;
        const cpuAtStop = readCpu(server);
        const loadStartMs = load.startEpochMs - performance.timeOrigin;
        const [result, recovery] = await Promise.all([
          load.result,
          probeRecovery(probeOf(server), {
            loadStopMs,
            thresholdMs: recoveryThresholdMs(capacity.unloadedP50Ms),
            everyMs: RECOVERY_PROBE_EVERY_MS,
            limitSeconds: RECOVERY_LIMIT_SECONDS,
          }),
          sleep(loadStopMs + RSS_AFTER_MS + 200 - performance.now()),
        ]);
        const cell: GoodputCell = {
          target,
          multiple,
          capacityPerSecond: capacity.requestsPerSecond,
          result,
          goodputOverCapacity: result.goodputPerSecond / capacity.requestsPerSecond,
          sentShare: result.scheduled > 0 ? result.sentInWindow / result.scheduled : 1,
          // A request or two cut by the window's edges is not falling behind, at a low rate.
          generatorBehind:
            (result.sentInWindow < KEPT_UP * result.scheduled && result.scheduled - result.sentInWindow >= 3) || result.generatorBusy > GENERATOR_SATURATED,
          rssBeforeBytes,
          rssPeakBytes: sampler.peak(loadStartMs, loadStopMs),
          rssAfterBytes: sampler.at(loadStopMs + RSS_AFTER_MS),
          recovery,
          idleBefore,
          serverCpu: serverCpuBetween(cpuAtStart, cpuAtStop, result.goodputPerSecond),
        };
        cells.push(cell);
        console.log(cellLine(cell));
        for (const sample of result.errorSamples) console.log(`    sample: ${sample}`);
        for (const failure of result.verifyFailures) console.log(`    WRONG RESPONSE: ${failure}`);
      } finally {
        sampler.stop();
      }
    }
  }

  // --- report ---------------------------------------------------------------------------------
  const source = sourceState();
  const before = options.nereidBefore ? { checkout: options.nereidBefore, ...sourceState(options.nereidBefore) } : undefined;
  const m = machine();
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`;
  const markdown = [
    `# Goodput: ${modelName} — ${context.started.toISOString()}`,
    '',
    `\`${command}\``,
    '',
    `Machine: ${m.cores} cores, ${m.cpuModel}, ${m.memoryGiB} GiB; node ${m.node}; onnxruntime-node ${m.onnxruntimeNode}; undici ${m.undici}; load average at start ${(m.loadAverageAtStart as number[]).join(' ')}.`,
    `Source: ${describeSource(source)}.`,
    ...(before ? [`Before (target 'before'): ${before.checkout}, ${describeSource(before)}; the same repository and flags as nereid.`] : []),
    context.modelLine,
    options.serverArgs.length ? `Extra Nereid flags: \`${options.serverArgs.join(' ')}\`.` : 'Nereid with its default flags.',
    '',
    `Capacity: closed loop, ${concurrency} clients each with one request in flight, ${options.warmup} s unmeasured + ${options.duration} s measured. ` +
      `Unloaded p50: ${UNLOADED_REQUESTS} requests one at a time to the idle server.`,
    '',
    capacityTable([...capacities.values()]),
    '',
    `Each row: Poisson arrivals at × ${offeredBase}${options.capacityFrom ? ' (every target offered the same rates)' : ''} for ${options.warmup} s unmeasured + ${options.duration} s measured (${encoding} bodies of ${body.body.length} bytes, ` +
      `${options.openLoopConnections} keep-alive connections opened beforehand, ${options.generatorThreads} generator thread(s)); ` +
      `each request is sent at its time whatever earlier ones met, its latency runs from that time, and it is given up ${options.clientTimeout} s after it (a client timeout).`,
    '',
    goodputTable(cells, options.openLoopConnections),
    '',
    `offered: the rate asked for; achieved: requests the generator sent while the measured window ran ÷ its seconds (**GENERATOR BEHIND**: it sent fewer than ${KEPT_UP * 100}% of the requests the window's schedule held, or a generator thread's event loop was more than ${GENERATOR_SATURATED * 100}% busy, so answers waited to be read: the row measures the generator as much as the server; more --generator-threads may help where cores are free). ` +
      'goodput: 200 answers received during the window ÷ its seconds; ÷ capacity: goodput ÷ that target\'s closed-loop capacity. ' +
      'success and refusal latencies: from the scheduled arrival, over the requests scheduled in the window. refused: non-200 answers by status; Retry-After: how many carried one (values seen). ' +
      'client queue max: most arrivals waiting in the generator for a free connection at once (then the server saw fewer requests at once than were outstanding). ' +
      `RSS: the server child's VmRSS just before the load, its peak while the load was sent (read every 100 ms), and ${RSS_AFTER_MS / 1000} s after the last request was sent. ` +
      `recovery: seconds from the last request sent until a probe (one request at a time on a connection of its own, one every ${RECOVERY_PROBE_EVERY_MS} ms) ` +
      `was answered 200 within max(2 × unloaded p50, unloaded p50 + 5 ms) (the capacity table's last column); >${RECOVERY_LIMIT_SECONDS} s: none was. ` +
      `Before each row the benchmark waits (up to ${IDLE_WAIT_SECONDS} s) until every server uses < 5% of a core. ` +
      'server CPU: cores the server process used while the load was sent (warm-up included), its main thread (the event loop: HTTP, decoding, ' +
      'refusals, answers) and its other threads (ONNX Runtime, libuv, GC helpers); ms per success: all of it ÷ the answers per second.',
    '',
  ].join('\n');
  console.log(`\n${markdown}`);
  const base = await resultPath(resolve(options.outDir), `${modelName}-goodput`);
  const report = {
    meta: { model: modelName, date: context.started.toISOString(), command, machine: m, source, before, options: { ...options, inputShapes: Object.fromEntries(options.inputShapes) } },
    capacities: [...capacities.values()],
    cells,
  };
  await writeFile(`${base}.json`, JSON.stringify(report, null, 2));
  await writeFile(`${base}.md`, markdown);
  console.log(`wrote ${base}.json and ${base}.md`);
}
