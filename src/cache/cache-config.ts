/**
 * Triton's `--cache-config` syntax: `local,size=BYTES` for an in-memory cache in this process, or
 * (Nereid) `redis,host=H,port=P[,password=…|,password_file=PATH][,prefix=…]` for one shared by every
 * replica; without either, the password comes from NEREID_REDIS_PASSWORD when it is set. The
 * settings and their defaults are the schemas below; the composition root makes the store.
 */
import { z } from 'zod';
import { OptionError } from '../core/options.js';

const positiveInteger = (message: string) => z.string().regex(/^\d+$/, message).transform(Number).refine((value) => value >= 1, message);

const localSchema = z.object({
  kind: z.literal('local'),
  size: positiveInteger('needs size=BYTES, a positive integer').optional(),
});

const redisSchema = z.object({
  kind: z.literal('redis'),
  host: z.string().min(1).default('127.0.0.1'),
  port: z
    .string()
    .regex(/^\d+$/, 'port must be 1-65535')
    .transform(Number)
    .refine((port) => port >= 1 && port <= 65535, 'port must be 1-65535')
    .default(6379),
  password: z.string().optional(),
  /** A file holding the password, so that it need not be on a command line (or NEREID_REDIS_PASSWORD). */
  password_file: z.string().min(1).optional(),
  /** Keys are namespaced so several deployments can share one Redis. */
  prefix: z.string().optional(),
});

export type CacheConfig =
  | { kind: 'local'; sizeBytes: number }
  | { kind: 'redis'; host: string; port: number; password?: string; password_file?: string; prefix?: string };

const KNOWN: Record<string, readonly string[]> = {
  local: Object.keys(localSchema.shape).filter((key) => key !== 'kind'),
  redis: Object.keys(redisSchema.shape).filter((key) => key !== 'kind'),
};

/**
 * `setting`: how errors name the spec's setting, as its reader gave it: the CLI's --cache-config, createServer's cacheConfig.
 * A spec it cannot read is the caller's mistake: an OptionError.
 */
export function parseCacheConfig(text: string, setting = '--cache-config'): CacheConfig {
  const [kind, ...pairs] = text.split(',').map((part) => part.trim());
  const known = KNOWN[kind];
  if (!known) throw new OptionError(`${setting}: unknown cache '${kind}' (expected local,size=BYTES or redis,host=H,port=P)`);
  const settings: Record<string, string> = { kind };
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new OptionError(`${setting}: '${pair}' is not key=value`);
    const key = pair.slice(0, at);
    if (!known.includes(key)) throw new OptionError(`${setting} ${kind}: unknown setting '${key}' (known: ${known.join(', ')})`);
    settings[key] = pair.slice(at + 1);
  }
  const parsed = (kind === 'local' ? localSchema : redisSchema).safeParse(settings);
  if (!parsed.success) throw new OptionError(`${setting} ${kind}: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`);
  if (parsed.data.kind === 'redis') return { ...parsed.data };
  if (parsed.data.size === undefined) throw new OptionError(`${setting} local needs size=BYTES, a positive integer`);
  return { kind: 'local', sizeBytes: parsed.data.size };
}
