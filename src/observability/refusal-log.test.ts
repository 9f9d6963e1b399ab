import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { mock, test } from 'node:test';
import { pino } from 'pino';
import { RefusalLog } from './refusal-log.js';

test('refusals are warned of once at once, then summed up per period while they go on, and not at all once they stop', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const lines: { msg: string; refused?: Record<string, number> }[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    const refusals = new RefusalLog(logger, "model 'm' version 1", 1000);
    refusals.note('UNAVAILABLE', 'the queue is full (2 requests waiting); retry in 1 s');
    for (let i = 0; i < 58; i++) refusals.note('UNAVAILABLE', 'the queue is full (2 requests waiting); retry in 1 s');
    refusals.note('RESOURCE_EXHAUSTED', 'the bytes in flight are at their limit');
    assert.equal(lines.length, 1, 'one line for the first, none per request after it');
    assert.equal(lines[0].msg, "model 'm' version 1 refused a request: the queue is full (2 requests waiting); retry in 1 s; further refusals are summed up every 1 s");
    mock.timers.tick(1000);
    assert.equal(lines.length, 2);
    assert.deepEqual(lines[1].refused, { UNAVAILABLE: 58, RESOURCE_EXHAUSTED: 1 });
    assert.match(lines[1].msg, /^model 'm' version 1 refused 59 more request\(s\) in the last 1 s: UNAVAILABLE 58 \(e\.g\. the queue is full/);
    mock.timers.tick(1000);
    assert.equal(lines.length, 2, 'a quiet period says nothing');
    refusals.note('UNAVAILABLE', 'the queue is full (2 requests waiting); retry in 1 s');
    assert.equal(lines.length, 3, 'a new burst is warned of at once again');
  } finally {
    mock.timers.reset();
  }
});
