/**
 * What a model folder holds, as one digest of every file's content (configs, version folders,
 * labels, warmup files), so a poll reloads a model when a byte changed and not when a file was
 * only touched. Digests are remembered by each file's size, mtime, ctime and inode: an unchanged
 * file is not read again, and a write that restores the mtime still changes the ctime.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';

/** SHA-256 of a file, streamed so a large model is not held in memory twice. */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Folders deeper than this inside a model folder, and files beyond this count, are not part of a model. */
const MAX_DEPTH = 4;
const MAX_FILES = 10_000;

/**
 * The files in `folder` and its folders, relative to it, hidden entries aside unless `hidden`; a link counts as what it
 * points to. `complete` is false when folders deeper than MAX_DEPTH or files beyond MAX_FILES were left out.
 */
async function filesIn(folder: string, hidden = false): Promise<{ files: string[]; complete: boolean }> {
  const files: string[] = [];
  let complete = true;
  const collect = async (prefix: string, depth: number): Promise<void> => {
    const entries = await readdir(join(folder, prefix), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!hidden && entry.name.startsWith('.')) continue;
      if (files.length >= MAX_FILES) {
        complete = false;
        continue;
      }
      const relative = prefix ? join(prefix, entry.name) : entry.name;
      // A link counts as what it points to, so a model file linked from elsewhere is followed like the loader follows it.
      const info = entry.isSymbolicLink() ? await stat(join(folder, relative)).catch(() => undefined) : entry;
      if (info?.isDirectory()) {
        if (depth < MAX_DEPTH) await collect(relative, depth + 1);
        else complete = false;
      } else if (info?.isFile()) {
        files.push(relative);
      }
    }
  };
  await collect('', 0);
  return { files: files.sort(), complete };
}

/** Size, mtime, ctime and inode of a file (links followed): what changes when it is written. */
async function stampOf(path: string): Promise<string> {
  const info = await stat(path).catch(() => undefined);
  return info ? `${info.size}:${info.mtimeMs}:${info.ctimeMs}:${info.ino}` : 'unreadable';
}

/**
 * Each file of `folder` but those `skip` names, hidden ones included, by path, size, mtime, ctime and inode, as one
 * string: equal stamps mean no file was written, added or removed since (a file only touched counts as written; so does
 * an editor's swap file). Reads no content.
 */
export async function folderStamps(folder: string, skip: ReadonlySet<string>): Promise<string> {
  const { files, complete } = await filesIn(folder, true);
  // What was left out could have changed unseen: such a folder never stamps equal, so a load reads it all again.
  if (!complete) return `incomplete ${performance.now()} ${Math.random()}`;
  const hash = createHash('sha256');
  for (const relative of files) {
    if (skip.has(relative)) continue;
    const path = join(folder, relative);
    hash.update(`${relative}\0${await stampOf(path)}\n`);
    // A linked file is read beside its target (an ONNX model's external data, in its folder or below): those count too.
    if ((await lstat(path).catch(() => undefined))?.isSymbolicLink()) {
      const target = dirname(await realpath(path).catch(() => path));
      const beside = await filesIn(target, true);
      if (!beside.complete) return `incomplete ${performance.now()} ${Math.random()}`;
      for (const file of beside.files) hash.update(`${relative} → ${file}\0${await stampOf(join(target, file))}\n`);
    }
  }
  return hash.digest('hex');
}

export class FolderFingerprints {
  private readonly digests = new Map<string, { stamp: string; digest: string }>();

  /** The digest of everything in `folder` (hidden entries aside); a file that vanishes while read counts as a change, not an error. */
  async of(folder: string): Promise<string> {
    const { files } = await filesIn(folder);
    const hash = createHash('sha256');
    const seen = new Set<string>();
    for (const relative of files) {
      const path = join(folder, relative);
      seen.add(path);
      hash.update(`${relative}\0${await this.digestOf(path)}\n`);
    }
    for (const path of this.digests.keys()) if (path.startsWith(folder + sep) && !seen.has(path)) this.digests.delete(path);
    return hash.digest('hex');
  }

  /** Forgets the files of a folder that is gone ('' names none: a model that had no folder of its own). */
  forget(folder: string): void {
    if (folder === '') return;
    for (const path of this.digests.keys()) if (path.startsWith(folder + sep)) this.digests.delete(path);
  }

  private async digestOf(path: string): Promise<string> {
    try {
      const info = await stat(path);
      const stamp = `${info.size}:${info.mtimeMs}:${info.ctimeMs}:${info.ino}`;
      const known = this.digests.get(path);
      if (known?.stamp === stamp) return known.digest;
      const digest = await fileDigest(path);
      this.digests.set(path, { stamp, digest });
      return digest;
    } catch {
      this.digests.delete(path);
      return 'unreadable';
    }
  }
}
