/**
 * Triton's `--cache-config` syntax: `local,size=BYTES` for an in-memory cache in this process, or
 * (Nereid) `redis,host=H,port=P[,password=…][,prefix=…]` for one shared by every replica.
 */
import type { Logger } from 'pino';
import { LruCacheStore } from './lru-cache-store.js';
import { RedisCacheStore } from './redis-cache-store.js';
import type { ResponseCacheStore } from './cache-store.js';

export type CacheConfig =
  | { kind: 'local'; sizeBytes: number }
  | { kind: 'redis'; host: string; port: number; password?: string; prefix?: string };

export function parseCacheConfig(text: string): CacheConfig {
  const [kind, ...pairs] = text.split(',').map((part) => part.trim());
  const settings = new Map<string, string>();
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new Error(`--cache-config: '${pair}' is not key=value`);
    settings.set(pair.slice(0, at), pair.slice(at + 1));
  }
  const allow = (keys: string[]) => {
    for (const key of settings.keys()) {
      if (!keys.includes(key)) throw new Error(`--cache-config ${kind}: unknown setting '${key}' (known: ${keys.join(', ')})`);
    }
  };
  if (kind === 'local') {
    allow(['size']);
    const sizeBytes = Number(settings.get('size'));
    if (!Number.isInteger(sizeBytes) || sizeBytes < 1) throw new Error('--cache-config local needs size=BYTES, a positive integer');
    return { kind, sizeBytes };
  }
  if (kind === 'redis') {
    allow(['host', 'port', 'password', 'prefix']);
    const port = Number(settings.get('port') ?? 6379);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('--cache-config redis: port must be 1-65535');
    return { kind, host: settings.get('host') ?? '127.0.0.1', port, password: settings.get('password'), prefix: settings.get('prefix') };
  }
  throw new Error(`--cache-config: unknown cache '${kind}' (expected local,size=BYTES or redis,host=H,port=P)`);
}

export function createCacheStore(config: CacheConfig, logger: Logger): ResponseCacheStore {
  return config.kind === 'local' ? new LruCacheStore(config.sizeBytes) : new RedisCacheStore({ ...config, logger });
}
