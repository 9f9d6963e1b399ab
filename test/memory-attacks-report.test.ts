/**
 * The memory-attack benchmark's tally and options (bench/memory-attacks.ts): a misfiled answer
 * would misstate what a server did under attack in docs/performance.md, and the benchmark itself
 * is too long and too heavy for `npm test`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Answers, parseMemoryAttackOptions, resultsTable, splitTable, type AttackResult } from '../bench/memory-attacks.js';

test('answers fall into 200/413/503/other/reset, with what other and reset were', () => {
  const answers = new Answers();
  for (const outcome of [200, 413, 413, 503, 408, 400, 'timeout', 'reset'] as const) answers.add(outcome, outcome === 'reset' ? 'UND_ERR_SOCKET' : undefined);
  answers.add('reset');
  assert.deepEqual(answers.counts, { 200: 1, 413: 2, 503: 1, other: 3, reset: 2 });
  assert.deepEqual(answers.details, { 408: 1, 400: 1, timeout: 1, 'reset (UND_ERR_SOCKET)': 1, 'reset (connection ended)': 1 });
});

test('the tables show each attack of each target, a server gone instead of its after-RSS, the round from the second on, the open connections at each check, and RSS split into heap, external and the rest', () => {
  const answers = new Answers();
  answers.add(503);
  const results: AttackResult[] = [
    { attack: 'slow-bodies', round: 1, target: 'nereid', baselineMb: 190.4, peakMb: 201.6, afterMb: 195, attackSeconds: 65, answers, openAt: [{ seconds: 15, open: 29 }, { seconds: 65, open: 0 }], split: { baseline: { rssMb: 190, heapMb: 20, externalMb: 5 } }, serverGone: false },
    { attack: 'queue-flood', round: 2, target: 'before', baselineMb: 3378, peakMb: 9000, attackSeconds: 12, answers: new Answers(), split: {}, serverGone: true },
  ];
  const lines = resultsTable(results, new Map([['nereid', 'nereid (abc123)']])).split('\n');
  assert.equal(lines.length, 4);
  assert.deepEqual(lines[2].split('|').map((cell) => cell.trim()).slice(1, -1), ['slow-bodies', 'nereid (abc123)', '190', '202', '195', '0', '0', '1', '0', '0', '29 at 15 s, 0 at 65 s']);
  assert.deepEqual(lines[3].split('|').map((cell) => cell.trim()).slice(1, -1), ['queue-flood #2', 'before', '3378', '9000', 'gone', '0', '0', '0', '0', '0', '']);
  const splitLines = splitTable(results, new Map()).split('\n');
  assert.deepEqual(splitLines[2].split('|').map((cell) => cell.trim()).slice(1, -1), ['slow-bodies', 'nereid', '190 = 20 + 5 + 165', '—', '—']);
});

test('options: attacks run in their fixed order, unknown ones and bad seconds are refused, and --nereid-before must be a checkout', () => {
  const options = parseMemoryAttackOptions(['--attacks', 'slow-bodies,gzip-bombs', '--slow-body-checks', '65,15,15']);
  assert.notEqual(options, 'help');
  if (options === 'help') return;
  assert.deepEqual(options.attacks, ['gzip-bombs', 'slow-bodies']);
  assert.deepEqual(options.slowBodyChecksS, [15, 65]);
  assert.equal(options.settleS, 3);
  assert.equal(options.rounds, 1);
  assert.throws(() => parseMemoryAttackOptions(['--rounds', '0']), /--rounds expects a positive integer, got '0'/);
  assert.throws(() => parseMemoryAttackOptions(['--attacks', 'gzip-bombs,fork-bomb']), /'fork-bomb' is not one of gzip-bombs, queue-flood, slow-bodies/);
  assert.throws(() => parseMemoryAttackOptions(['--settle-s=-1']), /--settle-s expects seconds >= 0, got '-1'/);
  assert.throws(() => parseMemoryAttackOptions(['--nereid-before', '/nonexistent-checkout']), /no src\/cli.ts there/);
  assert.equal(parseMemoryAttackOptions(['-h']), 'help');
});
