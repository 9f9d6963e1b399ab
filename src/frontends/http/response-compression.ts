/**
 * Compressed inference answers, as Triton gives them: a client that names gzip or deflate in
 * Accept-Encoding gets its answer compressed with the one it weighs highest (the first named on a
 * tie; identity, q=0 and unknown codings mean no compression), unless the answer is under 1 KiB or
 * the server is compressing enough answers already. Only inference answers are
 * compressed, as in Triton: metadata and errors are small. A binary answer's
 * Inference-Header-Content-Length stays the uncompressed header's length, which the client reads
 * after inflating the body.
 */
import { compress, type ContentCoding } from '../../protocol/content-coding.js';

export type ResponseEncoding = ContentCoding;

/** Header values longer than this are not read (Accept-Encoding is a few dozen bytes from any real client). */
const MAX_ACCEPT_ENCODING_LENGTH = 1024;

/** The coding an Accept-Encoding header asks the answer in, or undefined for none. */
export function responseEncodingOf(acceptEncoding: string | string[] | undefined): ResponseEncoding | undefined {
  const header = Array.isArray(acceptEncoding) ? acceptEncoding.join(',') : acceptEncoding;
  if (!header || header.length > MAX_ACCEPT_ENCODING_LENGTH) return undefined;
  let chosen: string = 'identity';
  let chosenWeight = 0;
  for (const entry of header.split(',')) {
    const [coding = '', ...parameters] = entry.split(';').map((part) => part.trim());
    const name = coding.toLowerCase();
    if (name !== 'gzip' && name !== 'deflate' && name !== 'identity') continue;
    const quality = parameters.find((parameter) => /^q\s*=/i.test(parameter));
    const weight = quality === undefined ? 1 : Number(quality.slice(quality.indexOf('=') + 1).trim());
    if (!Number.isFinite(weight)) continue;
    if (weight > chosenWeight) {
      chosen = name;
      chosenWeight = weight;
    }
  }
  return chosen === 'identity' ? undefined : (chosen as ResponseEncoding);
}

/**
 * Answers smaller than this go uncompressed whatever the client asked (as a server may): a gzip
 * header and trailer are 18 bytes, and the hop to the thread pool costs more than a few bytes saved.
 */
const MIN_COMPRESSED_BYTES = 1024;

/**
 * Compressions under way at once, at most; past it answers go uncompressed. libuv's pool has four
 * threads, which body inflation and file reads share: a flood of fetch clients (which ask for gzip
 * by themselves) must not queue the server's other work behind level-6 deflates.
 */
const MAX_CONCURRENT_COMPRESSIONS = 8;
let compressing = 0;

/** The coding to answer in: the client's choice, unless the answer is small or enough compressions are under way. */
export function answerEncodingOf(acceptEncoding: string | string[] | undefined, byteLength: number): ResponseEncoding | undefined {
  if (acceptEncoding === undefined || byteLength < MIN_COMPRESSED_BYTES || compressing >= MAX_CONCURRENT_COMPRESSIONS) return undefined;
  return responseEncodingOf(acceptEncoding);
}

/**
 * The answer compressed in one piece, on libuv's thread pool rather than the event loop
 * (an OCR recogniser's answer is a megabyte).
 */
export async function compressAnswer(answer: Buffer, encoding: ResponseEncoding): Promise<Buffer> {
  compressing += 1;
  try {
    return await compress(answer, encoding);
  } finally {
    compressing -= 1;
  }
}
