import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { elementCount, packedBytesInSlices, PackedBytes, type BytesData, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { COMPUTE_NS, type BackendInstance, type ModelSignature, type RunOptions, type RunOutputs } from './backend.js';
import { runFailure, type SessionSpec } from './onnx-runtime-session.js';
import type { PackedBytesTensor, WorkerReply, WorkerRequest } from './onnx-runtime-worker.js';
import { siblingWorkerEntry, startWorkerThread } from './worker-entry.js';

/** A worker's outputs on this thread, BYTES kept packed as they came. */
function receivedOutputs(outputs: Record<string, Tensor | PackedBytesTensor>): Record<string, Tensor> {
  const received: Record<string, Tensor> = {};
  for (const name in outputs) {
    const tensor = outputs[name];
    if (!('packed' in tensor)) {
      received[name] = tensor;
      continue;
    }
    const bytes = Buffer.from(tensor.packed.buffer, tensor.packed.byteOffset, tensor.packed.byteLength);
    received[name] = { datatype: 'BYTES', shape: tensor.shape, data: new PackedBytes(bytes, elementCount(tensor.shape)) };
  }
  return received;
}

/** An error thrown in the worker, with the worker's stack. */
function workerError(failure: { message: string; stack?: string }): Error {
  const error = new Error(failure.message);
  if (failure.stack) error.stack = failure.stack;
  return error;
}

/** Whether a view covers all of its own (non-shared) buffer, which can then be transferred without taking others' bytes. */
function isWholeBuffer(view: ArrayBufferView): boolean {
  return view.byteOffset === 0 && view.byteLength === view.buffer.byteLength && view.buffer instanceof ArrayBuffer;
}

/**
 * The inputs as one message, each numeric tensor's buffer transferred, not cloned (a clone copies a
 * view's whole backing store, twice). Buffers the caller owns and that hold just the tensor go as
 * they are; others (views into a request's body) are copied once first. BYTES go packed (see
 * PackedBytes); Buffer elements are packed a few milliseconds at a time.
 */
async function messageOf(inputs: Record<string, Tensor>, owned: boolean): Promise<{ inputs: Record<string, Tensor | PackedBytesTensor>; transfer: ArrayBuffer[] }> {
  const sent: Record<string, Tensor | PackedBytesTensor> = {};
  const transfer = new Set<ArrayBuffer>();
  for (const name in inputs) {
    const tensor = inputs[name];
    if (tensor.datatype === 'BYTES') {
      const data = tensor.data as BytesData;
      let packed: Uint8Array = await packedBytesInSlices(data);
      // Elements packed just now are this message's own; bytes that came packed are the caller's.
      const ours = !(data instanceof PackedBytes) || owned;
      if (!ours || !isWholeBuffer(packed) || transfer.has(packed.buffer as ArrayBuffer)) packed = packed.slice();
      transfer.add(packed.buffer as ArrayBuffer);
      sent[name] = { datatype: 'BYTES', shape: tensor.shape, packed };
      continue;
    }
    let data = tensor.data as NumericArray;
    if (!owned || !isWholeBuffer(data) || transfer.has(data.buffer as ArrayBuffer)) data = data.slice();
    transfer.add(data.buffer as ArrayBuffer);
    sent[name] = { datatype: tensor.datatype, shape: tensor.shape, data };
  }
  return { inputs: sent, transfer: [...transfer] };
}

const ONNX_RUNTIME_WORKER = siblingWorkerEntry('onnx-runtime-worker');

/**
 * What a worker entry is started with: its module, and the plain data it opens its model from.
 * Every entry speaks the same messages (WorkerRequest in, WorkerReply out).
 */
export interface WorkerSpec {
  entry: URL;
  data: unknown;
}

/** Starts a worker and waits until its session is open; an exit or error before that fails the start. */
function startWorker(spec: WorkerSpec, onFallback: (reason: string) => void): Promise<Worker> {
  return openInWorker(spec, onFallback).then(({ worker }) => worker);
}

/**
 * Opens the model in a worker thread only to read its inputs and outputs, then ends the worker: a
 * large model file is read and parsed there, while the event loop goes on answering requests.
 */
export async function describeInWorker(spec: SessionSpec): Promise<ModelSignature> {
  const { worker, signature } = await openInWorker({ entry: ONNX_RUNTIME_WORKER, data: spec }, () => undefined);
  const exited = once(worker, 'exit');
  worker.postMessage({ type: 'release' } satisfies WorkerRequest);
  await exited;
  return signature;
}

function openInWorker(spec: WorkerSpec, onFallback: (reason: string) => void): Promise<{ worker: Worker; signature: ModelSignature }> {
  return new Promise((resolve, reject) => {
    const worker = startWorkerThread(spec.entry, { workerData: spec.data });
    const stop = (error: Error) => {
      worker.off('message', onMessage);
      worker.off('error', stop);
      worker.off('exit', onExit);
      void worker.terminate();
      reject(error);
    };
    const onExit = (code: number) => stop(new Error(`the model's worker thread exited (code ${code}) before its session opened`));
    const onMessage = (reply: WorkerReply) => {
      if (reply.type === 'fallback') return onFallback(reply.reason);
      if (reply.type === 'failed') return stop(workerError(reply));
      if (reply.type === 'ready') {
        worker.off('message', onMessage);
        worker.off('error', stop);
        worker.off('exit', onExit);
        resolve({ worker, signature: reply.signature });
      }
    };
    worker.on('message', onMessage);
    worker.on('error', stop);
    worker.on('exit', onExit);
  });
}

/**
 * An instance whose session lives in its own worker thread (see executionThread in the backend).
 * A worker that dies fails the batches it held, and a new one is started for the next, so one
 * crash does not turn a READY model into one that fails every request.
 */
export class WorkerThreadInstance implements BackendInstance {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (outputs: RunOutputs) => void; reject: (error: Error) => void }>();
  /** The worker takes the next batch while it computes this one, and starts it without waiting for the event loop. */
  readonly concurrency = 2;
  private current: Promise<Worker>;
  private released = false;

  private constructor(
    worker: Worker,
    readonly threads: number,
    private readonly spec: WorkerSpec,
    private readonly onFallback: (reason: string) => void,
  ) {
    this.current = Promise.resolve(this.adopt(worker));
  }

  /** An instance whose worker opens an ONNX Runtime session from `spec`, or runs another engine's entry that speaks the same messages. */
  static async start(spec: SessionSpec | WorkerSpec, threads: number, onFallback: (reason: string) => void): Promise<WorkerThreadInstance> {
    const worker: WorkerSpec = 'entry' in spec ? spec : { entry: ONNX_RUNTIME_WORKER, data: spec };
    return new WorkerThreadInstance(await startWorker(worker, onFallback), threads, worker, onFallback);
  }

  private adopt(worker: Worker): Worker {
    worker.on('message', (reply: WorkerReply) => {
      if (reply.type !== 'result') return;
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (reply.error !== undefined) return waiting.reject(runFailure(workerError(reply.error)));
      const outputs: RunOutputs = receivedOutputs(reply.outputs!);
      outputs[COMPUTE_NS] = reply.computeNs;
      waiting.resolve(outputs);
    });
    let failed = false;
    const fail = (error: Error) => {
      if (failed) return;
      failed = true;
      for (const waiting of this.pending.values()) waiting.reject(error);
      this.pending.clear();
      if (this.released) return;
      this.current = startWorker(this.spec, this.onFallback).then((worker) => this.adopt(worker));
      this.current.catch(() => undefined); // a failed restart is reported by the next run(), not as an unhandled rejection
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the model's worker thread exited (code ${code}); a new one is starting`)));
    // A reply that cannot be read names no request: fail those waiting rather than leave one waiting forever.
    worker.on('messageerror', (error) => {
      fail(error);
      void worker.terminate();
    });
    return worker;
  }

  async run(inputs: Record<string, Tensor>, outputNames: readonly string[], options: RunOptions = {}): Promise<RunOutputs> {
    const worker = await this.current;
    const id = this.nextId++;
    const message = await messageOf(inputs, options.inputsOwned ?? false);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ type: 'run', id, inputs: message.inputs, outputNames: [...outputNames] } satisfies WorkerRequest, message.transfer);
    });
  }

  async release(): Promise<void> {
    this.released = true;
    const worker = await this.current.catch(() => undefined);
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'release' } satisfies WorkerRequest);
    await Promise.race([exited, new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]);
    await worker.terminate();
  }

  /** For tests: the worker thread now serving, to simulate a crash. */
  async workerThread(): Promise<Worker> {
    return this.current;
  }
}
