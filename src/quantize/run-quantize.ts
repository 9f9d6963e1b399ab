/**
 * `nereid quantize`: a model version of the repository made static int8 (QDQ) from calibration
 * images and written as a new version beside it, with what was done and measured in
 * quantization.json — the calibration set's digest and size, the ranges' method, the nodes
 * quantized and left float, sizes, and agreement and speed against the float version on
 * calibration images held out from the ranges.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import { compareScores } from '../eval/classification-metrics.js';
import { openInput } from '../jobs/input-source.js';
import { constantsToInitializers, readOnnxModel, writeOnnxModel, type OnnxModel } from '../onnx/onnx-model-file.js';
import { InputPreprocessor } from '../processing/input-preprocessor.js';
import { QUANTIZATION_RECORD_FILE } from '../repository/quantization-record.js';
import { createServer } from '../server/create-server.js';
import { calibrateRanges } from './calibration.js';
import { quantizeStaticQdq } from './static-qdq.js';

export const quantizeOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  /** Default: the highest version folder. */
  version: z.string().regex(/^[1-9]\d*$/).optional(),
  /** A folder of images (sub-folders included), decoded and normalised by the model's own pre-processing. */
  calibration: z.string().min(1),
  method: z.enum(['static', 'dynamic', 'fp16', 'auto']).default('static'),
  /** 'minmax', or the percentile of each tensor's values its range keeps. */
  ranges: z.union([z.literal('minmax'), z.number().gt(50).lte(100)]).default(99.99),
  /** Images read from the calibration folder at most. */
  maxImages: z.number().int().positive().default(500),
  /** Share of the images held out of calibration to measure agreement on. */
  holdOut: z.number().gt(0).lt(1).default(0.2),
  /** Default: one above the highest version folder. */
  outputVersion: z.string().regex(/^[1-9]\d*$/).optional(),
});

export type QuantizeOptions = z.input<typeof quantizeOptionsSchema>;

/** Encoded calibration images from a batch job's image folder (sub-folders included), at most `limit`. */
async function calibrationImages(path: string, limit: number): Promise<Buffer[]> {
  const source = await openInput(path);
  if (source.format !== 'images') throw new Error(`--calibration ${path}: a folder of images is needed; ${source.format} calibration is not supported yet`);
  const images: Buffer[] = [];
  for await (const record of source.records()) {
    if (images.length >= limit) break;
    const loaded = await record.load();
    if (!loaded.image) throw new Error(`--calibration ${path}: ${loaded.id}: ${loaded.error ?? 'no image'}`);
    images.push(loaded.image);
  }
  return images;
}

async function versionFolders(modelDir: string): Promise<number[]> {
  const entries = await readdir(modelDir, { withFileTypes: true });
  return entries.filter((entry) => entry.isDirectory() && /^[1-9]\d*$/.test(entry.name)).map((entry) => Number(entry.name)).sort((a, b) => a - b);
}

/** The model with BatchNormalization folded into its convolutions and constants folded, by ONNX Runtime at level basic, still portable ONNX. */
async function normalised(model: OnnxModel): Promise<OnnxModel> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-quantize-'));
  try {
    const optimizedModelFilePath = join(dir, 'basic.onnx');
    const session = await ort.InferenceSession.create(writeOnnxModel(model), { graphOptimizationLevel: 'basic', optimizedModelFilePath, logSeverityLevel: 3 });
    await session.release();
    return readOnnxModel(await readFile(optimizedModelFilePath));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One version over the held-out images, in one session: its first output per image, and the
 * milliseconds per image at batch 1 on one intra-op thread (level all: ONNX Runtime's fusions, the
 * integer kernels included), timed after three warm-up runs.
 */
async function heldOutRun(bytes: Uint8Array, feeds: readonly Record<string, ort.Tensor>[], output: string): Promise<{ outputs: Float32Array[]; msPerImage: number }> {
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all', intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    for (const feed of feeds.slice(0, 3)) await session.run(feed);
    const outputs: Float32Array[] = [];
    const started = performance.now();
    for (const feed of feeds) outputs.push((await session.run(feed))[output].data as Float32Array);
    return { outputs, msPerImage: (performance.now() - started) / feeds.length };
  } finally {
    await session.release();
  }
}

export interface QuantizeReport {
  model: string;
  sourceVersion: string;
  outputVersion: string;
  path: string;
  method: 'static';
  calibration: { images: number; heldOut: number; sha256: string; ranges: string };
  quantizedNodes: string[];
  floatNodes: { node: string; reason: string }[];
  sizes: { fp32Bytes: number; int8Bytes: number; ratio: number };
  /** On the held-out images, of the model's first output as the ONNX file computes it (before any activation the config declares). */
  agreement: { top1: number; maxAbsDelta: number };
  msPerImage: { fp32: number; int8: number; speedup: number };
}

export async function runQuantize(options: QuantizeOptions, logger: Logger): Promise<QuantizeReport> {
  const settings = quantizeOptionsSchema.parse(options);
  if (settings.method !== 'static') throw new Error(`--method ${settings.method} is not implemented yet; use --method static`);
  const modelDir = join(settings.modelRepository, settings.model);
  const versions = await versionFolders(modelDir);
  const sourceVersion = settings.version ?? String(versions.at(-1) ?? '');
  if (!versions.includes(Number(sourceVersion))) throw new Error(`model '${settings.model}' has no version ${sourceVersion || '(none)'} in ${settings.modelRepository}`);
  const outputVersion = settings.outputVersion ?? String((versions.at(-1) ?? 0) + 1);
  if (versions.includes(Number(outputVersion))) throw new Error(`version ${outputVersion} of '${settings.model}' exists already; choose another --output-version`);

  // The model's own pre-processing turns calibration images into the tensors it takes.
  const server = await createServer({ modelRepository: settings.modelRepository, modelControlMode: 'explicit', loadModels: [], logger });
  let config;
  try {
    await server.start();
    await server.loadModel(settings.model);
    // The config is the model's, whichever version its policy loaded; it decides the pre-processing and file name.
    config = server.model(settings.model).config;
  } finally {
    await server.close();
  }
  const preprocessor = InputPreprocessor.of(config);
  const [imageInput, ...others] = preprocessor ? [...preprocessor.imageInputs] : [];
  if (!preprocessor || !imageInput || others.length > 0 || config.input.length !== 1) {
    throw new Error(`model '${settings.model}' does not take a single image input with preprocess.image; calibration from images needs one`);
  }
  const images = await calibrationImages(settings.calibration, settings.maxImages);
  if (images.length < 5) throw new Error(`--calibration ${settings.calibration}: ${images.length} image(s); calibration needs at least 5`);
  const digest = createHash('sha256');
  const feeds: Record<string, ort.Tensor>[] = [];
  for (const bytes of images) {
    digest.update(createHash('sha256').update(bytes).digest());
    const tensors = await preprocessor.run({ [imageInput]: { datatype: 'BYTES', shape: [1, 1], data: [bytes] } });
    const tensor = tensors[imageInput];
    const shape = config.max_batch_size > 0 ? tensor.shape : [1, ...tensor.shape];
    feeds.push({ [imageInput]: new ort.Tensor('float32', tensor.data as Float32Array, shape) });
  }
  const heldOut = Math.max(1, Math.round(images.length * settings.holdOut));
  const calibrationFeeds = feeds.slice(0, feeds.length - heldOut);
  const evaluationFeeds = feeds.slice(feeds.length - heldOut);

  const sourcePath = join(modelDir, sourceVersion, config.default_model_filename ?? 'model.onnx');
  const fp32Bytes = new Uint8Array(await readFile(sourcePath));
  const parsed = readOnnxModel(fp32Bytes);
  constantsToInitializers(parsed);
  const model = await normalised(parsed);
  const tensors = new Set<string>();
  for (const node of model.graph.node) {
    if (['Conv', 'MatMul', 'Gemm'].includes(node.op_type ?? '')) {
      tensors.add(node.input[0]);
      tensors.add(node.output[0]);
    }
  }
  const method = settings.ranges === 'minmax' ? ({ kind: 'minmax' } as const) : ({ kind: 'percentile', percentile: settings.ranges } as const);
  const ranges = await calibrateRanges(model, [...tensors], calibrationFeeds, { method });
  const { quantized, skipped } = quantizeStaticQdq(model, ranges);
  const int8 = writeOnnxModel(model);

  const output = config.output[0].name;
  const fp32 = await heldOutRun(fp32Bytes, evaluationFeeds, output);
  const quantizedRun = await heldOutRun(int8, evaluationFeeds, output);
  const agreement = compareScores(fp32.outputs, quantizedRun.outputs);
  const [fp32Ms, int8Ms] = [fp32.msPerImage, quantizedRun.msPerImage];
  const target = join(modelDir, outputVersion);
  const report: QuantizeReport = {
    model: settings.model,
    sourceVersion,
    outputVersion,
    path: target,
    method: 'static',
    calibration: {
      images: calibrationFeeds.length,
      heldOut,
      sha256: digest.digest('hex'),
      ranges: settings.ranges === 'minmax' ? 'minmax' : `percentile ${settings.ranges}`,
    },
    quantizedNodes: quantized,
    floatNodes: skipped,
    sizes: { fp32Bytes: fp32Bytes.length, int8Bytes: int8.length, ratio: int8.length / fp32Bytes.length },
    agreement: { top1: agreement.top1Agreement, maxAbsDelta: agreement.maxAbsDelta },
    msPerImage: { fp32: fp32Ms, int8: int8Ms, speedup: fp32Ms / int8Ms },
  };
  await mkdir(target);
  await writeFile(join(target, config.default_model_filename ?? 'model.onnx'), int8);
  await writeFile(join(target, QUANTIZATION_RECORD_FILE), `${JSON.stringify({ ...report, path: undefined, created: new Date().toISOString() }, null, 2)}\n`);
  logger.info({ version: outputVersion, bytes: (await stat(join(target, config.default_model_filename ?? 'model.onnx'))).size }, `wrote version ${outputVersion} of '${settings.model}'`);
  return report;
}
