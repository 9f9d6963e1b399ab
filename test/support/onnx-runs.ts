/** Running a model's bytes in ONNX Runtime as the quantizer's tests do, and reading what its optimizer made of the graph. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { mulberry32 } from '../../src/onnx/test-models.js';
import { readOnnxModel } from '../../src/onnx/onnx-model-file.js';

/** `count` deterministic values in [-1, 1). */
export function noise(count: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: count }, () => random() * 2 - 1);
}

/** One run of the model on `feed`: every output's data as float32. */
export async function runModel(bytes: Uint8Array, feed: Record<string, ort.Tensor>, options: ort.InferenceSession.SessionOptions = {}): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3, ...options });
  try {
    const results = await session.run(feed);
    return Object.fromEntries(Object.entries(results).map(([name, tensor]) => [name, tensor.data as Float32Array]));
  } finally {
    await session.release();
  }
}

/** The op types of the graph ONNX Runtime runs after optimizing at `level`, read from the model file it saves. */
export async function optimizedOpTypes(bytes: Uint8Array, level: NonNullable<ort.InferenceSession.SessionOptions['graphOptimizationLevel']>): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-optimized-'));
  try {
    const optimizedModelFilePath = join(dir, 'optimized.onnx');
    const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: level, optimizedModelFilePath, logSeverityLevel: 3 });
    await session.release();
    return readOnnxModel(await readFile(optimizedModelFilePath)).graph.node.map((node) => node.op_type!);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The index of each row's largest value, for rows of `width` values. */
export function rowArgmax(values: Float32Array, width: number): number[] {
  return Array.from({ length: values.length / width }, (_, row) => {
    const scores = values.subarray(row * width, (row + 1) * width);
    return scores.indexOf(Math.max(...scores));
  });
}
