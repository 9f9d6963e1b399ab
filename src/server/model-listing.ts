/** The repository index and the model list (GET /v2/models) as the server answers them, from the repository's rows. */
import type { RepositoryIndexEntry } from '../repository/repository-index.js';
import type { Residency, ResidencySummary } from './model-residency.js';

/** A row of the repository index as the server answers it. */
export type IndexRow = RepositoryIndexEntry & { traffic_share?: number; residency?: Residency; memory_bytes?: number };

export interface ModelListEntry {
  name: string;
  state: 'READY' | 'UNAVAILABLE';
  versions: string[];
  reason?: string;
}

/** Every model of the index at a glance: its ready versions and one state, READY when a version is, with why not otherwise. */
export function modelListOf(rows: readonly RepositoryIndexEntry[]): ModelListEntry[] {
  const byName = new Map<string, RepositoryIndexEntry[]>();
  for (const row of rows) byName.set(row.name, [...(byName.get(row.name) ?? []), row]);
  return [...byName].map(([name, rows]) => {
    const versions = rows.filter((row) => row.state === 'READY' && row.version !== undefined).map((row) => row.version!);
    if (versions.length > 0) return { name, state: 'READY' as const, versions };
    const reason = rows.map((row) => row.reason).find((text) => text) ?? 'not loaded';
    return { name, state: 'UNAVAILABLE' as const, versions, reason };
  });
}

/**
 * An index row of a model whose residency is managed: how it is kept, what it is charged, and why an on-demand one is
 * not in memory. `evicted`: whether residency unloaded the model to keep within the memory budget.
 */
export function withResidency(row: RepositoryIndexEntry, tenant: ResidencySummary, evicted: (name: string) => boolean): RepositoryIndexEntry & { residency: Residency; memory_bytes?: number } {
  const shown = { ...row, residency: tenant.residency, ...(tenant.resident && row.state === 'READY' ? { memory_bytes: tenant.charged_bytes } : {}) };
  if (tenant.resident || tenant.residency !== 'on_demand' || (row.state !== undefined && row.reason !== 'unloaded')) return shown;
  const reason = evicted(row.name)
    ? 'unloaded to keep within the memory budget (least recently used); loads again on its next request'
    : row.state === undefined
      ? 'not loaded; loads on its first request'
      : 'unloaded; loads again on its next request';
  return { ...shown, reason };
}
