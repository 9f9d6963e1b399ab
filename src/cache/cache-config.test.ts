import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { createCacheStore } from '../server/create-server.js';
import { OptionError } from '../core/options.js';
import { parseCacheConfig } from './cache-config.js';
import { LruCacheStore } from './lru-cache-store.js';

test('parseCacheConfig accepts local,size=BYTES', () => {
  assert.deepEqual(parseCacheConfig('local,size=1048576'), { kind: 'local', sizeBytes: 1048576 });
  assert.deepEqual(parseCacheConfig(' local , size=10 '), { kind: 'local', sizeBytes: 10 });
});

test('parseCacheConfig accepts redis forms, with defaults for host and port', () => {
  assert.deepEqual(parseCacheConfig('redis,host=10.0.0.5,port=6380'), { kind: 'redis', host: '10.0.0.5', port: 6380 });
  assert.deepEqual(parseCacheConfig('redis'), { kind: 'redis', host: '127.0.0.1', port: 6379 });
  assert.deepEqual(parseCacheConfig('redis,host=cache,password=s=cr=t,prefix=blue:'), {
    kind: 'redis',
    host: 'cache',
    port: 6379,
    password: 's=cr=t', // only the first '=' splits
    prefix: 'blue:',
  });
});

test('parseCacheConfig refuses bad forms with messages that say what is expected', () => {
  const refuses = (text: string, ...fragments: string[]) =>
    assert.throws(
      () => parseCacheConfig(text),
      (error: Error) => {
        for (const fragment of fragments) assert.ok(error.message.includes(fragment), `'${text}': '${error.message}' should mention '${fragment}'`);
        assert.ok(error.message.startsWith('--cache-config'), error.message);
        assert.ok(error instanceof OptionError, `'${text}': a caller's mistake is an OptionError, got ${error.name}`);
        return true;
      },
    );
  refuses('memcached,host=x', "unknown cache 'memcached'", 'local,size=BYTES', 'redis,host=H,port=P');
  refuses('lokal,size=10', "unknown cache 'lokal'");
  refuses('', "unknown cache ''");
  refuses('local', 'size=BYTES', 'positive integer');
  refuses('local,size=0', 'positive integer');
  refuses('local,size=-5', 'positive integer');
  refuses('local,size=1.5', 'positive integer');
  refuses('local,size=10MB', 'positive integer');
  refuses('local,size=10,host=x', "unknown setting 'host'", 'known: size');
  refuses('local,size', "'size' is not key=value");
  refuses('local,=5', "'=5' is not key=value");
  refuses('redis,port=0', 'port must be 1-65535');
  refuses('redis,port=65536', 'port must be 1-65535');
  refuses('redis,port=abc', 'port must be 1-65535');
  refuses('redis,host=x,size=5', "unknown setting 'size'", 'host, port, password, password_file, prefix');
});

test('createCacheStore makes the store a config names', async () => {
  const store = await createCacheStore(parseCacheConfig('local,size=4096'), pino({ level: 'silent' }));
  assert.ok(store instanceof LruCacheStore);
  assert.equal(store.usage?.capacityBytes, 4096);
  await store.close();
});
