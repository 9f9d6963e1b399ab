/**
 * Worker threads whose module sits beside this one: the built .js file, or, from source (.ts through tsx), a bootstrap
 * that registers tsx's loader in the thread before importing the module, since Node 20 workers don't inherit --import.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

const FROM_SOURCE = import.meta.url.endsWith('.ts');

/** The entry of a worker module in this folder (`onnx-runtime-worker`, `tfjs-worker`, `javascript-worker`), built or from source. */
export function siblingWorkerEntry(module: string): URL {
  return new URL(`./${module}${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url);
}

/** Starts a worker thread on `entry` (from siblingWorkerEntry) with `options`, from source or built alike. */
export function startWorkerThread(entry: URL, options: WorkerOptions): Worker {
  if (!FROM_SOURCE) return new Worker(entry, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((api) => api.register()).then(() => import(${JSON.stringify(entry.href)}))`;
  return new Worker(bootstrap, { ...options, eval: true });
}
