/**
 * The soak test's judging (bench/soak-tally.ts): a wrong classification would pass a failing
 * server or fail a healthy one, and the soak itself runs too long to be in `npm test`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { categoryOf, durationSeconds, goodputOf, isInternalError, Tally, validFailures, type Role } from '../bench/soak-tally.js';

test('outcome classes fall into the categories the expectations judge', () => {
  const cases: [string, string][] = [
    ['200', 'ok'],
    ['OK', 'ok'],
    ['400', '4xx'],
    ['413', '4xx'],
    ['431', '4xx'],
    ['INVALID_ARGUMENT', '4xx'],
    ['UNAUTHENTICATED', '4xx'],
    ['NOT_FOUND', '4xx'],
    ['503', '503'],
    ['UNAVAILABLE', '503'],
    ['500', '5xx'],
    ['502', '5xx'],
    ['INTERNAL', '5xx'],
    ['UNKNOWN', '5xx'],
    ['reset', 'reset'],
    ['timeout', 'timeout'],
    ['cut-off', 'cut-off'],
    ['wrong-answer', 'wrong-answer'],
    ['skipped', 'skipped'],
    ['DEADLINE_EXCEEDED', 'other'],
  ];
  for (const [cls, category] of cases) assert.equal(categoryOf(cls), category, cls);
  assert.deepEqual(['500', 'INTERNAL', 'UNKNOWN', '502', '503', 'UNAVAILABLE'].map(isInternalError), [true, true, true, false, false, false]);
});

test('valid requests fail unexpectedly on anything but a correct answer, except 503 within a burst; skipped arrivals are not sent', () => {
  const roles = new Map<string, Role>([
    ['grpc-simple', 'valid'],
    ['burst-grpc-simple', 'valid'],
    ['malformed-json', 'invalid'],
  ]);
  const tally = new Tally(roles);
  const record = (kind: string, cls: string, times: number) => {
    for (let i = 0; i < times; i++) tally.record(kind, { cls, latencyMs: 1 });
  };
  record('grpc-simple', 'OK', 90);
  record('grpc-simple', 'UNAVAILABLE', 3);
  record('grpc-simple', 'timeout', 1);
  record('grpc-simple', 'skipped', 50);
  record('burst-grpc-simple', 'OK', 4);
  record('burst-grpc-simple', 'UNAVAILABLE', 5);
  record('burst-grpc-simple', 'reset', 2);
  record('malformed-json', '500', 7);

  assert.deepEqual(validFailures(tally.total, roles), { failed: 3 + 1 + 2, sent: 94 + 11 });
  assert.equal(goodputOf(tally.total, roles, 2).successes, 94);
  assert.equal(goodputOf(tally.total, roles, 2).perSecond, 47);
});

test('a window holds what came after the previous rotation; the totals hold everything', () => {
  const roles = new Map<string, Role>([['health', 'service']]);
  const tally = new Tally(roles);
  tally.record('health', { cls: '200', latencyMs: 1 });
  const first = tally.rotate();
  tally.record('health', { cls: '503', latencyMs: 1, variant: 'live', detail: 'not live' });
  const second = tally.rotate();
  assert.equal(first.get('health')!.total, 1);
  assert.deepEqual(Object.fromEntries(second.get('health')!.classes), { '503': 1 });
  assert.deepEqual(second.get('health')!.examples.get('503'), ['[live] not live']);
  assert.deepEqual(Object.fromEntries(tally.total.get('health')!.classes), { '200': 1, '503': 1 });
  assert.equal(tally.window.size, 0);
});

test('--duration takes seconds or a unit and refuses anything else', () => {
  assert.equal(durationSeconds(undefined), 600);
  assert.equal(durationSeconds('45'), 45);
  assert.equal(durationSeconds('90s'), 90);
  assert.equal(durationSeconds('10m'), 600);
  assert.equal(durationSeconds('1.5h'), 5400);
  for (const bad of ['5x', '0', '-1m', 'm', '10 minutes', '']) {
    assert.throws(() => durationSeconds(bad), /--duration must be a positive number of seconds, optionally with a unit \(90s, 10m, 1h\), got/, bad);
  }
});
