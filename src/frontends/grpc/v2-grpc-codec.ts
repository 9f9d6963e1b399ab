/**
 * Translates V2 gRPC messages (as @grpc/proto-loader decodes them with PROTO_LOADER_OPTIONS) to the
 * core's InferenceRequest and back, and the core's answers to the protocol's messages. Only wire
 * format lives here; the checks and messages are the core's, shared with HTTP.
 */
import { invalidArgument, quoteName } from '../../core/errors.js';
import { checkReservedParameters, checkSequenceParameters, EMPTY_FINAL_RESPONSE_PARAMETER, requestedOutputOf, TRANSPORT_PARAMETERS, withoutParameters, type InferenceRequest, type InferenceResponse, type InferInput, type Parameters, type RequestedOutput } from '../../core/inference.js';
import {
  checkDatatype,
  checkShape,
  tensorDataFromBytes,
  type InputShapeCheck,
  tensorDataFromContents,
  tensorDataToBytesInSlices,
  type TensorContents,
} from '../../core/tensor.js';
import type { ModelStatistics } from '../../observability/model-statistics.js';
import { answeredModelFilename, type CompletedModelConfig, type SequenceBatchingConfig } from '../../config/model-config.js';
import type { RepositoryIndexEntry } from '../../repository/repository-index.js';
import {
  checkSharedMemoryOutputs,
  sharedMemoryInputData,
  sharedMemoryReadBudget,
  sharedMemoryReferenceOf,
  type SharedMemoryRegions,
  withoutSharedMemoryParameters,
  writeSharedMemoryOutputs,
} from '../../protocol/shared-memory-tensors.js';

/** int64/uint64 values: decimal strings when decoded (longs: String); numbers are accepted when encoding. */
type Int64 = string | number;

/** InferParameter / ModelRepositoryParameter: a oneof, `parameter_choice` names the member that is set. */
export interface ParameterMessage {
  parameter_choice?: string;
  bool_param?: boolean;
  int64_param?: Int64;
  string_param?: string;
  double_param?: number;
  uint64_param?: Int64;
  bytes_param?: Buffer;
}

export type ParameterMap = Record<string, ParameterMessage>;

export interface InferInputTensorMessage {
  name: string;
  datatype: string;
  shape: Int64[];
  parameters?: ParameterMap;
  contents?: TensorContents | null;
}

export interface ModelInferRequestMessage {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: ParameterMap;
  inputs: InferInputTensorMessage[];
  outputs?: { name: string; parameters?: ParameterMap }[];
  raw_input_contents?: Buffer[];
}

export interface ModelInferResponseMessage {
  model_name: string;
  model_version: string;
  id: string;
  parameters: ParameterMap;
  outputs: { name: string; datatype: string; shape: number[]; parameters: ParameterMap }[];
  raw_output_contents: Buffer[];
}

/** 64-bit integers become numbers when exact, else stay decimal strings (never silently rounded). */
function int64Value(value: Int64): number | string {
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : String(value);
}

/** The value an InferParameter / ModelRepositoryParameter holds, whichever of its oneof is set. */
export function parameterValueOf(parameter: ParameterMap[string] | undefined): Parameters[string] | Buffer | undefined {
  switch (parameter?.parameter_choice) {
    case 'bool_param':
      return parameter.bool_param === true;
    case 'int64_param':
      return int64Value(parameter.int64_param ?? 0);
    case 'uint64_param':
      return int64Value(parameter.uint64_param ?? 0);
    case 'double_param':
      return parameter.double_param ?? 0;
    case 'string_param':
      return parameter.string_param ?? '';
    case 'bytes_param':
      return parameter.bytes_param ?? Buffer.alloc(0);
    default:
      return undefined;
  }
}

/**
 * A request's `sequence_id` as Triton reads it: int64_param or uint64_param (a number, or a bigint beyond 2^53 so
 * that it stays exact and an integer id never becomes a string one) or string_param; any other kind is refused.
 */
function sequenceIdOf(parameter: ParameterMessage, where: string): Parameters[string] {
  switch (parameter.parameter_choice) {
    case 'int64_param':
    case 'uint64_param': {
      const exact = BigInt(parameter[parameter.parameter_choice] ?? 0);
      return Number.isSafeInteger(Number(exact)) ? Number(exact) : exact;
    }
    case 'string_param':
      return parameter.string_param ?? '';
    default:
      throw invalidArgument(
        `${where}: invalid value type for 'sequence_id' parameter, expected int64_param, uint64_param or string_param (a correlation id is an unsigned integer or a string), got ${parameter.parameter_choice ?? 'no value'}`,
      );
  }
}

/** InferParameter map -> the core's parameters; undefined when there are none (as HTTP without 'parameters'). */
export function parametersFromProto(map: ParameterMap | undefined, where: string): Parameters | undefined {
  const entries = Object.entries(map ?? {});
  if (entries.length === 0) return undefined;
  const parameters: Parameters = {};
  for (const [key, parameter] of entries) {
    if (key === 'sequence_id') {
      parameters[key] = sequenceIdOf(parameter, where);
      continue;
    }
    const value = parameterValueOf(parameter);
    if (value === undefined || Buffer.isBuffer(value)) {
      throw invalidArgument(`${where}: parameter ${quoteName(key)} must be a string, number or boolean`);
    }
    parameters[key] = value;
  }
  return parameters;
}

/** The core's parameters -> InferParameter map: integers as int64_param, other numbers as double_param. */
export function parametersToProto(parameters: Parameters | undefined): ParameterMap {
  const map: ParameterMap = {};
  for (const [key, value] of Object.entries(parameters ?? {})) {
    if (typeof value === 'boolean') map[key] = { bool_param: value };
    else if (typeof value === 'string') map[key] = { string_param: value };
    else if (typeof value === 'bigint') map[key] = value < 2n ** 63n ? { int64_param: String(value) } : { uint64_param: String(value) };
    else if (Number.isSafeInteger(value)) map[key] = { int64_param: value };
    else map[key] = { double_param: value };
  }
  return map;
}

/** A shape value as a number, or, beyond 2^53 where a number would round, as the digits sent (for the refusal to quote). */
const dimOf = (dim: Int64): number | bigint => {
  const value = Number(dim);
  return Number.isSafeInteger(value) || typeof dim !== 'string' || !/^-?\d+$/.test(dim) ? value : BigInt(dim);
};

/**
 * ModelInferRequest -> InferenceRequest. Each input's contents are typed (`contents`, the field
 * matching its datatype), raw (`raw_input_contents`, one entry per input not in shared memory, in
 * order) or in a registered shared memory region (its parameters say which), one of them only.
 * Raw BYTES are decoded a few milliseconds at a time: millions of elements must not hold up other calls.
 */
export async function decodeModelInferRequest(message: ModelInferRequestMessage, sharedMemory?: SharedMemoryRegions, shapeFirst?: InputShapeCheck): Promise<InferenceRequest> {
  const raw = message.raw_input_contents ?? [];
  const inputsMessage = message.inputs ?? [];
  const given = parametersFromProto(message.parameters, 'request');
  checkReservedParameters(given, [EMPTY_FINAL_RESPONSE_PARAMETER]);
  const parameters = withoutParameters(given, [...TRANSPORT_PARAMETERS, EMPTY_FINAL_RESPONSE_PARAMETER]);
  checkSequenceParameters(parameters);
  const inputParameters = inputsMessage.map((input, index) => parametersFromProto(input.parameters, input.name ? `input ${quoteName(input.name)}` : `input 'inputs[${index}]'`));
  const references = inputsMessage.map((input, index) => sharedMemoryReferenceOf(inputParameters[index], () => `input ${quoteName(input.name)}`));
  const inMessage = references.filter((reference) => reference === undefined).length;
  if (raw.length > 0 && raw.length !== inMessage) {
    // An input sent in contents beside raw_input_contents is what the count is off by, most likely: said so, as Triton does.
    const typed = inputsMessage.find((input, index) => references[index] === undefined && input.contents);
    if (typed) throw invalidArgument(`input ${quoteName(typed.name)} has contents while the request has raw_input_contents; send every input one way`);
    throw invalidArgument(
      `raw_input_contents has ${raw.length} entries but the request has ${inMessage} inputs${inMessage < inputsMessage.length ? ' outside shared memory' : ''}; send one entry per such input, in the order of 'inputs'`,
    );
  }
  const inputs: InferInput[] = [];
  const readBudget = sharedMemoryReadBudget(sharedMemory);
  let rawIndex = 0;
  for (let index = 0; index < inputsMessage.length; index++) {
    const input = inputsMessage[index];
    const name = input.name;
    if (!name) throw invalidArgument(`inputs[${index}] needs a 'name'`);
    const datatype = checkDatatype(name, input.datatype);
    const shape = checkShape(name, (input.shape ?? []).map(dimOf));
    const reference = references[index];
    let data;
    if (reference) {
      data = sharedMemoryInputData(name, datatype, shape, reference, sharedMemory, readBudget, input.contents ? 'contents' : undefined);
      inputs.push({ name, datatype, shape, data, parameters: withoutSharedMemoryParameters(inputParameters[index]!) });
      continue;
    }
    if (raw.length > 0) {
      if (input.contents) throw invalidArgument(`input ${quoteName(name)} has contents while the request has raw_input_contents; send every input one way`);
      data = tensorDataFromBytes(name, datatype, shape, raw[rawIndex], `raw_input_contents[${rawIndex}] size`, shapeFirst);
      rawIndex++;
    } else {
      if (!input.contents) throw invalidArgument(`input ${quoteName(name)} has no contents (and no raw_input_contents)`);
      data = tensorDataFromContents(name, datatype, input.contents);
    }
    inputs.push({ name, datatype, shape, data, parameters: inputParameters[index] });
  }
  const outputs = message.outputs?.length
    ? message.outputs.map((output) => requestedOutputOf(output.name, parametersFromProto(output.parameters, `output ${quoteName(output.name)}`)))
    : undefined;
  checkSharedMemoryOutputs(outputs, sharedMemory);
  return {
    model: message.model_name,
    version: message.model_version || undefined,
    id: message.id || undefined,
    parameters,
    inputs,
    outputs,
  };
}

/**
 * InferenceResponse -> ModelInferResponse with every output in raw_output_contents, as Triton answers
 * (BYTES encoded in slices); an output asked for in shared memory is written there, and its entry in
 * raw_output_contents is empty.
 */
export async function encodeModelInferResponse(
  response: InferenceResponse,
  requestedOutputs?: readonly RequestedOutput[],
  sharedMemory?: SharedMemoryRegions,
): Promise<ModelInferResponseMessage> {
  const inSharedMemory = writeSharedMemoryOutputs(response, requestedOutputs, sharedMemory);
  const raw: Buffer[] = [];
  for (const output of response.outputs) {
    raw.push(inSharedMemory?.has(output.name) ? Buffer.alloc(0) : await tensorDataToBytesInSlices(output.datatype, output.data));
  }
  return {
    model_name: response.model,
    model_version: response.version,
    id: response.id ?? '',
    parameters: parametersToProto(response.parameters),
    outputs: response.outputs.map((output) => ({
      name: output.name,
      datatype: output.datatype,
      shape: output.shape,
      parameters: parametersToProto(inSharedMemory?.get(output.name) ?? output.parameters),
    })),
    raw_output_contents: raw,
  };
}

/** ModelRepositoryParameter map -> the load parameters the core reads (`config`: a JSON string). */
export function repositoryParametersFromProto(map: ParameterMap | undefined, action: 'load' | 'unload'): Record<string, unknown> {
  const parameters: Record<string, unknown> = {};
  for (const [key, parameter] of Object.entries(map ?? {})) {
    const value = parameterValueOf(parameter);
    if (value === undefined) throw invalidArgument(`${action} parameter ${quoteName(key)} has no value`);
    parameters[key] = value;
  }
  return parameters;
}

export function repositoryIndexToProto(entries: readonly RepositoryIndexEntry[]) {
  return {
    models: entries.map((entry) => ({
      name: entry.name,
      version: entry.version ?? '',
      state: entry.state ?? '',
      reason: entry.reason ?? '',
    })),
  };
}

type ModelStatsJson = ReturnType<ModelStatistics['toJSON']>;

/**
 * ModelStatisticsResponse with Triton's fields only: Nereid's additions to the JSON form
 * (preprocess/postprocess phases, cost) have no field in the protocol's messages.
 */
export function modelStatisticsToProto(statistics: { model_stats: readonly ModelStatsJson[] }) {
  return {
    model_stats: statistics.model_stats.map((entry) => {
      const stats = entry.inference_stats;
      return {
        name: entry.name,
        version: entry.version,
        last_inference: entry.last_inference,
        inference_count: entry.inference_count,
        execution_count: entry.execution_count,
        inference_stats: {
          success: stats.success,
          fail: stats.fail,
          queue: stats.queue,
          compute_input: stats.compute_input,
          compute_infer: stats.compute_infer,
          compute_output: stats.compute_output,
          cache_hit: stats.cache_hit,
          cache_miss: stats.cache_miss,
        },
        batch_stats: entry.batch_stats,
        memory_usage: entry.memory_usage,
      };
    }),
  };
}

const INPUT_FORMATS = new Set(['FORMAT_NONE', 'FORMAT_NHWC', 'FORMAT_NCHW']);

type QueuePolicy = NonNullable<CompletedModelConfig['dynamic_batching']>['default_queue_policy'];

function queuePolicyToProto(policy: QueuePolicy) {
  return {
    timeout_action: policy.timeout_action,
    default_timeout_microseconds: policy.default_timeout_microseconds,
    allow_timeout_override: policy.allow_timeout_override,
    max_queue_size: policy.max_queue_size,
  };
}

/** sequence_batching as model_config.proto's ModelSequenceBatching: the strategy, idle limit, controls and states. */
function sequenceBatchingToProto(batching: SequenceBatchingConfig) {
  return {
    ...(batching.oldest
      ? {
          oldest: {
            max_candidate_sequences: batching.oldest.max_candidate_sequences,
            preferred_batch_size: batching.oldest.preferred_batch_size,
            max_queue_delay_microseconds: batching.oldest.max_queue_delay_microseconds,
            preserve_ordering: batching.oldest.preserve_ordering,
          },
        }
      : batching.direct && {
          direct: { max_queue_delay_microseconds: batching.direct.max_queue_delay_microseconds, minimum_slot_utilization: batching.direct.minimum_slot_utilization },
        }),
    max_sequence_idle_microseconds: batching.max_sequence_idle_microseconds,
    control_input: batching.control_input.map((input) => ({
      name: input.name,
      control: input.control.map((control) => ({
        kind: control.kind,
        int32_false_true: control.int32_false_true ?? [],
        fp32_false_true: control.fp32_false_true ?? [],
        bool_false_true: control.bool_false_true ?? [],
        data_type: control.data_type ?? 'TYPE_INVALID',
      })),
    })),
    state: batching.state.map((state) => ({
      input_name: state.input_name,
      output_name: state.output_name,
      data_type: state.data_type,
      dims: state.dims,
      initial_state: state.initial_state.map((initial) => ({
        name: initial.name ?? '',
        data_type: initial.data_type,
        dims: initial.dims,
        ...(initial.data_file !== undefined ? { data_file: initial.data_file } : { zero_data: true }),
      })),
    })),
  };
}

/**
 * The completed config as model_config.proto's ModelConfig. Fields are copied one by one, so a
 * field the proto lacks (configs are loose objects) can neither leak nor break serialization.
 */
export function modelConfigToProto(config: CompletedModelConfig) {
  const policy = config.version_policy;
  const batching = config.dynamic_batching;
  return {
    name: config.name,
    platform: config.platform,
    backend: config.backend,
    version_policy:
      'latest' in policy
        ? { latest: { num_versions: policy.latest.num_versions } }
        : 'specific' in policy
          ? { specific: { versions: policy.specific.versions } }
          : { all: {} },
    max_batch_size: config.max_batch_size,
    input: config.input.map((input) => ({
      name: input.name,
      data_type: input.data_type,
      format: input.format !== undefined && INPUT_FORMATS.has(input.format) ? input.format : 'FORMAT_NONE',
      dims: input.dims,
      reshape: input.reshape ? { shape: input.reshape.shape } : null,
      allow_ragged_batch: input.allow_ragged_batch,
      optional: input.optional,
    })),
    output: config.output.map((output) => ({
      name: output.name,
      data_type: output.data_type,
      dims: output.dims,
      reshape: output.reshape ? { shape: output.reshape.shape } : null,
      label_filename: output.label_filename ?? '',
    })),
    batch_input: config.batch_input.map((entry) => ({
      kind: entry.kind,
      target_name: entry.target_name,
      data_type: entry.data_type,
      source_input: entry.source_input,
    })),
    dynamic_batching: batching
      ? {
          preferred_batch_size: batching.preferred_batch_size,
          max_queue_delay_microseconds: batching.max_queue_delay_microseconds,
          preserve_ordering: batching.preserve_ordering,
          priority_levels: batching.priority_levels,
          default_priority_level: batching.default_priority_level,
          default_queue_policy: queuePolicyToProto(batching.default_queue_policy),
          priority_queue_policy: Object.fromEntries(
            Object.entries(batching.priority_queue_policy ?? {}).map(([level, queue]) => [level, queuePolicyToProto(queue)]),
          ),
        }
      : null,
    sequence_batching: config.sequence_batching ? sequenceBatchingToProto(config.sequence_batching) : null,
    instance_group: config.instance_group.map((group) => ({
      name: group.name ?? '',
      kind: group.kind,
      count: group.count,
      gpus: 'gpus' in group && Array.isArray(group.gpus) ? group.gpus : [],
    })),
    default_model_filename: answeredModelFilename(config),
    parameters: Object.fromEntries(
      Object.entries(config.parameters).map(([key, value]) => [key, { string_value: value.string_value }]),
    ),
    response_cache: config.response_cache ? { enable: config.response_cache.enable } : null,
    // Triton's ONNX Runtime backend reads graph.level; the other optimization fields have no effect here and are not sent.
    optimization: config.optimization?.graph?.level !== undefined ? { graph: { level: config.optimization.graph.level } } : null,
    model_transaction_policy: { decoupled: false },
    ensemble_scheduling: config.ensemble_scheduling
      ? {
          step: config.ensemble_scheduling.step.map((step) => ({
            model_name: step.model_name,
            model_version: step.model_version,
            input_map: step.input_map ?? {},
            output_map: step.output_map ?? {},
          })),
        }
      : null,
  };
}
