import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redisConnection } from './chunk-queue.js';

test("a --queue URL that is refused is quoted without its password", () => {
  for (const url of ['redis://:Secr3t#pw@127.0.0.1:6379', 'redis://user:Secr3t@127.0.0.1:6379/x']) {
    assert.throws(() => redisConnection(url), (error: Error) => {
      assert.doesNotMatch(error.message, /Secr3t/);
      assert.match(error.message, /127\.0\.0\.1:6379/);
      return true;
    });
  }
});

test('a --queue URL without a password takes NEREID_REDIS_PASSWORD; one in the URL wins', () => {
  process.env.NEREID_REDIS_PASSWORD = 'from-env';
  try {
    assert.equal(redisConnection('redis://127.0.0.1:6379').password, 'from-env');
    assert.equal(redisConnection('redis://:in%40url@127.0.0.1:6379').password, 'in@url');
  } finally {
    delete process.env.NEREID_REDIS_PASSWORD;
  }
  assert.equal(redisConnection('redis://127.0.0.1:6379').password, undefined);
});
