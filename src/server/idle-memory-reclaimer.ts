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
 *
 * A collection gives the bytes back to malloc, not to the system: glibc keeps the pages of its heap
 * below the highest block still in use (measured: 354 MB against a 210 MB baseline twelve seconds
 * after a flood). At the next quiet look after a collection — V8 frees the collected backing stores on
 * a background thread, so not at once — or when the resident set grew by `growthBytes` since pages were
 * last handed back (freed native memory: ONNX Runtime's, zlib's), the reclaimer asks glibc to return
 * its free pages (`malloc_trim`, through the koffi FFI; where there is no glibc, nothing).
 */
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';
import { z } from 'zod';

export const idleMemoryReclaimerOptionsSchema = z.object({
  /** Growth of ArrayBuffer bytes since the last collection that is worth a collection (and of the resident set, a trim). */
  growthBytes: z.number().int().positive().default(64 * 1024 * 1024),
  /** How often the server is looked at; it must have been quiet for one whole interval. */
  checkEveryMs: z.number().int().positive().default(1000),
  /**
   * Memory still above the lowest level a collection ever left, but not grown since the last one, is
   * collected again after this long quiet (what an open keep-alive connection or a cache held at the
   * last collection may have let go since); the wait doubles each time that frees little, up to
   * `maxRecheckMs`.
   */
  recheckMs: z.number().int().positive().default(10_000),
  maxRecheckMs: z.number().int().positive().default(600_000),
});

/** What the server is doing, read once per look. */
export interface ServerActivity {
  /** Requests started so far (any number that grows with each one). */
  requestsStarted: number;
  /** Requests started and not yet answered. */
  requestsInFlight: number;
  /** Request body bytes held now. */
  bodyBytesHeld: number;
}

export interface MemoryProbe {
  arrayBufferBytes(): number;
  /** A full garbage collection; undefined where none can be had. */
  collect?: () => void;
  /** Hands the allocator's free pages back to the system; undefined where that cannot be done. */
  returnFreePages?: () => void;
  /** Resident set size: its growth since the last trim asks for another; undefined where it cannot be read. */
  residentBytes?: () => number;
}

/**
 * The process's own memory: ArrayBuffer bytes from process.memoryUsage, and V8's collector, which
 * Node hides unless started with --expose-gc: a context made while the flag is on gets it, and the
 * flag goes off again so that no other code sees a `gc` global.
 */
export function processMemory(): MemoryProbe {
  processCollector ??= { collect: fullCollection(), returnFreePages: glibcMallocTrim() };
  return {
    arrayBufferBytes: () => process.memoryUsage().arrayBuffers,
    residentBytes: () => process.memoryUsage.rss(),
    ...processCollector,
  };
}

/** One per process: each lookup makes a V8 context, which the collector it returns keeps alive. */
let processCollector: Pick<MemoryProbe, 'collect' | 'returnFreePages'> | undefined;

/** glibc's malloc_trim(0), or undefined on another C library or where koffi has no build for this platform. */
function glibcMallocTrim(): (() => void) | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    // Loaded here, not at import: a server started with reclaiming off never loads the FFI.
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const mallocTrim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as (pad: number) => number;
    return () => void mallocTrim(0);
  } catch {
    return undefined;
  }
}

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
  /** The lowest level a collection left (or the level at start). */
  private floor: number;
  private requestsAtLastCheck: number;
  private collections = 0;
  private trims = 0;
  private returned = 0;
  /** A collection ran and its freed pages have not yet been handed back. */
  private trimDue = false;
  /** The lowest resident set size seen since pages were last handed back. */
  private residentAfterTrim: number;
  private checksSinceCollection = 0;
  private recheckAfterChecks: number;

  constructor(
    private readonly activity: () => ServerActivity,
    private readonly memory: MemoryProbe,
    options: z.input<typeof idleMemoryReclaimerOptionsSchema> = {},
    private readonly logger?: Logger,
  ) {
    this.options = idleMemoryReclaimerOptionsSchema.parse(options);
    this.afterLastCollection = memory.arrayBufferBytes();
    this.floor = this.afterLastCollection;
    this.residentAfterTrim = memory.residentBytes?.() ?? 0;
    this.requestsAtLastCheck = activity().requestsStarted;
    this.recheckAfterChecks = this.checksFor(this.options.recheckMs);
  }

  private checksFor(ms: number): number {
    return Math.max(1, Math.ceil(ms / this.options.checkEveryMs));
  }

  /** Full collections run so far. */
  get collected(): number {
    return this.collections;
  }

  /** Times free pages were handed back to the system so far. */
  get trimmed(): number {
    return this.trims;
  }

  /** Resident bytes the trims gave back so far (as the resident set size fell across each). */
  get returnedBytes(): number {
    return this.returned;
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

  /**
   * One look at the server (what the timer runs): when it was quiet, collects if the garbage is worth it, or else hands
   * the allocator's free pages back if a collection just ran or the resident set grew since pages were last handed back.
   */
  check(): void {
    const { requestsStarted, requestsInFlight, bodyBytesHeld } = this.activity();
    const quiet = requestsStarted === this.requestsAtLastCheck && requestsInFlight === 0 && bodyBytesHeld === 0;
    this.requestsAtLastCheck = requestsStarted;
    const held = this.memory.arrayBufferBytes();
    // What a collection left can shrink as later ones free more: growth counts from the lowest level seen.
    this.afterLastCollection = Math.min(this.afterLastCollection, held);
    const resident = this.memory.residentBytes?.();
    if (resident !== undefined) this.residentAfterTrim = Math.min(this.residentAfterTrim, resident);
    this.checksSinceCollection += 1;
    if (!quiet || !this.memory.collect) return;
    const { growthBytes } = this.options;
    const grown = held - this.afterLastCollection >= growthBytes;
    const stillHigh = held - this.floor >= growthBytes && this.checksSinceCollection >= this.recheckAfterChecks;
    if (grown || stillHigh) {
      this.collect(held, grown);
      return;
    }
    const residentGrown = resident !== undefined && resident - this.residentAfterTrim >= growthBytes;
    if (this.memory.returnFreePages && (this.trimDue || residentGrown)) this.returnFreePages(resident);
  }

  private collect(held: number, grown: boolean): void {
    const { growthBytes } = this.options;
    const started = performance.now();
    this.memory.collect!();
    this.collections += 1;
    const after = this.memory.arrayBufferBytes();
    const freedLittle = held - after < growthBytes / 2;
    // Memory that a recheck finds still held is likely to stay (a cache, a model's buffers): look again less and less often.
    this.recheckAfterChecks =
      !grown && freedLittle ? Math.min(this.recheckAfterChecks * 2, this.checksFor(this.options.maxRecheckMs)) : this.checksFor(this.options.recheckMs);
    this.afterLastCollection = after;
    this.floor = Math.min(this.floor, after);
    this.checksSinceCollection = 0;
    this.trimDue = true;
    this.logger?.debug(
      { arrayBuffersBefore: held, arrayBuffersAfter: after, ms: Math.round(performance.now() - started), recheck: !grown },
      'idle server: collected the garbage a burst of large requests left',
    );
  }

  /** `residentBefore`: the resident set size this look already read. */
  private returnFreePages(residentBefore: number | undefined): void {
    this.trimDue = false;
    const started = performance.now();
    this.memory.returnFreePages!();
    this.trims += 1;
    const residentAfter = this.memory.residentBytes?.();
    // Pages still resident after a trim are in use: growth is counted from here, so held memory is not trimmed again and again.
    if (residentAfter !== undefined) this.residentAfterTrim = residentAfter;
    if (residentBefore !== undefined && residentAfter !== undefined) this.returned += Math.max(0, residentBefore - residentAfter);
    this.logger?.debug(
      { residentBefore, residentAfter, ms: Math.round(performance.now() - started) },
      "idle server: handed the allocator's free pages back to the system",
    );
  }
}
