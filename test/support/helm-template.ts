/**
 * Renders a Helm chart the way `helm template` does, for the subset of Go templates and Sprig functions that
 * deploy/helm/nereid uses: neither npm nor Debian has a maintained Helm or Go-template implementation with Sprig's
 * functions, and the tests must render the chart here. Anything outside the subset throws, naming what it met, so
 * a chart edit that needs more fails loudly instead of rendering wrong.
 *
 * Supported: text with {{- -}} trimming and comments; if / else if / else, with / else, range (lists and maps, with
 * `$i, $v :=`), define, variables (`$x :=`, `$`), pipelines, parentheses, and the functions in FUNCTIONS.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, parseAllDocuments, stringify } from 'yaml';

type Value = unknown;
type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipeline: string }
  | { kind: 'if'; pipeline: string; then: Node[]; otherwise: Node[] }
  | { kind: 'with'; pipeline: string; then: Node[]; otherwise: Node[] }
  | { kind: 'range'; pipeline: string; body: Node[]; otherwise: Node[] };

interface Scope {
  dot: Value;
  vars: Map<string, Value>;
}

const ACTION = /\{\{(-\s+)?([\s\S]*?)(\s+-)?\}\}/g;

/** Text and action pieces, with Go's trim markers applied to the text around them. */
function lex(source: string): ({ text: string } | { action: string })[] {
  const pieces: ({ text: string } | { action: string })[] = [];
  let at = 0;
  let trimNext = false;
  for (const match of source.matchAll(ACTION)) {
    let text = source.slice(at, match.index);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (match[1]) text = text.replace(/\s+$/, '');
    pieces.push({ text });
    const action = match[2]!.trim();
    if (!/^\/\*[\s\S]*\*\/$/.test(action)) pieces.push({ action });
    trimNext = Boolean(match[3]);
    at = match.index! + match[0].length;
  }
  let tail = source.slice(at);
  if (trimNext) tail = tail.replace(/^\s+/, '');
  pieces.push({ text: tail });
  return pieces;
}

/** The node tree of one template file; `define` blocks go into `defines`. */
function parseTemplate(source: string, file: string, defines: Map<string, Node[]>): Node[] {
  const root: Node[] = [];
  // Each open block: where its nodes go now, and how to switch to its else branch.
  const stack: { nodes: Node[]; block: Node | { kind: 'define'; name: string; body: Node[] }; inElse: boolean; elseIfDepth: number }[] = [];
  const current = () => (stack.length === 0 ? root : stack.at(-1)!.nodes);
  for (const piece of lex(source)) {
    if ('text' in piece) {
      if (piece.text) current().push({ kind: 'text', text: piece.text });
      continue;
    }
    const [keyword = '', ...rest] = piece.action.split(/\s+/);
    const argument = rest.join(' ');
    if (keyword === 'if' || keyword === 'with') {
      const block: Node = keyword === 'if' ? { kind: 'if', pipeline: argument, then: [], otherwise: [] } : { kind: 'with', pipeline: argument, then: [], otherwise: [] };
      current().push(block);
      stack.push({ nodes: block.then, block, inElse: false, elseIfDepth: 0 });
    } else if (keyword === 'range') {
      const block: Node = { kind: 'range', pipeline: argument, body: [], otherwise: [] };
      current().push(block);
      stack.push({ nodes: block.body, block, inElse: false, elseIfDepth: 0 });
    } else if (keyword === 'define') {
      const block = { kind: 'define' as const, name: JSON.parse(argument) as string, body: [] as Node[] };
      stack.push({ nodes: block.body, block, inElse: false, elseIfDepth: 0 });
    } else if (keyword === 'else') {
      const open = stack.at(-1);
      if (!open || open.inElse || open.block.kind === 'define') throw new Error(`${file}: {{ else }} outside an if, with or range`);
      open.inElse = true;
      open.nodes = (open.block as { otherwise: Node[] }).otherwise;
      if (rest[0] === 'if') {
        // else if: an if nested in the else branch, closed by the same {{ end }}.
        const nested: Node = { kind: 'if', pipeline: rest.slice(1).join(' '), then: [], otherwise: [] };
        open.nodes.push(nested);
        stack.push({ nodes: nested.then, block: nested, inElse: false, elseIfDepth: open.elseIfDepth + 1 });
      } else if (rest.length > 0) throw new Error(`${file}: unsupported {{ else ${argument} }}`);
    } else if (keyword === 'end') {
      let closed = stack.pop();
      if (!closed) throw new Error(`${file}: {{ end }} without a block`);
      while (closed.elseIfDepth > 0) closed = stack.pop()!;
      if (closed.block.kind === 'define') defines.set(closed.block.name, closed.block.body);
    } else if (['template', 'block', 'break', 'continue'].includes(keyword)) {
      throw new Error(`${file}: {{ ${keyword} }} is outside the subset this renderer supports`);
    } else current().push({ kind: 'action', pipeline: piece.action });
  }
  if (stack.length > 0) throw new Error(`${file}: a block is not closed with {{ end }}`);
  return root;
}

/** Go's truth: false, 0, nil, "" and empty lists or maps are false. */
function truthy(value: Value): boolean {
  if (value instanceof Int64) return value.value !== 0;
  if (value === undefined || value === null || value === false || value === 0 || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value).length > 0;
  return true;
}

/** An integer that came through int64 (or add): printed in full, unlike values' float64 numbers. */
class Int64 {
  constructor(readonly value: number) {}
}

/**
 * Go's %v of a float64, which every number in Helm values is: from 1e6 up (or below 1e-4) it switches to exponent
 * form (2.68435456e+08), so a template must pipe such a number through int64 first, and here it must too.
 */
function goFloat(value: number): string {
  const magnitude = Math.abs(value);
  if (value === 0 || (magnitude >= 1e-4 && magnitude < 1e6)) return String(value);
  const [mantissa, exponent] = value.toExponential().split('e') as [string, string];
  const sign = exponent.startsWith('-') ? '-' : '+';
  return `${mantissa}e${sign}${exponent.replace(/^[-+]/, '').padStart(2, '0')}`;
}

function printed(value: Value, where: string): string {
  if (value === undefined || value === null) return '';
  if (value instanceof Int64) return String(value.value);
  if (typeof value === 'number') return goFloat(value);
  if (typeof value === 'string' || typeof value === 'boolean') return String(value);
  throw new Error(`${where}: prints a ${Array.isArray(value) ? 'list' : 'map'}; pipe it through toYaml`);
}

function indent(spaces: number, text: string): string {
  const pad = ' '.repeat(spaces);
  return pad + text.replaceAll('\n', `\n${pad}`);
}

function number(value: Value): number {
  if (value instanceof Int64) return value.value;
  const converted = typeof value === 'string' ? Number(value) : value;
  if (typeof converted !== 'number' || Number.isNaN(converted)) throw new Error(`expected a number, got ${JSON.stringify(value)}`);
  return converted;
}

type Fn = (this: Renderer, ...args: Value[]) => Value;

const FUNCTIONS: Record<string, Fn> = {
  include(name, data) {
    return this.include(String(name), data);
  },
  toYaml: (value) => (value === undefined || value === null ? 'null' : stringify(value, { lineWidth: 0, version: '1.1' }).replace(/\n$/, '')),
  indent: (spaces, text) => indent(number(spaces), String(text)),
  nindent: (spaces, text) => `\n${indent(number(spaces), String(text))}`,
  quote: (...values) => values.map((value) => JSON.stringify(value === undefined || value === null ? '' : String(value))).join(' '),
  default: (fallback, value) => (truthy(value) ? value : fallback),
  required(message, value) {
    if (value === undefined || value === null || value === '') throw new Error(String(message));
    return value;
  },
  printf: (format, ...args) => {
    let next = 0;
    return String(format).replace(/%[sdv%]/g, (verb) => {
      if (verb === '%%') return '%';
      const arg = args[next++];
      // Go prints %!d(float64=…) for a values number: only int64 results are integers to printf.
      if (verb === '%d' && !(arg instanceof Int64)) throw new Error(`printf %d of ${JSON.stringify(arg)}: pipe it through int64`);
      return printed(arg, 'printf');
    });
  },
  add: (...values) => new Int64(values.reduce<number>((sum, value) => sum + Math.trunc(number(value)), 0)),
  int64: (value) => new Int64(Math.trunc(number(value))),
  and: (...values) => values.find((value) => !truthy(value)) ?? values.at(-1),
  or: (...values) => values.find((value) => truthy(value)) ?? values.at(-1),
  not: (value) => !truthy(value),
  eq: (first, ...others) => others.some((other) => other === first),
  ne: (first, second) => first !== second,
  trunc: (length, text) => String(text).slice(0, number(length)),
  trimSuffix: (suffix, text) => (String(text).endsWith(String(suffix)) ? String(text).slice(0, -String(suffix).length) : String(text)),
};

const TOKEN = /\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(-?\d+(?:\.\d+)?)(?![\w.])|(\$[\w]*(?:\.[\w-]+)*)|((?:\.[\w-]+)+|\.)|([A-Za-z_]\w*)|(:=|\||\(|\)|,|=))/y;

type Token = { kind: 'string' | 'number' | 'variable' | 'field' | 'identifier' | 'punct'; text: string };

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < source.length) {
    if (/^\s*$/.test(source.slice(TOKEN.lastIndex))) break;
    const start = TOKEN.lastIndex;
    const match = TOKEN.exec(source);
    if (!match) throw new Error(`cannot read '${source.slice(start)}' in {{ ${source} }}`);
    const [, dq, raw, num, variable, field, identifier, punct] = match;
    if (dq !== undefined) tokens.push({ kind: 'string', text: JSON.parse(dq) as string });
    else if (raw !== undefined) tokens.push({ kind: 'string', text: raw.slice(1, -1) });
    else if (num !== undefined) tokens.push({ kind: 'number', text: num });
    else if (variable !== undefined) tokens.push({ kind: 'variable', text: variable });
    else if (field !== undefined) tokens.push({ kind: 'field', text: field });
    else if (identifier !== undefined) tokens.push({ kind: 'identifier', text: identifier });
    else tokens.push({ kind: 'punct', text: punct! });
  }
  return tokens;
}

function walk(value: Value, path: string[]): Value {
  let current = value;
  for (const key of path) {
    if (current === undefined || current === null) return undefined;
    if (typeof current !== 'object') throw new Error(`cannot read .${key} of ${JSON.stringify(current)}`);
    current = (current as Record<string, Value>)[key];
  }
  return current;
}

class Renderer {
  constructor(
    private readonly defines: Map<string, Node[]>,
    private readonly root: Value,
  ) {}

  include(name: string, data: Value): string {
    const body = this.defines.get(name);
    if (!body) throw new Error(`include: no template named '${name}'`);
    return this.render(body, { dot: data, vars: new Map([['$', data]]) });
  }

  renderFile(nodes: Node[]): string {
    return this.render(nodes, { dot: this.root, vars: new Map([['$', this.root]]) });
  }

  private render(nodes: Node[], scope: Scope): string {
    let out = '';
    for (const node of nodes) {
      if (node.kind === 'text') out += node.text;
      else if (node.kind === 'action') {
        const { value, declared } = this.pipeline(node.pipeline, scope);
        if (!declared) out += printed(value, `{{ ${node.pipeline} }}`);
      } else if (node.kind === 'if') {
        out += this.render(truthy(this.pipeline(node.pipeline, scope).value) ? node.then : node.otherwise, { dot: scope.dot, vars: new Map(scope.vars) });
      } else if (node.kind === 'with') {
        const value = this.pipeline(node.pipeline, scope).value;
        out += truthy(value) ? this.render(node.then, { dot: value, vars: new Map(scope.vars) }) : this.render(node.otherwise, { dot: scope.dot, vars: new Map(scope.vars) });
      } else out += this.range(node, scope);
    }
    return out;
  }

  private range(node: Extract<Node, { kind: 'range' }>, scope: Scope): string {
    const declaration = /^(\$\w+)(?:\s*,\s*(\$\w+))?\s*:=\s*([\s\S]+)$/.exec(node.pipeline);
    const source = this.pipeline(declaration ? declaration[3]! : node.pipeline, scope).value;
    const entries: [Value, Value][] = Array.isArray(source)
      ? source.map((item, index) => [index, item])
      : source && typeof source === 'object'
        ? Object.keys(source).sort().map((key) => [key, (source as Record<string, Value>)[key]])
        : [];
    if (entries.length === 0) return this.render(node.otherwise, scope);
    return entries
      .map(([key, item]) => {
        const vars = new Map(scope.vars);
        if (declaration?.[2]) vars.set(declaration[1]!, key).set(declaration[2], item);
        else if (declaration) vars.set(declaration[1]!, item);
        return this.render(node.body, { dot: item, vars });
      })
      .join('');
  }

  /** Evaluates `[$x :=] command | command …`; a declaration prints nothing. */
  private pipeline(source: string, scope: Scope): { value: Value; declared: boolean } {
    const tokens = tokenize(source);
    let declared = false;
    let target: string | undefined;
    if (tokens[0]?.kind === 'variable' && tokens[1]?.kind === 'punct' && (tokens[1].text === ':=' || tokens[1].text === '=')) {
      target = tokens[0].text;
      declared = true;
      tokens.splice(0, 2);
    }
    const position = { at: 0 };
    const value = this.commands(tokens, position, scope, source);
    if (position.at !== tokens.length) throw new Error(`unexpected '${tokens[position.at]!.text}' in {{ ${source} }}`);
    if (target) scope.vars.set(target, value);
    return { value, declared };
  }

  private commands(tokens: Token[], position: { at: number }, scope: Scope, source: string): Value {
    let value = this.command(tokens, position, scope, source, undefined, false);
    while (tokens[position.at]?.text === '|') {
      position.at++;
      value = this.command(tokens, position, scope, source, value, true);
    }
    return value;
  }

  private command(tokens: Token[], position: { at: number }, scope: Scope, source: string, piped: Value, hasPiped: boolean): Value {
    const first = tokens[position.at];
    if (!first) throw new Error(`missing a command in {{ ${source} }}`);
    if (first.kind === 'identifier' && !['true', 'false', 'nil'].includes(first.text)) {
      const fn = FUNCTIONS[first.text];
      if (!fn) throw new Error(`function '${first.text}' is outside the subset this renderer supports ({{ ${source} }})`);
      position.at++;
      const args: Value[] = [];
      while (position.at < tokens.length && tokens[position.at]!.text !== '|' && tokens[position.at]!.text !== ')') {
        args.push(this.operand(tokens, position, scope, source));
      }
      if (hasPiped) args.push(piped);
      return fn.apply(this, args);
    }
    if (hasPiped) throw new Error(`cannot pipe into '${first.text}' in {{ ${source} }}`);
    return this.operand(tokens, position, scope, source);
  }

  private operand(tokens: Token[], position: { at: number }, scope: Scope, source: string): Value {
    const token = tokens[position.at++]!;
    switch (token.kind) {
      case 'string':
        return token.text;
      case 'number':
        return Number(token.text);
      case 'field':
        return token.text === '.' ? scope.dot : walk(scope.dot, token.text.slice(1).split('.'));
      case 'variable': {
        const [name, ...path] = token.text.split('.');
        if (!scope.vars.has(name!)) throw new Error(`undefined variable ${name} in {{ ${source} }}`);
        return walk(scope.vars.get(name!), path);
      }
      case 'identifier':
        if (token.text === 'true' || token.text === 'false') return token.text === 'true';
        if (token.text === 'nil') return undefined;
        position.at--;
        return this.command(tokens, position, scope, source, undefined, false);
      case 'punct':
        if (token.text === '(') {
          const value = this.commands(tokens, position, scope, source);
          if (tokens[position.at++]?.text !== ')') throw new Error(`missing ')' in {{ ${source} }}`);
          return value;
        }
    }
    throw new Error(`unexpected '${token.text}' in {{ ${source} }}`);
  }
}

function isObject(value: Value): value is Record<string, Value> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Helm's merge of --set/-f values over the chart's: maps merge key by key, anything else is replaced; null deletes. */
export function mergeValues(base: Value, override: Value): Value {
  if (!isObject(base) || !isObject(override)) return override;
  const merged: Record<string, Value> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete merged[key];
    else merged[key] = mergeValues(base[key], value);
  }
  return merged;
}

export interface RenderedManifest {
  /** The template it came from, e.g. templates/deployment.yaml. */
  source: string;
  object: Record<string, unknown>;
}

export interface RenderOptions {
  values?: Record<string, unknown>;
  releaseName?: string;
  namespace?: string;
}

/** `helm template RELEASE CHART [-f values]`: every object the chart's templates produce, parsed. */
export function renderChart(chartDir: string, options: RenderOptions = {}): RenderedManifest[] {
  const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { name: string; version: string; appVersion?: string };
  const values = mergeValues(parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) ?? {}, options.values ?? {});
  const root = {
    Values: values,
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion ?? '' },
    Release: { Name: options.releaseName ?? 'release-name', Namespace: options.namespace ?? 'default', Service: 'Helm', IsInstall: true, IsUpgrade: false },
  };
  const templatesDir = join(chartDir, 'templates');
  const files = readdirSync(templatesDir).filter((file) => /\.(ya?ml|tpl)$/.test(file)).sort();
  const defines = new Map<string, Node[]>();
  const trees = files.map((file) => ({ file, nodes: parseTemplate(readFileSync(join(templatesDir, file), 'utf8'), file, defines) }));
  const renderer = new Renderer(defines, root);
  const manifests: RenderedManifest[] = [];
  for (const { file, nodes } of trees) {
    // Files starting with an underscore only hold definitions, as in Helm.
    if (file.startsWith('_')) continue;
    const source = `templates/${file}`;
    const text = renderer.renderFile(nodes);
    // YAML 1.1, as Helm and the API server read it: an unquoted no or on is a boolean there.
    for (const document of parseAllDocuments(text, { version: '1.1' })) {
      if (document.errors.length > 0) throw new Error(`${source} renders invalid YAML: ${document.errors[0]!.message}\n${text}`);
      const object = document.toJS() as Record<string, unknown> | null;
      if (object) manifests.push({ source, object });
    }
  }
  return manifests;
}
