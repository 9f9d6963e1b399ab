/** Which file of a version folder a backend loads, and what to tell the operator when it is not there or not usable. */
import { constants } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Backend } from '../backends/backend.js';
import type { ModelConfig } from '../config/model-config.js';
import { REFERENCE_PROFILE_FILE } from '../monitoring/reference-profile.js';
import { QUANTIZATION_RECORD_FILE } from './quantization-record.js';
import { containedFile, containedFolder, exists, RepositoryLayoutError, shown } from './repository-layout.js';

/** Files a version folder may hold beside its model: never offered as the model file. */
const NOT_MODEL_FILES = new Set([QUANTIZATION_RECORD_FILE, REFERENCE_PROFILE_FILE]);

/** Extensions too common to say which backend reads a file (a TF.js model.json, a handler's model.js): only the backend's own file names count. */
const GENERIC_EXTENSIONS = new Set(['.json', '.js', '.mjs', '.cjs']);

export interface ModelFileSearch {
  /** The repository folder the load resolved: the file, links followed, must lie inside it. */
  root: string;
  versionFolder: string;
  backend: Backend;
  config: ModelConfig;
  /** Every backend the server has: a folder holding another's file is told which to set. */
  backends: readonly Backend[];
  /** The repository folder (links followed) a path lies in now, from which a message names the version folder. */
  rootOf: (path: string) => Promise<string>;
}

/** The version's model file: the one the config names, else the first the backend reads that the folder holds. */
export async function modelFile(search: ModelFileSearch): Promise<string> {
  const { root, backend, config, versionFolder } = search;
  const named = config.default_model_filename ?? (await modelFilename(search));
  // Code is read only from inside its own version folder, links included.
  const within = backend.runsRepositoryCode ? await containedFolder(root, versionFolder) : root;
  const contained = (filename: string) =>
    containedFile(root, versionFolder, filename, config.default_model_filename ? 'default_model_filename' : 'model file', within).catch(async (error: Error) => {
      throw new RepositoryLayoutError(`${error.message}${await modelFileHint(versionFolder, filename, backend, search.backends)}`);
    });
  let path = await contained(named);
  if (backend.modelFileInFolder !== undefined && (await stat(path)).isDirectory()) path = await contained(join(named, backend.modelFileInFolder));
  // ONNX Runtime would say only "system error number 13".
  await access(path, constants.R_OK).catch((error: NodeJS.ErrnoException) => {
    throw new RepositoryLayoutError(`model file ${shown(root, path)} cannot be read by this process (${error.code === 'EACCES' ? 'permission denied' : error.message})`);
  });
  // An engine would answer with its own internals ("ModelProto does not have a graph"); a copy cut short says so.
  if ((await stat(path)).size === 0) throw new RepositoryLayoutError(`model file ${shown(root, path)} is empty (0 bytes)`);
  return path;
}

/**
 * What a version folder without the model file holds instead: a file of the same format under another name (rename
 * it, or name it in default_model_filename), else one that another backend reads (set that backend; a file of
 * another format is never offered to this one). '' when it holds neither.
 */
async function modelFileHint(versionFolder: string, filename: string, backend: Backend, backends: readonly Backend[]): Promise<string> {
  const dirents = await readdir(versionFolder, { withFileTypes: true }).catch(() => []);
  const files = dirents.filter((dirent) => dirent.isFile() && !NOT_MODEL_FILES.has(dirent.name)).map((dirent) => dirent.name).sort();
  const extension = extname(filename).toLowerCase();
  const sameFormat = files.filter((file) => file !== filename && extension !== '' && extname(file).toLowerCase() === extension);
  if (sameFormat.length > 0) return `; the folder holds ${sameFormat.join(', ')}: rename it to ${filename} or set default_model_filename: ${sameFormat[0]} in the config`;
  for (const other of backends) {
    const names = other.modelFilenames ?? (other.defaultModelFilename ? [other.defaultModelFilename] : []);
    if (other === backend || names.length === 0) continue;
    // A file of a format only that backend reads (any *.onnx); a name as common as *.json or *.js counts only as the backend's own name.
    const distinct = names.map((name) => extname(name).toLowerCase()).filter((ext) => ext !== '' && !GENERIC_EXTENSIONS.has(ext));
    const found = files.filter((file) => names.includes(file) || distinct.includes(extname(file).toLowerCase()));
    if (found.length > 0) {
      return `; the folder holds ${found.join(', ')}, which backend '${other.name}' reads, not '${backend.name}': set backend: "${other.name}" in the model's config`;
    }
  }
  return '';
}

/** The first of the backend's model file names the version folder holds (the first name when it holds none, for the message). */
async function modelFilename({ backend, versionFolder, rootOf }: ModelFileSearch): Promise<string> {
  const names = backend.modelFilenames ?? [backend.defaultModelFilename];
  for (const name of names) if (await exists(join(versionFolder, name))) return name;
  if (names.length > 1) throw new RepositoryLayoutError(`${shown(await rootOf(versionFolder), versionFolder)} holds no model file: backend '${backend.name}' reads ${names.join(' or ')}`);
  return names[0];
}
