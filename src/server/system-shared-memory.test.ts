/** Who may register a system shared memory region: clients on this machine, unless the server lets any address. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopbackPeer } from '../core/address.js';
import type { NereidError } from '../core/errors.js';
import { SystemSharedMemory } from './system-shared-memory.js';

const register = (memory: SystemSharedMemory, peer?: string) => {
  try {
    // No such object: a registration let through fails on it, one refused by its peer never looks.
    memory.register('region', { key: '/nereid-test-no-such-object', byte_size: 4 }, peer);
    return 'registered';
  } catch (error) {
    return (error as NereidError).code;
  }
};

test('a client at another address cannot register shared memory (it would have the server read and write objects it never made); loopback and in-process callers can', () => {
  const memory = new SystemSharedMemory({ allowed: true, maxRequestBytes: 1024, allowingAnyAddress: '--client-shm-from-any-address' });
  for (const peer of ['10.1.2.3', '::ffff:192.168.0.7', 'ipv4:172.17.0.2:51000', 'ipv6:[2001:db8::1]:51000', '128.0.0.1', '::2']) {
    assert.equal(register(memory, peer), 'PERMISSION_DENIED', peer);
  }
  assert.throws(() => memory.register('region', { key: '/x', byte_size: 4 }, '10.1.2.3'), /this client is at '10\.1\.2\.3'.*--client-shm-from-any-address/);
  for (const peer of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1', 'ipv4:127.0.0.1:51000', 'ipv6:[::1]:51000', 'unix:/run/nereid.sock', undefined]) {
    assert.equal(register(memory, peer), 'INVALID_ARGUMENT', String(peer));
  }
  const anyAddress = new SystemSharedMemory({ allowed: true, maxRequestBytes: 1024, anyAddress: true });
  assert.equal(register(anyAddress, '10.1.2.3'), 'INVALID_ARGUMENT');
});

test('loopback peers as the front ends write them', () => {
  assert.ok(isLoopbackPeer('ipv6:[::ffff:127.0.0.1]:4000'));
  assert.ok(!isLoopbackPeer('ipv4:127.0.0.1.evil:4000'));
  assert.ok(!isLoopbackPeer(''));
});
