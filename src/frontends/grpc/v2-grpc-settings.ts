/**
 * The trace and logging settings messages of the gRPC service, to and from the objects the HTTP
 * front end reads and writes as JSON, so one core check serves both front ends.
 */
import { invalidArgument } from '../../core/errors.js';
import type { LogSettingsAnswer, TraceSettingAnswer } from '../../observability/index.js';

export interface TraceSettingRequestMessage {
  settings: Record<string, { value: string[] } | null>;
  model_name: string;
}

/**
 * A setting with no value clears a model's override of it, as `null` does over HTTP; one value is
 * the string the HTTP request would carry, except trace_level, which is a list either way.
 */
export function traceChangesFromProto(settings: TraceSettingRequestMessage['settings']): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(settings)) {
    const values = setting?.value ?? [];
    changes[name] = values.length === 0 ? null : name === 'trace_level' || values.length > 1 ? values : values[0];
  }
  return changes;
}

export function traceSettingToProto(answer: TraceSettingAnswer): { settings: Record<string, { value: string[] }> } {
  const settings: Record<string, { value: string[] }> = {};
  for (const [name, value] of Object.entries(answer)) settings[name] = { value: Array.isArray(value) ? value : [value] };
  return { settings };
}

type LogSettingValue = { parameter_choice?: 'bool_param' | 'uint32_param' | 'string_param'; bool_param?: boolean; uint32_param?: number; string_param?: string };

export function logChangesFromProto(settings: Record<string, LogSettingValue | null>): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(settings)) {
    const choice = setting?.parameter_choice;
    if (!choice) throw invalidArgument(`log setting '${name.slice(0, 60)}' has no value (set bool_param, uint32_param or string_param)`);
    changes[name] = setting[choice];
  }
  return changes;
}

export function logSettingsToProto(answer: LogSettingsAnswer): { settings: Record<string, LogSettingValue> } {
  const settings: Record<string, LogSettingValue> = {};
  for (const [name, value] of Object.entries(answer)) {
    settings[name] =
      typeof value === 'boolean' ? { bool_param: value } : typeof value === 'number' ? { uint32_param: value } : { string_param: value };
  }
  return { settings };
}
