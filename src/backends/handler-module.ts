/**
 * Handler files are written by a model's author, not by us: a failure to load one is said in terms
 * of what to change in it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Why the handler's file did not load, saying what to do: a CommonJS model.js inside a package that is
 * "type": "module" is read as an ES module; a syntax error names its file (Node's message does not).
 */
export function moduleLoadError(error: Error, file: string): Error {
  const name = basename(file);
  if (/require is not defined in ES module scope|module is not defined in ES module scope|exports is not defined in ES module scope/.test(error.message)) {
    return commonJsReadAsModule(name, error);
  }
  if (error instanceof SyntaxError) {
    const line = syntaxErrorLine(file);
    return new Error(`${name}${line ? ` line ${line}` : ''}: SyntaxError: ${error.message}`, { cause: error });
  }
  return error;
}

function commonJsReadAsModule(name: string, cause?: Error): Error {
  return new Error(
    `${name} uses require/module.exports (CommonJS) but is read as an ES module, as a package.json above it says "type": "module": rename it model.cjs, or write it as an ES module (export function execute…)`,
    cause ? { cause } : undefined,
  );
}

/**
 * Why a handler file that loaded exports no execute(): a model.js written as CommonJS under a "type": "module"
 * package.json, which plain Node refuses to import (see moduleLoadError) but a loader such as tsx (running Nereid from
 * source) imports with nothing exported, is told as Node's refusal is; otherwise that no execute() is exported.
 */
export function missingExecuteError(file: string): Error {
  if (file.endsWith('.js') && nearestPackageType(dirname(file)) === 'module') {
    const source = readFileSync(file, 'utf8');
    if (/\bmodule\.exports\b|(?:^|[^.\w$])exports\.[\w$]+\s*=|(?:^|[^.\w$])require\s*\(/m.test(source) && !/^\s*export\s/m.test(source)) {
      return commonJsReadAsModule(basename(file));
    }
  }
  return new Error('the model file exports no execute(requests) function');
}

/** The "type" of the package.json nearest above a folder, as Node reads it to tell a .js file's module system. */
function nearestPackageType(folder: string): unknown {
  for (let at = folder; ; at = dirname(at)) {
    const manifest = join(at, 'package.json');
    if (existsSync(manifest)) {
      try {
        return (JSON.parse(readFileSync(manifest, 'utf8')) as { type?: unknown }).type;
      } catch {
        return undefined;
      }
    }
    if (dirname(at) === at) return undefined;
  }
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

