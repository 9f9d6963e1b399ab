/**
 * What Prometheus metrics cost a request: two `nereid serve` child processes on the tiny add/sub
 * model, one with metrics (--allow-metrics true, scraped every second, with --cost-per-core-hour) and
 * one without (--allow-metrics false), driven in turn (on, off, on, off, ...) by a closed loop of
 * undici requests at a fixed concurrency. Prints requests/s and p50/p99 latency per round, the
 * medians, and the median of the on/off ratios of each back-to-back pair of rounds (which cancels
 * slow drifts of a shared machine), and the server's own CPU time per request (from /proc, which
 * other load on the machine disturbs much less than throughput). Last, the recording cost itself: the metrics observer's work
 * per request, timed in process without a server.
 *
 *   node --import tsx bench/metrics-overhead.ts [--seconds 3] [--rounds 6] [--concurrency 16] [--warmup 2]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool, request } from 'undici';
import type { RequestRecord } from '../src/core/inference-observer.js';
import { PrometheusMetrics } from '../src/observability/index.js';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '6' },
    concurrency: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '2' },
  },
});
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const CONCURRENCY = Number(args.concurrency);
const WARMUP_SECONDS = Number(args.warmup);

const CONFIG = `
max_batch_size: 8
dynamic_batching { }
`;

interface Served {
  name: 'metrics on' | 'metrics off';
  child: ChildProcess;
  origin: string;
  metricsUrl?: string;
}

async function start(name: Served['name'], repo: string): Promise<Served> {
  const on = name === 'metrics on';
  const flags = ['--http-port', '0', '--grpc-port', '0', '--allow-metrics', String(on), '--metrics-port', '0'];
  if (on) flags.push('--cost-per-core-hour', '0.05');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--model-repository', repo, ...flags], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr!.on('data', (chunk) => (output += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready in 30 s\n${output}`)), 30_000);
    child.once('exit', (code) => reject(new Error(`${name}: exited with ${code}\n${output}`)));
    child.stdout!.on('data', (chunk) => {
      output += chunk;
      if (!output.includes('server ready')) return;
      clearTimeout(timer);
      const http = /HTTP \(KServe V2\) listening on (http:\/\/[^"\s]+)/.exec(output)?.[1];
      const metrics = /Prometheus metrics on (http:\/\/[^"\s]+)/.exec(output)?.[1];
      if (!http) return reject(new Error(`${name}: no HTTP address in\n${output}`));
      resolve({ name, child, origin: http, metricsUrl: metrics });
    });
  });
}

async function stop(served: Served): Promise<void> {
  if (served.child.exitCode !== null) return;
  const exited = new Promise((resolve) => served.child.once('exit', resolve));
  served.child.kill('SIGTERM');
  await exited;
}

const BODY = JSON.stringify({
  inputs: [
    { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array.from({ length: 16 }, (_, index) => index) },
    { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
  ],
});

/** User + system CPU seconds of a process so far (Linux /proc); undefined elsewhere. */
function cpuSeconds(pid: number | undefined): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return undefined;
  }
}

interface Round {
  name: Served['name'];
  requests: number;
  /** Server CPU microseconds per request. */
  cpuUs?: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: Float64Array, fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

/** A closed loop: CONCURRENCY clients, each sending its next request when the last is answered. */
async function drive(served: Served, seconds: number): Promise<Round> {
  const pool = new Pool(served.origin, { connections: CONCURRENCY, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const cpuBefore = cpuSeconds(served.child.pid);
  const started = performance.now();
  const deadline = started + seconds * 1000;
  // Scrape as Prometheus would, more often than its default 15 s, so scraping is part of the cost.
  const scraper = served.metricsUrl
    ? setInterval(() => void request(served.metricsUrl!).then((answer) => answer.body.text()).catch(() => undefined), 1000)
    : undefined;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const sent = performance.now();
        const answer = await pool.request({
          path: '/v2/models/add_sub/infer',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: BODY,
        });
        await answer.body.text();
        if (answer.statusCode !== 200) errors += 1;
        latencies.push(performance.now() - sent);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpuAfter = cpuSeconds(served.child.pid);
  if (scraper) clearInterval(scraper);
  await pool.close();
  const sorted = Float64Array.from(latencies).sort();
  return {
    name: served.name,
    requests: latencies.length,
    cpuUs: cpuBefore === undefined || cpuAfter === undefined ? undefined : ((cpuAfter - cpuBefore) * 1e6) / latencies.length,
    errors,
    rps: latencies.length / elapsed,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/** Nanoseconds the metrics observer spends on one request and its execution (one row, batch of 1). */
function recordingCostNs(): number {
  const observer = new PrometheusMetrics({ usdPerCoreHour: 0.05, processMetrics: false }).observer('add_sub', '1');
  const record: RequestRecord = {
    rows: 1,
    success: true,
    totalNs: 180_000,
    startedAt: Date.now(),
    timings: { queueNs: 20_000, computeInputNs: 5_000, computeInferNs: 60_000, computeOutputNs: 5_000, postprocessNs: 2_000 },
  };
  const execution = { batchSize: 1, threads: 2, timings: { computeInputNs: 5_000, computeInferNs: 60_000, computeOutputNs: 5_000 } };
  const once = () => {
    observer.onRequestStart?.();
    observer.onExecution(execution);
    observer.onRequestEnd(record);
  };
  for (let i = 0; i < 200_000; i++) once();
  const count = 2_000_000;
  const started = performance.now();
  for (let i = 0; i < count; i++) once();
  return ((performance.now() - started) * 1e6) / count;
}

const repo = await mkdtemp(join(tmpdir(), 'nereid-metrics-overhead-'));
const servers: Served[] = [];
try {
  await writeModel(repo, 'add_sub', 1, addSubModel(), CONFIG);
  servers.push(await start('metrics on', repo), await start('metrics off', repo));
  for (const served of servers) await drive(served, WARMUP_SECONDS);
  const rounds: Round[] = [];
  const pairRatios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const pair: Round[] = [];
    for (const served of round % 2 === 0 ? servers : [...servers].reverse()) {
      const result = await drive(served, SECONDS);
      rounds.push(result);
      pair.push(result);
      console.error(
        `${result.name.padEnd(11)} ${result.rps.toFixed(0).padStart(6)} req/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  server CPU ${result.cpuUs?.toFixed(1) ?? 'n/a'} us/req${result.errors ? `  ${result.errors} errors` : ''}`,
      );
    }
    const [on, off] = ['metrics on', 'metrics off'].map((name) => pair.find((result) => result.name === name)!);
    pairRatios.push(on.rps / off.rps);
  }
  const summary = (name: Served['name']) => {
    const mine = rounds.filter((round) => round.name === name);
    return {
      rps: median(mine.map((r) => r.rps)),
      p50: median(mine.map((r) => r.p50Ms)),
      p99: median(mine.map((r) => r.p99Ms)),
      cpuUs: mine.every((r) => r.cpuUs !== undefined) ? median(mine.map((r) => r.cpuUs!)) : NaN,
    };
  };
  const on = summary('metrics on');
  const off = summary('metrics off');
  console.log(`\nadd_sub INT32 [1,16] over HTTP/JSON, concurrency ${CONCURRENCY}, ${ROUNDS} rounds of ${SECONDS} s each, interleaved; medians of rounds`);
  console.log(`${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}\n`);
  console.log('| server | requests/s | p50 ms | p99 ms | server CPU µs/request |');
  console.log('|---|---:|---:|---:|---:|');
  for (const [name, row] of [['metrics on', on], ['metrics off', off]] as const) {
    console.log(`| ${name} | ${row.rps.toFixed(0)} | ${row.p50.toFixed(2)} | ${row.p99.toFixed(2)} | ${row.cpuUs.toFixed(1)} |`);
  }
  console.log(
    `| on / off | ${(on.rps / off.rps).toFixed(3)} | ${(on.p50 / off.p50).toFixed(3)} | ${(on.p99 / off.p99).toFixed(3)} | ${(on.cpuUs / off.cpuUs).toFixed(3)} |`,
  );
  const sortedRatios = [...pairRatios].sort((a, b) => a - b);
  console.log(
    `\nrequests/s on/off per back-to-back pair: median ${median(pairRatios).toFixed(3)} (min ${sortedRatios[0].toFixed(3)}, max ${sortedRatios.at(-1)!.toFixed(3)})`,
  );
  console.log(`metrics recording per request (observer, in process): ${recordingCostNs().toFixed(0)} ns`);
} finally {
  await Promise.all(servers.map(stop));
  await rm(repo, { recursive: true, force: true });
}
