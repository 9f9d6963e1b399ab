/**
 * `npm run soak`: runs the real server (a child process, `nereid serve` in explicit model control
 * mode with scoped tokens and a Redis response cache) on a temporary copy of the bundled models plus
 * `simple`, and for --duration seconds drives valid inference (HTTP JSON, binary, gRPC; `simple` and
 * the OCR recogniser; steady, plus bursts above capacity) beside hostile traffic, reloads through the
 * repository API and Redis outages. Reports every --report-every-s seconds and at the end: outcomes
 * by class per traffic kind, goodput, latency, server RSS and event-loop lag. Exits 1 when an
 * expectation fails (the server died; a 500; a reset or wrong answer on a valid request; an invalid
 * request not answered 4xx; a stalled client not cut off; RSS over --max-rss-mb or not back near
 * its baseline) and writes the whole summary as JSON to --report.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { httpFrontEndOptionsSchema } from '../src/frontends/http/v2-http.js';
import { addSubModel, writeModel } from '../src/onnx/test-models.js';
import { readLabels, recognitionInput, renderTextLine } from '../test/support/ocr.js';
import { freePort, startRedisServer, type RedisTestServer } from '../test/support/redis-server.js';
import { NEREID_CLI, procMemory, startChild, type ChildServer } from './child-process.js';
import { SIMPLE_BENCH_CONFIG } from './model-setup.js';
import { categoryOf, durationSeconds, formatTable, goodputOf, isInternalError, latencySummary, Tally, validFailures, type KindTally, type Role } from './soak-tally.js';
import {
  compressionBombs,
  hostileKinds,
  healthProbe,
  loadModel,
  OcrChecker,
  ocrFixture,
  OCR_MODEL,
  openGrpcChannel,
  simpleFixtures,
  validSenders,
  type SoakEndpoints,
  type TrafficKind,
  type ValidSenders,
} from './soak-traffic.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUNDLED_MODELS = ['ocr_recognition', 'ocr_detection', 'ocr_direction', 'fashion_mnist'];
const OCR_LINES = ['Nereid soak test', 'The quick brown fox', '0123456789', 'Hello, world', 'inference server', 'KServe V2 gRPC'];

const HELP = `npm run soak -- [options]
  --duration <time>         how long the mixed traffic runs: seconds, or with a unit (90s, 10m, 1h; default 10m);
                            warm-up and settling come on top
  --report <path>           JSON summary (default bench/results/soak-<time>.json)
  --max-valid-failures <%>  valid requests may fail unexpectedly (not 200/OK, or 503 outside a burst) at most this
                            share of them (default 0.1)
  --max-rss-mb <n>          the server's peak RSS must stay below this (default 1024)
  --rss-return-mb <n>       after the traffic stops, RSS must be within this of the baseline (default 128)
  --rate <n>                steady valid inference requests per second (default ~27); the hostile
                            traffic (~6/s by default) scales with it
  --request-timeout-s <s>   client timeout of one request (default 30)
  --slow-client-wait-s <s>  how long a stalled client waits for the server to cut it off (default 60)
  --report-every-s <s>      interval of the progress reports (default 30)
  --reload-every-s <s>      a reload through the repository API this often (default 20)
  --outage-every-s <s>      stop Redis this often (default 60) ...
  --outage-s <s>            ... for this long (default 8)
  --burst-every-s <s>       a burst of valid requests above capacity this often (default 75)
  --burst-size <n>          requests of a burst on 'simple' (default 1200; the recogniser gets 1/20 of it)
  --settle-s <s>            wait after the traffic before the final RSS (default 20)
  --keep                    keep the temporary model repository`;

interface SoakOptions {
  duration: number;
  report: string;
  maxRssMb: number;
  rssReturnMb: number;
  /** Steady valid inference requests per second; undefined keeps each kind's own rate. */
  rate?: number;
  /** Percent of valid requests allowed to fail unexpectedly. */
  maxValidFailuresPct: number;
  requestTimeoutS: number;
  slowClientWaitS: number;
  reportEveryS: number;
  reloadEveryS: number;
  outageEveryS: number;
  outageS: number;
  burstEveryS: number;
  burstSize: number;
  settleS: number;
  keep: boolean;
}

function parseOptions(argv: string[]): SoakOptions {
  const numeric = ['max-valid-failures', 'max-rss-mb', 'rss-return-mb', 'rate', 'request-timeout-s', 'slow-client-wait-s', 'report-every-s', 'reload-every-s', 'outage-every-s', 'outage-s', 'burst-every-s', 'burst-size', 'settle-s'] as const;
  const { values } = parseArgs({
    args: argv,
    options: {
      ...Object.fromEntries(numeric.map((name) => [name, { type: 'string' as const }])),
      duration: { type: 'string' },
      report: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const text = (name: (typeof numeric)[number]) => (values as Record<string, unknown>)[name] as string | undefined;
  const number = (name: (typeof numeric)[number], fallback: number) => {
    const given = text(name);
    if (given === undefined) return fallback;
    const value = Number(given);
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number, got '${given}'`);
    return value;
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return {
    duration: durationSeconds(values.duration),
    report: resolve(String(values.report ?? join(ROOT, 'bench', 'results', `soak-${stamp}.json`))),
    maxRssMb: number('max-rss-mb', 1024),
    rssReturnMb: number('rss-return-mb', 128),
    rate: text('rate') === undefined ? undefined : number('rate', 0),
    maxValidFailuresPct: number('max-valid-failures', 0.1),
    requestTimeoutS: number('request-timeout-s', 30),
    slowClientWaitS: number('slow-client-wait-s', 60),
    reportEveryS: Math.max(1, number('report-every-s', 30)),
    reloadEveryS: number('reload-every-s', 20),
    outageEveryS: number('outage-every-s', 60),
    outageS: number('outage-s', 8),
    burstEveryS: number('burst-every-s', 75),
    burstSize: number('burst-size', 1200),
    settleS: number('settle-s', 20),
    keep: Boolean(values.keep),
  };
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

// ---------------------------------------------------------------------------------------------
// The repository: the bundled models, the recogniser with the response cache on, and `simple`.

/** `simple` as the soak serves it: batching, and the response cache on so Redis outages matter. */
const SIMPLE_CONFIG = { ...SIMPLE_BENCH_CONFIG, max_batch_size: 8, response_cache: { enable: true } };

async function prepareRepository(): Promise<{ dir: string; ocrConfig: Record<string, unknown> }> {
  for (const model of BUNDLED_MODELS) {
    if (!existsSync(join(ROOT, 'models', model, '1', 'model.onnx'))) {
      throw new Error(`models/${model}/1/model.onnx is missing: run \`node scripts/prepare-models.mjs\` (npm test does it) first`);
    }
  }
  const dir = await mkdtemp(join(tmpdir(), 'nereid-soak-'));
  // Copies, not links: the server refuses files that resolve outside its repository.
  for (const model of BUNDLED_MODELS) await cp(join(ROOT, 'models', model), join(dir, model), { recursive: true });
  const ocrConfigPath = join(dir, OCR_MODEL, 'config.yaml');
  const ocrConfig = { ...(parseYaml(await readFile(ocrConfigPath, 'utf8')) as Record<string, unknown>), response_cache: { enable: true } };
  await writeFile(ocrConfigPath, stringifyYaml(ocrConfig));
  await writeModel(dir, 'simple', 1, addSubModel(), undefined, { 'config.yaml': stringifyYaml(SIMPLE_CONFIG) });
  return { dir, ocrConfig: { name: OCR_MODEL, ...ocrConfig } };
}

// ---------------------------------------------------------------------------------------------
// The server process: RSS from /proc (procMemory), event-loop lag from its own metrics.

/** prom-client's event-loop lag gauges, each covering the time since the previous scrape. */
async function scrapeEventLoop(endpoints: SoakEndpoints, agent: Agent): Promise<{ p99Ms: number; maxMs: number } | undefined> {
  try {
    const response = await request(`${endpoints.metrics}/metrics`, {
      dispatcher: agent,
      headers: { authorization: `Bearer ${endpoints.tokens.metrics}` },
      signal: AbortSignal.timeout(5000),
    });
    const text = await response.body.text();
    if (response.statusCode !== 200) return undefined;
    const gauge = (name: string) => Number(new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm').exec(text)?.[1] ?? NaN) * 1000;
    return { p99Ms: gauge('nodejs_eventloop_lag_p99_seconds'), maxMs: gauge('nodejs_eventloop_lag_max_seconds') };
  } catch {
    return undefined;
  }
}

/** The server's own error-level log lines (pino level 50 and up). */
function serverErrors(logPath: string): { count: number; first: string[] } {
  let count = 0;
  const first: string[] = [];
  let text = '';
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {
    return { count, first };
  }
  for (const line of text.split('\n')) {
    const level = /"level":(\d+)/.exec(line);
    if (!level || Number(level[1]) < 50) continue;
    count += 1;
    if (first.length < 5) first.push(line.slice(0, 500));
  }
  return { count, first };
}

// ---------------------------------------------------------------------------------------------
// Traffic.

/** Poisson arrivals of one kind until `launchUntil` (ms, performance.now()); resolves when its last request has ended. */
async function drive(kind: TrafficKind, rate: number, tally: Tally, launchUntil: () => number): Promise<void> {
  if (rate <= 0) return;
  const inFlight = new Set<Promise<void>>();
  for (;;) {
    const arrival = performance.now() + (-Math.log(1 - Math.random()) / rate) * 1000;
    await sleep(Math.max(0, Math.min(arrival, launchUntil()) - performance.now()));
    if (performance.now() >= launchUntil()) break;
    if (inFlight.size >= kind.maxInFlight) {
      tally.record(kind.name, { cls: 'skipped', latencyMs: 0 });
      continue;
    }
    const sent = kind.send().then(
      (outcome) => tally.record(kind.name, outcome),
      (error: Error) => tally.record(kind.name, { cls: 'other', latencyMs: 0, detail: `the soak client failed: ${error.stack}` }),
    );
    inFlight.add(sent);
    void sent.finally(() => inFlight.delete(sent));
  }
  await Promise.all(inFlight);
}

const BURST_KINDS: Record<string, { sender: keyof ValidSenders; share: number }> = {
  'burst-grpc-simple': { sender: 'grpcSimple', share: 2 / 3 },
  'burst-http-simple': { sender: 'httpBinarySimple', share: 1 / 3 },
  'burst-grpc-ocr': { sender: 'grpcOcr', share: 1 / 40 },
  'burst-http-ocr': { sender: 'httpBinaryOcr', share: 1 / 40 },
};

/** Every request of a burst at once: far more than the server can answer before the next arrive. */
async function burst(senders: ValidSenders, size: number, tally: Tally): Promise<string> {
  const started = performance.now();
  const sends: Promise<void>[] = [];
  for (const [kind, { sender, share }] of Object.entries(BURST_KINDS)) {
    for (let i = 0; i < Math.round(size * share); i++) sends.push(senders[sender]().then((outcome) => tally.record(kind, outcome)));
  }
  await Promise.all(sends);
  return `${sends.length} requests answered in ${((performance.now() - started) / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------------

interface Expectation {
  name: string;
  passed: boolean;
  detail: string;
}

interface WindowReport {
  atS: number;
  seconds: number;
  goodputPerS: number;
  validLatencyMs: ReturnType<typeof latencySummary>;
  rssMb?: number;
  rssMaxMb?: number;
  eventLoopP99Ms?: number;
  eventLoopMaxMs?: number;
  healthLatencyMs: ReturnType<typeof latencySummary>;
  events: string[];
  kinds: Record<string, Record<string, number>>;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  await mkdir(dirname(options.report), { recursive: true });
  const logDir = dirname(options.report);
  const maxBodyBytes = httpFrontEndOptionsSchema.parse({}).maxBodyBytes;
  console.log(`soak: ${options.duration} s of traffic; report ${relative(process.cwd(), options.report)}`);

  const { dir: repository, ocrConfig } = await prepareRepository();
  let redis: RedisTestServer | undefined;
  let server: ChildServer | undefined;
  const agents: Agent[] = [];
  const channels: ReturnType<typeof openGrpcChannel>[] = [];
  try {
    redis = await startRedisServer();
    const tokens = { inference: randomBytes(16).toString('hex'), management: randomBytes(16).toString('hex'), metrics: randomBytes(16).toString('hex') };
    const [grpcPort, metricsPort] = [await freePort(), await freePort()];
    const redisPort = redis.port;
    const serverArgs = (httpPort: number) => [
      'serve',
      '--model-repository', repository,
      '--http-port', String(httpPort),
      '--grpc-port', String(grpcPort),
      '--metrics-port', String(metricsPort),
      '--model-control-mode', 'explicit',
      '--load-model', '*',
      '--cache-config', `redis,host=127.0.0.1,port=${redisPort}`,
      '--inference-auth-token', tokens.inference,
      '--management-auth-token', tokens.management,
      '--metrics-auth-token', tokens.metrics,
    ];
    const logName = `${(options.report.split('/').pop() ?? 'soak').replace(/\.json$/, '')}-server`;
    server = await startChild({ name: logName, script: NEREID_CLI, args: serverArgs, readyPath: '/v2/health/ready', cwd: ROOT, logDir });
    const serverPid = server.pid;
    console.log(`server pid ${serverPid} at ${server.origin} (gRPC ${grpcPort}, metrics ${metricsPort}), Redis on ${redisPort}; log ${relative(process.cwd(), server.logPath)}`);

    const endpoints: SoakEndpoints = {
      http: server.origin,
      grpc: `127.0.0.1:${grpcPort}`,
      metrics: `http://127.0.0.1:${metricsPort}`,
      tokens,
      requestTimeoutMs: options.requestTimeoutS * 1000,
      slowClientWaitMs: options.slowClientWaitS * 1000,
      maxBodyBytes,
    };
    const [validAgent, hostileAgent, burstAgent, serviceAgent] = [new Agent({ connections: 64 }), new Agent({ connections: 16 }), new Agent({ connections: 256 }), new Agent({ connections: 8 })];
    agents.push(validAgent, hostileAgent, burstAgent, serviceAgent);
    const [validChannel, hostileChannel, burstChannel] = [openGrpcChannel(endpoints.grpc), openGrpcChannel(endpoints.grpc), openGrpcChannel(endpoints.grpc)];
    channels.push(validChannel, hostileChannel, burstChannel);

    // Fixtures.
    const ocrInputs = await Promise.all(OCR_LINES.map(async (line) => ocrFixture(await recognitionInput(await renderTextLine(line)))));
    const validFixtures = { simple: simpleFixtures(64), ocr: ocrInputs, ocrChecker: new OcrChecker(await readLabels(join(repository, OCR_MODEL, 'labels.txt'))) };
    const valid = validSenders(endpoints, validAgent, validChannel, validFixtures);
    const burstSenders = validSenders(endpoints, burstAgent, burstChannel, validFixtures);
    const kinds: TrafficKind[] = [
      { name: 'http-json-simple', role: 'valid', rate: 8, maxInFlight: 64, send: valid.httpJsonSimple },
      { name: 'http-binary-simple', role: 'valid', rate: 8, maxInFlight: 64, send: valid.httpBinarySimple },
      { name: 'grpc-simple', role: 'valid', rate: 8, maxInFlight: 64, send: valid.grpcSimple },
      { name: 'http-json-ocr', role: 'valid', rate: 0.4, maxInFlight: 8, send: valid.httpJsonOcr },
      { name: 'http-binary-ocr', role: 'valid', rate: 1.2, maxInFlight: 16, send: valid.httpBinaryOcr },
      { name: 'grpc-ocr', role: 'valid', rate: 1.2, maxInFlight: 16, send: valid.grpcOcr },
      { name: 'health', role: 'service', rate: 1, maxInFlight: 4, send: healthProbe(endpoints, serviceAgent) },
      ...hostileKinds(endpoints, hostileAgent, hostileChannel, { simple: validFixtures.simple[0], ...compressionBombs(maxBodyBytes) }),
    ];
    const roles = new Map<string, Role>([
      ...kinds.map((kind) => [kind.name, kind.role] as const),
      ...Object.keys(BURST_KINDS).map((name) => [name, 'valid'] as const),
      ['reload', 'service'],
    ]);
    const tally = new Tally(roles);
    const steadyValidRate = kinds.filter((kind) => kind.role === 'valid').reduce((sum, kind) => sum + kind.rate, 0);
    const rateScale = options.rate === undefined ? 1 : options.rate / steadyValidRate;
    console.log(`steady traffic: ${(steadyValidRate * rateScale).toFixed(1)} valid inference requests/s, ${(kinds.filter((kind) => kind.role !== 'valid').reduce((sum, kind) => sum + kind.rate, 0) * rateScale).toFixed(1)} other/s`);

    // Warm-up: each valid request once per fixture (fixing the recogniser's reference readings), then the baseline RSS.
    for (const send of Object.values(valid)) {
      for (let i = 0; i < 8; i++) {
        const outcome = await send();
        if (categoryOf(outcome.cls) !== 'ok') console.log(`warm-up: ${outcome.cls} ${outcome.detail ?? ''}`);
      }
    }
    const readings = [...validFixtures.ocrChecker.references].map(([index, text]) => `${OCR_LINES[index]} → '${text}'`);
    console.log(`recogniser reads: ${readings.join('; ')}`);
    await sleep(2000);
    const baselineMb = procMemory(serverPid)?.rssMb ?? NaN;
    console.log(`baseline RSS ${baselineMb.toFixed(0)} MB`);

    // The main phase.
    const startedAt = performance.now();
    const endsAt = startedAt + options.duration * 1000;
    const sinceStart = () => (performance.now() - startedAt) / 1000;
    let serverDied: string | undefined;
    const launchUntil = () => (serverDied ? 0 : endsAt);
    const slowLaunchUntil = () => (serverDied ? 0 : Math.max(startedAt + (options.duration * 1000) / 2, endsAt - endpoints.slowClientWaitMs));
    const events: { atS: number; what: string }[] = [];
    const event = (what: string) => {
      events.push({ atS: Math.round(sinceStart() * 10) / 10, what });
    };

    const rssSeries: [number, number][] = [];
    const loopSeries: [number, number, number][] = [];
    let peakMb = 0;
    const sampler = setInterval(() => {
      const memory = procMemory(serverPid);
      if (!memory) {
        if (!serverDied) {
          serverDied = `the server process ${serverPid} is gone at ${sinceStart().toFixed(1)} s`;
          event(serverDied);
        }
        return;
      }
      peakMb = Math.max(peakMb, memory.peakMb);
      rssSeries.push([Math.round(sinceStart() * 10) / 10, Math.round(memory.rssMb)]);
    }, 1000);
    const loopScraper = setInterval(() => {
      void scrapeEventLoop(endpoints, serviceAgent).then((lag) => {
        if (lag) loopSeries.push([Math.round(sinceStart() * 10) / 10, Math.round(lag.p99Ms * 10) / 10, Math.round(lag.maxMs * 10) / 10]);
      });
    }, 5000);

    // Scheduled disturbances: reloads, Redis outages, bursts.
    const disturbances: Promise<void>[] = [];
    const every = (firstS: number, periodS: number, action: () => Promise<void>) => {
      if (periodS <= 0) return;
      disturbances.push(
        (async () => {
          let next = startedAt + firstS * 1000;
          for (;;) {
            await sleep(Math.max(0, Math.min(next, launchUntil()) - performance.now()));
            if (performance.now() >= launchUntil()) return;
            await action();
            next += periodS * 1000;
          }
        })(),
      );
    };
    const reloads: [string, object | undefined][] = [
      ['simple', undefined],
      [OCR_MODEL, undefined],
      ['simple', { ...SIMPLE_CONFIG, dynamic_batching: { max_queue_delay_microseconds: 500 } }],
      [OCR_MODEL, { ...ocrConfig, dynamic_batching: { max_queue_delay_microseconds: 200 } }],
    ];
    let reloadCount = 0;
    every(options.reloadEveryS / 2, options.reloadEveryS, async () => {
      const [model, config] = reloads[reloadCount++ % reloads.length];
      const outcome = await loadModel(endpoints, serviceAgent, model, config);
      tally.record('reload', outcome);
      event(`reload ${outcome.variant}: ${outcome.cls} in ${outcome.latencyMs.toFixed(0)} ms${categoryOf(outcome.cls) === 'ok' ? '' : ` (${outcome.detail?.slice(0, 200)})`}`);
    });
    let redisRestartFailures = 0;
    every(options.outageEveryS / 3, options.outageEveryS, async () => {
      await redis!.stop('SIGKILL');
      event(`Redis stopped for ${options.outageS} s`);
      await sleep(options.outageS * 1000);
      try {
        await redis!.restart();
        event('Redis started again');
      } catch (error) {
        redisRestartFailures += 1;
        event(`Redis did not start again: ${(error as Error).message.split('\n')[0]}`);
      }
    });
    every(Math.min(options.burstEveryS / 2, options.duration / 3), options.burstEveryS, async () => {
      event(`burst of ${options.burstSize} on simple + ${Math.round(options.burstSize / 20)} on ${OCR_MODEL}`);
      event(`burst done: ${await burst(burstSenders, options.burstSize, tally)}`);
    });

    // Progress reports.
    const windows: WindowReport[] = [];
    let windowStartedS = 0;
    let eventsReported = 0;
    const reportWindow = (final = false) => {
      const now = sinceStart();
      const seconds = now - windowStartedS;
      const ended = tally.rotate();
      const inWindow = ([at]: readonly number[]) => at > windowStartedS && at <= now + 0.5;
      const rss = rssSeries.filter(inWindow);
      const loop = loopSeries.filter(inWindow);
      const goodput = goodputOf(ended, roles, seconds);
      const health = ended.get('health');
      const report: WindowReport = {
        atS: Math.round(now),
        seconds: Math.round(seconds * 10) / 10,
        goodputPerS: Math.round(goodput.perSecond * 10) / 10,
        validLatencyMs: goodput.latencyMs,
        rssMb: rss.at(-1)?.[1],
        rssMaxMb: rss.length ? Math.max(...rss.map(([, mb]) => mb)) : undefined,
        eventLoopP99Ms: loop.length ? Math.max(...loop.map(([, p99]) => p99)) : undefined,
        eventLoopMaxMs: loop.length ? Math.max(...loop.map(([, , max]) => max)) : undefined,
        healthLatencyMs: latencySummary(health?.successLatencies ?? []),
        events: events.slice(eventsReported).map(({ atS, what }) => `${atS} s: ${what}`),
        kinds: Object.fromEntries([...ended].map(([kind, kindTally]) => [kind, Object.fromEntries(kindTally.classes)])),
      };
      eventsReported = events.length;
      windowStartedS = now;
      windows.push(report);
      if (seconds < 1 && final) return;
      console.log(
        `\n[${report.atS} s${final ? ', last window' : ''}] goodput ${report.goodputPerS}/s, valid p50 ${report.validLatencyMs.p50 ?? '-'} ms p99 ${report.validLatencyMs.p99 ?? '-'} ms; ` +
          `RSS ${report.rssMb ?? '-'} MB (window max ${report.rssMaxMb ?? '-'}, peak ${peakMb.toFixed(0)}); event loop p99 ${report.eventLoopP99Ms ?? '-'} ms max ${report.eventLoopMaxMs ?? '-'} ms; ` +
          `health p99 ${report.healthLatencyMs.p99 ?? '-'} ms; Redis ${redis!.running ? 'up' : 'DOWN'}`,
      );
      for (const line of report.events) console.log(`  · ${line}`);
      console.log(formatTable(ended, roles));
    };
    const reporter = setInterval(() => reportWindow(), options.reportEveryS * 1000);

    await Promise.all([
      ...kinds.map((kind) => drive(kind, kind.rate * rateScale, tally, kind.role === 'slow' ? slowLaunchUntil : launchUntil)),
      ...disturbances,
    ]);
    clearInterval(reporter);
    const trafficSeconds = sinceStart();
    if (!redis.running) await redis.restart().catch(() => undefined);
    event(`traffic stopped (${trafficSeconds.toFixed(0)} s); settling for ${options.settleS} s`);
    reportWindow(true);

    // Settle, then the end RSS (the lowest of the last samples: a GC may land on any one of them).
    await sleep(options.settleS * 1000);
    clearInterval(sampler);
    clearInterval(loopScraper);
    const settleSamples = rssSeries.filter(([at]) => at > trafficSeconds + options.settleS - 5).map(([, mb]) => mb);
    const endMb = settleSamples.length ? Math.min(...settleSamples) : procMemory(serverPid)?.rssMb;
    const finalPeak = procMemory(serverPid)?.peakMb;
    if (finalPeak !== undefined) peakMb = Math.max(peakMb, finalPeak);
    const stats = await modelStatistics(endpoints, serviceAgent);

    const shutdownStarted = performance.now();
    await server.stop();
    const shutdownSeconds = (performance.now() - shutdownStarted) / 1000;
    server = undefined;
    const logged = serverErrors(join(logDir, `${logName}.log`));

    // Judgement.
    const total = tally.total;
    const expectations = judge(total, roles, { serverDied, peakMb, baselineMb, endMb, options });
    const warnings = warningsOf(total, roles, { logged, shutdownSeconds, redisRestartFailures });
    const goodput = goodputOf(total, roles, trafficSeconds);
    const summary = {
      startedAt: new Date(Date.now() - trafficSeconds * 1000).toISOString(),
      options,
      trafficSeconds: Math.round(trafficSeconds),
      server: { args: serverArgs(0).map((arg) => (Object.values(tokens).includes(arg) ? '<token>' : arg)), log: join(logDir, `${logName}.log`), died: serverDied ?? null, shutdownSeconds: Math.round(shutdownSeconds * 10) / 10, loggedErrors: logged },
      goodput: { successes: goodput.successes, perSecond: Math.round(goodput.perSecond * 10) / 10, latencyMs: goodput.latencyMs },
      rss: { baselineMb: Math.round(baselineMb), peakMb: Math.round(peakMb), endMb: endMb === undefined ? null : Math.round(endMb), maxAllowedMb: options.maxRssMb, series: rssSeries },
      eventLoop: { series: loopSeries, note: 'prom-client gauges [s since start, p99 ms, max ms], each over the time since the previous scrape' },
      modelStatistics: stats,
      events,
      expectations,
      warnings,
      totals: Object.fromEntries([...total].sort(([a], [b]) => a.localeCompare(b)).map(([kind, kindTally]) => [kind, { role: roles.get(kind), ...kindTally.toJSON() }])),
      windows,
    };
    await writeFile(options.report, `${JSON.stringify(summary, null, 2)}\n`);

    console.log(`\n=== soak summary: ${summary.trafficSeconds} s of traffic ===`);
    console.log(formatTable(total, roles));
    console.log(
      `goodput ${summary.goodput.perSecond} valid successes/s (${goodput.successes}); valid latency p50 ${goodput.latencyMs.p50} ms p99 ${goodput.latencyMs.p99} ms max ${goodput.latencyMs.max} ms`,
    );
    console.log(`RSS: baseline ${summary.rss.baselineMb} MB, peak ${summary.rss.peakMb} MB, end ${summary.rss.endMb} MB; server shut down in ${summary.server.shutdownSeconds} s; ${logged.count} error line(s) in its log`);
    if (stats) console.log(`model statistics: ${JSON.stringify(stats)}`);
    console.log('expectations:');
    for (const expectation of expectations) console.log(`  ${expectation.passed ? 'PASS' : 'FAIL'} ${expectation.name}${expectation.detail ? `: ${expectation.detail}` : ''}`);
    if (warnings.length) console.log('warnings:');
    for (const warning of warnings) console.log(`  - ${warning}`);
    console.log(`report: ${relative(process.cwd(), options.report)}`);
    return expectations.every((expectation) => expectation.passed) ? 0 : 1;
  } finally {
    for (const channel of channels) channel.close();
    await Promise.all(agents.map((agent) => agent.close().catch(() => undefined)));
    await server?.stop().catch(() => undefined);
    await redis?.stop().catch(() => undefined);
    if (!options.keep) await rm(repository, { recursive: true, force: true });
  }
}

/** Per model: requests, failures, response cache hits and misses, from /v2/models/stats. */
async function modelStatistics(endpoints: SoakEndpoints, agent: Agent): Promise<Record<string, Record<string, number>> | undefined> {
  try {
    const response = await request(`${endpoints.http}/v2/models/stats`, {
      dispatcher: agent,
      headers: { authorization: `Bearer ${endpoints.tokens.inference}` },
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await response.body.json()) as { model_stats?: { name: string; version: string; inference_count?: number; inference_stats?: Record<string, { count?: number }> }[] };
    const stats: Record<string, Record<string, number>> = {};
    for (const model of body.model_stats ?? []) {
      if (!['simple', OCR_MODEL].includes(model.name)) continue;
      const count = (key: string) => Number(model.inference_stats?.[key]?.count ?? 0);
      stats[`${model.name}/${model.version}`] = {
        inferences: Number(model.inference_count ?? 0),
        success: count('success'),
        fail: count('fail'),
        cacheHit: count('cache_hit'),
        cacheMiss: count('cache_miss'),
      };
    }
    return stats;
  } catch {
    return undefined;
  }
}

/** "kind: CLS×n [variant: CLS×n, …]" for the outcomes of `tallies` that `bad` picks. */
function describeOutcomes(tallies: ReadonlyMap<string, KindTally>, kinds: (kind: string) => boolean, bad: (cls: string) => boolean): string[] {
  const lines: string[] = [];
  for (const [kind, tally] of tallies) {
    if (!kinds(kind)) continue;
    const classes = [...tally.classes].filter(([cls]) => bad(cls));
    if (!classes.length) continue;
    const variants = [...tally.variants]
      .map(([variant, counts]) => [variant, [...counts].filter(([cls]) => bad(cls))] as const)
      .filter(([, counts]) => counts.length)
      .map(([variant, counts]) => `${variant}: ${counts.map(([cls, n]) => `${cls}×${n}`).join(' ')}`);
    const example = classes.map(([cls]) => tally.examples.get(cls)?.[0]).find(Boolean);
    lines.push(
      `${kind}: ${classes.map(([cls, n]) => `${cls}×${n}`).join(' ')}${variants.length ? ` [${variants.join('; ')}]` : ''}${example ? ` e.g. ${example.slice(0, 200)}` : ''}`,
    );
  }
  return lines;
}

function judge(
  total: ReadonlyMap<string, KindTally>,
  roles: ReadonlyMap<string, Role>,
  facts: { serverDied?: string; peakMb: number; baselineMb: number; endMb?: number; options: SoakOptions },
): Expectation[] {
  const roleIs = (...wanted: Role[]) => (kind: string) => wanted.includes(roles.get(kind)!);
  const check = (name: string, problems: string[], passedDetail = ''): Expectation => ({ name, passed: problems.length === 0, detail: problems.length ? problems.join(' | ') : passedDetail });
  const { options } = facts;
  const { failed, sent } = validFailures(total, roles);
  const failedPct = sent ? (100 * failed) / sent : 0;
  return [
    check('the server process never dies', facts.serverDied ? [facts.serverDied] : []),
    check('no request is answered 500 (gRPC INTERNAL/UNKNOWN)', describeOutcomes(total, () => true, isInternalError)),
    check('valid requests are never answered with a connection reset', describeOutcomes(total, roleIs('valid', 'service'), (cls) => cls === 'reset')),
    check('valid requests get correct answers', describeOutcomes(total, roleIs('valid'), (cls) => cls === 'wrong-answer')),
    check(
      'invalid requests are always answered 4xx (not 5xx, not resets, not client timeouts)',
      describeOutcomes(total, roleIs('invalid'), (cls) => !['4xx', 'skipped'].includes(categoryOf(cls))),
    ),
    check(
      `stalled clients are cut off (closed or answered 4xx) within ${options.slowClientWaitS} s`,
      describeOutcomes(total, roleIs('slow'), (cls) => !['4xx', 'cut-off', 'skipped'].includes(categoryOf(cls))),
    ),
    check(
      `valid requests fail unexpectedly (anything but a correct 200/OK, or 503 during a burst) at most ${options.maxValidFailuresPct}% of the time`,
      failedPct > options.maxValidFailuresPct ? [`${failed} of ${sent} (${failedPct.toFixed(3)}%)`] : [],
      `${failed} of ${sent} (${failedPct.toFixed(3)}%)`,
    ),
    check(`peak RSS stays below ${options.maxRssMb} MB`, facts.peakMb >= options.maxRssMb ? [`peak ${facts.peakMb.toFixed(0)} MB (VmHWM)`] : [], `peak ${facts.peakMb.toFixed(0)} MB`),
    check(
      `RSS returns within ${options.rssReturnMb} MB of the baseline after the traffic`,
      facts.endMb === undefined
        ? ['no RSS at the end (server gone)']
        : facts.endMb > facts.baselineMb + options.rssReturnMb
          ? [`end ${facts.endMb.toFixed(0)} MB, baseline ${facts.baselineMb.toFixed(0)} MB`]
          : [],
      facts.endMb === undefined ? '' : `end ${facts.endMb.toFixed(0)} MB, baseline ${facts.baselineMb.toFixed(0)} MB`,
    ),
  ];
}

function warningsOf(
  total: ReadonlyMap<string, KindTally>,
  roles: ReadonlyMap<string, Role>,
  facts: { logged: { count: number; first: string[] }; shutdownSeconds: number; redisRestartFailures: number },
): string[] {
  const validOrService = (kind: string) => ['valid', 'service'].includes(roles.get(kind)!);
  const warnings = [
    ...describeOutcomes(total, validOrService, (cls) => categoryOf(cls) === '4xx').map((line) => `valid request answered 4xx — ${line}`),
    ...describeOutcomes(total, validOrService, (cls) => categoryOf(cls) === '5xx' && !isInternalError(cls)).map((line) => `valid request answered 5xx other than 500/503 — ${line}`),
    ...describeOutcomes(total, validOrService, (cls) => cls === 'timeout').map((line) => `valid request timed out on the client — ${line}`),
    ...describeOutcomes(total, () => true, (cls) => cls === 'skipped').map((line) => `arrivals skipped (the kind's in-flight cap was reached: the server is slow to answer) — ${line}`),
    ...describeOutcomes(total, () => true, (cls) => cls === 'other').map((line) => `unclassified outcome — ${line}`),
  ];
  if (facts.logged.count) warnings.push(`the server logged ${facts.logged.count} error line(s), first: ${facts.logged.first[0]?.slice(0, 300)}`);
  if (facts.shutdownSeconds > 14) warnings.push(`the server took ${facts.shutdownSeconds.toFixed(1)} s to exit after SIGTERM (killed after 15 s)`);
  if (facts.redisRestartFailures) warnings.push(`Redis failed to start again ${facts.redisRestartFailures} time(s)`);
  return warnings;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(`soak failed: ${error.stack ?? error.message}`);
    process.exit(2);
  },
);
