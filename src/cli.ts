#!/usr/bin/env node
/**
 * The `nereid` command. Flag names follow Triton's tritonserver where a Triton flag exists.
 */
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino } from 'pino';
import { createGrpcFrontEnd, grpcFrontEndOptionsSchema, type GrpcFrontEnd } from './frontends/grpc/v2-grpc.js';
import { createHttpFrontEnd } from './frontends/http/v2-http.js';
import { Server } from './server/server.js';
import { VERSION } from './version.js';

function integer(min: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return parsed;
  };
}

function booleanFlag(value: string): boolean {
  if (['true', '1', 'on', 'yes'].includes(value.toLowerCase())) return true;
  if (['false', '0', 'off', 'no'].includes(value.toLowerCase())) return false;
  throw new InvalidArgumentError('expected true or false');
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** --log-verbose 0 logs at info, 1 at debug, 2 or more at trace, as Triton's verbosity grows. */
function logLevel(verbose: number): string {
  return verbose >= 2 ? 'trace' : verbose === 1 ? 'debug' : 'info';
}

/** The gRPC front end's defaults, from its schema, so --help shows the values actually used. */
const GRPC_DEFAULTS = grpcFrontEndOptionsSchema.parse({});

const program = new Command('nereid').description('Model inference server and toolkit (KServe V2 / Triton compatible)').version(VERSION);

program
  .command('serve')
  .description('serve the models of a repository over HTTP and gRPC (KServe Open Inference Protocol V2)')
  .requiredOption('--model-repository <dir>', 'model repository folder (<model>/<version>/model.onnx)')
  .option('--host <address>', 'address to bind; use 0.0.0.0 to accept connections from other machines', '127.0.0.1')
  .option('--http-port <port>', 'HTTP port (0 picks a free one)', integer(0), 8000)
  .option('--grpc-port <port>', "gRPC port (0 disables gRPC, Triton's meaning)", integer(0), 8001)
  .option('--grpc-max-message-bytes <n>', 'largest gRPC message received or sent; larger ones get RESOURCE_EXHAUSTED', integer(1), GRPC_DEFAULTS.maxReceiveMessageBytes)
  .option('--grpc-keepalive-time-ms <ms>', 'ping a gRPC connection after this long without activity', integer(1), GRPC_DEFAULTS.keepaliveTimeMs)
  .option('--grpc-keepalive-timeout-ms <ms>', 'close a gRPC connection whose ping is not answered within this', integer(1), GRPC_DEFAULTS.keepaliveTimeoutMs)
  .addOption(
    new Option('--model-control-mode <mode>', "'none' loads every model at start; 'explicit' enables the load/unload API")
      .choices(['none', 'explicit'])
      .default('none'),
  )
  .option('--load-model <name>', "in explicit mode, a model to load at start ('*' for all); repeatable", collect, [])
  .option('--strict-readiness <bool>', 'ready only while every model loaded at start is ready', booleanFlag, true)
  .option('--default-max-batch-size <n>', 'max_batch_size given to models whose config leaves it out', integer(0), 4)
  .option('--max-queue-size <n>', 'requests a model version may queue before refusing more', integer(1), 1024)
  .option('--http-max-body-bytes <n>', 'largest HTTP request body accepted', integer(1), 64 * 1024 * 1024)
  .option(
    '--http-auth-token <token>',
    'require Authorization: Bearer <token> on every HTTP route and gRPC RPC but health (repeatable; env NEREID_HTTP_AUTH_TOKEN)',
    collect,
    [],
  )
  .option('--log-verbose <level>', 'log verbosity: 0 info, 1 debug, 2 trace', integer(0), 0)
  .action(async (flags) => {
    const logger = pino({ level: logLevel(flags.logVerbose), base: { service: 'nereid' } });
    const authTokens: string[] = [...flags.httpAuthToken];
    if (process.env.NEREID_HTTP_AUTH_TOKEN) authTokens.push(process.env.NEREID_HTTP_AUTH_TOKEN);
    const server = new Server({
      modelRepository: flags.modelRepository,
      modelControlMode: flags.modelControlMode,
      loadModels: flags.loadModel,
      strictReadiness: flags.strictReadiness,
      defaultMaxBatchSize: flags.defaultMaxBatchSize,
      maxQueueSize: flags.maxQueueSize,
      logger,
    });
    const http = createHttpFrontEnd(server, { maxBodyBytes: flags.httpMaxBodyBytes, authTokens });
    // The same tokens guard gRPC: a second port must not be a way around them.
    const grpc: GrpcFrontEnd | undefined =
      flags.grpcPort === 0
        ? undefined
        : createGrpcFrontEnd(server, {
            maxReceiveMessageBytes: flags.grpcMaxMessageBytes,
            maxSendMessageBytes: flags.grpcMaxMessageBytes,
            keepaliveTimeMs: flags.grpcKeepaliveTimeMs,
            keepaliveTimeoutMs: flags.grpcKeepaliveTimeoutMs,
            authTokens,
          });
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      await Promise.all([http.close(), grpc?.close()]);
      await server.close();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
    // Listen first so probes see "live, not ready" while models load.
    const address = await http.listen({ host: flags.host, port: flags.httpPort });
    logger.info(`HTTP (KServe V2) listening on ${address}`);
    if (grpc) {
      const port = await grpc.listen(flags.host, flags.grpcPort);
      logger.info(`gRPC (KServe V2, inference.GRPCInferenceService) listening on ${flags.host}:${port}`);
    }
    await server.start();
    const index = await server.repositoryIndex();
    logger.info({ models: index }, `server ${server.ready ? 'ready' : 'NOT ready'}: ${index.filter((m) => m.state === 'READY').length} model version(s) ready`);
  });

program
  .command('classify')
  .description('classify image files with a model that declares image pre-processing; prints JSON, one line per file')
  .requiredOption('--model <name>', 'model to classify with')
  .option('--model-version <version>', 'model version (default: the latest ready one)')
  .option('--model-repository <dir>', 'model repository to load the model from, in this process', 'models')
  .option('--url <url>', 'classify through a running Nereid server instead (e.g. http://127.0.0.1:8000)')
  .option('--top-k <n>', 'predictions per image (default: the model\'s top_k)', integer(1))
  .argument('<files...>', 'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF)')
  .action(async (files: string[], flags) => {
    const images = await Promise.all(files.map((file) => readFile(file)));
    const print = (file: string, result: unknown) => console.log(JSON.stringify({ file, ...(result as object) }));
    if (flags.url) {
      const base = String(flags.url).replace(/\/$/, '');
      const path = `/v2/models/${encodeURIComponent(flags.model)}${flags.modelVersion ? `/versions/${flags.modelVersion}` : ''}/classify`;
      let failed = false;
      for (const [index, file] of files.entries()) {
        const query = flags.topK ? `?top_k=${flags.topK}` : '';
        const response = await fetch(`${base}${path}${query}`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream' },
          body: images[index],
        });
        const body = (await response.json()) as { error?: string };
        if (!response.ok) failed = true;
        print(file, body);
      }
      process.exit(failed ? 1 : 0);
    }
    const server = new Server({
      modelRepository: flags.modelRepository,
      modelControlMode: 'explicit',
      loadModels: [flags.model],
      logger: pino({ level: 'warn' }, pino.destination(2)),
    });
    await server.start();
    try {
      // One call per file, so a bad file is reported on its own line; the batcher still groups them.
      const started = performance.now();
      const answers = await Promise.allSettled(
        images.map((image) => server.classify(flags.model, [image], { version: flags.modelVersion, topK: flags.topK })),
      );
      let failed = 0;
      answers.forEach((answer, index) => {
        if (answer.status === 'rejected') {
          failed += 1;
          return print(files[index], { error: (answer.reason as Error).message });
        }
        const { model, version, results, timings } = answer.value;
        print(files[index], {
          model_name: model,
          model_version: version,
          ...results[0],
          timing: { preprocess_ms: timings.preprocessMs, inference_ms: timings.inferMs },
        });
      });
      console.error(`${files.length} image(s), ${failed} failed, in ${(performance.now() - started).toFixed(1)} ms`);
      process.exitCode = failed ? 1 : 0;
    } finally {
      await server.close();
    }
  });

program.parseAsync().catch((error: Error) => {
  console.error(`nereid: ${error.message}`);
  process.exit(1);
});
