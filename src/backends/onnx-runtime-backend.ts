import * as ort from 'onnxruntime-node';
import { datatypeFromOnnx, onnxTypeOf, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { parameterValue, type ModelConfig } from '../repository/model-config.js';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature, TensorSignature } from './backend.js';

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

function signatureOf(metadata: readonly ort.InferenceSession.ValueMetadata[], what: string): TensorSignature[] {
  return metadata.map((value) => {
    if (!value.isTensor) throw new Error(`${what} '${value.name}' is not a tensor; only tensor inputs and outputs are supported`);
    const datatype = datatypeFromOnnx(value.type);
    if (!datatype) throw new Error(`${what} '${value.name}' has ONNX type ${value.type}, which the V2 protocol cannot carry`);
    return { name: value.name, datatype, shape: value.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1)) };
  });
}

class OnnxRuntimeInstance implements BackendInstance {
  constructor(
    private readonly session: ort.InferenceSession,
    readonly signature: ModelSignature,
    readonly threads: number,
  ) {}

  async run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Promise<Record<string, Tensor>> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(inputs)) {
      const data =
        tensor.datatype === 'BYTES' ? (tensor.data as Buffer[]).map((element) => element.toString('utf8')) : tensor.data;
      feeds[name] = new ort.Tensor(onnxTypeOf(tensor.datatype) as ort.Tensor.Type, data as ort.Tensor.DataType, tensor.shape);
    }
    const results = await this.session.run(feeds, outputNames as string[]);
    const outputs: Record<string, Tensor> = {};
    for (const name of outputNames) {
      const result = results[name];
      const datatype = datatypeFromOnnx(result.type);
      if (!datatype) throw new Error(`output '${name}' has ONNX type ${result.type}, which the V2 protocol cannot carry`);
      const data =
        datatype === 'BYTES'
          ? (result.data as string[]).map((element) => Buffer.from(element, 'utf8'))
          : (result.data as NumericArray);
      outputs[name] = { datatype, shape: [...result.dims], data };
    }
    return outputs;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export class OnnxRuntimeBackend implements Backend {
  readonly name = 'onnxruntime';
  readonly platforms = ['onnxruntime_onnx'] as const;
  readonly defaultModelFilename = 'model.onnx';

  async createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance> {
    const intraOpThreads = integerParameter(config, 'intra_op_thread_count') || options.intraOpThreads;
    const interOpThreads = integerParameter(config, 'inter_op_thread_count') || options.interOpThreads;
    const executionMode = parameterValue(config, 'execution_mode') === '1' ? 'parallel' : 'sequential';
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: intraOpThreads,
      interOpNumThreads: interOpThreads,
      executionMode,
      graphOptimizationLevel: graphOptimizationLevel(config),
      enableMemPattern: booleanParameter(config, 'enable_mem_pattern') ?? true,
      enableCpuMemArena: booleanParameter(config, 'enable_cpu_mem_arena') ?? true,
      logSeverityLevel: 3,
    };
    const providers = executionProviders(config, options);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelPath, {
        ...sessionOptions,
        executionProviders: providers.map((name) => (name === 'cpu' ? name : { name, deviceId: options.deviceId })),
      } as ort.InferenceSession.SessionOptions);
    } catch (error) {
      if (providers.length === 1) throw error;
      options.logger.warn(
        { requested: providers, reason: (error as Error).message },
        `execution providers ${providers.join(',')} unavailable for instance ${options.index}; falling back to CPU`,
      );
      session = await ort.InferenceSession.create(modelPath, { ...sessionOptions, executionProviders: ['cpu'] });
    }
    const signature = {
      inputs: signatureOf(session.inputMetadata, 'input'),
      outputs: signatureOf(session.outputMetadata, 'output'),
    };
    return new OnnxRuntimeInstance(session, signature, intraOpThreads * (executionMode === 'parallel' ? interOpThreads : 1));
  }
}
