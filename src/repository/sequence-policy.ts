/**
 * A model's sequence_batching block as the sequence batcher's policy: strategy and limits, the
 * control inputs with the values they take, and each implicit state with its initial value
 * (zeros, or the raw bytes of a file in the model's `initial_state` folder, as Triton lays it out).
 */
import { datatypeOfConfig, type CompletedModelConfig, type SequenceBatchingConfig } from '../config/model-config.js';
import type { Datatype } from '../core/datatype.js';
import { tensorDataFromBytes, type Tensor } from '../core/tensor.js';
import type { SequenceControlInput, SequenceControlKind, SequencePolicy } from '../scheduler/sequence-batcher.js';
import { zeroTensor } from './model-warmup.js';

type Control = SequenceBatchingConfig['control_input'][number]['control'][number];

function controlInputOf(name: string, control: Control): SequenceControlInput {
  const kind = control.kind.replace('CONTROL_SEQUENCE_', '') as SequenceControlKind;
  if (kind === 'CORRID') return { name, kind, datatype: datatypeOfConfig({ data_type: control.data_type! }), values: [0, 0] };
  if (control.fp32_false_true) return { name, kind, datatype: 'FP32', values: [control.fp32_false_true[0], control.fp32_false_true[1]] };
  if (control.bool_false_true) return { name, kind, datatype: 'BOOL', values: [control.bool_false_true[0], control.bool_false_true[1]] };
  const [off, on] = control.int32_false_true!;
  return { name, kind, datatype: 'INT32' as Datatype, values: [off, on] };
}

export async function sequencePolicyOf(
  config: CompletedModelConfig,
  { maxQueuedRequests, maxQueuedRequestsSetting }: Pick<SequencePolicy, 'maxQueuedRequests' | 'maxQueuedRequestsSetting'>,
  readInitialStateFile: (file: string) => Promise<Buffer>,
): Promise<SequencePolicy> {
  const batching = config.sequence_batching!;
  const states = await Promise.all(
    batching.state.map(async (state) => {
      const datatype = datatypeOfConfig(state);
      const [initial] = state.initial_state;
      let tensor: Tensor = zeroTensor(datatype, [...state.dims]);
      if (initial?.data_file) {
        const source = `initial_state data_file '${initial.data_file}'`;
        tensor = { datatype, shape: [...state.dims], data: tensorDataFromBytes(state.input_name, datatype, state.dims, await readInitialStateFile(initial.data_file), source) };
      }
      return { input: state.input_name, output: state.output_name, initial: tensor };
    }),
  );
  const oldest = batching.oldest;
  return {
    strategy: oldest ? 'oldest' : 'direct',
    maxBatchSize: config.max_batch_size,
    maxCandidateSequences: oldest?.max_candidate_sequences,
    preferredBatchSizes: oldest?.preferred_batch_size ?? [],
    maxQueueDelayMicroseconds: (oldest ?? batching.direct)?.max_queue_delay_microseconds ?? 0,
    maxSequenceIdleMicroseconds: batching.max_sequence_idle_microseconds,
    controls: batching.control_input.map(({ name, control }) => controlInputOf(name, control[0])),
    states,
    maxQueuedRequests,
    maxQueuedRequestsSetting,
  };
}
