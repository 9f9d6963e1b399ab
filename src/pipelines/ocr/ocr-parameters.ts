/**
 * The settings of the OCR pipeline, from its config's parameters (strings, as Triton writes them).
 * The defaults are PaddleOCR's; the step models are the bundled ones.
 */
import { z } from 'zod';
import { declaredParameters } from '../../config/model-config.js';

const decimal = (fallback: number, min: number, max: number) =>
  z
    .string()
    .regex(/^\d+(\.\d+)?$/, { error: (issue) => `must be a number, got '${String(issue.input)}'` })
    .transform(Number)
    .pipe(z.number().min(min, { error: `must be at least ${min}` }).max(max, { error: `must be at most ${max}` }))
    .default(fallback);

const whole = (fallback: number, min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: (issue) => `must be a whole number, got '${String(issue.input)}'` })
    .transform(Number)
    .pipe(z.number().int().min(min, { error: `must be at least ${min}` }).max(max, { error: `must be at most ${max}` }))
    .default(fallback);

const modelName = (fallback: string) => z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, { error: 'must be a model name' }).default(fallback);

export const ocrParametersSchema = z.object({
  /** The DB text detector: input x [1,3,H,W] (ImageNet-normalised RGB), output a probability map [1,1,H,W]. */
  detection_model: modelName('ocr_detection'),
  /** The text-direction classifier: input x [n,3,48,192], output [n,2] (upright, upside down); 'none' skips it. */
  direction_model: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, { error: "must be a model name or 'none'" }).default('ocr_direction'),
  /** The line recogniser: input x [n,3,48,W] in [-1,1], output [n,W/8,classes] of per-step probabilities. */
  recognition_model: modelName('ocr_recognition'),
  /** The detector sees the photo scaled so that its longer side is at most this (det_limit_type max), or its shorter side at least this (min). */
  det_limit_side_len: whole(960, 32, 4096),
  /** max: large photos are scaled down (PaddleOCR's default); min: small ones are scaled up, so close lines stay apart. */
  det_limit_type: z.enum(['max', 'min'], { error: "must be 'max' or 'min'" }).default('max'),
  /** With det_limit_type min, the longer side is still kept at most this. */
  det_max_side_len: whole(2000, 32, 8192),
  /** A pixel of the probability map is text above this (det_db_thresh). */
  det_db_thresh: decimal(0.3, 0, 1),
  /** Boxes whose mean probability is below this are dropped (det_db_box_thresh). */
  det_db_box_thresh: decimal(0.6, 0, 1),
  /** How much each box grows around the shrunk region the detector marks (det_db_unclip_ratio). */
  det_db_unclip_ratio: decimal(1.5, 0, 10),
  /** Text regions considered per image at most, the largest first (max_candidates). */
  max_candidates: whole(1000, 1, 10_000),
  /** A line is turned upside down when the direction classifier says so with at least this probability (cls_thresh). */
  cls_thresh: decimal(0.9, 0, 1),
  /** Lines read with a lower mean character confidence are left out of the answer (drop_score). */
  drop_score: decimal(0.5, 0, 1),
  /** Lines are sorted by width and padded to one width this many at a time, so that they batch (rec_batch_num). */
  rec_batch_num: whole(6, 1, 64),
  /** Recogniser inputs are padded to a width that is a multiple of this (at least 320, PaddleOCR's), so lines of similar length batch together. */
  recognition_width_step: whole(160, 8, 3200),
  /** The widest a line is given to the recogniser, in pixels at height 48; longer lines are squeezed to it. */
  max_line_width: whole(3200, 320, 32_000),
  /** The largest encoded image accepted, in bytes. */
  max_bytes: whole(20 * 1024 * 1024, 1, 1024 * 1024 * 1024),
  /** The largest image accepted, in pixels (width × height); bigger ones are refused before they are decoded. */
  max_pixels: whole(40_000_000, 1, 1_000_000_000),
});

export type OcrParameters = z.output<typeof ocrParametersSchema>;

/** The pipeline's settings from the config's parameters (those it does not know are left to others, e.g. execute_timeout_ms). */
export const ocrParameters = (parameters: Record<string, string | undefined>): OcrParameters => declaredParameters(ocrParametersSchema, parameters);
