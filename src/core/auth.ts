/**
 * Bearer tokens, scoped: what a token opens is inference (infer, classify, metadata, statistics, monitor, feedback),
 * management (the repository API: index, load, unload; trace and log settings; the dashboard's data)
 * or metrics (the Prometheus port). A token
 * given for 'all' opens every scope. A scope nobody gave a token for is open, as before tokens
 * existed; health probes are always open. HTTP reads the Authorization header, gRPC the
 * `authorization` metadata; both refuse the same way, with UNAUTHENTICATED.
 */
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { NereidError } from './errors.js';

export const AUTH_SCOPES = ['inference', 'management', 'metrics'] as const;
export type AuthScope = (typeof AUTH_SCOPES)[number];

/** Tokens by the scope they open; `all` opens every scope. */
export type AuthTokens = Partial<Record<AuthScope | 'all', readonly string[]>>;

export const BEARER_TOKEN_MESSAGE = 'missing or invalid bearer token (Authorization: Bearer <token>)';

/**
 * Tokens as options take them: a list opens every scope (the --http-auth-token meaning), an object
 * names scopes. One schema for every front end.
 */
export const authTokensSchema = z
  .union([
    z.array(z.string().min(1)).readonly().transform((all): AuthTokens => ({ all })),
    z.object({
      all: z.array(z.string().min(1)).readonly().optional(),
      inference: z.array(z.string().min(1)).readonly().optional(),
      management: z.array(z.string().min(1)).readonly().optional(),
      metrics: z.array(z.string().min(1)).readonly().optional(),
    }),
  ])
  .default({});

/** The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 7235). */
function presentedToken(authorization: string | undefined): string {
  if (!authorization || authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== 'bearer ') return '';
  return authorization.slice(7).trim();
}

/** Compares in constant time per candidate, so the answer time does not leak a token's prefix. */
export function bearerTokenMatches(authorization: string | undefined, tokens: readonly string[]): boolean {
  const presented = presentedToken(authorization);
  if (!presented) return false;
  const given = Buffer.from(presented);
  let matched = false;
  for (const token of tokens) {
    const expected = Buffer.from(token);
    if (expected.length === given.length && timingSafeEqual(expected, given)) matched = true;
  }
  return matched;
}

/** The tokens that open a scope; empty when the scope is open. */
export function tokensFor(tokens: AuthTokens | undefined, scope: AuthScope): readonly string[] {
  const all = tokens?.all ?? [];
  const scoped = tokens?.[scope] ?? [];
  return scoped.length === 0 ? all : all.length === 0 ? scoped : [...all, ...scoped];
}

/**
 * Throws UNAUTHENTICATED unless `authorization` carries a token that opens `scope`. A token of another
 * scope is PERMISSION_DENIED (HTTP 403, as RFC 6750 answers insufficient_scope), naming the scope it
 * lacks: "invalid token" would send its holder looking for a typo.
 */
export function checkBearerToken(authorization: string | undefined, tokens: AuthTokens | undefined, scope: AuthScope): void {
  const accepted = tokensFor(tokens, scope);
  if (accepted.length === 0) return;
  if (bearerTokenMatches(authorization, accepted)) return;
  const opens = AUTH_SCOPES.filter((other) => other !== scope && bearerTokenMatches(authorization, tokens?.[other] ?? []));
  if (opens.length === 0) throw new NereidError('UNAUTHENTICATED', BEARER_TOKEN_MESSAGE);
  throw new NereidError('PERMISSION_DENIED', `this token opens the ${opens.join(' and ')} scope, not the ${scope} scope this needs: use a token of the ${scope} scope (or of all scopes)`);
}

/** The WWW-Authenticate answer to a refusal of checkBearerToken (RFC 6750): a token of another scope is told it lacks scope. */
export function bearerChallenge(error: NereidError): string {
  return error.code === 'PERMISSION_DENIED' ? 'Bearer error="insufficient_scope"' : 'Bearer';
}
