/**
 * A TF.js graph model on disk: model.json (the graph, its signature, a manifest of weights) and the
 * weight shards it names, read with fs and confined to the model's own folder. Reading the
 * signature needs no TF.js, so describing a model loads no engine.
 */
import { readFile, realpath } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, relative, resolve, sep } from 'node:path';
import type { Datatype } from '../core/datatype.js';
import type { ModelSignature, TensorSignature } from './backend.js';

/** model.json as the TF.js converter writes it (the parts read here). */
export interface TfjsModelJson {
  format?: string;
  modelTopology?: { node?: TfjsNode[] };
  weightsManifest?: { paths: string[]; weights: { name: string; shape: number[]; dtype: string; quantization?: { dtype?: string } }[] }[];
  signature?: { inputs?: Record<string, TfjsTensorInfo>; outputs?: Record<string, TfjsTensorInfo> };
  userDefinedMetadata?: { signature?: TfjsModelJson['signature'] };
}

interface TfjsNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, { type?: string; shape?: TfjsShape }>;
}

interface TfjsShape {
  dim?: { size?: string | number }[];
  unknownRank?: boolean;
}

interface TfjsTensorInfo {
  name?: string;
  dtype?: string;
  tensorShape?: TfjsShape;
}

/**
 * TensorFlow dtypes as TF.js computes them (tfjs-converter's parseDtypeParam): every float is
 * float32 and every integer int32, so a model declares the datatype it really takes.
 */
const DATATYPE_OF_TF: Record<string, Datatype> = {
  DT_FLOAT: 'FP32',
  DT_HALF: 'FP32',
  DT_DOUBLE: 'FP32',
  DT_INT32: 'INT32',
  DT_INT64: 'INT32',
  DT_INT8: 'INT32',
  DT_UINT8: 'INT32',
  DT_BOOL: 'BOOL',
  DT_STRING: 'BYTES',
};

/** The TF.js dtype a V2 datatype travels as. */
export const TFJS_DTYPE_OF: Partial<Record<Datatype, 'float32' | 'int32' | 'bool' | 'string'>> = { FP32: 'float32', INT32: 'int32', BOOL: 'bool', BYTES: 'string' };

export async function readModelJson(modelPath: string): Promise<TfjsModelJson> {
  const text = await readFile(modelPath, 'utf8');
  let json: TfjsModelJson;
  try {
    json = JSON.parse(text) as TfjsModelJson;
  } catch (error) {
    // An ONNX file named in default_model_filename: the backend is what is wrong, not the file.
    const onnx = extname(modelPath).toLowerCase() === '.onnx' ? `; ${basename(modelPath)} is an ONNX model, which backend 'onnxruntime' reads: set backend: "onnxruntime"` : '';
    throw new Error(`${modelPath} is not JSON: ${(error as Error).message}${onnx}`, { cause: error });
  }
  if (typeof json !== 'object' || json === null || typeof json.modelTopology !== 'object' || json.modelTopology === null) {
    throw new Error(`${modelPath} is not a TF.js model.json (it has no modelTopology)`);
  }
  if (json.format !== undefined && json.format !== 'graph-model') {
    throw new Error(`${modelPath} is a TF.js '${json.format}'; the tfjs backend serves graph models (format 'graph-model', from tensorflowjs_converter --output_format tfjs_graph_model)`);
  }
  return json;
}

/** A tensor name as clients use it: the signature's key without TensorFlow's ':0' output index. */
export function v2Name(name: string): string {
  return name.endsWith(':0') ? name.slice(0, -2) : name;
}

function shapeOf(shape: TfjsShape | undefined, what: string): number[] {
  if (!shape || shape.unknownRank) throw new Error(`${what} has no known rank; the tfjs backend needs every input and output's rank`);
  return (shape.dim ?? []).map((dim) => {
    const size = Number(dim.size ?? -1);
    return Number.isInteger(size) && size >= 0 ? size : -1;
  });
}

function datatypeOf(dtype: string | undefined, what: string): Datatype {
  const datatype = dtype ? DATATYPE_OF_TF[dtype] : undefined;
  if (!datatype) throw new Error(`${what} has dtype ${dtype ?? 'unknown'}, which TF.js does not compute with (it takes ${Object.keys(DATATYPE_OF_TF).join(', ')})`);
  return datatype;
}

/** The attributes that say which dtype a node produces, in the order TensorFlow's ops use them. */
const OUTPUT_DTYPE_ATTRS = ['dtype', 'T', 'DstT', 'out_type', 'output_type', 'Tout'];

/**
 * Inputs and outputs from the model's signature; a graph without one (a frozen graph converted
 * as is) has its placeholders as inputs and the nodes nothing consumes as outputs, as TF.js decides.
 */
export function signatureOfModelJson(json: TfjsModelJson, modelPath: string): ModelSignature {
  const signature = json.userDefinedMetadata?.signature ?? json.signature;
  if (signature?.inputs && signature.outputs) {
    const tensors = (infos: Record<string, TfjsTensorInfo>, kind: string): TensorSignature[] =>
      Object.entries(infos).map(([key, info]) => ({
        name: v2Name(key),
        datatype: datatypeOf(info.dtype, `${kind} '${key}'`),
        shape: shapeOf(info.tensorShape, `${kind} '${key}'`),
      }));
    return { inputs: tensors(signature.inputs, 'input'), outputs: tensors(signature.outputs, 'output') };
  }
  const nodes = json.modelTopology?.node ?? [];
  const consumed = new Set(nodes.flatMap((node) => (node.input ?? []).map((input) => input.replace(/^\^/, '').split(':')[0])));
  const inputs = nodes
    .filter((node) => node.op === 'Placeholder')
    .map((node) => ({ name: node.name, datatype: datatypeOf(node.attr?.dtype?.type, `input '${node.name}'`), shape: shapeOf(node.attr?.shape?.shape, `input '${node.name}'`) }));
  const outputs = nodes
    .filter((node) => !consumed.has(node.name) && node.op !== 'Const' && node.op !== 'NoOp' && node.op !== 'Placeholder')
    .map((node) => {
      const attr = OUTPUT_DTYPE_ATTRS.map((name) => node.attr?.[name]?.type).find((type) => type !== undefined);
      // Without a signature the graph does not record an output's shape: any rank, any size.
      return { name: node.name, datatype: datatypeOf(attr, `output '${node.name}' (op ${node.op})`), shape: [] as number[] };
    });
  if (inputs.length === 0 || outputs.length === 0) throw new Error(`${modelPath} declares no ${inputs.length === 0 ? 'inputs' : 'outputs'} (no signature, and no ${inputs.length === 0 ? 'Placeholder' : 'unconsumed'} nodes)`);
  return { inputs, outputs };
}

/**
 * The weight shards the manifest names, in order, read from the model's folder: a path that leaves
 * the folder (absolute, `..`, or a link out of it) is refused, since model.json is data a
 * repository's author controls, not a licence to read the server's files.
 */
export async function readWeightShards(modelPath: string, json: TfjsModelJson): Promise<ArrayBuffer> {
  const folder = await realpath(dirname(modelPath));
  const paths = (json.weightsManifest ?? []).flatMap((group) => group.paths ?? []);
  const shards = await Promise.all(
    paths.map(async (path) => {
      const target = resolve(folder, path);
      const inside = (candidate: string) => {
        const rel = relative(folder, candidate);
        return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
      };
      if (typeof path !== 'string' || isAbsolute(path) || !inside(target)) throw new Error(`weights path '${path}' in model.json must be a relative path inside the model's folder`);
      const real = await realpath(target).catch(() => {
        throw new Error(`weights file '${path}' named in model.json does not exist beside it`);
      });
      if (!inside(real)) throw new Error(`weights file '${path}' named in model.json is a link out of the model's folder`);
      return readFile(real);
    }),
  );
  checkShardSizes(json, paths, shards.map((shard) => shard.length));
  const total = shards.reduce((sum, shard) => sum + shard.length, 0);
  const weights = new Uint8Array(total);
  let offset = 0;
  for (const shard of shards) {
    weights.set(shard, offset);
    offset += shard.length;
  }
  return weights.buffer;
}

/** Bytes an element of each manifest dtype takes in a shard (a quantized weight: its quantization dtype's). */
const SHARD_BYTES_PER_ELEMENT: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, int8: 1, uint16: 2, int16: 2, float16: 2 };

/**
 * Each weight group's shards against the bytes its weights need (their shapes by their dtypes), so a
 * shard cut short is named with its size and the size expected, before TF.js reads a tensor out of
 * too few bytes ("the tensor should have 18432 values but has 3359"). A group with string weights
 * (of no fixed size) is not checked. The converter cuts a group into shards of one size, the last
 * holding the rest, so a group's shards are each held to that.
 */
function checkShardSizes(json: TfjsModelJson, paths: readonly string[], sizes: readonly number[]): void {
  let index = 0;
  for (const group of json.weightsManifest ?? []) {
    const count = (group.paths ?? []).length;
    const groupPaths = paths.slice(index, index + count);
    const groupSizes = sizes.slice(index, index + count);
    index += count;
    let needed = 0;
    for (const weight of group.weights ?? []) {
      const bytes = SHARD_BYTES_PER_ELEMENT[weight.quantization?.dtype ?? weight.dtype];
      if (bytes === undefined) {
        needed = NaN;
        break;
      }
      needed += (weight.shape ?? []).reduce((product, size) => product * size, 1) * bytes;
    }
    const held = groupSizes.reduce((sum, size) => sum + size, 0);
    // More bytes than the weights need are left as they were (TF.js reads each weight at its offset).
    if (!Number.isFinite(needed) || held >= needed || count === 0) continue;
    // Shard i of n holds shardSize bytes, the last the rest: the first that differs is named.
    const shardSize = count === 1 ? needed : Math.max(...groupSizes.slice(0, -1));
    const expected = groupSizes.map((_, at) => (at < count - 1 ? shardSize : needed - shardSize * (count - 1)));
    const wrong = groupSizes.findIndex((size, at) => size !== expected[at]);
    const at = wrong < 0 ? count - 1 : wrong;
    const names = (group.weights ?? []).map((weight) => weight.name);
    const shown = names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.join(', ');
    throw new Error(
      `weights file '${groupPaths[at]}' is ${groupSizes[at]} bytes, but model.json's weightsManifest needs ${expected[at]} bytes in it ` +
        `(${needed} bytes for ${shown}${count > 1 ? ` across ${count} shards` : ''}): it is truncated, or from another conversion ` +
        `than this model.json; copy it again from the converter's output`,
    );
  }
}
