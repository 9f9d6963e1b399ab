import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { requireRedis } from './redis-reachability.js';

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
