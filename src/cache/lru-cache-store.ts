import { newCounters, type ResponseCacheStore } from './cache-store.js';

interface Entry {
  value: Buffer;
  /** performance.now() milliseconds; Infinity when the entry never expires. */
  expiresAt: number;
}

/**
 * In-memory cache bounded by bytes, least recently used out first, with per-entry TTL. A Map keeps
 * insertion order, so re-inserting on use makes its first key the least recently used.
 */
export class LruCacheStore implements ResponseCacheStore {
  readonly kind = 'local';
  readonly healthy = true;
  readonly counters = newCounters();
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(
    private readonly capacityBytes: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get usage() {
    return { bytes: this.bytes, entries: this.entries.size, capacityBytes: this.capacityBytes };
  }

  private remove(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.bytes -= entry.value.length + key.length;
  }

  async get(key: string): Promise<Buffer | undefined> {
    const entry = this.entries.get(key);
    if (!entry || entry.expiresAt <= this.now()) {
      if (entry) this.remove(key, entry);
      this.counters.misses += 1;
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.counters.hits += 1;
    return entry.value;
  }

  async set(key: string, value: Buffer, ttlSeconds: number): Promise<void> {
    const size = value.length + key.length;
    if (size > this.capacityBytes) {
      this.counters.oversized += 1;
      return;
    }
    const existing = this.entries.get(key);
    if (existing) this.remove(key, existing);
    for (const [oldest, entry] of this.entries) {
      if (this.bytes + size <= this.capacityBytes) break;
      this.remove(oldest, entry);
      this.counters.evictions += 1;
    }
    this.entries.set(key, { value, expiresAt: ttlSeconds > 0 ? this.now() + ttlSeconds * 1000 : Infinity });
    this.bytes += size;
    this.counters.insertions += 1;
  }

  async close(): Promise<void> {
    this.entries.clear();
    this.bytes = 0;
  }
}
