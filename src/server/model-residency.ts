/**
 * Which models are in memory when the repository holds more than the machine does: a model marked
 * on demand loads on its first request (the request waits, within a bound), and when the models in
 * memory would pass the budget the least recently used ones no request is using are unloaded.
 * Pinned models load at start and are never unloaded to make room.
 *
 * What a model costs is measured, not guessed: loads made here run one at a time and each is
 * charged the growth of the process's resident set (outside the JavaScript heap) over it, at least
 * the bytes of its files: that covers what ONNX Runtime allocates natively, which no heap statistic sees.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { NereidError, overloaded, unavailable } from '../core/errors.js';
import { optionKeyName, type SettingName } from '../core/options.js';
import type { ModelRepository } from '../repository/model-repository.js';

export type Residency = 'pinned' | 'on_demand';

export interface ModelResidencyOptions {
  repository: Pick<ModelRepository, 'load' | 'evict' | 'folderOf' | 'liveSequences'>;
  /** Bytes the models in memory may be charged in all; none: no model is unloaded to make room. */
  budgetBytes?: number;
  /** The longest a request waits for its model to load (or for room to load it) before a 503. */
  loadWaitMs: number;
  /** How a refusal names the options behind it (modelLoadWaitMs, modelMemoryBudget); default: by key. */
  settingName?: SettingName;
  /** Requests one model may have waiting for its load; more are refused with a 503 naming the Server's maxQueueSize, which sets it. */
  maxWaiting: number;
  logger: Logger;
  /** The process's resident set outside the JS heap, in bytes (a parameter so that a test can measure with its own). */
  residentSetBytes?: () => number;
}

type Phase = 'absent' | 'loading' | 'resident' | 'evicting';

interface Tenant {
  residency: Residency;
  phase: Phase;
  /** Bytes charged against the budget while resident: its last measured load. */
  chargedBytes?: number;
  /** Requests holding the model (waiting for it, or being served): it is not unloaded while any do. */
  leases: number;
  waiting: number;
  lastUsed: number;
  loads: number;
  evictions: number;
  /** The load or eviction under way. */
  transition?: Promise<void>;
  /** Why the last on-demand load failed. */
  failure?: string;
}

export interface ResidencySummary {
  model: string;
  residency: Residency;
  resident: boolean;
  charged_bytes?: number;
  leases: number;
  loads: number;
  evictions: number;
  last_used_ms_ago?: number;
}

const MIB = 1024 * 1024;
/** How often a load waiting for room looks again at models kept only by their sequences. */
const SEQUENCE_RECHECK_MS = 100;

/**
 * The resident set less what JavaScript holds (its heap and the buffers it allocated): what ONNX
 * Runtime allocates lives there, while the JavaScript side grows and shrinks with every garbage
 * collection, which would otherwise blur a load's growth.
 */
function nativeResidentBytes(): number {
  const usage = process.memoryUsage();
  return usage.rss - usage.heapTotal - usage.external;
}
const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;

/** Bytes of the files in a model folder (versions, labels, config): the least a load can cost. */
async function folderBytes(folder: string, depth = 0): Promise<number> {
  if (depth > 3) return 0;
  let total = 0;
  for (const dirent of await readdir(folder, { withFileTypes: true }).catch(() => [])) {
    const path = join(folder, dirent.name);
    if (dirent.isDirectory()) total += await folderBytes(path, depth + 1);
    else if (dirent.isFile()) total += (await stat(path).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

export class ModelResidency {
  private readonly tenants = new Map<string, Tenant>();
  /** Loads and evictions made here, one at a time: a resident set's growth is then one model's. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Wakes whatever waits for a lease to end (room that only a busy model could give). */
  private leaseEnded?: () => void;
  private readonly residentSetBytes: () => number;
  private readonly named: SettingName;

  constructor(private readonly options: ModelResidencyOptions) {
    this.residentSetBytes = options.residentSetBytes ?? nativeResidentBytes;
    this.named = options.settingName ?? optionKeyName;
  }

  get budgetBytes(): number | undefined {
    return this.options.budgetBytes;
  }

  /** Bytes charged to the models in memory now. */
  get usedBytes(): number {
    let used = 0;
    for (const tenant of this.tenants.values()) if (tenant.phase === 'resident' || tenant.phase === 'evicting') used += tenant.chargedBytes ?? 0;
    return used;
  }

  private meanChargedBytes(): number {
    const charged = [...this.tenants.values()].flatMap((tenant) => (tenant.chargedBytes === undefined ? [] : [tenant.chargedBytes]));
    return charged.length === 0 ? 0 : charged.reduce((sum, bytes) => sum + bytes, 0) / charged.length;
  }

  /** Declares how a model is kept: pinned ones are never unloaded to make room, on-demand ones load on their first request. */
  declare(name: string, residency: Residency): void {
    const tenant = this.tenants.get(name);
    if (tenant) tenant.residency = residency;
    else this.tenants.set(name, { residency, phase: 'absent', leases: 0, waiting: 0, lastUsed: 0, loads: 0, evictions: 0 });
  }

  residencyOf(name: string): Residency | undefined {
    return this.tenants.get(name)?.residency;
  }

  /**
   * Holds a model in memory for one request; the returned function lets it go. A model in memory is
   * held at once (no promise: the common path costs a counter); an on-demand one not in memory is
   * loaded first, the request waiting at most loadWaitMs. Undefined for a model not declared here,
   * whose loading the repository's control mode decides.
   */
  lease(name: string): (() => void) | Promise<() => void> | undefined {
    const tenant = this.tenants.get(name);
    if (!tenant) return undefined;
    tenant.leases++;
    tenant.lastUsed = performance.now();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--tenant.leases === 0) this.leaseEnded?.();
    };
    if (tenant.phase === 'resident') return release;
    if (tenant.residency === 'pinned' && tenant.phase === 'absent') {
      release();
      return undefined; // a pinned model that is not loaded was unloaded on purpose (or failed): the repository says why
    }
    return this.waitForLoad(name, tenant).then(
      () => release,
      (error: unknown) => {
        release();
        throw error;
      },
    );
  }

  private async waitForLoad(name: string, tenant: Tenant): Promise<void> {
    const { loadWaitMs, maxWaiting } = this.options;
    if (tenant.waiting >= maxWaiting) {
      throw overloaded(`${tenant.waiting} requests are already waiting for model '${name}' to load, the most one model may have (${this.named('maxQueueSize')})`, loadWaitMs);
    }
    tenant.waiting++;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(overloaded(`model '${name}' is loading on demand and was not ready within ${loadWaitMs} ms (${this.named('modelLoadWaitMs')})`, loadWaitMs)), loadWaitMs);
    });
    try {
      while (tenant.phase !== 'resident') {
        // An eviction under way finishes first; then one load serves every request waiting for it.
        const transition = tenant.phase === 'absent' ? this.bringIn(name, tenant) : tenant.transition!;
        await Promise.race([transition.catch(() => undefined), timeout]);
        if (tenant.phase === 'absent' && tenant.failure !== undefined) throw unavailable(`model '${name}' could not be loaded on demand: ${tenant.failure}`);
      }
    } finally {
      clearTimeout(timer);
      tenant.waiting--;
    }
  }

  /** Queues the load of an absent model; every request for it waits on the same load. */
  private bringIn(name: string, tenant: Tenant): Promise<void> {
    tenant.phase = 'loading';
    tenant.failure = undefined;
    tenant.transition = this.serially(() => this.loadNow(name, tenant, () => this.options.repository.load(name)));
    return tenant.transition;
  }

  /**
   * Loads (or reloads) a model through the repository and charges it: what a start-up, an explicit
   * load or a poll does for a declared model. Throws what the repository throws.
   */
  load(name: string, load: () => Promise<void>): Promise<void> {
    const tenant = this.tenants.get(name);
    if (!tenant) return load();
    const transition = this.serially(() => this.loadNow(name, tenant, load));
    tenant.transition = transition;
    return transition;
  }

  /** Marks a model unloaded by the repository (explicit unload, or gone from a polled repository). */
  unloaded(name: string): void {
    const tenant = this.tenants.get(name);
    if (tenant && tenant.phase === 'resident') tenant.phase = 'absent';
  }

  private serially(task: () => Promise<void>): Promise<void> {
    const next = this.chain.then(task, task);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async loadNow(name: string, tenant: Tenant, load: () => Promise<void>): Promise<void> {
    const { logger } = this.options;
    const floor = await folderBytes(await this.options.repository.folderOf(name).catch(() => ''));
    const reloading = tenant.phase === 'resident';
    if (!reloading) tenant.phase = 'loading';
    try {
      // Room is made before the load, for what it will probably take: its last measured charge, else
      // the mean of the others' (at least its files); a reload's new versions load beside the old.
      await this.makeRoom(tenant.chargedBytes ?? Math.max(floor, this.meanChargedBytes()), name);
      const before = this.residentSetBytes();
      const started = performance.now();
      await load();
      const grown = Math.max(0, this.residentSetBytes() - before);
      tenant.chargedBytes = Math.max(grown, floor);
      tenant.phase = 'resident';
      tenant.failure = undefined;
      tenant.loads++;
      tenant.lastUsed = Math.max(tenant.lastUsed, performance.now());
      const budget = this.options.budgetBytes;
      logger.info(
        { model: name, charged_bytes: tenant.chargedBytes, resident_set_growth_bytes: grown, ms: Math.round(performance.now() - started), used_bytes: this.usedBytes, budget_bytes: budget },
        `${reloading ? 'reloaded' : 'loaded'} model '${name}' (${tenant.residency}): ${mib(tenant.chargedBytes)} charged${budget ? `, ${mib(this.usedBytes)} of the ${mib(budget)} budget in use` : ''}`,
      );
      // Measured larger than expected: what no longer fits goes now, not at the next load.
      await this.makeRoom(0, name);
    } catch (error) {
      if (!reloading) {
        tenant.phase = 'absent';
        tenant.failure = (error as Error).message;
      }
      throw error;
    }
  }

  /**
   * Unloads least recently used, unpinned models that no request holds and that keep no live
   * sequence (an unload would drop its state; sequences end or go idle past their timeout, so the
   * wait below looks again) until `bytes` more fit the budget.
   */
  private async makeRoom(bytes: number, loading: string): Promise<void> {
    const budget = this.options.budgetBytes;
    if (budget === undefined) return;
    const deadline = performance.now() + this.options.loadWaitMs;
    while (this.usedBytes + bytes > budget) {
      const candidates = [...this.tenants]
        .filter(([name, tenant]) => name !== loading && tenant.residency === 'on_demand' && tenant.phase === 'resident')
        .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
      const idle = candidates.find(([name, tenant]) => tenant.leases === 0 && this.options.repository.liveSequences(name) === 0);
      if (idle) {
        await this.evict(idle[0], idle[1], budget);
        continue;
      }
      // The model just loaded, measured over budget, with nothing idle to unload: it stays (the log says so), and no
      // load waits for requests or sequences to end only to trim; the next load makes room.
      if (bytes === 0) return;
      const pinnedBytes = this.usedBytes - candidates.reduce((sum, [, tenant]) => sum + (tenant.chargedBytes ?? 0), 0);
      if (candidates.length === 0 || pinnedBytes + bytes > budget) {
        // Alone in memory, a model loads whatever its last charge said: that charge is a resident-set growth, which
        // other allocations during a load can inflate past the budget, and refusing would refuse it for good.
        if (candidates.length === 0 && this.usedBytes === 0) return;
        throw new NereidError(
          'UNAVAILABLE',
          `model '${loading}' needs about ${mib(bytes)}, but the memory budget of ${mib(budget)} (${this.named('modelMemoryBudget')}) has ${mib(Math.max(0, budget - pinnedBytes))} left beside the models that cannot be unloaded`,
        );
      }
      // Every model that could make room is serving requests or keeping sequences: wait for a request to
      // finish, looking again now and then for a sequence that ended, which no lease announces.
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        throw overloaded(
          `no room to load model '${loading}' within ${this.options.loadWaitMs} ms (${this.named('modelLoadWaitMs')}): every model that could be unloaded is serving requests or keeping live sequences`,
          this.options.loadWaitMs,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(remaining, SEQUENCE_RECHECK_MS));
        this.leaseEnded = () => {
          clearTimeout(timer);
          this.leaseEnded = undefined;
          resolve();
        };
      });
    }
  }

  private async evict(name: string, tenant: Tenant, budget: number): Promise<void> {
    tenant.phase = 'evicting';
    const unloading = this.options.repository.evict(name);
    tenant.transition = unloading.then(() => undefined, () => undefined);
    try {
      await unloading;
    } finally {
      tenant.phase = 'absent';
      tenant.evictions++;
    }
    this.options.logger.info(
      { model: name, charged_bytes: tenant.chargedBytes, used_bytes: this.usedBytes, budget_bytes: budget },
      `unloaded model '${name}' to keep within the memory budget (least recently used of those idle; it loads again on its next request)`,
    );
  }

  isResident(name: string): boolean {
    return this.tenants.get(name)?.phase === 'resident';
  }

  /** Whether a model was unloaded to make room (and loads again on demand). */
  evicted(name: string): boolean {
    const tenant = this.tenants.get(name);
    return tenant !== undefined && tenant.phase === 'absent' && tenant.evictions > 0 && tenant.failure === undefined;
  }

  summary(): ResidencySummary[] {
    const now = performance.now();
    return [...this.tenants].sort(([a], [b]) => a.localeCompare(b)).map(([model, tenant]) => ({
      model,
      residency: tenant.residency,
      resident: tenant.phase === 'resident',
      ...(tenant.phase === 'resident' ? { charged_bytes: tenant.chargedBytes } : {}),
      leases: tenant.leases,
      loads: tenant.loads,
      evictions: tenant.evictions,
      ...(tenant.lastUsed > 0 ? { last_used_ms_ago: Math.round(now - tenant.lastUsed) } : {}),
    }));
  }
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, kib: 1024, mib: MIB, gib: 1024 * MIB };

/**
 * A memory budget as an operator writes it: bytes ('8000000000', '8GB', '7.5GiB', '512MiB') or a
 * fraction of the machine's memory ('0.5'). Throws a message that says what was expected.
 */
export function parseMemoryBudget(value: string | number, totalMemoryBytes: number): number {
  const text = String(value).trim().toLowerCase();
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(text);
  const unit = match ? UNITS[match[2]!] : undefined;
  if (!match || unit === undefined) {
    throw new Error(`a memory budget is bytes (e.g. 8000000000, 8GB, 512MiB) or a fraction of the machine's memory (e.g. 0.5), got '${value}'`);
  }
  const amount = Number(match[1]);
  if (match[2] === '' && amount > 0 && amount <= 1 && !Number.isInteger(amount)) return Math.floor(amount * totalMemoryBytes);
  // '2.5' is neither a fraction of the memory nor a whole number of bytes: more likely gigabytes with the unit left out.
  if (match[2] === '' && !Number.isInteger(amount)) {
    throw new Error(`a memory budget without a unit is a whole number of bytes or a fraction up to 1 of the machine's memory, got '${value}' (a unit: 2.5GB, 2.5GiB)`);
  }
  if (match[2] === '' && amount === 1) return totalMemoryBytes;
  const bytes = Math.floor(amount * unit);
  if (bytes < 1) throw new Error(`a memory budget must be above 0, got '${value}'`);
  return bytes;
}
