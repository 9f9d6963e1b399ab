// A test reporter beside TAP: when the run ends, each file's wall time from its first event to its last, longest first,
// and when it started — to see which files the suite's time goes to, and whether one runs alone at the end.
import { relative } from 'node:path';

export default async function* fileTimes(source) {
  const spans = new Map();
  let first = Infinity;
  for await (const event of source) {
    const file = event.data?.file;
    // A file is enqueued when the run starts; it starts when it is dequeued, which its first other event marks.
    if (!file || event.type === 'test:enqueue') continue;
    const now = Date.now();
    first = Math.min(first, now);
    const span = spans.get(file) ?? { start: now, end: now };
    span.end = now;
    spans.set(file, span);
  }
  const rows = [...spans].map(([file, { start, end }]) => ({ file: relative(process.cwd(), file), seconds: (end - start) / 1000, from: (start - first) / 1000 }));
  rows.sort((a, b) => b.seconds - a.seconds);
  yield `# file wall times (s, started at s), ${rows.length} files:\n`;
  for (const { file, seconds, from } of rows) yield `#   ${seconds.toFixed(1).padStart(6)} ${from.toFixed(0).padStart(5)} ${file}\n`;
}
