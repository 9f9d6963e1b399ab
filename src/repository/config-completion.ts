/**
 * Triton's auto-complete: what a config leaves out is filled from what the model file declares
 * (Backend.describe), and what it does say is checked against the file, so that a mismatch is
 * reported at load, not per request.
 */
import type { ModelSignature, TensorSignature } from '../backends/backend.js';
import { datatypeOfConfig, dynamicBatchingSchema, parseModelConfig, tensorEntrySchemas, type CompletedModelConfig, type ModelConfig } from '../config/model-config.js';
import { configTypeOf } from '../core/datatype.js';
import { describeShape } from '../core/tensor.js';

export interface CompletionDefaults {
  name: string;
  backend: { name: string; platforms: readonly string[] };
  /** max_batch_size given to a model whose config leaves it out but whose first dimension is dynamic. */
  defaultMaxBatchSize: number;
  /** Instances of a model whose config names no instance_group (the backend's choice for this machine). */
  defaultInstanceCount: number;
}

/** A tensor's dims after the batch dimension; an initializer-backed input is never sent, so it has none to drop. */
function dimsFromSignature(signature: TensorSignature, batched: boolean): number[] {
  return batched && !signature.defaulted ? signature.shape.slice(1) : [...signature.shape];
}

/**
 * The control and state inputs of a sequence model (and its state outputs) are the sequence
 * batcher's to fill and take: checked against the model here, and left out of the config's inputs
 * and outputs, so clients neither send nor receive them. Returns their names.
 */
function checkSequenceTensors(config: ModelConfig, signature: ModelSignature, batched: boolean): ReadonlySet<string> {
  const batching = config.sequence_batching;
  if (!batching) return new Set();
  const find = (kind: 'input' | 'output', name: string, what: string): TensorSignature => {
    const tensors = kind === 'input' ? signature.inputs : signature.outputs;
    const found = tensors.find((tensor) => tensor.name === name);
    if (!found) throw new Error(`sequence_batching ${what} '${name}' is not an ${kind} of the model (it has ${tensors.map((t) => t.name).join(', ')})`);
    return found;
  };
  for (const { name, control } of batching.control_input) {
    const actual = find('input', name, 'control input');
    const [only] = control;
    const expected = only.data_type ?? (only.fp32_false_true ? 'TYPE_FP32' : only.bool_false_true ? 'TYPE_BOOL' : 'TYPE_INT32');
    if (configTypeOf(actual.datatype) !== expected) throw new Error(`sequence_batching control input '${name}' (${only.kind}) gives ${expected} but the model takes ${configTypeOf(actual.datatype)}`);
  }
  for (const state of batching.state) {
    for (const [kind, name] of [['input', state.input_name], ['output', state.output_name]] as const) {
      const actual = find(kind, name, `state ${kind}`);
      if (configTypeOf(actual.datatype) !== state.data_type) throw new Error(`sequence_batching state ${kind} '${name}' says ${state.data_type} but the model has ${configTypeOf(actual.datatype)}`);
    }
    const stateInput = find('input', state.input_name, 'state input');
    const modelDims = dimsFromSignature(stateInput, batched);
    const fits = stateInput.rankUnknown ? state.dims.every((dim) => dim > 0) : modelDims.length === state.dims.length && state.dims.every((dim, index) => dim > 0 && (modelDims[index] === -1 || modelDims[index] === dim));
    if (!fits) {
      throw new Error(
        `sequence_batching state '${state.input_name}' has dims ${describeShape(state.dims)} but the model has ${describeShape(modelDims)}${batched ? ' after the batch dimension' : ''} (state dims must be fixed sizes)`,
      );
    }
  }
  return new Set([...batching.control_input.map((control) => control.name), ...batching.state.flatMap((state) => [state.input_name, state.output_name])]);
}

/** Each batch_input feeds one of the model's inputs, of its data type and rank. */
function checkBatchInputTargets(config: ModelConfig, signature: ModelSignature): void {
  for (const entry of config.batch_input) {
    const target = entry.target_name[0];
    const actual = signature.inputs.find((input) => input.name === target);
    if (!actual) {
      throw new Error(`batch_input target_name '${target}' is not an input of the model (it has ${signature.inputs.map((input) => input.name).join(', ')})`);
    }
    if (configTypeOf(actual.datatype) !== entry.data_type) {
      throw new Error(`batch_input '${target}' says ${entry.data_type} but the model's input is ${configTypeOf(actual.datatype)}`);
    }
    const rank = entry.kind === 'BATCH_ITEM_SHAPE' ? 2 : 1;
    if (!actual.rankUnknown && actual.shape.length !== rank) {
      throw new Error(`batch_input '${target}' (${entry.kind}) has ${rank} dimension${rank > 1 ? 's' : ''}, but the model's input is ${describeShape(actual.shape)}`);
    }
  }
}

/**
 * A tensor the model file gives no shape (its rank unknown) gets no dims from it: the config must
 * declare them, as Triton needs dims where the model cannot tell them. Guessing [] (a scalar, as
 * onnxruntime reports it) would refuse every request that sends the tensor with dimensions.
 */
function checkUnknownRanks(config: ModelConfig, signature: ModelSignature, batchTargets: ReadonlySet<string>): void {
  const declared = new Set([
    ...config.input.map((tensor) => tensor.name),
    ...config.output.map((tensor) => tensor.name),
    ...batchTargets,
    ...(config.sequence_batching?.control_input.map((control) => control.name) ?? []),
    ...(config.sequence_batching?.state.flatMap((state) => [state.input_name, state.output_name]) ?? []),
  ]);
  const undeclared = [
    ...signature.inputs.filter((tensor) => tensor.rankUnknown && !tensor.defaulted && !declared.has(tensor.name)).map((tensor) => `input '${tensor.name}'`),
    ...signature.outputs.filter((tensor) => tensor.rankUnknown && !declared.has(tensor.name)).map((tensor) => `output '${tensor.name}'`),
  ];
  if (undeclared.length === 0) return;
  const its = undeclared.length === 1 ? 'its' : 'their';
  throw new Error(
    `the model file gives ${undeclared.join(' and ')} no shape (the rank is unknown, not a scalar), so ${its} dims cannot be auto-completed; ` +
      `declare ${its} data_type and dims in the config (-1 for a dimension of any size), and max_batch_size if the first dimension is a batch dimension`,
  );
}

export function completeConfig(config: ModelConfig, signature: ModelSignature, defaults: CompletionDefaults): CompletedModelConfig {
  // Batch inputs are the server's: a model sees them with its own shapes, not with a batch dimension.
  const batchTargets = new Set(config.batch_input.map((entry) => entry.target_name[0]));
  checkBatchInputTargets(config, signature);
  const all = [...signature.inputs.filter((input) => !input.defaulted && !batchTargets.has(input.name)), ...signature.outputs];
  checkUnknownRanks(config, signature, batchTargets);
  // A tensor of unknown rank may have a batch dimension or not: it allows a max_batch_size the config asks for, and shows none to complete.
  const batchable = (tensor: TensorSignature) => tensor.rankUnknown === true || (tensor.shape.length > 0 && tensor.shape[0] === -1);
  const firstDimDynamic = all.length > 0 && all.every(batchable);
  // As Triton's ONNX Runtime backend: a config that lists its inputs (batch inputs count) and its outputs gets no
  // max_batch_size completed (left out, it is 0); a list left empty is completed from the model.
  const inputsListed = config.input.length + config.batch_input.length > 0;
  const outputsListed = config.output.length > 0;
  const completesMaxBatchSize = !(inputsListed && outputsListed);
  // The model file itself shows a batch dimension on every tensor (one of unknown rank shows nothing).
  const batchableByFile = firstDimDynamic && !all.some((tensor) => tensor.rankUnknown);
  const maxBatchSize = config.max_batch_size ?? (completesMaxBatchSize && batchableByFile ? defaults.defaultMaxBatchSize : 0);
  if (config.max_batch_size === undefined) {
    // The schema's cross-field checks (dynamic_batching needs batching, preferred sizes fit) now have a max_batch_size to check.
    parseModelConfig({ ...config, max_batch_size: maxBatchSize }, `config completed with max_batch_size ${maxBatchSize}`);
  }
  const batched = maxBatchSize > 0;
  if (batched && !firstDimDynamic) {
    const fixed = all.find((tensor) => !batchable(tensor))!;
    throw new Error(
      `model does not support batching while non-zero max_batch_size is specified: max_batch_size ${maxBatchSize} needs a dynamic first dimension on every input and output, but '${fixed.name}' is ${describeShape(fixed.shape)}; set max_batch_size: 0`,
    );
  }
  const filledBySequenceBatcher = checkSequenceTensors(config, signature, batched);
  const complete = <T extends { name: string; data_type: string; dims: number[]; reshape?: { shape: number[] } }>(
    kind: 'input' | 'output',
    declared: T[],
    fromModel: TensorSignature[],
  ): T[] => {
    const completed = declared.map((tensor) => {
      const actual = fromModel.find((candidate) => candidate.name === tensor.name);
      // An input the model gives a default value may be left out by clients.
      if (actual?.defaulted) return { ...tensor, optional: true };
      // As Triton: a rank-0 tensor (per row) may be declared dims [1]; it then travels as if reshaped to [].
      return actual && !actual.rankUnknown && !tensor.reshape && dimsFromSignature(actual, batched).length === 0 && tensor.dims.length === 1 && tensor.dims[0] === 1
        ? { ...tensor, reshape: { shape: [] } }
        : tensor;
    });
    for (const [index, tensor] of completed.entries()) {
      const actual = fromModel.find((candidate) => candidate.name === tensor.name);
      if (!actual) {
        // Triton's words first (its ONNX Runtime backend's), then which side lacks it.
        throw new Error(`unexpected inference ${kind} '${tensor.name}', allowed ${kind}s are: ${fromModel.map((t) => t.name).join(', ')} (the config names a tensor the model does not have)`);
      }
      if (kind === 'input' && 'optional' in tensor && tensor.optional && signature.inputsRequired && !actual.defaulted) {
        throw new Error(
          `config input '${tensor.name}' is optional, but the model requires it: the ONNX graph gives it no default value (no initializer), so a request without it could not run; remove optional: true`,
        );
      }
      if (datatypeOfConfig(tensor) !== actual.datatype) {
        throw new Error(`configuration expects datatype ${tensor.data_type} for ${kind} '${tensor.name}', model provides ${configTypeOf(actual.datatype)}`);
      }
      // The model file says nothing of its rank: the config's dims are the declaration.
      if (actual.rankUnknown) continue;
      if ('allow_ragged_batch' in tensor && tensor.allow_ragged_batch) {
        // The model takes the elements of every request in the batch as one flat tensor.
        if (actual.shape.length !== 1) {
          throw new Error(`config input '${tensor.name}' allows ragged batches, which reach the model as one flat tensor, but the model's input is ${describeShape(actual.shape)}; it must have one dimension`);
        }
        continue;
      }
      const modelDims = dimsFromSignature(actual, batched);
      const configDims = tensor.reshape ? tensor.reshape.shape : tensor.dims;
      // As Triton compares them: a -1 on either side matches any size.
      const compatible =
        configDims.length === modelDims.length && configDims.every((dim, index) => modelDims[index] === -1 || dim === -1 || dim === modelDims[index]);
      if (!compatible) {
        throw new Error(
          `config ${kind} '${tensor.name}' has dims ${describeShape(configDims)} but the model has ${describeShape(modelDims)}${batched ? ' after the batch dimension' : ''}` +
            (batched && config.max_batch_size === undefined ? ` (max_batch_size was completed to ${maxBatchSize} from the model, as the config leaves it out: set max_batch_size: 0 if the first dimension is not a batch dimension)` : '') +
            (!batched && config.max_batch_size === undefined && modelDims.length === configDims.length + 1 && modelDims[0] === -1
              ? ' (max_batch_size is left out of a config that lists both inputs and outputs, so it is 0, as in Triton: set max_batch_size if the first dimension is a batch dimension)'
              : ''),
        );
      }
      // A -1 the config gives where the model fixes the size takes the model's size: requests are then checked against it
      // and refused with a message, not by the engine mid-batch.
      if (!tensor.reshape && tensor.dims.some((dim, at) => dim === -1 && modelDims[at] > 0)) {
        const dims = tensor.dims.map((dim, at) => (dim === -1 && modelDims[at] > 0 ? modelDims[at] : dim));
        // The only size now allowed must keep the config's own rule, or every request would be refused.
        const multiples = 'dims_multiple_of' in tensor ? (tensor.dims_multiple_of as number[] | undefined) : undefined;
        const broken = multiples ? dims.findIndex((dim, at) => dim !== -1 && dim % multiples[at] !== 0) : -1;
        if (broken >= 0) {
          throw new Error(`config input '${tensor.name}' has dims_multiple_of ${multiples![broken]} for dim ${broken}, which the model fixes at ${dims[broken]}, not a multiple of it`);
        }
        completed[index] = { ...tensor, dims };
      }
    }
    // The outputs a config lists are the ones served, as in Triton (a detector's feature maps stay hidden); inputs it leaves
    // out are added, where Triton refuses the config: the model cannot run without them.
    if (declared.length > 0 && kind === 'output') return completed;
    const unlisted = fromModel.filter((tensor) => !tensor.defaulted && !batchTargets.has(tensor.name) && !completed.some((d) => d.name === tensor.name) && !filledBySequenceBatcher.has(tensor.name));
    // Read as a declared entry is, defaults included, so that the config answered lists them as Triton's does.
    const added = unlisted.map((tensor) => tensorEntrySchemas[kind].parse({ name: tensor.name, data_type: configTypeOf(tensor.datatype), dims: dimsFromSignature(tensor, batched) }) as T);
    return [...completed, ...added];
  };
  return {
    ...config,
    name: defaults.name,
    max_batch_size: maxBatchSize,
    backend: config.backend ?? defaults.backend.name,
    platform: config.platform ?? defaults.backend.platforms[0] ?? defaults.backend.name,
    input: complete('input', config.input, signature.inputs),
    output: complete('output', config.output, signature.outputs),
    // Named as Triton names them (<model>_<index>), so statistics and logs can tell groups apart.
    // KIND_AUTO resolved as Triton resolves it for a model it puts on no GPU: Nereid places only KIND_GPU on one.
    instance_group: (config.instance_group.length > 0 ? config.instance_group : [{ kind: 'KIND_CPU' as const, count: defaults.defaultInstanceCount }]).map((group, index) => ({
      ...group,
      kind: group.kind === 'KIND_AUTO' ? ('KIND_CPU' as const) : group.kind,
      name: group.name || `${defaults.name}_${index}`,
    })),
    // As Triton's ONNX Runtime auto-complete does: a model whose every tensor has a dynamic first dimension, batched by
    // more than 1 — the config's max_batch_size or the completed one — and given no scheduler gets the dynamic batcher
    // (a config naming only max_batch_size: 8 batches, as in Triton); a config listing its inputs and outputs is not completed.
    dynamic_batching:
      config.dynamic_batching ?? (completesMaxBatchSize && batchableByFile && maxBatchSize > 1 && !('sequence_batching' in config) ? dynamicBatchingSchema.parse({}) : undefined),
  };
}
