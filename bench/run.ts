/**
 * `npm run bench -- <options>`: one model measured four ways in one run (see bench/options.ts for
 * the options and what each target is). Writes bench/results/<model>-<date>.{json,md}.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { machineBusySeconds, startChild, waitForQuiet, type ChildServer } from './child-process.js';
import { formatProfile, summariseProfile } from './cpu-profile.js';
import { defaultBatchSizes, measureBatch, openSession, outputSpecs, sessionOptions, type CeilingPoint } from './in-process.js';
import { runLoad } from './load-generator.js';
import { prepareModel } from './model-setup.js';
import { HELP, parseOptions, type BenchOptions, type Encoding, type ServerTarget } from './options.js';
import { bestCeiling, ceilingTable, cellTable, evaluateGoals, goalLines, ratiosOf, schedulerTable, type Cell, type Report, type SchedulerSummary } from './report.js';
import { floorResponseCheck, inferResponseCheck, inputSpecs, makeWorkload, requestBody, type OutputSpec, type RequestBody } from './workload.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The commit measured, and how many files the working tree changes on top of it. */
function sourceState(): { commit: string; modifiedFiles: number } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8' });
    return { commit, modifiedFiles: status.split('\n').filter(Boolean).length };
  } catch {
    return { commit: 'unknown', modifiedFiles: 0 };
  }
}

function machine(): Record<string, unknown> {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) cpuModel = match[1].trim();
  } catch {
    // not Linux
  }
  return {
    cores: availableParallelism(),
    cpuModel,
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    fastify: packageVersion('fastify'),
    undici: packageVersion('undici'),
    platform: `${process.platform} ${process.arch}`,
    loadAverageAtStart: loadavg().map((value) => +value.toFixed(2)),
  };
}

/** Declared max_batch_size, or what Nereid's auto-complete gives (its default 4 when every dim 0 is dynamic). */
function effectiveMaxBatchSize(config: Record<string, unknown>, dims0: (number | string)[]): number {
  if (config.max_batch_size !== undefined) return Number(config.max_batch_size);
  return dims0.every((dim) => typeof dim !== 'number' || dim < 0) ? 4 : 0;
}

async function resultPath(outDir: string, model: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const date = new Date().toISOString().slice(0, 10);
  for (let n = 1; ; n++) {
    const base = join(outDir, `${model}-${date}${n === 1 ? '' : `-${n}`}`);
    if (!existsSync(`${base}.json`) && !existsSync(`${base}.md`)) return base;
  }
}

interface Duration {
  count: number;
  ns: number;
}
interface ModelStats {
  inference_count: number;
  execution_count: number;
  inference_stats: Record<'success' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output', Duration>;
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
  return {
    executions,
    meanBatch: executions > 0 ? (after.inference_count - before.inference_count) / executions : NaN,
    meanRequestMs: perRequest('success'),
    meanQueueMs: perRequest('queue'),
    meanComputeInputMs: perRequest('compute_input'),
    meanComputeInferMs: perRequest('compute_infer'),
    meanComputeOutputMs: perRequest('compute_output'),
  };
}

/** Other processes using more than this many cores during a cell make it noisy. */
const NOISY_CORES = 0.15;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(options: BenchOptions): Promise<void> {
  const started = new Date();
  const model = await prepareModel(options);
  const scratch = await mkdtemp(join(tmpdir(), 'nereid-bench-run-'));
  let current: ChildServer | undefined;
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: stopping the server under test`);
    void (current?.stop() ?? Promise.resolve())
      .then(() => model.cleanup())
      .then(() => rm(scratch, { recursive: true, force: true }))
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
    const ceiling: CeilingPoint[] = [];
    if (options.targets.includes('ceiling')) {
      const sizes = (options.batchSizes ?? defaultBatchSizes(maxBatchSize)).filter((size) => size === 1 || size <= maxBatchSize);
      for (const batch of sizes) {
        let kept: CeilingPoint | undefined;
        for (let attempt = 1; attempt <= 1 + options.retryNoisy; attempt++) {
          await quiet([]);
          const point = await measureBatch(session, workload, batch, options.warmup, options.ceilingDuration);
          console.log(
            `ceiling batch ${String(batch).padStart(3)}: ${point.inferencesPerSecond.toFixed(1)} inf/s, p50 ${point.latency.p50.toFixed(3)} ms/run (${point.runs} runs), ` +
              `CPU ${(point.ownCores * 100).toFixed(0)}% other ${point.otherCores === undefined ? '?' : (point.otherCores * 100).toFixed(0)}%${attempt > 1 ? ` (attempt ${attempt})` : ''}`,
          );
          if (!kept || (point.otherCores ?? 0) < (kept.otherCores ?? 0)) kept = point;
          if ((point.otherCores ?? 0) <= NOISY_CORES) break;
        }
        ceiling.push(kept!);
      }
    }
    await session.release();

    // --- HTTP targets, one child at a time ------------------------------------------------------
    const bodies = new Map<Encoding, RequestBody>(options.encodings.map((encoding) => [encoding, requestBody(workload, outputs, encoding)]));
    const cells: Cell[] = [];
    /** One cell: closed-loop load on the running server, with the CPU each party used over the measured window. */
    const measureCell = async (server: ChildServer, target: ServerTarget, encoding: Encoding, concurrency: number, body: RequestBody): Promise<Cell> => {
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
      const statsBefore = target === 'nereid' ? await nereidStats(server.origin, model.name) : undefined;
      const startTimer = setTimeout(() => {
        serverCpuAtStart = server.cpuSeconds();
        clientCpuAtStart = process.cpuUsage();
        machineBusyAtStart = machineBusySeconds();
        startedAt = process.hrtime.bigint();
      }, options.warmup * 1000);
      const endTimer = setTimeout(windowEnd, (options.warmup + options.duration) * 1000);
      const result = await runLoad({
        origin: server.origin,
        path: `/v2/models/${model.name}/infer`,
        headers: body.headers,
        body: body.body,
        concurrency,
        warmupSeconds: options.warmup,
        durationSeconds: options.duration,
        check: target === 'floor' ? floorResponseCheck : inferResponseCheck(outputs, encoding),
        verifyEvery: options.verifyEvery,
      });
      clearTimeout(startTimer);
      clearTimeout(endTimer);
      windowEnd();
      const statsAfter = statsBefore ? await nereidStats(server.origin, model.name) : undefined;
      return {
        scheduler: statsBefore && statsAfter ? schedulerSummary(statsBefore, statsAfter) : undefined,
        target,
        encoding,
        concurrency,
        requestBytes: body.body.length,
        result,
        inferencesPerSecond: target === 'floor' ? 0 : result.requestsPerSecond,
        serverCores,
        clientCores,
        otherCores,
      };
    };

    const serverTargets = (['nereid', 'peer', 'floor'] as const).filter((target) => options.targets.includes(target));
    for (const target of serverTargets) {
      const profiled = options.cpuProf.includes(target);
      const profileDir = join(scratch, `${target}-prof`);
      // No --cpu-prof-name: tsx's loader runs on a worker thread, which writes a profile too; the
      // default names (CPU.<date>.<time>.<pid>.<tid>.<seq>) keep the main thread's (tid 0) apart.
      const nodeFlags = profiled ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
      const spec = {
        nereid: {
          script: 'src/cli.ts',
          args: (port: number) => [
            'serve',
            '--model-repository',
            model.repository,
            '--http-port',
            String(port),
            '--model-control-mode',
            'explicit',
            '--load-model',
            model.name,
          ],
          readyPath: `/v2/models/${model.name}/ready`,
        },
        peer: { script: 'bench/peer-server.ts', args: (port: number) => ['--model', model.modelPath, '--port', String(port)], readyPath: '/v2/health/ready' },
        floor: { script: 'bench/floor-server.ts', args: (port: number) => ['--port', String(port)], readyPath: '/v2/health/ready' },
      }[target];
      current = await startChild({ name: target, cwd: ROOT, logDir: scratch, nodeFlags, ...spec });
      const pid = current.pid;
      const targetCells: Cell[] = [];
      try {
        for (const encoding of options.encodings) {
          const body = bodies.get(encoding)!;
          for (const concurrency of options.concurrency) {
            let cell: Cell | undefined;
            for (let attempt = 1; attempt <= 1 + options.retryNoisy; attempt++) {
              await quiet([current.pid]);
              const tried = await measureCell(current, target, encoding, concurrency, body);
              const l = tried.result.latency;
              const pct = (value: number | undefined) => (value === undefined ? '?' : `${(value * 100).toFixed(0)}%`);
              console.log(
                `${target.padEnd(6)} ${encoding.padEnd(6)} c=${String(concurrency).padStart(3)}: ${tried.result.requestsPerSecond.toFixed(1)} req/s, ` +
                  `p50 ${l.p50.toFixed(3)} p95 ${l.p95.toFixed(3)} p99 ${l.p99.toFixed(3)} ms, ${tried.result.errors} errors, ${tried.result.verified} verified, ` +
                  `CPU server ${pct(tried.serverCores)} client ${pct(tried.clientCores)} other ${pct(tried.otherCores)}${attempt > 1 ? ` (attempt ${attempt})` : ''}`,
              );
              if (tried.scheduler) {
                const q = tried.scheduler;
                console.log(
                  `    nereid stats: ${q.executions} executions, mean batch ${q.meanBatch.toFixed(2)}, per request: queue ${q.meanQueueMs.toFixed(3)} ms, ` +
                    `input ${q.meanComputeInputMs.toFixed(3)} ms, infer ${q.meanComputeInferMs.toFixed(3)} ms, output ${q.meanComputeOutputMs.toFixed(3)} ms, total ${q.meanRequestMs.toFixed(3)} ms`,
                );
              }
              for (const sample of tried.result.errorSamples) console.log(`    error: ${sample}`);
              for (const failure of tried.result.verifyFailures) console.log(`    WRONG RESPONSE: ${failure}`);
              tried.attempts = attempt;
              if (!cell || (tried.otherCores ?? 0) < (cell.otherCores ?? 0)) cell = { ...tried, attempts: attempt };
              await sleep(200);
              if ((tried.otherCores ?? 0) <= NOISY_CORES) break;
            }
            targetCells.push(cell!);
          }
        }
      } finally {
        await current.stop();
        current = undefined;
      }
      if (profiled) {
        const name = existsSync(profileDir) ? readdirSync(profileDir).find((entry) => entry.includes(`.${pid}.0.`)) : undefined;
        const file = name ? join(profileDir, name) : undefined;
        if (!file) {
          console.log(`no main-thread CPU profile was written for ${target} in ${profileDir}`);
        } else {
          const keep = join(resolve(options.outDir), `${model.name}-${target}-${started.toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
          await mkdir(resolve(options.outDir), { recursive: true });
          await writeFile(keep, readFileSync(file));
          for (const cell of targetCells) {
            cell.profile = summariseProfile(keep, [{ startNs: cell.result.windowStartNs, endNs: cell.result.windowEndNs }]);
            console.log(`\n[${cell.target} ${cell.encoding} c=${cell.concurrency}] ${formatProfile(cell.profile)}\n`);
          }
        }
      }
      cells.push(...targetCells);
    }

    // --- report ---------------------------------------------------------------------------------
    const withRatios = cells.map((cell) => ({ ...cell, ratios: ratiosOf(cell, cells, ceiling) }));
    const goals = evaluateGoals(withRatios, ceiling, maxBatchSize);
    const best = bestCeiling(ceiling);
    const meta = {
      model: model.name,
      date: started.toISOString(),
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
      machine: machine(),
      source: sourceState(),
      maxBatchSize,
      nereidConfig: model.config,
      configSource: model.configSource,
      inProcessSession: sessionOptions(),
      inputs: workload.inputs,
      outputs,
      options: { ...options, inputShapes: Object.fromEntries(options.inputShapes) },
      ceilingInferencesPerSecond: best?.inferencesPerSecond,
      ceilingBatch: best?.batch,
    };
    const report: Report = { meta, ceiling, cells: withRatios, goals };
    const m = meta.machine as Record<string, unknown>;
    const markdown = [
      `# ${model.name} — ${started.toISOString()}`,
      '',
      `\`${meta.command}\``,
      '',
      `Machine: ${m.cores} cores, ${m.cpuModel}, ${m.memoryGiB} GiB; node ${m.node}; onnxruntime-node ${m.onnxruntimeNode}; fastify ${m.fastify}; undici ${m.undici}; load average at start ${(m.loadAverageAtStart as number[]).join(' ')}.`,
      `Source: commit ${meta.source.commit}${meta.source.modifiedFiles ? ` + ${meta.source.modifiedFiles} uncommitted file(s)` : ''}.`,
      `Model: max_batch_size ${maxBatchSize}; inputs ${workload.inputs.map((i) => `${i.name} ${i.ortType} [${batched ? '1,' : ''}${i.rowDims}]`).join(', ')}; ` +
        `outputs ${outputs.map((o) => `${o.name} ${o.ortType} [${o.shape}]`).join(', ')}.`,
      `Nereid config (${model.configSource}): \`${JSON.stringify({ max_batch_size: model.config.max_batch_size, dynamic_batching: model.config.dynamic_batching, instance_group: model.config.instance_group, parameters: model.config.parameters })}\``,
      `Each cell: ${options.warmup} s warm-up (excluded), ${options.duration} s measured; in-process: ${options.ceilingDuration} s per batch size.`,
      '',
      ...(ceiling.length ? ['## In-process ONNX Runtime (the ceiling)', '', ceilingTable(ceiling), ''] : []),
      '## Over HTTP',
      '',
      cellTable(withRatios),
      '',
      ...(withRatios.some((cell) => cell.scheduler)
        ? [
            "Nereid's own statistics per cell (GET /v2/models/<model>/stats, warm-up included; times are means per request, as Triton's statistics count them):",
            '',
            schedulerTable(withRatios),
            '',
          ]
        : []),
      '×ceiling: inferences/s ÷ best in-process inferences/s. ×peer: ÷ the peer at the same concurrency and encoding. ×floor: requests/s ÷ the floor at the same concurrency and encoding. ' +
        '+p50 vs b1: p50 − in-process batch-1 p50. CPU: cores used over the measured window (100% = one core) by the server process (all threads), ' +
          'the benchmark process (load generator), and everything else on the machine (\'other\': anything above a few % means the numbers are skewed).',
      '',
      '## Goals',
      '',
      ...(goals.length ? goalLines(goals) : ['(none measurable with these targets)']),
      '',
    ].join('\n');
    console.log(`\n${markdown}`);
    const base = await resultPath(resolve(options.outDir), model.name);
    await writeFile(`${base}.json`, JSON.stringify(report, (_key, value) => (typeof value === 'bigint' ? value.toString() : value), 2));
    await writeFile(`${base}.md`, markdown);
    console.log(`wrote ${base}.json and ${base}.md`);
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    await current?.stop();
    await model.cleanup();
    await rm(scratch, { recursive: true, force: true });
  }
}

let options: BenchOptions | 'help';
try {
  options = parseOptions(process.argv.slice(2));
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
