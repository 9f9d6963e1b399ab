/**
 * ONNX Runtime's settings for one model, read from its config's `parameters` (strings, as Triton
 * writes them) through one schema that holds their defaults, and turned into session options.
 */
import type { InferenceSession } from 'onnxruntime-common';
import { z } from 'zod';
import { declaredParameters, parameterStrings, type ModelConfig } from '../config/model-config.js';

export type SessionOptions = InferenceSession.SessionOptions;

/** One of `values`, with a message that lists them and quotes what was given. */
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: (issue) => `must be one of ${values.join(', ')}, got '${String(issue.input)}'` });
const count = z.string().regex(/^\d+$/, { error: (issue) => `must be a non-negative integer, got '${String(issue.input)}'` }).transform(Number);
const flag = z
  .enum(['true', 'false', '1', '0'], { error: (issue) => `must be true or false, got '${String(issue.input)}'` })
  .transform((value) => value === 'true' || value === '1');

export const onnxRuntimeParametersSchema = z.object({
  /** Threads one forward pass uses; 0 or absent: the instance's share of the machine's cores. */
  intra_op_thread_count: count.optional(),
  inter_op_thread_count: count.optional(),
  /** 0 sequential, 1 parallel (operators of independent branches at once, on inter-op threads). */
  execution_mode: z.enum(['0', '1'], { error: 'must be 0 (sequential) or 1 (parallel)' }).default('0'),
  graph_optimization_level: oneOf(['disabled', 'basic', 'extended', 'all']).optional(),
  /** Comma-separated, in preference order; CPU always closes the list. KIND_GPU implies cuda. */
  execution_providers: z.string().optional(),
  /**
   * Where the forward pass runs: the JS thread (no hand-off; the event loop waits while it computes)
   * or a worker thread (the event loop keeps serving). auto: a worker for models of 256 KiB or more (external data
   * counted) or taking or giving BYTES, as WORKER_THREAD_MIN_MODEL_BYTES in onnx-runtime-backend.ts decides.
   */
  execution_thread: oneOf(['auto', 'main', 'worker']).default('auto'),
  /** Intra-op threads spin-wait between tasks (ONNX Runtime's default; turning it off cost 20 % throughput on the OCR recogniser). */
  allow_spinning: flag.default(true),
  enable_mem_pattern: flag.default(true),
  enable_cpu_mem_arena: flag.default(true),
  /** Triton's ONNX Runtime backend's name for enable_cpu_mem_arena; it wins where both are given. */
  enable_mem_arena: flag.optional(),
});

export type OnnxRuntimeParameters = z.output<typeof onnxRuntimeParametersSchema>;

/** The parameters that change how fast a session runs but not what it computes. */
export const ONNX_RUNTIME_TUNING_PARAMETERS: readonly (keyof OnnxRuntimeParameters)[] = [
  'intra_op_thread_count',
  'inter_op_thread_count',
  'execution_mode',
  'execution_thread',
  'allow_spinning',
  'enable_mem_pattern',
  'enable_cpu_mem_arena',
  'enable_mem_arena',
];

/**
 * Parameters Triton's ONNX Runtime backend reads that Nereid does not (GPU and arena tuning, session sharing): a config
 * brought from Triton that sets them is told they have no effect here, where other keys are the model's own metadata.
 */
const TRITON_PARAMETERS_WITHOUT_EFFECT = [
  'memory.enable_memory_arena_shrinkage',
  'session.use_device_allocator_for_initializers',
  'share_session_between_instances',
  'cudnn_conv_algo_search',
  'gpu_mem_limit',
  'arena_extend_strategy',
  'do_copy_in_default_stream',
  'enable_dynamic_shapes_to_fixed',
];

export function parametersWithoutEffect(config: ModelConfig): string[] {
  return TRITON_PARAMETERS_WITHOUT_EFFECT.filter((name) => name in config.parameters);
}

/** Triton's `optimization { graph { level } }` as its ONNX Runtime backend reads it: -1 basic, 1 extended, 2 disabled, anything else all. */
function tritonGraphLevel(config: ModelConfig): 'disabled' | 'basic' | 'extended' | 'all' {
  const level = Number((config as { optimization?: { graph?: { level?: unknown } } }).optimization?.graph?.level ?? 0);
  return level === -1 ? 'basic' : level === 1 ? 'extended' : level === 2 ? 'disabled' : 'all';
}

/** The model's ONNX Runtime parameters, validated; throws with every bad parameter named. */
export function onnxRuntimeParameters(config: ModelConfig): OnnxRuntimeParameters & { graph_optimization_level: string } {
  const parameters = declaredParameters(onnxRuntimeParametersSchema, parameterStrings(config));
  return { ...parameters, graph_optimization_level: parameters.graph_optimization_level ?? tritonGraphLevel(config) };
}

/** Session options for one instance; `intraOpThreads` is its planned share when the config names none. */
export function sessionOptionsOf(parameters: ReturnType<typeof onnxRuntimeParameters>, planned: { intraOpThreads: number; interOpThreads: number }): SessionOptions {
  return {
    intraOpNumThreads: parameters.intra_op_thread_count || planned.intraOpThreads,
    interOpNumThreads: parameters.inter_op_thread_count || planned.interOpThreads,
    executionMode: parameters.execution_mode === '1' ? 'parallel' : 'sequential',
    graphOptimizationLevel: parameters.graph_optimization_level as SessionOptions['graphOptimizationLevel'],
    enableMemPattern: parameters.enable_mem_pattern,
    enableCpuMemArena: parameters.enable_mem_arena ?? parameters.enable_cpu_mem_arena,
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: parameters.allow_spinning ? '1' : '0' } } },
  };
}

/** Threads a forward pass keeps busy, for cost accounting. */
export function computeThreads(options: SessionOptions): number {
  return (options.intraOpNumThreads ?? 1) * (options.executionMode === 'parallel' ? (options.interOpNumThreads ?? 1) : 1);
}

/** Execution providers in preference order; CPU always closes the list so a missing provider degrades instead of failing. */
export function executionProviders(parameters: OnnxRuntimeParameters, kind: 'CPU' | 'GPU'): string[] {
  const names = parameters.execution_providers
    ? parameters.execution_providers.split(',').map((name) => name.trim().toLowerCase()).filter(Boolean)
    : kind === 'GPU'
      ? ['cuda']
      : [];
  return [...names.filter((name) => name !== 'cpu'), 'cpu'];
}
