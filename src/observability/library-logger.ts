/**
 * The logger of a Server, job or worker made by a program that gave none: warnings and errors on stderr. A library
 * writes nothing to its host's stdout, which may be the program's own output (JSON lines, a CLI's answer); `nereid
 * serve` and the other commands make their own logger from their --log flags.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';

/**
 * JSON lines name their level (`"level":"warn"`) instead of pino's number (40): log collectors (Loki, Elasticsearch's
 * ECS, Cloud Logging's agents) read a level or severity by name, and the docs speak of levels by name. pino-pretty reads either.
 */
export const LEVEL_BY_NAME: NonNullable<LoggerOptions['formatters']> = { level: (label) => ({ level: label }) };

export function defaultLibraryLogger(): Logger {
  return pino({ level: 'warn', formatters: LEVEL_BY_NAME }, pino.destination(2));
}
