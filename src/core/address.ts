/** How a host and port are written together, in a listener's address or a log line. */

/**
 * Whether a client's address (a socket's remoteAddress, or a gRPC peer: `ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`,
 * `unix:/run/x.sock`) is this machine's own: 127.0.0.0/8, ::1, either as an IPv4-mapped IPv6 address, or a Unix socket.
 */
export function isLoopbackPeer(peer: string): boolean {
  if (peer.startsWith('unix:')) return true;
  const address = peer.replace(/^ipv[46]:/, '').replace(/^\[([^\]]*)\](?::\d+)?$/, '$1').replace(/^(\d+\.\d+\.\d+\.\d+):\d+$/, '$1');
  const ipv4 = address.replace(/^::ffff:/i, '');
  return /^127\.\d+\.\d+\.\d+$/.test(ipv4) || address === '::1';
}

/** `host:port`, with an IPv6 address in brackets (`[::1]:8001`), as URLs and grpc-js write it; a bracketed host is left as it is. */
export function hostAndPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}
