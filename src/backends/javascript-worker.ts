/**
 * A worker thread that hosts one instance of a JavaScript handler model: it imports the handler's
 * file, calls initialize(context) once, execute(requests) per batch and finalize() on release.
 * context.infer is sent to the main thread, which runs it through the server's inference path.
 * Messages: 'execute', 'answer' (to an infer call), 'decode-slot' (one granted) and 'finalize' in;
 * 'ready', 'failed', 'result', 'infer', 'decode-slot' (one asked for), 'decode-slot-given', 'log'
 * and 'finalized' out.
 */
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import type { CompletedModelConfig } from '../config/model-config.js';
import { datatypeFromConfig } from '../core/datatype.js';
import { refuseUnknownOptions } from '../core/options.js';
import type { Parameters } from '../core/inference.js';
import { describeShape, type Tensor } from '../core/tensor.js';
import { missingExecuteError, moduleLoadError } from './handler-module.js';
import { tensorFromHandler, transferable, withBuffers } from './handler-tensors.js';

export interface HandlerSpec {
  file: string;
  modelName: string;
  version: string;
  config: CompletedModelConfig;
  /** The config's parameters as plain strings. */
  parameters: Record<string, string>;
  instance: number;
  /** The labels of outputs that name a label_filename, by output name. */
  labels: Record<string, string[]>;
}

export interface WorkerBatchRequest {
  inputs: Record<string, Tensor>;
  outputNames: string[];
  parameters: Parameters;
}

/** What a handler's request answers in a result: its outputs, or why it failed. */
/**
 * A handler's failure as it crosses to the main thread. `reported`: it is a called model's failure that model logged at
 * error level already (the handler let its context.infer rejection escape), so it is not logged there a second time.
 */
export interface HandlerFailure {
  message: string;
  code?: string;
  stack?: string;
  reported?: true;
}

export type WorkerAnswer = { outputs: Record<string, Tensor> } | { error: HandlerFailure };

export type HandlerWorkerRequest =
  | { type: 'execute'; id: number; requests: WorkerBatchRequest[] }
  | {
      type: 'answer';
      call: number;
      outputs?: Record<string, Tensor>;
      version?: string;
      parameters?: Parameters;
      labels?: Record<string, readonly string[]>;
      error?: { message: string; code: string; reported?: true };
    }
  | { type: 'decode-slot'; call: number; error?: { message: string; code: string } }
  | { type: 'finalize' };

export type HandlerWorkerReply =
  | { type: 'started' }
  | { type: 'ready' }
  | { type: 'failed'; message: string; stack?: string }
  /** computeNs: execute()'s whole time; awaitedNs: the part of it spent waiting on context.infer calls. */
  | { type: 'result'; id: number; answers?: WorkerAnswer[]; computeNs: number; awaitedNs: number; error?: HandlerFailure }
  | {
      type: 'infer';
      call: number;
      model: string;
      version?: string;
      inputs: Record<string, Tensor>;
      outputs?: string[];
      parameters?: Parameters;
      origin?: { batch: number; index: number };
      /** The whole answer is wanted (context.inferResponse): the called outputs' labels cross too, which infer leaves. */
      whole?: boolean;
    }
  | { type: 'decode-slot'; call: number; origin?: { batch: number; index: number } }
  | { type: 'decode-slot-given' }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; message: string }
  | { type: 'finalized'; error?: string };

interface Handler {
  initialize?: (context: unknown) => unknown;
  execute: (requests: unknown[]) => unknown;
  finalize?: () => unknown;
}

/** The outputs of one request's answer, checked against the config's declarations. */
function outputsOf(answer: unknown, request: WorkerBatchRequest, config: CompletedModelConfig): Record<string, Tensor> {
  if (typeof answer !== 'object' || answer === null) throw new Error(`execute() answered ${String(answer)} instead of an object of output tensors`);
  const outputs: Record<string, Tensor> = {};
  const batched = config.max_batch_size > 0;
  // With a batch dimension, each output has the request's rows: more or fewer would hand the client rows it never sent.
  const rows = batched ? Object.values(request.inputs)[0]?.shape[0] : undefined;
  for (const name of request.outputNames) {
    const declaration = config.output.find((output) => output.name === name)!;
    const value = (answer as Record<string, unknown>)[name];
    if (value === undefined) throw new Error(`execute() answered without output '${name}' (it gave: ${Object.keys(answer).join(', ') || 'none'})`);
    const tensor = tensorFromHandler(`output '${name}'`, value, datatypeFromConfig(declaration.data_type));
    const dims = declaration.reshape?.shape ?? declaration.dims;
    const expected = batched ? [-1, ...dims] : dims;
    if (tensor.shape.length !== expected.length || !expected.every((dim, index) => dim === -1 || dim === tensor.shape[index])) {
      throw new Error(`output '${name}' has shape ${describeShape(tensor.shape)}, but the config declares ${describeShape(expected)}`);
    }
    if (rows !== undefined && tensor.shape[0] !== rows) {
      throw new Error(`output '${name}' has ${tensor.shape[0]} row(s), but its request has ${rows}: with max_batch_size > 0 an output's first dimension is the request's rows`);
    }
    outputs[name] = tensor;
  }
  return outputs;
}

/** A handler's failure as it crosses to the main thread; its code, whatever it is, is judged there (HANDLER_ERROR_CODES). */
function failureOf(error: unknown): HandlerFailure {
  if (error instanceof Error) {
    const { code, reported } = error as { code?: unknown; reported?: unknown };
    return { message: error.message, stack: error.stack, code: typeof code === 'string' ? code : undefined, ...(reported === true && { reported }) };
  }
  return { message: String(error) };
}

const port = parentPort!;
const spec = workerData as HandlerSpec;
const post = (reply: HandlerWorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);
/** Each request handed to execute(), by the batch and position it came in. */
const origins = new WeakMap<object, { batch: number; index: number }>();
/** A called model's whole answer, as context.inferResponse resolves it: the V2 answer's fields, the outputs by name. */
interface CalledModelAnswer {
  model_name: string;
  model_version: string;
  outputs: Record<string, Tensor>;
  /** The called model's response parameters: its out-of-distribution verdict (ood, ood_score, ood_threshold), a handler's own. */
  parameters: Parameters;
  /** The class names of the answered outputs whose config names a label_filename, by output name, in index order. */
  labels: Record<string, string[]>;
}
/** `what`: the handler's call as it wrote it (context.infer('m') or context.inferResponse('m')), to name it in errors. */
const calls = new Map<number, { model: string; what: string; resolve: (answer: CalledModelAnswer) => void; reject: (error: Error) => void }>();
let nextCall = 0;
/**
 * Time spent with at least one context.infer call awaiting its answer. A handler's cost leaves it out:
 * the models it calls count their own compute, and a pipeline waiting on them uses no core (otherwise
 * the ocr pipeline's cost would count its steps' time a second time). Its compute_infer holds it, as
 * Triton's Python backend times a BLS model's whole execute().
 */
let callsAwaited = 0;
let awaitingSince = 0;
let awaitedMs = 0;
const awaitedUntilNow = () => awaitedMs + (callsAwaited > 0 ? performance.now() - awaitingSince : 0);

/** One part of a log line as text: an Error with its stack (JSON.stringify gives '{}' for one), anything else as JSON. */
function logText(part: unknown): string {
  if (typeof part === 'string') return part;
  if (part instanceof Error) return part.stack ?? `${part.name}: ${part.message}`;
  try {
    return JSON.stringify(part, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value)) ?? String(part);
  } catch {
    return String(part); // a circular object
  }
}

const log = (level: 'debug' | 'info' | 'warn' | 'error') => (...parts: unknown[]) => post({ type: 'log', level, message: parts.map(logText).join(' ') });

interface InferOptions {
  version?: string | number;
  outputs?: string[];
  request?: object;
  parameters?: Parameters;
}

const INFER_OPTIONS: readonly string[] = ['version', 'outputs', 'request', 'parameters'];

/** A misspelt option would otherwise be dropped unsaid, as would a parameter the protocol cannot carry. */
function checkInferOptions(what: string, options: InferOptions): void {
  refuseUnknownOptions(what, options, INFER_OPTIONS);
  if (options.parameters === undefined) return;
  if (typeof options.parameters !== 'object' || options.parameters === null || Array.isArray(options.parameters)) {
    throw new TypeError(`${what}: options.parameters must be an object of parameters by name, got ${Array.isArray(options.parameters) ? 'an array' : String(options.parameters)}`);
  }
  for (const [name, value] of Object.entries(options.parameters)) {
    // A bigint as well: a 64-bit sequence id past 2^53, as the server takes it from gRPC.
    if (!['string', 'number', 'boolean', 'bigint'].includes(typeof value)) throw new TypeError(`${what}: parameter '${name}' must be a string, number, bigint or boolean, got ${value === null ? 'null' : typeof value}`);
  }
}

/** One context.infer or context.inferResponse call, sent to the main thread, which runs it through the server's path. */
function callModel(method: 'infer' | 'inferResponse', model: string, inputs: Record<string, unknown>, options: InferOptions): Promise<CalledModelAnswer> {
  return new Promise((resolve, reject) => {
    if (typeof model !== 'string') throw new Error(`context.${method}(model, inputs): model must be a model's name, got ${String(model)}`);
    const what = `context.${method}('${model}')`;
    if (typeof inputs !== 'object' || inputs === null) throw new Error(`context.${method}('${model}', inputs): inputs must be an object of tensors by name`);
    checkInferOptions(what, options);
    const sent: Record<string, Tensor> = {};
    for (const [name, value] of Object.entries(inputs)) sent[name] = tensorFromHandler(`${what} input '${name}'`, value);
    const call = nextCall++;
    calls.set(call, { model, what, resolve, reject });
    // Copied, not transferred: the handler may still hold the tensors it passes on.
    // The call is made for `request` (one execute() was given): it carries that request's trace and deadline.
    const origin = options.request === undefined ? undefined : origins.get(options.request);
    if (options.request !== undefined && !origin) throw new Error(`${what}: options.request must be one of the requests execute() was given`);
    if (callsAwaited++ === 0) awaitingSince = performance.now();
    const version = options.version === undefined ? undefined : String(options.version);
    post({ type: 'infer', call, model, version, inputs: sent, outputs: options.outputs, parameters: options.parameters, origin, ...(method === 'inferResponse' && { whole: true }) });
  });
}

/** Waits for a decode slot, by call. */
const slotWaits = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

/**
 * Runs `decode` in one of the process's image-decode slots, the ones the server's own preprocessing takes: sharp
 * decodes on the process's one libuv pool, which the workers share. A slot waited for on behalf of `request` is
 * not waited for once that request's client has gone: the promise rejects with code CANCELLED and `decode` never runs.
 */
async function withDecodeSlot<T>(request: object | undefined, decode: () => Promise<T>): Promise<T> {
  const origin = request === undefined ? undefined : origins.get(request);
  if (request !== undefined && !origin) throw new Error('context.withDecodeSlot(request, decode): request must be one of the requests execute() was given');
  if (typeof decode !== 'function') throw new TypeError('context.withDecodeSlot(request, decode): decode must be a function that decodes');
  const call = nextCall++;
  await new Promise<void>((resolve, reject) => {
    slotWaits.set(call, { resolve, reject });
    post({ type: 'decode-slot', call, origin });
  });
  try {
    return await decode();
  } finally {
    post({ type: 'decode-slot-given' });
  }
}

const context = Object.freeze({
  modelName: spec.modelName,
  version: spec.version,
  instance: spec.instance,
  config: spec.config,
  parameters: spec.parameters,
  labels: spec.labels,
  log: Object.assign(log('info'), { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }),
  /**
   * Calls another model through the server (Triton's BLS): `inputs` by name, answers its outputs by name. `parameters`:
   * the called request's own (a stateful model's sequence_id and START/END flags, a handler's custom ones).
   */
  infer: async (model: string, inputs: Record<string, unknown>, options: InferOptions = {}): Promise<Record<string, Tensor>> => (await callModel('infer', model, inputs, options)).outputs,
  /**
   * As infer, resolving to the whole answer: { model_name, model_version, outputs, parameters }, the parameters holding
   * what the called model says beside its outputs (its out-of-distribution verdict: ood, ood_score, ood_threshold).
   */
  inferResponse: (model: string, inputs: Record<string, unknown>, options: InferOptions = {}): Promise<CalledModelAnswer> => callModel('inferResponse', model, inputs, options),
  withDecodeSlot,
});

async function executeBatch(handler: Handler, id: number, requests: WorkerBatchRequest[]): Promise<void> {
  const started = performance.now();
  const awaitedBefore = awaitedUntilNow();
  const spent = () => ({ computeNs: (performance.now() - started) * 1e6, awaitedNs: (awaitedUntilNow() - awaitedBefore) * 1e6 });
  const given = requests.map((request, index) => {
    const handed = { inputs: withBuffers(request.inputs), parameters: request.parameters, outputs: request.outputNames };
    origins.set(handed, { batch: id, index });
    return handed;
  });
  let answers: unknown;
  try {
    answers = await handler.execute(given);
  } catch (error) {
    const failure = failureOf(error);
    return post({ type: 'result', id, ...spent(), error: { ...failure, message: `execute() threw: ${failure.message}` } });
  }
  if (!Array.isArray(answers) || answers.length !== requests.length) {
    const got = Array.isArray(answers)
      ? `${answers.length} answer${answers.length === 1 ? '' : 's'}`
      : typeof answers === 'object' && answers !== null
        ? `an object with keys ${Object.keys(answers).slice(0, 5).join(', ') || 'none'}`
        : `${typeof answers} ${String(answers)}`;
    return post({ type: 'result', id, ...spent(), error: { message: `execute() must return one answer per request (an array of ${requests.length}), got ${got}` } });
  }
  // An answer may be a promise (execute mapped its requests through an async function): one that rejects fails its request alone.
  const settled = await Promise.allSettled(answers);
  const measured = spent();
  const replies: WorkerAnswer[] = settled.map((outcome, index) => {
    try {
      if (outcome.status === 'rejected') throw outcome.reason;
      if (outcome.value instanceof Error) throw outcome.value;
      return { outputs: outputsOf(outcome.value, requests[index], spec.config) };
    } catch (error) {
      return { error: failureOf(error) };
    }
  });
  const tensors = replies.flatMap((reply) => ('outputs' in reply ? Object.values(reply.outputs) : []));
  try {
    post({ type: 'result', id, answers: replies, ...measured }, transferable(tensors));
  } catch {
    // A buffer listed twice or one that cannot move: send copies instead.
    post({ type: 'result', id, answers: replies, ...measured });
  }
}

// The thread is up: from here on, loading and initializing the handler are on its clock.
post({ type: 'started' });
try {
  const loaded = (await import(pathToFileURL(spec.file).href).catch((error: Error) => {
    throw moduleLoadError(error, spec.file);
  })) as Partial<Handler> & { default?: Partial<Handler> };
  // ESM exports execute itself; a CommonJS model.js exports it on module.exports (the import's default).
  const handler = (typeof loaded.execute === 'function' ? loaded : loaded.default) as Partial<Handler> | undefined;
  if (typeof handler?.execute !== 'function') throw missingExecuteError(spec.file);
  await handler.initialize?.(context);
  port.on('message', (message: HandlerWorkerRequest) => {
    if (message.type === 'execute') {
      void executeBatch(handler as Handler, message.id, message.requests);
    } else if (message.type === 'answer') {
      const waiting = calls.get(message.call);
      if (!waiting) return;
      calls.delete(message.call);
      if (--callsAwaited === 0) awaitedMs += performance.now() - awaitingSince;
      // Named as the handler's call: a client whose request fails with it learns which model the handler asked.
      if (message.error) {
        const { code, reported } = message.error;
        waiting.reject(Object.assign(new Error(`${waiting.what}: ${message.error.message}`), { code, ...(reported && { reported }) }));
      }
      else {
        const labels = (message.labels ?? {}) as Record<string, string[]>;
        waiting.resolve({ model_name: waiting.model, model_version: message.version ?? '', outputs: withBuffers(message.outputs!), parameters: message.parameters ?? {}, labels });
      }
    } else if (message.type === 'decode-slot') {
      const waiting = slotWaits.get(message.call);
      if (!waiting) return;
      slotWaits.delete(message.call);
      if (message.error) waiting.reject(Object.assign(new Error(message.error.message), { code: message.error.code }));
      else waiting.resolve();
    } else if (message.type === 'finalize') {
      Promise.resolve()
        .then(() => handler.finalize?.())
        .then(
          () => post({ type: 'finalized' }),
          (error: unknown) => post({ type: 'finalized', error: (error as Error)?.message ?? String(error) }),
        )
        .finally(() => port.close());
    }
  });
  post({ type: 'ready' });
} catch (error) {
  post({ type: 'failed', message: (error as Error)?.message ?? String(error), stack: (error as Error)?.stack });
}
