/**
 * Opening and running one ONNX Runtime session; shared by instances on the JS thread and in
 * worker threads so both behave the same.
 */
import * as ort from 'onnxruntime-node';
import { datatypeFromOnnx, onnxTypeOf, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import type { ModelSignature, TensorSignature } from './backend.js';

/** Everything needed to open a session, as plain data so it can cross to a worker thread. */
export interface SessionSpec {
  modelPath: string;
  options: ort.InferenceSession.SessionOptions;
  /** Execution providers in preference order, 'cpu' last. */
  providers: string[];
  deviceId: number;
}

/** Opens the session with the requested providers; if one is missing, reports why and opens it on CPU. */
export async function openSession(spec: SessionSpec, onFallback: (reason: string) => void): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(spec.modelPath, {
      ...spec.options,
      executionProviders: spec.providers.map((name) => (name === 'cpu' ? name : { name, deviceId: spec.deviceId })),
    } as ort.InferenceSession.SessionOptions);
  } catch (error) {
    if (spec.providers.length === 1) throw error;
    onFallback((error as Error).message);
    return ort.InferenceSession.create(spec.modelPath, { ...spec.options, executionProviders: ['cpu'] });
  }
}

function signatureOf(metadata: readonly ort.InferenceSession.ValueMetadata[], what: string): TensorSignature[] {
  return metadata.map((value) => {
    if (!value.isTensor) throw new Error(`${what} '${value.name}' is not a tensor; only tensor inputs and outputs are supported`);
    const datatype = datatypeFromOnnx(value.type);
    if (!datatype) throw new Error(`${what} '${value.name}' has ONNX type ${value.type}, which the V2 protocol cannot carry`);
    return { name: value.name, datatype, shape: value.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1)) };
  });
}

export function sessionSignature(session: ort.InferenceSession): ModelSignature {
  return { inputs: signatureOf(session.inputMetadata, 'input'), outputs: signatureOf(session.outputMetadata, 'output') };
}

export async function runSession(
  session: ort.InferenceSession,
  inputs: Record<string, Tensor>,
  outputNames: readonly string[],
): Promise<Record<string, Tensor>> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, tensor] of Object.entries(inputs)) {
    const data =
      tensor.datatype === 'BYTES' ? (tensor.data as Buffer[]).map((element) => element.toString('utf8')) : tensor.data;
    feeds[name] = new ort.Tensor(onnxTypeOf(tensor.datatype) as ort.Tensor.Type, data as ort.Tensor.DataType, tensor.shape);
  }
  const results = await session.run(feeds, outputNames as string[]);
  const outputs: Record<string, Tensor> = {};
  for (const name of outputNames) {
    const result = results[name];
    const datatype = datatypeFromOnnx(result.type);
    if (!datatype) throw new Error(`output '${name}' has ONNX type ${result.type}, which the V2 protocol cannot carry`);
    const data =
      datatype === 'BYTES' ? (result.data as string[]).map((element) => Buffer.from(element, 'utf8')) : (result.data as NumericArray);
    outputs[name] = { datatype, shape: [...result.dims], data };
  }
  return outputs;
}

/** Structured clone (to and from a worker thread) turns Buffers into Uint8Arrays; BYTES elements are Buffers again after it. */
export function restoreBytes(tensors: Record<string, Tensor>): Record<string, Tensor> {
  for (const tensor of Object.values(tensors)) {
    if (tensor.datatype === 'BYTES') {
      tensor.data = (tensor.data as Uint8Array[]).map((element) => Buffer.from(element.buffer, element.byteOffset, element.byteLength));
    }
  }
  return tensors;
}
