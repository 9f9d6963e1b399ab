/**
 * Triton's trace and logging extensions end to end: settings changed over real HTTP and real gRPC,
 * spans of real ONNX Runtime requests counted in an InMemorySpanExporter, log lines captured from
 * the server's pino logger, and the bearer-token scopes that guard the settings.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { Tracing } from '../src/observability/index.js';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer, type TestServer } from './support/test-server.js';

type Json = Record<string, any>;

const INFERENCE_TOKEN = 'inference-token-1';
const ADMIN_TOKEN = 'admin-token-1';
const CONFIG = 'max_batch_size: 8\nparameters { key: "intra_op_thread_count" value: { string_value: "1" } }\n';

let traced: TestServer; // tracing to the in-memory exporter, scoped tokens, HTTP and gRPC
let untraced: TestServer; // no trace exporter at all
let exporter: InMemorySpanExporter;
let tracing: Tracing;
let grpcEndpoint: GrpcEndpoint;
const logLines: Json[] = [];

before(async () => {
  exporter = new InMemorySpanExporter();
  tracing = new Tracing({ exporter, processor: 'simple' });
  const logger = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  const models = async (repo: string) => {
    await writeModel(repo, 'traced', 1, addSubModel(), CONFIG);
    await writeModel(repo, 'other', 1, addSubModel(), CONFIG);
  };
  traced = await startTestServer({
    models,
    server: { logger, observers: [tracing.observer], traceSettings: tracing.settings },
    http: { authTokens: { inference: [INFERENCE_TOKEN], management: [ADMIN_TOKEN] } },
  });
  untraced = await startTestServer({ models });
  grpcEndpoint = await startGrpcEndpoint(traced.server, { authTokens: { inference: [INFERENCE_TOKEN], management: [ADMIN_TOKEN] } });
});

after(async () => {
  await grpcEndpoint?.close();
  await traced?.close();
  await untraced?.close();
  await tracing?.shutdown();
});

// ---------------------------------------------------------------------------------------------
// Helpers

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function http(server: TestServer, path: string, body?: unknown, token = ADMIN_TOKEN): Promise<{ status: number; body: Json }> {
  const init: RequestInit = { headers: bearer(token) };
  if (body !== undefined) Object.assign(init, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  const response = await fetch(`${server.url}${path}`, init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}

async function settingsOk(path: string, body?: unknown, server = traced): Promise<Json> {
  const answer = await http(server, path, body);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body;
}

async function refused(path: string, body: unknown, fragments: string[], server = traced): Promise<void> {
  const answer = await http(server, path, body);
  assert.equal(answer.status, 400, JSON.stringify(answer.body));
  for (const fragment of fragments) assert.ok(answer.body.error.includes(fragment), `'${answer.body.error}' lacks '${fragment}'`);
}

/** One request of one row to `model`, identified by `requestId`. */
async function infer(model: string, requestId: string, server = traced): Promise<void> {
  const data = Array.from({ length: 16 }, (_, index) => index);
  const response = await fetch(`${server.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { ...bearer(INFERENCE_TOKEN), 'x-request-id': requestId },
    body: JSON.stringify({
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data },
      ],
    }),
  });
  assert.equal(response.status, 200, await response.text());
}

/** The request ids of the `infer <model>` spans recorded since the exporter was last reset, in order. */
function tracedIds(model: string): string[] {
  return exporter
    .getFinishedSpans()
    .filter((span) => span.name === `infer ${model}`)
    .map((span) => String(span.attributes['nereid.request.id']));
}

/** Sends `count` requests to `model`, ids `<prefix>1`..`<prefix>count`, one after the other. */
async function inferMany(model: string, prefix: string, count: number): Promise<void> {
  for (let index = 1; index <= count; index++) await infer(model, `${prefix}${index}`);
}

const GLOBAL_DEFAULTS = { trace_level: ['TIMESTAMPS'], trace_rate: '1', trace_count: '-1', log_frequency: '0' };

async function resetTracing(): Promise<void> {
  await settingsOk('/v2/trace/setting', GLOBAL_DEFAULTS);
  await settingsOk('/v2/models/traced/trace/setting', '');
  await settingsOk('/v2/models/other/trace/setting', '');
  exporter.reset();
}

function rpc<T = Json>(method: string, request: object, token = ADMIN_TOKEN): Promise<T> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    grpcEndpoint.client[method](request, metadata, (error: grpc.ServiceError | null, response: T) => (error ? reject(error) : resolve(response)));
  });
}

async function rpcError(method: string, request: object, code: grpc.status, fragments: string[] = [], token = ADMIN_TOKEN): Promise<void> {
  const error = await rpc(method, request, token).then(
    (response) => assert.fail(`${method} succeeded: ${JSON.stringify(response)}`),
    (error: grpc.ServiceError) => error,
  );
  assert.equal(error.code, code, `expected ${grpc.status[code]}, got ${grpc.status[error.code]}: ${error.details}`);
  for (const fragment of fragments) assert.ok(error.details.includes(fragment), `'${error.details}' lacks '${fragment}'`);
}

/** A TraceSetting response's map as plain name → values. */
const traceValues = (response: Json): Record<string, string[]> =>
  Object.fromEntries(Object.entries(response.settings as Record<string, { value: string[] }>).map(([name, setting]) => [name, setting.value]));

// ---------------------------------------------------------------------------------------------

describe('trace extension over HTTP', () => {
  test('GET answers the settings in effect; the server reports the trace and logging extensions', async () => {
    await resetTracing();
    assert.deepEqual(await settingsOk('/v2/trace/setting'), { ...GLOBAL_DEFAULTS, trace_mode: 'opentelemetry' });
    const metadata = await http(traced, '/v2', undefined, INFERENCE_TOKEN);
    assert.ok(metadata.body.extensions.includes('trace') && metadata.body.extensions.includes('logging'), JSON.stringify(metadata.body));
  });

  test('trace_rate "2" traces every second request, counted from the change', async () => {
    await resetTracing();
    assert.equal((await settingsOk('/v2/trace/setting', { trace_rate: '2' })).trace_rate, '2');
    await inferMany('traced', 'rate-', 6);
    assert.deepEqual(tracedIds('traced'), ['rate-2', 'rate-4', 'rate-6']);
  });

  test('trace_count "3" records exactly three traces, then none; GET counts down to "0"', async () => {
    await resetTracing();
    await settingsOk('/v2/trace/setting', { trace_count: '3' });
    await inferMany('traced', 'count-', 5);
    assert.deepEqual(tracedIds('traced'), ['count-1', 'count-2', 'count-3']);
    assert.equal((await settingsOk('/v2/trace/setting')).trace_count, '0');
  });

  test('trace_level ["OFF"] records nothing', async () => {
    await resetTracing();
    await settingsOk('/v2/trace/setting', { trace_level: ['OFF'] });
    await inferMany('traced', 'off-', 2);
    assert.deepEqual(tracedIds('traced'), []);
  });

  test("a model's override applies to it alone; null clears it and the global value applies again", async () => {
    await resetTracing();
    const own = await settingsOk('/v2/models/traced/trace/setting', { trace_rate: '3' });
    assert.deepEqual(own, { ...GLOBAL_DEFAULTS, trace_rate: '3', trace_mode: 'opentelemetry' });
    assert.equal((await settingsOk('/v2/trace/setting')).trace_rate, '1', 'the global setting is unchanged');
    await inferMany('traced', 'own-', 6);
    await inferMany('other', 'global-', 2);
    assert.deepEqual(tracedIds('traced'), ['own-3', 'own-6']);
    assert.deepEqual(tracedIds('other'), ['global-1', 'global-2']);

    // A global change reaches the fields the model does not set, not the one it does.
    await settingsOk('/v2/trace/setting', { log_frequency: '5', trace_rate: '4' });
    assert.deepEqual(await settingsOk('/v2/models/traced/trace/setting'), { ...GLOBAL_DEFAULTS, trace_rate: '3', log_frequency: '5', trace_mode: 'opentelemetry' });

    const cleared = await settingsOk('/v2/models/traced/trace/setting', { trace_rate: null });
    assert.equal(cleared.trace_rate, '4', 'back to the global rate');
    exporter.reset();
    await inferMany('traced', 'cleared-', 4);
    assert.deepEqual(tracedIds('traced'), ['cleared-4']);
  });

  test('a POST naming no setting clears every override of the model, as Triton does', async () => {
    await resetTracing();
    await settingsOk('/v2/models/traced/trace/setting', { trace_rate: '7', trace_count: '2' });
    assert.deepEqual(await settingsOk('/v2/models/traced/trace/setting', {}), { ...GLOBAL_DEFAULTS, trace_mode: 'opentelemetry' });
  });

  test('trace_file is refused with the reason, and nothing of the request is applied', async () => {
    await resetTracing();
    await refused('/v2/trace/setting', { trace_rate: '9', trace_file: '/tmp/owned' }, ['trace_file cannot be set over the API', 'CVE-2024-0087']);
    await refused('/v2/models/traced/trace/setting', { trace_file: '/etc/cron.d/x' }, ['CVE-2024-0087']);
    assert.equal((await settingsOk('/v2/trace/setting')).trace_rate, '1');
  });

  test('values of the wrong type or format are refused, naming what was expected and what arrived', async () => {
    await resetTracing();
    await refused('/v2/trace/setting', { trace_rate: 2 }, ['trace_rate must be a string holding a whole number', 'got 2']);
    await refused('/v2/trace/setting', { trace_rate: '0' }, ['1 or more', 'got "0"']);
    await refused('/v2/trace/setting', { trace_count: '-2' }, ['"-1" for no limit', 'got "-2"']);
    await refused('/v2/trace/setting', { log_frequency: '1.5' }, ['log_frequency must be', 'got "1.5"']);
    await refused('/v2/trace/setting', { trace_level: 'TIMESTAMPS' }, ['trace_level must be a list', 'got "TIMESTAMPS"']);
    await refused('/v2/trace/setting', { trace_level: ['TENSORS'] }, ['TENSORS is not supported']);
    await refused('/v2/trace/setting', { trace_level: ['OFF', 'TIMESTAMPS'] }, ['cannot be combined']);
    await refused('/v2/trace/setting', { trace_rate: null }, ['cannot be cleared globally']);
    await refused('/v2/trace/setting', { trace_speed: '1' }, ["unknown trace setting 'trace_speed'", 'trace_rate']);
    await refused('/v2/trace/setting', '["trace_rate"]', ['must be a JSON object']);
    const unknown = await http(traced, '/v2/models/nope/trace/setting', { trace_rate: '2' });
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error, /unknown model: 'nope'/);
  });

  test('without a trace exporter tracing reports OFF and cannot be turned on', async () => {
    assert.deepEqual((await settingsOk('/v2/trace/setting', undefined, untraced)).trace_level, ['OFF']);
    // A server made by the library (as here) names its option; nereid serve's names --trace-exporter otlp (library-options.test.ts).
    await refused('/v2/trace/setting', { trace_level: ['TIMESTAMPS'] }, ['started without a trace exporter', 'traceSettings: tracing.settings'], untraced);
    await refused('/v2/models/traced/trace/setting', { trace_level: ['TIMESTAMPS'] }, ['traceSettings: tracing.settings'], untraced);
    assert.equal((await settingsOk('/v2/trace/setting', { trace_rate: '10' }, untraced)).trace_rate, '10', 'the other settings are kept');
  });
});

describe('trace extension over gRPC', () => {
  test('TraceSetting reads, sets per model, clears with an empty value, and refuses trace_file', async () => {
    await resetTracing();
    assert.deepEqual(traceValues(await rpc('TraceSetting', {})), {
      trace_level: ['TIMESTAMPS'],
      trace_rate: ['1'],
      trace_count: ['-1'],
      log_frequency: ['0'],
      trace_mode: ['opentelemetry'],
    });
    const own = traceValues(await rpc('TraceSetting', { model_name: 'traced', settings: { trace_rate: { value: ['2'] } } }));
    assert.deepEqual(own.trace_rate, ['2']);
    await inferMany('traced', 'grpc-', 4);
    assert.deepEqual(tracedIds('traced'), ['grpc-2', 'grpc-4']);
    assert.deepEqual(traceValues(await rpc('TraceSetting', { model_name: 'traced' })).trace_rate, ['2'], 'no settings: a read');
    const cleared = traceValues(await rpc('TraceSetting', { model_name: 'traced', settings: { trace_rate: { value: [] } } }));
    assert.deepEqual(cleared.trace_rate, ['1']);
    await rpcError('TraceSetting', { settings: { trace_file: { value: ['/tmp/owned'] } } }, grpc.status.INVALID_ARGUMENT, ['CVE-2024-0087']);
    await rpcError('TraceSetting', { settings: { trace_count: { value: ['many'] } } }, grpc.status.INVALID_ARGUMENT, ['got "many"']);
  });
});

describe('logging extension', () => {
  /** The 'request failed' debug line of the request with this id, if the logger wrote one. */
  const failureLine = (requestId: string) => logLines.find((line) => line.reqId === requestId && line.msg === 'request failed');

  async function failingRequest(requestId: string): Promise<void> {
    const response = await fetch(`${traced.url}/v2/models/nope/infer`, { method: 'POST', headers: { ...bearer(INFERENCE_TOKEN), 'x-request-id': requestId }, body: '{}' });
    assert.equal(response.status, 404);
  }

  test('raising log_verbose_level makes debug lines appear at once; lowering it hides them again', async () => {
    assert.deepEqual(await settingsOk('/v2/logging'), { log_info: true, log_warning: true, log_error: true, log_verbose_level: 0, log_format: 'default', log_file: '' });
    await failingRequest('quiet-1');
    assert.equal(failureLine('quiet-1'), undefined, 'no debug line at verbosity 0');

    assert.equal((await settingsOk('/v2/logging', { log_verbose_level: 1 })).log_verbose_level, 1);
    await failingRequest('loud-1');
    const line = failureLine('loud-1');
    assert.ok(line, 'the debug line of the failed request');
    assert.equal(line.level, pino.levels.values.debug);

    await settingsOk('/v2/logging', { log_verbose_level: 0 });
    await failingRequest('quiet-2');
    assert.equal(failureLine('quiet-2'), undefined);
  });

  test('a change of a setting leaves an info line naming it, its answer and the client, without the access log; a read (GET, or a POST naming no setting) does not', async () => {
    const before = logLines.length;
    await settingsOk('/v2/logging', { log_verbose_level: 0 });
    await settingsOk('/v2/logging');
    await settingsOk('/v2/logging', {});
    const audit = logLines.slice(before).filter((line) => String(line.msg).startsWith('management:'));
    assert.equal(audit.length, 1, JSON.stringify(audit));
    assert.equal(audit[0].msg, 'management: POST /v2/logging answered 200');
    assert.equal(audit[0].level, pino.levels.values.info);
    assert.match(String(audit[0].remoteAddress), /127\.0\.0\.1/);
    assert.ok(audit[0].reqId, 'with its request id');
  });

  test('log_format ISO8601 writes ISO 8601 times; default brings back epoch milliseconds', async () => {
    await settingsOk('/v2/logging', { log_format: 'ISO8601', log_verbose_level: 1 });
    await failingRequest('iso-1');
    assert.match(String(failureLine('iso-1')?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await settingsOk('/v2/logging', { log_format: 'default', log_file: '' });
    await failingRequest('epoch-1');
    assert.equal(typeof failureLine('epoch-1')?.time, 'number');
    await settingsOk('/v2/logging', { log_verbose_level: 0 });
  });

  test('log_info off raises the threshold to warnings; each switch is independent, as in Triton', async () => {
    assert.deepEqual(await settingsOk('/v2/logging', { log_info: false }), { log_info: false, log_warning: true, log_error: true, log_verbose_level: 0, log_format: 'default', log_file: '' });
    assert.equal(traced.server.logger.level, 'warn');
    assert.deepEqual(await settingsOk('/v2/logging', { log_info: true, log_warning: false }), { log_info: true, log_warning: false, log_error: true, log_verbose_level: 0, log_format: 'default', log_file: '' });
    assert.equal(traced.server.logger.level, 'info');
    assert.deepEqual(await settingsOk('/v2/logging'), { log_info: true, log_warning: false, log_error: true, log_verbose_level: 0, log_format: 'default', log_file: '' }, 'GET reads back what was set');
    await settingsOk('/v2/logging', { log_warning: true });
    assert.equal(traced.server.logger.level, 'info');
  });

  test('log_file is refused with the reason; wrong types name what was expected and what arrived', async () => {
    await refused('/v2/logging', { log_file: '/tmp/owned.log' }, ['updating log file was deprecated and no longer supported', 'log_file cannot be set over the API', 'CVE-2024-0087', 'or the file given by --log-file']);
    await refused('/v2/logging', { log_verbose_level: '1' }, ['log_verbose_level must be a whole number', 'got "1"']);
    await refused('/v2/logging', { log_verbose_level: -1 }, ['got -1']);
    await refused('/v2/logging', { log_info: 'yes' }, ['log_info must be true or false', 'got "yes"']);
    await refused('/v2/logging', { log_format: 'json' }, ['log_format must be one of default, ISO8601', 'got "json"']);
    assert.equal(traced.server.logger.level, 'info', 'nothing applied');
  });

  test('LogSettings over gRPC reads and sets the same settings and refuses log_file', async () => {
    const read = await rpc<Json>('LogSettings', {});
    assert.equal(read.settings.log_verbose_level.uint32_param, 0);
    assert.equal(read.settings.log_format.string_param, 'default');
    const raised = await rpc<Json>('LogSettings', { settings: { log_verbose_level: { uint32_param: 2 } } });
    assert.equal(raised.settings.log_verbose_level.uint32_param, 2);
    assert.equal(traced.server.logger.level, 'trace');
    const before = logLines.length;
    const lowered = await rpc<Json>('LogSettings', { settings: { log_verbose_level: { uint32_param: 0 } } });
    assert.equal(lowered.settings.log_info.bool_param, true);
    await rpc<Json>('LogSettings', {});
    const audit = logLines.slice(before).filter((line) => String(line.msg).startsWith('management:'));
    assert.deepEqual(audit.map((line) => line.msg), ['management: LogSettings answered OK'], 'the change is logged, the read is not');
    await rpcError('LogSettings', { settings: { log_file: { string_param: '/tmp/owned.log' } } }, grpc.status.INVALID_ARGUMENT, ['CVE-2024-0087']);
    await rpcError('LogSettings', { settings: { log_info: { uint32_param: 1 } } }, grpc.status.INVALID_ARGUMENT, ['log_info must be true or false', 'got 1']);
  });
});

test('a gRPC call logs at most 256 characters of the model name its client sent', async () => {
  // The management line is written for every load and unload, refused ones too: a 64 MiB name was copied whole into it.
  const before = logLines.length;
  // Refused before its name is looked at (this server's control mode is none): the line names it all the same.
  await rpcError('RepositoryModelLoad', { model_name: 'm'.repeat(100_000) }, grpc.status.UNAVAILABLE);
  const lines = logLines.slice(before).filter((line) => line.rpc === 'RepositoryModelLoad');
  assert.ok(lines.some((line) => String(line.msg).startsWith('management:')), 'the refused load is logged');
  for (const line of lines) assert.ok(String(line.model).length <= 257, `a log line carries ${String(line.model).length} characters of the name`);
});

describe('bearer tokens: the settings need the management scope', () => {
  test('over HTTP, an inference token opens inference routes but neither trace nor logging settings', async () => {
    for (const path of ['/v2/trace/setting', '/v2/models/traced/trace/setting', '/v2/logging']) {
      const read = await http(traced, path, undefined, INFERENCE_TOKEN);
      assert.equal(read.status, 403, `GET ${path}: ${JSON.stringify(read.body)}`);
      const write = await http(traced, path, { trace_rate: '1' }, INFERENCE_TOKEN);
      assert.equal(write.status, 403, `POST ${path}`);
    }
    assert.equal((await http(traced, '/v2/models/traced', undefined, ADMIN_TOKEN)).status, 403, 'the admin token is not an inference token');
    assert.equal((await http(traced, '/v2/models/traced', undefined, INFERENCE_TOKEN)).status, 200);
  });

  test('over gRPC, TraceSetting and LogSettings refuse an inference token', async () => {
    await rpcError('TraceSetting', {}, grpc.status.PERMISSION_DENIED, [], INFERENCE_TOKEN);
    await rpcError('LogSettings', {}, grpc.status.PERMISSION_DENIED, [], INFERENCE_TOKEN);
    await rpc('TraceSetting', {}, ADMIN_TOKEN);
  });
});
