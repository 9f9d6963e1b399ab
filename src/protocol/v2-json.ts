/**
 * The V2 inference request and response in their JSON form (the KServe Open Inference Protocol's
 * REST body, with Triton's binary tensor data extension) to the core's InferenceRequest and back.
 * Protocol only, no transport: the HTTP front end and batch jobs both read and write it. The model
 * rules are the core's.
 */
import { byteSize, type Datatype, type NumericArray, type TensorData } from '../core/datatype.js';
import { invalidArgument, NereidError, quote, quoteName } from '../core/errors.js';
import { checkReservedParameters, checkSequenceParameters, requestedOutputOf, TRANSPORT_PARAMETERS, withoutParameters, type InferenceRequest, type InferenceResponse, type InferInput, type Parameters, type RequestedOutput } from '../core/inference.js';
import { checkBytesElementCount, checkDatatype, checkShape, MAX_BYTES_ELEMENTS, tensorDataFromBytes, tensorDataFromJson, tensorDataToBytes, tensorDataToJson, type InputShapeCheck } from '../core/tensor.js';
import {
  checkSharedMemoryOutputs,
  sharedMemoryInputData,
  sharedMemoryReadBudget,
  sharedMemoryReferenceOf,
  type SharedMemoryReadBudget,
  type SharedMemoryRegions,
  withoutSharedMemoryParameters,
  writeSharedMemoryOutputs,
} from './shared-memory-tensors.js';

export const HEADER_LENGTH = 'inference-header-content-length';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Triton refuses JSON nested deeper than this; no V2 body needs more than a handful of levels. */
export const MAX_JSON_DEPTH = 100;

/** 2^53 has 16 digits: an integer literal with fewer is exact as a JSON number; one with more may not be. */
const LONG_INTEGER_DIGITS = 16;

interface JsonScan {
  tooDeep: boolean;
  /** An integer literal of 16 digits or more outside strings (one that JSON.parse may round). */
  longInteger: boolean;
  /** An 'N' or 'I' outside strings: NaN, Infinity or Inf, which Triton reads (rapidjson's kParseNanAndInfFlag) and JSON.parse does not. */
  nonFinite: boolean;
}

/**
 * How deeply the JSON text nests arrays and objects, counted on the bytes before parsing (brackets
 * inside strings skipped), so that a hostile body never reaches the parser's recursion; and, in the
 * same pass, whether an integer literal is long enough that JSON.parse might round it.
 */
function scanJson(bytes: Buffer, limit: number): JsonScan {
  let depth = 0;
  let inString = false;
  let digits = 0;
  let longInteger = false;
  let nonFinite = false;
  for (let index = 0; index < bytes.length; index++) {
    const byte = bytes[index];
    if (inString) {
      if (byte === 0x5c) index++; // backslash: skip the escaped byte
      else if (byte === 0x22) inString = false;
      continue;
    }
    if (byte <= 0x39 && byte >= 0x30) {
      digits++;
      continue;
    }
    if (digits !== 0) {
      // A run of digits that is neither a fraction nor followed by one or by an exponent is an integer.
      if (digits >= LONG_INTEGER_DIGITS && bytes[index - digits - 1] !== 0x2e && byte !== 0x2e && (byte | 0x20) !== 0x65) longInteger = true;
      digits = 0;
    }
    if (byte === 0x22) inString = true;
    else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > limit) return { tooDeep: true, longInteger, nonFinite };
    } else if (byte === 0x5d || byte === 0x7d) depth--;
    else if (byte === 0x4e || byte === 0x49) nonFinite = true;
  }
  if (digits >= LONG_INTEGER_DIGITS && bytes[bytes.length - digits - 1] !== 0x2e) longInteger = true;
  return { tooDeep: false, longInteger, nonFinite };
}

function parseJsonText(text: string, what: string, reviver?: (key: string, value: unknown) => unknown): unknown {
  try {
    return JSON.parse(text, reviver);
  } catch (error) {
    // The parser's excerpt may quote tensor data: the log says where, not what.
    throw new NereidError('INVALID_ARGUMENT', `malformed JSON in ${what}: ${(error as Error).message}`, { logged: `malformed JSON in ${what} (the parser's excerpt is not logged)` });
  }
}

/** Triton's phrase first (its tests look for it), then which JSON it was. */
function tooDeep(what: string) {
  return invalidArgument(`JSON nesting depth exceeds maximum allowed limit (${MAX_JSON_DEPTH}): the JSON of ${what} nests deeper than ${MAX_JSON_DEPTH} levels`);
}

/**
 * Refuses JSON nested deeper than MAX_JSON_DEPTH from its bytes, for a caller that parses it itself: JSON.parse builds
 * any depth, and what reads the value back (JSON.stringify for an answer) then overflows the stack.
 */
export function refuseTooDeepJson(bytes: Buffer, what: string): void {
  if (scanJson(bytes, MAX_JSON_DEPTH).tooDeep) throw tooDeep(what);
}

export function parseJson(bytes: Buffer, what: string): unknown {
  refuseTooDeepJson(bytes, what);
  return parseJsonText(bytes.toString('utf8'), what);
}

/**
 * The control character that marks a long integer literal turned into a string before parsing: one whose escape the
 * text does not hold (JSON strings may not hold control characters raw), so that it can reach a parsed string in no
 * other way. Undefined when the text holds every one, U+0001 to U+001F.
 */
function freeMark(text: string): number | undefined {
  for (let code = 1; code < 0x20; code++) {
    // \b \t \n \f \r have short escapes too, which the test below would not see.
    if (SHORT_ESCAPES.has(code)) continue;
    if (!escapePattern(code, 'i').test(text)) return code;
  }
  return undefined;
}

const SHORT_ESCAPES = new Set([0x08, 0x09, 0x0a, 0x0c, 0x0d]);

/** The JSON escape of a control character, e.g. \u0001. */
const markEscape = (code: number) => `\\u00${code.toString(16).padStart(2, '0')}`;
const escapePattern = (code: number, flags: string, around = (escape: string) => escape) => new RegExp(around(markEscape(code).replace('\\', '\\\\')), flags);

const INTEGER_LITERAL = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
/** The non-finite literals rapidjson reads with kParseNanAndInfFlag, as Triton parses requests. */
const NON_FINITE_LITERAL = /NaN|-?Inf(?:inity)?/y;

/**
 * JSON text with each integer literal of 16 digits or more, and each NaN, Infinity and Inf, written
 * as a marked string, so that JSON.parse keeps its digits or takes it at all; the reviver turns it
 * back into a number, a bigint beyond 2^53, or a non-finite number (boxed, see nonFiniteNumber).
 */
function markLiterals(text: string, mark: number): string {
  const escape = markEscape(mark);
  const parts: string[] = [];
  let copied = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const char = text.charCodeAt(index);
    if (inString) {
      if (char === 0x5c) index++;
      else if (char === 0x22) inString = false;
      continue;
    }
    if (char === 0x22) {
      inString = true;
      continue;
    }
    if (char === 0x4e || char === 0x49 || (char === 0x2d && text.charCodeAt(index + 1) === 0x49)) {
      NON_FINITE_LITERAL.lastIndex = index;
      const literal = NON_FINITE_LITERAL.exec(text)?.[0];
      if (literal) {
        parts.push(text.slice(copied, index), `"${escape}${literal}"`);
        copied = index + literal.length;
        index += literal.length - 1;
      }
      continue;
    }
    if (char !== 0x2d && (char < 0x30 || char > 0x39)) continue;
    INTEGER_LITERAL.lastIndex = index;
    const literal = INTEGER_LITERAL.exec(text)?.[0];
    if (!literal) continue;
    // Only what JSON allows (no leading zeros): anything else is left for JSON.parse to refuse.
    if (/^-?(0|[1-9]\d*)$/.test(literal) && literal.replace('-', '').length >= LONG_INTEGER_DIGITS) {
      parts.push(text.slice(copied, index), `"${escape}${literal}"`);
      copied = index + literal.length;
    }
    index += literal.length - 1;
  }
  parts.push(text.slice(copied));
  return parts.join('');
}

/**
 * A NaN, Infinity or -Infinity written as such in the JSON, boxed: tensor data takes it as that value, where an
 * unboxed infinity can only be a number literal beyond a double's range (JSON.parse's 1e400), which it refuses.
 */
const nonFiniteNumber = (value: number): Number => new Number(value);

function markedLiteralReviver(mark: number) {
  return (_key: string, value: unknown): unknown => {
    if (typeof value !== 'string' || value.charCodeAt(0) !== mark) return value;
    const literal = value.slice(1);
    if (literal === 'NaN') return nonFiniteNumber(Number.NaN);
    if (literal.endsWith('Inf') || literal.endsWith('Infinity')) return nonFiniteNumber(literal.startsWith('-') ? -Infinity : Infinity);
    const exact = BigInt(literal);
    return Number.isSafeInteger(Number(exact)) ? Number(exact) : exact;
  };
}

/**
 * Refuses, from the bytes before they are parsed, JSON whose BYTES input holds more elements than MAX_BYTES_ELEMENTS,
 * with the message the cap gives once the JSON is parsed: parsing a line of millions of strings costs seconds and
 * hundreds of MB before the cap is reached (a 24 MB line of 6 million, ~5 s each time it is parsed). An input is a V2
 * tensor's `data` whose tensor says BYTES (its name and datatype read from the tensor with its data left out), or a
 * top-level field of named fields that `datatypeOfField` says is BYTES. Anything else, and any JSON this scan cannot
 * follow (JSON nested deeper than MAX_JSON_DEPTH among it), is left to the parse, which says what is wrong.
 */
export function refuseBytesBeyondCap(bytes: Buffer, datatypeOfField: (name: string) => Datatype | undefined = () => undefined): void {
  // Each element takes at least two bytes (a one-character value and a comma), and a BYTES element, as a string, at
  // least three ("" and a comma): shorter JSON, or JSON with fewer quotes, cannot hold more elements than the cap.
  if (bytes.length <= 2 * MAX_BYTES_ELEMENTS) return;
  let quotes = 0;
  for (let at = bytes.indexOf(0x22); at !== -1 && quotes <= 2 * MAX_BYTES_ELEMENTS; at = bytes.indexOf(0x22, at + 1)) quotes += 1;
  if (quotes <= 2 * MAX_BYTES_ELEMENTS) return;
  const over = largeArrayOf(bytes);
  if (!over) return;
  const key = parseOr(bytes.subarray(over.keyStart, over.keyEnd));
  if (key === 'data') {
    // The tensor without its data: a few bytes, parsed to learn its name and datatype.
    const tensor = parseOr(Buffer.concat([bytes.subarray(over.ownerStart, over.arrayStart), Buffer.from('[]'), bytes.subarray(over.arrayEnd, over.ownerEnd)]));
    if (isObject(tensor) && typeof tensor.name === 'string' && tensor.datatype === 'BYTES') checkBytesElementCount(tensor.name, over.elements);
  } else if (over.ownerDepth === 1 && typeof key === 'string' && datatypeOfField(key) === 'BYTES') {
    checkBytesElementCount(key, over.elements);
  }
}

function parseOr(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

interface LargeArray {
  /** The elements it holds, nested arrays flattened (as tensor data is read). */
  elements: number;
  /** Its key's string literal (quotes included), the array's bytes, and the bytes of the object that holds it. */
  keyStart: number;
  keyEnd: number;
  arrayStart: number;
  arrayEnd: number;
  ownerStart: number;
  ownerEnd: number;
  /** 1 for a member of the top-level object. */
  ownerDepth: number;
}

/** Whether the quote at `at` is escaped: an odd number of backslashes before it. */
function escapedQuote(bytes: Buffer, at: number): boolean {
  let backslashes = 0;
  while (at - 1 - backslashes >= 0 && bytes[at - 1 - backslashes] === 0x5c) backslashes++;
  return backslashes % 2 === 1;
}

/**
 * The first array that is an object member's value and holds more than MAX_BYTES_ELEMENTS elements, with where its key
 * and its object are; undefined when there is none or the JSON is not well formed enough to tell.
 */
function largeArrayOf(bytes: Buffer): LargeArray | undefined {
  /** Open containers, 0x7b for an object and 0x5b for an array, with where each starts. */
  const kinds: number[] = [];
  const starts: number[] = [];
  /** Depths (1-based, as kinds.length once pushed) of the open objects. */
  const objects: number[] = [];
  /** The open arrays that are object members, innermost last: their elements are counted until they close. */
  const counted: { depth: number; keyStart: number; keyEnd: number; start: number; elements: number }[] = [];
  let found: LargeArray | undefined;
  /** In an object, the next string is a key; in an array, the next byte that is not a bracket starts an element. */
  let expectKey = false;
  let valueNext = false;
  let keyStart = -1;
  let keyEnd = -1;
  for (let at = 0; at < bytes.length; at++) {
    const byte = bytes[at]!;
    if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
    if (valueNext && byte !== 0x5d && byte !== 0x5b) {
      valueNext = false;
      // An element of the innermost member array, or of an array nested in it (no object between: flattened as tensor data is).
      const array = counted.at(-1);
      if (array && (objects.at(-1) ?? 0) < array.depth) array.elements += 1;
    }
    if (byte === 0x22) {
      let end = bytes.indexOf(0x22, at + 1);
      while (end !== -1 && escapedQuote(bytes, end)) end = bytes.indexOf(0x22, end + 1);
      if (end === -1) return undefined;
      if (expectKey) {
        keyStart = at;
        keyEnd = end + 1;
        expectKey = false;
      }
      at = end;
    } else if (byte === 0x7b || byte === 0x5b) {
      if (byte === 0x5b && kinds.at(-1) === 0x7b) counted.push({ depth: kinds.length + 1, keyStart, keyEnd, start: at, elements: 0 });
      kinds.push(byte);
      // Deeper than the parse takes, which refuses it at once with its own message; followed further, the scan kept a
      // record of every level (a 62 MB body of '[' held 2.9 GB and the event loop for 24 s before the parse refused it).
      if (kinds.length > MAX_JSON_DEPTH) return undefined;
      starts.push(at);
      if (byte === 0x7b) objects.push(kinds.length);
      expectKey = byte === 0x7b;
      valueNext = byte === 0x5b;
    } else if (byte === 0x7d || byte === 0x5d) {
      const depth = kinds.length;
      if (kinds.pop() !== (byte === 0x7d ? 0x7b : 0x5b)) return undefined;
      starts.pop();
      expectKey = false;
      valueNext = false;
      if (byte === 0x7d) {
        objects.pop();
        if (found && depth === found.ownerDepth) return { ...found, ownerEnd: at + 1 };
      } else if (counted.at(-1)?.depth === depth) {
        const array = counted.pop()!;
        if (!found && array.elements > MAX_BYTES_ELEMENTS) {
          found = { elements: array.elements, keyStart: array.keyStart, keyEnd: array.keyEnd, arrayStart: array.start, arrayEnd: at + 1, ownerStart: starts.at(-1)!, ownerEnd: -1, ownerDepth: depth - 1 };
        }
      }
    } else if (byte === 0x2c) {
      expectKey = kinds.at(-1) === 0x7b;
      valueNext = kinds.at(-1) === 0x5b;
    }
  }
  return undefined;
}

/**
 * JSON holding tensors (an infer request, a batch job's record, or the answer a client reads).
 * JSON.parse rounds integers beyond 2^53 to doubles, which would change INT64/UINT64 data without a
 * word, and refuses NaN and Infinity, which Triton writes and reads for float data; a body holding
 * such a literal (found in the pass that checks depth) is parsed keeping the integers exact as
 * bigints and the non-finite values boxed. Other bodies take the plain, fast parse.
 */
export function parseExactJson(bytes: Buffer, what: string): unknown {
  return parseExactText(bytes, bytes.toString('utf8'), what).value;
}

/** parseExactJson of bytes whose text is at hand; `plain` says whether JSON.parse read it as it is (no literal marked). */
function parseExactText(bytes: Buffer, text: string, what: string): { value: unknown; plain: boolean } {
  const scan = scanJson(bytes, MAX_JSON_DEPTH);
  if (scan.tooDeep) throw tooDeep(what);
  if (!scan.longInteger && !scan.nonFinite) return { value: parseJsonText(text, what), plain: true };
  const mark = freeMark(text);
  if (mark === undefined) {
    throw invalidArgument(`${what} has integers of 16 digits or more, or NaN or Infinity, and strings holding every control character from \\u0001 to \\u001f; send such integers as strings ("9007199254740993")`);
  }
  return { value: parseJsonText(markLiterals(text, mark), what, markedLiteralReviver(mark)), plain: false };
}

/**
 * A binary request's JSON header up to this long is remembered parsed; a longer one is rare and costs little to parse
 * beside its tensors. So short a header cannot hold more BYTES elements than the cap, so it needs no scan for them.
 */
const REMEMBERED_HEADER_BYTES = 2048;
/** How many parsed headers are remembered: a few per client and tensor shape. The oldest goes first. */
const REMEMBERED_HEADERS = 256;
const parsedHeaders = new Map<string, unknown>();

/**
 * The JSON header of a binary request, parsed. A client sending tensors of one shape sends the same header, byte for
 * byte, with every request (the tensors' names, datatypes, shapes and sizes; their data follows it), and parsing it
 * was the largest part of decoding a small binary request: so a short header's parse is remembered by its text,
 * frozen, so that no request can change what the next one reads. One holding literals that JSON.parse cannot read as
 * they are (integers beyond 2^53, NaN, Infinity) is parsed again each time.
 */
function parseRequestHeader(bytes: Buffer): unknown {
  const what = 'the inference request';
  if (bytes.length > REMEMBERED_HEADER_BYTES) {
    refuseBytesBeyondCap(bytes);
    return parseExactJson(bytes, what);
  }
  const text = bytes.toString('utf8');
  const remembered = parsedHeaders.get(text);
  if (remembered !== undefined) return remembered;
  const { value, plain } = parseExactText(bytes, text, what);
  if (!plain) return value;
  if (parsedHeaders.size >= REMEMBERED_HEADERS) parsedHeaders.delete(parsedHeaders.keys().next().value!);
  parsedHeaders.set(text, deepFreeze(value));
  return value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  for (const member of Object.values(value)) deepFreeze(member);
  return Object.freeze(value);
}

/**
 * JSON text of a value read by parseExactJson, its bigints written back as the integer literals they
 * were read from (JSON.stringify refuses bigints, and a number would round them), and its boxed
 * non-finite numbers as NaN, Infinity and -Infinity (JSON.stringify would write null).
 */
export function stringifyExactJson(value: unknown, what: string): string {
  let holdsLiteral = false;
  // The same text with every bigint and boxed non-finite number a 0: the strings in it tell which control character no string holds.
  const plain = JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' || item instanceof Number ? ((holdsLiteral = true), 0) : item));
  if (!holdsLiteral) return plain;
  const mark = freeMark(plain);
  if (mark === undefined) throw invalidArgument(`${what} has integers beyond 2^53, or NaN or Infinity, and strings holding every control character from \\u0001 to \\u001f, which cannot be written back exactly`);
  const text = JSON.stringify(value, (_key, item: unknown) =>
    typeof item === 'bigint' ? `${String.fromCharCode(mark)}${item}` : item instanceof Number ? `${String.fromCharCode(mark)}${floatText(item.valueOf())}` : item,
  );
  return text.replace(escapePattern(mark, 'g', (escape) => `"${escape}(-?\\d+|NaN|-?Infinity)"`), '$1');
}

/** A float as JSON text, as Triton writes it: NaN, Infinity and -Infinity by name (rapidjson's kWriteNanAndInfFlag). */
export function floatText(value: number): string {
  return Number.isFinite(value) ? String(value) : Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
}

/** A list of floats as JSON text, non-finite values by name. */
export function floatListText(values: Iterable<number>): string {
  return `[${Array.from(values, floatText).join(',')}]`;
}

/** What a raw binary request needs to know of the model: its one input, as clients see it, and whether it batches. */
export interface RawInputModel {
  inputs: readonly { name: string; datatype: Datatype; dims: readonly number[]; optional?: boolean }[];
  batched: boolean;
}

/** Whether dims (a batch dimension left out) hold exactly one element: what a raw binary BYTES input must take. */
export function holdsOneElement(dims: readonly number[]): boolean {
  return dims.every((dim) => dim === 1);
}

/**
 * Triton's raw binary request (`Inference-Header-Content-Length: 0`): the whole body is the one
 * input of a single-input model, in its declared datatype. BYTES: the body is one element. Numeric:
 * the shape is the config's dims with a single -1 among them taken from the body's size (one row
 * for a batching model), or with fixed dims as many rows as the body holds.
 */
export function decodeRawInferRequest(body: Buffer, model: RawInputModel, modelName: string, version: string | undefined): InferenceRequest {
  const required = model.inputs.filter((input) => !input.optional);
  if (model.inputs.length !== 1 && required.length !== 1) {
    // Triton's words lead (its QA tests match them), then what to do instead.
    throw invalidArgument(
      `Raw request must only have 1 input (found 1) to be deduced but got ${model.inputs.length} inputs in '${modelName}' model configuration: a raw binary request (Inference-Header-Content-Length: 0) is for models with one input; '${modelName}' has ${model.inputs.map((input) => input.name).join(', ')}: send a JSON header naming them`,
    );
  }
  const [input] = required.length === 1 ? required : model.inputs;
  const batch = model.batched ? [1] : [];
  const dims = [...input.dims];
  const unknown = dims.filter((dim) => dim < 0).length;
  if (unknown > 1) {
    throw invalidArgument(
      `The shape of the raw input '${input.name}' can not be deduced because there are more than one variable-sized dimension (dims [${dims.join(', ')}]): send a JSON header with the shape`,
    );
  }
  const known = dims.filter((dim) => dim >= 0).reduce((product, dim) => product * dim, 1);
  if (input.datatype === 'BYTES') {
    // As in Triton: the body is one element, so the input must hold exactly one — the body alone cannot say where
    // elements of a longer tensor end.
    if (!holdsOneElement(dims)) {
      throw invalidArgument(
        `For BYTE datatype raw input '${input.name}', the model must have input shape [1] (its dims are [${dims.join(', ')}]): the body is one element; send a JSON header with the shape and the elements' lengths for more`,
      );
    }
    return { model: modelName, version, inputs: [{ name: input.name, datatype: 'BYTES', shape: [...batch, ...dims], data: [body] }] };
  }
  const elementBytes = byteSize(input.datatype);
  if (body.length % elementBytes !== 0) {
    throw invalidArgument(`a raw binary request for input '${input.name}' (${input.datatype}) needs a multiple of ${elementBytes} bytes; the body has ${body.length}`);
  }
  const elements = body.length / elementBytes;
  const shape = (() => {
    // A variable dimension takes what the body holds, in one row: rows and that dimension cannot both be told from a size.
    if (unknown === 1) return known > 0 && elements % known === 0 ? [...batch, ...dims.map((dim) => (dim < 0 ? elements / known : dim))] : undefined;
    if (!model.batched) return elements === known ? dims : undefined;
    return known > 0 && elements % known === 0 && elements > 0 ? [elements / known, ...dims] : undefined;
  })();
  if (!shape) {
    throw invalidArgument(
      `a raw binary request for input '${input.name}' (${input.datatype}, dims [${input.dims.join(', ')}]${model.batched ? ', batched' : ''}) cannot take its shape from a body of ${elements} elements; send a JSON header with the shape`,
    );
  }
  const data = tensorDataFromBytes(input.name, input.datatype, shape, body, 'the body');
  return { model: modelName, version, inputs: [{ name: input.name, datatype: input.datatype, shape, data }] };
}

/** `where` names the holder in messages ("request", "input 'x'"), built only when a message needs it. */
function parseParameters(value: unknown, where: () => string): Parameters | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw invalidArgument(`${where()}: 'parameters' must be an object`);
  for (const key in value) {
    const type = typeof value[key];
    if (type === 'bigint' && (key === 'shared_memory_offset' || key === 'shared_memory_byte_size')) {
      // Beyond any region: left for the shared memory checks to refuse in their own words.
      (value as Parameters)[key] = Number(value[key]);
      continue;
    }
    // A correlation id is a uint64 (Triton reads the JSON number exactly): kept as the bigint it was read as.
    if (type === 'bigint' && key === 'sequence_id') continue;
    if (type === 'bigint') {
      throw invalidArgument(`${where()}: parameter ${quoteName(key)} is an integer beyond 2^53, which a JSON number cannot carry exactly; send it as a string`);
    }
    if (type !== 'string' && type !== 'number' && type !== 'boolean') {
      throw invalidArgument(`${where()}: parameter ${quoteName(key)} must be a string, number or boolean`);
    }
  }
  return value as Parameters;
}

/** A switch of the binary extension is a JSON boolean, as Triton reads it: the string "false" must not turn it on. */
function switchParameter(parameters: Parameters | undefined, key: 'binary_data' | 'binary_data_output', where: string): boolean | undefined {
  const value = parameters?.[key];
  if (value === undefined || typeof value === 'boolean') return value;
  throw invalidArgument(`${where}: parameter ${quoteName(key)} must be a boolean (true or false), got ${quote(value)}`);
}


/** An input's binary_data_size says where its bytes are in the body: the wire's business. */
const BINARY_SIZE = ['binary_data_size'];

function binaryTensorData(name: string, datatype: Datatype, shape: number[], bytes: Buffer, shapeFirst?: InputShapeCheck): TensorData {
  return tensorDataFromBytes(name, datatype, shape, bytes, 'binary_data_size', shapeFirst);
}

/** Bytes after the JSON that ends a body sent without Inference-Header-Content-Length: likely binary tensors, so said. */
function parseWholeBodyAsHeader(body: Buffer): unknown {
  try {
    return parseExactJson(body, 'the inference request');
  } catch (error) {
    if (!(error instanceof NereidError) || !/after JSON/.test(error.message)) throw error;
    const hint = '; binary tensors after the JSON need the header Inference-Header-Content-Length, the JSON\'s length in bytes';
    throw new NereidError('INVALID_ARGUMENT', error.message + hint, { logged: (error.logged ?? error.message) + hint });
  }
}

/**
 * Reads an infer request body. With `Inference-Header-Content-Length`, the JSON header is followed
 * by the binary tensors in input order, each as long as its `binary_data_size`.
 */
export function decodeInferRequest(
  body: Buffer,
  headerLength: string | undefined,
  model: string,
  version: string | undefined,
  sharedMemory?: SharedMemoryRegions,
  shapeFirst?: InputShapeCheck,
): { request: InferenceRequest; binaryOutputByDefault: boolean } {
  if (headerLength === undefined) {
    // Before the parse: a body of millions of strings costs seconds of this thread to parse before the cap refuses it.
    refuseBytesBeyondCap(body);
    return inferRequestOf(parseWholeBodyAsHeader(body), body.subarray(body.length), model, version, sharedMemory, shapeFirst);
  }
  // A plain decimal only: Number() would also take '0xd2', '1e2' or ' 12 '.
  const jsonLength = /^\d{1,15}$/.test(headerLength) ? Number(headerLength) : NaN;
  if (!Number.isInteger(jsonLength) || jsonLength > body.length) {
    throw invalidArgument(
      `Inference-Header-Content-Length is ${quote(headerLength)} but the body has ${body.length} bytes; it must be the length of the JSON header, a decimal number`,
    );
  }
  return inferRequestOf(parseRequestHeader(body.subarray(0, jsonLength)), body.subarray(jsonLength), model, version, sharedMemory, shapeFirst);
}

/**
 * An infer request from its JSON header, parsed already (by decodeInferRequest, or a batch job's V2 line by the job,
 * which has scanned its bytes against the BYTES cap before parsing them), and the binary tensors that followed the
 * header in the body (none for a line of a file).
 */
export function inferRequestOf(
  header: unknown,
  binary: Buffer,
  model: string,
  version: string | undefined,
  sharedMemory?: SharedMemoryRegions,
  shapeFirst?: InputShapeCheck,
): { request: InferenceRequest; binaryOutputByDefault: boolean } {
  if (!isObject(header)) throw invalidArgument('the inference request must be a JSON object');
  if (!Array.isArray(header.inputs)) {
    const misnamed = header.inputs === undefined ? Object.keys(header).find((key) => /^inputs?$/i.test(key) || key === 'instances') : undefined;
    throw invalidArgument(`the inference request needs 'inputs', an array of tensors${misnamed ? `; it has ${quoteName(misnamed)}` : ''}`);
  }
  if (header.id !== undefined && typeof header.id !== 'string') throw invalidArgument(`'id' must be a string`);
  const parameters = parseParameters(header.parameters, () => 'request');
  const binaryOutputByDefault = switchParameter(parameters, 'binary_data_output', 'request') ?? false;
  checkSequenceParameters(parameters);
  checkReservedParameters(parameters);
  let offset = 0;
  let readBudget: SharedMemoryReadBudget | undefined;
  const inputs: InferInput[] = header.inputs.map((raw: unknown, index: number) => {
    if (!isObject(raw)) throw invalidArgument(`inputs[${index}] must be an object`);
    const name = raw.name;
    if (typeof name !== 'string' || name === '') throw invalidArgument(`inputs[${index}] needs a 'name'`);
    const datatype = checkDatatype(name, raw.datatype);
    const shape = checkShape(name, raw.shape);
    const inputParameters = parseParameters(raw.parameters, () => `input ${quoteName(name)}`);
    const binarySize = inputParameters?.binary_data_size;
    const sharedMemoryReference = sharedMemoryReferenceOf(inputParameters, () => `input ${quoteName(name)}`);
    let data: TensorData;
    if (sharedMemoryReference) {
      const otherSource = raw.data !== undefined ? `'data'` : binarySize !== undefined ? 'binary_data_size' : undefined;
      data = sharedMemoryInputData(name, datatype, shape, sharedMemoryReference, sharedMemory, (readBudget ??= sharedMemoryReadBudget(sharedMemory)), otherSource);
      return { name, datatype, shape, data, parameters: withoutSharedMemoryParameters(inputParameters!) };
    } else if (binarySize !== undefined) {
      if (!Number.isInteger(binarySize) || (binarySize as number) < 0) {
        throw invalidArgument(`input ${quoteName(name)}: binary_data_size must be a non-negative integer`);
      }
      if (raw.data !== undefined) throw invalidArgument(`input ${quoteName(name)} has both 'data' and binary_data_size; send one`);
      const end = offset + (binarySize as number);
      if (end > binary.length) {
        throw invalidArgument(
          `input ${quoteName(name)}: binary_data_size ${binarySize} runs past the end of the body (${binary.length - offset} binary bytes left)`,
        );
      }
      data = binaryTensorData(name, datatype, shape, binary.subarray(offset, end), shapeFirst);
      offset = end;
    } else {
      if (raw.data === undefined) throw invalidArgument(`input ${quoteName(name)} has no 'data' (and no binary_data_size)`);
      data = tensorDataFromJson(name, datatype, raw.data);
    }
    return { name, datatype, shape, data, parameters: withoutParameters(inputParameters, BINARY_SIZE) };
  });
  if (offset !== binary.length) {
    throw invalidArgument(
      `the body has ${binary.length - offset} bytes after the JSON header and binary inputs that no binary_data_size accounts for`,
    );
  }
  let outputs: RequestedOutput[] | undefined;
  if (header.outputs !== undefined) {
    if (!Array.isArray(header.outputs)) throw invalidArgument(`'outputs' must be an array`);
    outputs = header.outputs.map((raw: unknown, index: number) => {
      const name = isObject(raw) ? raw.name : undefined;
      if (!isObject(raw) || typeof name !== 'string') throw invalidArgument(`outputs[${index}] needs a 'name'`);
      const outputParameters = parseParameters(raw.parameters, () => `output ${quoteName(name)}`);
      switchParameter(outputParameters, 'binary_data', `output ${quoteName(name)}`);
      return requestedOutputOf(name, outputParameters);
    });
    checkSharedMemoryOutputs(outputs, sharedMemory);
  }
  return {
    request: { model, version, id: header.id as string | undefined, parameters: withoutParameters(parameters, TRANSPORT_PARAMETERS), inputs, outputs },
    binaryOutputByDefault,
  };
}

const isFiniteNumber = (value: number) => Number.isFinite(value);

/**
 * JSON `data` text, written from the typed array without an intermediate array of numbers. 64-bit
 * integers are written digit for digit (JSON.stringify would round them to doubles); non-finite
 * floats as NaN, Infinity and -Infinity, as Triton writes them (JSON.stringify's null would read
 * back as 0 in most clients).
 */
function jsonDataText(datatype: Datatype, data: TensorData): string {
  switch (datatype) {
    case 'BYTES':
    case 'BOOL':
      return JSON.stringify(tensorDataToJson(datatype, data));
    case 'FP16':
      return floatListText(tensorDataToJson(datatype, data) as number[]);
    case 'FP32':
    case 'FP64': {
      const values = data as Float32Array | Float64Array;
      if (!values.every(isFiniteNumber)) return floatListText(values);
      return `[${values.join(',')}]`;
    }
    default:
      return `[${(data as NumericArray).join(',')}]`;
  }
}

/**
 * Values written as JSON text between two returns to the event loop. Formatting numbers costs about a microsecond
 * each, so a recogniser's 2-million-float answer held the loop for seconds: health probes, other answers and the
 * shutdown timer waited behind it.
 */
export const JSON_SLICE_VALUES = 1 << 16;

const NUMERIC_TEXT_TYPES: ReadonlySet<Datatype> = new Set(['FP32', 'FP64', 'INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64']);

/** jsonDataText of a large numeric tensor, written a slice at a time with the event loop served between slices. */
async function jsonDataTextInSlices(datatype: Datatype, data: TensorData): Promise<string> {
  const values = data as NumericArray;
  let text = '[';
  for (let start = 0; start < values.length; start += JSON_SLICE_VALUES) {
    if (start > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    const slice = jsonDataText(datatype, values.subarray(start, start + JSON_SLICE_VALUES) as TensorData);
    text += (start > 0 ? ',' : '') + slice.slice(1, -1);
  }
  return `${text}]`;
}

/** Whether a response has a numeric output large enough to be written in slices if asked for as JSON (most have none: they take the direct path). */
export function hasLargeJsonOutput(response: InferenceResponse): boolean {
  return response.outputs.some((output) => NUMERIC_TEXT_TYPES.has(output.datatype) && (output.data as NumericArray).length > JSON_SLICE_VALUES);
}

/** Whether an output is answered in binary: as Triton's, a listed output only when it asks; binary_data_output is the kind of the others. */
function answeredInBinary(name: string, requestedOutputs: readonly RequestedOutput[] | undefined, binaryOutputByDefault: boolean): boolean {
  const requested = requestedOutputs?.find((candidate) => candidate.name === name);
  return requested ? requested.parameters?.binary_data === true : binaryOutputByDefault;
}

/**
 * encodeInferResponse for the server's event loop: the JSON text of numeric outputs over JSON_SLICE_VALUES values is
 * written in slices, the loop served between them (a small answer is encoded at once, as before).
 */
export async function encodeInferResponseInSlices(
  response: InferenceResponse,
  requestedOutputs: readonly RequestedOutput[] | undefined,
  binaryOutputByDefault: boolean,
  sharedMemory?: SharedMemoryRegions,
): Promise<EncodedResponse> {
  const texts = new Map<string, string>();
  for (const output of response.outputs) {
    const large = NUMERIC_TEXT_TYPES.has(output.datatype) && (output.data as NumericArray).length > JSON_SLICE_VALUES;
    const inSharedMemory = requestedOutputs?.some((requested) => requested.name === output.name && requested.parameters?.shared_memory_region !== undefined);
    if (large && !inSharedMemory && !answeredInBinary(output.name, requestedOutputs, binaryOutputByDefault)) {
      texts.set(output.name, await jsonDataTextInSlices(output.datatype, output.data));
    }
  }
  return encodeInferResponse(response, requestedOutputs, binaryOutputByDefault, sharedMemory, texts);
}

/**
 * An encoded response: the JSON header, as text, then each binary output's bytes (views, not copies). The header stays
 * text so that a transport writes it as it is (Node writes a string to a socket without an ArrayBuffer of its own, and
 * a small JSON answer is one write with the HTTP head).
 */
export interface EncodedResponse {
  header: string;
  binary: Buffer[];
  /** Bytes of the header (UTF-8) and the binary outputs together. */
  byteLength: number;
  /** Length of the JSON header when binary outputs follow it (Inference-Header-Content-Length); undefined for plain JSON. */
  headerLength?: number;
}

/** An encoded response's bytes in one buffer (a compressor's input). */
export function encodedBytes(encoded: EncodedResponse): Buffer {
  const header = Buffer.from(encoded.header, 'utf8');
  return encoded.binary.length === 0 ? header : Buffer.concat([header, ...encoded.binary], encoded.byteLength);
}

/** Writes a response as JSON, or as a JSON header followed by binary outputs when any output asks for binary. */
export function encodeInferResponse(
  response: InferenceResponse,
  requestedOutputs: readonly RequestedOutput[] | undefined,
  binaryOutputByDefault: boolean,
  sharedMemory?: SharedMemoryRegions,
  /** JSON data texts written already, by output name (encodeInferResponseInSlices). */
  dataTexts?: ReadonlyMap<string, string>,
): EncodedResponse {
  const binary: Buffer[] = [];
  let binaryBytes = 0;
  const inSharedMemory = writeSharedMemoryOutputs(response, requestedOutputs, sharedMemory);
  const outputs = response.outputs.map((output) => {
    const base = `{"name":${JSON.stringify(output.name)},"datatype":"${output.datatype}","shape":[${output.shape.join(',')}]`;
    const sharedMemoryParameters = inSharedMemory?.get(output.name);
    if (sharedMemoryParameters) return `${base},"parameters":${JSON.stringify(sharedMemoryParameters)}}`;
    if (!answeredInBinary(output.name, requestedOutputs, binaryOutputByDefault)) return `${base},"data":${dataTexts?.get(output.name) ?? jsonDataText(output.datatype, output.data)}}`;
    const bytes = tensorDataToBytes(output.datatype, output.data);
    binary.push(bytes);
    binaryBytes += bytes.length;
    return `${base},"parameters":{"binary_data_size":${bytes.length}}}`;
  });
  const head = JSON.stringify({
    model_name: response.model,
    model_version: response.version,
    ...(response.id !== undefined ? { id: response.id } : {}),
    ...(response.parameters ? { parameters: response.parameters } : {}),
  });
  const header = `${head.slice(0, -1)},"outputs":[${outputs.join(',')}]}`;
  const headerBytes = Buffer.byteLength(header, 'utf8');
  return { header, binary, byteLength: headerBytes + binaryBytes, headerLength: binary.length > 0 ? headerBytes : undefined };
}
