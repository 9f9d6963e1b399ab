/** Files a command will write, checked before its work starts. */
import { access, mkdir, open, rm, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';

/**
 * Refuses, before a long run, a file it would fail to write at the end: a folder, or a file that cannot be created or
 * opened. The file is opened (and removed again if new) rather than its folder checked with access(), which lets root
 * "write" where no file can be made, as in /proc.
 */
export async function checkWritableFile(flag: string, file: string): Promise<void> {
  if (/[\\/]$/.test(file) || (await stat(file).catch(() => undefined))?.isDirectory()) {
    throw new Error(`${flag} ${file}: is a folder; expected a file name, e.g. ${join(file, `chart${extname(file) || '.svg'}`)}`);
  }
  const existed = await access(file).then(() => true, () => false);
  try {
    await (await open(file, 'a')).close();
  } catch (error) {
    throw new Error(`${flag} ${file}: its folder does not exist or cannot be written (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); expected a file in a folder this user can write to`);
  }
  if (!existed) await rm(file, { force: true });
}

/**
 * Makes --log-file's folder (each missing level in turn, so a path through a file or a pseudo file system such as
 * /proc fails at once, naming the flag, where a recursive mkdir reports EEXIST or never returns) and checks that the
 * file can be opened for appending.
 */
export async function prepareLogFile(file: string): Promise<void> {
  const refuse = (problem: string): never => {
    throw new Error(`--log-file ${file}: ${problem}; expected a file in a folder this user can write to`);
  };
  if (/[\\/]$/.test(file) || (await stat(file).catch(() => undefined))?.isDirectory()) refuse('is a folder');
  const missing: string[] = [];
  let folder = dirname(resolve(file));
  for (;;) {
    const found = await stat(folder).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : refuse(`${folder} cannot be read (${error.code})`)));
    if (found) {
      if (!found.isDirectory()) refuse(`${folder} is a file, not a folder`);
      break;
    }
    missing.unshift(folder);
    const parent = dirname(folder);
    if (parent === folder) break;
    folder = parent;
  }
  for (const level of missing) {
    await mkdir(level).catch((error: NodeJS.ErrnoException) => refuse(`its folder ${level} cannot be created (${error.code ?? error.message})`));
  }
  await open(file, 'a').then(
    (handle) => handle.close(),
    (error: NodeJS.ErrnoException) => refuse(`cannot be opened for appending (${error.code ?? error.message})`),
  );
}
