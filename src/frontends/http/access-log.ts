/**
 * The access log's line for an answered request (--log-access), written the same by Fastify's onResponse hook and by the
 * direct inference path: a failure's line at warn with its code and reason, so that a filter on the level finds every
 * refused or failed request.
 */
import type { ServerResponse } from 'node:http';

export interface AccessLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface AccessEntry {
  method: string | undefined;
  url: string | undefined;
  response: ServerResponse;
  /** The failure's code and the reason its client was given, when it failed. */
  failure?: { code: string; reason: string };
  ms: number;
  /** Whom the answer went to (behind a proxy, the proxy: its own log has the client). */
  remoteAddress: string | undefined;
  model?: string;
  version?: string;
  ood?: { checked: number; flagged: number };
  /** Set where the logger does not carry it already (Fastify's request logger binds it). */
  reqId?: string;
}

export function logAccess(logger: AccessLogger, entry: AccessEntry): void {
  const status = entry.response.statusCode;
  const failed = status >= 400 ? (entry.failure ?? {}) : undefined;
  logger[failed ? 'warn' : 'info'](
    {
      ...(entry.reqId !== undefined && { reqId: entry.reqId }),
      method: entry.method,
      url: entry.url,
      status,
      ...failed,
      ms: Math.round(entry.ms * 1000) / 1000,
      remoteAddress: entry.remoteAddress,
      bytesOut: Number(entry.response.getHeader('content-length')) || undefined,
      model: entry.model,
      version: entry.version,
      ood: entry.ood,
    },
    'request completed',
  );
}
