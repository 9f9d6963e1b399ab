/**
 * Triton's logging extension over the server's pino logger, changed at run time. Triton has four independent switches
 * where pino has one threshold, so the settings map onto both of pino's tools:
 * - the threshold is the least severe level any switch leaves on: log_verbose_level 1 logs from debug, 2 or more from
 *   trace (as --log-verbose does); else log_info, log_warning, log_error (info, warn, error); all off leaves fatal;
 * - a level above the threshold that its switch turns off (warnings off with info on, info off with verbose lines on)
 *   gets a method that writes nothing, as pino gives every level below its threshold.
 * Loggers made with `child()` follow both unless they were given a level of their own: they read the level methods
 * through their prototype.
 *
 * `log_file` is never settable: a file path chosen by a client is how Triton's CVE-2024-0087 let
 * anyone who could reach the endpoint write files on the server. Logs go to the server's stream.
 */
import { pino, type Logger } from 'pino';
import { invalidArgument, quote } from '../core/errors.js';

export const LOG_FORMATS = ['default', 'ISO8601'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The settings as the logging extension answers them. */
export interface LogSettingsAnswer {
  log_info: boolean;
  log_warning: boolean;
  log_error: boolean;
  log_verbose_level: number;
  log_format: LogFormat;
  /** Always '' as Triton answers it: logs go where the operator sent them at start, never to a file a client names. */
  log_file: '';
}

const MAX_UINT32 = 2 ** 32 - 1;

const LOG_FILE_REFUSAL =
  "updating log file was deprecated and no longer supported (as in Triton): log_file cannot be set over the API: a file path chosen by a client would let anyone who can reach this endpoint write files on the server (Triton's CVE-2024-0087); where Nereid logs is the operator's choice at start: its standard output, or the file given by --log-file";

function thresholdOf(settings: LogSettingsAnswer): string {
  if (settings.log_verbose_level >= 2) return 'trace';
  if (settings.log_verbose_level === 1) return 'debug';
  if (settings.log_info) return 'info';
  if (settings.log_warning) return 'warn';
  return settings.log_error ? 'error' : 'fatal';
}

/** The switches of the three levels Triton switches, with pino's name of each. */
const SWITCHED_LEVELS = [
  ['info', 'log_info'],
  ['warn', 'log_warning'],
  ['error', 'log_error'],
] as const;

/** The settings a threshold stands for, so that GET reports what the logger does now. */
function settingsOf(level: string, format: LogFormat): LogSettingsAnswer {
  const value = level === 'silent' ? Number.POSITIVE_INFINITY : (pino.levels.values[level] ?? pino.levels.values.info);
  return {
    log_info: value <= pino.levels.values.info,
    log_warning: value <= pino.levels.values.warn,
    log_error: value <= pino.levels.values.error,
    log_verbose_level: value <= pino.levels.values.trace ? 2 : value <= pino.levels.values.debug ? 1 : 0,
    log_format: format,
    log_file: '',
  };
}

export class LogSettings {
  /** The logger's own time function, which 'default' restores. */
  private readonly defaultTime: () => string;
  private format: LogFormat = 'default';
  /** The verbosity asked for, which may be above 2 (Triton's levels go on; pino's stop at trace). */
  private verboseLevel: number;
  /** The switches last applied and the threshold they set: reported while the logger's level is still that one. */
  private applied?: { threshold: string; settings: LogSettingsAnswer };

  constructor(private readonly logger: Logger) {
    this.defaultTime = (logger as unknown as Record<symbol, () => string>)[pino.symbols.timeSym];
    this.verboseLevel = settingsOf(logger.level, this.format).log_verbose_level;
  }

  settings(): LogSettingsAnswer {
    if (this.applied?.threshold === this.logger.level) return { ...this.applied.settings, log_format: this.format };
    const now = settingsOf(this.logger.level, this.format);
    return now.log_verbose_level === 2 ? { ...now, log_verbose_level: Math.max(2, this.verboseLevel) } : now;
  }

  /** Applies a logging extension request (only the settings it names) and answers the settings now in effect. */
  update(changes: Readonly<Record<string, unknown>>): LogSettingsAnswer {
    const next = this.settings();
    for (const [name, value] of Object.entries(changes)) {
      switch (name) {
        case 'log_file':
          // The settings sent back as read (log_file '') change nothing; a path is refused.
          if (value === '') break;
          throw invalidArgument(LOG_FILE_REFUSAL);
        case 'log_info':
        case 'log_warning':
        case 'log_error':
          if (typeof value !== 'boolean') throw invalidArgument(`${name} must be true or false, got ${quote(value)}`);
          next[name] = value;
          break;
        case 'log_verbose_level':
          if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_UINT32) {
            throw invalidArgument(`log_verbose_level must be a whole number from 0 to ${MAX_UINT32} (0: no verbose lines, 1: debug, 2 or more: trace), got ${quote(value)}`);
          }
          next.log_verbose_level = value;
          break;
        case 'log_format':
          if (!LOG_FORMATS.includes(value as LogFormat)) throw invalidArgument(`log_format must be one of ${LOG_FORMATS.join(', ')}, got ${quote(value)}`);
          next.log_format = value as LogFormat;
          break;
        default:
          throw invalidArgument(`unknown log setting '${name.slice(0, 60)}' (settable: log_info, log_warning, log_error, log_verbose_level, log_format)`);
      }
    }
    const threshold = thresholdOf(next);
    // Sets every level's method from the threshold (writing or not), then silences the levels above it switched off.
    this.logger.level = threshold;
    for (const [level, setting] of SWITCHED_LEVELS) if (!next[setting]) this.logger[level] = silent;
    this.applied = { threshold, settings: next };
    this.verboseLevel = next.log_verbose_level;
    this.format = next.log_format;
    // Children made without options read the time function through their prototype, so they follow too.
    (this.logger as unknown as Record<symbol, () => string>)[pino.symbols.timeSym] =
      next.log_format === 'ISO8601' ? pino.stdTimeFunctions.isoTime : this.defaultTime;
    return this.settings();
  }
}

/** A level switched off above the threshold: as pino's own method for a level below it, it writes nothing. */
const silent: pino.LogFn = () => undefined;
