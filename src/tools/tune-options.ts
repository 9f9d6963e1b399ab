/**
 * `nereid tune`'s options as a schema with their defaults, apart from the search so that the CLI shows them without
 * loading the core.
 */
import { z } from 'zod';
import { versionListSchema } from '../config/version-list.js';
import { serverOptionsSchema } from '../server/server-options.js';

export const tuneOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  allowCodeModels: serverOptionsSchema.shape.allowCodeModels,
  /**
   * The versions the search's version step measures; empty: every version folder, served or not (an int8 version the
   * policy leaves out is worth knowing about). Each must have a folder.
   */
  versions: versionListSchema.default([]),
  /** Client concurrency levels each candidate is measured at (closed loop). */
  concurrency: z.array(z.int().positive()).min(1).default([1, 16]),
  warmupSeconds: z.number().nonnegative().default(1),
  durationSeconds: z.number().positive().default(3),
  /** Runs per level; the median throughput's run is kept. */
  repeats: z.int().min(1).default(1),
  /** The whole search stops starting candidates past this. */
  budgetSeconds: z.number().positive().default(600),
  /** Best throughput whose p99 stays under this; absent: best throughput. */
  p99Ms: z.number().positive().optional(),
  /** Best throughput whose compute cost per 1,000 inferences stays under this (at usdPerCoreHour). */
  maxCostUsd: z.number().positive().optional(),
  usdPerCoreHour: z.number().positive().default(0.05),
  /**
   * The least gain over the config as written that makes another config the one to write: on a shared machine two
   * measurements of the same config differ by a few per cent, and a config is not worth changing for noise.
   */
  minGain: z.number().min(0).max(1).default(0.05),
  /**
   * Rounds in which the config as written and the one the search chose are measured again, in turn, before the chosen
   * one counts as better (what --write writes): a gain that does not hold in them is noise. Their time is kept out of
   * --budget-s's search. 0: the search's one measurement of each decides.
   */
  confirmRounds: z.int().min(0).default(2),
  /** Largest max_batch_size tried; default: 64, or the config's own when larger. */
  maxBatchSizeLimit: z.int().positive().optional(),
  /** Dynamic dimensions of the inputs (name → dims without the batch dimension). */
  inputShapes: z.record(z.string(), z.array(z.int().positive())).default({}),
  overHttp: z.boolean().default(false),
  cores: z.int().positive().optional(),
});
