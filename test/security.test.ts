/**
 * What a hostile client or an over-curious one can and cannot do, over real HTTP, gRPC and the
 * metrics port: scoped tokens, bounded and path-free error messages, strict wire fields, messages
 * that cannot be decoded, files that escape the repository through links, and load-API overrides
 * that would read other files or starve the machine. Each case is a request that showed a defect.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createGrpcFrontEnd, type GrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { createMetricsListener, PrometheusMetrics, type MetricsListener } from '../src/observability/index.js';
import { addSubModel, identityModel, scaleModel, writeModel } from '../src/onnx/test-models.js';
import { MAX_CLIENT_MESSAGE_CHARS } from '../src/core/errors.js';
import { runCli, serveChild, stopChild } from './support/cli-server.js';
import { SIMPLE_CONFIG, SIMPLE_LABELS, startTestServer, type TestServer } from './support/test-server.js';

const TOKENS = { inference: ['infer-token'], management: ['manage-token'], metrics: ['metrics-token'], all: ['root-token'] };
const { Client } = loadInferenceProto();

let served: TestServer;
let grpcFront: GrpcFrontEnd;
let grpcPort: number;
let metricsListener: MetricsListener;
let metricsUrl: string;
let outside: string;

async function writeModels(repo: string): Promise<void> {
  await writeModel(repo, 'simple', 1, addSubModel(), SIMPLE_CONFIG, { 'labels.txt': `${SIMPLE_LABELS.join('\n')}\n` });
  await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 4\n');
  // Any row width: a load override's warmup is sized on the dims completion settles.
  await writeModel(repo, 'wide', 1, identityModel('float32'), 'max_batch_size: 4\n');
  // A labels file that is a link to a file outside the repository.
  await writeFile(join(outside, 'secret.txt'), 'the server operator\'s secret\n');
  await writeModel(repo, 'leaky', 1, scaleModel(2), 'max_batch_size: 4\noutput [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] label_filename: "labels.txt" } ]\n');
  await symlink(join(outside, 'secret.txt'), join(repo, 'leaky', 'labels.txt'));
  // A config that is a link to a file outside the repository.
  await writeFile(join(outside, 'config.pbtxt'), 'max_batch_size: 4\n');
  await writeModel(repo, 'linked_config', 1, scaleModel(2));
  await symlink(join(outside, 'config.pbtxt'), join(repo, 'linked_config', 'config.pbtxt'));
}

before(async () => {
  outside = await mkdtemp(join(tmpdir(), 'nereid-outside-'));
  served = await startTestServer({ models: writeModels, server: { modelControlMode: 'explicit', loadModels: ['*'], strictReadiness: false }, http: { authTokens: TOKENS } });
  grpcFront = createGrpcFrontEnd(served.server, { authTokens: TOKENS });
  grpcPort = await grpcFront.listen('127.0.0.1', 0);
  const metrics = new PrometheusMetrics({ processMetrics: false });
  metricsListener = createMetricsListener(metrics.attach(served.server), { authTokens: TOKENS });
  metricsUrl = `http://127.0.0.1:${await metricsListener.listen('127.0.0.1', 0)}/metrics`;
});

after(async () => {
  await grpcFront?.close();
  await metricsListener?.close();
  await served?.close();
  await rm(outside, { recursive: true, force: true });
});

const bearer = (token: string, scheme = 'Bearer') => ({ authorization: `${scheme} ${token}` });
const simpleBody = JSON.stringify({
  inputs: [
    { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
    { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(2) },
  ],
});

function post(path: string, body: BodyInit, headers: Record<string, string> = bearer('infer-token')) {
  return fetch(`${served.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}

describe('scoped tokens', () => {
  test('an inference token infers but cannot manage; a management token manages but cannot infer; an all-scopes token does both', async () => {
    assert.equal((await post('/v2/models/simple/infer', simpleBody, bearer('infer-token'))).status, 200);
    const wrongScope = await post('/v2/repository/index', '{}', bearer('infer-token'));
    assert.equal(wrongScope.status, 403, 'a valid token lacking the scope is forbidden, not unauthenticated');
    assert.equal(wrongScope.headers.get('www-authenticate'), 'Bearer error="insufficient_scope"');
    assert.equal((await post('/v2/repository/index', '{}', bearer('manage-token'))).status, 200);
    assert.equal((await post('/v2/models/simple/infer', simpleBody, bearer('manage-token'))).status, 403);
    assert.equal((await post('/v2/models/simple/infer', simpleBody, bearer('root-token'))).status, 200);
    assert.equal((await post('/v2/repository/index', '{}', bearer('root-token'))).status, 200);
    assert.equal((await post('/v2/models/simple/infer', simpleBody, bearer('metrics-token'))).status, 403);
    // A token of another scope is told which scope it lacks, not that it is invalid.
    assert.deepEqual(await (await post('/v2/repository/index', '{}', bearer('infer-token'))).json(), {
      error: 'this token opens the inference scope, not the management scope this needs: use a token of the management scope (or of all scopes)',
    });
    assert.match((await (await post('/v2/models/simple/infer', simpleBody, bearer('nobody-token'))).json()).error, /missing or invalid bearer token/);
    assert.equal((await fetch(`${served.url}/v2/health/ready`)).status, 200, 'health probes stay open');
    // A model's readiness is one (Triton's health group; KServe and load balancers probe it), each version's too.
    for (const path of ['/v2/models/simple/ready', '/v2/models/simple/versions/1/ready']) assert.equal((await fetch(`${served.url}${path}`)).status, 200, path);
    assert.equal((await fetch(`${served.url}/v2/models/simple`)).status, 401, "a model's metadata still needs a token");
  });

  test('the Bearer scheme is case-insensitive', async () => {
    for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
      assert.equal((await post('/v2/models/simple/infer', simpleBody, bearer('infer-token', scheme))).status, 200, scheme);
    }
    assert.equal((await post('/v2/models/simple/infer', simpleBody, { authorization: 'Basic infer-token' })).status, 401);
  });

  test('the metrics port needs a metrics (or all-scopes) token', async () => {
    assert.equal((await fetch(metricsUrl)).status, 401);
    const wrongScope = await fetch(metricsUrl, { headers: bearer('infer-token') });
    assert.equal(wrongScope.status, 403);
    assert.match((await wrongScope.json()).error, /^this token opens the inference scope, not the metrics scope/);
    const scraped = await fetch(metricsUrl, { headers: bearer('metrics-token') });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /nereid_inference_request_success_total/);
    assert.equal((await fetch(metricsUrl, { headers: bearer('root-token') })).status, 200);
  });

  test('gRPC: repository RPCs need a management token, the others an inference token', async () => {
    const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const call = (method: string, request: object, token: string) =>
      new Promise<grpc.ServiceError | null>((resolve) => {
        const metadata = new grpc.Metadata();
        metadata.set('authorization', `bearer ${token}`);
        client[method](request, metadata, (error: grpc.ServiceError | null) => resolve(error));
      });
    try {
      assert.equal((await call('RepositoryIndex', {}, 'infer-token'))?.code, grpc.status.PERMISSION_DENIED);
      assert.equal(await call('RepositoryIndex', {}, 'manage-token'), null);
      assert.equal(await call('ModelMetadata', { name: 'simple' }, 'infer-token'), null);
      assert.equal((await call('ModelMetadata', { name: 'simple' }, 'manage-token'))?.code, grpc.status.PERMISSION_DENIED);
      assert.equal(await call('ModelReady', { name: 'simple' }, 'no-token'), null, 'a health probe, open as ServerReady is');
    } finally {
      client.close();
    }
  });

  test('gRPC: a call without a token is refused from its metadata, before its message is read', { timeout: 20_000 }, async () => {
    // A message announced at 48 MiB of which 1 MiB is sent, then nothing: the answer must not wait for the rest.
    const { connect } = await import('node:http2');
    const session = connect(`http://127.0.0.1:${grpcPort}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/inference.GRPCInferenceService/ModelInfer', 'content-type': 'application/grpc', te: 'trailers' });
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(48 << 20, 1);
      stream.write(Buffer.concat([prefix, Buffer.alloc(1 << 20)]));
      const status = await new Promise<string>((resolve, reject) => {
        stream.on('response', (headers) => headers['grpc-status'] !== undefined && resolve(String(headers['grpc-status'])));
        stream.on('trailers', (trailers) => resolve(String(trailers['grpc-status'])));
        stream.on('error', reject);
        stream.resume();
      });
      assert.equal(Number(status), grpc.status.UNAUTHENTICATED);
    } finally {
      session.destroy();
    }
  });
});

describe('tokens given to nereid serve', () => {
  test('a token source that yields nothing usable stops the server instead of leaving it open', async () => {
    const repo = served.repoDir;
    const spaced = await runCli(['serve', '--model-repository', repo, '--http-auth-token', 'two words']);
    assert.equal(spaced.code, 1);
    assert.match(spaced.stderr, /--http-auth-token holds whitespace inside the token/);
    const empty = join(outside, 'tokens-empty.txt');
    await writeFile(empty, '# every line a comment\n\n');
    const emptyFile = await runCli(['serve', '--model-repository', repo, '--auth-token-file', empty]);
    assert.equal(emptyFile.code, 1);
    assert.match(emptyFile.stderr, /--auth-token-file .*tokens-empty\.txt holds no token/);
    process.env.NEREID_HTTP_AUTH_TOKEN = '';
    try {
      const emptyEnv = await runCli(['serve', '--model-repository', repo]);
      assert.equal(emptyEnv.code, 1);
      assert.match(emptyEnv.stderr, /NEREID_HTTP_AUTH_TOKEN is empty: give a token, or leave it out/);
    } finally {
      delete process.env.NEREID_HTTP_AUTH_TOKEN;
    }
    // What Helm sets beside a token Secret: with no token at all (the Secret missing), the start is refused.
    process.env.NEREID_REQUIRE_AUTH = 'true';
    try {
      const required = await runCli(['serve', '--model-repository', repo]);
      assert.equal(required.code, 1);
      assert.match(required.stderr, /NEREID_REQUIRE_AUTH is set but no token arrived .*refusing to start open/);
    } finally {
      delete process.env.NEREID_REQUIRE_AUTH;
    }
  });

  test('a token file line whose scope names an Object.prototype member is refused as any unknown scope is', async () => {
    for (const scope of ['constructor', '__proto__', 'toString']) {
      const file = join(outside, `tokens-${scope}.txt`);
      await writeFile(file, `# tokens\n${scope} s3cret\n`);
      const refused = await runCli(['serve', '--model-repository', served.repoDir, '--auth-token-file', file, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false'], 30_000);
      assert.equal(refused.code, 1, scope);
      assert.match(refused.stderr, new RegExp(`--auth-token-file line 2: unknown scope '${scope}' \\(expected '<scope> <token>' with scope all, inference, management or metrics\\)`), scope);
    }
    // What was found is quoted, but never a word that may be the token itself.
    const found: [string, string][] = [
      ['admin tok', "unknown scope 'admin'"],
      ['s3cret inference', "the token before its scope 'inference'"],
      ['s3cret', 'one word, not a scope'],
      ['metrics', "scope 'metrics' with no token"],
      ['all s3cret extra', '3 words'],
    ];
    for (const [line, said] of found) {
      const file = join(outside, 'tokens-found.txt');
      await writeFile(file, `${line}\n`);
      const refused = await runCli(['serve', '--model-repository', served.repoDir, '--auth-token-file', file, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false'], 30_000);
      assert.equal(refused.code, 1, line);
      assert.ok(refused.stderr.includes(`--auth-token-file line 1: ${said} (expected '<scope> <token>'`), refused.stderr);
      if (line.includes('s3cret')) assert.ok(!refused.stderr.includes('s3cret'), refused.stderr);
    }
  });

  test("serve --help says what the management token opens, as the server enforces it", async () => {
    const help = (await runCli(['serve', '--help'], 30_000)).stdout.replace(/\s+/g, ' ');
    assert.match(help, /--management-auth-token <token> a token for the repository API \(index, load, unload\), trace and log settings and the dashboard's data \(/);
    for (const path of ['/v2/repository/index', '/v2/trace/setting', '/v2/logging']) {
      const method = path === '/v2/repository/index' ? 'POST' : 'GET';
      const asked = (token: string) => fetch(`${served.url}${path}`, { method, body: method === 'POST' ? '{}' : undefined, headers: { 'content-type': 'application/json', ...bearer(token) } });
      assert.equal((await asked('infer-token')).status, 403, path);
      assert.equal((await asked('manage-token')).status, 200, path);
    }
  });

  test('a token no client can send (not printable ASCII) is refused at start, from a flag, the environment or the token file', async () => {
    // Were a token taken, the server would start and serve: the timeout ends it, and the test fails.
    const serve = (args: string[]) => runCli([...args, '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false'], 30_000);
    const repo = served.repoDir;
    const flag = await serve(['serve', '--model-repository', repo, '--http-auth-token', 'tökén']);
    assert.equal(flag.code, 1);
    assert.match(flag.stderr, /--http-auth-token holds a character other than printable ASCII \("ö"\), which curl and gRPC metadata cannot send/);
    const file = join(outside, 'tokens-accented.txt');
    await writeFile(file, 'inference tökén\n');
    const fromFile = await serve(['serve', '--model-repository', repo, '--auth-token-file', file]);
    assert.equal(fromFile.code, 1);
    assert.match(fromFile.stderr, /--auth-token-file line 1 holds a character other than printable ASCII \("ö"\)/);
    process.env.NEREID_METRICS_AUTH_TOKEN = 'tok\u0007en';
    try {
      const fromEnv = await serve(['serve', '--model-repository', repo]);
      assert.equal(fromEnv.code, 1);
      assert.match(fromEnv.stderr, /NEREID_METRICS_AUTH_TOKEN holds a character other than printable ASCII \("\\u0007"\)/);
    } finally {
      delete process.env.NEREID_METRICS_AUTH_TOKEN;
    }
  });

  test('a missing token file is named by its flag, as the TLS flags name theirs', async () => {
    const missing = await runCli(['serve', '--model-repository', served.repoDir, '--auth-token-file', join(outside, 'nope.txt')], 30_000);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--auth-token-file .*nope\.txt: cannot read it \(no such file\)/);
  });

  test('a server bound beyond loopback with no token says that everything is open', async () => {
    const repo = join(outside, 'clean-repo');
    await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 4\n');
    const child = await serveChild(repo, ['--host', '0.0.0.0', '--allow-metrics', 'false']);
    try {
      assert.match(child.output(), /listening on 0\.0\.0\.0 with no token: inference, model management and metrics are open to anyone/);
    } finally {
      await stopChild(child);
    }
    // Said once the ports are bound: an address that is not this machine's (TEST-NET-1) fails the start with nothing open.
    const unbound = await runCli(['serve', '--model-repository', repo, '--host', '192.0.2.1', '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false'], 30_000);
    assert.equal(unbound.code, 1, unbound.stdout + unbound.stderr);
    assert.match(unbound.stderr, /--host 192\.0\.2\.1 is not an address of this machine/);
    assert.doesNotMatch(unbound.stdout + unbound.stderr, /open to anyone/);
    // A secret file's trailing newline is not part of the token.
    process.env.NEREID_HTTP_AUTH_TOKEN = 'from-a-secret\n';
    // In the token file '#' starts a comment at a line's start or after a space, not inside a token.
    const tokenFile = join(outside, 'tokens-hash.txt');
    await writeFile(tokenFile, '# the inference token\ninference tok#1 # for the web app\n', { mode: 0o644 });
    await chmod(tokenFile, 0o644);
    try {
      const guarded = await serveChild(repo, ['--allow-metrics', 'false', '--auth-token-file', tokenFile]);
      try {
        assert.match(guarded.output(), /--auth-token-file \S*tokens-hash\.txt can be read by every user of this machine \(mode 644\): it holds secrets; chmod 600 it/);
        const ready = await fetch(`${guarded.url}/v2/models/scale`, { headers: bearer('from-a-secret') });
        assert.equal(ready.status, 200, await ready.text());
        assert.equal((await fetch(`${guarded.url}/v2/models/scale`, { headers: bearer('tok#1') })).status, 200);
        assert.equal((await fetch(`${guarded.url}/v2/models/scale`, { headers: bearer('tok') })).status, 401);
      } finally {
        await stopChild(guarded);
      }
    } finally {
      delete process.env.NEREID_HTTP_AUTH_TOKEN;
    }
  });
});

describe('requests from pages of other sites', () => {
  test("a POST naming another origin, or marked cross-site by its browser, is refused before it runs; the server's own origin, a proxy's and no Origin are served", async () => {
    const before = await (await fetch(`${served.url}/v2/models/simple/stats`, { headers: bearer('infer-token') })).json() as { model_stats: { inference_count: number }[] };
    const host = new URL(served.url).host;
    const from = (origin?: string, more: Record<string, string> = {}) => post('/v2/models/simple/infer', simpleBody, { ...bearer('infer-token'), 'content-type': 'text/plain', ...(origin ? { origin } : {}), ...more });
    const refused = await from('http://evil.example');
    assert.equal(refused.status, 403);
    assert.match(((await refused.json()) as { error: string }).error, /^cross-origin request refused: Origin 'http:\/\/evil\.example' is not this server \(Host '127\.0\.0\.1:\d+'\)/);
    assert.equal((await from('null')).status, 403);
    const management = await fetch(`${served.url}/v2/repository/models/scale/unload`, { method: 'POST', headers: { ...bearer('manage-token'), origin: 'http://evil.example', 'content-type': 'text/plain' }, body: '{}' });
    assert.equal(management.status, 403);
    assert.equal((await from(`http://${host}`)).status, 200);
    // Behind a proxy: the browser's own word, or the forwarded host name, ports aside.
    assert.equal((await from('https://nereid.example', { 'x-forwarded-host': 'nereid.example' })).status, 200);
    assert.equal((await from('http://box:8080', { 'sec-fetch-site': 'same-origin' })).status, 200);
    assert.equal((await from('http://evil.example', { 'sec-fetch-site': 'cross-site' })).status, 403);
    // The browser's word: cross-site and same-site (another subdomain, or another port of this host: a dev server or
    // notebook on localhost:3000) are refused, with or without an Origin; the user's own action (none) is served.
    const noOrigin = await from(undefined, { 'sec-fetch-site': 'cross-site' });
    assert.equal(noOrigin.status, 403);
    assert.match(((await noOrigin.json()) as { error: string }).error, /^cross-origin request refused: Sec-Fetch-Site is 'cross-site': the request comes from a page of another site/);
    assert.equal((await from(undefined, { 'sec-fetch-site': 'same-site' })).status, 403);
    assert.equal((await from('http://other.example', { 'sec-fetch-site': 'same-site', host: 'nereid.example' })).status, 403);
    const otherPort = await from(`http://${new URL(served.url).hostname}:3000`, { 'sec-fetch-site': 'same-site' });
    assert.equal(otherPort.status, 403);
    assert.match(((await otherPort.json()) as { error: string }).error, /Sec-Fetch-Site is 'same-site' \(Origin 'http:\/\/127\.0\.0\.1:3000'\): the request comes from a page of another origin on this site/);
    assert.equal((await from(undefined, { 'sec-fetch-site': 'none' })).status, 200);
    assert.equal((await from()).status, 200);
    const after = await (await fetch(`${served.url}/v2/models/simple/stats`, { headers: bearer('infer-token') })).json() as { model_stats: { inference_count: number }[] };
    assert.equal(after.model_stats[0].inference_count - before.model_stats[0].inference_count, 5, 'only the five same-origin requests ran');
  });
});

describe('client input in messages and on the wire', () => {
  test('Inference-Header-Content-Length must be a plain decimal', async () => {
    const body = simpleBody;
    for (const value of ['0xd2', '1e2', '-0', '+5', '12.0']) {
      const response = await post('/v2/models/simple/infer', body, { ...bearer('infer-token'), 'inference-header-content-length': value });
      assert.equal(response.status, 400, value);
      assert.match(((await response.json()) as { error: string }).error, /decimal number/);
    }
  });

  test('absurdly nested datatype or shape is a 400, not a stack overflow', async () => {
    const nested = `${'['.repeat(100_000)}"FP32"${']'.repeat(100_000)}`;
    const data = JSON.stringify(Array(16).fill(1));
    for (const body of [
      `{"inputs":[{"name":"INPUT0","datatype":${nested},"shape":[1,16],"data":${data}}]}`,
      `{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":${nested},"data":${data}}]}`,
    ]) {
      const response = await post('/v2/models/simple/infer', body);
      assert.equal(response.status, 400, body.slice(0, 60));
    }
  });

  test('a shape beyond the largest safe integer is shown as sent, not as a value too deeply nested', async () => {
    const response = await post('/v2/models/simple/infer', '{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[9007199254740993,3,48,192],"data":[1]}]}');
    assert.equal(response.status, 400);
    assert.match(((await response.json()) as { error: string }).error, /shape must be an array of non-negative integers, each at most 9007199254740991, got \[9007199254740993,3,48,192\]$/);
  });

  test('an error quoting a huge client string stays short', async () => {
    const name = 'x'.repeat(100_000);
    const response = await post('/v2/models/simple/infer', JSON.stringify({ inputs: [{ name, datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) }] }));
    assert.equal(response.status, 400);
    const { error } = (await response.json()) as { error: string };
    assert.ok(error.length <= MAX_CLIENT_MESSAGE_CHARS + 40, `${error.length} characters`);
    assert.match(error, /input 'x{80}…'/);
    const longId = await post('/v2/models/simple/infer', JSON.stringify({ id: 'i'.repeat(1000), ...JSON.parse(simpleBody) }));
    assert.equal(longId.status, 400);
    assert.match(((await longId.json()) as { error: string }).error, /request id has 1000 characters; at most 256/);
  });

  test('a model, version, input, output or path a client names is quoted in an error at most 80 characters long', async () => {
    const long = (character: string, length = 900) => character.repeat(length);
    const inputs = (first: Record<string, unknown> = {}) => [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1), ...first },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(2) },
    ];
    const infer = (body: object) => ({ path: '/v2/models/simple/infer', body: JSON.stringify(body) });
    const asked: { path: string; body?: string; headers?: Record<string, string> }[] = [
      { path: `/v2/models/${long('c', 1000)}` },
      // A name of letters passes the name check; a model of that name is looked up, and not found.
      { path: `/v2/models/${long('a', 255)}` },
      { path: `/v2/models/${long('a', 255)}/infer`, body: JSON.stringify({ inputs: inputs() }) },
      { path: `/v2/models/simple/versions/${long('9')}` },
      { path: `/v2/models/simple/versions/${long('v')}` },
      { path: `/v2/repository/models/${long('a', 255)}/load`, body: '{}', headers: bearer('manage-token') },
      { path: `/v2/${long('r')}` },
      infer({ inputs: inputs({ name: long('i') }) }),
      infer({ inputs: [...inputs(), { ...inputs()[1], name: long('e') }] }),
      infer({ inputs: inputs({ name: long('d'), datatype: 'XX' }) }),
      infer({ inputs: inputs({ name: long('s'), shape: [-1] }) }),
      infer({ inputs: inputs({ name: long('n'), data: 'not a list' }) }),
      infer({ inputs: inputs(), outputs: [{ name: long('o') }] }),
      infer({ inputs: inputs({ parameters: { shared_memory_region: long('h') } }) }),
    ];
    for (const { path, body, headers = bearer('infer-token') } of asked) {
      const response = await fetch(`${served.url}${path}`, { method: body === undefined ? 'GET' : 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
      const { error } = (await response.json()) as { error: string };
      assert.ok(response.status >= 400 && response.status < 500, `${response.status} ${error}`);
      assert.doesNotMatch(error, /(.)\1{80}/, `${path.slice(0, 40)} ${body?.slice(0, 60)}: ${error.slice(0, 200)}`);
    }
    const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Bearer infer-token');
    const grpcInputs = (name = 'INPUT0') => [name, 'INPUT1'].map((input) => ({ name: input, datatype: 'INT32', shape: [1, 16], contents: { int_contents: Array(16).fill(1) } }));
    try {
      for (const request of [
        { model_name: long('a', 255), inputs: grpcInputs() },
        { model_name: 'simple', model_version: long('v'), inputs: grpcInputs() },
        { model_name: 'simple', inputs: grpcInputs(long('i')) },
        { model_name: 'simple', inputs: [{ name: long('b'), datatype: 'INT32', shape: [1, 16] }] },
        { model_name: 'simple', inputs: grpcInputs(), outputs: [{ name: long('o') }] },
      ]) {
        const error = await new Promise<grpc.ServiceError | null>((resolve) => client.ModelInfer(request, metadata, resolve));
        assert.ok(error && [grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND].includes(error.code), String(error));
        assert.doesNotMatch(error.details, /(.)\1{80}/, error.details.slice(0, 200));
      }
    } finally {
      client.close();
    }
  });

  test('gRPC: a model name of ~87 KB is answered (briefly) and the connection keeps serving', async () => {
    const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const metadata = () => {
      const m = new grpc.Metadata();
      m.set('authorization', 'Bearer infer-token');
      return m;
    };
    try {
      const huge = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.ModelInfer({ model_name: 'm'.repeat(87_000), inputs: [] }, metadata(), (error: grpc.ServiceError | null) => resolve(error)),
      );
      assert.equal(huge?.code, grpc.status.INVALID_ARGUMENT);
      assert.ok(huge!.details.length <= MAX_CLIENT_MESSAGE_CHARS + 40);
      const ready = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.ModelReady({ name: 'simple' }, metadata(), (error: grpc.ServiceError | null) => resolve(error)),
      );
      assert.equal(ready, null);
    } finally {
      client.close();
    }
  });

  test('gRPC: a message that is not valid protobuf is INVALID_ARGUMENT; on a stream that request fails and the stream goes on', async () => {
    const client = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    const garbage = Buffer.from([0xff]); // a tag whose varint runs past the end of the message
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Bearer infer-token');
    try {
      const unary = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest('/inference.GRPCInferenceService/ModelInfer', (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, garbage, metadata, (error) =>
          resolve(error),
        ),
      );
      assert.equal(unary?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(unary!.details, /not a valid protobuf/);

      const { service } = loadInferenceProto();
      const definition = service.ModelStreamInfer;
      const stream = client.makeBidiStreamRequest('/inference.GRPCInferenceService/ModelStreamInfer', (bytes: Buffer) => bytes, definition.responseDeserialize, metadata);
      const answers: { error_message: string; infer_response?: { id?: string } }[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        stream.on('data', (answer) => answers.push(answer));
        stream.on('end', resolve);
        stream.on('error', reject);
      });
      stream.write(garbage);
      const valid = {
        model_name: 'simple',
        id: 'after-garbage',
        inputs: ['INPUT0', 'INPUT1'].map((name) => ({ name, datatype: 'INT32', shape: [1, 16], contents: { int_contents: Array(16).fill(1) } })),
      };
      stream.write(definition.requestSerialize(valid));
      stream.end();
      await ended;
      assert.equal(answers.length, 2);
      assert.ok(answers.some((answer) => /not a valid protobuf/.test(answer.error_message)));
      assert.ok(answers.some((answer) => answer.error_message === '' && answer.infer_response?.id === 'after-garbage'));
    } finally {
      client.close();
    }
  });
});

describe('files and overrides', () => {
  test('links to model or version folders inside the repository are followed; a link out of it is not', async () => {
    const elsewhere = join(outside, 'elsewhere-model');
    await writeModel(elsewhere, 'escaped', 1, scaleModel(2), 'max_batch_size: 4\n');
    const linked = await startTestServer({
      models: async (repo) => {
        await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 4\n');
        await symlink(join(repo, 'scale'), join(repo, 'scale_alias'));
        await mkdir(join(repo, 'vlink'));
        await writeFile(join(repo, 'vlink', 'config.pbtxt'), 'max_batch_size: 4\n');
        await symlink(join(repo, 'scale', '1'), join(repo, 'vlink', '1'));
        await symlink(join(elsewhere, 'escaped'), join(repo, 'escaped'));
      },
      server: { strictReadiness: false },
    });
    try {
      const index = (await (await fetch(`${linked.url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { name: string; state?: string }[];
      assert.deepEqual(index.map((entry) => entry.name).sort(), ['scale', 'scale_alias', 'vlink']);
      for (const model of ['scale_alias', 'vlink']) {
        const answer = await fetch(`${linked.url}/v2/models/${model}/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }) });
        assert.equal(answer.status, 200, `${model}: ${await answer.text()}`);
      }
    } finally {
      await linked.close();
    }
  });

  test('a labels file that links outside the repository fails the load, and the reason shows no server path', async () => {
    const index = (await (await post('/v2/repository/index', '{}', bearer('manage-token'))).json()) as { name: string; state?: string; reason?: string }[];
    const leaky = index.find((entry) => entry.name === 'leaky');
    assert.equal(leaky?.state, 'UNAVAILABLE');
    assert.match(leaky!.reason!, /label_filename 'labels.txt' is a link to a file outside the model repository/);
    const linkedConfig = index.find((entry) => entry.name === 'linked_config');
    assert.equal(linkedConfig?.state, 'UNAVAILABLE');
    assert.match(linkedConfig!.reason!, /config file 'config.pbtxt' is a link to a file outside the model repository/);
    for (const entry of index) assert.ok(!entry.reason?.includes(served.repoDir) && !entry.reason?.includes(outside), entry.reason);
  });

  test('a load override may not name other files, ask for more threads than cores, or a delay that hangs the model', async () => {
    const load = (config: object) => post('/v2/repository/models/scale/load', JSON.stringify({ parameters: { config: JSON.stringify(config) } }), bearer('manage-token'));
    const refusals: [object, RegExp][] = [
      [{ max_batch_size: 4, output: [{ name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4], label_filename: 'config.pbtxt' }] }, /labels file/],
      [{ max_batch_size: 4, default_model_filename: 'other.onnx' }, /model file/],
      [{ max_batch_size: 4, parameters: { intra_op_thread_count: { string_value: '2000' } } }, /may not set intra_op_thread_count to 2000: at most \d+ on this machine \(one thread per core, \d+ cores\)$/],
      [{ max_batch_size: 4, instance_group: [{ count: 5000, kind: 'KIND_CPU' }] }, /may not ask for 5000 instances \(instance_group counts summed\): at most \d+ on this machine \(4 per core, \d+ cores\)$/],
      [{ max_batch_size: 4, dynamic_batching: { max_queue_delay_microseconds: '1000000000000000' } }, /max_queue_delay_microseconds above/],
      [{ max_batch_size: 1_000_000 }, /max_batch_size above 1024/],
      [{ max_batch_size: 4, parameters: { x: { a: 1 } } }, /parameters\.x: a parameter value must be a string, number or boolean, or \{string_value: string\}, got \{"a":1\}/],
      // A million levels took 90 MB (a billion hung the server): one queue is kept per level.
      [{ max_batch_size: 4, dynamic_batching: { priority_levels: 1_000_000, default_priority_level: 1 } }, /priority_levels may be at most 1000 .*got 1000000/],
      [
        { max_batch_size: 4, input: [{ name: 'INPUT0', data_type: 'TYPE_STRING', dims: [1], preprocess: { image: { width: 4, height: 1, max_pixels: 4_000_000_000 } } }] },
        /max_pixels above 40000000/,
      ],
      // Within the row limit one by one, beyond it together; and huge tensors from few rows.
      [
        { max_batch_size: 4, model_warmup: Array.from({ length: 200 }, (_, n) => ({ name: `w${n}`, batch_size: 4, count: 2500, inputs: { INPUT0: { data_type: 'TYPE_FP32', dims: [4], zero_data: true } } })) },
        /more than 10000 rows in all \(count × batch_size over every entry: 2000000\)/,
      ],
      [
        { max_batch_size: 4, model_warmup: [{ name: 'huge', batch_size: 1, count: 1, inputs: { INPUT0: { data_type: 'TYPE_FP32', dims: [1_000_000_000], zero_data: true } } }] },
        /tensors of more than 67108864 bytes in all \(4000000000, a BYTES element counted as 128\)/,
      ],
      // Strings cost an object each: 8 million empty ones blocked the event loop for 20 s and kept 3.4 GB.
      [
        { max_batch_size: 4, model_warmup: [{ name: 'strings', batch_size: 1, count: 1, inputs: { INPUT0: { data_type: 'TYPE_STRING', dims: [8_000_000], zero_data: true } } }] },
        /tensors of more than 67108864 bytes in all \(1024000000, a BYTES element counted as 128\)/,
      ],
      // A sequence's state is held per live sequence, and an initial value is read only from a file the repository names.
      [
        { max_batch_size: 4, sequence_batching: { state: [{ input_name: 'INPUT0', output_name: 'OUTPUT0', data_type: 'TYPE_STRING', dims: [4_000_000], initial_state: [{ data_type: 'TYPE_STRING', dims: [4_000_000], zero_data: true }] }] } },
        /give each sequence state of more than 16777216 bytes \(1024000000, a BYTES element counted as 128\)/,
      ],
      [
        { max_batch_size: 4, sequence_batching: { state: [{ input_name: 'INPUT0', output_name: 'OUTPUT0', data_type: 'TYPE_FP32', dims: [4], initial_state: [{ data_type: 'TYPE_FP32', dims: [4], data_file: 'secret.bin' }] }] } },
        /name an initial_state data_file the repository's config does not name \('secret\.bin'\)/,
      ],
    ];
    for (const [config, pattern] of refusals) {
      const response = await load(config);
      assert.equal(response.status, 400, JSON.stringify(config));
      assert.match(((await response.json()) as { error: string }).error, pattern);
    }
    // Automatic warmup makes max_batch_size rows of the dims completion settles (here a model_warmup entry's, for a model
    // whose input the override does not list): the same bound, 1024 × 65536 FP32 being 256 MiB.
    const autoWarmup = {
      max_batch_size: 1024,
      parameters: { warmup: { string_value: 'auto' } },
      model_warmup: [{ name: 'shape', batch_size: 1, count: 1, inputs: { INPUT0: { data_type: 'TYPE_FP32', dims: [65536], zero_data: true } } }],
    };
    const wide = await post('/v2/repository/models/wide/load', JSON.stringify({ parameters: { config: JSON.stringify(autoWarmup) } }), bearer('manage-token'));
    assert.equal(wide.status, 400);
    assert.match(((await wide.json()) as { error: string }).error, /may not ask its warmup for tensors of more than 67108864 bytes in all \(268697600, a BYTES element counted as 128\)/);
    assert.equal((await load({ max_batch_size: 2 })).status, 200, 'a safe override still loads');
    assert.equal((await post('/v2/models/scale/ready', '', bearer('infer-token'))).status, 405, 'ready is a GET');
  });
});
