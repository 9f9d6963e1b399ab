/**
 * An ensemble's graph, checked when it loads: which step produces each ensemble tensor, which
 * steps read it, and that the steps can run at all. The rules are Triton's: one producer per
 * tensor, every step input fed, nothing produced left unread, no cycle, and producer and consumer
 * agreeing on datatype and shape; every message names the ensemble, the step and the tensor.
 */
import { datatypeOfConfig, type CompletedModelConfig, type ModelConfig } from '../config/model-config.js';

/** Triton's platform name for ensembles. */
export const ENSEMBLE_PLATFORM = 'ensemble';

export interface EnsembleStep {
  /** Position in ensemble_scheduling.step, as Triton counts steps (from 0). */
  index: number;
  model: string;
  /** The version the step names; undefined: the one its model serves. */
  version?: string;
  /** Step model input → the ensemble tensor that feeds it. */
  inputs: ReadonlyMap<string, string>;
  /** Step model output → the ensemble tensor it becomes. */
  outputs: ReadonlyMap<string, string>;
  /** "step 1 (model 'b')", for messages. */
  label: string;
}

export interface EnsemblePlan {
  name: string;
  steps: readonly EnsembleStep[];
  inputs: readonly string[];
  outputs: readonly string[];
  /** The step that produces each tensor; the ensemble's inputs have none. */
  producers: ReadonlyMap<string, EnsembleStep>;
  /** The steps that read each tensor. */
  consumers: ReadonlyMap<string, readonly EnsembleStep[]>;
}

export function isEnsembleConfig(config: ModelConfig): boolean {
  return config.platform === ENSEMBLE_PLATFORM;
}

/** The settings an ensemble may not have: it runs nothing itself, its steps run on their own models. */
const NOT_FOR_ENSEMBLES = ['instance_group', 'model_warmup', 'dynamic_batching', 'default_model_filename'] as const;

/** Checks the ensemble's own config and builds its graph; what the steps' models take is checked by checkEnsembleSteps once they are loaded. */
export function planEnsemble(name: string, config: ModelConfig): EnsemblePlan {
  const ensemble = `ensemble '${name}'`;
  const declared = config.ensemble_scheduling?.step ?? [];
  if (declared.length === 0) throw new Error(`${ensemble} has no steps: give ensemble_scheduling { step [ { model_name, input_map, output_map } ] }`);
  for (const field of NOT_FOR_ENSEMBLES) {
    const value = config[field];
    if (value !== undefined && !(Array.isArray(value) && value.length === 0)) {
      throw new Error(`${ensemble} may not set ${field}: an ensemble runs nothing itself, each step runs on its own model's instances and scheduler`);
    }
  }
  if (config.input.length === 0) throw new Error(`${ensemble} declares no input: list the tensors it takes under input, as for any model`);
  if (config.output.length === 0) throw new Error(`${ensemble} declares no output: list the tensors it returns under output, as for any model`);

  const steps: EnsembleStep[] = declared.map((step, index) => {
    const label = `step ${index} (model '${step.model_name}')`;
    const inputs = new Map(Object.entries(step.input_map ?? {}));
    const outputs = new Map(Object.entries(step.output_map ?? {}));
    if (inputs.size === 0) throw new Error(`${ensemble} ${label} has no input_map: map each input of '${step.model_name}' to an ensemble tensor`);
    if (outputs.size === 0) throw new Error(`${ensemble} ${label} has no output_map: map the outputs of '${step.model_name}' it should produce to ensemble tensors`);
    return { index, model: step.model_name, version: step.model_version >= 1 ? String(step.model_version) : undefined, inputs, outputs, label };
  });

  const inputs = config.input.map((input) => input.name);
  const outputs = config.output.map((output) => output.name);
  const producers = new Map<string, EnsembleStep>();
  for (const step of steps) {
    const seen = new Set<string>();
    for (const [output, tensor] of step.outputs) {
      if (seen.has(tensor)) throw new Error(`${ensemble} ${step.label} maps two outputs to ensemble tensor '${tensor}' (one is '${output}')`);
      seen.add(tensor);
      if (inputs.includes(tensor)) throw new Error(`${ensemble} ${step.label} maps output '${output}' to '${tensor}', which is an input of the ensemble: each tensor has one producer`);
      const other = producers.get(tensor);
      if (other) throw new Error(`${ensemble}: ensemble tensor '${tensor}' is produced by both ${other.label} and ${step.label}: each tensor has one producer`);
      producers.set(tensor, step);
    }
  }

  const consumers = new Map<string, EnsembleStep[]>();
  for (const step of steps) {
    for (const [input, tensor] of step.inputs) {
      if (!inputs.includes(tensor) && !producers.has(tensor)) {
        throw new Error(`${ensemble} ${step.label} feeds input '${input}' from ensemble tensor '${tensor}', which is neither an input of the ensemble nor mapped from any step's output`);
      }
      consumers.set(tensor, [...(consumers.get(tensor) ?? []), step]);
    }
  }
  for (const output of outputs) {
    if (!producers.has(output)) {
      throw new Error(`output '${output}' of ${ensemble} is produced by no step: map a step's output to '${output}' in its output_map`);
    }
  }
  for (const input of inputs) {
    if (!consumers.has(input)) throw new Error(`input '${input}' of ${ensemble} is read by no step: map it to a step's input, or remove it`);
  }
  for (const [tensor, step] of producers) {
    if (!consumers.has(tensor) && !outputs.includes(tensor)) {
      const output = [...step.outputs].find(([, mapped]) => mapped === tensor)![0];
      throw new Error(
        `${ensemble}: ensemble tensor '${tensor}' (output '${output}' of ${step.label}) is read by no step and is not an output of the ensemble: remove it from the step's output_map`,
      );
    }
  }
  const plan = { name, steps, inputs, outputs, producers, consumers };
  checkAcyclic(plan);
  return plan;
}

/** The steps a step waits for: the producers of its inputs. */
export function stepDependencies(plan: EnsemblePlan, step: EnsembleStep): EnsembleStep[] {
  return [...new Set([...step.inputs.values()].map((tensor) => plan.producers.get(tensor)).filter((producer) => producer !== undefined))];
}

/** Steps that can never start because they wait on themselves, named along the loop. */
function checkAcyclic(plan: EnsemblePlan): void {
  const done = new Set<EnsembleStep>();
  let progressed = true;
  while (progressed) {
    progressed = false;
    for (const step of plan.steps) {
      if (!done.has(step) && stepDependencies(plan, step).every((dependency) => done.has(dependency))) {
        done.add(step);
        progressed = true;
      }
    }
  }
  const stuck = plan.steps.find((step) => !done.has(step));
  if (!stuck) return;
  // Walk back through producers still stuck until one repeats: that walk is a cycle.
  const path: EnsembleStep[] = [];
  let current = stuck;
  while (!path.includes(current)) {
    path.push(current);
    current = stepDependencies(plan, current).find((dependency) => !done.has(dependency))!;
  }
  const loop = [...path.slice(path.indexOf(current)), current].reverse();
  const described = loop
    .map((step, position) => {
      if (position === 0) return step.label;
      const tensor = [...step.inputs.values()].find((name) => plan.producers.get(name) === loop[position - 1]);
      return `'${tensor}' → ${step.label}`;
    })
    .join(' → ');
  throw new Error(`steps of ensemble '${plan.name}' form a cycle, so none of them can start: ${described}`);
}

/** A tensor as one side of an edge declares it. */
interface TensorEnd {
  datatype: string;
  dims: readonly number[];
  /** The declaring model batches: its dims leave out the batch dimension. */
  batched: boolean;
  /** "output 'y' of model 'a' (step 0)", for messages. */
  description: string;
}

function sameDims(left: readonly number[], right: readonly number[]): boolean {
  return left.length === right.length && left.every((dim, index) => dim === -1 || right[index] === -1 || dim === right[index]);
}

const fullDims = (end: TensorEnd) => (end.batched ? [-1, ...end.dims] : end.dims);
const shown = (end: TensorEnd) => `${end.datatype} [${fullDims(end).join(',')}]`;

/**
 * Dims agree with each side's batch dimension written out: a batching model may feed a non-batching one whose first
 * dimension is -1 (as Triton allows), but not one that takes the same dims without a batch dimension.
 */
function compatible(producer: TensorEnd, consumer: TensorEnd): boolean {
  return sameDims(fullDims(producer), fullDims(consumer));
}

/** Why a tensor's two ends disagree, with a hint when they declare the same dims but only one batches. */
function disagreement(tensor: string, producer: TensorEnd, consumer: TensorEnd): string {
  const hint =
    producer.batched === consumer.batched || !sameDims(producer.dims, consumer.dims)
      ? ''
      : ` (the side with max_batch_size > 0 has a batch dimension before its dims; the one with max_batch_size 0 takes its dims as written, so give it a first dimension of -1 or make both batch alike)`;
  return `ensemble tensor '${tensor}' is ${shown(producer)} as ${producer.description}, but ${consumer.description} takes ${shown(consumer)}${hint}`;
}

/**
 * Checks each step against its model's config as clients see it (`stepConfigs[i]` for step i):
 * max_batch_size, every input mapped and no name the model lacks, and datatype and shape agreeing
 * between each tensor's producer and its consumers.
 */
export function checkEnsembleSteps(plan: EnsemblePlan, ensembleConfig: CompletedModelConfig, stepConfigs: readonly CompletedModelConfig[]): void {
  const ensemble = `ensemble '${plan.name}'`;
  const ensembleBatched = ensembleConfig.max_batch_size > 0;
  const producing = new Map<string, TensorEnd>();
  for (const input of ensembleConfig.input) {
    // A reshaped input enters the steps in its reshape's shape, as Triton's ensemble check takes it.
    producing.set(input.name, { datatype: datatypeOfConfig(input), dims: input.reshape?.shape ?? input.dims, batched: ensembleBatched, description: `input '${input.name}' of ${ensemble}` });
  }
  const consuming: [string, TensorEnd][] = [];
  for (const step of plan.steps) {
    const config = stepConfigs[step.index];
    const batched = config.max_batch_size > 0;
    const where = `model '${step.model}' (step ${step.index})`;
    if (ensembleConfig.response_cache?.enable && config.sequence_batching) {
      throw new Error(`${ensemble} enables response_cache, but its ${step.label} is stateful (sequence_batching): its answers depend on the sequence so far, so the ensemble's cannot be cached`);
    }
    if (batched && config.max_batch_size < ensembleConfig.max_batch_size) {
      throw new Error(`${ensemble} allows max_batch_size ${ensembleConfig.max_batch_size}, but its ${step.label} allows only ${config.max_batch_size}`);
    }
    const inputNames = config.input.map((input) => input.name);
    for (const [input, tensor] of step.inputs) {
      if (!inputNames.includes(input)) {
        throw new Error(`${ensemble} ${step.label} maps ensemble tensor '${tensor}' to input '${input}', which model '${step.model}' does not have (its inputs: ${inputNames.join(', ')})`);
      }
    }
    for (const input of config.input) {
      const tensor = step.inputs.get(input.name);
      if (tensor === undefined) {
        if (input.optional) continue;
        throw new Error(`${ensemble}: input '${input.name}' of ${where} is not mapped to any ensemble tensor (add it to the step's input_map)`);
      }
      consuming.push([tensor, { datatype: datatypeOfConfig(input), dims: input.dims, batched, description: `input '${input.name}' of ${where}` }]);
    }
    const outputNames = config.output.map((output) => output.name);
    for (const [output, tensor] of step.outputs) {
      const declared = config.output.find((candidate) => candidate.name === output);
      if (!declared) {
        throw new Error(`${ensemble} ${step.label} maps output '${output}' to ensemble tensor '${tensor}', but model '${step.model}' has no output '${output}' (its outputs: ${outputNames.join(', ')})`);
      }
      producing.set(tensor, { datatype: datatypeOfConfig(declared), dims: declared.dims, batched, description: `output '${output}' of ${where}` });
    }
  }
  // The ensemble's outputs last: a mistake is named where the tensors first meet it, from the ensemble's inputs on.
  for (const output of ensembleConfig.output) {
    consuming.push([output.name, { datatype: datatypeOfConfig(output), dims: output.reshape?.shape ?? output.dims, batched: ensembleBatched, description: `output '${output.name}' of ${ensemble}` }]);
  }
  for (const [tensor, consumer] of consuming) {
    const producer = producing.get(tensor)!;
    if (producer.datatype !== consumer.datatype || !compatible(producer, consumer)) {
      throw new Error(`${ensemble}: ${disagreement(tensor, producer, consumer)}`);
    }
  }
}
