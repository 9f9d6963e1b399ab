/**
 * One thread of the open-loop generator (bench/open-loop-threads.ts starts it): opens its
 * connections, says 'ready', starts at the time it is sent, says 'stopped' when its last request
 * has gone, and 'done' with its counts and samples once every request has settled.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { prepareOpenLoop, type OpenLoopSpec } from './open-loop.js';
import { floorResponseCheck, inferResponseCheck } from './workload.js';
import type { OpenLoopThreadSpec } from './open-loop-threads.js';

const port = parentPort!;
const { checkKind, outputs, encoding, body, ...rest } = workerData as OpenLoopThreadSpec;
const spec: OpenLoopSpec = {
  ...rest,
  // Structured cloning turned the Buffer into a plain Uint8Array.
  body: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
  check: checkKind === 'floor' ? floorResponseCheck : inferResponseCheck(outputs, encoding),
};
const prepared = await prepareOpenLoop(spec);
port.once('message', (message: { startEpochMs: number }) => {
  void prepared
    .run(message.startEpochMs, (epochMs) => port.postMessage({ type: 'stopped', epochMs }))
    .then((part) => port.postMessage({ type: 'done', part }));
});
port.postMessage({ type: 'ready' });
