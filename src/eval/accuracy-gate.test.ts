/** The accuracy gate: what it accepts, and how it judges figures against its clauses. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeGate, parseGate } from './accuracy-gate.js';

test('a gate is clauses of metric, comparison and bound', () => {
  assert.deepEqual(parseGate('accuracy_drop<=0.005, agreement >= 0.99'), [
    { metric: 'accuracy_drop', comparison: '<=', bound: 0.005, text: 'accuracy_drop<=0.005' },
    { metric: 'agreement', comparison: '>=', bound: 0.99, text: 'agreement >= 0.99' },
  ]);
  assert.equal(parseGate('max_abs_delta<1e-3')[0].bound, 0.001);
});

test('a malformed gate is refused with what a clause must look like', () => {
  assert.throws(() => parseGate(''), /has no clause/);
  assert.throws(() => parseGate('agreement=0.99'), /is not <metric><op><number>/);
  assert.throws(() => parseGate('precision>=0.9'), /unknown metric 'precision'; known: accuracy, accuracy_drop/);
});

test('the gate passes only when every clause holds, and names each that does not', () => {
  const gate = parseGate('accuracy_drop<=0.005,agreement>=0.99');
  assert.deepEqual(judgeGate(gate, { accuracy_drop: 0.004, agreement: 0.995 }), { passed: true, failures: [], measured: { 'accuracy_drop<=0.005': 0.004, 'agreement>=0.99': 0.995 } });
  assert.deepEqual(judgeGate(gate, { accuracy_drop: 0.004, agreement: 0.985 }), {
    passed: false,
    failures: ['agreement>=0.99: measured agreement = 0.985'],
    measured: { 'accuracy_drop<=0.005': 0.004, 'agreement>=0.99': 0.985 },
  });
  // Bounds are inclusive for <= and >=, strict for < and >.
  assert.equal(judgeGate(parseGate('agreement>=0.99'), { agreement: 0.99 }).passed, true);
  assert.equal(judgeGate(parseGate('agreement>0.99'), { agreement: 0.99 }).passed, false);
});

test('a clause on a figure the run did not measure fails instead of passing unchecked', () => {
  const verdict = judgeGate(parseGate('accuracy_drop<=0.005,agreement>=0.99'), { agreement: 1 });
  assert.equal(verdict.passed, false);
  assert.match(verdict.failures[0], /accuracy_drop was not measured \(reference's accuracy minus the candidate's \(needs labels\)\)/);
});

test('figures from fewer examples than the minimum fail the gate, whatever they are', () => {
  const gate = parseGate('agreement>=0.99');
  const few = judgeGate(gate, { agreement: 1 }, {}, { examples: 3, minimum: 30 });
  assert.equal(few.passed, false);
  assert.match(few.failures[0], /judged on 3 example\(s\), fewer than the 30 a gate needs/);
  assert.equal(judgeGate(gate, { agreement: 1 }, {}, { examples: 30, minimum: 30 }).passed, true);
});

test('a figure at its bound holds, though the subtraction that made it carries float noise', () => {
  // 186/200 right against 185/200: a drop of exactly half a point, computed as 0.0050000000000000044.
  const drop = 186 / 200 - 185 / 200;
  assert.deepEqual(judgeGate(parseGate('accuracy_drop<=0.005'), { accuracy_drop: drop }), { passed: true, failures: [], measured: { 'accuracy_drop<=0.005': 0.005 } });
  assert.equal(judgeGate(parseGate('accuracy_drop<0.005'), { accuracy_drop: drop }).passed, false);
  assert.equal(judgeGate(parseGate('ece_increase<=0.005'), { ece_increase: 0.15 - 0.145 }).passed, true);
  assert.equal(judgeGate(parseGate('agreement>=0.05'), { agreement: 0.35 - 0.3 }).passed, true);
  // A real excess, however small against the bound, still fails.
  assert.equal(judgeGate(parseGate('accuracy_drop<=0.005'), { accuracy_drop: 0.005001 }).passed, false);
});
