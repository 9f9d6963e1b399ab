/**
 * What every target is asked to compute: one request's inputs (random data of the model's input
 * shapes), its V2 bodies (JSON, and Triton's binary tensor data), and the checks a response must pass.
 */
import * as ort from 'onnxruntime-node';
import { elementCount, elementType, jsonValues, type OrtNumericData } from './tensors.js';
import type { Encoding } from './options.js';

export interface InputSpec {
  name: string;
  ortType: string;
  /** Dims after the batch dimension (the whole shape when the model does not batch). */
  rowDims: number[];
}

export interface OutputSpec {
  name: string;
  ortType: string;
  /** Shape of one request's answer (batch 1 included when the model batches). */
  shape: number[];
}

export interface Workload {
  batched: boolean;
  inputs: InputSpec[];
  /** One request's data, reused by every request so all targets compute the same thing. */
  data: Record<string, OrtNumericData>;
}

export interface RequestBody {
  body: Buffer;
  headers: Record<string, string>;
}

function describe(shape: readonly (number | string)[]): string {
  return `[${shape.join(',')}]`;
}

/** Input specs from the model's metadata, dynamic dims filled from --input-shape. */
export function inputSpecs(session: ort.InferenceSession, batched: boolean, shapes: Map<string, number[]>): InputSpec[] {
  const known = new Set(session.inputMetadata.map((input) => input.name));
  for (const name of shapes.keys()) {
    if (!known.has(name)) throw new Error(`--input-shape names '${name}', but the model's inputs are ${[...known].join(', ')}`);
  }
  return session.inputMetadata.map((input) => {
    if (!input.isTensor) throw new Error(`input '${input.name}' is not a tensor`);
    const declared = batched ? input.shape.slice(1) : input.shape;
    const given = shapes.get(input.name);
    if (given) {
      const fits =
        given.length === declared.length && given.every((dim, index) => typeof declared[index] !== 'number' || declared[index] < 0 || declared[index] === dim);
      if (!fits) {
        throw new Error(`--input-shape ${input.name}=${given.join(',')} does not fit the model's ${describe(declared)}${batched ? ' after the batch dimension' : ''}`);
      }
      return { name: input.name, ortType: input.type, rowDims: given };
    }
    if (declared.some((dim) => typeof dim !== 'number' || dim < 0)) {
      throw new Error(
        `input '${input.name}' has dynamic dims ${describe(declared)}${batched ? ' after the batch dimension' : ''}; give them with --input-shape ${input.name}=D1,D2,…`,
      );
    }
    return { name: input.name, ortType: input.type, rowDims: declared as number[] };
  });
}

export function makeWorkload(inputs: InputSpec[], batched: boolean): Workload {
  const data: Record<string, OrtNumericData> = {};
  for (const input of inputs) {
    const type = elementType(input.ortType);
    const values = type.allocate(elementCount(input.rowDims));
    for (let i = 0; i < values.length; i++) (values as unknown as (number | bigint)[])[i] = type.random();
    data[input.name] = values;
  }
  return { batched, inputs, data };
}

export function requestShape(workload: Workload, input: InputSpec, batch = 1): number[] {
  return workload.batched ? [batch, ...input.rowDims] : [...input.rowDims];
}

/** Feeds of `batch` rows, each row the request's data, for the in-process runs. */
export function feedsOf(workload: Workload, batch: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of workload.inputs) {
    const row = workload.data[input.name];
    const type = elementType(input.ortType);
    const data = type.allocate(row.length * batch);
    for (let b = 0; b < batch; b++) (data as Float32Array).set(row as Float32Array, b * row.length);
    feeds[input.name] = new ort.Tensor(input.ortType as ort.Tensor.Type, data as ort.Tensor.DataType, requestShape(workload, input, batch));
  }
  return feeds;
}

/** The V2 body of one request in the given encoding. */
export function requestBody(workload: Workload, outputs: readonly OutputSpec[], encoding: Encoding): RequestBody {
  if (encoding === 'json') {
    const body = JSON.stringify({
      inputs: workload.inputs.map((input) => ({
        name: input.name,
        datatype: elementType(input.ortType).v2,
        shape: requestShape(workload, input),
        data: jsonValues(input.ortType, workload.data[input.name]),
      })),
    });
    return { body: Buffer.from(body), headers: { 'content-type': 'application/json' } };
  }
  const header = Buffer.from(
    JSON.stringify({
      inputs: workload.inputs.map((input) => ({
        name: input.name,
        datatype: elementType(input.ortType).v2,
        shape: requestShape(workload, input),
        parameters: { binary_data_size: workload.data[input.name].byteLength },
      })),
      outputs: outputs.map((output) => ({ name: output.name, parameters: { binary_data: true } })),
    }),
  );
  const tensors = workload.inputs.map((input) => {
    const data = workload.data[input.name];
    return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  });
  return {
    body: Buffer.concat([header, ...tensors]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
  };
}

type Headers = Record<string, string | string[] | undefined>;
export type ResponseCheck = (headers: Headers, body: Buffer) => string | undefined;

function headerValue(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** A V2 infer response must hold every expected output with its shape, as JSON data or as binary bytes. */
export function inferResponseCheck(outputs: readonly OutputSpec[], encoding: Encoding): ResponseCheck {
  return (headers, body) => {
    const lengthHeader = headerValue(headers, 'inference-header-content-length');
    if (encoding === 'binary' && lengthHeader === undefined) return 'binary outputs asked for, but no Inference-Header-Content-Length';
    const jsonLength = lengthHeader === undefined ? body.length : Number(lengthHeader);
    if (!Number.isInteger(jsonLength) || jsonLength > body.length) return `bad Inference-Header-Content-Length ${lengthHeader}`;
    let header: { outputs?: { name: string; shape: number[]; data?: unknown[]; parameters?: { binary_data_size?: number } }[] };
    try {
      header = JSON.parse(body.toString('utf8', 0, jsonLength));
    } catch (error) {
      return `response JSON does not parse: ${(error as Error).message}`;
    }
    if (!Array.isArray(header.outputs)) return `response has no 'outputs': ${body.toString('utf8', 0, Math.min(200, jsonLength))}`;
    let offset = jsonLength;
    for (const expected of outputs) {
      const output = header.outputs.find((candidate) => candidate.name === expected.name);
      if (!output) return `output '${expected.name}' missing (got ${header.outputs.map((o) => o.name).join(', ')})`;
      if (describe(output.shape) !== describe(expected.shape)) return `output '${expected.name}' has shape ${describe(output.shape)}, expected ${describe(expected.shape)}`;
      const count = elementCount(expected.shape);
      if (encoding === 'binary') {
        const size = output.parameters?.binary_data_size;
        const wanted = count * elementType(expected.ortType).bytes;
        if (size !== wanted) return `output '${expected.name}' binary_data_size ${size}, expected ${wanted}`;
        offset += size;
      } else if (!Array.isArray(output.data) || output.data.length !== count) {
        return `output '${expected.name}' has ${Array.isArray(output.data) ? output.data.length : 'no'} JSON values, expected ${count}`;
      }
    }
    if (offset !== body.length) return `${body.length - offset} response bytes unaccounted for`;
    return undefined;
  };
}

/** The floor answers a constant small JSON object. */
export const floorResponseCheck: ResponseCheck = (_headers, body) => {
  try {
    const parsed = JSON.parse(body.toString('utf8'));
    return parsed && typeof parsed === 'object' ? undefined : 'floor answer is not a JSON object';
  } catch (error) {
    return `floor answer does not parse: ${(error as Error).message}`;
  }
};
