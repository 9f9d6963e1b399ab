import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { RedisOutage, requireRedis } from './redis-reachability.js';

test("an unreachable Redis is named without the URL's password", async () => {
  // A port that was just free: nothing answers there.
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as { port: number };
      probe.close(() => resolve(free));
    });
  });
  await assert.rejects(requireRedis(`redis://:s3cret@127.0.0.1:${port}/0`, 2_000), (error: Error) => {
    assert.match(error.message, new RegExp(`^cannot reach Redis at 127\\.0\\.0\\.1:${port} \\(redis://127\\.0\\.0\\.1:${port}/0\\): `));
    assert.doesNotMatch(error.message, /s3cret/);
    return true;
  });
});

test('an outage is warned of at its start and again while it lasts, though its clients stop erring as their retries back off', async () => {
  const warnings: string[] = [];
  let changes = 0;
  const outage = new RedisOutage('redis://127.0.0.1:6399', { warn: (message) => warnings.push(message), error: () => undefined }, () => changes++, 1_500);
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6399'), { code: 'ECONNREFUSED' });
  outage.error(refused);
  outage.error(refused);
  await new Promise((resolve) => setTimeout(resolve, 2_300));
  assert.equal(warnings.length, 2, warnings.join(' | '));
  assert.match(warnings[1]!, /^Redis at redis:\/\/127\.0\.0\.1:6399\/? unreachable for 2 s \(connect ECONNREFUSED/);
  assert.ok(changes >= 3, `the progress was told ${changes} times`);
  outage.ready();
  assert.match(warnings[2]!, /reachable again after 2 s/);
  assert.equal(outage.down, false);
});

test('every outage is reported with its recovery, not only the first', () => {
  const warnings: string[] = [];
  const outage = new RedisOutage('redis://127.0.0.1:6399', { warn: (message) => warnings.push(message), error: () => undefined });
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6399'), { code: 'ECONNREFUSED' });
  for (let round = 0; round < 2; round += 1) {
    outage.error(refused);
    assert.equal(outage.down, true, `outage ${round + 1} is seen`);
    outage.ready();
    assert.equal(outage.down, false);
  }
  assert.deepEqual(warnings.map((warning) => warning.replace(/ \d+ s/, ' N s').replace(/ \(connect.*\)/, '')), [
    'Redis at redis://127.0.0.1:6399 unreachable for N s; retrying',
    'Redis at redis://127.0.0.1:6399 is reachable again after N s',
    'Redis at redis://127.0.0.1:6399 unreachable for N s; retrying',
    'Redis at redis://127.0.0.1:6399 is reachable again after N s',
  ]);
  outage.stop();
});
