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
  assert.throws(() => parseGate('agrement>=0.99'), /unknown metric 'agrement' \(did you mean 'agreement'\?\); known:/);
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

test('a bound a share cannot reach is refused before any work, with the share it likely meant; a percent sign reads as percent', () => {
  assert.throws(() => parseGate('agreement>=99'), /--gate clause 'agreement>=99': agreement is a share from 0 to 1 \(0 % to 100 %\): did you mean 0\.99 \(or 99%\)\?/);
  assert.throws(() => parseGate('accuracy>=91.5'), /accuracy is a share from 0 to 1 .*did you mean 0\.915/);
  assert.throws(() => parseGate('ece<=-0.1'), /ece is a share from 0 to 1/);
  assert.throws(() => parseGate('agreement>=101%'), /agreement is a share from 0 to 1/);
  for (const metric of ['top_k_accuracy', 'character_accuracy', 'character_agreement']) assert.throws(() => parseGate(`${metric}>=95`), /is a share from 0 to 1/);
  assert.equal(parseGate('agreement>=99%')[0].bound, 0.99);
  assert.equal(parseGate('accuracy >= 91.5 %')[0].bound, 0.915);
  assert.deepEqual(judgeGate(parseGate('agreement>=99%'), { agreement: 0.996 }), { passed: true, failures: [], measured: { 'agreement>=99%': 0.996 } });
  assert.throws(() => parseGate('max_abs_delta<=5%'), /max_abs_delta is not a share; give its bound as a plain number/);
  assert.equal(parseGate('max_abs_delta<=5')[0].bound, 5);
});

test('a drop bound written in points is refused (0.5 would let a 50-point drop pass); 0.5% is half a point, 50% is meant', () => {
  assert.throws(() => parseGate('accuracy_drop<=0.5'), /accuracy_drop is a difference of shares \(0\.005 is half a point\), so 0\.5 is 50 points: did you mean 0\.005 \(or 0\.5%\)\? Write 50% if you mean 50 points/);
  assert.throws(() => parseGate('accuracy_drop<=2'), /accuracy_drop is a difference of shares, from -1 to 1: did you mean 0\.02 \(or 2%\)\?/);
  assert.throws(() => parseGate('ece_increase<=1'), /did you mean 0\.01/);
  assert.equal(parseGate('accuracy_drop<=0.5%')[0].bound, 0.005);
  assert.equal(parseGate('accuracy_drop<=50%')[0].bound, 0.5);
  assert.equal(parseGate('accuracy_drop<=-0.01')[0].bound, -0.01);
  assert.equal(parseGate('accuracy_drop<=0.05')[0].bound, 0.05);
  assert.equal(judgeGate(parseGate('accuracy_drop<=0.5%'), { accuracy_drop: 0.5 }).passed, false);
});
