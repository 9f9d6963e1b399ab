/** The repository index's rows (Triton's model repository index) and the start's one-line summary of them. */
import type { ModelState } from '../model/model-version.js';

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
