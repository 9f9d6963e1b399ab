/**
 * Image decodes the process runs at once. sharp decodes on libuv's thread pool (UV_THREADPOOL_SIZE, 4 by default),
 * which is one per process: worker threads share it with the main thread, and so does every model. Waiting here
 * rather than in libuv's queue, where nothing can take a decode back, lets the images of a request whose client has
 * gone be skipped: a form of 64 large images, or a handler's photo, would otherwise be decoded for minutes after.
 */
import { cancelled } from './errors.js';
import type { CancelSignal } from './inference.js';

const DECODES_AT_ONCE = Math.max(1, Number(process.env.UV_THREADPOOL_SIZE) || 4);

export class DecodeSlots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size = DECODES_AT_ONCE) {}

  /** Decodes running now. */
  get busy(): number {
    return this.running;
  }

  /** Decodes waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves once a decode may start, or throws CANCELLED when its request was called off while it waited. */
  async take(signal: CancelSignal | undefined): Promise<void> {
    if (signal?.aborted) throw cancelled();
    if (this.running < this.size) {
      this.running += 1;
      return;
    }
    // give() hands its slot straight to the first waiter.
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    if (signal?.aborted) {
      this.give();
      throw cancelled();
    }
  }

  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running -= 1;
  }

  /** Runs `decode` in a slot, given back however it ends. */
  async run<T>(signal: CancelSignal | undefined, decode: () => Promise<T>): Promise<T> {
    await this.take(signal);
    try {
      return await decode();
    } finally {
      this.give();
    }
  }
}

/** The process's slots, shared by every image preprocessor and every handler's decodes (context.decodeImage's slot), as libuv's pool is. */
export const imageDecodeSlots = new DecodeSlots();
