/**
 * Checks a request against the model's config before it is queued, so that every mistake is
 * reported with what was expected and what arrived, and nothing malformed reaches the engine.
 */
import { elementCount } from '../core/datatype.js';
import { invalidArgument } from '../core/errors.js';
import type { InferInput, RequestedOutput } from '../core/inference.js';
import { describeShape, type Tensor } from '../core/tensor.js';
import { datatypeOfConfig, type CompletedModelConfig, type ModelInputConfig } from '../config/model-config.js';

export interface PreparedInputs {
  tensors: Record<string, Tensor>;
  /** Rows along the batch dimension, 0 for a model without one. */
  batchSize: number;
}

/** The shape a client must send, with -1 for the batch dimension when the model batches. */
export function expectedShape(config: CompletedModelConfig, tensor: { dims: number[] }): number[] {
  return config.max_batch_size > 0 ? [-1, ...tensor.dims] : [...tensor.dims];
}

function shapeMatches(expected: readonly number[], actual: readonly number[]): boolean {
  return expected.length === actual.length && expected.every((dim, index) => dim === -1 || dim === actual[index]);
}

export function prepareInputs(config: CompletedModelConfig, inputs: readonly InferInput[]): PreparedInputs {
  const byName = new Map<string, ModelInputConfig>(config.input.map((input) => [input.name, input]));
  const tensors: Record<string, Tensor> = {};
  let batchSize: number | undefined;
  let batchSource = '';
  for (const input of inputs) {
    const declared = byName.get(input.name);
    if (!declared) {
      throw invalidArgument(
        `model '${config.name}' has no input '${input.name}' (its inputs: ${config.input.map((i) => i.name).join(', ')})`,
      );
    }
    if (tensors[input.name]) throw invalidArgument(`input '${input.name}' is given more than once`);
    const datatype = datatypeOfConfig(declared);
    const shape = expectedShape(config, declared);
    if (input.shape.some((dim) => !Number.isInteger(dim) || dim < 0)) {
      throw invalidArgument(`input '${input.name}' has an invalid shape ${describeShape(input.shape)}: dimensions must be non-negative integers`);
    }
    if (input.datatype !== datatype || !shapeMatches(shape, input.shape)) {
      throw invalidArgument(
        `input '${input.name}' expects ${datatype} ${describeShape(shape)}, got ${input.datatype} ${describeShape(input.shape)}`,
      );
    }
    if (config.max_batch_size > 0) {
      const rows = input.shape[0];
      if (rows < 1 || rows > config.max_batch_size) {
        throw invalidArgument(
          `input '${input.name}' has batch size ${rows}; model '${config.name}' accepts 1 to ${config.max_batch_size} (max_batch_size)`,
        );
      }
      if (batchSize !== undefined && rows !== batchSize) {
        throw invalidArgument(`input '${input.name}' has batch size ${rows} but input '${batchSource}' has ${batchSize}; all inputs must agree`);
      }
      batchSize = rows;
      batchSource = input.name;
    }
    const count = elementCount(input.shape);
    if (input.data.length !== count) {
      throw invalidArgument(
        `input '${input.name}' has shape ${describeShape(input.shape)}, which holds ${count} elements, but ${input.data.length} were sent`,
      );
    }
    const reshaped = declared.reshape
      ? [...(config.max_batch_size > 0 ? [input.shape[0]] : []), ...declared.reshape.shape]
      : input.shape;
    tensors[input.name] = { datatype, shape: reshaped, data: input.data };
  }
  const missing = config.input.filter((input) => !input.optional && !tensors[input.name]).map((input) => input.name);
  if (missing.length > 0) {
    throw invalidArgument(
      `model '${config.name}' expects input${missing.length > 1 ? 's' : ''} ${missing.map((name) => `'${name}'`).join(', ')}, which the request lacks`,
    );
  }
  return { tensors, batchSize: batchSize ?? 0 };
}

export function checkRequestedOutputs(config: CompletedModelConfig, requested: readonly RequestedOutput[] | undefined): string[] {
  if (!requested || requested.length === 0) return config.output.map((output) => output.name);
  const names = new Set(config.output.map((output) => output.name));
  const seen = new Set<string>();
  for (const output of requested) {
    if (!names.has(output.name)) {
      throw invalidArgument(
        `model '${config.name}' has no output '${output.name}' (its outputs: ${[...names].join(', ')})`,
      );
    }
    if (seen.has(output.name)) throw invalidArgument(`output '${output.name}' is requested more than once`);
    seen.add(output.name);
    if (output.classCount !== undefined) {
      if (!Number.isInteger(output.classCount) || output.classCount < 1) {
        throw invalidArgument(`output '${output.name}': class_count must be a positive integer, got ${output.classCount}`);
      }
      const declared = config.output.find((o) => o.name === output.name)!;
      const datatype = datatypeOfConfig(declared);
      if (datatype === 'BYTES' || datatype === 'BOOL') {
        throw invalidArgument(`output '${output.name}' is ${datatype}; classification needs a numeric output`);
      }
    }
  }
  return [...seen];
}
