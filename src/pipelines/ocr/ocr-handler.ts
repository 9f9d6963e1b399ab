/**
 * The bundled OCR application, a built-in handler (backend "builtin", handler "ocr"): a photo in,
 * its lines of text out with their boxes and confidences. PaddleOCR's pipeline: the DB detector's
 * probability map → text boxes → each box cut out and straightened → the direction classifier
 * (lines upside down are turned) → the recogniser → CTC decoding with its dictionary. Each model
 * is called through the server (context.infer), so its requests queue and batch with the model's
 * other traffic and count in its statistics; the lines of one photo go as separate requests so
 * that its batcher joins them. Runs in a worker thread like any handler.
 */
import { loadSharp } from '../../core/sharp.js';
import type { Parameters } from '../../core/inference.js';
import { describeDecodeError, ImageRejection, openEncodedImage } from '../../processing/image-preprocessor.js';
import { decodeCtc } from './ctc-decode.js';
import { cropQuad, detectionTensor, normaliseInto, rotateHalf, type RgbImage } from './line-image.js';
import { ocrParameters, type OcrParameters } from './ocr-parameters.js';
import { findTextBoxes, toImageBoxes, type TextBox } from './text-boxes.js';

/** A tensor as a handler sees it. */
interface HandlerTensor {
  datatype?: string;
  shape: number[];
  data: ArrayLike<number> | Buffer[] | string[];
}

interface HandlerRequest {
  inputs: Record<string, HandlerTensor>;
  parameters: Parameters;
  outputs: string[];
}

/** What the handler uses of the context the worker gives it. */
interface HandlerContext {
  modelName: string;
  parameters: Record<string, string>;
  labels: Record<string, string[]>;
  infer(model: string, inputs: Record<string, HandlerTensor>, options: { request: object }): Promise<Record<string, HandlerTensor>>;
  withDecodeSlot<T>(request: object, decode: () => Promise<T>): Promise<T>;
}

/** PaddleOCR's line height for the direction classifier and the recogniser, the classifier's width, and the recogniser's least width. */
const LINE_HEIGHT = 48;
const DIRECTION_WIDTH = 192;
const MIN_RECOGNITION_WIDTH = 320;
/** PaddleOCR's exported models all name their input x. */
const STEP_INPUT = 'x';

let context: HandlerContext;
let settings: OcrParameters;
let dictionary: string[];

export function initialize(given: HandlerContext): void {
  context = given;
  settings = ocrParameters(given.parameters);
  dictionary = given.labels.text ?? [];
  if (dictionary.length < 2) {
    throw new Error(
      `model '${given.modelName}': output 'text' must name the recogniser's dictionary with label_filename (one character per line, the CTC blank first)`,
    );
  }
}

export function execute(requests: HandlerRequest[]): Promise<Record<string, HandlerTensor>>[] {
  return requests.map((request) => readText(request));
}

function refusal(message: string): Error {
  return Object.assign(new Error(message), { code: 'INVALID_ARGUMENT' });
}

/** Wall time of each phase of one request, in milliseconds. */
class PhaseClock {
  private readonly started = performance.now();
  readonly phases: Record<string, number> = {};

  async time<T>(phase: string, work: () => T | Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      this.phases[`${phase}_ms`] = round((this.phases[`${phase}_ms`] ?? 0) + performance.now() - start);
    }
  }

  summary(): Record<string, number> {
    return { ...this.phases, total_ms: round(performance.now() - this.started) };
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;

async function readText(request: HandlerRequest): Promise<Record<string, HandlerTensor>> {
  const clock = new PhaseClock();
  const encoded = (request.inputs.image.data as Buffer[])[0];
  const image = await clock.time('decode', () => context.withDecodeSlot(request, () => decodeImage(encoded)));
  const map = await clock.time('detection', () => detect(image, request));
  const boxes = await clock.time('boxes', () => toImageBoxes(findTextBoxes(map.data, map.width, map.height, boxSettings()), map, image));
  let lines = await clock.time('crop', () => boxes.map((box) => cropQuad(image, box.points)));
  if (settings.direction_model !== 'none') lines = await clock.time('direction', () => upright(lines, request));
  const read = await clock.time('recognition', () => recognise(lines, request));
  const kept: { box: TextBox; text: string; score: number }[] = [];
  read.forEach(({ text, score }, index) => {
    // A margin read as a space says nothing about the line.
    const line = text.trim();
    if (line !== '' && score >= settings.drop_score) kept.push({ box: boxes[index], text: line, score });
  });
  const corners = new Float32Array(kept.length * 8);
  kept.forEach(({ box }, index) => box.points.forEach((point, corner) => corners.set([point.x, point.y], index * 8 + corner * 2)));
  return {
    text: { shape: [kept.length], data: kept.map((line) => line.text) },
    boxes: { shape: [kept.length, 4, 2], data: corners },
    scores: { shape: [kept.length], data: Float32Array.from(kept, (line) => line.score) },
    timings: { shape: [1], data: [JSON.stringify({ ...clock.summary(), boxes: boxes.length, lines: kept.length })] },
  };
}

function boxSettings() {
  return { threshold: settings.det_db_thresh, boxThreshold: settings.det_db_box_thresh, unclipRatio: settings.det_db_unclip_ratio, maxCandidates: settings.max_candidates };
}

/** The photo as upright RGB (its EXIF orientation applied, transparency on white); a body that is no accepted image is the client's mistake. */
async function decodeImage(encoded: Buffer): Promise<RgbImage> {
  const problem = (reason: string) => refusal(`input 'image' must be one encoded image, but ${reason}`);
  try {
    const { input } = await openEncodedImage(encoded, settings);
    const { data, info } = await input.rotate().flatten({ background: '#ffffff' }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels instead of 3`);
    return { data, width: info.width, height: info.height };
  } catch (error) {
    if (error instanceof ImageRejection) throw problem(error.message);
    const reason = describeDecodeError((error as Error).message, settings.max_pixels);
    throw problem(reason.startsWith('it is') ? reason : `it could not be decoded (${reason})`);
  }
}

async function resizeRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  const sharp = await loadSharp();
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** A step model's one output as float32 values; a refusal or failure of the step is named. */
async function callStep(step: string, model: string, x: HandlerTensor, request: HandlerRequest): Promise<Float32Array> {
  let outputs: Record<string, HandlerTensor>;
  try {
    outputs = await context.infer(model, { [STEP_INPUT]: x }, { request });
  } catch (error) {
    throw Object.assign(new Error(`${step} step (model '${model}'): ${(error as Error).message}`), { code: (error as { code?: string }).code });
  }
  const [output] = Object.values(outputs);
  const data = output?.data;
  if (!(data instanceof Float32Array)) throw new Error(`${step} step (model '${model}') answered ${output ? output.datatype : 'no output'} instead of FP32 values`);
  return data;
}

/** The detector's text probability map, on the photo scaled so that its longer side is at most det_limit_side_len, both sides multiples of 32. */
async function detect(image: RgbImage, request: HandlerRequest): Promise<{ data: Float32Array; width: number; height: number }> {
  const longer = Math.max(image.width, image.height);
  const shorter = Math.min(image.width, image.height);
  const ratio =
    settings.det_limit_type === 'max'
      ? Math.min(1, settings.det_limit_side_len / longer)
      : Math.min(Math.max(1, settings.det_limit_side_len / shorter), settings.det_max_side_len / longer);
  const width = Math.max(32, Math.round((image.width * ratio) / 32) * 32);
  const height = Math.max(32, Math.round((image.height * ratio) / 32) * 32);
  const scaled = await resizeRgb(image, width, height);
  const data = await callStep('detection', settings.detection_model, { datatype: 'FP32', shape: [1, 3, height, width], data: detectionTensor(scaled) }, request);
  if (data.length !== width * height) throw new Error(`detection step (model '${settings.detection_model}') answered ${data.length} values for a ${width}×${height} map`);
  return { data, width, height };
}

/** A line's width at height 48, its aspect kept, at most `maxWidth`. */
function widthAtLineHeight(line: RgbImage, maxWidth: number): number {
  return Math.min(maxWidth, Math.max(1, Math.ceil((line.width * LINE_HEIGHT) / line.height)));
}

/** A line resized to `width` × 48, normalised into a zero-padded [1,3,48,paddedWidth] tensor. */
async function lineTensor(line: RgbImage, width: number, paddedWidth: number): Promise<HandlerTensor> {
  const resized = await resizeRgb(line, width, LINE_HEIGHT);
  const data = new Float32Array(3 * LINE_HEIGHT * paddedWidth);
  normaliseInto(resized, data, paddedWidth);
  return { datatype: 'FP32', shape: [1, 3, LINE_HEIGHT, paddedWidth], data };
}

/**
 * The lines, each turned when the direction classifier is sure enough that it is upside down.
 * Every line's input is ready before the first is sent, so the calls reach the model's batcher together.
 */
async function upright(lines: RgbImage[], request: HandlerRequest): Promise<RgbImage[]> {
  const inputs = await Promise.all(lines.map((line) => lineTensor(line, widthAtLineHeight(line, DIRECTION_WIDTH), DIRECTION_WIDTH)));
  const answers = await Promise.all(inputs.map((x) => callStep('direction', settings.direction_model, x, request)));
  return lines.map((line, index) => (answers[index][1] > settings.cls_thresh ? rotateHalf(line) : line));
}

/**
 * Each line's text and confidence. As PaddleOCR batches them, the lines are sorted by width and
 * taken rec_batch_num at a time, each group padded to its widest (at least 320, rounded up to
 * recognition_width_step): a group's requests have one shape, so the recogniser's batcher can
 * join them. All inputs are made before any is sent.
 */
async function recognise(lines: RgbImage[], request: HandlerRequest): Promise<{ text: string; score: number }[]> {
  const step = settings.recognition_width_step;
  const widths = lines.map((line) => widthAtLineHeight(line, settings.max_line_width));
  const order = widths.map((_, index) => index).sort((a, b) => widths[a] - widths[b]);
  const padded = new Array<number>(lines.length);
  for (let start = 0; start < order.length; start += settings.rec_batch_num) {
    const group = order.slice(start, start + settings.rec_batch_num);
    const widest = Math.max(...group.map((index) => widths[index]));
    for (const index of group) padded[index] = Math.max(MIN_RECOGNITION_WIDTH, Math.ceil(widest / step) * step);
  }
  const inputs = await Promise.all(lines.map((line, index) => lineTensor(line, widths[index], padded[index])));
  const answers = await Promise.all(inputs.map((x) => callStep('recognition', settings.recognition_model, x, request)));
  return answers.map((probabilities) => decodeCtc(probabilities, dictionary));
}
