/**
 * JavaScript handler models (backend "javascript"), the shape of Triton's Python backend in JS: a
 * version folder's model.js / model.mjs exports initialize(context), execute(requests) and
 * finalize(). Each instance runs the handler in its own worker thread, with memory limits and a
 * time limit per call; context.infer reaches other models through the server's inference path
 * (InstanceOptions.callModel), proxied over the worker's message port.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { z } from 'zod';
import { declaredParameters, parameterStrings, type CompletedModelConfig, type ModelConfig } from '../config/model-config.js';
import { datatypeFromConfig } from '../core/datatype.js';
import { cancelled, NereidError, reportedAlready, type ErrorCode } from '../core/errors.js';
import { imageDecodeSlots } from '../core/decode-slots.js';
import { ClientCancellation, type InferenceRequest, type RequestContext } from '../core/inference.js';
import { describeShape, type Tensor } from '../core/tensor.js';
import type { Backend, BackendInstance, BatchRequest, InstanceOptions, ModelCall, ModelSignature, RequestAnswers, RunOutputs } from './backend.js';
import { cloneable, withBuffers } from './handler-tensors.js';
import type { HandlerFailure, HandlerSpec, HandlerWorkerReply, HandlerWorkerRequest } from './javascript-worker.js';
import { siblingWorkerEntry, startWorkerThread } from './worker-entry.js';

const megabytes = (fallback: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: (issue) => `must be a whole number of megabytes, got '${String(issue.input)}'` })
    .transform(Number)
    .pipe(z.number().int().min(1, { error: 'must be at least 1' }).max(max, { error: `must be at most ${max}` }))
    .default(fallback);

/** The limits each instance's worker runs under, from the config's parameters; the defaults live here. */
export const javascriptParametersSchema = z.object({
  /** How long one call of execute (and initialize, finalize) may take before the worker is stopped and replaced. */
  execute_timeout_ms: z
    .string()
    .regex(/^\d+$/, { error: (issue) => `must be a whole number of milliseconds, got '${String(issue.input)}'` })
    .transform(Number)
    .pipe(z.number().int().min(1, { error: 'must be at least 1' }).max(3_600_000, { error: 'must be at most 3600000 (an hour)' }))
    .default(30_000),
  /** The worker's heap for long-lived objects (resourceLimits.maxOldGenerationSizeMb). */
  max_old_generation_mb: megabytes(256, 16_384),
  /** The worker's heap for new objects (resourceLimits.maxYoungGenerationSizeMb). */
  max_young_generation_mb: megabytes(32, 1024),
  /** The worker's stack (resourceLimits.stackSizeMb). */
  stack_size_mb: megabytes(4, 64),
});

export type JavaScriptParameters = z.output<typeof javascriptParametersSchema>;

export const javascriptParameters = (config: ModelConfig): JavaScriptParameters => declaredParameters(javascriptParametersSchema, parameterStrings(config));

const WORKER_ENTRY = siblingWorkerEntry('javascript-worker');

/**
 * The handler's environment: the server's, less its own settings (NEREID_*: tokens, the Redis password), which a
 * model's code has no business holding. Not a sandbox — the handler can still read what the process can read.
 */
function handlerEnvironment(): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('NEREID_')));
}

function spawnWorker(spec: HandlerSpec, limits: JavaScriptParameters): Worker {
  const options = {
    workerData: spec,
    env: handlerEnvironment(),
    resourceLimits: { maxOldGenerationSizeMb: limits.max_old_generation_mb, maxYoungGenerationSizeMb: limits.max_young_generation_mb, stackSizeMb: limits.stack_size_mb },
    // The handler's console output goes to the server's, not to a pipe nobody reads.
    stdout: false,
    stderr: false,
  };
  return startWorkerThread(WORKER_ENTRY, options);
}

/** The context.infer calls each worker has under way, by worker. */
const callsUnderWay = new WeakMap<Worker, Set<ClientCancellation>>();

/**
 * Stops a worker and calls off the context.infer calls it made: nobody will read their answers,
 * and a call left running would hold its model's instances (a handler calling itself would keep
 * calling itself after its caller was answered).
 */
function stopWorker(worker: Worker): Promise<number> {
  for (const call of callsUnderWay.get(worker) ?? []) call.abort();
  return worker.terminate();
}

/**
 * Error codes a handler may give a failed request (its `code`), so that the client gets the status a client's mistake or
 * a busy step deserves; any other failure of a request, whatever code it carries (a Node 'ENOENT'), is INTERNAL.
 */
export const HANDLER_ERROR_CODES: ReadonlySet<string> = new Set(['INVALID_ARGUMENT', 'NOT_FOUND', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'UNIMPLEMENTED', 'INTERNAL']);

/** A handler's failure (as its worker hands it over) as the error its request or batch fails with. */
export function handlerError(failure: HandlerFailure, label: string): NereidError {
  const code = (failure.code && HANDLER_ERROR_CODES.has(failure.code) ? failure.code : 'INTERNAL') as ErrorCode;
  const cause = new Error(failure.message);
  if (failure.stack) cause.stack = failure.stack;
  const error = new NereidError(code, `${label}: ${failure.message}`, { cause });
  // A called model's failure the handler let escape: that model logged it at error level, with its own stack.
  if (failure.reported) error.reported = true;
  return error;
}

interface Running {
  resolve: (answers: RequestAnswers) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  contexts: (RequestContext | undefined)[];
  /** Stops listening to the requests' cancel signals. */
  unwatch: () => void;
  /** Lets the next batch have the worker. */
  free: () => void;
}

/**
 * One handler instance: a worker thread running the handler, one batch at a time (as Triton's
 * Python backend calls execute). A call that overruns execute_timeout_ms, a worker over its
 * memory limits or one that exits fails the batch it held, and a new worker (initialize again)
 * takes the next batch.
 */
export class JavaScriptInstance implements BackendInstance {
  readonly threads = 1;
  readonly concurrency = 1;
  private current: Promise<Worker>;
  private nextId = 0;
  private running?: Running & { id: number };
  /** Core-seconds the running batch's context.infer calls cost; one batch runs at a time. */
  private calledCoreSeconds = 0;
  /** Settles when the batch handed over last has been answered and its worker is free. */
  private turn: Promise<unknown> = Promise.resolve();
  /** Settles when the worker is done with the batch it runs (which may be after its callers were answered: they cancelled). */
  private workerFree: Promise<void> = Promise.resolve();
  private released = false;
  /** Workers stopped or dead: their exit is expected and starts nothing. */
  private readonly retired = new WeakSet<Worker>();
  private readonly label: string;

  private constructor(
    worker: Worker,
    private readonly spec: HandlerSpec,
    private readonly limits: JavaScriptParameters,
    private readonly logger: Logger,
    private readonly callModel: ModelCall | undefined,
  ) {
    this.label = `handler of model '${spec.modelName}' version ${spec.version} (instance ${spec.instance})`;
    this.current = Promise.resolve(this.adopt(worker));
  }

  static async start(spec: HandlerSpec, limits: JavaScriptParameters, logger: Logger, callModel?: ModelCall): Promise<JavaScriptInstance> {
    const worker = await JavaScriptInstance.startWorker(spec, limits, logger, callModel);
    return new JavaScriptInstance(worker, spec, limits, logger, callModel);
  }

  /** A worker whose handler was imported and initialized; an error, an exit or a timeout before that fails the start. */
  private static startWorker(spec: HandlerSpec, limits: JavaScriptParameters, logger: Logger, callModel?: ModelCall): Promise<Worker> {
    return new Promise((resolve, reject) => {
      const worker = spawnWorker(spec, limits);
      const early = (message: HandlerWorkerReply) => serveWorkerCall(worker, message, logger, callModel, () => undefined);
      const stop = (error: Error) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('message', early);
        worker.off('error', stop);
        worker.off('exit', onExit);
        void stopWorker(worker);
        reject(error);
      };
      let timer: NodeJS.Timeout | undefined;
      // Exit code 13 is Node's "unsettled top-level await": here, an initialize() whose promise never settles with nothing else pending.
      const onExit = (code: number) =>
        stop(new Error(code === 13 ? `initialize() never settled: its promise neither resolved nor rejected (and nothing kept the worker busy)` : `the handler's worker thread exited (code ${code}) before it was ready`));
      const onMessage = (reply: HandlerWorkerReply) => {
        // Booting the thread is not the handler's time; importing and initializing it are.
        if (reply.type === 'started') {
          timer = setTimeout(
            () => stop(new Error(`loading the handler and its initialize() did not finish within ${limits.execute_timeout_ms} ms (parameter execute_timeout_ms); the worker was stopped`)),
            limits.execute_timeout_ms,
          );
          return;
        }
        if (reply.type === 'failed') {
          const error = new Error(`the handler failed to start: ${reply.message}`);
          if (reply.stack) error.stack = reply.stack;
          return stop(error);
        }
        if (reply.type !== 'ready') return;
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('message', early);
        worker.off('error', stop);
        worker.off('exit', onExit);
        resolve(worker);
      };
      worker.on('message', onMessage);
      // initialize() may already log or call other models.
      worker.on('message', early);
      worker.on('error', stop);
      worker.on('exit', onExit);
    });
  }

  private adopt(worker: Worker): Worker {
    worker.on('message', (reply: HandlerWorkerReply) => {
      if (reply.type !== 'result') {
        return serveWorkerCall(worker, reply, this.logger, this.callModel, (origin) => this.contextOf(origin), (coreSeconds) => (this.calledCoreSeconds += coreSeconds));
      }
      const running = this.running;
      if (!running || running.id !== reply.id) return;
      this.settle();
      if (reply.error) return running.reject(handlerError(reply.error, this.label));
      const answers = reply.answers!.map((answer) =>
        'outputs' in answer ? withBuffers(answer.outputs) : this.requestFailure(answer.error),
      );
      running.resolve({ answers, computeNs: reply.computeNs, awaitedNs: reply.awaitedNs, calledCoreSeconds: this.calledCoreSeconds });
    });
    const fail = (error: Error) => {
      if (this.retired.has(worker)) return;
      const running = this.running;
      this.settle();
      running?.reject(error);
      // Each message here starts with the label already.
      this.logger.warn({ err: error }, error.message);
      this.replace(worker);
    };
    worker.on('error', (error: Error & { code?: string }) =>
      fail(
        error.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new NereidError('INTERNAL', `${this.label} ran out of memory (parameters max_old_generation_mb ${this.limits.max_old_generation_mb}, max_young_generation_mb ${this.limits.max_young_generation_mb}); a new worker is starting`, { cause: error })
          : new NereidError('INTERNAL', `${this.label} crashed: ${error.message}; a new worker is starting`, { cause: error }),
      ),
    );
    worker.on('exit', (code) => fail(new NereidError('INTERNAL', `${this.label}: its worker thread exited (code ${code}); a new one is starting`)));
    return worker;
  }

  /**
   * A request the handler answered with an error. One it gave a client's code (its input is wrong, a
   * step is unavailable) is told in the handler's own words: the client is not helped by the
   * instance's name, which the log keeps. Any other is the server's fault and names the instance.
   */
  private requestFailure(failure: HandlerFailure): NereidError {
    const error = handlerError(failure, `${this.label}: request failed`);
    if (error.code === 'INTERNAL') return error;
    this.logger.debug({ code: error.code }, error.message);
    return new NereidError(error.code, failure.message, { cause: error.cause });
  }

  /** Stops a worker and starts the next, which the batches after this one wait for. */
  private replace(worker: Worker): void {
    this.retired.add(worker);
    void stopWorker(worker);
    if (this.released) return;
    this.current = JavaScriptInstance.startWorker(this.spec, this.limits, this.logger, this.callModel).then((next) => this.adopt(next));
    this.current.catch(() => undefined); // a failed restart is reported by the next batch, not as an unhandled rejection
  }

  /**
   * What travelled beside the request a call is made for: the one it names, else the batch's only
   * request; none for a call from a batch of several that names none, or from initialize().
   */
  private contextOf(origin: { batch: number; index: number } | undefined): RequestContext | undefined {
    const running = this.running;
    if (!running) return undefined;
    if (origin) return origin.batch === running.id ? running.contexts[origin.index] : undefined;
    return running.contexts.length === 1 ? running.contexts[0] : undefined;
  }

  private settle(): void {
    const running = this.running;
    if (!running) return;
    clearTimeout(running.timer);
    running.unwatch();
    running.free();
    this.running = undefined;
  }

  async run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Promise<RunOutputs> {
    const { answers } = await this.runRequests([{ inputs, outputNames }]);
    const [answer] = answers;
    if (answer instanceof Error) throw answer;
    return answer;
  }

  /**
   * Batches run one after another: one the scheduler sends while another runs (a caller of run(), or
   * a batch whose callers cancelled and were answered while the worker finishes it) waits its turn.
   */
  runRequests(requests: readonly BatchRequest[]): Promise<RequestAnswers> {
    const answered = this.turn.then(() => this.execute(requests));
    const free = () => this.workerFree;
    this.turn = answered.then(free, free);
    return answered;
  }

  /**
   * Requests whose inputs do not match the config are answered with their error here (the server
   * checks a client's, but not a warmup sample's or a library caller's), as are those cancelled while
   * they waited for the worker; the others go to the handler. One cancelled while the handler ran is
   * answered CANCELLED, not with its answer: its client is gone, and it is no success.
   */
  private async execute(requests: readonly BatchRequest[]): Promise<RequestAnswers> {
    const refusals = requests.map((request) => (request.context?.signal?.aborted ? cancelled() : this.inputMismatch(request.inputs)));
    const sent = requests.filter((_, index) => refusals[index] === undefined);
    const handled = sent.length > 0 ? await this.executeInWorker(sent) : { answers: [] };
    let next = 0;
    const answers = refusals.map((refusal, index) => {
      if (refusal) return refusal;
      const answer = handled.answers[next++];
      return requests[index].context?.signal?.aborted ? cancelled() : answer;
    });
    return { answers, computeNs: handled.computeNs, awaitedNs: handled.awaitedNs, calledCoreSeconds: handled.calledCoreSeconds };
  }

  private inputMismatch(inputs: Record<string, Tensor>): Error | undefined {
    const { config } = this.spec;
    const batched = config.max_batch_size > 0;
    for (const name of Object.keys(inputs)) {
      if (!config.input.some((input) => input.name === name)) {
        return new NereidError('INVALID_ARGUMENT', `${this.label}: input '${name}' is not an input of the model (its inputs: ${config.input.map((input) => input.name).join(', ')})`);
      }
    }
    for (const declared of config.input) {
      const tensor = inputs[declared.name];
      if (!tensor) {
        if (declared.optional) continue;
        return new NereidError('INVALID_ARGUMENT', `${this.label}: input '${declared.name}' is missing (the model takes ${config.input.map((input) => input.name).join(', ')})`);
      }
      const dims = declared.reshape?.shape ?? declared.dims;
      const shape = batched ? [-1, ...dims] : dims;
      const datatype = datatypeFromConfig(declared.data_type);
      const fits = tensor.datatype === datatype && tensor.shape.length === shape.length && shape.every((dim, index) => dim === -1 || dim === tensor.shape[index]);
      if (!fits) {
        return new NereidError('INVALID_ARGUMENT', `${this.label}: input '${declared.name}' expects ${datatype} ${describeShape(shape)}, got ${tensor.datatype} ${describeShape(tensor.shape)}`);
      }
    }
    return undefined;
  }

  private async executeInWorker(requests: readonly BatchRequest[]): Promise<RequestAnswers> {
    const worker = await this.current;
    const id = this.nextId++;
    const message: HandlerWorkerRequest = {
      type: 'execute',
      id,
      requests: requests.map((request) => ({ inputs: cloneable(request.inputs), outputNames: [...request.outputNames], parameters: request.parameters ?? {} })),
    };
    let free!: () => void;
    this.workerFree = new Promise<void>((resolve) => (free = resolve));
    return new Promise<RequestAnswers>((resolve, reject) => {
      const timer = setTimeout(() => {
        const running = this.running;
        if (running?.id !== id) return;
        this.settle();
        // A handler that does not give the thread back (a loop, a wait that never ends) can only be stopped with its worker.
        running.reject(
          new NereidError(
            'INTERNAL',
            `${this.label}: execute() did not answer within ${this.limits.execute_timeout_ms} ms (parameter execute_timeout_ms); its worker was stopped and a new one is starting`,
          ),
        );
        this.replace(worker);
      }, this.limits.execute_timeout_ms);
      const unwatch = whenAllCancelled(requests, () => reject(cancelled()));
      this.running = { id, resolve, reject, timer, contexts: requests.map((request) => request.context), unwatch, free };
      this.calledCoreSeconds = 0;
      worker.postMessage(message);
    });
  }

  async release(): Promise<void> {
    this.released = true;
    // A batch answered early (its callers cancelled) may still run in the worker: finalize() comes after it, or after
    // its timeout stopped the worker.
    await this.turn;
    const worker = await this.current.catch(() => undefined);
    if (!worker || this.retired.has(worker)) return;
    this.retired.add(worker);
    const finished = new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      worker.on('message', (reply: HandlerWorkerReply) => {
        if (reply.type !== 'finalized') return;
        if (reply.error) this.logger.warn(`${this.label}: finalize() threw: ${reply.error}`);
        resolve();
      });
    });
    worker.postMessage({ type: 'finalize' } satisfies HandlerWorkerRequest);
    await Promise.race([finished, new Promise<void>((resolve) => setTimeout(resolve, this.limits.execute_timeout_ms).unref())]);
    await stopWorker(worker);
  }
}

/**
 * Calls `onCancelled` once every request of a running batch has been cancelled: its callers are
 * answered at once, while the worker finishes the batch (whose context.infer calls are cancelled
 * with it) before it takes the next; a batch some still wait for answers them all together.
 * Answers the function that stops listening.
 */
function whenAllCancelled(requests: readonly BatchRequest[], onCancelled: () => void): () => void {
  const signals = requests.map((request) => request.context?.signal);
  if (!signals.every((signal) => signal !== undefined)) return () => undefined;
  // A request may have been cancelled while the batch waited for a new worker.
  let left = signals.filter((signal) => !signal!.aborted).length;
  if (left === 0) onCancelled();
  const onAbort = () => {
    if (--left === 0) onCancelled();
  };
  for (const signal of signals) if (!signal!.aborted) signal!.addEventListener('abort', onAbort, { once: true });
  return () => {
    for (const signal of signals) signal!.removeEventListener('abort', onAbort);
  };
}

/**
 * What a worker's call (context.infer, a wait for a decode slot) is cancelled by: the request it is made for, and the
 * worker's being stopped (stopWorker). `ended` stops following them once the call is over.
 */
function callCancellation(worker: Worker, origin: RequestContext | undefined): { cancellation: ClientCancellation; ended: () => void } {
  const cancellation = new ClientCancellation();
  const followOrigin = () => cancellation.abort();
  if (origin?.signal?.aborted) cancellation.abort();
  else origin?.signal?.addEventListener('abort', followOrigin, { once: true });
  const underWay = callsUnderWay.get(worker) ?? callsUnderWay.set(worker, new Set()).get(worker)!;
  underWay.add(cancellation);
  return {
    cancellation,
    ended: () => {
      underWay.delete(cancellation);
      origin?.signal?.removeEventListener('abort', followOrigin);
    },
  };
}

/**
 * The process's decode slots each worker holds (context.withDecodeSlot). A worker that is stopped or dies while it
 * holds some gives them back with its exit, or every decode of the process would wait for them for ever.
 */
const decodeSlotsHeld = new WeakMap<Worker, { held: number; exited: boolean }>();

/** Records a slot taken for `worker`; false (and the slot given back) when the worker is gone. */
function holdDecodeSlot(worker: Worker): boolean {
  let holding = decodeSlotsHeld.get(worker);
  if (!holding) {
    const state = { held: 0, exited: false };
    holding = state;
    decodeSlotsHeld.set(worker, state);
    worker.once('exit', () => {
      state.exited = true;
      for (; state.held > 0; state.held--) imageDecodeSlots.give();
    });
  }
  if (holding.exited || worker.threadId < 0) {
    imageDecodeSlots.give();
    return false;
  }
  holding.held += 1;
  return true;
}

function giveDecodeSlot(worker: Worker): void {
  const holding = decodeSlotsHeld.get(worker);
  // A worker cannot give back more than it holds: the slots are the whole process's.
  if (!holding || holding.held === 0) return;
  holding.held -= 1;
  imageDecodeSlots.give();
}

/** A worker's log line, context.infer call or decode-slot wait, answered on the main thread. */
function serveWorkerCall(
  worker: Worker,
  reply: HandlerWorkerReply,
  logger: Logger,
  callModel: ModelCall | undefined,
  contextOf: (origin: { batch: number; index: number } | undefined) => RequestContext | undefined,
  onCalledCost?: (coreSeconds: number) => void,
): void {
  if (reply.type === 'log') {
    logger[reply.level](reply.message);
    return;
  }
  const answer = (message: HandlerWorkerRequest, transfer: ArrayBuffer[] = []) => {
    // The worker may have been stopped (a timeout) while the call ran: nobody waits for the answer then.
    try {
      worker.postMessage(message, transfer);
    } catch {
      /* the worker is gone */
    }
  };
  if (reply.type === 'decode-slot-given') return giveDecodeSlot(worker);
  if (reply.type !== 'infer' && reply.type !== 'decode-slot') return;
  const origin = contextOf(reply.origin);
  const { cancellation, ended } = callCancellation(worker, origin);
  if (reply.type === 'decode-slot') {
    imageDecodeSlots.take(cancellation).then(
      () => {
        ended();
        if (!holdDecodeSlot(worker)) return;
        answer({ type: 'decode-slot', call: reply.call });
      },
      (error: NereidError) => {
        ended();
        answer({ type: 'decode-slot', call: reply.call, error: { message: error.message, code: error.code } });
      },
    );
    return;
  }
  if (!callModel) {
    ended();
    answer({ type: 'answer', call: reply.call, error: { message: 'context.infer is not available: this instance was created without a way to call other models', code: 'UNAVAILABLE' } });
    return;
  }
  const request: InferenceRequest = {
    model: reply.model,
    version: reply.version,
    inputs: Object.entries(withBuffers(reply.inputs)).map(([name, tensor]) => ({ name, ...tensor })),
    outputs: reply.outputs?.map((name) => ({ name })),
    ...(reply.parameters && { parameters: reply.parameters }),
  };
  // A copy: what the called model writes into its context (its OOD counts) is its own, not the handler's request's.
  const context: RequestContext = { ...(origin && { requestId: origin.requestId, traceparent: origin.traceparent, deadline: origin.deadline }), signal: cancellation, patient: true };
  callModel(request, context).then(
    (response) => {
      ended();
      onCalledCost?.(response.timings?.coreSeconds ?? 0);
      const outputs = Object.fromEntries(response.outputs.map((output) => [output.name, { datatype: output.datatype, shape: output.shape, data: output.data } as Tensor]));
      // The response's buffers may be shared (a cached answer, a view into a batch): copied, not moved.
      // With the version that answered, its parameters (its OOD verdict) and its outputs' labels, for context.inferResponse.
      const labels = reply.whole && response.labels;
      answer({ type: 'answer', call: reply.call, outputs: cloneable(outputs), version: response.version, ...(response.parameters && { parameters: response.parameters }), ...(labels && { labels }) });
    },
    (error: unknown) => {
      ended();
      const failure =
        error instanceof NereidError
          ? { message: error.message, code: error.code, ...(reportedAlready(error) && { reported: true as const }) }
          : { message: (error as Error)?.message ?? String(error), code: 'INTERNAL' };
      answer({ type: 'answer', call: reply.call, error: failure });
    },
  );
}

export class JavaScriptBackend implements Backend {
  readonly name = 'javascript';
  readonly platforms = [] as const;
  readonly defaultModelFilename = 'model.js';
  readonly modelFilenames = ['model.js', 'model.mjs', 'model.cjs'] as const;
  readonly runsRepositoryCode = true;
  readonly tuningParameters = ['execute_timeout_ms', 'max_old_generation_mb', 'max_young_generation_mb', 'stack_size_mb'] as const;

  checkConfig(config: ModelConfig): void {
    javascriptParameters(config);
    // Guessing batching from dims written -1 would be a guess about code: the handler's author says.
    if (config.max_batch_size === undefined) throw new Error('a javascript model sets max_batch_size in its config (0: its tensors have no batch dimension)');
    const missing = [config.input.length === 0 && 'input', config.output.length === 0 && 'output'].filter((kind) => kind);
    if (missing.length > 0) {
      throw new Error(
        `a javascript model declares its inputs and outputs in its config, and this config has no ${missing.join(' and no ')} (add e.g. input [ { name: "IN", data_type: TYPE_FP32, dims: [ -1 ] } ])`,
      );
    }
  }

  /** The config is the handler's only declaration of what it takes and gives. */
  async describe(_modelPath: string, config: ModelConfig): Promise<ModelSignature> {
    this.checkConfig(config);
    const batched = (config.max_batch_size ?? 0) > 0;
    const signatureOf = (tensor: { name: string; data_type: string; dims: number[]; reshape?: { shape: number[] } }) => ({
      name: tensor.name,
      datatype: datatypeFromConfig(tensor.data_type)!,
      shape: batched ? [-1, ...(tensor.reshape?.shape ?? tensor.dims)] : [...(tensor.reshape?.shape ?? tensor.dims)],
    });
    return { inputs: config.input.map(signatureOf), outputs: config.output.map(signatureOf) };
  }

  /** An instance computes on its worker's one thread, whatever its plan. */
  instanceThreads(): number {
    return 1;
  }

  /** One instance; a handler that computes much asks for more with instance_group. */
  async defaultInstances(): Promise<{ count: number; threadsPerInstance: number }> {
    return { count: 1, threadsPerInstance: 1 };
  }

  async createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance> {
    const completed = config as CompletedModelConfig;
    const spec: HandlerSpec = {
      file: modelPath,
      modelName: completed.name,
      version: options.version ?? '',
      config: completed,
      parameters: Object.fromEntries(Object.entries(config.parameters).map(([key, value]) => [key, value.string_value])),
      instance: options.index,
      labels: Object.fromEntries([...(options.labels ?? [])].map(([name, labels]) => [name, [...labels]])),
    };
    const logger = options.logger.child({ instance: options.index });
    return JavaScriptInstance.start(spec, javascriptParameters(config), logger, options.callModel);
  }
}
