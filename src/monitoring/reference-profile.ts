/**
 * The reference profile `nereid profile` writes beside a model version (`<model>/<version>/reference.json`):
 * what the version's inputs, outputs and representation looked like on the data it was trained or
 * validated on, for drift statistics, the out-of-distribution detector and the label-free accuracy
 * estimate to compare serving traffic against. Versioned (`format`), so that a later layout is
 * refused by name rather than misread.
 */
import { createHash, randomUUID } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { readJsonFile } from '../core/json-file.js';

export const REFERENCE_PROFILE_FILE = 'reference.json';
export const REFERENCE_PROFILE_FORMAT = 1;

/** A path as a shell reads it back: as it is when it needs no quoting, else single-quoted. */
const shellWord = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`);

/**
 * The command that builds a version's reference profile, for hints: it names the version (left out, profile builds
 * the version the policy serves, which may be another whose profile it then replaces) and the repository, when
 * the caller knows it and it is not the bundled one profile reads by default.
 */
/** The repository a hint to a client names without its path (clients are told no server paths): a placeholder, as the data's. */
export const UNNAMED_REPOSITORY = '<model repository>';

export function profileCommand(model: string, version: string, repository?: string): string {
  const named = repository === undefined ? '' : ` --model-repository ${repository === UNNAMED_REPOSITORY ? repository : shellWord(repository)}`;
  return `nereid profile --model ${shellWord(model)} --version ${version}${named} --data <in-distribution data>`;
}

/**
 * A profile of a few dozen features with 1000-value samples is a few hundred KiB; the detector's
 * components (k × d numbers, each up to ~20 characters of JSON) are the rest: 64 components of a
 * 512-wide layer are about 0.7 MiB. Far above that, far below a memory concern for the server,
 * which holds one profile per loaded version.
 */
export const MAX_REFERENCE_PROFILE_BYTES = 8 * 1024 * 1024;
/** The most values a feature's sorted sample keeps, for Kolmogorov–Smirnov and Wasserstein distances. */
export const MAX_FEATURE_SAMPLE = 1000;
/** Deciles: nine edges between ten bins, for the population stability index. */
const BINS = 10;

type Issue = { path: (string | number)[]; message: string };
const raise = (context: z.RefinementCtx, { path, message }: Issue) => context.addIssue({ code: 'custom', path, message });

/**
 * One feature's values on the reference data. Bins are right-closed: bin i holds the values v with
 * binEdges[i-1] < v ≤ binEdges[i], the first bin everything up to binEdges[0] and the last
 * everything above the last edge (see featureBin). Edges are strictly increasing: a decile that
 * equals the one before (a feature that is often exactly 0, an image width that is always 28) is
 * left out rather than making a bin nothing can fall into.
 */
export const featureSummarySchema = z
  .object({
    count: z.int().positive(),
    mean: z.number(),
    std: z.number().nonnegative(),
    min: z.number(),
    max: z.number(),
    binEdges: z.array(z.number()).max(BINS - 1),
    binCounts: z.array(z.int().nonnegative()).min(1).max(BINS),
    /** Ascending, evenly spaced through the sorted values: all of them when there are at most MAX_FEATURE_SAMPLE. */
    sample: z.array(z.number()).min(1).max(MAX_FEATURE_SAMPLE),
  })
  .superRefine((summary, context) => {
    const { binEdges, binCounts, sample } = summary;
    if (binCounts.length !== binEdges.length + 1) {
      raise(context, { path: ['binCounts'], message: `expected ${binEdges.length + 1} counts (one more than binEdges), got ${binCounts.length}` });
    }
    const firstUnordered = (values: number[]) => values.findIndex((value, index) => index > 0 && !(value > values[index - 1]));
    const edge = firstUnordered(binEdges);
    if (edge > 0) raise(context, { path: ['binEdges', edge], message: `${binEdges[edge]} does not exceed the edge before it, ${binEdges[edge - 1]}` });
    const total = binCounts.reduce((sum, count) => sum + count, 0);
    if (total !== summary.count) raise(context, { path: ['binCounts'], message: `the counts add up to ${total}, not to count ${summary.count}` });
    const unsorted = sample.findIndex((value, index) => index > 0 && value < sample[index - 1]);
    if (unsorted > 0) raise(context, { path: ['sample', unsorted], message: `${sample[unsorted]} is below the value before it; the sample is sorted ascending` });
    if (sample.length > summary.count) raise(context, { path: ['sample'], message: `${sample.length} values, more than count ${summary.count}` });
    if (summary.min > summary.max) raise(context, { path: ['min'], message: `${summary.min} is above max ${summary.max}` });
  });

/**
 * The representation-based detector (see representation-ood.ts): the chosen tensor's values, pooled
 * per channel (`pooling`), scored by their squared Mahalanobis distance to the nearest of
 * `classMeans` under the shared `precision` (the inverse covariance); above `threshold` is out of
 * distribution. The threshold was chosen for `targetFalsePositiveRate` on in-distribution data and
 * flagged `heldOutFalsePositiveRate` of another held-out part of it.
 */
const mahalanobisSchema = z
  .object({
    method: z.literal('mahalanobis'),
    tensor: z.string().min(1),
    pooling: z.enum(['spatial-mean', 'none']),
    classMeans: z.array(z.array(z.number())).min(1),
    precision: z.array(z.array(z.number())).min(1),
    threshold: z.number(),
    targetFalsePositiveRate: z.number().gt(0).lt(1),
    heldOutFalsePositiveRate: z.number().min(0).max(1),
    /**
     * The scores of the held-out examples the false-positive rate was measured on (ascending; evenly spaced through them
     * when there are more than MAX_FEATURE_SAMPLE), so that the rate another threshold gives can be read off (a model's
     * monitoring.ood.threshold). Absent from profiles built before it was kept.
     */
    heldOutScores: z.array(z.number()).min(1).max(MAX_FEATURE_SAMPLE).optional(),
    /**
     * For an image input: the least standard deviation of the model input's values (after pre-processing) over the
     * profiled images, below a fraction of which an input is blank (see blankFloor). Absent from profiles of tensor
     * inputs and from those built before it was kept.
     */
    leastInputSpread: z.number().nonnegative().optional(),
  })
  .superRefine((detector, context) => {
    const width = detector.precision.length;
    const row = detector.precision.findIndex((values) => values.length !== width);
    if (row >= 0) raise(context, { path: ['precision', row], message: `has ${detector.precision[row].length} values; the matrix has ${width} rows` });
    const mean = detector.classMeans.findIndex((values) => values.length !== 0 && values.length !== width);
    if (mean >= 0) raise(context, { path: ['classMeans', mean], message: `has ${detector.classMeans[mean].length} values; precision is ${width} wide` });
  });

/** A discriminated union on `method`, so that other detectors (k-NN, energy) can be added beside it. */
export const oodDetectorSchema = z.discriminatedUnion('method', [mahalanobisSchema]);

/**
 * From labelled reference data: per confidence bin, how often the top prediction was right. Bins
 * are [lower, upper), the last one closed; bins no example fell into are left out. `ece` is the
 * expected calibration error, Σ count/examples × |accuracy − meanConfidence|.
 */
const calibrationSchema = z
  .object({
    examples: z.int().positive(),
    bins: z
      .array(
        z.object({
          lower: z.number().min(0).max(1),
          upper: z.number().min(0).max(1),
          count: z.int().positive(),
          meanConfidence: z.number().min(0).max(1),
          accuracy: z.number().min(0).max(1),
        }),
      )
      .min(1),
    ece: z.number().min(0).max(1),
  })
  .superRefine((calibration, context) => {
    calibration.bins.forEach((bin, index) => {
      const before = calibration.bins[index - 1];
      if (!(bin.lower < bin.upper)) raise(context, { path: ['bins', index], message: `lower ${bin.lower} is not below upper ${bin.upper}` });
      else if (before && bin.lower < before.upper) raise(context, { path: ['bins', index], message: `starts at ${bin.lower}, inside the bin before it` });
    });
    const total = calibration.bins.reduce((sum, bin) => sum + bin.count, 0);
    if (total !== calibration.examples) raise(context, { path: ['bins'], message: `the counts add up to ${total}, not to examples ${calibration.examples}` });
  });

const provenanceSchema = z.object({
  created: z.iso.datetime({ offset: true }),
  model: z.string().min(1),
  modelVersion: z.string().regex(/^[1-9]\d*$/, 'expected a version number'),
  nereidVersion: z.string().min(1),
  data: z.object({
    /** The data as `nereid profile` was given it (a folder or file), for people; the digest is what identifies it. */
    source: z.string(),
    digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256: and 64 hex digits'),
    examples: z.int().positive(),
  }),
});

export const referenceProfileSchema = z.object({
  format: z.literal(REFERENCE_PROFILE_FORMAT),
  provenance: provenanceSchema,
  /** Per named feature (`input.brightness`, `output.confidence`, `input.channel0`, …). */
  features: z.record(z.string().min(1).max(256), featureSummarySchema),
  /** Share of each predicted class (by label, or index where the model has no labels); absent for models that do not classify. */
  classShares: z
    .record(z.string().min(1), z.number().min(0).max(1))
    .refine((shares) => Math.abs(Object.values(shares).reduce((sum, share) => sum + share, 0) - 1) < 1e-6, 'the shares do not add up to 1')
    .optional(),
  ood: oodDetectorSchema.optional(),
  calibration: calibrationSchema.optional(),
});

export type ReferenceProfile = z.infer<typeof referenceProfileSchema>;
export type FeatureSummary = z.infer<typeof featureSummarySchema>;
export type OodDetector = z.infer<typeof oodDetectorSchema>;
export type Calibration = z.infer<typeof calibrationSchema>;

/** The bin of `value` among `binEdges` (right-closed, see featureSummarySchema): the number of edges below it. */
export function featureBin(binEdges: readonly number[], value: number): number {
  let low = 0;
  let high = binEdges.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (binEdges[middle] < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The q-quantile of ascending values, interpolating between neighbours (Hyndman and Fan's type 7, numpy's and R's default). */
function quantile(sorted: Float64Array, q: number): number {
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
}

/**
 * The reference summary of one feature's values: decile edges and the count in each bin, mean,
 * population standard deviation, extremes and a sorted sample of at most `sampleSize` values evenly
 * spaced through the sorted values (both extremes included). It depends only on the values, not
 * their order.
 */
export function summariseFeature(values: ArrayLike<number>, sampleSize = MAX_FEATURE_SAMPLE): FeatureSummary {
  if (!Number.isInteger(sampleSize) || sampleSize < 2 || sampleSize > MAX_FEATURE_SAMPLE) {
    throw new Error(`sampleSize is ${sampleSize}; expected a whole number from 2 to ${MAX_FEATURE_SAMPLE}`);
  }
  if (values.length === 0) throw new Error('a feature summary needs at least one value');
  const sorted = Float64Array.from(values);
  const bad = sorted.findIndex((value) => !Number.isFinite(value));
  if (bad >= 0) throw new Error(`value ${bad} is ${sorted[bad]}; a feature summary takes finite numbers`);
  sorted.sort();
  const count = sorted.length;

  const binEdges: number[] = [];
  for (let decile = 1; decile < BINS; decile++) {
    const edge = quantile(sorted, decile / BINS);
    if (binEdges.length === 0 || edge > binEdges[binEdges.length - 1]) binEdges.push(edge);
  }
  const binCounts = new Array<number>(binEdges.length + 1).fill(0);
  for (const value of sorted) binCounts[featureBin(binEdges, value)]++;

  let sum = 0;
  for (const value of sorted) sum += value;
  const mean = sum / count;
  let squares = 0;
  for (const value of sorted) squares += (value - mean) ** 2;

  const kept = Math.min(count, sampleSize);
  const sample = kept === count ? Array.from(sorted) : Array.from({ length: kept }, (_, index) => sorted[Math.round((index * (count - 1)) / (kept - 1))]);
  return { count, mean, std: Math.sqrt(squares / count), min: sorted[0], max: sorted[count - 1], binEdges, binCounts, sample };
}

/**
 * `sha256:` and the hex digest of the records (file names, JSONL lines, CSV rows) in order, each
 * prefixed by its length so that no two different lists hash alike by moving a boundary.
 */
export function dataDigest(records: Iterable<string | Uint8Array>): string {
  const hash = createHash('sha256');
  const length = Buffer.alloc(8);
  for (const record of records) {
    const bytes = typeof record === 'string' ? Buffer.from(record, 'utf8') : record;
    length.writeBigUInt64BE(BigInt(bytes.length));
    hash.update(length).update(bytes);
  }
  return `sha256:${hash.digest('hex')}`;
}

/** Zod's issue path as a reader would write it: features["input.brightness"].binCounts, ood.components[3]. */
function describePath(path: readonly PropertyKey[]): string {
  return path
    .map((part, index) => {
      if (typeof part === 'number') return `[${part}]`;
      const name = String(part);
      if (/^[A-Za-z_$][\w$]*$/.test(name)) return index === 0 ? name : `.${name}`;
      return `[${JSON.stringify(name)}]`;
    })
    .join('');
}

/** The first few issues: a file that is not a profile at all would otherwise get one line per field. */
const SHOWN_ISSUES = 5;

function describeProfileIssues(error: z.ZodError): string {
  const shown = error.issues.slice(0, SHOWN_ISSUES).map((issue) => `${describePath(issue.path) || '(the profile)'}: ${issue.message}`);
  const more = error.issues.length - shown.length;
  return shown.join('; ') + (more > 0 ? `; and ${more} more` : '');
}

/**
 * JSON with two-space indentation, except that arrays of numbers (bin edges, samples, each
 * component) stay on one line: one number per line would make a profile tens of thousands of lines
 * long without making it easier to read.
 */
function formatProfile(profile: ReferenceProfile): string {
  const indented = JSON.stringify(profile, null, 2);
  return `${indented.replace(/\[\s+([-+0-9.eE,\s]+?)\s+\]/g, (_, numbers: string) => `[${numbers.split(/,\s+/).join(', ')}]`)}\n`;
}

/**
 * Writes `profile` to `path` after checking it against the schema and the size bound, so that a
 * profile that could not be read back is never left for a server to load; through a temporary file
 * and a rename, so that a server loading the version meanwhile sees the old profile or the new one,
 * never half of one. `shownAs` names the file in errors.
 */
export async function writeReferenceProfile(path: string, profile: ReferenceProfile, shownAs = path): Promise<void> {
  const parsed = referenceProfileSchema.safeParse(profile);
  if (!parsed.success) throw new Error(`refusing to write ${shownAs}, which would not be a reference profile: ${describeProfileIssues(parsed.error)}`);
  const text = formatProfile(parsed.data);
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_REFERENCE_PROFILE_BYTES) {
    throw new Error(
      `refusing to write ${shownAs}: it would be ${bytes} bytes, and a reference profile is at most ${MAX_REFERENCE_PROFILE_BYTES}; ` +
        'profile fewer features or keep fewer detector components',
    );
  }
  const temporary = `${path}.${randomUUID()}.tmp`;
  await writeFile(temporary, text, { flag: 'wx' });
  try {
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/**
 * The profile at `path`, checked; `shownAs` names it in errors (as clients may see it). Refused,
 * naming the file, when it is over MAX_REFERENCE_PROFILE_BYTES, not JSON, of another format or
 * missing a field; the message names the field.
 */
export async function readReferenceProfile(path: string, shownAs = path): Promise<ReferenceProfile> {
  const raw = await readJsonFile(path, { shownAs, maxBytes: MAX_REFERENCE_PROFILE_BYTES, kind: 'a reference profile' });
  const format = (raw as { format?: unknown } | null)?.format;
  if (typeof format === 'number' && format !== REFERENCE_PROFILE_FORMAT) {
    throw new Error(`${shownAs} is a reference profile of format ${format}; this Nereid reads format ${REFERENCE_PROFILE_FORMAT} (profile the version again)`);
  }
  const parsed = referenceProfileSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${shownAs} is not a reference profile: ${describeProfileIssues(parsed.error)}`);
  return parsed.data;
}

/** As readReferenceProfile, but undefined when there is no file at `path`: a version that was never profiled. */
export async function readReferenceProfileIfPresent(path: string, shownAs = path): Promise<ReferenceProfile | undefined> {
  try {
    return await readReferenceProfile(path, shownAs);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
