/**
 * The logger of a Server, job or worker made by a program that gave none: warnings and errors on stderr. A library
 * writes nothing to its host's stdout, which may be the program's own output (JSON lines, a CLI's answer); `nereid
 * serve` and the other commands make their own logger from their --log flags.
 */
import { pino, type Logger } from 'pino';

export function defaultLibraryLogger(): Logger {
  return pino({ level: 'warn' }, pino.destination(2));
}
