/**
 * What the input files that name their columns (CSV, Parquet; JSONL by its fields) share: which columns are a
 * record's id, which are carried through, which are inputs, and the rules ids must keep.
 */
import { invalidArgument } from '../core/errors.js';
import type { SettingName } from '../core/options.js';

/** What of a record is not an input: its id and the values carried through to its output. */
export interface RecordColumns {
  idColumn?: string;
  passThrough: readonly string[];
  inputColumns?: readonly string[];
  /**
   * The column whose value is each record's label (what `nereid eval` scores against), when the file has it: never an
   * input, its value on the record's `label`. A file without it is read as unlabelled, not refused.
   */
  labelColumn?: string;
  /** How messages name the options that chose these columns: their keys for a library caller, `nereid batch`'s flags for it. */
  settingName: SettingName;
}

/** Ids given by a column must be unique: resuming a job finds its records by id. */
export class SeenIds {
  private readonly places = new Map<string, string>();

  /** The id of the record at `where` ("line 3", "row 2"), or why it cannot be one. */
  check(value: unknown, column: string, where: string): { id: string } | { error: string } {
    if (value === undefined || value === null || String(value).trim() === '') return { error: `the id column '${column}' is empty` };
    const id = typeof value === 'object' ? JSON.stringify(value) : String(value);
    const first = this.places.get(id);
    if (first !== undefined) return { error: `id ${JSON.stringify(id)} (column '${column}') was already used on ${first}; ids must be unique` };
    this.places.set(id, where);
    return { id };
  }
}

/** The field or column that tools scoring against labels (eval, profile, monitor) read as each record's label. */
export const LABEL_COLUMN = 'label';

/**
 * With --csv-input and no --input-columns, the columns that are never features: a record's id and its label (as
 * `nereid eval` reads `label`), whatever the case, even when their cells are numbers (a class index).
 */
export const RESERVED_CSV_COLUMNS = /^(id|label)$/i;

/**
 * The index of each named column among `columns`; a name missing stops the job before any record runs. `holder` says
 * what lists the columns ("the CSV header", "data.parquet").
 */
export function columnIndexes(columns: readonly string[], names: readonly string[], setting: string, holder: string): number[] {
  return names.map((name) => {
    const index = columns.indexOf(name);
    if (index < 0) throw invalidArgument(`${setting} names column '${name}', which ${holder} does not have (columns: ${columns.join(', ')})`);
    return index;
  });
}

/** The indexes of the id column and the pass-through columns; a name missing stops the job. */
export function idAndCarriedColumns(columns: readonly string[], selected: RecordColumns, holder: string): { idIndex?: number; carried: number[] } {
  return {
    idIndex: selected.idColumn === undefined ? undefined : columnIndexes(columns, [selected.idColumn], selected.settingName('idColumn'), holder)[0],
    carried: columnIndexes(columns, selected.passThrough, selected.settingName('passThrough'), holder),
  };
}

/** The index of the label column when `columns` has it (RecordColumns.labelColumn), else undefined: a file without it is unlabelled. */
export function labelIndexIn(columns: readonly string[], selected: RecordColumns): number | undefined {
  const index = selected.labelColumn === undefined ? -1 : columns.indexOf(selected.labelColumn);
  return index < 0 ? undefined : index;
}
