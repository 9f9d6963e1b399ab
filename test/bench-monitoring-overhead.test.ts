/**
 * bench's --monitoring-overhead in-process parts, run small: the server rounds take minutes, but the parts are where the
 * bench meets the monitor's API (an evaluation interval past the window, refused since the monitor checks it, once
 * killed every documented run after its rounds).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inProcessCosts, parseMonitoringOverheadOptions, testImages } from '../bench/monitoring-overhead.js';

test('the in-process parts of --monitoring-overhead run on the bundled Fashion-MNIST profile and give a cost per row for each', { timeout: 120_000 }, async () => {
  const options = parseMonitoringOverheadOptions(['--in-process-rows', '2000']);
  assert.notEqual(options, 'help');
  const costs = await inProcessCosts(options as Exclude<typeof options, 'help'>, await testImages(20), 2);
  assert.ok(costs.some((cost) => /record alone/.test(cost.part)));
  for (const cost of costs) assert.ok(Number.isFinite(cost.nsPerRow), `${cost.part}: ${cost.nsPerRow}`);
});
