/**
 * HTTP/1.1 over a raw socket, for tests that must control what a client sends and when: a head
 * without its body, a body in parts, several requests on one keep-alive connection.
 */
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
}

export class RawConnection {
  /** Resolves once the server (or the client) has closed the connection. */
  readonly closed: Promise<void>;
  private readonly socket: Socket;
  private received = '';
  private readonly waiting: { resolve: (answer: RawAnswer) => void; reject: (error: Error) => void }[] = [];

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.socket = connect(Number(port), hostname);
    this.socket.on('data', (chunk) => {
      this.received += chunk.toString('latin1');
      this.deliver();
    });
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.socket.on('error', () => undefined);
    void this.closed.then(() => {
      for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(`connection closed before an answer; received: ${JSON.stringify(this.received)}`));
    });
  }

  /** Writes a request's head (and `body`, if given); resolves with the next answer on the connection. */
  request(method: string, path: string, headers: Record<string, string | number>, body?: Buffer | string): Promise<RawAnswer> {
    const head = [`${method} ${path} HTTP/1.1`, 'host: localhost', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), '', ''].join('\r\n');
    this.socket.write(head);
    if (body !== undefined) this.socket.write(body);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.deliver();
    });
  }

  send(bytes: Buffer | string): void {
    this.socket.write(bytes);
  }

  /** Resolves with the next answer on the connection, for a request written with send(). */
  answer(): Promise<RawAnswer> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.deliver();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private deliver(): void {
    while (this.waiting.length > 0) {
      const end = this.received.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...lines] = this.received.slice(0, end).split('\r\n');
      const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
      const length = Number(headers['content-length'] ?? 0);
      if (this.received.length - end - 4 < length) return;
      const body = this.received.slice(end + 4, end + 4 + length);
      this.received = this.received.slice(end + 4 + length);
      this.waiting.shift()!.resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
    }
  }
}
