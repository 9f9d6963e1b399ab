/**
 * OpenTelemetry traces of inference requests. A traced request's span `infer <model>` starts with
 * it, parented on the client's W3C `traceparent` when one came with it, so that the requests made
 * on its behalf (an ensemble's step models, a JavaScript handler's context.infer calls) are its
 * children; it ends with the request, with child spans for its phases (preprocess, queue,
 * compute_input, compute_infer, compute_output, postprocess) laid out back to back from the
 * timings the path already measures. A request that is not sampled costs one check.
 *
 * Which requests are traced: the trace extension's settings (trace-settings.ts: level, one in
 * trace_rate, trace_count left) decide first, per model; a request they pick then goes through the
 * OpenTelemetry sampler (the `sampleRate` fraction, or the client's sampled flag).
 */
import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';
import type { Context, HrTime, Span, TextMapGetter, Tracer } from '@opentelemetry/api';
import type * as OtelCore from '@opentelemetry/core';
import type * as OtlpExporter from '@opentelemetry/exporter-trace-otlp-http';
import type * as OtelResources from '@opentelemetry/resources';
import type * as OtelTraceSdk from '@opentelemetry/sdk-trace-base';
import type { BasicTracerProvider, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type * as OtelSemanticConventions from '@opentelemetry/semantic-conventions';
import { z } from 'zod';
import { parseOptions, type SettingName } from '../core/options.js';
import type { ExecutionRecord, InferenceObserver, InferenceObserverFactory, RequestRecord } from '../core/inference-observer.js';
import type { TimingKey } from '../core/timings.js';
import { VERSION } from '../version.js';
import { TraceSettings } from './trace-settings.js';

export const DEFAULT_TRACE_ENDPOINT = 'http://127.0.0.1:4318/v1/traces';

const requirePackage = createRequire(import.meta.url);
let openTelemetry: { api: typeof OtelApi; core: typeof OtelCore; resources: typeof OtelResources; sdk: typeof OtelTraceSdk; conventions: typeof OtelSemanticConventions } | undefined;
/**
 * OpenTelemetry, loaded (synchronously, from its CommonJS build) when the first Tracing is made: 120–200 ms of import
 * that a server without tracing, and every other command, does not pay. Its API keeps its state in one global, so a
 * user's own OpenTelemetry in ECMAScript modules sees the same context.
 */
function otel() {
  openTelemetry ??= {
    api: requirePackage('@opentelemetry/api') as typeof OtelApi,
    core: requirePackage('@opentelemetry/core') as typeof OtelCore,
    resources: requirePackage('@opentelemetry/resources') as typeof OtelResources,
    sdk: requirePackage('@opentelemetry/sdk-trace-base') as typeof OtelTraceSdk,
    conventions: requirePackage('@opentelemetry/semantic-conventions') as typeof OtelSemanticConventions,
  };
  return openTelemetry;
}

/** Tracing's settings and their defaults. */
export const tracingSettingsSchema = z.object({
  /** OTLP/HTTP traces URL. */
  endpoint: z.string().url().default(DEFAULT_TRACE_ENDPOINT),
  /** Fraction of new traces recorded, 0..1; a client's sampled flag is followed (parent-based). */
  sampleRate: z.number().min(0, 'trace sample rate must be between 0 and 1').max(1, 'trace sample rate must be between 0 and 1').default(1),
  /** 'batch' exports in the background; 'simple' exports each span as it ends (tests). */
  processor: z.enum(['batch', 'simple']).default('batch'),
  /** service.name of the spans. */
  serviceName: z.string().min(1).default('nereid'),
});

export type TracingOptions = z.input<typeof tracingSettingsSchema> & {
  /** Where spans go: OTLP/HTTP to `endpoint`, or any SpanExporter (tests pass an InMemorySpanExporter). */
  exporter: 'otlp' | SpanExporter;
  /** How the trace settings' refusals name the exporter's settings: by default as here (a command passes its flags' names). */
  settingName?: SettingName;
};

/** The phases of RequestTimings in the order a request goes through them, with their span names. */
const PHASES: readonly (readonly [TimingKey, string])[] = [
  ['preprocessNs', 'preprocess'],
  ['queueNs', 'queue'],
  ['computeInputNs', 'compute_input'],
  ['computeInferNs', 'compute_infer'],
  ['computeOutputNs', 'compute_output'],
  ['postprocessNs', 'postprocess'],
];

const carrierGetter: TextMapGetter<string> = {
  keys: () => ['traceparent'],
  get: (traceparent, key) => (key === 'traceparent' ? traceparent : undefined),
};

function nanoseconds(ns: number): HrTime {
  const whole = Math.max(0, Math.round(ns));
  return [Math.floor(whole / 1e9), whole % 1e9];
}

export class Tracing {
  readonly provider: BasicTracerProvider;
  /** The trace extension's settings, which the front ends read and change (GET/POST /v2/trace/setting). */
  readonly settings: TraceSettings;
  private readonly propagator = new (otel().core.W3CTraceContextPropagator)();

  /** Pass to ServerOptions.observers. */
  readonly observer: InferenceObserverFactory = (model, version) => new TracingObserver(this, model, version);

  constructor(options: TracingOptions) {
    const settings = parseOptions('Tracing', tracingSettingsSchema, options, ['exporter', 'settingName']);
    this.settings = new TraceSettings({ exporting: true, settingName: options?.settingName });
    const given = options?.exporter as unknown;
    // A misspelt 'otlp' would otherwise stand in for an exporter object and fail only at the first export or shutdown.
    if (given !== 'otlp' && (typeof given !== 'object' || given === null || typeof (given as SpanExporter).export !== 'function')) {
      throw new TypeError(`Tracing: option 'exporter' expects 'otlp' or a SpanExporter (an object with export() and shutdown()), got ${typeof given === 'string' ? `'${given}'` : String(given)}`);
    }
    const { sdk, resources, conventions } = otel();
    const exporter =
      options.exporter === 'otlp' ? new (requirePackage('@opentelemetry/exporter-trace-otlp-http') as typeof OtlpExporter).OTLPTraceExporter({ url: settings.endpoint }) : options.exporter;
    const processor: SpanProcessor = settings.processor === 'simple' ? new sdk.SimpleSpanProcessor(exporter) : new sdk.BatchSpanProcessor(exporter);
    this.provider = new sdk.BasicTracerProvider({
      resource: resources.resourceFromAttributes({ [conventions.ATTR_SERVICE_NAME]: settings.serviceName, [conventions.ATTR_SERVICE_VERSION]: VERSION }),
      sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(settings.sampleRate) }),
      spanProcessors: [processor],
    });
  }

  /** The client's trace context from its `traceparent`, or the root context when there is none (or it is malformed). */
  parentOf(traceparent: string | undefined): Context {
    const root = otel().api.ROOT_CONTEXT;
    return traceparent ? this.propagator.extract(root, traceparent, carrierGetter) : root;
  }

  forceFlush(): Promise<void> {
    return this.provider.forceFlush();
  }

  /** log_frequency's export: started now, finished in the background; a failed export is the exporter's to report. */
  flushInBackground(): void {
    this.provider.forceFlush().catch(() => undefined);
  }

  /** Exports what is pending and stops. */
  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}

/** One model version's spans. */
class TracingObserver implements InferenceObserver {
  private readonly tracer: Tracer;
  private readonly name: string;

  constructor(
    private readonly tracing: Tracing,
    private readonly model: string,
    private readonly version: string,
  ) {
    this.tracer = tracing.provider.getTracer('nereid', VERSION);
    this.name = `infer ${model}`;
  }

  /** Spans started (traceStart) whose request has not ended yet; `flush`: log_frequency's turn came. */
  private readonly open = new WeakMap<RequestRecord, { span: Span; flush: boolean }>();

  onExecution(_record: ExecutionRecord): void {}

  private policy() {
    return this.tracing.settings.policyFor(this.model);
  }

  traceStart(record: RequestRecord): string | undefined {
    if (!this.policy().sample()) return undefined;
    const { api, core } = otel();
    const span = this.tracer.startSpan(
      this.name,
      {
        kind: api.SpanKind.SERVER,
        startTime: core.millisToHrTime(record.startedAt),
        attributes: { 'nereid.model.name': this.model, 'nereid.model.version': this.version },
      },
      this.tracing.parentOf(record.traceparent),
    );
    const own = span.spanContext();
    const traceparent = `00-${own.traceId}-${own.spanId}-${own.traceFlags === api.TraceFlags.SAMPLED ? '01' : '00'}`;
    // A span the sampler dropped still passes its decision on, so the work done for it is not traced either.
    if (span.isRecording()) this.open.set(record, { span, flush: this.policy().recorded() });
    return traceparent;
  }

  onRequestEnd(record: RequestRecord): void {
    const open = this.open.get(record);
    if (!open) return; // not sampled: nothing more to build
    this.open.delete(record);
    const { span } = open;
    const { api, core, conventions } = otel();
    const { addHrTimes, millisToHrTime } = core;
    const start = millisToHrTime(record.startedAt);
    const end = addHrTimes(start, nanoseconds(record.totalNs));
    span.setAttribute('nereid.inference.rows', record.rows);
    if (record.requestId !== undefined) span.setAttribute('nereid.request.id', record.requestId);
    if (record.cache) span.setAttribute('nereid.cache.hit', record.cache.hit);
    if (record.ood) {
      span.setAttribute('nereid.ood.checked', record.ood.checked);
      span.setAttribute('nereid.ood.flagged', record.ood.flagged);
    }
    if (!record.success) {
      span.setAttribute(conventions.ATTR_ERROR_TYPE, record.errorCode ?? 'INTERNAL');
      // The reason, as logs carry it: a trace of a failed request says why without a trip to the logs.
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: record.errorReason ?? record.errorCode });
    }
    const timings = record.timings;
    if (timings?.steps) {
      // An ensemble's steps overlap: each gets its own span, where it ran, instead of phases laid back to back.
      const parent = api.trace.setSpan(api.ROOT_CONTEXT, span);
      for (const step of timings.steps) {
        const stepStart = millisToHrTime(step.startedAt);
        const stepSpan = this.tracer.startSpan(
          `step ${step.step} ${step.model}`,
          { kind: api.SpanKind.INTERNAL, startTime: stepStart, attributes: { 'nereid.ensemble.step': step.step, 'nereid.model.name': step.model } },
          parent,
        );
        if (step.errorCode) {
          stepSpan.setAttribute(conventions.ATTR_ERROR_TYPE, step.errorCode);
          stepSpan.setStatus({ code: api.SpanStatusCode.ERROR, message: step.errorCode });
        }
        stepSpan.end(addHrTimes(stepStart, nanoseconds(step.totalNs)));
      }
    } else if (timings && !record.cache?.hit) {
      const parent = api.trace.setSpan(api.ROOT_CONTEXT, span);
      const totalNs = Math.max(0, Math.round(record.totalNs));
      let offsetNs = 0;
      for (const [key, phase] of PHASES) {
        const ns = timings[key];
        if (ns === undefined) continue;
        // Back to back from the request's start; never past the parent's end.
        const from = Math.min(offsetNs, totalNs);
        offsetNs = Math.min(from + Math.max(0, Math.round(ns)), totalNs);
        this.tracer
          .startSpan(phase, { kind: api.SpanKind.INTERNAL, startTime: addHrTimes(start, nanoseconds(from)) }, parent)
          .end(addHrTimes(start, nanoseconds(offsetNs)));
      }
    }
    span.end(end);
    if (open.flush) this.tracing.flushInBackground();
  }
}

/** Tracing as the CLI configures it: off ('none'), or OTLP/HTTP to an endpoint. */
export function createTracing(options: Omit<TracingOptions, 'exporter'> & { exporter: 'none' | TracingOptions['exporter'] }): Tracing | undefined {
  if (options.exporter === 'none') return undefined;
  return new Tracing({ ...options, exporter: options.exporter });
}
