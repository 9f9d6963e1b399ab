/**
 * One loaded version of a model, and the path of a request through it, top to bottom: validate →
 * response cache → pre-process → schedule → post-process → observers. It delegates every step to
 * the component that owns it; the repository builds those components when it loads the version.
 */
import type { Logger } from 'pino';
import type { BackendInstance, InstanceOptions } from '../backends/backend.js';
import type { ResponseCache } from '../cache/response-cache.js';
import { datatypeOfConfig, type CompletedModelConfig } from '../config/model-config.js';
import { asNereidError, isRefusal, loggedMessage, NereidError, reportedAlready } from '../core/errors.js';
import type { InferenceObserver, RequestRecord } from '../core/inference-observer.js';
import type { InferenceRequest, InferenceResponse, InferOutput, Parameters, RequestContext } from '../core/inference.js';
import { concreteDims, type InputDeclaration, type Tensor } from '../core/tensor.js';
import type { RequestTimings } from '../core/timings.js';
import { isBlankRow, isOutOfDistribution, pooledFeatures, type MahalanobisScorer, type Pooling } from '../monitoring/representation-ood.js';
import type { ModelStatistics } from '../observability/model-statistics.js';
import { RefusalLog } from '../observability/refusal-log.js';
import type { VersionMonitor } from '../monitoring/version-monitor.js';
import { classify } from '../processing/classification.js';
import type { InputPreprocessor } from '../processing/input-preprocessor.js';
import { DEFAULT_POSTPROCESSING, rowProbabilities, type OutOfDistribution, type OutputPostprocessor } from '../processing/output-postprocessor.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { sequenceFlagsOf, type SequenceFlags } from '../scheduler/sequence-control.js';
import { expectedShape, RequestValidator, type ValidatedRequest } from './input-validation.js';

export type ModelState = 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE';

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

/** What a quantized version's record (quantization.json, written by `nereid quantize`) says it is. */
export interface QuantizationSummary {
  /** The record's method, e.g. 'static'. */
  method: string;
  /** The method for people, e.g. 'int8 static QDQ'. */
  description: string;
  /** The weights' number format the method leaves: 'int8', 'fp16', or 'unknown' for a method this release does not know. */
  precision: string;
  /** The version it was quantized from. */
  sourceVersion: string;
  /** Its model file's size over the source version's. */
  sizeRatio: number;
}

/**
 * The V2 model metadata answer. `parameters`, present only when a version it lists is quantized,
 * follows the protocol's parameters objects (scalar values; MLServer has the same field on this
 * answer): Triton's clients hand the JSON back as it came, and answers for float models are
 * unchanged.
 */
export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  parameters?: {
    /** The listed versions that are quantized, comma-separated. */
    quantized_versions: string;
    /** The rest describe the version this answer describes (inputs, outputs), when it is quantized. */
    quantization?: string;
    quantized_from_version?: string;
    quantized_size_ratio?: number;
  };
}

/** What the repository builds for a version when it loads it. */
export interface ModelVersionParts {
  name: string;
  version: string;
  config: CompletedModelConfig;
  instances: readonly BackendInstance[];
  /** The plan each instance was made by, in the same order: what tells a load which of them a new config can keep. */
  instancePlans?: readonly InstanceOptions[];
  scheduler: Scheduler;
  statistics: ModelStatistics;
  /** Every service watching this version's path (the statistics among them), as one observer. */
  observer: InferenceObserver;
  labels: ReadonlyMap<string, readonly string[]>;
  preprocessor?: InputPreprocessor;
  postprocessor?: OutputPostprocessor;
  cache?: ResponseCache;
  /**
   * A fingerprint of everything besides a request that decides this version's answers: its config
   * and weights (taken at load, when the server has a response cache), or for an ensemble those of
   * the step versions serving now. Equal identities answer alike, so a cache keyed by them (this
   * version's, or an ensemble's over it) never serves an answer another load computed; undefined
   * when there is none (no cache on the server, the weights unreadable, a step not loaded or
   * drawn by traffic weights): answers are then not cached.
   */
  answerIdentity: () => Promise<string | undefined>;
  logger: Logger;
  /** Inputs the model gives a default value: clients leave them out (see TensorSignature.defaulted). */
  defaultedInputs?: ReadonlySet<string>;
  /** The backend carries BYTES only as text (see Backend.bytesAsText). */
  bytesAsText?: boolean;
  /** Present when the version is a quantized one, from its quantization record. */
  quantization?: QuantizationSummary;
  /** Size of the model file it was loaded from. */
  modelFileBytes?: number;
  /** The reference profile's out-of-distribution detector: the instances also output `tensor`, each row of which is scored. */
  ood?: OodMonitor;
  /** The reference profile's drift and accuracy windows: each computed row of the first output is recorded. */
  monitor?: VersionMonitor;
}

export interface OodMonitor {
  tensor: string;
  pooling: Pooling;
  threshold: number;
  scorer: MahalanobisScorer;
  /** The model input a blank row of which (values spread no further than `floor`) is out of distribution whatever its score (see blankFloor); absent: scores alone decide. */
  blank?: { input: string; floor: number };
}



/**
 * The OOD verdict as V2 response parameters, which hold scalars: whether any row is out of
 * distribution, the largest score and the threshold; for several rows, every row's score too.
 */
function oodParameters(rows: readonly OutOfDistribution[]): Record<string, string | number | boolean> {
  const parameters: Record<string, string | number | boolean> = {
    ood: rows.some((row) => row.out_of_distribution),
    ood_score: Math.max(...rows.map((row) => row.score)),
    ood_threshold: rows[0].threshold,
  };
  if (rows.length > 1) parameters.ood_scores = rows.map((row) => row.score).join(',');
  return parameters;
}

/** The outputs a request computed, and where its time went. */
export interface RunOptions {
  /**
   * The caller's own post-processing of the outputs (a detector's boxes): it runs on the path, so
   * that its time is the request's post-processing in the statistics, and a failure of it the request's.
   */
  postprocess?: (outputs: Record<string, Tensor>) => unknown;
  /** The request comes through a hold (hold()): it runs while the version unloads. */
  held?: boolean;
  /** Makes the answer of the outputs on the path, for the context's prepareAnswer: a failure of either is the request's. */
  answer?: (result: RunResult) => InferenceResponse;
}

export interface RunResult {
  outputs: Record<string, Tensor>;
  timings: RequestTimings;
  /** Per row, when the version has a reference profile (a cache hit carries the verdict stored with its outputs). */
  ood?: OutOfDistribution[];
  /** Response parameters from the scheduled work (an ensemble's monitored step's verdict); a hit carries them too. */
  parameters?: Parameters;
}

const NO_INPUTS: ReadonlySet<string> = new Set();
const NO_EXTRA_OUTPUTS: readonly string[] = [];

/** A cache hit spent no time in the queue or the model. */
const HIT_TIMINGS: RequestTimings = Object.freeze({ queueNs: 0, computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0 });

/** A version held for work that calls it later: see ModelVersion.hold. */
export interface VersionHold {
  readonly version: ModelVersion;
  infer(request: InferenceRequest, context?: RequestContext): Promise<InferenceResponse>;
  /** Lets the version go; once every hold and request is gone, an unload waiting for them proceeds. */
  release(): void;
}

export class ModelVersion {
  state: ModelState = 'READY';
  reason = '';
  readonly name: string;
  readonly version: string;
  /** Replaced only by changeInstances, whose config differs in its instance groups alone. */
  config: CompletedModelConfig;
  readonly statistics: ModelStatistics;
  /** The config as clients see it: image inputs take encoded images (BYTES, one per batch row). */
  clientConfig: CompletedModelConfig;
  private readonly validator: RequestValidator;
  private readonly label: string;
  /** Refusals under load, as warnings summed up per period (see RefusalLog). */
  private readonly refusals: RefusalLog;
  /** Outputs the config reshapes: answered in the config's dims rather than the model's. */
  private readonly outputDims: ReadonlyMap<string, readonly number[]>;
  /** Requests past the readiness check and not yet answered, and holds for requests to come (an ensemble's step, counted once); unload waits for them. */
  private inFlight = 0;
  /** Instances taken out by changeInstances and not yet released: an unload waits for them. */
  private readonly retirements = new Set<Promise<unknown>>();
  private started = 0;
  private whenIdle?: () => void;

  constructor(private parts: ModelVersionParts) {
    this.name = parts.name;
    this.version = parts.version;
    this.config = parts.config;
    this.statistics = parts.statistics;
    this.clientConfig = parts.preprocessor?.clientConfig(parts.config) ?? parts.config;
    this.validator = new RequestValidator(this.clientConfig, { imageInputs: parts.preprocessor?.imageInputs, bytesAsText: parts.bytesAsText, defaultedInputs: parts.defaultedInputs });
    this.label = `model '${parts.name}' version ${parts.version}`;
    this.refusals = new RefusalLog(parts.logger, this.label);
    this.outputDims = new Map(parts.config.output.filter((output) => output.reshape).map((output) => [output.name, output.dims]));
  }

  /** Requests waiting in this version's scheduler queue (the metrics' queued gauge). */
  get queued(): number {
    return this.parts.scheduler.queued;
  }

  /** Sequences whose state this version's scheduler keeps between requests. */
  get liveSequences(): number {
    return this.parts.scheduler.liveSequences;
  }

  /** Requests this version holds at once, waiting or running, before refusing more for a full queue (see Scheduler.admits). */
  get admits(): number {
    return this.parts.scheduler.admits;
  }

  get batched(): boolean {
    return this.config.max_batch_size > 0;
  }

  /** Requests started on this version so far, and those not yet answered: what tells an idle server from a busy one. */
  get activity(): { started: number; inFlight: number } {
    return { started: this.started, inFlight: this.inFlight };
  }

  /** The drift and accuracy windows, when the version has a reference profile (and the server keeps windows). */
  get monitor(): VersionMonitor | undefined {
    return this.parts.monitor;
  }

  /** Whether the version was loaded with a reference profile: its OOD detector, its drift windows or both. */
  get profiled(): boolean {
    return this.parts.ood !== undefined || this.parts.monitor !== undefined;
  }

  /** Inputs that take encoded images. */
  get imageInputs(): ReadonlySet<string> {
    return this.parts.preprocessor?.imageInputs ?? NO_INPUTS;
  }

  /** See ModelVersionParts.answerIdentity. */
  answerIdentity(): Promise<string | undefined> {
    return this.parts.answerIdentity();
  }

  /** See RequestValidator.checkInputShape. */
  checkInputShape(input: InputDeclaration): void {
    this.validator.checkInputShape(input);
  }

  labelsOf(output: string): readonly string[] | undefined {
    return this.parts.labels.get(output);
  }

  /** Present when the version is a quantized one, from its quantization record. */
  get quantization(): QuantizationSummary | undefined {
    return this.parts.quantization;
  }

  /** The instances serving now, and the plan each was made by (absent for a version that cannot change them). */
  get instances(): { instances: readonly BackendInstance[]; plans?: readonly InstanceOptions[] } {
    return { instances: this.parts.instances, plans: this.parts.instancePlans };
  }

  /** Whether changeInstances can take effect: the version serves, and its scheduler takes instances in and out meanwhile. */
  get instancesChangeable(): boolean {
    return this.state === 'READY' && this.parts.scheduler.changeInstances !== undefined && this.parts.instancePlans !== undefined;
  }

  /**
   * Serves on with `instances` (made by `plans`) instead of those it has, as Triton updates a model whose config changed
   * only its instance groups: requests keep being answered, those it has and `instances` holds keep their state (a
   * warm session, a handler's memory), the others take no new work and are released once they hold none (the batch
   * they run; a sequence model's live sequences on them). `config` is the version's config with the new instance groups.
   */
  async changeInstances(config: CompletedModelConfig, instances: readonly BackendInstance[], plans: readonly InstanceOptions[]): Promise<void> {
    const before = new Set(this.parts.instances);
    const after = new Set(instances);
    const added = instances.filter((instance) => !before.has(instance));
    const removed = this.parts.instances.filter((instance) => !after.has(instance));
    this.parts = { ...this.parts, config, instances, instancePlans: plans };
    this.config = config;
    this.clientConfig = this.parts.preprocessor?.clientConfig(config) ?? config;
    // Those taken out are released once they hold nothing: after the batch they run, or for a sequence model after the
    // live sequences of their slots end, which may take minutes; the change does not wait for that, an unload does.
    const retired = this.parts.scheduler
      .changeInstances!(added, removed)
      .then(() => Promise.allSettled(removed.map((instance) => instance.release())))
      .catch((error: unknown) => this.parts.logger.error({ err: error }, `${this.label}: releasing the instances taken out failed: ${(error as Error)?.message ?? String(error)}`));
    this.retirements.add(retired);
    void retired.finally(() => this.retirements.delete(retired));
  }

  /** The compute threads planned for each instance (a backend parameter such as intra_op_thread_count may override it). */
  get plannedThreadsPerInstance(): number | undefined {
    return this.parts.instancePlans?.[0]?.intraOpThreads;
  }

  /** Size of the model file it was loaded from. */
  get modelFileBytes(): number | undefined {
    return this.parts.modelFileBytes;
  }

  /** The metadata answer describing this version, listing `versions` (this one, or all the model's loaded ones). */
  metadata(versions: readonly Pick<ModelVersion, 'version' | 'quantization'>[]): ModelMetadata {
    const describe = (tensor: { name: string; data_type: string; dims: number[] }) => ({
      name: tensor.name,
      datatype: datatypeOfConfig(tensor),
      shape: expectedShape(this.clientConfig, tensor),
    });
    const quantized = versions.filter((listed) => listed.quantization).map((listed) => listed.version);
    const own = this.quantization;
    return {
      name: this.name,
      versions: versions.map((listed) => listed.version),
      platform: this.config.platform,
      inputs: this.clientConfig.input.map(describe),
      outputs: this.config.output.map(describe),
      ...(quantized.length > 0 && {
        parameters: {
          quantized_versions: quantized.join(','),
          ...(own && { quantization: own.description, quantized_from_version: own.sourceVersion, quantized_size_ratio: Number(own.sizeRatio.toFixed(4)) }),
        },
      }),
    };
  }

  /**
   * Refuses, before its body is read, a request this version could not take now: not ready, queue
   * full by count or by bytes (`bytes`: what the body announces), or a backlog it could not wait
   * out before its deadline. Its priority is not known yet, so it is judged as the highest would be;
   * run() judges it exactly once it is parsed.
   */
  admit(bytes: number, deadline?: number): void {
    if (this.state !== 'READY') throw new NereidError('UNAVAILABLE', `${this.label} is not ready (${this.state.toLowerCase()})`);
    try {
      this.parts.scheduler.admit({ bytes, deadline, priority: this.config.dynamic_batching?.priority_levels ? 1 : undefined });
    } catch (error) {
      this.recordRefusal(asNereidError(error, this.label));
      throw error;
    }
  }

  /**
   * A request refused before it ran — at admission, from its headers — is a failed request in the statistics and
   * metrics, as one the queue refuses inside run() is: an alert on the failure rate must see an overload.
   */
  recordRefusal(error: NereidError): void {
    this.refusals.note(error.code, error.message);
    const { observer } = this.parts;
    observer.onRequestStart?.();
    observer.onRequestEnd({ rows: 1, success: false, errorCode: error.code, errorReason: loggedMessage(error), totalNs: 0, startedAt: Date.now() });
  }

  /**
   * Holds this version for work accepted now that calls it later (an ensemble's request, for its steps): its unload
   * waits until the hold is released, as it waits for its own requests in flight, and the holder's calls run on it
   * meanwhile. Undefined when the version is not ready.
   */
  hold(): VersionHold | undefined {
    if (this.state !== 'READY') return undefined;
    this.inFlight++;
    let released = false;
    return {
      version: this,
      infer: (request, context) => (released ? Promise.reject(new NereidError('INTERNAL', `${this.label}: called through a released hold`)) : this.infer(request, context, true)),
      release: () => {
        if (released) return;
        released = true;
        this.leave();
      },
    };
  }

  /** A request or a hold is done with this version: the last one lets an unload waiting for them proceed. */
  private leave(): void {
    if (--this.inFlight === 0) this.whenIdle?.();
  }

  /** A V2 inference: the request's outputs, with Triton's classification extension where an output asks for it. */
  async infer(request: InferenceRequest, context: RequestContext = {}, held = false): Promise<InferenceResponse> {
    let response!: InferenceResponse;
    await this.run(request, context, { held, answer: (result) => (response = this.response(request, result)) });
    return response;
  }

  private response(request: InferenceRequest, { outputs, timings, ood, parameters }: RunResult): InferenceResponse {
    const answered: InferOutput[] = [];
    const labels: Record<string, readonly string[]> = {};
    for (const name in outputs) {
      const requested = request.outputs?.find((output) => output.name === name);
      const tensor =
        requested?.classCount !== undefined ? classify(outputs[name], requested.classCount, this.batched, this.labelsOf(name)) : outputs[name];
      answered.push({ name, datatype: tensor.datatype, shape: tensor.shape, data: tensor.data });
      // A classified output's elements name their labels already; its scores are no longer in index order.
      const outputLabels = requested?.classCount === undefined ? this.labelsOf(name) : undefined;
      if (outputLabels) labels[name] = outputLabels;
    }
    const response: InferenceResponse = { model: this.name, version: this.version, id: request.id, outputs: answered, timings };
    if (Object.keys(labels).length > 0) response.labels = labels;
    if (ood || parameters) response.parameters = { ...parameters, ...(ood && oodParameters(ood)) };
    return response;
  }

  /**
   * The path of a request: validate → response cache → (pre-process → schedule → post-process) → observers.
   */
  async run(request: InferenceRequest, context: RequestContext = {}, { postprocess, held = false, answer }: RunOptions = {}): Promise<RunResult> {
    if (this.state !== 'READY' && !(held && this.state === 'UNLOADING')) throw new NereidError('UNAVAILABLE', `${this.label} is not ready (${this.state.toLowerCase()})`);
    const { observer, cache } = this.parts;
    const started = performance.now();
    const record: RequestRecord = {
      rows: 1,
      success: false,
      totalNs: 0,
      startedAt: Date.now(),
      requestId: request.id ?? context.requestId,
      traceparent: context.traceparent,
    };
    observer.onRequestStart?.();
    const spanTraceparent = observer.traceStart?.(record);
    // Work done for this request (an ensemble's steps, a handler's calls) is traced as its span's children.
    const workContext: RequestContext = spanTraceparent ? { ...context, traceparent: spanTraceparent } : context;
    // A call through a hold is counted by its hold, taken when its ensemble accepted the request: once, not twice.
    if (!held) this.inFlight++;
    this.started++;
    let result: RunResult | undefined;
    let failure: NereidError | undefined;
    try {
      const validated = this.validator.check(request);
      const textChecked = this.validator.checkText(validated.tensors);
      if (textChecked) await textChecked;
      // A request a miss would refuse (bad priority or timeout) must not be answered by a hit.
      this.parts.scheduler.validate(validated);
      const sequence = this.config.sequence_batching ? sequenceFlagsOf(request.parameters, this.name) : undefined;
      record.rows = Math.max(1, validated.batchSize);
      if (cache && !validated.cacheBypass) {
        const outcome = await cache.respond(
          { inputs: validated.tensors, outputNames: validated.outputNames, parameters: request.parameters, signal: context.signal },
          () => this.compute(validated, workContext, record.requestId, sequence, request.parameters),
          (computed) => (computed.ood || computed.parameters ? { ...(computed.ood && { ood: computed.ood }), ...(computed.parameters && { parameters: computed.parameters }) } : undefined),
        );
        record.cache = { hit: outcome.hit, ns: outcome.ns };
        const stored = outcome.annotations;
        result = outcome.computed ?? {
          outputs: outcome.outputs,
          timings: HIT_TIMINGS,
          ...(stored?.ood ? { ood: stored.ood as OutOfDistribution[] } : {}),
          ...(stored?.parameters ? { parameters: stored.parameters as Parameters } : {}),
        };
      } else {
        result = await this.compute(validated, workContext, record.requestId, sequence, request.parameters);
      }
      if (postprocess) {
        const postprocessStart = performance.now();
        await postprocess(result.outputs);
        const postprocessNs = (result.timings.postprocessNs ?? 0) + (performance.now() - postprocessStart) * 1e6;
        result = { ...result, timings: { ...result.timings, postprocessNs } };
      }
      if (answer) {
        const response = answer(result);
        // The front end prepares the answer before the outcome is counted: one it cannot send is a failure. Only a
        // front end that asks pays the await on the hot path.
        if (context.prepareAnswer) {
          try {
            await context.prepareAnswer(response);
          } catch (error) {
            record.unsent = true;
            throw error;
          }
        }
      }
      record.success = true;
      record.timings = result.timings;
      if (result.ood) {
        record.ood = { checked: result.ood.length, flagged: result.ood.filter((row) => row.out_of_distribution).length };
        // One context may carry several runs (a multipart classify request, one run per image): the access log gets their sum.
        context.ood = { checked: (context.ood?.checked ?? 0) + record.ood.checked, flagged: (context.ood?.flagged ?? 0) + record.ood.flagged };
      }
    } catch (error) {
      failure = asNereidError(error, this.label);
      // Logged once, here, with the original error's stack; the front ends log internal failures only at debug, and so
      // does an ensemble whose step's model logged the failure it wraps (one failure, one error line for an alert to count).
      if (failure.code === 'INTERNAL') {
        const logged = { err: failure.cause ?? failure, reqId: record.requestId };
        if (reportedAlready(failure)) this.parts.logger.debug(logged, `inference failed: ${failure.message}`);
        else this.parts.logger.error(logged, `inference failed: ${failure.message}`);
        failure.reported = true;
      } else if (isRefusal(failure.code)) this.refusals.note(failure.code, failure.message);
      record.errorCode = failure.code;
      record.errorReason = loggedMessage(failure);
      // Statistics and metrics count a failure's time only; its trace shows the parts it had run (an ensemble's steps).
      if (failure.timings) record.timings = failure.timings;
    } finally {
      if (!held) this.leave();
    }
    // Reported once, when the outcome is known; the observers cannot change it.
    record.totalNs = (performance.now() - started) * 1e6;
    observer.onRequestEnd(record);
    if (failure) throw failure;
    return result!;
  }

  /**
   * Pre-processing, the scheduler and post-processing: everything a cache hit skips. A version with none of them, no
   * profile and no reshaped output (most) answers with the scheduler's own promise: no async step of its own on the path.
   */
  private compute(request: ValidatedRequest, context: RequestContext, requestId?: string, sequence?: SequenceFlags, parameters?: Parameters): Promise<RunResult> {
    const { preprocessor, postprocessor, ood, monitor } = this.parts;
    if (preprocessor || postprocessor || ood || monitor || this.outputDims.size > 0) return this.computeAround(request, context, requestId, sequence, parameters);
    return this.schedule(request.tensors, request, request.outputNames, context, sequence, parameters);
  }

  private schedule(inputs: Record<string, Tensor>, request: ValidatedRequest, outputNames: readonly string[], context: RequestContext, sequence?: SequenceFlags, parameters?: Parameters) {
    return this.parts.scheduler.schedule({
      inputs,
      batchSize: request.batchSize,
      outputNames,
      priority: request.priority,
      timeoutMicroseconds: request.timeoutMicroseconds,
      signal: context.signal,
      deadline: context.deadline,
      parameters,
      context,
      sequence,
    });
  }

  private async computeAround(request: ValidatedRequest, context: RequestContext, requestId?: string, sequence?: SequenceFlags, parameters?: Parameters): Promise<RunResult> {
    const { preprocessor, postprocessor, ood, monitor } = this.parts;
    let inputs = request.tensors;
    let preprocessNs: number | undefined;
    let properties: Record<string, number>[] | undefined;
    if (preprocessor) {
      const preprocessStart = performance.now();
      ({ inputs, properties } = await preprocessor.runMeasured(inputs, monitor !== undefined, context.signal));
      preprocessNs = (performance.now() - preprocessStart) * 1e6;
    }
    // The detector's tensor and the monitored output are computed whether or not the client asked for them, and taken out after.
    const watched = monitor ? this.config.output[0].name : undefined;
    // Versions without a profile (most) allocate nothing here on each request.
    const extra = ood || monitor ? [ood?.tensor, watched].filter((name): name is string => name !== undefined && !request.outputNames.includes(name)) : NO_EXTRA_OUTPUTS;
    const scheduled = await this.schedule(inputs, request, extra.length > 0 ? [...request.outputNames, ...extra] : request.outputNames, context, sequence, parameters);
    const verdicts = ood ? this.judge(scheduled.outputs, inputs, ood) : undefined;
    if (monitor) this.observe(monitor, scheduled.outputs[watched!], verdicts, properties, requestId);
    for (const name of extra) delete scheduled.outputs[name];
    if (this.outputDims.size > 0) this.reshapeOutputs(scheduled.outputs);
    if (!preprocessor && !postprocessor) return verdicts ? { ...scheduled, ood: verdicts } : scheduled;
    const timings: RequestTimings = { ...scheduled.timings, preprocessNs };
    const carried = scheduled.parameters && { parameters: scheduled.parameters };
    if (!postprocessor) return { outputs: scheduled.outputs, timings, ood: verdicts, ...carried };
    const postprocessStart = performance.now();
    const outputs = postprocessor.apply(scheduled.outputs);
    timings.postprocessNs = (performance.now() - postprocessStart) * 1e6;
    return { outputs, timings, ood: verdicts, ...carried };
  }

  /** Outputs the config reshapes, from the model's shape to the config's dims (a -1 there taken from the row's size). */
  private reshapeOutputs(outputs: Record<string, Tensor>): void {
    for (const [name, dims] of this.outputDims) {
      const tensor = outputs[name];
      if (!tensor) continue;
      const rows = this.batched ? tensor.shape[0] : undefined;
      const perRow = rows === undefined ? tensor.data.length : rows === 0 ? 0 : tensor.data.length / rows;
      const concrete = concreteDims(dims, perRow);
      if (!concrete) throw new NereidError('INTERNAL', `output '${name}' of shape [${tensor.shape.join(', ')}] does not fit the config's dims [${dims.join(', ')}]`);
      outputs[name] = { ...tensor, shape: rows === undefined ? concrete : [rows, ...concrete] };
    }
  }

  /** Records the answer's rows in the monitor; a monitoring fault is logged and never fails the answer. */
  private observe(monitor: VersionMonitor, scores: Tensor | undefined, verdicts: readonly OutOfDistribution[] | undefined, properties: Record<string, number>[] | undefined, requestId?: string): void {
    if (!scores) return;
    try {
      const probabilities = rowProbabilities(scores, this.config.output[0].postprocess ?? DEFAULT_POSTPROCESSING, this.batched);
      monitor.record(
        probabilities.map((row, index) => ({ probabilities: row, oodScore: verdicts?.[index]?.score, oodFlagged: verdicts?.[index]?.out_of_distribution, inputs: properties?.[index] })),
        requestId,
      );
    } catch (error) {
      this.parts.logger.error({ err: error }, `monitoring ${this.label} failed; the answer is unaffected: ${(error as Error).message}`);
    }
  }

  /** Scores each row of the detector's tensor; a blank input row is out of distribution when the profile had none. */
  private judge(outputs: Record<string, Tensor>, inputs: Record<string, Tensor>, ood: OodMonitor): OutOfDistribution[] {
    const representation = outputs[ood.tensor];
    const rows = this.batched ? representation.shape[0] : 1;
    const dims = this.batched ? representation.shape.slice(1) : representation.shape;
    const width = (representation.data as ArrayLike<number>).length / rows;
    const data = representation.data as Float32Array;
    const watchedInput = ood.blank === undefined ? undefined : inputs[ood.blank.input];
    const inputData = watchedInput && watchedInput.datatype !== 'BYTES' ? (watchedInput.data as Float32Array) : undefined;
    const inputWidth = inputData ? inputData.length / rows : 0;
    return Array.from({ length: rows }, (_, row) => {
      const score = ood.scorer.score(pooledFeatures(data.subarray(row * width, (row + 1) * width), dims, ood.pooling));
      const blank = inputData !== undefined && isBlankRow(inputData.subarray(row * inputWidth, (row + 1) * inputWidth), ood.blank!.floor);
      return { score, out_of_distribution: isOutOfDistribution(score, ood.threshold, blank), threshold: ood.threshold, ...(blank ? { blank: true as const } : {}) };
    });
  }

  /**
   * Stops taking requests, answers those accepted, and releases the instances. A request accepted
   * while the version was ready may still be pre-processing (decoding images, say) and not yet
   * queued; the scheduler stops only after it has been answered, so a reload never turns it away.
   */
  async unload(): Promise<void> {
    this.state = 'UNLOADING';
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.whenIdle = resolve));
    await this.parts.scheduler.stop();
    await Promise.allSettled([...this.parts.instances.map((instance) => instance.release()), ...this.retirements]);
    this.state = 'UNAVAILABLE';
    this.reason = 'unloaded';
  }
}
