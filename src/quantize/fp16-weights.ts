/**
 * Weights stored as float16, computed in float32: each large float32 initializer is written as
 * float16 and read through a Cast back to float32 under its own name, so the file is about half
 * the size while every node still computes in float32 and the model loads on any execution
 * provider (CPU has few float16 kernels). ONNX Runtime folds the Casts into float32 constants when
 * it loads the model, so on CPU it runs at fp32 speed with weights rounded to float16's 11
 * significant bits; a GPU provider can keep the model in half precision.
 */
import { numberToHalf } from '../core/datatype.js';
import type { OnnxModel, OnnxNode } from '../onnx/onnx-model-file.js';
import { dimsOf, FLOAT, FLOAT16, floatsOf, graphValueNames, INT_ATTRIBUTE, nodeLabel, rawTensor } from './graph-rewriting.js';

/**
 * Smaller float tensors stay float32: they save nothing worth a Cast node each, and they are
 * mostly scalars and short vectors (Resize scales, Clip bounds, epsilons, small biases) that some
 * operators' shape inference or kernels want as float32 constants.
 */
export const MIN_FP16_ELEMENTS = 16;

/** float16's infinity, less the sign bit. */
const FLOAT16_INFINITY = 0x7c00;

export interface Fp16Conversion {
  /** Initializers now stored as float16, by name. */
  converted: string[];
  /** Float32 initializers of at least MIN_FP16_ELEMENTS that stay float32, and why. */
  skipped: { tensor: string; reason: string }[];
}

/**
 * Rewrites the model in place. `exclude`: node names whose initializers stay float32 (what an
 * accuracy search decides; an initializer read by an excluded node and another stays float32).
 */
export function storeWeightsAsFp16(model: OnnxModel, exclude: ReadonlySet<string> = new Set()): Fp16Conversion {
  const graph = model.graph;
  const readers = new Map<string, string[]>();
  for (const [index, node] of graph.node.entries()) {
    for (const input of node.input) readers.set(input, [...(readers.get(input) ?? []), nodeLabel(node, index)]);
  }
  const graphInputs = new Set(graphValueNames(graph, 'input'));
  const result: Fp16Conversion = { converted: [], skipped: [] };
  const casts: OnnxNode[] = [];
  graph.initializer = graph.initializer.map((tensor) => {
    const name = tensor.name!;
    const dims = dimsOf(tensor);
    if (tensor.data_type !== FLOAT || dims.reduce((product, dim) => product * dim, 1) < MIN_FP16_ELEMENTS) return tensor;
    const skip = (reason: string) => {
      result.skipped.push({ tensor: name, reason });
      return tensor;
    };
    // An initializer that is also a graph input is a default the caller may replace with a float32 tensor of its own.
    if (graphInputs.has(name)) return skip('it is also a graph input, which a caller may feed');
    const excluded = (readers.get(name) ?? []).find((reader) => exclude.has(reader));
    if (excluded) return skip(`read by excluded node '${excluded}'`);
    const values = floatsOf(tensor);
    const halves = Uint16Array.from(values, numberToHalf);
    const overflowing = values.findIndex((value, at) => Number.isFinite(value) && (halves[at] & 0x7fff) === FLOAT16_INFINITY);
    if (overflowing >= 0) return skip(`holds ${values[overflowing]}, which float16 (largest finite value 65504) makes infinite`);
    casts.push({ op_type: 'Cast', name: `${name}_Cast`, input: [`${name}_float16`], output: [name], attribute: [{ name: 'to', type: INT_ATTRIBUTE, i: FLOAT }] });
    result.converted.push(name);
    return rawTensor(`${name}_float16`, FLOAT16, dims, halves);
  });
  // The Casts read only initializers, so at the front they come before every reader.
  graph.node = [...casts, ...graph.node];
  return result;
}
