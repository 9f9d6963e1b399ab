/**
 * POSIX shared memory objects from Node, for Triton's system shared memory extension (what
 * tritonclient.utils.shared_memory does in Python): on Linux `shm_open("/name")` is the file
 * /dev/shm/name, so an object is created, filled and read through the file system. Register it with
 * the server (`registerSystemSharedMemory`), then name its region in `infer`.
 */
import { constants } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { sharedMemoryObjectPath } from '../protocol/shared-memory-tensors.js';
import { outputFromBytes, tensorBytes, type ClientTensor, type OutputTensor } from './client-tensors.js';

/** Creates the object `key` (e.g. '/input0') of `byteSize` zero bytes, readable and writable by this user only; fails if it exists. */
export async function createSharedMemoryObject(key: string, byteSize: number): Promise<void> {
  const file = await open(sharedMemoryObjectPath(key), constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await file.truncate(byteSize);
  } finally {
    await file.close();
  }
}

/** Writes tensors one after another from `offset`, as the server reads them (BYTES length-prefixed); answers the bytes each took. */
export async function writeSharedMemoryTensors(key: string, tensors: readonly ClientTensor[], offset = 0): Promise<number[]> {
  // O_NOFOLLOW: a link planted under /dev/shm must not redirect the write.
  const file = await open(sharedMemoryObjectPath(key), constants.O_RDWR | constants.O_NOFOLLOW);
  try {
    const sizes: number[] = [];
    let position = offset;
    for (const [index, tensor] of tensors.entries()) {
      const bytes = tensorBytes(`tensor ${index}`, tensor);
      await file.write(bytes, 0, bytes.length, position);
      position += bytes.length;
      sizes.push(bytes.length);
    }
    return sizes;
  } finally {
    await file.close();
  }
}

/** Reads a tensor the server wrote (an output answered with `sharedMemory`): `byteSize` bytes from `offset` of the object. */
export async function readSharedMemoryTensor(
  key: string,
  tensor: { name: string; datatype: string; shape: readonly number[] },
  location: { byteSize: number; offset?: number },
): Promise<OutputTensor> {
  const file = await open(sharedMemoryObjectPath(key), constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const bytes = Buffer.alloc(location.byteSize);
    const { bytesRead } = await file.read(bytes, 0, bytes.length, location.offset ?? 0);
    if (bytesRead !== bytes.length) throw new Error(`shared memory object '${key}' holds ${bytesRead} bytes from offset ${location.offset ?? 0}; ${bytes.length} were asked for`);
    return outputFromBytes(tensor.name, tensor.datatype, tensor.shape, bytes);
  } finally {
    await file.close();
  }
}

/** Removes the object (unregister its regions first). */
export async function removeSharedMemoryObject(key: string): Promise<void> {
  await rm(sharedMemoryObjectPath(key), { force: true });
}
