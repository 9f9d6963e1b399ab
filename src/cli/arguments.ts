/** Parsers of flag values: each refuses what its flag cannot take, naming what it expected, before any work starts. */
import { resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { chartFormatOf } from '../eval/chart-format.js';
import { redisConnection } from '../jobs/chunk-queue.js';

export function integer(min: number, max = Infinity) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(max === Infinity ? `expected an integer >= ${min}` : `expected an integer from ${min} to ${max}`);
    return parsed;
  };
}

/** Node's timers take at most 2^31 − 1 ms (about 24.8 days); a longer one fires at once. */
export const LONGEST_TIMER_MS = 2 ** 31 - 1;
/** A duration flag in milliseconds, bounded by what a timer can wait. */
export const milliseconds = (min: number) => integer(min, LONGEST_TIMER_MS);
export const LONGEST_TIMER_S = Math.floor(LONGEST_TIMER_MS / 1000);
/** A duration flag in seconds, bounded by what a timer can wait. */
export const seconds = (min: number) => number(min, LONGEST_TIMER_S);

/**
 * `--model-repository` of the commands that read one repository (batch, eval, quantize, tune…): given twice, the second
 * would silently win and the first folder's models go unserved; `nereid serve` takes several (repositories()).
 */
export function oneRepository(value: string, previous: string | undefined): string {
  // The same folder twice (a wrapper's default and its caller's own) names one repository.
  if (previous !== undefined && resolve(previous) !== resolve(value)) {
    throw new InvalidArgumentError(
      `--model-repository is given more than once ('${previous}', then '${value}'): this command reads one model repository (nereid serve takes several); name the one that holds the model`,
    );
  }
  return value;
}

/**
 * `nereid serve`'s `--model-repository`, which may be given several times as Triton's may: every folder is served, a
 * model's name in one of them only; the same folder given twice (a wrapper's default and its caller's own) counts once.
 */
export function repositories(value: string, previous: string[] | undefined): string[] {
  const folders = previous ?? [];
  return folders.some((folder) => resolve(folder) === resolve(value)) ? folders : [...folders, value];
}

export function port(value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value.trim()) || parsed > 65_535) throw new InvalidArgumentError('expected a port number from 0 to 65535');
  return parsed;
}

/** A redis:// URL, refused before anything starts when it is not one. */
export function redisUrl(value: string): string {
  try {
    redisConnection(value, '--queue');
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message.replace(/^--queue /, ''));
  }
  return value;
}

export function booleanFlag(value: string): boolean {
  if (['true', '1', 'on', 'yes'].includes(value.toLowerCase())) return true;
  if (['false', '0', 'off', 'no'].includes(value.toLowerCase())) return false;
  throw new InvalidArgumentError('expected true or false');
}

export const collect = (value: string, previous: string[]) => [...previous, value];
/** A comma-separated list, repeatable: '--x a,b --x c' is [a, b, c]. */
export const list = (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((part) => part.trim()).filter((part) => part !== '')];

/** A chart file name, refused before any work when its extension names no format the chart is written in. */
export function chartPath(value: string): string {
  try {
    chartFormatOf(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return value;
}

/** A number flag within [min, max]; `open` leaves out a bound, as the option's schema does (a share of 0 or 1 is none or all). */
export function number(min: number, max = Infinity, open: { min?: boolean; max?: boolean } = {}) {
  const expected =
    max === Infinity
      ? `a number ${open.min ? '>' : '>='} ${min}`
      : `a number ${open.min ? 'above' : 'from'} ${min} ${open.max ? 'and below' : open.min ? 'and up to' : 'to'} ${max}`;
  return (value: string): number => {
    const parsed = Number(value);
    if (value.trim() === '' || !Number.isFinite(parsed) || parsed < min || parsed > max || (open.min && parsed === min) || (open.max && parsed === max)) {
      throw new InvalidArgumentError(`expected ${expected}`);
    }
    return parsed;
  };
}

/** A version flag: a folder name of the model, 1, 2, … */
export function versionNumber(value: string): string {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError('expected a version number: 1, 2, …');
  return value;
}
/** 1,2: versions separated by commas, each checked by the command's schema (which names what is not a version). */
export const versionList = (value: string): string[] => value.split(',').map((part) => part.trim());

/** NAME=D1,D2,…: one input's dims after the batch dimension. */
export function inputShape(value: string, previous: Record<string, number[]> | undefined): Record<string, number[]> {
  const match = /^([^=]+)=(\d+(?:,\d+)*)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`expected NAME=D1,D2,… (e.g. x=3,48,320), got '${value}'`);
  return { ...previous, [match[1]]: match[2].split(',').map(Number) };
}

export const integerList = (value: string): number[] => {
  const values = value.split(',').map(Number);
  if (values.some((entry) => !Number.isInteger(entry) || entry < 1)) throw new InvalidArgumentError(`expected positive integers separated by commas, got '${value}'`);
  return values;
};

/** Names separated by commas, from each time the flag is given. */
export const nodeNames = (value: string, previous: string[]): string[] => {
  const names = value.split(',').map((name) => name.trim());
  if (names.some((name) => name === '')) throw new InvalidArgumentError(`expected node names separated by commas, got '${value}'`);
  return [...previous, ...names];
};

/** 1=90,2=10: version → weight. */
export function versionWeights(value: string): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const part of value.split(',')) {
    const match = /^([1-9]\d*)=(\d+(?:\.\d+)?)$/.exec(part.trim());
    if (!match) throw new InvalidArgumentError(`expected VERSION=WEIGHT pairs separated by commas (e.g. 1=90,2=10), got '${part}'`);
    weights[match[1]] = Number(match[2]);
  }
  return weights;
}
