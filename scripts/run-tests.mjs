// Node 20's test runner does not expand globs, so collect the test files here.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { statSync } from 'node:fs';
import { bundledUnitTests, testFilesIn } from './test-files.mjs';

const roots = process.argv.length > 2 ? process.argv.slice(2) : ['src', 'test'];
const files = roots.flatMap((root) => (statSync(root).isDirectory() ? testFilesIn(root) : [root])).sort();
// A `.timed.test.ts` file compares measured speeds (the order only); run beside another file on
// a two-core machine, it measures the contention instead, so those files run after, one at a time.
const timed = files.filter((file) => file.endsWith('.timed.test.ts'));
const whole = process.argv.length <= 2;
// The whole suite runs src/'s unit tests in one process, first (the longest file), beside the others.
const bundled = new Set(whole ? bundledUnitTests() : []);
const shared = [...(whole ? ['scripts/unit-tests-in-one-process.mjs'] : []), ...files.filter((file) => !timed.includes(file) && !bundled.has(file))];
// The whole suite builds dist/ first: the suite starts the `nereid` command a few hundred times, and built each start
// costs about a second of CPU less than through tsx (test/support/cli-server.ts picks dist/ when it is current). The
// type-check needs nothing of the suite, so it runs beside the shared group, its report held until that group ends so
// that it does not land inside the test output. Named files run as they are.
let typeCheck;
if (whole) {
  const build = spawnSync(process.execPath, ['scripts/build-if-stale.mjs'], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  typeCheck = new Promise((resolve) => {
    const child = spawn(process.execPath, [tsc, '-p', 'tsconfig.json', '--noEmit'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let report = '';
    child.stdout.on('data', (chunk) => (report += chunk));
    child.stderr.on('data', (chunk) => (report += chunk));
    child.on('exit', (code) => resolve({ code: code ?? 1, report }));
  });
}
// TAP as before, then each file's wall time when the group ends (scripts/file-times-reporter.mjs).
const REPORTERS = ['--test-reporter=tap', '--test-reporter-destination=stdout', '--test-reporter=./scripts/file-times-reporter.mjs', '--test-reporter-destination=stdout'];
/** Runs a group of test files; its exit status. Not spawnSync: the type-check's output is read while a group runs. */
function runGroup(group, concurrency) {
  if (group.length === 0) return Promise.resolve(0);
  return new Promise((resolve) =>
    spawn(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...REPORTERS, ...group], { stdio: 'inherit' }).on('exit', (code) => resolve(code ?? 1)),
  );
}

const statuses = [await runGroup(shared, 2)];
// The timed files compare speeds: the type-check must be over before they start.
if (typeCheck) {
  const { code, report } = await typeCheck;
  console.log(code === 0 ? '# type-check (tsc --noEmit): no errors' : `# type-check (tsc --noEmit) failed:\n${report}`);
  statuses.push(code);
}
statuses.push(await runGroup(timed, 1));
const status = statuses.find((code) => code !== 0) ?? 0;
process.exit(status);
