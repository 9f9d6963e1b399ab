/**
 * What the soak test counts: every request's outcome class (an HTTP status, a gRPC code, or what
 * the client saw instead: a reset, its own timeout, a slow client cut off by the server), per
 * traffic kind, in 30-second windows and in total, with the latencies of valid successes.
 */

/** How a kind of traffic is judged. */
export type Role =
  /** Well-formed inference: must never see a reset, a 500 or a wrong answer; its successes are the goodput. */
  | 'valid'
  /** Well-formed but not inference (health probes, reloads): same rules, not counted in goodput. */
  | 'service'
  /** Malformed or hostile: must be answered 4xx, never 5xx, a reset or a client timeout. */
  | 'invalid'
  /** Sends part of a request and stalls: the server must cut it off (close, or answer 4xx) before the client gives up. */
  | 'slow';

export type Category = 'ok' | '4xx' | '503' | '5xx' | 'reset' | 'timeout' | 'cut-off' | 'wrong-answer' | 'skipped' | 'other';

export interface Outcome {
  /** '200', '404', 'OK', 'INVALID_ARGUMENT', 'reset', 'timeout', 'cut-off', 'wrong-answer', 'skipped'. */
  cls: string;
  latencyMs: number;
  /** Which request of the kind this was (e.g. 'truncated-json'), to find the one that failed. */
  variant?: string;
  /** The server's message or the client error, kept for the first few unexpected outcomes. */
  detail?: string;
}

const GRPC_SERVER_ERRORS = new Set(['INTERNAL', 'UNKNOWN', 'DATA_LOSS', 'UNIMPLEMENTED']);
const GRPC_CLIENT_ERRORS = new Set([
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'OUT_OF_RANGE',
  'ABORTED',
]);
const CLIENT_SIDE: ReadonlySet<string> = new Set(['reset', 'timeout', 'cut-off', 'wrong-answer', 'skipped']);

export function categoryOf(cls: string): Category {
  if (cls === '200' || cls === 'OK') return 'ok';
  if (CLIENT_SIDE.has(cls)) return cls as Category;
  if (cls === '503' || cls === 'UNAVAILABLE') return '503';
  if (/^4\d\d$/.test(cls) || GRPC_CLIENT_ERRORS.has(cls)) return '4xx';
  if (/^5\d\d$/.test(cls) || GRPC_SERVER_ERRORS.has(cls)) return '5xx';
  return 'other';
}

/** A 500 or its gRPC equivalents: the server failed on its own account, a bug whatever the request was. */
export function isInternalError(cls: string): boolean {
  return cls === '500' || cls === 'INTERNAL' || cls === 'UNKNOWN';
}

const EXAMPLES_PER_CLASS = 3;

export class KindTally {
  readonly classes = new Map<string, number>();
  /** Per variant, its classes: kept for every kind so a violation can name the request that caused it. */
  readonly variants = new Map<string, Map<string, number>>();
  /** Latencies (ms) of successful answers. */
  readonly successLatencies: number[] = [];
  readonly examples = new Map<string, string[]>();

  record(outcome: Outcome): void {
    increment(this.classes, outcome.cls);
    if (outcome.variant) {
      let classes = this.variants.get(outcome.variant);
      if (!classes) this.variants.set(outcome.variant, (classes = new Map()));
      increment(classes, outcome.cls);
    }
    if (categoryOf(outcome.cls) === 'ok') this.successLatencies.push(outcome.latencyMs);
    else {
      const examples = this.examples.get(outcome.cls) ?? [];
      if (examples.length < EXAMPLES_PER_CLASS) {
        examples.push(`${outcome.variant ? `[${outcome.variant}] ` : ''}${(outcome.detail ?? '').slice(0, 300)}`);
        this.examples.set(outcome.cls, examples);
      }
    }
  }

  get total(): number {
    let sum = 0;
    for (const [cls, count] of this.classes) if (cls !== 'skipped') sum += count;
    return sum;
  }

  count(category: Category): number {
    let sum = 0;
    for (const [cls, count] of this.classes) if (categoryOf(cls) === category) sum += count;
    return sum;
  }

  toJSON() {
    return {
      classes: Object.fromEntries(this.classes),
      categories: Object.fromEntries(CATEGORIES.map((category) => [category, this.count(category)]).filter(([, count]) => count)),
      successLatencyMs: latencySummary(this.successLatencies),
      variants: Object.fromEntries([...this.variants].map(([variant, classes]) => [variant, Object.fromEntries(classes)])),
      examples: Object.fromEntries(this.examples),
    };
  }
}

function increment(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

export const CATEGORIES: readonly Category[] = ['ok', '4xx', '503', '5xx', 'reset', 'timeout', 'cut-off', 'wrong-answer', 'skipped', 'other'];

/** Nearest-rank percentile of unsorted values (sorted copy). */
export function percentile(values: readonly number[], fraction: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

export function latencySummary(values: readonly number[]) {
  const round = (value: number | undefined) => (value === undefined ? undefined : Math.round(value * 100) / 100);
  return { count: values.length, p50: round(percentile(values, 0.5)), p99: round(percentile(values, 0.99)), max: round(values.length ? Math.max(...values) : undefined) };
}

/** Counts per kind, for one window and for the whole run. */
export class Tally {
  readonly total = new Map<string, KindTally>();
  window = new Map<string, KindTally>();

  constructor(readonly roles: ReadonlyMap<string, Role>) {}

  record(kind: string, outcome: Outcome): void {
    for (const map of [this.total, this.window]) {
      let tally = map.get(kind);
      if (!tally) map.set(kind, (tally = new KindTally()));
      tally.record(outcome);
    }
  }

  /** Ends the current window and returns it. */
  rotate(): Map<string, KindTally> {
    const ended = this.window;
    this.window = new Map();
    return ended;
  }
}

/** Valid inference successes and their latencies over a set of kind tallies. */
export function goodputOf(tallies: ReadonlyMap<string, KindTally>, roles: ReadonlyMap<string, Role>, seconds: number) {
  let successes = 0;
  const latencies: number[] = [];
  for (const [kind, tally] of tallies) {
    if (roles.get(kind) !== 'valid') continue;
    successes += tally.count('ok');
    latencies.push(...tally.successLatencies);
  }
  return { successes, perSecond: seconds > 0 ? successes / seconds : 0, latencyMs: latencySummary(latencies) };
}

const pad = (text: string | number, width: number) => String(text).padStart(width);

/** A table: one row per kind, a column per category, and the 4xx statuses / gRPC codes spelled out. */
export function formatTable(tallies: ReadonlyMap<string, KindTally>, roles: ReadonlyMap<string, Role>): string {
  const columns: Category[] = ['ok', '4xx', '503', '5xx', 'reset', 'timeout', 'cut-off', 'wrong-answer', 'skipped', 'other'];
  const shown = columns.filter((category) => [...tallies.values()].some((tally) => tally.count(category) > 0) || ['ok', '4xx', '503', '5xx', 'reset', 'timeout'].includes(category));
  const header = `  ${'kind'.padEnd(22)} ${'role'.padEnd(7)} ${pad('sent', 6)} ${shown.map((c) => pad(c, Math.max(6, c.length))).join(' ')}  detail`;
  const rows = [...tallies.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, tally]) => {
      const detail = [...tally.classes]
        .filter(([cls]) => !['ok', 'skipped'].includes(categoryOf(cls)))
        .map(([cls, count]) => `${cls}×${count}`)
        .join(' ');
      const cells = shown.map((category) => pad(tally.count(category) || '·', Math.max(6, category.length))).join(' ');
      const p = latencySummary(tally.successLatencies);
      const latency = roles.get(kind) === 'valid' && p.count ? ` p50 ${p.p50} ms p99 ${p.p99} ms` : '';
      return `  ${kind.padEnd(22)} ${(roles.get(kind) ?? '?').padEnd(7)} ${pad(tally.total, 6)} ${cells}  ${detail}${latency}`;
    });
  return [header, ...rows].join('\n');
}

/** Bursts ask for more than the server can queue, so it may shed them with 503; steady valid traffic may not be shed. */
export function isUnexpectedValid(kind: string, cls: string): boolean {
  const category = categoryOf(cls);
  if (category === 'ok' || category === 'skipped') return false;
  return category !== '503' || !kind.startsWith('burst-');
}

export function validFailures(total: ReadonlyMap<string, KindTally>, roles: ReadonlyMap<string, Role>): { failed: number; sent: number } {
  let failed = 0;
  let sent = 0;
  for (const [kind, tally] of total) {
    if (roles.get(kind) !== 'valid') continue;
    sent += tally.total;
    for (const [cls, count] of tally.classes) if (isUnexpectedValid(kind, cls)) failed += count;
  }
  return { failed, sent };
}

const DURATION_UNITS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600 };

/** '600', '90s', '10m', '1.5h' → seconds. */
export function durationSeconds(given: string | undefined): number {
  if (given === undefined) return 600;
  const match = /^(\d+(?:\.\d+)?)\s*([smh]?)$/.exec(given.trim());
  if (!match || Number(match[1]) <= 0) throw new Error(`--duration must be a positive number of seconds, optionally with a unit (90s, 10m, 1h), got '${given}'`);
  return Number(match[1]) * DURATION_UNITS[match[2]];
}
