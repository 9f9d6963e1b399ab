import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { newCounters, type ResponseCacheStore } from './response-cache.js';

export interface RedisCacheOptions {
  host: string;
  port: number;
  password?: string;
  /** Keys are namespaced so several deployments can share one Redis. */
  prefix?: string;
  logger: Logger;
}

/**
 * A cache shared by every replica. Commands fail fast while Redis is away (no offline queue), the
 * client keeps reconnecting, and the degradation and the recovery are logged once each.
 */
export class RedisCacheStore implements ResponseCacheStore {
  readonly kind = 'redis';
  readonly counters = newCounters();
  private connected = false;
  private readonly client: Redis;
  private readonly prefix: string;

  constructor(private readonly options: RedisCacheOptions) {
    this.prefix = options.prefix ?? 'nereid:response:';
    this.client = new Redis({
      host: options.host,
      port: options.port,
      password: options.password,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
      lazyConnect: false,
    });
    this.client.on('ready', () => {
      if (!this.connected) options.logger.info({ cache: 'redis' }, `response cache: connected to redis ${options.host}:${options.port}`);
      this.connected = true;
    });
    this.client.on('error', (error: Error) => this.degrade(error.message));
    this.client.on('close', () => this.degrade('connection closed'));
  }

  private degrade(reason: string): void {
    if (!this.connected) return;
    this.connected = false;
    this.options.logger.warn(
      { cache: 'redis', reason },
      `response cache: redis ${this.options.host}:${this.options.port} unreachable (${reason}); serving uncached until it returns`,
    );
  }

  get healthy(): boolean {
    return this.connected;
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
    } catch {
      this.counters.errors += 1;
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
    } catch {
      this.counters.errors += 1;
    }
  }

  async close(): Promise<void> {
    this.connected = false;
    this.client.disconnect();
  }
}
