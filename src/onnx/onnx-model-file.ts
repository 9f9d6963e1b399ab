/**
 * Reading an ONNX model file into its protobuf message, changing its graph, and writing it back:
 * the ground a quantizer stands on. The message keeps ONNX's own snake_case field names and int64s
 * as Long values, so what is not changed is written back as it was read. Fields the schema subset
 * does not declare (external data, sparse initializers, training info, non-tensor types) would be
 * lost, so a model that uses them is refused rather than rewritten wrong.
 */
import { datatypeFromOnnx, type Datatype } from '../core/datatype.js';
import { ModelProto, ONNX_ELEMENT_TYPES } from './onnx-model-builder.js';

/** An int64 as protobufjs reads it: a number when it fits, else a Long-like pair of 32-bit halves. */
type Int64 = number | { low: number; high: number; unsigned: boolean };

/** An int64 field's value (a number, or a Long-like read by protobufjs) as a number. */
export const toNumber = (value: unknown): number => Number(typeof value === 'object' && value !== null ? (value as { toString(): string }).toString() : value);

export interface OnnxTensor {
  name?: string;
  dims?: Int64[];
  data_type?: number;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: Int64[];
  [field: string]: unknown;
}

export interface OnnxAttribute {
  name?: string;
  type?: number;
  f?: number;
  i?: Int64;
  t?: OnnxTensor;
  floats?: number[];
  ints?: Int64[];
  [field: string]: unknown;
}

export interface OnnxNode {
  input: string[];
  output: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute: OnnxAttribute[];
  [field: string]: unknown;
}

export interface OnnxGraph {
  node: OnnxNode[];
  initializer: OnnxTensor[];
  input: { name?: string }[];
  [field: string]: unknown;
}

export interface OnnxModel {
  graph: OnnxGraph;
  opset_import: { domain?: string; version?: Int64 }[];
  [field: string]: unknown;
}

/** Protobuf wire type 2 (length-delimited) fields whose presence means the subset cannot carry the model. */
const UNCARRIED_MODEL_FIELDS = new Map([
  [20, 'training_info'],
  [25, 'functions'],
]);

/** Field numbers at the top level of a ModelProto, read from the bytes. */
function topLevelFields(bytes: Uint8Array): Set<number> {
  const fields = new Set<number>();
  let offset = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[offset++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (offset < bytes.length) {
    const key = varint();
    const wireType = key % 8;
    fields.add(Math.floor(key / 8));
    if (wireType === 0) varint();
    else if (wireType === 1) offset += 8;
    else if (wireType === 2) {
      const length = varint(); // read before adding: `offset += varint()` would add to the offset before the length
      offset += length;
    }
    else if (wireType === 5) offset += 4;
    else throw new Error(`not an ONNX model: unexpected protobuf wire type ${wireType} at byte ${offset}`);
  }
  return fields;
}

export function readOnnxModel(bytes: Uint8Array): OnnxModel {
  for (const field of topLevelFields(bytes)) {
    const name = UNCARRIED_MODEL_FIELDS.get(field);
    if (name) throw new Error(`the model has ${name}, which Nereid's ONNX reader does not carry; it cannot be rewritten`);
  }
  const model = ModelProto.decode(bytes) as unknown as OnnxModel;
  if (!model.graph) throw new Error('not an ONNX model: it has no graph');
  for (const tensor of model.graph.initializer) {
    if (tensor.data_location === 1 || (Array.isArray(tensor.external_data) && tensor.external_data.length > 0)) {
      throw new Error(`initializer '${tensor.name}' keeps its data in an external file, which Nereid's ONNX reader does not carry`);
    }
  }
  return model;
}

export function writeOnnxModel(model: OnnxModel): Uint8Array {
  return ModelProto.encode(model as never).finish();
}

/**
 * A tensor inside the model to fetch with the outputs. `channelMean`: its per-channel mean over the
 * spatial positions instead ([N, C, …] → [N, C, 1, 1], by a GlobalAveragePool added to the graph),
 * so a monitor that pools anyway takes C values per row out of the engine instead of C × H × W.
 */
export interface ExposedTensor {
  tensor: string;
  channelMean?: boolean;
}

/** The output name an exposed tensor is fetched by. */
export const exposedName = (exposed: string | ExposedTensor): string =>
  typeof exposed === 'string' ? exposed : exposed.channelMean ? `${exposed.tensor}::channel_mean` : exposed.tensor;

/**
 * A copy of the model whose graph also outputs these float tensors (intermediate ones included), so
 * that one session can fetch what calibration, profiling or monitoring reads inside the model.
 */
export function exposingTensors(model: OnnxModel, tensors: readonly (string | ExposedTensor)[]): Uint8Array {
  const graph = model.graph as OnnxGraph & { output: { name?: string }[] };
  const present = new Set(graph.output.map((output) => output.name));
  const wanted = tensors.filter((exposed) => !present.has(exposedName(exposed)));
  const pools: OnnxNode[] = wanted
    .filter((exposed): exposed is ExposedTensor => typeof exposed !== 'string' && exposed.channelMean === true)
    .map((exposed) => ({ op_type: 'GlobalAveragePool', name: exposedName(exposed), input: [exposed.tensor], output: [exposedName(exposed)], attribute: [] }));
  const extra = wanted.map((exposed) => ({ name: exposedName(exposed), type: { tensor_type: { elem_type: FLOAT } } }));
  return writeOnnxModel({ ...model, graph: { ...graph, node: [...graph.node, ...pools], output: [...graph.output, ...extra] } });
}

/** ONNX attribute types of a Constant's value forms that become an initializer. */
const FLOAT = 1;
const INT64 = 7;

/**
 * Constant nodes become initializers (exporters such as Paddle's keep weights in them, where a
 * quantizer and ONNX Runtime's constant folding look for initializers). Returns how many moved; a
 * Constant whose value form has no tensor equivalent here (sparse, strings) stays a node.
 */
export function constantsToInitializers(model: OnnxModel): number {
  const kept: OnnxNode[] = [];
  let moved = 0;
  for (const node of model.graph.node) {
    const tensor = node.op_type === 'Constant' && (node.domain ?? '') === '' ? constantTensor(node) : undefined;
    if (!tensor) {
      kept.push(node);
      continue;
    }
    model.graph.initializer.push({ ...tensor, name: node.output[0] });
    moved += 1;
  }
  model.graph.node = kept;
  return moved;
}

function constantTensor(node: OnnxNode): OnnxTensor | undefined {
  if (node.attribute.length !== 1) return undefined;
  const [attribute] = node.attribute;
  switch (attribute.name) {
    case 'value':
      return attribute.t;
    case 'value_float':
      return { dims: [], data_type: FLOAT, float_data: [attribute.f ?? 0] };
    case 'value_floats':
      return { dims: [attribute.floats?.length ?? 0], data_type: FLOAT, float_data: attribute.floats ?? [] };
    case 'value_int':
      return { dims: [], data_type: INT64, int64_data: [attribute.i ?? 0] };
    case 'value_ints':
      return { dims: [attribute.ints?.length ?? 0], data_type: INT64, int64_data: attribute.ints ?? [] };
    default:
      return undefined;
  }
}

/**
 * Graph inputs that the model also gives as initializers (default values, IR version 3 style):
 * ONNX Runtime leaves them out of a session's inputs and computes with the initializer, so a
 * server can declare them optional. Their type and shape are the initializer's.
 */
export function initializerBackedInputs(model: OnnxModel): { name: string; datatype: Datatype; shape: number[] }[] {
  const initializers = new Map(model.graph.initializer.map((tensor) => [tensor.name, tensor]));
  const typeNames = new Map(Object.entries(ONNX_ELEMENT_TYPES).map(([name, code]) => [code, name]));
  return model.graph.input.flatMap((input) => {
    const initializer = initializers.get(input.name ?? '');
    const datatype = initializer && datatypeFromOnnx(typeNames.get(toNumber(initializer.data_type)) ?? '');
    return initializer?.name && datatype ? [{ name: initializer.name, datatype, shape: (initializer.dims ?? []).map(toNumber) }] : [];
  });
}

/**
 * What a server reads from an ONNX file besides what ONNX Runtime's metadata says: which graph
 * inputs and outputs have no shape at all (ONNX allows a tensor type without one: its rank is
 * unknown, where a shape of no dimensions is a scalar; onnxruntime reports both as []), and the
 * files beside it that its initializers keep their data in (external data, by each tensor's
 * `location` entry, relative to the model's folder).
 */
export interface OnnxFileFacts {
  unknownRank: { inputs: string[]; outputs: string[] };
  externalDataFiles: string[];
}

type DecodedValueInfo = { name?: string; type?: { tensor_type?: { shape?: unknown } | null } | null };

export function onnxFileFacts(bytes: Uint8Array): OnnxFileFacts {
  // Not readOnnxModel: these facts are wanted of every model, those it refuses to rewrite (external data) first.
  const model = ModelProto.decode(bytes) as unknown as { graph?: OnnxGraph & { output: DecodedValueInfo[] } };
  if (!model.graph) throw new Error('not an ONNX model: it has no graph');
  const graph = model.graph;
  const shapeless = (values: DecodedValueInfo[]) =>
    values.filter((value) => value.type?.tensor_type && value.type.tensor_type.shape == null).map((value) => value.name ?? '');
  const files = new Set<string>();
  for (const tensor of graph.initializer) {
    const entries = Array.isArray(tensor.external_data) ? (tensor.external_data as { key?: string; value?: string }[]) : [];
    const location = entries.find((entry) => entry.key === 'location')?.value;
    if (location) files.add(location);
  }
  return { unknownRank: { inputs: shapeless(graph.input as DecodedValueInfo[]), outputs: shapeless(graph.output) }, externalDataFiles: [...files] };
}
