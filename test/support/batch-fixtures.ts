/**
 * Inputs and models for batch-job tests: a repository with an image classifier (smallCnnModel
 * behind declarative pre-processing) and Triton's add/sub model, folders of real PNG/JPEG images
 * rendered with sharp from known patterns, JSONL and CSV files of add/sub records, and a reader
 * for the JSONL output that fails on any record written twice.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { addSubModel, mulberry32, scaleModel, smallCnnModel, writeModel } from '../../src/onnx/test-models.js';

export const CNN_LABELS = ['tshirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot'];

export const CNN_CONFIG = [
  'max_batch_size: 8',
  'input:',
  '  - name: image',
  '    data_type: TYPE_FP32',
  '    dims: [1, 28, 28]',
  '    preprocess:',
  '      image: { color: grayscale, resize: stretch, interpolation: nearest }',
  'output:',
  '  - name: probs',
  '    data_type: TYPE_FP32',
  '    dims: [10]',
  '    label_filename: labels.txt',
  '    postprocess: { top_k: 3 }',
  'dynamic_batching: { max_queue_delay_microseconds: 500 }',
  '',
].join('\n');

export const ADDSUB_CONFIG = [
  'max_batch_size: 8',
  'input:',
  '  - { name: INPUT0, data_type: TYPE_INT32, dims: [16] }',
  '  - { name: INPUT1, data_type: TYPE_INT32, dims: [16] }',
  'output:',
  '  - { name: OUTPUT0, data_type: TYPE_INT32, dims: [16] }',
  '  - { name: OUTPUT1, data_type: TYPE_INT32, dims: [16] }',
  'dynamic_batching: { max_queue_delay_microseconds: 500 }',
  '',
].join('\n');

/** `cnn` (images → 10 labelled classes), `addsub` (INT32 [16] + [16]) and `scale` (FP32 [4] × 2). */
export async function writeBatchModels(repoDir: string): Promise<void> {
  await writeModel(repoDir, 'cnn', 1, smallCnnModel(), undefined, { 'config.yaml': CNN_CONFIG, 'labels.txt': `${CNN_LABELS.join('\n')}\n` });
  await writeModel(repoDir, 'addsub', 1, addSubModel(), undefined, { 'config.yaml': ADDSUB_CONFIG });
  await writeModel(repoDir, 'scale', 1, scaleModel(2), 'max_batch_size: 8\n');
}

/** 28×28 gray pixels of pattern `n`: stripes, gradients and blocks that differ from one n to the next. */
export function patternPixels(n: number, size = 28): Buffer {
  const random = mulberry32(1000 + n);
  const period = 2 + (n % 7);
  const phase = n % 5;
  const pixels = Buffer.alloc(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const stripe = Math.floor((x + y * (n % 3) + phase) / period) % 2 === 0 ? 220 : 30;
      const gradient = ((x * (n % 11)) + (y * (n % 13))) % 256;
      const noise = Math.floor(random() * 40);
      pixels[y * size + x] = Math.min(255, Math.floor((stripe + gradient) / 2) + noise);
    }
  }
  return pixels;
}

/** A PNG (lossless) or JPEG of pattern `n`, `size` pixels square. */
export async function patternImage(n: number, format: 'png' | 'jpeg', size = 28): Promise<Buffer> {
  const image = sharp(patternPixels(n, size), { raw: { width: size, height: size, channels: 1 } });
  return format === 'png' ? image.png().toBuffer() : image.jpeg({ quality: 90 }).toBuffer();
}

/**
 * Writes `count` images under `dir`, spread over sub-folders, PNG and JPEG alternating; returns
 * their paths relative to `dir` (the record ids a batch job gives them).
 */
export async function writeImageFolder(dir: string, count: number, options: { size?: number; subfolders?: number } = {}): Promise<string[]> {
  const subfolders = options.subfolders ?? 3;
  const written: string[] = [];
  await Promise.all(
    Array.from({ length: count }, async (_, n) => {
      const format = n % 2 === 0 ? 'png' : 'jpeg';
      const relative = `${n % subfolders === 0 ? '' : `set${n % subfolders}/`}img-${String(n).padStart(5, '0')}.${format === 'png' ? 'png' : 'jpg'}`;
      const path = join(dir, relative);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, await patternImage(n, format, options.size));
      written.push(relative);
    }),
  );
  return written.sort();
}

/** INPUT0 and INPUT1 of add/sub record `n`. */
export function addSubValues(n: number): { input0: number[]; input1: number[] } {
  return {
    input0: Array.from({ length: 16 }, (_, i) => n * 16 + i),
    input1: Array.from({ length: 16 }, (_, i) => (n % 9) - i),
  };
}

/** One JSONL line for record `n`, in one of the three accepted forms (cycling). */
export function addSubJsonLine(n: number): string {
  const { input0, input1 } = addSubValues(n);
  const v2 = [
    { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: input0 },
    { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: input1 },
  ];
  switch (n % 3) {
    case 0:
      return JSON.stringify(v2);
    case 1:
      return JSON.stringify({ inputs: v2 });
    default:
      return JSON.stringify({ INPUT0: input0, INPUT1: input1, note: 'extra fields are ignored' });
  }
}

/** A CSV with columns id, INPUT0, INPUT1 (cells: 16 space-separated values); returns the line of each record n. */
export function addSubCsv(count: number): { text: string; lineOf: (n: number) => number } {
  const rows = ['id,INPUT0,INPUT1'];
  for (let n = 0; n < count; n++) {
    const { input0, input1 } = addSubValues(n);
    rows.push(`${n},${input0.join(' ')},"${input1.join(' ')}"`);
  }
  return { text: `${rows.join('\n')}\n`, lineOf: (n) => n + 2 };
}

export interface OutputRecord {
  id: string | number;
  model_name?: string;
  model_version?: string;
  outputs?: { name: string; datatype: string; shape: number[]; data: unknown[] }[];
  predictions?: { label: string; index: number; score: number }[];
  confidence?: { probability: number };
  pass_through?: Record<string, unknown>;
  error: string | null;
}

/** The output's records by id; fails if a line is not JSON or an id appears twice. */
export async function readOutput(path: string): Promise<Map<string | number, OutputRecord>> {
  const text = await readFile(path, 'utf8');
  const records = new Map<string | number, OutputRecord>();
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new Error(`${path} does not end with a newline`);
  lines.slice(0, -1).forEach((line, index) => {
    const record = JSON.parse(line) as OutputRecord;
    if (records.has(record.id)) throw new Error(`${path}: record ${JSON.stringify(record.id)} is written twice (line ${index + 1})`);
    records.set(record.id, record);
  });
  return records;
}
