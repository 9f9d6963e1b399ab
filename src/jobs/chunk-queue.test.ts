import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redisConnection, submitterConnectionName, submittersIn, workerNamesIn } from './chunk-queue.js';

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

test("workerNamesIn reads the workers of one queue from Redis's client list, each once", () => {
  const queue = Buffer.from('nereid-batch').toString('base64');
  const other = Buffer.from('other').toString('base64');
  const list = [
    `id=3 addr=127.0.0.1:5001 laddr=127.0.0.1:6379 fd=8 name=bull:${queue}:w:host-a:12 age=3 idle=0 flags=N db=0`,
    `id=4 addr=127.0.0.1:5002 laddr=127.0.0.1:6379 fd=9 name=bull:${queue}:w:host-a:12 age=3 idle=0 flags=b db=0`,
    `id=5 addr=127.0.0.1:5003 laddr=127.0.0.1:6379 fd=10 name=bull:${queue}:w:host-b:7 age=1 idle=0 flags=N db=0`,
    `id=6 addr=127.0.0.1:5004 laddr=127.0.0.1:6379 fd=11 name=bull:${other}:w:host-c:1 age=1 idle=0 flags=N db=0`,
    `id=7 addr=127.0.0.1:5005 laddr=127.0.0.1:6379 fd=12 name=bull:${queue} age=1 idle=0 flags=N db=0`,
    'id=8 addr=127.0.0.1:5006 laddr=127.0.0.1:6379 fd=13 name= age=1 idle=0 flags=N db=0',
    '',
  ].join('\n');
  assert.deepEqual([...workerNamesIn(list, 'nereid-batch')], ['host-a:12', 'host-b:7']);
  assert.deepEqual([...workerNamesIn(list, 'other')], ['host-c:1']);
});

test('submittersIn reads the jobs whose submitter is connected to one queue', () => {
  const list = [
    `id=3 addr=127.0.0.1:5001 fd=8 name=${submitterConnectionName('nereid-batch', 'photos-1')} age=3 idle=0 flags=N db=0`,
    `id=4 addr=127.0.0.1:5002 fd=9 name=${submitterConnectionName('other', 'photos-2')} age=3 idle=0 flags=N db=0`,
    `id=5 addr=127.0.0.1:5003 fd=10 name=bull:${Buffer.from('nereid-batch').toString('base64')}:w:host-b:7 age=1 idle=0 flags=N db=0`,
  ].join('\n');
  assert.deepEqual([...submittersIn(list, 'nereid-batch')], ['photos-1']);
  assert.deepEqual([...workerNamesIn(list, 'nereid-batch')], ['host-b:7']);
});
