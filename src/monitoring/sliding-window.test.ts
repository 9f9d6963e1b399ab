import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mulberry32 } from '../onnx/test-models.js';
import { CategoricalWindow, NumericWindow } from './sliding-window.js';

/** A clock the test moves by hand. */
function manualClock(start = 0) {
  const clock = { time: start, now: () => clock.time };
  return clock;
}

describe('NumericWindow', () => {
  test('keeps the last `capacity` values, oldest first, across the ring wrapping round', () => {
    const window = new NumericWindow({ capacity: 3 });
    for (const value of [1, 2]) window.push(value);
    assert.deepEqual(Array.from(window.values()), [1, 2]);
    for (const value of [3, 4, 5, 6, 7]) window.push(value);
    assert.deepEqual(Array.from(window.values()), [5, 6, 7]);
    assert.equal(window.size, 3);
  });

  test('drops values older than maxAgeMs, as they age out and not only when new ones arrive', () => {
    const clock = manualClock();
    const window = new NumericWindow({ capacity: 10, maxAgeMs: 100 }, clock.now);
    window.push(1);
    clock.time = 50;
    window.push(2);
    clock.time = 120;
    window.push(3);
    assert.deepEqual(Array.from(window.values()), [2, 3]);
    clock.time = 150; // the value from t = 50 is exactly 100 ms old: no older than the bound, so it stays
    assert.deepEqual(Array.from(window.values()), [2, 3]);
    clock.time = 151;
    assert.deepEqual(Array.from(window.values()), [3]);
    clock.time = 1000;
    assert.equal(window.size, 0);
    assert.deepEqual(window.span(), { size: 0, capacity: 10, maxAgeMs: 100 });
  });

  test('span reports the arrival times of the oldest and newest values', () => {
    const clock = manualClock(1_700_000_000_000);
    const window = new NumericWindow({ capacity: 2, maxAgeMs: 60_000 }, clock.now);
    for (const value of [1, 2, 3]) {
      window.push(value);
      clock.time += 10;
    }
    assert.deepEqual(window.span(), { size: 2, capacity: 2, maxAgeMs: 60_000, oldestAt: 1_700_000_000_010, newestAt: 1_700_000_000_020 });
  });

  test('a clock that steps back stamps arrivals with the latest time seen, so ageing still goes oldest first', () => {
    const clock = manualClock(100);
    const window = new NumericWindow({ capacity: 10, maxAgeMs: 100 }, clock.now);
    window.push(1);
    clock.time = 50;
    window.push(2);
    assert.equal(window.span().newestAt, 100);
    clock.time = 201;
    assert.equal(window.size, 0);
  });

  test('sortedValues is ascending; values is a copy the window does not share', () => {
    const window = new NumericWindow({ capacity: 5 });
    for (const value of [3, -1, Infinity, 0.5, -Infinity]) window.push(value);
    assert.deepEqual(Array.from(window.sortedValues()), [-Infinity, -1, 0.5, 3, Infinity]);
    window.values().fill(0);
    assert.deepEqual(Array.from(window.values()), [3, -1, Infinity, 0.5, -Infinity]);
  });

  test('refuses NaN and options out of range; defaults come from the schema', () => {
    const window = new NumericWindow();
    assert.equal(window.capacity, 1000);
    assert.equal(window.maxAgeMs, 3_600_000);
    assert.throws(() => window.push(Number.NaN), /takes numbers; got NaN/);
    assert.throws(() => new NumericWindow({ capacity: 0 }), /capacity/);
    assert.throws(() => new NumericWindow({ capacity: 2.5 }), /capacity/);
    assert.throws(() => new NumericWindow({ maxAgeMs: 0 }), /maxAgeMs/);
  });
});

describe('CategoricalWindow', () => {
  test('counts classes as they arrive and as they leave by count and by age', () => {
    const clock = manualClock();
    const window = new CategoricalWindow(3, { capacity: 4, maxAgeMs: 100 }, clock.now);
    for (const classIndex of [0, 2, 2, 1]) window.push(classIndex);
    assert.deepEqual(window.counts(), [1, 1, 2]);
    clock.time = 10;
    window.push(1); // pushes out the first 0
    assert.deepEqual(window.counts(), [0, 2, 2]);
    clock.time = 105; // the four from t = 0 age out
    assert.deepEqual(window.counts(), [0, 1, 0]);
    assert.equal(window.size, 1);
  });

  test('refuses class indices outside [0, classCount) and a class count that is not a positive whole number', () => {
    const window = new CategoricalWindow(2);
    assert.throws(() => window.push(2), /whole number in \[0, 2\), got 2/);
    assert.throws(() => window.push(-1), /got -1/);
    assert.throws(() => window.push(0.5), /got 0.5/);
    assert.throws(() => new CategoricalWindow(0), /positive whole number of classes, got 0/);
    assert.deepEqual(window.counts(), [0, 0]);
  });
});

test('property: both windows always hold exactly the last N arrivals no older than T, against a plain list of everything', () => {
  const random = mulberry32(17);
  for (let trial = 0; trial < 30; trial++) {
    const clock = manualClock();
    const capacity = 1 + Math.floor(random() * 8);
    const maxAgeMs = 1 + Math.floor(random() * 50);
    const classCount = 1 + Math.floor(random() * 4);
    const numeric = new NumericWindow({ capacity, maxAgeMs }, clock.now);
    const categorical = new CategoricalWindow(classCount, { capacity, maxAgeMs }, clock.now);
    const everything: Array<{ value: number; classIndex: number; at: number }> = [];
    for (let step = 0; step < 300; step++) {
      clock.time += Math.floor(random() * 12);
      if (random() < 0.7) {
        const arrival = { value: random(), classIndex: Math.floor(random() * classCount), at: clock.time };
        everything.push(arrival);
        numeric.push(arrival.value);
        categorical.push(arrival.classIndex);
      }
      const expected = everything.slice(-capacity).filter((arrival) => clock.time - arrival.at <= maxAgeMs);
      assert.deepEqual(Array.from(numeric.values()), expected.map((arrival) => arrival.value));
      const counts = new Array<number>(classCount).fill(0);
      for (const arrival of expected) counts[arrival.classIndex] += 1;
      assert.deepEqual(categorical.counts(), counts);
      assert.equal(categorical.size, expected.length);
    }
  }
});
