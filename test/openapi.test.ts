/**
 * The OpenAPI document lists every HTTP route the front end registers, each described, with its path
 * parameters and request bodies; Swagger UI serves it at /docs from the package, and neither needs a
 * token when the API does.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
// Fastify's own validator (a dependency of fastify), used here to hold real answers to the document's schemas.
import { Ajv } from 'ajv';
import { connect } from 'node:net';
import { dashboardAddress, openApiDocuments } from '../src/frontends/http/v2-http.js';
import { createMetricsListener, PrometheusMetrics } from '../src/observability/index.js';
import { RawConnection } from './support/raw-http.js';
import { startTestServer } from './support/test-server.js';

type Operation = { summary: string; tags: string[]; parameters: { name: string; in: string }[]; requestBody?: { content: Record<string, unknown> } };

test('every route is in the document, described, with its path parameters; /docs serves the UI', async (t) => {
  const served = await startTestServer({ http: { authTokens: { all: ['secret'] } } });
  t.after(() => served.close());
  const { undocumented } = openApiDocuments.get(served.app)!;
  assert.deepEqual(undocumented, [], 'a route without an entry in ROUTE_DOCS (src/frontends/http/openapi.ts)');
  const response = await fetch(`${served.url}/openapi.json`);
  assert.equal(response.status, 200, 'no token needed for the description');
  const document = (await response.json()) as { openapi: string; paths: Record<string, Record<string, Operation>> };
  assert.equal(document.openapi, '3.0.3');
  const routes = served.app.printRoutes({ commonPrefix: false });
  for (const path of ['/v2/models/{model}/infer', '/v2/models/{model}/versions/{version}/infer', '/v2/repository/index', '/v2/health/ready', '/dashboard/api/stream']) {
    assert.ok(document.paths[path], `${path} is documented (routes: ${routes.length} chars)`);
  }
  for (const [path, operations] of Object.entries(document.paths)) {
    const declared = [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]);
    for (const [method, operation] of Object.entries(operations)) {
      assert.ok(operation.summary.length > 10, `${method} ${path} has a summary`);
      assert.deepEqual(operation.parameters.filter((parameter) => parameter.in === 'path').map((parameter) => parameter.name), declared, `${method} ${path} declares its path parameters`);
    }
  }
  assert.deepEqual(Object.keys(document.paths['/v2/models/{model}/infer']!.post!.requestBody!.content).sort(), ['application/json', 'application/octet-stream', 'image/*']);
  assert.ok(document.paths['/v2/models/{model}/classify']!.post!.requestBody!.content['multipart/form-data']);
  const page = await fetch(`${served.url}/docs/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /swagger/i);
  assert.equal((await fetch(`${served.url}/v2`)).status, 401, 'the API itself still needs its token');
  // Open by the route matched, not by how the path begins: a path no route answers needs the token like any other.
  const statusOf = async (path: string) => (await fetch(`${served.url}${path}`, { redirect: 'manual' })).status;
  for (const open of ['/openapi.json?pretty=1', '/docs', '/docs/json', '/v2/health/live']) assert.ok([200, 302].includes(await statusOf(open)), open);
  for (const closed of ['/documentation', '/docs-private', '/v2/health/anything', '/openapi.yaml']) assert.equal(await statusOf(closed), 401, closed);
  assert.equal((await fetch(`${served.url}/v2`, { headers: { authorization: 'Bearer secret' } })).status, 200);
});

/**
 * The answers a generated client gets types for: real answers of a server with the bundled models (the V2 routes, the
 * pipelines' raw and multipart forms, errors) each valid against the schema the document declares for its route and
 * status. The schemas are closed where the server writes every field, so an answer field added without its
 * description fails here.
 */
test('real answers, and their errors, are valid against the response schemas the document declares for their route and status', { timeout: 180_000 }, async (t) => {
  const served = await startTestServer({ repoDir: join(process.cwd(), 'models') });
  t.after(() => served.close());
  const document = (await (await fetch(`${served.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>>; components: object };
  // OpenAPI 3.0's schema objects are JSON Schema with a few keywords of their own (example, format binary): not checked.
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  ajv.addSchema({ $id: 'openapi.json', components: document.components });
  const check = async (method: string, path: string, url: string, init: RequestInit = {}) => {
    const response = await fetch(`${served.url}${url}`, { method, ...init });
    const body = await response.text();
    const declared = document.paths[path]?.[method.toLowerCase()]?.responses[String(response.status)];
    assert.ok(declared, `${method} ${path} declares its ${response.status} (${body.slice(0, 200)})`);
    const schema = declared.content?.['application/json']?.schema as { $ref?: string } | undefined;
    assert.ok(schema?.$ref, `${method} ${path} ${response.status} declares the schema of its JSON answer`);
    const validate = ajv.getSchema(`openapi.json${schema.$ref}`)!;
    const answer = JSON.parse(body);
    assert.ok(validate(answer), `${method} ${url} ${response.status} against ${schema.$ref}: ${ajv.errorsText(validate.errors)}\n${body.slice(0, 600)}`);
    return { status: response.status, answer };
  };
  const image = (name: string) => readFile(join(process.cwd(), 'examples', 'images', name));
  const form = async (files: [string, Buffer | string][]) => {
    const data = new FormData();
    for (const [name, content] of files) data.append('file', new Blob([typeof content === 'string' ? content : new Uint8Array(content)]), name);
    return { body: data };
  };
  const cat = await image('cat.jpg');
  const jpeg = { headers: { 'content-type': 'image/jpeg' }, body: cat };

  await check('GET', '/v2', '/v2');
  await check('GET', '/v2/models', '/v2/models');
  await check('GET', '/v2/models/{model}', '/v2/models/ocr');
  await check('GET', '/v2/models/{model}/versions/{version}', '/v2/models/fashion_mnist/versions/1');
  // fashion_mnist's answer carries its OOD verdict in the parameters; ocr's its timings as a string output.
  assert.equal((await check('POST', '/v2/models/{model}/infer', '/v2/models/fashion_mnist/infer', jpeg)).answer.parameters.ood, true);
  await check('POST', '/v2/models/{model}/infer', '/v2/models/ocr/infer', { headers: { 'content-type': 'image/png' }, body: await image('page.png') });
  assert.ok((await check('POST', '/v2/models/{model}/classify', '/v2/models/fashion_mnist/classify?top_k=2', jpeg)).answer.ood);
  const classified = await check('POST', '/v2/models/{model}/classify', '/v2/models/fashion_mnist/classify', await form([['cat.jpg', cat], ['notes.txt', 'not an image'], ['sneaker.png', await image('sneaker.png')]]));
  assert.deepEqual(classified.answer.results.map((result: { error?: string }) => 'error' in result), [false, true, false]);
  assert.ok((await check('POST', '/v2/models/{model}/detect', '/v2/models/object_detection/detect?threshold=0.1', jpeg)).answer.detections.length > 1);
  await check('POST', '/v2/models/{model}/detect', '/v2/models/object_detection/detect', await form([['notes.txt', 'not an image'], ['cat.jpg', cat]]));
  await check('POST', '/v2/repository/index', '/v2/repository/index');
  await check('GET', '/v2/models/stats', '/v2/models/stats');
  await check('GET', '/v2/models/{model}/stats', '/v2/models/ocr/stats');
  // Errors: the same Error body wherever they come from.
  assert.equal((await check('GET', '/v2/models/{model}', '/v2/models/no_such_model')).status, 404);
  assert.equal((await check('POST', '/v2/models/{model}/detect', '/v2/models/object_detection/detect?thresold=0.1', jpeg)).status, 400);
  assert.equal((await check('POST', '/v2/models/{model}/classify', '/v2/models/fashion_mnist/classify', await form([['notes.txt', 'not an image']]))).status, 400);
  assert.equal((await check('POST', '/v2/models/{model}/infer', '/v2/models/fashion_mnist/infer', { headers: { 'content-type': 'application/json' }, body: '{"inputs": 3}' })).status, 400);
  // The query parameters a generated client needs, with the server's defaults.
  const detectQuery = (document.paths['/v2/models/{model}/detect']!.post as unknown as Operation).parameters.filter((parameter) => parameter.in === 'query');
  assert.deepEqual(
    detectQuery.map((parameter) => [parameter.name, (parameter as unknown as { schema: { default?: number } }).schema.default]),
    [['threshold', 0.3], ['max_detections', 20], ['iou_threshold', 0.5]],
  );
});

test('no page of the server may be framed by another site, nor any answer sniffed as another type: refusals made before any route runs included, on every listener', async (t) => {
  // Swagger UI's "Try it out" sends its requests from this origin, which the cross-site guard lets through: framed under
  // a decoy page, an operator's clicks could load, unload or change settings.
  const served = await startTestServer({
    server: { maxInflightBytes: 4096 },
    http: { authTokens: { all: ['secret'] }, maxBodyBytes: 64 * 1024, dashboardPort: 0 },
  });
  const metrics = createMetricsListener(new PrometheusMetrics().attach(served.server), { authTokens: { all: ['secret'] } });
  const metricsUrl = `http://127.0.0.1:${await metrics.listen('127.0.0.1', 0)}`;
  t.after(async () => {
    await metrics.close();
    await served.close();
  });
  const auth = { authorization: 'Bearer secret' };
  const json = { ...auth, 'content-type': 'application/json' };
  const asks: [string, string, RequestInit, number][] = [
    ['the API', '/docs/', {}, 200],
    ['the API', '/docs/static/swagger-initializer.js', {}, 200],
    ['the API', '/openapi.json', {}, 200],
    ['the API', '/v2', {}, 401],
    ['the API', '/no-such-route', {}, 401],
    ['the API', '/no-such-route', { headers: auth }, 404],
    ['the API', '/v2/health/live', { method: 'DELETE', headers: auth }, 405],
    ['the API', `/v2/models/${'m'.repeat(2000)}/ready`, {}, 414],
    ['the API', '/v2/models/%E0%A4%A/ready', {}, 400],
    ['the API', '/v2/models/simple/infer', { method: 'POST', headers: json, body: '{' }, 400],
    ['the API', '/v2/models/simple/infer', { method: 'POST', headers: json, body: ' '.repeat(65 * 1024) }, 413],
    ['the API', '/v2/models/simple/infer', { method: 'POST', headers: { ...auth, 'content-type': 'application/json', 'content-encoding': 'br' }, body: '{}' }, 400],
    ['the API', '/v2/repository/index', { method: 'POST', headers: { ...json, 'sec-fetch-site': 'cross-site' }, body: '{}' }, 403],
    ['the dashboard', '/dashboard/', {}, 200],
    ['the dashboard', '/no-such-route', {}, 401],
    ['the dashboard', `/v2/models/${'m'.repeat(2000)}/ready`, {}, 414],
    ['metrics', '/metrics', {}, 401],
    ['metrics', '/no-such-route', { headers: auth }, 404],
    ['metrics', '/metrics', { headers: auth }, 200],
  ];
  const bases: Record<string, string> = { 'the API': served.url, 'the dashboard': dashboardAddress(served.app)!.replace(/\/dashboard\/?$/, ''), metrics: metricsUrl };
  for (const [listener, path, init, status] of asks) {
    const response = await fetch(`${bases[listener]}${path}`, init).catch((error: Error) => assert.fail(`${listener} ${path.slice(0, 40)}: ${error.message} (${String((error.cause as Error)?.message)})`));
    await response.arrayBuffer();
    const what = `${listener} ${init.method ?? 'GET'} ${path.slice(0, 40)} (${response.status})`;
    assert.equal(response.status, status, what);
    assert.equal(response.headers.get('x-frame-options'), 'DENY', `${what} forbids framing`);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff', `${what} forbids sniffing`);
  }
  // The server's body budget refuses a body while others hold it.
  const held = new RawConnection(served.url);
  const heldAnswer = held.request('POST', '/v2/models/simple/infer', { ...json, 'content-length': 3000 });
  while (served.server.bodies.inUse === 0) await new Promise((resolve) => setImmediate(resolve));
  const refused = await fetch(`${served.url}/v2/models/simple/infer`, { method: 'POST', headers: json, body: ' '.repeat(2000) });
  await refused.arrayBuffer();
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('x-frame-options'), 'DENY', 'a refusal by the body budget forbids framing');
  assert.equal(refused.headers.get('x-content-type-options'), 'nosniff', 'a refusal by the body budget forbids sniffing');
  held.send(' '.repeat(3000));
  await heldAnswer;
  held.close();
  // Node's HTTP parser refuses a malformed request before any of the front end's code sees it.
  for (const listener of ['the API', 'the dashboard']) {
    const base = bases[listener];
    const answer = await rawRequest(base, 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /, listener);
    assert.match(answer, /\r\nX-Frame-Options: DENY\r\n/i, `${listener}: ${answer}`);
    assert.match(answer, /\r\nX-Content-Type-Options: nosniff\r\n/i, answer);
  }
});

/** What a server answers to `request` written as it is, up to its closing the connection. */
function rawRequest(base: string, request: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = connect(Number(port), hostname, () => socket.write(request));
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
}
