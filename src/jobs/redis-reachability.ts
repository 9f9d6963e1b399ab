/**
 * A command that needs Redis asks it once, with a short timeout, before doing anything else: an
 * unreachable or refusing Redis is then one clear error and a non-zero exit, not a client retrying
 * forever with a stack trace per attempt.
 */
import { Redis } from 'ioredis';
import { unavailable } from '../core/errors.js';
import { redisConnection, shownRedisUrl } from './chunk-queue.js';

/** How long a command waits for Redis to answer before it gives up. */
export const REDIS_REACH_TIMEOUT_MS = 5_000;

export async function requireRedis(url: string, timeoutMs = REDIS_REACH_TIMEOUT_MS): Promise<void> {
  const connection = redisConnection(url);
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
