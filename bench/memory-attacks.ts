/**
 * `npm run bench -- --memory-attacks [--nereid-before DIR]`: the memory attacks of issue 12, run one
 * after another on a real server child of this checkout (and of DIR when given), each server with
 * its default limits, while the child's RSS is sampled every 100 ms from /proc:
 *   gzip-bombs   48 parallel requests, each ~1 MiB of gzip inflating to 1 GiB: a valid request
 *                prefix, then whitespace;
 *   queue-flood  120 parallel 9 MB binary-tensor requests to a model whose dynamic batcher waits 5 s
 *                for a batch that never fills, so its queue holds whatever it admits;
 *   slow-bodies  300 connections that send the headers and half of such a 9 MB body, then stall;
 *                how many the server still holds open is counted at 15 s and past its 60 s
 *                request timeout.
 * For each it prints the RSS before, at the peak and 3 s after, the answers by status and (slow
 * bodies) the connections left open, then one table comparing the targets, and writes
 * <out>/memory-attacks-<date>.{json,md}. A benchmark: it judges nothing and exits 0 whatever the
 * figures (unless a server could not be started).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { availableParallelism, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { Agent, request } from 'undici';
import { buildOnnxModel } from '../src/onnx/onnx-model-builder.js';
import { writeModel } from '../src/onnx/test-models.js';
import { binaryBody } from '../test/support/test-server.js';
import { freePort, NEREID_CLI, nereidServeSpec, procMemory, resetPeakRss, startChild, type ChildServer } from './child-process.js';
import { checkNereidBefore } from './options.js';
import { markdownTable } from './report.js';
import { httpCall, type HttpRequest } from './soak-traffic.js';
import { describeSource, resultPath, sourceState } from './environment.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

export const ATTACKS = ['gzip-bombs', 'queue-flood', 'slow-bodies'] as const;
export type Attack = (typeof ATTACKS)[number];

const MODEL = 'queue_holder';
/** FP32 elements of one flood request: 9 MB of tensor data, the size that took the first wave's server to 9 GB. */
const ELEMENTS = 2_250_000;
/** max_batch_size is above the flood's 120 requests and the batcher waits this long, so the queue holds every request it admits. */
const QUEUE_DELAY_US = 5_000_000;
const MODEL_CONFIG = `
max_batch_size: 256
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ ${ELEMENTS} ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { preferred_batch_size: [ 256 ] max_queue_delay_microseconds: ${QUEUE_DELAY_US} }
`;
const INFER_PATH = `/v2/models/${MODEL}/infer`;

const BOMBS = 48;
const BOMB_INFLATED_BYTES = 1 << 30;
const FLOOD_REQUESTS = 120;
const SLOW_CONNECTIONS = 300;
const SAMPLE_EVERY_MS = 100;
/** How often the server's metrics are read during an attack (each read also waits for its answer). */
const SPLIT_EVERY_MS = 250;
/** Long enough for the first wave's server, which answers the flood after a 1 GB batch. */
const REQUEST_TIMEOUT_MS = 120_000;

export const MEMORY_ATTACKS_HELP = `Usage: npm run bench -- --memory-attacks [options]

Starts a server child (node dist/cli.js serve, built when stale, default limits) on a generated model
'${MODEL}' (FP32 [${ELEMENTS}] -> its max, max_batch_size 256, a ${QUEUE_DELAY_US / 1e6} s batching delay, so the
queue holds requests) and runs the attacks one after another, sampling the server's RSS (VmRSS, and
VmHWM reset before each attack) every ${SAMPLE_EVERY_MS} ms:
  gzip-bombs   ${BOMBS} parallel infer requests, ~1 MiB of gzip each inflating to 1 GiB (a valid request
               prefix, then whitespace)
  queue-flood  ${FLOOD_REQUESTS} parallel ${(ELEMENTS * 4) / 1e6} MB binary-tensor infer requests (Inference-Header-Content-Length)
  slow-bodies  ${SLOW_CONNECTIONS} connections sending the headers and half such a body, then stalling; the
               connections still open are counted at each --slow-body-checks time
Prints per attack: RSS before, peak, --settle-s after; answers 200/413/503/other/reset.

Options:
  --nereid-before DIR        also attack DIR/dist/cli.js run in DIR (another checkout with its node_modules)
  --attacks LIST             which of ${ATTACKS.join(',')}                 [all]
  --slow-body-checks LIST    seconds after the slow bodies were sent to count open connections  [15,65]
  --settle-s SECONDS         wait after an attack before the "after" RSS                         [3]
  --rounds N                 run the attacks N times on the same server (does memory settle or grow?)  [1]
  --out DIR                  where memory-attacks-<date>.{json,md} go                  [bench/results]
  -h, --help                 this help
`;

export interface MemoryAttackOptions {
  nereidBefore?: string;
  attacks: Attack[];
  slowBodyChecksS: number[];
  rounds: number;
  settleS: number;
  outDir: string;
}

export function parseMemoryAttackOptions(argv: string[]): MemoryAttackOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      'nereid-before': { type: 'string' },
      attacks: { type: 'string', default: ATTACKS.join(',') },
      'slow-body-checks': { type: 'string', default: '15,65' },
      'settle-s': { type: 'string', default: '3' },
      rounds: { type: 'string', default: '1' },
      out: { type: 'string', default: 'bench/results' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const attacks = values.attacks.split(',').map((name) => name.trim()).filter(Boolean);
  for (const name of attacks) {
    if (!(ATTACKS as readonly string[]).includes(name)) throw new Error(`--attacks: '${name}' is not one of ${ATTACKS.join(', ')}`);
  }
  const seconds = (name: string, text: string) => {
    const value = Number(text);
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} expects seconds >= 0, got '${text}'`);
    return value;
  };
  const checks = values['slow-body-checks'].split(',').map((text) => seconds('slow-body-checks', text.trim()));
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds expects a positive integer, got '${values.rounds}'`);
  const nereidBefore = values['nereid-before'] === undefined ? undefined : resolve(values['nereid-before']);
  if (nereidBefore !== undefined) checkNereidBefore(nereidBefore);
  return {
    nereidBefore,
    attacks: ATTACKS.filter((attack) => attacks.includes(attack)),
    slowBodyChecksS: [...new Set(checks)].sort((a, b) => a - b),
    settleS: seconds('settle-s', values['settle-s']),
    rounds,
    outDir: values.out,
  };
}

// ---------------------------------------------------------------------------------------------
// What an attack got back.

export const ANSWER_COLUMNS = ['200', '413', '503', 'other', 'reset'] as const;
type AnswerColumn = (typeof ANSWER_COLUMNS)[number];

/** Answers by column; `details` names what 'other' and 'reset' were (a status, 'timeout', an error code). */
export class Answers {
  readonly counts: Record<AnswerColumn, number> = { 200: 0, 413: 0, 503: 0, other: 0, reset: 0 };
  readonly details: Record<string, number> = {};

  /** A status, or how the request failed without one: 'reset' (the connection ended) or 'timeout' (the client gave up). */
  add(outcome: number | 'reset' | 'timeout', detail?: string): void {
    const column: AnswerColumn = outcome === 'reset' ? 'reset' : outcome === 'timeout' ? 'other' : (ANSWER_COLUMNS as readonly string[]).includes(String(outcome)) ? (String(outcome) as AnswerColumn) : 'other';
    this.counts[column] += 1;
    if (column === 'other' || column === 'reset') {
      const key = outcome === 'reset' ? `reset (${detail ?? 'connection ended'})` : String(outcome);
      this.details[key] = (this.details[key] ?? 0) + 1;
    }
  }

  toJSON() {
    return { ...this.counts, details: this.details };
  }
}

export interface AttackResult {
  attack: Attack;
  /** 1, 2, … with --rounds. */
  round: number;
  target: string;
  baselineMb: number;
  /** Highest RSS seen: the samples, and VmHWM when it could be reset before the attack. */
  peakMb: number;
  /** RSS --settle-s after the attack's last answer (or its connections closed); undefined when the server is gone. */
  afterMb?: number;
  /** From the first request sent to the last answer. */
  attackSeconds: number;
  answers: Answers;
  /** slow-bodies: connections the server still held open at each check. */
  openAt?: { seconds: number; open: number }[];
  /** Where the memory was before, at the highest RSS its metrics were read at, and after. */
  split: { baseline?: MemorySplit; peak?: MemorySplit; after?: MemorySplit };
  serverGone: boolean;
}

/** RSS, and from the server's Prometheus metrics the JS heap in use and the memory V8 tracks outside it (Buffers, typed arrays). */
export interface MemorySplit {
  rssMb: number;
  heapMb: number;
  externalMb: number;
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

async function writeRepository(dir: string): Promise<void> {
  const model = buildOnnxModel({
    graphName: 'queue_holder',
    inputs: [{ name: 'INPUT0', type: 'float32', shape: ['batch', ELEMENTS] }],
    outputs: [{ name: 'OUTPUT0', type: 'float32', shape: ['batch', 1] }],
    nodes: [{ opType: 'ReduceMax', inputs: ['INPUT0'], outputs: ['OUTPUT0'], attributes: { axes: [1], keepdims: 1 } }],
  });
  await writeModel(dir, MODEL, 1, model, MODEL_CONFIG);
}

/** A gzip body that inflates to BOMB_INFLATED_BYTES: a valid infer request's first bytes, then whitespace, which a JSON parser must read on through. */
async function gzipBomb(): Promise<Buffer> {
  const prefix = Buffer.from(`{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,${ELEMENTS}],"data":`);
  const gzip = createGzip({ level: 9 });
  const compressed: Buffer[] = [];
  gzip.on('data', (chunk: Buffer) => compressed.push(chunk));
  const ended = new Promise((resolve, reject) => gzip.once('end', resolve).once('error', reject));
  const spaces = Buffer.alloc(1 << 20, 0x20);
  gzip.write(prefix);
  for (let written = prefix.length; written < BOMB_INFLATED_BYTES; written += spaces.length) {
    if (!gzip.write(spaces.subarray(0, Math.min(spaces.length, BOMB_INFLATED_BYTES - written)))) await new Promise((resolve) => gzip.once('drain', resolve));
  }
  gzip.end();
  await ended;
  return Buffer.concat(compressed);
}

function floodBody(): { body: Buffer; headerLength: number } {
  const tensor = new Float32Array(ELEMENTS).map((_, index) => index % 1000);
  return binaryBody({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, ELEMENTS], parameters: { binary_data_size: tensor.byteLength } }] }, [new Uint8Array(tensor.buffer)]);
}

// ---------------------------------------------------------------------------------------------
// The attacks.

async function parallelRequests(origin: string, count: number, req: HttpRequest): Promise<Answers> {
  const agent = new Agent({ connections: count, pipelining: 1 });
  const answers = new Answers();
  try {
    await Promise.all(
      Array.from({ length: count }, async () => {
        const result = await httpCall(agent, origin, req, REQUEST_TIMEOUT_MS);
        if ('status' in result) answers.add(result.status);
        else answers.add(result.cls, result.detail.split(':')[0]);
      }),
    );
  } finally {
    await agent.destroy();
  }
  return answers;
}

function gzipBombs(origin: string, bomb: Buffer): Promise<Answers> {
  return parallelRequests(origin, BOMBS, { path: INFER_PATH, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: bomb });
}

function queueFlood(origin: string, flood: { body: Buffer; headerLength: number }): Promise<Answers> {
  return parallelRequests(origin, FLOOD_REQUESTS, {
    path: INFER_PATH,
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(flood.headerLength) },
    body: flood.body,
  });
}

interface StalledUpload {
  open: boolean;
  status?: number;
  error?: string;
  destroy(): void;
}

/** A connection that sends a request's headers (announcing the whole body) and `sent` of its body, then nothing more. */
function stalledUpload(origin: string, flood: { body: Buffer; headerLength: number }, sent: number): StalledUpload {
  const url = new URL(origin);
  const head = [
    `POST ${INFER_PATH} HTTP/1.1`,
    `Host: ${url.host}`,
    'Content-Type: application/octet-stream',
    `Inference-Header-Content-Length: ${flood.headerLength}`,
    `Content-Length: ${flood.body.length}`,
    '',
    '',
  ].join('\r\n');
  const socket = createConnection({ host: url.hostname, port: Number(url.port) });
  let received = '';
  const upload: StalledUpload = { open: true, destroy: () => socket.destroy() };
  socket.once('connect', () => {
    socket.write(head);
    socket.write(flood.body.subarray(0, sent));
  });
  socket.on('data', (chunk: Buffer) => {
    if (upload.status !== undefined || received.length > 64) return;
    received += chunk.toString('latin1');
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(received);
    if (status) upload.status = Number(status[1]);
  });
  socket.once('error', (error: NodeJS.ErrnoException) => (upload.error = error.code ?? error.message));
  socket.once('close', () => (upload.open = false));
  return upload;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function slowBodies(origin: string, flood: { body: Buffer; headerLength: number }, checksS: number[]): Promise<{ answers: Answers; openAt: { seconds: number; open: number }[] }> {
  const uploads = Array.from({ length: SLOW_CONNECTIONS }, () => stalledUpload(origin, flood, flood.body.length >> 1));
  const started = performance.now();
  const openAt: { seconds: number; open: number }[] = [];
  for (const seconds of checksS) {
    await sleep(Math.max(0, started + seconds * 1000 - performance.now()));
    openAt.push({ seconds, open: uploads.filter((upload) => upload.open).length });
  }
  const answers = new Answers();
  for (const upload of uploads) {
    if (upload.status !== undefined) answers.add(upload.status);
    else if (!upload.open) answers.add('reset', upload.error ?? 'closed by the server');
    upload.destroy();
  }
  return { answers, openAt };
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/** The child's RSS every SAMPLE_EVERY_MS, and its VmHWM from when the sampler started (when /proc lets it be reset). */
class RssSampler {
  private peakMb = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly hwmReset: boolean;

  constructor(private readonly pid: number) {
    this.hwmReset = resetPeakRss(pid);
    this.timer = setInterval(() => this.sample(), SAMPLE_EVERY_MS);
    this.sample();
  }

  private sample(): void {
    const memory = procMemory(this.pid);
    if (memory) this.peakMb = Math.max(this.peakMb, memory.rssMb, this.hwmReset ? memory.peakMb : 0);
  }

  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return this.peakMb;
  }
}

const MIB = 1024 * 1024;

/** The split now: the server's metrics read, then its RSS; undefined when either cannot be read. */
async function memorySplit(metricsOrigin: string): Promise<MemorySplit | undefined> {
  try {
    const response = await request(`${metricsOrigin}/metrics`, { headersTimeout: 2_000, bodyTimeout: 2_000 });
    const text = await response.body.text();
    const gauge = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / MIB;
    // All three from the same scrape: an RSS read from /proc a moment later could follow an idle collection the gauges
    // did not see, and the rest would come out negative.
    const split = { rssMb: gauge('process_resident_memory_bytes'), heapMb: gauge('nodejs_heap_size_used_bytes'), externalMb: gauge('nodejs_external_memory_bytes') };
    return Object.values(split).some(Number.isNaN) ? undefined : split;
  } catch {
    return undefined;
  }
}

/** Reads the split over and over (each read waits for the server's answer) until stopped, keeping the one at the highest RSS. */
function splitAtPeak(metricsOrigin: string): () => Promise<MemorySplit | undefined> {
  let stopped = false;
  let highest: MemorySplit | undefined;
  const reading = (async () => {
    while (!stopped) {
      const split = await memorySplit(metricsOrigin);
      if (split && split.rssMb > (highest?.rssMb ?? -1)) highest = split;
      await sleep(SPLIT_EVERY_MS);
    }
  })();
  return async () => {
    stopped = true;
    await reading;
    return highest;
  };
}

async function measureAttack(
  server: ChildServer,
  metricsOrigin: string,
  attack: Attack,
  round: number,
  settleS: number,
  run: () => Promise<{ answers: Answers; openAt?: { seconds: number; open: number }[] }>,
): Promise<AttackResult> {
  await sleep(1000);
  const baseline = await memorySplit(metricsOrigin);
  const baselineMb = procMemory(server.pid)?.rssMb ?? NaN;
  const sampler = new RssSampler(server.pid);
  const stopSplits = splitAtPeak(metricsOrigin);
  const started = performance.now();
  const outcome = await run();
  const attackSeconds = (performance.now() - started) / 1000;
  await sleep(settleS * 1000);
  const afterMb = procMemory(server.pid)?.rssMb;
  const after = await memorySplit(metricsOrigin);
  const peak = await stopSplits();
  return { attack, round, target: server.name, baselineMb, peakMb: sampler.stop(), afterMb, attackSeconds, ...outcome, split: { baseline, peak, after }, serverGone: afterMb === undefined };
}

/** The attack, and from the second round on (--rounds) which round. */
const attackLabel = (result: AttackResult) => (result.round > 1 ? `${result.attack} #${result.round}` : result.attack);
const mb = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '—' : value.toFixed(0));

export function resultsTable(results: readonly AttackResult[], targetLabels: ReadonlyMap<string, string>): string {
  const header = ['attack', 'target', 'baseline MB', 'peak MB', 'after MB', ...ANSWER_COLUMNS, 'open'];
  const rows = results.map((result) => [
    attackLabel(result),
    targetLabels.get(result.target) ?? result.target,
    mb(result.baselineMb),
    mb(result.peakMb),
    result.serverGone ? 'gone' : mb(result.afterMb),
    ...ANSWER_COLUMNS.map((column) => String(result.answers.counts[column])),
    result.openAt ? result.openAt.map(({ seconds, open }) => `${open} at ${seconds} s`).join(', ') : '',
  ]);
  return markdownTable(header, rows, header.map((_, column) => column >= 2 && column < header.length - 1));
}

const split = (value: MemorySplit | undefined) => (value ? `${mb(value.rssMb)} = ${mb(value.heapMb)} + ${mb(value.externalMb)} + ${mb(value.rssMb - value.heapMb - value.externalMb)}` : '—');

/** RSS = JS heap used + external (Buffers, typed arrays) + the rest (native: ONNX Runtime, malloc, heap not in use, code), in MB. */
export function splitTable(results: readonly AttackResult[], targetLabels: ReadonlyMap<string, string>): string {
  const header = ['attack', 'target', 'before', 'at the highest RSS read', 'after'];
  const rows = results.map((result) => [
    attackLabel(result),
    targetLabels.get(result.target) ?? result.target,
    split(result.split.baseline),
    split(result.split.peak),
    split(result.split.after),
  ]);
  return markdownTable(header, rows, [false, false, true, true, true]);
}

export function detailLines(results: readonly AttackResult[], targetLabels: ReadonlyMap<string, string>): string[] {
  return results
    .filter((result) => Object.keys(result.answers.details).length > 0)
    .map(
      (result) =>
        `- ${attackLabel(result)}, ${targetLabels.get(result.target) ?? result.target}: ` +
        Object.entries(result.answers.details)
          .map(([what, count]) => `${what} ×${count}`)
          .join(', '),
    );
}

export async function runMemoryAttacks(options: MemoryAttackOptions): Promise<void> {
  const started = new Date();
  const repository = await mkdtemp(join(tmpdir(), 'nereid-memory-attacks-'));
  // Server logs outlive the run when a server went away, for the reason why.
  const logDir = await mkdtemp(join(tmpdir(), 'nereid-memory-attacks-logs-'));
  let keepLogs = false;
  const running = new Set<ChildServer>();
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: stopping the server under test`);
    void Promise.all([...running].map((server) => server.stop()))
      .then(() => rm(repository, { recursive: true, force: true }))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    await writeRepository(repository);
    const bomb = options.attacks.includes('gzip-bombs') ? await gzipBomb() : Buffer.alloc(0);
    const flood = floodBody();
    if (bomb.length) console.log(`gzip bomb: ${bomb.length} bytes inflating to ${BOMB_INFLATED_BYTES} bytes; flood body ${flood.body.length} bytes`);
    const targets = [
      { name: 'nereid', cwd: ROOT, source: sourceState() },
      ...(options.nereidBefore ? [{ name: 'before', cwd: options.nereidBefore, source: sourceState(options.nereidBefore) }] : []),
    ];
    const targetLabels = new Map(targets.map((target) => [target.name, `${target.name} (${target.source.commit})`]));
    const results: AttackResult[] = [];
    for (const target of targets) {
      console.log(`\n${target.name}: ${target.cwd}/${NEREID_CLI}, ${describeSource(target.source)}`);
      const metricsPort = await freePort();
      const metricsOrigin = `http://127.0.0.1:${metricsPort}`;
      const server = await startChild({ name: target.name, cwd: target.cwd, logDir, ...nereidServeSpec(repository, MODEL, { metricsPort }) });
      running.add(server);
      try {
        const plan = Array.from({ length: options.rounds }, (_, index) => options.attacks.map((attack) => ({ attack, round: index + 1 }))).flat();
        for (const { attack, round } of plan) {
          if (procMemory(server.pid) === undefined) break;
          const run = {
            'gzip-bombs': async () => ({ answers: await gzipBombs(server.origin, bomb) }),
            'queue-flood': async () => ({ answers: await queueFlood(server.origin, flood) }),
            'slow-bodies': () => slowBodies(server.origin, flood, options.slowBodyChecksS),
          }[attack];
          const result = await measureAttack(server, metricsOrigin, attack, round, options.settleS, run);
          results.push(result);
          console.log(
            `  ${attackLabel(result)}: RSS ${mb(result.baselineMb)} -> peak ${mb(result.peakMb)} -> ${result.serverGone ? 'server gone' : `${mb(result.afterMb)} MB ${options.settleS} s after`}` +
              ` (${result.attackSeconds.toFixed(1)} s); answers ${JSON.stringify(result.answers.toJSON())}` +
              (result.openAt ? `; open ${result.openAt.map(({ seconds, open }) => `${open} at ${seconds} s`).join(', ')}` : ''),
          );
        }
      } finally {
        await server.stop();
        running.delete(server);
      }
      if (results.some((result) => result.target === target.name && result.serverGone)) {
        keepLogs = true;
        console.log(`  the server exited during the attacks; its log: ${server.logPath}`);
      }
    }

    const table = resultsTable(results, targetLabels);
    const details = detailLines(results, targetLabels);
    const heading =
      `Memory attacks, ${started.toISOString()}; ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}; ` +
      `each server with its default limits. RSS in MB (VmRSS sampled every ${SAMPLE_EVERY_MS} ms, peak also from VmHWM); after: ${options.settleS} s after the attack; ` +
      `open: slow-body connections the server still held at each check.`;
    const markdown = [
      heading,
      '',
      ...targets.map((target) => `- ${targetLabels.get(target.name)}: ${target.cwd}, ${describeSource(target.source)}`),
      '',
      table,
      '',
      ...(details.length ? ['Other and reset answers:', ...details, ''] : []),
      'Where the memory was, MB: RSS = JS heap used + external (Buffers, typed arrays) + the rest (native: ONNX Runtime, malloc, free heap, code), from the server\'s Prometheus metrics',
      `(read every ${SPLIT_EVERY_MS} ms during an attack, each read waiting for the server's answer, so the highest RSS read may be below the peak):`,
      '',
      splitTable(results, targetLabels),
      '',
    ].join('\n');
    console.log(`\n${markdown}`);
    const base = await resultPath(resolve(options.outDir), 'memory-attacks');
    await writeFile(`${base}.json`, JSON.stringify({ started: started.toISOString(), targets, options, results }, null, 2));
    await writeFile(`${base}.md`, `${markdown}\n`);
    console.log(`wrote ${base}.json and ${base}.md`);
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    await Promise.all([...running].map((server) => server.stop()));
    await rm(repository, { recursive: true, force: true });
    if (!keepLogs) await rm(logDir, { recursive: true, force: true });
  }
}
