/**
 * Command-line options of `npm run bench`. Parsed with node:util's parseArgs; every option has a
 * default here so the rest of the benchmark reads one validated object.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const TARGETS = ['ceiling', 'nereid', 'before', 'nereid-cache', 'peer', 'floor'] as const;
export type Target = (typeof TARGETS)[number];
/** What --targets means when not given: every target but nereid-cache (which measures the response cache, not inference). */
export const DEFAULT_TARGETS: readonly Target[] = ['ceiling', 'nereid', 'peer', 'floor'];
export const ENCODINGS = ['json', 'binary', 'grpc', 'shm'] as const;
export type Encoding = (typeof ENCODINGS)[number];
/** Encodings over HTTP; 'grpc' is KServe V2 gRPC ModelInfer with raw_input_contents, which only Nereid speaks. */
export type HttpEncoding = Exclude<Encoding, 'grpc'>;
export type ServerTarget = Exclude<Target, 'ceiling'>;
/** Targets that are Nereid (and so answer gRPC and /stats). */
export const NEREID_TARGETS: readonly ServerTarget[] = ['nereid', 'before', 'nereid-cache'];
/** Nereid targets that compute every answer (no response cache): the ones with ×ceiling, ×peer, CPU per inference and goals. */
export const COMPUTING_NEREID_TARGETS: readonly ServerTarget[] = ['nereid', 'before'];

export interface BenchOptions {
  model: string;
  modelRepository: string;
  concurrency: number[];
  /** Seconds measured per cell (and per in-process batch size unless ceilingDuration is given). */
  duration: number;
  /** Seconds of load before each cell's measurement starts; excluded from the results. */
  warmup: number;
  ceilingDuration: number;
  /** Rounds: 1 measures each target's cells in turn; more start every server at once and measure each cell's targets back to back, once per round. */
  rounds: number;
  encodings: Encoding[];
  /** Per-input dims after the batch dimension (the full shape for a model without batching). */
  inputShapes: Map<string, number[]>;
  maxBatchSize?: number;
  queueDelayUs?: number;
  instances?: number;
  /** Nereid run: parameters.intra_op_thread_count (ONNX Runtime threads per instance). */
  intraOpThreads?: number;
  /** Nereid run: config parameters (KEY=VALUE), e.g. execution_thread=worker. */
  parameters?: Record<string, string>;
  /** Batch sizes for the in-process ceiling; default 1, 2, 4, … up to max_batch_size. */
  batchSizes?: number[];
  targets: Target[];
  /** Server children started under `node --cpu-prof`, with a summary printed per cell window. */
  cpuProf: ServerTarget[];
  /** Verify one response in this many (plus the first few of each cell). */
  verifyEvery: number;
  /** Before each measurement, wait up to this many seconds for the rest of the machine to go quiet. */
  quietWait: number;
  /** Measure a cell again (up to this many times) when other processes used > 15% of a core during it; keep the quietest. */
  retryNoisy: number;
  /** gRPC cells: client channels (each its own HTTP/2 connection) the virtual clients share, round robin. */
  grpcChannels: number;
  /** nereid-cache: the server's --cache-config. */
  cacheConfig: string;
  /** Absolute path of another checkout of this repository, served as the target 'before' (added to the targets when given). */
  nereidBefore?: string;
  outDir: string;
  /** Extra flags for every Nereid child (nereid, before, nereid-cache), e.g. --max-queue-size=64. */
  serverArgs: string[];
  /** Goodput mode: multiples of each target's closed-loop capacity to offer open-loop (absent: the closed-loop tables). */
  openLoop?: number[];
  /** Goodput mode: seconds from a request's scheduled arrival after which the client gives up. */
  clientTimeout: number;
  /** Goodput mode: connections the open-loop generator opens to the server before the load. */
  openLoopConnections: number;
  /** Goodput mode: worker threads the open-loop generator runs on. */
  generatorThreads: number;
  /** Goodput mode: offer every target multiples of this target's capacity (absent: each its own). */
  capacityFrom?: ServerTarget;
}

/** What --targets means in goodput mode when not given. */
export const DEFAULT_OPEN_LOOP_TARGETS: readonly ServerTarget[] = ['nereid'];
/** Targets goodput mode can measure: servers computing every answer, and the floor to show how far the generator gets. */
export const OPEN_LOOP_TARGETS: readonly ServerTarget[] = ['nereid', 'before', 'peer', 'floor'];

export const HELP = `Usage: npm run bench -- [options]

Measures one model four ways in one run and prints one table:
  ceiling       in-process ONNX Runtime (intraOpNumThreads = cores), batch 1, 2, 4, … max_batch_size
  nereid        Nereid over HTTP (child process: dist/cli.js serve, built when stale), JSON and binary tensor data, and over
                gRPC (encoding 'grpc': ModelInfer with raw_input_contents)
  peer          a plain fastify server calling session.run once per request (bench/peer-server.ts)
  floor         fastify answering a constant small JSON to the same request bodies (bench/floor-server.ts)
  before        (only with --nereid-before DIR) the same as nereid, but DIR/dist/cli.js run in DIR: another
                checkout (e.g. a git worktree of an older commit), measured in the same cells for before/after
  nereid-cache  (only when named) Nereid with --cache-config and the model's response_cache enabled: the
                request is computed once (warm), then every measured request is a cache hit; each answer
                checked is compared byte for byte with the computed one, and /stats cache_hit counts are shown
HTTP load comes from a closed-loop generator on undici's Pool: one request in flight per virtual client.
gRPC load is the same closed loop on @grpc/grpc-js: the virtual clients share --grpc-channels channels.

Options:
  --model NAME               model folder in --model-repository, or 'simple' for Triton's generated
                             add/sub INT32 model (max_batch_size 64, dynamic_batching)   [simple]
  --model-repository DIR     Triton-layout model repository                                   [models]
  --concurrency LIST         virtual clients per cell                                       [1,4,16,64]
  --duration SECONDS         measured seconds per cell                                            [5]
  --warmup SECONDS           unmeasured load before each cell                                     [1]
  --ceiling-duration SECONDS measured seconds per in-process batch size               [--duration]
  --rounds N                 for a machine whose speed drifts over minutes: start every server child at
                             once and measure in N rounds; each round measures the in-process ceiling,
                             then each cell's targets back to back (order reversed every other round).
                             The tables combine the rounds (answered ÷ measured seconds, percentiles of
                             all samples, CPU over all windows); 'Per-round ratios' shows each round's
                             ×ceiling, ×peer and ×floor and their median. 1: one target after another [1]
  --encodings LIST           json,binary,grpc,shm (grpc: Nereid targets only; ×floor against the HTTP
                             binary floor; shm: inputs in a system shared memory region the Nereid
                             targets register, outputs binary; ×peer and ×floor against binary)
                                                                                        [json,binary]
  --grpc-channels N          gRPC client channels (HTTP/2 connections) shared by the virtual clients [1]
  --cache-config SPEC        nereid-cache: the server's --cache-config                [local,size=268435456]
  --input-shape NAME=DIMS    dims after the batch dimension, for dynamic dims (repeatable),
                             e.g. --input-shape x=3,48,320
  --max-batch-size N         Nereid run: max_batch_size in a temporary config override
  --queue-delay-us N         Nereid run: dynamic_batching.max_queue_delay_microseconds      [0]
  --instances N              Nereid run: instance_group count (KIND_CPU)
  --intra-op-threads N       Nereid run: parameters.intra_op_thread_count             [cores/instances]
  --parameter KEY=VALUE      Nereid run: a config parameter, e.g. execution_thread=worker (repeatable)
  --batch-sizes LIST         in-process batch sizes                       [1,2,4,… max_batch_size]
  --targets LIST             which of ceiling,nereid,before,nereid-cache,peer,floor to run
                                                                         [ceiling,nereid,peer,floor]
  --nereid-before DIR        also run the target 'before': node dist/cli.js serve in DIR (built when stale; another
                             checkout of this repository with its node_modules), same repository and flags
  --cpu-prof LIST            run these server children (nereid,before,nereid-cache,peer,floor) under node --cpu-prof and
                             summarise self/inclusive time inside each measured window (not with --rounds > 1:
                             an idle child under --cpu-prof uses about a third of a core)
  --verify-every N           check one response in N for status, outputs and shapes            [200]
  --quiet-wait SECONDS       before each measurement wait up to this long until other processes use
                             < 10% of a core (for shared machines; 0: do not wait)                [0]
  --retry-noisy N            measure a cell again, up to N times, when other processes used more than
                             15% of a core during it; the quietest attempt is kept (with --rounds:
                             per round)                                                           [0]
  --server-arg=FLAG          an extra flag for every Nereid child, e.g. --server-arg=--max-queue-size=64
                             (repeatable; write it with '=' as the flag starts with '-')
  --out DIR                  where the .json and .md results go                       [bench/results]

Goodput mode (overload; issue 12):
  --open-loop LIST           multiples of capacity to offer, e.g. 1,2,4. First each target's closed-loop
                             capacity (req/s at the largest --concurrency, --warmup + --duration) and its
                             unloaded latency (p50 of 20 requests one at a time) are measured; then each
                             multiple is offered open-loop for --warmup + --duration seconds: Poisson
                             arrivals at multiple × capacity, latency from the scheduled arrival, each
                             request given up after --client-timeout. Per target and multiple it prints
                             offered and achieved rate, goodput (200s/s) and goodput ÷ capacity, success
                             p50/p99, refusals by status (with Retry-After) and their p50, client timeouts,
                             the server's RSS (before, peak during the load, 2 s after it stopped: VmRSS
                             of the child) and the recovery time: seconds from the last request sent until
                             a probe (one request at a time on its own connection, every 50 ms) is
                             answered 200 within max(2 × unloaded p50, unloaded p50 + 5 ms); '>30 s' if
                             none is. 'GENERATOR BEHIND' marks a row whose generator sent < 95% of the
                             requests its schedule held in the window (Poisson: about the offered rate)
                             or whose event loop was > 90% busy: its figures describe the generator as
                             much as the server.
                             Targets: nereid (and before with --nereid-before; peer, floor if named in
                             --targets: the floor shows how fast the generator can go on this machine).
                             Encoding: binary if --encodings has it, else json.
  --client-timeout SECONDS   open loop: a client gives up this long after its scheduled arrival    [10]
  --open-loop-connections N  open loop: keep-alive connections opened before the load; arrivals
                             finding all busy wait in the client (shown as 'client queue max'). Fewer
                             cost the generator less but keep the excess load in the client, where the
                             server never sees it; keep it above the server's queue limit     [1024]
  --generator-threads N      open loop: worker threads generating the load (rate and connections split
                             between them); more reach higher rates but take cores from the server [1]
  --capacity-from TARGET     open loop: offer every target multiples of this target's capacity (e.g. nereid,
                             so that before and nereid face the same load); ÷ capacity stays each
                             target's own                                                [each its own]
  --latency-batching         instead of all the above, latency-aware vs fixed-delay batching (issue 15); see
                             npm run bench -- --latency-batching --help
  -h, --help                 this help
  --memory-attacks           instead of all the above, the memory attacks of issue 12 (gzip bombs, a queue
                             flood, stalled bodies) with the server's RSS sampled; see
                             npm run bench -- --memory-attacks --help
  --monitoring-overhead      instead of all the above, what drift monitoring costs a request (issue 14); see
                             npm run bench -- --monitoring-overhead --help
  --padding                  instead of all the above, text of varied lengths batched with pad_value against
                             without; see npm run bench -- --padding --help
  --core-cost                instead of all the above, what the core costs a request of the tiny model in
                             process, without a transport; see npm run bench -- --core-cost --help

Any --max-batch-size, --queue-delay-us, --instances, --intra-op-threads or --parameter copies the model folder into a temporary
repository whose config.yaml is the original config plus those fields (and dynamic_batching).

Examples:
  npm run bench -- --model simple --concurrency 1,4,16,64
  npm run bench -- --model ocr_recognition --input-shape x=3,48,320 --max-batch-size 8 --concurrency 1,4,16
  npm run bench -- --model simple --encodings json,binary,grpc --targets ceiling,nereid,floor
  npm run bench -- --model simple --encodings json,binary --targets nereid-cache,floor
  npm run bench -- --model simple --concurrency 1,64 --nereid-before /tmp/nereid-before
  npm run bench -- --model simple --concurrency 1,64 --duration 2 --ceiling-duration 1 --rounds 5
  npm run bench -- --model simple --open-loop 1,2,4 --nereid-before /tmp/nereid-before --duration 10
  npm run bench -- --model ocr_recognition --input-shape x=3,48,320 --max-batch-size 8 --concurrency 16 \\
    --open-loop 1,2,4 --duration 20 --server-arg=--max-queue-size=64
  npm run bench -- --memory-attacks --nereid-before /tmp/nereid-before
`;

/** Throws unless `dir` looks like a checkout of this repository that can build and serve: src/cli.ts and node_modules. */
export function checkNereidBefore(dir: string): void {
  for (const needed of ['src/cli.ts', 'node_modules']) {
    if (!existsSync(join(dir, needed))) throw new Error(`--nereid-before ${dir}: no ${needed} there (a checkout of this repository with its node_modules)`);
  }
}

/**
 * The flags of a bench that measures in rounds of its own child servers (latency-batching, padding): each cell's
 * seconds and warm-up, the rounds, where results go, and help.
 */
export const ROUNDS_BENCH_OPTIONS = {
  duration: { type: 'string', default: '4' },
  warmup: { type: 'string', default: '1' },
  rounds: { type: 'string', default: '3' },
  out: { type: 'string', default: 'bench/results' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** A number given to `--name`: finite, > 0 (>= 0 with `zero`), whole with `integer`; throws naming the flag otherwise. */
export function numberOption(name: string, text: string, { integer = false, zero = false } = {}): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (!zero && value === 0) || (integer && !Number.isInteger(value))) {
    throw new Error(`--${name} expects a ${integer ? 'whole ' : ''}number ${zero ? '>= 0' : '> 0'}, got '${text}'`);
  }
  return value;
}

function positiveNumber(name: string, value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`--${name} expects a positive number, got '${value}'`);
  return parsed;
}

function positiveNumbers(name: string, value: string): number[] {
  const list = value.split(',').map((part) => part.trim()).filter(Boolean).map((part) => positiveNumber(name, part));
  if (list.length === 0) throw new Error(`--${name} expects a list of positive numbers, got '${value}'`);
  return list;
}

function nonNegativeInteger(name: string, value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`--${name} expects a non-negative integer, got '${value}'`);
  return parsed;
}

function positiveIntegers(name: string, value: string): number[] {
  const list = value.split(',').map((part) => part.trim()).filter(Boolean).map((part) => nonNegativeInteger(name, part));
  if (list.length === 0 || list.some((n) => n === 0)) throw new Error(`--${name} expects a list of positive integers, got '${value}'`);
  return list;
}

function choices<T extends string>(name: string, value: string, allowed: readonly T[]): T[] {
  const list = value.split(',').map((part) => part.trim()).filter(Boolean);
  for (const item of list) {
    if (!(allowed as readonly string[]).includes(item)) throw new Error(`--${name}: '${item}' is not one of ${allowed.join(', ')}`);
  }
  return [...new Set(list)] as T[];
}

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: 'string', default: 'simple' },
      'model-repository': { type: 'string', default: 'models' },
      concurrency: { type: 'string', default: '1,4,16,64' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      'ceiling-duration': { type: 'string' },
      rounds: { type: 'string', default: '1' },
      encodings: { type: 'string', default: 'json,binary' },
      'input-shape': { type: 'string', multiple: true, default: [] },
      'max-batch-size': { type: 'string' },
      'queue-delay-us': { type: 'string' },
      instances: { type: 'string' },
      'intra-op-threads': { type: 'string' },
      parameter: { type: 'string', multiple: true },
      'batch-sizes': { type: 'string' },
      targets: { type: 'string' },
      'grpc-channels': { type: 'string', default: '1' },
      'cache-config': { type: 'string', default: 'local,size=268435456' },
      'nereid-before': { type: 'string' },
      'cpu-prof': { type: 'string', default: '' },
      'verify-every': { type: 'string', default: '200' },
      'quiet-wait': { type: 'string', default: '0' },
      'retry-noisy': { type: 'string', default: '0' },
      out: { type: 'string', default: 'bench/results' },
      'server-arg': { type: 'string', multiple: true, default: [] },
      'open-loop': { type: 'string' },
      'client-timeout': { type: 'string', default: '10' },
      'open-loop-connections': { type: 'string', default: '1024' },
      'generator-threads': { type: 'string', default: '1' },
      'capacity-from': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const inputShapes = new Map<string, number[]>();
  for (const spec of values['input-shape']) {
    const match = /^([^=]+)=([\d,\s]+)$/.exec(spec);
    if (!match) throw new Error(`--input-shape expects NAME=D1,D2,…, got '${spec}'`);
    inputShapes.set(match[1], positiveIntegers('input-shape', match[2]));
  }
  const duration = positiveNumber('duration', values.duration);
  const warmup = Number(values.warmup);
  if (!Number.isFinite(warmup) || warmup < 0) throw new Error(`--warmup expects seconds >= 0, got '${values.warmup}'`);
  const maxBatchSize = values['max-batch-size'] === undefined ? undefined : nonNegativeInteger('max-batch-size', values['max-batch-size']);
  const instances = values.instances === undefined ? undefined : positiveIntegers('instances', values.instances)[0];
  const openLoop = values['open-loop'] === undefined ? undefined : positiveNumbers('open-loop', values['open-loop']);
  const targets = choices('targets', values.targets ?? (openLoop ? DEFAULT_OPEN_LOOP_TARGETS : DEFAULT_TARGETS).join(','), TARGETS);
  const nereidBefore = values['nereid-before'] === undefined ? undefined : resolve(values['nereid-before']);
  if (nereidBefore === undefined && targets.includes('before')) throw new Error(`--targets before needs --nereid-before DIR`);
  if (nereidBefore !== undefined) {
    checkNereidBefore(nereidBefore);
    if (!targets.includes('before')) targets.push('before');
  }
  const rounds = positiveIntegers('rounds', values.rounds)[0];
  const cpuProf = choices('cpu-prof', values['cpu-prof'], ['nereid', 'before', 'nereid-cache', 'peer', 'floor'] as const);
  if (openLoop) {
    const others = targets.filter((target) => !(OPEN_LOOP_TARGETS as readonly string[]).includes(target));
    if (others.length > 0) throw new Error(`--open-loop measures ${OPEN_LOOP_TARGETS.join(', ')}; not ${others.join(', ')}`);
    if (rounds > 1 || cpuProf.length > 0) throw new Error('--open-loop does not go with --rounds or --cpu-prof');
  }
  const capacityFrom = values['capacity-from'] as ServerTarget | undefined;
  if (capacityFrom !== undefined && !(openLoop && targets.includes(capacityFrom))) {
    throw new Error(`--capacity-from ${capacityFrom} needs --open-loop and ${capacityFrom} among the targets (${targets.join(', ')})`);
  }
  if (rounds > 1 && cpuProf.length > 0) {
    throw new Error(
      '--cpu-prof does not go with --rounds > 1: every server child then runs from start to end, and one under node --cpu-prof ' +
        'uses about a third of a core even when idle, which would load the other targets\' measurements; profile with --rounds 1',
    );
  }
  return {
    model: values.model,
    modelRepository: values['model-repository'],
    concurrency: positiveIntegers('concurrency', values.concurrency),
    duration,
    warmup,
    ceilingDuration: values['ceiling-duration'] === undefined ? duration : positiveNumber('ceiling-duration', values['ceiling-duration']),
    rounds,
    encodings: choices('encodings', values.encodings, ENCODINGS),
    inputShapes,
    maxBatchSize,
    queueDelayUs: values['queue-delay-us'] === undefined ? undefined : nonNegativeInteger('queue-delay-us', values['queue-delay-us']),
    instances,
    intraOpThreads: values['intra-op-threads'] === undefined ? undefined : positiveIntegers('intra-op-threads', values['intra-op-threads'])[0],
    parameters: values.parameter?.length
      ? Object.fromEntries(
          values.parameter.map((pair) => {
            const at = pair.indexOf('=');
            if (at <= 0) throw new Error(`--parameter needs KEY=VALUE, got '${pair}'`);
            return [pair.slice(0, at), pair.slice(at + 1)];
          }),
        )
      : undefined,
    batchSizes: values['batch-sizes'] === undefined ? undefined : positiveIntegers('batch-sizes', values['batch-sizes']),
    targets,
    cpuProf,
    verifyEvery: positiveIntegers('verify-every', values['verify-every'])[0],
    quietWait: nonNegativeInteger('quiet-wait', values['quiet-wait']),
    retryNoisy: nonNegativeInteger('retry-noisy', values['retry-noisy']),
    grpcChannels: positiveIntegers('grpc-channels', values['grpc-channels'])[0],
    cacheConfig: values['cache-config'],
    nereidBefore,
    outDir: values.out,
    serverArgs: values['server-arg'],
    openLoop,
    clientTimeout: positiveNumber('client-timeout', values['client-timeout']),
    openLoopConnections: positiveIntegers('open-loop-connections', values['open-loop-connections'])[0],
    generatorThreads: positiveIntegers('generator-threads', values['generator-threads'])[0],
    capacityFrom,
  };
}
