import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatTuneReport, tuneChartSvg } from './tune-report.js';
import { batchSizeCandidates, budgetTooShort, candidateConfig, candidateSeconds, confirmationOrder, chooseWinner, describeCandidate, confirmedGain, instanceSplits, judgedLevel, latencyTargetUs, paretoFront, paretoLevels, type Candidate, type LevelResult, type Measured, type Objective } from './tune-search.js';
import type { TuneReport } from './tune.js';

const candidate: Candidate = { version: '1', maxBatchSize: 8, maxQueueDelayUs: 0, targetLatencyUs: 0, instances: 1, threadsPerInstance: 2, executionThread: 'main', graphLevel: 'all' };
const level = (concurrency: number, throughput: number, p99Ms: number, cpuSecondsPerInference = 0.001): LevelResult => ({
  concurrency,
  throughput,
  p50Ms: p99Ms / 2,
  p95Ms: p99Ms * 0.9,
  p99Ms,
  cpuSecondsPerInference,
  meanBatchRows: 1,
  errors: 0,
});
const measured = (...levels: LevelResult[]): Measured => ({ candidate, step: 'test', levels });
/** The config the confirmation tries first: 0 when none gains, undefined when none meets the objective. */
const firstToConfirm = (results: readonly Measured[], objective: Objective, minGain: number) => {
  const order = confirmationOrder(results, objective, minGain);
  return order === undefined ? undefined : (order[0]?.index ?? 0);
};

test('the batch curve keeps the cheapest batch size and the smallest within 10 % of it; larger ones only add latency', () => {
  const curve = new Map([
    [1, 1000],
    [2, 600],
    [4, 420],
    [8, 400],
    [16, 410],
    [32, 450],
  ]);
  assert.deepEqual(batchSizeCandidates(curve), [4, 8]);
  assert.deepEqual(batchSizeCandidates(new Map([[1, 5], [2, 9]])), [1], 'the cheapest is also the smallest');
});

test('instance splits cover one instance with every core, one per core and the halvings between', () => {
  assert.deepEqual(instanceSplits(2), [
    { instances: 1, threadsPerInstance: 2 },
    { instances: 2, threadsPerInstance: 1 },
  ]);
  assert.deepEqual(
    instanceSplits(12).map((split) => `${split.instances}x${split.threadsPerInstance}`),
    ['1x12', '2x6', '4x3', '8x1', '12x1'],
  );
});

test('objectives: throughput takes the fastest level; a p99 bound or a cost bound leaves out the levels over it; errors disqualify', () => {
  const results = [measured(level(1, 100, 2), level(16, 300, 40)), measured(level(1, 120, 3), level(16, 250, 20))];
  assert.equal(chooseWinner(results, { kind: 'throughput' }), 0);
  assert.equal(chooseWinner(results, { kind: 'p99', maxMs: 30 }), 1, '300/s comes at p99 40 ms; 250/s within 30 ms');
  assert.equal(chooseWinner(results, { kind: 'p99', maxMs: 1 }), undefined);
  const cheap = measured(level(16, 200, 10, 0.0001));
  const dear = measured(level(16, 400, 10, 0.01));
  // 0.01 core-seconds at $0.36 per core-hour: $0.001 per 1,000 inferences.
  assert.equal(chooseWinner([dear, cheap], { kind: 'cost', maxUsdPer1000: 0.0005, usdPerCoreHour: 0.36 }), 1);
  assert.equal(judgedLevel(measured({ ...level(16, 900, 1), errors: 3 }), { kind: 'throughput' }), undefined);
  assert.equal(chooseWinner([measured(level(16, 100, 5)), measured(level(16, 100, 5))], { kind: 'throughput' }), 0, 'a tie goes to the earlier (the current config)');
});

test('the Pareto front keeps the points no other beats on both throughput and p99', () => {
  assert.deepEqual(
    paretoFront([
      { throughput: 100, p99Ms: 10 },
      { throughput: 200, p99Ms: 20 },
      { throughput: 150, p99Ms: 25 },
      { throughput: 200, p99Ms: 20 },
    ]),
    [true, true, false, true],
  );
});

test('the front is taken over every operating point, so a config shown at c=1 is not set against others shown at c=16', () => {
  // Shown at its best level, the last config (154 inf/s, p99 42 ms at c=1) would look on the front beside the first's
  // c=16 point (400 inf/s, p99 60 ms); at c=1 the first does better on both, so it is not.
  const fast = measured(level(1, 200, 3), level(16, 400, 60));
  const steady = measured(level(1, 180, 2), level(16, 350, 70));
  const stalled = measured(level(1, 154, 42), level(16, 150, 300));
  const failing = measured({ ...level(1, 900, 1), errors: 2 }, level(16, 100, 500));
  assert.deepEqual(paretoLevels([fast, steady, stalled, failing]), [[1, 16], [1], [], []]);
});

test("the chart draws each config through its levels and names a front point at a level its row does not show", () => {
  const results = [measured(level(1, 188, 6), level(8, 491, 29.7)), measured(level(1, 369, 5.3), level(8, 469, 28.2)), measured(level(1, 170, 11), level(8, 440, 32))];
  const front = paretoLevels(results);
  assert.deepEqual(front, [[8], [1, 8], []]);
  const svg = tuneChartSvg({ model: 'm', objective: { kind: 'throughput' }, cores: 2, batchCurve: [], results: results.map((row, index) => ({ ...row, paretoLevels: front[index] })), winner: 0, best: 0, minGain: 0.05, skipped: [], seconds: 1, date: '2026-12-05' });
  assert.equal(svg.match(/<polyline[^>]*stroke-opacity/g)?.length, 3, 'one thin line per config');
  assert.match(svg, />1 \(c=1\)</, "row 1's c=1 point is on the front and named with its level");
  assert.doesNotMatch(svg, />2 \(c=/, 'a point off the front is not named beyond its row');
  assert.match(svg, />0 current</);
});

test('a chart of runs that all failed (no finite p99) draws no NaN coordinate', () => {
  const failed = measured({ ...level(1, 0, Infinity), errors: 5 });
  const svg = tuneChartSvg({ model: 'm', objective: { kind: 'throughput' }, cores: 2, batchCurve: [], results: [{ ...failed, paretoLevels: [] }], winner: 0, best: 0, minGain: 0.05, skipped: [], seconds: 1, date: '2026-12-05' });
  assert.doesNotMatch(svg, /NaN|Infinity/);
});

test("a candidate's config changes only the tuned fields, keeping the others and other parameters", () => {
  const config = {
    max_batch_size: 4,
    input: [{ name: 'x' }],
    dynamic_batching: { preferred_batch_size: [4], max_queue_delay_microseconds: 100 },
    parameters: { enable_mem_pattern: { string_value: 'false' } },
  };
  const tuned = candidateConfig(config, { ...candidate, maxBatchSize: 16, maxQueueDelayUs: 500, instances: 2, threadsPerInstance: 1, executionThread: 'worker', graphLevel: 'basic' });
  assert.deepEqual(tuned, {
    max_batch_size: 16,
    input: [{ name: 'x' }],
    dynamic_batching: { preferred_batch_size: [4], max_queue_delay_microseconds: 500, target_latency_us: 0 },
    instance_group: [{ count: 2, kind: 'KIND_CPU' }],
    parameters: { enable_mem_pattern: 'false', intra_op_thread_count: '1', execution_thread: 'worker', graph_optimization_level: 'basic' },
  });
  assert.equal(candidateConfig(config, { ...candidate, maxBatchSize: 0 }).dynamic_batching, undefined, 'no batching, no dynamic_batching block');
  const latencyAware = { ...candidate, maxQueueDelayUs: 2000, targetLatencyUs: 20_000 };
  assert.deepEqual(candidateConfig(config, latencyAware).dynamic_batching, { preferred_batch_size: [4], max_queue_delay_microseconds: 2000, target_latency_us: 20_000 });
  assert.equal(describeCandidate(latencyAware), 'v1 batch 8 latency-aware 20000 µs (hold ≤ 2000 µs), 1×2 threads (main), graph all');
  assert.equal(describeCandidate({ ...latencyAware, maxQueueDelayUs: 0 }), 'v1 batch 8 latency-aware 20000 µs (hold ≤ ∞ µs), 1×2 threads (main), graph all');
  // A fixed delay clears a target the config had: the candidate is what it says.
  assert.equal((candidateConfig({ ...config, dynamic_batching: { target_latency_us: 5000 } }, candidate).dynamic_batching as { target_latency_us: number }).target_latency_us, 0);
});

test('under a p99 bound the current config misses at every level, the report says so instead of a throughput ratio against a level it may not use', () => {
  const current = { ...measured(level(1, 372, 30), level(8, 380, 46)), paretoLevels: [] };
  const found = { ...measured(level(1, 356, 12), level(8, 500, 40)), candidate: { ...candidate, maxBatchSize: 4 }, paretoLevels: [1, 8] };
  const report: TuneReport = { model: 'm', objective: { kind: 'p99', maxMs: 15 }, cores: 2, batchCurve: [], results: [current, found], winner: 1, best: 1, minGain: 0.05, skipped: [], seconds: 1, date: '2026-12-05' };
  const text = formatTuneReport(report, 0.05);
  assert.match(text, /Best: .* — meets the bound, which \(the current config meets at no level measured \(p99 46\.00 ms at c=8\); this one gives 356\.0 inf\/s at c=1\)\./);
  assert.doesNotMatch(text, /0\.9\d× the current config/);
  // Where the current config meets the bound too, the ratio is at the levels each meets it at.
  const within = { ...report, objective: { kind: 'p99' as const, maxMs: 35 } };
  assert.match(formatTuneReport(within, 0.05), /Best: .* — 0\.96× the current config's throughput \(356\.0 inf\/s at c=1 against 372\.0 at c=1\)|— 0\.96× the current config's throughput \(both at c=1\)/);
});

test("a chosen config's gain is confirmed on the median of the rounds measured again, and the report says when it did not hold", () => {
  const round = (current: number, chosen: number) => ({ current: measured(level(8, current, 10)), chosen: measured(level(8, chosen, 10)) });
  // 1.2×, 0.9×, 1.1×: the median is 1.1, which a 5 % least gain accepts and a 15 % one does not.
  const rounds = [round(100, 120), round(100, 90), round(100, 110)];
  assert.deepEqual(confirmedGain(rounds, { kind: 'throughput' }, 0.05), { ratios: [1.2, 0.9, 1.1], ratio: 1.1, held: true, lost: [] });
  assert.equal(confirmedGain(rounds, { kind: 'throughput' }, 0.15).held, false);
  // An even count is judged on the lower middle round: two rounds must both show the gain.
  assert.deepEqual(confirmedGain([round(100, 130), round(100, 101)], { kind: 'throughput' }, 0.05), { ratios: [1.3, 1.01], ratio: 1.01, held: false, lost: [] });
  // Under a p99 bound: a chosen config that misses it in a round gains nothing there; one the current config misses, all.
  const bound = { kind: 'p99' as const, maxMs: 15 };
  const slow = (throughput: number) => measured(level(8, throughput, 20));
  assert.deepEqual(confirmedGain([{ current: measured(level(8, 100, 10)), chosen: slow(200) }], bound, 0.05), { ratios: [0], ratio: 0, held: false, lost: [{ concurrency: 8, ratio: 0, reason: 'bound' }] });
  assert.equal(confirmedGain([{ current: slow(100), chosen: measured(level(8, 90, 10)) }], bound, 0.05).held, true);

  const current = { ...measured(level(8, 100, 10)), paretoLevels: [] };
  const found = { ...measured(level(8, 130, 10)), candidate: { ...candidate, maxBatchSize: 4 }, paretoLevels: [8] };
  const report: TuneReport = {
    model: 'm', objective: { kind: 'throughput' }, cores: 2, batchCurve: [], results: [current, found], winner: 1, best: 0, minGain: 0.05, skipped: [], seconds: 1, date: '2026-12-05',
    confirmation: { candidate: 1, rounds: [{ current: 100, chosen: 130 }, { current: 100, chosen: 101 }], ratios: [1.3, 1.01], ratio: 1.01, needed: 1.05, held: false, lost: [] },
  };
  const text = formatTuneReport(report, 0.05);
  assert.match(text, /\nNot confirmed: v1 batch 4 .* and the current config measured again in turn, 2 round\(s\): 1\.30×, 1\.01× \(median 1\.01×; --min-gain asks 1\.05×\)\. The search's gain did not hold, so it is taken for noise on this machine; --write leaves the config as it is\./);
  assert.doesNotMatch(text, /For the version served now/);
  assert.match(formatTuneReport({ ...report, best: 1, confirmation: { ...report.confirmation!, ratios: [1.3, 1.2], ratio: 1.2, held: true } }, 0.05), /\nConfirmed: .* 1\.30×, 1\.20× \(median 1\.20×; --min-gain asks 1\.05×\); no other level measured fell below 1\/1\.05 of the current config's throughput\./);
  const lostAt16 = { ...report.confirmation!, ratios: [2.1, 1.9], ratio: 1.9, held: false, lost: [{ concurrency: 16, ratio: 0.72, reason: 'throughput' as const }] };
  // A candidate that did not hold, then the next in the search's order that did.
  const tried = formatTuneReport({ ...report, best: 1, notConfirmed: [{ ...lostAt16, candidate: 1 }], confirmation: { ...report.confirmation!, ratios: [1.3, 1.2], ratio: 1.2, held: true } }, 0.05);
  assert.match(tried, /\nNot confirmed: .*0\.72× at c=16 \(the rounds' median\)\. A gain at one level does not pay for a loss at another; the next in the search's order was tried\.\nConfirmed: /);
  assert.match(formatTuneReport({ ...report, confirmation: lostAt16 }, 0.05), /\nNot confirmed: .* \(median 1\.90×; --min-gain asks 1\.05×\), but it gave up another level measured: 0\.72× at c=16 \(the rounds' median\)\. A gain at one level does not pay for a loss at another; --write leaves the config as it is\./);
});

test('a gain at the judged level is not confirmed when another level measured loses more than --min-gain in the rounds', () => {
  const round = (c1: [number, number], c16: [number, number]) => ({ current: measured(level(1, c1[0], 5), level(16, c16[0], 40)), chosen: measured(level(1, c1[1], 5), level(16, c16[1], 40)) });
  const bound = { kind: 'p99' as const, maxMs: 20 };
  // Judged at c=1 (the only level under 20 ms): 2× there, and c=16 0.7× in both rounds.
  assert.deepEqual(confirmedGain([round([200, 400], [500, 350]), round([200, 400], [500, 360])], bound, 0.05), { ratios: [2, 2], ratio: 2, held: false, lost: [{ concurrency: 16, ratio: 0.7, reason: 'throughput' }] });
  // c=16 within the noise the least gain allows (0.96×, 0.97×): held.
  assert.equal(confirmedGain([round([200, 400], [500, 480]), round([200, 400], [500, 485])], bound, 0.05).held, true);
  // At c=16 only the chosen config meets a 45 ms bound: that level is its gain, whatever the throughputs.
  assert.equal(confirmedGain([{ current: measured(level(1, 200, 5), level(16, 500, 50)), chosen: measured(level(1, 400, 5), level(16, 300, 40)) }], { kind: 'p99', maxMs: 45 }, 0.05).held, true);
  // A level the chosen config answered with errors counts as lost.
  const failing = { current: measured(level(1, 200, 5), level(16, 500, 40)), chosen: measured(level(1, 400, 5), { ...level(16, 500, 40), errors: 3 }) };
  assert.deepEqual(confirmedGain([failing], bound, 0.05).lost, [{ concurrency: 16, ratio: 0, reason: 'errors' }]);
});

test('within --min-gain of the best, a latency-aware config is the one written; never one that does not beat the current config', () => {
  const at = (throughput: number, targetLatencyUs = 0, version = '1'): Measured => ({ ...measured(level(1, throughput, 5)), candidate: { ...candidate, targetLatencyUs, version, maxQueueDelayUs: targetLatencyUs ? 2000 : 0 } });
  const current = at(200);
  assert.equal(firstToConfirm([current, at(410), at(395, 10_000)], { kind: 'throughput' }, 0.05), 2, '395 is within 5 % of 410');
  assert.equal(firstToConfirm([current, at(410), at(380, 10_000)], { kind: 'throughput' }, 0.05), 1, '380 is not');
  assert.equal(firstToConfirm([current, at(410), at(395, 10_000), at(400, 20_000)], { kind: 'throughput' }, 0.05), 3, 'the faster of two');
  assert.equal(firstToConfirm([current, at(208), at(205, 10_000)], { kind: 'throughput' }, 0.05), 0, 'no gain worth a change');
  assert.equal(firstToConfirm([current, at(212), at(205, 10_000)], { kind: 'throughput' }, 0.05), 1, 'the best gains; the latency-aware one would not');
  assert.equal(firstToConfirm([current, at(410), at(400, 10_000, '2')], { kind: 'throughput' }, 0.05), 1, 'another version is never the served version\'s best');
  assert.equal(firstToConfirm([current], { kind: 'p99', maxMs: 1 }, 0.05), undefined);
  const results = [current, at(410), at(395, 10_000)].map((result) => ({ ...result, paretoLevels: [] }));
  const text = formatTuneReport({ model: 'm', objective: { kind: 'throughput' }, cores: 2, batchCurve: [], results, winner: 1, best: 2, minGain: 0.05, skipped: [], seconds: 1, date: '2026-12-05' }, 0.05);
  assert.match(text, /\nPreferred, as latency-aware batching measured within --min-gain of the fastest that kept the same levels, and follows the traffic where a fixed delay suits one load: v1 batch 8 latency-aware 10000 µs \(hold ≤ 2000 µs\), .* — 1\.98× the current config's throughput \(both at c=1\); that is what --write writes\./);
});

test('the config written is one that lost no other level measured, when the search found one; else the fastest, for the confirmation to judge', () => {
  const at = (c1: number, c16: number, targetLatencyUs = 0): Measured => ({ ...measured(level(1, c1, 5), level(16, c16, 40)), candidate: { ...candidate, targetLatencyUs } });
  const bound = { kind: 'p99' as const, maxMs: 20 };
  // Judged at c=1 (c=16 is over 20 ms for all): 450 gives up c=16, 330 keeps it.
  assert.equal(firstToConfirm([at(200, 500), at(450, 400), at(330, 520)], bound, 0.05), 2);
  assert.equal(firstToConfirm([at(200, 500), at(450, 400), at(330, 420)], bound, 0.05), 1, 'none keeps c=16: the fastest');
  assert.equal(firstToConfirm([at(200, 500), at(450, 400), at(330, 520), at(320, 500, 20_000)], bound, 0.05), 3, 'latency-aware within 5 % of the best that keeps its levels');
  const results = [at(200, 500), at(450, 400), at(330, 520)].map((result) => ({ ...result, paretoLevels: [] }));
  const text = formatTuneReport({ model: 'm', objective: bound, cores: 2, batchCurve: [], results, winner: 1, best: 2, minGain: 0.05, skipped: [], seconds: 1, date: '2026-12-05' }, 0.05);
  assert.match(text, /\nPreferred, as it kept every level measured where the fastest gave up 0\.80× at c=16: v1 batch 8 delay 0 µs, .* — 1\.65× the current config's throughput \(both at c=1\); that is what --write writes\./);
});

test("the search's order: gains that kept every level first, a latency-aware one within --min-gain of its group's fastest ahead of it, the rest after", () => {
  const at = (c1: number, c16: number, targetLatencyUs = 0, version = '1'): Measured => ({ ...measured(level(1, c1, 5), level(16, c16, 40)), candidate: { ...candidate, targetLatencyUs, version } });
  const bound = { kind: 'p99' as const, maxMs: 20 };
  const results = [at(200, 500), at(450, 400), at(330, 520), at(320, 500, 20_000), at(205, 600), at(420, 410, 20_000), at(500, 600, 0, '2')];
  // 4 gains too little at c=1; 6 is another version; 1 and 5 gave up c=16.
  assert.deepEqual(confirmationOrder(results, bound, 0.05), [
    { index: 3, keptLevels: true, latencyAwareNearFastest: true },
    { index: 2, keptLevels: true, latencyAwareNearFastest: false },
    { index: 1, keptLevels: false, latencyAwareNearFastest: false },
    { index: 5, keptLevels: false, latencyAwareNearFastest: false },
  ]);
  assert.deepEqual(confirmationOrder([at(200, 500), at(205, 600)], bound, 0.05), []);
  assert.equal(firstToConfirm([at(200, 500), at(205, 600)], bound, 0.05), 0);
});

test("the latency-aware candidate's goal: the p99 bound, never rounded past it, or the written config's target_latency_us, or its p99; none when there is no p99 to aim at", () => {
  assert.equal(latencyTargetUs({ kind: 'p99', maxMs: 20.6 }, measured(level(1, 100, 5))), 20_600);
  assert.equal(latencyTargetUs({ kind: 'throughput' }, measured(level(1, 100, 5), level(16, 400, 37.2))), 37_200);
  assert.equal(latencyTargetUs({ kind: 'throughput' }, measured(level(16, 400, Number.NaN))), undefined);
  // A written goal is kept: a busy machine's p99 of 241 ms must not replace a team's 20 ms; --p99-ms still overrides it.
  const withGoal = { ...measured(level(16, 400, 241.2)), candidate: { ...candidate, targetLatencyUs: 20_000 } };
  assert.equal(latencyTargetUs({ kind: 'throughput' }, withGoal), 20_000);
  assert.equal(latencyTargetUs({ kind: 'cost', maxUsdPer1000: 1, usdPerCoreHour: 0.05 }, withGoal), 20_000);
  assert.equal(latencyTargetUs({ kind: 'p99', maxMs: 50 }, withGoal), 50_000);
});

test('a confirmation line reads an unbounded ratio (null in --json) as ∞ once, and names a level lost to the bound', () => {
  const current = { ...measured(level(1, 100, 30), level(16, 400, 60)), paretoLevels: [] };
  const found = { ...measured(level(1, 300, 10), level(16, 300, 25)), candidate: { ...candidate, maxBatchSize: 4 }, paretoLevels: [1] };
  const base: TuneReport = { model: 'm', objective: { kind: 'p99', maxMs: 20 }, cores: 2, batchCurve: [], results: [current, found], winner: 1, best: 1, minGain: 0.05, skipped: [], seconds: 1, date: '2026-12-05' };
  const fromJson = JSON.parse(JSON.stringify({ candidate: 1, rounds: [], ratios: [Infinity, 2], ratio: Infinity, needed: 1.05, held: true, lost: [] }));
  const text = formatTuneReport({ ...base, confirmation: fromJson }, 0.05);
  assert.match(text, /round\(s\): ∞, 2\.00× \(∞: the current config met the bound at no level that round\) \(median ∞; --min-gain asks 1\.05×\); no other level/);
  const bound = { candidate: 1, rounds: [], ratios: [1.5], ratio: 1.5, needed: 1.05, held: false, lost: [{ concurrency: 16, ratio: 0, reason: 'bound' as const }] };
  assert.match(formatTuneReport({ ...base, best: 0, confirmation: bound }, 0.05), /but it gave up another level measured: missed the bound at c=16 \(the rounds' median\)\./);
  const noise = { ...bound, ratios: [1.01], ratio: 1.01, lost: [{ concurrency: 16, ratio: 0.5, reason: 'throughput' as const }] };
  assert.match(formatTuneReport({ ...base, best: 0, confirmation: noise }, 0.05), /\(median 1\.01×; --min-gain asks 1\.05×\), and it gave up 0\.50× at c=16 \(the rounds' median\)\. The search's gain did not hold/);
});

test('a --budget-s that leaves no time to compare anything is named with its arithmetic and the budget that would; the report lists what was not measured one a line', () => {
  const defaults = { concurrency: [1, 16], repeats: 1, warmupSeconds: 1, durationSeconds: 3, confirmRounds: 2 };
  assert.equal(candidateSeconds({ ...defaults, budgetSeconds: 60 }), 10);
  // The config as written and one candidate (10 s each), the batch curve of 7 sizes (2.8 s), two rounds of two configs (40 s).
  const tooShort = budgetTooShort({ ...defaults, budgetSeconds: 60 }, 7);
  assert.match(
    tooShort ?? '',
    /^--budget-s 60 is too short to compare any config with the one as written: each config takes about 10 s to measure \(2 --concurrency level\(s\) × \(--warmup-s 1 \+ --duration-s 3\) × --repeats 1, and 2 s to load\), the batch curve up to 2\.8 s and confirming a winner 40 s \(--confirm-rounds 2 × 2 configs\), so the config as written and one candidate need 63 s; give --budget-s 63 or more/,
  );
  assert.equal(budgetTooShort({ ...defaults, budgetSeconds: 63 }, 7), undefined);
  assert.equal(budgetTooShort({ ...defaults, budgetSeconds: 60, warmupSeconds: 0.5, durationSeconds: 1 }, 7), undefined, 'shorter measurements fit');
  assert.doesNotMatch(budgetTooShort({ ...defaults, budgetSeconds: 10, confirmRounds: 0 }, 7) ?? '', /confirm/);

  const current = { ...measured(level(16, 400, 40)), paretoLevels: [16] };
  const skipped = ['graph: v1 batch 8 delay 0 µs, 1×2 threads (main), graph basic (--budget-s reached)', 'version: v2 batch 8 delay 0 µs, 1×2 threads (main), graph all (--budget-s reached)'];
  const base: TuneReport = { model: 'm', objective: { kind: 'throughput' }, cores: 2, batchCurve: [], results: [current], winner: 0, best: 0, minGain: 0.05, skipped, seconds: 13, date: '2026-12-06' };
  const text = formatTuneReport({ ...base, budgetTooShort: tooShort }, 0.05);
  assert.ok(text.includes(`Only the current config was measured: ${tooShort}.`), text);
  assert.ok(text.includes(`Not measured:\n- ${skipped[0]}\n- ${skipped[1]}`), text);
});
