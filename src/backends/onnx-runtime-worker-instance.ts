import { Worker } from 'node:worker_threads';
import type { Tensor } from '../core/tensor.js';
import type { BackendInstance, ModelSignature } from './backend.js';
import { restoreBytes, type SessionSpec } from './onnx-runtime-session.js';
import type { WorkerReply, WorkerRequest } from './onnx-runtime-worker.js';

// The worker's entry sits beside this module: .js once built; from source (.ts, through tsx) the
// worker registers tsx's loader itself before importing it, since Node 20 workers don't inherit it.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_ENTRY = new URL(`./onnx-runtime-worker${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url);

function spawnWorker(spec: SessionSpec): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER_ENTRY, { workerData: spec });
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((api) => api.register()).then(() => import(${JSON.stringify(WORKER_ENTRY.href)}))`;
  return new Worker(bootstrap, { eval: true, workerData: spec });
}

/** An instance whose session lives in its own worker thread (see executionThread in the backend). */
export class WorkerThreadInstance implements BackendInstance {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (outputs: Record<string, Tensor>) => void; reject: (error: Error) => void }>();
  private failure?: Error;

  private constructor(
    private readonly worker: Worker,
    readonly signature: ModelSignature,
    readonly threads: number,
  ) {
    worker.on('message', (reply: WorkerReply) => {
      if (reply.type !== 'result') return;
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (reply.error !== undefined) waiting.reject(new Error(reply.error));
      else waiting.resolve(restoreBytes(reply.outputs!));
    });
    const fail = (error: Error) => {
      this.failure = error;
      for (const waiting of this.pending.values()) waiting.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the model's worker thread exited (code ${code})`)));
  }

  static start(spec: SessionSpec, threads: number, onFallback: (reason: string) => void): Promise<WorkerThreadInstance> {
    return new Promise((resolve, reject) => {
      const worker = spawnWorker(spec);
      const onMessage = (reply: WorkerReply) => {
        if (reply.type === 'fallback') return onFallback(reply.reason);
        if (reply.type === 'failed') {
          worker.off('message', onMessage);
          void worker.terminate();
          return reject(new Error(reply.message));
        }
        if (reply.type === 'ready') {
          worker.off('message', onMessage);
          worker.off('error', reject);
          resolve(new WorkerThreadInstance(worker, reply.signature, threads));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
  }

  run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Promise<Record<string, Tensor>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Inputs are copied, not transferred: they may be views into the request's own buffers.
      this.worker.postMessage({ type: 'run', id, inputs, outputNames: [...outputNames] } satisfies WorkerRequest);
    });
  }

  async release(): Promise<void> {
    if (this.failure) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ type: 'release' } satisfies WorkerRequest);
    await Promise.race([exited, new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]);
    await this.worker.terminate();
  }
}
