/**
 * The id that ties a request's log lines (and its trace) together: the client's `x-request-id`
 * (HTTP header or gRPC metadata) when it is a sane token, else a fresh UUID.
 */
import { randomUUID } from 'node:crypto';

export const REQUEST_ID_HEADER = 'x-request-id';

/** Up to 128 printable characters without spaces or quotes: anything else is not copied into logs. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:\-/+=@]{1,128}$/;

export function requestIdOf(given: unknown): string {
  const value = Array.isArray(given) ? given[0] : given;
  return typeof value === 'string' && SANE_REQUEST_ID.test(value) ? value : randomUUID();
}
