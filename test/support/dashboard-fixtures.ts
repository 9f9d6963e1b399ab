/**
 * What the dashboard's test and its screenshots serve beyond the bundled models: a handler model
 * with the OCR pipeline's outputs, and two finished batch jobs on a Redis queue — one with a
 * record the model refuses, one whose every chunk fails (a model no worker has).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { runDistributedBatchJob, startBatchWorker } from '../../src/jobs/index.js';

/** The lines `text_lines` answers, with the fractions of the image's width (x) and height (y) their boxes span. */
export const TEXT_LINES = [
  { text: 'FIRST LINE', x: [0.1, 0.9], y: [0.1, 0.3], score: 0.98 },
  { text: 'second line', x: [0.2, 0.8], y: [0.5, 0.75], score: 0.76 },
] as const;

/**
 * A handler model with the OCR pipeline's signature (image BYTES [1] → text, boxes [-1,4,2], scores):
 * two lines of text at fixed fractions of the PNG's size, so that the try-it panel's request and
 * drawing can be checked against a real /infer answer.
 */
const TEXT_LINES_CONFIG = [
  'backend: javascript',
  'max_batch_size: 0',
  'input: [{ name: image, data_type: TYPE_STRING, dims: [1] }]',
  'output:',
  '  - { name: text, data_type: TYPE_STRING, dims: [-1] }',
  '  - { name: boxes, data_type: TYPE_FP32, dims: [-1, 4, 2] }',
  '  - { name: scores, data_type: TYPE_FP32, dims: [-1] }',
  '',
].join('\n');
const TEXT_LINES_HANDLER = `
const LINES = ${JSON.stringify(TEXT_LINES)};
export function execute(requests) {
  return requests.map((request) => {
    const png = request.inputs.image.data[0];
    // A PNG's width and height: bytes 16 and 20, in its IHDR chunk.
    const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
    const [width, height] = [view.getUint32(16), view.getUint32(20)];
    const boxes = LINES.flatMap(({ x: [x0, x1], y: [y0, y1] }) => [x0 * width, y0 * height, x1 * width, y0 * height, x1 * width, y1 * height, x0 * width, y1 * height]);
    return {
      text: { shape: [LINES.length], data: LINES.map((line) => line.text) },
      boxes: { shape: [LINES.length, 4, 2], data: boxes },
      scores: { shape: [LINES.length], data: LINES.map((line) => line.score) },
    };
  });
}
`;

/** Writes `text_lines` (a javascript handler: serve it with allowCodeModels) into a repository. */
export async function writeTextLinesModel(repoDir: string): Promise<void> {
  await mkdir(join(repoDir, 'text_lines', '1'), { recursive: true });
  await writeFile(join(repoDir, 'text_lines', 'config.yaml'), TEXT_LINES_CONFIG);
  await writeFile(join(repoDir, 'text_lines', '1', 'model.mjs'), TEXT_LINES_HANDLER);
}

/**
 * Runs two jobs to their end on `queue` with a worker over `repoDir` (which must hold the `simple`
 * model): `dashboard-simple`, 7 records in 3 chunks, one refused by the model; `dashboard-ghost`,
 * the same records for a model no worker has, its first chunk failing after 2 attempts (which stops the job). `close()` stops
 * the worker and removes the records (the jobs stay on the queue).
 */
export async function runDashboardJobs(queue: string, repoDir: string): Promise<{ close(): Promise<void> }> {
  const logger = pino({ level: 'silent' });
  const dir = await mkdtemp(join(tmpdir(), 'nereid-dashboard-jobs-'));
  const worker = await startBatchWorker({ queue, modelRepository: repoDir, name: 'dashboard-worker', concurrency: 1, logger });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await worker.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const input = join(dir, 'records.jsonl');
    const record = (n: number) => JSON.stringify({ INPUT0: Array.from({ length: 16 }, (_, i) => i + n), INPUT1: Array.from({ length: 16 }, () => 1) });
    await writeFile(input, `${[0, 1, 2, 3, 4, 5].map(record).join('\n')}\n{"WRONG":[1]}\n`);
    const job = { queue, input, chunkSize: 3, progress: 'none' as const, logger, backoffMs: 10 };
    await runDistributedBatchJob({ ...job, model: 'simple', output: join(dir, 'simple.jsonl'), job: 'dashboard-simple' });
    await runDistributedBatchJob({ ...job, model: 'ghost', output: join(dir, 'ghost.jsonl'), job: 'dashboard-ghost', attempts: 2, maxPendingChunks: 1 });
  } catch (error) {
    await close();
    throw error;
  }
  return { close };
}
