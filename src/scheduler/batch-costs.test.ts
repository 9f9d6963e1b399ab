/**
 * BatchCosts alone, with recorded numbers (no timing): what it learns (ns per input element, the
 * median of the latest executions, and a per-batch hand-off overhead), how it estimates sizes it
 * has not measured, and which cut choose() picks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchCosts, CHEAPER_BY } from './batch-costs.js';

/** Records `nsPerElement` at `rows` rows of 10 elements each. */
function recordAt(costs: BatchCosts, rows: number, nsPerElement: number): void {
  costs.record(rows, rows * 10, rows * 10 * nsPerElement);
}

/** Every cumulative size from 1 to `max`, as nextBatch() passes them for requests of one row. */
const upTo = (max: number) => Array.from({ length: max }, (_, index) => index + 1);

describe('BatchCosts: record() and estimate()', () => {
  it('knows nothing at first: NaN estimates, no samples, an empty snapshot', () => {
    const costs = new BatchCosts(8);
    for (const rows of upTo(8)) {
      assert.ok(Number.isNaN(costs.estimate(rows)));
      assert.equal(costs.samples(rows), 0);
    }
    assert.deepEqual(costs.snapshot(), []);
  });

  it('learns ns per input element, so rows of another width teach the same curve', () => {
    const costs = new BatchCosts(8);
    costs.record(2, 20, 1_000); // 2 rows of 10 elements in 1 us: 50 ns per element
    assert.equal(costs.estimate(2), 50);
    costs.record(2, 200, 10_000); // 2 rows of 100 elements: again 50 ns per element
    assert.equal(costs.estimate(2), 50);
    assert.equal(costs.samples(2), 2);
  });

  it('takes the median of the latest 9 executions: one outlier (a GC pause) moves nothing', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 4, 100);
    recordAt(costs, 4, 200);
    assert.equal(costs.estimate(4), 150);
    recordAt(costs, 4, 20);
    assert.equal(costs.estimate(4), 100);
    assert.deepEqual(costs.snapshot(), [{ rows: 4, nsPerElement: 100, samples: 3 }]);
    for (let run = 0; run < 8; run++) recordAt(costs, 4, 50);
    recordAt(costs, 4, 50_000);
    assert.equal(costs.estimate(4), 50, 'the outlier is one of 9');
    for (let run = 0; run < 9; run++) recordAt(costs, 4, 70);
    assert.equal(costs.estimate(4), 70, 'older executions leave the window');
  });

  it('interpolates linearly between the nearest measured sizes', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 2, 10);
    recordAt(costs, 6, 30);
    assert.equal(costs.estimate(3), 15);
    assert.equal(costs.estimate(4), 20);
    assert.equal(costs.estimate(5), 25);
    assert.equal(costs.estimate(2), 10, 'measured sizes are their own estimate');
    assert.equal(costs.estimate(6), 30);
    assert.equal(costs.samples(4), 0, 'an estimate is not a sample');
  });

  it('extrapolates flat: below the smallest measured size as that one, above the largest as that one', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 3, 10);
    recordAt(costs, 5, 40);
    assert.equal(costs.estimate(1), 10);
    assert.equal(costs.estimate(2), 10);
    assert.equal(costs.estimate(7), 40);
    assert.equal(costs.estimate(8), 40);
    const single = new BatchCosts(8);
    recordAt(single, 4, 7);
    assert.deepEqual(upTo(8).map((rows) => single.estimate(rows)), [7, 7, 7, 7, 7, 7, 7, 7], 'one measurement: flat everywhere');
  });

  it('snapshot() lists measured sizes in ascending order', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 8, 1);
    recordAt(costs, 1, 3);
    recordAt(costs, 4, 2);
    assert.deepEqual(
      costs.snapshot().map((entry) => entry.rows),
      [1, 4, 8],
    );
  });

  const nonsense: [string, number, number, number][] = [
    ['0 rows', 0, 10, 1_000],
    ['negative rows', -1, 10, 1_000],
    ['more rows than max_batch_size', 9, 10, 1_000],
    ['a fractional row count', 1.5, 10, 1_000],
    ['NaN rows', Number.NaN, 10, 1_000],
    ['0 elements', 2, 0, 1_000],
    ['NaN elements', 2, Number.NaN, 1_000],
    ['infinite elements', 2, Number.POSITIVE_INFINITY, 1_000],
    ['0 ns', 2, 10, 0],
    ['negative ns', 2, 10, -5],
    ['NaN ns', 2, 10, Number.NaN],
    ['infinite ns', 2, 10, Number.POSITIVE_INFINITY],
  ];
  for (const [what, rows, elements, ns] of nonsense) {
    it(`ignores a measurement of ${what}, and it does not disturb what was learned`, () => {
      const costs = new BatchCosts(8);
      recordAt(costs, 2, 50);
      const before = costs.snapshot();
      costs.record(rows, elements, ns);
      assert.deepEqual(costs.snapshot(), before);
      assert.equal(costs.estimate(2), 50);
      assert.equal(costs.samples(2), 1);
      assert.equal(costs.estimate(8), 50);
    });
  }
});

describe('BatchCosts: choose()', () => {
  it('without measurements takes the largest size', () => {
    const costs = new BatchCosts(8);
    assert.equal(costs.choose(upTo(8)), 7);
    assert.equal(costs.choose([3, 5]), 1);
  });

  it('with a single possible size takes it', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 1, 1);
    recordAt(costs, 4, 100);
    assert.equal(costs.choose([4]), 0);
  });

  it('takes a smaller size when it is measured cheaper per row', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 1, 40);
    recordAt(costs, 2, 10);
    recordAt(costs, 4, 30);
    recordAt(costs, 8, 40);
    assert.equal(costs.choose(upTo(8)), 1, 'batch 2');
    assert.equal(costs.choose([1, 3, 4, 6]), 1, 'of rows 1, 3, 4, 6: 3 (interpolated 20) beats 4 (30) and 6 (35)');
    assert.equal(costs.choose([1, 4, 8]), 1, 'of 1, 4, 8: 4');
  });

  it('takes the larger of equally cheap sizes', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 2, 10);
    recordAt(costs, 4, 10);
    recordAt(costs, 8, 10);
    assert.equal(costs.choose(upTo(8)), 7);
    assert.equal(costs.choose([1, 2, 4]), 2);
  });

  it('takes a larger unmeasured size rather than the largest measured one (flat extrapolation ties)', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 1, 20);
    recordAt(costs, 2, 10);
    assert.equal(costs.choose(upTo(8)), 7, 'sizes above 2 look as cheap as 2: the largest gets tried');
    assert.equal(costs.choose([1, 2, 5]), 2);
  });

  it('a smaller size is chosen only when clearly cheaper: within CHEAPER_BY of the cheapest, the larger wins', () => {
    const near = new BatchCosts(8);
    recordAt(near, 2, 10);
    recordAt(near, 4, 10 * (1 + CHEAPER_BY * 0.9)); // dearer per row, but within the margin: timing noise
    assert.equal(near.choose([2, 4]), 1);
    assert.equal(near.choose([1, 2, 3, 4]), 3, 'the largest within the margin, not merely the cheapest');
    const clear = new BatchCosts(8);
    recordAt(clear, 2, 10);
    recordAt(clear, 4, 10 * (1 + CHEAPER_BY * 1.5)); // beyond the margin
    assert.equal(clear.choose([2, 4]), 0);
    assert.equal(clear.choose([1, 2, 4]), 1, 'batch 2: 1 costs the same (flat), 4 is clearly dearer');
    assert.equal(clear.choose([1, 2, 3, 4]), 2, 'size 3, interpolated halfway to 4, is within the margin of 2: the larger wins');
  });

  it('explores the largest on every 64th cut, counting only cuts that had a choice', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 1, 40);
    recordAt(costs, 2, 10);
    recordAt(costs, 8, 40);
    const picks: number[] = [];
    for (let cut = 1; cut <= 130; cut++) {
      // A cut with nothing to choose from does not count.
      assert.equal(costs.choose([5]), 0);
      picks.push(costs.choose(upTo(8)));
    }
    const explored = picks.flatMap((pick, index) => (pick === 7 ? [index + 1] : []));
    assert.deepEqual(explored, [64, 128]);
    assert.ok(picks.every((pick, index) => explored.includes(index + 1) || pick === 1));
  });

  it('an exploration that measures the largest size cheaper moves the cut there', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 2, 10);
    recordAt(costs, 8, 40);
    assert.equal(costs.choose(upTo(8)), 1);
    // The machine got faster at 8 (measured when explored): a few measurements bring it below 10.
    for (let run = 0; run < 12; run++) recordAt(costs, 8, 1);
    assert.ok(costs.estimate(8) < 10);
    assert.equal(costs.choose(upTo(8)), 7);
  });
});

describe('BatchCosts: largerCouldBeCheaper()', () => {
  it('knowing nothing, a larger batch might be cheaper', () => {
    assert.equal(new BatchCosts(8).largerCouldBeCheaper(2), true);
  });

  it('while max_batch_size is unmeasured, a larger batch might be cheaper: a cold first batch of 2 does not stop batching for good', () => {
    const learning = new BatchCosts(8);
    recordAt(learning, 1, 40);
    recordAt(learning, 2, 110);
    assert.equal(learning.largerCouldBeCheaper(1), true, 'sizes 3 to 8 are unknown, not as dear as 2');
    recordAt(learning, 6, 8);
    assert.equal(learning.largerCouldBeCheaper(6), true);
    recordAt(learning, 8, 20);
    assert.equal(learning.largerCouldBeCheaper(6), false, 'measured to the top: the estimates decide');
    // Calibrated at load up to 4 rows (a larger batch would pass the queue's bytes): 8 could never form, so is not waited for.
    const calibrated = new BatchCosts(8);
    recordAt(calibrated, 1, 40);
    recordAt(calibrated, 2, 30);
    recordAt(calibrated, 4, 30);
    calibrated.markCalibrated();
    assert.equal(calibrated.largerCouldBeCheaper(4), false);
  });

  it('is true when a larger size is clearly cheaper per row, measured or estimated', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 2, 10);
    recordAt(costs, 8, 2);
    assert.equal(costs.largerCouldBeCheaper(2), true);
    const between = new BatchCosts(8);
    recordAt(between, 1, 10);
    recordAt(between, 2, 10);
    recordAt(between, 4, 10);
    recordAt(between, 8, 1);
    assert.equal(between.largerCouldBeCheaper(4), true, 'sizes 5 to 8 are interpolated down towards 1');
  });

  it('is false when no larger size is clearly cheaper: dearer, equal, or cheaper only within CHEAPER_BY', () => {
    const dearer = new BatchCosts(8);
    recordAt(dearer, 2, 1);
    recordAt(dearer, 4, 8);
    recordAt(dearer, 8, 8);
    assert.equal(dearer.largerCouldBeCheaper(2), false);
    const slightly = new BatchCosts(8);
    recordAt(slightly, 2, 10);
    recordAt(slightly, 8, 10 / (1 + CHEAPER_BY * 0.5));
    assert.equal(slightly.largerCouldBeCheaper(2), false);
    assert.equal(slightly.largerCouldBeCheaper(8), false, 'nothing is larger than max_batch_size');
  });
});

describe('BatchCosts: recordOverhead()', () => {
  it('spreads a per-batch overhead over the batch\'s elements: small batches get dearer per row, the engine\'s own costs stay as measured', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 1, 100);
    recordAt(costs, 8, 100);
    costs.recordOverhead(8_000);
    assert.equal(costs.estimate(1), 100 + 8_000 / 10);
    assert.equal(costs.estimate(4), 100 + 8_000 / 40);
    assert.equal(costs.estimate(8), 100 + 8_000 / 80);
    assert.deepEqual(costs.snapshot(), [
      { rows: 1, nsPerElement: 100, samples: 1 },
      { rows: 8, nsPerElement: 100, samples: 1 },
    ]);
    // Rows twice as wide (the latest execution's): the same overhead weighs half as much per element.
    costs.record(1, 20, 20 * 100);
    assert.equal(costs.estimate(1), 100 + 8_000 / 20);
  });

  it('makes choose() cut a larger batch than it would without it, and a larger batch worth waiting for', () => {
    const engineOnly = new BatchCosts(8);
    const withOverhead = new BatchCosts(8);
    for (const costs of [engineOnly, withOverhead]) {
      recordAt(costs, 1, 100);
      recordAt(costs, 2, 100);
      recordAt(costs, 4, 150);
      recordAt(costs, 8, 150);
    }
    withOverhead.recordOverhead(8_000);
    assert.equal(engineOnly.choose(upTo(8)), 1, 'the engine alone is cheapest per row at 2');
    assert.equal(withOverhead.choose(upTo(8)), 7, 'with 8 µs per batch on top, 8 rows are the cheapest per row');
    assert.equal(engineOnly.largerCouldBeCheaper(2), false);
    assert.equal(withOverhead.largerCouldBeCheaper(2), true);
  });

  it('takes the median of the latest 9 overheads: one slow hand-off moves nothing, and older ones leave the window', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 1, 100);
    costs.recordOverhead(1_000);
    costs.recordOverhead(3_000);
    assert.equal(costs.estimate(1), 100 + 2_000 / 10, 'of two, their mean');
    recordAt(costs, 1, 100); // an execution's median in between leaves the overhead's alone
    assert.equal(costs.estimate(1), 100 + 2_000 / 10);
    for (let batch = 0; batch < 7; batch++) costs.recordOverhead(1_000);
    assert.equal(costs.estimate(1), 100 + 1_000 / 10, 'eight of nine are 1 µs');
    costs.recordOverhead(1e12); // replaces the oldest 1 µs
    assert.equal(costs.estimate(1), 100 + 1_000 / 10, 'the outlier is one of 9');
    for (let batch = 0; batch < 9; batch++) costs.recordOverhead(5_000);
    assert.equal(costs.estimate(1), 100 + 5_000 / 10, 'only the latest 9 count');
    assert.deepEqual(costs.snapshot(), [{ rows: 1, nsPerElement: 100, samples: 2 }]);
  });

  it('ignores a NaN, negative or infinite overhead; 0 is a measurement', () => {
    const costs = new BatchCosts(8);
    recordAt(costs, 1, 100);
    costs.recordOverhead(1_000);
    for (const nonsense of [Number.NaN, -1, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) costs.recordOverhead(nonsense);
    assert.equal(costs.estimate(1), 100 + 1_000 / 10);
    costs.recordOverhead(0);
    assert.equal(costs.estimate(1), 100 + 500 / 10, 'the median of 1 µs and 0');
  });

  it('an overhead without any measured execution leaves the estimates unknown', () => {
    const costs = new BatchCosts(8);
    costs.recordOverhead(1_000);
    assert.ok(Number.isNaN(costs.estimate(1)));
    assert.equal(costs.choose(upTo(8)), 7);
    assert.deepEqual(costs.snapshot(), []);
  });
});
