import { isDeepStrictEqual } from 'node:util';
import { Document, isCollection, isMap, isScalar, parseDocument, Scalar, stringify, type Node } from 'yaml';

export type YamlPath = readonly string[];
export interface YamlSetting {
  path: YamlPath;
  value: unknown;
  /** Collections are written on one line, `[…]`/`{…}` (as a config's instance_group usually is), or as blocks. */
  flow?: boolean;
}

/**
 * `text` with each setting's value set, changing only the lines of those settings: a user's config keeps its layout,
 * quoting, spacing and comments everywhere else, so that the change reads as a diff of what was set. A setting in
 * place is replaced where it stands; a new one is added to its map (a block map gets a line at its indentation, a flow
 * map an entry before its `}`); a missing top-level map is appended. Should an edit not read back as the same
 * configuration as setting the values on the parsed document (a layout these rules do not cover), the whole document
 * is written again by the YAML library instead, with the file's flow-collection spacing and without folding.
 */
export function setYamlValues(text: string, settings: readonly YamlSetting[]): string {
  const expected = parseDocument(text);
  for (const { path, value, flow } of settings) expected.setIn(path, expected.createNode(value, { flow }));
  try {
    let edited = text;
    for (const setting of settings) edited = setOne(edited, setting);
    if (isDeepStrictEqual(parseDocument(edited).toJS(), expected.toJS())) return edited;
  } catch {
    // Falls through to writing the whole document.
  }
  return expected.toString(yamlLayoutOf(text));
}

/** How the file writes flow collections, `[1, 2]` or `[ 1, 2 ]`, as most of it does; no folding of long lines. */
function yamlLayoutOf(text: string): { lineWidth: number; flowCollectionPadding: boolean } {
  const padded = text.match(/[[{] \S/g)?.length ?? 0;
  const tight = text.match(/[[{][^\s\]}]/g)?.length ?? 0;
  return { lineWidth: 0, flowCollectionPadding: padded >= tight };
}

/** `value` as YAML text, in the file's flow spacing; a replaced scalar keeps its quoting where the type allows. */
function render(text: string, value: unknown, replacing?: Node): string {
  if (replacing && isScalar(replacing) && (typeof value === 'string') === (typeof replacing.value === 'string')) {
    const scalar = new Scalar(value);
    scalar.type = replacing.type;
    return stringify(scalar, { lineWidth: 0 }).trimEnd();
  }
  // A replaced collection keeps its own spacing inside the brackets; a new one takes the file's.
  const layout = replacing?.range ? { lineWidth: 0, flowCollectionPadding: text[replacing.range[0] + 1] === ' ' } : yamlLayoutOf(text);
  return stringify(value, { ...layout, collectionStyle: 'flow' }).trimEnd();
}

/** `{ key: …rest: value }` as block YAML lines, with the leaf in flow style when asked. */
function renderEntry(text: string, key: string, rest: readonly string[], value: unknown, flow: boolean | undefined): string {
  const entry = new Document({ [key]: rest.reduceRight<unknown>((inner, name) => ({ [name]: inner }), value) });
  if (flow) {
    const leaf = entry.getIn([key, ...rest], true);
    if (isCollection(leaf)) leaf.flow = true;
  }
  return entry.toString(yamlLayoutOf(text)).trimEnd();
}

function setOne(text: string, { path, value, flow }: YamlSetting): string {
  const document = parseDocument(text);
  const existing = document.getIn(path, true) as Node | undefined;
  if (existing?.range) {
    if (!isScalar(existing) && !(isCollection(existing) && existing.flow)) throw new Error('only scalars and flow collections are replaced in place');
    const [start, end] = existing.range;
    return text.slice(0, start) + render(text, value, existing) + text.slice(end);
  }
  const { parent, key, rest } = deepestMap(document, path);
  if (!parent?.range) throw new Error('no map to add to');
  const [start, end] = parent.range;
  if (parent.flow) {
    if (rest.length > 0) throw new Error('a nested map is not added inside a flow map');
    const close = text.lastIndexOf('}', end);
    const inner = text.slice(start + 1, close);
    const at = inner.endsWith(' ') ? close - 1 : close;
    const separator = inner.trim() === '' ? (inner.endsWith(' ') ? ' ' : '') : ', ';
    return `${text.slice(0, at)}${separator}${key}: ${render(text, value)}${text.slice(at)}`;
  }
  const firstKey = parent.items[0]?.key as Node | undefined;
  if (!firstKey?.range) throw new Error('an empty block map');
  const indent = firstKey.range[0] - (text.lastIndexOf('\n', firstKey.range[0] - 1) + 1);
  const lines = renderEntry(text, key, rest, value, flow)
    .split('\n')
    .map((line) => ' '.repeat(indent) + line)
    .join('\n');
  // A top-level entry goes at the end of the file, after any trailing comment; a nested one after its map's last item.
  const at = parent === document.contents ? text.length : end;
  const before = text.slice(0, at);
  return `${before}${before === '' || before.endsWith('\n') ? '' : '\n'}${lines}\n${text.slice(at)}`;
}

/** The deepest map on `path` that exists, the key to add to it, and what of the path lies below that key. */
function deepestMap(document: Document, path: YamlPath): { parent: ReturnType<typeof asMap>; key: string; rest: string[] } {
  let parent = asMap(document.contents);
  for (let depth = 0; depth < path.length; depth++) {
    const child = parent?.get(path[depth], true);
    if (child === undefined || depth === path.length - 1) return { parent, key: path[depth], rest: path.slice(depth + 1) };
    parent = asMap(child);
    if (!parent) throw new Error(`${path.slice(0, depth + 1).join('.')} is not a map`);
  }
  throw new Error('an empty path');
}

function asMap(node: unknown) {
  return isMap(node) ? node : undefined;
}

