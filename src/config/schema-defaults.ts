/**
 * Reading a default out of an options schema, so that a command line's --help and the component
 * that applies the default say the same thing, from one place.
 */
import type { z } from 'zod';

export function defaultOf<S extends z.ZodObject, K extends keyof S['shape'] & string>(schema: S, key: K): z.output<S['shape'][K]> {
  const parsed = (schema.shape[key] as z.ZodType).safeParse(undefined);
  if (!parsed.success || parsed.data === undefined) throw new Error(`option '${key}' has no default`);
  return parsed.data as z.output<S['shape'][K]>;
}
