/**
 * Where computed responses are kept: one small interface, an in-memory LRU for one replica and
 * Redis for many. A store that cannot be reached answers misses, so serving never depends on it.
 */
export interface ResponseCacheCounters {
  hits: number;
  misses: number;
  insertions: number;
  evictions: number;
  /** Entries refused because they alone exceed the byte budget. */
  oversized: number;
  /** Lookups or inserts that failed because the store was unreachable. */
  errors: number;
}

export interface ResponseCacheStore {
  readonly kind: 'local' | 'redis';
  /** False while the store cannot be reached; requests are then served uncached. */
  readonly healthy: boolean;
  readonly counters: ResponseCacheCounters;
  /** Bytes and entries held (local store only). */
  readonly usage?: { bytes: number; entries: number; capacityBytes: number };
  get(key: string): Promise<Buffer | undefined>;
  /** ttlSeconds 0 keeps the entry until it is evicted. */
  set(key: string, value: Buffer, ttlSeconds: number): Promise<void>;
  close(): Promise<void>;
}

export function newCounters(): ResponseCacheCounters {
  return { hits: 0, misses: 0, insertions: 0, evictions: 0, oversized: 0, errors: 0 };
}
