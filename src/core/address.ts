/** How a host and port are written together, in a listener's address or a log line. */

/** `host:port`, with an IPv6 address in brackets (`[::1]:8001`), as URLs and grpc-js write it; a bracketed host is left as it is. */
export function hostAndPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}
