/** A model's versions as a command that works on the files (quantize, eval) reads them, before any server loads it. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { repositoryFolder, versionFolders } from './repository-layout.js';

/**
 * The versions of `model`'s folder in `repository`, ascending; a model the repository lacks is refused naming the ones
 * it has, and a repository that is missing or a file as the server refuses it.
 */
export async function modelVersionsOnDisk(repository: string, model: string): Promise<number[]> {
  return versionFolders(join(repository, model)).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
    await repositoryFolder(repository);
    const models = (await readdir(repository, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
    throw new Error(`no model '${model}' in the repository ${repository} (it has ${models.join(', ') || 'no models'})`);
  });
}
