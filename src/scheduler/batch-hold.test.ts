/**
 * The latency-aware hold decision, with a fake clock (plain numbers) and a fake cost model whose
 * batch costs the test sets: 10 ms for one row plus 1 ms per further row, so larger batches are
 * much cheaper per row, unless a test says otherwise.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArrivalRate } from './arrival-rate.js';
import { holdBatchUntil, LOW_TRAFFIC_ROWS, type BatchCostModel, type HoldSituation } from './batch-hold.js';

/** 10 ms + 1 ms per row beyond the first. */
const amortised: BatchCostModel = { batchNs: (rows) => (10 + (rows - 1)) * 1e6 };
/** Every row costs the same whatever the batch: batching gains nothing. */
const linear: BatchCostModel = { batchNs: (rows) => rows * 5e6 };
const unknown: BatchCostModel = { batchNs: () => NaN };

/** At 1000 ms on the clock, a head queued at 1000 with a 100 ms goal, 1 row of at most 8, one row arriving per ms. */
function situation(change: Partial<HoldSituation> = {}): HoldSituation {
  return {
    nowMs: 1000,
    headEnqueuedMs: 1000,
    headDueMs: 1100,
    rows: 1,
    maxRows: 8,
    holdLimitMs: Infinity,
    arrivalRowsPerMs: 1,
    costs: amortised,
    ...change,
  };
}

describe('holdBatchUntil', () => {
  it('holds a head, counted from its arrival, for at most the time its batch takes to run, when company is expected and cheaper per row', () => {
    // One row runs in 10 ms: the head may wait until 1010; 7 more rows expected by then make a batch of 8 (17 ms), well within the goal.
    assert.equal(holdBatchUntil(situation()), 1010);
    // A head that already waited 5 ms holds for the rest only.
    assert.equal(holdBatchUntil(situation({ headEnqueuedMs: 995 })), 1005);
    // Fewer arrivals do not shorten the hold: it is on the chance of company, as a fixed delay's is.
    assert.equal(holdBatchUntil(situation({ arrivalRowsPerMs: 0.25 })), 1010);
  });

  it('never holds at low traffic, however generous the goal and the bound', () => {
    // One row every 200 ms against a 10 ms hold: 0.05 rows expected, under LOW_TRAFFIC_ROWS.
    assert.ok(0.005 * 10 < LOW_TRAFFIC_ROWS);
    assert.equal(holdBatchUntil(situation({ arrivalRowsPerMs: 0.005, headDueMs: 1e9 })), undefined);
    // Nothing seen yet.
    assert.equal(holdBatchUntil(situation({ arrivalRowsPerMs: 0, headDueMs: 1e9 })), undefined);
  });

  it('dispatches when waiting and then running a larger batch would finish the head after its goal', () => {
    // The head has waited 90 ms of its 100: 10 ms run now fits, any wait plus a larger batch (≥ 11 ms) does not.
    assert.equal(holdBatchUntil(situation({ headEnqueuedMs: 910, headDueMs: 1010 })), undefined);
  });

  it('shortens the hold so that the batch of the rows expected by its end still finishes by the goal', () => {
    // 14 ms left at 1 row/ms: holding 2 ms brings 2 rows (a batch of 3, 12 ms) ending at 14 ms; longer holds end later.
    assert.equal(holdBatchUntil(situation({ headDueMs: 1014 })), 1002);
  });

  it('respects a request\'s own timeout or deadline when it is sooner than the target', () => {
    // The caller passes the sooner of the two as the head's due time: a 12 ms timeout leaves room to wait 1 ms for 1 row.
    assert.equal(holdBatchUntil(situation({ headDueMs: 1000 + 12 })), 1001);
    assert.equal(holdBatchUntil(situation({ headDueMs: 1000 + 10 })), undefined);
  });

  it('treats max_queue_delay as an upper bound on the hold, counted from the head\'s arrival', () => {
    assert.equal(holdBatchUntil(situation({ holdLimitMs: 3 })), 1003);
    // The head already waited out the bound.
    assert.equal(holdBatchUntil(situation({ headEnqueuedMs: 995, holdLimitMs: 5 })), undefined);
  });

  it('does not hold when larger batches are not clearly cheaper per row', () => {
    assert.equal(holdBatchUntil(situation({ costs: linear, arrivalRowsPerMs: 10 })), undefined);
  });

  it('does not hold before any cost is learned, nor when the batch is already full', () => {
    assert.equal(holdBatchUntil(situation({ costs: unknown })), undefined);
    assert.equal(holdBatchUntil(situation({ rows: 8 })), undefined);
  });

  it('counts rows, not requests: 6 queued rows of 8 are held for their run time at most (the batcher sends the batch once full)', () => {
    // Running 6 rows takes 15 ms; 2 more rows make 8 (17 ms), within the goal.
    assert.equal(holdBatchUntil(situation({ rows: 6 })), 1015);
  });
});

describe('ArrivalRate', () => {
  it('knows nothing before two requests, then gives rows per ms from the smoothed gap', () => {
    const rate = new ArrivalRate();
    assert.equal(rate.rowsPerMs(0), 0);
    rate.arrived(1, 0);
    assert.equal(rate.rowsPerMs(0), 0);
    for (let at = 2; at <= 40; at += 2) rate.arrived(1, at);
    assert.equal(rate.rowsPerMs(40), 0.5);
  });

  it('follows a change of pace within a few tens of requests', () => {
    const rate = new ArrivalRate();
    let at = 0;
    for (let index = 0; index < 50; index++) rate.arrived(1, (at += 10));
    assert.ok(Math.abs(rate.rowsPerMs(at) - 0.1) < 1e-9);
    for (let index = 0; index < 50; index++) rate.arrived(1, (at += 1));
    assert.ok(rate.rowsPerMs(at) > 0.8, `after 50 requests 1 ms apart the rate is ${rate.rowsPerMs(at)} rows/ms`);
  });

  it('counts a silence longer than the usual gap at once, so a batch is not held for arrivals that stopped', () => {
    const rate = new ArrivalRate();
    for (let at = 0; at <= 100; at += 1) rate.arrived(1, at);
    assert.equal(rate.rowsPerMs(100), 1);
    assert.equal(rate.rowsPerMs(150), 1 / 50);
  });

  it('counts rows per request', () => {
    const rate = new ArrivalRate();
    for (let at = 0; at <= 400; at += 4) rate.arrived(4, at);
    assert.ok(rate.rowsPerMs(400) > 0.9 && rate.rowsPerMs(400) <= 1, `4-row requests every 4 ms: ${rate.rowsPerMs(400)} rows/ms`);
  });
});
