import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reliabilityBins } from './accuracy-estimate.js';
import { summariseFeature, type ReferenceProfile } from './reference-profile.js';
import type { DriftTransition } from './drift-state.js';
import { binomialTail, expectedOodShareAt, VersionMonitor, type MonitoredRow } from './version-monitor.js';
import { modelJudging } from './model-monitoring.js';
import { modelMonitoringSchema } from '../config/model-config.js';

/** A deterministic stream in [0, 1): the same values for the same seed. */
function uniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Two classes; the model's top probability is uniform in [0.5, 1) and right that often; brightness uniform in [0, 1). */
function profile(): ReferenceProfile {
  const random = uniform(1);
  const confidences = Array.from({ length: 4000 }, () => 0.5 + random() / 2);
  const correct = confidences.map((confidence) => random() < confidence);
  return {
    format: 1,
    provenance: {
      created: '2026-12-02T00:00:00.000Z',
      model: 'm',
      modelVersion: '1',
      nereidVersion: 'test',
      data: { source: 'synthetic', digest: `sha256:${'0'.repeat(64)}`, examples: 4000 },
    },
    features: {
      'output.confidence': summariseFeature(confidences),
      'input.brightness': summariseFeature(Array.from({ length: 4000 }, random)),
    },
    classShares: { cat: 0.5, dog: 0.5 },
    ood: { method: 'mahalanobis', tensor: 't', pooling: 'none', classMeans: [[0]], precision: [[1]], threshold: 10, targetFalsePositiveRate: 0.05, heldOutFalsePositiveRate: 0.05 },
    calibration: { examples: 4000, bins: reliabilityBins(confidences, correct), ece: 0 },
  };
}

function rows(count: number, random: () => number, shift = 0): MonitoredRow[] {
  return Array.from({ length: count }, () => {
    const confidence = 0.5 + random() / 2;
    const predicted = random() < 0.5 ? 0 : 1;
    return {
      probabilities: predicted === 0 ? [confidence, 1 - confidence] : [1 - confidence, confidence],
      oodScore: random() < 0.05 + shift ? 20 : 1,
      inputs: { 'input.brightness': Math.min(1, random() + shift) },
    };
  });
}

test('in-distribution rows keep the state ok; shifted rows move it to drift at once, with a warning callback; recovery takes exitAfter evaluations', () => {
  let now = 0;
  const transitions: string[] = [];
  const monitor = new VersionMonitor(profile(), { window: { capacity: 500 }, evaluateEvery: 50 }, { now: () => now, onTransition: (transition) => transitions.push(`${transition.from}→${transition.to}`) });
  const random = uniform(7);
  for (let batch = 0; batch < 10; batch++) monitor.record(rows(50, random), `r${batch}`);
  assert.equal(monitor.driftState, 'ok', JSON.stringify(monitor.latest?.features));
  assert.deepEqual(transitions, ['insufficient_data→ok']);

  now += 1000;
  let rowsToDrift = 0;
  // A getter read afresh each time: assert.equal narrowed the property's type to 'ok'.
  const state = (): string => monitor.driftState;
  while (state() !== 'drift' && rowsToDrift < 500) {
    monitor.record(rows(50, random, 0.5));
    rowsToDrift += 50;
  }
  assert.ok(rowsToDrift <= 250, `drift after ${rowsToDrift} shifted rows`);
  assert.equal(transitions.at(-1)?.endsWith('→drift'), true, transitions.join(', '));
  const top = monitor.latest!.features[0].feature;
  assert.ok(['input.brightness', 'ood.flagged'].includes(top), top);

  let rowsToOk = 0;
  while (state() !== 'ok' && rowsToOk < 2000) {
    monitor.record(rows(50, random));
    rowsToOk += 50;
  }
  assert.ok(rowsToOk >= 500 && rowsToOk <= 1000, `ok after ${rowsToOk} rows: the window must refill, then stay below the exit level for three evaluations`);
  const snapshot = monitor.snapshot();
  assert.equal(snapshot.rows, 500 + rowsToDrift + rowsToOk);
  assert.equal(snapshot.window.size, 500);
  assert.equal(snapshot.transitions.at(-1)!.to, 'ok');
  assert.ok(Math.abs(snapshot.ood!.share! - 0.05) < 0.04, `OOD share ${snapshot.ood!.share}`);
});

test('features with too few rows are left out; a quiet window ages empty', () => {
  let now = 0;
  const monitor = new VersionMonitor(profile(), { window: { capacity: 1000, maxAgeMs: 60_000 }, evaluateEvery: 10 }, { now: () => now });
  const random = uniform(3);
  monitor.record(rows(150, random).map(({ probabilities }) => ({ probabilities })));
  const evaluation = monitor.evaluate();
  assert.deepEqual(evaluation.features, [], 'under the 200-row minimum, nothing is judged');
  assert.equal(monitor.driftState, 'insufficient_data');
  monitor.record(rows(100, random).map(({ probabilities }) => ({ probabilities })));
  assert.deepEqual(monitor.evaluate().features.map((feature) => feature.feature).sort(), ['output.class', 'output.confidence'], 'no input properties or OOD scores were given');
  now += 61_000;
  assert.equal(monitor.snapshot().window.size, 0);
});

test('a snapshot is read again only once it could differ (a row in, a label, a row aged out); until then the same one comes back, its evaluation what evaluating gives', () => {
  let now = 0;
  const monitor = new VersionMonitor(profile(), { window: { capacity: 500, maxAgeMs: 60_000 }, evaluateEvery: 50 }, { now: () => now });
  const random = uniform(5);
  for (let batch = 0; batch < 6; batch++) monitor.record(rows(50, random), `r${batch}`);
  const first = monitor.snapshot();
  now += 1000;
  assert.equal(monitor.snapshot(), first, 'nothing changed: not evaluated again');
  assert.deepEqual(first.evaluation!.features, monitor.evaluate().features);
  monitor.record(rows(1, random), 'one');
  const recorded = monitor.snapshot();
  assert.notEqual(recorded, first);
  assert.equal(recorded.window.size, 301);
  assert.equal(monitor.feedback('one', 0), 'applied');
  const labelled = monitor.snapshot();
  assert.notEqual(labelled, recorded);
  assert.equal(labelled.accuracy!.labelled, 1);
  // The first 300 rows, recorded at 0, are past the age bound; the last, recorded at 1000, is not.
  now = 60_500;
  const aged = monitor.snapshot();
  assert.notEqual(aged, labelled);
  assert.deepEqual([aged.window.size, aged.state, aged.evaluation!.features], [1, 'insufficient_data', []]);
});

test('labels fed back by request id give realised accuracy beside the calibrated estimate; unknown ids are reported', () => {
  const monitor = new VersionMonitor(profile(), { window: { capacity: 5000 } });
  const random = uniform(11);
  const batch = rows(2000, random);
  batch.forEach((row, index) => monitor.record([row], `id-${index}`));
  let accepted = 0;
  batch.forEach((row, index) => {
    const [p0, p1] = row.probabilities as number[];
    const predicted = p0 >= p1 ? 0 : 1;
    const right = random() < Math.max(p0, p1);
    if (monitor.feedback(`id-${index}`, right ? predicted : 1 - predicted) === 'applied') accepted += 1;
  });
  assert.equal(accepted, 2000);
  assert.equal(monitor.feedback('id-unknown', 0), 'unknown');
  const accuracy = monitor.snapshot().accuracy!;
  assert.equal(accuracy.labelled, 2000);
  assert.ok(Math.abs(accuracy.estimateError!) < 0.03, `estimate ${accuracy.expectedAccuracyOnLabelled} vs realised ${accuracy.realisedAccuracy}`);
  // A batched request's rows are named <id>/<row>.
  monitor.record(rows(3, random), 'batch');
  assert.equal(monitor.feedback('batch/2', 1), 'applied');
  assert.equal(monitor.feedback('batch', 1), 'unknown');
});

test("an image's width and height are reported but do not move the state: pre-processing resizes every image", () => {
  const reference = profile();
  reference.features['input.width'] = summariseFeature(Array.from({ length: 4000 }, () => 28));
  reference.features['input.height'] = summariseFeature(Array.from({ length: 4000 }, () => 28));
  const monitor = new VersionMonitor(reference, { window: { capacity: 500 }, evaluateEvery: 50 });
  const random = uniform(11);
  for (let batch = 0; batch < 10; batch++) {
    monitor.record(rows(50, random).map((row) => ({ ...row, inputs: { ...row.inputs, 'input.width': 112, 'input.height': 112 } })));
  }
  const evaluation = monitor.latest!;
  const width = evaluation.features.find((feature) => feature.feature === 'input.width')!;
  assert.equal(width.level, 'drift', 'every image is 112 wide where the reference had 28');
  assert.equal(width.informational, true);
  assert.ok(evaluation.score < 0.1, `score ${evaluation.score} counts the other features only`);
  assert.equal(monitor.driftState, 'ok');
});

test('when rows age out without traffic, the state falls to insufficient_data as it is read, instead of staying at drift', () => {
  let now = 0;
  const transitions: string[] = [];
  const monitor = new VersionMonitor(profile(), { window: { capacity: 500, maxAgeMs: 60_000 }, evaluateEvery: 50 }, { now: () => now, onTransition: (transition) => transitions.push(`${transition.from}→${transition.to}`) });
  const random = uniform(5);
  for (let batch = 0; batch < 10; batch++) monitor.record(rows(50, random, 0.5));
  assert.equal(monitor.driftState, 'drift');
  const drifted = monitor.snapshot();
  assert.equal(drifted.stateEvaluation?.score, monitor.latest?.score, 'the snapshot carries the evaluation the state stepped on');
  now += 61_000;
  const aged = monitor.snapshot();
  assert.equal(aged.window.size, 0);
  assert.equal(aged.state, 'insufficient_data');
  assert.equal(transitions.at(-1), 'drift→insufficient_data');
});

test('binomialTail is the exact upper tail of a binomial count', () => {
  assert.equal(binomialTail(0, 10, 0.3), 1);
  assert.equal(binomialTail(11, 10, 0.3), 0);
  assert.ok(Math.abs(binomialTail(10, 10, 0.5) - 1 / 1024) < 1e-15);
  assert.ok(Math.abs(binomialTail(1, 3, 0.5) - 7 / 8) < 1e-12);
  // 13 of 50 at 5 %: past the one-in-a-million alarm level; 12 of 50 is not.
  assert.ok(binomialTail(13, 50, 0.05) < 1e-6 && binomialTail(12, 50, 0.05) > 1e-6);
});

test('under the minimum rows, a flagged share no chance gives moves the state on its own; the expected share never does', () => {
  const random = uniform(13);
  const allFlagged = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 50 });
  allFlagged.record(rows(50, random).map((row) => ({ ...row, oodScore: 20 })));
  assert.equal(allFlagged.driftState, 'drift', '50 of 50 flagged at an expected 5 %');
  assert.equal(allFlagged.latest?.smallSample, true);
  assert.deepEqual(allFlagged.latest?.features.map((feature) => feature.feature), ['ood.flagged']);
  // In-distribution traffic at the expected rate, in 40 small windows: never judged before 200 rows.
  for (let trial = 0; trial < 40; trial++) {
    const clean = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 50 });
    for (let batch = 0; batch < 3; batch++) clean.record(rows(50, random));
    assert.equal(clean.driftState, 'insufficient_data', `trial ${trial}`);
  }
});

test('with little traffic, the flagged-share alarm is checked on every record: foreign rows one at a time move the state at row 30, not at the first evaluation', () => {
  const random = uniform(23);
  const monitor = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 100 });
  const states: string[] = [];
  for (const row of rows(30, random)) {
    monitor.record([{ ...row, oodScore: 20 }]);
    states.push(monitor.driftState);
  }
  assert.deepEqual([states[28], states[29]], ['insufficient_data', 'drift'], 'judged from 30 rows on, as documented');
  assert.equal(monitor.snapshot().transitions.at(-1)?.sampleCount, 30);
  // In-distribution traffic, one row a record, at the expected rate: still never judged before 200 rows.
  for (let trial = 0; trial < 10; trial++) {
    const clean = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 100 });
    for (const row of rows(199, random)) clean.record([row]);
    assert.equal(clean.driftState, 'insufficient_data', `trial ${trial}`);
  }
});

test('a move of the state is stamped with the time of the evaluation that made it, never later (a clock that ticks on every reading)', () => {
  let ticks = 0;
  const seen: { transition: DriftTransition; evaluatedAt: number }[] = [];
  const monitor = new VersionMonitor(
    profile(),
    { window: { capacity: 500 }, evaluateEvery: 50 },
    { now: () => ++ticks, onTransition: (transition, evaluation) => seen.push({ transition, evaluatedAt: evaluation.at }) },
  );
  const random = uniform(31);
  for (let batch = 0; batch < 10; batch++) monitor.record(rows(50, random));
  while (monitor.driftState !== 'drift' && seen.length < 10) monitor.record(rows(50, random, 0.5));
  const toDrift = seen.at(-1)!;
  assert.equal(toDrift.transition.to, 'drift');
  assert.equal(monitor.latest!.at, toDrift.transition.at, 'the scores a scrape reads are those of the move to drift');
  // And the small-sample alarm's move, between evaluations.
  const alarmed = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 100 }, { now: () => ++ticks, onTransition: (transition, evaluation) => seen.push({ transition, evaluatedAt: evaluation.at }) });
  for (const row of rows(30, random)) alarmed.record([{ ...row, oodScore: 20 }]);
  assert.equal(seen.at(-1)!.transition.to, 'drift', 'the alarm moved it');
  assert.ok(seen.length >= 3, seen.map(({ transition }) => transition.to).join(', '));
  for (const { transition, evaluatedAt } of seen) assert.equal(transition.at, evaluatedAt, `${transition.from}→${transition.to}`);
});

test('evaluating less often than the window holds rows is refused, naming both sizes', () => {
  assert.throws(
    () => new VersionMonitor(profile(), { window: { capacity: 500 }, evaluateEvery: 600 }),
    /evaluating every 600 rows \(evaluateEvery\) is more than the 500-row drift window \(window\.capacity\) holds: .*give at most 500/,
  );
  assert.equal(new VersionMonitor(profile(), { window: { capacity: 500 }, evaluateEvery: 500 }).driftState, 'insufficient_data');
});

test('reads do not step a state that a small window holds on its flagged share', () => {
  const monitor = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 50 });
  monitor.record(rows(50, uniform(17)).map((row) => ({ ...row, oodScore: 20 })));
  const evaluated = monitor.latest;
  for (let read = 0; read < 10; read++) {
    assert.equal(monitor.driftState, 'drift');
    monitor.snapshot();
  }
  assert.equal(monitor.latest, evaluated, 'no evaluation ran on a read');
});

test('a window smaller than the minimum sample is refused, naming both sizes; one as large is taken', () => {
  assert.throws(
    () => new VersionMonitor(profile(), { window: { capacity: 150 } }),
    /a drift window of 150 rows \(window\.capacity\) is below the 200 rows the drift state needs to judge; give at least 200/,
  );
  assert.throws(() => new VersionMonitor(profile(), { window: { capacity: 50 }, state: { minSamples: 100 } }), /below the 100 rows/);
  assert.equal(new VersionMonitor(profile(), { window: { capacity: 200 } }).driftState, 'insufficient_data');
});

test('a transition taken on a small sample reports the rows the window held, not the minimum sample', () => {
  const monitor = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 50 });
  monitor.record(rows(100, uniform(19)).map((row) => ({ ...row, oodScore: 20 })));
  const [transition] = monitor.snapshot().transitions;
  assert.equal(transition.to, 'drift');
  assert.equal(transition.sampleCount, 100, 'one evaluation, after the 100 rows of one record, moved it (it said 200: the minimum)');
});

test('once the rows age out, the scores a scrape reads first are gone in the same read that reports insufficient_data', () => {
  let now = 0;
  const monitor = new VersionMonitor(profile(), { window: { capacity: 1000, maxAgeMs: 6000 }, evaluateEvery: 50 }, { now: () => now });
  monitor.record(rows(300, uniform(23), 0.5));
  assert.equal(monitor.driftState, 'drift');
  assert.ok((monitor.latest?.features.length ?? 0) > 0);
  now += 8000;
  // In the order the Prometheus gauges read them: nereid_drift_score, then nereid_drift_state.
  assert.deepEqual(monitor.latest?.features, [], 'no score over an empty window');
  assert.equal(monitor.driftState, 'insufficient_data');
});

test('the small-sample alarm keeps the regular cadence: 16 foreign rows then in-distribution ones hold drift at 216 rows, and it falls only after three regular evaluations below its exit level', () => {
  const random = uniform(29);
  const transitions: DriftTransition[] = [];
  const monitor = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 100 }, { onTransition: (transition) => transitions.push(transition) });
  const evaluatedAt: number[] = [];
  let evaluated = monitor.latest;
  const states: string[] = [];
  const foreign = rows(16, random).map((row) => ({ ...row, oodScore: 20 }));
  for (const [index, row] of [...foreign, ...rows(600 - 16, random)].entries()) {
    monitor.record([row]);
    states.push(monitor.driftState);
    if (monitor.latest !== evaluated) {
      evaluated = monitor.latest;
      evaluatedAt.push(index + 1);
    }
  }
  assert.deepEqual(evaluatedAt, [30, 100, 200, 300, 400, 500, 600], 'the alarm at row 30 raised the state; the regular evaluations stayed every 100 rows (they came at 177 and 277)');
  assert.equal(states[215], 'drift', 'at 216 rows, with the 16 flagged rows in the window (it read insufficient_data)');
  assert.ok(!states.slice(29).includes('insufficient_data'), 'never insufficient_data once judged: the window never held fewer than 30 rows');
  assert.deepEqual(
    transitions.map(({ from, to, sampleCount }) => `${from}→${to}@${sampleCount}`),
    ['insufficient_data→drift@30', 'drift→ok@400'],
    'scored 0.21 on the flagged share at 100 rows, then below 0.08 at 200, 300 and 400: down only after those three regular evaluations',
  );
});

test('a level the alarm raised is judged on the flagged share by the evaluations below minSamples, with the usual hysteresis', () => {
  const random = uniform(31);
  const transitions: string[] = [];
  const monitor = new VersionMonitor(profile(), { window: { capacity: 1000 }, evaluateEvery: 25 }, { onTransition: ({ from, to, sampleCount }) => transitions.push(`${from}→${to}@${sampleCount}`) });
  for (const row of rows(16, random)) monitor.record([{ ...row, oodScore: 20 }]);
  const states: string[] = [];
  for (const row of rows(159, random)) {
    monitor.record([row]);
    states.push(monitor.driftState);
  }
  assert.ok(!states.slice(30 - 16 - 1).includes('insufficient_data'), states.join(' '));
  assert.equal(monitor.latest?.smallSample, true, 'the evaluation at 175 rows judged the flagged share alone');
  assert.deepEqual(monitor.latest?.features.map((feature) => feature.feature), ['ood.flagged']);
  assert.deepEqual(transitions, ['insufficient_data→drift@30', 'drift→warning@175'], 'down a level after three evaluations (125, 150, 175) below 0.2, not to insufficient_data');
  for (const row of rows(25, random)) monitor.record([row]);
  assert.equal(monitor.latest?.smallSample, undefined, 'the evaluation at 200 rows is a full one');
});

test("a model's own drift settings: its thresholds judge the features and move the state, an ignored feature is reported but not counted, and its OOD threshold flags with the rate the profile's held-out scores give it", () => {
  const random = uniform(17);
  // Brightness shifted by 0.15 (clipped at 1): PSI 0.88, drift at the default levels.
  const shifted = () => rows(50, random).map((row) => ({ ...row, inputs: { 'input.brightness': Math.min(1, row.inputs!['input.brightness'] + 0.15) } }));
  const feed = (monitor: VersionMonitor) => {
    for (let batch = 0; batch < 10; batch++) monitor.record(shifted());
    return monitor.latest!.features.find((feature) => feature.feature === 'input.brightness')!;
  };
  const byDefault = new VersionMonitor(profile(), { window: { capacity: 500 }, evaluateEvery: 50 });
  assert.equal(feed(byDefault).level, 'drift');
  assert.equal(byDefault.driftState, 'drift');
  const lenient = { psi: { warning: 1, drift: 2 }, ks: { warning: 0.5, drift: 0.9 }, jensenShannon: { warning: 0.02, drift: 0.05 } };
  const relaxed = new VersionMonitor(profile(), { window: { capacity: 500 }, evaluateEvery: 50, state: { warningAt: 1, driftAt: 2 }, drift: { thresholds: lenient } });
  assert.equal(feed(relaxed).level, 'ok', 'PSI 0.88 is below a warning level of 1');
  assert.equal(relaxed.driftState, 'ok');
  const ignoring = new VersionMonitor(profile(), { window: { capacity: 500 }, evaluateEvery: 50, drift: { ignoreFeatures: ['input.brightness'] } });
  const ignored = feed(ignoring);
  assert.equal(ignored.level, 'drift', 'still reported with its level');
  assert.equal(ignored.informational, true);
  assert.equal(ignoring.driftState, 'ok');

  // Held-out scores 1…100: a threshold of 90 flags 10 % of in-distribution rows; the profile's own (10) keeps its measured rate.
  const reference = profile();
  reference.ood = { ...reference.ood!, heldOutScores: Array.from({ length: 100 }, (_, index) => index + 1) };
  assert.equal(expectedOodShareAt(reference, 90), 0.1);
  assert.equal(expectedOodShareAt(reference, 10), 0.05, "the profile's threshold: its measured held-out rate");
  assert.equal(expectedOodShareAt(profile(), 90), undefined, 'no held-out scores: no rate to give');
  const judging = modelJudging(reference, modelMonitoringSchema.parse({ ood: { threshold: 90 } }), '1');
  assert.deepEqual(judging.monitor.ood, { threshold: 90, expectedShare: 0.1 });
  const overridden = new VersionMonitor(reference, { window: { capacity: 500 }, evaluateEvery: 50, ...judging.monitor });
  overridden.record([{ probabilities: [0.9, 0.1], oodScore: 50 }]);
  const snapshot = overridden.snapshot();
  assert.deepEqual({ threshold: snapshot.ood!.threshold, flagged: snapshot.ood!.flagged, expected: snapshot.ood!.expectedShare }, { threshold: 90, flagged: 0, expected: 0.1 }, 'a score of 50 is above the profile threshold, below the override');
});

test("a model's monitoring settings the profile cannot honour are refused, naming the setting, what it expects and what came", () => {
  const settings = (monitoring: unknown) => modelMonitoringSchema.parse(monitoring);
  assert.throws(
    () => modelJudging(profile(), settings({ drift: { ignore_features: ['input.aspect_ratio'] } }), '1'),
    { message: "monitoring.drift.ignore_features: expected features version 1's reference profile monitors (output.confidence, input.brightness, output.class, ood.flagged), got 'input.aspect_ratio'" },
  );
  assert.throws(() => modelJudging(profile(), settings({ ood: { threshold: 90 } }), '1'), /^Error: monitoring\.ood\.threshold: expected a reference profile that records its held-out scores .* to say what share of in-distribution rows 90 flags; got version 1's profile built 2026-12-02T00:00:00.000Z without them \(its own threshold is 10\)/);
  assert.deepEqual(modelJudging(profile(), settings({ ood: { threshold: 10 } }), '1').monitor.ood, { threshold: 10, expectedShare: 0.05 }, "the profile's own threshold needs no held-out scores");
});
