/**
 * `nereid tune`: the serving config that does best for one model on this machine, found by
 * measuring. Every candidate is loaded through Triton's own mechanism (a load with a config
 * override, in explicit model-control mode) into one in-process server and driven by the
 * benchmark's closed loop (src/tools/closed-loop.ts) through the same core clients reach, in
 * process or over HTTP. The search does not try every combination: it measures the batch curve
 * first (what each batch size costs per row, from the backend's compute timings), keeps the batch
 * sizes near its cheapest, then varies one setting at a time from the best so far — instance ×
 * thread splits and execution thread, the batch size, the queue delay (fixed, or latency-aware
 * batching toward a target), graph optimisation, the other versions — within a time budget.
 */
import { modelVersionsOnDisk } from '../repository/model-versions.js';
import { availableParallelism } from 'node:os';
import { loadSharp } from '../core/sharp.js';
import type { Logger } from 'pino';
import { z } from 'zod';
import { datatypeOfConfig, parameterValue, type CompletedModelConfig } from '../config/model-config.js';
import { allocateTypedArray } from '../core/datatype.js';
import { tensorDataToBytes } from '../core/tensor.js';
import type { InferenceRequest, InferInput } from '../core/inference.js';
import { createHttpFrontEnd } from '../frontends/http/v2-http.js';
import type { ModelVersion } from '../model/model-version.js';
import { createCommandServer } from '../server/create-server.js';
import type { Server } from '../server/server.js';
import { runClosedLoop, type LoadResult } from './closed-loop.js';
import {
  BATCH_CURVE_MS_PER_SIZE,
  batchSizeCandidates,
  batchSizesUpTo,
  budgetTooShort,
  candidateSeconds,
  candidateConfig,
  chooseWinner,
  confirmedGain,
  describeCandidate,
  instanceSplits,
  paretoLevels,
  sameCandidate,
  type Candidate,
  type ExecutionThread,
  type GraphLevel,
  type LevelResult,
  type LostLevel,
  type Measured,
  type Objective,
  judgedLevel,
  confirmationOrder,
  latencyTargetUs,
  versionsToMeasure,
} from './tune-search.js';
import { tuneOptionsSchema } from './tune-options.js';

export { tuneOptionsSchema } from './tune-options.js';

/** At most this many of the search's best are measured again in turn, until one's gain holds. */
const CONFIRMED_CANDIDATES = 3;

/** The fixed queue delays the search tries; a latency-aware candidate may hold at least as long as the largest (or its config's own delay, when longer). */
const FIXED_QUEUE_DELAYS_US = [0, 500, 2000];

/** The largest max_batch_size the search tries unless told, or the config's own when larger. */
const DEFAULT_MAX_BATCH_SIZE_LIMIT = 64;

export type TuneOptions = z.input<typeof tuneOptionsSchema>;

export interface TuneProgress {
  done: number;
  planned: number;
  label: string;
  elapsedSeconds: number;
  budgetSeconds: number;
}

/** One candidate measured again against the config as written: the judged levels' throughputs per round, their ratios and median, the levels it lost, and whether its gain held. */
export interface Confirmation {
  candidate: number;
  rounds: { current: number | null; chosen: number | null }[];
  ratios: number[];
  ratio: number;
  needed: number;
  held: boolean;
  lost: LostLevel[];
  /** Seconds into the search when its first round began. */
  startedAtSeconds?: number;
}

export interface TuneReport {
  model: string;
  objective: Objective;
  cores: number;
  /** Measured compute per row of each batch size (ns), on one instance with every core. */
  batchCurve: { batchSize: number; computeNsPerRow: number }[];
  /** The versions the model's policy loaded with the config as written: those that serve; --write never switches version. (Always set by runTune.) */
  servedVersions?: string[];
  /** The versions the version step measures (--versions, or every version folder). (Always set by runTune.) */
  versions?: string[];
  /** The first is the config as it is. */
  /** `paretoLevels`: the concurrency levels at which the candidate is on the front of every operating point measured. */
  results: (Measured & { paretoLevels: number[] })[];
  winner?: number;
  /** The best of the served version's configs: what --write writes (a different version is reported, never switched to). */
  best?: number;
  /** --min-gain: the least gain worth a change, and the most loss at another level a change may cost. */
  minGain: number;
  /**
   * The candidate whose measurement again against the config as written (confirmRounds) decided: the first whose gain
   * held, or the last tried (up to CONFIRMED_CANDIDATES of the search's order, as the budget allows); when none held, `best` is 0.
   */
  confirmation?: Confirmation;
  /** Candidates measured again before `confirmation`'s, whose gain did not hold (the next in the search's order was tried). */
  notConfirmed?: Confirmation[];
  /** Candidates (and confirmations) not measured, each with why: the budget ran out, or a latency-aware one had no goal. */
  skipped: string[];
  /** Why --budget-s could measure nothing but the config as written (it keeps the confirmation's time out of the search's), when that was so from the start. */
  budgetTooShort?: string;
  /**
   * What the search plans for one candidate's measurement and for a confirmation, in seconds: a candidate starts only
   * while its start plus both still fit --budget-s, a later confirmation while its start plus its own do.
   */
  candidateSeconds?: number;
  confirmationSeconds?: number;
  seconds: number;
  date: string;
}

function objectiveOf(settings: z.output<typeof tuneOptionsSchema>): Objective {
  if (settings.p99Ms !== undefined && settings.maxCostUsd !== undefined) throw new Error('--p99-ms and --max-cost are two objectives; give one');
  if (settings.p99Ms !== undefined) return { kind: 'p99', maxMs: settings.p99Ms };
  if (settings.maxCostUsd !== undefined) return { kind: 'cost', maxUsdPer1000: settings.maxCostUsd, usdPerCoreHour: settings.usdPerCoreHour };
  return { kind: 'throughput' };
}

/** Random values of the input's type, or for an image input a noise PNG: what one client row sends. */
async function syntheticInput(model: ModelVersion, input: CompletedModelConfig['input'][number], rows: number, shapes: Record<string, number[]>): Promise<InferInput> {
  const batch = model.batched ? [rows] : [];
  if (model.imageInputs.has(input.name)) {
    // The size clients send decides what decoding and resizing cost: --input-shape NAME=HEIGHT,WIDTH sets it.
    const size = shapes[input.name] ?? [64, 64];
    if (size.length !== 2) throw new Error(`--input-shape ${input.name}=${size.join(',')}: '${input.name}' takes encoded images, so its shape is the synthetic image's HEIGHT,WIDTH (e.g. ${input.name}=28,28)`);
    const [height, width] = size;
    const noise = Buffer.alloc(height * width * 3);
    for (let index = 0; index < noise.length; index++) noise[index] = (index * 2654435761) >>> 24;
    const sharp = await loadSharp();
    const png = await sharp(noise, { raw: { width, height, channels: 3 } }).png().toBuffer();
    return { name: input.name, datatype: 'BYTES', shape: [...batch, 1], data: Array.from({ length: rows }, () => png) };
  }
  const dims = shapes[input.name] ?? input.dims;
  if (dims.some((dim) => dim < 0)) {
    throw new Error(`input '${input.name}' has dynamic dimensions [${input.dims.join(', ')}]; give them with --input-shape ${input.name}=${input.dims.map((dim) => (dim < 0 ? 'N' : dim)).join(',')}`);
  }
  const datatype = datatypeOfConfig(input);
  const length = rows * dims.reduce((product, dim) => product * dim, 1);
  if (datatype === 'BYTES') return { name: input.name, datatype, shape: [...batch, ...dims], data: Array.from({ length }, () => Buffer.from('nereid')) };
  const data = allocateTypedArray(datatype, length);
  for (let index = 0; index < length; index++) (data as Float32Array)[index] = datatype.startsWith('FP') ? ((index * 37) % 101) / 101 : index % 7;
  return { name: input.name, datatype, shape: [...batch, ...dims], data };
}

async function syntheticRequest(model: ModelVersion, rows: number, shapes: Record<string, number[]>): Promise<InferenceRequest> {
  const inputs = await Promise.all(model.clientConfig.input.filter((input) => !input.optional).map((input) => syntheticInput(model, input, rows, shapes)));
  return { model: model.name, inputs };
}

/** The V2 binary tensor extension's body: a JSON header, then each input's bytes (BYTES elements length-prefixed). */
function binaryBody(request: InferenceRequest): { body: Buffer; headerLength: number } {
  const chunks: Buffer[] = [];
  const inputs = request.inputs.map((input) => {
    const bytes = tensorDataToBytes(input.datatype, input.data);
    chunks.push(bytes);
    return { name: input.name, datatype: input.datatype, shape: input.shape, parameters: { binary_data_size: bytes.length } };
  });
  const header = Buffer.from(JSON.stringify({ inputs, outputs: [], parameters: { binary_data_output: true } }));
  return { body: Buffer.concat([header, ...chunks]), headerLength: header.length };
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

class Tuner {
  private readonly started = performance.now();
  private origin?: string;
  private closeHttp?: () => Promise<void>;

  constructor(
    private readonly server: Server,
    private readonly settings: z.output<typeof tuneOptionsSchema>,
    private readonly logger: Logger,
  ) {}

  get elapsedSeconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  async openHttp(): Promise<void> {
    const app = createHttpFrontEnd(this.server, { maxBodyBytes: 256 * 1024 * 1024 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('the HTTP front end did not bind a TCP port');
    this.origin = `http://127.0.0.1:${address.port}`;
    this.closeHttp = () => app.close();
  }

  async close(): Promise<void> {
    await this.closeHttp?.();
  }

  /** Loads the model with `config` (undefined: as its files say) and returns the served version. */
  async load(config?: Record<string, unknown>): Promise<ModelVersion> {
    // A version that fails to load is left out of the comparison (the load logs why), not a reason to stop tuning the rest.
    await this.server.loadModel(this.settings.model, config ? { config: JSON.stringify(config) } : {}, { everyVersion: false });
    return this.server.model(this.settings.model);
  }

  /** Compute per row of each batch size, from the backend's own compute timings of requests run one at a time. */
  async batchCurve(model: ModelVersion): Promise<Map<number, number>> {
    const curve = new Map<number, number>();
    for (const rows of batchSizesUpTo(model.config.max_batch_size)) {
      const request = await syntheticRequest(model, rows, this.settings.inputShapes);
      const samples: number[] = [];
      const until = performance.now() + BATCH_CURVE_MS_PER_SIZE;
      while (samples.length < 3 || (performance.now() < until && samples.length < 50)) {
        const answer = await model.infer(request);
        samples.push(answer.timings!.computeInferNs);
      }
      curve.set(rows, median(samples) / rows);
    }
    return curve;
  }

  /** Drives the loaded model at each concurrency level; `repeats` runs each, keeping the median. */
  async measure(model: ModelVersion): Promise<LevelResult[]> {
    const request = await syntheticRequest(model, 1, this.settings.inputShapes);
    // One request first: a model that refuses what tune sends would otherwise be measured as a config serving nothing.
    await model.infer(request).catch((error: Error) => {
      throw new Error(
        `the request tune sends to '${model.name}' fails: ${error.message} (tune sends values of each input's datatype and shape, --input-shape giving dynamic dims, and a noise PNG to an input with image pre-processing)`,
        { cause: error },
      );
    });
    const send = this.origin ? this.httpSender(model, request) : async () => (await model.infer(request), { ok: true, bytes: 0 });
    const levels: LevelResult[] = [];
    for (const concurrency of this.settings.concurrency) {
      const runs: { result: LoadResult; cpuSeconds: number; rows: number; executions: number }[] = [];
      for (let repeat = 0; repeat < this.settings.repeats; repeat++) {
        const cpuBefore = process.cpuUsage();
        const { inferenceCount, executionCount } = model.statistics;
        const result = await runClosedLoop({ concurrency, warmupSeconds: this.settings.warmupSeconds, durationSeconds: this.settings.durationSeconds, verifyEvery: Number.MAX_SAFE_INTEGER }, send);
        const cpu = process.cpuUsage(cpuBefore);
        runs.push({ result, cpuSeconds: (cpu.user + cpu.system) / 1e6, rows: model.statistics.inferenceCount - inferenceCount, executions: model.statistics.executionCount - executionCount });
      }
      runs.sort((a, b) => a.result.requestsPerSecond - b.result.requestsPerSecond);
      const { result, cpuSeconds, rows, executions } = runs[Math.floor(runs.length / 2)];
      if (result.errors > 0) this.logger.warn({ samples: result.errorSamples }, `${result.errors} request(s) failed at concurrency ${concurrency}`);
      levels.push({
        concurrency,
        throughput: result.requestsPerSecond,
        p50Ms: result.latency.p50,
        p95Ms: result.latency.p95,
        p99Ms: result.latency.p99,
        cpuSecondsPerInference: rows > 0 ? cpuSeconds / rows : Infinity,
        meanBatchRows: executions > 0 ? rows / executions : 0,
        errors: result.errors,
      });
    }
    return levels;
  }

  private httpSender(model: ModelVersion, request: InferenceRequest) {
    const { body, headerLength } = binaryBody(request);
    const url = `${this.origin}/v2/models/${model.name}/infer`;
    const headers = { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) };
    return async () => {
      const response = await fetch(url, { method: 'POST', headers, body: new Uint8Array(body) });
      const answer = await response.arrayBuffer();
      return response.ok ? { ok: true, bytes: answer.byteLength } : { ok: false, bytes: answer.byteLength, problem: `HTTP ${response.status}: ${Buffer.from(answer).toString('utf8', 0, 200)}` };
    };
  }

  /** Seconds one candidate takes to measure, load included. */
  get candidateSeconds(): number {
    return candidateSeconds(this.settings);
  }
}

/** The candidate the config as written amounts to (for the table; it is measured as written, without an override). */
function currentCandidate(model: ModelVersion, cores: number): Candidate {
  const config = model.config;
  const instances = config.instance_group.reduce((sum, group) => sum + (group.count ?? 1), 0) || 1;
  // As the loader planned them: a config without instance_group gets the backend's plan (one thread per instance for ONNX Runtime), not the cores split.
  const threads = Number(parameterValue(config, 'intra_op_thread_count') ?? 0) || model.plannedThreadsPerInstance || Math.max(1, Math.floor(cores / instances));
  return {
    version: model.version,
    maxBatchSize: config.max_batch_size,
    maxQueueDelayUs: config.dynamic_batching?.max_queue_delay_microseconds ?? 0,
    targetLatencyUs: config.dynamic_batching?.target_latency_us ?? 0,
    instances,
    threadsPerInstance: threads,
    executionThread: (parameterValue(config, 'execution_thread') as ExecutionThread | undefined) ?? 'auto',
    graphLevel: (parameterValue(config, 'graph_optimization_level') as GraphLevel | undefined) ?? 'all',
  };
}

/**
 * Measures each of `configs` (whole model configs, as a load override takes them) the way the search
 * measures a candidate, in one server: to hold a written config against the one it replaced.
 */
export async function measureConfigs(options: TuneOptions, configs: readonly Record<string, unknown>[], logger: Logger): Promise<LevelResult[][]> {
  const settings = tuneOptionsSchema.parse(options);
  const server = await createCommandServer({ modelRepository: settings.modelRepository, allowCodeModels: settings.allowCodeModels, logger, monitoring: false });
  await server.start();
  const tuner = new Tuner(server, settings, logger);
  try {
    const measured: LevelResult[][] = [];
    for (const config of configs) measured.push(await tuner.measure(await tuner.load(config)));
    return measured;
  } finally {
    await server.close();
  }
}

/** Measures the model's current config, then candidates chosen step by step, within the budget. */
export async function runTune(options: TuneOptions, logger: Logger, onProgress?: (progress: TuneProgress) => void): Promise<TuneReport> {
  const settings = tuneOptionsSchema.parse(options);
  const objective = objectiveOf(settings);
  const cores = settings.cores ?? availableParallelism();
  // Said before anything is measured (the search would stop after the config as written), and again in the report.
  const tooShort = budgetTooShort(settings, batchSizesUpTo(settings.maxBatchSizeLimit ?? DEFAULT_MAX_BATCH_SIZE_LIMIT).length);
  if (tooShort) logger.warn(`${tooShort}; only the config as written will be measured`);
  // The confirmation of a winner is measured within the budget too: the search leaves it its time.
  const confirmationSeconds = 2 * settings.confirmRounds * candidateSeconds(settings);
  // A version named without a folder is refused before anything is measured.
  const versions = versionsToMeasure(settings.versions, (await modelVersionsOnDisk(settings.modelRepository, settings.model)).map(String), settings.model);
  const server = await createCommandServer({ modelRepository: settings.modelRepository, allowCodeModels: settings.allowCodeModels, logger, monitoring: false });
  await server.start();
  const tuner = new Tuner(server, settings, logger);
  const results: Measured[] = [];
  const skipped: string[] = [];
  let planned = 1;
  let curve = new Map<number, number>();
  let chosen: number | undefined;
  let confirmation: Confirmation | undefined;
  const notConfirmed: Confirmation[] = [];
  let servedVersions: string[] = [];
  try {
    if (settings.overHttp) await tuner.openHttp();
    const progress = (label: string) => onProgress?.({ done: results.length, planned, label, elapsedSeconds: tuner.elapsedSeconds, budgetSeconds: settings.budgetSeconds });
    progress('the current config');
    const current = await tuner.load();
    const unknownShapes = Object.keys(settings.inputShapes).filter((name) => !current.config.input.some((input) => input.name === name));
    if (unknownShapes.length > 0) throw new Error(`--input-shape ${unknownShapes.join(', ')}: '${settings.model}' has no such input; its inputs: ${current.config.input.map((input) => input.name).join(', ')}`);
    const written = current.config as unknown as Record<string, unknown>;
    servedVersions = server.repository.loadedVersions(settings.model).map((version) => version.version).sort((a, b) => Number(a) - Number(b));
    results.push({ candidate: currentCandidate(current, cores), step: 'current config', startedAtSeconds: tuner.elapsedSeconds, levels: await tuner.measure(current) });

    const configOf = (candidate: Candidate) => ({ ...candidateConfig(written, candidate), version_policy: { specific: { versions: [Number(candidate.version)] } } });
    const tryCandidate = async (candidate: Candidate, step: string): Promise<Measured | undefined> => {
      if (results.some((measured) => sameCandidate(measured.candidate, candidate))) return undefined;
      const startedAtSeconds = tuner.elapsedSeconds;
      if (startedAtSeconds + tuner.candidateSeconds + confirmationSeconds > settings.budgetSeconds) {
        // The same candidate can come up twice (from the best so far and from the config as written): listed once.
        const notMeasured = `${step}: ${describeCandidate(candidate)} (--budget-s reached)`;
        if (!skipped.includes(notMeasured)) skipped.push(notMeasured);
        return undefined;
      }
      progress(describeCandidate(candidate));
      try {
        const model = await tuner.load(configOf(candidate));
        const measured = { candidate, step, startedAtSeconds, levels: await tuner.measure(model) };
        results.push(measured);
        return measured;
      } catch (error) {
        logger.warn({ err: error }, `candidate ${describeCandidate(candidate)} could not be measured: ${(error as Error).message}`);
        return undefined;
      }
    };
    const best = () => results[chooseWinner(results, objective) ?? 0].candidate;

    // The batch curve, on one instance with every core, batching up to the limit.
    const batching = current.config.max_batch_size > 0;
    const base: Candidate = { ...currentCandidate(current, cores), instances: 1, threadsPerInstance: cores, maxQueueDelayUs: 0, targetLatencyUs: 0 };
    if (batching) {
      const upper = settings.maxBatchSizeLimit ?? Math.max(current.config.max_batch_size, DEFAULT_MAX_BATCH_SIZE_LIMIT);
      curve = await tuner.batchCurve(await tuner.load(configOf({ ...base, maxBatchSize: upper })));
    }
    const batchSizes = batching ? batchSizeCandidates(curve) : [0];
    const cheapest = batchSizes.at(-1)!;
    const splits = instanceSplits(cores);
    const threads: ExecutionThread[] = ['main', 'worker'];
    planned = 1 + splits.length * threads.length + (batchSizes.length - 1) + (batching ? 5 : 0) + 1 + versions.filter((version) => version !== results[0].candidate.version).length;

    const writtenDelayUs = results[0].candidate.maxQueueDelayUs;
    const writtenTargetUs = results[0].candidate.targetLatencyUs;
    for (const split of splits) for (const executionThread of threads) await tryCandidate({ ...base, ...split, executionThread, maxBatchSize: cheapest, maxQueueDelayUs: writtenDelayUs, targetLatencyUs: writtenTargetUs }, 'instances');
    for (const maxBatchSize of batchSizes) await tryCandidate({ ...best(), maxBatchSize }, 'batch size');
    if (batching) {
      for (const maxQueueDelayUs of FIXED_QUEUE_DELAYS_US) await tryCandidate({ ...best(), maxQueueDelayUs, targetLatencyUs: 0 }, 'queue delay');
      // From the best so far, and as the one change to the config as written (whose other settings the search's
      // first steps left behind, perhaps on one noisy measurement).
      const targetLatencyUs = latencyTargetUs(objective, results[0]);
      if (targetLatencyUs === undefined) skipped.push('latency-aware: no latency goal to aim at (no --p99-ms, and the config as written gave no p99)');
      else for (const from of [best(), results[0].candidate]) await tryCandidate({ ...from, maxQueueDelayUs: Math.max(from.maxQueueDelayUs, ...FIXED_QUEUE_DELAYS_US), targetLatencyUs }, 'latency-aware');
    }
    await tryCandidate({ ...best(), graphLevel: best().graphLevel === 'basic' ? 'all' : 'basic' }, 'graph');
    for (const version of versions) await tryCandidate({ ...best(), version }, 'version');
    const found = confirmationOrder(results, objective, settings.minGain);
    // Trusting the search's one measurement (no rounds), only a config that kept every level in it may be written.
    const order = settings.confirmRounds > 0 ? found : found?.filter((preference) => preference.keptLevels);
    chosen = order === undefined ? undefined : (order[0]?.index ?? 0);
    if (order?.length && settings.confirmRounds > 0) {
      // The search's order is one measurement each; the rounds decide. The first candidate's rounds were kept out of
      // the search's budget; the next ones are measured while what is left allows.
      const judgedThroughputOrNull = (measured: Measured) => judgedLevel(measured, objective)?.throughput ?? null;
      const toConfirm = order.slice(0, CONFIRMED_CANDIDATES);
      for (const [at, { index: candidate }] of toConfirm.entries()) {
        const startedAtSeconds = tuner.elapsedSeconds;
        if (at > 0 && startedAtSeconds + confirmationSeconds > settings.budgetSeconds) {
          skipped.push(...toConfirm.slice(at).map(({ index }) => `confirmation: ${describeCandidate(results[index].candidate)} (--budget-s reached)`));
          break;
        }
        if (confirmation) notConfirmed.push(confirmation);
        const rounds: { current: Measured; chosen: Measured }[] = [];
        for (let round = 1; round <= settings.confirmRounds; round++) {
          progress(`confirming: round ${round} of ${settings.confirmRounds}, the config as written, then ${describeCandidate(results[candidate].candidate)}`);
          // The config as written, loaded as the search loads its candidates: as a load override.
          const again = { current: { ...results[0], levels: await tuner.measure(await tuner.load(written)) }, chosen: { ...results[candidate], levels: await tuner.measure(await tuner.load(configOf(results[candidate].candidate))) } };
          rounds.push(again);
        }
        const verdict = confirmedGain(rounds, objective, settings.minGain);
        confirmation = { candidate, startedAtSeconds, rounds: rounds.map((round) => ({ current: judgedThroughputOrNull(round.current), chosen: judgedThroughputOrNull(round.chosen) })), ...verdict, needed: 1 + settings.minGain };
        chosen = verdict.held ? candidate : 0;
        if (verdict.held) break;
      }
    }
    progress('done');
  } finally {
    await tuner.close();
    await server.close();
  }
  const front = paretoLevels(results);
  return {
    model: settings.model,
    objective,
    cores,
    batchCurve: [...curve].map(([batchSize, computeNsPerRow]) => ({ batchSize, computeNsPerRow })),
    servedVersions,
    versions,
    results: results.map((measured, index) => ({ ...measured, paretoLevels: front[index] })),
    winner: chooseWinner(results, objective),
    best: chosen,
    minGain: settings.minGain,
    confirmation,
    notConfirmed,
    skipped,
    ...(tooShort ? { budgetTooShort: tooShort } : {}),
    candidateSeconds: candidateSeconds(settings),
    confirmationSeconds,
    seconds: tuner.elapsedSeconds,
    date: new Date().toISOString(),
  };
}
