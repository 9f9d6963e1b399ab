/**
 * Handler files are written by a model's author, not by us: a failure to load one is said in terms
 * of what to change in it.
 */
import { execFileSync } from 'node:child_process';
import { basename } from 'node:path';

/**
 * Why the handler's file did not load, saying what to do: a CommonJS model.js inside a package that is
 * "type": "module" is read as an ES module; a syntax error names its file (Node's message does not).
 */
export function moduleLoadError(error: Error, file: string): Error {
  const name = basename(file);
  if (/require is not defined in ES module scope|module is not defined in ES module scope|exports is not defined in ES module scope/.test(error.message)) {
    return new Error(
      `${name} uses require/module.exports (CommonJS) but is read as an ES module, as a package.json above it says "type": "module": rename it model.cjs, or write it as an ES module (export function execute…)`,
      { cause: error },
    );
  }
  if (error instanceof SyntaxError) {
    const line = syntaxErrorLine(file);
    return new Error(`${name}${line ? ` line ${line}` : ''}: SyntaxError: ${error.message}`, { cause: error });
  }
  return error;
}

/**
 * The line of a file's syntax error. An import's SyntaxError carries no location (Node prints one only for an error it
 * does not catch), so the file is checked once more with `node --check`, which names it: a load that already failed
 * can spend the ~50 ms.
 */
function syntaxErrorLine(file: string): number | undefined {
  try {
    execFileSync(process.execPath, ['--check', file], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
    return undefined;
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '');
    const at = /^.*:(\d+)\r?\n/.exec(stderr);
    return at ? Number(at[1]) : undefined;
  }
}

