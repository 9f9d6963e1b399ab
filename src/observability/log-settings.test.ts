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

test('switches map onto one threshold; a child logger made earlier follows it', () => {
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
