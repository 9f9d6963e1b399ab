/**
 * A request's place in a sequence, from its parameters as Triton's clients send them:
 * `sequence_id` (a correlation id, integer or string), `sequence_start` and `sequence_end`.
 */
import { invalidArgument, quote } from '../core/errors.js';
import { checkSequenceParameters, MAX_CORRELATION_ID, type Parameters } from '../core/inference.js';

export interface SequenceFlags {
  /**
   * The correlation id: an unsigned 64-bit integer (always a bigint, however it came, so that ids beyond
   * 2^53 stay exact) or a string. Integer and string ids are different sequences, as in Triton.
   */
  id: bigint | string;
  start: boolean;
  end: boolean;
}

/** One key per sequence, integer and string ids apart ("7" and 7 are two sequences). */
export function sequenceKey(id: bigint | string): string {
  return typeof id === 'bigint' ? `#${id}` : `'${id}`;
}

/** How messages name a sequence: its id as the client sent it. */
export function describeSequence(id: bigint | string): string {
  return typeof id === 'bigint' ? String(id) : `'${id}'`;
}


const MAX_ID_CHARS = 256;

/** The request's sequence flags; throws INVALID_ARGUMENT (400) when the id is missing or malformed. */
export function sequenceFlagsOf(parameters: Parameters | undefined, model: string): SequenceFlags {
  // The parameters' types, as the front ends check them for every request (an in-process caller's too, here); what a
  // sequence model adds is that the id is there and within its bounds.
  checkSequenceParameters(parameters);
  const id = parameters?.sequence_id as bigint | number | string | undefined;
  const start = parameters?.sequence_start === true;
  const end = parameters?.sequence_end === true;
  if (id === undefined || id === 0 || id === 0n || id === '') {
    throw invalidArgument(
      `inference request to model '${model}' must specify a non-zero or non-empty correlation ID: the model uses sequence batching, so each request needs parameter 'sequence_id' (an integer of 1 or more, or a non-empty string)` +
        (id === undefined ? '' : `, got ${quote(id)}`),
    );
  }
  if (typeof id === 'string') {
    if (id.length > MAX_ID_CHARS) throw invalidArgument(`parameter 'sequence_id' holds at most ${MAX_ID_CHARS} characters, got ${id.length}`);
    return { id, start, end };
  }
  // A JSON number beyond 2^53 or a gRPC int64/uint64 parameter beyond it arrives as a bigint, exact.
  if (BigInt(id) > MAX_CORRELATION_ID) {
    throw invalidArgument(`parameter 'sequence_id' must be an integer from 1 to ${MAX_CORRELATION_ID} (uint64) or a non-empty string, got ${id}`);
  }
  return { id: BigInt(id), start, end };
}
