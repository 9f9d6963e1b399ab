/**
 * Headers every answer of every HTTP listener carries, refusals included. No page may be framed by another site:
 * Swagger UI's "Try it out" sends from the server's own origin, which the cross-site guard lets through, so a decoy page
 * framing /docs could have an operator's clicks load, unload or reconfigure. No answer may be sniffed as another type
 * than it says: an error that quotes a client's path as JSON must never be read as HTML.
 */
import type { ServerResponse } from 'node:http';

export const PROTECTIVE_HEADERS: Readonly<Record<string, string>> = { 'x-frame-options': 'DENY', 'x-content-type-options': 'nosniff' };

const PROTECTIVE_ENTRIES = Object.entries(PROTECTIVE_HEADERS);

/** Set on the response before anything answers it (a router's refusal, a hook's, a route's), so none can leave without them. */
export function protectAnswer(response: ServerResponse): void {
  for (const [name, value] of PROTECTIVE_ENTRIES) response.setHeader(name, value);
}

/** The same headers as lines of a head written to the socket directly (Node's parser refused the request). */
export const PROTECTIVE_HEAD_LINES = Object.entries(PROTECTIVE_HEADERS)
  .map(([name, value]) => `${name}: ${value}\r\n`)
  .join('');
