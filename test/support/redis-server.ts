/**
 * A real `redis-server` for tests: started on a free loopback port with persistence off, ready once
 * it answers PING, stopped (killed) by `stop()` and started again on the same port by `restart()`.
 * Nothing is skipped when the binary is missing: the test fails and says how to install it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { delimiter, join } from 'node:path';

export interface RedisTestServer {
  port: number;
  /** Kills the server (SIGKILL by default, like a crash) and waits until the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a fresh server on the same port (stopping the running one first) and waits until it answers PING. */
  restart(): Promise<void>;
  /** True while a server process is running. */
  readonly running: boolean;
  /** The running server's process id (undefined while stopped), e.g. to pause it with SIGSTOP. */
  readonly pid: number | undefined;
}

/** Finds `redis-server` on PATH (or at Debian's /usr/bin/redis-server), else fails with the way to install it. */
export function redisServerBinary(): string {
  const candidates = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, 'redis-server')), '/usr/bin/redis-server'];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    'redis-server is not installed (looked on PATH and at /usr/bin/redis-server). The Redis cache tests need a real one: ' +
      'run `npm test` (it installs it first, via scripts/ensure-system-deps.mjs) or `sudo apt-get install -y redis-server`.',
  );
}

/** A loopback port nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** One PING over a raw socket; true when the answer is +PONG. */
function ping(port: number, timeoutMs = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let answer = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      answer += chunk.toString('utf8');
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
  });
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startRedisServer(options: { startTimeoutMs?: number } = {}): Promise<RedisTestServer> {
  const binary = redisServerBinary();
  const startTimeoutMs = options.startTimeoutMs ?? 5000;
  let port = 0;
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const proc = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    proc.stdout!.on('data', (chunk) => (output = (output + chunk).slice(-4000)));
    proc.stderr!.on('data', (chunk) => (output = (output + chunk).slice(-4000)));
    let exited: string | undefined;
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      exited = `exited with ${signal ?? `code ${code}`}`;
    });
    const spawnError = new Promise<Error>((resolve) => proc.once('error', resolve));
    running.add(proc);
    child = proc;
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      const failed = await Promise.race([spawnError, new Promise<undefined>((resolve) => setTimeout(resolve, 20))]);
      if (failed) throw new Error(`could not start ${binary}: ${failed.message}`);
      if (exited) throw new Error(`redis-server on port ${port} ${exited} before answering PING:\n${output}`);
      if (await ping(port)) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server on port ${port} did not answer PING within ${startTimeoutMs} ms:\n${output}`);
      }
    }
  };

  const stop = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await gone;
  };

  // Another process may take the probed port before redis binds it; try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (error) {
      await stop();
      if (attempt >= 3) throw error;
    }
  }

  return {
    get port() {
      return port;
    },
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    stop,
    async restart() {
      await stop();
      await launch();
    },
  };
}
