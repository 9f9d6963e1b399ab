/**
 * The HTTP content codings the V2 protocol's clients and servers use for bodies (Triton's
 * request_compression_algorithm and response_compression_algorithm), compressed on libuv's thread pool.
 */
import { promisify } from 'node:util';
import { deflate, gunzip, gzip, inflate } from 'node:zlib';

export type ContentCoding = 'gzip' | 'deflate';

const compressors: Record<ContentCoding, (data: Buffer) => Promise<Buffer>> = { gzip: promisify(gzip), deflate: promisify(deflate) };

export function compress(data: Buffer, coding: ContentCoding): Promise<Buffer> {
  return compressors[coding](data);
}

const decompressors: Record<ContentCoding, (data: Buffer) => Promise<Buffer>> = { gzip: promisify(gunzip), deflate: promisify(inflate) };

export function isContentCoding(value: string | undefined): value is ContentCoding {
  return value === 'gzip' || value === 'deflate';
}

export function decompress(data: Buffer, coding: ContentCoding): Promise<Buffer> {
  return decompressors[coding](data);
}
