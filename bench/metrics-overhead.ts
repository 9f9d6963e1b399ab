/**
 * What Prometheus metrics cost a request: two `nereid serve` child processes on the tiny add/sub
 * model, one with metrics (--allow-metrics true, scraped every second, with --cost-per-core-hour) and
 * one without (--allow-metrics false), driven in turn (on, off, on, off, ...) by a closed loop of
 * undici requests at a fixed concurrency. Prints requests/s and p50/p99 latency per round, the
 * medians, and the median of the on/off ratios of each back-to-back pair of rounds (which cancels
 * slow drifts of a shared machine), and the server's own CPU time per request (from /proc, which
 * other load on the machine disturbs much less than throughput). Last, the recording cost itself: the metrics observer's work
 * per request, timed in process without a server. The rounds and their figures: bench/on-off-rounds.ts.
 *
 *   node --import tsx bench/metrics-overhead.ts [--seconds 3] [--rounds 6] [--concurrency 16] [--warmup 2]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import type { RequestRecord } from '../src/core/inference-observer.js';
import { PrometheusMetrics } from '../src/observability/index.js';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, nereidServeSpec, startChild } from './child-process.js';
import { ROOT } from './environment.js';
import { environmentLine, interleavedRounds, onOffTable, summariseOnOff, type OnOffServer } from './on-off-rounds.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '6' },
    concurrency: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '2' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log('node --import tsx bench/metrics-overhead.ts [--seconds 3] [--rounds 6] [--concurrency 16] [--warmup 2]');
  process.exit(0);
}
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const CONCURRENCY = Number(args.concurrency);
const WARMUP_SECONDS = Number(args.warmup);

const CONFIG = `
max_batch_size: 8
dynamic_batching { }
`;

async function start(side: OnOffServer['side'], repo: string): Promise<OnOffServer> {
  const on = side === 'on';
  const metricsPort = await freePort();
  const child = await startChild({
    name: `metrics-${side}`,
    ...nereidServeSpec(repo, 'add_sub', { metricsPort, extraArgs: ['--allow-metrics', String(on), ...(on ? ['--cost-per-core-hour', '0.05'] : [])] }),
    cwd: ROOT,
    logDir: repo,
  });
  // Scrape as Prometheus would, more often than its default 15 s, so scraping is part of the cost.
  const scrape = () => void request(`http://127.0.0.1:${metricsPort}/metrics`).then((answer) => answer.body.text()).catch(() => undefined);
  const alongside = () => {
    const scraper = setInterval(scrape, 1000);
    return () => clearInterval(scraper);
  };
  return { side, label: `metrics ${side}`, child, alongside: on ? alongside : undefined };
}

const BODY = JSON.stringify({
  inputs: [
    { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array.from({ length: 16 }, (_, index) => index) },
    { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
  ],
});
const REQUEST = { path: '/v2/models/add_sub/infer', headers: { 'content-type': 'application/json' }, body: BODY };

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
const servers: OnOffServer[] = [];
try {
  await writeModel(repo, 'add_sub', 1, addSubModel(), CONFIG);
  servers.push(await start('on', repo), await start('off', repo));
  const run = await interleavedRounds([servers[0], servers[1]], { rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, concurrency: CONCURRENCY }, () => REQUEST);
  console.log(`\nadd_sub INT32 [1,16] over HTTP/JSON, concurrency ${CONCURRENCY}, ${ROUNDS} rounds of ${SECONDS} s each, interleaved; medians of rounds`);
  console.log(`${environmentLine()}\n`);
  console.log(onOffTable(summariseOnOff(run), { on: 'metrics on', off: 'metrics off' }));
  console.log(`metrics recording per request (observer, in process): ${recordingCostNs().toFixed(0)} ns`);
} finally {
  await Promise.all(servers.map((served) => served.child.stop()));
  await rm(repo, { recursive: true, force: true });
}
