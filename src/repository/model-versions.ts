/** A model's versions as a command that works on the files (quantize, eval) reads them, before any server loads it. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { versionFolders } from './model-repository.js';

/** The versions of `model`'s folder in `repository`, ascending; a model the repository lacks is refused naming the ones it has. */
export async function modelVersionsOnDisk(repository: string, model: string): Promise<number[]> {
  return versionFolders(join(repository, model)).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
    const models = await readdir(repository, { withFileTypes: true }).then(
      (found) => found.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort(),
      (unreadable: NodeJS.ErrnoException) => unreadable,
    );
    if (models instanceof Error) {
      throw new Error(models.code === 'ENOENT' ? `the model repository ${repository} does not exist` : `the model repository ${repository} cannot be read: ${models.message}`, { cause: models });
    }
    throw new Error(`no model '${model}' in the repository ${repository} (it has ${models.join(', ') || 'no models'})`);
  });
}
