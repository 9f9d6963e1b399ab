/**
 * The repository as it lies on disk, read without leaving it: which folders are models and versions, files named
 * inside a model folder followed through their links and kept inside the repository, and paths as clients may see them.
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { NereidError } from '../core/errors.js';

/** A path as clients may see it: relative to the repository, never the server's absolute layout. */
export function shown(root: string, path: string): string {
  return relative(root, path) || '.';
}

/** Absolute paths of the server's file system taken out of a message a client will read (they stay in the log). */
export function redacted(root: string, message: string): string {
  return message.split(root + sep).join('').split(root).join('<model repository>');
}

/**
 * A file named inside a config: a relative path inside its folder that, with every symbolic link
 * followed, still ends inside the model repository (or inside `within`, a narrower folder). Returns the real path.
 */
export async function containedFile(root: string, folder: string, file: string, what: string, within = root): Promise<string> {
  const path = resolve(folder, file);
  const rel = relative(folder, path);
  if (isAbsolute(file) || rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new RepositoryLayoutError(`${what} '${file}' must be a relative path inside ${shown(root, folder)}`);
  }
  const real = await realpath(path).catch(() => {
    throw new RepositoryLayoutError(`${what} '${file}': ${shown(root, path)} does not exist`);
  });
  if (!real.startsWith(within + sep)) {
    throw new RepositoryLayoutError(`${what} '${file}' is a link to a file outside ${within === root ? 'the model repository' : shown(root, within)}`);
  }
  return real;
}


/** A version folder with every link followed, refused when that leaves the repository. */
export async function containedFolder(root: string, folder: string): Promise<string> {
  const real = await realpath(folder);
  if (!real.startsWith(root + sep)) throw new RepositoryLayoutError(`${shown(root, folder)} is a link to a folder outside the model repository`);
  return real;
}

/** A model folder laid out wrong (no version folders): the operator's to fix, though no config given with a load caused it. */
export class RepositoryLayoutError extends Error {}

/** The versions a model folder holds, ascending. Like Triton: folders not named by a number, or whose name starts with '0', are not versions. */
export async function versionFolders(modelFolder: string): Promise<number[]> {
  const versions = await foldersIn(modelFolder, dirname(await realpath(modelFolder)), (name) => /^[1-9]\d*$/.test(name));
  return versions.map(Number).sort((a, b) => a - b);
}

/**
 * The names `accept`s of the folders in `dir`, and of the links in it that lead to a folder inside `root` (every link
 * followed): a link that leaves the repository is not followed. `leaving` hears of each such link (its name, and where
 * it leads; undefined for a link to nothing).
 */
export async function foldersIn(dir: string, root: string, accept: (name: string) => boolean, leaving?: (name: string, target: string | undefined) => void): Promise<string[]> {
  const names: string[] = [];
  for (const dirent of await readdir(dir, { withFileTypes: true })) {
    if (!accept(dirent.name)) continue;
    if (dirent.isDirectory()) names.push(dirent.name);
    else if (dirent.isSymbolicLink()) {
      const real = await realpath(join(dir, dirent.name)).catch(() => undefined);
      if (real !== undefined && !real.startsWith(root + sep)) leaving?.(dirent.name, real);
      else if (real === undefined) leaving?.(dirent.name, undefined);
      else if ((await stat(real)).isDirectory()) names.push(dirent.name);
    }
  }
  return names;
}

const LAYOUT = 'a folder holding one folder per model: <model>/<version>/model.onnx';

/**
 * The repository folder with links followed, checked before a server listens: a path to a file or to
 * nothing would otherwise show only as a raw ENOTDIR, or as a server with no models. At start a wrong path is the
 * likely mistake, and the message says what was expected there; later (`atStart` false: a poll) the folder that
 * served went away, a volume remounting, and the layout is no news. The file system's code stays in the cause.
 */
export async function repositoryFolder(path: string, { atStart = true }: { atStart?: boolean } = {}): Promise<string> {
  let missing: unknown;
  const found = await stat(path).catch((error: unknown) => {
    missing = error;
    return undefined;
  });
  if (!found) {
    throw new NereidError('INVALID_ARGUMENT', `model repository '${path}' does not exist${atStart ? ` (expected ${LAYOUT})` : ' now'}`, { cause: missing });
  }
  if (!found.isDirectory()) {
    const notFolder = Object.assign(new Error(`not a folder: ${path}`), { code: 'ENOTDIR', path });
    if (!atStart) throw new NereidError('INVALID_ARGUMENT', `model repository '${path}' is not a folder now`, { cause: notFolder });
    const model = basename(path, extname(path));
    const hint = extname(path).toLowerCase() === '.onnx' ? `; to serve this file, move it to <folder>/${model}/1/model.onnx and give <folder> as the model repository` : '';
    throw new NereidError('INVALID_ARGUMENT', `model repository '${path}' is a file, not a folder (expected ${LAYOUT}${hint})`, { cause: notFolder });
  }
  return realpath(path);
}

/** The file system's error behind `error` (itself or a cause): its code (ENOENT, EACCES, …) and the path it is about. */
export function fileSystemError(error: unknown): { code?: string; path?: string } {
  for (let at: unknown = error; at instanceof Error; at = at.cause) {
    const { code, path } = at as NodeJS.ErrnoException;
    if (code !== undefined && /^E[A-Z]+$/.test(code)) return { code, path };
  }
  return {};
}

/** ONNX files in a folder other than `expected`, for hints when a model file is not where it is looked for. */
export async function otherOnnxFiles(folder: string, expected?: string): Promise<string[]> {
  const dirents = await readdir(folder, { withFileTypes: true }).catch(() => []);
  return dirents.filter((dirent) => dirent.isFile() && extname(dirent.name).toLowerCase() === '.onnx' && dirent.name !== expected).map((dirent) => dirent.name).sort();
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
