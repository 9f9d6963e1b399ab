/**
 * The dashboard on a port of its own (--dashboard-port): a second listener whose requests go
 * through the HTTP front end's own routing, so that they meet the same hooks, tokens, limits and
 * handlers, and nothing is registered twice. That port answers the dashboard and the model routes
 * its pages call; the HTTP port then answers 404 under /dashboard. The port binds as the front end
 * gets ready, so that a port in use fails the front end's listen, and closes with it.
 */
import type { IncomingMessage, RequestListener, Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { hostAndPort } from '../../core/address.js';
import { DASHBOARD_PATH, isDashboardRoute } from './dashboard-http.js';

/** The routes the try-it panel calls (model metadata, config, infer, classify, detect; the OpenAPI document, for which of them exist), as route patterns. */
const TRY_IT_ROUTE = /^\/v2\/models\/:model(?:\/versions\/:version)?(?:\/(?:config|infer|classify|detect))?$|^\/openapi\.json$/;

export interface DashboardListener {
  readonly httpServer: HttpServer;
  /** http(s)://host:port, once bound. */
  address(): string | undefined;
}

const listeners = new WeakMap<FastifyInstance, DashboardListener>();

export function dashboardListenerOf(app: FastifyInstance): DashboardListener | undefined {
  return listeners.get(app);
}

/**
 * Moves the dashboard of `app` to `where`: registers the hook that splits the routes between the
 * two ports (call it before the token hook, so that a route a port does not serve is a 404 there,
 * token or not) and the hooks that bind and close the dashboard's listener.
 */
export function separateDashboard(
  app: FastifyInstance,
  createListener: (handler: RequestListener) => HttpServer,
  where: { host: string; port: number; tls: boolean },
): DashboardListener {
  const arrivedHere = new WeakSet<IncomingMessage>();
  const httpServer = createListener((request, response) => {
    arrivedHere.add(request);
    app.routing(request, response);
  });

  app.addHook('onRequest', async (request, reply) => {
    // The route's pattern, not the URL: no spelling of a path reaches a route this port does not serve.
    const route = request.routeOptions.url;
    if (route === undefined) return; // no such route: the not-found handler answers
    if (arrivedHere.has(request.raw)) {
      if (route === '/') return reply.redirect(`${DASHBOARD_PATH}/`);
      if (isDashboardRoute(route) || TRY_IT_ROUTE.test(route)) return;
      return reply.code(404).send({
        error: `no route ${request.method} ${route} on the dashboard's port: it serves ${DASHBOARD_PATH}/ and the model routes its pages call (metadata, config, infer, classify, detect); the rest is on the HTTP port`,
      });
    }
    if (isDashboardRoute(route)) {
      return reply.code(404).send({ error: `the dashboard is served on its own port (--dashboard-port${bound ? `: ${address()}${DASHBOARD_PATH}/` : ''}), not on this one` });
    }
  });

  let bound: AddressInfo | undefined;
  const address = () => {
    if (!bound) return undefined;
    return `${where.tls ? 'https' : 'http'}://${hostAndPort(bound.address, bound.port)}`;
  };
  app.addHook('onReady', async () => {
    await new Promise<void>((resolve, reject) => {
      const failed = (error: Error) => reject(new Error(`the dashboard's port ${hostAndPort(where.host, where.port)} (--dashboard-port) cannot be bound: ${error.message}`, { cause: error }));
      httpServer.once('error', failed);
      httpServer.listen(where.port, where.host, () => {
        httpServer.off('error', failed);
        bound = httpServer.address() as AddressInfo;
        resolve();
      });
    });
  });
  app.addHook('onClose', async () => {
    if (!httpServer.listening) return;
    httpServer.closeAllConnections();
    await new Promise<void>((resolve) => httpServer.close(() => resolve()));
  });

  const listener: DashboardListener = { httpServer, address };
  listeners.set(app, listener);
  return listener;
}
