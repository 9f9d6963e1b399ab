/**
 * `npm run bench -- --monitoring-overhead [options]`: what drift monitoring (issue 14) costs a request
 * on the bundled Fashion-MNIST model, whose version carries a reference profile. Two `nereid serve`
 * children on the repository's models/ folder, one with --monitoring true (each answer's row scored by
 * the profile's Mahalanobis OOD detector on an extra internal tensor, and recorded in the drift
 * windows, compared with the profile every --monitor-evaluate-every rows) and one with --monitoring
 * false (the profile not read), measured in interleaved rounds by POST …/classify with one real
 * Fashion-MNIST test image as PNG per request (bench/on-off-rounds.ts). With --one-process, one child
 * serves the model twice, with and without its profile, and the rounds alternate between the two
 * models: the round-to-round drift of the machine and the process's own luck then fall on both sides
 * alike. Then, in process, what each part of monitoring costs a row, to say where the time goes.
 *
 * The V2 /infer path is not measured apart: the model's input declares image pre-processing, so it
 * takes encoded images only (a BYTES tensor), and /infer with a PNG runs the same path as /classify.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { request } from 'undici';
import { parse as parseYaml } from 'yaml';
import { parseModelConfig } from '../src/config/model-config.js';
import { pixelToneProperties } from '../src/monitoring/input-properties.js';
import { readReferenceProfile, REFERENCE_PROFILE_FILE } from '../src/monitoring/reference-profile.js';
import { MahalanobisScorer, pooledFeatures } from '../src/monitoring/representation-ood.js';
import { slidingWindowOptionsSchema } from '../src/monitoring/sliding-window.js';
import { VersionMonitor, versionMonitorOptionsSchema, type MonitoredRow } from '../src/monitoring/version-monitor.js';
import { exposedName, exposingTensors, readOnnxModel } from '../src/onnx/onnx-model-file.js';
import { ImagePreprocessor } from '../src/processing/image-preprocessor.js';
import { DEFAULT_POSTPROCESSING, rowProbabilities } from '../src/processing/output-postprocessor.js';
import { readFashionMnist } from '../test/support/fashion-mnist.js';
import { inferenceCounts, nereidServeSpec, startChild } from './child-process.js';
import { formatProfile, summariseProfile } from './cpu-profile.js';
import { ROOT } from './environment.js';
import { sessionOptions } from './in-process.js';
import { environmentLine, interleavedRounds, onOffTable, summariseOnOff, type OnOffRun, type OnOffServer } from './on-off-rounds.js';
import { markdownTable } from './report.js';

const MODEL = 'fashion_mnist';
const REPOSITORY = join(ROOT, 'models');
/** With --one-process, the same model served without its reference profile, beside it. */
const UNMONITORED = `${MODEL}_unmonitored`;
const VERSION_DIR = join(REPOSITORY, MODEL, '1');
const DEFAULT_WINDOW = slidingWindowOptionsSchema.parse({}).capacity;
const DEFAULT_EVALUATE_EVERY = versionMonitorOptionsSchema.parse({}).evaluateEvery;
/** Issue 14's goal: monitoring on costs at most this much more server CPU per request. */
const GOAL_PERCENT = 5;

export const MONITORING_OVERHEAD_HELP = `Usage: npm run bench -- --monitoring-overhead [options]

What drift monitoring costs a request on models/${MODEL} (which has a reference profile): two
server children, --monitoring true and --monitoring false, driven in interleaved rounds by a closed
loop of POST /v2/models/${MODEL}/classify, one Fashion-MNIST test image (PNG) per request; then the
cost of each part of monitoring per row, timed in process (CPU ns/row).
Issue 14's goal: server CPU per request on/off - 1 <= ${GOAL_PERCENT} %.

Options:
  --seconds S                 measured seconds per round and server                     [3]
  --rounds N                  rounds, each measuring both servers back to back          [6]
  --restarts N                fresh pairs of server processes, each running every round [1]
                              (a process's own luck — JIT, heap layout — moves its CPU per
                              request by more than monitoring costs; pairs of processes
                              average it out)
  --one-process               one server process instead of a pair, serving the model twice:
                              ${MODEL} (monitored) and ${UNMONITORED} (the same files without
                              reference.json); the rounds alternate between the two models, so
                              the process's own luck falls on both alike
  --warmup S                  unmeasured seconds per server before the rounds           [2]
  --concurrency N             closed-loop clients                                       [16]
  --images N                  distinct t10k images the requests cycle through           [500]
  --monitor-window ROWS       the monitoring server's (and the in-process monitor's) window [${DEFAULT_WINDOW}]
  --monitor-evaluate-every N  rows between two evaluations, likewise                   [${DEFAULT_EVALUATE_EVERY}]
  --in-process-rows N         rows timed per part in process                            [200000]
  --quiet-wait S              before each round, wait up to S s for the rest of the machine to go quiet [10]
  --cpu-prof                  profile both servers (node --cpu-prof) and summarise each over its rounds
  -h, --help                  this help
`;

export interface MonitoringOverheadOptions {
  seconds: number;
  rounds: number;
  restarts: number;
  warmup: number;
  concurrency: number;
  images: number;
  window: number;
  evaluateEvery: number;
  inProcessRows: number;
  cpuProf: boolean;
  quietSeconds: number;
  oneProcess: boolean;
}

export function parseMonitoringOverheadOptions(argv: string[]): MonitoringOverheadOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '6' },
      restarts: { type: 'string', default: '1' },
      warmup: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '16' },
      images: { type: 'string', default: '500' },
      'monitor-window': { type: 'string', default: String(DEFAULT_WINDOW) },
      'monitor-evaluate-every': { type: 'string', default: String(DEFAULT_EVALUATE_EVERY) },
      'in-process-rows': { type: 'string', default: '200000' },
      'cpu-prof': { type: 'boolean', default: false },
      'quiet-wait': { type: 'string', default: '10' },
      'one-process': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const number = (name: keyof typeof values, { integer = true, min = 1 } = {}) => {
    const text = String(values[name]);
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
      throw new Error(`--${name} expects ${integer ? 'an integer' : 'a number'} >= ${min}, got '${text}'`);
    }
    return value;
  };
  const images = number('images');
  if (images > 10_000) throw new Error(`--images expects at most 10000 (the t10k split), got ${images}`);
  if (values['cpu-prof'] && Number(values.restarts) > 1) throw new Error('--cpu-prof profiles one pair of servers: use it with --restarts 1');
  return {
    seconds: number('seconds', { integer: false, min: 0.1 }),
    rounds: number('rounds'),
    restarts: number('restarts'),
    warmup: number('warmup', { integer: false, min: 0 }),
    concurrency: number('concurrency'),
    images,
    window: number('monitor-window'),
    evaluateEvery: number('monitor-evaluate-every'),
    inProcessRows: number('in-process-rows', { min: 1000 }),
    cpuProf: values['cpu-prof'],
    quietSeconds: number('quiet-wait', { integer: false, min: 0 }),
    oneProcess: values['one-process'],
  };
}

/** The first `count` t10k images: their pixels, and each encoded as PNG (what a client sends). */
export async function testImages(count: number): Promise<{ pixels: Uint8Array[]; pngs: Buffer[] }> {
  const { pixels } = await readFashionMnist('t10k', count);
  const pngs = await Promise.all(pixels.map((image) => sharp(image, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer()));
  return { pixels, pngs };
}

/** Session runs timed per session: about 4000 rows' worth, at least 400 runs. */
const ortRuns = (options: MonitoringOverheadOptions, batch: number) => Math.max(400, Math.round(Math.max(2_000, options.inProcessRows / 50) / batch));

/** CPU nanoseconds (this process, all threads) per call of `body`, after an unmeasured warm-up. */
function cpuNsPerCall(calls: number, body: (index: number) => unknown): number {
  for (let index = 0; index < Math.min(calls, 5_000); index++) body(index);
  const before = process.cpuUsage();
  for (let index = 0; index < calls; index++) body(index);
  const used = process.cpuUsage(before);
  return ((used.user + used.system) * 1e3) / calls;
}

/**
 * CPU nanoseconds per run of each session on the same feeds, in alternating blocks (so that a
 * change in the machine's load falls on both alike), after an unmeasured block of each.
 */
async function cpuNsPerRun(sessions: readonly ort.InferenceSession[], feeds: readonly Record<string, ort.Tensor>[], runs: number, blocks = 10): Promise<number[]> {
  const totals = sessions.map(() => 0);
  const perBlock = Math.ceil(runs / blocks);
  for (let block = -1; block < blocks; block++) {
    for (const [which, session] of sessions.entries()) {
      const before = process.cpuUsage();
      for (let index = 0; index < perBlock; index++) await session.run(feeds[(index + Math.max(0, block) * perBlock) % feeds.length]);
      const used = process.cpuUsage(before);
      if (block >= 0) totals[which] += (used.user + used.system) * 1e3;
    }
  }
  return totals.map((total) => total / (perBlock * blocks));
}

interface PartCost {
  part: string;
  nsPerRow: number;
  /** Whether the part is in the monitored server's path per row (the rest are breakdowns of one that is). */
  perRow: boolean;
}

/**
 * Each part of monitoring timed alone on rows the server would see: the model's own outputs for the
 * test images (from an ONNX Runtime session that also outputs the detector's tensor, as the
 * monitored server's does), their probabilities, and their image properties. The sessions run at
 * `batch` rows, the batch size the monitored server formed on average.
 */
export async function inProcessCosts(options: MonitoringOverheadOptions, images: { pixels: Uint8Array[]; pngs: Buffer[] }, batch: number): Promise<PartCost[]> {
  const profile = await readReferenceProfile(join(VERSION_DIR, 'reference.json'));
  const ood = profile.ood;
  if (!ood) throw new Error(`${VERSION_DIR}/reference.json has no ood detector`);
  const config = parseModelConfig(parseYaml(readFileSync(join(REPOSITORY, MODEL, 'config.yaml'), 'utf8')), 'config.yaml');
  const input = config.input[0];
  const preprocessor = new ImagePreprocessor(input.name, input.preprocess!.image, 'FP32', input.dims);
  const postprocess = config.output[0].postprocess ?? DEFAULT_POSTPROCESSING;
  // One single-threaded session per model, as the server opens a model this small.
  const single = { ...sessionOptions(), intraOpNumThreads: 1 };
  const modelBytes = readFileSync(join(VERSION_DIR, 'model.onnx'));
  const plain = await ort.InferenceSession.create(modelBytes, single);
  // As the server exposes it: pooled per channel inside the graph when the detector pools.
  const exposure = { tensor: ood.tensor, channelMean: ood.pooling === 'spatial-mean' };
  const fetched = exposedName(exposure);
  const pooling = exposure.channelMean ? 'none' : ood.pooling;
  const exposed = await ort.InferenceSession.create(exposingTensors(readOnnxModel(modelBytes), [exposure]), single);

  const feeds: Record<string, ort.Tensor>[] = [];
  const rows: MonitoredRow[] = [];
  const representations: { data: Float32Array; dims: number[] }[] = [];
  const logits: Float32Array[] = [];
  const scorer = new MahalanobisScorer(ood);
  for (const png of images.pngs) {
    const { tensor, properties } = await preprocessor.runMeasured([png], true);
    const feed = { [input.name]: new ort.Tensor('float32', tensor.data as Float32Array, tensor.shape) };
    feeds.push(feed);
    const outputs = await exposed.run(feed);
    const representation = outputs[fetched];
    const dims = [...representation.dims].slice(1);
    representations.push({ data: representation.data as Float32Array, dims });
    logits.push(outputs[config.output[0].name].data as Float32Array);
    const [probabilities] = rowProbabilities({ datatype: 'FP32', shape: [1, logits.at(-1)!.length], data: logits.at(-1)! }, postprocess, true);
    rows.push({ probabilities, oodScore: scorer.score(pooledFeatures(representation.data as Float32Array, dims, pooling)), inputs: properties![0] });
  }
  const count = images.pngs.length;
  const calls = options.inProcessRows;
  const runs = ortRuns(options, batch);
  // Consecutive images as one batch, as the server's dynamic batcher joins requests.
  const batches = feeds.map((_, first) => {
    const rowsOf = Array.from({ length: batch }, (_, offset) => feeds[(first + offset) % count][input.name].data as Float32Array);
    const data = new Float32Array(rowsOf.reduce((sum, row) => sum + row.length, 0));
    rowsOf.forEach((row, index) => data.set(row, index * row.length));
    return { [input.name]: new ort.Tensor('float32', data, [batch, ...input.dims]) };
  });
  let sink = 0;

  const monitorOf = (evaluateEvery: number) => {
    const monitor = new VersionMonitor(profile, { window: { capacity: options.window }, evaluateEvery });
    // Full windows, as a server's are after its first `window` rows.
    for (let index = 0; index < options.window; index++) monitor.record([rows[index % count]], `warm-${index}`);
    return monitor;
  };
  const amortised = monitorOf(options.evaluateEvery);
  // A monitor evaluates at least once a window (it refuses a longer interval): record alone is timed at that interval,
  // less its share of the evaluations timed apart.
  const recordOnly = monitorOf(options.window);
  const evaluations = monitorOf(options.window);
  const evaluateNs = cpuNsPerCall(Math.max(200, calls / 500), () => (sink += evaluations.evaluate().score));
  const features = representations.map(({ data, dims }) => pooledFeatures(data, dims, pooling));
  const toneCosts = cpuNsPerCall(calls, (index) => (sink += pixelToneProperties(images.pixels[index % count], 1).brightness));
  const [plainRun, exposedRun] = (await cpuNsPerRun([plain, exposed], batches, runs)).map((ns) => ns / batch);
  const costs: PartCost[] = [
    {
      part: `VersionMonitor.record, evaluate every ${options.evaluateEvery} rows, window ${options.window}`,
      nsPerRow: cpuNsPerCall(calls, (index) => amortised.record([rows[index % count]], `request-${index}`)),
      perRow: true,
    },
    {
      part: '  of which record alone (no evaluation)',
      nsPerRow: cpuNsPerCall(calls, (index) => recordOnly.record([rows[index % count]], `request-${index}`)) - evaluateNs / options.window,
      perRow: false,
    },
    { part: `  of which evaluate ÷ ${options.evaluateEvery}`, nsPerRow: evaluateNs / options.evaluateEvery, perRow: false },
    { part: `MahalanobisScorer.score (${features[0].length} features, ${ood.classMeans.length} classes)`, nsPerRow: cpuNsPerCall(calls, (index) => (sink += scorer.score(features[index % count]))), perRow: true },
    {
      part: `pooledFeatures ${pooling} of ${fetched} [${representations[0].dims.join(',')}]`,
      nsPerRow: cpuNsPerCall(calls, (index) => (sink += pooledFeatures(representations[index % count].data, representations[index % count].dims, pooling)[0])),
      perRow: true,
    },
    {
      part: 'rowProbabilities (softmax with temperature, 10 classes)',
      nsPerRow: cpuNsPerCall(calls, (index) => (sink += rowProbabilities({ datatype: 'FP32', shape: [1, 10], data: logits[index % count] }, postprocess, true)[0][0])),
      perRow: true,
    },
    { part: 'pixelToneProperties (28×28 grey, the image properties)', nsPerRow: toneCosts, perRow: true },
    { part: `ONNX Runtime run with ${fetched} also output, − without (batch ${batch})`, nsPerRow: exposedRun - plainRun, perRow: true },
    { part: '  the run without it (for scale)', nsPerRow: plainRun, perRow: false },
  ];
  await plain.release();
  await exposed.release();
  if (sink === 42) console.error(''); // keeps the timed results alive
  return costs;
}

/** What GET …/monitor says: rows and OOD checks since load and the drift state, or why the version is not monitored. */
async function monitorStatus(server: OnOffServer, model: string): Promise<string> {
  const answer = await request(`${server.child.origin}/v2/models/${model}/monitor`);
  const body = (await answer.body.json()) as { monitored?: boolean; reason?: string; rows_since_load?: number; state?: string; ood?: { checked_since_load: number; flagged_since_load: number } };
  if (answer.statusCode !== 200 || !body.monitored) return `${server.label}: GET …/monitor: HTTP ${answer.statusCode}, not monitored (${body.reason ?? 'no reason given'})`;
  return `${server.label}: GET …/monitor: ${body.rows_since_load} rows recorded since load, state ${body.state}, OOD flagged ${body.ood?.flagged_since_load}/${body.ood?.checked_since_load}`;
}

/** Rows per execution the server ran so far (GET …/stats). */
async function meanBatchSize(server: OnOffServer, model: string): Promise<number> {
  const { inferences, executions } = await inferenceCounts(server.child.origin, model);
  return inferences / Math.max(1, executions);
}

function profileSummaries(servers: readonly OnOffServer[], run: OnOffRun, profileDir: string): string[] {
  return servers.map((server) => {
    const name = readdirSync(profileDir).find((entry) => entry.includes(`.${server.child.pid}.0.`));
    if (!name) return `no main-thread CPU profile was written for ${server.label}`;
    const windows = run.rounds.filter((round) => round.side === server.side).map((round) => ({ startNs: round.windowStartNs, endNs: round.windowEndNs }));
    return `[${server.label}] ${formatProfile(summariseProfile(join(profileDir, name), windows))}`;
  });
}

export async function runMonitoringOverhead(options: MonitoringOverheadOptions): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'nereid-monitoring-overhead-'));
  const servers: OnOffServer[] = [];
  // In --one-process mode both sides share one child.
  const stopAll = () => Promise.all([...new Set(servers.map((server) => server.child))].map((child) => child.stop()));
  try {
    const images = await testImages(options.images);
    const monitorFlags = ['--monitor-window', String(options.window), '--monitor-evaluate-every', String(options.evaluateEvery)];
    const start = async (side: OnOffServer['side']): Promise<OnOffServer> => {
      const flags = side === 'on' ? ['--monitoring', 'true', ...monitorFlags] : ['--monitoring', 'false'];
      const child = await startChild({
        name: `monitoring-${side}`,
        ...nereidServeSpec(REPOSITORY, MODEL, { extraArgs: flags }),
        nodeFlags: options.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', scratch] : undefined,
        cwd: ROOT,
        logDir: scratch,
      });
      return { side, label: `monitoring ${side}`, child };
    };
    // One process serving the model twice, with and without its profile: the rounds alternate between the two models.
    const startOne = async (): Promise<[OnOffServer, OnOffServer]> => {
      const repository = join(scratch, 'models');
      await cp(join(REPOSITORY, MODEL), join(repository, MODEL), { recursive: true });
      await cp(join(REPOSITORY, MODEL), join(repository, UNMONITORED), { recursive: true, filter: (source) => basename(source) !== REFERENCE_PROFILE_FILE });
      const child = await startChild({
        name: 'monitoring-one-process',
        ...nereidServeSpec(repository, MODEL, { extraArgs: ['--monitoring', 'true', ...monitorFlags, '--load-model', UNMONITORED] }),
        nodeFlags: options.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', scratch] : undefined,
        cwd: ROOT,
        logDir: scratch,
      });
      return [
        { side: 'on', label: `monitoring on (${MODEL})`, child },
        { side: 'off', label: `monitoring off (${UNMONITORED})`, child },
      ];
    };
    const modelOf = (server: OnOffServer) => (options.oneProcess && server.side === 'off' ? UNMONITORED : MODEL);
    const runs: OnOffRun[] = [];
    let checks: string[] = [];
    let batch = 1;
    for (let restart = 0; restart < options.restarts; restart++) {
      servers.splice(0, servers.length, ...(options.oneProcess ? await startOne() : [await start('on'), await start('off')]));
      const pairRun = await interleavedRounds(
        [servers[0], servers[1]],
        { rounds: options.rounds, seconds: options.seconds, warmupSeconds: options.warmup, concurrency: options.concurrency, quietSeconds: options.quietSeconds },
        (sequence, server) => ({ path: `/v2/models/${modelOf(server)}/classify`, headers: { 'content-type': 'image/png' }, body: images.pngs[sequence % images.pngs.length] }),
      );
      runs.push(pairRun);
      if (restart === options.restarts - 1) {
        checks = await Promise.all(servers.map((server) => monitorStatus(server, modelOf(server))));
        batch = await meanBatchSize(servers[0], MODEL);
      } else {
        await stopAll();
      }
      if (options.restarts > 1) console.error(`server pair ${restart + 1}/${options.restarts}: CPU per request on/off ${summariseOnOff(pairRun).cpuRatio.median.toFixed(3)} (median of its pairs)`);
    }
    const run: OnOffRun = { rounds: runs.flatMap((each) => each.rounds), pairs: runs.flatMap((each) => each.pairs) };
    const summary = summariseOnOff(run);
    const costs = await inProcessCosts(options, images, Math.max(1, Math.round(batch)));
    const percent = (summary.cpuRatio.median - 1) * 100;
    const offUs = summary.off.cpuUs;
    const perRowNs = costs.filter((cost) => cost.perRow).reduce((sum, cost) => sum + cost.nsPerRow, 0);
    console.log(
      `\n${MODEL} POST …/classify, one PNG per request (${(images.pngs.reduce((sum, png) => sum + png.length, 0) / images.pngs.length).toFixed(0)} bytes on average) (${options.images} distinct t10k images in turn), ` +
        `concurrency ${options.concurrency}, ${options.rounds} rounds of ${options.seconds} s each, interleaved, on ${options.restarts} fresh pair(s) of server processes; medians of rounds`,
    );
    console.log(`${environmentLine()}\n`);
    console.log(onOffTable(summary, { on: 'monitoring on', off: 'monitoring off' }));
    console.log(
      `\nserver CPU per request, monitoring on/off − 1: ${percent >= 0 ? '+' : ''}${percent.toFixed(1)} % (median of the pairs; ` +
        `the medians' ratio gives ${((summary.on.cpuUs / summary.off.cpuUs - 1) * 100).toFixed(1)} %); goal ≤ ${GOAL_PERCENT} %: ${percent <= GOAL_PERCENT ? 'met' : 'MISSED'}`,
    );
    if (options.restarts > 1) {
      const perPair = runs.map((each) => (summariseOnOff(each).cpuRatio.median - 1) * 100);
      console.log(`per pair of server processes, CPU per request on/off − 1 (median of its rounds): ${perPair.map((value) => `${value >= 0 ? '+' : ''}${value.toFixed(1)} %`).join(', ')}`);
    }
    for (const check of checks) console.log(check);
    console.log(`\nIn process, CPU per row (${options.inProcessRows} rows per part; ONNX Runtime: ${ortRuns(options, Math.max(1, Math.round(batch)))} runs each at the monitored server's mean batch size ${batch.toFixed(2)} (/stats, warm-up included), one thread):\n`);
    console.log(
      markdownTable(
        ['part', 'ns/row', '% of off server CPU/request'],
        [
          ...costs.map((cost) => [cost.part, cost.nsPerRow.toFixed(0), cost.perRow ? ((cost.nsPerRow / 1e3 / offUs) * 100).toFixed(2) : '']),
          ['sum of the parts on the path', perRowNs.toFixed(0), ((perRowNs / 1e3 / offUs) * 100).toFixed(2)],
          ['measured: server CPU/request on − off (medians)', ((summary.on.cpuUs - offUs) * 1e3).toFixed(0), (((summary.on.cpuUs - offUs) / offUs) * 100).toFixed(2)],
        ],
        [false, true, true],
      ),
    );
    if (options.cpuProf) {
      await stopAll();
      for (const line of profileSummaries(servers, run, scratch)) console.log(`\n${line}`);
    }
  } finally {
    await stopAll();
    await rm(scratch, { recursive: true, force: true });
  }
}
