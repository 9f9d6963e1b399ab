/** `nereid serve` as a real child process, for tests of what only a whole process shows (flags, signals, exit). */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';

/** A port free now (for a child that must be told its port, such as gRPC, whose port 0 means off). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

export interface ServedChild {
  child: ChildProcess;
  /** Everything it wrote so far, stdout and stderr. */
  output: () => string;
  /** Its HTTP base URL, from its "listening on" line. */
  url: string;
  /** Resolves once `text` appears in its output. */
  waitFor: (text: string) => Promise<void>;
  /** Resolves with its exit code once it has exited. */
  exited: Promise<number | null>;
}

/** Starts `nereid serve` on an ephemeral HTTP port (gRPC off unless the flags say) and waits for its "server ready" line. */
export async function serveChild(repo: string, flags: string[]): Promise<ServedChild> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', 'serve', '--model-repository', repo, '--http-port', '0', '--grpc-port', '0', ...flags],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const watchers = new Set<() => void>();
  const collect = (chunk: Buffer) => {
    output += chunk;
    for (const watch of watchers) watch();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const watch = () => {
        if (!output.includes(text)) return;
        watchers.delete(watch);
        resolve();
      };
      watchers.add(watch);
      void exited.then((code) => {
        if (watchers.delete(watch)) reject(new Error(`nereid serve exited with ${code} before writing '${text}':\n${output}`));
      });
      watch();
    });
  await waitFor('server ready');
  const url = /HTTP \(KServe V2\) listening on (http:\/\/[^\s"]+)/.exec(output)?.[1];
  if (!url) throw new Error(`no HTTP address in:\n${output}`);
  return { child, output: () => output, url, waitFor, exited };
}

/** SIGTERM, and its exit. */
export async function stopChild(served: ServedChild): Promise<number | null> {
  if (served.child.exitCode === null) served.child.kill('SIGTERM');
  return served.exited;
}
