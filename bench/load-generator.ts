/**
 * A closed-loop HTTP load generator on undici's Pool: `concurrency` virtual clients, each with one
 * request in flight on its own keep-alive connection, sending the next as soon as the answer is read.
 * Latency is taken per request with process.hrtime.bigint(); the warm-up period is excluded.
 */
import { Pool } from 'undici';
import type { ResponseCheck } from './workload.js';

export interface LoadSpec {
  origin: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  concurrency: number;
  warmupSeconds: number;
  durationSeconds: number;
  /** Checks a response body; returns a problem or undefined. */
  check: ResponseCheck;
  /** Verify one response in this many, plus the first few. */
  verifyEvery: number;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

export interface LoadResult {
  /** Requests answered 200 inside the measured window. */
  completed: number;
  /** Non-200 answers and failed requests inside the measured window. */
  errors: number;
  errorSamples: string[];
  verified: number;
  verifyFailures: string[];
  /** The measured window, in process.hrtime.bigint() nanoseconds (for cutting CPU profiles). */
  windowStartNs: bigint;
  windowEndNs: bigint;
  seconds: number;
  requestsPerSecond: number;
  /** Milliseconds, over requests that started and finished inside the window. */
  latency: LatencySummary;
  responseBytes: number;
}

const FIRST_VERIFIED = 3;

export function percentile(sorted: Float64Array | number[], fraction: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank];
}

export function summarise(latenciesMs: number[]): LatencySummary {
  const sorted = Float64Array.from(latenciesMs).sort();
  const sum = latenciesMs.reduce((total, value) => total + value, 0);
  return {
    p50: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    mean: sorted.length ? sum / sorted.length : NaN,
    min: sorted.length ? sorted[0] : NaN,
    max: sorted.length ? sorted[sorted.length - 1] : NaN,
  };
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const pool = new Pool(spec.origin, {
    connections: spec.concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  const startNs = process.hrtime.bigint();
  const windowStartNs = startNs + BigInt(Math.round(spec.warmupSeconds * 1e9));
  const windowEndNs = windowStartNs + BigInt(Math.round(spec.durationSeconds * 1e9));
  const latencies: number[] = [];
  let completed = 0;
  let errors = 0;
  const errorSamples: string[] = [];
  let verified = 0;
  const verifyFailures: string[] = [];
  let responseBytes = 0;
  let sequence = 0;

  const noteError = (message: string) => {
    if (errorSamples.length < 5 && !errorSamples.includes(message)) errorSamples.push(message);
  };

  const client = async () => {
    for (;;) {
      const started = process.hrtime.bigint();
      if (started >= windowEndNs) return;
      const index = sequence++;
      const verify = index < FIRST_VERIFIED || index % spec.verifyEvery === 0;
      let ok = false;
      let bytes = 0;
      let problem: string | undefined;
      try {
        const response = await pool.request({ path: spec.path, method: 'POST', headers: spec.headers, body: spec.body });
        if (response.statusCode === 200 && !verify) {
          for await (const chunk of response.body) bytes += (chunk as Buffer).length;
          ok = true;
        } else {
          const chunks: Buffer[] = [];
          for await (const chunk of response.body) chunks.push(chunk as Buffer);
          const body = Buffer.concat(chunks);
          bytes = body.length;
          if (response.statusCode !== 200) {
            problem = `HTTP ${response.statusCode}: ${body.toString('utf8', 0, Math.min(300, body.length))}`;
          } else {
            ok = true;
            const failure = spec.check(response.headers, body);
            verified += 1;
            if (failure && verifyFailures.length < 5) verifyFailures.push(failure);
          }
        }
      } catch (error) {
        problem = `${(error as Error).name}: ${(error as Error).message}`;
      }
      const finished = process.hrtime.bigint();
      if (finished > windowStartNs && finished <= windowEndNs) {
        if (ok) {
          completed += 1;
          responseBytes += bytes;
          if (started >= windowStartNs) latencies.push(Number(finished - started) / 1e6);
        } else {
          errors += 1;
        }
      }
      if (problem) {
        noteError(problem);
        // A refusing server answers fast; do not spin the CPU the server needs.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: spec.concurrency }, () => client()));
  } finally {
    await pool.close().catch(() => pool.destroy());
  }
  const seconds = spec.durationSeconds;
  return {
    completed,
    errors,
    errorSamples,
    verified,
    verifyFailures,
    windowStartNs,
    windowEndNs,
    seconds,
    requestsPerSecond: completed / seconds,
    latency: summarise(latencies),
    responseBytes,
  };
}
