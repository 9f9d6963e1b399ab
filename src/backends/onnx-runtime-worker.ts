/**
 * A worker thread that owns one ONNX Runtime session, so its forward pass never blocks the
 * server's event loop. Messages: 'run' in, 'result' out; 'release' ends it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Tensor } from '../core/tensor.js';
import type { ModelSignature } from './backend.js';
import { OnnxSession, type PackedBytesTensor, type SessionSpec } from './onnx-runtime-session.js';

export type { PackedBytesTensor } from './onnx-runtime-session.js';

export type WorkerRequest =
  | { type: 'run'; id: number; inputs: Record<string, Tensor | PackedBytesTensor>; outputNames: string[] }
  | { type: 'release' };

export type WorkerReply =
  | { type: 'ready'; signature: ModelSignature }
  | { type: 'fallback'; reason: string }
  | { type: 'failed'; message: string; stack?: string }
  | { type: 'result'; id: number; outputs?: Record<string, Tensor | PackedBytesTensor>; computeNs?: number; error?: { message: string; stack?: string } };

const port = parentPort!;
const post = (reply: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);

/** Opens the session, answers 'ready', then serves runs until 'release'. */
async function serve(): Promise<void> {
  const session = await OnnxSession.open(workerData as SessionSpec, (reason) => post({ type: 'fallback', reason }));
  post({ type: 'ready', signature: session.signature });
  // A request that cannot be read names no id to answer: exiting fails every request in flight, and a new worker starts.
  port.on('messageerror', () => process.exit(1));
  port.on('message', (message: WorkerRequest) => {
    if (message.type === 'release') {
      session.release();
      port.close();
      return;
    }
    try {
      const started = performance.now();
      const outputs = session.runPacked(message.inputs, message.outputNames);
      const computeNs = (performance.now() - started) * 1e6;
      // The output buffers are this thread's own: hand them over instead of copying.
      const transfer = new Set<ArrayBuffer>();
      for (const name in outputs) {
        const output = outputs[name];
        transfer.add(('packed' in output ? output.packed : (output.data as Uint8Array)).buffer as ArrayBuffer);
      }
      post({ type: 'result', id: message.id, outputs, computeNs }, [...transfer]);
    } catch (error) {
      post({ type: 'result', id: message.id, error: { message: (error as Error).message, stack: (error as Error).stack } });
    }
  });
}

serve().catch((error: Error) => post({ type: 'failed', message: error.message, stack: error.stack }));
