/**
 * A file an operator named with a flag or setting, read whole: when it cannot be read, the message
 * names the flag and says why in words (no such file, permission denied), where Node's error names
 * neither the flag nor, for a person, the fix.
 */
import { readFile } from 'node:fs/promises';

/** Reads `path`, given as `name` (e.g. --tls-key); throws "<name> <path>: cannot read it (<why>)". */
export async function readNamedFile(path: string, name: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'a folder, not a file' : (error as Error).message;
    throw new Error(`${name} ${path}: cannot read it (${why})`, { cause: error });
  }
}
