// Which test files the suite runs, and how: shared by run-tests.mjs and the unit-test bundle it starts.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Every `.test.ts` file under `dir`, sorted. */
export function testFilesIn(dir) {
  const found = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...testFilesIn(path));
    else if (entry.endsWith('.test.ts')) found.push(path);
  }
  return found.sort();
}

/** A test file that measures its own process (its heap, say) says so in a line `// test: own process`: it is not bundled. */
const OWN_PROCESS = /^\/\/ test: own process\b/m;

/**
 * The unit tests under src/ that may share one process: each of them costs a process start and a TypeScript load of
 * its imports when run alone (about a second of CPU each, a minute and a half for the lot on two cores), which is
 * more than most of them take to run.
 */
export function bundledUnitTests() {
  return testFilesIn('src').filter((file) => !file.endsWith('.timed.test.ts') && !OWN_PROCESS.test(readFileSync(file, 'utf8')));
}
