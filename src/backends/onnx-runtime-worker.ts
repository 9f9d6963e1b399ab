/**
 * A worker thread that owns one ONNX Runtime session, so its forward pass never blocks the
 * server's event loop. Messages: 'run' in, 'result' out; 'release' ends it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeBytesElements, encodeBytesElements } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import type { ModelSignature } from './backend.js';
import { OnnxSession, type SessionSpec } from './onnx-runtime-session.js';

/**
 * A BYTES tensor crossing threads: its elements length-prefixed in one transferred buffer. Cloning a
 * million small Buffers instead costs the sending thread seconds, and the receiving one as many.
 */
export interface PackedBytes {
  datatype: 'BYTES';
  shape: number[];
  packed: Uint8Array;
}

export type WorkerRequest =
  | { type: 'run'; id: number; inputs: Record<string, Tensor | PackedBytes>; outputNames: string[] }
  | { type: 'release' };

export type WorkerReply =
  | { type: 'ready'; signature: ModelSignature }
  | { type: 'fallback'; reason: string }
  | { type: 'failed'; message: string; stack?: string }
  | { type: 'result'; id: number; outputs?: Record<string, Tensor | PackedBytes>; computeNs?: number; error?: { message: string; stack?: string } };

const port = parentPort!;
const post = (reply: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);

/** The inputs as the session takes them: packed BYTES split into their elements (views, no copies). */
function unpacked(inputs: Record<string, Tensor | PackedBytes>): Record<string, Tensor> {
  const tensors: Record<string, Tensor> = {};
  for (const name in inputs) {
    const tensor = inputs[name];
    if (!('packed' in tensor)) {
      tensors[name] = tensor;
      continue;
    }
    const data = decodeBytesElements(Buffer.from(tensor.packed.buffer, tensor.packed.byteOffset, tensor.packed.byteLength));
    if (!data) throw new Error(`input '${name}' reached the worker thread malformed`);
    tensors[name] = { datatype: 'BYTES', shape: tensor.shape, data };
  }
  return tensors;
}

/** Length-prefixed elements in a buffer of their own (never a slice of Node's shared pool), so it can be transferred. */
function packed(elements: readonly Buffer[]): Uint8Array {
  const encoded = encodeBytesElements(elements);
  return encoded.byteLength === encoded.buffer.byteLength ? encoded : new Uint8Array(encoded);
}

try {
  const session = OnnxSession.open(workerData as SessionSpec, (reason) => post({ type: 'fallback', reason }));
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
      const outputs = session.run(unpacked(message.inputs), message.outputNames);
      const computeNs = (performance.now() - started) * 1e6;
      // The output buffers are this thread's own: hand them over instead of copying.
      const transfer = new Set<ArrayBuffer>();
      const sent: Record<string, Tensor | PackedBytes> = {};
      for (const name in outputs) {
        const output = outputs[name];
        sent[name] = output.datatype === 'BYTES' ? { datatype: 'BYTES', shape: output.shape, packed: packed(output.data as Buffer[]) } : output;
        transfer.add(('packed' in sent[name] ? (sent[name] as PackedBytes).packed : (output.data as Uint8Array)).buffer as ArrayBuffer);
      }
      post({ type: 'result', id: message.id, outputs: sent, computeNs }, [...transfer]);
    } catch (error) {
      post({ type: 'result', id: message.id, error: { message: (error as Error).message, stack: (error as Error).stack } });
    }
  });
} catch (error) {
  post({ type: 'failed', message: (error as Error).message, stack: (error as Error).stack });
}
