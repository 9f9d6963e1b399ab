/**
 * Warmup: sample requests run on every instance of a version before it is ready, so the first real
 * request does not pay for the engine's first-run work (memory planning, kernel choice per shape).
 * Samples come from Triton's `model_warmup` entries and, with `parameters { warmup: auto }`, from
 * zero-filled batches at each preferred batch size and max_batch_size.
 */
import type { Logger } from 'pino';
import type { BackendInstance } from '../backends/backend.js';
import { datatypeOfConfig, parameterValue, type CompletedModelConfig, type ModelInputConfig, type ModelWarmupConfig } from '../config/model-config.js';
import { allocateTypedArray, byteSize, decodeBytesElements, elementCount, numberToHalf, typedArrayFromBytes, type Datatype, type NumericArray } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { RaggedBatching } from '../scheduler/batch-tensors.js';

export interface WarmupSample {
  name: string;
  /** Times the sample runs on each instance. */
  runs: number;
  inputs: Record<string, Tensor>;
}

/** A zero-filled tensor (empty elements for BYTES). */
export function zeroTensor(datatype: Datatype, shape: number[]): Tensor {
  const length = elementCount(shape);
  const data = datatype === 'BYTES' ? Array.from({ length }, () => Buffer.alloc(0)) : allocateTypedArray(datatype, length);
  return { datatype, shape, data };
}

/** Random values that every model accepts: floats in [0, 1), integers 0 or 1 (indices stay in range), BYTES empty. */
function randomTensor(datatype: Datatype, shape: number[]): Tensor {
  const tensor = zeroTensor(datatype, shape);
  if (datatype === 'BYTES') return tensor;
  const data = tensor.data as NumericArray;
  const float = datatype.startsWith('FP');
  for (let index = 0; index < data.length; index++) {
    const value = float ? Math.random() : Math.round(Math.random());
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[index] = BigInt(value);
    else if (datatype === 'FP16') data[index] = numberToHalf(value);
    else (data as Exclude<NumericArray, BigInt64Array | BigUint64Array>)[index] = value;
  }
  return tensor;
}

/** One row read from a file, repeated for each row of the batch. */
function fileTensor(datatype: Datatype, dims: readonly number[], shape: number[], bytes: Buffer, describe: () => string): Tensor {
  const rowElements = elementCount(dims);
  const rows = elementCount(shape) / rowElements;
  if (datatype === 'BYTES') {
    const elements = decodeBytesElements(bytes, rowElements);
    if (!elements || elements.length !== rowElements) {
      throw new Error(`${describe()} must hold ${rowElements} length-prefixed elements (4-byte little-endian length, then the bytes)`);
    }
    return { datatype, shape, data: Array.from({ length: rows }, () => elements).flat() };
  }
  const rowBytes = rowElements * byteSize(datatype);
  if (bytes.length !== rowBytes) {
    throw new Error(`${describe()} holds ${bytes.length} bytes; one row of ${datatype} [${dims.join(',')}] takes ${rowBytes}`);
  }
  const batch = Buffer.alloc(rowBytes * rows);
  for (let row = 0; row < rows; row++) bytes.copy(batch, row * rowBytes);
  return { datatype, shape, data: typedArrayFromBytes(datatype as Exclude<Datatype, 'BYTES'>, batch) };
}

/** The dims the model takes for an input given `dims` (a reshape without -1 replaces them, as for requests). */
function modelDims(input: ModelInputConfig, dims: readonly number[]): number[] {
  const reshape = input.reshape?.shape;
  return reshape && !reshape.includes(-1) ? [...reshape] : [...dims];
}

function shapeOf(config: CompletedModelConfig, input: ModelInputConfig, dims: readonly number[], rows: number): number[] {
  const inner = modelDims(input, dims);
  return config.max_batch_size > 0 ? [rows, ...inner] : inner;
}

/** Dims given for a sample fit the input's declaration: as many, and equal wherever it is not -1. */
function fits(declared: readonly number[], given: readonly number[]): boolean {
  return declared.length === given.length && declared.every((dim, index) => dim === -1 || dim === given[index]);
}

/** Every mistake a model_warmup entry can make against the model, named before any sample runs. */
function checkEntry(config: CompletedModelConfig, entry: ModelWarmupConfig): void {
  const where = `model_warmup '${entry.name}'`;
  const declared = new Map(config.input.map((input) => [input.name, input]));
  if (config.max_batch_size === 0 && entry.batch_size !== 1) {
    throw new Error(`${where}: batch_size must be 1 for a model without batching (max_batch_size 0), got ${entry.batch_size}`);
  }
  if (config.max_batch_size > 0 && entry.batch_size > config.max_batch_size) {
    throw new Error(`${where}: batch_size ${entry.batch_size} exceeds max_batch_size ${config.max_batch_size}`);
  }
  for (const [name, given] of Object.entries(entry.inputs)) {
    const input = declared.get(name);
    if (!input) throw new Error(`${where} names input '${name}', which the model does not have (inputs: ${[...declared.keys()].join(', ')})`);
    if (given.data_type !== input.data_type) throw new Error(`${where}: input '${name}' is ${given.data_type} but the model's input is ${input.data_type}`);
    if (!fits(input.dims, given.dims)) {
      throw new Error(`${where}: input '${name}' dims [${given.dims.join(',')}] do not fit the input's dims [${input.dims.join(',')}]`);
    }
  }
  const missing = config.input.filter((input) => !input.optional && !(input.name in entry.inputs)).map((input) => input.name);
  if (missing.length) throw new Error(`${where} leaves out input(s) ${missing.join(', ')}, which the model requires`);
}

/** The samples of the config's model_warmup entries; files are read through `readFile` (the model's warmup folder). */
async function declaredSamples(config: CompletedModelConfig, readFile: (file: string) => Promise<Buffer>): Promise<WarmupSample[]> {
  const samples: WarmupSample[] = [];
  for (const entry of config.model_warmup) {
    checkEntry(config, entry);
    const inputs: Record<string, Tensor> = {};
    for (const [name, given] of Object.entries(entry.inputs)) {
      const input = config.input.find((candidate) => candidate.name === name)!;
      const datatype = datatypeOfConfig(input);
      const shape = shapeOf(config, input, given.dims, entry.batch_size);
      if (given.input_data_file !== undefined) {
        const bytes = await readFile(given.input_data_file);
        inputs[name] = fileTensor(datatype, given.dims, shape, bytes, () => `model_warmup '${entry.name}': input_data_file '${given.input_data_file}' of input '${name}'`);
      } else {
        inputs[name] = given.random_data ? randomTensor(datatype, shape) : zeroTensor(datatype, shape);
      }
    }
    samples.push({ name: entry.name, runs: entry.count, inputs });
  }
  return samples;
}

/** One automatic sample before its zeros are made: its rows and each input's shape. */
interface AutomaticSampleShape {
  name: string;
  inputs: { name: string; datatype: ReturnType<typeof datatypeOfConfig>; shape: number[] }[];
}

/**
 * `parameters { warmup: auto }`: zeros at each preferred batch size and at max_batch_size. An input
 * with dynamic dims needs a shape, taken from a model_warmup entry that names it; without one the
 * automatic samples are skipped (`unshaped` says which inputs lacked it).
 */
function automaticSampleShapes(config: CompletedModelConfig): { samples: AutomaticSampleShape[]; unshaped: string[] } {
  const mode = parameterValue(config, 'warmup');
  if (mode === undefined) return { samples: [], unshaped: [] };
  if (mode !== 'auto') throw new Error(`parameters.warmup must be 'auto' (or left out), got '${mode}'`);
  const dimsOf = new Map<string, readonly number[]>();
  const unshaped: string[] = [];
  for (const input of config.input) {
    const given = config.model_warmup.map((entry) => entry.inputs[input.name]).find((candidate) => candidate !== undefined);
    if (!input.dims.includes(-1)) dimsOf.set(input.name, input.dims);
    else if (given) dimsOf.set(input.name, given.dims);
    else if (!input.optional) unshaped.push(`${input.name} [${input.dims.join(',')}]`);
  }
  if (unshaped.length) return { samples: [], unshaped };
  const batching = config.max_batch_size > 0;
  const sizes = batching ? [...new Set([...(config.dynamic_batching?.preferred_batch_size ?? []), config.max_batch_size])].sort((a, b) => a - b) : [1];
  const samples = sizes.map((rows) => ({
    name: batching ? `auto batch ${rows}` : 'auto',
    inputs: config.input
      .filter((input) => dimsOf.has(input.name))
      .map((input) => ({ name: input.name, datatype: datatypeOfConfig(input), shape: shapeOf(config, input, dimsOf.get(input.name)!, rows) })),
  }));
  return { samples, unshaped };
}

function automaticSamples(config: CompletedModelConfig, logger: Logger, label: string): WarmupSample[] {
  const { samples, unshaped } = automaticSampleShapes(config);
  if (unshaped.length) logger.info(`automatic warmup of ${label} skipped: input(s) ${unshaped.join(', ')} have dynamic dims; give their dims in a model_warmup entry`);
  return samples.map((sample) => ({
    name: sample.name,
    runs: 1,
    inputs: Object.fromEntries(sample.inputs.map((input) => [input.name, zeroTensor(input.datatype, input.shape)])),
  }));
}

/** What a warmup element takes in memory: its bytes, a BYTES element at the cost of the object holding it. */
export const BYTES_ELEMENT_MEMORY = 128;

/** The memory of `elements` elements of a datatype: their bytes, a BYTES element at the cost of its object. */
function elementsMemory(datatype: Datatype, elements: number): number {
  return elements * (datatype === 'BYTES' ? BYTES_ELEMENT_MEMORY : byteSize(datatype));
}

/** The memory a tensor of a config's data_type and dims takes: a -1 counted as 1, a BYTES element at its object's cost. */
export function tensorMemory(tensor: { data_type: string; dims: readonly number[] }): number {
  return elementsMemory(datatypeOfConfig(tensor), tensor.dims.reduce((product, dim) => product * Math.max(1, dim), 1));
}

/**
 * The memory the automatic samples of a completed config will take, made before any is: a load request's config is held
 * to a bound on it, counted on the dims completion settled (a -1 the model fixes, inputs the config left out).
 */
export function automaticWarmupMemory(config: CompletedModelConfig): number {
  let bytes = 0;
  for (const sample of automaticSampleShapes(config).samples) {
    for (const input of sample.inputs) bytes += elementsMemory(input.datatype, elementCount(input.shape));
  }
  return bytes;
}

/** Why a load request's config may not warm up as it asks: its samples would take more than `limitBytes` (undefined when not). */
export function warmupMemoryProblem(bytes: number, limitBytes: number): string | undefined {
  return bytes > limitBytes ? `ask its warmup for tensors of more than ${limitBytes} bytes in all (${bytes}, a BYTES element counted as ${BYTES_ELEMENT_MEMORY})` : undefined;
}

/** The memory a config's model_warmup entries take, summed over them: each entry's rows (count × batch_size) of its tensors. */
export function declaredWarmupMemory(entries: readonly ModelWarmupConfig[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += entry.count * Math.max(1, entry.batch_size) * Object.values(entry.inputs).reduce((sum, input) => sum + tensorMemory(input), 0);
  return bytes;
}

/** Every sample the config asks for, checked against the model; throws a message naming the entry and input at fault. */
export async function warmupSamples(
  config: CompletedModelConfig,
  readFile: (file: string) => Promise<Buffer>,
  logger: Logger,
  label: string,
): Promise<WarmupSample[]> {
  const samples = [...(await declaredSamples(config, readFile)), ...automaticSamples(config, logger, label)];
  // A model with ragged or batch inputs takes its samples as the batcher would hand them over: one request per row.
  const ragged = RaggedBatching.of(config);
  if (!ragged) return samples;
  return samples.map((sample) => ({ ...sample, inputs: ragged.joinRows(sample.inputs, Object.values(sample.inputs)[0]?.shape[0] ?? 1) }));
}

/** A load given up before it served (the server is shutting down): not a failure of the model. */
export class LoadAbandonedError extends Error {
  constructor(what: string) {
    super(`${what} abandoned: the server is shutting down`);
  }
}

/**
 * Runs every sample on every instance (instances side by side, samples in order); the first failure names sample and
 * instance. `signal`: once aborted, no further run starts (the one running finishes) and LoadAbandonedError is thrown.
 */
export async function warmUp(instances: readonly BackendInstance[], samples: readonly WarmupSample[], outputNames: readonly string[], signal?: AbortSignal): Promise<void> {
  await Promise.all(
    instances.map(async (instance, index) => {
      for (const sample of samples) {
        for (let run = 0; run < sample.runs; run++) {
          if (signal?.aborted) throw new LoadAbandonedError('warmup');
          try {
            await instance.run(sample.inputs, outputNames);
            // An instance on the JS thread answers synchronously: yield between runs, so the versions already serving keep answering.
            await new Promise((resolve) => setImmediate(resolve));
          } catch (error) {
            throw new Error(`warmup sample '${sample.name}' failed on instance ${index}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
          }
        }
      }
    }),
  );
}
