/**
 * `nereid quantize`'s options as a schema with their defaults, and the gate a version must meet by output kind, apart
 * from the quantizer so that the CLI shows them without loading the core.
 */
import { z } from 'zod';
import { MIN_GATE_EXAMPLES } from '../eval/accuracy-gate.js';
import { OUTPUT_KINDS, type OutputKind } from '../eval/output-comparison.js';

export const quantizeOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  /** Default: the version the model's policy serves (its highest ready one). */
  version: z.string().regex(/^[1-9]\d*$/).optional(),
  /**
   * A folder of images (sub-folders included), decoded and normalised by the model's own
   * pre-processing, or a batch job's JSONL or CSV file of the model's input tensors.
   */
  calibration: z.string().min(1),
  method: z.enum(['static', 'dynamic', 'fp16', 'auto']).default('static'),
  /** 'minmax', or the percentile of each tensor's values its range keeps. */
  ranges: z.union([z.literal('minmax'), z.number().gt(50).lte(100)]).default(99.99),
  /** Correct Conv and Gemm biases for the shift their int8 weights cause, from the calibration inputs' channel means. */
  biasCorrection: z.boolean().default(true),
  /**
   * Nodes never rewritten, whatever the method (ONNX Runtime's `nodes_to_exclude`): what a team already knows must stay
   * float; auto's search keeps others float on top of them.
   */
  keepFloat: z.array(z.string().min(1)).default([]),
  /** Calibration examples read at most. */
  maxExamples: z.number().int().positive().default(500),
  /** Share of the examples held out of calibration to measure agreement and speed on. */
  holdOut: z.number().gt(0).lt(1).default(0.2),
  /** Default: one above the highest version folder. */
  outputVersion: z.string().regex(/^[1-9]\d*$/).optional(),
  /** What the new version must meet against the source on the held-out examples; auto searches until it holds. Default by output kind (see DEFAULT_GATES). */
  gate: z.string().optional(),
  /** What the judged (first) output means; default: from its declaration, as `nereid eval` reads it. */
  kind: z.enum(OUTPUT_KINDS).optional(),
  /** A map's values at or above it form the region compared by IoU. */
  threshold: z.number().min(0).max(1).default(0.3),
  /** Held-out examples the gate is judged on at least: fewer, and nothing is quantized. */
  minGateExamples: z.number().int().positive().default(MIN_GATE_EXAMPLES),
});

/** What a quantized version must meet on the held-out examples unless --gate says otherwise: issue 13's goals for each kind of output. */
export const DEFAULT_GATES: Readonly<Record<OutputKind, string>> = {
  classification: 'agreement>=0.99',
  ctc: 'agreement>=0.95,character_agreement>=0.99',
  mask: 'agreement>=0.95',
};
