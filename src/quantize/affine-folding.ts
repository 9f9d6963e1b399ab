/**
 * Constant scales and shifts applied to a convolution's output, folded into its weights and bias.
 * PaddlePaddle's exports (PP-LCNetV3's "learnable affine blocks") follow convolutions with a Mul and
 * an Add by scalars that ONNX Runtime's own Conv+Mul / Conv+Add fusions leave alone. Left in place,
 * the quantized convolution's output is calibrated before them, so its uint8 grid cannot be fitted to
 * what the activation after them keeps, and two float ops run between integer kernels. Folded, the
 * convolution computes the same values (up to float rounding) in one node.
 */
import type { OnnxModel, OnnxNode, OnnxTensor } from '../onnx/onnx-model-file.js';
import { dimsOf, dropUnreadInitializers, FLOAT, floatsOf, graphValueNames, rawTensor } from './graph-rewriting.js';

/**
 * Per output channel values of a constant that broadcasts against a convolution's output
 * (N, C, spatial…): a scalar, or C values along the channel axis. Undefined for any other shape.
 */
function perChannel(tensor: OnnxTensor, channels: number, outputRank: number): Float64Array | undefined {
  if (tensor.data_type !== FLOAT) return undefined;
  const dims = dimsOf(tensor);
  const values = floatsOf(tensor);
  if (values.length === 1 && dims.length <= outputRank) return new Float64Array(channels).fill(values[0]);
  if (values.length !== channels) return undefined;
  // C, 1, 1 … against N, C, …: the channel axis is the (rank − 1)th from the end.
  const channelAxis = dims.length - (outputRank - 1);
  if (channelAxis < 0 || dims[channelAxis] !== channels || dims.some((dim, axis) => axis !== channelAxis && dim !== 1)) return undefined;
  return Float64Array.from(values);
}

/** Rewrites the model in place; returns how many Mul and Add nodes were folded away. */
export function foldAffineIntoConv(model: OnnxModel): number {
  const graph = model.graph;
  const initializers = new Map(graph.initializer.map((tensor) => [tensor.name!, tensor]));
  const readers = new Map<string, OnnxNode[]>();
  for (const node of graph.node) for (const input of node.input) readers.set(input, [...(readers.get(input) ?? []), node]);
  const graphOutputs = new Set(graphValueNames(graph, 'output'));
  const removed = new Set<OnnxNode>();
  let folded = 0;
  for (const conv of graph.node) {
    if (conv.op_type !== 'Conv' || (conv.domain ?? '') !== '') continue;
    const weight = initializers.get(conv.input[1]);
    const bias = conv.input[2] ? initializers.get(conv.input[2]) : undefined;
    if (!weight || weight.data_type !== FLOAT || (conv.input[2] && bias?.data_type !== FLOAT)) continue;
    const weightDims = dimsOf(weight);
    const channels = weightDims[0];
    const outputRank = weightDims.length;
    let weights: Float32Array | undefined;
    let biases: Float64Array | undefined;
    for (;;) {
      const output = conv.output[0];
      const next = readers.get(output) ?? [];
      if (next.length !== 1 || graphOutputs.has(output)) break;
      const [affine] = next;
      if ((affine.op_type !== 'Mul' && affine.op_type !== 'Add') || (affine.domain ?? '') !== '' || affine.input.length !== 2) break;
      const constantName = affine.input[0] === output ? affine.input[1] : affine.input[0];
      const constant = initializers.get(constantName);
      const values = constant && perChannel(constant, channels, outputRank);
      if (!values) break;
      weights ??= floatsOf(weight).slice();
      biases ??= bias ? Float64Array.from(floatsOf(bias)) : new Float64Array(channels);
      if (affine.op_type === 'Mul') {
        const perChannelWeights = weights.length / channels;
        for (let index = 0; index < weights.length; index++) weights[index] = Math.fround(weights[index] * values[Math.floor(index / perChannelWeights)]);
        for (let channel = 0; channel < channels; channel++) biases[channel] *= values[channel];
      } else for (let channel = 0; channel < channels; channel++) biases[channel] += values[channel];
      conv.output = [affine.output[0], ...conv.output.slice(1)];
      removed.add(affine);
      folded++;
    }
    if (!weights || !biases) continue;
    // New initializers: the old ones may be read by another node.
    const weightName = uniqueName(`${conv.input[1]}_folded`, initializers);
    const biasName = uniqueName(`${conv.input[2] || `${conv.output[0]}_bias`}_folded`, initializers);
    const tensors = [rawTensor(weightName, FLOAT, weightDims, weights), rawTensor(biasName, FLOAT, [channels], Float32Array.from(biases))];
    for (const tensor of tensors) initializers.set(tensor.name!, tensor);
    graph.initializer.push(...tensors);
    conv.input = [conv.input[0], weightName, biasName];
  }
  if (folded === 0) return 0;
  graph.node = graph.node.filter((node) => !removed.has(node));
  dropUnreadInitializers(graph);
  return folded;
}

function uniqueName(wanted: string, taken: ReadonlyMap<string, unknown>): string {
  let name = wanted;
  for (let suffix = 2; taken.has(name); suffix++) name = `${wanted}${suffix}`;
  return name;
}
