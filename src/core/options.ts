/**
 * Options objects of the public constructors and factories, checked as a user's mistake is best told: a key none of
 * them knows (a typo such as `maxBatchSise`) is refused by name with the keys that exist, instead of being dropped
 * silently, and a wrong value reads "option 'x' expects …, got …" on one line instead of a dump of schema issues.
 */
import type { z } from 'zod';
import { closestName } from './edit-distance.js';

/** A value as a message quotes it: short, with its kind when that is what was wrong. */
function quoted(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 60 ? `${value.slice(0, 60)}…` : value}' (a string)`;
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  const kind = typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value;
  return `${/^[aeiou]/i.test(kind) ? 'an' : 'a'} ${kind}`;
}

/** Refuses a value `option` cannot take, in the words parseOptions uses: "option 'x' expects …, got …". */
export function refuseOptionValue(what: string, option: string, expects: string, value: unknown): never {
  throw new OptionError(`${what}: option '${option}' expects ${expects}, got ${quoted(value)}`);
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

/**
 * Refuses a key of `options` that is not among `known`, naming it (by its path, below the top: `monitoring.windw`), the
 * known ones, and the known key it most likely meant.
 */
export function refuseUnknownOptions(what: string, options: unknown, known: readonly string[], path: readonly string[] = []): void {
  if (options === undefined) return;
  const at = path.length > 0 ? ` option '${path.join('.')}'` : '';
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new OptionError(`${what}:${at} expected an options object, got ${quoted(options)}`);
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    const named = (key: string) => `'${[...path, key].join('.')}'`;
    const names = unknown.map(named).join(', ');
    const near = unknown.flatMap((key) => {
      const meant = closestName(key, known);
      return meant === undefined ? [] : [unknown.length > 1 ? `${named(meant)} for ${named(key)}` : named(meant)];
    });
    const hint = near.length > 0 ? `; did you mean ${near.join(', ')}?` : '';
    throw new OptionError(`${what}: unknown option${unknown.length > 1 ? 's' : ''} ${names} (known: ${[...new Set(known)].sort().join(', ')}${hint})`);
  }
}

/** What parseOptions reads of a zod schema's definition: its kind and the parts that lead to the object schemas inside. */
interface SchemaDef {
  type: string;
  shape?: Record<string, Schema>;
  catchall?: Schema;
  options?: readonly Schema[];
  innerType?: Schema;
  in?: Schema;
  getter?: () => Schema;
}
type Schema = { _zod: { def: SchemaDef } };

/**
 * The object schemas a value given for `schema` may be checked against, through the wrappers around them (optional,
 * default, prefault, a transform's input, a union's members): a nested options object such as Server's `monitoring`
 * (`false` or an object). An object that takes any key (looseObject, a catchall) is left out: it names no keys to refuse.
 */
function objectSchemasOf(schema: Schema | undefined): Schema[] {
  const def = schema?._zod.def;
  if (def === undefined) return [];
  switch (def.type) {
    case 'object':
      return def.catchall === undefined || def.catchall._zod.def.type === 'never' ? [schema!] : [];
    case 'union':
      return (def.options ?? []).flatMap(objectSchemasOf);
    case 'pipe':
      return objectSchemasOf(def.in);
    case 'lazy':
      return objectSchemasOf(def.getter?.());
    default:
      return objectSchemasOf(def.innerType);
  }
}

/** Refuses, at any depth, a key of a nested options object that none of the object schemas it may be checked against names. */
function refuseUnknownNested(what: string, options: unknown, schemas: readonly Schema[], path: readonly string[]): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) return;
  for (const [key, value] of Object.entries(options)) {
    // A class instance (a logger, a Buffer) is no options object: zod says what it expects of it.
    if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) continue;
    const nested = schemas.flatMap((schema) => objectSchemasOf(schema._zod.def.shape?.[key]));
    if (nested.length === 0) continue;
    refuseUnknownOptions(what, value, nested.flatMap((schema) => Object.keys(schema._zod.def.shape!)), [...path, key]);
    refuseUnknownNested(what, value, nested, [...path, key]);
  }
}

/** The value at `path` in `root`, or undefined where the path leads nowhere. */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  return value;
}

type Issue = z.core.$ZodIssue;

/**
 * The issue to tell of a union's failure: where the value is an options object and one member is an object schema (a
 * nested option such as Server's `monitoring`, `false` or an object), that member's own first issue at its full path —
 * `monitoring.window` expects an object — rather than the union's "Invalid input" at `monitoring`. The member is the one
 * whose issue is not a refusal of the value as a whole (an object schema takes the object and fails inside it, or in a
 * check of its own).
 */
function telling(issue: Issue, options: unknown): Issue {
  if (issue.code !== 'invalid_union') return issue;
  const value = valueAt(options, issue.path);
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) return issue;
  const inner = issue.errors.map((issues) => issues[0]).find((first) => first !== undefined && !(first.path.length === 0 && (first.code === 'invalid_type' || first.code === 'invalid_value')));
  return inner === undefined ? issue : telling({ ...inner, path: [...issue.path, ...inner.path] } as Issue, options);
}

/**
 * Parses `options` with `schema` after refusing keys neither its shape nor `otherKeys` (options the caller reads
 * itself, such as a Server's backends) name, and keys of its nested options objects (Server's `monitoring.window`)
 * their schemas do not name. A failure throws one line for its first issue.
 */
export function parseOptions<Shape extends z.ZodObject>(what: string, schema: Shape, options: unknown, otherKeys: readonly string[] = []): z.output<Shape> {
  refuseUnknownOptions(what, options, [...Object.keys(schema.shape), ...otherKeys]);
  refuseUnknownNested(what, options, [schema as unknown as Schema], []);
  const parsed = schema.safeParse(options ?? {});
  if (parsed.success) return parsed.data;
  const issue = telling(parsed.error.issues[0]!, options);
  const name = issue.path.map(String).join('.');
  // A check of our own words its message whole, the value included.
  if (issue.code === 'custom') throw new OptionError(`${what}: option '${name}': ${issue.message}`);
  // zod's "Too small: expected number to be >0" / "Invalid input: expected number, received string" read as "expects …".
  const said = issue.message.replace(/^[^:]*:\s*(?=expected\b)/, '').replace(/, received \w+$/, '');
  const expects = said.startsWith('expected ') ? `expects ${said.slice('expected '.length)}` : `is invalid: ${said}`;
  throw new OptionError(`${what}: option '${name}' ${expects}, got ${quoted(valueAt(options, issue.path))}`);
}

/**
 * How a message names a setting that whoever started the server chose, with the value to give it where one is said:
 * by default the option's key (its dotted path below the top) as a library caller writes it — `maxInflightBytes`,
 * `modelControlMode: 'explicit'` — while the CLI, which builds the options from its flags, passes one that names the
 * flags — `--max-inflight-bytes`, `--model-control-mode explicit`.
 */
export type SettingName = (key: string, value?: string | number | boolean) => string;

/** Settings named as option keys: `maxInflightBytes`, `modelControlMode: 'explicit'`, `monitoring: false`. */
export const optionKeyName: SettingName = (key, value) => (value === undefined ? key : `${key}: ${typeof value === 'string' ? `'${value}'` : String(value)}`);

/**
 * Settings named as a command's flags, for a composition root that builds the options from them: `--<prefix><key in
 * kebab case>` (`maxBodyBytes` with prefix 'http-': `--http-max-body-bytes`), or the flag `renamed` gives the key;
 * a flag in `switches` takes no value, so it alone says `true`. With a value: `--model-control-mode explicit`.
 */
export function flagNames(prefix: string, renamed: Readonly<Record<string, string>> = {}, switches: ReadonlySet<string> = new Set()): SettingName {
  return (key, value) => {
    const flag = renamed[key] ?? `--${prefix}${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
    return value === undefined || (value === true && switches.has(flag)) ? flag : `${flag} ${value}`;
  };
}
