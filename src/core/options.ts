/**
 * Options objects of the public constructors and factories, checked as a user's mistake is best told: a key none of
 * them knows (a typo such as `maxBatchSise`) is refused by name with the keys that exist, instead of being dropped
 * silently, and a wrong value reads "option 'x' expects …, got …" on one line instead of a dump of schema issues.
 */
import type { z } from 'zod';

/** A value as a message quotes it: short, with its kind when that is what was wrong. */
function quoted(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 60 ? `${value.slice(0, 60)}…` : value}' (a string)`;
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return `a ${typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value}`;
}

/**
 * A refused option: a TypeError as before (its name, message and `instanceof` unchanged), marked so that a command can
 * tell a caller's mistake from a failure of its own (the batch commands exit 2 for it, not 3).
 */
export class OptionError extends TypeError {
  get code(): 'INVALID_ARGUMENT' {
    return 'INVALID_ARGUMENT';
  }
}

/** Refuses a key of `options` that is not among `known`, naming it and the known ones. */
export function refuseUnknownOptions(what: string, options: unknown, known: readonly string[]): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new OptionError(`${what}: expected an options object, got ${quoted(options)}`);
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    const names = unknown.map((key) => `'${key}'`).join(', ');
    throw new OptionError(`${what}: unknown option${unknown.length > 1 ? 's' : ''} ${names} (known: ${[...new Set(known)].sort().join(', ')})`);
  }
}

/** The value at `path` in `root`, or undefined where the path leads nowhere. */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  return value;
}

/**
 * Parses `options` with `schema` after refusing keys neither its shape nor `otherKeys` (options the caller reads
 * itself, such as a Server's backends) name. A failure throws one line for its first issue.
 */
export function parseOptions<Schema extends z.ZodObject>(what: string, schema: Schema, options: unknown, otherKeys: readonly string[] = []): z.output<Schema> {
  refuseUnknownOptions(what, options, [...Object.keys(schema.shape), ...otherKeys]);
  const parsed = schema.safeParse(options ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const name = issue.path.map(String).join('.');
  // A check of our own words its message whole, the value included.
  if (issue.code === 'custom') throw new OptionError(`${what}: option '${name}': ${issue.message}`);
  // zod's "Too small: expected number to be >0" / "Invalid input: expected number, received string" read as "expects …".
  const said = issue.message.replace(/^[^:]*:\s*(?=expected\b)/, '').replace(/, received \w+$/, '');
  const expects = said.startsWith('expected ') ? `expects ${said.slice('expected '.length)}` : `is invalid: ${said}`;
  throw new OptionError(`${what}: option '${name}' ${expects}, got ${quoted(valueAt(options, issue.path))}`);
}
