import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SingleFlight } from './single-flight.js';

test('callers of one key while its run is under way share that run and its failure; another key, or a call after it settled, starts its own', async () => {
  const flights = new SingleFlight<string>();
  const started: string[] = [];
  let fail!: (error: Error) => void;
  const slowRun = () => {
    started.push('a');
    return new Promise<void>((_resolve, reject) => (fail = reject));
  };
  const first = flights.run('a', slowRun);
  const second = flights.run('a', slowRun);
  const other = flights.run('b', async () => void started.push('b'));
  assert.equal(second, first);
  await other;
  fail(new Error('load failed'));
  await assert.rejects(first, { message: 'load failed' });
  await assert.rejects(second, { message: 'load failed' });
  await flights.run('a', async () => void started.push('a again'));
  assert.deepEqual(started, ['a', 'b', 'a again']);
});
