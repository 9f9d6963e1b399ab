// Node 20's test runner does not expand globs, so collect the test files here.
import { spawnSync } from 'node:child_process';
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
// The suite starts the `nereid` command a few hundred times; built, each start costs about a second of CPU less than
// through tsx (test/support/cli-server.ts picks dist/ when it is as new as src/). Named files run as they are.
if (process.argv.length <= 2) {
  const build = spawnSync(process.execPath, ['scripts/build-if-stale.mjs'], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
let status = 0;
for (const [group, concurrency] of [[shared, 2], [timed, 1]]) {
  if (group.length === 0) continue;
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...group], { stdio: 'inherit' });
  status ||= result.status ?? 1;
}
process.exit(status);
