/**
 * A listening socket closed while the kernel holds connections it completed for it (its accept queue) resets them:
 * their clients had connected and may have written a whole request, which they then see fail with ECONNRESET, not
 * knowing whether it ran. Node takes one queued connection per turn of its event loop, so a busy server (a model
 * running on the JS thread, clients sending from the same process) can hold several there when stop() begins. The
 * drain takes them before closing its listeners, and answers their requests with a refusal that says why.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Server as NetServer, Socket } from 'node:net';
import { NereidError } from '../core/errors.js';

/**
 * The longest the drain keeps a listener open to take its queue, at most half the drain's time: clients that keep
 * connecting (a load balancer not yet told, no preStop pause) would otherwise hold it open for ever. A turn of the event
 * loop lasts as long as the JS work in it, so a queue of a few dozen can take a second. Those that connect later are
 * refused by the kernel (ECONNREFUSED: nothing was sent, so a client may retry at once, elsewhere).
 */
export const ACCEPT_QUEUE_GRACE_MS = 2000;

/** How long a drain of `drainMs` keeps its listeners open to take their queues. */
export const acceptQueueGraceMs = (drainMs: number) => Math.min(ACCEPT_QUEUE_GRACE_MS, drainMs / 2);

/**
 * Resolves once the listeners have taken what their accept queues held: after two turns of the event loop (each poll
 * phase accepts one queued connection; the first turn may have polled already when this is called from an I/O
 * callback) in which none of them took a connection, or after `graceMs`. Close them right after, in the same turn, so
 * that no connection completes in between.
 */
export async function takeQueuedConnections(listeners: readonly NetServer[], graceMs: number): Promise<void> {
  const open = listeners.filter((listener) => listener.listening);
  if (open.length === 0 || graceMs <= 0) return;
  let taken = 0;
  const count = () => void (taken += 1);
  for (const listener of open) listener.on('connection', count);
  try {
    const until = performance.now() + graceMs;
    let quietTurns = 0;
    while (quietTurns < 2 && performance.now() < until) {
      const before = taken;
      await nextTurn();
      quietTurns = taken > before ? 0 : quietTurns + 1;
    }
  } finally {
    for (const listener of open) listener.off('connection', count);
  }
}

/** A connection's peer as grpc-js's call.getPeer() writes it (and as an HTTP request's socket gives it). */
const peerOf = (socket: Pick<Socket, 'remoteAddress' | 'remotePort'>) => `${socket.remoteAddress}:${socket.remotePort}`;

/**
 * The connections a front end's listeners took once its server had begun to stop (from the accept queue, while the
 * drain takes it): each of their requests is refused (stopRefusal) rather than served, since it was sent to a server
 * already stopping. Connections taken before keep being served until they close.
 */
export class ConnectionsTakenWhileStopping {
  private readonly peers = new Set<string>();

  constructor(private readonly stopping: () => boolean) {}

  /** Follows a listener's new connections (its TCP ones, before any TLS handshake). */
  watch(listener: NetServer): void {
    listener.on('connection', (socket: Socket) => {
      if (!this.stopping()) return;
      const peer = peerOf(socket);
      this.peers.add(peer);
      socket.once('close', () => this.peers.delete(peer));
    });
  }

  /** Whether a request came on such a connection: `peer`, its socket, or grpc-js's getPeer() string. */
  has(peer: Pick<Socket, 'remoteAddress' | 'remotePort'> | string): boolean {
    return this.peers.size > 0 && this.peers.has(typeof peer === 'string' ? peer : peerOf(peer));
  }
}

/** What a request on a connection taken while stopping is answered: 503 / UNAVAILABLE, which clients retry elsewhere. */
export const stopRefusal = () =>
  new NereidError(
    'UNAVAILABLE',
    'the server is shutting down: this connection reached it after its stop began, so it runs no request on it; send the request to another replica, or again once this one is back',
  );
