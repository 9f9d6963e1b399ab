/**
 * Photos in, labels out, for a model whose one input declares image pre-processing: each image is
 * one request on the model's path (the batcher batches them), and its answer the top predictions
 * with a confidence a person can act on.
 */
import { invalidArgument, quote } from '../core/errors.js';
import type { RequestContext } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import { computeShareNs, type TimingKey } from '../core/timings.js';
import { aboutTheImage, ImageInputError } from '../processing/image-preprocessor.js';
import { classifyRows, DEFAULT_POSTPROCESSING, type ImageClassification } from '../processing/output-postprocessor.js';
import type { ModelVersion } from './model-version.js';

/** Where the time of a call over images went, summed over its images (/classify and /detect answer it as `timing`). */
export interface ImageTimings {
  preprocessMs: number;
  queueMs: number;
  inferMs: number;
  postprocessMs: number;
  totalMs: number;
}

/** The timings as the classify and detect answers carry them (`timing`), wherever the call was made. */
export function timingAnswer(timings: ImageTimings) {
  // Hundredths of a millisecond: finer is the clock's noise, not the request's.
  const ms = (value: number) => Math.round(value * 100) / 100;
  return {
    preprocess_ms: ms(timings.preprocessMs),
    queue_ms: ms(timings.queueMs),
    inference_ms: ms(timings.inferMs),
    postprocess_ms: ms(timings.postprocessMs),
    total_ms: ms(timings.totalMs),
  };
}

/** A multipart form's file that is not an image the model can use: its place among the form's files, and why. */
export interface UnreadableFile {
  index: number;
  error: string;
}

/** One classify call's answer: per image, and where its time went (summed over the images). */
export interface ClassifyResult {
  /** One per image that could be read, in order. */
  results: ImageClassification[];
  /** A form's files that could not be read (context.rowsArePartsOfList); elsewhere such an image fails the call. */
  unreadable?: UnreadableFile[];
  timings: ImageTimings & {
    /** The images' share of the executions they were part of (what a batch job is charged). */
    computeShareMs: number;
  };
}

/** One phase's time over the images' answers, in milliseconds. */
export function summedMs(answers: readonly { timings: Partial<Record<TimingKey, number>> }[], key: TimingKey): number {
  return answers.reduce((total, answer) => total + (answer.timings[key] ?? 0), 0) / 1e6;
}

/** The output a classifier answers with: the one with post-processing, else the one with labels, else the only one. */
function classificationOutput(model: ModelVersion) {
  const outputs = model.config.output;
  const output = outputs.find((candidate) => candidate.postprocess) ?? outputs.find((candidate) => candidate.label_filename) ?? (outputs.length === 1 ? outputs[0] : undefined);
  if (!output) throw invalidArgument(`model '${model.name}' has several outputs and none declares postprocess or label_filename; it cannot classify`);
  // Scores are one vector per image: an output of boxes (a detector's [1, 100, 6]) would be read as 600 "classes".
  // A model that does not batch may still declare its rows as a leading -1.
  const perImage = !model.batched && output.dims[0] === -1 ? output.dims.slice(1) : output.dims;
  if (perImage.filter((dim) => dim !== 1).length > 1) {
    throw invalidArgument(
      `model '${model.name}' cannot classify: its output '${output.name}' is [${output.dims.join(', ')}] per image, not one score per class; an object detector answers POST /v2/models/${model.name}/detect`,
    );
  }
  return output;
}

/**
 * Why a model cannot serve an image route (`purpose`: 'classify images', 'detect objects'): it takes no image through
 * preprocess.image. A model whose one input is BYTES (a pipeline that decodes its own image, such as ocr) is sent the
 * image on /infer instead, which this names.
 */
export function notAnImageModel(model: ModelVersion, purpose: string) {
  const required = model.config.input.filter((input) => !input.optional);
  if (required.length === 1 && required[0].data_type === 'TYPE_STRING') {
    return invalidArgument(
      `model '${model.name}' takes its input '${required[0].name}' as BYTES that it reads itself, with no preprocess.image, so this route cannot ${purpose} with it: send the image to POST /v2/models/${model.name}/infer as the body (Content-Type image/*)`,
    );
  }
  return invalidArgument(`model '${model.name}' does not take a single image input (declare preprocess.image on its one input to ${purpose})`);
}

/** The model's one image input and the output it classifies with; refuses a model that has no such pair. */
export function imageClassifier(model: ModelVersion) {
  const [imageInput, ...others] = model.imageInputs;
  if (!imageInput || others.length > 0 || model.config.input.some((input) => input.name !== imageInput && !input.optional)) {
    throw notAnImageModel(model, 'classify images');
  }
  return { imageInput, output: classificationOutput(model) };
}

/** Each image as one request on the model's path; its answer holds the classification output, activated. */
function runImages(model: ModelVersion, images: readonly Buffer[], context: RequestContext) {
  const { imageInput, output } = imageClassifier(model);
  return runImagesThrough(model, imageInput, output.name, images, context);
}

/**
 * Each image as one request to the model's image input, answered with one output. An image that
 * cannot be used is named by its position among several or in a list (a multipart form's files),
 * and as "the image" when it is the only one. `postprocess` works on each image's outputs within its
 * request (see ModelVersion.run).
 */
export async function runImagesThrough(
  model: ModelVersion,
  imageInput: string,
  outputName: string,
  images: readonly Buffer[],
  context: RequestContext,
  postprocess?: (outputs: Record<string, Tensor>, index: number) => unknown,
) {
  const listed = images.length > 1 || context.rowsArePartsOfList === true;
  // The images of one request were admitted with it: each waits its turn behind the others rather than seeing
  // its own siblings as a backlog too long to wait out (a form of 30 photos refused its last ones on a busy machine).
  if (images.length > 1) context.patient = true;
  const settled = await Promise.allSettled(
    images.map((image, index) =>
      model
        .run(
          {
            model: model.name,
            // Several images, or a list of one (a multipart form's files), are rows of one request to the client:
            // `<id>/<row>`, as the monitor names a batch's rows for feedback and as the answer's `results` lists them.
            id: listed && context.requestId ? `${context.requestId}/${index}` : undefined,
            inputs: [{ name: imageInput, datatype: 'BYTES', shape: model.batched ? [1, 1] : [1], data: [image] }],
            outputs: [{ name: outputName }],
          },
          context,
          { postprocess: postprocess && ((outputs) => postprocess(outputs, index)) },
        )
        .catch((error: unknown) => {
          throw error instanceof ImageInputError ? new UnreadableImage(listed ? `image ${index}: ${error.reason}` : aboutTheImage(error.reason), error.reason) : error;
        }),
    ),
  );
  // A failure that is not an image's own (overload, the server stopping) fails the request, as does an unreadable image
  // outside a form; a form's files are answered each, an unreadable one with its error in its place (all unreadable: 400).
  const other = settled.find((outcome) => outcome.status === 'rejected' && !(outcome.reason instanceof UnreadableImage));
  if (other) throw (other as PromiseRejectedResult).reason;
  const unreadable = settled.map((outcome) => (outcome.status === 'rejected' ? (outcome.reason as UnreadableImage) : undefined));
  const firstUnreadable = unreadable.find((reason) => reason !== undefined);
  if (firstUnreadable && (context.rowsArePartsOfList !== true || unreadable.every((reason) => reason !== undefined))) {
    throw invalidArgument(unreadable.filter((reason) => reason !== undefined).map((reason) => reason.message).join('; '));
  }
  return settled.map((outcome, index) => (outcome.status === 'fulfilled' ? outcome.value : { unreadable: unreadable[index]!.reason }));
}

/** An image a request cannot use, with its message as the request would say it and the bare reason a form's file is answered with. */
class UnreadableImage extends Error {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

/** Whether an answer of runImagesThrough is a form's file that could not be read. */
const isUnreadable = (answer: object): answer is { unreadable: string } => 'unreadable' in answer;

/** The files of a form that could not be read, when there are any. */
export function unreadableFilesOf(answers: readonly object[]): { unreadable?: UnreadableFile[] } {
  const unreadable = answers.flatMap((answer, index) => (isUnreadable(answer) ? [{ index, error: answer.unreadable }] : []));
  return unreadable.length > 0 ? { unreadable } : {};
}

/** The answers of the images that could be read. */
export function answered<Answer extends object>(answers: readonly (Answer | { unreadable: string })[]): Answer[] {
  return answers.filter((answer): answer is Answer => !isUnreadable(answer));
}

/** The labels of the output a classifier answers with, in class order; undefined when it has none. */
export function classLabels(model: ModelVersion): readonly string[] | undefined {
  return model.labelsOf(imageClassifier(model).output.name);
}

/** Per image, the scores of every class (after the output's activation: probabilities for softmax): what an evaluation compares. */
export async function imageScores(model: ModelVersion, images: readonly Buffer[], context: RequestContext = {}): Promise<Float32Array[]> {
  const { output } = imageClassifier(model);
  // Not a form: an image that cannot be read fails the call, so every image has its answer.
  const answers = answered(await runImages(model, images, { ...context, rowsArePartsOfList: false }));
  return answers.map(({ outputs }) => Float32Array.from(outputs[output.name].data as ArrayLike<number>));
}

export async function classifyImages(
  model: ModelVersion,
  images: readonly Buffer[],
  options: { topK?: number } = {},
  context: RequestContext = {},
): Promise<ClassifyResult> {
  const { output } = imageClassifier(model);
  if (images.length === 0) throw invalidArgument('no images to classify');
  if (options.topK !== undefined && (!Number.isInteger(options.topK) || options.topK < 1)) {
    throw invalidArgument(`top_k must be a positive integer, got ${quote(options.topK)}`);
  }
  const spec = output.postprocess ?? DEFAULT_POSTPROCESSING;
  const labels = model.labelsOf(output.name);
  const started = performance.now();
  const outcomes = await runImages(model, images, context);
  const answers = answered(outcomes);
  const results = answers.flatMap(({ outputs, ood }) =>
    classifyRows(outputs[output.name], spec, model.batched, labels, options.topK).map((result, row) => (ood?.[row] ? { ...result, ood: ood[row] } : result)),
  );
  const sum = (key: TimingKey) => summedMs(answers, key);
  return {
    results,
    ...unreadableFilesOf(outcomes),
    timings: {
      preprocessMs: sum('preprocessNs'),
      queueMs: sum('queueNs'),
      inferMs: sum('computeInferNs'),
      postprocessMs: sum('postprocessNs'),
      totalMs: performance.now() - started,
      computeShareMs: answers.reduce((total, answer) => total + computeShareNs(answer.timings, 1), 0) / 1e6,
    },
  };
}
