/**
 * `npm run bench -- --core-cost`: what the core costs per request without any transport. The tiny `simple` model is
 * served in this process (createServer, no front end) and `server.infer` is called by --concurrency callers in a
 * closed loop, each request built as a front end's decoder would hand it over (typed arrays); reported per concurrency
 * are the process's CPU microseconds per request (user + system, every thread, so ONNX Runtime's included) and the wall
 * microseconds per request, medians over --rounds, and the mean batch the batcher formed. Set beside the HTTP cells of
 * `npm run bench -- --model simple`, it says how much of a request's cost is the core and how much the transport.
 * A benchmark: it judges nothing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { stringify as stringifyYaml } from 'yaml';
import { createServer } from '../src/server/create-server.js';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { ClientCancellation, type InferenceRequest } from '../src/core/inference.js';
import { SIMPLE_BENCH_CONFIG } from './model-setup.js';
import { numberOption } from './options.js';
import { finiteMedian } from './rounds.js';
import { describeSource, sourceState } from './environment.js';
import { markdownTable } from './report.js';

export const CORE_COST_HELP = `Usage: npm run bench -- --core-cost [options]

Calls server.infer in this process (no HTTP, no gRPC) on the tiny 'simple' model (add/sub INT32 [1,16],
max_batch_size 64, dynamic batching) from --concurrency callers in a closed loop, and prints the CPU and wall
microseconds per request: the core's cost alone, to set beside the HTTP cells of --model simple. Each request
carries a cancel signal, as the HTTP and gRPC front ends' requests do.

Options:
  --concurrency LIST   callers in flight, comma-separated                         [1,64]
  --requests N         requests per round                                         [50000]
  --rounds N           rounds per concurrency (after one unmeasured); medians     [7]
  -h, --help           this help
`;

export interface CoreCostOptions {
  concurrency: number[];
  requests: number;
  rounds: number;
}

export function parseCoreCostOptions(argv: string[]): CoreCostOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      concurrency: { type: 'string', default: '1,64' },
      requests: { type: 'string', default: '50000' },
      rounds: { type: 'string', default: '7' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  return {
    concurrency: values.concurrency.split(',').map((value) => numberOption('concurrency', value.trim(), { integer: true })),
    requests: numberOption('requests', values.requests, { integer: true }),
    rounds: numberOption('rounds', values.rounds, { integer: true }),
  };
}

function simpleRequest(): InferenceRequest {
  return {
    model: 'simple',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Int32Array.from({ length: 16 }, (_, index) => index) },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: new Int32Array(16).fill(1) },
    ],
  };
}

export async function runCoreCost(options: CoreCostOptions): Promise<void> {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-core-cost-'));
  try {
    await writeModel(repository, 'simple', 1, addSubModel(), undefined, { 'config.yaml': stringifyYaml(SIMPLE_BENCH_CONFIG) });
    const server = await createServer({ modelRepository: repository, logger: pino({ level: 'silent' }) });
    await server.start();
    try {
      const round = async (total: number, concurrency: number) => {
        let sent = 0;
        const caller = async () => {
          while (sent < total) {
            sent += 1;
            // As the HTTP and gRPC front ends call it: with the client's cancel signal.
            await server.infer(simpleRequest(), { signal: new ClientCancellation() });
          }
        };
        const cpu = process.cpuUsage();
        const started = performance.now();
        await Promise.all(Array.from({ length: concurrency }, caller));
        const used = process.cpuUsage(cpu);
        return { cpuUs: (used.user + used.system) / total, wallUs: ((performance.now() - started) * 1000) / total };
      };
      const rows: string[][] = [];
      for (const concurrency of options.concurrency) {
        await round(Math.min(options.requests, 20_000), concurrency);
        const before = (await server.modelStatistics('simple')).model_stats[0]!;
        const measured = [];
        for (let index = 0; index < options.rounds; index++) measured.push(await round(options.requests, concurrency));
        const after = (await server.modelStatistics('simple')).model_stats[0]!;
        const meanBatch = (after.inference_count - before.inference_count) / Math.max(1, after.execution_count - before.execution_count);
        const cpu = measured.map((each) => each.cpuUs);
        rows.push([String(concurrency), finiteMedian(cpu).toFixed(2), Math.min(...cpu).toFixed(2), finiteMedian(measured.map((each) => each.wallUs)).toFixed(2), meanBatch.toFixed(2)]);
      }
      console.log(`npm run bench -- --core-cost --concurrency ${options.concurrency.join(',')} --requests ${options.requests} --rounds ${options.rounds}`);
      console.log(`${new Date().toISOString()}; ${describeSource(sourceState())}\n`);
      console.log(markdownTable(['concurrency', 'CPU µs/request (median)', 'CPU µs/request (min)', 'wall µs/request (median)', 'mean batch'], rows));
    } finally {
      await server.close();
    }
  } finally {
    await rm(repository, { recursive: true, force: true });
  }
}
