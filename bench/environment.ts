/**
 * What a benchmark report says about where it ran: the machine, the packages, the source measured
 * (this checkout or --nereid-before's), and where its results go.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * The commit measured, how many files the working tree changes on top of it, how many of them are
 * under src/ (the server measured), and a digest of src/'s uncommitted diff to tell such states apart.
 * `root`: this checkout, or the --nereid-before one.
 */
export function sourceState(root = ROOT): { commit: string; srcTree?: string; modifiedFiles: number; modifiedSrcFiles: number; srcDiffSha1?: string } {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    // A worktree of an older commit (--nereid-before) links node_modules in, which its .gitignore of then may not cover.
    const status = git('status', '--porcelain', '--', '.', ':(exclude)node_modules');
    const srcStatus = git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean);
    const srcDiff = srcStatus.length ? git('diff', 'HEAD', '--', 'src') : '';
    return {
      commit,
      srcTree: git('rev-parse', '--short', 'HEAD:src').trim(),
      modifiedFiles: status.split('\n').filter(Boolean).length,
      modifiedSrcFiles: srcStatus.length,
      srcDiffSha1: srcDiff ? createHash('sha1').update(srcDiff).digest('hex').slice(0, 12) : undefined,
    };
  } catch {
    return { commit: 'unknown', modifiedFiles: 0, modifiedSrcFiles: 0 };
  }
}

/** "commit X + N uncommitted file(s), M of them in src/ (diff sha1 …)", for the report's header. */
export function describeSource(state: ReturnType<typeof sourceState>): string {
  return (
    `commit ${state.commit}${state.modifiedFiles ? ` + ${state.modifiedFiles} uncommitted file(s)` : ''}` +
    `${state.modifiedSrcFiles ? `, ${state.modifiedSrcFiles} of them in src/ (diff sha1 ${state.srcDiffSha1})` : ', src/ as committed'}`
  );
}

export function machine(): Record<string, unknown> {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) cpuModel = match[1].trim();
  } catch {
    // not Linux
  }
  return {
    cores: availableParallelism(),
    cpuModel,
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    fastify: packageVersion('fastify'),
    undici: packageVersion('undici'),
    platform: `${process.platform} ${process.arch}`,
    loadAverageAtStart: loadavg().map((value) => +value.toFixed(2)),
  };
}

export async function resultPath(outDir: string, model: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const date = new Date().toISOString().slice(0, 10);
  for (let n = 1; ; n++) {
    const base = join(outDir, `${model}-${date}${n === 1 ? '' : `-${n}`}`);
    if (!existsSync(`${base}.json`) && !existsSync(`${base}.md`)) return base;
  }
}
