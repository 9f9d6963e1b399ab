/**
 * A minimal ONNX model writer, so tests and examples can generate their own models
 * instead of downloading them. It covers plain graphs of standard operators with
 * tensor inputs/outputs and initializers; nothing more (no subgraphs, functions,
 * sparse tensors or external data).
 */
import { numberToHalf } from '../core/datatype.js';
import protobuf from 'protobufjs';

// A subset of onnx/onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
// Field numbers and proto2 semantics must match the official file exactly, because
// onnxruntime decodes the bytes with its own generated code; messages and fields
// this writer never emits are left out.
const ONNX_PROTO = `
syntax = "proto2";
package onnx;

message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0;
    FLOAT = 1;
    INT = 2;
    STRING = 3;
    TENSOR = 4;
    GRAPH = 5;
    SPARSE_TENSOR = 11;
    TYPE_PROTO = 13;
    FLOATS = 6;
    INTS = 7;
    STRINGS = 8;
    TENSORS = 9;
    GRAPHS = 10;
    SPARSE_TENSORS = 12;
    TYPE_PROTOS = 14;
  }
  optional string name = 1;
  optional string ref_attr_name = 21;
  optional string doc_string = 13;
  optional AttributeType type = 20;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  optional GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
}

message ValueInfoProto {
  optional string name = 1;
  optional TypeProto type = 2;
  optional string doc_string = 3;
  repeated StringStringEntryProto metadata_props = 4;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  optional string domain = 7;
  optional string overload = 8;
  repeated AttributeProto attribute = 5;
  optional string doc_string = 6;
  repeated StringStringEntryProto metadata_props = 9;
}

message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string domain = 4;
  optional int64 model_version = 5;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}

message StringStringEntryProto {
  optional string key = 1;
  optional string value = 2;
}

message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  optional string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
  repeated StringStringEntryProto metadata_props = 16;
}

message TensorProto {
  enum DataType {
    UNDEFINED = 0;
    FLOAT = 1;
    UINT8 = 2;
    INT8 = 3;
    UINT16 = 4;
    INT16 = 5;
    INT32 = 6;
    INT64 = 7;
    STRING = 8;
    BOOL = 9;
    FLOAT16 = 10;
    DOUBLE = 11;
    UINT32 = 12;
    UINT64 = 13;
    COMPLEX64 = 14;
    COMPLEX128 = 15;
    BFLOAT16 = 16;
  }
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  optional string name = 8;
  optional string doc_string = 12;
  optional bytes raw_data = 9;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
  // Declared so that a reader can tell a tensor kept in an external file (the writer never sets them).
  repeated StringStringEntryProto external_data = 13;
  optional int32 data_location = 14;
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    optional string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    optional int32 elem_type = 1;
    optional TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  optional string denotation = 6;
}

message OperatorSetIdProto {
  optional string domain = 1;
  optional int64 version = 2;
}
`;

// keepCase so the plain objects below can use the official snake_case field names.
const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;
/** ONNX's ModelProto as this subset declares it: what the builder writes and onnx-model-file.ts reads and rewrites. */
export const ModelProto = root.lookupType('onnx.ModelProto');

export type OnnxElementType =
  | 'float32'
  | 'float16'
  | 'float64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string';

/** TensorProto.DataType numbers, as written into elem_type / data_type. */
export const ONNX_ELEMENT_TYPES: Readonly<Record<OnnxElementType, number>> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
};

/**
 * A graph input or output. A shape entry is a fixed size (number), a symbolic
 * dimension (string, e.g. 'batch') or null for an unnamed unknown dimension; a shape
 * of null is none at all (the rank unknown, as ONNX allows), where [] is a scalar.
 */
export interface ValueSpec {
  name: string;
  type: OnnxElementType;
  shape: (number | string | null)[] | null;
}

/** A constant tensor. float16 values are given as numbers and converted to half bits. */
export interface TensorSpec {
  type: OnnxElementType;
  dims: number[];
  values: ArrayLike<number | bigint | boolean> | string[];
}

export interface InitializerSpec extends TensorSpec {
  name: string;
}

/**
 * Attribute values. Plain numbers cannot say whether ONNX wants an INT or a FLOAT
 * (onnxruntime rejects the wrong one), so plain numbers/arrays map to INT(S) when
 * every value is an integer and FLOAT(S) otherwise; use the tagged forms
 * (or the `attr` helpers) to force a type, e.g. Gemm's alpha = 1.
 */
export type AttributeValue =
  | number
  | number[]
  | string
  | string[]
  | { type: 'float'; value: number }
  | { type: 'floats'; value: number[] }
  | { type: 'int'; value: number }
  | { type: 'ints'; value: number[] }
  | { type: 'tensor'; value: TensorSpec };

export const attr = {
  float: (value: number): AttributeValue => ({ type: 'float', value }),
  floats: (value: number[]): AttributeValue => ({ type: 'floats', value }),
  int: (value: number): AttributeValue => ({ type: 'int', value }),
  ints: (value: number[]): AttributeValue => ({ type: 'ints', value }),
  tensor: (value: TensorSpec): AttributeValue => ({ type: 'tensor', value }),
};

export interface NodeSpec {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  /** Operator domain; '' (the default ONNX domain) when omitted. */
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface ModelSpec {
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  nodes: NodeSpec[];
  initializers?: InitializerSpec[];
  /** Default-domain opset version; 13 by default. */
  opset?: number;
  irVersion?: number;
  graphName?: string;
  producer?: string;
  modelVersion?: number;
  docString?: string;
  metadata?: Record<string, string>;
}

export const DEFAULT_IR_VERSION = 8;
export const DEFAULT_OPSET = 13;

// AttributeProto.AttributeType numbers.
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;
const ATTR_STRINGS = 8;

const utf8 = new TextEncoder();

/** Serializes a model description to ONNX protobuf bytes (the contents of a model.onnx file). */
export function buildOnnxModel(spec: ModelSpec): Uint8Array {
  const model = {
    ir_version: spec.irVersion ?? DEFAULT_IR_VERSION,
    opset_import: [{ domain: '', version: spec.opset ?? DEFAULT_OPSET }],
    producer_name: spec.producer ?? 'nereid-onnx-model-builder',
    model_version: spec.modelVersion,
    doc_string: spec.docString,
    graph: {
      name: spec.graphName ?? 'graph',
      node: spec.nodes.map((node, index) => ({
        input: node.inputs,
        output: node.outputs,
        name: node.name ?? `${node.opType}_${index}`,
        op_type: node.opType,
        domain: node.domain ?? '',
        attribute: Object.entries(node.attributes ?? {}).map(([name, value]) => encodeAttribute(name, value)),
      })),
      initializer: (spec.initializers ?? []).map((init) => encodeTensor(init, init.name)),
      input: spec.inputs.map(encodeValueInfo),
      output: spec.outputs.map(encodeValueInfo),
    },
    metadata_props: Object.entries(spec.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
  // verify catches misspelt fields / wrong JS types here rather than as a vague ORT load error.
  const problem = ModelProto.verify(model);
  if (problem) throw new Error(`invalid ONNX model description: ${problem}`);
  // protobufjs hands back a Buffer that may be a slice of Node's shared pool; copy into a
  // plain Uint8Array of its own so callers can use .buffer and compare with deepEqual.
  return new Uint8Array(ModelProto.encode(model).finish());
}

/**
 * The model with its initializers' bytes kept in one file beside it (ONNX external data, as exporters
 * write models of more than 2 GB): `model` gives each initializer that file's `location`, offset and
 * length; `data` is the file's contents, to be written as `location` in the model's folder.
 */
export function buildOnnxModelWithExternalData(spec: ModelSpec, location: string): { model: Uint8Array; data: Uint8Array } {
  const model = ModelProto.decode(buildOnnxModel(spec)) as unknown as { graph: { initializer: Record<string, unknown>[] } };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of model.graph.initializer) {
    const raw = tensor.raw_data as Uint8Array | undefined;
    if (!raw || raw.length === 0) continue; // strings have no raw bytes; they stay inside
    delete tensor.raw_data;
    tensor.data_location = 1; // EXTERNAL
    tensor.external_data = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    chunks.push(raw);
    offset += raw.length;
  }
  const data = new Uint8Array(offset);
  chunks.reduce((at, chunk) => (data.set(chunk, at), at + chunk.length), 0);
  return { model: new Uint8Array(ModelProto.encode(model as never).finish()), data };
}

function encodeValueInfo(value: ValueSpec): object {
  if (value.shape === null) return { name: value.name, type: { tensor_type: { elem_type: elementTypeNumber(value.type) } } };
  return {
    name: value.name,
    type: {
      tensor_type: {
        elem_type: elementTypeNumber(value.type),
        shape: {
          dim: value.shape.map((d) => {
            if (d === null) return {};
            if (typeof d === 'string') return { dim_param: d };
            if (!Number.isInteger(d) || d < 0) {
              throw new Error(`${value.name}: dimension ${d} must be a non-negative integer, a symbolic name or null`);
            }
            return { dim_value: d };
          }),
        },
      },
    },
  };
}

function elementTypeNumber(type: OnnxElementType): number {
  const n = ONNX_ELEMENT_TYPES[type];
  if (n === undefined) throw new Error(`unknown ONNX element type '${type}'`);
  return n;
}

function encodeAttribute(name: string, value: AttributeValue): object {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: ATTR_INT, i: value } : { name, type: ATTR_FLOAT, f: value };
  }
  if (typeof value === 'string') return { name, type: ATTR_STRING, s: utf8.encode(value) };
  if (Array.isArray(value)) {
    if (value.every((v): v is string => typeof v === 'string')) {
      return { name, type: ATTR_STRINGS, strings: value.map((v) => utf8.encode(v)) };
    }
    const nums = value as number[];
    return nums.every(Number.isInteger)
      ? { name, type: ATTR_INTS, ints: nums }
      : { name, type: ATTR_FLOATS, floats: nums };
  }
  switch (value.type) {
    case 'float':
      return { name, type: ATTR_FLOAT, f: value.value };
    case 'floats':
      return { name, type: ATTR_FLOATS, floats: value.value };
    case 'int':
      return { name, type: ATTR_INT, i: value.value };
    case 'ints':
      return { name, type: ATTR_INTS, ints: value.value };
    case 'tensor':
      return { name, type: ATTR_TENSOR, t: encodeTensor(value.value) };
  }
}

function encodeTensor(tensor: TensorSpec, name?: string): object {
  const count = tensor.dims.reduce((a, b) => a * b, 1);
  if (tensor.values.length !== count) {
    throw new Error(`tensor ${name ?? ''}: dims [${tensor.dims}] need ${count} values, got ${tensor.values.length}`);
  }
  const base = { name, dims: tensor.dims, data_type: elementTypeNumber(tensor.type) };
  if (tensor.type === 'string') {
    return { ...base, string_data: Array.from(tensor.values as string[], (s) => utf8.encode(String(s))) };
  }
  // raw_data (little-endian, as ONNX specifies) handles every fixed-size type uniformly,
  // avoiding the per-type rules of the typed *_data fields (e.g. float16 bits in int32_data).
  return { ...base, raw_data: rawData(tensor.type, tensor.values as ArrayLike<number | bigint | boolean>) };
}

function rawData(type: Exclude<OnnxElementType, 'string'>, values: ArrayLike<number | bigint | boolean>): Uint8Array {
  const n = values.length;
  const num = (i: number): number => Number(values[i]);
  const big = (i: number): bigint => {
    const v = values[i];
    return typeof v === 'bigint' ? v : BigInt(Math.trunc(Number(v)));
  };
  let arr: ArrayBufferView;
  switch (type) {
    case 'float32':
      arr = Float32Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'float64':
      arr = Float64Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'float16':
      arr = Uint16Array.from({ length: n }, (_, i) => numberToHalf(num(i)));
      break;
    case 'int8':
      arr = Int8Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'int16':
      arr = Int16Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'int32':
      arr = Int32Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'int64':
      arr = BigInt64Array.from({ length: n }, (_, i) => big(i));
      break;
    case 'uint8':
      arr = Uint8Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'bool':
      arr = Uint8Array.from({ length: n }, (_, i) => (num(i) ? 1 : 0));
      break;
    case 'uint16':
      arr = Uint16Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'uint32':
      arr = Uint32Array.from({ length: n }, (_, i) => num(i));
      break;
    case 'uint64':
      arr = BigUint64Array.from({ length: n }, (_, i) => big(i));
      break;
  }
  const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  // Typed arrays use the platform's byte order; ONNX raw_data is always little-endian.
  if (!LITTLE_ENDIAN) {
    const width = (arr as Uint8Array).BYTES_PER_ELEMENT;
    for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
  }
  return bytes;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Half-precision conversions live with the datatypes; re-exported for the builder's users. */
export { halfToNumber as float16BitsToNumber, numberToHalf as float32ToFloat16Bits } from '../core/datatype.js';
