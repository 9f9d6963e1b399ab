/** The rules of a model's name: a plain folder name directly inside the repository, never a path, a parent or a URL. */
import { invalidArgument, quoteName } from '../core/errors.js';

/** The longest model name: a folder name, as most file systems bound it. */
export const MAX_MODEL_NAME = 255;

/**
 * Which rule of a model's name `name` breaks, in words an operator or client can act on; undefined when it breaks none.
 * `source`: where the name was read, for whom the rule of its letters is worded: a client's request (told that models
 * are folders), or a folder of the repository (told that a model's name is its folder's).
 */
export function modelNameProblem(name: string, source: 'request' | 'folder' = 'request'): string | undefined {
  if (!/^[A-Za-z0-9_.-]*$/.test(name)) {
    return source === 'folder'
      ? "a model's name uses letters, digits, '_', '-' and '.' only, as the folder's name must"
      : "use letters, digits, '_', '-' and '.' only (models are folders directly inside the repository)";
  }
  if (name === '') return 'a model name may not be empty';
  // Hidden folders, and names a command line would read as flags.
  if (name.startsWith('.') || name.startsWith('-')) return "a model name may not start with '.' or '-'";
  if (name.includes('..')) return "a model name may not contain '..'";
  if (name.length > MAX_MODEL_NAME) return `a model name has at most ${MAX_MODEL_NAME} characters, this one ${name.length}`;
  return undefined;
}

/** Model names come from clients: only plain folder names, never paths, parents or URLs. */
export function checkModelName(name: string): void {
  const problem = modelNameProblem(name);
  if (problem !== undefined) throw invalidArgument(`invalid model name ${quoteName(name)}: ${problem}`);
}
