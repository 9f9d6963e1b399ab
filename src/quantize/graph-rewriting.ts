/**
 * What every graph rewrite of the quantizer needs: tensor data read and written as ONNX stores it,
 * a name for each node, its attributes, and the initializers a rewrite left unread dropped.
 */
import { toNumber, type OnnxGraph, type OnnxNode, type OnnxTensor } from '../onnx/onnx-model-file.js';

/** TensorProto.DataType numbers of the tensors the rewrites read and write. */
export const FLOAT = 1;
export const UINT8 = 2;
export const INT8 = 3;
export const INT32 = 6;
export const FLOAT16 = 10;

/** AttributeProto.AttributeType numbers of the attributes the rewrites write. */
export const INT_ATTRIBUTE = 2;

/** Nodes a rewrite changed, and those it left as they were with why. */
export interface NodeRewrite {
  /** Nodes rewritten, by name (or op type and index). */
  quantized: string[];
  /** Nodes left in float, and why. */
  skipped: { node: string; reason: string }[];
}

/** A node's name, or its op type and position when it has none. */
export function nodeLabel(node: OnnxNode, index: number): string {
  return node.name || `${node.op_type}_${index}`;
}

export function dimsOf(tensor: OnnxTensor): number[] {
  return (tensor.dims ?? []).map(toNumber);
}

export function floatsOf(tensor: OnnxTensor): Float32Array {
  if (tensor.data_type !== FLOAT) throw new Error(`tensor '${tensor.name}' is not float32`);
  if (tensor.raw_data && tensor.raw_data.length > 0) {
    const raw = tensor.raw_data;
    return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  }
  return Float32Array.from(tensor.float_data ?? []);
}

export function rawTensor(name: string, dataType: number, dims: number[], data: ArrayBufferView): OnnxTensor {
  return { name, data_type: dataType, dims, raw_data: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) };
}

/** An int attribute's value, or `fallback` when the node does not set it. */
export function intAttribute(node: OnnxNode, name: string, fallback: number): number {
  const attribute = node.attribute.find((candidate) => candidate.name === name);
  return attribute?.i === undefined ? fallback : toNumber(attribute.i);
}

/** A float attribute's value, or `fallback` when the node does not set it. */
export function floatAttribute(node: OnnxNode, name: string, fallback: number): number {
  const attribute = node.attribute.find((candidate) => candidate.name === name);
  return attribute?.f === undefined ? fallback : attribute.f;
}

/** Names of the graph's declared inputs or outputs. */
export function graphValueNames(graph: OnnxGraph, which: 'input' | 'output'): string[] {
  return ((graph[which] as { name?: string }[] | undefined) ?? []).map((value) => value.name!);
}

/** Initializers that no node and no graph output reads any more go, or the file would keep what a rewrite replaced. */
export function dropUnreadInitializers(graph: OnnxGraph): void {
  const read = new Set([...graph.node.flatMap((node) => node.input), ...graphValueNames(graph, 'output')]);
  graph.initializer = graph.initializer.filter((tensor) => read.has(tensor.name!));
}
