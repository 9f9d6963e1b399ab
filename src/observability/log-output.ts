/**
 * Where and how the CLI's logs go: readable lines for a person at a terminal, JSON for a collector
 * (the default when the output is not a terminal), to the terminal or to a file.
 */
import pinoPretty from 'pino-pretty';
import { pino, type Logger } from 'pino';
import { LEVEL_BY_NAME } from './library-logger.js';

export type LogOutputFormat = 'text' | 'json';

export interface LogOutputOptions {
  level: string;
  /** Default: text when the output is a terminal, else JSON. */
  format?: LogOutputFormat;
  /** A file to append to instead of the terminal. */
  file?: string;
  /** The stream written to when there is no file: 1 (stdout) or 2 (stderr). */
  fd?: 1 | 2;
  /** Bound on every line (e.g. the service name). */
  base?: Record<string, unknown>;
}

export function createLogger(options: LogOutputOptions): Logger {
  const fd = options.fd ?? 1;
  const terminal = options.file === undefined && (fd === 1 ? process.stdout : process.stderr).isTTY === true;
  const format = options.format ?? (terminal ? 'text' : 'json');
  const settings = { level: options.level, base: options.base ?? {} };
  if (format === 'json') {
    return pino({ ...settings, formatters: LEVEL_BY_NAME }, pino.destination(options.file === undefined ? { dest: fd, sync: true } : { dest: options.file, mkdir: true, sync: true }));
  }
  const pretty = pinoPretty({
    colorize: terminal,
    destination: options.file ?? fd,
    mkdir: true,
    sync: true,
    translateTime: 'SYS:HH:MM:ss.l',
    // The service name and process ids are the same on every line a person reads.
    ignore: 'pid,hostname,service',
    singleLine: true,
  });
  return pino(settings, pretty);
}
