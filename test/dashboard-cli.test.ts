/**
 * The dashboard's flags of `nereid serve`, as a whole process: --dashboard-port moves the dashboard
 * to a port of its own, the latency percentiles stay without the metrics port (--allow-metrics
 * false), --dashboard-interval-ms sets the stream's pace, and a bad --dashboard-port, --dashboard-interval-ms or
 * --jobs-queue is refused before anything starts, naming it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runCli, serveChild, stopChild } from './support/cli-server.js';
import { openDashboardStream } from './support/dashboard-stream.js';
import { writeSimpleModel } from './support/test-server.js';

let repo: string;

before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'nereid-dashboard-cli-'));
  await writeSimpleModel(repo);
});

after(async () => {
  await rm(repo, { recursive: true, force: true });
});

const simpleRequest = JSON.stringify({
  inputs: ['INPUT0', 'INPUT1'].map((name) => ({ name, shape: [1, 16], datatype: 'INT32', data: Array.from({ length: 16 }, (_, i) => i) })),
});

test('--dashboard-port serves the dashboard there and not on the HTTP port; its percentiles need no metrics port; --dashboard-interval-ms sets the pace of its stream', async () => {
  const served = await serveChild(repo, ['--dashboard-port', '0', '--allow-metrics', 'false', '--dashboard-interval-ms', '100']);
  try {
    const dashboard = /Dashboard on (http:\/\/127\.0\.0\.1:\d+)\/dashboard\//.exec(served.output())?.[1];
    assert.ok(dashboard, served.output());
    assert.notEqual(dashboard, served.url);
    assert.equal((await fetch(`${dashboard}/dashboard/`)).status, 200);
    assert.equal((await fetch(`${served.url}/dashboard/`)).status, 404);
    assert.doesNotMatch(served.output(), /Prometheus metrics on/);

    // An interval with the traffic holds its percentiles: the histograms are kept for the dashboard.
    const stream = await openDashboardStream(`${dashboard}/dashboard/api/stream`);
    const events = [await stream.next()];
    const withTraffic = () => events.find((event) => event.interval?.versions['simple/1']?.percentiles.request);
    try {
      const answers = await Promise.all(
        Array.from({ length: 4 }, () => fetch(`${served.url}/v2/models/simple/infer`, { method: 'POST', body: simpleRequest, headers: { 'content-type': 'application/json' } })),
      );
      assert.deepEqual(answers.map((answer) => answer.status), [200, 200, 200, 200]);
      while (!withTraffic()) {
        assert.ok(events.length < 200, 'no interval with percentiles in 200 events (20 s)');
        events.push(await stream.next());
      }
    } finally {
      stream.close();
    }
    const percentiles = withTraffic()!.interval.versions['simple/1'].percentiles;
    assert.ok(percentiles.request.p50 > 0 && percentiles.compute_infer.p99 > 0, JSON.stringify(percentiles));
    // The default's events are a second apart; at 100 ms, a loaded machine may delay some ticks, but not every one by 0.5 s.
    const seconds = events.slice(1).map((event) => event.interval.seconds);
    assert.ok(Math.min(...seconds) < 0.5, `intervals of ${seconds.join(', ')} s`);
  } finally {
    assert.equal(await stopChild(served), 0);
  }
});

test('a bad port (any of them), --jobs-queue, --dashboard-interval-ms, or --dashboard-port or --dashboard-interval-ms with --dashboard false, is refused with what was expected', async () => {
  const serve = ['serve', '--model-repository', repo, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false'];
  const [tooHigh, notAUrl, off, httpTooHigh, metricsNegative, tooOften, pacedOff] = await Promise.all([
    runCli([...serve, '--dashboard-port', '70000'], 60_000),
    runCli([...serve, '--jobs-queue', 'localhost:6379'], 60_000),
    runCli([...serve, '--dashboard', 'false', '--dashboard-port', '8003'], 60_000),
    runCli([...serve, '--http-port', '65536'], 60_000),
    runCli([...serve, '--metrics-port', '-1'], 60_000),
    runCli([...serve, '--dashboard-interval-ms', '50'], 60_000),
    runCli([...serve, '--dashboard', 'false', '--dashboard-interval-ms', '500'], 60_000),
  ]);
  for (const [run, flag, value] of [[httpTooHigh, '--http-port', '65536'], [metricsNegative, '--metrics-port', '-1']] as const) {
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, new RegExp(`${flag} <port>' argument '${value}' is invalid\\. expected a port number from 0 to 65535`), run.stderr);
  }
  assert.notEqual(tooHigh.code, 0);
  assert.match(tooHigh.stderr, /--dashboard-port <port>' argument '70000' is invalid\. expected a port number from 0 to 65535/);
  assert.notEqual(notAUrl.code, 0);
  assert.match(notAUrl.stderr, /--jobs-queue <url>' argument 'localhost:6379' is invalid\. must be a redis:\/\/ or rediss:\/\/ URL/);
  assert.notEqual(tooOften.code, 0);
  assert.match(tooOften.stderr, /--dashboard-interval-ms <ms>' argument '50' is invalid\. expected an integer from 100 to 60000/);
  assert.notEqual(off.code, 0);
  assert.match(off.stderr, /nereid: --dashboard-port serves the dashboard: it cannot go with --dashboard false/);
  assert.notEqual(pacedOff.code, 0);
  assert.match(pacedOff.stderr, /nereid: --dashboard-interval-ms paces the dashboard: it cannot go with --dashboard false/);
});
