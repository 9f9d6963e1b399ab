/**
 * Raising a model's default-domain opset, so that a rewrite may use what later opsets add
 * (per-channel DequantizeLinear needs 13). Between opsets, some operators moved attributes into
 * inputs; those are rewritten here. Softmax, LogSoftmax and Hardmax changed meaning at 13 (from
 * "flatten to 2-D at axis" to "along axis"): the two agree when axis is the last one, which only the
 * tensors' ranks tell, so the caller must compare the upgraded model's outputs with the original's.
 * Operators this module cannot carry across are refused by name rather than left wrong.
 */
import { toNumber, type OnnxAttribute, type OnnxModel, type OnnxNode, type OnnxTensor } from './onnx-model-file.js';

const FLOAT = 1;
const INT64 = 7;

/** Operators whose signature changed between opset 9 and the target, with what carries them over. */
interface Upgrade {
  /** The opset (exclusive upper bound) below which the old form applies. */
  before: number;
  rewrite(node: OnnxNode, constant: ConstantMaker): void;
}

type ConstantMaker = (suffix: string, tensor: Omit<OnnxTensor, 'name'>) => string;


function takeAttribute(node: OnnxNode, name: string): OnnxAttribute | undefined {
  const index = node.attribute.findIndex((attribute) => attribute.name === name);
  return index < 0 ? undefined : node.attribute.splice(index, 1)[0];
}

function int64s(values: readonly unknown[]): Omit<OnnxTensor, 'name'> {
  const data = BigInt64Array.from(values.map((value) => BigInt(toNumber(value))));
  return { data_type: INT64, dims: [data.length], raw_data: new Uint8Array(data.buffer) };
}

function float(value: number): Omit<OnnxTensor, 'name'> {
  return { data_type: FLOAT, dims: [], raw_data: new Uint8Array(Float32Array.of(value).buffer) };
}

/** Attributes that became optional inputs, in input order; an absent attribute leaves its input empty. */
function attributesToInputs(node: OnnxNode, constant: ConstantMaker, inputs: { name: string; tensor: (attribute: OnnxAttribute) => Omit<OnnxTensor, 'name'> }[]): void {
  const added = inputs.map(({ name, tensor }) => {
    const attribute = takeAttribute(node, name);
    return attribute ? constant(name, tensor(attribute)) : '';
  });
  while (added.length > 0 && added[added.length - 1] === '') added.pop();
  node.input.push(...added);
}

const axesToInput: Upgrade['rewrite'] = (node, constant) => attributesToInputs(node, constant, [{ name: 'axes', tensor: (attribute) => int64s(attribute.ints ?? []) }]);

const UPGRADES: Record<string, Upgrade> = {
  Slice: {
    before: 10,
    rewrite: (node, constant) => {
      const starts = takeAttribute(node, 'starts');
      const ends = takeAttribute(node, 'ends');
      const axes = takeAttribute(node, 'axes');
      node.input.push(constant('starts', int64s(starts?.ints ?? [])), constant('ends', int64s(ends?.ints ?? [])));
      if (axes) node.input.push(constant('axes', int64s(axes.ints ?? [])));
    },
  },
  Clip: {
    before: 11,
    rewrite: (node, constant) =>
      attributesToInputs(node, constant, [
        { name: 'min', tensor: (attribute) => float(attribute.f ?? 0) },
        { name: 'max', tensor: (attribute) => float(attribute.f ?? 0) },
      ]),
  },
  Pad: {
    before: 11,
    rewrite: (node, constant) => {
      const pads = takeAttribute(node, 'pads');
      const value = takeAttribute(node, 'value');
      node.input.push(constant('pads', int64s(pads?.ints ?? [])));
      if (value) node.input.push(constant('value', float(value.f ?? 0)));
    },
  },
  TopK: { before: 10, rewrite: (node, constant) => attributesToInputs(node, constant, [{ name: 'k', tensor: (attribute) => int64s([attribute.i ?? 0]) }]) },
  Squeeze: { before: 13, rewrite: axesToInput },
  Unsqueeze: { before: 13, rewrite: axesToInput },
  ReduceSum: { before: 13, rewrite: axesToInput },
  Split: { before: 13, rewrite: (node, constant) => attributesToInputs(node, constant, [{ name: 'split', tensor: (attribute) => int64s(attribute.ints ?? []) }]) },
  // Opset 10's Resize(X, scales) gained a region-of-interest input before scales at 11.
  Resize: { before: 11, rewrite: (node) => node.input.splice(1, 0, '') },
};

/** Operators with no faithful rewrite to a later opset here. */
const REFUSED = new Map([
  ['Upsample', 'deprecated at opset 10 (Resize replaces it)'],
  ['Scan', 'its body graphs would need upgrading too'],
  ['Loop', 'its body graphs would need upgrading too'],
  ['If', 'its branches would need upgrading too'],
]);

export function defaultOpset(model: OnnxModel): number {
  const entry = model.opset_import.find((opset) => !opset.domain);
  return entry ? toNumber(entry.version) : 1;
}

export interface OpsetUpgrade {
  from: number;
  to: number;
  /** Nodes rewritten, by operator. */
  rewritten: Record<string, number>;
}

/** Rewrites the model in place to `target` (when its opset is lower), or throws naming what it cannot carry over. */
export function upgradeOpset(model: OnnxModel, target: number): OpsetUpgrade {
  const from = defaultOpset(model);
  const result: OpsetUpgrade = { from, to: Math.max(from, target), rewritten: {} };
  if (from >= target) return result;
  if (from < 9) throw new Error(`the model's opset ${from} is older than 9; upgrading it is not supported`);
  const refused = model.graph.node.filter((node) => !node.domain && REFUSED.has(node.op_type ?? ''));
  if (refused.length > 0) {
    const ops = [...new Set(refused.map((node) => node.op_type!))];
    throw new Error(`cannot raise the model's opset ${from} to ${target}: ${ops.map((op) => `${op} (${REFUSED.get(op)})`).join(', ')}`);
  }
  const names = new Set(model.graph.initializer.map((tensor) => tensor.name));
  for (const [index, node] of model.graph.node.entries()) {
    const upgrade = node.domain ? undefined : UPGRADES[node.op_type ?? ''];
    if (!upgrade || from >= upgrade.before) continue;
    const constant: ConstantMaker = (suffix, tensor) => {
      let name = `${node.name || `${node.op_type}_${index}`}_${suffix}`;
      while (names.has(name)) name += '_';
      names.add(name);
      model.graph.initializer.push({ name, ...tensor });
      return name;
    };
    upgrade.rewrite(node, constant);
    result.rewritten[node.op_type!] = (result.rewritten[node.op_type!] ?? 0) + 1;
  }
  model.opset_import = model.opset_import.map((opset) => (opset.domain ? opset : { ...opset, version: target }));
  // Opset 13 came with IR version 7; an older IR version would not declare it.
  if (toNumber(model.ir_version ?? 0) < 7) model.ir_version = 7;
  return result;
}
