/** How a failed load is told: the error a caller gets (its code: the caller's mistake or not) and the log's lines. */
import type { Logger } from 'pino';
import { NereidError } from '../core/errors.js';
import { fromClient } from './config-override.js';
import { EnsembleStepError } from './ensemble-loader.js';
import { ModelConfigError } from './model-loader.js';
import { RepositoryLayoutError } from './repository-layout.js';

/**
 * A model that failed to load, with why. Found on a request's path (a model loading on demand), it is
 * UNAVAILABLE unless the request's own config was at fault; the load API answers it as the caller's
 * problem to fix, as Triton does (INVALID_ARGUMENT), so that no client retries a broken model's load.
 */
export class ModelLoadError extends NereidError {}

/** A model name found in two or more of the server's repositories: served from none, as in Triton. */
export class DuplicateModelError extends NereidError {
  constructor(message: string) {
    super('UNAVAILABLE', message);
  }
}

/** A load that failed on the config a client sent is the client's mistake, logged as a warning; any other failure is an error. */
export function levelOf(error: unknown, configOverride: unknown): 'warn' | 'error' {
  return fromClient(configOverride) && error instanceof ModelConfigError ? 'warn' : 'error';
}

/** A config or layout mistake, whose message says it all (its stack is ours, not the cause's), or an ensemble step that could not load, whose own load logged its cause. */
const refusedAsExpected = (error: unknown) => error instanceof ModelConfigError || error instanceof RepositoryLayoutError || error instanceof EnsembleStepError;

/** A bug in the server's own code rather than a model it was given: its stack is what the log line is for. */
const codeFault = (error: unknown) => error instanceof TypeError || error instanceof ReferenceError || error instanceof RangeError;

/**
 * A failed load as the log says it: one line at `level` whose message carries the reason. The stack, and an engine's
 * own error (which repeats the file's path: ONNX Runtime's "Load model from <path> failed:…"), go to a debug line
 * (--log-verbose 1) beside it, except for a fault of the server's code, whose line carries its stack; an expected
 * refusal has none to give.
 */
export function logLoadFailure(logger: Logger, level: 'warn' | 'error', fields: Record<string, unknown>, message: string, errors: readonly unknown[]): void {
  const fault = errors.find(codeFault);
  logger[level]({ ...fields, ...(fault !== undefined && { err: fault }) }, message);
  for (const error of errors) {
    if (!codeFault(error) && !refusedAsExpected(error)) logger.debug({ ...fields, err: error }, `the failure above, with its stack and causes: ${(error as Error)?.message ?? String(error)}`);
  }
}

/**
 * With a config given, a config that does not parse, is refused or does not fit the model is the
 * caller's mistake (INVALID_ARGUMENT); a model the engine cannot open or run is not (UNAVAILABLE),
 * whichever config came with it. `errors`: why the load failed (one per version once it got that far).
 */
export function loadFailure(name: string, reason: string, configOverride: unknown, errors: readonly unknown[]): NereidError {
  const cause = errors[0] instanceof ModelConfigError ? errors[0].cause : errors[0];
  const callersMistake = fromClient(configOverride) && errors.every((error) => error instanceof ModelConfigError);
  if (callersMistake) return new ModelLoadError('INVALID_ARGUMENT', `load failed for model '${name}' with the config given: ${reason}`, { cause });
  return new ModelLoadError('UNAVAILABLE', `load failed for model '${name}': ${reason}`, { cause });
}
