/**
 * Bearer-token checks shared by the front ends: HTTP reads the Authorization header, gRPC the
 * `authorization` metadata; both refuse the same way, with UNAUTHENTICATED.
 */
import { timingSafeEqual } from 'node:crypto';
import { NereidError } from './errors.js';

export const BEARER_TOKEN_MESSAGE = 'missing or invalid bearer token (Authorization: Bearer <token>)';

/** Compares in constant time per candidate, so the answer time does not leak a token's prefix. */
export function bearerTokenMatches(authorization: string | undefined, tokens: readonly string[]): boolean {
  const presented = authorization?.startsWith('Bearer ') ? authorization.slice(7) : '';
  if (!presented) return false;
  const given = Buffer.from(presented);
  return tokens.some((token) => {
    const expected = Buffer.from(token);
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
}

/** Throws UNAUTHENTICATED unless `authorization` is `Bearer <one of tokens>`; no tokens means no check. */
export function checkBearerToken(authorization: string | undefined, tokens: readonly string[] | undefined): void {
  if (!tokens?.length) return;
  if (!bearerTokenMatches(authorization, tokens)) throw new NereidError('UNAUTHENTICATED', BEARER_TOKEN_MESSAGE);
}
