import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { LogSettings } from './log-settings.js';

const silentStream = { write: () => undefined };

test("the settings start from the logger's level", () => {
  const at = (level: string) => new LogSettings(pino({ level }, silentStream)).settings();
  assert.deepEqual(at('debug'), { log_info: true, log_warning: true, log_error: true, log_verbose_level: 1, log_format: 'default', log_file: '' });
  assert.deepEqual(at('warn'), { log_info: false, log_warning: true, log_error: true, log_verbose_level: 0, log_format: 'default', log_file: '' });
  assert.deepEqual(at('silent'), { log_info: false, log_warning: false, log_error: false, log_verbose_level: 0, log_format: 'default', log_file: '' });
});

test('switches set the threshold from the least severe level left on; a child logger made earlier follows it', () => {
  const logger = pino({ level: 'info' }, silentStream);
  const child = logger.child({ part: 'x' });
  const settings = new LogSettings(logger);
  settings.update({ log_info: false, log_warning: false });
  assert.equal(logger.level, 'error');
  assert.equal(child.level, 'error');
  settings.update({ log_error: false });
  assert.equal(logger.level, 'fatal');
  settings.update({ log_info: true, log_warning: true, log_error: true, log_verbose_level: 7 });
  assert.equal(child.level, 'trace');
  assert.equal(settings.settings().log_verbose_level, 7, 'the verbosity asked for is reported, beyond trace');
});

test("each level switches on and off by itself, as Triton's switches do: warnings off with info on, verbose lines with info off", () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const child = logger.child({ part: 'x' });
  const settings = new LogSettings(logger);
  const written = () => lines.splice(0).map((line) => (JSON.parse(line) as { msg: string }).msg);
  const everyLevel = () => {
    for (const target of [logger, child]) for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const) target[level](level);
  };

  assert.deepEqual(settings.update({ log_warning: false }), { log_info: true, log_warning: false, log_error: true, log_verbose_level: 0, log_format: 'default', log_file: '' });
  everyLevel();
  assert.deepEqual(written(), ['info', 'error', 'fatal', 'info', 'error', 'fatal']);

  settings.update({ log_info: false, log_warning: true, log_verbose_level: 1 });
  assert.deepEqual(settings.settings(), { log_info: false, log_warning: true, log_error: true, log_verbose_level: 1, log_format: 'default', log_file: '' });
  everyLevel();
  assert.deepEqual(written(), ['debug', 'warn', 'error', 'fatal', 'debug', 'warn', 'error', 'fatal']);

  // Back to every switch on: the silenced levels write again, in loggers made before and after.
  settings.update({ log_info: true, log_verbose_level: 0 });
  const later = logger.child({ part: 'y' });
  for (const target of [logger, child, later]) target.warn('warn');
  assert.deepEqual(written(), ['warn', 'warn', 'warn']);
  assert.deepEqual(settings.settings(), { log_info: true, log_warning: true, log_error: true, log_verbose_level: 0, log_format: 'default', log_file: '' });
});
