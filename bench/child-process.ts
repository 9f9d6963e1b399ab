/**
 * Servers under test run as child processes, one at a time, on a loopback port picked here. Their output goes to a log
 * file shown when they fail to start. Nereid runs as users run it, compiled (dist/cli.js, built first when src/ is
 * newer): through tsx it spent 6-14 % more CPU per request (docs/performance.md). The bench's own TypeScript servers
 * (peer, floor) run through tsx.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';

export interface ChildServer {
  name: string;
  pid: number;
  origin: string;
  logPath: string;
  /** User + system CPU seconds of the whole process (all threads) so far, from /proc; undefined off Linux. */
  cpuSeconds(): number | undefined;
  /** The same for its main thread alone (the event loop; the rest is ONNX Runtime's and libuv's threads, and GC helpers). */
  mainThreadCpuSeconds(): number | undefined;
  stop(): Promise<void>;
}

export interface ChildSpec {
  name: string;
  /** Run by node: a .ts file through tsx; NEREID_CLI after building it in `cwd` when stale. */
  script: string;
  args: (port: number) => string[];
  nodeFlags?: string[];
  /** GET path that answers 200 once the server can take load. */
  readyPath: string;
  cwd: string;
  logDir: string;
  startTimeoutMs?: number;
}

const HOST = '127.0.0.1';
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function procCpuSeconds(pid: number): number | undefined {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/** A process's main thread (its thread id is the process id). */
function mainThreadCpuSeconds(pid: number): number | undefined {
  return statCpuSeconds(`/proc/${pid}/task/${pid}/stat`);
}

function statCpuSeconds(path: string): number | undefined {
  try {
    const stat = readFileSync(path, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** CPU seconds the whole machine spent busy (all cores, all processes) so far, from /proc/stat. */
export function machineBusySeconds(): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = fields;
    return (user + nice + system + irq + softirq + (steal ?? 0)) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

export interface ProcMemory {
  rssMb: number;
  /** Peak RSS since the process started, or since resetPeakRss (VmHWM): catches spikes between samples. */
  peakMb: number;
}

/** A process's resident memory from /proc/PID/status; undefined when it is gone (or off Linux). */
export function procMemory(pid: number): ProcMemory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    if (/^State:\s+Z/m.test(status)) return undefined;
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    const [rss, peak] = [kb('VmRSS'), kb('VmHWM')];
    // An exiting process has already lost its memory lines.
    if (Number.isNaN(rss) || Number.isNaN(peak)) return undefined;
    return { rssMb: rss / 1024, peakMb: peak / 1024 };
  } catch {
    return undefined;
  }
}

/** Sets a process's VmHWM back to its current RSS (Linux: clear_refs 5), so a later peak is the peak since now; false when not allowed. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** What a Nereid server has served of a model so far (its /stats): requests, and the executions that ran them. */
export async function inferenceCounts(origin: string, model: string): Promise<{ inferences: number; executions: number }> {
  const response = await request(`${origin}/v2/models/${model}/stats`);
  const body = (await response.body.json()) as { model_stats: { inference_count: number; execution_count: number }[] };
  return { inferences: body.model_stats[0].inference_count, executions: body.model_stats[0].execution_count };
}

/** Nereid's command line as built by `npm run build`, relative to a checkout. */
export const NEREID_CLI = 'dist/cli.js';

const builtCheckouts = new Set<string>();

/**
 * Builds dist/ in the checkout `cwd` unless it is newer than src/ (scripts/build-if-stale.mjs, or tsc in a checkout
 * older than that script), once per checkout per bench run.
 */
export function buildNereid(cwd: string): void {
  if (builtCheckouts.has(cwd)) return;
  const [command, args] = existsSync(join(cwd, 'scripts/build-if-stale.mjs'))
    ? [process.execPath, ['scripts/build-if-stale.mjs', '--quiet']]
    : ['npx', ['tsc', '-p', 'tsconfig.build.json']];
  const result = spawnSync(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`building Nereid in ${cwd} failed (${command} ${args.join(' ')}: exit ${result.status ?? result.signal})`);
  builtCheckouts.add(cwd);
}

/**
 * `nereid serve` (dist/cli.js of whichever checkout the child runs in, built there first when stale) on one model in explicit
 * control mode, with gRPC off unless a port is given and Prometheus on the port given, else a free one instead of 8002.
 * The repository path must be absolute: the child may run in another checkout.
 */
export function nereidServeSpec(
  repository: string,
  model: string,
  options: { grpcPort?: number; metricsPort?: number; extraArgs?: string[] } = {},
): Pick<ChildSpec, 'script' | 'args' | 'readyPath'> {
  return {
    script: NEREID_CLI,
    args: (port: number) => [
      'serve',
      '--model-repository',
      repository,
      '--http-port',
      String(port),
      '--grpc-port',
      String(options.grpcPort ?? 0),
      '--metrics-port',
      String(options.metricsPort ?? 0),
      '--model-control-mode',
      'explicit',
      '--load-model',
      model,
      ...(options.extraArgs ?? []),
    ],
    readyPath: `/v2/models/${model}/ready`,
  };
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startChild(spec: ChildSpec): Promise<ChildServer> {
  const port = await freePort();
  const origin = `http://${HOST}:${port}`;
  const logPath = join(spec.logDir, `${spec.name}.log`);
  const log = openSync(logPath, 'w');
  if (spec.script === NEREID_CLI) buildNereid(spec.cwd);
  const loader = spec.script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...(spec.nodeFlags ?? []), ...loader, spec.script, ...spec.args(port)], {
    cwd: spec.cwd,
    stdio: ['ignore', log, log],
    env: { ...process.env },
  });
  closeSync(log);
  const gone = exited(child);
  let hasExited = false;
  void gone.then(() => (hasExited = true));
  const stop = async () => {
    if (hasExited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(timer);
  };
  const deadline = Date.now() + (spec.startTimeoutMs ?? 120_000);
  for (;;) {
    if (hasExited) throw new Error(`${spec.name} exited before it was ready (code ${child.exitCode}); log ${logPath}:\n${tail(logPath)}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${spec.name} was not ready within ${(spec.startTimeoutMs ?? 120_000) / 1000} s; log ${logPath}:\n${tail(logPath)}`);
    }
    try {
      const response = await request(`${origin}${spec.readyPath}`, { headersTimeout: 2_000, bodyTimeout: 2_000 });
      await response.body.dump();
      if (response.statusCode === 200) break;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  const pid = child.pid!;
  return { name: spec.name, pid, origin, logPath, cpuSeconds: () => procCpuSeconds(pid), mainThreadCpuSeconds: () => mainThreadCpuSeconds(pid), stop };
}

/**
 * Waits until the machine, less the processes named, has been nearly idle for two seconds in a row
 * (a pause between someone else's jobs is shorter), or until `maxSeconds` pass. Returns the cores
 * the others were using when it stopped waiting.
 */
export async function waitForQuiet(ownPids: readonly number[], maxSeconds: number, threshold = 0.1): Promise<number | undefined> {
  const deadline = Date.now() + maxSeconds * 1000;
  const ownSeconds = () => {
    const usage = process.cpuUsage();
    return ownPids.reduce((sum, pid) => sum + (procCpuSeconds(pid) ?? 0), 0) + (usage.user + usage.system) / 1e6;
  };
  let quietFor = 0;
  for (;;) {
    const busyBefore = machineBusySeconds();
    const ownBefore = ownSeconds();
    const before = process.hrtime.bigint();
    await sleep(500);
    const busyAfter = machineBusySeconds();
    if (busyBefore === undefined || busyAfter === undefined) return undefined;
    const seconds = Number(process.hrtime.bigint() - before) / 1e9;
    const others = Math.max(0, (busyAfter - busyBefore - (ownSeconds() - ownBefore)) / seconds);
    quietFor = others < threshold ? quietFor + seconds : 0;
    if (quietFor >= 2 || Date.now() >= deadline) return others;
  }
}

/**
 * Waits until every process named has used less than `threshold` of a core over each of two
 * half-seconds in a row (a server still working through requests its clients gave up on is not),
 * or until `maxSeconds` pass. Returns whether they went idle.
 */
export async function waitForIdleProcesses(pids: readonly number[], maxSeconds: number, threshold = 0.05): Promise<boolean> {
  const deadline = Date.now() + maxSeconds * 1000;
  let idleSamples = 0;
  for (;;) {
    const before = pids.map(procCpuSeconds);
    const started = process.hrtime.bigint();
    await sleep(500);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const busiest = Math.max(...pids.map((pid, index) => ((procCpuSeconds(pid) ?? 0) - (before[index] ?? 0)) / seconds));
    idleSamples = busiest < threshold ? idleSamples + 1 : 0;
    if (idleSamples >= 2) return true;
    if (Date.now() >= deadline) return false;
  }
}
