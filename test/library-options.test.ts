/**
 * The library's public constructors and factories as a user calls them: a misspelt option is refused by name with the
 * options that exist (not dropped, leaving its default in force), and a wrong value reads as one line saying what the
 * option expects and what it got.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { GrpcClient, HttpClient } from '../src/client/index.js';
import { PrometheusMetrics, Tracing } from '../src/observability/index.js';
import { batchJobList, batchJobStatus, cancelBatchJob, createGrpcFrontEnd, createHttpFrontEnd, createServer, runDistributedBatchJob, runLocalBatchJob, Server, startBatchWorker } from '../src/index.js';
import { OptionError, optionKeyName, type SettingName } from '../src/core/options.js';
import { unpreparedRepositoryMessage } from '../src/repository/bundled-repository.js';
import { serveFlagName } from '../src/server/server-options.js';
import { httpFlagName } from '../src/frontends/http/http-options.js';
import { grpcFlagName } from '../src/frontends/grpc/grpc-options.js';
import { doublerBackend, fakeRepository } from './support/fake-backend.js';

const logger = pino({ level: 'silent' });

test('a misspelt option of createServer, Server, the front ends and the clients is refused, naming it and the known ones', async () => {
  await assert.rejects(createServer({ modelRepo: 'models', logger } as never), /^TypeError: Server: unknown option 'modelRepo' \(known: .*\bcacheConfig\b.*\bmodelRepository\b.*\)$/);
  await assert.rejects((createServer as (options?: unknown) => Promise<unknown>)(), /^TypeError: Server: option 'modelRepository' expects string \(a folder\) or an array of them, got undefined$/);
  await assert.rejects(
    createServer({ modelRepository: 'models', logger, maxBatchSise: 8 } as never),
    /^TypeError: Server: unknown option 'maxBatchSise' \(known: .*\bdefaultMaxBatchSize\b.*\)$/,
  );
  assert.throws(
    () => new Server({ modelRepository: 'models', logger, backends: [doublerBackend()], maxQueueSise: 2, htpPort: 1 } as never),
    /^TypeError: Server: unknown options 'maxQueueSise', 'htpPort' \(known: .*\bbackends\b.*\bmaxQueueSize\b.*\)$/,
  );
  const server = new Server({ modelRepository: 'models', logger, backends: [doublerBackend()] });
  assert.throws(() => createHttpFrontEnd(server, { maxBodyByte: 1 } as never), /^TypeError: createHttpFrontEnd: unknown option 'maxBodyByte' \(known: .*\bdashboardJobs\b.*\bmaxBodyBytes\b.*\)$/);
  assert.throws(() => createGrpcFrontEnd(server, { reflexion: true } as never), /^TypeError: createGrpcFrontEnd: unknown option 'reflexion' \(known: .*\breflection\b.*\)$/);
  assert.throws(() => new HttpClient({ url: 'http://127.0.0.1:8000', timeout: 100 } as never), /^TypeError: HttpClient: unknown option 'timeout' \(known: .*\btimeoutMs\b.*\)$/);
  assert.throws(
    () => new HttpClient({ url: 'http://127.0.0.1:8000', retry: { retries: 5 } } as never),
    /^TypeError: HttpClient: unknown option 'retry\.retries' \(known: firstDelayMs, maxDelayMs, tries; did you mean 'retry\.tries'\?\)$/,
  );
  assert.throws(() => new GrpcClient({ address: '127.0.0.1:8001', compresion: 'gzip' } as never), /^TypeError: GrpcClient: unknown option 'compresion' \(known: .*\bcompression\b.*\)$/);
  assert.throws(() => new Server({ modelRepository: 'models', logger } as never), /^Error: a Server needs at least one backend \(option backends\)$/);
});

test('a misspelt key of a nested options object (monitoring, reclaimIdleMemory, authTokens, tls) is refused by its path, with the key it most likely meant', async () => {
  const backends = [doublerBackend()];
  await assert.rejects(
    createServer({ modelRepository: 'models', logger, monitoring: { windw: 5 } } as never),
    /^TypeError: Server: unknown option 'monitoring\.windw' \(known: driftWindows, evaluateEvery, state, topFeatures, window; did you mean 'monitoring\.window'\?\)$/,
  );
  assert.throws(
    () => new Server({ modelRepository: 'models', logger, backends, reclaimIdleMemory: { growthByte: 1 } } as never),
    /^TypeError: Server: unknown option 'reclaimIdleMemory\.growthByte' \(known: checkEveryMs, growthBytes, maxRecheckMs, recheckMs; did you mean 'reclaimIdleMemory\.growthBytes'\?\)$/,
  );
  // Any depth: the drift window inside monitoring, the drift state beside it.
  assert.throws(
    () => new Server({ modelRepository: 'models', logger, backends, monitoring: { window: { capacty: 500 } } } as never),
    /^TypeError: Server: unknown option 'monitoring\.window\.capacty' \(known: capacity, maxAgeMs; did you mean 'monitoring\.window\.capacity'\?\)$/,
  );
  assert.throws(() => new Server({ modelRepository: 'models', logger, backends, monitoring: { state: { minSample: 10 } } } as never), /unknown option 'monitoring\.state\.minSample' .*did you mean 'monitoring\.state\.minSamples'\?\)$/);
  // A key nothing is near is named with the known ones only.
  assert.throws(() => new Server({ modelRepository: 'models', logger, backends, reclaimIdleMemory: { zzz: 1 } } as never), /^TypeError: Server: unknown option 'reclaimIdleMemory\.zzz' \(known: checkEveryMs, growthBytes, maxRecheckMs, recheckMs\)$/);
  // The front ends' nested objects: scoped tokens and TLS credentials.
  const server = new Server({ modelRepository: 'models', logger, backends });
  assert.throws(() => createHttpFrontEnd(server, { authTokens: { inferense: ['t'] } } as never), /^TypeError: createHttpFrontEnd: unknown option 'authTokens\.inferense' \(known: all, inference, management, metrics; did you mean 'authTokens\.inference'\?\)$/);
  assert.throws(() => createGrpcFrontEnd(server, { tls: { cert: 'c', key: 'k', clientCA: 'ca' } } as never), /^TypeError: createGrpcFrontEnd: unknown option 'tls\.clientCA' \(known: cert, ciphers, clientCa, clientCrl, key, minVersion; did you mean 'tls\.clientCa'\?\)$/);
  // What the schemas take still passes: false for either service, their own keys at any depth, a token list.
  new Server({ modelRepository: 'models', logger, backends, monitoring: false, reclaimIdleMemory: false });
  const tuned = new Server({
    modelRepository: 'models',
    logger,
    backends,
    monitoring: { window: { capacity: 500, maxAgeMs: 60_000 }, state: { minSamples: 100 }, evaluateEvery: 50 },
    reclaimIdleMemory: { growthBytes: 1024, checkEveryMs: 500 },
  });
  assert.deepEqual(tuned.options.monitoring && [tuned.options.monitoring.window.capacity, tuned.options.monitoring.state.minSamples], [500, 100]);
  createHttpFrontEnd(server, { authTokens: ['t'] });
  createHttpFrontEnd(server, { authTokens: { inference: ['t'] } });
});

test("the clients refuse a missing address, a compression they do not speak and a misspelt infer option before sending anything", async () => {
  assert.throws(() => new HttpClient({} as never), /^TypeError: HttpClient: option 'url' expects the server's URL, e\.g\. http:\/\/127\.0\.0\.1:8000, got undefined$/);
  assert.throws(() => new GrpcClient({} as never), /^TypeError: GrpcClient: option 'address' expects the server's host:port, e\.g\. 127\.0\.0\.1:8001, got undefined$/);
  assert.throws(() => new GrpcClient({ address: '127.0.0.1:1', compression: 'zip' as never }), /^TypeError: GrpcClient: option 'compression' expects 'gzip' or 'deflate', got 'zip' \(a string\)$/);
  const input = { INPUT0: { datatype: 'INT32', shape: [1, 16], data: new Int32Array(16) } } as const;
  const http = new HttpClient({ url: 'http://127.0.0.1:1' });
  const grpc = new GrpcClient({ address: '127.0.0.1:1' });
  try {
    await assert.rejects(http.infer('simple', input, { clasification: 1 } as never), /^TypeError: HttpClient\.infer: unknown option 'clasification' \(known: .*\bclassification\b.*\)$/);
    await assert.rejects(http.infer('simple', input, { requestCompression: 'zip' as never }), /^TypeError: HttpClient\.infer: option 'requestCompression' expects 'gzip' or 'deflate', got 'zip' \(a string\)$/);
    await assert.rejects(grpc.infer('simple', input, { clasification: 1 } as never), /^TypeError: GrpcClient\.infer: unknown option 'clasification' \(known: .*\bclassification\b.*\)$/);
  } finally {
    http.close();
    grpc.close();
  }
});

test('Tracing and PrometheusMetrics refuse a misspelt option, and Tracing an exporter that is neither otlp nor an exporter', () => {
  assert.throws(() => new Tracing({ exporter: 'otlp', endpiont: 'http://127.0.0.1:4318/v1/traces' } as never), /^TypeError: Tracing: unknown option 'endpiont' \(known: endpoint, exporter, processor, sampleRate, serviceName, settingName; did you mean 'endpoint'\?\)$/);
  assert.throws(() => new Tracing({ exporter: 'otlpp' } as never), /^TypeError: Tracing: option 'exporter' expects 'otlp' or a SpanExporter \(an object with export\(\) and shutdown\(\)\), got 'otlpp'$/);
  assert.throws(() => new (Tracing as new (options?: unknown) => unknown)(), /^TypeError: Tracing: option 'exporter' expects 'otlp' or a SpanExporter .*, got undefined$/);
  assert.throws(() => new Tracing({ exporter: 'otlp', sampleRate: 2 }), /^TypeError: Tracing: option 'sampleRate' is invalid: trace sample rate must be between 0 and 1, got 2$/);
  assert.throws(() => new PrometheusMetrics({ usdPerCoreHr: 1 } as never), /^TypeError: PrometheusMetrics: unknown option 'usdPerCoreHr' \(known: .*\busdPerCoreHour\b.*\)$/);
});

test('a wrong option value reads as one line: the option, what it expects and what it got', () => {
  const server = new Server({ modelRepository: 'models', logger, backends: [doublerBackend()] });
  assert.throws(() => createHttpFrontEnd(server, { maxBodyBytes: -1 }), /^TypeError: createHttpFrontEnd: option 'maxBodyBytes' expects number to be >0, got -1$/);
  assert.throws(
    () => createGrpcFrontEnd(server, { maxReceiveMessageBytes: '4MB' } as never),
    /^TypeError: createGrpcFrontEnd: option 'maxReceiveMessageBytes' expects number, got '4MB' \(a string\)$/,
  );
  assert.throws(
    () => new Server({ modelRepository: 'models', logger, backends: [doublerBackend()], modelControlMode: 'manual' as never }),
    /^TypeError: Server: option 'modelControlMode' expects one of "none"\|"explicit"\|"poll"\|"on_demand", got 'manual' \(a string\)$/,
  );
});

test("the clients refuse a wrong option value in one line, at its dotted path, before any call", () => {
  const url = 'http://127.0.0.1:8000';
  const address = '127.0.0.1:8001';
  const refused: [() => unknown, RegExp][] = [
    [() => new HttpClient({ url, timeoutMs: '5' as never }), /^TypeError: HttpClient: option 'timeoutMs' expects number, got '5' \(a string\)$/],
    [() => new HttpClient({ url, timeoutMs: -1 }), /^TypeError: HttpClient: option 'timeoutMs' expects number to be >0, got -1$/],
    [() => new HttpClient({ url, retry: { tries: 'x' as never } }), /^TypeError: HttpClient: option 'retry\.tries' expects number, got 'x' \(a string\)$/],
    [() => new HttpClient({ url, token: 5 as never }), /^TypeError: HttpClient: option 'token' expects string, got 5$/],
    [() => new HttpClient({ url, tls: { ca: 5 as never } }), /^TypeError: HttpClient: option 'tls\.ca' /],
    [() => new HttpClient({ url: 'ftp://host' }), /^TypeError: HttpClient: option 'url': expects http:\/\/host:port or https:\/\/host:port, got 'ftp:\/\/host'$/],
    [() => new HttpClient({ url, retry: { trys: 2 } as never }), /^TypeError: HttpClient: unknown option 'retry\.trys' \(known: firstDelayMs, maxDelayMs, tries; did you mean 'retry\.tries'\?\)$/],
    [() => new GrpcClient({ address, timeoutMs: '5' as never }), /^TypeError: GrpcClient: option 'timeoutMs' expects number, got '5' \(a string\)$/],
    [() => new GrpcClient({ address, retry: { maxDelayMs: -1 } }), /^TypeError: GrpcClient: option 'retry\.maxDelayMs' expects number to be >=0, got -1$/],
    [() => new GrpcClient({ address, token: 5 as never }), /^TypeError: GrpcClient: option 'token' expects string, got 5$/],
    [() => new GrpcClient({ address, tls: { kee: 'k' } as never }), /^TypeError: GrpcClient: unknown option 'tls\.kee' \(known: ca, cert, key; did you mean 'tls\.key'\?\)$/],
  ];
  for (const [construct, message] of refused) assert.throws(construct, (error: Error) => error instanceof OptionError && message.test(String(error)), String(message));
  // What the README shows still passes, the defaults filled in.
  new HttpClient({ url, token: 't', retry: { tries: 1, firstDelayMs: 0, maxDelayMs: 10 }, timeoutMs: 500 }).close();
  new GrpcClient({ address, token: 't', tls: {}, retry: { tries: 2 }, timeoutMs: 500, compression: 'gzip' }).close();
});

test("a wrong value inside a nested option that may be false or an object is told at its own path, and an object's kind with its article", async () => {
  const backends = [doublerBackend()];
  await assert.rejects(
    createServer({ modelRepository: 'models', logger, monitoring: { window: 'five' } } as never),
    /^TypeError: Server: option 'monitoring\.window' expects object, got 'five' \(a string\)$/,
  );
  assert.throws(
    () => new Server({ modelRepository: 'models', logger, backends, monitoring: { evaluateEvery: 'five' } } as never),
    /^TypeError: Server: option 'monitoring\.evaluateEvery' expects number, got 'five' \(a string\)$/,
  );
  assert.throws(
    () => new Server({ modelRepository: 'models', logger, backends, monitoring: { window: { capacity: -1 } } }),
    /^TypeError: Server: option 'monitoring\.window\.capacity' expects number to be >=1, got -1$/,
  );
  // A value that is no object is still told against the whole union.
  assert.throws(() => new Server({ modelRepository: 'models', logger, backends, monitoring: 'off' } as never), /^TypeError: Server: option 'monitoring' is invalid: Invalid input, got 'off' \(a string\)$/);
  assert.throws(() => new Server({ modelRepository: {} as never, logger, backends }), /^TypeError: Server: option 'modelRepository' expects string \(a folder\) or an array of them, got an Object$/);
});

test('a logger that is not a pino Logger is refused when the server is made, not when a front end first calls logger.child', async () => {
  const backends = [doublerBackend()];
  const expects = /^TypeError: Server: option 'logger' expects a pino Logger \(with child, info, warn, error, debug functions\), got /;
  assert.throws(() => new Server({ modelRepository: 'models', logger: { info() {}, warn() {}, error() {} } as never, backends }), (error: Error) => error instanceof OptionError && expects.test(String(error)));
  assert.throws(() => new Server({ modelRepository: 'models', logger: console as never, backends }), expects);
  await assert.rejects(createServer({ modelRepository: 'models', logger: {} as never, backends }), new RegExp(`${expects.source}an Object$`));
  // A pino logger, and its child, pass.
  new Server({ modelRepository: 'models', logger: logger.child({ component: 'test' }), backends });
});

test("the batch-job functions refuse a misspelt option before touching the input, the output or Redis", async () => {
  const job = { model: 'fashion_mnist', input: 'nowhere', output: 'nowhere.jsonl' };
  await assert.rejects(runLocalBatchJob({ ...job, concurency: 8 } as never), /^TypeError: runLocalBatchJob: unknown option 'concurency' \(known: .*\bconcurrency\b.*\bpassThrough\b.*\)$/);
  await assert.rejects(
    runDistributedBatchJob({ ...job, queue: 'redis://127.0.0.1:1', chunksize: 8 } as never),
    /^TypeError: runDistributedBatchJob: unknown option 'chunksize' \(known: .*\bchunkSize\b.*\)$/,
  );
  await assert.rejects(runDistributedBatchJob({ ...job, queue: 'redis://127.0.0.1:1', attempts: 0 }), /^TypeError: runDistributedBatchJob: option 'attempts' expects number to be >0, got 0$/);
  await assert.rejects(startBatchWorker({ queue: 'redis://127.0.0.1:1', concurrrency: 2 } as never), /^TypeError: startBatchWorker: unknown option 'concurrrency' \(known: .*\bconcurrency\b.*\brecordConcurrency\b.*\)$/);
  await assert.rejects(batchJobStatus({ queue: 'redis://127.0.0.1:1', job: 'j', queue_name: 'q' } as never), /^TypeError: batchJobStatus: unknown option 'queue_name' \(known: job, queue, queueName; did you mean 'queueName'\?\)$/);
  await assert.rejects(cancelBatchJob({ queue: 'redis://127.0.0.1:1', jobs: 'j' } as never), /^TypeError: cancelBatchJob: unknown option 'jobs' \(known: job, queue, queueName; did you mean 'job'\?\)$/);
  await assert.rejects(batchJobList({ queue: 'redis://127.0.0.1:1', limt: 5 } as never), /^TypeError: batchJobList: unknown option 'limt' \(known: limit, queue, queueName; did you mean 'limit'\?\)$/);
});

test("a Server made without a logger writes nothing to its program's stdout: warnings and errors go to stderr", async () => {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-library-logger-'));
  try {
    await mkdir(join(repository, 'my model'));
    const script = `
      import { createServer } from ${JSON.stringify(new URL('../src/index.ts', import.meta.url).pathname)};
      const server = await createServer({ modelRepository: ${JSON.stringify(repository)} });
      await server.start();
      await server.close();
      process.stdout.write('done');`;
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (error, out, err) => (error ? reject(Object.assign(error, { stderr: err })) : resolve({ stdout: out, stderr: err }))),
    );
    assert.equal(stdout, 'done', 'only the program itself writes to stdout');
    assert.match(stderr, /"level":"warn".*the folder 'my model' in the model repository is not served/, 'levels by name, as collectors read them');
    assert.doesNotMatch(stderr, /"level":"info"/, 'no info lines');
  } finally {
    await rm(repository, { recursive: true, force: true });
  }
});

test("the front ends', tracing's, shared memory's, monitoring's and the bundled repository's refusals name the option a library caller set; a server the CLI starts, serve's flags", async (t) => {
  const repository = await fakeRepository(t, { m: undefined });
  const refusals = async (names: { server?: SettingName; http?: SettingName; grpc?: SettingName } = {}) => {
    const server = await new Server({ modelRepository: repository, logger, backends: [doublerBackend()], settingName: names.server }).start();
    t.after(() => server.close());
    const http = createHttpFrontEnd(server, { maxBodyBytes: 64, settingName: names.http });
    const url = await http.listen({ host: '127.0.0.1', port: 0 });
    const body = await (await fetch(`${url}/v2/models/m/infer`, { method: 'POST', body: ' '.repeat(65), headers: { 'content-type': 'application/json' } })).json();
    const grpc = createGrpcFrontEnd(server, { maxSendMessageBytes: 16, settingName: names.grpc });
    const client = new GrpcClient({ address: `127.0.0.1:${await grpc.listen('127.0.0.1', 0)}`, retry: { tries: 1 } });
    t.after(() => client.close());
    const send = await client.infer('m', { INPUT0: { datatype: 'FP32', shape: [1, 4], data: new Float32Array(4) } }).catch((error: Error) => error.message);
    const refusalOf = (call: () => unknown) => {
      try {
        call();
      } catch (error) {
        return (error as Error).message;
      }
    };
    const trace = refusalOf(() => server.updateTraceSetting({ trace_level: ['TIMESTAMPS'] }));
    const traceFile = refusalOf(() => server.updateTraceSetting({ trace_file: '/tmp/x' }))?.replace(/^.*; Nereid exports spans over OTLP /, '');
    const cuda = ((await (await fetch(`${url}/v2/cudasharedmemory/status`)).json()) as { error: string }).error;
    const monitor = refusalOf(() => new Server({ modelRepository: repository, logger, backends: [doublerBackend()], settingName: names.server, monitoring: { window: { capacity: 300 }, evaluateEvery: 400 } }));
    return { body: (body as { error: string }).error, send: String(send).replace(/\d+ bytes/, 'N bytes'), trace, traceFile, cuda, monitor };
  };
  assert.deepEqual(await refusals(), {
    body: 'request body is larger than the limit of 64 bytes (maxBodyBytes)',
    send: 'RESOURCE_EXHAUSTED: the answer is larger than max: N bytes vs. the 16-byte limit on a sent message (maxSendMessageBytes)',
    trace: "tracing cannot be turned on: the server was started without a trace exporter; start it with a Tracing's settings (traceSettings: tracing.settings, with tracing.observer in observers)",
    traceFile: "(a Tracing that sends them to your collector (new Tracing({ exporter: 'otlp', endpoint: <url> })))",
    cuda: 'CUDA shared memory is not supported by Nereid; use system shared memory (allowClientShm: true) or send tensors in the request',
    monitor:
      'Server: evaluating every 400 rows (monitoring.evaluateEvery) is more than the 300-row drift window (monitoring.window.capacity) holds: rows would leave the window without ever being judged; give at most 300',
  });
  assert.deepEqual(await refusals({ server: serveFlagName, http: httpFlagName, grpc: grpcFlagName }), {
    body: 'request body is larger than the limit of 64 bytes (--http-max-body-bytes)',
    send: 'RESOURCE_EXHAUSTED: the answer is larger than max: N bytes vs. the 16-byte limit on a sent message (--grpc-max-message-bytes)',
    trace: 'tracing cannot be turned on: the server was started without a trace exporter; start it with --trace-exporter otlp',
    traceFile: '(--trace-exporter otlp --trace-endpoint <url>)',
    cuda: 'CUDA shared memory is not supported by Nereid; use system shared memory (--allow-client-shm) or send tensors in the request',
    monitor:
      'Server: evaluating every 400 rows (--monitor-evaluate-every) is more than the 300-row drift window (--monitor-window) holds: rows would leave the window without ever being judged; give at most 300',
  });
  // A Tracing's own settings (tracing is on): trace_file names how spans leave, as its maker named its options.
  const exporter = { export: () => undefined, shutdown: () => Promise.resolve() } as never;
  assert.throws(() => new Tracing({ exporter, processor: 'simple' }).settings.update({ trace_file: '/tmp/x' }), /over OTLP \(a Tracing that sends them to your collector \(new Tracing\(\{ exporter: 'otlp', endpoint: <url> \}\)\)\)$/);
  assert.throws(() => new Tracing({ exporter, processor: 'simple', settingName: serveFlagName }).settings.update({ trace_file: '/tmp/x' }), /over OTLP \(--trace-exporter otlp --trace-endpoint <url>\)$/);
  // The bundled repository that cannot be prepared (a package installed by another user) names the option to serve another.
  assert.match(unpreparedRepositoryMessage('EACCES', optionKeyName), /or serve a repository of your own with modelRepository: 'DIR'$/);
  assert.match(unpreparedRepositoryMessage('EACCES', serveFlagName), /or serve a repository of your own with --model-repository DIR$/);
});
