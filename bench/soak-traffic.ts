/**
 * The requests the soak test sends: valid inference (V2 JSON, binary, gRPC) on `simple` and the OCR
 * recogniser with every answer checked, and hostile traffic (malformed, oversized, nested, wrongly
 * authorised, compressed bombs, stalled uploads, undecodable protobuf). Each send resolves to an
 * Outcome whatever happens; judging it is the caller's business (by the kind's role).
 */
import { createConnection } from 'node:net';
import { deflateSync, gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { ctcGreedyDecode, decodeInferResponse, encodeBinaryInferRequest, float32View, type Fp32Tensor } from '../test/support/ocr.js';
import type { Outcome, Role } from './soak-tally.js';

export const OCR_MODEL = 'ocr_recognition';
export const OCR_INPUT = 'x';
export const OCR_OUTPUT = 'softmax_11.tmp_0';
export const OCR_CLASSES = 6625;
const SIMPLE_WIDTH = 16;
/** Client-side string length of the "huge strings" requests. */
const HUGE = 100_000;
/** Nesting depth of the "deeply nested JSON" requests. */
const DEEP = 100_000;

export interface SoakEndpoints {
  /** http://127.0.0.1:PORT */
  http: string;
  /** 127.0.0.1:PORT */
  grpc: string;
  metrics: string;
  tokens: { inference: string; management: string; metrics: string };
  requestTimeoutMs: number;
  /** How long a stalled client waits for the server to cut it off before counting a 'timeout'. */
  slowClientWaitMs: number;
  maxBodyBytes: number;
}

export interface OcrFixture {
  tensor: Fp32Tensor;
  binary: { body: Buffer; headerLength: number };
  json: Buffer;
  grpc: Buffer;
}

export interface SimpleFixture {
  a: Int32Array;
  b: Int32Array;
  json: Buffer;
  binary: { body: Buffer; headerLength: number };
  grpc: Buffer;
}

export interface TrafficKind {
  name: string;
  role: Role;
  /** Mean requests per second (Poisson arrivals), before --rate-scale. */
  rate: number;
  /** Requests of this kind in flight at most; an arrival beyond is counted 'skipped'. */
  maxInFlight: number;
  send(): Promise<Outcome>;
}

const { Client: InferenceClient } = loadInferenceProto();
const MODEL_INFER = InferenceClient.service.ModelInfer;
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc.use_local_subchannel_pool': 1,
};

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)];
const elapsed = (started: number) => performance.now() - started;

// ---------------------------------------------------------------------------------------------
// Fixtures: every valid body is built once, so the client spends its CPU on sending, not encoding.

function int32Bytes(values: Int32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

export function simpleFixtures(count: number): SimpleFixture[] {
  return Array.from({ length: count }, () => {
    const a = Int32Array.from({ length: SIMPLE_WIDTH }, () => Math.floor(Math.random() * 1000));
    const b = Int32Array.from({ length: SIMPLE_WIDTH }, () => Math.floor(Math.random() * 1000));
    const inputs = [
      { name: 'INPUT0', values: a },
      { name: 'INPUT1', values: b },
    ];
    return {
      a,
      b,
      json: Buffer.from(JSON.stringify({ inputs: inputs.map(({ name, values }) => ({ name, datatype: 'INT32', shape: [1, SIMPLE_WIDTH], data: Array.from(values) })) })),
      binary: encodeBinaryInferRequest(
        inputs.map(({ name, values }) => ({ name, datatype: 'INT32', shape: [1, SIMPLE_WIDTH], bytes: int32Bytes(values) })),
        ['OUTPUT0', 'OUTPUT1'].map((name) => ({ name, parameters: { binary_data: true } })),
      ),
      grpc: MODEL_INFER.requestSerialize({
        model_name: 'simple',
        inputs: inputs.map(({ name }) => ({ name, datatype: 'INT32', shape: [1, SIMPLE_WIDTH] })),
        raw_input_contents: inputs.map(({ values }) => int32Bytes(values)),
      }),
    };
  });
}

export function ocrFixture(tensor: Fp32Tensor): OcrFixture {
  const bytes = Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  const binaryOutput = [{ name: OCR_OUTPUT, parameters: { binary_data: true } }];
  return {
    tensor,
    binary: encodeBinaryInferRequest([{ name: OCR_INPUT, datatype: 'FP32', shape: tensor.shape, bytes }], binaryOutput),
    // A JSON request whose answer comes back binary, as Triton's clients ask for large outputs.
    json: Buffer.from(JSON.stringify({ inputs: [{ name: OCR_INPUT, datatype: 'FP32', shape: tensor.shape, data: Array.from(tensor.data) }], outputs: binaryOutput })),
    grpc: MODEL_INFER.requestSerialize({
      model_name: OCR_MODEL,
      inputs: [{ name: OCR_INPUT, datatype: 'FP32', shape: tensor.shape }],
      raw_input_contents: [bytes],
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Transport: one HTTP request or gRPC call, never throwing.

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface HttpRequest {
  method?: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

function errorText(error: unknown): string {
  const { code, message } = error as { code?: string; message?: string };
  return `${code ?? (error as Error).name ?? 'error'}: ${message ?? String(error)}`;
}

export async function httpCall(agent: Agent, origin: string, req: HttpRequest, timeoutMs: number): Promise<HttpAnswer | { cls: 'reset' | 'timeout'; detail: string }> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await request(`${origin}${req.path}`, {
      dispatcher: agent,
      method: req.method ?? 'POST',
      headers: req.headers,
      body: req.body,
      signal,
      headersTimeout: timeoutMs + 1000,
      bodyTimeout: timeoutMs + 1000,
    });
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status: response.statusCode, headers: response.headers, body };
  } catch (error) {
    const timedOut = signal.aborted || TIMEOUT_CODES.has((error as { code?: string }).code ?? '');
    return { cls: timedOut ? 'timeout' : 'reset', detail: errorText(error) };
  }
}

type GrpcResult = { answer: Buffer } | { cls: string; detail: string };

/** Client-side signs that the connection, not the server's handler, ended the call. */
const GRPC_TRANSPORT_FAILURE = /Connection dropped|No connection established|ECONNRESET|ECONNREFUSED|RST_STREAM|Socket closed|GOAWAY|EPIPE|Stream refused|failed to connect/i;

function grpcCall(client: grpc.Client, bytes: Buffer, token: string | undefined, timeoutMs: number): Promise<GrpcResult> {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      MODEL_INFER.path,
      (message) => message,
      (answer) => answer,
      bytes,
      metadata,
      { deadline: Date.now() + timeoutMs },
      (error, answer) => {
        if (!error) return resolve({ answer: answer! });
        const details = error.details ?? error.message;
        if (error.code === grpc.status.DEADLINE_EXCEEDED) return resolve({ cls: 'timeout', detail: details });
        if (error.code === grpc.status.CANCELLED || (error.code !== grpc.status.INVALID_ARGUMENT && GRPC_TRANSPORT_FAILURE.test(details))) {
          return resolve({ cls: 'reset', detail: `${grpc.status[error.code]}: ${details}` });
        }
        resolve({ cls: grpc.status[error.code] ?? String(error.code), detail: details });
      },
    );
  });
}

export function openGrpcChannel(target: string): grpc.Client {
  return new grpc.Client(target, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

/** An HTTP answer as an Outcome; a 200 goes through `check`, whose complaint makes it a wrong answer. */
function httpOutcome(result: Awaited<ReturnType<typeof httpCall>>, started: number, variant: string | undefined, check?: (answer: HttpAnswer) => string | undefined): Outcome {
  const latencyMs = elapsed(started);
  if ('cls' in result) return { cls: result.cls, latencyMs, variant, detail: result.detail };
  if (result.status === 200 && check) {
    let problem: string | undefined;
    try {
      problem = check(result);
    } catch (error) {
      problem = (error as Error).message;
    }
    if (problem) return { cls: 'wrong-answer', latencyMs, variant, detail: problem };
  }
  return { cls: String(result.status), latencyMs, variant, detail: result.status === 200 ? undefined : result.body.subarray(0, 400).toString('utf8') };
}

function grpcOutcome(result: GrpcResult, started: number, variant: string | undefined, check?: (answer: Buffer) => string | undefined): Outcome {
  const latencyMs = elapsed(started);
  if (!('answer' in result)) return { cls: result.cls, latencyMs, variant, detail: result.detail };
  let problem: string | undefined;
  try {
    problem = check?.(result.answer);
  } catch (error) {
    problem = (error as Error).message;
  }
  return problem ? { cls: 'wrong-answer', latencyMs, variant, detail: problem } : { cls: 'OK', latencyMs, variant };
}

// ---------------------------------------------------------------------------------------------
// Answer checks.

interface GrpcAnswer {
  model_name: string;
  outputs: { name: string; datatype: string; shape: string[] }[];
  raw_output_contents: Buffer[];
}

function int32Of(bytes: Buffer): Int32Array {
  return new Int32Array(Uint8Array.from(bytes).buffer);
}

function checkSimple(fixture: SimpleFixture, out0: ArrayLike<number> | undefined, out1: ArrayLike<number> | undefined): string | undefined {
  if (!out0 || !out1) return 'OUTPUT0 or OUTPUT1 missing';
  for (let i = 0; i < SIMPLE_WIDTH; i++) {
    if (out0[i] !== fixture.a[i] + fixture.b[i] || out1[i] !== fixture.a[i] - fixture.b[i]) {
      return `element ${i}: got ${out0[i]}, ${out1[i]}; expected ${fixture.a[i] + fixture.b[i]}, ${fixture.b[i] === undefined ? '?' : fixture.a[i] - fixture.b[i]}`;
    }
  }
  return undefined;
}

/**
 * The recogniser's answers are read as text (greedy CTC); the first answer for an input is the
 * reference every later one must equal, so a cache or batching mix-up shows as a wrong answer.
 */
export class OcrChecker {
  private readonly reference = new Map<number, string>();

  constructor(private readonly labels: readonly string[]) {
    if (labels.length !== OCR_CLASSES) throw new Error(`the recogniser's labels have ${labels.length} entries, expected ${OCR_CLASSES}`);
  }

  check(index: number, shape: readonly (number | string)[], bytes: Buffer | undefined): string | undefined {
    if (!bytes) return `output '${OCR_OUTPUT}' missing`;
    const dims = shape.map(Number);
    if (dims.length !== 3 || dims[0] !== 1 || dims[2] !== OCR_CLASSES) return `output shape [${dims}] is not [1, steps, ${OCR_CLASSES}]`;
    const text = ctcGreedyDecode(float32View(bytes), dims[1], OCR_CLASSES, this.labels);
    const expected = this.reference.get(index);
    if (expected === undefined) this.reference.set(index, text);
    else if (text !== expected) return `input ${index} read as '${text}', earlier as '${expected}'`;
    return undefined;
  }

  get references(): ReadonlyMap<number, string> {
    return this.reference;
  }
}

// ---------------------------------------------------------------------------------------------
// Valid inference.

export interface ValidSenders {
  httpJsonSimple(): Promise<Outcome>;
  httpBinarySimple(): Promise<Outcome>;
  grpcSimple(): Promise<Outcome>;
  httpJsonOcr(): Promise<Outcome>;
  httpBinaryOcr(): Promise<Outcome>;
  grpcOcr(): Promise<Outcome>;
}

export interface ValidFixtures {
  simple: SimpleFixture[];
  ocr: OcrFixture[];
  ocrChecker: OcrChecker;
}

/** Senders of valid requests over the given HTTP agent and gRPC channel. */
export function validSenders(endpoints: SoakEndpoints, agent: Agent, channel: grpc.Client, fixtures: ValidFixtures): ValidSenders {
  const auth = { authorization: `Bearer ${endpoints.tokens.inference}` };
  const timeout = endpoints.requestTimeoutMs;
  const binaryHeaders = (headerLength: number) => ({ ...auth, 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) });
  const pickIndex = (length: number) => Math.floor(Math.random() * length);
  const decodeGrpc = (answer: Buffer) => MODEL_INFER.responseDeserialize(answer) as GrpcAnswer;
  const grpcTensor = (answer: GrpcAnswer, name: string) => {
    const index = answer.outputs.findIndex((output) => output.name === name);
    return index < 0 ? undefined : { shape: answer.outputs[index].shape, bytes: answer.raw_output_contents[index] };
  };

  return {
    async httpJsonSimple() {
      const fixture = pick(fixtures.simple);
      const started = performance.now();
      const result = await httpCall(agent, endpoints.http, { path: '/v2/models/simple/infer', headers: { ...auth, 'content-type': 'application/json' }, body: fixture.json }, timeout);
      return httpOutcome(result, started, undefined, (answer) => {
        const outputs = (JSON.parse(answer.body.toString('utf8')) as { outputs: { name: string; data: number[] }[] }).outputs;
        return checkSimple(fixture, outputs.find((o) => o.name === 'OUTPUT0')?.data, outputs.find((o) => o.name === 'OUTPUT1')?.data);
      });
    },
    async httpBinarySimple() {
      const fixture = pick(fixtures.simple);
      const started = performance.now();
      const result = await httpCall(agent, endpoints.http, { path: '/v2/models/simple/infer', headers: binaryHeaders(fixture.binary.headerLength), body: fixture.binary.body }, timeout);
      return httpOutcome(result, started, undefined, (answer) => {
        const decoded = decodeInferResponse(answer.body, headerOf(answer, 'inference-header-content-length'));
        const bytes = (name: string) => decoded.outputs.find((o) => o.name === name)?.bytes;
        const [out0, out1] = [bytes('OUTPUT0'), bytes('OUTPUT1')];
        return checkSimple(fixture, out0 && int32Of(out0), out1 && int32Of(out1));
      });
    },
    async grpcSimple() {
      const fixture = pick(fixtures.simple);
      const started = performance.now();
      const result = await grpcCall(channel, fixture.grpc, endpoints.tokens.inference, timeout);
      return grpcOutcome(result, started, undefined, (bytes) => {
        const answer = decodeGrpc(bytes);
        const [out0, out1] = [grpcTensor(answer, 'OUTPUT0'), grpcTensor(answer, 'OUTPUT1')];
        return checkSimple(fixture, out0 && int32Of(out0.bytes), out1 && int32Of(out1.bytes));
      });
    },
    async httpJsonOcr() {
      const index = pickIndex(fixtures.ocr.length);
      const started = performance.now();
      const result = await httpCall(agent, endpoints.http, { path: `/v2/models/${OCR_MODEL}/infer`, headers: { ...auth, 'content-type': 'application/json' }, body: fixtures.ocr[index].json }, timeout);
      return httpOutcome(result, started, undefined, (answer) => checkOcrHttp(fixtures.ocrChecker, index, answer));
    },
    async httpBinaryOcr() {
      const index = pickIndex(fixtures.ocr.length);
      const { body, headerLength } = fixtures.ocr[index].binary;
      const started = performance.now();
      const result = await httpCall(agent, endpoints.http, { path: `/v2/models/${OCR_MODEL}/infer`, headers: binaryHeaders(headerLength), body }, timeout);
      return httpOutcome(result, started, undefined, (answer) => checkOcrHttp(fixtures.ocrChecker, index, answer));
    },
    async grpcOcr() {
      const index = pickIndex(fixtures.ocr.length);
      const started = performance.now();
      const result = await grpcCall(channel, fixtures.ocr[index].grpc, endpoints.tokens.inference, timeout);
      return grpcOutcome(result, started, undefined, (bytes) => {
        const output = grpcTensor(decodeGrpc(bytes), OCR_OUTPUT);
        return fixtures.ocrChecker.check(index, output?.shape ?? [], output?.bytes);
      });
    },
  };
}

function headerOf(answer: HttpAnswer, name: string): string | null {
  const value = answer.headers[name];
  return Array.isArray(value) ? value[0] : (value ?? null);
}

function checkOcrHttp(checker: OcrChecker, index: number, answer: HttpAnswer): string | undefined {
  const decoded = decodeInferResponse(answer.body, headerOf(answer, 'inference-header-content-length'));
  const output = decoded.outputs.find((o) => o.name === OCR_OUTPUT);
  return checker.check(index, output?.shape ?? [], output?.bytes);
}

// ---------------------------------------------------------------------------------------------
// Service traffic: health probes and reloads through the repository API.

export function healthProbe(endpoints: SoakEndpoints, agent: Agent): () => Promise<Outcome> {
  return async () => {
    const started = performance.now();
    return httpOutcome(await httpCall(agent, endpoints.http, { method: 'GET', path: '/v2/health/live' }, endpoints.requestTimeoutMs), started, undefined);
  };
}

/** POST /v2/repository/models/<model>/load, with `config` (a whole model config) as the override when given. */
export async function loadModel(endpoints: SoakEndpoints, agent: Agent, model: string, config?: object): Promise<Outcome> {
  const body = JSON.stringify(config ? { parameters: { config: JSON.stringify(config) } } : {});
  const started = performance.now();
  const result = await httpCall(
    agent,
    endpoints.http,
    { path: `/v2/repository/models/${model}/load`, headers: { authorization: `Bearer ${endpoints.tokens.management}`, 'content-type': 'application/json' }, body },
    // A reload may wait for the requests the old version accepted.
    Math.max(endpoints.requestTimeoutMs, 60_000),
  );
  return httpOutcome(result, started, config ? `${model}+override` : model);
}

// ---------------------------------------------------------------------------------------------
// Hostile traffic. Each kind picks one of its variants per request.

interface Variant {
  name: string;
  send(): Promise<Outcome>;
}

function variantsOf(variants: readonly Variant[]): () => Promise<Outcome> {
  return () => pick(variants).send();
}

export interface HostileFixtures {
  simple: SimpleFixture;
  gzipBomb: Buffer;
  deflateBomb: Buffer;
}

/** Bodies that inflate to `bytes` + 1 MiB of zeros: past the body limit by a margin, about 0.1% of that on the wire. */
export function compressionBombs(bytes: number): { gzipBomb: Buffer; deflateBomb: Buffer } {
  const zeros = Buffer.alloc(bytes + 1024 * 1024);
  return { gzipBomb: gzipSync(zeros, { level: 9 }), deflateBomb: deflateSync(zeros, { level: 9 }) };
}

const nested = (inner: string) => `${'['.repeat(DEEP)}${inner}${']'.repeat(DEEP)}`;

/** The hostile kinds; `agent` and `channel` are theirs alone, so what they do to a connection stays off the valid traffic. */
export function hostileKinds(endpoints: SoakEndpoints, agent: Agent, channel: grpc.Client, fixtures: HostileFixtures): TrafficKind[] {
  const { inference, management } = endpoints.tokens;
  const auth = { authorization: `Bearer ${inference}` };
  const jsonHeaders = { ...auth, 'content-type': 'application/json' };
  const timeout = endpoints.requestTimeoutMs;
  const simpleData = Array.from(fixtures.simple.a);

  const http = (name: string, req: HttpRequest): Variant => ({
    name,
    async send() {
      const started = performance.now();
      return httpOutcome(await httpCall(agent, endpoints.http, req, timeout), started, name);
    },
  });
  const inferJson = (name: string, body: string | Buffer, model = 'simple', headers: Record<string, string> = jsonHeaders) =>
    http(name, { path: `/v2/models/${model}/infer`, headers, body });
  const simpleInput = (name: string, overrides: Record<string, unknown> = {}) => ({ name, datatype: 'INT32', shape: [1, SIMPLE_WIDTH], data: simpleData, ...overrides });
  const simpleBody = (input0: Record<string, unknown> = {}, input1: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ ...extra, inputs: [simpleInput('INPUT0', input0), simpleInput('INPUT1', input1)] });
  const ocrBody = (shape: number[], datatype = 'FP32') =>
    JSON.stringify({ inputs: [{ name: OCR_INPUT, datatype, shape, data: new Array(shape.reduce((a, b) => a * b, 1)).fill(0) }] });
  const binaryHeaders = (headerLength: string) => ({ ...auth, 'content-type': 'application/octet-stream', 'inference-header-content-length': headerLength });
  const simpleBinary = fixtures.simple.binary;

  // null sends no authorization metadata (an explicit undefined would take the default).
  const grpcVariant = (name: string, bytes: Buffer, token: string | null = inference): Variant => ({
    name,
    async send() {
      const started = performance.now();
      return grpcOutcome(await grpcCall(channel, bytes, token ?? undefined, timeout), started, name);
    },
  });
  const grpcInfer = (message: Record<string, unknown>) => MODEL_INFER.requestSerialize(message);
  const grpcSimple = (inputs: Record<string, unknown>[], raw: Buffer[], model = 'simple') => grpcInfer({ model_name: model, inputs, raw_input_contents: raw });
  const int32Input = (name: string, shape = [1, SIMPLE_WIDTH]) => ({ name, datatype: 'INT32', shape });
  const rawA = int32Bytes(fixtures.simple.a);

  const load = (name: string, model: string, body: string, token = management) =>
    http(name, { path: `/v2/repository/models/${model}/load`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });

  const kind = (name: string, rate: number, maxInFlight: number, variants: Variant[]): TrafficKind => ({ name, role: 'invalid', rate, maxInFlight, send: variantsOf(variants) });

  return [
    kind('malformed-json', 1, 8, [
      inferJson('truncated', '{"inputs": ['),
      inferJson('not-json', 'this is not JSON at all'),
      inferJson('inputs-not-array', '{"inputs": "nope"}'),
      inferJson('array-body', '[]'),
      inferJson('empty-body', ''),
      inferJson('truncated-data', simpleBody().slice(0, -20)),
      inferJson('invalid-utf8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])),
      inferJson('trailing-garbage', `${simpleBody()}}}}`),
      inferJson('null-input', '{"inputs": [null, null]}'),
    ]),
    kind('wrong-shape-type', 1, 8, [
      inferJson('shape-15', simpleBody({ shape: [1, 15], data: simpleData.slice(0, 15) }, { shape: [1, 15], data: simpleData.slice(0, 15) })),
      inferJson('data-shorter-than-shape', simpleBody({ data: simpleData.slice(0, 15) })),
      inferJson('fp32-for-int32', simpleBody({ datatype: 'FP32' })),
      inferJson('unknown-datatype', simpleBody({ datatype: 'NOPE' })),
      inferJson('missing-input', JSON.stringify({ inputs: [simpleInput('INPUT0')] })),
      inferJson('unknown-input', simpleBody({ name: 'INPUT9' })),
      inferJson('negative-dim', simpleBody({ shape: [-1, SIMPLE_WIDTH] })),
      inferJson('huge-dim', simpleBody({ shape: [1e12, SIMPLE_WIDTH] })),
      inferJson('string-dim', simpleBody({ shape: ['a', SIMPLE_WIDTH] })),
      inferJson('strings-as-int32', simpleBody({ data: simpleData.map(String) })),
      inferJson('int32-overflow', simpleBody({ data: simpleData.map(() => 1e20) })),
      inferJson('batch-over-max', simpleBody({ shape: [9, SIMPLE_WIDTH], data: new Array(9 * SIMPLE_WIDTH).fill(1) }, { shape: [9, SIMPLE_WIDTH], data: new Array(9 * SIMPLE_WIDTH).fill(1) })),
      inferJson('ocr-one-channel', ocrBody([1, 1, 48, 100]), OCR_MODEL),
      inferJson('ocr-height-47', ocrBody([1, 3, 47, 100]), OCR_MODEL),
      inferJson('ocr-zero-width', ocrBody([1, 3, 48, 0]), OCR_MODEL),
      inferJson('ocr-fp64', ocrBody([1, 3, 48, 16], 'FP64'), OCR_MODEL),
      http('binary-size-mismatch', {
        path: '/v2/models/simple/infer',
        headers: binaryHeaders(String(simpleBinary.headerLength)),
        body: simpleBinary.body.subarray(0, simpleBinary.body.length - 8),
      }),
    ]),
    kind('unknown-model', 0.5, 8, [
      inferJson('no-such-model', simpleBody(), 'no_such_model'),
      inferJson('no-such-version', simpleBody(), 'simple/versions/99'),
      inferJson('non-numeric-version', simpleBody(), 'simple/versions/abc'),
      inferJson('dot-dot-escape', simpleBody(), '%2e%2e%2f%2e%2e%2fetc'),
      inferJson('nul-in-name', simpleBody(), 'simple%00'),
      http('metadata-no-such-model', { method: 'GET', path: '/v2/models/no_such_model', headers: auth }),
      http('no-such-route', { method: 'GET', path: '/v2/no/such/route', headers: auth }),
    ]),
    kind('huge-strings', 0.3, 4, [
      inferJson('model-name-in-url', simpleBody(), 'm'.repeat(HUGE)),
      inferJson('model-name-in-url-1k', simpleBody(), 'm'.repeat(1500)),
      inferJson('input-name', simpleBody({ name: 'i'.repeat(HUGE) })),
      inferJson('datatype', simpleBody({ datatype: 'D'.repeat(HUGE) })),
      inferJson('request-id', simpleBody({}, {}, { id: 'r'.repeat(HUGE) })),
      inferJson('output-name', simpleBody({}, {}, { outputs: [{ name: 'o'.repeat(HUGE) }] })),
      inferJson('parameter-value', simpleBody({}, {}, { parameters: { note: 'p'.repeat(HUGE) } })),
      inferJson('header-value', simpleBody(), 'simple', { ...jsonHeaders, 'x-request-id': 'h'.repeat(HUGE) }),
    ]),
    kind('deep-nesting', 0.3, 4, [
      inferJson('datatype', simpleBody({ datatype: 'NESTED' }).replace('"NESTED"', nested('"INT32"'))),
      inferJson('shape', simpleBody({ shape: 'NESTED' }).replace('"NESTED"', nested('1'))),
      inferJson('data', simpleBody({ data: 'NESTED' }).replace('"NESTED"', nested('1'))),
      inferJson('parameters', simpleBody({}, {}, { parameters: 'NESTED' }).replace('"NESTED"', nested('{}'))),
      inferJson('whole-body', nested('{}')),
      inferJson('objects', `${'{"a":'.repeat(DEEP)}1${'}'.repeat(DEEP)}`),
    ]),
    kind('bad-header-length', 0.5, 8, [
      ...['0xd2', '-1', '1e2', 'abc', '99999999999999999999', '12.0', ''].map((value) =>
        http(`value-${JSON.stringify(value)}`, { path: '/v2/models/simple/infer', headers: binaryHeaders(value), body: simpleBinary.body }),
      ),
      http('past-the-body', { path: '/v2/models/simple/infer', headers: binaryHeaders(String(simpleBinary.body.length + 10)), body: simpleBinary.body }),
      http('splits-the-json', { path: '/v2/models/simple/infer', headers: binaryHeaders('5'), body: simpleBinary.body }),
      http('zero', { path: '/v2/models/simple/infer', headers: binaryHeaders('0'), body: simpleBinary.body }),
    ]),
    kind('bad-auth', 1, 8, [
      inferJson('no-token', simpleBody(), 'simple', { 'content-type': 'application/json' }),
      inferJson('wrong-token', simpleBody(), 'simple', { authorization: 'Bearer not-the-token', 'content-type': 'application/json' }),
      inferJson('basic-scheme', simpleBody(), 'simple', { authorization: `Basic ${inference}`, 'content-type': 'application/json' }),
      inferJson('management-token-on-infer', simpleBody(), 'simple', { authorization: `Bearer ${management}`, 'content-type': 'application/json' }),
      inferJson('token-prefix', simpleBody(), 'simple', { authorization: `Bearer ${inference.slice(0, -1)}`, 'content-type': 'application/json' }),
      http('inference-token-on-index', { path: '/v2/repository/index', headers: jsonHeaders, body: '{}' }),
      load('inference-token-on-load', 'simple', '{}', inference),
      http('no-token-on-unload', { path: '/v2/repository/models/simple/unload', headers: { 'content-type': 'application/json' }, body: '{}' }),
      {
        name: 'metrics-without-token',
        async send() {
          const started = performance.now();
          return httpOutcome(await httpCall(agent, endpoints.metrics, { method: 'GET', path: '/metrics' }, timeout), started, 'metrics-without-token');
        },
      },
    ]),
    kind('bad-load', 0.1, 2, [
      load('unknown-model', 'no_such_model', '{}'),
      load('config-not-json', 'simple', JSON.stringify({ parameters: { config: '{not json' } })),
      load('config-too-many-threads', 'simple', JSON.stringify({ parameters: { config: JSON.stringify({ name: 'simple', parameters: { intra_op_thread_count: { string_value: '10000' } } }) } })),
      load('config-huge-queue-delay', 'simple', JSON.stringify({ parameters: { config: JSON.stringify({ name: 'simple', max_batch_size: 8, dynamic_batching: { max_queue_delay_microseconds: 1e15 } }) } })),
      load('config-other-model-file', 'simple', JSON.stringify({ parameters: { config: JSON.stringify({ name: 'simple', default_model_filename: '../../ocr_recognition/1/model.onnx' }) } })),
      load('file-upload', 'simple', JSON.stringify({ parameters: { 'file:1/model.onnx': 'AAAA' } })),
      load('nested-body', 'simple', nested('{}')),
      load('huge-model-name', 'n'.repeat(HUGE), '{}'),
    ]),
    kind('gzip-bomb', 0.1, 4, [
      inferJson('gzip', fixtures.gzipBomb, 'simple', { ...jsonHeaders, 'content-encoding': 'gzip' }),
      inferJson('deflate', fixtures.deflateBomb, 'simple', { ...jsonHeaders, 'content-encoding': 'deflate' }),
      inferJson('gzip-corrupt', Buffer.concat([fixtures.gzipBomb.subarray(0, 64), Buffer.alloc(64, 0xaa)]), 'simple', { ...jsonHeaders, 'content-encoding': 'gzip' }),
    ]),
    kind('grpc-invalid', 1, 8, [
      grpcVariant('undecodable-ff', Buffer.from([0xff])),
      grpcVariant('undecodable-length-past-end', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x61])),
      grpcVariant('undecodable-random', Buffer.from(Array.from({ length: 64 }, () => Math.floor(Math.random() * 256)))),
      grpcVariant('unknown-model', grpcSimple([int32Input('INPUT0'), int32Input('INPUT1')], [rawA, rawA], 'no_such_model')),
      grpcVariant('wrong-shape', grpcSimple([int32Input('INPUT0', [1, 15]), int32Input('INPUT1', [1, 15])], [rawA, rawA])),
      grpcVariant('raw-size-mismatch', grpcSimple([int32Input('INPUT0'), int32Input('INPUT1')], [rawA, rawA.subarray(4)])),
      grpcVariant('missing-input', grpcSimple([int32Input('INPUT0')], [rawA])),
      grpcVariant('fp32-for-int32', grpcSimple([{ ...int32Input('INPUT0'), datatype: 'FP32' }, int32Input('INPUT1')], [rawA, rawA])),
      grpcVariant('huge-model-name', grpcSimple([int32Input('INPUT0'), int32Input('INPUT1')], [rawA, rawA], 'm'.repeat(HUGE))),
      grpcVariant('huge-input-name', grpcSimple([int32Input('i'.repeat(HUGE)), int32Input('INPUT1')], [rawA, rawA])),
      grpcVariant('no-token', fixtures.simple.grpc, null),
      grpcVariant('wrong-token', fixtures.simple.grpc, 'not-the-token'),
      grpcVariant('management-token', fixtures.simple.grpc, management),
    ]),
    {
      name: 'slow-body',
      role: 'slow',
      rate: 0.1,
      maxInFlight: 16,
      send: variantsOf([
        { name: 'half-json-body', send: () => stalledRequest(endpoints, 'half-json-body', simpleBody(), Buffer.byteLength(simpleBody()) >> 1) },
        { name: 'half-binary-body', send: () => stalledRequest(endpoints, 'half-binary-body', simpleBinary.body, simpleBinary.body.length >> 1, String(simpleBinary.headerLength)) },
      ]),
    },
    {
      name: 'slow-headers',
      role: 'slow',
      rate: 0.05,
      maxInFlight: 8,
      send: () => stalledRequest(endpoints, 'half-headers', simpleBody(), 0, undefined, true),
    },
  ];
}

/**
 * Opens a raw connection, writes the request line and headers (all of them, or only half when
 * `stallInHeaders`) and `sentBytes` of the body, then stalls. The outcome is what the server did
 * first: an answer (its status), closing the connection ('cut-off'), or nothing until the client
 * gave up ('timeout').
 */
function stalledRequest(endpoints: SoakEndpoints, variant: string, body: string | Buffer, sentBytes: number, headerLength?: string, stallInHeaders = false): Promise<Outcome> {
  const url = new URL(endpoints.http);
  const bytes = Buffer.from(body);
  const head = [
    'POST /v2/models/simple/infer HTTP/1.1',
    `Host: ${url.host}`,
    `Authorization: Bearer ${endpoints.tokens.inference}`,
    `Content-Type: ${headerLength ? 'application/octet-stream' : 'application/json'}`,
    ...(headerLength ? [`Inference-Header-Content-Length: ${headerLength}`] : []),
    `Content-Length: ${bytes.length}`,
    '',
    '',
  ].join('\r\n');
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = createConnection({ host: url.hostname, port: Number(url.port) });
    let answer = '';
    let settled = false;
    let connected = false;
    const finish = (outcome: Omit<Outcome, 'latencyMs' | 'variant'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...outcome, latencyMs: elapsed(started), variant });
    };
    const timer = setTimeout(
      () => finish({ cls: 'timeout', detail: `the server neither answered nor closed the connection within ${endpoints.slowClientWaitMs / 1000} s` }),
      endpoints.slowClientWaitMs,
    );
    socket.once('connect', () => {
      connected = true;
      if (stallInHeaders) socket.write(head.slice(0, head.length >> 1));
      else socket.write(Buffer.concat([Buffer.from(head), bytes.subarray(0, sentBytes)]));
    });
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer);
      if (status) finish({ cls: status[1], detail: answer.slice(0, 300) });
      else if (answer.length > 64) finish({ cls: 'other', detail: `not an HTTP answer: ${answer.slice(0, 100)}` });
    });
    socket.once('end', () => finish({ cls: 'cut-off', detail: 'the server closed the connection' }));
    // Reset after connecting: the server cut the client off; refused: nobody listens (the server is gone).
    socket.once('error', (error) => finish({ cls: connected ? 'cut-off' : 'reset', detail: `connection ended: ${errorText(error)}` }));
  });
}
