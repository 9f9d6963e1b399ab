/**
 * Triton's shared-memory extension, as both front ends read it: an input or requested output whose
 * parameters name a registered region (`shared_memory_region`, `shared_memory_byte_size`,
 * optional `shared_memory_offset`) has its bytes in that region instead of in the message.
 */
import { invalidArgument, quoteName } from '../core/errors.js';
import { withoutParameters, type InferenceResponse, type Parameters, type RequestedOutput } from '../core/inference.js';
import { byteSize, elementCount, type Datatype, type TensorData } from '../core/datatype.js';
import { tensorDataFromBytes, tensorDataToBytes } from '../core/tensor.js';

/** Where a tensor's bytes lie: `byteSize` bytes from `offset` within a registered region. */
export interface SharedMemoryReference {
  region: string;
  offset: number;
  byteSize: number;
}

/** The registered regions, as the codecs use them; the server's SystemSharedMemory is one. */
export interface SharedMemoryRegions {
  /** The most bytes one request's inputs may read from regions together (as much as a request body may carry). */
  readonly maxRequestBytes: number;
  /** A copy of the referenced bytes; throws when the region is unknown or the reference runs past its end. */
  read(reference: SharedMemoryReference, tensor: string): Buffer;
  /** Throws unless the reference lies within a registered region, so a request fails before it runs. */
  check(reference: SharedMemoryReference, tensor: string): void;
  /** Writes an output's bytes at the reference; throws when they do not fit in its byte size. */
  write(reference: SharedMemoryReference, bytes: Buffer, tensor: string): void;
}

/** Where Linux keeps POSIX shared memory objects: `shm_open("/name")` is this folder's file `name`. */
const SHM_DIRECTORY = '/dev/shm';

/** The file a shared memory key names: one name under /dev/shm, with or without shm_open's leading '/'. */
export function sharedMemoryObjectPath(key: string): string {
  const name = key.startsWith('/') ? key.slice(1) : key;
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || name.length > 255) {
    throw invalidArgument(`shared memory key ${JSON.stringify(key)} must be a POSIX shared memory name such as '/input0' (one name, no further '/')`);
  }
  return `${SHM_DIRECTORY}/${name}`;
}

/** The parameters that put a tensor in a region, as a request carries them (the offset only when not 0, as Triton's clients send it). */
export function sharedMemoryParameters(reference: Omit<SharedMemoryReference, 'offset'> & { offset?: number }): Parameters {
  return {
    shared_memory_region: reference.region,
    shared_memory_byte_size: reference.byteSize,
    ...(reference.offset ? { shared_memory_offset: reference.offset } : {}),
  };
}

const SHARED_MEMORY_PARAMETERS = ['shared_memory_region', 'shared_memory_offset', 'shared_memory_byte_size'] as const;

/** A count of bytes a client gave; `problem` starts the message (an offset's names Triton's phrase, which its own tests look for). */
export function byteCount(value: unknown, key: string, where: string, problem = ''): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`${where}: ${problem}${key} must be a non-negative integer number of bytes, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * The tensor's shared-memory reference, or undefined when its parameters name no region. `describe`
 * names the tensor in messages ("input 'x'"), built only when a message needs it: this runs for
 * every tensor of every request.
 */
export function sharedMemoryReferenceOf(parameters: Parameters | undefined, describe: () => string): SharedMemoryReference | undefined {
  if (!parameters) return undefined;
  const region = parameters.shared_memory_region;
  if (region === undefined) {
    if (parameters.shared_memory_byte_size !== undefined || parameters.shared_memory_offset !== undefined) {
      throw invalidArgument(`${describe()}: shared_memory_byte_size and shared_memory_offset need shared_memory_region, the name of a registered region`);
    }
    return undefined;
  }
  const where = describe();
  if (typeof region !== 'string' || region === '') {
    throw invalidArgument(`${where}: shared_memory_region must be the name of a registered region, got ${JSON.stringify(region)}`);
  }
  if (parameters.shared_memory_byte_size === undefined) {
    throw invalidArgument(`${where}: shared_memory_region ${quoteName(region)} needs shared_memory_byte_size, the number of bytes the tensor takes there`);
  }
  return {
    region,
    offset:
      parameters.shared_memory_offset === undefined
        ? 0
        : byteCount(parameters.shared_memory_offset, 'shared_memory_offset', where, `Invalid offset for shared memory region ${quoteName(region)}: `),
    byteSize: byteCount(parameters.shared_memory_byte_size, 'shared_memory_byte_size', where),
  };
}

/** Parameters without the shared-memory ones (the wire's business, not the model's); undefined when nothing is left. */
export function withoutSharedMemoryParameters(parameters: Parameters): Parameters | undefined {
  return withoutParameters(parameters, SHARED_MEMORY_PARAMETERS);
}

function regionsOrRefuse(regions: SharedMemoryRegions | undefined, where: string, reference: SharedMemoryReference): SharedMemoryRegions {
  if (!regions) throw invalidArgument(`${where} names shared memory region ${quoteName(reference.region)}, which this entry point does not read; send the tensor in the request`);
  return regions;
}

/** What one request has left to read from regions: decoding its inputs spends it (see SharedMemoryRegions.maxRequestBytes). */
export interface SharedMemoryReadBudget {
  remaining: number;
}

export const sharedMemoryReadBudget = (regions: SharedMemoryRegions | undefined): SharedMemoryReadBudget => ({ remaining: regions?.maxRequestBytes ?? 0 });

/**
 * An input's contents read from its region, once its size has been checked against its shape and
 * the request's budget (a read blocks the event loop: it stays as small as a body would be);
 * `otherSource` names what else the input carries ('data', …), which it must not.
 */
export function sharedMemoryInputData(
  name: string,
  datatype: Datatype,
  shape: readonly number[],
  reference: SharedMemoryReference,
  regions: SharedMemoryRegions | undefined,
  budget: SharedMemoryReadBudget,
  otherSource: string | undefined,
): TensorData {
  if (otherSource) throw invalidArgument(`input ${quoteName(name)} has both shared_memory_region and ${otherSource}; send one`);
  const expected = datatype === 'BYTES' ? undefined : elementCount(shape) * byteSize(datatype);
  if (expected !== undefined && reference.byteSize !== expected) {
    // Triton's words, which its shared memory tests look for.
    throw invalidArgument(
      `unexpected total byte size ${reference.byteSize} for input ${quoteName(name)}, expecting ${expected} (${datatype} [${shape.join(',')}] in shared memory region ${quoteName(reference.region)})`,
    );
  }
  const source = regionsOrRefuse(regions, `input ${quoteName(name)}`, reference);
  if (reference.byteSize > budget.remaining) {
    throw invalidArgument(
      `input ${quoteName(name)}: the request's inputs in shared memory take more than the ${source.maxRequestBytes} bytes one request may read (this one asks for ${reference.byteSize} more with ${budget.remaining} left)`,
    );
  }
  budget.remaining -= reference.byteSize;
  return tensorDataFromBytes(name, datatype, shape, source.read(reference, name), 'shared_memory_byte_size');
}

/**
 * Checks the requested outputs that go to shared memory before the request runs: their region
 * exists and holds them, and they ask for nothing a region cannot carry (Triton refuses the same).
 */
export function checkSharedMemoryOutputs(outputs: readonly RequestedOutput[] | undefined, regions: SharedMemoryRegions | undefined): void {
  for (const output of outputs ?? []) {
    const reference = sharedMemoryReferenceOf(output.parameters, () => `output ${quoteName(output.name)}`);
    if (!reference) continue;
    const where = `output ${quoteName(output.name)}`;
    if (output.classCount !== undefined) throw invalidArgument(`${where} asks for both shared_memory_region and classification; classes are answered in the response only`);
    if (output.parameters?.binary_data === true) throw invalidArgument(`${where} asks for both shared_memory_region and binary_data; choose one`);
    regionsOrRefuse(regions, where, reference).check(reference, output.name);
  }
}

/**
 * Writes the outputs the request asked for in shared memory into their regions — all of them or,
 * when one does not fit, none — and answers, for each of them by name, the parameters its response
 * entry carries instead of data.
 */
export function writeSharedMemoryOutputs(
  response: InferenceResponse,
  requestedOutputs: readonly RequestedOutput[] | undefined,
  regions: SharedMemoryRegions | undefined,
): Map<string, Parameters> | undefined {
  const writes: { name: string; reference: SharedMemoryReference; bytes: Buffer; target: SharedMemoryRegions }[] = [];
  for (const requested of requestedOutputs ?? []) {
    if (requested.parameters?.shared_memory_region === undefined) continue;
    const output = response.outputs.find((candidate) => candidate.name === requested.name);
    const reference = sharedMemoryReferenceOf(requested.parameters, () => `output ${quoteName(requested.name)}`);
    if (!output || !reference) continue;
    const bytes = tensorDataToBytes(output.datatype, output.data);
    if (bytes.length > reference.byteSize) {
      // Triton's words, which its shared memory tests look for.
      throw invalidArgument(`shared memory size specified with the request for output ${quoteName(output.name)} (${reference.byteSize} bytes) should be at least ${bytes.length} bytes to hold the results`);
    }
    const target = regionsOrRefuse(regions, `output ${quoteName(requested.name)}`, reference);
    target.check(reference, output.name);
    writes.push({ name: output.name, reference, bytes, target });
  }
  if (writes.length === 0) return undefined;
  for (const { name, reference, bytes, target } of writes) target.write(reference, bytes, name);
  return new Map(writes.map(({ name, reference, bytes }) => [name, sharedMemoryParameters({ ...reference, byteSize: bytes.length })]));
}
