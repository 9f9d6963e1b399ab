/**
 * Starts a real Nereid server for integration tests: a temporary Triton-layout model repository
 * filled with generated ONNX models, the Server core, and the V2 HTTP front end listening on an
 * ephemeral loopback port. Nothing is mocked; every request goes over real HTTP to ONNX Runtime.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import type { Datatype } from '../../src/core/datatype.js';
import { createHttpFrontEnd, type HttpFrontEndOptions } from '../../src/frontends/http/v2-http.js';
import type { OnnxElementType } from '../../src/onnx/onnx-model-builder.js';
import { addSubConfig, addSubModel, identityModel, scaleModel, writeModel } from '../../src/onnx/test-models.js';
import { createServer, type CreateServerOptions } from '../../src/server/create-server.js';
import type { Server } from '../../src/server/server.js';

export interface TestServerOptions {
  /** Fills the repository folder; defaults to `writeStandardModels`. Ignored when `repoDir` is given. */
  models?: (repoDir: string) => Promise<void>;
  /** Serve an existing repository instead of creating one (it is then left in place by close()). */
  repoDir?: string;
  /** Existing repositories served beside it (`--model-repository` repeated), left in place by close(). */
  moreRepoDirs?: readonly string[];
  /** Server options other than the repository. The logger is silent unless one is given. */
  server?: Omit<CreateServerOptions, 'modelRepository'>;
  /** Options of the HTTP front end (maxBodyBytes, authTokens, tls). */
  http?: HttpFrontEndOptions;
}

export interface TestServer {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:43121 (https when the front end has TLS) */
  url: string;
  server: Server;
  app: FastifyInstance;
  repoDir: string;
  close(): Promise<void>;
}

/** The V2 datatype each per-datatype identity model carries, keyed by model name. */
export const IDENTITY_MODELS: Readonly<Record<string, { datatype: Datatype; onnx: OnnxElementType }>> = {
  identity_bool: { datatype: 'BOOL', onnx: 'bool' },
  identity_uint8: { datatype: 'UINT8', onnx: 'uint8' },
  identity_uint16: { datatype: 'UINT16', onnx: 'uint16' },
  identity_uint32: { datatype: 'UINT32', onnx: 'uint32' },
  identity_uint64: { datatype: 'UINT64', onnx: 'uint64' },
  identity_int8: { datatype: 'INT8', onnx: 'int8' },
  identity_int16: { datatype: 'INT16', onnx: 'int16' },
  identity_int32: { datatype: 'INT32', onnx: 'int32' },
  identity_int64: { datatype: 'INT64', onnx: 'int64' },
  identity_fp16: { datatype: 'FP16', onnx: 'float16' },
  identity_fp32: { datatype: 'FP32', onnx: 'float32' },
  identity_fp64: { datatype: 'FP64', onnx: 'float64' },
  identity_bytes: { datatype: 'BYTES', onnx: 'string' },
};

/** Labels of the simple model's OUTPUT0, one per element of its 16-wide rows. */
export const SIMPLE_LABELS = Array.from({ length: 16 }, (_, index) => `label_${index}`);

/** Triton's "simple" example config, with a labels file on OUTPUT0 for classification. */
export const SIMPLE_CONFIG = addSubConfig('simple', { outputLabels: 'labels.txt' });

/** Models whose load must fail, so the repository reports them UNAVAILABLE with a reason. */
export const BROKEN_MODELS = ['broken', 'bad_config'] as const;

/**
 * The standard test repository:
 * - `simple`: Triton's add/sub INT32 model, config.pbtxt with max_batch_size 8 and labels on OUTPUT0;
 * - `fp32_identity`: FP32 identity without batching (config.pbtxt max_batch_size 0, dims completed from the model);
 * - `identity_<type>` for every V2 datatype, with no config at all (auto-completed, max_batch_size = default);
 * - `yaml_scale`: FP32 ×2 model configured by config.yaml (max_batch_size 2);
 * - `json_addsub`: add/sub INT32 configured by config.json (max_batch_size 3);
 * - `multi_all` / `multi_latest`: versions 1 (×2) and 2 (×3) with version_policy all / latest;
 * - `broken`: garbage bytes as model.onnx; `bad_config`: a valid model with an invalid config.pbtxt.
 */
export async function writeStandardModels(repoDir: string): Promise<void> {
  await writeModel(repoDir, 'simple', 1, addSubModel(), SIMPLE_CONFIG, { 'labels.txt': `${SIMPLE_LABELS.join('\n')}\n` });
  await writeModel(repoDir, 'fp32_identity', 1, identityModel('float32', [null]), 'max_batch_size: 0\n');
  for (const [name, { onnx }] of Object.entries(IDENTITY_MODELS)) {
    await writeModel(repoDir, name, 1, identityModel(onnx));
  }
  await writeModel(repoDir, 'yaml_scale', 1, scaleModel(2), undefined, {
    'config.yaml': [
      'name: yaml_scale',
      'backend: onnxruntime',
      'max_batch_size: 2',
      'input:',
      '  - name: INPUT0',
      '    data_type: TYPE_FP32',
      '    dims: [4]',
      'output:',
      '  - name: OUTPUT0',
      '    data_type: TYPE_FP32',
      '    dims: [4]',
      '',
    ].join('\n'),
  });
  await writeModel(repoDir, 'json_addsub', 1, addSubModel(), undefined, {
    'config.json': JSON.stringify({
      name: 'json_addsub',
      platform: 'onnxruntime_onnx',
      max_batch_size: '3', // uint64 fields are strings in Triton's JSON form
      input: [
        { name: 'INPUT0', data_type: 'TYPE_INT32', dims: ['16'] },
        { name: 'INPUT1', data_type: 'TYPE_INT32', dims: ['16'] },
      ],
    }),
  });
  for (const [name, policy] of [
    ['multi_all', 'version_policy: { all: {} }'],
    ['multi_latest', 'version_policy: { latest: { num_versions: 1 } }'],
  ] as const) {
    await writeModel(repoDir, name, 1, scaleModel(2), `max_batch_size: 4\n${policy}\n`);
    await writeModel(repoDir, name, 2, scaleModel(3));
  }
  await writeModel(repoDir, 'broken', 1, new TextEncoder().encode('this is not an ONNX model \u0000\u0001\u0002'));
  await writeModel(repoDir, 'bad_config', 1, addSubModel(), 'max_batch_size: 8\ninput [ { name: "INPUT0" data_type: TYPE_NOPE dims: [ 16 ] } ]\n');
}

/** A repository holding only the simple model. */
export async function writeSimpleModel(repoDir: string): Promise<void> {
  await writeModel(repoDir, 'simple', 1, addSubModel(), SIMPLE_CONFIG, { 'labels.txt': `${SIMPLE_LABELS.join('\n')}\n` });
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownsRepo = options.repoDir === undefined;
  const repoDir = options.repoDir ?? (await mkdtemp(join(tmpdir(), 'nereid-test-repo-')));
  let server: Server | undefined;
  let app: FastifyInstance | undefined;
  try {
    if (ownsRepo) await (options.models ?? writeStandardModels)(repoDir);
    server = await createServer({ logger: pino({ level: 'silent' }), ...options.server, modelRepository: options.moreRepoDirs ? [repoDir, ...options.moreRepoDirs] : repoDir });
    await server.start();
    app = createHttpFrontEnd(server, options.http);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('the HTTP front end did not bind a TCP port');
    const started = { server, app };
    let closed = false;
    return {
      url: `${options.http?.tls ? 'https' : 'http'}://127.0.0.1:${address.port}`,
      server,
      app,
      repoDir,
      async close() {
        if (closed) return;
        closed = true;
        await started.app.close();
        await started.server.close();
        if (ownsRepo) await rm(repoDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await app?.close().catch(() => undefined);
    await server?.close().catch(() => undefined);
    if (ownsRepo) await rm(repoDir, { recursive: true, force: true });
    throw error;
  }
}

/** Writes a JavaScript handler model: its config.pbtxt (`backend: "javascript"` added) and 1/model.mjs. */
export async function writeHandlerModel(repoDir: string, name: string, config: string, code: string): Promise<void> {
  await mkdir(join(repoDir, name, '1'), { recursive: true });
  await writeFile(join(repoDir, name, 'config.pbtxt'), `backend: "javascript"\n${config}`);
  await writeFile(join(repoDir, name, '1', 'model.mjs'), code);
}

/** Writes a file into the repository (e.g. to change a config before a reload). */
export async function writeRepositoryFile(repoDir: string, relativePath: string, contents: string | Uint8Array): Promise<void> {
  await writeFile(join(repoDir, relativePath), contents);
}

// ---------------------------------------------------------------------------------------------
// Wire helpers for Triton's binary tensor data extension.

/** Builds a body: the JSON header followed by the binary buffers, and the header length to send. */
export function binaryBody(header: unknown, buffers: readonly Uint8Array[] = []): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, ...buffers.map((buffer) => Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength))]), headerLength: json.length };
}

/** Encodes BYTES elements as Triton does: each a 4-byte little-endian length, then the bytes. */
export function lengthPrefixed(elements: readonly (string | Uint8Array)[]): Buffer {
  return Buffer.concat(
    elements.flatMap((element) => {
      const bytes = typeof element === 'string' ? Buffer.from(element, 'utf8') : Buffer.from(element);
      const length = Buffer.alloc(4);
      length.writeUInt32LE(bytes.length);
      return [length, bytes];
    }),
  );
}

export interface BinaryResponse {
  header: {
    model_name: string;
    model_version: string;
    id?: string;
    outputs: { name: string; datatype: string; shape: number[]; data?: unknown[]; parameters?: Record<string, unknown> }[];
  };
  /** Each binary output's bytes, by output name. */
  binary: Record<string, Buffer>;
}

/** Splits a response into its JSON header and binary outputs (`Inference-Header-Content-Length`). */
export async function readInferResponse(response: Response): Promise<BinaryResponse> {
  const body = Buffer.from(await response.arrayBuffer());
  const lengthHeader = response.headers.get('inference-header-content-length');
  const headerLength = lengthHeader === null ? body.length : Number(lengthHeader);
  const header = JSON.parse(body.subarray(0, headerLength).toString('utf8')) as BinaryResponse['header'];
  const binary: Record<string, Buffer> = {};
  let offset = headerLength;
  for (const output of header.outputs) {
    const size = output.parameters?.binary_data_size;
    if (typeof size !== 'number') continue;
    binary[output.name] = body.subarray(offset, offset + size);
    offset += size;
  }
  if (offset !== body.length) throw new Error(`response has ${body.length - offset} unaccounted bytes after its outputs`);
  return { header, binary };
}
