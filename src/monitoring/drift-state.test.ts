import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../onnx/test-models.js';
import { type DriftState, DriftStateMachine } from './drift-state.js';

/** A machine built at time 0 whose clock moves 1000 ms before each reading; feed gives enough samples and returns the states after each score. */
function machine(options: ConstructorParameters<typeof DriftStateMachine>[0] = {}) {
  let time = 0;
  const states = new DriftStateMachine({ minSamples: 10, ...options }, () => time);
  const evaluate = (score: number, sampleCount: number) => {
    time += 1000;
    return states.evaluate(score, sampleCount);
  };
  const feed = (scores: number[]) => scores.map((score) => (evaluate(score, 10), states.state));
  return { states, feed, evaluate };
}

test('defaults are the PSI levels with 0.8 exit ratio, 3 readings to leave and 200 samples; the start is insufficient_data', () => {
  const states = new DriftStateMachine({}, () => 5);
  assert.deepEqual(states.options, { warningAt: 0.1, driftAt: 0.25, exitRatio: 0.8, exitAfter: 3, minSamples: 200, historyLimit: 50 });
  assert.deepEqual(states.snapshot(), { state: 'insufficient_data', since: 5, transitions: [] });
  assert.equal(states.evaluate(0.5, 199), undefined);
  assert.equal(states.state, 'insufficient_data');
  assert.equal(states.evaluate(0.05, 200)?.to, 'ok');
});

test('warning is entered at the threshold and left only after three readings in a row below 0.08', () => {
  const { feed } = machine();
  assert.deepEqual(feed([0.05, 0.1]), ['ok', 'warning']);
  // 0.09 is below the entry level but not below the exit level: the state holds.
  assert.deepEqual(feed([0.09, 0.07, 0.07, 0.09, 0.07, 0.07]), ['warning', 'warning', 'warning', 'warning', 'warning', 'warning']);
  assert.deepEqual(feed([0.07]), ['ok']);
});

test('rising is immediate, even ok → drift in one step; drift falls to warning below 0.2 and straight to ok below 0.08', () => {
  const { states, feed } = machine();
  assert.deepEqual(feed([0.01, 0.3]), ['ok', 'drift']);
  assert.deepEqual(feed([0.19, 0.19, 0.21, 0.19, 0.19, 0.19]), ['drift', 'drift', 'drift', 'drift', 'drift', 'warning']);
  assert.deepEqual(feed([0.3, 0.05, 0.05, 0.05]), ['drift', 'drift', 'drift', 'ok']);
  assert.deepEqual(
    states.transitions().map(({ from, to, score }) => `${from}→${to}@${score}`),
    ['insufficient_data→ok@0.01', 'ok→drift@0.3', 'drift→warning@0.19', 'warning→drift@0.3', 'drift→ok@0.05'],
  );
});

test('too few samples make the state insufficient_data whatever the score, and a later reading starts afresh from the entry levels', () => {
  const { states, feed, evaluate } = machine();
  assert.deepEqual(feed([0.3]), ['drift']);
  const drained = evaluate(Number.NaN, 3);
  assert.deepEqual(drained, { from: 'drift', to: 'insufficient_data', at: 2000, sampleCount: 3 });
  assert.deepEqual(states.snapshot(), { state: 'insufficient_data', since: 2000, sampleCount: 3, transitions: states.transitions() });
  assert.deepEqual(feed([0.15, 0.05, 0.05]), ['warning', 'warning', 'warning']);
});

test('evaluate returns the transition it made, stamped by the clock; snapshots report the latest reading', () => {
  const { states, evaluate } = machine();
  assert.deepEqual(evaluate(0.12, 40), { from: 'insufficient_data', to: 'warning', at: 1000, score: 0.12, sampleCount: 40 });
  assert.equal(evaluate(0.13, 41), undefined);
  assert.deepEqual(states.snapshot(), {
    state: 'warning',
    since: 1000,
    score: 0.13,
    sampleCount: 41,
    transitions: [{ from: 'insufficient_data', to: 'warning', at: 1000, score: 0.12, sampleCount: 40 }],
  });
});

test('history keeps the newest historyLimit transitions; thresholds apply in any unit', () => {
  const { states, feed } = machine({ warningAt: 0.12, driftAt: 0.2, exitAfter: 1, historyLimit: 3 });
  feed([0.01, 0.13, 0.01, 0.25, 0.01]);
  assert.deepEqual(states.transitions().map(({ to, at }) => `${to}@${at}`), ['ok@3000', 'drift@4000', 'ok@5000']);
});

test('refuses warningAt not below driftAt, a bad sample count, and a NaN score once samples suffice', () => {
  assert.throws(() => new DriftStateMachine({ warningAt: 0.3, driftAt: 0.3 }), /warningAt must be below driftAt/);
  assert.throws(() => new DriftStateMachine({ exitRatio: 1 }), /exitRatio/);
  const states = new DriftStateMachine({ minSamples: 1 });
  assert.throws(() => states.evaluate(0.1, -1), /non-negative whole number, got -1/);
  assert.throws(() => states.evaluate(Number.NaN, 5), /got NaN/);
});

test('property: over random score walks, every rise meets its entry level and every fall follows exitAfter readings below its exit level', () => {
  const random = mulberry32(23);
  const rank: Record<DriftState, number> = { insufficient_data: -1, ok: 0, warning: 1, drift: 2 };
  for (let trial = 0; trial < 50; trial++) {
    const exitAfter = 1 + Math.floor(random() * 4);
    const { states, evaluate } = machine({ exitAfter });
    const scores: number[] = [];
    let score = random() * 0.3;
    for (let step = 0; step < 400; step++) {
      score = Math.max(0, score + (random() - 0.5) * 0.08);
      scores.push(score);
      const before = states.state;
      evaluate(score, 10);
      const after = states.state;
      if (score >= 0.25) assert.equal(after, 'drift');
      if (after === 'warning' && rank[before] < 1) assert.ok(score >= 0.1);
      if (rank[after] < rank[before] && before !== 'insufficient_data') {
        const exit = after === 'ok' ? 0.1 * 0.8 : 0.25 * 0.8;
        const recent = scores.slice(-exitAfter);
        assert.ok(recent.length === exitAfter && recent.every((value) => value < exit), `${before}→${after} after ${recent}`);
      }
      if (rank[after] === rank[before] && after !== 'drift' && score >= 0.1) assert.ok(after !== 'ok');
    }
  }
});

test('a small sample judged on a test of its own can raise and hold a level, but falls to insufficient_data where a full one would reach ok', () => {
  const states = new DriftStateMachine({ minSamples: 200 }, () => 0);
  assert.equal(states.evaluate(0.5, 50, { smallSample: true })?.to, 'drift');
  assert.deepEqual([0.05, 0.05].map((score) => (states.evaluate(score, 100, { smallSample: true }), states.state)), ['drift', 'drift']);
  const fall = states.evaluate(0.05, 150, { smallSample: true });
  assert.deepEqual(fall && { to: fall.to, score: fall.score }, { to: 'insufficient_data', score: undefined }, 'three readings below 0.08 would reach ok: 150 rows cannot say that');
  // From insufficient_data a small sample's low score says nothing either.
  assert.equal(states.evaluate(0.05, 150, { smallSample: true }), undefined);
  assert.equal(states.state, 'insufficient_data');
});

test('raise moves the state up to the level a score reaches, never down, and is no reading for the hysteresis', () => {
  const { states, feed } = machine();
  assert.equal(states.raise(0.05, 5), undefined, 'below warning: nothing to raise');
  assert.equal(states.raise(0.3, 5)?.to, 'drift');
  assert.equal(states.raise(0.12, 5), undefined, 'a lower level is no raise');
  assert.equal(states.state, 'drift');
  // Two regular readings below drift's exit, a raise that finds drift already, then one more: three regular readings.
  assert.deepEqual(feed([0.15, 0.15]), ['drift', 'drift']);
  assert.equal(states.raise(0.3, 5), undefined);
  assert.deepEqual(feed([0.15]), ['warning']);
  // A raise that finds its level already there leaves the run of regular readings below the exit as it was.
  assert.deepEqual(feed([0.05, 0.05]), ['warning', 'warning']);
  assert.equal(states.raise(0.11, 5), undefined, 'already warning');
  assert.deepEqual(feed([0.05]), ['ok']);
});
