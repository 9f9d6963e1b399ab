/**
 * Schema-less parser for the Protocol Buffers text format, as written in
 * Triton `config.pbtxt` files.
 *
 * Without the ModelConfig schema we cannot know which fields are repeated, so
 * a field seen once stays a single value and the caller coerces the fields it
 * knows to be repeated. Everything else follows protobuf's own text parser so
 * that a file Triton accepts parses to the same values here.
 */

export type PbtxtValue = string | number | boolean | PbtxtMessage | PbtxtValue[];
export interface PbtxtMessage {
  [field: string]: PbtxtValue;
}

export class PbtxtSyntaxError extends Error {
  readonly line: number;
  readonly column: number;

  constructor(sourceName: string, line: number, column: number, detail: string) {
    super(`${sourceName} line ${line}, column ${column}: ${detail}`);
    this.name = 'PbtxtSyntaxError';
    this.line = line;
    this.column = column;
  }
}

interface Token {
  kind: 'ident' | 'number' | 'string' | 'punct' | 'eof';
  /** Source text (for strings, the raw literal including quotes). */
  text: string;
  line: number;
  column: number;
  /** Numbers only. */
  value?: number;
  /** Strings only: protobuf strings are byte sequences, so escapes like \303\251 build UTF-8 bytes. */
  bytes?: number[];
}

const PUNCTUATION = new Set(['{', '}', '<', '>', '[', ']', ':', ',', ';', '-']);
const SIMPLE_ESCAPES: Record<string, string> = {
  n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v',
  '\\': '\\', "'": "'", '"': '"', '?': '?',
};
const NUMBER = /0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[fF]?/y;
const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
const utf8 = new TextEncoder();

function tokenize(text: string, sourceName: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const fail = (at: number, detail: string): never => {
    throw new PbtxtSyntaxError(sourceName, line, at - lineStart + 1, detail);
  };

  while (i < text.length) {
    const ch = text[i];
    if (ch === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    if (ch === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    const token: Token = { kind: 'punct', text: ch, line, column: i - lineStart + 1 };
    if (ch === '"' || ch === "'") {
      const { bytes, end } = readString(text, i, fail);
      token.kind = 'string';
      token.bytes = bytes;
      token.text = text.slice(i, end);
      i = end;
    } else if (/[0-9]/.test(ch) || (ch === '.' && /[0-9]/.test(text[i + 1] ?? ''))) {
      NUMBER.lastIndex = i;
      const literal = NUMBER.exec(text)![0];
      const end = i + literal.length;
      // Reject "16abc" or "1.5e" as a whole rather than splitting them into two tokens.
      if (/[\w.]/.test(text[end] ?? '')) {
        const junk = /[\w.]*/y;
        junk.lastIndex = end;
        fail(i, `invalid number '${literal + junk.exec(text)![0]}'`);
      }
      token.kind = 'number';
      token.text = literal;
      token.value = parseNumber(literal, () => fail(i, `invalid octal number '${literal}'`));
      i = end;
    } else if (/[A-Za-z_]/.test(ch)) {
      IDENT.lastIndex = i;
      token.kind = 'ident';
      token.text = IDENT.exec(text)![0];
      i += token.text.length;
    } else if (PUNCTUATION.has(ch)) {
      i++;
    } else {
      fail(i, `unexpected character '${ch}'`);
    }
    tokens.push(token);
  }
  tokens.push({ kind: 'eof', text: '', line, column: i - lineStart + 1 });
  return tokens;
}

/** Reads the quoted literal starting at `start`; `end` is the index just past the closing quote. */
function readString(
  text: string,
  start: number,
  fail: (at: number, detail: string) => never,
): { bytes: number[]; end: number } {
  const quote = text[start];
  const bytes: number[] = [];
  let i = start + 1;
  for (;;) {
    // A raw newline is not allowed inside a literal, so the string is unterminated.
    if (i >= text.length || text[i] === '\n') fail(start, `unterminated string (missing closing ${quote})`);
    const ch = text[i];
    if (ch === quote) break;
    if (ch !== '\\') {
      const cp = text.codePointAt(i)!;
      bytes.push(...utf8.encode(String.fromCodePoint(cp)));
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    const esc = text[i + 1] ?? '';
    let m: RegExpMatchArray | null;
    if (Object.hasOwn(SIMPLE_ESCAPES, esc)) {
      bytes.push(SIMPLE_ESCAPES[esc].charCodeAt(0));
      i += 2;
    } else if ((m = /^[0-7]{1,3}/.exec(text.slice(i + 1, i + 4)))) {
      bytes.push(parseInt(m[0], 8) & 0xff);
      i += 1 + m[0].length;
    } else if (esc === 'x' && (m = /^[0-9a-fA-F]{1,2}/.exec(text.slice(i + 2, i + 4)))) {
      bytes.push(parseInt(m[0], 16));
      i += 2 + m[0].length;
    } else if (esc === 'u' || esc === 'U') {
      const digits = text.slice(i + 2, i + (esc === 'u' ? 6 : 10));
      const cp = /^[0-9a-fA-F]+$/.test(digits) ? parseInt(digits, 16) : NaN;
      if (!(cp <= 0x10ffff) || digits.length !== (esc === 'u' ? 4 : 8)) fail(i, `invalid unicode escape '\\${esc}${digits}'`);
      bytes.push(...utf8.encode(String.fromCodePoint(cp)));
      i += 2 + digits.length;
    } else {
      if (esc === '\n' || esc === '') fail(start, `unterminated string (missing closing ${quote})`);
      fail(i, `invalid escape sequence '\\${esc}'`);
    }
  }
  return { bytes, end: i + 1 };
}

function parseNumber(literal: string, badOctal: () => never): number {
  // protobuf reads a leading-zero integer as octal, so Triton would see 010 as 8.
  if (/^0\d+$/.test(literal)) return /^0[0-7]+$/.test(literal) ? parseInt(literal, 8) : badOctal();
  return Number(literal.replace(/[fF]$/, ''));
}

function describe(token: Token): string {
  if (token.kind === 'eof') return 'end of input';
  if (token.kind === 'string') return `string ${token.text}`;
  return `'${token.text}'`;
}

const isOpen = (t: Token) => t.kind === 'punct' && (t.text === '{' || t.text === '<');
const isPunct = (t: Token, text: string) => t.kind === 'punct' && t.text === text;

interface OpenMessage {
  token: Token;
  close: '}' | '>';
  field: string;
}

class Parser {
  private pos = 0;
  private readonly utf8Decoder = new TextDecoder();

  constructor(private readonly tokens: Token[], private readonly sourceName: string) {}

  parseFields(open: OpenMessage | null): PbtxtMessage {
    // Each field remembers whether list syntax was used, since `dims: [16]` is an array but `dims: 16` is not.
    const fields = new Map<string, { values: PbtxtValue[]; list: boolean }>();
    for (;;) {
      const token = this.next();
      if (isPunct(token, ',') || isPunct(token, ';')) continue;
      if (token.kind === 'eof') {
        if (open) {
          throw this.error(open.token, `'${open.token.text}' for field '${open.field}' is never closed (missing '${open.close}')`);
        }
        break;
      }
      if (isPunct(token, '}') || isPunct(token, '>')) {
        if (open?.close === token.text) break;
        if (open) {
          const at = `line ${open.token.line}, column ${open.token.column}`;
          throw this.error(token, `expected '${open.close}' to close field '${open.field}' (opened at ${at}) but found '${token.text}'`);
        }
        throw this.error(token, `unexpected '${token.text}' with no matching '${token.text === '}' ? '{' : '<'}'`);
      }
      if (token.kind !== 'ident') throw this.error(token, `expected a field name but found ${describe(token)}`);

      const name = token.text;
      const hasColon = this.accept(':');
      const entry = fields.get(name) ?? { values: [], list: false };
      fields.set(name, entry);
      const start = this.peek();
      if (isOpen(start)) {
        entry.values.push(this.parseMessage(name));
      } else if (isPunct(start, '[')) {
        entry.values.push(...this.parseList(name));
        entry.list = true;
      } else if (hasColon) {
        entry.values.push(this.parseScalar(name));
      } else {
        throw this.error(start, `expected ':' or '{' after field '${name}'`);
      }
    }
    // fromEntries defines properties directly, so a field named __proto__ cannot alter the prototype.
    return Object.fromEntries(
      [...fields].map(([name, { values, list }]) => [name, values.length === 1 && !list ? values[0] : values]),
    );
  }

  private parseMessage(field: string): PbtxtMessage {
    const token = this.next();
    return this.parseFields({ token, close: token.text === '{' ? '}' : '>', field });
  }

  private parseList(field: string): PbtxtValue[] {
    const open = this.next();
    const values: PbtxtValue[] = [];
    while (!isPunct(this.peek(), ']')) {
      const start = this.peek();
      if (start.kind === 'eof') throw this.error(open, `'[' for field '${field}' is never closed (missing ']')`);
      if (isPunct(start, '[')) throw this.error(start, `nested lists are not allowed in field '${field}'`);
      values.push(isOpen(start) ? this.parseMessage(field) : this.parseScalar(field));
      const after = this.peek();
      if (isPunct(after, ',')) this.next();
      else if (!isPunct(after, ']') && after.kind !== 'eof') {
        throw this.error(after, `expected ',' or ']' in list for field '${field}' but found ${describe(after)}`);
      }
    }
    this.next();
    return values;
  }

  private parseScalar(field: string): PbtxtValue {
    const token = this.next();
    if (isPunct(token, '-')) {
      const operand = this.next();
      const value = operand.kind === 'number' ? operand.value! : operand.kind === 'ident' ? namedFloat(operand.text) : undefined;
      if (value === undefined) throw this.error(operand, `expected a number after '-' but found ${describe(operand)}`);
      return -value;
    }
    if (token.kind === 'number') return token.value!;
    if (token.kind === 'string') {
      // Adjacent literals concatenate as bytes, so an escaped UTF-8 sequence may span them.
      const bytes = [...token.bytes!];
      while (this.peek().kind === 'string') bytes.push(...this.next().bytes!);
      return this.utf8Decoder.decode(new Uint8Array(bytes));
    }
    if (token.kind === 'ident') {
      if (token.text === 'true' || token.text === 'True' || token.text === 't') return true;
      if (token.text === 'false' || token.text === 'False' || token.text === 'f') return false;
      return namedFloat(token.text) ?? token.text;
    }
    throw this.error(token, `missing value for field '${field}' (found ${describe(token)})`);
  }

  private peek(): Token {
    return this.tokens[this.pos];
  }

  private accept(punct: string): boolean {
    if (!isPunct(this.peek(), punct)) return false;
    this.pos++;
    return true;
  }

  private next(): Token {
    const token = this.tokens[this.pos];
    if (token.kind !== 'eof') this.pos++;
    return token;
  }

  private error(token: Token, detail: string): PbtxtSyntaxError {
    return new PbtxtSyntaxError(this.sourceName, token.line, token.column, detail);
  }
}

/** protobuf spells the special floats case-insensitively as inf, infinity and nan. */
function namedFloat(word: string): number | undefined {
  const lower = word.toLowerCase();
  if (lower === 'inf' || lower === 'infinity') return Infinity;
  if (lower === 'nan') return NaN;
  return undefined;
}

export function parsePbtxt(text: string, sourceName = 'config.pbtxt'): PbtxtMessage {
  return new Parser(tokenize(text, sourceName), sourceName).parseFields(null);
}
