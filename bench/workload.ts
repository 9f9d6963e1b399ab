/**
 * What every target is asked to compute: one request's inputs (random data of the model's input
 * shapes), its V2 bodies (JSON, and Triton's binary tensor data), and the checks a response must pass.
 */
import * as ort from 'onnxruntime-node';
import { elementCount, elementType, jsonValues, typedFromBytes, type OrtNumericData } from './tensors.js';
import type { HttpEncoding } from './options.js';

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
  /** One request's answer computed in process (little-endian bytes), to check a served answer's values. */
  expected?: Buffer;
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

/** The region the shm encoding's requests name: every input, one after another, in input order. */
export const BENCH_SHM_REGION = 'nereid-bench-inputs';

/** The inputs' bytes as the shm encoding lays them out in its region. */
export function sharedMemoryInputs(workload: Workload): Buffer {
  return Buffer.concat(
    workload.inputs.map((input) => {
      const data = workload.data[input.name];
      return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    }),
  );
}

/** The V2 body of one request in the given encoding. */
export function requestBody(workload: Workload, outputs: readonly OutputSpec[], encoding: HttpEncoding): RequestBody {
  if (encoding === 'shm') {
    let offset = 0;
    const header = JSON.stringify({
      inputs: workload.inputs.map((input) => {
        const byteSize = workload.data[input.name].byteLength;
        const parameters = { shared_memory_region: BENCH_SHM_REGION, shared_memory_byte_size: byteSize, shared_memory_offset: offset };
        offset += byteSize;
        return { name: input.name, datatype: elementType(input.ortType).v2, shape: requestShape(workload, input), parameters };
      }),
      outputs: outputs.map((output) => ({ name: output.name, parameters: { binary_data: true } })),
    });
    return { body: Buffer.from(header), headers: { 'content-type': 'application/json' } };
  }
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
export function inferResponseCheck(outputs: readonly OutputSpec[], encoding: HttpEncoding): ResponseCheck {
  return (headers, body) => {
    const lengthHeader = headerValue(headers, 'inference-header-content-length');
    const binary = encoding !== 'json';
    if (binary && lengthHeader === undefined) return 'binary outputs asked for, but no Inference-Header-Content-Length';
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
      if (binary) {
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

// --- gRPC (KServe V2 ModelInfer) ------------------------------------------------------------------

/**
 * The ModelInfer request for the same tensors as the binary HTTP body: every input as
 * raw_input_contents (little-endian bytes), every output named (gRPC answers raw_output_contents).
 */
export function grpcRequest(workload: Workload, outputs: readonly OutputSpec[], modelName: string): Record<string, unknown> {
  return {
    model_name: modelName,
    inputs: workload.inputs.map((input) => ({ name: input.name, datatype: elementType(input.ortType).v2, shape: requestShape(workload, input) })),
    outputs: outputs.map((output) => ({ name: output.name })),
    raw_input_contents: workload.inputs.map((input) => {
      const data = workload.data[input.name];
      return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    }),
  };
}

/** A ModelInferResponse as @grpc/proto-loader decodes it with Nereid's PROTO_LOADER_OPTIONS (int64 as strings). */
export interface GrpcInferResponse {
  outputs?: { name: string; datatype: string; shape: (string | number)[] }[];
  raw_output_contents?: Buffer[];
}

/** Checks a decoded ModelInferResponse; returns a problem or undefined. */
export type GrpcResponseCheck = (response: GrpcInferResponse) => string | undefined;

/** Every expected output, with its datatype and shape, and raw bytes of the right size. */
export function grpcResponseCheck(outputs: readonly OutputSpec[]): GrpcResponseCheck {
  return (response) => {
    const got = response.outputs ?? [];
    const raw = response.raw_output_contents ?? [];
    if (raw.length !== got.length) return `${got.length} outputs but ${raw.length} raw_output_contents`;
    for (const expected of outputs) {
      const index = got.findIndex((candidate) => candidate.name === expected.name);
      if (index < 0) return `output '${expected.name}' missing (got ${got.map((o) => o.name).join(', ')})`;
      const output = got[index];
      const type = elementType(expected.ortType);
      if (output.datatype !== type.v2) return `output '${expected.name}' is ${output.datatype}, expected ${type.v2}`;
      const shape = output.shape.map(Number);
      if (describe(shape) !== describe(expected.shape)) return `output '${expected.name}' has shape ${describe(shape)}, expected ${describe(expected.shape)}`;
      const wanted = elementCount(expected.shape) * type.bytes;
      if (raw[index].length !== wanted) return `output '${expected.name}' has ${raw[index].length} raw bytes, expected ${wanted}`;
    }
    return undefined;
  };
}

// --- values: a served answer against the in-process one, and cache hits against the computed answer ---

/** The tensors of one answer, as bytes (binary, gRPC) or JSON values, by output name. */
export type AnswerTensors = Map<string, Uint8Array | unknown[]>;

/** The outputs of an HTTP answer (after inferResponseCheck passed). */
export function httpAnswerTensors(headers: Record<string, string | string[] | undefined>, body: Buffer): AnswerTensors {
  const lengthHeader = headerValue(headers, 'inference-header-content-length');
  const jsonLength = lengthHeader === undefined ? body.length : Number(lengthHeader);
  const header = JSON.parse(body.toString('utf8', 0, jsonLength)) as { outputs: { name: string; data?: unknown[]; parameters?: { binary_data_size?: number } }[] };
  const tensors: AnswerTensors = new Map();
  let offset = jsonLength;
  for (const output of header.outputs) {
    const size = output.parameters?.binary_data_size;
    if (size !== undefined) {
      tensors.set(output.name, body.subarray(offset, offset + size));
      offset += size;
    } else {
      tensors.set(output.name, output.data ?? []);
    }
  }
  return tensors;
}

export function grpcAnswerTensors(response: GrpcInferResponse): AnswerTensors {
  const raw = response.raw_output_contents ?? [];
  return new Map((response.outputs ?? []).map((output, index) => [output.name, raw[index]]));
}

/**
 * Compares an answer's values with the in-process answer: integers exactly, floats within
 * 1e-4 relative (+1e-6 absolute), as batching may change the rounding of a float kernel.
 */
export function compareWithExpected(outputs: readonly OutputSpec[], tensors: AnswerTensors): string | undefined {
  for (const output of outputs) {
    if (!output.expected) continue;
    const got = tensors.get(output.name);
    if (got === undefined) return `output '${output.name}' missing`;
    const type = elementType(output.ortType);
    const expected = typedFromBytes(output.ortType, output.expected);
    const actual = Array.isArray(got) ? type.fromJson(got) : typedFromBytes(output.ortType, got);
    if (actual.length !== expected.length) return `output '${output.name}' has ${actual.length} values, expected ${expected.length}`;
    const float = output.ortType.startsWith('float');
    for (let i = 0; i < expected.length; i++) {
      const a = Number(actual[i]);
      const e = Number(expected[i]);
      const ok = float ? Math.abs(a - e) <= 1e-6 + 1e-4 * Math.abs(e) : a === e;
      if (!ok) return `output '${output.name}'[${i}] is ${a}, in process ${e}`;
    }
  }
  return undefined;
}

/** Two answers hold byte-identical tensors (a cache hit against the answer computed for the same request). */
export function sameTensors(reference: AnswerTensors, tensors: AnswerTensors): string | undefined {
  for (const [name, expected] of reference) {
    const got = tensors.get(name);
    if (got === undefined) return `output '${name}' missing`;
    const same = Array.isArray(expected)
      ? Array.isArray(got) && got.length === expected.length && got.every((value, index) => value === expected[index])
      : !Array.isArray(got) && Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)) === 0;
    if (!same) return `output '${name}' differs from the computed answer`;
  }
  if (tensors.size !== reference.size) return `${tensors.size} outputs, the computed answer has ${reference.size}`;
  return undefined;
}
