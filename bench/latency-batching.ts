/**
 * `npm run bench -- --latency-batching`: latency-aware batching (dynamic_batching.target_latency_us)
 * against fixed max_queue_delay values, at equal offered load. One `nereid serve` child per batching
 * config, each on the same generated model where batching pays (src/onnx/test-models.ts
 * matMulChainModel: FP32 [batch, 512] through --layers 512×512 MatMuls, one worker-thread instance),
 * all started first, then driven in turn by the open-loop generator (bench/open-loop.ts) with the
 * same seeded arrivals for each config:
 *   steady  Poisson arrivals at --steady × the capacity measured closed-loop (fixed delay 0, c=16);
 *   bursty  the same mean rate, on for --on-ms, off for --off-ms (Poisson while on);
 *   low     Poisson at --low-rate requests/s: arrivals far apart compared with a batch.
 * Rounds are interleaved (every config once per traffic per round, the order rotating), so the slow
 * drifts of a shared machine fall on all of them alike; the table gives medians over rounds of
 * goodput, p50, p99 (from the scheduled arrival) and the mean batch size (the server's own
 * statistics). Writes <out>/latency-batching-<date>.{json,md}. A benchmark: it judges nothing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { matMulChainModel, writeModel } from '../src/onnx/test-models.js';
import { inferenceCounts, nereidServeSpec, startChild, type ChildServer } from './child-process.js';
import { numberOption, ROUNDS_BENCH_OPTIONS } from './options.js';
import { finiteMedian } from './rounds.js';
import { describeSource, machine, resultPath, ROOT, sourceState } from './environment.js';
import { runLoad } from './load-generator.js';
import { combineOpenLoop, prepareOpenLoop, type OnOff, type OpenLoopResult } from './open-loop.js';
import { markdownTable } from './report.js';
import { inferResponseCheck } from './workload.js';

const WIDTH = 512;
const MAX_BATCH_SIZE = 8;
const TRAFFIC = ['steady', 'bursty', 'low'] as const;
type Traffic = (typeof TRAFFIC)[number];

export const LATENCY_BATCHING_HELP = `Usage: npm run bench -- --latency-batching [options]

Serves a generated model where batching pays (FP32 [batch, ${WIDTH}] through --layers MatMuls, max_batch_size
${MAX_BATCH_SIZE}, one worker-thread instance) once per batching config: fixed max_queue_delay_microseconds of
each --delays value, and target_latency_us of each --targets value (max_queue_delay --target-hold-bound).
Measures the closed-loop capacity (fixed delay 0, 16 clients), then offers each config the same seeded
open-loop arrivals: steady Poisson, bursty on-off at the same mean, and low traffic; rounds interleaved.

Options:
  --delays LIST        fixed max_queue_delay_microseconds to compare                    [0,500,2000]
  --targets LIST       target_latency_us values to compare                                  [10000]
  --target-hold-bound US  max_queue_delay_microseconds of the latency-aware configs: the longest
                       they may hold (0: no bound beyond the target and the batch's run time)   [0]
  --layers N           MatMuls in the model (cost per row grows with it)                      [384]
  --steady FRACTION    steady and bursty mean rate, as a share of the measured capacity       [0.6]
                       (bursty arrives at (on+off)/on times that while on: 1.8x capacity by default,
                       where every batching drains the same backlog; 0.3 keeps bursts within capacity)
  --rate RPS           steady and bursty mean rate in requests/s instead (a shared machine's capacity
                       moves from minute to minute; a fixed rate keeps the load equal across runs)
  --on-ms MS           bursty: arrivals during MS of every on+off                             [100]
  --off-ms MS          bursty: silence between bursts                                          [200]
  --low-rate RPS       low traffic: requests per second                                        [10]
  --duration SECONDS   measured seconds per cell                                                 [4]
  --warmup SECONDS     unmeasured seconds of the same traffic before each cell                   [1]
  --rounds N           interleaved rounds; the table gives medians                               [3]
  --out DIR            where latency-batching-<date>.{json,md} go                      [bench/results]
  -h, --help           this help
`;

export interface LatencyBatchingOptions {
  delaysUs: number[];
  targetsUs: number[];
  /** max_queue_delay_microseconds of the latency-aware configs: the longest they may hold (0: no bound beyond the target). */
  targetHoldBoundUs: number;
  layers: number;
  steadyShare: number;
  /** Steady and bursty mean rate, requests/s; absent: steadyShare × the measured capacity. */
  rate?: number;
  onOff: OnOff;
  lowRate: number;
  duration: number;
  warmup: number;
  rounds: number;
  outDir: string;
}

export function parseLatencyBatchingOptions(argv: string[]): LatencyBatchingOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      delays: { type: 'string', default: '0,500,2000' },
      targets: { type: 'string', default: '10000' },
      'target-hold-bound': { type: 'string', default: '0' },
      layers: { type: 'string', default: '384' },
      steady: { type: 'string', default: '0.6' },
      rate: { type: 'string' },
      'on-ms': { type: 'string', default: '100' },
      'off-ms': { type: 'string', default: '200' },
      'low-rate': { type: 'string', default: '10' },
      ...ROUNDS_BENCH_OPTIONS,
    },
  });
  if (values.help) return 'help';
  const list = (name: string, text: string) => text.split(',').map((item) => numberOption(name, item.trim(), { integer: true, zero: true }));
  return {
    delaysUs: list('delays', values.delays),
    targetsUs: list('targets', values.targets).filter((target) => target > 0),
    targetHoldBoundUs: numberOption('target-hold-bound', values['target-hold-bound'], { integer: true, zero: true }),
    layers: numberOption('layers', values.layers, { integer: true }),
    steadyShare: numberOption('steady', values.steady),
    rate: values.rate === undefined ? undefined : numberOption('rate', values.rate),
    onOff: { onMs: numberOption('on-ms', values['on-ms']), offMs: numberOption('off-ms', values['off-ms'], { zero: true }) },
    lowRate: numberOption('low-rate', values['low-rate']),
    duration: numberOption('duration', values.duration),
    warmup: numberOption('warmup', values.warmup, { zero: true }),
    rounds: numberOption('rounds', values.rounds, { integer: true }),
    outDir: values.out,
  };
}

interface BatchingConfig {
  /** The model's name in the repository, and the config's in the table. */
  model: string;
  label: string;
  dynamicBatching: string;
}

function configsOf(options: LatencyBatchingOptions): BatchingConfig[] {
  return [
    ...options.delaysUs.map((delay) => ({
      model: `fixed_${delay}`,
      label: `fixed delay ${delay} µs`,
      dynamicBatching: `max_queue_delay_microseconds: ${delay}`,
    })),
    ...options.targetsUs.map((target) => ({
      model: `target_${target}`,
      label: `latency-aware, target ${target} µs${options.targetHoldBoundUs ? `, hold ≤ ${options.targetHoldBoundUs} µs` : ''}`,
      dynamicBatching: `target_latency_us: ${target}${options.targetHoldBoundUs ? ` max_queue_delay_microseconds: ${options.targetHoldBoundUs}` : ''}`,
    })),
  ];
}

const modelConfig = (config: BatchingConfig) => `max_batch_size: ${MAX_BATCH_SIZE}
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "execution_thread" value: { string_value: "worker" } }
dynamic_batching { ${config.dynamicBatching} }
`;



/**
 * How hard the bursts press on the server: their rate while on, as a share of the capacity, and where
 * that share is above 1 the queue a burst leaves behind — the same for any batching, since while a
 * backlog lasts every config runs the batches its cost model picks back to back.
 */
function burstLoad(meanRate: number, capacity: number, onOff: OnOff): string {
  const burstRate = (meanRate * (onOff.onMs + onOff.offMs)) / onOff.onMs;
  const share = burstRate / capacity;
  const described = `${burstRate.toFixed(0)} req/s while on, ${share.toFixed(2)} × capacity`;
  if (share <= 1) return described;
  return `${described}: each burst leaves ~${((share - 1) * onOff.onMs).toFixed(0)} ms of work queued past its end whatever the batching, which the bursty p99 includes`;
}

interface Cell {
  traffic: Traffic;
  config: string;
  round: number;
  offeredPerSecond: number;
  result: OpenLoopResult;
  /** Rows per execution over the cell, warm-up included (the server's statistics). */
  meanBatch: number;
}


export async function runLatencyBatching(options: LatencyBatchingOptions): Promise<void> {
  const started = new Date();
  const configs = configsOf(options);
  const scratch = await mkdtemp(join(tmpdir(), 'nereid-latency-batching-'));
  const servers = new Map<string, ChildServer>();
  try {
    const repository = join(scratch, 'repository');
    const model = matMulChainModel({ width: WIDTH, layers: options.layers });
    for (const config of configs) await writeModel(repository, config.model, 1, model, modelConfig(config));
    for (const config of configs) {
      servers.set(config.model, await startChild({ name: config.model, cwd: ROOT, logDir: scratch, ...nereidServeSpec(repository, config.model) }));
    }
    const body = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: Array.from({ length: WIDTH }, (_, index) => (index % 13) / 13) }] }));
    const headers = { 'content-type': 'application/json' };
    const check = inferResponseCheck([{ name: 'y', ortType: 'float32', shape: [1, 4] }], 'json');
    const pathOf = (config: BatchingConfig) => `/v2/models/${config.model}/infer`;

    const first = configs[0];
    const capacity = await runLoad({
      origin: servers.get(first.model)!.origin,
      path: pathOf(first),
      headers,
      body,
      check,
      concurrency: 16,
      warmupSeconds: 1,
      durationSeconds: 3,
      verifyEvery: 100,
    });
    const steadyRate = options.rate ?? options.steadyShare * capacity.requestsPerSecond;
    console.log(
      `capacity (${first.label}, 16 clients closed-loop): ${capacity.requestsPerSecond.toFixed(0)} req/s, p50 ${capacity.latency.p50.toFixed(1)} ms; ` +
        `offering steady and bursty ${steadyRate.toFixed(0)} req/s, low ${options.lowRate} req/s`,
    );
    const rateOf = (traffic: Traffic) => (traffic === 'low' ? options.lowRate : steadyRate);

    const cells: Cell[] = [];
    for (let round = 0; round < options.rounds; round++) {
      for (const traffic of TRAFFIC) {
        // Each config in turn, starting one further along each round.
        const order = configs.map((_, index) => configs[(index + round) % configs.length]);
        for (const config of order) {
          const server = servers.get(config.model)!;
          const before = await inferenceCounts(server.origin, config.model);
          const loop = await prepareOpenLoop({
            origin: server.origin,
            path: pathOf(config),
            headers,
            body,
            check,
            ratePerSecond: rateOf(traffic),
            warmupSeconds: options.warmup,
            durationSeconds: options.duration,
            clientTimeoutSeconds: 10,
            connections: 128,
            openPath: '/v2/health/ready',
            verifyEvery: 100,
            seed: round * 10 + TRAFFIC.indexOf(traffic) + 1,
            onOff: traffic === 'bursty' ? options.onOff : undefined,
          });
          const part = await loop.run(performance.timeOrigin + performance.now() + 20, () => {});
          const result = combineOpenLoop([part], rateOf(traffic), options.duration);
          const after = await inferenceCounts(server.origin, config.model);
          const executions = after.executions - before.executions;
          const cell: Cell = {
            traffic,
            config: config.label,
            round,
            offeredPerSecond: rateOf(traffic),
            result,
            meanBatch: executions > 0 ? (after.inferences - before.inferences) / executions : NaN,
          };
          cells.push(cell);
          const failed = result.clientTimeouts + result.connectionErrors + Object.values(result.refusalsByStatus).reduce((sum, count) => sum + count, 0);
          console.log(
            `round ${round + 1} ${traffic.padEnd(6)} ${config.label.padEnd(32)} ${result.goodputPerSecond.toFixed(0).padStart(5)} req/s  ` +
              `p50 ${result.successLatency.p50.toFixed(2).padStart(7)} ms  p99 ${result.successLatency.p99.toFixed(2).padStart(7)} ms  ` +
              `batch ${cell.meanBatch.toFixed(2)}${failed ? `  ${failed} failed` : ''}${result.verifyFailed ? `  ${result.verifyFailed} WRONG` : ''}`,
          );
        }
      }
    }

    // Each config's p99 over the latency-aware one's in the same round (the first target's): pairs cancel the slow drifts of a shared machine.
    const reference = configs.find((config) => config.model.startsWith('target_'));
    const pairedP99 = (traffic: Traffic, config: BatchingConfig) => {
      if (!reference) return NaN;
      const ratios: number[] = [];
      for (let round = 0; round < options.rounds; round++) {
        const at = (label: string) => cells.find((cell) => cell.traffic === traffic && cell.round === round && cell.config === label);
        const mine = at(config.label);
        const theirs = at(reference.label);
        if (mine && theirs) ratios.push(mine.result.successLatency.p99 / theirs.result.successLatency.p99);
      }
      return finiteMedian(ratios);
    };
    const rows = TRAFFIC.flatMap((traffic) =>
      configs.map((config) => {
        const mine = cells.filter((cell) => cell.traffic === traffic && cell.config === config.label);
        const failed = mine.reduce(
          (sum, cell) => sum + cell.result.clientTimeouts + cell.result.connectionErrors + Object.values(cell.result.refusalsByStatus).reduce((a, b) => a + b, 0),
          0,
        );
        return [
          traffic,
          config.label,
          rateOf(traffic).toFixed(0),
          finiteMedian(mine.map((cell) => cell.result.goodputPerSecond)).toFixed(0),
          finiteMedian(mine.map((cell) => cell.result.successLatency.p50)).toFixed(2),
          finiteMedian(mine.map((cell) => cell.result.successLatency.p99)).toFixed(2),
          pairedP99(traffic, config).toFixed(2),
          finiteMedian(mine.map((cell) => cell.meanBatch)).toFixed(2),
          String(failed),
        ];
      }),
    );
    const table = markdownTable(
      ['traffic', 'batching', 'offered req/s', 'answered req/s', 'p50 ms', 'p99 ms', 'p99 ÷ latency-aware (paired)', 'mean batch', 'failed'],
      rows,
      [false, false, true, true, true, true, true, true, true],
    );
    const source = sourceState();
    const m = machine();
    const markdown = [
      `# Latency-aware batching — ${started.toISOString()}`,
      '',
      `\`npm run bench -- ${process.argv.slice(2).join(' ')}\``,
      '',
      `Machine: ${m.cores} cores, ${m.cpuModel}; node ${m.node}; onnxruntime-node ${m.onnxruntimeNode}; load average at start ${(m.loadAverageAtStart as number[]).join(' ')}.`,
      `Source: ${describeSource(source)}.`,
      `Model: FP32 [batch, ${WIDTH}] through ${options.layers} MatMuls, max_batch_size ${MAX_BATCH_SIZE}, one worker-thread instance. ` +
        `Capacity (${configs[0].label}, 16 clients closed-loop): ${capacity.requestsPerSecond.toFixed(0)} req/s.`,
      `Traffic: steady Poisson at ${steadyRate.toFixed(0)} req/s${options.rate ? '' : ` (${options.steadyShare} × capacity)`}; bursty at the same mean, on ${options.onOff.onMs} ms / off ${options.onOff.offMs} ms (${burstLoad(steadyRate, capacity.requestsPerSecond, options.onOff)}); low ${options.lowRate} req/s. ` +
        `${options.rounds} interleaved rounds of ${options.warmup} s + ${options.duration} s per cell; medians over rounds; latency from the scheduled arrival; ` +
        `'p99 ÷ latency-aware': the median over rounds of each config's p99 over the latency-aware config's in the same round.`,
      '',
      table,
      '',
    ].join('\n');
    console.log(`\n${markdown}`);
    const base = await resultPath(options.outDir, 'latency-batching');
    await writeFile(`${base}.md`, markdown);
    await writeFile(`${base}.json`, JSON.stringify({ started, options, machine: m, source, capacityPerSecond: capacity.requestsPerSecond, cells }, null, 2));
    console.log(`wrote ${base}.md and .json`);
  } finally {
    await Promise.all([...servers.values()].map((server) => server.stop()));
    await rm(scratch, { recursive: true, force: true });
  }
}
