// `npm start` builds only when the built output is older than what it is built from, so a second
// start serves at once instead of re-running the TypeScript compiler (tens of seconds).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The newest modification time under `path` (a file or a folder), 0 when it does not exist. */
function newest(path) {
  let stats;
  try {
    stats = statSync(path);
  } catch {
    return 0;
  }
  if (!stats.isDirectory()) return stats.mtimeMs;
  return readdirSync(path).reduce((latest, entry) => Math.max(latest, newest(join(path, entry))), stats.mtimeMs);
}

// --quiet (for `npm run nereid`, whose standard output is the command's): nothing said when up to date, and what a
// build says goes to stderr.
const quiet = process.argv.includes('--quiet');
const sources = Math.max(newest('src'), newest('tsconfig.json'), newest('tsconfig.build.json'), newest('package-lock.json'));
const built = newest('dist/cli.js');
if (built > 0 && built >= sources) {
  if (!quiet) console.log('dist/ is up to date with src/; not rebuilding (npm run build forces it)');
} else {
  (quiet ? console.error : console.log)(built === 0 ? 'building dist/ (first start)' : 'src/ changed since the last build; rebuilding dist/');
  const result = spawnSync('npm', ['run', 'build'], { stdio: ['inherit', quiet ? process.stderr : 'inherit', 'inherit'] });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
