/**
 * The metrics port (Triton's --metrics-port, 8002): `GET /metrics` in Prometheus' text format, on
 * its own listener so scrapes never queue behind inference traffic and the port can be firewalled
 * apart. It answers nothing else.
 */
import { createServer as createHttpServer, type RequestListener, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { bearerChallenge, checkBearerToken, type AuthTokens } from '../core/auth.js';
import { httpStatusOf, shortened, type NereidError } from '../core/errors.js';
import { httpsServerOptions, secureContextOptions, tlsOptionSchema, type TlsCredentials } from '../core/tls.js';
import type { PrometheusMetrics } from './prometheus-metrics.js';
import { logFailedHandshakes } from './tls-handshake-log.js';
import { protectAnswer } from '../core/protective-headers.js';

export interface MetricsListener {
  readonly httpServer: HttpServer;
  /** Binds `host:port` (0 picks a free port) and answers the port bound. */
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
  /** New credentials for new connections (a renewed certificate, fresh revocation lists); only for a listener made with TLS. */
  replaceTls(tls: TlsCredentials): void;
}

export interface MetricsListenerOptions {
  logger?: Logger;
  authTokens?: AuthTokens;
  /** Serve HTTPS, as the other ports do (--tls-*). */
  tls?: TlsCredentials;
}

export function createMetricsListener(metrics: PrometheusMetrics, options: MetricsListenerOptions = {}): MetricsListener {
  const tls = tlsOptionSchema.parse(options.tls);
  const answer: RequestListener = (request, response) => {
    protectAnswer(response);
    const path = (request.url ?? '/').split('?')[0];
    try {
      checkBearerToken(request.headers.authorization, options.authTokens, 'metrics');
    } catch (error) {
      const refusal = error as NereidError;
      response.writeHead(httpStatusOf(refusal.code), { 'content-type': 'application/json', 'www-authenticate': bearerChallenge(refusal) }).end(JSON.stringify({ error: refusal.message }));
      return;
    }
    if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no route ${request.method} ${shortened(path)} (GET /metrics)` }));
      return;
    }
    metrics.metrics().then(
      (text) => {
        response.writeHead(200, { 'content-type': metrics.contentType });
        response.end(request.method === 'HEAD' ? undefined : text);
      },
      (error: Error) => {
        options.logger?.error({ err: error }, 'collecting metrics failed');
        response.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'collecting metrics failed' }));
      },
    );
  };
  const httpsServer = tls && createHttpsServer(httpsServerOptions(tls), answer);
  const httpServer: HttpServer = httpsServer || createHttpServer(answer);
  if (tls && options.logger) logFailedHandshakes(httpServer, options.logger, 'metrics');
  // A scraper that keeps connections open must not hold the process at shutdown, and clients that send nothing or
  // half a request, or open connections without end, must not hold sockets: a scrape is one small GET.
  httpServer.keepAliveTimeout = 5_000;
  httpServer.headersTimeout = 10_000;
  httpServer.requestTimeout = 10_000;
  httpServer.maxConnections = 64;
  return {
    httpServer,
    replaceTls(next: TlsCredentials): void {
      if (!httpsServer) throw new Error('this metrics listener was made without TLS: its credentials cannot be replaced');
      httpsServer.setSecureContext(secureContextOptions(next));
    },
    listen(host: string, port: number): Promise<number> {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          httpServer.off('error', reject);
          resolve((httpServer.address() as AddressInfo).port);
        });
      });
    },
    close(): Promise<void> {
      return new Promise((resolve) => {
        if (!httpServer.listening) return resolve();
        httpServer.close(() => resolve());
        httpServer.closeIdleConnections();
        // A connection that never sent a request is not idle to Node, and would hold the drain to its end: a scrape
        // answers in milliseconds, so what is still open after a second is cut.
        setTimeout(() => httpServer.closeAllConnections(), 1_000).unref();
      });
    },
  };
}
