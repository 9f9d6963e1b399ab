/**
 * What `nereid tune` searches and how it judges: the serving settings of one candidate, the
 * candidates a measured batch curve leaves worth trying, the Pareto front of throughput against
 * tail latency, and the winner under an objective. Pure functions, so the search's decisions are
 * tested without measuring anything.
 */

export type ExecutionThread = 'auto' | 'main' | 'worker';
export type GraphLevel = 'basic' | 'extended' | 'all';

/** One serving configuration of the model: the fields `nereid tune` varies. */
export interface Candidate {
  version: string;
  maxBatchSize: number;
  /** Microseconds a batch may wait for company (dynamic_batching.max_queue_delay_microseconds); with a target latency, the bound on a hold. */
  maxQueueDelayUs: number;
  /** Latency-aware batching's goal (dynamic_batching.target_latency_us); 0: the fixed delay above. */
  targetLatencyUs: number;
  instances: number;
  threadsPerInstance: number;
  executionThread: ExecutionThread;
  graphLevel: GraphLevel;
}

/** One concurrency level's figures for a candidate. */
export interface LevelResult {
  concurrency: number;
  /** Inferences (rows) answered per second. */
  throughput: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** Process CPU seconds per inference (server core and load generator together, in process). */
  cpuSecondsPerInference: number;
  /** Rows per model execution, from the version's statistics. */
  meanBatchRows: number;
  errors: number;
}

export interface Measured {
  candidate: Candidate;
  /** Why it was tried: 'current config', 'instances', 'batch size', 'queue delay', 'latency-aware', 'graph', 'version'. */
  step: string;
  levels: LevelResult[];
  /** Seconds into the search when its measurement began: the budget is checked then, for what it is planned to take. */
  startedAtSeconds?: number;
}

export type Objective = { kind: 'throughput' } | { kind: 'p99'; maxMs: number } | { kind: 'cost'; maxUsdPer1000: number; usdPerCoreHour: number };

export const usdPer1000 = (cpuSecondsPerInference: number, usdPerCoreHour: number) => (cpuSecondsPerInference * 1000 * usdPerCoreHour) / 3600;

/** Whether one level's measurement counts under the objective: answered without errors, within its bound. */
function meetsObjective(level: LevelResult, objective: Objective): boolean {
  if (level.errors > 0 || level.throughput <= 0) return false;
  if (objective.kind === 'p99') return level.p99Ms <= objective.maxMs;
  if (objective.kind === 'cost') return usdPer1000(level.cpuSecondsPerInference, objective.usdPerCoreHour) <= objective.maxUsdPer1000;
  return true;
}

/**
 * The level a candidate is judged at under the objective: the one with the highest throughput among
 * those that meet the objective's bound (p99 under the limit, cost under the limit); undefined when
 * none does.
 */
export function judgedLevel(measured: Measured, objective: Objective): LevelResult | undefined {
  const eligible = measured.levels.filter((level) => meetsObjective(level, objective));
  let best: LevelResult | undefined;
  for (const level of eligible) if (!best || level.throughput > best.throughput) best = level;
  return best;
}

/** The median of the rounds' ratios: the lower middle one of an even count, so that two rounds must both show a gain. */
function lowerMedian(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * A level the chosen config gave up in the confirmation rounds: the median of its throughput ratios there, and why
 * (`throughput`: fewer inferences/s; at a median of 0, `bound`: it missed the objective's bound where the written
 * config met it, or `errors`: it answered with errors).
 */
export interface LostLevel {
  concurrency: number;
  ratio: number;
  reason: 'throughput' | 'bound' | 'errors';
}

/**
 * The levels at which the chosen config gave up more than minGain of the written one's throughput, by the median of
 * the rounds: a ratio under 1 / (1 + minGain), the mirror of the gain minGain asks (4.8 % at 0.05). At a level where
 * only one of the two meets the objective's bound, meeting it is the gain (a round's ratio counts as infinite) and
 * missing it the loss (0).
 */
export function levelsLost(rounds: readonly { current: Measured; chosen: Measured }[], objective: Objective, minGain: number): LostLevel[] {
  const concurrencies = [...new Set(rounds.flatMap((round) => round.current.levels.map((level) => level.concurrency)))].sort((a, b) => a - b);
  return concurrencies.flatMap((concurrency): LostLevel[] => {
    let zeroReason: LostLevel['reason'] = 'errors';
    const levelRatios = rounds.map(({ current, chosen }) => {
      const [before, after] = [current, chosen].map((measured) => measured.levels.find((level) => level.concurrency === concurrency));
      if (!before || before.errors > 0 || before.throughput <= 0) return Number.POSITIVE_INFINITY;
      if (!after || after.errors > 0 || after.throughput <= 0) return 0;
      const [met, meets] = [meetsObjective(before, objective), meetsObjective(after, objective)];
      if (met === meets) return after.throughput / before.throughput;
      if (!meets) zeroReason = 'bound';
      return meets ? Number.POSITIVE_INFINITY : 0;
    });
    const median = lowerMedian(levelRatios);
    return median * (1 + minGain) < 1 ? [{ concurrency, ratio: median, reason: median === 0 ? zeroReason : 'throughput' }] : [];
  });
}

/**
 * Whether a chosen config's gain over the config as written holds when both are measured again, in turn: each round's
 * ratio of their throughputs at the levels the objective judges (0 when the chosen one meets the objective at no level,
 * a gain when only the config as written misses it), and the verdict on the rounds' median (the lower middle one of an
 * even count): at least 1 + minGain. On a shared machine one measurement of each can differ by more than the gain.
 * A gain at the judged level does not pay for a loss at another level measured: where the chosen config's median
 * throughput falls below the written one's by more than minGain (ratio under 1 / (1 + minGain)), it is not held, and
 * `lost` names those levels (levelsLost). A team that measures c=1 and c=16 serves both.
 */
export function confirmedGain(
  rounds: readonly { current: Measured; chosen: Measured }[],
  objective: Objective,
  minGain: number,
): { ratios: number[]; ratio: number; held: boolean; lost: LostLevel[] } {
  const ratios = rounds.map(({ current, chosen }) => {
    const [before, after] = [judgedLevel(current, objective)?.throughput, judgedLevel(chosen, objective)?.throughput];
    if (after === undefined) return 0;
    return before === undefined ? Number.POSITIVE_INFINITY : after / before;
  });
  const ratio = lowerMedian(ratios);
  const lost = levelsLost(rounds, objective, minGain);
  return { ratios, ratio, held: ratio >= 1 + minGain && lost.length === 0, lost };
}

/** The level a candidate is shown and compared at: the one the objective judged, else its highest throughput. */
export function shownLevel(measured: Measured, objective: Objective): LevelResult {
  return judgedLevel(measured, objective) ?? measured.levels.reduce((top, level) => (level.throughput > top.throughput ? level : top));
}

/** The index of the best candidate under the objective (ties: the earlier one, so the current config wins a tie); undefined when none qualifies. */
export function chooseWinner(results: readonly Measured[], objective: Objective): number | undefined {
  let winner: number | undefined;
  let best = -Infinity;
  results.forEach((measured, index) => {
    const level = judgedLevel(measured, objective);
    if (level && level.throughput > best) {
      best = level.throughput;
      winner = index;
    }
  });
  return winner;
}

/** A candidate in the order the confirmation tries them, and why it stands where it does. */
export interface Preference {
  index: number;
  /** No level measured in the search fell below 1 / (1 + minGain) of the written config's (levelsLost). */
  keptLevels: boolean;
  /** Latency-aware, within minGain of the fastest of its group at the judged level, and so put ahead of it. */
  latencyAwareNearFastest: boolean;
}

/**
 * The served version's configs worth writing, in the order the confirmation tries them (results[0] is the config as
 * written): those that beat it by `minGain` at the level the objective judges; empty when none does, undefined when
 * none meets the objective. Those that kept every level in the search's own figures (levelsLost, as the confirmation
 * will judge them) come before those that did not, each group fastest first at the judged level — except that a
 * latency-aware config within `minGain` of its group's fastest goes first: it measured as well at the levels tried, and
 * it follows the traffic when it leaves them (no hold when requests are few, holding under load), where a fixed delay
 * suits one load and costs a lone request its whole length.
 */
export function confirmationOrder(results: readonly Measured[], objective: Objective, minGain: number): Preference[] | undefined {
  const served = results[0]?.candidate.version;
  const indices = results.flatMap((measured, index) => (measured.candidate.version === served ? [index] : []));
  if (!indices.some((index) => judgedLevel(results[index], objective))) return undefined;
  const judgedThroughput = (index: number) => judgedLevel(results[index], objective)?.throughput ?? -Infinity;
  const current = judgedLevel(results[0], objective)?.throughput;
  // Within minGain of the config as written (which met the objective): keep it.
  const gaining = indices.filter((index) => index > 0 && judgedThroughput(index) > -Infinity && (current === undefined || judgedThroughput(index) >= current * (1 + minGain)));
  const keptLevels = (index: number) => levelsLost([{ current: results[0], chosen: results[index] }], objective, minGain).length === 0;
  const inOrder = (group: number[], kept: boolean): Preference[] => {
    const fastestFirst = [...group].sort((a, b) => judgedThroughput(b) - judgedThroughput(a) || a - b);
    const nearFastest = (index: number) => results[index].candidate.targetLatencyUs > 0 && judgedThroughput(index) * (1 + minGain) >= judgedThroughput(fastestFirst[0]);
    const preference = (index: number) => ({ index, keptLevels: kept, latencyAwareNearFastest: nearFastest(index) && index !== fastestFirst[0] });
    return [...fastestFirst.filter(nearFastest), ...fastestFirst.filter((index) => !nearFastest(index))].map(preference);
  };
  return [...inOrder(gaining.filter(keptLevels), true), ...inOrder(gaining.filter((index) => !keptLevels(index)), false)];
}

/**
 * The concurrency levels at which each candidate is on the Pareto front of higher throughput and
 * lower p99, over every operating point measured (each candidate at each level, as Model Analyzer
 * plots them): a p99 taken at c=1 is no rival to one at c=32, so candidates are not compared at
 * whichever level each shows. Levels with errors or no throughput are no operating points.
 */
export function paretoLevels(results: readonly Measured[]): number[][] {
  const points = results.flatMap((measured, index) => measured.levels.filter((level) => level.errors === 0 && level.throughput > 0).map((level) => ({ index, level })));
  const onFront = paretoFront(points.map((point) => point.level));
  const levels = results.map((): number[] => []);
  points.forEach((point, at) => {
    if (onFront[at]) levels[point.index].push(point.level.concurrency);
  });
  return levels;
}

/** Whether each point is on the Pareto front of higher throughput and lower p99: no other point is at least as good on both and better on one. */
export function paretoFront(points: readonly { throughput: number; p99Ms: number }[]): boolean[] {
  return points.map((point, index) =>
    points.every(
      (other, otherIndex) =>
        otherIndex === index || !(other.throughput >= point.throughput && other.p99Ms <= point.p99Ms && (other.throughput > point.throughput || other.p99Ms < point.p99Ms)),
    ),
  );
}

/**
 * The goal of the latency-aware candidate, in µs: the objective's p99 bound (never rounded past it), or else the
 * config's own `target_latency_us` (a goal a team set, which one noisy measurement of its p99 on a busy machine must not
 * loosen), or else the p99 the config as written gives where it is judged (a tail its users already live with);
 * undefined when there is none to aim at (no request of the written config finished inside a measurement).
 */
export function latencyTargetUs(objective: Objective, current: Measured): number | undefined {
  if (objective.kind !== 'p99' && current.candidate.targetLatencyUs > 0) return current.candidate.targetLatencyUs;
  const goalMs = objective.kind === 'p99' ? objective.maxMs : shownLevel(current, objective).p99Ms;
  return Number.isFinite(goalMs) && goalMs > 0 ? Math.max(1, Math.floor(goalMs * 1000)) : undefined;
}

/** The settings a search's time follows from (tune's options). */
export interface SearchTimes {
  concurrency: readonly number[];
  repeats: number;
  warmupSeconds: number;
  durationSeconds: number;
  confirmRounds: number;
  budgetSeconds: number;
}

/** Loading a candidate (sessions, warm-up) is allowed this much on top of its measurement. */
const CANDIDATE_LOAD_SECONDS = 2;

/** The batch curve times each batch size for at most this long. */
export const BATCH_CURVE_MS_PER_SIZE = 400;

/** Seconds one candidate takes to measure, load included. */
export function candidateSeconds({ concurrency, repeats, warmupSeconds, durationSeconds }: SearchTimes): number {
  return concurrency.length * repeats * (warmupSeconds + durationSeconds) + CANDIDATE_LOAD_SECONDS;
}

/**
 * Why `--budget-s` cannot compare a single config with the one as written, or undefined when it can: the search
 * keeps the confirmation rounds' time out of its share, so a budget below the config as written, the batch curve,
 * one candidate and its confirmation measures the written config alone — and a report of one row answers nothing.
 * `batchSizes`: how many sizes the batch curve times.
 */
export function budgetTooShort(times: SearchTimes, batchSizes: number): string | undefined {
  const perConfig = candidateSeconds(times);
  const curve = (batchSizes * BATCH_CURVE_MS_PER_SIZE) / 1000;
  const confirmation = 2 * times.confirmRounds * perConfig;
  const needed = Math.ceil(2 * perConfig + curve + confirmation);
  if (times.budgetSeconds >= needed) return undefined;
  const seconds = (value: number) => `${Number(value.toFixed(1))} s`;
  return (
    `--budget-s ${times.budgetSeconds} is too short to compare any config with the one as written: each config takes about ${seconds(perConfig)} to measure ` +
    `(${times.concurrency.length} --concurrency level(s) × (--warmup-s ${times.warmupSeconds} + --duration-s ${times.durationSeconds}) × --repeats ${times.repeats}, and ${CANDIDATE_LOAD_SECONDS} s to load), ` +
    `the batch curve up to ${seconds(curve)}` +
    (times.confirmRounds > 0 ? ` and confirming a winner ${seconds(confirmation)} (--confirm-rounds ${times.confirmRounds} × 2 configs)` : '') +
    `, so the config as written and one candidate need ${needed} s; give --budget-s ${needed} or more (each further config ${seconds(perConfig)}), ` +
    `or shorten each measurement (--warmup-s, --duration-s)${times.confirmRounds > 0 ? ' or the confirmation (--confirm-rounds)' : ''}`
  );
}

/**
 * The versions the search's version step measures: those `named` (--versions), once each, or every folder when none
 * is. A named version without a folder is refused before anything is measured, naming the folders there are.
 */
export function versionsToMeasure(named: readonly string[], folders: readonly string[], model: string): string[] {
  if (named.length === 0) return [...folders];
  const missing = named.filter((version) => !folders.includes(version));
  if (missing.length > 0) {
    throw new Error(`--versions ${named.join(',')}: '${model}' has no folder for version ${missing.join(', ')} (its version folders: ${folders.join(', ') || 'none'})`);
  }
  return [...new Set(named)];
}

/** Powers of two up to `max`, and `max` itself. */
export function batchSizesUpTo(max: number): number[] {
  const sizes: number[] = [];
  for (let size = 1; size < max; size *= 2) sizes.push(size);
  sizes.push(max);
  return sizes;
}

/**
 * The max_batch_size values worth serving with, from the measured cost per row of each batch size:
 * the cheapest, and the smallest within `tolerance` of it (the same throughput for less waiting).
 * Larger sizes than the cheapest only add latency, so they are pruned.
 */
export function batchSizeCandidates(costPerRowNs: ReadonlyMap<number, number>, tolerance = 0.1): number[] {
  const sizes = [...costPerRowNs.keys()].sort((a, b) => a - b);
  if (sizes.length === 0) return [];
  let cheapest = sizes[0];
  for (const size of sizes) if (costPerRowNs.get(size)! < costPerRowNs.get(cheapest)!) cheapest = size;
  const bound = costPerRowNs.get(cheapest)! * (1 + tolerance);
  const smallest = sizes.find((size) => costPerRowNs.get(size)! <= bound)!;
  return smallest === cheapest ? [cheapest] : [smallest, cheapest];
}

/**
 * Ways to split `cores` between instances: one instance with every core, one per core, and between
 * them halvings (2 × cores/2, …). The rest differ from these by a thread here or there.
 */
export function instanceSplits(cores: number): { instances: number; threadsPerInstance: number }[] {
  const splits = new Map<number, { instances: number; threadsPerInstance: number }>();
  for (let instances = 1; instances <= cores; instances *= 2) splits.set(instances, { instances, threadsPerInstance: Math.max(1, Math.floor(cores / instances)) });
  splits.set(cores, { instances: cores, threadsPerInstance: 1 });
  return [...splits.values()];
}

export function describeCandidate(candidate: Candidate): string {
  const delay =
    candidate.maxBatchSize === 0
      ? ''
      : candidate.targetLatencyUs > 0
        ? ` latency-aware ${candidate.targetLatencyUs} µs (hold ≤ ${candidate.maxQueueDelayUs || '∞'} µs)`
        : ` delay ${candidate.maxQueueDelayUs} µs`;
  return `v${candidate.version} batch ${candidate.maxBatchSize}${delay}, ${candidate.instances}×${candidate.threadsPerInstance} threads (${candidate.executionThread}), graph ${candidate.graphLevel}`;
}

export const sameCandidate = (a: Candidate, b: Candidate) => describeCandidate(a) === describeCandidate(b);

/**
 * The model config with the candidate's settings: max_batch_size, dynamic batching with its delay and target latency
 * (other dynamic_batching fields kept), one CPU instance group, and the ONNX Runtime parameters for
 * threads, execution thread and graph optimisation. The input is the config as written (or as
 * completed); nothing else in it changes.
 */
export function candidateConfig(config: Record<string, unknown>, candidate: Candidate): Record<string, unknown> {
  const parameters = { ...(asRecord(config.parameters) ?? {}) };
  parameters.intra_op_thread_count = String(candidate.threadsPerInstance);
  parameters.execution_thread = candidate.executionThread;
  parameters.graph_optimization_level = candidate.graphLevel;
  const tuned: Record<string, unknown> = {
    ...config,
    max_batch_size: candidate.maxBatchSize,
    instance_group: [{ count: candidate.instances, kind: 'KIND_CPU' }],
    parameters,
  };
  if (candidate.maxBatchSize > 0) tuned.dynamic_batching = { ...(asRecord(config.dynamic_batching) ?? {}), ...batchingFields(candidate) };
  else delete tuned.dynamic_batching;
  return tuned;
}

/** The dynamic_batching fields a candidate sets: its delay, and its target latency (0 clears one the config had). */
export function batchingFields(candidate: Candidate): { max_queue_delay_microseconds: number; target_latency_us: number } {
  return { max_queue_delay_microseconds: candidate.maxQueueDelayUs, target_latency_us: candidate.targetLatencyUs };
}

/** Parameters as a plain map, whichever of Triton's shapes the config used ({key: {string_value}}, [{key, value}], {key: value}). */
function asRecord(value: unknown): Record<string, unknown> | undefined {
  if (!value || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    return Object.fromEntries(value.map((entry: { key?: string; value?: unknown }) => [String(entry.key), plainValue(entry.value)]));
  }
  return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, plainValue(entry)]));
}

const plainValue = (value: unknown) => (value && typeof value === 'object' && 'string_value' in value ? (value as { string_value: unknown }).string_value : value);
