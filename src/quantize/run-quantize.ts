/**
 * `nereid quantize`: a model version of the repository made smaller — static int8 (QDQ) from
 * calibration data, dynamic int8 for its MatMuls, fp16 weights, or `auto`, which quantizes
 * statically and keeps in float the nodes that cost most agreement until a gate holds — and written
 * as a new version beside it, with what was done and measured in quantization.json: the
 * calibration set's digest and size, the nodes quantized and left float, sizes, and agreement and
 * speed against the source version on calibration examples held out from the ranges.
 */
import { chmod, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CompletedModelConfig } from '../config/model-config.js';
import { GATE_METRICS, judgeGate, parseGate, type GateClause, type GateMetric, type GateVerdict } from '../eval/accuracy-gate.js';
import { compareOutputs, outputKindOf, type AgreementReport, type ExampleOutput } from '../eval/output-comparison.js';
import { agreementFigures } from '../eval/run-eval.js';
import { readModelInputs, type Feed, type ModelInputs } from '../jobs/model-inputs.js';
import { constantsToInitializers, readOnnxModel, writeOnnxModel, type OnnxModel } from '../onnx/onnx-model-file.js';
import { upgradeOpset, type OpsetUpgrade } from '../onnx/opset-upgrade.js';
import { versionFolders } from '../repository/repository-layout.js';
import { modelVersionsOnDisk } from '../repository/model-versions.js';
import { QUANTIZATION_RECORD_FILE } from '../repository/quantization-record.js';
import type { ModelVersion } from '../model/model-version.js';
import { createCommandServer } from '../server/create-server.js';
import { requireOnnxRuntimeModel } from '../tools/onnx-runtime-model.js';
import type { Server } from '../server/server.js';
import { foldAffineIntoConv } from './affine-folding.js';
import { calibrate, type Calibration } from './calibration.js';
import { quantizeDynamicMatMul } from './dynamic-int8.js';
import { storeWeightsAsFp16 } from './fp16-weights.js';
import { nodeLabel, type NodeRewrite } from './graph-rewriting.js';
import { biasCorrectable, quantizeStaticQdq } from './static-qdq.js';
import { DEFAULT_GATES, quantizeOptionsSchema } from './quantize-options.js';

export { DEFAULT_GATES, quantizeOptionsSchema } from './quantize-options.js';

export type QuantizeOptions = z.input<typeof quantizeOptionsSchema>;


/**
 * The model ready to rewrite: Constant nodes as initializers (Paddle exports keep weights in them),
 * opset raised to 13 (per-channel DequantizeLinear), and BatchNormalization folded into convolutions
 * by ONNX Runtime at level basic (saved with optimizedModelFilePath; still portable ONNX), then constant
 * scales and shifts after convolutions folded into them.
 */
async function normalised(source: Uint8Array, feeds: readonly Feed[], output: string): Promise<{ bytes: Uint8Array; opset: OpsetUpgrade }> {
  const model = readOnnxModel(source);
  constantsToInitializers(model);
  const opset = upgradeOpset(model, 13);
  const dir = await mkdtemp(join(tmpdir(), 'nereid-quantize-'));
  let bytes: Uint8Array;
  try {
    const optimizedModelFilePath = join(dir, 'basic.onnx');
    const session = await ort.InferenceSession.create(writeOnnxModel(model), { graphOptimizationLevel: 'basic', optimizedModelFilePath, logSeverityLevel: 3 });
    await session.release();
    const optimized = new Uint8Array(await readFile(optimizedModelFilePath));
    const folded = readOnnxModel(optimized);
    bytes = foldAffineIntoConv(folded) > 0 ? writeOnnxModel(folded) : optimized;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // Raising the opset changes what Softmax computes unless its axis is the last; folding only rounds differently.
  const compared = feeds.slice(0, 2);
  const before = await outputsOf(source, compared, output);
  const after = await outputsOf(bytes, compared, output);
  for (const [index, expected] of before.entries()) {
    const actual = after[index].data;
    const scale = expected.data.reduce((largest, value) => Math.max(largest, Math.abs(value)), 1e-6);
    const delta = expected.data.reduce((largest, value, at) => Math.max(largest, Math.abs(value - actual[at])), 0);
    if (!(delta <= 1e-3 * scale)) throw new Error(`normalising the model (opset 13, BatchNormalization folded) changed its output by ${delta} (of values up to ${scale}); it cannot be quantized safely`);
  }
  return { bytes, opset };
}

/** A model's output for each feed, one untimed run each: what a comparison needs when no speed is asked. */
async function outputsOf(model: Uint8Array, feeds: readonly Feed[], output: string): Promise<ExampleOutput[]> {
  const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  try {
    const outputs: ExampleOutput[] = [];
    for (const feed of feeds) {
      const tensor = (await session.run(feed, [output]))[output];
      outputs.push({ data: tensor.data as Float32Array, dims: tensor.dims.slice(1) });
    }
    return outputs;
  } finally {
    await session.release();
  }
}

export interface SideBySideRun {
  outputs: ExampleOutput[];
  /** The median milliseconds per example at batch 1, over every timed pass. */
  msPerExample: number;
  /** Timed passes over the feeds: one for a model slow enough to fill a second with it, up to ten for a fast one. */
  passes: number;
}

/** Passes over the feeds are timed until a second has gone, at least one and at most this many. */
const MAX_TIMED_PASSES = 10;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Models over the same feeds with sessions open side by side, alternating per feed (and which goes
 * first) so that the machine's drift affects each alike: outputs, and the median milliseconds per
 * example at batch 1, timed after three warm-up runs. A fast model's pass takes a few
 * milliseconds, where one scheduling hiccup or collection decides a sum: its passes are repeated
 * until a second has gone, and the median ignores the hiccups. Level all: ONNX Runtime's fusions,
 * the integer kernels included.
 */
export async function runSideBySide(models: readonly Uint8Array[], feeds: readonly Feed[], output: string, options: { intraOpNumThreads: number }): Promise<SideBySideRun[]> {
  const sessions: ort.InferenceSession[] = [];
  try {
    for (const bytes of models) sessions.push(await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all', intraOpNumThreads: options.intraOpNumThreads, logSeverityLevel: 3 }));
    for (const session of sessions) for (const feed of feeds.slice(0, 3)) await session.run(feed);
    const runs = sessions.map(() => ({ outputs: [] as ExampleOutput[], timings: [] as number[] }));
    const started = performance.now();
    let passes = 0;
    while (passes === 0 || (performance.now() - started < 1000 && passes < MAX_TIMED_PASSES)) {
      for (const [feedIndex, feed] of feeds.entries()) {
        const order = [...sessions.keys()];
        if ((feedIndex + passes) % 2 === 1) order.reverse();
        for (const index of order) {
          const runStarted = performance.now();
          const tensor = (await sessions[index].run(feed, [output]))[output];
          runs[index].timings.push(performance.now() - runStarted);
          if (passes === 0) runs[index].outputs.push({ data: tensor.data as Float32Array, dims: tensor.dims.slice(1) });
        }
      }
      passes++;
    }
    return runs.map((run) => ({ outputs: run.outputs, msPerExample: median(run.timings), passes }));
  } finally {
    for (const session of sessions) await session.release();
  }
}

export interface QuantizeReport {
  model: string;
  sourceVersion: string;
  /** Absent when no version was written (auto kept float, or the gate failed). */
  outputVersion?: string;
  path?: string;
  method: 'static' | 'dynamic' | 'fp16' | 'auto';
  /** What was done: the method that made the version, or why none was written. */
  decision: { written: boolean; reason: string };
  calibration: { examples: number; heldOut: number; sha256: string; ranges?: string; biasCorrection?: boolean };
  /** The source's opset and what raising it to 13 rewrote. */
  opset: OpsetUpgrade;
  quantizedNodes: string[];
  floatNodes: { node: string; reason: string }[];
  sizes: { sourceBytes: number; quantizedBytes: number; ratio: number };
  /** On the held-out examples, of the model's first output (before any activation the config declares), by its kind. */
  agreement: AgreementReport;
  gate: GateVerdict & { spec: string };
  /** Batch 1, one intra-op thread, the two sessions alternated. */
  msPerExample: { source: number; quantized: number; speedup: number };
  /** auto: each count of the costliest nodes tried in float, in the order tried (doubling, then halving back), and how it fared; the version keeps the fewest that passed. */
  search?: { floatNodes: number; agreement: number; passed: boolean }[];
}

interface Candidate {
  bytes: Uint8Array;
  result: NodeRewrite;
}

/** The normalised model rewritten by one of the methods that need no calibration. */
function uncalibratedCandidate(base: Uint8Array, method: 'dynamic' | 'fp16', keepFloat: ReadonlySet<string>): Candidate {
  const model = readOnnxModel(base);
  let result: NodeRewrite;
  if (method === 'dynamic') result = quantizeDynamicMatMul(model, keepFloat);
  else {
    const converted = storeWeightsAsFp16(model, keepFloat);
    result = { quantized: converted.converted, skipped: converted.skipped.map(({ tensor, reason }) => ({ node: tensor, reason })) };
  }
  return { bytes: writeOnnxModel(model), result };
}

const KEPT_FLOAT_REASON = 'kept float by --keep-float';

/**
 * The --keep-float names as nodes of the model quantize rewrites (after its normalisation, whose node names stay
 * those of the file): a misspelt name would otherwise keep nothing float without a word.
 */
function keptFloatNodes(base: Uint8Array, names: readonly string[], model: string, version: string): ReadonlySet<string> {
  if (names.length === 0) return new Set();
  const nodes = readOnnxModel(base).graph.node;
  const labels = new Set(nodes.map((node, index) => nodeLabel(node, index)));
  const unknown = names.filter((name) => !labels.has(name));
  if (unknown.length > 0) {
    const rewritable = nodes.flatMap((node, index) => (['Conv', 'MatMul', 'Gemm'].includes(node.op_type ?? '') ? [nodeLabel(node, index)] : []));
    const shown = rewritable.length > 20 ? `${rewritable.slice(0, 20).join(', ')} … and ${rewritable.length - 20} more` : rewritable.join(', ');
    throw new Error(`--keep-float ${unknown.map((name) => `'${name}'`).join(', ')}: no such node in '${model}' version ${version}; its Conv, MatMul and Gemm nodes: ${shown || 'none'}`);
  }
  return new Set(names);
}

/** The figures a comparison of two versions' outputs yields (see agreementFigures): labels are not read. */
const QUANTIZE_GATE_METRICS: readonly GateMetric[] = (Object.keys(GATE_METRICS) as GateMetric[]).filter((metric) => metric in agreementFigures(undefined));

/** A gate quantize could never pass is refused before any work: its figures compare outputs and read no labels. */
function measurableGate(spec: string): GateClause[] {
  const gate = parseGate(spec);
  const unmeasurable = gate.filter((clause) => !QUANTIZE_GATE_METRICS.includes(clause.metric));
  if (unmeasurable.length > 0) {
    throw new Error(`--gate ${unmeasurable.map((clause) => `'${clause.text}'`).join(', ')}: quantize compares the new version with its source on held-out examples and reads no labels, so it measures only ${QUANTIZE_GATE_METRICS.join(', ')}; judge accuracy afterwards with nereid eval --gate`);
  }
  return gate;
}

/**
 * Every n-th example held out rather than the last ones: data read from class folders comes class by
 * class, and a tail would judge the gate on the last classes alone, which calibration never saw.
 */
export function splitHeldOut<T>(examples: readonly T[], heldOut: number): { calibrationFeeds: T[]; evaluationFeeds: T[] } {
  const calibrationFeeds: T[] = [];
  const evaluationFeeds: T[] = [];
  examples.forEach((example, index) => {
    const isHeldOut = Math.floor(((index + 1) * heldOut) / examples.length) > Math.floor((index * heldOut) / examples.length);
    (isHeldOut ? evaluationFeeds : calibrationFeeds).push(example);
  });
  return { calibrationFeeds, evaluationFeeds };
}

const DECISIONS: Readonly<Record<QuantizeReport['method'], (result: NodeRewrite) => string>> = {
  static: () => 'static int8 (QDQ)',
  auto: (result) => `static int8 (QDQ) with ${result.skipped.filter((entry) => entry.reason === 'excluded').length} node(s) kept float by the search`,
  dynamic: () => 'dynamic int8 MatMuls (activations quantized per batch at run time)',
  fp16: () => 'fp16 weights (computed in float32)',
};

/**
 * Without --version, the newest version served that is not itself quantized: under a policy serving
 * several (`all`, `latest: 2`), the newest is often the int8 version an earlier run wrote, and
 * quantizing its float source again is what is meant. When every version served is quantized, the
 * newest (which the caller refuses, naming its source).
 */
async function newestFloatServed(server: Server, name: string): Promise<ModelVersion> {
  const listed = (await server.modelList()).models.find((model) => model.name === name)?.versions ?? [];
  const served = listed.map((version) => server.model(name, version)).sort((a, b) => Number(b.version) - Number(a.version));
  return served.find((version) => !version.quantization) ?? server.model(name);
}

/**
 * `onPhase` hears each step as it starts: a recogniser's run takes minutes on a busy machine, and a command silent
 * that long looks hung.
 */
export async function runQuantize(options: QuantizeOptions, logger: Logger, onPhase: (phase: string) => void = () => {}): Promise<QuantizeReport> {
  const settings = quantizeOptionsSchema.parse(options);
  if (settings.gate !== undefined) measurableGate(settings.gate);
  const modelDir = join(settings.modelRepository, settings.model);
  const versions = await modelVersionsOnDisk(settings.modelRepository, settings.model);
  if (settings.version !== undefined && !versions.includes(Number(settings.version))) throw new Error(`model '${settings.model}' has no version ${settings.version} in ${settings.modelRepository}`);
  const outputVersion = settings.outputVersion ?? String((versions.at(-1) ?? 0) + 1);
  if (versions.includes(Number(outputVersion))) throw new Error(`version ${outputVersion} of '${settings.model}' exists already; choose another --output-version`);

  // The version quantized (by default the one served) decides the pre-processing, the output judged and what it means.
  const server = await createCommandServer({ modelRepository: settings.modelRepository, logger, monitoring: false });
  let config: CompletedModelConfig;
  let labels: readonly string[] | undefined;
  let calibration: ModelInputs;
  let sourceVersion: string;
  try {
    await server.start();
    // Before loading: a model of another backend has no ONNX file to rewrite, and a code model would run its code.
    await requireOnnxRuntimeModel(server, settings.model, 'quantize rewrites ONNX files');
    // The version named is loaded alone: another one, broken or not, is no part of the run.
    if (settings.version !== undefined) await server.loadVersions(settings.model, [settings.version]);
    else await server.loadModel(settings.model, {}, { everyVersion: false });
    const model = settings.version !== undefined ? server.model(settings.model, settings.version) : await newestFloatServed(server, settings.model);
    sourceVersion = model.version;
    if (model.quantization) {
      const chosen = settings.version !== undefined ? '' : ', and its version policy serves no float version';
      throw new Error(`version ${sourceVersion} of '${settings.model}' is already quantized (${model.quantization.description}, from version ${model.quantization.sourceVersion})${chosen}; quantize the float version it came from: --version ${model.quantization.sourceVersion}`);
    }
    config = model.config;
    labels = model.labelsOf(config.output[0].name);
    onPhase(`reading up to ${settings.maxExamples} examples from ${settings.calibration} (version ${sourceVersion}'s pre-processing)`);
    calibration = await readModelInputs(settings.calibration, settings.maxExamples, server, settings.model, config, '--calibration');
  } finally {
    await server.close();
  }
  const { feeds } = calibration;
  if (feeds.length < 5) throw new Error(`--calibration ${settings.calibration}: ${feeds.length} example(s); calibration needs at least 5`);
  const output = config.output[0].name;
  const kind = settings.kind ?? outputKindOf({ dims: config.output[0].dims, labelled: labels !== undefined });
  const gateSpec = settings.gate ?? DEFAULT_GATES[kind];
  const gate = measurableGate(gateSpec);
  const heldOut = Math.max(1, Math.round(feeds.length * settings.holdOut));
  if (heldOut < settings.minGateExamples) {
    throw new Error(
      `--calibration ${settings.calibration}: ${feeds.length} example(s) hold out ${heldOut} to judge the gate on, fewer than the ${settings.minGateExamples} it needs for its figures to mean anything; ` +
        `give at least ${Math.ceil(settings.minGateExamples / settings.holdOut)} examples (and --max-examples), raise --hold-out, or lower --min-gate-examples knowingly`,
    );
  }
  const { calibrationFeeds, evaluationFeeds } = splitHeldOut(feeds, heldOut);
  if (calibrationFeeds.length < 5) {
    throw new Error(`--hold-out ${settings.holdOut}: of ${feeds.length} example(s) it leaves ${calibrationFeeds.length} to calibrate on; calibration needs at least 5: lower --hold-out or give more examples`);
  }
  const compare = (reference: readonly ExampleOutput[], candidate: readonly ExampleOutput[]) => compareOutputs(kind, reference, candidate, { labels, threshold: settings.threshold });

  const fileName = config.default_model_filename ?? 'model.onnx';
  const source = new Uint8Array(await readFile(join(modelDir, sourceVersion, fileName)));
  onPhase(`${feeds.length} examples: ${calibrationFeeds.length} to calibrate on, ${evaluationFeeds.length} held out; preparing the model (opset, folding)`);
  const { bytes: base, opset } = await normalised(source, calibrationFeeds, output);
  const keepFloat = keptFloatNodes(base, settings.keepFloat, settings.model, sourceVersion);
  let candidate: Candidate;
  let search: QuantizeReport['search'];
  if (settings.method === 'dynamic' || settings.method === 'fp16') {
    candidate = uncalibratedCandidate(base, settings.method, keepFloat);
  } else {
    onPhase(`calibrating activation ranges on ${calibrationFeeds.length} examples`);
    // Every CALIBRATION_PROGRESS_MS at most: a recogniser's pass took minutes on a busy machine, a small CNN's a second.
    let said = performance.now();
    const calibrated = (done: number) => {
      if (performance.now() - said < CALIBRATION_PROGRESS_MS || done === calibrationFeeds.length) return;
      said = performance.now();
      onPhase(`calibrated ${done} of ${calibrationFeeds.length} examples`);
    };
    const { ranges, channelMeans } = await calibrateActivations(base, calibrationFeeds, settings.ranges, settings.biasCorrection, calibrated);
    const staticCandidate = (exclude: ReadonlySet<string>): Candidate => {
      const model: OnnxModel = readOnnxModel(base);
      const result = quantizeStaticQdq(model, ranges, { exclude: new Set([...keepFloat, ...exclude]), inputMeans: channelMeans });
      return { bytes: writeOnnxModel(model), result };
    };
    candidate = staticCandidate(new Set());
    if (settings.method === 'auto') {
      const found = await searchFloatNodes(candidate, staticCandidate, evaluationFeeds, output, source, compare, gate, onPhase);
      candidate = found.candidate;
      search = found.steps;
    }
  }
  // The rewriters say 'excluded' of both; auto's decision counts the nodes its search kept float, not the user's.
  const skipped = candidate.result.skipped.map((entry) => (keepFloat.has(entry.node) && entry.reason === 'excluded' ? { ...entry, reason: KEPT_FLOAT_REASON } : entry));
  candidate = { ...candidate, result: { ...candidate.result, skipped } };
  if (candidate.result.quantized.length === 0 && settings.method !== 'auto') throw new Error(`--method ${settings.method} found nothing to rewrite in '${settings.model}': ${candidate.result.skipped.map((entry) => `${entry.node} (${entry.reason})`).join(', ') || 'no Conv, MatMul or Gemm'}`);

  onPhase(`comparing and timing version ${sourceVersion} and the new one on ${evaluationFeeds.length} held-out examples`);
  const [sourceRun, quantizedRun] = await runSideBySide([source, candidate.bytes], evaluationFeeds, output, { intraOpNumThreads: 1 });
  const agreement = compare(sourceRun.outputs, quantizedRun.outputs);
  const verdict = judgeGate(gate, agreementFigures(agreement), {}, { examples: evaluationFeeds.length, minimum: settings.minGateExamples });
  const speedup = sourceRun.msPerExample / quantizedRun.msPerExample;
  let decision: QuantizeReport['decision'];
  if (!verdict.passed) decision = { written: false, reason: `the gate "${gateSpec}" failed on the held-out examples: ${verdict.failures.join('; ')}` };
  else if (candidate.result.quantized.length === 0) decision = { written: false, reason: 'kept float: the gate holds only with every node float' };
  else if (settings.method === 'auto' && speedup <= 1) {
    decision = { written: false, reason: `kept float: the quantized model was not faster (${speedup.toFixed(2)}x the source's speed at batch 1, one thread, median of ${sourceRun.passes} timed pass(es))` };
  }
  else decision = { written: true, reason: DECISIONS[settings.method](candidate.result) };
  const report: QuantizeReport = {
    model: settings.model,
    sourceVersion,
    ...(decision.written ? { outputVersion, path: join(modelDir, outputVersion) } : {}),
    method: settings.method,
    decision,
    calibration: {
      examples: calibrationFeeds.length,
      heldOut,
      sha256: calibration.sha256,
      ...(settings.method === 'dynamic' || settings.method === 'fp16' ? {} : { ranges: settings.ranges === 'minmax' ? 'minmax' : `percentile ${settings.ranges}`, biasCorrection: settings.biasCorrection }),
    },
    opset,
    quantizedNodes: candidate.result.quantized,
    floatNodes: candidate.result.skipped,
    sizes: { sourceBytes: source.length, quantizedBytes: candidate.bytes.length, ratio: candidate.bytes.length / source.length },
    agreement,
    gate: { spec: gateSpec, ...verdict },
    msPerExample: { source: sourceRun.msPerExample, quantized: quantizedRun.msPerExample, speedup },
    search,
  };
  if (!decision.written) return report;
  const written = await writeVersionFolder(modelDir, settings.model, { version: outputVersion, chosen: settings.outputVersion !== undefined }, fileName, candidate.bytes, (version) => ({
    ...report,
    outputVersion: version,
    path: undefined,
    created: new Date().toISOString(),
  }));
  if (written !== outputVersion) logger.warn(`version ${outputVersion} of '${settings.model}' was written by another run meanwhile; this one is version ${written}`);
  logger.info({ version: written, bytes: candidate.bytes.length }, `wrote version ${written} of '${settings.model}'`);
  return { ...report, outputVersion: written, path: join(modelDir, written) };
}

/** The temporary folders a version is written into before it is complete: the repository reads only numeric version folders, and hides dot-prefixed ones from the poller. */
const VERSION_TEMP_PREFIX = '.quantize-';

/**
 * Writes a version folder whole or not at all: the model and its record go into a hidden sibling
 * that the repository ignores, renamed into place once complete, so a run that fails or is killed
 * midway (disk full, file too large) never leaves a half-written version for the server to load as
 * the newest. A version another run wrote meanwhile is not replaced: the next free one is taken, or,
 * for a version the user chose, the command fails saying so.
 */
async function writeVersionFolder(
  modelDir: string,
  model: string,
  target: { version: string; chosen: boolean },
  fileName: string,
  bytes: Uint8Array,
  record: (version: string) => object,
): Promise<string> {
  const temporary = await mkdtemp(join(modelDir, `${VERSION_TEMP_PREFIX}${target.version}-`));
  let version = target.version;
  try {
    // mkdtemp makes the folder private (0700): renamed into place as it is, a server running as another user (a
    // container reading a shared repository) could not read the new version. It gets its model folder's permissions.
    await chmod(temporary, (await stat(modelDir)).mode & 0o777);
    await writeFile(join(temporary, fileName), bytes);
    for (;;) {
      await writeFile(join(temporary, QUANTIZATION_RECORD_FILE), `${JSON.stringify(record(version), null, 2)}\n`);
      if (await renamedUnlessTaken(temporary, join(modelDir, version))) return version;
      if (target.chosen) break;
      version = String(Math.max(Number(version), ...(await versionFolders(modelDir))) + 1);
    }
  } catch (error) {
    throw new Error(`writing version ${version} of '${model}' failed, so nothing was written (no version folder is left): ${(error as Error).message}`, { cause: error });
  } finally {
    await rm(temporary, { recursive: true, force: true });
  }
  throw new Error(`version ${version} of '${model}' appeared while this run quantized (another nereid quantize?); it was left as it is and nothing was written: choose another --output-version, or leave it out to take the next free one`);
}

/** Moves a folder to `to` unless something is there: rename() alone would replace an empty folder, and another run's version must not be replaced at all. */
async function renamedUnlessTaken(from: string, to: string): Promise<boolean> {
  if (await stat(to).then(() => true, () => false)) return false;
  try {
    await rename(from, to);
    return true;
  } catch (error) {
    if (['ENOTEMPTY', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) return false;
    throw error;
  }
}

/**
 * The calibrated range of every tensor a static rewrite wraps (each Conv's, MatMul's and Gemm's
 * input and output) and, for bias correction, the channel means of the inputs of the nodes whose
 * bias can be corrected (a Conv's NCHW input and a plain Gemm's [rows, K] both have them on axis 1).
 */
/** How often the calibration pass says how far it is. */
const CALIBRATION_PROGRESS_MS = 15_000;

async function calibrateActivations(base: Uint8Array, feeds: readonly Feed[], ranges: 'minmax' | number, biasCorrection: boolean, onExample: (done: number) => void): Promise<Calibration> {
  const model = readOnnxModel(base);
  const tensors = new Set<string>();
  const channelAxes = new Map<string, number>();
  for (const node of model.graph.node) {
    if (!['Conv', 'MatMul', 'Gemm'].includes(node.op_type ?? '')) continue;
    tensors.add(node.input[0]).add(node.output[0]);
    if (biasCorrection && biasCorrectable(node)) channelAxes.set(node.input[0], 1);
  }
  const method = ranges === 'minmax' ? ({ kind: 'minmax' } as const) : ({ kind: 'percentile', percentile: ranges } as const);
  return calibrate(model, [...tensors], feeds, { method, channelAxes, onExample });
}

/** Held-out examples the sensitivity of each node is measured on: enough to rank nodes, few enough to try every one. */
const PROBE_EXAMPLES = 16;

/**
 * auto: when the fully quantized model misses the gate, ranks its quantized nodes by what each
 * costs alone — the model with only that node quantized, against the source on a probe of the
 * held-out examples: its agreement first (the measure of the output's kind: top-1, identical lines,
 * a map's mean IoU), then the mean absolute difference.
 * Measured alone, a node's cost is not hidden by the noise of all the others (leaving one node float
 * in a fully quantized model barely moves a map's IoU). Then leaves float the 1, 2, 4, … costliest
 * until the gate holds on all held-out examples, and halves the last step to find the fewest that
 * pass. Returns the candidate with the fewest float nodes that passes, or the last one tried.
 */
async function searchFloatNodes(
  full: Candidate,
  make: (exclude: ReadonlySet<string>) => Candidate,
  feeds: readonly Feed[],
  output: string,
  source: Uint8Array,
  compare: (reference: readonly ExampleOutput[], candidate: readonly ExampleOutput[]) => AgreementReport,
  gate: readonly GateClause[],
  onPhase: (phase: string) => void,
): Promise<{ candidate: Candidate; steps: NonNullable<QuantizeReport['search']> }> {
  // The source answers the same feeds every time: run it once. No step is timed (speed is measured once, on the winner).
  const reference = await outputsOf(source, feeds, output);
  const judge = async (candidate: Candidate, examples = feeds.length) =>
    compare(reference.slice(0, examples), await outputsOf(candidate.bytes, feeds.slice(0, examples), output));
  const fullAgreement = await judge(full);
  const steps: NonNullable<QuantizeReport['search']> = [{ floatNodes: 0, agreement: fullAgreement.agreement, passed: judgeGate(gate, agreementFigures(fullAgreement)).passed }];
  if (steps[0].passed) return { candidate: full, steps };
  const nodes = full.result.quantized;
  if (nodes.length === 0) return { candidate: full, steps };
  const cost: { node: string; agreement: number; error: number }[] = [];
  onPhase(`auto: all int8 agrees ${(fullAgreement.agreement * 100).toFixed(2)} %, short of the gate; ranking ${nodes.length} nodes by what each costs quantized alone`);
  for (const node of nodes) {
    const alone = await judge(make(new Set(nodes.filter((other) => other !== node))), PROBE_EXAMPLES);
    cost.push({ node, agreement: alone.agreement, error: alone.meanAbsDelta });
  }
  cost.sort((a, b) => a.agreement - b.agreement || b.error - a.error);
  let last = full;
  let best: Candidate | undefined;
  const attempt = async (count: number): Promise<boolean> => {
    last = make(new Set(cost.slice(0, count).map((entry) => entry.node)));
    const agreement = await judge(last);
    const passed = judgeGate(gate, agreementFigures(agreement)).passed;
    steps.push({ floatNodes: count, agreement: agreement.agreement, passed });
    onPhase(`auto: ${count} float -> ${(agreement.agreement * 100).toFixed(2)} %${passed ? ' (passes)' : ''}`);
    if (passed) best = last;
    return passed;
  };
  let failing = 0;
  let count = 1;
  while (!(await attempt(count))) {
    if (count === cost.length) return { candidate: last, steps };
    failing = count;
    count = Math.min(count * 2, cost.length);
  }
  let passing = count;
  while (passing - failing > 1) {
    const middle = Math.floor((failing + passing) / 2);
    if (await attempt(middle)) passing = middle;
    else failing = middle;
  }
  return { candidate: best!, steps };
}
