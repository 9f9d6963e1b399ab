/**
 * Batch-job throughput. N Fashion-MNIST test images (decoded from the dataset's idx file with
 * node:zlib) are written as PNG files; then:
 *
 * 1. `nereid batch` (a child process, as a user runs it) classifies the folder: records/s from its
 *    own summary (model loaded, files read, decoded, batched, run, post-processed, written);
 * 2. the ceiling: in-process ONNX Runtime, one session with a thread per core, on the same
 *    tensors already decoded (by the model's own pre-processing), at its best batch size;
 * 3. what decoding alone costs (the model's ImagePreprocessor over the PNG bytes, no model), the
 *    other bound of a job over image files;
 * 4. the same job distributed over a local redis-server with 1 and then 2 `nereid worker`s.
 *
 * Uses models/fashion_mnist when its model file exists, else smallCnnModel behind the same kind
 * of config. Appends the results to docs/performance.md under "Batch jobs" (--no-append to skip).
 *
 *   node --import tsx bench/batch.ts [--images 2000] [--no-distributed] [--no-append]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { parse as parseYaml } from 'yaml';
import { smallCnnModel, writeModel } from '../src/onnx/test-models.js';
import { ImagePreprocessor } from '../src/processing/image-preprocessor.js';
import { imagePreprocessingSchema } from '../src/config/model-config.js';
import { buildNereid, freePort, NEREID_CLI } from './child-process.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, NEREID_CLI);
const DATASET = '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const value = (name: string, fallback: number) => {
  const index = argv.indexOf(`--${name}`);
  return index >= 0 ? Number(argv[index + 1]) : fallback;
};
const IMAGES = value('images', 2000);
const DISTRIBUTED = !flag('no-distributed');
const APPEND = !flag('no-append');

interface JobSummary {
  records: number;
  processed: number;
  failed: number;
  wallSeconds: number;
  recordsPerSecond: number;
  computeSeconds: number;
  computeShare: number;
}

function readIdxImages(path: string, count: number): Buffer[] {
  const raw = gunzipSync(readFileSync(path));
  if (raw.readUInt32BE(0) !== 2051) throw new Error(`${path} is not an idx3 image file`);
  const total = raw.readUInt32BE(4);
  const rows = raw.readUInt32BE(8);
  const cols = raw.readUInt32BE(12);
  const size = rows * cols;
  return Array.from({ length: Math.min(count, total) }, (_, index) => raw.subarray(16 + index * size, 16 + (index + 1) * size));
}

/** The model under test: the trained Fashion-MNIST model when present, else the generated small CNN. */
async function prepareModel(work: string): Promise<{ repository: string; name: string; modelPath: string; config: Record<string, any>; source: string }> {
  const trained = join(ROOT, 'models', 'fashion_mnist');
  if (existsSync(join(trained, '1', 'model.onnx'))) {
    const config = parseYaml(readFileSync(join(trained, 'config.yaml'), 'utf8'));
    return { repository: join(ROOT, 'models'), name: 'fashion_mnist', modelPath: join(trained, '1', 'model.onnx'), config, source: 'models/fashion_mnist' };
  }
  const repository = join(work, 'repo');
  const config = {
    max_batch_size: 64,
    input: [{ name: 'image', data_type: 'TYPE_FP32', dims: [1, 28, 28], preprocess: { image: { color: 'grayscale' } } }],
    output: [{ name: 'probs', data_type: 'TYPE_FP32', dims: [10], postprocess: { top_k: 3 } }],
    dynamic_batching: { max_queue_delay_microseconds: 2000 },
  };
  await writeModel(repository, 'small_cnn', 1, smallCnnModel(), undefined, { 'config.json': JSON.stringify(config) });
  return { repository, name: 'small_cnn', modelPath: join(repository, 'small_cnn', '1', 'model.onnx'), config, source: 'smallCnnModel (generated)' };
}

/** The model's labels file, to copy beside a modified config. */
function labelsFile(modelPath: string): Record<string, Buffer> {
  const path = join(modelPath, '..', '..', 'labels.txt');
  return existsSync(path) ? { 'labels.txt': readFileSync(path) } : {};
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolveExit) =>
    child.once('exit', (code) => resolveExit({ code, stdout, stderr, seconds: (performance.now() - started) / 1000 })),
  );
}

async function batchJob(args: string[]): Promise<JobSummary & { processSeconds: number }> {
  const { code, stdout, stderr, seconds } = await runCli(['batch', ...args, '--progress', 'none', '--restart']);
  if (code !== 0) throw new Error(`nereid batch failed (${code}):\n${stderr}`);
  return { ...(JSON.parse(stdout.trim().split('\n').at(-1)!) as JobSummary), processSeconds: seconds };
}

async function main(): Promise<void> {
  buildNereid(ROOT);
  const work = await mkdtemp(join(tmpdir(), 'nereid-bench-batch-'));
  const children: ChildProcess[] = [];
  try {
    const model = await prepareModel(work);
    const modelBatch = Number(model.config.max_batch_size);
    console.error(`model ${model.name} (${model.source}), max_batch_size ${modelBatch}; ${IMAGES} images`);

    // The inputs: PNG files, as a user would have them.
    const pixels = readIdxImages(DATASET, IMAGES);
    const folder = join(work, 'images');
    await mkdir(folder, { recursive: true });
    const pngs = await Promise.all(pixels.map((image) => sharp(image, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer()));
    await Promise.all(pngs.map((png, index) => writeFile(join(folder, `img-${String(index).padStart(5, '0')}.png`), png)));

    // Decoding alone: the model's own pre-processing over the bytes, 16 at a time (as the job keeps them in flight).
    const input = model.config.input[0];
    const preprocessor = new ImagePreprocessor(input.name, imagePreprocessingSchema.parse(input.preprocess.image), 'FP32', input.dims);
    const tensors: Float32Array[] = new Array(pngs.length);
    let next = 0;
    const decodeStart = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < pngs.length) {
          const index = next++;
          tensors[index] = (await preprocessor.run([pngs[index]])).data as Float32Array;
        }
      }),
    );
    const decodePerSecond = pngs.length / ((performance.now() - decodeStart) / 1000);
    console.error(`decode only: ${decodePerSecond.toFixed(0)} images/s`);

    // The ceiling: ONNX Runtime in process on the decoded tensors, at each batch size.
    const session = await ort.InferenceSession.create(model.modelPath, {
      intraOpNumThreads: availableParallelism(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
    const ceiling: { batch: number; perSecond: number }[] = [];
    for (const batch of [1, 8, 16, 32, 64, 128, 256]) {
      const feeds = [] as ort.InferenceSession.FeedsType[];
      for (let start = 0; start < tensors.length; start += batch) {
        const rows = tensors.slice(start, start + batch);
        const data = new Float32Array(rows.length * 784);
        rows.forEach((row, index) => data.set(row, index * 784));
        feeds.push({ [session.inputNames[0]]: new ort.Tensor('float32', data, [rows.length, 1, 28, 28]) });
      }
      for (const feed of feeds.slice(0, 3)) await session.run(feed); // warm-up
      let images = 0;
      const started = performance.now();
      while (performance.now() - started < 1500) {
        for (const feed of feeds) await session.run(feed);
        images += tensors.length;
      }
      const perSecond = images / ((performance.now() - started) / 1000);
      ceiling.push({ batch, perSecond });
      console.error(`onnxruntime batch ${batch}: ${perSecond.toFixed(0)} images/s`);
    }
    await session.release();
    const best = ceiling.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));

    // nereid batch, local, at a few in-flight depths (the default is 4 × max_batch_size).
    const output = join(work, 'out.jsonl');
    const common = ['--model', model.name, '--input', folder, '--output', output, '--model-repository', model.repository];
    const local: { label: string; summary: JobSummary & { processSeconds: number } }[] = [];
    for (const concurrency of [undefined, modelBatch, 2 * modelBatch, 8 * modelBatch]) {
      const summary = await batchJob([...common, ...(concurrency ? ['--concurrency', String(concurrency)] : [])]);
      const label = concurrency ? `--concurrency ${concurrency}` : `defaults (--concurrency ${4 * modelBatch})`;
      local.push({ label, summary });
      console.error(`nereid batch ${label}: ${summary.recordsPerSecond.toFixed(0)} records/s, compute share ${(100 * summary.computeShare).toFixed(0)}%`);
    }
    // The same job with ONNX Runtime on one intra-op thread, leaving the other cores to image decoding.
    const oneThreadRepo = join(work, 'one-thread-repo');
    await writeModel(oneThreadRepo, model.name, 1, readFileSync(model.modelPath), undefined, {
      'config.json': JSON.stringify({ ...model.config, parameters: { ...(model.config.parameters ?? {}), intra_op_thread_count: 1 } }),
      ...labelsFile(model.modelPath),
    });
    const oneThread = await batchJob(['--model', model.name, '--input', folder, '--output', output, '--model-repository', oneThreadRepo]);
    local.push({ label: 'defaults, model with `intra_op_thread_count: 1`', summary: oneThread });
    console.error(`nereid batch, intra_op_thread_count 1: ${oneThread.recordsPerSecond.toFixed(0)} records/s`);
    const bestLocal = local.reduce((a, b) => (b.summary.recordsPerSecond > a.summary.recordsPerSecond ? b : a));

    // The same decoded tensors as JSONL (named fields, 784 values a line): the job without image decoding.
    // The model's image input takes encoded images, so this runs a copy of the model without preprocess.
    const tensorRepo = join(work, 'tensor-repo');
    const tensorConfig = { ...model.config, input: model.config.input.map(({ preprocess: _, ...rest }: Record<string, unknown>) => rest) };
    await writeModel(tensorRepo, 'tensors', 1, readFileSync(model.modelPath), undefined, {
      'config.json': JSON.stringify(tensorConfig),
      ...labelsFile(model.modelPath),
    });
    const jsonl = join(work, 'tensors.jsonl');
    await writeFile(jsonl, tensors.map((tensor) => JSON.stringify({ [input.name]: Array.from(tensor) })).join('\n') + '\n');
    const tensorJob = await batchJob(['--model', 'tensors', '--input', jsonl, '--output', join(work, 'tensors-out.jsonl'), '--model-repository', tensorRepo]);
    console.error(`nereid batch over JSONL tensors: ${tensorJob.recordsPerSecond.toFixed(0)} records/s`);

    // Distributed: a local redis-server, 1 then 2 workers.
    const distributed: { workers: number; summary: JobSummary }[] = [];
    if (DISTRIBUTED) {
      const port = await freePort();
      const redis = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      children.push(redis);
      await new Promise((resolveWait) => setTimeout(resolveWait, 300));
      const queue = `redis://127.0.0.1:${port}`;
      for (const count of [1, 2]) {
        const workers = Array.from({ length: count }, (_, index) => {
          const child = spawn(process.execPath, [CLI, 'worker', '--queue', queue, '--model-repository', model.repository, '--name', `bench-w${index}`], {
            cwd: ROOT,
            stdio: ['ignore', 'ignore', 'ignore'],
          });
          children.push(child);
          return child;
        });
        // Warm-up: small chunks, so every worker loads the model before the measured job.
        const warm = await batchJob([...common, '--output', join(work, 'warm.jsonl'), '--queue', queue, '--job', `warm${count}`, '--chunk-size', '8']);
        if (warm.failed > 0) throw new Error('the warm-up job failed');
        const summary = await batchJob([...common, '--queue', queue, '--job', `bench${count}`]);
        distributed.push({ workers: count, summary });
        console.error(`nereid batch --queue, ${count} worker(s): ${summary.recordsPerSecond.toFixed(0)} records/s`);
        for (const child of workers) child.kill('SIGTERM');
        await Promise.all(workers.map((child) => new Promise((resolveExit) => (child.exitCode !== null ? resolveExit(null) : child.once('exit', resolveExit)))));
      }
    }

    const check = await readFile(output, 'utf8');
    const lines = check.split('\n').filter(Boolean).length;
    if (lines !== IMAGES) throw new Error(`the output has ${lines} lines for ${IMAGES} images`);

    const date = new Date().toISOString().slice(0, 10);
    const machine = `${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), load average ${loadavg()[0].toFixed(1)} at the end, Node ${process.version}`;
    const ratio = bestLocal.summary.recordsPerSecond / best.perSecond;
    const decodeRatio = bestLocal.summary.recordsPerSecond / decodePerSecond;
    const report = [
      `### ${date}: ${IMAGES} Fashion-MNIST test images as PNG, model ${model.name} (${model.source})`,
      '',
      '```sh',
      `node --import tsx bench/batch.ts --images ${IMAGES}${DISTRIBUTED ? '' : ' --no-distributed'}`,
      '```',
      '',
      `${machine}.`,
      '',
      '| what | records/s | notes |',
      '|---|---:|---|',
      ...local.map(
        ({ label, summary }) =>
          `| \`nereid batch\` ${label} | ${summary.recordsPerSecond.toFixed(0)} | wall ${summary.wallSeconds.toFixed(2)} s (process ${summary.processSeconds.toFixed(1)} s with start-up and model load), compute share ${(100 * summary.computeShare).toFixed(0)}% |`,
      ),
      `| ONNX Runtime in process, decoded tensors, best batch (${best.batch}) | ${best.perSecond.toFixed(0)} | ${ceiling.map((point) => `b${point.batch}: ${point.perSecond.toFixed(0)}`).join(', ')} |`,
      `| decoding alone (the model's pre-processing over the PNG bytes, 16 in flight) | ${decodePerSecond.toFixed(0)} | no model |`,
      `| \`nereid batch\` over a JSONL of the decoded tensors (784 numbers a line, no image decoding) | ${tensorJob.recordsPerSecond.toFixed(0)} | compute share ${(100 * tensorJob.computeShare).toFixed(0)}%; output: 10 logits a line |`,
      ...distributed.map(
        ({ workers, summary }) =>
          `| \`nereid batch --queue\`, ${workers} local worker(s) | ${summary.recordsPerSecond.toFixed(0)} | chunks of 64 over redis-server; model execution summed over workers ${(100 * summary.computeShare).toFixed(0)}% of wall |`,
      ),
      '',
      `Best \`nereid batch\` / ONNX Runtime on decoded tensors: **${ratio.toFixed(2)}×**; / decoding alone: **${decodeRatio.toFixed(2)}×**.`,
      '',
    ].join('\n');
    console.log(report);
    if (APPEND) {
      const path = join(ROOT, 'docs', 'performance.md');
      const existing = existsSync(path) ? readFileSync(path, 'utf8') : '# Performance\n';
      const heading = existing.includes('\n## Batch jobs\n')
        ? ''
        : [
            '',
            '## Batch jobs',
            '',
            '`nereid batch` over a folder of images against two bounds: ONNX Runtime alone on the same tensors already decoded',
            '(the ceiling of the model), and decoding alone (the ceiling of reading PNG files through the model\'s pre-processing).',
            'Records/s are from the job\'s own summary: from the first record read to the last line written, with the model loaded.',
            'Produced by `bench/batch.ts`; each run is appended below.',
            '',
          ].join('\n');
      appendFileSync(path, `${existing.endsWith('\n') ? '' : '\n'}${heading}\n${report}`);
      console.error(`appended to ${path}`);
    }
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  }
}

await main();
