/**
 * Small, pure helpers for driving the bundled PaddleOCR models: render a text line with sharp,
 * preprocess it the way PaddleOCR does, CTC-decode the recogniser's output, and speak Triton's
 * binary tensor data extension. Shared by the OCR end-to-end test and benchmarks.
 */
import { readFile } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import { ctcGreedyText } from '../../src/eval/output-comparison.js';
import { detectionTensor, normaliseInto, type RgbImage } from '../../src/pipelines/ocr/line-image.js';

export type { RgbImage };

/** A float32 tensor in NCHW order, ready to send as the models' input `x`. */
export interface Fp32Tensor {
  data: Float32Array;
  shape: number[];
}

export interface RenderOptions {
  font?: string;
  dpi?: number;
  /** White border added on every side, in pixels. */
  margin?: number;
}

/**
 * Text renderings run one at a time: Pango and fontconfig under libvips' worker threads are not safe to call side by
 * side (three lines in different fonts rendered at once crashed a test process with SIGSEGV).
 */
let rendering: Promise<unknown> = Promise.resolve();

/** Renders one line of black text on white with Pango (sharp's text input), as RGB. */
export function renderTextLine(text: string, options: RenderOptions = {}): Promise<RgbImage> {
  const next = rendering.then(() => renderNow(text, options));
  rendering = next.catch(() => undefined);
  return next;
}

async function renderNow(text: string, options: RenderOptions): Promise<RgbImage> {
  const { font = 'DejaVu Sans', dpi = 200, margin = 8 } = options;
  const { data, info } = await sharp({ text: { text: escapePangoMarkup(text), font, dpi, rgba: true } })
    .flatten({ background: '#ffffff' })
    .extend({ top: margin, bottom: margin, left: margin, right: margin, background: '#ffffff' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected an RGB rendering, got ${info.channels} channels`);
  return { data, width: info.width, height: info.height };
}

/** sharp's text input is Pango markup: escape what markup would interpret. */
function escapePangoMarkup(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Turns the image upside down (what the direction classifier calls '180'). */
export async function rotate180(image: RgbImage): Promise<RgbImage> {
  return rawRgb(sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).rotate(180));
}

/** Resizes to exactly width x height (no aspect ratio kept). */
export async function resizeRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  return rawRgb(
    sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).resize(width, height, { fit: 'fill' }),
  );
}

async function rawRgb(pipeline: Sharp): Promise<RgbImage> {
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** The whole image normalised as one NCHW tensor [1, 3, height, width]. */
export function normalise(image: RgbImage): Fp32Tensor {
  const data = new Float32Array(3 * image.height * image.width);
  normaliseInto(image, data, image.width);
  return { data, shape: [1, 3, image.height, image.width] };
}

/** Recogniser input: resized to `height` (48) keeping the aspect ratio, normalised, NCHW [1, 3, 48, W]. */
export async function recognitionInput(image: RgbImage, height = 48): Promise<Fp32Tensor> {
  const width = Math.max(1, Math.ceil((image.width * height) / image.height));
  return normalise(await resizeRgb(image, width, height));
}

/**
 * Direction-classifier input, as PaddleOCR's classifier prepares it: resized to `height` keeping
 * the aspect ratio but at most `width` wide, normalised, and padded on the right with zeros
 * (mid-grey once normalised) to [1, 3, height, width].
 */
export async function directionInput(image: RgbImage, height = 48, width = 192): Promise<Fp32Tensor> {
  const resizedWidth = Math.min(width, Math.max(1, Math.ceil((image.width * height) / image.height)));
  const resized = await resizeRgb(image, resizedWidth, height);
  const data = new Float32Array(3 * height * width);
  normaliseInto(resized, data, width);
  return { data, shape: [1, 3, height, width] };
}

/** Detector input: text lines stacked on white, padded to sides that are multiples of 32, normalised, NCHW [1, 3, H, W]. */
export async function detectionInput(lines: readonly RgbImage[]): Promise<Fp32Tensor> {
  const width = Math.ceil(Math.max(...lines.map((line) => line.width)) / 32) * 32;
  const height = Math.ceil(lines.reduce((sum, line) => sum + line.height, 0) / 32) * 32;
  let top = 0;
  const composite = lines.map((line) => {
    const placed = { input: line.data, raw: { width: line.width, height: line.height, channels: 3 as const }, top, left: 0 };
    top += line.height;
    return placed;
  });
  const data = await sharp({ create: { width, height, channels: 3, background: '#ffffff' } }).composite(composite).raw().toBuffer();
  return { data: detectionTensor({ data, width, height }), shape: [1, 3, height, width] };
}

/** A batch-job JSONL record of the models' input `x` in V2 form, with an optional label; values rounded to what 8-bit pixels need. */
export function inputRecord(tensor: Fp32Tensor, label?: string): string {
  const data = Array.from(tensor.data, (value) => Math.round(value * 1e5) / 1e5);
  const inputs = [{ name: 'x', datatype: 'FP32', shape: tensor.shape, data }];
  return JSON.stringify(label === undefined ? { inputs } : { inputs, label });
}

/** Text lines from plain-text files: paragraphs' words wrapped at 48 characters, lines of 8 or more, printable ASCII, each once. */
export async function textLines(paths: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  for (const path of paths) {
    for (const paragraph of (await readFile(path, 'utf8')).split(/\n\s*\n/)) {
      let line = '';
      for (const word of paragraph.split(/\s+/).filter(Boolean)) {
        if (line && line.length + 1 + word.length > 48) {
          lines.push(line);
          line = '';
        }
        line = line ? `${line} ${word}` : word;
      }
      if (line) lines.push(line);
    }
  }
  return [...new Set(lines.filter((line) => line.length >= 8 && line.length <= 48 && /^[\x20-\x7e]+$/.test(line)))];
}

/** Reads a Triton labels file: one label per line, kept verbatim (the recogniser's last label is a space). */
export async function readLabels(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/);
}

/** Greedy CTC decoding of [steps, classes] probabilities (the evaluator's decoder), checking the sizes first. */
export function ctcGreedyDecode(probabilities: ArrayLike<number>, steps: number, classes: number, labels: readonly string[]): string {
  if (probabilities.length !== steps * classes) {
    throw new Error(`expected ${steps} x ${classes} = ${steps * classes} values, got ${probabilities.length}`);
  }
  if (labels.length !== classes) throw new Error(`expected ${classes} labels, got ${labels.length}`);
  const data = probabilities instanceof Float32Array ? probabilities : Float32Array.from(probabilities);
  return ctcGreedyText({ data, dims: [steps, classes] }, labels);
}

/** The V2 `Inference-Header-Content-Length` header, as Triton spells it. */
export const INFERENCE_HEADER = 'Inference-Header-Content-Length';

export interface BinaryInput {
  name: string;
  datatype: string;
  shape: number[];
  /** Raw little-endian element bytes. */
  bytes: Uint8Array;
}

/** A Triton binary-tensor-data request body: the JSON header followed by each input's bytes. */
export function encodeBinaryInferRequest(
  inputs: readonly BinaryInput[],
  outputs: readonly { name: string; parameters?: Record<string, unknown> }[],
): { body: Buffer; headerLength: number } {
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map(({ name, datatype, shape, bytes }) => ({
        name,
        datatype,
        shape,
        parameters: { binary_data_size: bytes.byteLength },
      })),
      outputs,
    }),
  );
  const body = Buffer.concat([header, ...inputs.map(({ bytes }) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))]);
  return { body, headerLength: header.length };
}

export interface DecodedOutput {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, unknown>;
  /** JSON data, when the output came back as JSON. */
  data?: unknown[];
  /** Binary data, when the output came back after the header. */
  bytes?: Buffer;
}

export interface DecodedResponse {
  model_name: string;
  model_version?: string;
  outputs: DecodedOutput[];
}

/** Splits a V2 response body into its JSON header and each binary output's bytes. */
export function decodeInferResponse(body: Buffer, headerLength: string | null): DecodedResponse {
  const jsonLength = headerLength === null ? body.length : Number(headerLength);
  if (!Number.isInteger(jsonLength) || jsonLength < 0 || jsonLength > body.length) {
    throw new Error(`bad ${INFERENCE_HEADER} '${headerLength}' for a body of ${body.length} bytes`);
  }
  const header = JSON.parse(body.subarray(0, jsonLength).toString('utf8')) as DecodedResponse;
  let offset = jsonLength;
  for (const output of header.outputs) {
    const size = output.parameters?.binary_data_size;
    if (size === undefined) continue;
    if (typeof size !== 'number' || offset + size > body.length) throw new Error(`output '${output.name}': bad binary_data_size ${size}`);
    output.bytes = body.subarray(offset, offset + size);
    offset += size;
  }
  if (offset !== body.length) throw new Error(`${body.length - offset} bytes after the last binary output`);
  return header;
}

/** Views little-endian float32 bytes as a Float32Array (copying if misaligned). */
export function float32View(bytes: Buffer): Float32Array {
  if (bytes.byteLength % 4 !== 0) throw new Error(`${bytes.byteLength} bytes is not a whole number of float32 values`);
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  return new Float32Array(Uint8Array.from(bytes).buffer);
}

/** BYTES elements in Triton's binary form: 4-byte little-endian length, then the bytes. */
export function decodeBytesTensor(bytes: Buffer): string[] {
  const elements: string[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const length = bytes.readUInt32LE(offset);
    elements.push(bytes.subarray(offset + 4, offset + 4 + length).toString('utf8'));
    offset += 4 + length;
  }
  return elements;
}
