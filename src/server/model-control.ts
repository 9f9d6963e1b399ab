/**
 * Triton's model control API as the server takes it: which control modes take load and unload requests, the
 * parameters each takes, and a failed load answered as Triton answers every one.
 */
import type { z } from 'zod';
import { invalidArgument, NereidError, quoteName } from '../core/errors.js';
import type { SettingName } from '../core/options.js';
import { describeValue } from '../model/input-validation.js';
import { refuseTooDeepJson } from '../protocol/v2-json.js';
import { ModelLoadError } from '../repository/load-failure.js';
import type { serverOptionsSchema } from './server-options.js';

type ModelControlMode = z.output<typeof serverOptionsSchema>['modelControlMode'];

/** As in Triton, only explicit mode takes load/unload requests: in poll mode the repository's files decide what is loaded. */
export function requireExplicitControl(mode: ModelControlMode, settingName: SettingName, action: string): void {
  if (mode !== 'explicit' && mode !== 'on_demand') {
    throw new NereidError(
      'UNAVAILABLE',
      `explicit model load / unload is not allowed (${action}): the server runs with ${settingName('modelControlMode', mode)} (${
        mode === 'poll' ? 'change the model repository and the next poll applies it, or ' : ''
      }start it with ${settingName('modelControlMode', 'explicit')} or on_demand)`,
    );
  }
}

/** The config a load request's parameters give (`config`, a JSON string, as in Triton); undefined when they give none. */
export function loadRequestConfig(parameters: Record<string, unknown>): unknown {
  let override: unknown;
  for (const [key, value] of Object.entries(parameters)) {
    if (key === 'config') {
      // The protocol's form, which in-process callers share: an object is refused rather than read two ways.
      if (typeof value !== 'string') throw invalidArgument(`load parameter 'config' must be a JSON string (JSON.stringify(config) from a library caller), got ${describeValue(value)}`);
      // A field the config keeps as it is (Triton's metric_tags) would hold any depth, and the model's config answer then failed (500).
      refuseTooDeepJson(Buffer.from(value, 'utf8'), "load parameter 'config'");
      try {
        override = JSON.parse(value);
      } catch (error) {
        throw invalidArgument(`load parameter 'config' is not valid JSON: ${(error as Error).message}`);
      }
    } else if (key.startsWith('file:')) {
      throw invalidArgument(`load parameter ${quoteName(key)}: uploading model files is disabled; models load only from the repository`);
    } else {
      throw invalidArgument(`unknown load parameter ${quoteName(key)} (supported: config)`);
    }
  }
  return override;
}

/** Whether an unload request's parameters ask for an ensemble's steps to go too (Triton's unload_dependents). */
export function unloadsDependents(parameters: Record<string, unknown>): boolean {
  for (const [key, value] of Object.entries(parameters)) {
    if (key !== 'unload_dependents') throw invalidArgument(`unknown unload parameter ${quoteName(key)} (supported: unload_dependents)`);
    if (typeof value !== 'boolean') throw invalidArgument(`unload parameter 'unload_dependents' must be true or false, got ${JSON.stringify(value)}`);
  }
  return parameters.unload_dependents === true;
}

/** As Triton answers every failed load of model `name`, a model missing from the repository included: 400 / INVALID_ARGUMENT. */
export function asLoadFailure(name: string, error: unknown): never {
  if ((error instanceof ModelLoadError || (error instanceof NereidError && error.code === 'NOT_FOUND')) && error.code !== 'INVALID_ARGUMENT') {
    // Triton's phrase for a model it cannot find, which its tests and tools look for, before Nereid's reason.
    const message = error.code === 'NOT_FOUND' ? `failed to load ${quoteName(name)}, failed to poll from model repository: ${error.message}` : error.message;
    throw new NereidError('INVALID_ARGUMENT', message, { cause: error instanceof ModelLoadError ? error.cause : error });
  }
  throw error;
}
