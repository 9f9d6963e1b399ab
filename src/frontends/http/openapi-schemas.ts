/**
 * What the HTTP API answers, as OpenAPI 3.0 schemas (components.schemas of /openapi.json), so that a client generated
 * from the document gets types for the answers and not only for the requests. Closed (additionalProperties: false)
 * where the server writes every field itself, so that a field added to an answer without being described here fails
 * the test that validates real answers against these (test/openapi.test.ts); open where a model or a config decides
 * what an object holds (parameters, statistics).
 */
import { detectionOptionsSchema } from '../../processing/object-detection.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const closed = (properties: Record<string, object>, required: string[] = Object.keys(properties), description?: string) => ({
  type: 'object',
  ...(description && { description }),
  required,
  properties,
  additionalProperties: false,
});
const strings = { type: 'array', items: { type: 'string' } };
/** A V2 parameter: scalars only, as the protocol carries them. */
const parameters = { type: 'object', additionalProperties: { oneOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }] } };

const modelAndVersion = { model_name: { type: 'string' }, model_version: { type: 'string' } };

/** One image's classification, as /classify answers it for a raw body or as each readable file of a form. */
const classification = {
  predictions: { type: 'array', description: 'the top_k classes, the most likely first', items: ref('Prediction') },
  confidence: ref('Confidence'),
  ood: ref('OutOfDistribution'),
};
/** One image's detections, as /detect answers it for a raw body or as each readable file of a form. */
const detections = {
  image: { ...closed({ width: { type: 'integer' }, height: { type: 'integer' } }), description: "the image's size after its EXIF orientation: the space the boxes are in" },
  detections: { type: 'array', description: 'the best first, at most max_detections, each scoring at least threshold', items: ref('Detection') },
};
const fileName = { type: 'string', description: "the form part's file name" };

export const RESPONSE_SCHEMAS: Record<string, object> = {
  ServerMetadata: closed({ name: { type: 'string' }, version: { type: 'string' }, extensions: strings }),
  ModelList: closed(
    {
      models: {
        type: 'array',
        items: closed(
          {
            name: { type: 'string' },
            state: { type: 'string', enum: ['READY', 'UNAVAILABLE'] },
            versions: { ...strings, description: 'the versions ready' },
            reason: { type: 'string', description: 'why no version is ready' },
          },
          ['name', 'state', 'versions'],
        ),
      },
      repository_error: { type: 'string', description: 'why the repository could not be read (the models listed are those the server holds)' },
    },
    ['models'],
  ),
  TensorMetadata: closed({ name: { type: 'string' }, datatype: { type: 'string', example: 'FP32' }, shape: { type: 'array', items: { type: 'integer' }, description: '-1 for a variable dimension' } }),
  ModelMetadata: closed(
    {
      name: { type: 'string' },
      versions: strings,
      platform: { type: 'string' },
      inputs: { type: 'array', items: ref('TensorMetadata') },
      outputs: { type: 'array', items: ref('TensorMetadata') },
      parameters: { ...parameters, description: 'quantized_versions, and for a quantized version how it was made' },
    },
    ['name', 'versions', 'platform', 'inputs', 'outputs'],
  ),
  InferenceResponse: closed(
    {
      ...modelAndVersion,
      id: { type: 'string', description: "the request's id, when it gave one" },
      parameters: { ...parameters, description: 'for a model with a reference profile, its out-of-distribution verdict: ood, ood_score, ood_threshold (ood_scores for several rows)' },
      outputs: {
        type: 'array',
        items: closed(
          {
            name: { type: 'string' },
            datatype: { type: 'string' },
            shape: { type: 'array', items: { type: 'integer' } },
            data: { type: 'array', description: 'row-major; strings for BYTES (the OCR pipeline answers its per-step timings as one JSON string, output timings)', items: {} },
            parameters: { ...parameters, description: 'binary_data_size when the output follows the JSON header in binary; the region of a shared-memory output' },
          },
          ['name', 'datatype', 'shape'],
        ),
      },
    },
    ['model_name', 'model_version', 'outputs'],
  ),
  Prediction: closed({ label: { type: 'string' }, index: { type: 'integer', description: "the class's index in the model's labels" }, score: { type: 'number' } }),
  Confidence: closed({
    probability: { type: 'number', description: 'of the top prediction' },
    entropy: { type: 'number', description: 'of the distribution, over its maximum: 0 is certain, 1 a uniform guess' },
    margin: { type: 'number', description: 'top-1 minus top-2 probability' },
    low_confidence: { type: 'boolean', description: "the top probability is under the model's threshold" },
    threshold: { type: 'number' },
    temperature: { type: 'number' },
  }),
  OutOfDistribution: closed(
    {
      score: { type: 'number', description: 'squared Mahalanobis distance to the nearest class of the reference data' },
      out_of_distribution: { type: 'boolean' },
      threshold: { type: 'number' },
      blank: { type: 'boolean', enum: [true], description: 'present when the input was blank (one colour) and the reference held no blank image: out of distribution whatever the score' },
    },
    ['score', 'out_of_distribution', 'threshold'],
    'present for a version with a reference profile (not on a cache hit)',
  ),
  Detection: closed({
    label: { type: 'string' },
    index: { type: 'integer' },
    score: { type: 'number' },
    box: { type: 'array', items: { type: 'number' }, minItems: 4, maxItems: 4, description: "[x_min, y_min, x_max, y_max] in the image's pixels" },
  }),
  ImageTiming: closed(
    { preprocess_ms: { type: 'number' }, queue_ms: { type: 'number' }, inference_ms: { type: 'number' }, postprocess_ms: { type: 'number' }, total_ms: { type: 'number' } },
    undefined,
    "where the call's time went, summed over its images",
  ),
  FileError: closed({ file: fileName, error: { type: 'string', description: 'why this file could not be used; the form\'s other files are answered' } }),
  ClassifyAnswer: {
    oneOf: [
      closed({ ...modelAndVersion, ...classification, timing: ref('ImageTiming') }, ['model_name', 'model_version', 'predictions', 'confidence', 'timing'], 'one image sent as the body'),
      closed(
        {
          ...modelAndVersion,
          results: {
            type: 'array',
            description: "one per file of the form, in the form's order",
            items: { oneOf: [closed({ file: fileName, ...classification }, ['file', 'predictions', 'confidence']), ref('FileError')] },
          },
          timing: ref('ImageTiming'),
        },
        undefined,
        'the files of a multipart form',
      ),
    ],
  },
  DetectAnswer: {
    oneOf: [
      closed({ ...modelAndVersion, ...detections, timing: ref('ImageTiming') }, undefined, 'one image sent as the body'),
      closed(
        {
          ...modelAndVersion,
          results: {
            type: 'array',
            description: "one per file of the form, in the form's order",
            items: { oneOf: [closed({ file: fileName, ...detections }), ref('FileError')] },
          },
          timing: ref('ImageTiming'),
        },
        undefined,
        'the files of a multipart form',
      ),
    ],
  },
  RepositoryIndex: {
    type: 'array',
    items: {
      type: 'object',
      required: ['name'],
      properties: {
        name: { type: 'string' },
        version: { type: 'string' },
        state: { type: 'string', enum: ['READY', 'UNAVAILABLE', 'LOADING', 'UNLOADING'] },
        reason: { type: 'string' },
        traffic_share: { type: 'number' },
        residency: { type: 'string' },
        memory_bytes: { type: 'integer' },
      },
    },
  },
  ModelStatistics: closed({
    model_stats: {
      type: 'array',
      items: {
        type: 'object',
        description: "Triton's statistics of one version, with its cost",
        required: ['name', 'version', 'inference_count', 'execution_count', 'inference_stats', 'batch_stats'],
        properties: {
          name: { type: 'string' },
          version: { type: 'string' },
          last_inference: { type: 'integer', description: 'milliseconds since the epoch' },
          inference_count: { type: 'integer' },
          execution_count: { type: 'integer' },
          inference_stats: { type: 'object', additionalProperties: ref('StatisticDuration') },
          batch_stats: { type: 'array', items: { type: 'object', required: ['batch_size'], properties: { batch_size: { type: 'integer' } }, additionalProperties: ref('StatisticDuration') } },
          counting_since: { type: 'integer', description: "Nereid's: when these counts started, milliseconds since the epoch (the version's first load: a reload keeps counting; another value than before means they started again from 0)" },
        },
      },
    },
  }),
  StatisticDuration: closed({ count: { type: 'integer' }, ns: { type: 'integer' } }),
};

/** Which schema each route's 200 answers (by the ROUTE_DOCS key), and for /infer the binary form beside it. */
export const ROUTE_ANSWERS: Record<string, string> = {
  'GET /v2': 'ServerMetadata',
  'GET /v2/models': 'ModelList',
  'GET /v2/models/{model}': 'ModelMetadata',
  'POST /v2/models/{model}/infer': 'InferenceResponse',
  'POST /v2/models/{model}/classify': 'ClassifyAnswer',
  'POST /v2/models/{model}/detect': 'DetectAnswer',
  'POST /v2/repository/index': 'RepositoryIndex',
  'GET /v2/models/stats': 'ModelStatistics',
  'GET /v2/models/{model}/stats': 'ModelStatistics',
};

const detectionDefaults = detectionOptionsSchema.parse({});
const query = (name: string, schema: object, description: string) => ({ name, in: 'query', required: false, schema, description });

/** Each route's query parameters, by the ROUTE_DOCS key; the defaults are the server's own. */
export const ROUTE_QUERIES: Record<string, object[]> = {
  'POST /v2/models/{model}/classify': [query('top_k', { type: 'integer', minimum: 1 }, 'how many classes to answer, the most likely first (default: the config\'s postprocess top_k)')],
  'POST /v2/models/{model}/detect': [
    query('threshold', { type: 'number', minimum: 0, maximum: 1, default: detectionDefaults.threshold }, 'detections scoring below this are left out'),
    query('max_detections', { type: 'integer', minimum: 1, maximum: 1000, default: detectionDefaults.max_detections }, 'at most this many detections, the best first'),
    query('iou_threshold', { type: 'number', minimum: 0, maximum: 1, default: detectionDefaults.iou_threshold }, 'two boxes of one class overlapping more than this are one object'),
  ],
  'POST /v2/models/{model}/infer': [
    query('outputs', { type: 'string' }, 'for a body without a JSON header (an image, or Inference-Header-Content-Length: 0): the outputs answered, comma-separated (default all)'),
  ],
};
