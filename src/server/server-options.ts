/**
 * The Server's options as a schema with their defaults, and how `nereid serve` names them: kept apart from the Server
 * so that the CLI can show the defaults (and commands other than serve can start) without loading the core.
 */
import { totalmem } from 'node:os';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Backend } from '../backends/backend.js';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import type { InferenceObserverFactory } from '../core/inference-observer.js';
import { flagNames, OptionError, refuseOptionValue, type SettingName } from '../core/options.js';
import type { TraceSettings } from '../observability/trace-settings.js';
import { monitorSettingsProblem, versionMonitorOptionsSchema } from '../monitoring/version-monitor.js';
import { idleMemoryReclaimerOptionsSchema } from './idle-memory-reclaimer.js';
import { parseMemoryBudget } from './model-residency.js';

export const serverOptionsSchema = z.object({
  /** The model repository folder, or several (Triton's repeated --model-repository): a model's name must be in one only. */
  modelRepository: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], { error: 'expected string (a folder) or an array of them' }),
  /**
   * Triton's --model-control-mode: 'none' loads everything at start and refuses load/unload requests;
   * 'explicit' loads what is asked (--load-model, the load API); 'poll' loads everything at start,
   * then follows the repository's changes every repositoryPollSecs and refuses load/unload requests;
   * 'on_demand' loads only pinned models (and loadModels) at start, every other model on its first
   * request, unloads the least recently used idle ones to keep within modelMemoryBudget, and takes
   * load/unload requests as explicit mode does.
   */
  modelControlMode: z.enum(['none', 'explicit', 'poll', 'on_demand']).default('none'),
  /** Triton's --repository-poll-secs: seconds between two scans of the repository in poll mode. */
  repositoryPollSecs: z.number().positive().default(15),
  /**
   * Bytes the models in memory may take, measured as the resident set's growth over each load, or a
   * fraction of the machine's memory ('0.5'); beyond it on-demand models (modelControlMode
   * 'on_demand', or config `parameters { residency: on_demand }`) are unloaded, least recently used first.
   */
  modelMemoryBudget: z
    .union([z.number().positive(), z.string()])
    .optional()
    .transform((value, context) => {
      if (value === undefined) return undefined;
      try {
        return parseMemoryBudget(value, totalmem());
      } catch (error) {
        context.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
  /** In on_demand mode, models loaded at start and never unloaded to make room (as config `parameters { residency: pinned }`). */
  pinModels: z.array(z.string()).default([]),
  /** The longest a request waits for its on-demand model to load before a 503 with Retry-After. */
  modelLoadWaitMs: z.number().int().positive().default(30_000),
  /** Models to load at start in explicit mode ('*' for all), like Triton's --load-model. */
  loadModels: z.array(z.string()).default([]),
  /** Triton's --strict-readiness: the server is ready only while every model it loaded at start is ready. */
  strictReadiness: z.boolean().default(true),
  /** max_batch_size for ONNX models whose config leaves it out and whose first dimension is dynamic (Triton's default). */
  defaultMaxBatchSize: z.number().int().nonnegative().default(4),
  /** Requests one model version may hold waiting for an instance; beyond it requests are refused with UNAVAILABLE. */
  maxQueueSize: z.number().int().positive().default(1024),
  /** Bytes of inputs one model version may hold queued (a config's max_queue_bytes may lower it per priority level). */
  maxQueueBytes: z.number().int().positive().default(128 * 1024 * 1024),
  /**
   * The longest a request may expect to wait in a queue when neither its deadline nor its model's
   * queue timeout says: under overload, a request that would wait longer is refused at once (503,
   * Retry-After) instead of being answered after its client has given up. A backlog outlasts the
   * load that made it by about this plus one batch: 800 ms keeps that under a second.
   */
  maxQueueWaitMs: z.number().int().positive().default(800),
  /** Bytes of request bodies held at once across the server (read, decoded, queued, running); beyond it requests are refused with 503. */
  maxInflightBytes: z.number().int().positive().default(256 * 1024 * 1024),
  /** Price of one core-hour in dollars (--cost-per-core-hour): statistics then price each model's predictions. */
  costPerCoreHour: z.number().nonnegative().optional(),
  /** Drift and accuracy windows of versions with a reference profile; false: profiles are not read (no OOD flags, nothing to /monitor). */
  // drift and ood are each model's own (its config's monitoring section, checked against its profile), not the server's.
  monitoring: z.union([z.literal(false), versionMonitorOptionsSchema.omit({ drift: true, ood: true })]).prefault({}),
  /** Full garbage collections when the server goes quiet after a burst of large requests (see IdleMemoryReclaimer); false: none. */
  reclaimIdleMemory: z.union([z.literal(false), idleMemoryReclaimerOptionsSchema]).prefault({}),
  /**
   * --allow-code-models: models whose backend runs code from the repository (backend "javascript")
   * may load. Off, such a model (or a load request's config that asks for one) is refused.
   */
  allowCodeModels: z.boolean().default(false),
  /**
   * --allow-client-shm (Triton's flag): clients may register system shared memory regions and send
   * tensors through them. Off, the shared memory API and tensors that name a region are refused.
   */
  allowClientShm: z.boolean().default(false),
  /**
   * --client-shm-from-any-address: with allowClientShm, clients at any address may register regions, not only loopback
   * ones (a client in a container sharing this machine's IPC namespace but not its network).
   */
  clientShmFromAnyAddress: z.boolean().default(false),
});

/** Options of the Server that `nereid serve` sets from a flag that is not the key in kebab case (the front ends name theirs: httpFlagName, grpcFlagName). */
const SERVE_FLAGS: Readonly<Record<string, string>> = {
  loadModels: '--load-model',
  pinModels: '--pin-model',
  traceSettings: '--trace-exporter',
  'monitoring.window.capacity': '--monitor-window',
  'monitoring.evaluateEvery': '--monitor-evaluate-every',
};
/** Flags of `nereid serve` that take no value: given, they turn their option on. */
const SERVE_SWITCHES: ReadonlySet<string> = new Set(['--allow-code-models', '--allow-client-shm', '--client-shm-from-any-address']);

/**
 * The Server's options named as `nereid serve`'s flags, for a server the CLI starts (option settingName):
 * `--max-inflight-bytes`, `--model-control-mode explicit`, `--allow-client-shm`, `--monitoring false`.
 */
export const serveFlagName: SettingName = flagNames('', SERVE_FLAGS, SERVE_SWITCHES);

/** Refuses monitoring settings each valid alone but not together (monitorSettingsProblem), naming them as the server's caller set them. */
export function checkMonitoringOptions(what: string, monitoring: z.output<typeof serverOptionsSchema>['monitoring'], settingName: SettingName): void {
  if (monitoring === false) return;
  const problem = monitorSettingsProblem(monitoring, (key) => settingName(`monitoring.${key}`));
  if (problem !== undefined) throw new OptionError(`${what}: ${problem}`);
}

export type ServerOptions = z.input<typeof serverOptionsSchema> & {
  /** The execution engines models may ask for; the first serves models whose config names none. */
  backends: readonly Backend[];
  logger?: Logger;
  /** Services that watch every model version's requests (metrics, tracing), beside its statistics. */
  observers?: InferenceObserverFactory[];
  /** Where responses are cached for models whose config enables response_cache; none: no caching. */
  responseCache?: ResponseCacheStore;
  /** The tracing's settings (Tracing.settings), for the trace extension; none: tracing is off and cannot be turned on. */
  traceSettings?: TraceSettings;
  /** How messages name these options (a refusal's "start it with …"); default: by their keys. The CLI passes its flags' names. */
  settingName?: SettingName;
};

/** The options a Server reads itself, beside its schema's. */
export const SERVER_OTHER_OPTIONS = { backends: true, logger: true, observers: true, responseCache: true, traceSettings: true, settingName: true } satisfies Record<
  Exclude<keyof ServerOptions, keyof z.input<typeof serverOptionsSchema>>,
  true
>;

/** What the server and its front ends call on a logger (child loggers per component, the levels): a pino Logger has them all. */
const LOGGER_METHODS = ['child', 'info', 'warn', 'error', 'debug'] as const;

/** Refuses a `logger` that is not pino-like when it is given, not when a front end first calls `logger.child`. */
export function checkLoggerOption(what: string, logger: unknown): void {
  if (logger === undefined) return;
  const methods = typeof logger === 'object' && logger !== null ? (logger as Record<string, unknown>) : {};
  if (LOGGER_METHODS.some((method) => typeof methods[method] !== 'function')) {
    refuseOptionValue(what, 'logger', `a pino Logger (with ${LOGGER_METHODS.join(', ')} functions)`, logger);
  }
}

/** What stop() takes: how long the front ends may take to answer what they have received. */
export const stopOptionsSchema = z.object({
  /** After this, the connections still open are cut (the CLI's --shutdown-timeout, in ms); at most what a timer can wait. */
  timeoutMs: z.number().int().positive().max(2_147_483_647).default(30_000),
});
