/** Checks shared by the unit tests of the core. */
import assert from 'node:assert/strict';
import { NereidError, type ErrorCode } from '../../src/core/errors.js';

/** For assert.throws / assert.rejects: a NereidError with this code, its message matching `pattern`. */
export function isError(code: ErrorCode, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof NereidError, `expected a NereidError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

/** Collects TimeoutOverflowWarnings (setTimeout was asked for more than 2^31-1 ms and will fire after 1 ms) until stop(). */
export function watchTimeoutOverflow(): { stop(): string[] } {
  const seen: string[] = [];
  const listener = (warning: Error) => {
    if (warning.name === 'TimeoutOverflowWarning') seen.push(warning.message);
  };
  process.on('warning', listener);
  return {
    stop: () => {
      process.off('warning', listener);
      return seen;
    },
  };
}

/**
 * Polls `check` until it holds, failing after `timeoutMs` with what was awaited (and `detail()`, e.g. a process's
 * stderr). For what a loaded machine does late but surely: a closed connection noticed, a queue filled, a log written.
 */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  { timeoutMs = 20_000, everyMs = 20, detail }: { timeoutMs?: number; everyMs?: number; detail?: () => string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}${detail ? `\n${detail()}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
