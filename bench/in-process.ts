/**
 * The ceiling: the same model file in this process, one ONNX Runtime session with as many intra-op
 * threads as the machine has cores, run back to back at each batch size. No HTTP, no copies beyond
 * what session.run itself does.
 */
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { machineBusySeconds } from './child-process.js';
import { summarise, type LatencySummary } from './load-generator.js';
import { feedsOf, type OutputSpec, type Workload } from './workload.js';

export interface CeilingPoint {
  batch: number;
  runs: number;
  seconds: number;
  runsPerSecond: number;
  inferencesPerSecond: number;
  /** Milliseconds per session.run of the whole batch. */
  latency: LatencySummary;
  /** CPU cores this process used (ONNX Runtime's threads included), and everything else on the machine. */
  ownCores: number;
  otherCores?: number;
  /** CPU seconds this process used over the window per inference (row): what Nereid's CPU per inference is compared with. */
  cpuSecondsPerInference: number;
  /** The latency samples themselves (ms per run), to combine --rounds; left out of the JSON. */
  latenciesMs: number[];
}

export function sessionOptions(): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
}

export function openSession(modelPath: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, sessionOptions());
}

/** Output names, element types and one request's shapes, learnt from one batch-1 run. */
export async function outputSpecs(session: ort.InferenceSession, workload: Workload): Promise<OutputSpec[]> {
  const results = await session.run(feedsOf(workload, 1));
  return session.outputNames.map((name) => {
    const data = results[name].data as ArrayBufferView;
    return {
      name,
      ortType: results[name].type,
      shape: [...results[name].dims],
      expected: Buffer.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
    };
  });
}

export async function measureBatch(
  session: ort.InferenceSession,
  workload: Workload,
  batch: number,
  warmupSeconds: number,
  durationSeconds: number,
): Promise<CeilingPoint> {
  const feeds = feedsOf(workload, batch);
  const warmupEnd = process.hrtime.bigint() + BigInt(Math.round(warmupSeconds * 1e9));
  let warmRuns = 0;
  while (warmRuns < 2 || process.hrtime.bigint() < warmupEnd) {
    await session.run(feeds);
    warmRuns += 1;
  }
  const latencies: number[] = [];
  const cpuAtStart = process.cpuUsage();
  const busyAtStart = machineBusySeconds();
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(durationSeconds * 1e9));
  let now = start;
  while (now < end || latencies.length < 3) {
    const before = now;
    await session.run(feeds);
    now = process.hrtime.bigint();
    latencies.push(Number(now - before) / 1e6);
  }
  const seconds = Number(now - start) / 1e9;
  const cpu = process.cpuUsage(cpuAtStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const ownCores = cpuSeconds / seconds;
  const busyAtEnd = machineBusySeconds();
  const otherCores = busyAtStart === undefined || busyAtEnd === undefined ? undefined : Math.max(0, (busyAtEnd - busyAtStart) / seconds - ownCores);
  const runsPerSecond = latencies.length / seconds;
  return {
    batch,
    runs: latencies.length,
    seconds,
    runsPerSecond,
    inferencesPerSecond: runsPerSecond * batch,
    latency: summarise(latencies),
    ownCores,
    otherCores,
    cpuSecondsPerInference: cpuSeconds / (latencies.length * batch),
    latenciesMs: latencies,
  };
}

/** 1, 2, 4, … up to maxBatchSize, and maxBatchSize itself when it is not a power of two. */
export function defaultBatchSizes(maxBatchSize: number): number[] {
  if (maxBatchSize <= 1) return [1];
  const sizes: number[] = [];
  for (let size = 1; size < maxBatchSize; size *= 2) sizes.push(size);
  sizes.push(maxBatchSize);
  return sizes;
}
