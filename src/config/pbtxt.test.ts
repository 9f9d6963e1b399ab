import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePbtxt, PbtxtSyntaxError } from './pbtxt.js';

const SIMPLE_CONFIG = `
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
output { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] label_filename: "labels.txt" }
output { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 default_queue_policy { timeout_action: REJECT max_queue_size: 16 } }
version_policy: { specific { versions: [1, 3] } }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters { key: "execution_mode" value: { string_value: "0" } }
`;

test('parses a full Triton model config', () => {
  assert.deepEqual(parsePbtxt(SIMPLE_CONFIG), {
    name: 'simple',
    platform: 'onnxruntime_onnx',
    max_batch_size: 8,
    input: [
      { name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16] },
      { name: 'INPUT1', data_type: 'TYPE_INT32', dims: [16] },
    ],
    output: [
      { name: 'OUTPUT0', data_type: 'TYPE_INT32', dims: [16], label_filename: 'labels.txt' },
      { name: 'OUTPUT1', data_type: 'TYPE_INT32', dims: [16] },
    ],
    instance_group: [{ count: 2, kind: 'KIND_CPU' }],
    dynamic_batching: {
      preferred_batch_size: [4, 8],
      max_queue_delay_microseconds: 100,
      default_queue_policy: { timeout_action: 'REJECT', max_queue_size: 16 },
    },
    version_policy: { specific: { versions: [1, 3] } },
    parameters: [
      { key: 'intra_op_thread_count', value: { string_value: '1' } },
      { key: 'execution_mode', value: { string_value: '0' } },
    ],
  });
});

test('a field seen once without list syntax stays a single value', () => {
  assert.deepEqual(parsePbtxt('output { name: "y" dims: 4 }'), { output: { name: 'y', dims: 4 } });
});

test('repeated occurrences collect into an array, concatenated with list syntax', () => {
  assert.deepEqual(parsePbtxt('dims: 1 dims: 2'), { dims: [1, 2] });
  assert.deepEqual(parsePbtxt('dims: [1, 2] dims: 3 dims: [] dims: [4]'), { dims: [1, 2, 3, 4] });
  assert.deepEqual(parsePbtxt('dims: [7]'), { dims: [7] });
  assert.deepEqual(parsePbtxt('dims: []'), { dims: [] });
  assert.deepEqual(parsePbtxt('input { name: "a" } input [{ name: "b" }, { name: "c" }]'), {
    input: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
  });
});

test('separators between fields are optional commas or semicolons', () => {
  assert.deepEqual(parsePbtxt('a: 1, b: 2; c: 3 d: 4'), { a: 1, b: 2, c: 3, d: 4 });
  assert.deepEqual(parsePbtxt('m { a: 1; b: 2, }'), { m: { a: 1, b: 2 } });
});

test('angle brackets delimit messages like braces', () => {
  assert.deepEqual(parsePbtxt('optimization < cuda: < graphs: true > > input [ < name: "x" > ]'), {
    optimization: { cuda: { graphs: true } },
    input: [{ name: 'x' }],
  });
});

test('numbers: negatives, floats, exponents, hex, octal, special floats, uint64', () => {
  const parsed = parsePbtxt(`
    dims: [ -1, 3 ]
    f: 1.5 g: -0.25 h: .5 i: 1e3 j: 2.5E-2 k: 1.5f l: 1.
    hex: 0x10 oct: 010 zero: 0
    pinf: inf ninf: -inf big_inf: Infinity neg_sp: - 4
    big: 18446744073709551615
  `);
  assert.deepEqual(parsed.dims, [-1, 3]);
  assert.equal(parsed.f, 1.5);
  assert.equal(parsed.g, -0.25);
  assert.equal(parsed.h, 0.5);
  assert.equal(parsed.i, 1000);
  assert.equal(parsed.j, 0.025);
  assert.equal(parsed.k, 1.5);
  assert.equal(parsed.l, 1);
  assert.equal(parsed.hex, 16);
  assert.equal(parsed.oct, 8);
  assert.equal(parsed.zero, 0);
  assert.equal(parsed.pinf, Infinity);
  assert.equal(parsed.ninf, -Infinity);
  assert.equal(parsed.big_inf, Infinity);
  assert.equal(parsed.neg_sp, -4);
  assert.equal(parsed.big, 18446744073709551615);
  assert.ok(Number.isNaN(parsePbtxt('x: nan').x));
  assert.ok(Number.isNaN(parsePbtxt('x: -NaN').x));
});

test('identifiers are enum strings; protobuf boolean spellings become booleans', () => {
  assert.deepEqual(parsePbtxt('a: true b: True c: t d: false e: False f: f kind: KIND_GPU dt: TYPE_FP32'), {
    a: true,
    b: true,
    c: true,
    d: false,
    e: false,
    f: false,
    kind: 'KIND_GPU',
    dt: 'TYPE_FP32',
  });
});

test('quoted strings: both quotes, C escapes, adjacent concatenation', () => {
  assert.equal(parsePbtxt(String.raw`s: 'it\'s "quoted"'`).s, `it's "quoted"`);
  assert.equal(parsePbtxt(String.raw`s: "a\n\tb\\c\"d\'e"`).s, 'a\n\tb\\c"d\'e');
  assert.equal(parsePbtxt(String.raw`s: "\x41\x4a\101\60\0"`).s, 'AJA0\0');
  assert.equal(parsePbtxt(String.raw`s: "caf\303\251"`).s, 'café');
  assert.equal(parsePbtxt(String.raw`s: "\u00e9\U0001F600"`).s, 'é😀');
  assert.equal(parsePbtxt('s: "naïve ✓"').s, 'naïve ✓');
  assert.equal(parsePbtxt(`s: "abc" 'def'\n  "ghi"`).s, 'abcdefghi');
  // An escaped UTF-8 sequence may be split across adjacent literals.
  assert.equal(parsePbtxt(String.raw`s: "caf\303" "\251"`).s, 'café');
  assert.equal(parsePbtxt('s: "" t: \'\'').s, '');
});

test('comments and whitespace are ignored anywhere', () => {
  const text = [
    '# model config',
    'name: "m" # trailing comment',
    'input # before brace',
    '{',
    '  name: "# not a comment"',
    '  dims: [ # inside list',
    '    1, # one',
    '    2',
    '  ]',
    '}\r',
    '\t# done',
  ].join('\n');
  assert.deepEqual(parsePbtxt(text), { name: 'm', input: { name: '# not a comment', dims: [1, 2] } });
  assert.deepEqual(parsePbtxt(''), {});
  assert.deepEqual(parsePbtxt('  # only a comment\n'), {});
});

test('a field named __proto__ is an ordinary property', () => {
  const parsed = parsePbtxt('__proto__ { polluted: true }');
  assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
  assert.deepEqual(Object.keys(parsed), ['__proto__']);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

/** Asserts that parsing fails at the given 1-based position with a message matching `pattern`. */
function assertSyntaxError(text: string, line: number, column: number, pattern: RegExp, sourceName?: string): void {
  assert.throws(
    () => parsePbtxt(text, sourceName),
    (err: unknown) => {
      assert.ok(err instanceof PbtxtSyntaxError, `expected PbtxtSyntaxError, got ${String(err)}`);
      assert.equal(err.name, 'PbtxtSyntaxError');
      assert.deepEqual({ line: err.line, column: err.column }, { line, column }, err.message);
      assert.ok(err.message.startsWith(`${sourceName ?? 'config.pbtxt'} line ${line}, column ${column}: `), err.message);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

test('error: missing colon or brace after a field name', () => {
  assert.throws(() => parsePbtxt('input {\n  name: "x"\n  dims 16\n}'), {
    message: "config.pbtxt line 3, column 8: expected ':' or '{' after field 'dims'",
  });
  assertSyntaxError('name "x"', 1, 6, /expected ':' or '\{' after field 'name'/);
});

test('error: unterminated string', () => {
  assertSyntaxError('name: "simple\nplatform: "x"', 1, 7, /unterminated string \(missing closing "\)/);
  assertSyntaxError("a: 1\n  name: 'abc", 2, 9, /unterminated string \(missing closing '\)/);
  assertSyntaxError('name: "abc\\', 1, 7, /unterminated string/);
});

test('error: invalid escape sequence', () => {
  assertSyntaxError('s: "ab\\qc"', 1, 7, /invalid escape sequence '\\q'/);
  assertSyntaxError('s: "\\xZZ"', 1, 5, /invalid escape sequence '\\x'/);
  assertSyntaxError('s: "\\u00G1"', 1, 5, /invalid unicode escape '\\u00G1'/);
  assertSyntaxError('s: "\\U00110000"', 1, 5, /invalid unicode escape '\\U00110000'/);
});

test('error: unbalanced braces', () => {
  assertSyntaxError('a: 1\ninput {\n  name: "x"\n', 2, 7, /'\{' for field 'input' is never closed \(missing '\}'\)/);
  assertSyntaxError('input { name: "x" }\n}', 2, 1, /unexpected '\}' with no matching '\{'/);
  assertSyntaxError('m < a: 1 }', 1, 10, /expected '>' to close field 'm' \(opened at line 1, column 3\) but found '\}'/);
  assertSyntaxError('dims: [1, 2\nname: "x"', 2, 1, /expected ',' or '\]' in list for field 'dims' but found 'name'/);
  assertSyntaxError('dims: [1, 2,', 1, 7, /'\[' for field 'dims' is never closed \(missing '\]'\)/);
});

test('error: missing value', () => {
  assertSyntaxError('max_batch_size:', 1, 16, /missing value for field 'max_batch_size' \(found end of input\)/);
  assertSyntaxError('m { count: }', 1, 12, /missing value for field 'count' \(found '\}'\)/);
  assertSyntaxError('dims: [1, , 2]', 1, 11, /missing value for field 'dims' \(found ','\)/);
  assertSyntaxError('dims: -x', 1, 8, /expected a number after '-' but found 'x'/);
});

test('error: unexpected tokens and characters', () => {
  assertSyntaxError('"name": 1', 1, 1, /expected a field name but found string "name"/);
  assertSyntaxError('a: 1\n: 2', 2, 1, /expected a field name but found ':'/);
  assertSyntaxError('a: 1 @b: 2', 1, 6, /unexpected character '@'/);
  assertSyntaxError('dims: 16abc', 1, 7, /invalid number '16abc'/);
  assertSyntaxError('x: 1.5e', 1, 4, /invalid number '1.5e'/);
  assertSyntaxError('x: 09', 1, 4, /invalid octal number '09'/);
  assertSyntaxError('dims: [[1]]', 1, 8, /nested lists are not allowed in field 'dims'/);
});

test('error messages use the given source name', () => {
  assertSyntaxError('a {', 1, 3, /never closed/, 'models/simple/config.pbtxt');
});
