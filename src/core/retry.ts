/**
 * Trying a call again when the server said the same call could succeed later (a 503 or 429 with its
 * Retry-After, gRPC UNAVAILABLE with its pushback) or the connection was refused: with exponential
 * backoff and jitter, at most `tries` times, never past the caller's abort. The client retries
 * calls to a server with it, batch jobs the records the server refused for its load.
 */
export interface RetryOptions {
  /** Tries in all, the first included. Default 3; 1 turns retries off. */
  tries?: number;
  /** Wait before the second try (doubled each time, with jitter) when the server names no delay. Default 100 ms. */
  firstDelayMs?: number;
  /** The longest wait between two tries, whatever the server asks. Default 5,000 ms. */
  maxDelayMs?: number;
}

/** The keys of RetryOptions, to refuse a misspelt one. */
export const RETRY_OPTION_KEYS = Object.keys({ tries: true, firstDelayMs: true, maxDelayMs: true } satisfies Record<keyof RetryOptions, true>);

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
  const tries = options?.tries ?? 3;
  const firstDelayMs = options?.firstDelayMs ?? 100;
  const maxDelayMs = options?.maxDelayMs ?? 5_000;
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
