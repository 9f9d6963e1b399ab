import type { BackendInstance } from '../backends/backend.js';
import { NereidError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { ScheduledRequest, Scheduler } from './scheduler.js';

interface Pending {
  request: ScheduledRequest;
  resolve: (outputs: Record<string, Tensor>) => void;
  reject: (error: Error) => void;
  onAbort?: () => void;
}

/**
 * Runs each request on its own as soon as an instance is free, first come first served: Triton's
 * default scheduler, for models without dynamic batching. The queue is bounded so overload is
 * answered instead of absorbed.
 */
export class DirectScheduler implements Scheduler {
  private readonly idle: BackendInstance[];
  private readonly waiting: Pending[] = [];
  private readonly running = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    instances: readonly BackendInstance[],
    private readonly maxQueueSize: number,
    private readonly modelLabel: string,
  ) {
    this.idle = [...instances];
  }

  get queued(): number {
    return this.waiting.length;
  }

  schedule(request: ScheduledRequest): Promise<Record<string, Tensor>> {
    if (this.stopped) return Promise.reject(new NereidError('UNAVAILABLE', `${this.modelLabel} is unloading`));
    if (request.signal?.aborted) return Promise.reject(new NereidError('CANCELLED', 'request cancelled by the client'));
    if (this.idle.length === 0 && this.waiting.length >= this.maxQueueSize) {
      return Promise.reject(
        new NereidError('UNAVAILABLE', `${this.modelLabel}: queue is full (${this.maxQueueSize} requests waiting); retry later`),
      );
    }
    return new Promise((resolve, reject) => {
      const pending: Pending = { request, resolve, reject };
      if (request.signal) {
        pending.onAbort = () => {
          const index = this.waiting.indexOf(pending);
          if (index < 0) return; // already running: let it finish
          this.waiting.splice(index, 1);
          reject(new NereidError('CANCELLED', 'request cancelled by the client'));
        };
        request.signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.waiting.push(pending);
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.waiting.length > 0) {
      const instance = this.idle.shift()!;
      const pending = this.waiting.shift()!;
      if (pending.onAbort) pending.request.signal!.removeEventListener('abort', pending.onAbort);
      const execution = instance
        .run(pending.request.inputs, pending.request.outputNames)
        .then(pending.resolve, (error: Error) =>
          pending.reject(error instanceof NereidError ? error : new NereidError('INTERNAL', `${this.modelLabel}: ${error.message}`)),
        )
        .finally(() => {
          this.running.delete(execution);
          this.idle.push(instance);
          this.dispatch();
        });
      this.running.add(execution);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const pending of this.waiting.splice(0)) {
      pending.reject(new NereidError('UNAVAILABLE', `${this.modelLabel} was unloaded before the request ran`));
    }
    await Promise.all(this.running);
  }
}
