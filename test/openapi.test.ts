/**
 * The OpenAPI document lists every HTTP route the front end registers, each described, with its path
 * parameters and request bodies; Swagger UI serves it at /docs from the package, and neither needs a
 * token when the API does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openApiDocuments } from '../src/frontends/http/v2-http.js';
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
      assert.deepEqual(operation.parameters.map((parameter) => parameter.name), declared, `${method} ${path} declares its path parameters`);
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
