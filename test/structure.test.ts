/**
 * The layers of DESIGN.md, read from the import graph of src/ (tests excluded): no module imports a
 * folder above its own, and no files import each other in a circle. It reads the graph the way
 * ../shared/tools/layers.py does, so the two agree.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** Top to bottom; a name is a folder directly under src/, or a file there. */
const LAYERS: readonly (readonly string[])[] = [
  ['cli.ts', 'cli', 'index.ts'],
  ['frontends', 'jobs', 'tools', 'eval', 'quantize', 'client'],
  ['server'],
  ['repository'],
  ['model'],
  ['scheduler', 'processing', 'observability', 'monitoring', 'pipelines'],
  ['backends', 'cache'],
  ['config', 'protocol', 'onnx'],
  ['core', 'version.ts'],
];
const RANK = new Map(LAYERS.flatMap((names, index) => names.map((name) => [name, LAYERS.length - index] as const)));

const SRC = fileURLToPath(new URL('../src', import.meta.url));
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    const isSource = entry.endsWith('.ts') && !entry.endsWith('.test.ts') && !entry.endsWith('.d.ts') && !entry.includes('.case.');
    return isSource ? [path] : [];
  });
}

function importGraph(): Map<string, Set<string>> {
  const files = sourceFiles(SRC);
  const known = new Set(files);
  const resolve = (from: string, specifier: string): string | undefined => {
    const path = normalize(join(dirname(from), specifier));
    return [path, path.replace(/\.js$/, '.ts'), `${path}.ts`, join(path, 'index.ts')].find((candidate) => known.has(candidate));
  };
  const graph = new Map<string, Set<string>>();
  for (const file of files) {
    const targets = new Set<string>();
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const target = resolve(file, match[1] ?? match[2] ?? match[3]);
      if (target && target !== file) targets.add(target);
    }
    graph.set(file, targets);
  }
  return graph;
}

const layerOf = (file: string) => relative(SRC, file).split(sep)[0];
const named = (file: string) => relative(SRC, file);

/** Tarjan's strongly connected components with more than one file. */
function circles(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (file: string): void => {
    index.set(file, next);
    low.set(file, next++);
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file)!) {
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) low.set(file, Math.min(low.get(file)!, index.get(target)!));
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(named(member));
    } while (member !== file);
    if (component.length > 1) found.push(component.sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return found;
}

const graph = importGraph();

test('every folder of src/ has a place in the layers', () => {
  const unranked = [...new Set([...graph.keys()].map(layerOf))].filter((layer) => !RANK.has(layer));
  assert.deepEqual(unranked, [], 'add new folders to LAYERS (and to DESIGN.md)');
});

test('no module imports a layer above its own', () => {
  const upward = [...graph].flatMap(([file, targets]) =>
    [...targets]
      .filter((target) => layerOf(target) !== layerOf(file) && (RANK.get(layerOf(target)) ?? 0) > (RANK.get(layerOf(file)) ?? 0))
      .map((target) => `${named(file)} -> ${named(target)}`),
  );
  assert.deepEqual(upward, []);
});

test('no files import each other in a circle', () => {
  assert.deepEqual(circles(graph), []);
});

test('the checks see the graph: it is large and points down', () => {
  // Guards the test itself: a regular expression that matched nothing would pass the two above.
  const imports = [...graph.values()].reduce((sum, targets) => sum + targets.size, 0);
  assert.ok(graph.size > 40 && imports > 100, `read ${graph.size} files and ${imports} imports`);
  assert.ok(graph.get(join(SRC, 'server', 'server.ts'))?.size, 'server.ts imports project modules');
});
