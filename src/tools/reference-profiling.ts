/**
 * `nereid profile` and `nereid monitor`: a model version's reference profile, built from data it
 * was trained or validated on and stored beside it (`<model>/<version>/reference.json`), and the
 * out-of-distribution report of new data against it. The profile's detector scores the activations
 * of the tensor the classifier head reads (pooled per channel) by their Mahalanobis distance to the
 * nearest class, with the threshold set for a stated false-positive rate on held-out examples.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import { monitoringSettingsOf, requireLabelsForEveryScore, type CompletedModelConfig } from '../config/model-config.js';
import {
  accuracyCaution,
  blankFloor,
  categoricalFeatureDrift,
  countedFeatures,
  expectedAccuracyAt,
  expectedCalibrationError,
  expectedOodShare,
  fitMahalanobis,
  imageProperties,
  imagePropertyFeatures,
  isBlankRow,
  isOutOfDistribution,
  MahalanobisScorer,
  DRIFT_LEVELS,
  driftJudgement,
  modelJudging,
  MIN_DRIFT_SAMPLES,
  numericFeatureDrift,
  psiBeyondChance,
  pooledFeatures,
  profileCommand,
  readReferenceProfile,
  readReferenceProfileIfPresent,
  REFERENCE_PROFILE_FILE,
  reliabilityBins,
  rowSpread,
  summariseFeature,
  summariseProbabilities,
  thresholdForFalsePositiveRate,
  worstLevel,
  type DriftLevel,
  type FeatureDrift,
  writeReferenceProfile,
  type Pooling,
  type ReferenceProfile,
} from '../monitoring/index.js';
import { exposingTensors, readOnnxModel, type OnnxModel } from '../onnx/onnx-model-file.js';
import { classOfName } from '../monitoring/class-names.js';
import { readModelInputs, type Feed } from '../jobs/model-inputs.js';
import { DEFAULT_POSTPROCESSING, rowProbabilities } from '../processing/output-postprocessor.js';
import { repositoryForHints } from '../repository/bundled-repository.js';
import { createCommandServer } from '../server/create-server.js';
import { requireOnnxRuntimeModel } from './onnx-runtime-model.js';
import { VERSION } from '../version.js';
import { profileOptionsSchema } from './profile-options.js';

export { profileOptionsSchema } from './profile-options.js';

/** Layers a classifier head is: float, or as `nereid quantize` rewrites them (dynamic int8 runs a MatMulInteger). */
const HEAD_OPS = ['Gemm', 'MatMul', 'Conv', 'MatMulInteger'];
/** Nodes between the representation and the head that change neither its values' meaning nor (but Flatten/Reshape) its shape, quantization's included. */
const PASS_THROUGH_OPS = ['Flatten', 'Reshape', 'Dropout', 'Identity', 'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'Cast'];
/**
 * The most values per example a representation may have after pooling: the profile keeps a square
 * matrix of them, and at ~20 bytes a number, 512² is about 5 MiB of the 8 MiB a profile may take.
 */
const MAX_REPRESENTATION_VALUES = 512;

/**
 * The tensor the classifier head reads, followed back through Flatten, Reshape and Dropout (and the
 * quantize/dequantize pairs of a quantized version) to where it still has its channels and spatial
 * positions (so it can be pooled per channel).
 */
export function representationTensor(model: OnnxModel, output: string): { tensor: string; pooling: Pooling } {
  const producer = new Map(model.graph.node.flatMap((node) => node.output.map((name) => [name, node] as const)));
  const initializers = new Set(model.graph.initializer.map((tensor) => tensor.name));
  let head = producer.get(output);
  while (head && !HEAD_OPS.includes(head.op_type ?? '')) head = producer.get(head.input.find((name) => !initializers.has(name)) ?? '');
  if (!head) throw new Error(`no Gemm, MatMul or Conv produces output '${output}'; name the representation with --tensor`);
  let tensor = head.input[0];
  let flattened = false;
  for (let node = producer.get(tensor); node && PASS_THROUGH_OPS.includes(node.op_type ?? ''); node = producer.get(tensor)) {
    flattened ||= node.op_type === 'Flatten' || node.op_type === 'Reshape';
    tensor = node.input[0];
  }
  // A quantized version keeps the representation on uint8 through its pooling: its dequantized copy (the float
  // original's name) holds the same values, and exposing it leaves the integer kernels around it fused.
  const readers = model.graph.node.filter((node) => node.input.includes(tensor));
  const quantized = readers.length === 1 && readers[0].op_type === 'QuantizeLinear' ? model.graph.node.filter((node) => node.input[0] === readers[0].output[0]) : [];
  if (quantized.length === 1 && quantized[0].op_type === 'DequantizeLinear') tensor = quantized[0].output[0];
  return { tensor, pooling: flattened ? 'spatial-mean' : 'none' };
}

/** A --tensor the graph does not have is named with the tensors it does have, before any session is built. */
function checkTensorName(model: OnnxModel, tensor: string): void {
  const names = new Set([...model.graph.input.map((input) => input.name), ...model.graph.node.flatMap((node) => node.output)]);
  if (names.has(tensor)) return;
  // A quantized version's node writes `<name>_float` and its QuantizeLinear → DequantizeLinear pair `<name>` again:
  // the name the float version has is the one to suggest.
  const asNamed = (name: string) => (name.endsWith('_float') && names.has(name.slice(0, -'_float'.length)) ? name.slice(0, -'_float'.length) : name);
  const pooled = model.graph.node
    .filter((node) => ['MaxPool', 'AveragePool', 'GlobalAveragePool', 'Relu', 'Conv'].includes(node.op_type ?? ''))
    .flatMap((node) => node.output.map(asNamed));
  throw new Error(`--tensor ${tensor}: the model has no such tensor${pooled.length ? `; the outputs of its pooling, ReLU and convolution nodes: ${pooled.slice(-8).join(', ')}` : ''}`);
}

/** What one example tells the monitors: its pooled representation, the model's scores for it, and its input's properties. */
interface Observations {
  features: Float64Array[];
  /** Per example, the classifier output's probabilities (the config's activation and temperature applied). */
  probabilities: Float64Array[];
  predicted: number[];
  /** Named per-example values compared by drift statistics: output confidence, entropy and margin, and image properties. */
  values: Record<string, number[]>;
}

/** One session over the model with the representation exposed, over every example. */
async function observe(model: OnnxModel, loaded: LoadedVersion, tensor: string, pooling: Pooling): Promise<Observations> {
  const output = loaded.config.output[0].name;
  const postprocess = loaded.config.output[0].postprocess ?? DEFAULT_POSTPROCESSING;
  const session = await ort.InferenceSession.create(exposingTensors(model, [tensor]), { graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const observed: Observations = { features: [], probabilities: [], predicted: [], values: { 'output.confidence': [], 'output.entropy': [], 'output.margin': [] } };
  try {
    for (const feed of loaded.feeds) {
      const results = await session.run(feed, [tensor, output]);
      const representation = results[tensor];
      const features = pooledFeatures(representation.data as Float32Array, representation.dims.slice(1), pooling);
      // Refused at the first example rather than after all of them, when the profile is written.
      if (features.length > MAX_REPRESENTATION_VALUES) {
        throw new Error(
          `the representation '${tensor}' has ${features.length} values per example${pooling === 'none' ? '' : ' after pooling'}, more than the ${MAX_REPRESENTATION_VALUES} a profile can keep; name a smaller tensor with --tensor (the output of a pooling or the last convolution)`,
        );
      }
      observed.features.push(features);
      const scores = results[output];
      const [probabilities] = rowProbabilities({ datatype: 'FP32', shape: scores.dims as number[], data: scores.data as Float32Array }, postprocess, true);
      const summary = summariseProbabilities(probabilities);
      observed.probabilities.push(probabilities);
      observed.predicted.push(summary.predicted);
      observed.values['output.confidence'].push(summary.confidence);
      observed.values['output.margin'].push(summary.margin);
      observed.values['output.entropy'].push(summary.entropy);
    }
  } finally {
    await session.release();
  }
  for (const image of loaded.images ?? []) {
    for (const [name, value] of Object.entries(imagePropertyFeatures(await imageProperties(image)))) (observed.values[name] ??= []).push(value);
  }
  return observed;
}

interface LoadedVersion {
  config: CompletedModelConfig;
  version: string;
  labels?: readonly string[];
  feeds: Feed[];
  ids: (string | number)[];
  images?: Buffer[];
  /** Each example's label column value, when the data have one (ModelInputs.labelValues). */
  labelValues?: unknown[];
  sha256: string;
  modelPath: string;
  unreadable: { id: string | number; reason: string }[];
}

/** The model's config, its served (or asked-for) version and the data read as its input tensors, through its own pre-processing. */
async function loadData(
  modelRepository: string,
  modelName: string,
  version: string | undefined,
  data: string,
  limit: number,
  logger: Logger,
  skipUnreadable = false,
): Promise<LoadedVersion> {
  // Monitoring off: profile reads no profile (it builds one), monitor reads its own, and the server's warning that the
  // version has none would say so before the one being built is written.
  const server = await createCommandServer({ modelRepository, logger, monitoring: false });
  try {
    await server.start();
    await requireOnnxRuntimeModel(server, modelName, "profiles and monitoring read a model's intermediate tensors from its ONNX file");
    // A named version loads even where the policy leaves it out; one without a folder is refused, naming those there are.
    if (version) await server.loadVersions(modelName, [version]);
    else await server.loadModel(modelName, {}, { everyVersion: false });
    const model = server.model(modelName, version);
    const config = model.config;
    const chosen = model.version;
    const labels = model.labelsOf(config.output[0].name);
    // Checked before the data are read: class shares and accuracy are counted by these labels.
    if (labels) requireLabelsForEveryScore(modelName, config.output[0], labels);
    const read = await readModelInputs(data, limit, server, modelName, config, '--data', skipUnreadable);
    return { config, version: chosen, labels, ...read, modelPath: join(modelRepository, modelName, chosen, config.default_model_filename ?? 'model.onnx') };
  } finally {
    await server.close();
  }
}

/**
 * Each example's true class: from the data's label column (a class name or index, as eval reads it) when it has one,
 * else from the class folder its image is in (named by label, '/' written '_', or by index); undefined unless every
 * example has one.
 */
function trueClasses(loaded: LoadedVersion): { classes: number[]; from: 'label column' | 'class folders' } | undefined {
  if (!loaded.labels) return undefined;
  const classOf = classOfName(loaded.labels);
  const classes = loaded.labelValues
    ? loaded.labelValues.map((value) => (typeof value === 'number' ? classOf(String(value)) : typeof value === 'string' ? classOf(value) : undefined))
    : loaded.images
      ? loaded.ids.map((id) => classOf(String(id).split('/').slice(0, -1).join('/')))
      : [];
  if (classes.length === 0 || !classes.every((cls) => cls !== undefined)) return undefined;
  return { classes: classes as number[], from: loaded.labelValues ? 'label column' : 'class folders' };
}

const shares = (classes: readonly number[], names: readonly string[]): Record<string, number> => {
  const counts = new Array<number>(names.length).fill(0);
  for (const cls of classes) counts[cls] += 1;
  return Object.fromEntries(names.map((name, index) => [name, counts[index] / classes.length]));
};

/** 0 … count−1 in an order fixed by a seed (Fisher–Yates over a 32-bit LCG), so a profile is the same each time it is built from the same data. */
function shuffledIndices(count: number): number[] {
  const indices = Array.from({ length: count }, (_, index) => index);
  let state = 0x9e3779b9;
  for (let index = count - 1; index > 0; index--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const other = state % (index + 1);
    [indices[index], indices[other]] = [indices[other], indices[index]];
  }
  return indices;
}

export type ProfileOptions = z.input<typeof profileOptionsSchema>;

/**
 * Fits the detector on 80 % of the examples (a fixed shuffle of them), sets the threshold on half the
 * rest and measures its false-positive rate on the other half; summarises every monitored value over
 * all examples.
 */
/** Fitted examples per feature below which the detector's covariance is a poor estimate (a common rule of thumb for a covariance: ten per dimension). */
export const FIT_EXAMPLES_PER_FEATURE = 10;
/**
 * Held-out examples the target false-positive rate should flag at least this many of for the measured rate to mean
 * something (the usual n·p ≥ 5 for a binomial share; at 5 %, 100 examples, a profile of 1,000): fewer, and one
 * example more or less flagged moves it by points.
 */
export const MIN_EXPECTED_HELD_OUT_FLAGS = 5;

/** What a profile of `examples` split as runProfile splits them is too small for; empty when it is large enough. */
export function profileSizeWarnings(examples: number, features: number, falsePositiveRate: number): string[] {
  const fitted = Math.floor(examples * 0.8);
  const checked = examples - fitted - Math.floor((examples - fitted) / 2);
  const warnings: string[] = [];
  if (fitted < FIT_EXAMPLES_PER_FEATURE * features) {
    warnings.push(
      `the OOD detector was fitted on ${fitted} examples for ${features} features: its covariance wants at least ${FIT_EXAMPLES_PER_FEATURE * features} (${FIT_EXAMPLES_PER_FEATURE} per feature), so its scores and threshold are unreliable; give more --data (about ${Math.ceil((FIT_EXAMPLES_PER_FEATURE * features) / 0.8)} examples)`,
    );
  }
  if (checked * falsePositiveRate < MIN_EXPECTED_HELD_OUT_FLAGS) {
    const needed = Math.ceil(MIN_EXPECTED_HELD_OUT_FLAGS / falsePositiveRate);
    warnings.push(
      `the false-positive rate was measured on ${checked} held-out examples, where ${(falsePositiveRate * 100).toFixed(1)} % is ${(checked * falsePositiveRate).toFixed(1)} of them: too few for the measured rate to mean much; give at least ${needed * 10} examples (${needed} held out)`,
    );
  }
  return warnings;
}

/** The profile a run of profile replaced: when it was built and from how many examples; `unreadable`: why it could not be read instead. */
export type ReplacedProfile = { created: string; examples: number; data: string } | { unreadable: string };

export async function runProfile(options: ProfileOptions, logger: Logger): Promise<ReferenceProfile & { path: string; warnings: string[]; replaced?: ReplacedProfile }> {
  const settings = profileOptionsSchema.parse(options);
  const loaded = await loadData(settings.modelRepository, settings.model, settings.version, settings.data, settings.maxExamples, logger);
  if (loaded.feeds.length < 50) throw new Error(`--data ${settings.data}: ${loaded.feeds.length} example(s); a profile needs at least 50`);
  const model = readOnnxModel(new Uint8Array(await readFile(loaded.modelPath)));
  if (settings.tensor) checkTensorName(model, settings.tensor);
  const { tensor, pooling } = settings.tensor ? { tensor: settings.tensor, pooling: 'spatial-mean' as const } : representationTensor(model, loaded.config.output[0].name);
  logger.info({ tensor, pooling, version: loaded.version }, 'profiling the representation the classifier head reads');
  const observed = await observe(model, loaded, tensor, pooling);
  const { predicted } = observed;
  const classCount = observed.probabilities[0].length;
  // Folders list their images class by class: the three parts are drawn from a fixed shuffle, so each holds every class.
  const order = shuffledIndices(observed.features.length);
  const features = order.map((index) => observed.features[index]);
  const fitted = Math.floor(features.length * 0.8);
  const thresholdEnd = fitted + Math.floor((features.length - fitted) / 2);
  // The model's own predictions name the classes: profiles need no labels, and they describe what the model sees.
  const fit = fitMahalanobis(features.slice(0, fitted), order.slice(0, fitted).map((index) => predicted[index]), classCount);
  const scorer = new MahalanobisScorer(fit);
  const threshold = thresholdForFalsePositiveRate(features.slice(fitted, thresholdEnd).map((vector) => scorer.score(vector)), settings.falsePositiveRate);
  const checkScores = features.slice(thresholdEnd).map((vector) => scorer.score(vector));
  const heldOutFalsePositiveRate = checkScores.filter((score) => score > threshold).length / checkScores.length;
  // Kept (sorted, sampled as a feature's values are) so that a served threshold other than this one can say what it flags.
  const heldOutScores = summariseFeature(checkScores).sample;
  // How flat the flattest profiled image was, as the model is given it: what a blank input is told by (see blankFloor).
  const imageInput = loaded.config.input.find((input) => input.preprocess?.image)?.name;
  const spreads = imageInput === undefined ? [] : loaded.feeds.flatMap((feed) => (feed[imageInput] ? [rowSpread(feed[imageInput].data as Float32Array)] : []));
  const leastInputSpread = spreads.length > 0 ? spreads.reduce((least, spread) => Math.min(least, spread)) : undefined;
  const truth = trueClasses(loaded)?.classes;
  const confidences = observed.values['output.confidence'];
  const names = loaded.labels ?? Array.from({ length: classCount }, (_, index) => String(index));
  const profile: ReferenceProfile = {
    format: 1,
    provenance: {
      created: new Date().toISOString(),
      model: settings.model,
      modelVersion: loaded.version,
      nereidVersion: VERSION,
      data: { source: settings.data, digest: `sha256:${loaded.sha256}`, examples: features.length },
    },
    features: Object.fromEntries(Object.entries(observed.values).map(([name, values]) => [name, summariseFeature(values)])),
    classShares: shares(predicted, names),
    ood: { method: 'mahalanobis', tensor, pooling, ...fit, threshold, targetFalsePositiveRate: settings.falsePositiveRate, heldOutFalsePositiveRate, heldOutScores, ...(leastInputSpread !== undefined && { leastInputSpread }) },
  };
  if (truth) {
    const correct = predicted.map((cls, index) => cls === truth[index]);
    profile.calibration = { examples: correct.length, bins: reliabilityBins(confidences, correct), ece: expectedCalibrationError(confidences, correct) ?? 0 };
  }
  const path = join(settings.modelRepository, settings.model, loaded.version, REFERENCE_PROFILE_FILE);
  // A profile already there is replaced (as documented), and said, so that one built on other data is not lost unsaid.
  const previous = await readReferenceProfileIfPresent(path).then(
    (found): ReplacedProfile | undefined => found && { created: found.provenance.created, examples: found.provenance.data.examples, data: found.provenance.data.source },
    (error: Error): ReplacedProfile => ({ unreadable: error.message }),
  );
  await writeReferenceProfile(path, profile);
  // Written all the same (a small profile can still serve a trial), but said: the caller prints them.
  return { ...profile, path, warnings: profileSizeWarnings(features.length, fit.precision.length, settings.falsePositiveRate), ...(previous ? { replaced: previous } : {}) };
}

export const monitorOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  version: z.string().regex(/^[1-9]\d*$/).optional(),
  data: z.string().min(1),
  /** A profile file to compare with; default: the version's own. */
  reference: z.string().min(1).optional(),
  maxExamples: z.number().int().positive().default(100_000),
});

export type MonitorOptions = z.input<typeof monitorOptionsSchema>;

export interface MonitorReport {
  model: string;
  version: string;
  examples: number;
  /** Examples whose OOD score exceeds the threshold (the model config's monitoring.ood.threshold, else the profile's), or blank. */
  outOfDistribution: number;
  share: number;
  threshold: number;
  /** Per example, in input order. */
  scores: number[];
  /** Per monitored value, most drifted first. */
  features: FeatureDrift[];
  /** Jensen–Shannon divergence (bits) of the predicted classes' shares from the reference's. */
  classShares?: { divergence: number; psi: number; level: DriftLevel; current: Record<string, number> };
  /**
   * The worst level of any feature or of the class shares; with fewer than MIN_DRIFT_SAMPLES examples, only of the
   * features whose KS D is beyond what chance gives at that count (`insufficient_data` when none is).
   */
  state: DriftLevel | 'insufficient_data';
  /** Accuracy expected from the reference's calibration (each prediction counts as its confidence bin's accuracy on the reference); needs a profile built on labelled data. */
  expectedAccuracy?: number;
  /** Why expectedAccuracy is not to be trusted, when the state is not ok (the server's /monitor gives the same). */
  accuracyCaution?: string;
  /** With class folders in --data, or a label column: the accuracy actually reached. */
  realisedAccuracy?: number;
  /** What gave the true classes realisedAccuracy is counted against. */
  realisedAccuracyFrom?: 'label column' | 'class folders';
  /** Why there is no realisedAccuracy although some images are in class folders: the folders that name no class. */
  realisedAccuracyNote?: string;
  /** Files of --data left out because they could not be read or decoded. */
  unreadable: { id: string | number; reason: string }[];
}

/**
 * The verdict over the features' levels. A few examples score high by chance (PSI's no-drift noise is ≈ 21.7/m over
 * 10 bins): below MIN_DRIFT_SAMPLES a feature counts only when its KS D passes the 1 % critical value for m values
 * (≈ 1.63/√m), and when none does, the data say nothing either way.
 */
function stateOf(features: readonly FeatureDrift[], examples: number): DriftLevel | 'insufficient_data' {
  const counted = countedFeatures(features);
  if (examples >= MIN_DRIFT_SAMPLES) return worstLevel(counted.map((feature) => feature.level));
  const beyondChance = counted.filter((feature) => feature.ks !== undefined && feature.ks >= 1.63 / Math.sqrt(examples) && feature.level !== 'ok');
  return beyondChance.length > 0 ? worstLevel(beyondChance.map((feature) => feature.level)) : 'insufficient_data';
}

/** Scores a batch of new data against the version's reference profile: out-of-distribution examples, drift of every monitored value, and accuracy. */
export async function runMonitor(options: MonitorOptions, logger: Logger): Promise<MonitorReport> {
  const settings = monitorOptionsSchema.parse(options);
  // New data is what it is: a file that does not decode is listed, not a reason to score none of the others.
  const loaded = await loadData(settings.modelRepository, settings.model, settings.version, settings.data, settings.maxExamples, logger, true);
  if (loaded.feeds.length === 0) {
    if (loaded.unreadable.length === 0) throw new Error(`--data ${settings.data} holds no examples to score`);
    const shown = loaded.unreadable.slice(0, 3).map((file) => `${file.id} (${file.reason})`).join('; ');
    throw new Error(`--data ${settings.data}: none of its ${loaded.unreadable.length} file(s) could be read: ${shown}`);
  }
  const profile = settings.reference
    ? await readReferenceProfile(settings.reference)
    : await readReferenceProfileIfPresent(join(settings.modelRepository, settings.model, loaded.version, REFERENCE_PROFILE_FILE));
  if (!profile || !profile.ood) {
    const command = profileCommand(settings.model, loaded.version, await repositoryForHints(settings.modelRepository));
    if (!profile) throw new Error(`'${settings.model}' version ${loaded.version} has no reference profile (${REFERENCE_PROFILE_FILE}); build one with ${command}`);
    throw new Error(`the reference profile of '${settings.model}' version ${loaded.version} has no OOD detector; rebuild it with ${command}`);
  }
  // The model's own settings (its config's monitoring), as the server judges with them.
  const judging = modelJudging(profile, monitoringSettingsOf(loaded.config), loaded.version);
  const threshold = judging.oodThreshold!;
  const judgement = driftJudgement(judging.monitor.drift!.thresholds!, judging.monitor.drift!.ignoreFeatures!);
  const observed = await observe(readOnnxModel(new Uint8Array(await readFile(loaded.modelPath))), loaded, profile.ood.tensor, profile.ood.pooling);
  const scorer = new MahalanobisScorer(profile.ood);
  const scores = observed.features.map((vector) => scorer.score(vector));
  // As the server judges: a blank or near-blank image is out of distribution whatever its score when the reference held none.
  const floor = blankFloor(profile);
  const imageInput = floor === undefined ? undefined : loaded.config.input.find((input) => input.preprocess?.image)?.name;
  const blank = loaded.feeds.map((feed) => imageInput !== undefined && feed[imageInput] !== undefined && isBlankRow(feed[imageInput].data as Float32Array, floor));
  const outOfDistribution = scores.filter((score, index) => isOutOfDistribution(score, threshold, blank[index])).length;
  const expected = judging.monitor.ood?.expectedShare ?? expectedOodShare(profile);
  // The worst level first (a row's level is the worse of its PSI and KS verdicts), then the most drifted by PSI.
  const features = [
    ...Object.entries(observed.values)
      .filter(([name, values]) => profile.features[name] && values.length > 0)
      .map(([name, values]) => numericFeatureDrift(name, profile.features[name], values, judgement)),
    // The share flagged against the share the detector flags in distribution, as the server's window counts it.
    categoricalFeatureDrift('ood.flagged', [1 - expected, expected], [scores.length - outOfDistribution, outOfDistribution], {}, judgement),
  ].sort((a, b) => DRIFT_LEVELS.indexOf(b.level) - DRIFT_LEVELS.indexOf(a.level) || psiBeyondChance(b) - psiBeyondChance(a));
  const report: MonitorReport = {
    model: settings.model,
    version: loaded.version,
    examples: scores.length,
    outOfDistribution,
    share: outOfDistribution / scores.length,
    threshold,
    scores,
    features,
    state: stateOf(features, scores.length),
    unreadable: loaded.unreadable,
  };
  if (profile.classShares) {
    const names = Object.keys(profile.classShares);
    const current = shares(observed.predicted, names);
    const drift = categoricalFeatureDrift('output.class', names.map((name) => profile.classShares![name]), names.map((name) => current[name]), {
      current: observed.predicted.length,
      reference: profile.provenance.data.examples,
    }, judgement);
    report.classShares = { divergence: drift.jensenShannon!, psi: drift.psi, level: drift.level, current };
    // The class shares have no significance test here: below MIN_DRIFT_SAMPLES they do not move the state (see stateOf).
    if (scores.length >= MIN_DRIFT_SAMPLES && !drift.informational) report.state = worstLevel([report.state as DriftLevel, drift.level]);
  }
  if (profile.calibration) {
    const calibration = profile.calibration;
    const expected = observed.values['output.confidence'].map((confidence) => expectedAccuracyAt(calibration, confidence));
    report.expectedAccuracy = expected.reduce((sum, value) => sum + value, 0) / expected.length;
    const caution = accuracyCaution(report.state);
    if (caution) report.accuracyCaution = caution;
  }
  const truth = trueClasses(loaded);
  if (truth) {
    report.realisedAccuracy = observed.predicted.filter((cls, index) => cls === truth.classes[index]).length / truth.classes.length;
    report.realisedAccuracyFrom = truth.from;
  } else if (loaded.labelValues && loaded.labels) {
    const classOf = classOfName(loaded.labels);
    const unknown = [...new Set(loaded.labelValues.filter((value) => classOf(String(value ?? '')) === undefined).map((value) => JSON.stringify(value ?? null)))];
    report.realisedAccuracyNote = `no realised accuracy: the label column holds ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}, which ${unknown.length === 1 ? 'names' : 'name'} no class of the model (a label or an index 0..${loaded.labels.length - 1}); every example must have one for it`;
  } else {
    const strays = foldersNamingNoClass(loaded);
    if (strays.length > 0) {
      report.realisedAccuracyNote = `no realised accuracy: ${strays.length === 1 ? 'the folder' : 'the folders'} ${strays.slice(0, 5).map((folder) => `'${folder}'`).join(', ')}${strays.length > 5 ? ', …' : ''} ${strays.length === 1 ? 'names' : 'name'} no class of the model (its classes: ${loaded.labels!.slice(0, 10).join(', ')}${loaded.labels!.length > 10 ? ', …' : ''}); every image must be in a class folder for it`;
    }
  }
  return report;
}

/** Where some images are in class folders and others are not: the folders (or '.' for the top) whose name is no class. */
function foldersNamingNoClass(loaded: LoadedVersion): string[] {
  if (!loaded.images || !loaded.labels) return [];
  const classOf = classOfName(loaded.labels);
  const folders = [...new Set(loaded.ids.map((id) => String(id).split('/').slice(0, -1).join('/')))];
  const strays = folders.filter((folder) => classOf(folder) === undefined);
  return strays.length < folders.length ? strays.map((folder) => folder || '.') : [];
}
