/**
 * The HTTP API as an OpenAPI 3 document, made from the routes the front end registers (so it lists
 * every route there is, and only those) and a table that says what each is for; served at
 * /openapi.json and browsable at /docs (Swagger UI, its assets from the package, no network).
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { VERSION } from '../../version.js';
import { RESPONSE_SCHEMAS, ROUTE_ANSWERS, ROUTE_QUERIES } from './openapi-schemas.js';

export const DOCS_PATH = '/docs';
export const OPENAPI_PATH = '/openapi.json';

type Body = 'json' | 'infer' | 'image';

interface RouteDoc {
  summary: string;
  tag: 'health' | 'models' | 'inference' | 'shared memory' | 'monitoring' | 'repository' | 'settings' | 'dashboard';
  body?: Body;
}

/**
 * What each route does, by method and path (a model's versioned path shares its unversioned one's
 * entry). A route missing here is a test failure: every route is documented.
 */
const ROUTE_DOCS: Record<string, RouteDoc> = {
  'GET /': { summary: 'Server name, version and where to go next', tag: 'health' },
  'GET /v2': { summary: 'Server metadata and the protocol extensions it supports', tag: 'health' },
  'GET /v2/health/live': { summary: 'Liveness: 200 while the process serves', tag: 'health' },
  'GET /v2/health/ready': { summary: 'Readiness: 200 while every model loaded at start is ready (400 otherwise)', tag: 'health' },
  'GET /v2/models': { summary: 'Every model of the repository: ready versions, state and why it is not ready', tag: 'models' },
  'GET /v2/models/{model}': { summary: "A model's metadata: versions, platform, inputs and outputs", tag: 'models' },
  'GET /v2/models/{model}/ready': { summary: 'Model readiness: 200 when ready, 400 otherwise', tag: 'models' },
  'GET /v2/models/{model}/config': { summary: "A model's completed configuration (Triton's model_config)", tag: 'models' },
  'POST /v2/models/{model}/infer': {
    summary: 'Inference (KServe V2): JSON, or a JSON header followed by binary tensors (Inference-Header-Content-Length), or one raw input',
    tag: 'inference',
    body: 'infer',
  },
  'POST /v2/models/{model}/classify': { summary: 'Images in (raw body or multipart files), labels with confidence out', tag: 'inference', body: 'image' },
  'POST /v2/models/{model}/detect': {
    summary: 'Images in (raw body or multipart files), labelled boxes out in the image\'s pixels (query: threshold, max_detections, iou_threshold)',
    tag: 'inference',
    body: 'image',
  },
  'GET /v2/models/stats': { summary: "Every loaded version's statistics (Triton's statistics extension)", tag: 'monitoring' },
  'GET /v2/models/{model}/stats': { summary: "A model's statistics: counts and time per phase, per batch size", tag: 'monitoring' },
  'GET /v2/models/{model}/monitor': { summary: 'Drift, out-of-distribution share and accuracy over recent traffic', tag: 'monitoring' },
  'POST /v2/models/{model}/feedback': { summary: 'True labels of earlier predictions, by request id: realised accuracy', tag: 'monitoring', body: 'json' },
  'GET /v2/models/{model}/compare': { summary: "How a shadow version's answers differ from the primary's", tag: 'monitoring' },
  'POST /v2/repository/index': { summary: 'Every model folder with the state of each version (and traffic share, residency)', tag: 'repository', body: 'json' },
  'POST /v2/repository/models/{model}/load': { summary: 'Load or reload a model, optionally with a config (explicit or on_demand mode)', tag: 'repository', body: 'json' },
  'POST /v2/repository/models/{model}/unload': { summary: 'Unload a model (explicit or on_demand mode)', tag: 'repository', body: 'json' },
  'POST /v2/repository/{repository}/index': { summary: "Triton's form naming a repository: refused (501); the repository API covers every repository the server serves", tag: 'repository', body: 'json' },
  'POST /v2/repository/{repository}/models/{model}/load': { summary: "Triton's form naming a repository: refused (501); the repository API covers every repository the server serves", tag: 'repository', body: 'json' },
  'POST /v2/repository/{repository}/models/{model}/unload': { summary: "Triton's form naming a repository: refused (501); the repository API covers every repository the server serves", tag: 'repository', body: 'json' },
  'POST /v2/repository/models/{model}/traffic': { summary: "Shift a model's traffic weights between its versions (explicit mode)", tag: 'repository', body: 'json' },
  'GET /v2/systemsharedmemory/status': { summary: 'Every registered system shared memory region (--allow-client-shm)', tag: 'shared memory' },
  'GET /v2/systemsharedmemory/region/{region}/status': { summary: 'One registered system shared memory region', tag: 'shared memory' },
  'POST /v2/systemsharedmemory/region/{region}/register': {
    summary: 'Register bytes of a POSIX shared memory object (key, offset, byte_size) as a region that tensors can name',
    tag: 'shared memory',
    body: 'json',
  },
  'POST /v2/systemsharedmemory/unregister': { summary: 'Unregister every system shared memory region', tag: 'shared memory' },
  'POST /v2/systemsharedmemory/region/{region}/unregister': { summary: 'Unregister one system shared memory region', tag: 'shared memory' },
  'GET /v2/cudasharedmemory/status': { summary: 'CUDA shared memory: not supported (501)', tag: 'shared memory' },
  'GET /v2/cudasharedmemory/region/{region}/status': { summary: 'CUDA shared memory: not supported (501)', tag: 'shared memory' },
  'POST /v2/cudasharedmemory/region/{region}/register': { summary: 'CUDA shared memory: not supported (501)', tag: 'shared memory' },
  'POST /v2/cudasharedmemory/unregister': { summary: 'CUDA shared memory: not supported (501)', tag: 'shared memory' },
  'POST /v2/cudasharedmemory/region/{region}/unregister': { summary: 'CUDA shared memory: not supported (501)', tag: 'shared memory' },
  'GET /v2/trace/setting': { summary: 'Trace settings (Triton trace extension)', tag: 'settings' },
  'POST /v2/trace/setting': { summary: 'Change trace settings', tag: 'settings', body: 'json' },
  'GET /v2/models/{model}/trace/setting': { summary: "A model's trace settings", tag: 'settings' },
  'POST /v2/models/{model}/trace/setting': { summary: "Change a model's trace settings (null clears one)", tag: 'settings', body: 'json' },
  'GET /v2/logging': { summary: 'Log settings (Triton logging extension)', tag: 'settings' },
  'POST /v2/logging': { summary: 'Change log verbosity and format', tag: 'settings', body: 'json' },
  'GET /dashboard': { summary: 'The web dashboard (redirects to /dashboard/)', tag: 'dashboard' },
  'GET /dashboard/': { summary: 'The web dashboard', tag: 'dashboard' },
  'GET /dashboard/assets/{file}': { summary: "The dashboard's scripts, styles and chart library", tag: 'dashboard' },
  'GET /dashboard/api/overview': { summary: 'One snapshot of every model: state, statistics, monitor, shadows, process', tag: 'dashboard' },
  'GET /dashboard/api/stream': { summary: 'The snapshot every second with rates and percentiles (Server-Sent Events)', tag: 'dashboard' },
  'GET /dashboard/api/jobs': { summary: 'The batch jobs of the Redis queue the server follows (--jobs-queue): progress and failures', tag: 'dashboard' },
};

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/** A route's 200: the schema of its answer where ROUTE_ANSWERS names one (and /infer's binary form beside the JSON). */
function answerResponse(key: string) {
  const schema = ROUTE_ANSWERS[key];
  if (!schema) return { description: 'the answer' };
  const json = { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } };
  if (key !== 'POST /v2/models/{model}/infer') return { description: 'the answer', content: json };
  return {
    description: 'the answer: JSON, or (an output asked for with binary_data) a JSON header of Inference-Header-Content-Length bytes followed by the binary outputs',
    content: { ...json, 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
  };
}

const REQUEST_BODIES: Record<Body, object> = {
  json: { required: false, content: { 'application/json': { schema: { type: 'object' } } } },
  infer: {
    required: true,
    content: {
      'application/json': { schema: { $ref: '#/components/schemas/InferenceRequest' } },
      'application/octet-stream': {
        schema: { type: 'string', format: 'binary' },
        description: 'JSON header then binary tensors, or one raw input with Inference-Header-Content-Length: 0 (query ?outputs=a,b picks the outputs answered; default all)',
      },
      'image/*': {
        schema: { type: 'string', format: 'binary' },
        description: 'one encoded image, for a model whose one input is BYTES (the ocr pipeline, object_detection); answered in JSON (query ?outputs=a,b picks the outputs; default all)',
      },
    },
  },
  image: {
    required: true,
    content: {
      'image/*': { schema: { type: 'string', format: 'binary' } },
      'application/octet-stream': { schema: { type: 'string', format: 'binary' }, description: 'one encoded image, as with image/*' },
      'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'array', items: { type: 'string', format: 'binary' } } } } },
    },
  },
};

/** '/v2/models/:model/versions/:version/infer' → its documented path and the parameters it takes. */
function openApiPath(url: string): { path: string; key: string; parameters: string[] } {
  const path = url.replace(/:(\w+)/g, '{$1}');
  const parameters = [...url.matchAll(/:(\w+)/g)].map((match) => match[1]!);
  return { path, key: path.replace('/versions/{version}', ''), parameters };
}

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description: string };
  paths: Record<string, Record<string, unknown>>;
  components: Record<string, unknown>;
}

export interface ServedOpenApi {
  document: OpenApiDocument;
  /** Routes registered without a ROUTE_DOCS entry (a test asserts there are none). */
  undocumented: string[];
}

/**
 * Documents every route registered on `app` from now on and serves the document and its UI. Call it
 * before the routes are added: it learns of them as they are.
 */
export function serveOpenApi(app: FastifyInstance): ServedOpenApi {
  const document: OpenApiDocument = {
    openapi: '3.0.3',
    info: { title: 'Nereid', version: VERSION, description: 'KServe Open Inference Protocol (V2) over HTTP, as Triton speaks it, with Nereid’s extensions.' },
    paths: {},
    components: {
      schemas: {
        Error: { type: 'object', required: ['error'], properties: { error: { type: 'string', description: 'what was expected and what arrived' } }, additionalProperties: false },
        ...RESPONSE_SCHEMAS,
        InferenceRequest: {
          type: 'object',
          required: ['inputs'],
          properties: {
            id: { type: 'string' },
            parameters: { type: 'object' },
            inputs: {
              type: 'array',
              items: {
                type: 'object',
                required: ['name', 'datatype', 'shape'],
                properties: { name: { type: 'string' }, datatype: { type: 'string', example: 'FP32' }, shape: { type: 'array', items: { type: 'integer' } }, data: { type: 'array', items: {} }, parameters: { type: 'object' } },
              },
            },
            outputs: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, parameters: { type: 'object' } } } },
          },
        },
      },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'needed when the server runs with auth tokens' } },
    },
  };
  const undocumented: string[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.url.startsWith(DOCS_PATH) || route.url === OPENAPI_PATH) return;
    for (const method of [route.method].flat()) {
      if (method === 'HEAD') continue;
      const { path, key, parameters } = openApiPath(route.url);
      const doc = ROUTE_DOCS[`${method} ${key}`];
      if (!doc) undocumented.push(`${method} ${route.url}`);
      (document.paths[path] ??= {})[method.toLowerCase()] = {
        summary: doc?.summary ?? '',
        tags: doc ? [doc.tag] : [],
        parameters: [...parameters.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })), ...(ROUTE_QUERIES[`${method} ${key}`] ?? [])],
        ...(doc?.body ? { requestBody: REQUEST_BODIES[doc.body] } : {}),
        security: [{}, { bearer: [] }],
        responses: {
          200: answerResponse(`${method} ${key}`),
          400: errorResponse('the request is malformed; the message says what was expected and what arrived'),
          401: errorResponse('a token is needed (servers started with auth tokens)'),
          403: errorResponse("the token opens another scope than this route's (the message names the one it needs)"),
          404: errorResponse('no such model, version or route'),
          ...(doc?.body ? { 413: errorResponse('the body is over the size limit (or a form holds too many files); the message names the limit') } : {}),
          500: errorResponse('the server failed (its log has the cause)'),
          503: errorResponse('not ready, shutting down or overloaded (with Retry-After when retrying helps)'),
        },
      };
    }
  });
  void app.register(swagger, { mode: 'static', specification: { document: document as never } });
  void app.register(swaggerUi, { routePrefix: DOCS_PATH });
  app.get(OPENAPI_PATH, async () => document);
  return { document, undocumented };
}
