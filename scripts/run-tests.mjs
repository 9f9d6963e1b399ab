// Node 20's test runner does not expand globs, so collect the test files here.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(dir) {
  const found = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...collect(path));
    else if (entry.endsWith('.test.ts')) found.push(path);
  }
  return found;
}

const roots = process.argv.length > 2 ? process.argv.slice(2) : ['src', 'test'];
const files = roots.flatMap((root) => (statSync(root).isDirectory() ? collect(root) : [root])).sort();
// A `.timed.test.ts` file compares measured speeds (the order only); run beside another file on
// a two-core machine, it measures the contention instead, so those files run after, one at a time.
const timed = files.filter((file) => file.endsWith('.timed.test.ts'));
const shared = files.filter((file) => !timed.includes(file));
// The whole suite type-checks first, and builds dist/: the suite starts the `nereid` command a few hundred times, and
// built each start costs about a second of CPU less than through tsx (test/support/cli-server.ts picks dist/ when it
// is as new as src/). Both compilers are single-threaded, so they run side by side. Named files run as they are.
if (process.argv.length <= 2) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const steps = [[tsc, '-p', 'tsconfig.json', '--noEmit'], ['scripts/build-if-stale.mjs']].map(
    (args) => new Promise((resolve) => spawn(process.execPath, args, { stdio: 'inherit' }).on('exit', (code) => resolve(code ?? 1))),
  );
  const failed = (await Promise.all(steps)).find((code) => code !== 0);
  if (failed !== undefined) process.exit(failed);
}
let status = 0;
for (const [group, concurrency] of [[shared, 2], [timed, 1]]) {
  if (group.length === 0) continue;
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...group], { stdio: 'inherit' });
  status ||= result.status ?? 1;
}
process.exit(status);
