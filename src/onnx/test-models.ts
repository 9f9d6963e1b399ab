/**
 * Small generated ONNX models and a Triton-layout repository writer, so tests
 * never depend on downloaded model files.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { attr, buildOnnxModel, type InitializerSpec, type NodeSpec, type OnnxElementType } from './onnx-model-builder.js';

/**
 * Writes `<repoDir>/<name>/<version>/model.onnx`, plus `<repoDir>/<name>/config.pbtxt`
 * when `config` is given and each `extraFiles` entry at its path relative to `<repoDir>/<name>`.
 */
export async function writeModel(
  repoDir: string,
  name: string,
  version: number,
  onnxBytes: Uint8Array,
  config?: string,
  extraFiles?: Record<string, string | Uint8Array>,
): Promise<void> {
  const modelDir = join(repoDir, name);
  const versionDir = join(modelDir, String(version));
  await mkdir(versionDir, { recursive: true });
  await writeFile(join(versionDir, 'model.onnx'), onnxBytes);
  if (config !== undefined) await writeFile(join(modelDir, 'config.pbtxt'), config);
  for (const [relPath, contents] of Object.entries(extraFiles ?? {})) {
    const path = join(modelDir, relPath);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, contents);
  }
}

/**
 * The pbtxt config of addSubModel as Triton's "simple" example declares it (INT32 [16] in and out, max_batch_size 8),
 * OUTPUT0 with a labels file where `outputLabels` names one, and `extra` lines (batching, instances) after it.
 */
export function addSubConfig(name: string, { outputLabels, extra = '' }: { outputLabels?: string; extra?: string } = {}): string {
  const labels = outputLabels ? ` label_filename: "${outputLabels}"` : '';
  return `name: "${name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ]${labels} },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
${extra}`;
}

/**
 * Triton's "simple" example model: INT32 INPUT0, INPUT1 -> OUTPUT0 = INPUT0 + INPUT1,
 * OUTPUT1 = INPUT0 - INPUT1. Shapes are ['batch', 16], or [16] when `batch` is false.
 */
export function addSubModel(opts: { batch?: boolean; type?: OnnxElementType } = {}): Uint8Array {
  const type = opts.type ?? 'int32';
  const shape = opts.batch === false ? [16] : ['batch', 16];
  return buildOnnxModel({
    graphName: 'add_sub',
    inputs: [
      { name: 'INPUT0', type, shape },
      { name: 'INPUT1', type, shape },
    ],
    outputs: [
      { name: 'OUTPUT0', type, shape },
      { name: 'OUTPUT1', type, shape },
    ],
    nodes: [
      { opType: 'Add', inputs: ['INPUT0', 'INPUT1'], outputs: ['OUTPUT0'] },
      { opType: 'Sub', inputs: ['INPUT0', 'INPUT1'], outputs: ['OUTPUT1'] },
    ],
  });
}

/** INPUT0 -> OUTPUT0 through Identity; works for every element type, strings included. */
export function identityModel(type: OnnxElementType, shape: (number | string | null)[] = ['batch', 'n']): Uint8Array {
  return buildOnnxModel({
    graphName: 'identity',
    inputs: [{ name: 'INPUT0', type, shape }],
    outputs: [{ name: 'OUTPUT0', type, shape }],
    nodes: [{ opType: 'Identity', inputs: ['INPUT0'], outputs: ['OUTPUT0'] }],
  });
}

/** FP32 INPUT0 ['batch', 4] -> OUTPUT0 = INPUT0 * 2, for tests that must tell output from input. */
export function scaleModel(factor = 2): Uint8Array {
  return buildOnnxModel({
    graphName: 'scale',
    inputs: [{ name: 'INPUT0', type: 'float32', shape: ['batch', 4] }],
    outputs: [{ name: 'OUTPUT0', type: 'float32', shape: ['batch', 4] }],
    initializers: [{ name: 'factor', type: 'float32', dims: [], values: [factor] }],
    nodes: [{ opType: 'Mul', inputs: ['INPUT0', 'factor'], outputs: ['OUTPUT0'] }],
  });
}

/**
 * A text model's first layer: INT64 token ids ['batch', 'seq'] looked up in a `vocabulary` × 2 embedding table (row i
 * holds [i, -i]) -> 'embedding' FP32 ['batch', 'seq', 2]. An id beyond the table fails inside ONNX Runtime's Gather.
 */
export function embeddingModel(vocabulary = 10): Uint8Array {
  return buildOnnxModel({
    graphName: 'embedding',
    inputs: [{ name: 'input_ids', type: 'int64', shape: ['batch', 'seq'] }],
    outputs: [{ name: 'embedding', type: 'float32', shape: ['batch', 'seq', 2] }],
    initializers: [{ name: 'table', type: 'float32', dims: [vocabulary, 2], values: Array.from({ length: vocabulary }, (_, id) => [id, -id]).flat() }],
    nodes: [{ opType: 'Gather', inputs: ['table', 'input_ids'], outputs: ['embedding'], attributes: { axis: 0 } }],
  });
}

/**
 * A tiny image classifier: 'image' FP32 ['batch', 1, 28, 28] -> Conv(1->4, 3x3, pad 1) -> Relu
 * -> GlobalAveragePool -> Flatten -> Gemm(4->10) -> Softmax -> 'probs' FP32 ['batch', 10].
 * Weights come from a seeded PRNG so outputs are reproducible across runs and machines.
 */
export function smallCnnModel(seed = 42): Uint8Array {
  const rand = mulberry32(seed);
  const uniform = (n: number, scale: number): number[] => Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
  const initializers: InitializerSpec[] = [
    { name: 'conv_w', type: 'float32', dims: [4, 1, 3, 3], values: uniform(36, 0.5) },
    { name: 'conv_b', type: 'float32', dims: [4], values: uniform(4, 0.1) },
    { name: 'fc_w', type: 'float32', dims: [10, 4], values: uniform(40, 1) },
    { name: 'fc_b', type: 'float32', dims: [10], values: uniform(10, 0.1) },
  ];
  return buildOnnxModel({
    graphName: 'small_cnn',
    inputs: [{ name: 'image', type: 'float32', shape: ['batch', 1, 28, 28] }],
    outputs: [{ name: 'probs', type: 'float32', shape: ['batch', 10] }],
    initializers,
    nodes: [
      {
        opType: 'Conv',
        inputs: ['image', 'conv_w', 'conv_b'],
        outputs: ['conv'],
        attributes: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] },
      },
      { opType: 'Relu', inputs: ['conv'], outputs: ['relu'] },
      { opType: 'GlobalAveragePool', inputs: ['relu'], outputs: ['pooled'] },
      { opType: 'Flatten', inputs: ['pooled'], outputs: ['features'], attributes: { axis: 1 } },
      {
        opType: 'Gemm',
        inputs: ['features', 'fc_w', 'fc_b'],
        outputs: ['logits'],
        // alpha/beta are FLOAT attributes; plain 1 would be written as INT and rejected.
        attributes: { alpha: attr.float(1), beta: attr.float(1), transB: 1 },
      },
      { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: 1 } },
    ],
  });
}

/**
 * FP32 x [batch, width] through `layers` MatMuls by one width×width weight (every element 1/width,
 * made in the graph, so the file stays a few hundred bytes however heavy the model), then to
 * y [batch, 4]. Per row it costs about width² × layers multiply-adds, and far less per row in
 * batches (matrix-vector products become one matrix product): a model where batching pays.
 */
export function matMulChainModel({ width, layers }: { width: number; layers: number }): Uint8Array {
  /** A [rows, cols] weight of 1/width everywhere, made by a node from its shape. */
  const constant = (name: string, dims: number[]): [InitializerSpec, NodeSpec] => [
    { name: `${name}_shape`, type: 'int64', dims: [2], values: dims.map(BigInt) },
    { opType: 'ConstantOfShape', inputs: [`${name}_shape`], outputs: [name], attributes: { value: attr.tensor({ type: 'float32', dims: [1], values: [1 / width] }) } },
  ];
  const [squareShape, square] = constant('w', [width, width]);
  const [narrowShape, narrow] = constant('out_w', [width, 4]);
  return buildOnnxModel({
    graphName: 'matmul_chain',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', width] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }],
    initializers: [squareShape, narrowShape],
    nodes: [
      square,
      narrow,
      ...Array.from({ length: layers }, (_, layer) => ({ opType: 'MatMul', inputs: [layer === 0 ? 'x' : `h${layer}`, 'w'], outputs: [`h${layer + 1}`] })),
      { opType: 'MatMul', inputs: [`h${layers}`, 'out_w'], outputs: ['y'] },
    ],
  });
}

/**
 * A text encoder's cost without its weights: INT64 input_ids ['batch', 'seq'] looked up in a vocabulary × hidden table,
 * then `layers` MatMuls by a hidden × hidden weight per token -> 'hidden' FP32 ['batch', 'seq', hidden]. Table and
 * weights are made in the graph (ConstantOfShape), so the file stays small; per token it costs hidden² × layers
 * multiply-adds, and a batch of sequences is one larger matrix product.
 */
export function textEncoderModel({ vocabulary, hidden, layers }: { vocabulary: number; hidden: number; layers: number }): Uint8Array {
  const constant = (name: string, dims: number[], value: number): [InitializerSpec, NodeSpec] => [
    { name: `${name}_shape`, type: 'int64', dims: [2], values: dims.map(BigInt) },
    { opType: 'ConstantOfShape', inputs: [`${name}_shape`], outputs: [name], attributes: { value: attr.tensor({ type: 'float32', dims: [1], values: [value] }) } },
  ];
  const [tableShape, table] = constant('table', [vocabulary, hidden], 1 / hidden);
  const [weightShape, weight] = constant('w', [hidden, hidden], 1 / hidden);
  return buildOnnxModel({
    graphName: 'text_encoder',
    inputs: [{ name: 'input_ids', type: 'int64', shape: ['batch', 'seq'] }],
    outputs: [{ name: 'hidden', type: 'float32', shape: ['batch', 'seq', hidden] }],
    initializers: [tableShape, weightShape],
    nodes: [
      table,
      weight,
      { opType: 'Gather', inputs: ['table', 'input_ids'], outputs: ['h0'], attributes: { axis: 0 } },
      ...Array.from({ length: layers }, (_, layer) => ({ opType: 'MatMul', inputs: [`h${layer}`, 'w'], outputs: [layer === layers - 1 ? 'hidden' : `h${layer + 1}`] })),
    ],
  });
}

/** Small, well-known 32-bit PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A stateful accumulator for sequence batching: FP32 INPUT, STATE_IN (the implicit state) and the
 * controls START, END, READY (FP32, 0 or 1) ['batch', 1] → STATE_OUT = STATE_IN × (1 − START) +
 * INPUT, OUTPUT = STATE_OUT, CONTROLS = [START, END, READY] per row; with `corrid`, CORRID (INT64
 * or STRING) comes back as CORRID_OUT. Without `batch` every shape drops its batch dimension.
 */
export function accumulatorModel(opts: { batch?: boolean; corrid?: 'int64' | 'uint64' | 'string' } = {}): Uint8Array {
  const row = opts.batch === false ? [1] : ['batch', 1];
  const float = (name: string) => ({ name, type: 'float32' as const, shape: row });
  const corrid = opts.corrid ? [{ name: 'CORRID', type: opts.corrid, shape: row }] : [];
  return buildOnnxModel({
    graphName: 'accumulator',
    inputs: [float('INPUT'), float('STATE_IN'), float('START'), float('END'), float('READY'), ...corrid],
    outputs: [
      float('OUTPUT'),
      float('STATE_OUT'),
      { name: 'CONTROLS', type: 'float32', shape: opts.batch === false ? [3] : ['batch', 3] },
      ...(opts.corrid ? [{ name: 'CORRID_OUT', type: opts.corrid, shape: row }] : []),
    ],
    initializers: [{ name: 'one', type: 'float32', dims: [], values: [1] }],
    nodes: [
      { opType: 'Sub', inputs: ['one', 'START'], outputs: ['keep'] },
      { opType: 'Mul', inputs: ['STATE_IN', 'keep'], outputs: ['kept'] },
      { opType: 'Add', inputs: ['kept', 'INPUT'], outputs: ['STATE_OUT'] },
      { opType: 'Identity', inputs: ['STATE_OUT'], outputs: ['OUTPUT'] },
      { opType: 'Concat', inputs: ['START', 'END', 'READY'], outputs: ['CONTROLS'], attributes: { axis: attr.int(opts.batch === false ? 0 : 1) } },
      ...(opts.corrid ? [{ opType: 'Identity', inputs: ['CORRID'], outputs: ['CORRID_OUT'] }] : []),
    ],
  });
}

/**
 * A ragged-batching model (Triton's allow_ragged_batch): INPUT is every request's FP32 elements
 * concatenated into one flat tensor, OFFSETS the element offsets of each request's start and the
 * batch's end (BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO), COUNT each request's element count
 * (BATCH_ELEMENT_COUNT). Per request: SUM, the sum of its elements (differences of the running
 * sum taken at the offsets), and ELEMENTS, its element count; both [requests, 1].
 */
export function raggedSumModel(): Uint8Array {
  return buildOnnxModel({
    graphName: 'ragged_sum',
    inputs: [
      { name: 'INPUT', type: 'float32', shape: ['elements'] },
      { name: 'OFFSETS', type: 'int32', shape: ['requests_and_one'] },
      { name: 'COUNT', type: 'int32', shape: ['requests'] },
    ],
    outputs: [
      { name: 'SUM', type: 'float32', shape: ['requests', 1] },
      { name: 'ELEMENTS', type: 'int32', shape: ['requests', 1] },
    ],
    initializers: [
      { name: 'axis', type: 'int64', dims: [], values: [0n] },
      { name: 'zero', type: 'float32', dims: [1], values: [0] },
      { name: 'one', type: 'int64', dims: [1], values: [1n] },
      { name: 'minus_one', type: 'int64', dims: [1], values: [-1n] },
      { name: 'start', type: 'int64', dims: [1], values: [0n] },
      { name: 'to_end', type: 'int64', dims: [1], values: [2n ** 62n] },
      { name: 'column', type: 'int64', dims: [2], values: [-1n, 1n] },
    ],
    nodes: [
      { opType: 'CumSum', inputs: ['INPUT', 'axis'], outputs: ['running'] },
      { opType: 'Concat', inputs: ['zero', 'running'], outputs: ['running_from_zero'], attributes: { axis: 0 } },
      { opType: 'Gather', inputs: ['running_from_zero', 'OFFSETS'], outputs: ['at_offsets'], attributes: { axis: 0 } },
      { opType: 'Slice', inputs: ['at_offsets', 'one', 'to_end'], outputs: ['at_ends'] },
      { opType: 'Slice', inputs: ['at_offsets', 'start', 'minus_one'], outputs: ['at_starts'] },
      { opType: 'Sub', inputs: ['at_ends', 'at_starts'], outputs: ['sums'] },
      { opType: 'Reshape', inputs: ['sums', 'column'], outputs: ['SUM'] },
      { opType: 'Reshape', inputs: ['COUNT', 'column'], outputs: ['ELEMENTS'] },
    ],
  });
}
