/**
 * What the dashboard shows, read from the server's own numbers: the repository index, each loaded
 * version's statistics (the /v2/models/stats answer), its /monitor and /compare answers, the
 * metrics' histograms, and the process's CPU and memory. Nothing here counts anything: a snapshot
 * holds cumulative figures, and `intervalOf` turns two successive snapshots into rates, per-interval
 * means and percentiles, as a Prometheus query over two scrapes would.
 */
import { monitorAnswer } from '../../model/monitor-answer.js';
import { snapshotOf, type HistogramName, type HistogramSnapshot } from '../../observability/prometheus-metrics.js';
import { imageRoutesOf, type ImageRoutes, type Server } from '../../server/server.js';

/** Where the dashboard reads a version's histograms (PrometheusMetrics.histogramSnapshot); none: no percentiles. */
export type HistogramSource = (model: string, version: string) => Record<HistogramName, HistogramSnapshot> | undefined;

type VersionStatistics = ReturnType<Server['modelStatistics']>['model_stats'][number];
type LoadedVersion = ReturnType<Server['repository']['loadedVersions']>[number];

/** A version's key in the maps a snapshot is read through: no model name holds a NUL, so no two versions share one. */
const versionKey = (name: string, version: string | undefined) => `${name}\u0000${version}`;
type IndexRow = Awaited<ReturnType<Server['repositoryIndex']>>[number];

export interface VersionSnapshot {
  name: string;
  version: string;
  state?: string;
  reason?: string;
  traffic_share?: number;
  residency?: string;
  memory_bytes?: number;
  /** The version's entry of /v2/models/stats, as that route answers it. */
  stats?: VersionStatistics;
  /** What /metrics reads beside the statistics: requests in the model now, waiting in its queue, failures by code, OOD rows. */
  in_flight?: number;
  queued?: number;
  failures?: Record<string, number>;
  ood?: { checked: number; flagged: number };
  /** Cumulative histograms, as /metrics exposes them (seconds; batch_size in rows). */
  histograms?: Record<HistogramName, HistogramSnapshot>;
  /** Percentiles since load from those histograms, as an interval's are (ms; batch_size in rows): what a page opened after the traffic shows. */
  percentiles_since_load?: Partial<Record<HistogramName, Percentiles>>;
  /** Whether the version decodes images itself (one input with preprocess.image): /classify takes photos. */
  takes_images?: boolean;
  /** Which of /classify and /detect take its photos: the checks those endpoints make, passed or not. */
  image_routes?: ImageRoutes;
  /** What its quantization record says, when the version is a quantized one (the metadata's `parameters` say the same): a shadow or canary of int8 is told from its float source at a glance. */
  quantization?: { method: string; description: string; from_version: string; size_ratio: number };
  /** The /v2/models/{m}/versions/{v}/monitor answer, when the version has a reference profile. */
  monitor?: Record<string, unknown>;
  /** An ensemble's step models, in its config's order, each once: the page shows a pipeline with its parts. */
  steps?: string[];
  /** Top-1 confidence of the computed predictions since load, as nereid_prediction_confidence exposes it (versions with a reference profile). */
  confidence?: HistogramSnapshot;
}

export interface ModelSnapshot {
  name: string;
  versions: VersionSnapshot[];
  /** The /v2/models/{m}/compare answer's shadows, when the model copies traffic to a shadow version. */
  shadows?: ReturnType<Server['modelComparison']>['shadows'];
}

export interface DashboardSnapshot {
  /** Milliseconds since the epoch when it was read. */
  at: number;
  server: {
    version: string;
    live: boolean;
    ready: boolean;
    uptime_s: number;
    /** Cumulative CPU time of the process (user + system), seconds. */
    cpu_s: number;
    rss_bytes: number;
    heap_used_bytes: number;
    /** --cost-per-core-hour, or null. */
    usd_per_core_hour: number | null;
  };
  models: ModelSnapshot[];
}

export async function dashboardSnapshot(server: Server, histograms?: HistogramSource): Promise<DashboardSnapshot> {
  const [index, statistics] = [await server.repositoryIndex(), server.modelStatistics().model_stats];
  const statsOf = new Map(statistics.map((entry) => [versionKey(entry.name, entry.version), entry]));
  const loaded = new Map(server.repository.loadedVersions().map((version) => [versionKey(version.name, version.version), version]));
  const models = new Map<string, ModelSnapshot>();
  for (const row of index) {
    const model = models.get(row.name) ?? { name: row.name, versions: [] };
    models.set(row.name, model);
    model.versions.push(versionSnapshot(row, statsOf, loaded, histograms));
  }
  for (const model of models.values()) {
    if (!model.versions.some((version) => version.stats)) continue;
    const shadows = server.modelComparison(model.name).shadows;
    if (shadows.length > 0) model.shadows = shadows;
  }
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  return {
    at: Date.now(),
    server: {
      version: String(server.metadata().version),
      live: server.live,
      ready: server.ready,
      uptime_s: process.uptime(),
      cpu_s: (cpu.user + cpu.system) / 1e6,
      rss_bytes: memory.rss,
      heap_used_bytes: memory.heapUsed,
      usd_per_core_hour: server.options.costPerCoreHour ?? null,
    },
    models: [...models.values()],
  };
}

function versionSnapshot(
  row: IndexRow,
  statsOf: Map<string, VersionStatistics>,
  loaded: Map<string, LoadedVersion>,
  histograms?: HistogramSource,
): VersionSnapshot {
  const { name, version, state, reason, traffic_share, residency, memory_bytes } = row;
  const shown: VersionSnapshot = { name, version: version ?? '', state, reason, traffic_share, residency, memory_bytes };
  const key = versionKey(name, version);
  const model = loaded.get(key);
  if (version === undefined || !model) return shown;
  // The answer /monitor gives, read from the version in hand: a version loading or unloading has no lookup to throw from.
  const monitor = model.monitor ? monitorAnswer(name, version, model.monitor, undefined) : undefined;
  const histogramsNow = histograms?.(name, version);
  return {
    ...shown,
    stats: statsOf.get(key),
    in_flight: model.statistics.inFlight,
    queued: model.queued,
    failures: Object.fromEntries(model.statistics.failures),
    ood: { checked: model.statistics.oodChecked, flagged: model.statistics.oodFlagged },
    histograms: histogramsNow,
    percentiles_since_load: histogramsNow && percentilesOf(undefined, histogramsNow),
    takes_images: model.imageInputs.size === 1,
    image_routes: imageRoutesOf(model),
    monitor,
    confidence: model.monitor && snapshotOf(model.monitor.confidence),
    ...(model.config.ensemble_scheduling && { steps: [...new Set(model.config.ensemble_scheduling.step.map((step) => step.model_name))] }),
    ...(model.quantization && {
      quantization: { method: model.quantization.method, description: model.quantization.description, from_version: model.quantization.sourceVersion, size_ratio: model.quantization.sizeRatio },
    }),
  };
}

/** Percentiles of what was observed between two readings of a histogram; undefined when nothing was. */
export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

/**
 * The q-quantile of the observations between two readings, interpolated inside its bucket as
 * Prometheus's histogram_quantile does (or, with `interpolate` false, the bucket's upper bound: for
 * whole numbers such as batch sizes, where 0.95 rows means nothing); one past the last bound reads
 * as the last bound.
 */
export function quantileBetween(before: HistogramSnapshot | undefined, after: HistogramSnapshot, q: number, interpolate = true): number | undefined {
  const total = after.count - (before?.count ?? 0);
  if (total <= 0) return undefined;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (let index = 0; index < after.le.length; index += 1) {
    const count = after.cumulative[index] - (before?.cumulative[index] ?? 0);
    if (count >= rank) {
      const inBucket = count - lowerCount;
      return inBucket <= 0 || !interpolate ? after.le[index] : lowerBound + ((after.le[index] - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = after.le[index];
    lowerCount = count;
  }
  return after.le[after.le.length - 1];
}

function percentilesBetween(before: HistogramSnapshot | undefined, after: HistogramSnapshot | undefined, scale: number, interpolate: boolean): Percentiles | undefined {
  if (!after) return undefined;
  const at = (q: number) => quantileBetween(before, after, q, interpolate);
  const p50 = at(0.5);
  if (p50 === undefined) return undefined;
  return { p50: p50 * scale, p95: at(0.95)! * scale, p99: at(0.99)! * scale };
}

/** Each histogram's percentiles between two readings (the first absent: since load): durations in ms, batch sizes in rows as bucket bounds. */
function percentilesOf(before: Partial<Record<HistogramName, HistogramSnapshot>> | undefined, after: Partial<Record<HistogramName, HistogramSnapshot>>): Partial<Record<HistogramName, Percentiles>> {
  const percentiles: Partial<Record<HistogramName, Percentiles>> = {};
  for (const [name, histogram] of Object.entries(after) as [HistogramName, HistogramSnapshot][]) {
    const shown = name === 'batch_size' ? percentilesBetween(before?.[name], histogram, 1, false) : percentilesBetween(before?.[name], histogram, 1000, true);
    if (shown) percentiles[name] = shown;
  }
  return percentiles;
}

/** What happened to one version between two snapshots. */
export interface VersionInterval {
  requests_per_s: number;
  failures_per_s: number;
  inferences_per_s: number;
  executions_per_s: number;
  /** Mean time per request of each phase over the interval, ms (undefined: no request went through it). */
  mean_ms: Partial<Record<'queue' | 'compute_input' | 'compute_infer' | 'compute_output' | 'preprocess' | 'postprocess' | 'request', number>>;
  /** Percentiles over the interval from the metrics' histograms, ms (batch_size in rows: the bucket's upper bound, 1, 2, 4, 8…). */
  percentiles: Partial<Record<HistogramName, Percentiles>>;
  /** Rows per execution over the interval. */
  mean_batch_size?: number;
  /** Cache hits among cache lookups over the interval. */
  cache_hit_rate?: number;
  /** Failures by code over the interval. */
  failures: Record<string, number>;
}

export interface DashboardInterval {
  seconds: number;
  /** Process CPU over the interval, in cores (1 = one core busy). */
  cpu_cores: number;
  versions: Record<string, VersionInterval>;
}

type DurationName = keyof VersionInterval['mean_ms'];
const PHASES: readonly [DurationName, keyof NonNullable<VersionStatistics>['inference_stats']][] = [
  ['request', 'success'],
  ['queue', 'queue'],
  ['compute_input', 'compute_input'],
  ['compute_infer', 'compute_infer'],
  ['compute_output', 'compute_output'],
  ['preprocess', 'preprocess'],
  ['postprocess', 'postprocess'],
];

/** How an interval names a version: `<model>/<version>`, the key the page reads its rates by. */
const intervalKey = (version: VersionSnapshot) => `${version.name}/${version.version}`;

/** Rates, means and percentiles between two snapshots, keyed `<model>/<version>`. */
export function intervalOf(before: DashboardSnapshot, after: DashboardSnapshot): DashboardInterval {
  const seconds = Math.max((after.at - before.at) / 1000, 1e-3);
  const earlier = new Map<string, VersionSnapshot>(before.models.flatMap((model) => model.versions.map((version) => [intervalKey(version), version] as const)));
  const versions: Record<string, VersionInterval> = {};
  for (const version of after.models.flatMap((model) => model.versions)) {
    const now = version.stats;
    if (!now) continue;
    const key = intervalKey(version);
    const was = earlier.get(key);
    // Counters that started again since (the version left the model and came back) are read from zero, though they may
    // have passed the old ones by now; a reload keeps them counting, from the same counting_since.
    const then = was?.stats?.counting_since === now.counting_since ? was : undefined;
    const delta = (pick: (stats: VersionStatistics) => number) => pick(now) - (then?.stats ? pick(then.stats) : 0);
    const mean_ms: VersionInterval['mean_ms'] = {};
    for (const [name, field] of PHASES) {
      const count = delta((stats) => stats.inference_stats[field].count);
      if (count > 0) mean_ms[name] = delta((stats) => stats.inference_stats[field].ns) / count / 1e6;
    }
    // The metrics' histograms are the version's for the server's life, across its counters' restarts.
    const percentiles = percentilesOf(was?.histograms, version.histograms ?? {});
    const executions = delta((stats) => stats.execution_count);
    const rowsExecuted = delta((stats) => stats.batch_stats.reduce((sum, batch) => sum + batch.batch_size * batch.compute_infer.count, 0));
    const hits = delta((stats) => stats.inference_stats.cache_hit.count);
    const lookups = hits + delta((stats) => stats.inference_stats.cache_miss.count);
    const failures: Record<string, number> = {};
    for (const [code, count] of Object.entries(version.failures ?? {})) {
      const grew = count - (then?.failures?.[code] ?? 0);
      if (grew > 0) failures[code] = grew;
    }
    versions[key] = {
      requests_per_s: delta((stats) => stats.inference_stats.success.count) / seconds,
      failures_per_s: delta((stats) => stats.inference_stats.fail.count) / seconds,
      inferences_per_s: delta((stats) => stats.inference_count) / seconds,
      executions_per_s: executions / seconds,
      mean_ms,
      percentiles,
      mean_batch_size: executions > 0 ? rowsExecuted / executions : undefined,
      cache_hit_rate: lookups > 0 ? hits / lookups : undefined,
      failures,
    };
  }
  return { seconds, cpu_cores: Math.max(0, after.server.cpu_s - before.server.cpu_s) / seconds, versions };
}
