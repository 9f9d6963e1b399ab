import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { newCounters, type ResponseCacheStore } from './cache-store.js';

export interface RedisCacheOptions {
  host: string;
  port: number;
  password?: string;
  /** Keys are namespaced so several deployments can share one Redis. */
  prefix?: string;
  logger: Logger;
  /** How long a lookup or insert may wait for an answer before the request is served uncached (default 500 ms). */
  commandTimeoutMs?: number;
}

/**
 * A cache shared by every replica. Commands fail fast while Redis is away (no offline queue), the
 * client keeps reconnecting, and the degradation and the recovery are logged once each. A Redis that
 * holds the connection but does not answer (paused, overloaded, a dropped network) is given up on after
 * `commandTimeoutMs`, counted as away, and reconnected to.
 */
export class RedisCacheStore implements ResponseCacheStore {
  readonly kind = 'redis';
  readonly counters = newCounters();
  private connected = false;
  /** Whether the current outage was logged; failing to connect at start is an outage too. */
  private outageLogged = false;
  private closed = false;
  private readonly client: Redis;
  private readonly prefix: string;
  private readonly commandTimeoutMs: number;

  constructor(private readonly options: RedisCacheOptions) {
    this.prefix = options.prefix ?? 'nereid:response:';
    this.commandTimeoutMs = options.commandTimeoutMs ?? 500;
    this.client = new Redis({
      host: options.host,
      port: options.port,
      password: options.password,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      commandTimeout: this.commandTimeoutMs,
      // Closing must not hold the process for ioredis's default 2 s when the connection is already gone.
      disconnectTimeout: 200,
      retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
      lazyConnect: false,
    });
    this.client.on('ready', () => {
      if (!this.connected) options.logger.info({ cache: 'redis' }, `response cache: connected to redis ${options.host}:${options.port}`);
      this.connected = true;
      this.outageLogged = false;
    });
    this.client.on('error', (error: Error) => this.degrade(error.message));
    this.client.on('close', () => this.degrade('connection closed'));
  }

  private degrade(reason: string): void {
    this.connected = false;
    if (this.closed || this.outageLogged) return;
    this.outageLogged = true;
    this.options.logger.warn(
      { cache: 'redis', reason },
      `response cache: redis ${this.options.host}:${this.options.port} unreachable (${reason}); serving uncached until it returns`,
    );
  }

  get healthy(): boolean {
    return this.connected;
  }

  private failed(error: unknown): void {
    this.counters.errors += 1;
    if (this.connected && error instanceof Error && /timed out/i.test(error.message)) {
      // Connected but silent: stop waiting on it (later requests skip it at once) and reconnect.
      this.degrade(`no answer within ${this.commandTimeoutMs} ms`);
      this.client.disconnect(true);
    }
  }

  /** Resolves once connected, or after `timeoutMs`; the cache works without waiting, uncached until then. */
  async waitUntilReady(timeoutMs = 2000): Promise<boolean> {
    if (this.connected) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.client.once('ready', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  async get(key: string): Promise<Buffer | undefined> {
    if (!this.connected) {
      this.counters.errors += 1;
      this.counters.misses += 1;
      return undefined;
    }
    try {
      const value = await this.client.getBuffer(this.prefix + key);
      if (value) this.counters.hits += 1;
      else this.counters.misses += 1;
      return value ?? undefined;
    } catch (error) {
      this.failed(error);
      this.counters.misses += 1;
      return undefined;
    }
  }

  async set(key: string, value: Buffer, ttlSeconds: number): Promise<void> {
    if (!this.connected) {
      this.counters.errors += 1;
      return;
    }
    try {
      if (ttlSeconds > 0) await this.client.set(this.prefix + key, value, 'PX', Math.round(ttlSeconds * 1000));
      else await this.client.set(this.prefix + key, value);
      this.counters.insertions += 1;
    } catch (error) {
      this.failed(error);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.connected = false;
    this.client.disconnect();
  }
}
