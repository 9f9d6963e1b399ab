/** ByteBudget and its reservations: what keeps the bodies a server holds bounded. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { isError } from '../../test/support/checks.js';
import { ByteBudget } from './byte-budget.js';

it('reservations grow up to the capacity, refuse beyond it with a retry hint, and give their bytes back once', () => {
  const budget = new ByteBudget(100);
  const a = budget.reserve();
  a.holdAtLeast(60);
  a.holdAtLeast(40); // already holds more
  assert.equal(budget.inUse, 60);
  const b = budget.reserve();
  assert.throws(() => b.holdAtLeast(50), isError('UNAVAILABLE', /holding 60 bytes .* this one \(50 bytes\) would pass its limit of 100 \(maxInflightBytes\); retry in 1 s/));
  b.holdAtLeast(40);
  assert.equal(budget.inUse, 100);
  a.release();
  a.release();
  assert.equal(budget.inUse, 40);
  b.holdAtLeast(90); // grows as a body inflates
  assert.equal(budget.inUse, 90);
  b.release();
  assert.equal(budget.inUse, 0);
});

it("a refusal names the limit as the server's options were given: the option's key, or the CLI's flag", () => {
  const named = new ByteBudget(10, '--max-inflight-bytes');
  named.reserve().holdAtLeast(10);
  assert.throws(() => named.reserve().holdAtLeast(1), isError('UNAVAILABLE', /would pass its limit of 10 \(--max-inflight-bytes\)/));
});

it('a body larger than the whole budget is taken when nothing else is held', () => {
  const budget = new ByteBudget(100);
  const alone = budget.reserve();
  alone.holdAtLeast(500);
  assert.throws(() => budget.reserve().holdAtLeast(1), isError('UNAVAILABLE'));
  alone.release();
  assert.equal(budget.inUse, 0);
});
