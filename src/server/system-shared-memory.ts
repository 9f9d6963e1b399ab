/**
 * Triton's system shared memory extension: a client creates a POSIX shared memory object
 * (`shm_open`, which on Linux is a file under /dev/shm), registers a byte range of it as a named
 * region, and then sends tensors by naming the region instead of carrying their bytes. Nereid reads
 * and writes the object through its file descriptor — one copy each way, no parsing — as Node
 * cannot map memory without a native addon.
 *
 * Off unless the server is started with --allow-client-shm (as Triton's own flag): a client that
 * registers a region makes the server read and write that object with the server's permissions.
 */
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { isLoopbackPeer } from '../core/address.js';
import { invalidArgument, NereidError, notFound, quoteName } from '../core/errors.js';
import { byteCount, sharedMemoryObjectPath, type SharedMemoryReference, type SharedMemoryRegions } from '../protocol/shared-memory-tensors.js';

/** A region's status, as Triton's status API answers it. */
export interface SharedMemoryRegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

interface Region extends SharedMemoryRegionStatus {
  descriptor: number;
}

export interface SystemSharedMemoryOptions {
  /** --allow-client-shm: off, every call refuses and says how to turn it on. */
  allowed: boolean;
  /** The most regions registered at once. */
  maxRegions?: number;
  /** The most bytes one request's inputs may read from regions together. */
  maxRequestBytes: number;
  /** The setting that turns it on, as a refusal names it (default `allowClientShm: true`; the CLI's `--allow-client-shm`). */
  allowing?: string;
  /**
   * Clients on other machines may register regions too (--client-shm-from-any-address). Off, a region is registered only
   * from a loopback peer: a client that made an object under /dev/shm is on this machine, and one elsewhere that
   * names an object would have the server read and write another program's shared memory with its permissions.
   */
  anyAddress?: boolean;
  /** The setting that lets them, as a refusal names it. */
  allowingAnyAddress?: string;
}


export class SystemSharedMemory implements SharedMemoryRegions {
  private readonly regions = new Map<string, Region>();
  private readonly maxRegions: number;

  readonly maxRequestBytes: number;

  constructor(private readonly options: SystemSharedMemoryOptions) {
    this.maxRegions = options.maxRegions ?? 256;
    this.maxRequestBytes = options.maxRequestBytes;
  }

  get allowed(): boolean {
    return this.options.allowed;
  }

  /** The setting that turns it on, named as the server's caller set its options. */
  private get allowing(): string {
    return this.options.allowing ?? 'allowClientShm: true';
  }

  /** What both front ends answer for Triton's CUDA shared memory API (UNIMPLEMENTED): system shared memory, and how to turn it on when it is off. */
  get cudaUnsupported(): string {
    return `CUDA shared memory is not supported by Nereid; use system shared memory${this.allowed ? '' : ` (${this.allowing})`} or send tensors in the request`;
  }

  private checkAllowed(): void {
    if (!this.options.allowed) {
      throw new NereidError('FAILED_PRECONDITION', `client shared memory is off on this server; start it with ${this.allowing} to register regions, or send tensors in the request`);
    }
  }

  /**
   * Registers `byte_size` bytes from `offset` of the shared memory object `key` as region `name`. `peer`: the client's
   * address as its front end sees it (undefined: an in-process caller, this machine's own).
   */
  register(name: string, request: { key?: unknown; offset?: unknown; byte_size?: unknown }, peer?: string): void {
    this.checkAllowed();
    if (peer !== undefined && !this.options.anyAddress && !isLoopbackPeer(peer)) {
      const allowing = this.options.allowingAnyAddress ?? 'clientShmFromAnyAddress: true';
      throw new NereidError(
        'PERMISSION_DENIED',
        `shared memory is registered from this machine only (loopback), and this client is at ${quoteName(peer)}: a client elsewhere cannot have made an object under /dev/shm, and naming one would have the server read and write another program's; connect through localhost, or start the server with ${allowing} where clients share this machine's /dev/shm from another address (a container with --ipc)`,
      );
    }
    if (typeof name !== 'string' || name === '' || name.length > 256) throw invalidArgument(`a shared memory region needs a name of 1 to 256 characters`);
    if (typeof request.key !== 'string') throw invalidArgument(`registering shared memory region ${quoteName(name)} needs 'key', the shared memory object's name, e.g. '/input0'`);
    const key = request.key;
    const offset = byteCount(request.offset ?? 0, "'offset'", `registering shared memory region ${quoteName(name)}`);
    const byteSize = byteCount(request.byte_size, "'byte_size'", `registering shared memory region ${quoteName(name)}`);
    if (this.regions.has(name)) throw invalidArgument(`shared memory region ${quoteName(name)} already in manager (registered before); unregister it first`);
    if (this.regions.size >= this.maxRegions) throw invalidArgument(`${this.maxRegions} shared memory regions are registered, the most this server holds; unregister some first`);
    const path = sharedMemoryObjectPath(key);
    let descriptor: number;
    try {
      // O_NOFOLLOW: a link under /dev/shm must not lead the server to a file elsewhere.
      descriptor = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw invalidArgument(`no shared memory object ${quoteName(key)} (create it with shm_open before registering it)`);
      throw invalidArgument(`cannot open shared memory object ${quoteName(key)} for reading and writing (${code ?? (error as Error).message})`);
    }
    try {
      const stats = fstatSync(descriptor);
      if (!stats.isFile()) throw invalidArgument(`${quoteName(key)} is not a shared memory object`);
      if (stats.size < offset + byteSize) {
        throw invalidArgument(
          `failed to register shared memory region ${quoteName(name)}: invalid args: the object ${quoteName(key)} holds ${stats.size} bytes, less than offset ${offset} + byte_size ${byteSize} = ${offset + byteSize}`,
        );
      }
    } catch (error) {
      closeSync(descriptor);
      throw error;
    }
    this.regions.set(name, { name, key, offset, byte_size: byteSize, descriptor });
  }

  /** Every registered region, or the one named (NOT_FOUND when it is not registered). */
  status(name?: string): SharedMemoryRegionStatus[] {
    this.checkAllowed();
    const regions = name ? [this.region(name, notFound)] : [...this.regions.values()];
    return regions.map(({ name, key, offset, byte_size }) => ({ name, key, offset, byte_size }));
  }

  /** Unregisters the region named, or every region; a name that is not registered is not an error (as Triton). */
  unregister(name?: string): void {
    this.checkAllowed();
    for (const region of name ? [this.regions.get(name)].filter((found) => found !== undefined) : [...this.regions.values()]) {
      this.regions.delete(region.name);
      closeSync(region.descriptor);
    }
  }

  read(reference: SharedMemoryReference, tensor: string): Buffer {
    const region = this.within(reference, tensor);
    const bytes = Buffer.allocUnsafe(reference.byteSize);
    let done = 0;
    while (done < bytes.length) {
      const read = readSync(region.descriptor, bytes, done, bytes.length - done, region.offset + reference.offset + done);
      if (read === 0) throw invalidArgument(`shared memory object ${quoteName(region.key)} of region ${quoteName(region.name)} ended before input ${quoteName(tensor)} could be read (was it truncated?)`);
      done += read;
    }
    return bytes;
  }

  check(reference: SharedMemoryReference, tensor: string): void {
    this.within(reference, tensor);
  }

  write(reference: SharedMemoryReference, bytes: Buffer, tensor: string): void {
    const region = this.within(reference, tensor);
    if (bytes.length > reference.byteSize) throw invalidArgument(`output ${quoteName(tensor)}: ${bytes.length} bytes do not fit the ${reference.byteSize} its shared_memory_byte_size gives`);
    let done = 0;
    while (done < bytes.length) done += writeSync(region.descriptor, bytes, done, bytes.length - done, region.offset + reference.offset + done);
  }

  /** Closes every region's descriptor (the server is shutting down). */
  close(): void {
    for (const region of this.regions.values()) {
      try {
        closeSync(region.descriptor);
      } catch {
        // Already closed or gone: nothing is left to release, and the others still must be.
      }
    }
    this.regions.clear();
  }

  private region(name: string, missing: (message: string) => NereidError = invalidArgument): Region {
    const region = this.regions.get(name);
    if (!region) throw missing(`no shared memory region ${quoteName(name)} is registered`);
    return region;
  }

  private within(reference: SharedMemoryReference, tensor: string): Region {
    this.checkAllowed();
    const region = this.region(reference.region);
    // Triton's words in both messages: its shared memory tests look for them.
    if (reference.offset > region.byte_size || (reference.offset === region.byte_size && reference.byteSize > 0)) {
      throw invalidArgument(`tensor ${quoteName(tensor)}: Invalid offset for shared memory region ${quoteName(region.name)}: offset ${reference.offset} is past its ${region.byte_size} bytes`);
    }
    if (reference.offset + reference.byteSize > region.byte_size) {
      throw invalidArgument(
        `tensor ${quoteName(tensor)}: Invalid offset + byte size for shared memory region ${quoteName(region.name)}: offset ${reference.offset} + byte size ${reference.byteSize} runs past its ${region.byte_size} bytes`,
      );
    }
    return region;
  }
}
