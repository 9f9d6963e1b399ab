/**
 * Versions of a model side by side in this process — a quantized one against its source — on the
 * same inputs, the sessions alternated example by example and round by round so that a noisy,
 * shared machine slows each alike: milliseconds per example at batch 1 with one intra-op thread
 * and with ONNX Runtime's default threads, and, when every input has the same shape, at the
 * model's max_batch_size; each as a median over rounds and as a ratio to the first version.
 *
 *   node --import tsx bench/quantized.ts --model-repository R --model M --versions 1,2 --data DIR|FILE.jsonl [--examples 60] [--rounds 5]
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import pino from 'pino';
import { readModelInputs, type Feed } from '../src/jobs/model-inputs.js';
import { runSideBySide } from '../src/quantize/run-quantize.js';
import { createServer } from '../src/server/create-server.js';

const USAGE = `Usage: node --import tsx bench/quantized.ts --model M --data DIR|FILE.jsonl [options]

Versions of a model side by side in this process (a quantized one against its source), sessions alternated:
milliseconds per example at batch 1 (one intra-op thread and default threads) and at max_batch_size.

  --model <name>              model to measure (required)
  --data <path>               a folder of images or a JSONL/CSV file of input tensors (required)
  --model-repository <dir>    model repository (default: models)
  --versions <list>           versions to compare, the first as the reference (default: 1,2)
  --examples <n>              examples read (default: 60)
  --rounds <n>                rounds, the median kept (default: 5)
  -h, --help                  this help`;

/** The options, or on a mistake the usage with what was wrong (exit 1); --help prints the usage (exit 0). */
function options() {
  try {
    const { values } = parseArgs({
      options: {
        'model-repository': { type: 'string', default: 'models' },
        model: { type: 'string' },
        versions: { type: 'string', default: '1,2' },
        data: { type: 'string' },
        examples: { type: 'string', default: '60' },
        rounds: { type: 'string', default: '5' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    if (!values.model || !values.data) throw new Error('--model and --data are required');
    return values as typeof values & { model: string; data: string };
  } catch (error) {
    console.error(`bench/quantized.ts: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(1);
  }
}
const values = options();
const repository = values['model-repository']!;
const versions = values.versions!.split(',');
const rounds = Number(values.rounds);

const server = await createServer({ modelRepository: repository, modelControlMode: 'explicit', loadModels: [], logger: pino({ level: 'warn' }) });
await server.start();
await server.loadModel(values.model);
const config = server.model(values.model).config;
const { feeds } = await readModelInputs(values.data, Number(values.examples), server, values.model, config);
await server.close();
const output = config.output[0].name;
const files = await Promise.all(versions.map(async (version) => new Uint8Array(await readFile(join(repository, values.model!, version, config.default_model_filename ?? 'model.onnx')))));

/** Feeds stacked into batches of `size` rows, when every feed's input has the same shape. */
function batched(size: number): Feed[] | undefined {
  const names = Object.keys(feeds[0]);
  const shapeOf = (feed: Feed, name: string) => feed[name].dims.join('x');
  if (!feeds.every((feed) => names.every((name) => shapeOf(feed, name) === shapeOf(feeds[0], name)))) return undefined;
  const batches: Feed[] = [];
  for (let start = 0; start + size <= feeds.length; start += size) {
    const rows = feeds.slice(start, start + size);
    batches.push(
      Object.fromEntries(
        names.map((name) => {
          const first = rows[0][name];
          const data = new Float32Array(first.size * size);
          rows.forEach((row, index) => data.set(row[name].data as Float32Array, index * first.size));
          return [name, new ort.Tensor('float32', data, [size, ...first.dims.slice(1)])];
        }),
      ),
    );
  }
  return batches.length > 0 ? batches : undefined;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function measure(label: string, batches: readonly Feed[], rowsPerBatch: number, intraOpNumThreads: number): Promise<void> {
  const perRound = versions.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    // Alternate which version goes first, so neither always runs on a warmer cache.
    const order = round % 2 === 0 ? versions.map((_, index) => index) : versions.map((_, index) => versions.length - 1 - index);
    const runs = await runSideBySide(order.map((index) => files[index]), batches, output, { intraOpNumThreads });
    order.forEach((index, position) => perRound[index].push(runs[position].msPerExample / rowsPerBatch));
  }
  const medians = perRound.map(median);
  const cells = versions.map((version, index) => `v${version} ${medians[index].toFixed(3)} ms${index === 0 ? '' : ` (${(medians[0] / medians[index]).toFixed(2)}x)`}`);
  console.log(`| ${label} | ${cells.join(' | ')} |`);
}

console.log(`${values.model}: ${feeds.length} examples from ${values.data}, versions ${versions.join(', ')}, ${rounds} rounds, median ms per example (speed-up over v${versions[0]})`);
await measure('batch 1, 1 thread', feeds, 1, 1);
await measure('batch 1, default threads', feeds, 1, 0);
const size = config.max_batch_size;
const stacked = size > 1 ? batched(size) : undefined;
if (stacked) {
  await measure(`batch ${size}, 1 thread`, stacked, size, 1);
  await measure(`batch ${size}, default threads`, stacked, size, 0);
}
