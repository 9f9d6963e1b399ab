/**
 * Dynamic int8 quantization of MatMul and Gemm: each weight becomes int8 ahead of time (symmetric,
 * one scale per output column: ONNX Runtime 1.30's MatMulInteger and DynamicQuantizeMatMul take
 * per-column scales, and per-column zero points too, which symmetric weights leave out as all 0),
 * and each input is quantized to uint8 as the model runs, from that
 * very tensor's range (DynamicQuantizeLinear), so no calibration is needed. The node becomes
 *   DynamicQuantizeLinear(x) → MatMulInteger(x_q, w_q, x_zero_point) → Cast(float)
 *     → Mul(·, Mul(x_scale, w_scales)) [→ Add(bias) for a Gemm with one]
 * which ONNX Runtime (level extended and above, CPU) fuses into MatMulIntegerToFloat and then
 * DynamicQuantizeMatMul. The file stays standard ONNX that runs unfused anywhere.
 *
 * The input's range is the whole tensor's, batch included: a row's result depends on what else is
 * in its batch. Convolutions stay float: the feasibility run found ConvInteger 4.7–9× slower than
 * float convolutions and its outputs changing with batch composition.
 */
import type { OnnxModel, OnnxNode, OnnxTensor } from '../onnx/onnx-model-file.js';
import { defaultOpset } from '../onnx/opset-upgrade.js';
import { dimsOf, dropUnreadInitializers, FLOAT, floatAttribute, floatsOf, INT8, INT_ATTRIBUTE, intAttribute, nodeLabel, rawTensor, type NodeRewrite } from './graph-rewriting.js';
import { quantizePerChannelSymmetric } from './int8-arithmetic.js';

export type DynamicQuantization = NodeRewrite;

/** DynamicQuantizeLinear and MatMulInteger came with opset 10. */
const MIN_OPSET = 10;

const CONV_REASON = 'convolutions stay float under dynamic quantization (ConvInteger ran 4.7–9× slower and its outputs changed with batch composition)';

/** A [rows, columns] matrix's transpose. */
function transposed(values: Float32Array, rows: number, columns: number): Float32Array {
  const result = new Float32Array(values.length);
  for (let row = 0; row < rows; row++) {
    for (let column = 0; column < columns; column++) result[column * rows + row] = values[row * columns + column];
  }
  return result;
}

/**
 * Why a MatMul or Gemm cannot be rewritten, or undefined when it can. A Gemm qualifies when it
 * takes A untransposed (MatMulInteger has no transpose; a transposed B is transposed ahead of time)
 * and its bias, when beta is not 1, is an initializer to scale ahead of time.
 */
function refusal(node: OnnxNode, initializers: ReadonlyMap<string, OnnxTensor>): string | undefined {
  const weight = initializers.get(node.input[1]);
  if (!weight || weight.data_type !== FLOAT) return 'its weight (second input) is not a float initializer';
  if (dimsOf(weight).length !== 2) return `its weight has ${dimsOf(weight).length} dimensions; only a matrix is quantized`;
  if (node.op_type !== 'Gemm') return undefined;
  if (intAttribute(node, 'transA', 0) !== 0) return 'a Gemm with transA is not quantized';
  const bias = node.input[2] ? initializers.get(node.input[2]) : undefined;
  if (node.input[2] && floatAttribute(node, 'beta', 1) !== 1 && bias?.data_type !== FLOAT) return 'a Gemm whose beta is not 1 needs its bias as a float initializer';
  return undefined;
}

/**
 * Rewrites the model in place. `exclude`: node names to keep in float (what an accuracy search
 * decides).
 */
export function quantizeDynamicMatMul(model: OnnxModel, exclude: ReadonlySet<string> = new Set()): DynamicQuantization {
  const graph = model.graph;
  const opset = defaultOpset(model);
  const initializers = new Map(graph.initializer.map((tensor) => [tensor.name!, tensor]));
  const result: DynamicQuantization = { quantized: [], skipped: [] };
  /** Weights already quantized (a weight two nodes read is stored once), by name and orientation. */
  const quantizedWeights = new Map<string, { values: string; scales: Float32Array }>();
  const rewritten: OnnxNode[] = [];
  for (const [index, node] of graph.node.entries()) {
    const label = nodeLabel(node, index);
    if ((node.domain ?? '') !== '' || !['MatMul', 'Gemm', 'Conv'].includes(node.op_type ?? '')) {
      rewritten.push(node);
      continue;
    }
    const reason = node.op_type === 'Conv' ? CONV_REASON : exclude.has(label) ? 'excluded' : opset < MIN_OPSET ? `opset ${opset} has no DynamicQuantizeLinear (opset ${MIN_OPSET} has)` : refusal(node, initializers);
    if (reason) {
      result.skipped.push({ node: label, reason });
      rewritten.push(node);
      continue;
    }
    // The weight as [K, N] int8, one scale per output column N.
    const transpose = node.op_type === 'Gemm' && intAttribute(node, 'transB', 0) === 1;
    const w = node.input[1];
    const weight = initializers.get(w)!;
    const key = transpose ? `${w}_transposed` : w;
    let quantizedWeight = quantizedWeights.get(key);
    if (!quantizedWeight) {
      const [rows, columns] = dimsOf(weight);
      const matrix = transpose ? transposed(floatsOf(weight), rows, columns) : floatsOf(weight);
      const dims = transpose ? [columns, rows] : [rows, columns];
      const { values, scales } = quantizePerChannelSymmetric(matrix, dims, 1);
      graph.initializer.push(rawTensor(`${key}_quantized`, INT8, dims, values));
      quantizedWeight = { values: `${key}_quantized`, scales };
      quantizedWeights.set(key, quantizedWeight);
    }
    // Gemm's alpha scales the product: it goes into the column scales, this node's own.
    const alpha = node.op_type === 'Gemm' ? floatAttribute(node, 'alpha', 1) : 1;
    const y = node.output[0];
    graph.initializer.push(rawTensor(`${y}_weight_scale`, FLOAT, [quantizedWeight.scales.length], quantizedWeight.scales.map((scale) => scale * alpha)));
    const bias = node.op_type === 'Gemm' ? node.input[2] || undefined : undefined;
    const product = bias ? `${y}_unbiased` : y;
    const nodeOf = (name: string, opType: string, inputs: string[], outputs: string[], attribute: OnnxNode['attribute'] = []): OnnxNode => ({ op_type: opType, name: `${label}/${name}`, input: inputs, output: outputs, attribute });
    rewritten.push(
      nodeOf('DynamicQuantizeLinear', 'DynamicQuantizeLinear', [node.input[0]], [`${y}_input_quantized`, `${y}_input_scale`, `${y}_input_zero_point`]),
      nodeOf('MatMulInteger', 'MatMulInteger', [`${y}_input_quantized`, quantizedWeight.values, `${y}_input_zero_point`], [`${y}_int32`]),
      nodeOf('Cast', 'Cast', [`${y}_int32`], [`${y}_int32_float`], [{ name: 'to', type: INT_ATTRIBUTE, i: FLOAT }]),
      // Input scale first, weight scales second: the order ONNX Runtime's fusion reads them in.
      nodeOf('Scales', 'Mul', [`${y}_input_scale`, `${y}_weight_scale`], [`${y}_scale`]),
      nodeOf('Rescale', 'Mul', [`${y}_int32_float`, `${y}_scale`], [product]),
    );
    if (bias) rewritten.push(nodeOf('Bias', 'Add', [product, gemmBias(graph.initializer, initializers, node, bias)], [y]));
    result.quantized.push(label);
  }
  graph.node = rewritten;
  // The float weights replaced by their int8 forms go.
  dropUnreadInitializers(graph);
  return result;
}

/** The Gemm's bias as Add takes it: C itself, or a new initializer of beta × C when beta is not 1. */
function gemmBias(added: OnnxTensor[], initializers: ReadonlyMap<string, OnnxTensor>, node: OnnxNode, bias: string): string {
  const beta = floatAttribute(node, 'beta', 1);
  if (beta === 1) return bias;
  const tensor = initializers.get(bias)!;
  added.push(rawTensor(`${bias}_times_${beta}`, FLOAT, dimsOf(tensor), floatsOf(tensor).map((value) => value * beta)));
  return `${bias}_times_${beta}`;
}
