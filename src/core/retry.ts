/**
 * Trying a call again when the server said the same call could succeed later (a 503 or 429 with its
 * Retry-After, gRPC UNAVAILABLE with its pushback) or the connection was refused: with exponential
 * backoff and jitter, at most `tries` times, never past the caller's abort. The client retries
 * calls to a server with it, batch jobs the records the server refused for its load.
 */
import { z } from 'zod';

/** The longest wait a timer can take (2^31 - 1 ms): a longer one would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A client's `retry` option, its defaults included. */
export const retryOptionsSchema = z.object({
  /** Tries in all, the first included. Default 3; 1 turns retries off. */
  tries: z.number().int().positive().default(3),
  /** Wait before the second try (doubled each time, with jitter) when the server names no delay. Default 100 ms. */
  firstDelayMs: z.number().nonnegative().max(MAX_TIMER_MS).default(100),
  /** The longest wait between two tries, whatever the server asks. Default 5,000 ms. */
  maxDelayMs: z.number().nonnegative().max(MAX_TIMER_MS).default(5_000),
});

export type RetryOptions = z.input<typeof retryOptionsSchema>;

/** The defaults, for callers that give retryingCall options no schema has parsed. */
const RETRY_DEFAULTS = retryOptionsSchema.parse({});

export interface RetryVerdict {
  retry: boolean;
  /** The wait the server asked for, when it did. */
  delayMs?: number;
}

export async function retryingCall<T>(
  options: RetryOptions | undefined,
  signal: AbortSignal | undefined,
  verdictOf: (error: unknown) => RetryVerdict,
  call: () => Promise<T>,
): Promise<T> {
  const tries = options?.tries ?? RETRY_DEFAULTS.tries;
  const firstDelayMs = options?.firstDelayMs ?? RETRY_DEFAULTS.firstDelayMs;
  const maxDelayMs = options?.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const verdict = verdictOf(error);
      if (!verdict.retry || attempt >= tries || signal?.aborted) throw error;
      const backoff = firstDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);
      await pause(Math.min(maxDelayMs, verdict.delayMs ?? backoff), signal);
    }
  }
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    signal?.addEventListener('abort', aborted, { once: true });
  });
}
