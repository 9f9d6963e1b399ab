// A test reporter beside TAP: when the run ends, the time each file's top-level tests took (their duration_ms summed;
// a file-level before() hook is outside them), longest first — to see which files the suite's minutes go to. Not wall
// spans: the runner reports a file's events only after the files before it, so their timestamps say little.
import { relative } from 'node:path';

export default async function* fileTimes(source) {
  const seconds = new Map();
  for await (const event of source) {
    if ((event.type !== 'test:pass' && event.type !== 'test:fail') || event.data.nesting !== 0 || !event.data.file) continue;
    const file = relative(process.cwd(), event.data.file);
    seconds.set(file, (seconds.get(file) ?? 0) + (event.data.details?.duration_ms ?? 0) / 1000);
  }
  const rows = [...seconds].sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((sum, [, taken]) => sum + taken, 0);
  yield `# time in each file's tests (s), ${rows.length} files, ${total.toFixed(0)} s in all:\n`;
  for (const [file, taken] of rows) yield `#   ${taken.toFixed(1).padStart(6)} ${file}\n`;
}
