/**
 * A list of a model's versions as the tools that work on named versions (eval, tune) take it: folder names 1, 2, …
 * Whether each has a folder is checked where the repository is read.
 */
import { z } from 'zod';

export const versionListSchema = z.array(z.string()).superRefine((versions, context) => {
  // Said of the list, quoting what arrived: '--versions.1' names no flag a person typed.
  const wrong = versions.filter((version) => !/^[1-9]\d*$/.test(version));
  if (wrong.length > 0) context.addIssue({ code: 'custom', message: `${wrong.map((version) => `'${version}'`).join(', ')} ${wrong.length === 1 ? 'is not a version' : 'are not versions'}: a version is a positive integer, e.g. --versions 1,2` });
});
