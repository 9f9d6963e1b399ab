/**
 * Runs the open-loop generator on worker threads (bench/open-loop-worker.ts), the offered rate and
 * the connections split evenly between them (independent Poisson streams add up to one at the sum
 * of their rates). The main thread stays free for what must not wait behind the generator: reading
 * the server's memory and probing it for recovery while the load runs and ends.
 */
import { Worker } from 'node:worker_threads';
import { combineOpenLoop, epochNow, type OpenLoopPart, type OpenLoopResult, type OpenLoopSpec } from './open-loop.js';
import type { HttpEncoding } from './options.js';
import type { OutputSpec } from './workload.js';

/** What a thread is sent: the spec less the check (a function), which the thread rebuilds from these fields. */
export interface OpenLoopThreadSpec extends Omit<OpenLoopSpec, 'check' | 'body'> {
  body: Uint8Array;
  /** 'floor' answers a constant JSON object; 'infer' is a V2 infer response with `outputs`. */
  checkKind: 'infer' | 'floor';
  outputs: OutputSpec[];
  encoding: HttpEncoding;
}

export interface RunningOpenLoop {
  /** Wall-clock ms the load starts at. */
  startEpochMs: number;
  /** Resolves when every thread has sent its last request (wall-clock ms of the last one). */
  stopped: Promise<number>;
  /** Resolves when every request has been answered, refused, failed or timed out. */
  result: Promise<OpenLoopResult>;
}

/**
 * A worker thread does not run node's --import hooks on Node 20, so tsx's loader is registered in
 * the thread itself before the TypeScript module is imported.
 */
const WORKER_BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => {
  register();
  return import(${JSON.stringify(new URL('./open-loop-worker.ts', import.meta.url).href)});
});`;

type FromThread = { type: 'ready' } | { type: 'stopped'; epochMs: number } | { type: 'done'; part: OpenLoopPart };

/** Starts `threads` generator threads, waits until each has opened its connections, then starts them together. */
export async function startOpenLoop(spec: OpenLoopThreadSpec, threads: number): Promise<RunningOpenLoop> {
  const workers: Worker[] = [];
  const ready: Promise<void>[] = [];
  const stopped: Promise<number>[] = [];
  const done: Promise<OpenLoopPart>[] = [];
  for (let index = 0; index < threads; index++) {
    const worker = new Worker(WORKER_BOOT, {
      eval: true,
      workerData: {
        ...spec,
        ratePerSecond: spec.ratePerSecond / threads,
        connections: Math.max(1, Math.round(spec.connections / threads)),
        seed: (spec.seed ?? 1) * 1000 + index,
      } satisfies OpenLoopThreadSpec,
    });
    workers.push(worker);
    const failed = new Promise<never>((_, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`open-loop generator thread ${index} exited (code ${code}) before it was done`)));
    });
    // Each message settles the promise of its kind; a thread that dies rejects those not yet settled.
    const message = <T extends FromThread['type']>(type: T) =>
      Promise.race([
        new Promise<Extract<FromThread, { type: T }>>((resolve) => {
          const listen = (received: FromThread) => {
            if (received.type !== type) return;
            worker.off('message', listen);
            resolve(received as Extract<FromThread, { type: T }>);
          };
          worker.on('message', listen);
        }),
        failed,
      ]);
    ready.push(message('ready').then(() => undefined));
    stopped.push(message('stopped').then((received) => received.epochMs));
    done.push(message('done').then((received) => received.part));
    // Unobserved until the load starts: keep a thread that fails early from being an unhandled rejection.
    for (const promise of [stopped[index], done[index]]) promise.catch(() => {});
  }
  const stopAll = () => Promise.all(workers.map((worker) => worker.terminate()));
  try {
    await Promise.all(ready);
  } catch (error) {
    await stopAll();
    throw error;
  }
  // A little ahead, so every thread has the start message before its first arrival is due.
  const startEpochMs = epochNow() + 50;
  for (const worker of workers) worker.postMessage({ startEpochMs });
  return {
    startEpochMs,
    stopped: Promise.all(stopped).then((times) => Math.max(...times)),
    result: Promise.all(done)
      .then((parts) => combineOpenLoop(parts, spec.ratePerSecond, spec.durationSeconds))
      .finally(stopAll),
  };
}
