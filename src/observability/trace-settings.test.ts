import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NereidError } from '../core/errors.js';
import { TraceSettings } from './trace-settings.js';

/** Which of `requests` requests of `model` the settings pick, numbered from 1, each pick recorded as a trace. */
function picks(settings: TraceSettings, model: string, requests: number): number[] {
  const picked: number[] = [];
  for (let request = 1; request <= requests; request++) {
    const policy = settings.policyFor(model);
    if (policy.sample()) {
      picked.push(request);
      policy.recorded();
    }
  }
  return picked;
}

test('one request in trace_rate is picked, and no more than trace_count traces', () => {
  const settings = new TraceSettings({ exporting: true });
  assert.deepEqual(picks(settings, 'm', 3), [1, 2, 3]);
  settings.update({ trace_rate: '3', trace_count: '2' });
  assert.deepEqual(picks(settings, 'm', 12), [3, 6]);
  assert.equal(settings.settings().trace_count, '0');
});

test('a model with an override counts apart; models without one share the global counters', () => {
  const settings = new TraceSettings({ exporting: true });
  settings.update({ trace_rate: '2' });
  settings.update({ trace_rate: '2' }, 'own');
  assert.deepEqual(picks(settings, 'a', 1), []);
  assert.deepEqual(picks(settings, 'b', 1), [1], "b's request is the global policy's second");
  assert.deepEqual(picks(settings, 'own', 2), [2], 'own counts from its own first request');
});

test('log_frequency asks for an export every N traces', () => {
  const settings = new TraceSettings({ exporting: true });
  settings.update({ log_frequency: '2' });
  const policy = settings.policyFor('m');
  assert.deepEqual([1, 2, 3, 4, 5].map(() => policy.recorded()), [false, true, false, true, false]);
});

test('a refused request changes nothing, even the settings before the bad one', () => {
  const settings = new TraceSettings({ exporting: true });
  assert.throws(() => settings.update({ trace_rate: '5', trace_count: 'lots' }), (error: NereidError) => error.code === 'INVALID_ARGUMENT' && /got "lots"/.test(error.message));
  assert.equal(settings.settings().trace_rate, '1');
  assert.throws(() => settings.update({ trace_rate: '5', trace_file: 'x' }, 'm'), /CVE-2024-0087/);
  assert.equal(settings.settings('m').trace_rate, '1');
});

test('without an exporter the level is OFF, nothing is picked, and only OFF may be set', () => {
  const settings = new TraceSettings({ exporting: false });
  assert.deepEqual(settings.settings().trace_level, ['OFF']);
  assert.deepEqual(picks(settings, 'm', 3), []);
  assert.deepEqual(settings.update({ trace_level: ['OFF'] }).trace_level, ['OFF']);
  assert.throws(() => settings.update({ trace_level: ['TIMESTAMPS'] }, 'm'), /start it with a Tracing's settings/);
});
