/**
 * The HTTP content codings the V2 protocol's clients and servers use for bodies (Triton's
 * request_compression_algorithm and response_compression_algorithm), compressed on libuv's thread pool.
 */
import { promisify } from 'node:util';
import { deflate, gzip } from 'node:zlib';

export type ContentCoding = 'gzip' | 'deflate';

const compressors: Record<ContentCoding, (data: Buffer) => Promise<Buffer>> = { gzip: promisify(gzip), deflate: promisify(deflate) };

export function compress(data: Buffer, coding: ContentCoding): Promise<Buffer> {
  return compressors[coding](data);
}
