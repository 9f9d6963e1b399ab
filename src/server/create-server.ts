/**
 * The composition root for library users and the CLI: a Server with ONNX Runtime (and TF.js) as its backends
 * and the response cache store `cacheConfig` names (Triton's --cache-config). Implementations are
 * imported only here, and only when asked for, so importing the core loads no engine or Redis client.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { defaultLibraryLogger } from '../observability/library-logger.js';
import type { ResponseCacheStore } from '../cache/cache-store.js';
import { parseCacheConfig, type CacheConfig } from '../cache/cache-config.js';
import { isBundledRepository, prepareBundledRepository } from '../repository/bundled-repository.js';
import { repositoryFolder } from '../repository/repository-layout.js';
import { optionKeyName, parseOptions } from '../core/options.js';
import { Server } from './server.js';
import { checkLoggerOption, checkMonitoringOptions, serveFlagName, SERVER_OTHER_OPTIONS, serverOptionsSchema, type ServerOptions } from './server-options.js';

export type CreateServerOptions = Omit<ServerOptions, 'backends'> & {
  /** Default: ONNX Runtime, JavaScript handlers (which load only with allowCodeModels), TF.js and the built-in pipelines. */
  backends?: ServerOptions['backends'];
  /** Triton's --cache-config: 'local,size=BYTES' or 'redis,host=H,port=P'; models opt in with response_cache { enable: true }. */
  cacheConfig?: string;
};

export async function createCacheStore(config: CacheConfig, logger: Logger): Promise<ResponseCacheStore> {
  if (config.kind === 'local') {
    const { LruCacheStore } = await import('../cache/lru-cache-store.js');
    return new LruCacheStore(config.sizeBytes);
  }
  const { RedisCacheStore } = await import('../cache/redis-cache-store.js');
  const password = config.password_file ? (await readFile(config.password_file, 'utf8')).trim() : (config.password ?? process.env.NEREID_REDIS_PASSWORD);
  return new RedisCacheStore({ host: config.host, port: config.port, prefix: config.prefix, password, logger });
}

export async function createServer(options: CreateServerOptions): Promise<Server> {
  // Checked before the repository is looked at: a misspelt modelRepository is named as such, not as a missing folder.
  const parsed = parseOptions('Server', serverOptionsSchema, options, [...Object.keys(SERVER_OTHER_OPTIONS), 'cacheConfig']);
  const settingName = options.settingName ?? optionKeyName;
  checkMonitoringOptions('Server', parsed.monitoring, settingName);
  checkLoggerOption('Server', options.logger);
  const { cacheConfig, ...rest } = options;
  // Before anything listens: a repository that is a file or missing is the operator's mistake, said plainly.
  const repositories = [options.modelRepository].flat();
  for (const repository of repositories) await repositoryFolder(repository);
  const logger = options.logger ?? defaultLibraryLogger();
  // The bundled repository (BUNDLED_REPOSITORY) of an installed package holds only its own files until the models that
  // dependencies ship are copied into place, as `nereid serve` does on first use.
  for (const repository of repositories) if (await isBundledRepository(repository)) await prepareBundledRepository(logger, settingName);
  const backends = options.backends ?? [
    new (await import('../backends/onnx-runtime-backend.js')).OnnxRuntimeBackend(),
    // Registered always, so a javascript model without --allow-code-models is refused by name rather than as an unknown backend.
    new (await import('../backends/javascript-backend.js')).JavaScriptBackend(),
    // TF.js graph models; the engine itself loads only in an instance's worker thread.
    new (await import('../backends/tfjs-backend.js')).TfjsBackend(),
    // Pipelines that ship with Nereid (the bundled ocr): their code is the server's, so they need no flag.
    new (await import('../pipelines/builtin-backend.js')).BuiltinBackend(),
  ];
  const cacheSetting = settingName('cacheConfig');
  const responseCache = options.responseCache ?? (cacheConfig ? await createCacheStore(parseCacheConfig(cacheConfig, cacheSetting), logger) : undefined);
  const server = new Server({ ...rest, logger, backends, responseCache });
  await server.checkNamedModels();
  return server;
}

/**
 * The server a command starts in its own process to run a repository's models (eval, quantize, profile, tune, batch jobs,
 * classify): models load only when the command asks, and refusals name `nereid serve`'s flags, which the commands share.
 */
export function createCommandServer(options: CreateServerOptions): Promise<Server> {
  return createServer({ modelControlMode: 'explicit', settingName: serveFlagName, ...options });
}
