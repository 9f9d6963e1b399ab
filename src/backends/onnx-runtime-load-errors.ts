/**
 * ONNX Runtime's reasons for refusing to open a model, as a user can act on them. The engine says
 * where in its C++ sources it gave up ("/onnxruntime_src/…/model.cc:202 onnxruntime::Model::Model(
 * onnx::ModelProto&&, …) Unsupported model IR version: 99, …"): that prefix is taken out and ORT's
 * own sentence kept, the model file is named (the repository shows it relative to itself), and a
 * hint is added where the cause is clear: an IR version or opset newer than this ONNX Runtime reads,
 * an operator without a kernel for the model's opset or data type, an external data file missing.
 */
import { createRequire } from 'node:module';
import { basename, dirname } from 'node:path';

/** The onnxruntime-node version the server runs, for hints that name what it supports. */
export function onnxRuntimeVersion(): string {
  try {
    return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Where ORT says it threw: a C++ source file and line ("/onnxruntime_src/…/model.cc:202 ", "tensorprotoutils.cc:461 "). */
const SOURCE_LOCATION = /(?:\/[^\s:]*\/)?[\w.-]+\.(?:cc|cpp|h|hpp):\d+ /g;

/**
 * The C++ function after a source location: a signature with its parameters ("void onnxruntime::
 * model_load_utils::ValidateOpsetForDomain(const std::unordered_map<…>&, …) const "), or a bare name
 * followed by ORT's sentence ("ValidateExternalDataPathFromDir External data path…"). Returns how
 * many characters it takes, 0 if what follows is no function.
 */
function functionLength(text: string): number {
  const open = text.indexOf('(');
  const head = open < 0 ? '' : text.slice(0, open);
  if (open > 0 && head.includes('::') && !/[.!?]/.test(head)) {
    let depth = 0;
    for (let index = open; index < text.length; index++) {
      if (text[index] === '(') depth++;
      else if (text[index] === ')' && --depth === 0) return index + 1 + (/^(?: const)?\s*/.exec(text.slice(index + 1))?.[0].length ?? 0);
    }
    return 0;
  }
  // A bare identifier, then a capitalised word: a function name before the sentence.
  const bare = /^[A-Za-z_][\w:]*\s+(?=[A-Z])/.exec(text);
  return bare && /[a-z][A-Z]|::/.test(bare[0]) ? bare[0].length : 0;
}

/** ORT's message without its C++ source locations and function signatures. */
export function withoutEngineInternals(message: string): string {
  let out = '';
  let rest = message;
  for (;;) {
    SOURCE_LOCATION.lastIndex = 0;
    const found = SOURCE_LOCATION.exec(rest);
    if (!found) break;
    out += rest.slice(0, found.index);
    rest = rest.slice(found.index + found[0].length);
    rest = rest.slice(functionLength(rest));
  }
  return (out + rest).replace(/\s+$/, '');
}

/** What to do about a reason ORT gave, where it is clear; '' where it is not. */
function hintFor(reason: string, modelPath: string): string {
  const ir = /Unsupported model IR version: (\d+), max supported IR version: (\d+)/.exec(reason);
  if (ir) return `this ONNX Runtime reads IR versions up to ${ir[2]}: export the model with IR version ${ir[2]} or lower, or run a newer ONNX Runtime`;
  const opset = /Opset (\d+) is under development[\s\S]*?support for domain (\S+) is till opset (\d+)/.exec(reason);
  if (opset) return `this ONNX Runtime supports ${opset[2]} up to opset ${opset[3]}, and the model asks for opset ${opset[1]}: export it with opset ${opset[3]} or lower`;
  const kernel = /Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'/.exec(reason);
  if (kernel) {
    const [, op, since, node] = kernel;
    // ONNX Runtime implements the default domain from opset 7; an operator at an older version has no kernel.
    return Number(since) < 7
      ? `${op}(${since}) is ${op} as defined at opset ${since}, older than ONNX Runtime implements (opset 7 and later): convert the model to a newer opset (onnx.version_converter) or re-export it`
      : `this ONNX Runtime has no ${op} kernel (opset ${since}) for the data type node '${node}' is given (an int16 Relu, say): cast its input to a type ${op} takes, or re-export the model`;
  }
  const external = /External data path does not exist: "?([^"\n]+)"?/.exec(reason);
  if (external) {
    const missing = external[1];
    const where = dirname(missing) === dirname(modelPath) ? basename(missing) : missing;
    return `the model keeps weights in ${where}, which must sit beside ${basename(modelPath)} (copy it with the model file)`;
  }
  return '';
}

/**
 * A load failure as the user reads it: "ONNX Runtime 1.30.0 cannot load model file <path>: <ORT's
 * sentence>; <hint>". The engine's own error stays as the cause, for the log.
 */
export function engineLoadError(error: unknown, modelPath: string): Error {
  const raw = error instanceof Error ? error.message : String(error);
  const version = onnxRuntimeVersion();
  // "Load model from <path> failed:<reason>": the path is said once, below.
  const reason = withoutEngineInternals(raw.replace(/^Load model from [\s\S]*? failed:/, ''))
    .split(dirname(modelPath) + '/')
    .join('');
  const hint = hintFor(raw, modelPath);
  const sentence = hint ? `${reason.replace(/\.$/, '')}; ${hint}` : reason;
  return new Error(`ONNX Runtime ${version} cannot load model file ${modelPath}: ${sentence}`, { cause: error });
}
