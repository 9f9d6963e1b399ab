/**
 * `nereid eval`'s options as a schema with their defaults, apart from the evaluation so that the CLI shows them without
 * loading the core.
 */
import { z } from 'zod';
import { versionListSchema } from '../config/version-list.js';
import { serverOptionsSchema } from '../server/server-options.js';
import { MIN_GATE_EXAMPLES } from './accuracy-gate.js';
import { OUTPUT_KINDS } from './output-comparison.js';

export const evalOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  allowCodeModels: serverOptionsSchema.shape.allowCodeModels,
  /** Versions to compare, the first being the reference; empty: the versions the model's policy loads. */
  versions: versionListSchema
    .refine((versions) => new Set(versions).size === versions.length, 'a version is named twice; a version compared with itself passes any gate')
    .default([]),
  /** A folder of images (one sub-folder per class when labelled), or a batch job's input file (JSONL, CSV, Parquet). */
  data: z.string().min(1),
  /** The output judged; default: the first the model declares. */
  output: z.string().optional(),
  /** What the output means; default: from its declaration (labelled vector: classes, labelled matrix: CTC text, unlabelled: a map). */
  kind: z.enum(OUTPUT_KINDS).optional(),
  /** A map's values at or above it form the region compared (PaddleOCR's detection threshold by default). */
  threshold: z.number().min(0).max(1).default(0.3),
  /** k of the top-k accuracy; default: DEFAULT_TOP_K, or the number of classes when fewer. More than the classes is refused. */
  topK: z.number().int().positive().optional(),
  /** Clauses the last version must meet against the first, e.g. "accuracy_drop<=0.005,agreement>=0.99". */
  gate: z.string().optional(),
  /** The gate fails on fewer examples than this, whatever their figures. */
  minGateExamples: z.number().int().positive().default(MIN_GATE_EXAMPLES),
});

/** k of the top-k accuracy unless --top-k says, lowered to the number of classes when there are fewer. */
export const DEFAULT_TOP_K = 5;
