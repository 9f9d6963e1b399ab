/**
 * Static int8 quantization in ONNX's QDQ form: each Conv, MatMul and Gemm gets its weight as int8
 * per output channel behind a DequantizeLinear, its bias as int32 at the product of the input's and
 * the weight's scales, and its float input and output wrapped in QuantizeLinear → DequantizeLinear
 * pairs with uint8 parameters from calibrated ranges. The file stays portable ONNX that computes in
 * float anywhere; ONNX Runtime's graph optimizer (level extended and above) fuses each
 * DQ → op → Q group into an integer kernel (QLinearConv, QLinearMatMul, QGemm).
 *
 * Rounding a channel's weights moves its output's mean by what the rounding errors weigh the
 * input's channel means with; given those means (from calibration), a Conv's or Gemm's bias is
 * corrected by that much before it is quantized (bias correction, Nagel et al. 2019). Padding is
 * ignored: the border of a map reads zeros, not the mean.
 */
import type { OnnxModel, OnnxNode, OnnxTensor } from '../onnx/onnx-model-file.js';
import { dimsOf, dropUnreadInitializers, FLOAT, floatsOf, graphValueNames, INT32, INT8, INT_ATTRIBUTE, floatAttribute, intAttribute, nodeLabel, rawTensor, UINT8, type NodeRewrite } from './graph-rewriting.js';
import { channelAlong, quantizePerChannelSymmetric, roundHalfToEven, uint8Params, type PerChannelInt8, type Uint8Params } from './int8-arithmetic.js';

/** The largest int32 bias allowed, leaving headroom below 2^31 for the integer kernel to add the products to it. */
const INT32_BIAS_LIMIT = 2 ** 30;

/** Ops whose output holds only values of their first input, so it stays on that input's uint8 grid. */
const VALUE_PRESERVING_OPS = new Set(['MaxPool', 'Flatten', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze']);

/** Ops quantized, and which of their weight's axes holds the output channels. */
function weightAxis(node: OnnxNode): number | undefined {
  if (node.op_type === 'Conv') return 0;
  if (node.op_type === 'MatMul') return 1;
  if (node.op_type === 'Gemm') return intAttribute(node, 'transB', 0) === 1 ? 0 : 1;
  return undefined;
}

/** Conv, and Gemm computing A·B + C as written (no transposed input, alpha and beta 1): the ops whose bias can take the weights' rounding back. */
export function biasCorrectable(node: OnnxNode): boolean {
  if (node.op_type === 'Conv') return true;
  return node.op_type === 'Gemm' && intAttribute(node, 'transA', 0) === 0 && floatAttribute(node, 'alpha', 1) === 1 && floatAttribute(node, 'beta', 1) === 1;
}

/** The input channels a bias-correctable node reads, and which one each element of its weight multiplies. */
function inputChannels(node: OnnxNode, dims: readonly number[]): { count: number; of: (index: number) => number } {
  if (node.op_type === 'Conv') {
    const [outputs, inputsPerGroup] = dims;
    const groups = intAttribute(node, 'group', 1);
    const kernel = dims.slice(2).reduce((product, dim) => product * dim, 1);
    const outputsPerGroup = outputs / groups;
    return {
      count: inputsPerGroup * groups,
      of: (index) => Math.floor(Math.floor(index / (inputsPerGroup * kernel)) / outputsPerGroup) * inputsPerGroup + (Math.floor(index / kernel) % inputsPerGroup),
    };
  }
  // Gemm's B: [K, N], or [N, K] when transposed; K is the input's channel axis.
  return intAttribute(node, 'transB', 0) === 1 ? { count: dims[1], of: channelAlong(dims, 1) } : { count: dims[0], of: channelAlong(dims, 0) };
}

/** The shift of each output channel's mean that int8 weights cause: Σ (dequantized − float weight) × the mean of the input channel it multiplies. */
function weightRoundingShift(weights: Float32Array, quantized: PerChannelInt8, outputChannelOf: (index: number) => number, inputChannelOf: (index: number) => number, inputMeans: ArrayLike<number>): Float64Array {
  const shift = new Float64Array(quantized.scales.length);
  for (let index = 0; index < weights.length; index++) {
    const channel = outputChannelOf(index);
    shift[channel] += (quantized.values[index] * quantized.scales[channel] - weights[index]) * inputMeans[inputChannelOf(index)];
  }
  return shift;
}

/** A scalar float initializer's value, or undefined when the name is not one. */
function scalarOf(initializers: ReadonlyMap<string, OnnxTensor>, name: string | undefined): number | undefined {
  const tensor = name ? initializers.get(name) : undefined;
  if (!tensor || tensor.data_type !== FLOAT) return undefined;
  const values = floatsOf(tensor);
  return values.length === 1 ? values[0] : undefined;
}

/** Clip's bounds: inputs from opset 11, attributes before it; ±Infinity where one is not given. */
function clipBounds(node: OnnxNode, initializers: ReadonlyMap<string, OnnxTensor>): { min: number; max: number } | undefined {
  if (node.input.length > 1) {
    const min = node.input[1] ? scalarOf(initializers, node.input[1]) : -Infinity;
    const max = node.input[2] ? scalarOf(initializers, node.input[2]) : Infinity;
    return min === undefined || max === undefined ? undefined : { min, max };
  }
  return { min: floatAttribute(node, 'min', -Infinity), max: floatAttribute(node, 'max', Infinity) };
}

/**
 * The part of a tensor's values its readers can tell apart, when every reader clamps it: Relu, Clip,
 * HardSigmoid, HardSwish, and hard-swish written out as x · Clip(x + c, 0, hi) / d (how Paddle and
 * PyTorch exports spell it), which is 0 for every x below −c. Values beyond it read the same as the
 * bound, so a uint8 grid spent on them is wasted: the stem of a MobileNet-style network can output
 * −88 where its hard-swish keeps nothing below −3.
 */
function readersRange(tensor: string, readers: ReadonlyMap<string, OnnxNode[]>, initializers: ReadonlyMap<string, OnnxTensor>): { min: number; max: number } | undefined {
  const ranges: { min: number; max: number }[] = [];
  const soleReader = (name: string) => {
    const found = readers.get(name) ?? [];
    return found.length === 1 ? found[0] : undefined;
  };
  // Readers come in graph order, so a hard-swish's Add is met before its Mul; a Mul met alone is a reader the rule does not know.
  const partOfHardSwish = new Set<OnnxNode>();
  for (const reader of readers.get(tensor) ?? []) {
    if (partOfHardSwish.has(reader)) continue;
    if ((reader.domain ?? '') !== '') return undefined;
    if (reader.op_type === 'Relu') ranges.push({ min: 0, max: Infinity });
    else if (reader.op_type === 'Clip' && reader.input[0] === tensor) {
      const bounds = clipBounds(reader, initializers);
      if (!bounds) return undefined;
      ranges.push(bounds);
    } else if (reader.op_type === 'HardSigmoid') {
      const alpha = floatAttribute(reader, 'alpha', 0.2);
      const beta = floatAttribute(reader, 'beta', 0.5);
      if (!(alpha > 0)) return undefined;
      ranges.push({ min: -beta / alpha, max: (1 - beta) / alpha });
    } else if (reader.op_type === 'HardSwish') ranges.push({ min: -3, max: Infinity });
    else if (reader.op_type === 'Add') {
      const shift = scalarOf(initializers, reader.input[0] === tensor ? reader.input[1] : reader.input[0]);
      const clip = soleReader(reader.output[0]);
      const bounds = clip?.op_type === 'Clip' && clip.input[0] === reader.output[0] ? clipBounds(clip, initializers) : undefined;
      const product = clip && soleReader(clip.output[0]);
      const multipliesTensor = product?.op_type === 'Mul' && product.input.includes(tensor) && product.input.includes(clip!.output[0]);
      if (shift === undefined || bounds?.min !== 0 || !multipliesTensor || (readers.get(tensor) ?? []).filter((node) => node === product).length !== 1) return undefined;
      partOfHardSwish.add(product!);
      ranges.push({ min: -shift, max: Infinity });
    } else return undefined;
  }
  if (ranges.length === 0) return undefined;
  return { min: Math.min(...ranges.map((range) => range.min)), max: Math.max(...ranges.map((range) => range.max)) };
}

export type StaticQuantization = NodeRewrite;

export interface StaticQuantizationOptions {
  /** Node names to keep in float (what an accuracy search decides). */
  exclude?: ReadonlySet<string>;
  /** Per-channel means of quantized nodes' inputs, by tensor name: Conv and Gemm biases are corrected for the weights' rounding (a bias is added where there was none). */
  inputMeans?: ReadonlyMap<string, ArrayLike<number>>;
}

/**
 * Rewrites the model in place. `ranges`: the calibrated range of every float tensor that is a
 * quantized node's input or output.
 */
export function quantizeStaticQdq(model: OnnxModel, ranges: ReadonlyMap<string, { min: number; max: number }>, { exclude = new Set(), inputMeans }: StaticQuantizationOptions = {}): StaticQuantization {
  const graph = model.graph;
  const initializers = new Map(graph.initializer.map((tensor) => [tensor.name!, tensor]));
  const result: StaticQuantization = { quantized: [], skipped: [] };
  const added: OnnxNode[] = [];
  /** Activation tensors already wrapped: original name → its dequantized stand-in and parameters. */
  const wrapped = new Map<string, { dequantized: string; params: Uint8Params }>();
  const activationRange = (name: string) => {
    const range = ranges.get(name);
    if (!range) throw new Error(`no calibrated range for tensor '${name}'`);
    return range;
  };
  const activationParams = (name: string) => {
    const { min, max } = activationRange(name);
    return uint8Params(min, max);
  };
  /** An output's parameters over the calibrated range its readers can tell apart. */
  const outputParams = (name: string) => {
    const { min, max } = activationRange(name);
    const seen = graphOutputs.has(name) ? undefined : readersRange(name, readers, initializers);
    return seen ? uint8Params(Math.max(min, seen.min), Math.min(max, seen.max)) : uint8Params(min, max);
  };
  const addQdq = (source: string, target: string, params: Uint8Params) => {
    graph.initializer.push(rawTensor(`${source}_scale`, FLOAT, [], Float32Array.of(params.scale)), rawTensor(`${source}_zero_point`, UINT8, [], Uint8Array.of(params.zeroPoint)));
    added.push(
      { op_type: 'QuantizeLinear', name: `${source}_QuantizeLinear`, input: [source, `${source}_scale`, `${source}_zero_point`], output: [`${source}_quantized`], attribute: [] },
      { op_type: 'DequantizeLinear', name: `${source}_DequantizeLinear`, input: [`${source}_quantized`, `${source}_scale`, `${source}_zero_point`], output: [target], attribute: [] },
    );
  };
  const readers = new Map<string, OnnxNode[]>();
  for (const node of graph.node) for (const input of node.input) readers.set(input, [...(readers.get(input) ?? []), node]);
  const graphOutputs = new Set(graphValueNames(graph, 'output'));
  /** Relu nodes that take the quantization of the output of the quantized node before them, with its parameters. */
  const fusedRelus = new Map<OnnxNode, Uint8Params>();
  /** A node's output computed under a new name, quantized, and dequantized back under its own, so its readers are unchanged. */
  const quantizeOutput = (node: OnnxNode, params: Uint8Params): OnnxNode => {
    const output = node.output[0];
    addQdq(`${output}_float`, output, params);
    wrapped.set(output, { dequantized: output, params });
    return { ...node, output: [`${output}_float`, ...node.output.slice(1)] };
  };
  const rewritten: OnnxNode[] = [];
  for (const [index, node] of graph.node.entries()) {
    const label = nodeLabel(node, index);
    const reluParams = fusedRelus.get(node);
    if (reluParams) {
      rewritten.push(quantizeOutput(node, reluParams));
      continue;
    }
    // Data movement on a quantized tensor keeps its scale and zero point: ONNX Runtime then runs it on the uint8 values and drops the pair around it.
    const moved = VALUE_PRESERVING_OPS.has(node.op_type ?? '') && (node.domain ?? '') === '' && node.output.length === 1 ? wrapped.get(node.input[0]) : undefined;
    if (moved?.dequantized === node.input[0]) {
      rewritten.push(quantizeOutput(node, moved.params));
      continue;
    }
    const axis = weightAxis(node);
    const weight = axis === undefined ? undefined : initializers.get(node.input[1]);
    if (axis === undefined || (node.domain ?? '') !== '') {
      rewritten.push(node);
      continue;
    }
    if (exclude.has(label)) {
      result.skipped.push({ node: label, reason: 'excluded' });
      rewritten.push(node);
      continue;
    }
    if (!weight || weight.data_type !== FLOAT) {
      result.skipped.push({ node: label, reason: 'its weight is not a float initializer' });
      rewritten.push(node);
      continue;
    }
    // The input, wrapped once however many nodes read it.
    const input = node.input[0];
    let inputQdq = wrapped.get(input);
    if (!inputQdq) {
      inputQdq = { dequantized: `${input}_dequantized`, params: activationParams(input) };
      addQdq(input, inputQdq.dequantized, inputQdq.params);
      wrapped.set(input, inputQdq);
    }
    // The weight: int8 per output channel, its scale large enough that the channel's bias fits int32 at input scale × weight scale
    // (BatchNormalization folded into a nearly dead channel leaves tiny weights beside a large bias, whose int32 would wrap).
    const dims = dimsOf(weight);
    const weights = floatsOf(weight);
    const means = biasCorrectable(node) ? inputMeans?.get(input) : undefined;
    const reads = means ? inputChannels(node, dims) : undefined;
    if (reads && means!.length !== reads.count) throw new Error(`node '${label}' reads ${reads.count} input channels but ${means!.length} channel means were given for '${input}'`);
    let biasName = node.input[2];
    if (reads && !biasName) {
      biasName = `${node.output[0]}_bias`;
      for (let suffix = 2; initializers.has(biasName); suffix++) biasName = `${node.output[0]}_bias${suffix}`;
      graph.initializer.push(rawTensor(biasName, FLOAT, [dims[axis]], new Float32Array(dims[axis])));
      initializers.set(biasName, graph.initializer.at(-1)!);
    }
    const bias = biasName ? initializers.get(biasName) : undefined;
    let biasValues = bias && bias.data_type === FLOAT && dimsOf(bias).length === 1 ? floatsOf(bias) : undefined;
    // The limit leaves 2^30 of headroom, ample for the correction the bias gets after its scales are chosen (checked below).
    const minScales = biasValues?.map((value) => Math.abs(value) / (inputQdq!.params.scale * INT32_BIAS_LIMIT));
    const quantized = quantizePerChannelSymmetric(weights, dims, axis, minScales);
    if (reads && biasValues?.length === dims[axis]) {
      const shift = weightRoundingShift(weights, quantized, channelAlong(dims, axis), reads.of, means!);
      biasValues = biasValues.map((value, channel) => value - shift[channel]);
    }
    const { values, scales } = quantized;
    const w = node.input[1];
    graph.initializer.push(
      rawTensor(`${w}_quantized`, INT8, dims, values),
      rawTensor(`${w}_scale`, FLOAT, [scales.length], scales),
      rawTensor(`${w}_zero_point`, INT8, [scales.length], new Int8Array(scales.length)),
    );
    const axisAttribute = { name: 'axis', type: INT_ATTRIBUTE, i: axis };
    added.push({ op_type: 'DequantizeLinear', name: `${w}_DequantizeLinear`, input: [`${w}_quantized`, `${w}_scale`, `${w}_zero_point`], output: [`${w}_dequantized`], attribute: [axisAttribute] });
    const inputs = [inputQdq.dequantized, `${w}_dequantized`, ...node.input.slice(2)];
    // The bias (Conv, Gemm): int32 at input scale × weight scale per channel, as the integer kernels take it.
    if (biasValues) {
      const biasScales = scales.map((scale) => Math.fround(scale * inputQdq!.params.scale));
      const quantizedBias = Int32Array.from(biasValues, (value, channel) => {
        const integer = roundHalfToEven(value / biasScales[channel]);
        if (!(Math.abs(integer) < 2 ** 31)) throw new Error(`node '${label}': channel ${channel}'s bias ${value} does not fit int32 at scale ${biasScales[channel]}`);
        return integer;
      });
      graph.initializer.push(
        rawTensor(`${biasName}_quantized`, INT32, [quantizedBias.length], quantizedBias),
        rawTensor(`${biasName}_scale`, FLOAT, [biasScales.length], biasScales),
        rawTensor(`${biasName}_zero_point`, INT32, [biasScales.length], new Int32Array(biasScales.length)),
      );
      added.push({ op_type: 'DequantizeLinear', name: `${biasName}_DequantizeLinear`, input: [`${biasName}_quantized`, `${biasName}_scale`, `${biasName}_zero_point`], output: [`${biasName}_dequantized`], attribute: [{ name: 'axis', type: INT_ATTRIBUTE, i: 0 }] });
      inputs[2] = `${biasName}_dequantized`;
    }
    // The output is quantized after a Relu that alone reads it, with zero point 0: ONNX Runtime folds the Relu into the integer kernel.
    const output = node.output[0];
    const outputReaders = readers.get(output) ?? [];
    const relu = outputReaders.length === 1 && outputReaders[0].op_type === 'Relu' && (outputReaders[0].domain ?? '') === '' && !graphOutputs.has(output) ? outputReaders[0] : undefined;
    if (relu) {
      fusedRelus.set(relu, uint8Params(0, activationRange(output).max));
      rewritten.push({ ...node, input: inputs });
    } else rewritten.push(quantizeOutput({ ...node, input: inputs }, outputParams(output)));
    result.quantized.push(label);
  }
  // ONNX wants nodes in topological order: each added node goes right before the first node that reads what it makes.
  graph.node = topologicalOrder([...added, ...rewritten], new Set([...graph.initializer.map((tensor) => tensor.name!), ...graphValueNames(graph, 'input')]));
  // The float weights and biases replaced by their int8 and int32 forms go.
  dropUnreadInitializers(graph);
  return result;
}

/** The nodes ordered so that every input is made before it is read (Kahn's algorithm, stable). */
function topologicalOrder(nodes: OnnxNode[], available: Set<string>): OnnxNode[] {
  const ordered: OnnxNode[] = [];
  let pending = nodes;
  while (pending.length > 0) {
    const next: OnnxNode[] = [];
    for (const node of pending) {
      if (node.input.every((input) => input === '' || available.has(input))) {
        ordered.push(node);
        for (const output of node.output) available.add(output);
      } else next.push(node);
    }
    if (next.length === pending.length) throw new Error(`the graph has inputs nothing makes: ${next[0].input.filter((input) => !available.has(input)).join(', ')}`);
    pending = next;
  }
  return ordered;
}
