import { stat } from 'node:fs/promises';
import type * as ort from 'onnxruntime-node';
import type { Tensor } from '../core/tensor.js';
import { parameterValue, type ModelConfig } from '../config/model-config.js';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature } from './backend.js';
import { openSession, runSession, sessionSignature, type SessionSpec } from './onnx-runtime-session.js';
import { WorkerThreadInstance } from './onnx-runtime-worker-instance.js';

const GRAPH_OPTIMIZATION_LEVELS = ['disabled', 'basic', 'extended', 'all'] as const;
type GraphOptimizationLevel = (typeof GRAPH_OPTIMIZATION_LEVELS)[number];

/** Triton's `optimization { graph { level } }`: -1 basic, 1 extended, anything else all. */
function graphOptimizationLevel(config: ModelConfig): GraphOptimizationLevel {
  const named = parameterValue(config, 'graph_optimization_level');
  if (named !== undefined) {
    if (!(GRAPH_OPTIMIZATION_LEVELS as readonly string[]).includes(named)) {
      throw new Error(`parameter graph_optimization_level must be one of ${GRAPH_OPTIMIZATION_LEVELS.join(', ')}, got '${named}'`);
    }
    return named as GraphOptimizationLevel;
  }
  const level = Number((config as { optimization?: { graph?: { level?: unknown } } }).optimization?.graph?.level ?? 0);
  return level === -1 ? 'basic' : level === 1 ? 'extended' : 'all';
}

function integerParameter(config: ModelConfig, key: string): number | undefined {
  const value = parameterValue(config, key);
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`parameter ${key} must be a non-negative integer, got '${value}'`);
  return parsed;
}

function booleanParameter(config: ModelConfig, key: string): boolean | undefined {
  const value = parameterValue(config, key);
  if (value === undefined) return undefined;
  if (!['true', 'false', '1', '0'].includes(value)) throw new Error(`parameter ${key} must be true or false, got '${value}'`);
  return value === 'true' || value === '1';
}

/** Execution providers in preference order; CPU always closes the list so a missing provider degrades instead of failing. */
function executionProviders(config: ModelConfig, options: InstanceOptions): string[] {
  const listed = parameterValue(config, 'execution_providers');
  const names = listed
    ? listed.split(',').map((name) => name.trim().toLowerCase()).filter(Boolean)
    : options.kind === 'GPU'
      ? ['cuda']
      : [];
  return [...names.filter((name) => name !== 'cpu'), 'cpu'];
}

/** One session on the JS thread: no hand-off cost, but the event loop waits while it computes. */
class OnnxRuntimeInstance implements BackendInstance {
  constructor(
    private readonly session: ort.InferenceSession,
    readonly signature: ModelSignature,
    readonly threads: number,
  ) {}

  run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Promise<Record<string, Tensor>> {
    return runSession(this.session, inputs, outputNames);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Models at least this large run in a worker thread unless the config says otherwise. */
const WORKER_THREAD_MIN_MODEL_BYTES = 1024 * 1024;

/**
 * Where an instance's forward pass runs. onnxruntime-node computes synchronously on the calling
 * thread, so on the JS thread a 10 ms model stalls every connection for 10 ms; in a worker the
 * event loop keeps parsing and answering while it computes, and several instances compute at once.
 * Tiny models are faster in place: the hand-off costs more than their forward pass.
 */
async function executionThread(modelPath: string, config: ModelConfig): Promise<'main' | 'worker'> {
  const chosen = parameterValue(config, 'execution_thread') ?? 'auto';
  if (chosen === 'main' || chosen === 'worker') return chosen;
  if (chosen !== 'auto') throw new Error(`parameter execution_thread must be auto, main or worker, got '${chosen}'`);
  return (await stat(modelPath)).size >= WORKER_THREAD_MIN_MODEL_BYTES ? 'worker' : 'main';
}

export class OnnxRuntimeBackend implements Backend {
  readonly name = 'onnxruntime';
  readonly platforms = ['onnxruntime_onnx'] as const;
  readonly defaultModelFilename = 'model.onnx';

  async createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance> {
    const intraOpThreads = integerParameter(config, 'intra_op_thread_count') || options.intraOpThreads;
    const interOpThreads = integerParameter(config, 'inter_op_thread_count') || options.interOpThreads;
    const executionMode = parameterValue(config, 'execution_mode') === '1' ? 'parallel' : 'sequential';
    const thread = await executionThread(modelPath, config);
    // ONNX Runtime's default; measured on the OCR recogniser, turning spinning off cost 20 % throughput.
    const allowSpinning = booleanParameter(config, 'allow_spinning') ?? true;
    const spec: SessionSpec = {
      modelPath,
      options: {
        intraOpNumThreads: intraOpThreads,
        interOpNumThreads: interOpThreads,
        executionMode,
        graphOptimizationLevel: graphOptimizationLevel(config),
        enableMemPattern: booleanParameter(config, 'enable_mem_pattern') ?? true,
        enableCpuMemArena: booleanParameter(config, 'enable_cpu_mem_arena') ?? true,
        logSeverityLevel: 3,
        extra: { session: { intra_op: { allow_spinning: allowSpinning ? '1' : '0' } } },
      },
      providers: executionProviders(config, options),
      deviceId: options.deviceId,
    };
    const threads = intraOpThreads * (executionMode === 'parallel' ? interOpThreads : 1);
    const onFallback = (reason: string) =>
      options.logger.warn(
        { requested: spec.providers, reason },
        `execution providers ${spec.providers.join(',')} unavailable for instance ${options.index}; falling back to CPU`,
      );
    if (thread === 'worker') {
      return WorkerThreadInstance.start(spec, threads, onFallback);
    }
    const session = await openSession(spec, onFallback);
    return new OnnxRuntimeInstance(session, sessionSignature(session), threads);
  }
}
