/**
 * Triton's trace extension settings (trace_level, trace_rate, trace_count, log_frequency), global
 * and per model, deciding which requests the OpenTelemetry tracing records. A model's own settings
 * override the global ones field by field; a field it does not set follows the global value.
 * Each set of values in effect (the global one, or a model's own) keeps its own counters, as
 * Triton's do: a model with an override counts its requests and its traces apart from the rest.
 *
 * `trace_file` is never settable: a file path chosen by a client is how Triton's CVE-2024-0087 let
 * anyone who could reach the endpoint write files on the server. Spans leave over OTLP instead.
 */
import { invalidArgument, quote } from '../core/errors.js';
import { optionKeyName, type SettingName } from '../core/options.js';

export type TraceLevel = 'OFF' | 'TIMESTAMPS';

/** The values one policy applies. `count` is how many traces are left to record, -1 for no limit. */
interface TraceFields {
  level: TraceLevel;
  rate: number;
  count: number;
  logFrequency: number;
}

type TraceField = keyof TraceFields;

/** The settings as the trace extension answers them: every value a string, trace_level a list. */
export interface TraceSettingAnswer {
  trace_level: string[];
  trace_rate: string;
  trace_count: string;
  log_frequency: string;
  trace_mode: 'opentelemetry';
}

/** Wire names of the settable fields. */
const FIELD_OF: Readonly<Record<string, TraceField>> = {
  trace_level: 'level',
  trace_rate: 'rate',
  trace_count: 'count',
  log_frequency: 'logFrequency',
};

/**
 * How the refusals name the way to export spans: a command's flags (settingName gives `traceSettings` as
 * --trace-exporter and `traceEndpoint` as --trace-endpoint), or, for a library caller, a Tracing.
 */
function exporterHints(settingName: SettingName): { start: string; otlp: string } {
  if (settingName('traceSettings') === optionKeyName('traceSettings')) {
    return {
      start: "a Tracing's settings (traceSettings: tracing.settings, with tracing.observer in observers)",
      otlp: "a Tracing that sends them to your collector (new Tracing({ exporter: 'otlp', endpoint: <url> }))",
    };
  }
  return { start: settingName('traceSettings', 'otlp'), otlp: `${settingName('traceSettings', 'otlp')} ${settingName('traceEndpoint')} <url>` };
}

/** The fields that are never set over the API, and why. */
function refusals(otlpHint: string): Readonly<Record<string, string>> {
  return {
    trace_file: `trace_file cannot be set over the API: a file path chosen by a client would let anyone who can reach this endpoint write files on the server (Triton's CVE-2024-0087); Nereid exports spans over OTLP (${otlpHint})`,
    trace_mode: "trace_mode is fixed when the server starts: Nereid traces with OpenTelemetry ('opentelemetry') only",
  };
}

/**
 * One set of values in effect, with its counters. `sample` runs on every request of the models it
 * covers, so it only compares and counts: no allocation, no lookup.
 */
export class TracePolicy implements TraceFields {
  level: TraceLevel;
  rate: number;
  count: number;
  logFrequency: number;
  /** Requests counted towards the next sampled one (trace_rate). */
  private seen = 0;
  /** Traces recorded since the last forced export (log_frequency). */
  private sinceFlush = 0;

  constructor(fields: TraceFields) {
    this.level = fields.level;
    this.rate = fields.rate;
    this.count = fields.count;
    this.logFrequency = fields.logFrequency;
  }

  /** Whether this request is the one in `rate` to trace, while the level is on and traces are left. */
  sample(): boolean {
    if (this.level === 'OFF' || this.count === 0) return false;
    if (++this.seen < this.rate) return false;
    this.seen = 0;
    return true;
  }

  /** A sampled request's span was recorded: one trace fewer left. True when log_frequency says to export now. */
  recorded(): boolean {
    if (this.count > 0) this.count--;
    if (this.logFrequency === 0 || ++this.sinceFlush < this.logFrequency) return false;
    this.sinceFlush = 0;
    return true;
  }

  /** Sets one field; a new rate restarts its count, so "1 in N" counts from the change. */
  set<Field extends TraceField>(field: Field, value: TraceFields[Field]): void {
    if (field === 'rate') this.seen = 0;
    if (field === 'logFrequency') this.sinceFlush = 0;
    (this as TraceFields)[field] = value;
  }

  fields(): TraceFields {
    return { level: this.level, rate: this.rate, count: this.count, logFrequency: this.logFrequency };
  }

  answer(): TraceSettingAnswer {
    return {
      trace_level: [this.level],
      trace_rate: String(this.rate),
      trace_count: String(this.count),
      log_frequency: String(this.logFrequency),
      trace_mode: 'opentelemetry',
    };
  }
}

/** A whole number written as a string, as the trace extension writes every value. */
function integerString(name: string, value: unknown, min: number, expected: string): number {
  const parsed = typeof value === 'string' && /^-?\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
  if (!(parsed >= min)) throw invalidArgument(`${name} must be ${expected}, got ${quote(value)}`);
  return parsed;
}

function traceLevelOf(value: unknown): TraceLevel {
  const expected = "a list of trace levels, e.g. [\"TIMESTAMPS\"] or [\"OFF\"]";
  if (!Array.isArray(value) || value.length === 0 || value.some((level) => typeof level !== 'string')) {
    throw invalidArgument(`trace_level must be ${expected}, got ${quote(value)}`);
  }
  const levels = new Set(value as string[]);
  if (levels.has('TENSORS')) {
    throw invalidArgument('trace_level TENSORS is not supported by Nereid: spans carry timings and never tensor data; use ["TIMESTAMPS"]');
  }
  for (const level of levels) {
    if (level !== 'OFF' && level !== 'TIMESTAMPS') throw invalidArgument(`trace_level '${level.slice(0, 40)}' is not a trace level (supported: OFF, TIMESTAMPS)`);
  }
  if (levels.size > 1) throw invalidArgument(`trace_level OFF cannot be combined with another level, got ${quote(value)}`);
  return levels.has('OFF') ? 'OFF' : 'TIMESTAMPS';
}

/** One field's value from the wire, checked. */
function parseField(name: string, value: unknown): TraceFields[TraceField] {
  switch (name) {
    case 'trace_level':
      return traceLevelOf(value);
    case 'trace_rate':
      return integerString(name, value, 1, 'a string holding a whole number of requests, 1 or more (one request in that many is traced), e.g. "1000"');
    case 'trace_count':
      return integerString(name, value, -1, 'a string holding the number of traces left to record, 0 or more, or "-1" for no limit');
    default:
      return integerString(name, value, 0, 'a string holding a number of traces, 0 or more ("0": spans leave on the exporter\'s own schedule)');
  }
}

export interface TraceSettingsOptions {
  /** Whether spans have somewhere to go; without an exporter tracing stays OFF and cannot be turned on. */
  exporting: boolean;
  /** How refusals name the settings that export spans (`traceSettings`, `traceEndpoint`): by default as a library caller sets them. */
  settingName?: SettingName;
}

export class TraceSettings {
  readonly exporting: boolean;
  /** What the server is started with to have an exporter, for the refusal's message. */
  private readonly exporterHint: string;
  private readonly refused: Readonly<Record<string, string>>;
  private readonly global: TracePolicy;
  /** Models with settings of their own: the fields they set, and the policy in effect for them. */
  private readonly models = new Map<string, { own: Partial<TraceFields>; policy: TracePolicy }>();

  constructor(options: TraceSettingsOptions) {
    this.exporting = options.exporting;
    const hints = exporterHints(options.settingName ?? optionKeyName);
    this.exporterHint = hints.start;
    this.refused = refusals(hints.otlp);
    this.global = new TracePolicy({ level: this.exporting ? 'TIMESTAMPS' : 'OFF', rate: 1, count: -1, logFrequency: 0 });
  }

  /** The policy deciding a model's requests: its own when it has one, else the global one. */
  policyFor(model: string): TracePolicy {
    return this.models.get(model)?.policy ?? this.global;
  }

  /** The settings in effect globally, or for one model. */
  settings(model?: string): TraceSettingAnswer {
    return (model === undefined ? this.global : this.policyFor(model)).answer();
  }

  /**
   * Applies a trace extension request and answers the settings now in effect. Every value is
   * checked before any is applied. For a model, `null` clears that field's override (the global
   * value applies again), and a request naming no setting clears all of them.
   */
  update(changes: Readonly<Record<string, unknown>>, model?: string): TraceSettingAnswer {
    const parsed = this.parse(changes, model !== undefined);
    if (model === undefined) {
      for (const [field, value] of parsed) this.setGlobal(field, value as TraceFields[TraceField]);
      return this.global.answer();
    }
    if (parsed.length === 0) {
      this.models.delete(model);
      return this.global.answer();
    }
    const entry = this.models.get(model) ?? { own: {}, policy: new TracePolicy(this.global.fields()) };
    for (const [field, value] of parsed) {
      if (value === null) {
        delete entry.own[field];
        entry.policy.set(field, this.global[field]);
      } else {
        (entry.own as Record<TraceField, unknown>)[field] = value;
        entry.policy.set(field, value);
      }
    }
    if (Object.keys(entry.own).length === 0) this.models.delete(model);
    else this.models.set(model, entry);
    return entry.policy.answer();
  }

  private parse(changes: Readonly<Record<string, unknown>>, forModel: boolean): [TraceField, TraceFields[TraceField] | null][] {
    const parsed: [TraceField, TraceFields[TraceField] | null][] = [];
    for (const [name, value] of Object.entries(changes)) {
      if (Object.hasOwn(this.refused, name)) throw invalidArgument(this.refused[name]!);
      const field = FIELD_OF[name];
      if (!field) throw invalidArgument(`unknown trace setting '${name.slice(0, 60)}' (settable: ${Object.keys(FIELD_OF).join(', ')})`);
      if (value === null) {
        if (!forModel) throw invalidArgument(`${name} cannot be cleared globally, only a model's override of it can (POST /v2/models/<model>/trace/setting)`);
        parsed.push([field, null]);
        continue;
      }
      const checked = parseField(name, value);
      if (checked === 'TIMESTAMPS' && !this.exporting) {
        throw invalidArgument(`tracing cannot be turned on: the server was started without a trace exporter; start it with ${this.exporterHint}`);
      }
      parsed.push([field, checked]);
    }
    return parsed;
  }

  /** A global change reaches every model that does not set that field itself. */
  private setGlobal(field: TraceField, value: TraceFields[TraceField]): void {
    this.global.set(field, value);
    for (const { own, policy } of this.models.values()) {
      if (!(field in own)) policy.set(field, value);
    }
  }
}
