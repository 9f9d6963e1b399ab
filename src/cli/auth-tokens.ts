/** The tokens `nereid serve` and `nereid worker` require, from flags, the environment and a file. */
import type { Logger } from 'pino';
import { AUTH_SCOPES, type AuthScope, type AuthTokens, tokensFor } from '../core/auth.js';
import { quote, quoteName } from '../core/errors.js';
import { readNamedFile } from '../core/named-file.js';

/** Whether binding `host` keeps the server on this machine. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** Where each scope's token is read from the environment ('all': the HTTP token, which opens every scope). */
export const TOKEN_ENV = { all: 'NEREID_HTTP_AUTH_TOKEN', inference: 'NEREID_INFERENCE_AUTH_TOKEN', management: 'NEREID_MANAGEMENT_AUTH_TOKEN', metrics: 'NEREID_METRICS_AUTH_TOKEN' } as const;

/**
 * Bearer tokens by scope from the flags, the environment (NEREID_<SCOPE>_AUTH_TOKEN, HTTP meaning all)
 * and --auth-token-file, so that tokens need not appear on a command line other users can read.
 */
export async function authTokensOf(flags: Record<string, unknown>): Promise<AuthTokens> {
  const tokens: Record<AuthScope | 'all', string[]> = { all: [], inference: [], management: [], metrics: [] };
  const flagOf = { all: 'httpAuthToken', inference: 'inferenceAuthToken', management: 'managementAuthToken', metrics: 'metricsAuthToken' } as const;
  /** A token that can never match (inner spaces, characters clients cannot send) or is empty is refused where it comes from, not met as 401s. */
  const checked = (token: string, from: string) => {
    if (token === '') throw new Error(`${from} is empty: give a token, or leave it out to run without one`);
    if (/\s/.test(token)) throw new Error(`${from} holds whitespace inside the token, which no Authorization header can carry`);
    // curl sends a header's bytes as UTF-8 and Node reads them as Latin-1; gRPC metadata takes printable ASCII only.
    const unsendable = token.match(/[^\x21-\x7e]/u)?.[0];
    if (unsendable) throw new Error(`${from} holds a character other than printable ASCII (${quote(unsendable)}), which curl and gRPC metadata cannot send`);
    return token;
  };
  for (const scope of Object.keys(tokens) as (keyof typeof tokens)[]) {
    const given = (flags[flagOf[scope]] as string[] | undefined) ?? [];
    tokens[scope].push(...given.map((token) => checked(token, `--${flagOf[scope].replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`)));
    // A secret mounted from a file usually ends with a newline: it is not part of the token.
    const fromEnv = process.env[TOKEN_ENV[scope]];
    if (fromEnv !== undefined) tokens[scope].push(checked(fromEnv.trim(), TOKEN_ENV[scope]));
  }
  if (typeof flags.authTokenFile === 'string') {
    const text = (await readNamedFile(flags.authTokenFile, '--auth-token-file')).toString('utf8');
    const before = Object.values(tokens).flat().length;
    text.split(/\r?\n/).forEach((line, index) => {
      // A comment starts a line or follows a space: inside a token '#' is one of its characters.
      const content = line.replace(/(^|\s)#.*/, '').trim();
      if (!content) return;
      const [scope, token, ...rest] = content.split(/\s+/);
      // An own property only: `in` would take constructor or __proto__ (Object.prototype's) for a scope.
      const isScope = (word: string | undefined) => word !== undefined && Object.hasOwn(tokens, word);
      if (!isScope(scope) || !token || rest.length > 0) {
        // What was found is quoted where it cannot be the secret itself: a word in the scope's place is, unless a scope follows it.
        const found = !isScope(scope)
          ? isScope(token)
            ? `the token before its scope '${token}'`
            : token === undefined
              ? 'one word, not a scope'
              : // A short word of letters is a misspelt scope; anything else may be a token written first, and is not repeated.
                /^[a-z_-]{1,16}$/i.test(scope) ? `unknown scope ${quoteName(scope)}` : 'a first word that is not a scope (not repeated here: it may be a token)'
          : !token
            ? `scope '${scope}' with no token`
            : `${rest.length + 2} words`;
        throw new Error(`--auth-token-file line ${index + 1}: ${found} (expected '<scope> <token>' with scope all, inference, management or metrics)`);
      }
      tokens[scope as keyof typeof tokens].push(checked(token, `--auth-token-file line ${index + 1}`));
    });
    // Asked for protection and got none: running open would be the wrong way to fail.
    if (Object.values(tokens).flat().length === before) throw new Error(`--auth-token-file ${flags.authTokenFile} holds no token (lines '<scope> <token>', scope all, inference, management or metrics)`);
  }
  // A deployment that means to be protected (Helm with auth.existingSecret) says so: a Secret that is
  // missing or misspelt then stops the start instead of serving open on every interface.
  if (/^(1|true|yes)$/i.test(process.env.NEREID_REQUIRE_AUTH ?? '') && Object.values(tokens).flat().length === 0) {
    throw new Error(`NEREID_REQUIRE_AUTH is set but no token arrived (${Object.values(TOKEN_ENV).join(', ')}, the --*-auth-token flags or --auth-token-file): refusing to start open`);
  }
  return tokens;
}

/**
 * Why a file of secrets (tokens, a private key) is worth a warning, as ssh would say it: every user of the machine may
 * read it, or its group may and the server's user owns it (so could chmod it). A file another user owns and shares
 * with the server's group (a Kubernetes secret volume at 0440 with fsGroup) is how it is meant to be read.
 */
export async function secretFileExposure(path: string, flag: string): Promise<string | undefined> {
  const { stat } = await import('node:fs/promises');
  const { mode, uid } = await stat(path).catch(() => ({ mode: 0, uid: -1 }));
  const everyone = (mode & 0o004) !== 0;
  const ownGroup = (mode & 0o040) !== 0 && uid === process.getuid?.();
  if (!everyone && !ownGroup) return undefined;
  return `${flag} ${path} can be read by ${everyone ? 'every user of this machine' : 'its group'} (mode ${(mode & 0o777).toString(8)}): it holds secrets; chmod 600 it (readable by the server's user only)`;
}

/**
 * A scope with no token of its own (and no 'all' token) stays open, so that protecting one does not
 * lock the others; when some scope has a token, an operator is told which exposed ones are open.
 */
export function warnOfOpenScopes(tokens: AuthTokens, exposed: Record<Exclude<AuthScope, 'inference'>, boolean>, host: string, logger: Logger): void {
  if (!AUTH_SCOPES.some((scope) => tokensFor(tokens, scope).length > 0)) {
    if (!isLoopbackHost(host)) {
      logger.warn(`listening on ${host} with no token: inference, model management and metrics are open to anyone who can reach this machine (--http-auth-token, NEREID_HTTP_AUTH_TOKEN or --auth-token-file closes them)`);
    }
    return;
  }
  const open = AUTH_SCOPES.filter((scope) => (scope === 'inference' || exposed[scope]) && tokensFor(tokens, scope).length === 0);
  for (const scope of open) logger.warn(`the ${scope} scope has no token while another scope has one: it is open to anyone who can reach its port (--${scope}-auth-token or --http-auth-token closes it)`);
}
