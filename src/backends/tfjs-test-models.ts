/**
 * Small TF.js graph models for tests, written as tensorflowjs_converter writes them (model.json
 * with a GraphDef in JSON, a signature and a weights manifest, plus the shard files), so the tfjs
 * backend is tested on real files without a converter.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

type TfDtype = 'DT_FLOAT' | 'DT_INT32' | 'DT_BOOL' | 'DT_STRING';

interface Node {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
}

const tensorShape = (shape: readonly number[]) => ({ dim: shape.map((size) => ({ size: String(size) })) });

const placeholder = (name: string, dtype: TfDtype, shape: readonly number[]): Node => ({
  name,
  op: 'Placeholder',
  attr: { dtype: { type: dtype }, shape: { shape: tensorShape(shape) } },
});

const op = (name: string, kind: string, inputs: string[], dtype: TfDtype): Node => ({ name, op: kind, input: inputs, attr: { T: { type: dtype } } });

/** A graph model's files: model.json and its weight shards, by file name. */
export interface TfjsModelFiles {
  'model.json': string;
  [shard: string]: string | Uint8Array;
}

interface TensorDecl {
  name: string;
  dtype: TfDtype;
  shape: readonly number[];
}

function modelJson(nodes: Node[], inputs: TensorDecl[], outputs: TensorDecl[], manifest: unknown[] = [{ paths: [], weights: [] }]): string {
  const signatureOf = (tensors: TensorDecl[]) =>
    Object.fromEntries(tensors.map((tensor) => [tensor.name, { name: `${tensor.name}:0`, dtype: tensor.dtype, tensorShape: tensorShape(tensor.shape) }]));
  return JSON.stringify({
    format: 'graph-model',
    generatedBy: 'nereid test models',
    convertedBy: 'nereid test models',
    modelTopology: { node: nodes, library: {}, versions: { producer: 1 } },
    weightsManifest: manifest,
    signature: { inputs: signatureOf(inputs), outputs: signatureOf(outputs) },
  });
}

/** Triton's add/sub example: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, INT32 [-1, 16]. */
export function tfjsAddSubModel(): TfjsModelFiles {
  const tensor = (name: string): TensorDecl => ({ name, dtype: 'DT_INT32', shape: [-1, 16] });
  const nodes = [
    placeholder('INPUT0', 'DT_INT32', [-1, 16]),
    placeholder('INPUT1', 'DT_INT32', [-1, 16]),
    op('OUTPUT0', 'AddV2', ['INPUT0', 'INPUT1'], 'DT_INT32'),
    op('OUTPUT1', 'Sub', ['INPUT0', 'INPUT1'], 'DT_INT32'),
  ];
  return { 'model.json': modelJson(nodes, [tensor('INPUT0'), tensor('INPUT1')], [tensor('OUTPUT0'), tensor('OUTPUT1')]) };
}

/** OUTPUT0 = INPUT0, of any shape [-1, -1]. */
export function tfjsIdentityModel(dtype: TfDtype): TfjsModelFiles {
  const nodes = [placeholder('INPUT0', dtype, [-1, -1]), { name: 'OUTPUT0', op: 'Identity', input: ['INPUT0'], attr: { T: { type: dtype } } }];
  return { 'model.json': modelJson(nodes, [{ name: 'INPUT0', dtype, shape: [-1, -1] }], [{ name: 'OUTPUT0', dtype, shape: [-1, -1] }]) };
}

/**
 * y = x * scale + bias over 4 features, FP32 [-1, 4], its scale and bias read from a weight shard
 * (`weightsPath` as the manifest names it, written as weights.bin unless it points elsewhere).
 */
export function tfjsAffineModel(scale: readonly number[], bias: readonly number[], weightsPath = 'weights.bin'): TfjsModelFiles {
  const constant = (name: string): Node => ({ name, op: 'Const', attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: tensorShape([4]) } } } });
  const nodes = [placeholder('x', 'DT_FLOAT', [-1, 4]), constant('scale'), constant('bias'), op('scaled', 'Mul', ['x', 'scale'], 'DT_FLOAT'), op('y', 'AddV2', ['scaled', 'bias'], 'DT_FLOAT')];
  const manifest = [{ paths: [weightsPath], weights: ['scale', 'bias'].map((name) => ({ name, shape: [4], dtype: 'float32' })) }];
  const files: TfjsModelFiles = { 'model.json': modelJson(nodes, [{ name: 'x', dtype: 'DT_FLOAT', shape: [-1, 4] }], [{ name: 'y', dtype: 'DT_FLOAT', shape: [-1, 4] }], manifest) };
  files['weights.bin'] = new Uint8Array(Float32Array.from([...scale, ...bias]).buffer);
  return files;
}

/** Writes a model's files into `folder` (created); returns the path of its model.json. */
export async function writeTfjsModel(folder: string, files: TfjsModelFiles): Promise<string> {
  await mkdir(folder, { recursive: true });
  for (const [file, contents] of Object.entries(files)) await writeFile(join(folder, file), contents);
  return join(folder, 'model.json');
}
