/**
 * `npm run bench -- <options>`: one model measured four ways in one run (see bench/options.ts for
 * the options and what each target is). Writes bench/results/<model>-<date>.{json,md}.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { freePort, machineBusySeconds, NEREID_CLI, nereidServeSpec, startChild, waitForQuiet, type ChildServer } from './child-process.js';
import { describeSource, machine, resultPath, ROOT, sourceState } from './environment.js';
import { runGoodput } from './goodput.js';
import { formatProfile, summariseProfile, type ProfileSummary } from './cpu-profile.js';
import { defaultBatchSizes, measureBatch, openSession, outputSpecs, sessionOptions, type CeilingPoint } from './in-process.js';
import { callModelInfer, decodeModelInferResponse, openChannel, runGrpcLoad, serialiseModelInfer } from './grpc-load-generator.js';
import { runLoad, type LoadResult } from './load-generator.js';
import { prepareModel, RESPONSE_CACHE_CONFIG, type PreparedModel } from './model-setup.js';
import { COMPUTING_NEREID_TARGETS, HELP, NEREID_TARGETS, parseOptions, type BenchOptions, type Encoding, type HttpEncoding, type ServerTarget } from './options.js';
import {
  batchMix,
  beforeBesideNereid,
  bestCeiling,
  cacheTable,
  ceilingTable,
  cellTable,
  evaluateGoals,
  floorEncodingOf,
  goalLines,
  goalsNote,
  ratiosOf,
  schedulerTable,
  type Cell,
  type Report,
  type SchedulerSummary,
} from './report.js';
import {
  cellKey,
  combineCeilingPoints,
  combineCells,
  isCellStep,
  measurementPlan,
  perRoundRatios,
  perRoundTable,
  roundOrder,
  type CellStep,
  type PlanSpec,
  type Step,
} from './rounds.js';
import {
  compareWithExpected,
  floorResponseCheck,
  grpcAnswerTensors,
  grpcRequest,
  grpcResponseCheck,
  httpAnswerTensors,
  inferResponseCheck,
  inputSpecs,
  makeWorkload,
  BENCH_SHM_REGION,
  requestBody,
  sharedMemoryInputs,
  sameTensors,
  type AnswerTensors,
  type GrpcResponseCheck,
  type OutputSpec,
  type RequestBody,
  type ResponseCheck,
} from './workload.js';

/** Declared max_batch_size, or what Nereid's auto-complete gives (its default 4 when every dim 0 is dynamic). */
function effectiveMaxBatchSize(config: Record<string, unknown>, dims0: (number | string)[]): number {
  if (config.max_batch_size !== undefined) return Number(config.max_batch_size);
  return dims0.every((dim) => typeof dim !== 'number' || dim < 0) ? 4 : 0;
}

interface Duration {
  count: number;
  ns: number;
}
interface ModelStats {
  inference_count: number;
  execution_count: number;
  inference_stats: Record<'success' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output' | 'cache_hit' | 'cache_miss', Duration>;
  /** Per batch size executed: compute_infer.count is the executions at that size. */
  batch_stats?: { batch_size: number; compute_infer: Duration }[];
}

/** Executions per batch size between two /stats readings (sizes that ran in between only). */
function batchExecutions(before: ModelStats, after: ModelStats): SchedulerSummary['batches'] {
  const executionsBefore = new Map((before.batch_stats ?? []).map((entry) => [entry.batch_size, entry.compute_infer.count]));
  return (after.batch_stats ?? [])
    .map((entry) => ({ batchSize: entry.batch_size, executions: entry.compute_infer.count - (executionsBefore.get(entry.batch_size) ?? 0) }))
    .filter((entry) => entry.executions > 0)
    .sort((a, b) => a.batchSize - b.batchSize);
}

async function nereidStats(origin: string, model: string): Promise<ModelStats | undefined> {
  try {
    const response = await request(`${origin}/v2/models/${model}/stats`);
    const body = (await response.body.json()) as { model_stats?: ModelStats[] };
    return response.statusCode === 200 ? body.model_stats?.[0] : undefined;
  } catch {
    return undefined;
  }
}

/** What Nereid's statistics say about a cell (warm-up included): batch sizes formed and where time went. */
function schedulerSummary(before: ModelStats, after: ModelStats): SchedulerSummary {
  const executions = after.execution_count - before.execution_count;
  const requests = after.inference_stats.success.count - before.inference_stats.success.count;
  const perRequest = (key: 'success' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output') =>
    requests > 0 ? (after.inference_stats[key].ns - before.inference_stats[key].ns) / requests / 1e6 : NaN;
  const count = (key: 'cache_hit' | 'cache_miss') => (after.inference_stats[key]?.count ?? 0) - (before.inference_stats[key]?.count ?? 0);
  const meanMs = (key: 'cache_hit' | 'cache_miss') =>
    count(key) > 0 ? ((after.inference_stats[key]?.ns ?? 0) - (before.inference_stats[key]?.ns ?? 0)) / count(key) / 1e6 : NaN;
  return {
    cacheHits: count('cache_hit'),
    cacheMisses: count('cache_miss'),
    meanCacheHitMs: meanMs('cache_hit'),
    meanCacheMissMs: meanMs('cache_miss'),
    successes: requests,
    executions,
    batches: batchExecutions(before, after),
    meanBatch: executions > 0 ? (after.inference_count - before.inference_count) / executions : NaN,
    meanRequestMs: perRequest('success'),
    meanQueueMs: perRequest('queue'),
    meanComputeInputMs: perRequest('compute_input'),
    meanComputeInferMs: perRequest('compute_infer'),
    meanComputeOutputMs: perRequest('compute_output'),
  };
}

/** How a request of each encoding is checked; nereid-cache narrows it to "the same bytes as the computed answer". */
interface Checks {
  http?: ResponseCheck;
  grpc?: GrpcResponseCheck;
}

/** A server child under test, with what its cells need. */
interface RunningServer {
  child: ChildServer;
  /** Nereid's gRPC listener, when a gRPC column is measured. */
  grpcTarget?: string;
  /** Per encoding, how answers are checked (nereid-cache: set when the encoding is warmed). */
  checks: Map<Encoding, Checks>;
  /** Under --cpu-prof: where node writes the profile. */
  profileDir?: string;
}

/** Other processes using more than this many cores during a cell make it noisy. */
const NOISY_CORES = 0.15;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(options: BenchOptions): Promise<void> {
  const started = new Date();
  const sourceAtStart = sourceState();
  const model = await prepareModel(options);
  // nereid-cache serves its own copy of the model, whose config turns the response cache on.
  let cachedModel: PreparedModel | undefined;
  /** The shm encoding's POSIX shared memory object, removed at the end as the scratch folder is. */
  let sharedMemoryPath: string | undefined;
  const scratch = await mkdtemp(join(tmpdir(), 'nereid-bench-run-'));
  /** The server children running now: one at a time, or (--rounds > 1) all of them from the start to the end. */
  const running = new Map<ServerTarget, RunningServer>();
  const stopAll = () => Promise.all([...running.values()].map((server) => server.child.stop()));
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: stopping the server under test`);
    void stopAll()
      .then(() => model.cleanup())
      .then(() => cachedModel?.cleanup())
      .then(() => rm(scratch, { recursive: true, force: true }))
      .then(() => (sharedMemoryPath ? rm(sharedMemoryPath, { force: true }) : undefined))
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  const quiet = async (pids: number[]) => {
    if (options.quietWait <= 0) return;
    const started = Date.now();
    const others = await waitForQuiet(pids, options.quietWait);
    const waited = (Date.now() - started) / 1000;
    if (waited > 1) console.log(`  (waited ${waited.toFixed(0)} s for other processes to go quiet; now ${((others ?? 0) * 100).toFixed(0)}% of a core)`);
  };
  try {
    const [load1] = loadavg();
    if (load1 > 0.5) {
      console.warn(`warning: the 1-minute load average is ${load1.toFixed(2)}; other processes are using the CPU and will skew every number`);
    }
    console.log(`model ${model.name}: ${model.modelPath}`);
    console.log(`Nereid serves ${model.repository} (config: ${model.configSource})`);

    // --- the model's shapes, one batch-1 run, and the in-process ceiling -------------------------
    const session = await openSession(model.modelPath);
    const maxBatchSize = effectiveMaxBatchSize(
      model.config,
      [...session.inputMetadata, ...session.outputMetadata].map((value) => (value.isTensor ? (value.shape[0] ?? 0) : 0)),
    );
    const batched = maxBatchSize > 0;
    const workload = makeWorkload(inputSpecs(session, batched, options.inputShapes), batched);
    const outputs: OutputSpec[] = await outputSpecs(session, workload);
    console.log(
      `max_batch_size ${maxBatchSize}; inputs ${workload.inputs.map((i) => `${i.name} ${i.ortType} [${batched ? '1,' : ''}${i.rowDims}]`).join(', ')}; outputs ${outputs.map((o) => `${o.name} ${o.ortType} [${o.shape}]`).join(', ')}`,
    );
    /** Console lines of a measurement name their round when there are several. */
    const roundLabel = (round: number) => (options.rounds > 1 ? `[round ${round}/${options.rounds}] ` : '');
    const runningPids = () => [...running.values()].map((server) => server.child.pid);
    /** The in-process ceiling: every batch size once (each retried when noisy, the quietest kept). */
    const measureCeiling = async (round: number): Promise<CeilingPoint[]> => {
      const points: CeilingPoint[] = [];
      const sizes = (options.batchSizes ?? defaultBatchSizes(maxBatchSize)).filter((size) => size === 1 || size <= maxBatchSize);
      for (const batch of sizes) {
        let kept: CeilingPoint | undefined;
        for (let attempt = 1; attempt <= 1 + options.retryNoisy; attempt++) {
          await quiet(runningPids());
          const point = await measureBatch(session, workload, batch, options.warmup, options.ceilingDuration);
          console.log(
            `${roundLabel(round)}ceiling batch ${String(batch).padStart(3)}: ${point.inferencesPerSecond.toFixed(1)} inf/s, p50 ${point.latency.p50.toFixed(3)} ms/run (${point.runs} runs), ` +
              `CPU ${(point.ownCores * 100).toFixed(0)}% other ${point.otherCores === undefined ? '?' : (point.otherCores * 100).toFixed(0)}%${attempt > 1 ? ` (attempt ${attempt})` : ''}`,
          );
          if (!kept || (point.otherCores ?? 0) < (kept.otherCores ?? 0)) kept = point;
          if ((point.otherCores ?? 0) <= NOISY_CORES) break;
        }
        points.push(kept!);
      }
      return points;
    };

    // --- server targets (HTTP, and gRPC for Nereid): one child at a time, or all at once in rounds ---
    const httpEncodings = (encodings: readonly Encoding[]) => encodings.filter((encoding): encoding is HttpEncoding => encoding !== 'grpc');
    /** What each target is measured with: Nereid speaks every encoding; the peer and floor plain HTTP only (binary stands in for gRPC and shm: the floor's for both, the peer's for shm). */
    const encodingsOf = (target: ServerTarget): Encoding[] =>
      target === 'peer'
        ? [...new Set(httpEncodings(options.encodings).map(floorEncodingOf))]
        : target === 'floor'
          ? [...new Set(options.encodings.map(floorEncodingOf))]
          : options.encodings;
    // The shm encoding's inputs, in a POSIX shared memory object each Nereid target registers once it is up.
    const sharedMemory = options.encodings.includes('shm') ? { key: `/nereid-bench-${process.pid}`, bytes: sharedMemoryInputs(workload) } : undefined;
    if (sharedMemory) {
      sharedMemoryPath = `/dev/shm${sharedMemory.key}`;
      await writeFile(sharedMemoryPath, sharedMemory.bytes);
    }
    const bodies = new Map<HttpEncoding, RequestBody>(
      httpEncodings([...options.encodings, ...options.encodings.map(floorEncodingOf)]).map((encoding) => [encoding, requestBody(workload, outputs, encoding)]),
    );
    const grpcMessage = grpcRequest(workload, outputs, model.name);
    const requestBytesOf = (encoding: Encoding) => (encoding === 'grpc' ? serialiseModelInfer(grpcMessage).length : bodies.get(encoding)!.body.length);
    /** One cell: closed-loop load on the running server, with the CPU each party used over the measured window. */
    const measureCell = async (
      server: ChildServer,
      grpcTarget: string | undefined,
      target: ServerTarget,
      encoding: Encoding,
      concurrency: number,
      checks: Checks,
    ): Promise<Cell> => {
      // Read at the window's start and at its end (or when the load stops, if sooner).
      let serverCpuAtStart: number | undefined;
      let clientCpuAtStart = process.cpuUsage();
      let startedAt = process.hrtime.bigint();
      let machineBusyAtStart = machineBusySeconds();
      let serverCores: number | undefined;
      let clientCores = 0;
      let otherCores: number | undefined;
      let ended = false;
      const windowEnd = () => {
        if (ended) return;
        ended = true;
        const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
        const serverCpuAtEnd = server.cpuSeconds();
        if (serverCpuAtStart !== undefined && serverCpuAtEnd !== undefined) serverCores = (serverCpuAtEnd - serverCpuAtStart) / seconds;
        const client = process.cpuUsage(clientCpuAtStart);
        clientCores = (client.user + client.system) / 1e6 / seconds;
        const machineBusyAtEnd = machineBusySeconds();
        if (machineBusyAtStart !== undefined && machineBusyAtEnd !== undefined && serverCores !== undefined) {
          otherCores = Math.max(0, (machineBusyAtEnd - machineBusyAtStart) / seconds - serverCores - clientCores);
        }
      };
      const isNereid = NEREID_TARGETS.includes(target);
      const statsBefore = isNereid ? await nereidStats(server.origin, model.name) : undefined;
      const startTimer = setTimeout(() => {
        serverCpuAtStart = server.cpuSeconds();
        clientCpuAtStart = process.cpuUsage();
        machineBusyAtStart = machineBusySeconds();
        startedAt = process.hrtime.bigint();
      }, options.warmup * 1000);
      const endTimer = setTimeout(windowEnd, (options.warmup + options.duration) * 1000);
      const loop = { concurrency, warmupSeconds: options.warmup, durationSeconds: options.duration, verifyEvery: options.verifyEvery };
      let result: LoadResult;
      if (encoding === 'grpc') {
        if (!grpcTarget) throw new Error(`${target} has no gRPC port`);
        result = await runGrpcLoad({ ...loop, target: grpcTarget, request: grpcMessage, channels: options.grpcChannels, check: checks.grpc ?? grpcResponseCheck(outputs) });
      } else {
        const body = bodies.get(encoding)!;
        result = await runLoad({
          ...loop,
          origin: server.origin,
          path: `/v2/models/${model.name}/infer`,
          headers: body.headers,
          body: body.body,
          check: checks.http ?? (target === 'floor' ? floorResponseCheck : inferResponseCheck(outputs, encoding)),
        });
      }
      clearTimeout(startTimer);
      clearTimeout(endTimer);
      windowEnd();
      const statsAfter = statsBefore ? await nereidStats(server.origin, model.name) : undefined;
      return {
        scheduler: statsBefore && statsAfter ? schedulerSummary(statsBefore, statsAfter) : undefined,
        target,
        encoding,
        concurrency,
        requestBytes: requestBytesOf(encoding),
        result,
        inferencesPerSecond: target === 'floor' ? 0 : result.requestsPerSecond,
        serverCores,
        clientCores,
        otherCores,
      };
    };

    /**
     * nereid-cache: computes the request once per encoding (a cache miss that inserts the answer),
     * checks that answer against the in-process one, and returns checks that pass only answers with
     * byte-identical tensors — what every measured request, a hit, must be.
     */
    const warmCache = async (server: ChildServer, grpcTarget: string | undefined, encoding: Encoding): Promise<Checks> => {
      const before = await nereidStats(server.origin, model.name);
      let reference: AnswerTensors;
      let checks: Checks;
      if (encoding === 'grpc') {
        const channel = openChannel(grpcTarget!);
        try {
          const answer = decodeModelInferResponse(await callModelInfer(channel, serialiseModelInfer(grpcMessage)));
          const problem = grpcResponseCheck(outputs)(answer);
          if (problem) throw new Error(`the warming gRPC answer is wrong: ${problem}`);
          reference = grpcAnswerTensors(answer);
        } finally {
          channel.close();
        }
        const shapeCheck = grpcResponseCheck(outputs);
        checks = { grpc: (answer) => shapeCheck(answer) ?? sameTensors(reference, grpcAnswerTensors(answer)) };
      } else {
        const body = bodies.get(encoding)!;
        const response = await request(`${server.origin}/v2/models/${model.name}/infer`, { method: 'POST', headers: body.headers, body: body.body });
        const answer = Buffer.from(await response.body.arrayBuffer());
        if (response.statusCode !== 200) throw new Error(`the warming request got HTTP ${response.statusCode}: ${answer.toString('utf8', 0, 300)}`);
        const shapeCheck = inferResponseCheck(outputs, encoding);
        const problem = shapeCheck(response.headers, answer);
        if (problem) throw new Error(`the warming answer is wrong: ${problem}`);
        reference = httpAnswerTensors(response.headers, answer);
        checks = { http: (headers, bytes) => shapeCheck(headers, bytes) ?? sameTensors(reference, httpAnswerTensors(headers, bytes)) };
      }
      const valueProblem = compareWithExpected(outputs, reference);
      if (valueProblem) throw new Error(`the computed (cached) ${encoding} answer differs from in-process ONNX Runtime: ${valueProblem}`);
      const after = await nereidStats(server.origin, model.name);
      const delta = before && after ? schedulerSummary(before, after) : undefined;
      const already = delta && delta.cacheHits > 0 && delta.cacheMisses === 0 ? ' — already cached by an earlier encoding: the key holds the tensors and output names, not the encoding' : '';
      console.log(
        `nereid-cache ${encoding}: warmed with one request (${delta ? `cache_miss +${delta.cacheMisses}, cache_hit +${delta.cacheHits}, executions +${delta.executions}` : 'no stats'}${already}); ` +
          `its outputs match in-process ONNX Runtime; every answer checked from now on must be byte-identical to it`,
      );
      return checks;
    };

    const serverTargets = (['nereid', 'before', 'nereid-cache', 'peer', 'floor'] as const).filter((target) => options.targets.includes(target));
    for (const target of serverTargets) {
      if (encodingsOf(target).length === 0) console.log(`${target}: none of --encodings ${options.encodings.join(',')} applies (it speaks HTTP only); skipped`);
    }
    const planSpec: PlanSpec = {
      rounds: options.rounds,
      ceiling: options.targets.includes('ceiling'),
      targets: serverTargets.filter((target) => encodingsOf(target).length > 0),
      encodings: options.encodings,
      concurrency: options.concurrency,
      encodingsOf,
    };
    const plan = measurementPlan(planSpec);

    /** Starts a target's child (nereid-cache: with its own copy of the model, response cache on). */
    const startTarget = async (target: ServerTarget): Promise<RunningServer> => {
      const profileDir = options.cpuProf.includes(target) ? join(scratch, `${target}-prof`) : undefined;
      // No --cpu-prof-name: tsx's loader (peer, floor) runs on a worker thread, which writes a profile too; the
      // default names (CPU.<date>.<time>.<pid>.<tid>.<seq>) keep the main thread's (tid 0) apart.
      const nodeFlags = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
      // Nereid listens for gRPC only when a gRPC column is measured (--grpc-port 0 disables it), and
      // its Prometheus listener (on, as by default) goes to a free port instead of 8002.
      const grpcPort = NEREID_TARGETS.includes(target) ? (encodingsOf(target).includes('grpc') ? await freePort() : 0) : undefined;
      if (target === 'nereid-cache') cachedModel ??= await prepareModel(options, RESPONSE_CACHE_CONFIG);
      const served = target === 'nereid-cache' ? cachedModel! : model;
      // The same command for nereid and before; before runs the other checkout's dist/cli.js in that
      // checkout (built there from its src/, with its node_modules).
      const nereidSpec = nereidServeSpec(resolve(served.repository), model.name, {
        grpcPort: grpcPort ?? 0,
        extraArgs: [
          ...(target === 'nereid-cache' ? ['--cache-config', options.cacheConfig] : []),
          ...(sharedMemory ? ['--allow-client-shm'] : []),
          ...options.serverArgs,
        ],
      });
      const spec = {
        nereid: nereidSpec,
        before: { ...nereidSpec, cwd: options.nereidBefore! },
        'nereid-cache': nereidSpec,
        peer: { script: 'bench/peer-server.ts', args: (port: number) => ['--model', model.modelPath, '--port', String(port)], readyPath: '/v2/health/ready' },
        floor: { script: 'bench/floor-server.ts', args: (port: number) => ['--port', String(port)], readyPath: '/v2/health/ready' },
      }[target];
      if (target === 'nereid-cache') console.log(`nereid-cache serves ${served.repository} (${served.configSource}) with --cache-config ${options.cacheConfig}`);
      if (target === 'before') console.log(`before: ${options.nereidBefore}/${NEREID_CLI} (commit ${sourceState(options.nereidBefore).commit}) serves ${resolve(served.repository)}`);
      const child = await startChild({ name: target, cwd: ROOT, logDir: scratch, nodeFlags, ...spec });
      if (sharedMemory && NEREID_TARGETS.includes(target)) {
        const registered = await request(`${child.origin}/v2/systemsharedmemory/region/${BENCH_SHM_REGION}/register`, {
          method: 'POST',
          body: JSON.stringify({ key: sharedMemory.key, offset: 0, byte_size: sharedMemory.bytes.length }),
        });
        const answer = await registered.body.text();
        if (registered.statusCode !== 200) throw new Error(`${target} did not register the shm encoding's region: ${registered.statusCode} ${answer}`);
      }
      return { child, grpcTarget: grpcPort ? `127.0.0.1:${grpcPort}` : undefined, checks: new Map(), profileDir };
    };

    if (options.openLoop) {
      await session.release();
      await runGoodput({
        options,
        modelName: model.name,
        modelLine:
          `Model: max_batch_size ${maxBatchSize}; inputs ${workload.inputs.map((i) => `${i.name} ${i.ortType} [${batched ? '1,' : ''}${i.rowDims}]`).join(', ')}; ` +
          `Nereid config (${model.configSource}): \`${JSON.stringify({ max_batch_size: model.config.max_batch_size, dynamic_batching: model.config.dynamic_batching, instance_group: model.config.instance_group, parameters: model.config.parameters })}\`.`,
        outputs,
        bodies,
        started,
        startServer: async (target) => {
          const server = await startTarget(target);
          running.set(target, server);
          return server.child;
        },
      });
      return;
    }

    /** Each cell's kept measurement of each round, in the order first measured. */
    const measured = new Map<string, Cell[]>();
    const keyOf = (cell: CellStep | Cell) => cellKey(cell.target, cell.encoding, cell.concurrency);
    const profiles = new Map<string, ProfileSummary>();

    /** One cell of one round on a running server, measured again when noisy (the quietest attempt kept). */
    const measureStep = async (server: RunningServer, { round, target, encoding, concurrency }: CellStep): Promise<Cell> => {
      let checks = server.checks.get(encoding);
      if (!checks) {
        checks = target === 'nereid-cache' ? await warmCache(server.child, server.grpcTarget, encoding) : {};
        server.checks.set(encoding, checks);
      }
      let cell: Cell | undefined;
      for (let attempt = 1; attempt <= 1 + options.retryNoisy; attempt++) {
        await quiet(runningPids());
        const tried = await measureCell(server.child, server.grpcTarget, target, encoding, concurrency, checks);
        const l = tried.result.latency;
        const pct = (value: number | undefined) => (value === undefined ? '?' : `${(value * 100).toFixed(0)}%`);
        console.log(
          `${roundLabel(round)}${target.padEnd(6)} ${encoding.padEnd(6)} c=${String(concurrency).padStart(3)}: ${tried.result.requestsPerSecond.toFixed(1)} req/s, ` +
            `p50 ${l.p50.toFixed(3)} p95 ${l.p95.toFixed(3)} p99 ${l.p99.toFixed(3)} ms, ${tried.result.errors} errors, ${tried.result.verified} verified, ` +
            `CPU server ${pct(tried.serverCores)} client ${pct(tried.clientCores)} other ${pct(tried.otherCores)}${attempt > 1 ? ` (attempt ${attempt})` : ''}`,
        );
        if (tried.scheduler && COMPUTING_NEREID_TARGETS.includes(target)) {
          const q = tried.scheduler;
          console.log(
            `    ${target} stats: ${q.executions} executions (batch size×executions ${batchMix(q.batches)}), mean batch ${q.meanBatch.toFixed(2)}, per request: queue ${q.meanQueueMs.toFixed(3)} ms, ` +
              `input ${q.meanComputeInputMs.toFixed(3)} ms, infer ${q.meanComputeInferMs.toFixed(3)} ms, output ${q.meanComputeOutputMs.toFixed(3)} ms, total ${q.meanRequestMs.toFixed(3)} ms`,
          );
        }
        if (tried.scheduler && target === 'nereid-cache') {
          const q = tried.scheduler;
          console.log(
            `    cache: /stats cache_hit +${q.cacheHits}, cache_miss +${q.cacheMisses}, executions +${q.executions} for ${tried.result.answered} answers ` +
              `(warm-up included)${q.cacheHits === tried.result.answered && q.cacheMisses === 0 ? ': all hits' : ': NOT ALL HITS'}; ` +
              `hit lookup ${q.meanCacheHitMs.toFixed(4)} ms, request ${q.meanRequestMs.toFixed(4)} ms in the server`,
          );
        }
        for (const sample of tried.result.errorSamples) console.log(`    error: ${sample}`);
        for (const failure of tried.result.verifyFailures) console.log(`    WRONG RESPONSE: ${failure}`);
        tried.attempts = attempt;
        if (!cell || (tried.otherCores ?? 0) < (cell.otherCores ?? 0)) cell = { ...tried, attempts: attempt };
        await sleep(200);
        if ((tried.otherCores ?? 0) <= NOISY_CORES) break;
      }
      return cell!;
    };

    /** Stops a target's child and, under --cpu-prof, summarises its profile over each cell's measured window. */
    const finishTarget = async (target: ServerTarget): Promise<void> => {
      const server = running.get(target)!;
      await server.child.stop();
      running.delete(target);
      if (!server.profileDir) return;
      const { profileDir } = server;
      const name = existsSync(profileDir) ? readdirSync(profileDir).find((entry) => entry.includes(`.${server.child.pid}.0.`)) : undefined;
      const file = name ? join(profileDir, name) : undefined;
      if (!file) {
        console.log(`no main-thread CPU profile was written for ${target} in ${profileDir}`);
        return;
      }
      const keep = join(resolve(options.outDir), `${model.name}-${target}-${started.toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
      await mkdir(resolve(options.outDir), { recursive: true });
      await writeFile(keep, readFileSync(file));
      for (const [key, rounds] of measured) {
        if (rounds[0].target !== target) continue;
        const profile = summariseProfile(
          keep,
          rounds.map((cell) => ({ startNs: cell.result.windowStartNs, endNs: cell.result.windowEndNs })),
        );
        profiles.set(key, profile);
        console.log(`\n[${target} ${rounds[0].encoding} c=${rounds[0].concurrency}] ${formatProfile(profile)}\n`);
      }
    };

    /** Each round's in-process measurements (one list of batch sizes per round). */
    const ceilingRounds: CeilingPoint[][] = [];
    const lastStepOf = new Map<Step['target'], number>(plan.map((step, index) => [step.target, index]));
    if (!lastStepOf.has('ceiling')) await session.release();
    // More than one round: every server child runs from the start (idle ones use no CPU), so that
    // each cell's targets are measured back to back.
    if (options.rounds > 1) for (const target of planSpec.targets) running.set(target, await startTarget(target));
    let round = 0;
    for (const [index, step] of plan.entries()) {
      if (options.rounds > 1 && step.round !== round) {
        round = step.round;
        console.log(`--- round ${step.round}/${options.rounds}: ${step.target === 'ceiling' ? 'ceiling, then ' : ''}each cell's ${roundOrder(planSpec.targets, step.round).join(', ')}`);
      }
      if (step.target === 'ceiling') {
        ceilingRounds.push(await measureCeiling(step.round));
        if (index === lastStepOf.get('ceiling')) await session.release();
        continue;
      }
      let server = running.get(step.target);
      if (!server) {
        server = await startTarget(step.target);
        running.set(step.target, server);
      }
      const cell = await measureStep(server, step);
      measured.set(keyOf(step), [...(measured.get(keyOf(step)) ?? []), cell]);
      if (options.rounds === 1 && index === lastStepOf.get(step.target)) await finishTarget(step.target);
    }
    for (const target of [...running.keys()]) await finishTarget(target);

    // --- rounds combined: each cell (and in-process batch size) over every round ------------------
    const ceiling = (ceilingRounds[0] ?? []).map((_, index) => combineCeilingPoints(ceilingRounds.map((points) => points[index])));
    // Target by target, as one round measures them.
    const cells = measurementPlan({ ...planSpec, rounds: 1, ceiling: false })
      .filter(isCellStep)
      .map((step) => ({ ...combineCells(measured.get(keyOf(step))!), profile: profiles.get(keyOf(step)) }));

    // --- report ---------------------------------------------------------------------------------
    const withRatios = cells.map((cell) => ({ ...cell, ratios: ratiosOf(cell, cells, ceiling) }));
    const goals = evaluateGoals(model.name, withRatios);
    const best = bestCeiling(ceiling);
    const perRound =
      options.rounds > 1
        ? beforeBesideNereid(withRatios)
            .filter((cell) => COMPUTING_NEREID_TARGETS.includes(cell.target))
            .map((cell) => perRoundRatios(cell, measured, ceilingRounds))
        : [];
    const meta = {
      model: model.name,
      date: started.toISOString(),
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
      machine: machine(),
      source: sourceState(),
      sourceAtStart,
      ...(options.nereidBefore ? { before: { checkout: options.nereidBefore, ...sourceState(options.nereidBefore) } } : {}),
      maxBatchSize,
      nereidConfig: model.config,
      configSource: model.configSource,
      inProcessSession: sessionOptions(),
      inputs: workload.inputs,
      outputs: outputs.map(({ expected: _expected, ...output }) => output),
      // rounds: left out when 1, as before the option existed.
      options: { ...options, rounds: options.rounds > 1 ? options.rounds : undefined, inputShapes: Object.fromEntries(options.inputShapes) },
      ceilingInferencesPerSecond: best?.inferencesPerSecond,
      ceilingBatch: best?.batch,
    };
    const report: Report = {
      meta,
      ceiling,
      cells: withRatios,
      goals,
      ...(options.rounds > 1
        ? {
            rounds: {
              count: options.rounds,
              order: Array.from({ length: options.rounds }, (_, index) => roundOrder(planSpec.targets, index + 1)),
              ceiling: ceilingRounds,
              ratios: perRound,
            },
          }
        : {}),
    };
    const m = meta.machine as Record<string, unknown>;
    const markdown = [
      `# ${model.name} — ${started.toISOString()}`,
      '',
      `\`${meta.command}\``,
      '',
      `Machine: ${m.cores} cores, ${m.cpuModel}, ${m.memoryGiB} GiB; node ${m.node}; onnxruntime-node ${m.onnxruntimeNode}; fastify ${m.fastify}; undici ${m.undici}; load average at start ${(m.loadAverageAtStart as number[]).join(' ')}.`,
      `Source: ${describeSource(meta.source)}` +
        (meta.source.srcTree !== sourceAtStart.srcTree || meta.source.srcDiffSha1 !== sourceAtStart.srcDiffSha1
          ? ` — CHANGED DURING THE RUN (at the start: commit ${sourceAtStart.commit}${sourceAtStart.srcDiffSha1 ? `, src/ diff sha1 ${sourceAtStart.srcDiffSha1}` : ', src/ as committed'})`
          : '') +
        '.',
      `Model: max_batch_size ${maxBatchSize}; inputs ${workload.inputs.map((i) => `${i.name} ${i.ortType} [${batched ? '1,' : ''}${i.rowDims}]`).join(', ')}; ` +
        `outputs ${outputs.map((o) => `${o.name} ${o.ortType} [${o.shape}]`).join(', ')}.`,
      ...(meta.before
        ? [
            `Before (target 'before'): ${meta.before.checkout}, ${describeSource(meta.before)}; the same repository and flags as nereid.`,
          ]
        : []),
      `Nereid config (${model.configSource}): \`${JSON.stringify({ max_batch_size: model.config.max_batch_size, dynamic_batching: model.config.dynamic_batching, instance_group: model.config.instance_group, parameters: model.config.parameters })}\``,
      options.rounds > 1
        ? `Each cell: ${options.rounds} rounds of ${options.warmup} s warm-up (excluded) and ${options.duration} s measured; in-process: ${options.ceilingDuration} s per batch size, once per round. ` +
          `Every server ran from start to end; each round measured ${planSpec.ceiling ? 'the in-process ceiling, then ' : ''}each cell's targets back to back ` +
          `(${roundOrder(planSpec.targets, 1).join(', ')}; reversed in even rounds). The tables combine the rounds: requests/s and inferences/s = answered ÷ measured seconds, ` +
          `percentiles of every sample, CPU over every window, Nereid's statistics summed; the ratios are those of the combined figures (per round: see 'Per-round ratios').`
        : `Each cell: ${options.warmup} s warm-up (excluded), ${options.duration} s measured; in-process: ${options.ceilingDuration} s per batch size.`,
      '',
      ...(ceiling.length ? ['## In-process ONNX Runtime (the ceiling)', '', ceilingTable(ceiling), ''] : []),
      options.encodings.includes('grpc') ? '## Over HTTP and gRPC' : '## Over HTTP',
      '',
      cellTable(withRatios),
      '',
      ...(perRound.length
        ? [
            `## Per-round ratios (${options.rounds} rounds)`,
            '',
            "Each round's ×ceiling, ×peer and ×floor from that round's measurements alone (against the peer and floor measured just before or after it, " +
              "and that round's ceiling), their median, and the ratio of the combined figures above (all rounds)." +
              (ceilingRounds.length ? ` Best in-process inferences/s by round: ${ceilingRounds.map((points) => bestCeiling(points)!.inferencesPerSecond.toFixed(0)).join(', ')}.` : ''),
            '',
            perRoundTable(perRound),
            '',
          ]
        : []),
      ...(withRatios.some((cell) => cell.target === 'nereid-cache')
        ? [
            `## Response cache hits (nereid-cache: --cache-config ${options.cacheConfig}, response_cache { enable: true })`,
            '',
            'Each encoding was computed once before its cells (a miss that inserted the answer); every request measured is that same request. ' +
              'cache_hit Δ / answered: the server\'s /stats cache_hit count over the cell against the answers the load generator got (both warm-up included); ' +
              'checked/wrong: answers compared byte for byte with the computed one. ×floor and +p50 vs floor: against the floor at the same concurrency' +
              (options.encodings.includes('grpc') ? ' (gRPC: the HTTP binary floor)' : '') +
              '. hit lookup ms: the server\'s mean cache_hit time (hash + lookup).',
            '',
            cacheTable(withRatios),
            '',
          ]
        : []),
      ...(withRatios.some((cell) => cell.scheduler && COMPUTING_NEREID_TARGETS.includes(cell.target))
        ? [
            "Nereid's own statistics per cell (GET /v2/models/<model>/stats, warm-up included; times are means per request, as Triton's statistics count them; " +
              'batch size×executions: the executions at each batch size; server CPU ms/inf: server CPU over the measured window ÷ its inferences; ' +
              'in-process CPU ms/inf at these batches: the ceiling\'s CPU per inference at each batch size (linear between the sizes it measured), weighted by the rows the server ran at that size):',
            '',
            schedulerTable(withRatios),
            '',
          ]
        : []),
      '×ceiling: inferences/s ÷ best in-process inferences/s. ×peer: ÷ the peer at the same concurrency and encoding (none for gRPC: the peer speaks HTTP only). ' +
        '×floor: requests/s ÷ the floor at the same concurrency and encoding; for grpc rows the floor is the HTTP floor with the binary body (the floor speaks HTTP only), and shm rows are set against the binary peer and floor (neither speaks shared memory). ' +
        '+p50 vs b1: p50 − in-process batch-1 p50. +p50 vs floor: p50 − that floor\'s p50. ' +
        'CPU/inf vs in-process: server CPU seconds per inference ÷ in-process CPU seconds per inference at the batch sizes the server ran (see the statistics table). ' +
        (options.encodings.includes('grpc')
          ? `gRPC: ModelInfer with raw_input_contents over ${options.grpcChannels} @grpc/grpc-js channel(s) shared by the virtual clients (one HTTP/2 connection each; HTTP uses one connection per virtual client). `
          : '') +
        (withRatios.some((cell) => cell.target === 'nereid-cache') ? 'nereid-cache rows are cache hits (see above): no ×ceiling, no +p50 vs b1. ' : '') +
        'CPU: cores used over the measured window (100% = one core) by the server process (all threads), ' +
          'the benchmark process (load generator), and everything else on the machine (\'other\': anything above a few % means the numbers are skewed).',
      '',
      '## Goals (issue 11)',
      '',
      goalsNote(model.name),
      '',
      ...goalLines(goals),
      '',
    ].join('\n');
    console.log(`\n${markdown}`);
    const base = await resultPath(resolve(options.outDir), model.name);
    // Latency samples (kept to combine rounds) stay out of the JSON: the percentiles stand for them.
    await writeFile(
      `${base}.json`,
      JSON.stringify(report, (key, value) => (key === 'latenciesMs' ? undefined : typeof value === 'bigint' ? value.toString() : value), 2),
    );
    await writeFile(`${base}.md`, markdown);
    console.log(`wrote ${base}.json and ${base}.md`);
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    await stopAll();
    await model.cleanup();
    await cachedModel?.cleanup();
    await rm(scratch, { recursive: true, force: true });
    if (sharedMemoryPath) await rm(sharedMemoryPath, { force: true });
  }
}

const argv = process.argv.slice(2);

/** A benchmark of its own, with its own options, help and run. */
interface OwnBenchmark<Options> {
  help: string;
  parse: (argv: string[]) => Options | 'help';
  run: (options: Options) => Promise<void>;
}

async function runOwnBenchmark<Options>(flag: string, { help, parse, run }: OwnBenchmark<Options>): Promise<void> {
  let options: Options | 'help';
  try {
    options = parse(argv.filter((arg) => arg !== flag));
  } catch (error) {
    console.error(`bench ${flag}: ${(error as Error).message}\n\n${help}`);
    process.exit(2);
  }
  if (options === 'help') return console.log(help);
  await run(options).catch((error: Error) => {
    console.error(`bench ${flag} failed: ${error.stack ?? error.message}`);
    process.exitCode = 1;
  });
}

const OWN_BENCHMARKS: Record<string, (flag: string) => Promise<void>> = {
  '--latency-batching': async (flag) => {
    const { LATENCY_BATCHING_HELP, parseLatencyBatchingOptions, runLatencyBatching } = await import('./latency-batching.js');
    await runOwnBenchmark(flag, { help: LATENCY_BATCHING_HELP, parse: parseLatencyBatchingOptions, run: runLatencyBatching });
  },
  '--memory-attacks': async (flag) => {
    const { MEMORY_ATTACKS_HELP, parseMemoryAttackOptions, runMemoryAttacks } = await import('./memory-attacks.js');
    await runOwnBenchmark(flag, { help: MEMORY_ATTACKS_HELP, parse: parseMemoryAttackOptions, run: runMemoryAttacks });
  },
  '--padding': async (flag) => {
    const { PADDING_HELP, parsePaddingOptions, runPadding } = await import('./padding.js');
    await runOwnBenchmark(flag, { help: PADDING_HELP, parse: parsePaddingOptions, run: runPadding });
  },
  '--core-cost': async (flag) => {
    const { CORE_COST_HELP, parseCoreCostOptions, runCoreCost } = await import('./core-cost.js');
    await runOwnBenchmark(flag, { help: CORE_COST_HELP, parse: parseCoreCostOptions, run: runCoreCost });
  },
  '--monitoring-overhead': async (flag) => {
    const { MONITORING_OVERHEAD_HELP, parseMonitoringOverheadOptions, runMonitoringOverhead } = await import('./monitoring-overhead.js');
    await runOwnBenchmark(flag, { help: MONITORING_OVERHEAD_HELP, parse: parseMonitoringOverheadOptions, run: runMonitoringOverhead });
  },
};
const ownFlag = Object.keys(OWN_BENCHMARKS).find((flag) => argv.includes(flag));

if (ownFlag) {
  await OWN_BENCHMARKS[ownFlag](ownFlag);
} else {
  let options: BenchOptions | 'help';
  try {
    options = parseOptions(argv);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n\n${HELP}`);
    process.exit(2);
  }
  if (options === 'help') {
    console.log(HELP);
  } else {
    await main(options).catch((error: Error) => {
      console.error(`bench failed: ${error.stack ?? error.message}`);
      process.exitCode = 1;
    });
  }
}
