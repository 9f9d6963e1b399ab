/**
 * The quantization record `nereid quantize` writes beside a version's model file: read when the
 * version loads, so that the version can say what it is (its metadata names the quantized
 * versions) without anyone opening the repository.
 */
import { stat } from 'node:fs/promises';
import { z } from 'zod';
import { describeIssues } from '../config/model-config.js';
import { readJsonFile } from '../core/json-file.js';
import type { QuantizationSummary } from '../model/model-version.js';

export const QUANTIZATION_RECORD_FILE = 'quantization.json';

/** Far above a real record (a few KiB, the list of quantized nodes being its longest part), far below a memory concern. */
const MAX_RECORD_BYTES = 1024 * 1024;

const METHOD_DESCRIPTIONS: Readonly<Record<string, string>> = {
  static: 'int8 static QDQ',
  auto: 'int8 static QDQ, costliest nodes float',
  dynamic: 'int8 dynamic',
  fp16: 'fp16 weights',
};

/** The number format a method leaves the weights in, as a metric label (`nereid_model_info{precision}`) can be queried by. */
const METHOD_PRECISIONS: Readonly<Record<string, string>> = { static: 'int8', auto: 'int8', dynamic: 'int8', fp16: 'fp16' };

/**
 * The fields serving reads; the rest of the record (calibration, nodes, agreement, speed) is for
 * people and `nereid eval`, and is let through unchecked so that a record from a newer `nereid
 * quantize` with more fields still loads.
 */
export const quantizationRecordSchema = z.object({
  method: z.string().min(1),
  sourceVersion: z.string().regex(/^[1-9]\d*$/, 'expected a version number'),
  sizes: z.object({
    sourceBytes: z.number().int().positive(),
    quantizedBytes: z.number().int().positive(),
    ratio: z.number().positive(),
  }),
});

/**
 * The record at `path` (already checked to lie inside the repository), summarised; `shownAs` names
 * it in errors as clients may see it.
 *
 * A record that is too large, not JSON or lacks a field fails the version's load, naming the file,
 * rather than letting the version serve as if it were not quantized: the record is written with the
 * model file as one version, so a broken one means the folder is not what `nereid quantize` left
 * (half-copied, hand-edited), and Triton's users expect a version whose files do not parse to be
 * UNAVAILABLE with the reason — as for a config that does not parse — while the model's other
 * versions keep serving. Serving it would have the metadata call an int8 version float, which is
 * the mistake the record exists to prevent.
 */
export async function readQuantizationRecord(path: string, shownAs: string, modelPath?: string): Promise<QuantizationSummary> {
  const raw = await readJsonFile(path, { shownAs, maxBytes: MAX_RECORD_BYTES, kind: 'a quantization record' });
  const parsed = quantizationRecordSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${shownAs} is not a quantization record: ${describeIssues(parsed.error, '', '(the record)')}`);
  const { method, sourceVersion, sizes } = parsed.data;
  // The record describes the model file written with it; another file there (a float model copied over
  // it) would be served under the record's claims. Its size is what the record can check it by.
  const modelBytes = modelPath === undefined ? undefined : (await stat(modelPath)).size;
  if (modelBytes !== undefined && modelBytes !== sizes.quantizedBytes) {
    throw new Error(`${shownAs} records a quantized model of ${sizes.quantizedBytes} bytes, but the version's model file is ${modelBytes} bytes: it is not the file nereid quantize wrote beside the record`);
  }
  return { method, description: METHOD_DESCRIPTIONS[method] ?? method, precision: METHOD_PRECISIONS[method] ?? 'unknown', sourceVersion, sizeRatio: sizes.ratio };
}
