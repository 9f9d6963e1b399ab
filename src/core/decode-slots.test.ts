/** The process's image-decode slots: who waits, who is skipped when called off. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NereidError } from './errors.js';
import { ClientCancellation } from './inference.js';
import { DecodeSlots } from './decode-slots.js';

test('a request called off while its images wait for a slot decodes none of them; the slots go on to the next request', async () => {
  const slots = new DecodeSlots(2);
  const left = new ClientCancellation();
  await slots.take(undefined);
  await slots.take(undefined);
  const order: string[] = [];
  // Two images of a request that will be called off, then one of another request, all waiting for the two slots.
  const leaving = [slots.take(left), slots.take(left)].map((waiting, index) =>
    waiting.then(
      () => order.push(`left ${index} decoded`),
      (error: NereidError) => order.push(`left ${index} ${error.code}`),
    ),
  );
  const next = slots.take(undefined).then(() => order.push('next decoded'));
  left.abort();
  slots.give();
  await Promise.all([...leaving, next]);
  assert.deepEqual(order, ['left 0 CANCELLED', 'left 1 CANCELLED', 'next decoded']);
  assert.equal(slots.busy, 2, 'the first request\'s other slot and the next request\'s');
  slots.give();
  slots.give();
  assert.equal(slots.busy, 0);
  // A request already called off takes no slot at all.
  await assert.rejects(slots.take(left), (error: NereidError) => error.code === 'CANCELLED');
  assert.equal(slots.busy, 0);
});
