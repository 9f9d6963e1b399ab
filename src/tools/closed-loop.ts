/**
 * A closed loop of requests: `concurrency` virtual clients, each sending its next request as soon as
 * the previous one is answered, with a warm-up excluded from the figures. The transport is the
 * caller's (`send`): HTTP and gRPC in the benchmark (bench/load-generator.ts,
 * bench/grpc-load-generator.ts), the server core in process for `nereid tune`. Latency is taken per
 * request with process.hrtime.bigint().
 */
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
  /** Successful answers over the whole run, warm-up included (to compare with the server's own counts). */
  answered: number;
  /** Failed requests over the whole run, warm-up included. */
  failed: number;
  errorSamples: string[];
  /** Answers checked (warm-up included), and how many of them were wrong. */
  verified: number;
  verifyFailed: number;
  verifyFailures: string[];
  /** The measured window, in process.hrtime.bigint() nanoseconds (for cutting CPU profiles). */
  windowStartNs: bigint;
  windowEndNs: bigint;
  seconds: number;
  requestsPerSecond: number;
  /** Milliseconds, over requests that started and finished inside the window. */
  latency: LatencySummary;
  responseBytes: number;
  /** The latency samples themselves (ms), to combine --rounds; left out of the JSON. */
  latenciesMs: number[];
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

/** What one request came to, as a transport reports it to the closed loop. */
export interface Outcome {
  ok: boolean;
  /** Response bytes read (body, or the whole gRPC message). */
  bytes: number;
  /** Why the request failed (ok false), for the error samples. */
  problem?: string;
  /** Set when the answer was verified: undefined = it passed, a string = what is wrong with it. */
  verification?: { failure?: string };
}

/** The timing of a closed loop, shared by every transport. */
export interface LoopSpec {
  concurrency: number;
  warmupSeconds: number;
  durationSeconds: number;
  /** Verify one response in this many, plus the first few. */
  verifyEvery: number;
}

/**
 * The closed loop itself: `concurrency` virtual clients, each sending its next request (`send`, with
 * client index and whether to verify the answer) as soon as the previous one is answered, until the
 * measured window ends. Answers finishing inside the window count; latencies are taken for requests
 * that started and finished inside it.
 */
export async function runClosedLoop(spec: LoopSpec, send: (client: number, verify: boolean) => Promise<Outcome>): Promise<LoadResult> {
  const startNs = process.hrtime.bigint();
  const windowStartNs = startNs + BigInt(Math.round(spec.warmupSeconds * 1e9));
  const windowEndNs = windowStartNs + BigInt(Math.round(spec.durationSeconds * 1e9));
  const latencies: number[] = [];
  let completed = 0;
  let errors = 0;
  let answered = 0;
  let failed = 0;
  const errorSamples: string[] = [];
  let verified = 0;
  let verifyFailed = 0;
  const verifyFailures: string[] = [];
  let responseBytes = 0;
  let sequence = 0;

  const noteError = (message: string) => {
    if (errorSamples.length < 5 && !errorSamples.includes(message)) errorSamples.push(message);
  };

  const client = async (clientIndex: number) => {
    for (;;) {
      const started = process.hrtime.bigint();
      if (started >= windowEndNs) return;
      const index = sequence++;
      const verify = index < FIRST_VERIFIED || index % spec.verifyEvery === 0;
      let outcome: Outcome;
      try {
        outcome = await send(clientIndex, verify);
      } catch (error) {
        outcome = { ok: false, bytes: 0, problem: `${(error as Error).name}: ${(error as Error).message}` };
      }
      const finished = process.hrtime.bigint();
      if (outcome.ok) answered += 1;
      else failed += 1;
      if (outcome.verification) {
        verified += 1;
        if (outcome.verification.failure !== undefined) {
          verifyFailed += 1;
          if (verifyFailures.length < 5) verifyFailures.push(outcome.verification.failure);
        }
      }
      if (finished > windowStartNs && finished <= windowEndNs) {
        if (outcome.ok) {
          completed += 1;
          responseBytes += outcome.bytes;
          if (started >= windowStartNs) latencies.push(Number(finished - started) / 1e6);
        } else {
          errors += 1;
        }
      }
      if (!outcome.ok) {
        noteError(outcome.problem ?? 'failed');
        // A refusing server answers fast; do not spin the CPU the server needs.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  };

  await Promise.all(Array.from({ length: spec.concurrency }, (_, index) => client(index)));
  const seconds = spec.durationSeconds;
  return {
    completed,
    errors,
    answered,
    failed,
    errorSamples,
    verified,
    verifyFailed,
    verifyFailures,
    windowStartNs,
    windowEndNs,
    seconds,
    requestsPerSecond: completed / seconds,
    latency: summarise(latencies),
    responseBytes,
    latenciesMs: latencies,
  };
}
