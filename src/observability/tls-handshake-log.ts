/**
 * Failed TLS handshakes, logged: a client whose certificate is refused (or that speaks plain HTTP to a TLS port) fails
 * before any request exists, so without this line an operator sees nothing on the server. At most one line per
 * interval per listener, so that a scanner cannot flood the log; the next line says how many were not logged.
 */
import type { EventEmitter } from 'node:events';

export interface HandshakeFailureLogger {
  warn(details: Record<string, unknown>, message: string): void;
}

/** The shortest time between two lines about failed handshakes on one listener. */
export const HANDSHAKE_LOG_INTERVAL_MS = 10_000;

type HandshakeError = Error & { code?: string; reason?: string };

/** The reason a handshake failed, as OpenSSL (its reason, without the file and line) or the socket gave it, in one short line. */
function reasonOf(error: HandshakeError): string {
  const message = (error.reason ?? error.message).replace(/\s+/g, ' ').trim().slice(0, 200);
  return error.code && !message.includes(error.code) ? `${message} (${error.code})` : message;
}

/** A TLS socket whose handshake failed; once the client has hung up, only the connection beneath it knows the address. */
interface FailedSocket {
  remoteAddress?: string;
  remotePort?: number;
  _parent?: { remoteAddress?: string; remotePort?: number } | null;
}

const notLoggedBefore = (count: number | undefined) => (count ? ` (${count} more failed since the last such line, not logged)` : '');

/** Logs, at warn, the failed handshakes of a TLS server (its 'tlsClientError' events), naming `listener`. */
export function logFailedHandshakes(server: EventEmitter, logger: HandshakeFailureLogger, listener: string, intervalMs = HANDSHAKE_LOG_INTERVAL_MS): void {
  let lastLogged = -Infinity;
  let notLogged = 0;
  // Read at once, the address stays known to the connection (net.Socket keeps it) after the client has gone.
  server.on('connection', (connection: { remoteAddress?: string }) => void connection.remoteAddress);
  server.on('tlsClientError', (error: HandshakeError, tlsSocket: FailedSocket) => {
    const socket = tlsSocket.remoteAddress === undefined ? (tlsSocket._parent ?? tlsSocket) : tlsSocket;
    const now = performance.now();
    if (now - lastLogged < intervalMs) {
      notLogged += 1;
      return;
    }
    lastLogged = now;
    const details: Record<string, unknown> = { listener, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, reason: reasonOf(error) };
    if (notLogged > 0) details.notLogged = notLogged;
    notLogged = 0;
    const since = notLoggedBefore(details.notLogged as number | undefined);
    logger.warn(details, `TLS handshake failed from ${socket.remoteAddress ?? 'an unknown address'} on the ${listener} port: ${details.reason as string}${since}`);
  });
}
