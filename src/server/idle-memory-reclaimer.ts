/**
 * Gives memory back after a burst of large requests. V8 frees a Buffer's bytes only when it
 * collects the object that holds them, and it collects when JavaScript allocates: a server that
 * goes idle after a flood of 9 MB bodies allocates next to nothing, so hundreds of MB of garbage
 * Buffers stayed held for as long as it stayed idle (measured: 364 MB of ArrayBuffers three
 * seconds after the flood). So, when the ArrayBuffers have grown by `growthBytes` since the last
 * collection and the server has been quiet for a whole check interval (no request started, none in
 * flight, no request body held), the reclaimer runs one full collection. It never runs under load,
 * where V8 collects on its own; a collection takes tens of ms, which only a request arriving during
 * it waits for.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';
import { z } from 'zod';

export const idleMemoryReclaimerOptionsSchema = z.object({
  /** Growth of ArrayBuffer bytes since the last collection that is worth a collection. */
  growthBytes: z.number().int().positive().default(64 * 1024 * 1024),
  /** How often the server is looked at; it must have been quiet for one whole interval. */
  checkEveryMs: z.number().int().positive().default(1000),
});

export interface ServerActivity {
  /** Requests started so far (any number that grows with each one). */
  requestsStarted(): number;
  /** Requests started and not yet answered. */
  requestsInFlight(): number;
  /** Request body bytes held now. */
  bodyBytesHeld(): number;
}

export interface MemoryProbe {
  arrayBufferBytes(): number;
  /** A full garbage collection; undefined where none can be had. */
  collect?: () => void;
}

/**
 * The process's own memory: ArrayBuffer bytes from process.memoryUsage, and V8's collector, which
 * Node hides unless started with --expose-gc: a context made while the flag is on gets it, and the
 * flag goes off again so that no other code sees a `gc` global.
 */
export function processMemory(): MemoryProbe {
  processCollector ??= { collect: fullCollection() };
  return { arrayBufferBytes: () => process.memoryUsage().arrayBuffers, collect: processCollector.collect };
}

/** One per process: each lookup makes a V8 context, which the collector it returns keeps alive. */
let processCollector: { collect?: () => void } | undefined;

function fullCollection(): (() => void) | undefined {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    setFlagsFromString('--expose-gc');
    const collect = runInNewContext('gc') as unknown;
    return typeof collect === 'function' ? (collect as () => void) : undefined;
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

export class IdleMemoryReclaimer {
  private readonly options: z.output<typeof idleMemoryReclaimerOptionsSchema>;
  private timer?: NodeJS.Timeout;
  private afterLastCollection: number;
  private requestsAtLastCheck: number;
  private collections = 0;

  constructor(
    private readonly activity: ServerActivity,
    private readonly memory: MemoryProbe,
    options: z.input<typeof idleMemoryReclaimerOptionsSchema> = {},
    private readonly logger?: Logger,
  ) {
    this.options = idleMemoryReclaimerOptionsSchema.parse(options);
    this.afterLastCollection = memory.arrayBufferBytes();
    this.requestsAtLastCheck = activity.requestsStarted();
  }

  /** Full collections run so far. */
  get collected(): number {
    return this.collections;
  }

  start(): void {
    if (this.timer || !this.memory.collect) return;
    this.timer = setInterval(() => {
      try {
        this.check();
      } catch (error) {
        // process.memoryUsage() reads /proc and fails when the process is out of file descriptors: skip this look, never crash.
        this.logger?.warn({ err: error }, `idle memory check skipped: ${(error as Error).message}`);
      }
    }, this.options.checkEveryMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look at the server (what the timer runs): collects when it was quiet and the garbage is worth it. */
  check(): void {
    const requests = this.activity.requestsStarted();
    const quiet = requests === this.requestsAtLastCheck && this.activity.requestsInFlight() === 0 && this.activity.bodyBytesHeld() === 0;
    this.requestsAtLastCheck = requests;
    const held = this.memory.arrayBufferBytes();
    // What a collection left can shrink as later ones free more: growth counts from the lowest level seen.
    this.afterLastCollection = Math.min(this.afterLastCollection, held);
    if (!quiet || !this.memory.collect || held - this.afterLastCollection < this.options.growthBytes) return;
    const started = performance.now();
    this.memory.collect();
    this.collections += 1;
    this.afterLastCollection = this.memory.arrayBufferBytes();
    this.logger?.debug(
      { arrayBuffersBefore: held, arrayBuffersAfter: this.afterLastCollection, ms: Math.round(performance.now() - started) },
      'idle server: collected the garbage a burst of large requests left',
    );
  }
}
