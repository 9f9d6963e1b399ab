/**
 * A clone runs `node dist/cli.js` as easily as `npm start`, but only the latter rebuilds: a build
 * older than the sources then answers with behaviour the sources no longer have, silently. The CLI
 * says so when it runs from a checkout's dist/ (an installed package ships no src/).
 */
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** The newest file under `folder` with its modification time; undefined when the folder does not exist. */
function newestFile(folder: string): { path: string; mtimeMs: number } | undefined {
  let entries;
  try {
    entries = readdirSync(folder, { recursive: true, withFileTypes: true });
  } catch {
    return undefined;
  }
  let newest: { path: string; mtimeMs: number } | undefined;
  for (const entry of entries) {
    // Tests are not built: editing one leaves the build as fresh as it was.
    if (!entry.isFile() || entry.name.endsWith('.test.ts')) continue;
    // parentPath is Node 20.12's name for what 20.1 called path.
    const folderOfEntry = (entry as { parentPath?: string }).parentPath ?? (entry as { path?: string }).path ?? folder;
    const path = join(folderOfEntry, entry.name);
    // A file removed since the listing is no longer a source.
    const mtimeMs = statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0;
    if (!newest || mtimeMs > newest.mtimeMs) newest = { path, mtimeMs };
  }
  return newest;
}

/** A warning when `root`'s dist/cli.js is older than a file in its src/, else undefined. */
export function staleBuildWarning(root: string): string | undefined {
  let builtMs: number;
  try {
    builtMs = statSync(join(root, 'dist', 'cli.js')).mtimeMs;
  } catch {
    return undefined;
  }
  const newest = newestFile(join(root, 'src'));
  if (!newest || newest.mtimeMs <= builtMs) return undefined;
  return `dist/ was built before ${relative(root, newest.path)} last changed, so this run may not do what the sources say; run \`npm run build\` (\`npm start\` rebuilds by itself)`;
}
