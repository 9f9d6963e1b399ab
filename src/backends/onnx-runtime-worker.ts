/**
 * A worker thread that owns one ONNX Runtime session, so its synchronous forward pass never
 * blocks the server's event loop. Messages: 'run' in, 'result' out; 'release' ends it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Tensor } from '../core/tensor.js';
import { openSession, restoreBytes, runSession, sessionSignature, type SessionSpec } from './onnx-runtime-session.js';

export type WorkerRequest =
  | { type: 'run'; id: number; inputs: Record<string, Tensor>; outputNames: string[] }
  | { type: 'release' };

export type WorkerReply =
  | { type: 'ready'; signature: ReturnType<typeof sessionSignature> }
  | { type: 'fallback'; reason: string }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; outputs?: Record<string, Tensor>; error?: string };

const port = parentPort!;
const post = (reply: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);


try {
  const session = await openSession(workerData as SessionSpec, (reason) => post({ type: 'fallback', reason }));
  post({ type: 'ready', signature: sessionSignature(session) });
  port.on('message', async (message: WorkerRequest) => {
    if (message.type === 'release') {
      await session.release();
      port.close();
      return;
    }
    try {
      const outputs = await runSession(session, restoreBytes(message.inputs), message.outputNames);
      // The output buffers are this thread's own: hand them over instead of copying.
      const transfer = Object.values(outputs)
        .filter((tensor) => tensor.datatype !== 'BYTES')
        .map((tensor) => (tensor.data as Uint8Array).buffer as ArrayBuffer);
      post({ type: 'result', id: message.id, outputs }, [...new Set(transfer)]);
    } catch (error) {
      post({ type: 'result', id: message.id, error: (error as Error).message });
    }
  });
} catch (error) {
  post({ type: 'failed', message: (error as Error).message });
}
