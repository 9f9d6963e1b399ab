import { totalmem } from 'node:os';
import { format } from 'node:util';
import { Command, InvalidArgumentError, Option } from 'commander';
import { defaultOf } from '../config/schema-defaults.js';
import { hostAndPort } from '../core/address.js';
import { DEFAULT_TLS_CHECK_INTERVAL_S, TLS_FLAGS, TLS_MIN_VERSIONS, readTlsFiles, tlsValidityProblems } from '../core/tls.js';
import { grpcFlagName, grpcFrontEndOptionsSchema } from '../frontends/grpc/grpc-options.js';
import type { GrpcFrontEnd } from '../frontends/grpc/v2-grpc.js';
import { DASHBOARD_INTERVAL_MS, httpFlagName, httpFrontEndOptionsSchema } from '../frontends/http/http-options.js';
import { DEFAULT_QUEUE_NAME } from '../jobs/chunk-queue.js';
import { slidingWindowOptionsSchema } from '../monitoring/sliding-window.js';
import { versionMonitorOptionsSchema } from '../monitoring/version-monitor.js';
import { createLogger } from '../observability/log-output.js';
import { tracingSettingsSchema } from '../observability/tracing.js';
import { BUNDLED_REPOSITORY } from '../repository/bundled-repository.js';
import { parseMemoryBudget } from '../server/model-residency.js';
import { serveFlagName, serverOptionsSchema } from '../server/server-options.js';
import type { Server } from '../server/server.js';
import { LONGEST_TIMER_S, booleanFlag, collect, integer, milliseconds, number, port, redisUrl, repositories, seconds } from './arguments.js';
import { authTokensOf, secretFileExposure, warnOfOpenScopes } from './auth-tokens.js';
import { endBySignal, listening, logLevel } from './command-support.js';
import { prepareLogFile } from './output-files.js';

// Defaults come from each component's options schema, so --help shows the values the components apply.
const serverDefault = <K extends keyof typeof serverOptionsSchema.shape & string>(key: K) => defaultOf(serverOptionsSchema, key);
const grpcDefault = <K extends keyof typeof grpcFrontEndOptionsSchema.shape & string>(key: K) => defaultOf(grpcFrontEndOptionsSchema, key);

/** `nereid serve`: the server, its front ends, metrics and tracing, started and drained by signals. */
export function addServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve the models of a repository over HTTP and gRPC (KServe Open Inference Protocol V2)')
    .option(
      '--model-repository <dir>',
      'model repository folder (<model>/<version>/model.onnx); repeat it to serve several, each model in one of them only; default: the example repository that ships with Nereid',
      repositories,
    )
    .option('--host <address>', 'address to bind; use 0.0.0.0 to accept connections from other machines', '127.0.0.1')
    .option('--http-port <port>', 'HTTP port (0 picks a free one)', port, 8000)
    .option('--grpc-port <port>', "gRPC port (0 disables gRPC, Triton's meaning)", port, 8001)
    .option('--grpc-max-message-bytes <n>', 'largest gRPC message received or sent; larger ones get RESOURCE_EXHAUSTED', integer(1), grpcDefault('maxReceiveMessageBytes'))
    .option('--grpc-keepalive-time-ms <ms>', 'ping a gRPC connection after this long without activity', milliseconds(1), grpcDefault('keepaliveTimeMs'))
    .option('--grpc-keepalive-timeout-ms <ms>', 'close a gRPC connection whose ping is not answered within this', milliseconds(1), grpcDefault('keepaliveTimeoutMs'))
    .option('--grpc-max-concurrent-streams <n>', 'calls one gRPC connection may have open at once (clients queue the rest)', integer(1), grpcDefault('maxConcurrentStreams'))
    .option('--grpc-max-connections <n>', 'gRPC connections kept open at once; more are refused at connect', integer(1), grpcDefault('maxConnections'))
    .option('--grpc-reflection <bool>', 'serve gRPC reflection when the optional package @grpc/reflection is installed', booleanFlag, grpcDefault('reflection'))
    .addOption(
      new Option(
        '--model-control-mode <mode>',
        "'none' loads every model at start; 'explicit' enables the load/unload API; 'poll' loads every model at start, then loads, reloads and unloads as the repository's files change; 'on_demand' loads pinned models at start and every other on its first request, unloading the least recently used idle ones to keep within --model-memory-budget",
      )
        .choices(serverOptionsSchema.shape.modelControlMode.unwrap().options)
        .default(serverDefault('modelControlMode')),
    )
    .option('--repository-poll-secs <seconds>', 'in poll mode, seconds between two scans of the model repository', seconds(0.001), serverDefault('repositoryPollSecs'))
    .option('--load-model <name>', "in explicit or on_demand mode, a model to load at start ('*' for all); repeatable", collect, [])
    .option(
      '--model-memory-budget <bytes>',
      "memory the loaded models may take (each charged its resident-set growth at load): bytes (8GB, 512MiB) or a fraction of the machine's (0.5); on-demand models beyond it are unloaded, least recently used first",
      (value: string) => {
        // Checked here, where the message can name the flag (the server would name its option).
        try {
          parseMemoryBudget(value, totalmem());
        } catch (error) {
          throw new InvalidArgumentError((error as Error).message);
        }
        return value;
      },
    )
    .option('--pin-model <name>', 'in on_demand mode, a model loaded at start and never unloaded to make room; repeatable', collect, [])
    .option('--model-load-wait-ms <ms>', 'the longest a request waits for its on-demand model to load (else 503 with Retry-After)', milliseconds(1), serverDefault('modelLoadWaitMs'))
    .option('--strict-readiness <bool>', 'ready only while every model loaded at start is ready', booleanFlag, serverDefault('strictReadiness'))
    .option('--exit-on-error [bool]', "exit 1 (after a drain) when a model loaded at start fails, as Triton's --exit-on-error does by default, so that a supervisor sees a crash instead of a server that never becomes ready (--exit-on-error=false, Triton's spelling, keeps it off)", booleanFlag, false)
    .option('--allow-code-models', 'load models that run code from the repository (backend "javascript" handlers): off by default, since that is code execution', false)
    .option(
      '--allow-client-shm',
      "let clients register system shared memory regions (/dev/shm objects) and send tensors through them, as Triton's flag: off by default, since the server then reads and writes objects a client names",
      false,
    )
    .option(
      '--client-shm-from-any-address',
      'with --allow-client-shm, let clients at any address register regions (a container sharing this machine\'s IPC namespace but not its network); by default only loopback clients may, since a client elsewhere that names an object has the server read and write another program\'s shared memory',
      false,
    )
    .option('--default-max-batch-size <n>', 'max_batch_size given to models whose config leaves it out', integer(0), serverDefault('defaultMaxBatchSize'))
    .option('--max-queue-size <n>', 'requests a model version may queue before refusing more', integer(1), serverDefault('maxQueueSize'))
    .option('--max-queue-bytes <n>', 'bytes of inputs a model version may queue before refusing more (config max_queue_bytes may lower it)', integer(1), serverDefault('maxQueueBytes'))
    .option(
      '--max-queue-wait-ms <ms>',
      "under overload, refuse at once (503, Retry-After) a request whose estimated queue wait is longer than this, when it has neither a deadline nor a rejecting queue timeout of its own (those then decide)",
      milliseconds(1),
      serverDefault('maxQueueWaitMs'),
    )
    .option('--max-inflight-bytes <n>', 'bytes of request bodies held at once across the server (read, inflated, queued, running); beyond it 503', integer(1), serverDefault('maxInflightBytes'))
    .option('--reclaim-idle-memory <bool>', 'once the server is quiet for a second after a burst of large requests (ArrayBuffers grown by 64 MiB), run one full garbage collection so their memory is freed, then hand malloc\'s free pages back to the system (glibc malloc_trim)', booleanFlag, true)
    .option(
      '--cache-config <spec>',
      "response cache: 'local,size=BYTES' (in memory) or 'redis,host=H,port=P[,password=…]' (shared); models opt in with response_cache { enable: true }",
    )
    .option('--http-max-body-bytes <n>', 'largest HTTP request body accepted, inflated bytes of a compressed body too', integer(1), defaultOf(httpFrontEndOptionsSchema, 'maxBodyBytes'))
    .option('--http-headers-timeout-ms <ms>', "a connection's request headers must arrive within this (else 408, closed)", milliseconds(1), defaultOf(httpFrontEndOptionsSchema, 'headersTimeoutMs'))
    .option('--http-request-timeout-ms <ms>', 'a whole request, body included, must arrive within this (else 408, closed)', milliseconds(1), defaultOf(httpFrontEndOptionsSchema, 'requestTimeoutMs'))
    .option('--http-keep-alive-timeout-ms <ms>', 'idle keep-alive connections are closed after this', milliseconds(1), defaultOf(httpFrontEndOptionsSchema, 'keepAliveTimeoutMs'))
    .option('--http-max-connections <n>', 'HTTP connections open at once; more are closed as they arrive', integer(1), defaultOf(httpFrontEndOptionsSchema, 'maxConnections'))
    .option(
      '--shutdown-timeout <seconds>',
      'on SIGTERM/SIGINT/SIGHUP: readiness turns false, requests received are answered and connections closed as they finish; after this many seconds the rest are cut and the process exits',
      integer(1, LONGEST_TIMER_S),
      30,
    )
    .option('--http-max-inflations <n>', 'compressed request bodies inflated at once; more are refused with 503', integer(1), defaultOf(httpFrontEndOptionsSchema, 'maxConcurrentInflations'))
    .option(
      '--http-auth-token <token>',
      'require Authorization: Bearer <token> on every HTTP route, gRPC RPC and the metrics port, health probes excepted (repeatable; env NEREID_HTTP_AUTH_TOKEN)',
      collect,
      [],
    )
    .option('--inference-auth-token <token>', 'a token for inference only: infer, classify, metadata, statistics, monitor, feedback (repeatable; env NEREID_INFERENCE_AUTH_TOKEN)', collect, [])
    .option('--management-auth-token <token>', "a token for the repository API (index, load, unload), trace and log settings and the dashboard's data (/dashboard/api), nothing else (repeatable; env NEREID_MANAGEMENT_AUTH_TOKEN)", collect, [])
    .option('--metrics-auth-token <token>', 'a token for the metrics port only (repeatable; env NEREID_METRICS_AUTH_TOKEN)', collect, [])
    .option('--auth-token-file <path>', "tokens from a file, one '<scope> <token>' per line, scope all|inference|management|metrics ('#' at a line's start or after a space starts a comment)")
    .option('--tls-cert <pem>', 'serve HTTPS, gRPC over TLS and HTTPS metrics with this certificate chain (PEM file); needs --tls-key')
    .option('--tls-key <pem>', 'the private key of --tls-cert (PEM file, unencrypted)')
    .option('--tls-client-ca <pem>', 'mutual TLS: refuse, at the handshake, clients without a certificate signed by this CA (PEM file)')
    .option('--tls-client-crl <pem>', "mutual TLS: the revocation lists of the --tls-client-ca CAs (PEM file, one per CA): a client certificate they list is refused at the handshake")
    .addOption(new Option('--tls-min-version <version>', 'the oldest TLS version accepted on every port (default: TLSv1.2)').choices(TLS_MIN_VERSIONS))
    .option('--tls-ciphers <list>', "the TLS 1.2 cipher suites offered, an OpenSSL cipher list, e.g. 'ECDHE+AESGCM:ECDHE+CHACHA20' (default: Node's, less those with a SHA-1 MAC)")
    .option('--tls-check-interval-s <seconds>', 'how often the TLS files are looked at: changed ones are re-read for new connections (a renewed certificate, a fresh revocation list); 0: never', seconds(0), DEFAULT_TLS_CHECK_INTERVAL_S)
    .option('--log-verbose <level>', 'log verbosity: 0 info, 1 debug, 2 trace', integer(0), 0)
    .addOption(new Option('--log-format <format>', 'log lines as text (for a person) or json (for a collector); default: text on a terminal, else json').choices(['text', 'json']))
    .option('--log-file <path>', 'append logs to this file instead of the terminal')
    // Observability: metrics, traces, access log, cost per prediction.
    .option('--allow-metrics <bool>', 'serve Prometheus metrics on --metrics-port', booleanFlag, true)
    .option('--metrics-port <port>', 'Prometheus metrics port, GET /metrics (0 picks a free one)', port, 8002)
    .addOption(
      new Option('--metrics-compat <names>', "'triton' also exports the per-model counters under Triton's nv_ names, for dashboards written for Triton").choices(['none', 'triton']).default('none'),
    )
    .option('--cost-per-core-hour <usd>', 'price of one core-hour in dollars: cost per 1,000 predictions in metrics and statistics', number(0))
    .addOption(
      new Option('--trace-exporter <exporter>', "OpenTelemetry traces: 'none' (off) or 'otlp' (OTLP/HTTP to --trace-endpoint)")
        .choices(['none', 'otlp'])
        .default('none'),
    )
    .option('--trace-endpoint <url>', 'OTLP/HTTP traces URL', defaultOf(tracingSettingsSchema, 'endpoint'))
    .option('--trace-rate <fraction>', "fraction of new traces recorded, 0..1 (a client traceparent's sampled flag is followed)", number(0, 1), defaultOf(tracingSettingsSchema, 'sampleRate'))
    .option('--dashboard <bool>', 'serve the web dashboard on the HTTP port under /dashboard (behind the management tokens when set)', booleanFlag, defaultOf(httpFrontEndOptionsSchema, 'dashboard'))
    .option('--dashboard-port <port>', 'serve the dashboard on this port of its own (on --host, same tokens and TLS) instead of under /dashboard on the HTTP port; 0 picks a free one', port)
    .option(
      '--dashboard-interval-ms <ms>',
      `milliseconds between two updates of the dashboard's live data (${DASHBOARD_INTERVAL_MS.min} to ${DASHBOARD_INTERVAL_MS.max}): each reads every model's numbers once, for all the open pages, and each page redraws`,
      integer(DASHBOARD_INTERVAL_MS.min, DASHBOARD_INTERVAL_MS.max),
      defaultOf(httpFrontEndOptionsSchema, 'dashboardIntervalMs'),
    )
    .option('--jobs-queue <url>', "the Redis queue of batch jobs (redis://host:6379, as `nereid batch --queue`) whose progress and failures the dashboard's jobs page shows", redisUrl)
    .option('--jobs-queue-name <name>', 'the BullMQ queue name of --jobs-queue', DEFAULT_QUEUE_NAME)
    .option('--log-access [bool]', 'log one line per request: method, url, status, ms, request id, model, rows checked and flagged out of distribution', booleanFlag, defaultOf(httpFrontEndOptionsSchema, 'accessLog'))
    // Monitoring of versions with a reference profile (nereid profile): OOD flags, drift windows, accuracy estimates.
    .option('--monitoring <bool>', 'read reference profiles: OOD flags on answers, drift and accuracy windows at /v2/models/<m>/monitor', booleanFlag, true)
    .option('--monitor-window <rows>', 'rows each drift window holds (the most recent)', integer(1), defaultOf(slidingWindowOptionsSchema, 'capacity'))
    .option('--monitor-max-age-s <seconds>', 'rows older than this leave the drift windows', seconds(0.001), defaultOf(slidingWindowOptionsSchema, 'maxAgeMs') / 1000)
    .option('--monitor-evaluate-every <rows>', 'rows between two comparisons of the windows with the profile', integer(1), defaultOf(versionMonitorOptionsSchema, 'evaluateEvery'))
    .action(async (flags, command: Command) => {
      // Tokens first: a refused token is answered before the server's modules load (a second of CPU).
      const authTokens = await authTokensOf(flags);
      const [{ setLogger: setGrpcLogger }, { createGrpcFrontEnd }, { createHttpFrontEnd, dashboardAddress, replaceHttpTls }, { reloadTlsOnChange }, { createMetricsListener, createTracing, PrometheusMetrics }, { batchJobsSource }, { failedRows, readinessSummary, rowLabel }, { createServer }] =
        await Promise.all([
          import('@grpc/grpc-js'),
          import('../frontends/grpc/v2-grpc.js'),
          import('../frontends/http/v2-http.js'),
          import('../frontends/tls-reload.js'),
          import('../observability/index.js'),
          import('../jobs/batch-status.js'),
          import('../repository/repository-index.js'),
          import('../server/create-server.js'),
        ]);
      if (flags.logFile !== undefined) await prepareLogFile(flags.logFile);
      const logger = createLogger({ level: logLevel(flags.logVerbose), format: flags.logFormat, file: flags.logFile, base: { service: 'nereid' } });
      for (const [flag, path] of [['--auth-token-file', flags.authTokenFile], ['--tls-key', flags.tlsKey]] as const) {
        const exposure = typeof path === 'string' ? await secretFileExposure(path, flag) : undefined;
        if (exposure) logger.warn(exposure);
      }
      // Every port gets the same TLS: a port left plain would be the way around it.
      const tlsFiles = { cert: flags.tlsCert, key: flags.tlsKey, clientCa: flags.tlsClientCa, clientCrl: flags.tlsClientCrl, minVersion: flags.tlsMinVersion, ciphers: flags.tlsCiphers };
      const tls = await readTlsFiles(tlsFiles);
      for (const problem of tls ? tlsValidityProblems(tls, new Date(), TLS_FLAGS) : []) logger.warn(problem);
      if (flags.dashboardPort !== undefined && !flags.dashboard) throw new Error('--dashboard-port serves the dashboard: it cannot go with --dashboard false');
      if (command.getOptionValueSource('dashboardIntervalMs') === 'cli' && !flags.dashboard) throw new Error('--dashboard-interval-ms paces the dashboard: it cannot go with --dashboard false');
      const fixedPorts = [['--http-port', flags.httpPort], ['--grpc-port', flags.grpcPort], ['--metrics-port', flags.allowMetrics ? flags.metricsPort : 0]].filter(([, port]) => port !== 0);
      for (const [index, [flag, port]] of fixedPorts.entries()) {
        const same = fixedPorts.slice(index + 1).find(([, other]) => other === port);
        if (same) throw new Error(`${flag} and ${same[0]} are both ${port}: each listener needs a port of its own`);
      }
      if (flags.dashboardPort !== undefined && flags.dashboardPort !== 0 && [flags.httpPort, flags.grpcPort, flags.allowMetrics && flags.metricsPort].includes(flags.dashboardPort)) {
        throw new Error(`--dashboard-port ${flags.dashboardPort} is the port of another listener (--http-port, --grpc-port or --metrics-port): give it one of its own`);
      }
      // The dashboard's percentiles come from the metrics' histograms: they are kept for it even without the metrics port.
      const metrics =
        flags.allowMetrics || flags.dashboard
          ? new PrometheusMetrics({ usdPerCoreHour: flags.costPerCoreHour, tritonNames: flags.metricsCompat === 'triton', processMetrics: flags.allowMetrics })
          : undefined;
      const tracing = createTracing({ exporter: flags.traceExporter, endpoint: flags.traceEndpoint, sampleRate: flags.traceRate, settingName: serveFlagName });
      const metricsListener = metrics && flags.allowMetrics ? createMetricsListener(metrics, { logger, authTokens, tls }) : undefined;
      // createServer prepares the bundled repository, so that its log shows what was copied.
      // The preAction hook puts the bundled repository's path in as a string when none was given.
      const given: string[] = [flags.modelRepository ?? BUNDLED_REPOSITORY].flat();
      const modelRepository = given.length === 1 ? given[0] : given;
      const server = await createServer({
        costPerCoreHour: flags.costPerCoreHour,
        observers: [metrics?.observer, tracing?.observer].filter((observer) => observer !== undefined),
        traceSettings: tracing?.settings,
        modelRepository,
        modelControlMode: flags.modelControlMode,
        repositoryPollSecs: flags.repositoryPollSecs,
        loadModels: flags.loadModel,
        modelMemoryBudget: flags.modelMemoryBudget,
        pinModels: flags.pinModel,
        modelLoadWaitMs: flags.modelLoadWaitMs,
        strictReadiness: flags.strictReadiness,
        allowCodeModels: flags.allowCodeModels,
        allowClientShm: flags.allowClientShm,
        clientShmFromAnyAddress: flags.clientShmFromAnyAddress,
        defaultMaxBatchSize: flags.defaultMaxBatchSize,
        maxQueueSize: flags.maxQueueSize,
        maxQueueBytes: flags.maxQueueBytes,
        maxQueueWaitMs: flags.maxQueueWaitMs,
        maxInflightBytes: flags.maxInflightBytes,
        reclaimIdleMemory: flags.reclaimIdleMemory ? {} : false,
        cacheConfig: flags.cacheConfig,
        monitoring: flags.monitoring && { window: { capacity: flags.monitorWindow, maxAgeMs: flags.monitorMaxAgeS * 1000 }, evaluateEvery: flags.monitorEvaluateEvery },
        logger,
        // Its messages name the flags these options came from.
        settingName: serveFlagName,
      });
      metrics?.attach(server);
      const http = createHttpFrontEnd(server, {
        maxBodyBytes: flags.httpMaxBodyBytes,
        maxConcurrentInflations: flags.httpMaxInflations,
        headersTimeoutMs: flags.httpHeadersTimeoutMs,
        requestTimeoutMs: flags.httpRequestTimeoutMs,
        keepAliveTimeoutMs: flags.httpKeepAliveTimeoutMs,
        maxConnections: flags.httpMaxConnections,
        authTokens,
        accessLog: flags.logAccess,
        tls,
        dashboard: flags.dashboard,
        dashboardPort: flags.dashboardPort,
        dashboardHost: flags.host,
        dashboardIntervalMs: flags.dashboardIntervalMs,
        dashboardHistograms: metrics && ((model, version) => metrics.histogramSnapshot(model, version)),
        dashboardJobs: flags.jobsQueue ? batchJobsSource({ queue: flags.jobsQueue, queueName: flags.jobsQueueName }) : undefined,
        settingName: httpFlagName,
      });
      // grpc-js writes its own errors to stderr (a busy port as "E No address added out of total 1 resolved") beside
      // the server's message saying the same: they go to the log, at debug.
      setGrpcLogger({ error: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, format(...args)) });
      // The same tokens guard gRPC and the metrics port: another port must not be a way around them.
      const grpc: GrpcFrontEnd | undefined =
        flags.grpcPort === 0
          ? undefined
          : createGrpcFrontEnd(server, {
              maxReceiveMessageBytes: flags.grpcMaxMessageBytes,
              maxSendMessageBytes: flags.grpcMaxMessageBytes,
              keepaliveTimeMs: flags.grpcKeepaliveTimeMs,
              keepaliveTimeoutMs: flags.grpcKeepaliveTimeoutMs,
              maxConcurrentStreams: flags.grpcMaxConcurrentStreams,
              maxConnections: flags.grpcMaxConnections,
              reflection: flags.grpcReflection,
              authTokens,
              accessLog: flags.logAccess,
              tls,
              settingName: grpcFlagName,
            });
      // server.stop() drains it with the HTTP and gRPC front ends (which attach themselves).
      if (metricsListener) server.attachFrontEnd({ drain: () => metricsListener.close() });
      if (tls && flags.tlsCheckIntervalS > 0) {
        const reload = await reloadTlsOnChange(tlsFiles, tls, {
          intervalMs: flags.tlsCheckIntervalS * 1000,
          logger,
          apply: (next) => {
            replaceHttpTls(http, next);
            grpc?.replaceTls(next);
            metricsListener?.replaceTls(next);
          },
        });
        server.attachFrontEnd({ drain: async () => reload.stop() });
      }
      let stopping = false;
      /** Whether the start's loads have ended; a signal before then takes the models' state as it finds them, for the start's summary. */
      let startEnded = false;
      let cutShort: { signal: string; index: Promise<Awaited<ReturnType<Server['repositoryIndex']>>> } | undefined;
      /** The drain ran out of time, or the operator asked twice: cut what is left and exit. */
      const forceExit = (reason: string) => {
        // What the cut fails, for the operator who must tell clients or rerun work: no access-log line follows for them.
        // The client requests are counted once each, by the front ends; the models they had reached are named beside
        // them, where an ensemble's request shows at the ensemble and at its step, a form's images each.
        const atModels = server.unansweredRequests();
        const cut = server.cutConnections();
        const held = atModels.length === 0 ? 'none held at a model' : `held at models: ${atModels.map(({ model, version, requests }) => `${model} version ${version}: ${requests}`).join(', ')}`;
        logger.warn(
          { unanswered: cut, atModels },
          `${reason}: closing the connections left and ending the process (SIGTERM, status 143); ${cut} client request(s) (HTTP requests, gRPC calls) failed unanswered with their connections, ${held}`,
        );
        endBySignal('SIGTERM');
      };
      const stop = async (signal: string) => {
        if (stopping) return forceExit(`${signal} again during the drain`);
        stopping = true;
        // The drain abandons the loads under way and then unloads everything: what had loaded or failed is read first.
        if (!startEnded) {
          // Bounded: a repository on a stalled volume must not keep SIGTERM from draining.
          const index = server.repositoryIndex().catch(() => []);
          cutShort = { signal, index: Promise.race([index, new Promise<[]>((resolve) => setTimeout(() => resolve([]), 1000).unref())]) };
          await cutShort.index;
        }
        const timeoutMs = flags.shutdownTimeout * 1000;
        logger.info({ signal, shutdownTimeoutS: flags.shutdownTimeout }, 'draining: not ready any more, answering the requests received, then exiting');
        // Set before stop()'s own: at the timeout the process ends at once, rather than wait for the computations still running.
        setTimeout(() => forceExit(`the drain did not finish within --shutdown-timeout ${flags.shutdownTimeout} s`), timeoutMs).unref();
        await server.stop({ timeoutMs });
        await tracing?.shutdown().catch((error: Error) => logger.warn({ err: error }, 'exporting the last traces failed'));
        logger.info('drained; exiting');
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
      // A closed terminal or a supervisor's hang-up drains like SIGTERM rather than killing requests in flight.
      process.on('SIGHUP', () => void stop('SIGHUP'));
      // Listen first so probes see "live, not ready" while models load.
      const address = await listening('--http-port', flags.host, flags.httpPort, () => http.listen({ host: flags.host, port: flags.httpPort }), '', flags.dashboardPort === undefined ? [] : [{ flag: '--dashboard-port', port: flags.dashboardPort }]);
      // Fastify names one address of a wildcard bind; the bind itself is what an operator checks exposure by.
      logger.info(`HTTP (KServe V2) listening on ${address}${flags.host === '0.0.0.0' || flags.host === '::' ? ` (bound to ${flags.host}: every address of this machine)` : ''}`);
      if (flags.dashboard) logger.info(`Dashboard on ${dashboardAddress(http) ?? address}/dashboard/${flags.jobsQueue ? `, following the batch jobs of queue '${flags.jobsQueueName}'` : ''}`);
      if (grpc) {
        const port = await listening('--grpc-port', flags.host, flags.grpcPort, () => grpc.listen(flags.host, flags.grpcPort), ' (0 turns gRPC off)');
        logger.info(`gRPC (KServe V2, inference.GRPCInferenceService) listening on ${hostAndPort(flags.host, port)}${tls ? ' (TLS)' : ''}${grpc.reflection ? ', with reflection' : ''}`);
      }
      if (metricsListener) {
        const port = await listening('--metrics-port', flags.host, flags.metricsPort, () => metricsListener.listen(flags.host, flags.metricsPort), ' (--allow-metrics false turns it off)');
        logger.info(`Prometheus metrics on ${tls ? 'https' : 'http'}://${hostAndPort(flags.host, port)}/metrics`);
      }
      if (tracing) logger.info(`OpenTelemetry traces to ${flags.traceEndpoint} (sample rate ${flags.traceRate})`);
      // Once the ports are bound: a bind that fails (an address not of this machine) leaves nothing open to warn of.
      // The management scope is always exposed: trace and logging settings can be changed in any control mode.
      warnOfOpenScopes(authTokens, { management: true, metrics: flags.allowMetrics }, flags.host, logger);
      await server.start();
      startEnded = true;
      if (cutShort) {
        // Not 'NOT ready: 0 ready, 0 failed' from a repository the drain has emptied: the start as the signal found it.
        const found = await cutShort.index;
        const loading = [...new Set(found.filter((row) => row.state === 'LOADING').map((row) => row.name))];
        const still = loading.length > 0 ? `; ${loading.length} model(s) were still loading (${loading.join(', ')}): a load the drain outlasts is abandoned` : '';
        logger.info({ models: found }, `start cut short by ${cutShort.signal}: when it came, ${readinessSummary(found)}${still}`);
        return;
      }
      const index = await server.repositoryIndex();
      // A failed model is worth a warning; one that keeps the server not ready (strict readiness), an error.
      const failedAtStart = failedRows(index);
      const failed = failedAtStart.length > 0;
      logger[server.stopping ? 'info' : !server.ready ? 'error' : failed ? 'warn' : 'info']({ models: index }, `server ${server.ready ? 'ready' : 'NOT ready'}: ${readinessSummary(index)}`);
      if (failed && flags.exitOnError && !server.stopping) {
        const failures = failedAtStart.map((row) => ({ model: row.name, version: row.version, reason: row.reason }));
        const named = failedAtStart.map(rowLabel);
        logger.error(`--exit-on-error: a model failed to load at start (${named.join(', ')}); stopping`);
        await server.stop({ timeoutMs: flags.shutdownTimeout * 1000 });
        // The last line, after the drain's own: `kubectl logs --tail` of a crash-looping pod shows which model, and why.
        const why = failures.map(({ reason }, at) => `${named[at]}: ${reason}`).join('; ');
        logger.error({ failures }, `--exit-on-error: exiting with status 1 because ${failures.length === 1 ? 'a model' : `${failures.length} models`} failed to load at start: ${why}`);
        process.exit(1);
      }
    });
}
