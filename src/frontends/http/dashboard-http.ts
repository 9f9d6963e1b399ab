/**
 * The web dashboard on the HTTP front end: its pages and scripts under /dashboard (a fixed list of
 * files shipped in the package's dashboard/ folder, and uPlot's from its package), and the data
 * they read under /dashboard/api — one JSON snapshot, or the same as Server-Sent Events with the
 * rates between successive snapshots, and the batch jobs of a Redis queue when the server follows one.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { quoteName } from '../../core/errors.js';
import type { BatchJobsSource } from '../../jobs/batch-status.js';
import type { Server } from '../../server/server.js';
import { dashboardSnapshot, intervalOf, type DashboardSnapshot, type HistogramSource } from './dashboard-data.js';

/** Dashboard streams open at once: each is a connection and a write per event. */
const MAX_STREAMS = 64;

/** Bytes a stream may have waiting for its client before it is closed (a few snapshots of a large repository). */
const MAX_UNREAD_BYTES = 4 * 1024 * 1024;

export const DASHBOARD_PATH = '/dashboard';
export const DASHBOARD_API = /^\/dashboard\/api(?:[/?]|$)/;

/** Whether a route pattern is one of the dashboard's (its pages, files and data). */
export const isDashboardRoute = (route: string) => route === DASHBOARD_PATH || route.startsWith(`${DASHBOARD_PATH}/`);

/** The same folder from src/frontends/http (tsx) and dist/frontends/http (built). */
const ASSETS_DIR = fileURLToPath(new URL('../../../dashboard/', import.meta.url));

const ASSETS: ReadonlyMap<string, { file: () => string; type: string }> = new Map(
  Object.entries({
    'index.html': { file: () => `${ASSETS_DIR}index.html`, type: 'text/html; charset=utf-8' },
    'app.js': { file: () => `${ASSETS_DIR}app.js`, type: 'text/javascript; charset=utf-8' },
    'charts.js': { file: () => `${ASSETS_DIR}charts.js`, type: 'text/javascript; charset=utf-8' },
    'try-it.js': { file: () => `${ASSETS_DIR}try-it.js`, type: 'text/javascript; charset=utf-8' },
    'style.css': { file: () => `${ASSETS_DIR}style.css`, type: 'text/css; charset=utf-8' },
    'uPlot.esm.js': { file: () => createRequire(import.meta.url).resolve('uplot/dist/uPlot.esm.js'), type: 'text/javascript; charset=utf-8' },
    'uPlot.min.css': { file: () => createRequire(import.meta.url).resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
  }),
);

/** Scripts and styles from this origin only; images the try-it panel previews are blob: URLs. */
const CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/** What the batch jobs page shows without a queue: how to give the server one. */
export const JOBS_HINT =
  'no batch job queue is configured: start the server with --jobs-queue redis://HOST:6379 (the queue `nereid batch --queue` submits to; --jobs-queue-name when it is not nereid-batch) to follow its jobs here';

export interface DashboardOptions {
  histograms?: HistogramSource;
  /** The Redis queue of batch jobs the jobs page follows (--jobs-queue; batchJobsSource). */
  jobs?: BatchJobsSource;
  /** Milliseconds between two events of the stream (the front end's dashboardIntervalMs, whose schema holds the default). */
  streamIntervalMs: number;
}

export function registerDashboardRoutes(app: FastifyInstance, server: Server, options: DashboardOptions): void {
  // Each file read once, at its first request: the files ship with the package and do not change under a running server.
  const assetBodies = new Map<string, Buffer>();

  const sendAsset = async (name: string, reply: FastifyReply) => {
    // A Map, so that a name of an Object.prototype member (constructor, __proto__) is no file either.
    const asset = ASSETS.get(name);
    if (!asset) return reply.code(404).send({ error: `no dashboard file ${quoteName(name)} (files: ${[...ASSETS.keys()].join(', ')})` });
    let body = assetBodies.get(name);
    if (!body) {
      try {
        body = await readFile(asset.file());
      } catch (error) {
        // The path goes to the log only: clients are told no server paths.
        app.log.error({ err: error }, `dashboard file '${name}' cannot be read`);
        return reply.code(500).send({ error: `the dashboard's file '${name}' is not installed with this server (a package or image without its dashboard/ folder); the server's log has the path, and --dashboard false turns the dashboard off` });
      }
      assetBodies.set(name, body);
    }
    return reply
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .type(asset.type)
      .send(body);
  };

  app.get(DASHBOARD_PATH, async (_request, reply) => reply.redirect(`${DASHBOARD_PATH}/`));
  app.get(`${DASHBOARD_PATH}/`, async (_request, reply) => sendAsset('index.html', reply));
  app.get<{ Params: { file: string } }>(`${DASHBOARD_PATH}/assets/:file`, async (request, reply) => sendAsset(request.params.file, reply));

  app.get(`${DASHBOARD_PATH}/api/overview`, async () => dashboardSnapshot(server, options.histograms));

  // Read when asked (the jobs page polls it), not with every snapshot: it costs Redis round trips per chunk.
  const jobs = options.jobs;
  app.get(`${DASHBOARD_PATH}/api/jobs`, async () =>
    jobs ? { configured: true, queue: jobs.queue, queue_name: jobs.queueName, jobs: await jobs.jobs() } : { configured: false, hint: JOBS_HINT },
  );

  // One snapshot a tick, shared by every open stream, and one event of it for all the streams that sent the same snapshot
  // before (all but those opened since the last tick): each dashboard costs a write, not a snapshot and its JSON.
  const streams = new Map<SendSnapshot, () => void>();
  let ticker: NodeJS.Timeout | undefined;
  // A tick that comes while the last one's snapshot is still being read is skipped: slow reads (a large repository, a
  // short interval, a busy machine) would otherwise pile up, and one finishing before an earlier one would go out first.
  let reading = false;
  const tick = () => {
    if (streams.size === 0 || server.stopping) {
      // A draining server ends its streams, so that their connections do not hold the drain.
      for (const stop of [...streams.values()]) stop();
      clearInterval(ticker);
      ticker = undefined;
      return;
    }
    if (reading) return;
    reading = true;
    dashboardSnapshot(server, options.histograms)
      .then(
        (snapshot) => {
          const eventAfter = eventsOf(snapshot);
          for (const send of streams.keys()) send(snapshot, eventAfter);
        },
        (error: unknown) => app.log.warn({ err: error }, 'dashboard snapshot failed'),
      )
      .finally(() => {
        reading = false;
      });
  };

  app.get(`${DASHBOARD_PATH}/api/stream`, async (request, reply) => {
    // A stream opened now would hold its connection open through the drain (the onRequest hook's Connection: close
    // does not reach a hijacked reply): a tab reconnecting to a draining server is told to go, and its connection closes.
    if (server.stopping) {
      return reply
        .code(503)
        .header('connection', 'close')
        .send({ error: 'the server is draining (shutting down): it opens no new dashboard stream; reload the dashboard from a server that is up' });
    }
    if (streams.size >= MAX_STREAMS) {
      return reply
        .code(503)
        .header('retry-after', '10')
        .send({ error: `${MAX_STREAMS} dashboard streams are open already, the most this server keeps; close a dashboard tab, or use GET ${DASHBOARD_PATH}/api/overview` });
    }
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      'x-request-id': request.id,
    });
    let previous: DashboardSnapshot | undefined;
    let closed = false;
    const send: SendSnapshot = (snapshot, eventAfter) => {
      // The stream's first snapshot, read as it opened, may come after a tick's read later: its counts would go backwards.
      if (closed || (previous && snapshot.at < previous.at)) return;
      // A client that does not read would have every snapshot pile up in the server's memory: it is let go instead (a
      // browser's EventSource that was only slow reconnects by itself).
      if (raw.writableLength > MAX_UNREAD_BYTES) {
        app.log.warn({ reqId: request.id, unread: raw.writableLength }, 'dashboard stream closed: its client has not read the last snapshots');
        stop();
        // Ending the response would queue its end behind the unread bytes: the connection, and its buffer, would stay.
        socket.destroy();
        return;
      }
      raw.write(eventAfter(previous));
      previous = snapshot;
    };
    const socket = request.raw.socket;
    const stop = () => {
      closed = true;
      streams.delete(send);
      if (!raw.writableEnded) raw.end();
      // Its head went out without Connection: close: ended by a drain, the connection closes too, instead of idling
      // through the keep-alive timeout (or carrying the browser's reconnection) while the drain waits for it.
      if (server.stopping) socket.end();
    };
    streams.set(send, stop);
    ticker ??= setInterval(tick, options.streamIntervalMs);
    raw.once('close', stop);
    const first = await dashboardSnapshot(server, options.histograms);
    send(first, eventsOf(first));
  });
}

/** Writes a snapshot to one stream, as the event `eventAfter` makes of it and the snapshot the stream sent before. */
type SendSnapshot = (snapshot: DashboardSnapshot, eventAfter: (previous: DashboardSnapshot | undefined) => string) => void;

/**
 * The stream's events of `snapshot`: with the interval since the snapshot a stream sent before (none for its first), each
 * made once for all the streams that sent the same one.
 */
function eventsOf(snapshot: DashboardSnapshot): (previous: DashboardSnapshot | undefined) => string {
  const made = new Map<DashboardSnapshot | undefined, string>();
  return (previous) => {
    let event = made.get(previous);
    if (event === undefined) {
      event = `event: snapshot\ndata: ${JSON.stringify({ snapshot, interval: previous && intervalOf(previous, snapshot) })}\n\n`;
      made.set(previous, event);
    }
    return event;
  };
}
