import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { moduleLoadError } from './handler-module.js';

/** The error plain Node (no loader hooks, as `nereid serve` runs) gives importing a file: its class, message and stack. */
async function importError(file: string): Promise<Error> {
  // A script file rather than -e: an -e script puts `module` and `require` on globalThis, where an ES module would find them.
  const runner = join(dirname(file), 'import-it.mjs');
  await writeFile(runner, `import(${JSON.stringify(pathToFileURL(file).href)}).then(() => console.log('null'), (e) => console.log(JSON.stringify({ name: e.name, message: e.message, stack: e.stack })));\n`);
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [runner], (error, stdout) => {
      if (error) return reject(error);
      const got = JSON.parse(stdout) as { name: string; message: string; stack: string } | null;
      if (!got) return reject(new Error(`${file} imported without an error`));
      const rebuilt = got.name === 'SyntaxError' ? new SyntaxError(got.message) : new Error(got.message);
      rebuilt.stack = got.stack;
      resolve(rebuilt);
    }),
  );
}

test("Node's own errors for a handler file become what to change: CommonJS under a module package, a syntax error's file and line", async (t) => {
  const folder = await mkdtemp(join(tmpdir(), 'nereid-handler-module-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  await writeFile(join(folder, 'package.json'), JSON.stringify({ type: 'module' }));
  await writeFile(join(folder, 'model.js'), 'module.exports = { execute: (requests) => requests };\n');
  await writeFile(join(folder, 'model.mjs'), 'export const execute = (requests) => requests;\n\nexport function execute( {\n');

  const commonJs = moduleLoadError(await importError(join(folder, 'model.js')), join(folder, 'model.js'));
  assert.match(commonJs.message, /^model\.js uses require\/module\.exports \(CommonJS\) but is read as an ES module, as a package\.json above it says "type": "module": rename it model\.cjs/);

  const syntax = moduleLoadError(await importError(join(folder, 'model.mjs')), join(folder, 'model.mjs'));
  assert.match(syntax.message, /^model\.mjs line 3: SyntaxError: Identifier 'execute' has already been declared/);

  const other = new Error('Cannot find module ./helper.js');
  assert.equal(moduleLoadError(other, join(folder, 'model.mjs')), other, 'other failures pass through as they are');
});
