/**
 * From a detector's raw rows to what a person reads: boxes above a score threshold, overlapping
 * boxes of one class reduced to the best (non-maximum suppression), each box moved from the model's
 * input pixels back to the photo's own, and labelled.
 */
import { loadSharp } from '../core/sharp.js';
import { z } from 'zod';
import type { ImagePreprocessing } from '../config/model-config.js';
import { DECIMAL_NUMBER } from '../core/decimal-number.js';

/** A box [x_min, y_min, x_max, y_max] in pixels. */
export type Box = [number, number, number, number];

export interface Detection {
  label: string;
  /** The class's index in the model's labels. */
  index: number;
  score: number;
  box: Box;
}

/** A query parameter (text) or a library caller's number, within [min, max]; `fallback` when absent. */
const bounded = (name: string, min: number, max: number, fallback: number, integer = false) =>
  z
    .union([z.string(), z.number(), z.array(z.string())])
    .optional()
    .transform((raw, context) => {
      if (raw === undefined) return fallback;
      if (Array.isArray(raw)) {
        context.addIssue({ code: 'custom', message: `${name} is given ${raw.length} times (${raw.map((each) => `'${each}'`).join(', ')}); give it once` });
        return z.NEVER;
      }
      const value = Number(raw);
      if ((typeof raw === 'string' && !DECIMAL_NUMBER.test(raw)) || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
        context.addIssue({ code: 'custom', message: `${name} must be a ${integer ? 'whole number' : 'number'} from ${min} to ${max}, got '${raw}'` });
        return z.NEVER;
      }
      return value;
    });

/** What a detect request may ask for; the defaults live here. */
export const detectionOptionsSchema = z
  .object({
    /** Detections scoring below this are left out. */
    threshold: bounded('threshold', 0, 1, 0.3),
    /** At most this many detections, the best first. */
    max_detections: bounded('max_detections', 1, 1000, 20, true),
    /** Two boxes of one class overlapping more than this (intersection over union) are one object: the lower-scoring one goes. */
    iou_threshold: bounded('iou_threshold', 0, 1, 0.5),
  })
  // A misspelt option ('thresold') would otherwise be ignored and the default silently used.
  .strict();

export type DetectionOptions = z.output<typeof detectionOptionsSchema>;

/** A detect request's options (query parameters or a caller's numbers), or what is wrong with them in words. */
export function parseDetectionOptions(query: unknown): { options: DetectionOptions; problem?: undefined } | { problem: string } {
  const parsed = detectionOptionsSchema.safeParse(query ?? {});
  if (parsed.success) return { options: parsed.data };
  const described = parsed.error.issues.map((issue) =>
    issue.code === 'unrecognized_keys' ? `unknown option ${issue.keys.map((key) => `'${key}'`).join(', ')}; detection takes threshold, max_detections and iou_threshold` : issue.message,
  );
  return { problem: described.join('; ') };
}

/** The values a detections row holds: [x_min, y_min, x_max, y_max, score, class], box in the model's input pixels. */
export const DETECTION_ROW_VALUES = 6;

/** How a photo became the model's input: its own size, the input's size, and the resize between them. */
export interface DetectionGeometry {
  imageWidth: number;
  imageHeight: number;
  inputWidth: number;
  inputHeight: number;
  resize: ImagePreprocessing['resize'];
}

/**
 * The photo's width and height as the model saw it: after its EXIF orientation, which turns
 * orientations 5 to 8 a quarter, as the pre-processing does (sharp's rotate()).
 */
export async function orientedSize(image: Buffer): Promise<{ width: number; height: number }> {
  const sharp = await loadSharp();
  const { width = 0, height = 0, orientation = 1 } = await sharp(image).metadata();
  return orientation >= 5 ? { width: height, height: width } : { width, height };
}

/**
 * A box from the model's input pixels back to the photo's, undoing the resize as sharp does it:
 * stretch scales each axis; letterbox ('contain') scales both by the smaller factor and centres the
 * result on padding; shorter-side crop ('cover') scales by the larger factor and centres the crop.
 * The box is clipped to the photo.
 */
export function toImagePixels(box: readonly number[], geometry: DetectionGeometry): Box {
  const { imageWidth: width, imageHeight: height, inputWidth, inputHeight, resize } = geometry;
  let scaleX = width / inputWidth;
  let scaleY = height / inputHeight;
  let offsetX = 0;
  let offsetY = 0;
  if (resize !== 'stretch') {
    const factor = resize === 'letterbox' ? Math.min(inputWidth / width, inputHeight / height) : Math.max(inputWidth / width, inputHeight / height);
    const resizedWidth = Math.round(width * factor);
    const resizedHeight = Math.round(height * factor);
    // Padding before the image (letterbox) is subtracted; a crop's cut-off part (cover) is added back.
    offsetX = Math.floor((inputWidth - resizedWidth) / 2);
    offsetY = Math.floor((inputHeight - resizedHeight) / 2);
    scaleX = width / resizedWidth;
    scaleY = height / resizedHeight;
  }
  const x = (value: number) => Math.min(width, Math.max(0, (value - offsetX) * scaleX));
  const y = (value: number) => Math.min(height, Math.max(0, (value - offsetY) * scaleY));
  return [x(box[0]), y(box[1]), x(box[2]), y(box[3])];
}

function intersectionOverUnion(a: Box, b: Box): number {
  const width = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const intersection = width * height;
  const area = (box: Box) => (box[2] - box[0]) * (box[3] - box[1]);
  return intersection / (area(a) + area(b) - intersection);
}

/** Best first; a box goes when one of its class already kept overlaps it more than `iouThreshold`. */
export function nonMaxSuppression(candidates: readonly Detection[], iouThreshold: number, maxDetections: number): Detection[] {
  const kept: Detection[] = [];
  for (const candidate of [...candidates].sort((a, b) => b.score - a.score)) {
    if (kept.length === maxDetections) break;
    if (kept.some((other) => other.index === candidate.index && intersectionOverUnion(other.box, candidate.box) > iouThreshold)) continue;
    kept.push(candidate);
  }
  return kept;
}

const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Detections from a detector's rows ([x_min, y_min, x_max, y_max, score, class] each, box in the
 * model's input pixels): those at or above the threshold, suppressed, in the photo's pixels, labelled.
 */
export function decodeDetections(rows: ArrayLike<number>, geometry: DetectionGeometry, labels: readonly string[] | undefined, options: DetectionOptions): Detection[] {
  const candidates: Detection[] = [];
  for (let at = 0; at + DETECTION_ROW_VALUES <= rows.length; at += DETECTION_ROW_VALUES) {
    const score = rows[at + 4];
    if (!(score >= options.threshold)) continue;
    const index = Math.round(rows[at + 5]);
    const box = toImagePixels([rows[at], rows[at + 1], rows[at + 2], rows[at + 3]], geometry);
    // A box that lies wholly on the letterbox padding has nothing of the photo in it.
    if (box[2] <= box[0] || box[3] <= box[1]) continue;
    candidates.push({ label: labels?.[index] ?? String(index), index, score, box });
  }
  return nonMaxSuppression(candidates, options.iou_threshold, options.max_detections).map((detection) => ({
    ...detection,
    score: round(detection.score, 4),
    box: detection.box.map((value) => round(value, 1)) as Box,
  }));
}
