/**
 * Photos in, labelled boxes out, for a detector: a model whose one input declares image
 * pre-processing and one of whose outputs, with labels, gives rows [x_min, y_min, x_max, y_max,
 * score, class] in the input's pixels (the bundled CenterNet does). Each image is one request on the
 * model's path; its rows become boxes in the photo's own pixels.
 */
import { invalidArgument } from '../core/errors.js';
import type { RequestContext } from '../core/inference.js';
import type { TimingKey } from '../core/timings.js';
import { imageGeometry } from '../processing/image-preprocessor.js';
import { decodeDetections, DETECTION_ROW_VALUES, orientedSize, parseDetectionOptions, type Detection, type DetectionGeometry } from '../processing/object-detection.js';
import { answered, notAnImageModel, runImagesThrough, summedMs, unreadableFilesOf, type ImageTimings, type UnreadableFile } from './image-classification.js';
import type { ModelVersion } from './model-version.js';

export interface ImageDetections {
  /** The photo's own size (after its EXIF orientation), the space the boxes are in. */
  image: { width: number; height: number };
  detections: Detection[];
}

export interface DetectResult {
  /** One per image that could be read, in order. */
  results: ImageDetections[];
  /** A form's files that could not be read, as for classifyImages. */
  unreadable?: UnreadableFile[];
  timings: ImageTimings;
}

/** The output whose rows are detections (labelled, rows of [x_min, y_min, x_max, y_max, score, class]), if the model has one. */
export function detectionsOutput(model: ModelVersion) {
  // Rows of six: a classifier's vector of six scores ([6]) is not one.
  const rows = (dims: readonly number[]) => dims.length >= 2 && dims[dims.length - 1] === DETECTION_ROW_VALUES;
  return model.config.output.find((candidate) => candidate.label_filename && rows(candidate.dims));
}

/** The detector's image input, how it is resized, and the output whose rows are detections. */
export function detector(model: ModelVersion) {
  const [imageInput, ...others] = model.imageInputs;
  if (!imageInput || others.length > 0) {
    throw notAnImageModel(model, 'detect objects');
  }
  const input = model.config.input.find((candidate) => candidate.name === imageInput)!;
  const output = detectionsOutput(model);
  if (!output) {
    throw invalidArgument(
      `model '${model.name}' has no detections output (an output with label_filename whose rows are [x_min, y_min, x_max, y_max, score, class]); it cannot detect objects`,
    );
  }
  const spec = input.preprocess!.image;
  const dims = input.reshape?.shape ?? input.dims;
  // As the pre-processing reads them: a non-batching model's [1, H, W, C] is one image.
  const { width, height } = imageGeometry(input.name, !model.batched && dims.length === 4 && dims[0] === 1 ? dims.slice(1) : dims, spec);
  return { imageInput, output: output.name, input: { width, height, resize: spec.resize } };
}

export async function detectObjects(model: ModelVersion, images: readonly Buffer[], query: unknown = {}, context: RequestContext = {}): Promise<DetectResult> {
  const { imageInput, output, input } = detector(model);
  if (images.length === 0) throw invalidArgument('no images to detect objects in');
  const parsed = parseDetectionOptions(query);
  if (parsed.problem !== undefined) throw invalidArgument(parsed.problem);
  const labels = model.labelsOf(output);
  const started = performance.now();
  const results: ImageDetections[] = [];
  // The boxes are made on each image's request path: the model's statistics count them as its post-processing.
  const outcomes = await runImagesThrough(model, imageInput, output, images, context, async (outputs, index) => {
    // The image decoded for the model, so its header reads.
    const size = await orientedSize(images[index]);
    const geometry: DetectionGeometry = { imageWidth: size.width, imageHeight: size.height, inputWidth: input.width, inputHeight: input.height, resize: input.resize };
    results[index] = { image: size, detections: decodeDetections(outputs[output].data as Float32Array, geometry, labels, parsed.options) };
  });
  const answers = answered(outcomes);
  const sum = (key: TimingKey) => summedMs(answers, key);
  return {
    // Each readable image's, in order: the unreadable left no entry.
    results: results.filter((result) => result !== undefined),
    ...unreadableFilesOf(outcomes),
    timings: { preprocessMs: sum('preprocessNs'), queueMs: sum('queueNs'), inferMs: sum('computeInferNs'), postprocessMs: sum('postprocessNs'), totalMs: performance.now() - started },
  };
}
