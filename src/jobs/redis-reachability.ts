/**
 * A command that needs Redis asks it once, with a short timeout, before doing anything else: an
 * unreachable or refusing Redis is then one clear error and a non-zero exit, not a client retrying
 * forever with a stack trace per attempt.
 */
import { unavailable } from '../core/errors.js';
import { redisConnection, shownRedisUrl } from './chunk-queue.js';
import { loadQueueLibrary } from './queue-library.js';

/** How long a command waits for Redis to answer before it gives up. */
export const REDIS_REACH_TIMEOUT_MS = 5_000;

export async function requireRedis(url: string, timeoutMs = REDIS_REACH_TIMEOUT_MS): Promise<void> {
  const connection = redisConnection(url);
  const { Redis } = await loadQueueLibrary();
  const client = new Redis({ ...connection, lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  // Failures are reported once, below, with the first cause (the client then only says "Connection is closed").
  let firstError: Error | undefined;
  client.on('error', (error: Error) => (firstError ??= error));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (error) {
    const cause = firstError ?? (error as Error);
    throw unavailable(`cannot reach Redis at ${connection.host}:${connection.port} (${shownRedisUrl(url)}): ${cause.message}`, cause);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/** Errors of a connection that cannot reach Redis (as ioredis reports them while it retries), not of a command. */
const CONNECTION_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

function isConnectionError(error: Error): boolean {
  return CONNECTION_CODES.has((error as NodeJS.ErrnoException).code ?? '') || /^Connection is closed|^connect ETIMEDOUT/.test(error.message);
}

/** How often a warning repeats while Redis stays unreachable. */
export const REDIS_OUTAGE_WARN_MS = 5_000;

/**
 * One process's view of its Redis while it runs: every client (BullMQ's queue, events and worker,
 * and its own) reports its errors here. While Redis is unreachable each client retries and fails
 * several times a second; that is one outage, warned of when it starts and then every `warnMs`, and
 * a client left without an 'error' listener would print each failure as a stack dump instead.
 */
export class RedisOutage {
  /** When the current outage began (undefined while Redis answers). */
  private since?: number;
  private lastWarned = 0;
  private lastError = '';
  /** Ticks while Redis is down: the clients' own errors thin out as their retries back off (up to 20 s apart). */
  private ticker?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly logger: { warn(message: string): void; error(message: string): void },
    /** Told when an outage begins, each second while it lasts, and when it ends (e.g. to show it in the progress). */
    private readonly onChange?: (outage: RedisOutage) => void,
    private readonly warnMs = REDIS_OUTAGE_WARN_MS,
  ) {}

  /** A listener for a client's 'error' event; what is not a connection failure is logged as an error of its own. */
  readonly error = (error: Error): void => {
    if (!isConnectionError(error)) {
      this.logger.error(`Redis: ${error.message}`);
      return;
    }
    this.lastError = error.message;
    if (this.since !== undefined || this.stopped) return;
    this.since = Date.now();
    this.lastWarned = this.since;
    this.logger.warn(`${this.describe()}; retrying`);
    this.onChange?.(this);
    this.ticker = setInterval(() => {
      if (Date.now() - this.lastWarned >= this.warnMs) {
        this.lastWarned = Date.now();
        this.logger.warn(`${this.describe()}; retrying`);
      }
      this.onChange?.(this);
    }, 1000);
    this.ticker.unref();
  };

  /** A listener for a client's 'ready' event: Redis answers again (to whichever client reconnected first). */
  readonly ready = (): void => {
    if (this.since === undefined) return;
    const seconds = Math.round((Date.now() - this.since) / 1000);
    // Ends this outage only: a later one is reported again (stop() would silence every later one).
    this.end();
    this.logger.warn(`Redis at ${shownRedisUrl(this.url)} is reachable again after ${seconds} s`);
    this.onChange?.(this);
  };

  /** Forgets an outage under way and any later one, without a word (the job or worker is ending). */
  stop(): void {
    this.stopped = true;
    this.end();
  }

  private end(): void {
    clearInterval(this.ticker);
    this.ticker = undefined;
    this.since = undefined;
  }

  get down(): boolean {
    return this.since !== undefined;
  }

  /** "Redis at redis://host:6379/ unreachable for 12 s (connect ECONNREFUSED …)", or undefined while it answers. */
  describe(): string | undefined {
    if (this.since === undefined) return undefined;
    return `Redis at ${shownRedisUrl(this.url)} unreachable for ${Math.round((Date.now() - this.since) / 1000)} s (${this.lastError})`;
  }
}
