/**
 * `npm run bench -- --padding`: batching text of varied lengths with an input's pad_value against without it, in the
 * same run. One `nereid serve` child per config, each on the same generated text encoder (src/onnx/test-models.ts
 * textEncoderModel: INT64 ids [batch, seq] → embedding → --layers hidden×hidden MatMuls → [batch, seq, hidden]), the
 * two configs alike but for pad_value; a closed loop of --concurrency clients sends each config the same seeded
 * sequence of requests, each of a length drawn from --lengths, the answer checked to come back at its own length.
 * Rounds are interleaved. Reported: requests/s, tokens/s, p50/p99 and the mean batch (the server's statistics).
 * Writes <out>/padding-<date>.{json,md}. A benchmark: it judges nothing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mulberry32, textEncoderModel, writeModel } from '../src/onnx/test-models.js';
import { inferenceCounts, nereidServeSpec, startChild, type ChildServer } from './child-process.js';
import { numberOption, ROUNDS_BENCH_OPTIONS } from './options.js';
import { finiteMedian } from './rounds.js';
import { describeSource, machine, resultPath, ROOT, sourceState } from './environment.js';
import { runLoad, type LoadResult } from './load-generator.js';
import { markdownTable } from './report.js';
import type { ResponseCheck } from './workload.js';

const VOCABULARY = 1000;

export const PADDING_HELP = `Usage: npm run bench -- --padding [options]

Serves a generated text encoder (INT64 ids [batch, seq] → embedding → --layers MatMuls of --hidden × --hidden →
FP32 [batch, seq, hidden]) twice, alike but for pad_value on its ids: without it, requests batch only with others of
the same length (Triton's rule); with it, each batch is padded to its longest request and the answers cut back. A
closed loop of --concurrency clients sends both the same seeded requests, of lengths drawn uniformly from --lengths.

Options:
  --lengths MIN-MAX     token counts of the requests                                     [8-64]
  --hidden N            hidden size                                                        [128]
  --layers N            MatMuls per token                                                     [4]
  --max-batch-size N    the configs' max_batch_size                                           [8]
  --delay-us N          the configs' max_queue_delay_microseconds                          [2000]
  --concurrency N       closed-loop clients                                                  [16]
  --duration SECONDS    measured seconds per cell                                             [4]
  --warmup SECONDS      unmeasured seconds before each cell                                   [1]
  --rounds N            interleaved rounds; the table gives medians                           [3]
  --out DIR             where padding-<date>.{json,md} go                          [bench/results]
  -h, --help            this help
`;

export interface PaddingOptions {
  minLength: number;
  maxLength: number;
  hidden: number;
  layers: number;
  maxBatchSize: number;
  delayUs: number;
  concurrency: number;
  duration: number;
  warmup: number;
  rounds: number;
  outDir: string;
}

export function parsePaddingOptions(argv: string[]): PaddingOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      lengths: { type: 'string', default: '8-64' },
      hidden: { type: 'string', default: '128' },
      layers: { type: 'string', default: '4' },
      'max-batch-size': { type: 'string', default: '8' },
      'delay-us': { type: 'string', default: '2000' },
      concurrency: { type: 'string', default: '16' },
      ...ROUNDS_BENCH_OPTIONS,
    },
  });
  if (values.help) return 'help';
  const lengths = /^(\d+)-(\d+)$/.exec(values.lengths);
  if (!lengths || Number(lengths[1]) < 1 || Number(lengths[1]) > Number(lengths[2])) throw new Error(`--lengths expects MIN-MAX with 1 <= MIN <= MAX, got '${values.lengths}'`);
  return {
    minLength: Number(lengths[1]),
    maxLength: Number(lengths[2]),
    hidden: numberOption('hidden', values.hidden, { integer: true }),
    layers: numberOption('layers', values.layers, { integer: true }),
    maxBatchSize: numberOption('max-batch-size', values['max-batch-size'], { integer: true }),
    delayUs: numberOption('delay-us', values['delay-us'], { integer: true, zero: true }),
    concurrency: numberOption('concurrency', values.concurrency, { integer: true }),
    duration: numberOption('duration', values.duration, { zero: true }),
    warmup: numberOption('warmup', values.warmup, { zero: true }),
    rounds: numberOption('rounds', values.rounds, { integer: true }),
    outDir: values.out,
  };
}

const CONFIGS = [
  { model: 'same_length', label: "same length only (Triton's rule)", padValue: '' },
  { model: 'padded', label: 'pad_value: padded to the longest', padValue: ' pad_value: 0' },
] as const;

const modelConfig = (options: PaddingOptions, padValue: string, padded: boolean) => `max_batch_size: ${options.maxBatchSize}
input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ]${padValue} } ]
output [ { name: "hidden" data_type: TYPE_FP32 dims: [ -1, ${options.hidden} ]${padded ? ' padded: true' : ''} } ]
dynamic_batching { max_queue_delay_microseconds: ${options.delayUs} }
`;

/** Each request's body in turn, of a length from the seeded draw; its id says the length its answer must have. */
export function requestBodies(options: PaddingOptions, seed: number): () => Buffer {
  const random = mulberry32(seed);
  return () => {
    const length = options.minLength + Math.floor(random() * (options.maxLength - options.minLength + 1));
    const ids = Array.from({ length }, () => 1 + Math.floor(random() * (VOCABULARY - 1)));
    return Buffer.from(JSON.stringify({ id: `L${length}`, inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, length], data: ids }] }));
  };
}

/** The answer comes back at its request's own length, whatever the batch was padded to. */
export function lengthCheck(hidden: number): ResponseCheck {
  return (_headers, body) => {
    const answer = JSON.parse(body.toString('utf8')) as { id?: string; outputs?: { shape: number[]; data: unknown[] }[] };
    const length = Number(answer.id?.slice(1));
    const shape = answer.outputs?.[0]?.shape;
    if (!shape || shape.join(',') !== `1,${length},${hidden}`) return `request ${answer.id}: answered shape [${shape?.join(',')}], expected [1,${length},${hidden}]`;
    if (answer.outputs![0].data.length !== length * hidden) return `request ${answer.id}: ${answer.outputs![0].data.length} values for shape [${shape.join(',')}]`;
    return undefined;
  };
}


interface Cell {
  config: string;
  round: number;
  result: LoadResult;
  tokensPerSecond: number;
  meanBatch: number;
}


export async function runPadding(options: PaddingOptions): Promise<void> {
  const started = new Date();
  const scratch = await mkdtemp(join(tmpdir(), 'nereid-padding-'));
  const servers = new Map<string, ChildServer>();
  try {
    const repository = join(scratch, 'repository');
    const model = textEncoderModel({ vocabulary: VOCABULARY, hidden: options.hidden, layers: options.layers });
    for (const config of CONFIGS) await writeModel(repository, config.model, 1, model, modelConfig(options, config.padValue, config.padValue !== ''));
    for (const config of CONFIGS) servers.set(config.model, await startChild({ name: config.model, cwd: ROOT, logDir: scratch, ...nereidServeSpec(repository, config.model) }));
    const check = lengthCheck(options.hidden);
    const cells: Cell[] = [];
    for (let round = 0; round < options.rounds; round++) {
      const order = round % 2 === 0 ? CONFIGS : [...CONFIGS].reverse();
      for (const config of order) {
        const server = servers.get(config.model)!;
        const before = await inferenceCounts(server.origin, config.model);
        // The same seeded requests for both configs in a round.
        const bodies = requestBodies(options, round + 1);
        const result = await runLoad({
          origin: server.origin,
          path: `/v2/models/${config.model}/infer`,
          headers: { 'content-type': 'application/json' },
          body: bodies,
          check,
          concurrency: options.concurrency,
          warmupSeconds: options.warmup,
          durationSeconds: options.duration,
          verifyEvery: 10,
        });
        const after = await inferenceCounts(server.origin, config.model);
        const executions = after.executions - before.executions;
        const meanLength = (options.minLength + options.maxLength) / 2;
        const cell: Cell = {
          config: config.label,
          round,
          result,
          tokensPerSecond: result.requestsPerSecond * meanLength,
          meanBatch: executions > 0 ? (after.inferences - before.inferences) / executions : NaN,
        };
        cells.push(cell);
        console.log(
          `round ${round + 1} ${config.label.padEnd(36)} ${result.requestsPerSecond.toFixed(0).padStart(6)} req/s  p50 ${result.latency.p50.toFixed(2).padStart(7)} ms  ` +
            `p99 ${result.latency.p99.toFixed(2).padStart(7)} ms  batch ${cell.meanBatch.toFixed(2)}  ${result.errors} errors  ${result.verifyFailed} wrong (of ${result.verified} checked)`,
        );
      }
    }
    const ratio = (round: number) => {
      const at = (label: string) => cells.find((cell) => cell.round === round && cell.config === label)?.result.requestsPerSecond ?? NaN;
      return at(CONFIGS[1].label) / at(CONFIGS[0].label);
    };
    const ratios = Array.from({ length: options.rounds }, (_, round) => ratio(round));
    const rows = CONFIGS.map((config) => {
      const mine = cells.filter((cell) => cell.config === config.label);
      return [
        config.label,
        finiteMedian(mine.map((cell) => cell.result.requestsPerSecond)).toFixed(0),
        finiteMedian(mine.map((cell) => cell.tokensPerSecond)).toFixed(0),
        finiteMedian(mine.map((cell) => cell.result.latency.p50)).toFixed(2),
        finiteMedian(mine.map((cell) => cell.result.latency.p99)).toFixed(2),
        finiteMedian(mine.map((cell) => cell.meanBatch)).toFixed(2),
        String(mine.reduce((sum, cell) => sum + cell.result.errors + cell.result.verifyFailed, 0)),
      ];
    });
    const table = markdownTable(['batching', 'req/s', 'tokens/s (mean length)', 'p50 ms', 'p99 ms', 'mean batch', 'errors + wrong'], rows, [false, true, true, true, true, true, true]);
    const m = machine();
    const markdown = [
      `# Padding text of varied lengths — ${started.toISOString()}`,
      '',
      `\`npm run bench -- ${process.argv.slice(2).join(' ')}\``,
      '',
      `Machine: ${m.cores} cores, ${m.cpuModel}; node ${m.node}; onnxruntime-node ${m.onnxruntimeNode}; load average at start ${(m.loadAverageAtStart as number[]).join(' ')}.`,
      `Source: ${describeSource(sourceState())}.`,
      `Model: INT64 ids → embedding → ${options.layers} MatMuls of ${options.hidden}×${options.hidden} per token → FP32 [batch, seq, ${options.hidden}]; ` +
        `max_batch_size ${options.maxBatchSize}, max_queue_delay ${options.delayUs} µs, instances as Nereid chooses. Requests of ${options.minLength}–${options.maxLength} tokens ` +
        `(uniform, seeded), ${options.concurrency} clients closed-loop, ${options.rounds} interleaved rounds of ${options.warmup} s + ${options.duration} s; medians over rounds.`,
      '',
      table,
      '',
      `padded ÷ same-length requests/s by round: ${ratios.map((value) => value.toFixed(2)).join(', ')} (median ${finiteMedian(ratios).toFixed(2)}).`,
      '',
    ].join('\n');
    console.log(`\n${markdown}`);
    const base = await resultPath(options.outDir, 'padding');
    await writeFile(`${base}.md`, markdown);
    await writeFile(`${base}.json`, JSON.stringify({ started, options, machine: m, cells }, (_key, value) => (typeof value === 'bigint' ? String(value) : value), 2));
    console.log(`wrote ${base}.md and .json`);
  } finally {
    await Promise.all([...servers.values()].map((server) => server.stop()));
    await rm(scratch, { recursive: true, force: true });
  }
}
