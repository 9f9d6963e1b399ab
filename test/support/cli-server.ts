/** The `nereid` command as a real child process, for tests of what only a whole process shows (flags, signals, exit codes). */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { staleBuildWarning } from '../../src/tools/stale-build.js';

/** A port free now (for a child that must be told its port, such as gRPC, whose port 0 means off). */
export { freePort } from './redis-server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Node's arguments that run this checkout's `nereid` command: the built dist/cli.js when no file of src/ is newer
 * (the full suite builds it first), else src/cli.ts through tsx. A command started through tsx spends about a
 * second of CPU more, and the suite starts a few hundred.
 */
export const NEREID_COMMAND: readonly string[] =
  existsSync(join(ROOT, 'dist/cli.js')) && staleBuildWarning(ROOT) === undefined ? [join(ROOT, 'dist/cli.js')] : ['--import', 'tsx', join(ROOT, 'src/cli.ts')];

/** Runs one `nereid` command to its end; `timeoutMs` kills it (default: none). */
export function runCli(args: string[], timeoutMs = 0): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...NEREID_COMMAND, ...args], { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

export interface ServedChild {
  child: ChildProcess;
  /** Everything it wrote so far, stdout and stderr. */
  output: () => string;
  /** Its HTTP(S) base URL, from its "listening on" line. */
  url: string;
  /** Its metrics URL, from its "Prometheus metrics on" line, when it serves metrics. */
  metricsUrl?: string;
  /** Resolves once `text` appears in its output. */
  waitFor: (text: string) => Promise<void>;
  /** Resolves with its exit code once it has exited. */
  exited: Promise<number | null>;
}

/** Starts a `nereid` command as a child process, its output piped. */
export function spawnCli(args: string[]): ChildProcess {
  return spawn(process.execPath, [...NEREID_COMMAND, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Starts `nereid serve` on an ephemeral HTTP port (gRPC off unless the flags say) and waits for its "server ready" line. */
export async function serveChild(repo: string, flags: string[]): Promise<ServedChild> {
  return servedBy(spawnCli(['serve', '--model-repository', repo, '--http-port', '0', '--grpc-port', '0', ...flags]));
}

/** Watches a `nereid serve` child, this checkout's or an installed package's, until its "server ready" line. */
export async function servedBy(child: ChildProcess): Promise<ServedChild> {
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
  const url = /HTTP \(KServe V2\) listening on (https?:\/\/[^\s"]+)/.exec(output)?.[1];
  if (!url) throw new Error(`no HTTP address in:\n${output}`);
  const metricsUrl = /Prometheus metrics on (https?:\/\/[^\s"]+)/.exec(output)?.[1];
  return { child, output: () => output, url, metricsUrl, waitFor, exited };
}

/** SIGTERM, and its exit. */
export async function stopChild(served: ServedChild): Promise<number | null> {
  if (served.child.exitCode === null) served.child.kill('SIGTERM');
  return served.exited;
}
