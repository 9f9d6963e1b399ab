/**
 * A response's output tensors as one buffer, for stores that keep bytes (and count them):
 * a 4-byte header length, a JSON header of names, datatypes, shapes and sizes, then the raw bytes.
 * What else the answer carries (its out-of-distribution verdict) rides in the header as `annotations`,
 * and an entry without any keeps the plain list of tensors it always had.
 */
import { elementCount, PackedBytes, typedArrayFromBytes, type Datatype } from '../core/datatype.js';
import { tensorDataToBytes, type Tensor } from '../core/tensor.js';

interface HeaderEntry {
  name: string;
  datatype: Datatype;
  shape: number[];
  bytes: number;
}

/** What an answer carries beside its tensors, as JSON. */
export type Annotations = Record<string, unknown>;

export function encodeOutputs(outputs: Record<string, Tensor>, annotations?: Annotations): Buffer {
  const payloads: Buffer[] = [];
  const header: HeaderEntry[] = Object.entries(outputs).map(([name, tensor]) => {
    const bytes = tensorDataToBytes(tensor.datatype, tensor.data);
    payloads.push(bytes);
    return { name, datatype: tensor.datatype, shape: tensor.shape, bytes: bytes.length };
  });
  const json = Buffer.from(JSON.stringify(annotations ? { outputs: header, annotations } : header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  return Buffer.concat([length, json, ...payloads]);
}

export function decodeEntry(buffer: Buffer): { outputs: Record<string, Tensor>; annotations?: Annotations } {
  const jsonLength = buffer.readUInt32LE(0);
  const parsed = JSON.parse(buffer.subarray(4, 4 + jsonLength).toString('utf8')) as HeaderEntry[] | { outputs: HeaderEntry[]; annotations: Annotations };
  const header = Array.isArray(parsed) ? parsed : parsed.outputs;
  let offset = 4 + jsonLength;
  const outputs: Record<string, Tensor> = {};
  for (const entry of header) {
    // A copy of its own, aligned: an answer must not share memory with the stored entry, which every later hit returns
    // again (a caller that changes its answer in place would otherwise change the cache).
    const bytes = Buffer.from(new Uint8Array(buffer.subarray(offset, offset + entry.bytes)).buffer);
    offset += entry.bytes;
    const data = entry.datatype === 'BYTES' ? new PackedBytes(bytes, elementCount(entry.shape)) : typedArrayFromBytes(entry.datatype, bytes);
    outputs[entry.name] = { datatype: entry.datatype, shape: entry.shape, data };
  }
  return Array.isArray(parsed) ? { outputs } : { outputs, annotations: parsed.annotations };
}
