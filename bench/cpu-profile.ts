/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`) over chosen time windows: self time per
 * function, self time per area (Nereid's src/ files, each package, node internals, GC, idle), and
 * inclusive time of Nereid's own functions. Percentages are of the main thread's wall time in the
 * windows, so "(idle)" is what the event loop had to spare.
 *
 * Also usable alone: node --import tsx bench/cpu-profile.ts FILE.cpuprofile
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Window {
  startNs: bigint;
  endNs: bigint;
}

export interface ProfileEntry {
  name: string;
  ms: number;
  percent: number;
}

export interface ProfileSummary {
  file: string;
  windowMs: number;
  /** Samples fell inside the windows; false means the whole profile was used. */
  windowed: boolean;
  selfByFunction: ProfileEntry[];
  selfByArea: ProfileEntry[];
  inclusiveNereid: ProfileEntry[];
}

const ROOT = resolve(process.cwd());

function shortUrl(url: string): string {
  let path = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  if (path.startsWith(ROOT + '/')) path = path.slice(ROOT.length + 1);
  return path;
}

/** Nereid's own code: src/ as tsx loads it, dist/ as the bench and users run it. */
function isNereidSource(url: string): boolean {
  return url.startsWith('src/') || url.startsWith('dist/');
}

function areaOf(frame: ProfileNode['callFrame']): string {
  const url = shortUrl(frame.url);
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native / builtins)';
  if (url.startsWith('node:')) return 'node internals';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `pkg ${pkg[1]}`;
  return url;
}

/**
 * Name and file of a frame. Files loaded through tsx carry no useful line numbers (the profile sees
 * the transformed code), so anonymous functions are told apart by their column in that code.
 */
function functionKey(frame: ProfileNode['callFrame'] & { columnNumber?: number }): string {
  const url = shortUrl(frame.url);
  if (!url) return frame.functionName || '(anonymous)';
  if (frame.functionName) return `${frame.functionName} ${url}${url.endsWith('.ts') ? '' : `:${frame.lineNumber + 1}`}`;
  return `(anonymous) ${url}:${frame.lineNumber + 1}:${(frame.columnNumber ?? 0) + 1}`;
}

function top(map: Map<string, number>, total: number, limit: number): ProfileEntry[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, us]) => ({ name, ms: us / 1000, percent: (100 * us) / total }));
}

export function summariseProfile(file: string, windows: readonly Window[], limit = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const ranges = windows.map((window) => [Number(window.startNs / 1000n), Number(window.endNs / 1000n)] as const);
  const inWindow = (t: number) => ranges.some(([start, end]) => t >= start && t <= end);

  const pick = (useWindows: boolean) => {
    const picked: { id: number; us: number }[] = [];
    let t = profile.startTime;
    for (let i = 0; i < profile.samples.length; i++) {
      t += profile.timeDeltas[i];
      // A sample's time is the gap up to the next one.
      const us = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1] : 0;
      if (!useWindows || inWindow(t)) picked.push({ id: profile.samples[i], us: Math.max(0, us) });
    }
    return picked;
  };
  let windowed = ranges.length > 0;
  let samples = windowed ? pick(true) : pick(false);
  if (samples.length === 0) {
    windowed = false;
    samples = pick(false);
  }
  const total = samples.reduce((sum, sample) => sum + sample.us, 0) || 1;
  const selfByFunction = new Map<string, number>();
  const selfByArea = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const { id, us } of samples) {
    const node = byId.get(id)!;
    const key = functionKey(node.callFrame);
    selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + us);
    const area = areaOf(node.callFrame);
    selfByArea.set(area, (selfByArea.get(area) ?? 0) + us);
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const frame = byId.get(current)!.callFrame;
      if (!isNereidSource(shortUrl(frame.url))) continue;
      const name = functionKey(frame);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  return {
    file,
    windowMs: total / 1000,
    windowed,
    selfByFunction: top(selfByFunction, total, limit),
    selfByArea: top(selfByArea, total, limit),
    inclusiveNereid: top(inclusive, total, limit),
  };
}

export function formatProfile(summary: ProfileSummary): string {
  const table = (title: string, entries: ProfileEntry[]) =>
    [`  ${title}`, ...entries.map((entry) => `    ${entry.percent.toFixed(1).padStart(5)}%  ${entry.ms.toFixed(0).padStart(7)} ms  ${entry.name}`)].join('\n');
  return [
    `CPU profile ${summary.file}: ${summary.windowMs.toFixed(0)} ms of main-thread time${summary.windowed ? ' inside the measured windows' : ' (whole profile)'}`,
    table('self time by area', summary.selfByArea),
    table('self time by function', summary.selfByFunction),
    table("inclusive time of Nereid's own functions (src/ or dist/)", summary.inclusiveNereid),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2];
  if (!file || file === '--help' || file === '-h') {
    console.error('usage: node --import tsx bench/cpu-profile.ts FILE.cpuprofile');
    process.exit(file ? 0 : 2);
  }
  console.log(formatProfile(summariseProfile(file, [], 30)));
}
