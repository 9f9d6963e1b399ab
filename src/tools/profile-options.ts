/** `nereid profile`'s options as a schema with their defaults, apart from the profiling so that the CLI shows them without loading the core. */
import { z } from 'zod';

export const profileOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  version: z.string().regex(/^[1-9]\d*$/).optional(),
  /** In-distribution examples: images (through the model's pre-processing; class folders add calibration) or a JSONL/CSV of tensors. */
  data: z.string().min(1),
  /** Share of held-out in-distribution examples the OOD flag may raise. */
  falsePositiveRate: z.number().gt(0).lt(1).default(0.05),
  maxExamples: z.number().int().positive().default(5000),
  /** The representation scored; default: what the classifier head reads. */
  tensor: z.string().optional(),
});
