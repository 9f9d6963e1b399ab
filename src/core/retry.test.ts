import assert from 'node:assert/strict';
import { test } from 'node:test';
import { retryingCall } from './retry.js';

test('the wait between tries ends at the caller\'s abort, with its reason, instead of running out its delay', { timeout: 60_000 }, async () => {
  const controller = new AbortController();
  let calls = 0;
  const answer = retryingCall({ tries: 3, maxDelayMs: 3_600_000 }, controller.signal, () => ({ retry: true, delayMs: 3_600_000 }), async () => {
    calls++;
    setImmediate(() => controller.abort(new Error('stopped by the caller')));
    throw new Error('unavailable');
  });
  await assert.rejects(answer, { message: 'stopped by the caller' });
  assert.equal(calls, 1);
});
