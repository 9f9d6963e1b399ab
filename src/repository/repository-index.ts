/** The repository index (Triton's model repository index): a model's rows as its state says them, and the start's one-line summary of them. */
import type { ModelState, ModelVersion } from '../model/model-version.js';

export interface RepositoryIndexEntry {
  name: string;
  version?: string;
  state?: ModelState;
  reason?: string;
}

/** The index's rows of what failed to load (not what was unloaded on purpose). */
export function failedRows(index: readonly RepositoryIndexEntry[]): RepositoryIndexEntry[] {
  return index.filter((row) => row.state === 'UNAVAILABLE' && row.reason !== 'unloaded');
}

/** A row as a log line names it: the model, and its version when the row has one. */
export function rowLabel(row: RepositoryIndexEntry): string {
  return row.version === undefined ? row.name : `${row.name} version ${row.version}`;
}

/** The start's one line: how many versions are ready, how many failed and which (their reasons are in the index). */
export function readinessSummary(index: readonly RepositoryIndexEntry[]): string {
  const ready = index.filter((row) => row.state === 'READY').length;
  const failed = failedRows(index);
  const names = failed.map(rowLabel);
  return `${ready} model version(s) ready, ${failed.length} failed${names.length > 0 ? ` (${names.join(', ')})` : ''}`;
}

/** What the index reads of a model the repository holds a state for (its ModelEntry). */
export interface ModelStateRecord {
  versions: ReadonlyMap<string, Pick<ModelVersion, 'state' | 'reason'>>;
  /** Versions (or the whole model, under key '') that failed, with why. */
  failures: ReadonlyMap<string, string>;
  unloaded: boolean;
  /** Why the last reload failed while these versions kept serving. */
  reloadFailure?: string;
}

/**
 * A model's rows of the index: one per version loaded or tried, or one for the model when it failed as a whole or the
 * repository holds no state for it (a folder never loaded). `loading`: a load of it is under way; `folderGone`: the
 * repository was read and its folder is not there; `readyOnly`: only the rows of READY versions.
 */
export function modelRows(
  name: string,
  entry: ModelStateRecord | undefined,
  { loading, folderGone, readyOnly }: { loading: boolean; folderGone: boolean; readyOnly: boolean },
): RepositoryIndexEntry[] {
  // What is not serving while a load of it is under way is LOADING (Triton's state), not "unloaded" or a failure past.
  if (!entry) return readyOnly ? [] : [loading ? { name, state: 'LOADING', reason: 'loading' } : { name }];
  // Unloaded and its folder gone (deleted, a poll unloaded it): no longer a model of the repository, as in Triton.
  if (entry.unloaded && folderGone) return [];
  const modelFailure = entry.failures.get('');
  if (modelFailure !== undefined) {
    return readyOnly ? [] : [loading ? { name, state: 'LOADING', reason: 'loading' } : { name, state: 'UNAVAILABLE', reason: modelFailure }];
  }
  const rows: RepositoryIndexEntry[] = [];
  const versions = new Set([...entry.versions.keys(), ...entry.failures.keys()]);
  for (const version of [...versions].sort((a, b) => Number(a) - Number(b))) {
    const loaded = entry.versions.get(version);
    const settled: ModelState = entry.unloaded ? 'UNAVAILABLE' : (loaded?.state ?? 'UNAVAILABLE');
    const state: ModelState = loading && settled !== 'READY' ? 'LOADING' : settled;
    if (readyOnly && state !== 'READY') continue;
    const reason = state === 'LOADING'
      ? 'loading'
      : entry.unloaded
      ? 'unloaded'
      : loaded
        ? loaded.reason || (entry.reloadFailure ?? entry.failures.get(version) ? `serving; its reload failed: ${entry.reloadFailure ?? entry.failures.get(version)}` : '')
        : entry.failures.get(version)!;
    rows.push({ name, version, state, reason });
  }
  return rows;
}
