/**
 * The HTTP front end's options as a schema with their defaults, apart from the front end so that `nereid --help` shows
 * them without loading Fastify.
 */
import { z } from 'zod';
import { authTokensSchema } from '../../core/auth.js';
import { flagNames, type SettingName } from '../../core/options.js';
import { tlsOptionSchema } from '../../core/tls.js';

/** The bounds of dashboardIntervalMs, which --dashboard-interval-ms checks too. */
export const DASHBOARD_INTERVAL_MS = { min: 100, max: 60_000 } as const;

export const httpFrontEndOptionsSchema = z.object({
  /** Largest request body accepted, in bytes (decompressed bodies too). */
  maxBodyBytes: z.number().int().positive().default(64 * 1024 * 1024),
  /** Compressed bodies inflating at once; more are refused with 503 (each is bounded by maxBodyBytes and the server's body budget). */
  maxConcurrentInflations: z.number().int().positive().default(8),
  /**
   * Pieces a chunked or compressed body may arrive in: 65,536 is 64 MiB in 1 KiB chunks, far more than any client
   * sends, and bounds the per-piece memory a body of one-byte chunks would take (Triton limits chunks too).
   */
  maxBodyChunks: z.number().int().positive().default(65_536),
  /**
   * Bearer tokens: a list opens every route but the health probes; an object scopes them —
   * `inference` (infer, classify, metadata, config, ready, stats), `management` (/v2/repository,
   * trace and logging settings).
   */
  authTokens: authTokensSchema,
  /** One log line per request (method, url, status, ms, client address, bytes out, request id, model), at info (--log-access); health probes answered 200 are left out. */
  accessLog: z.boolean().default(false),
  /** A connection must have sent a request's headers within this (408 and closed otherwise), so slow-header clients cannot hold it. */
  headersTimeoutMs: z.number().int().positive().default(10_000),
  /** A request must have arrived whole, body included, within this (408 and closed otherwise): no client holds a half-sent body forever. */
  requestTimeoutMs: z.number().int().positive().default(30_000),
  /** An idle keep-alive connection is closed after this; clients are told it (Keep-Alive: timeout=…), so they do not reuse it as it closes. */
  keepAliveTimeoutMs: z.number().int().positive().default(5_000),
  /** Connections open at once; more are closed as they arrive. */
  maxConnections: z.number().int().positive().default(4096),
  /** Serve HTTPS with this certificate and key; with `clientCa`, only clients holding a certificate it signed (--tls-*). */
  tls: tlsOptionSchema,
  /** The web dashboard under /dashboard (--dashboard); behind the management scope's tokens (the inference scope's when only those are set). */
  dashboard: z.boolean().default(true),
  /**
   * Serve the dashboard on a port of its own (--dashboard-port; 0 picks a free one) instead of under /dashboard on the
   * HTTP port: bound when the front end listens, with the same routes, tokens, TLS and limits. `dashboardAddress(app)` reads it.
   */
  dashboardPort: z.number().int().min(0).max(65_535).optional(),
  /** The address the dashboard's own port binds (--host): loopback unless told otherwise, like every listener. */
  dashboardHost: z.string().min(1).default('127.0.0.1'),
  /**
   * Milliseconds between two events of the dashboard's stream (--dashboard-interval-ms): each reads one snapshot of every
   * model for all the open streams, and each open page redraws. Below 100 ms that work takes CPU the models need; above
   * a minute the page is no longer live, and a proxy's read timeout (nginx's is 60 s) cuts a stream that long silent.
   */
  dashboardIntervalMs: z.number().int().min(DASHBOARD_INTERVAL_MS.min).max(DASHBOARD_INTERVAL_MS.max).default(1000),
});

/** The HTTP front end's options named as `nereid serve`'s flags (option settingName): `--http-max-body-bytes`, `--http-request-timeout-ms`. */
export const httpFlagName: SettingName = flagNames('http-', {
  maxConcurrentInflations: '--http-max-inflations',
  accessLog: '--log-access',
  dashboard: '--dashboard',
  dashboardPort: '--dashboard-port',
  dashboardHost: '--host',
  dashboardIntervalMs: '--dashboard-interval-ms',
});
