/**
 * `nereid profile` and `nereid monitor`: a model version's reference profile, built from data it
 * was trained or validated on and stored beside it (`<model>/<version>/reference.json`), and the
 * out-of-distribution report of new data against it. The profile's detector scores the activations
 * of the tensor the classifier head reads (pooled per channel) by their Mahalanobis distance to the
 * nearest class, with the threshold set for a stated false-positive rate on held-out examples.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CompletedModelConfig } from '../config/model-config.js';
import { fitMahalanobis, MahalanobisScorer, pooledFeatures, thresholdForFalsePositiveRate, type Pooling } from '../monitoring/representation-ood.js';
import { readOnnxModel, type OnnxModel } from '../onnx/onnx-model-file.js';
import { exposingTensors } from '../quantize/calibration.js';
import { readCalibration, type Feed } from '../quantize/run-quantize.js';
import { createServer } from '../server/create-server.js';
import { VERSION } from '../version.js';

export const REFERENCE_PROFILE_FILE = 'reference.json';

const oodDetectorSchema = z.object({
  method: z.literal('mahalanobis'),
  tensor: z.string().min(1),
  pooling: z.enum(['spatial-mean', 'none']),
  classMeans: z.array(z.array(z.number())),
  precision: z.array(z.array(z.number())),
  threshold: z.number(),
  targetFalsePositiveRate: z.number(),
  heldOutFalsePositiveRate: z.number(),
});

export const referenceProfileSchema = z.object({
  format: z.literal(1),
  model: z.string(),
  version: z.string(),
  created: z.string(),
  nereid: z.string(),
  examples: z.number().int(),
  data: z.object({ path: z.string(), sha256: z.string() }),
  ood: oodDetectorSchema,
});

export type ReferenceProfile = z.infer<typeof referenceProfileSchema>;

/**
 * The tensor the classifier head reads, followed back through Flatten, Reshape and Dropout to where
 * it still has its channels and spatial positions (so it can be pooled per channel).
 */
export function representationTensor(model: OnnxModel, output: string): { tensor: string; pooling: Pooling } {
  const producer = new Map(model.graph.node.flatMap((node) => node.output.map((name) => [name, node] as const)));
  const initializers = new Set(model.graph.initializer.map((tensor) => tensor.name));
  let head = producer.get(output);
  while (head && !['Gemm', 'MatMul', 'Conv'].includes(head.op_type ?? '')) head = producer.get(head.input.find((name) => !initializers.has(name)) ?? '');
  if (!head) throw new Error(`no Gemm, MatMul or Conv produces output '${output}'; name the representation with --tensor`);
  let tensor = head.input[0];
  for (let node = producer.get(tensor); node && ['Flatten', 'Reshape', 'Dropout', 'Identity'].includes(node.op_type ?? ''); node = producer.get(tensor)) tensor = node.input[0];
  const flattened = tensor !== head.input[0];
  return { tensor, pooling: flattened ? 'spatial-mean' : 'none' };
}

/** One session over the model with the representation exposed: per example, its features and the output's scores. */
async function representations(model: OnnxModel, feeds: readonly Feed[], tensor: string, pooling: Pooling, output: string): Promise<{ features: Float64Array[]; predicted: number[] }> {
  const session = await ort.InferenceSession.create(exposingTensors(model, [tensor]), { graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const features: Float64Array[] = [];
  const predicted: number[] = [];
  try {
    for (const feed of feeds) {
      const results = await session.run(feed, [tensor, output]);
      const representation = results[tensor];
      features.push(pooledFeatures(representation.data as Float32Array, representation.dims.slice(1), pooling));
      const scores = results[output].data as Float32Array;
      let best = 0;
      for (let index = 1; index < scores.length; index++) if (scores[index] > scores[best]) best = index;
      predicted.push(best);
    }
  } finally {
    await session.release();
  }
  return { features, predicted };
}

interface LoadedVersion {
  config: CompletedModelConfig;
  version: string;
  classes: number;
  feeds: Feed[];
  sha256: string;
  modelPath: string;
}

/** The model's config, its served (or asked-for) version and the data read as its input tensors, through its own pre-processing. */
async function loadData(modelRepository: string, modelName: string, version: string | undefined, data: string, limit: number, logger: Logger): Promise<LoadedVersion> {
  const server = await createServer({ modelRepository, modelControlMode: 'explicit', loadModels: [], logger });
  try {
    await server.start();
    await server.loadModel(modelName);
    const model = server.model(modelName);
    const config = model.config;
    const chosen = version ?? model.version;
    const classes = model.labelsOf(config.output[0].name)?.length ?? config.output[0].dims.at(-1) ?? 0;
    const { feeds, sha256 } = await readCalibration(data, limit, server, modelName, config);
    return { config, version: chosen, classes, feeds, sha256, modelPath: join(modelRepository, modelName, chosen, config.default_model_filename ?? 'model.onnx') };
  } finally {
    await server.close();
  }
}

export const profileOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  version: z.string().regex(/^[1-9]\d*$/).optional(),
  /** In-distribution examples: images (through the model's pre-processing) or a JSONL/CSV of tensors. */
  data: z.string().min(1),
  /** Share of held-out in-distribution examples the OOD flag may raise. */
  falsePositiveRate: z.number().gt(0).lt(1).default(0.05),
  maxExamples: z.number().int().positive().default(5000),
  /** The representation scored; default: what the classifier head reads. */
  tensor: z.string().optional(),
});

export type ProfileOptions = z.input<typeof profileOptionsSchema>;

/** Fits the detector on 80 % of the examples, sets the threshold on half the rest and measures its false-positive rate on the other half. */
export async function runProfile(options: ProfileOptions, logger: Logger): Promise<ReferenceProfile & { path: string }> {
  const settings = profileOptionsSchema.parse(options);
  const loaded = await loadData(settings.modelRepository, settings.model, settings.version, settings.data, settings.maxExamples, logger);
  if (loaded.feeds.length < 50) throw new Error(`--data ${settings.data}: ${loaded.feeds.length} example(s); a profile needs at least 50`);
  const bytes = new Uint8Array(await readFile(loaded.modelPath));
  const model = readOnnxModel(bytes);
  const output = loaded.config.output[0].name;
  const { tensor, pooling } = settings.tensor ? { tensor: settings.tensor, pooling: 'spatial-mean' as const } : representationTensor(model, output);
  const { features, predicted } = await representations(model, loaded.feeds, tensor, pooling, output);
  const fitted = Math.floor(features.length * 0.8);
  const thresholdEnd = fitted + Math.floor((features.length - fitted) / 2);
  // The model's own predictions name the classes: profiles need no labels, and they describe what the model sees.
  const fit = fitMahalanobis(features.slice(0, fitted), predicted.slice(0, fitted), loaded.classes);
  const scorer = new MahalanobisScorer(fit);
  const threshold = thresholdForFalsePositiveRate(features.slice(fitted, thresholdEnd).map((vector) => scorer.score(vector)), settings.falsePositiveRate);
  const check = features.slice(thresholdEnd);
  const heldOutFalsePositiveRate = check.filter((vector) => scorer.score(vector) > threshold).length / check.length;
  const profile: ReferenceProfile = {
    format: 1,
    model: settings.model,
    version: loaded.version,
    created: new Date().toISOString(),
    nereid: VERSION,
    examples: features.length,
    data: { path: settings.data, sha256: loaded.sha256 },
    ood: { method: 'mahalanobis', tensor, pooling, ...fit, threshold, targetFalsePositiveRate: settings.falsePositiveRate, heldOutFalsePositiveRate },
  };
  const path = join(settings.modelRepository, settings.model, loaded.version, REFERENCE_PROFILE_FILE);
  await writeFile(path, `${JSON.stringify(profile)}\n`);
  return { ...profile, path };
}

/** Far above a real profile (a 64-feature detector is ~100 KB), far below a memory concern. */
const MAX_PROFILE_BYTES = 16 * 1024 * 1024;

export async function readReferenceProfile(path: string): Promise<ReferenceProfile> {
  const { size } = await stat(path).catch(() => {
    throw new Error(`${path} does not exist; build it with nereid profile`);
  });
  if (size > MAX_PROFILE_BYTES) throw new Error(`${path} is ${size} bytes; a reference profile is at most ${MAX_PROFILE_BYTES}`);
  const parsed = referenceProfileSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
  if (!parsed.success) throw new Error(`${path} is not a reference profile: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  return parsed.data;
}

export const monitorOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  version: z.string().regex(/^[1-9]\d*$/).optional(),
  data: z.string().min(1),
  maxExamples: z.number().int().positive().default(100_000),
});

export type MonitorOptions = z.input<typeof monitorOptionsSchema>;

export interface MonitorReport {
  model: string;
  version: string;
  examples: number;
  /** Examples whose score exceeds the profile's threshold. */
  outOfDistribution: number;
  share: number;
  threshold: number;
  /** Per example, in input order. */
  scores: number[];
}

/** Scores a batch of new data against the version's reference profile. */
export async function runMonitor(options: MonitorOptions, logger: Logger): Promise<MonitorReport> {
  const settings = monitorOptionsSchema.parse(options);
  const loaded = await loadData(settings.modelRepository, settings.model, settings.version, settings.data, settings.maxExamples, logger);
  const profile = await readReferenceProfile(join(settings.modelRepository, settings.model, loaded.version, REFERENCE_PROFILE_FILE));
  const bytes = new Uint8Array(await readFile(loaded.modelPath));
  const { features } = await representations(readOnnxModel(bytes), loaded.feeds, profile.ood.tensor, profile.ood.pooling, loaded.config.output[0].name);
  const scorer = new MahalanobisScorer(profile.ood);
  const scores = features.map((vector) => scorer.score(vector));
  const outOfDistribution = scores.filter((score) => score > profile.ood.threshold).length;
  return { model: settings.model, version: loaded.version, examples: scores.length, outOfDistribution, share: outOfDistribution / scores.length, threshold: profile.ood.threshold, scores };
}
