import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { datatypeOfConfig, ignoredTritonFields, parameterValue, parseModelConfig, type ModelConfig } from './model-config.js';
import { parsePbtxt } from './pbtxt.js';

/** Writes each text to a temp folder and reads it back the way the repository does, by file name. */
async function parseFiles(files: Record<string, string>): Promise<Record<string, ModelConfig>> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-config-'));
  try {
    const parsed: Record<string, ModelConfig> = {};
    for (const [file, text] of Object.entries(files)) {
      await writeFile(join(dir, file), text);
      const read = await readFile(join(dir, file), 'utf8');
      const raw = file.endsWith('.pbtxt') ? parsePbtxt(read, file) : file.endsWith('.json') ? JSON.parse(read) : parseYaml(read);
      parsed[file] = parseModelConfig(raw, file);
    }
    return parsed;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function parseError(raw: unknown, source = 'config.json'): string {
  try {
    parseModelConfig(raw, source);
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail(`expected ${JSON.stringify(raw)} to be rejected`);
}

const PBTXT = `
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { specific: { versions: [1, 3] } }
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] optional: true }
]
output { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] label_filename: "labels.txt" }
output { name: "OUTPUT1" data_type: TYPE_FP32 dims: 16 reshape: { shape: [ 4, 4 ] } }
instance_group [ { name: "cpu" count: 2 kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 100
  preserve_ordering: false
  priority_levels: 2
  default_priority_level: 1
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000 allow_timeout_override: true max_queue_size: 16 }
  priority_queue_policy { key: 1 value: { max_queue_size: 4 } }
}
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters { key: "execution_mode" value: { string_value: "0" } }
response_cache { enable: true }
`;

/** Triton's own JSON form: int64/uint64 fields as strings, parameters as {key: {string_value}}. */
const TRITON_JSON = JSON.stringify({
  name: 'simple',
  platform: 'onnxruntime_onnx',
  max_batch_size: 8,
  version_policy: { specific: { versions: ['1', '3'] } },
  input: [
    { name: 'INPUT0', data_type: 'TYPE_INT32', dims: ['16'] },
    { name: 'INPUT1', data_type: 'TYPE_INT32', dims: ['16'], optional: true },
  ],
  output: [
    { name: 'OUTPUT0', data_type: 'TYPE_INT32', dims: ['-1'], label_filename: 'labels.txt' },
    { name: 'OUTPUT1', data_type: 'TYPE_FP32', dims: ['16'], reshape: { shape: ['4', '4'] } },
  ],
  instance_group: [{ name: 'cpu', count: 2, kind: 'KIND_CPU' }],
  dynamic_batching: {
    preferred_batch_size: [2, 4],
    max_queue_delay_microseconds: '100',
    preserve_ordering: false,
    priority_levels: '2',
    default_priority_level: '1',
    default_queue_policy: {
      timeout_action: 'DELAY',
      default_timeout_microseconds: '5000',
      allow_timeout_override: true,
      max_queue_size: '16',
    },
    priority_queue_policy: { '1': { max_queue_size: '4' } },
  },
  parameters: { intra_op_thread_count: { string_value: '1' }, execution_mode: { string_value: '0' } },
  response_cache: { enable: true },
});

/** The friendlier YAML form: plain parameter values, datatypes without TYPE_, singletons. */
const FRIENDLY_YAML = `
name: simple
platform: onnxruntime_onnx
max_batch_size: 8
version_policy: {specific: {versions: [1, 3]}}
input:
  - {name: INPUT0, data_type: INT32, dims: [16]}
  - {name: INPUT1, data_type: TYPE_INT32, dims: [16], optional: true}
output:
  - {name: OUTPUT0, data_type: INT32, dims: [-1], label_filename: labels.txt}
  - name: OUTPUT1
    data_type: FP32
    dims: 16
    reshape: {shape: [4, 4]}
instance_group: [{name: cpu, count: 2, kind: KIND_CPU}]
dynamic_batching:
  preferred_batch_size: [2, 4]
  max_queue_delay_microseconds: 100
  preserve_ordering: false
  priority_levels: 2
  default_priority_level: 1
  default_queue_policy: {timeout_action: DELAY, default_timeout_microseconds: 5000, allow_timeout_override: true, max_queue_size: 16}
  priority_queue_policy:
    1: {max_queue_size: 4}
parameters:
  intra_op_thread_count: 1
  execution_mode: "0"
response_cache: {enable: true}
`;

const QUEUE_DEFAULTS = { timeout_action: 'REJECT', default_timeout_microseconds: 0, allow_timeout_override: false, max_queue_size: 0, max_queue_bytes: 0 };

const EXPECTED = {
  name: 'simple',
  platform: 'onnxruntime_onnx',
  max_batch_size: 8,
  version_policy: { specific: { versions: [1, 3] } },
  input: [
    { name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16], optional: false, allow_ragged_batch: false },
    { name: 'INPUT1', data_type: 'TYPE_INT32', dims: [16], optional: true, allow_ragged_batch: false },
  ],
  output: [
    { name: 'OUTPUT0', data_type: 'TYPE_INT32', dims: [-1], label_filename: 'labels.txt' },
    { name: 'OUTPUT1', data_type: 'TYPE_FP32', dims: [16], reshape: { shape: [4, 4] } },
  ],
  instance_group: [{ name: 'cpu', count: 2, kind: 'KIND_CPU' }],
  dynamic_batching: {
    preferred_batch_size: [2, 4],
    max_queue_delay_microseconds: 100,
    target_latency_us: 0,
    preserve_ordering: false,
    priority_levels: 2,
    default_priority_level: 1,
    default_queue_policy: {
      timeout_action: 'DELAY',
      default_timeout_microseconds: 5000,
      allow_timeout_override: true,
      max_queue_size: 16,
      max_queue_bytes: 0,
    },
    priority_queue_policy: { '1': { ...QUEUE_DEFAULTS, max_queue_size: 4 } },
  },
  parameters: { intra_op_thread_count: { string_value: '1' }, execution_mode: { string_value: '0' } },
  model_warmup: [],
  batch_input: [],
  response_cache: { enable: true, ttl_seconds: 0, key_parameters: [] },
};

/** deepEqual that ignores keys whose value is undefined (zod keeps some as explicit undefined). */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

test('the same config as config.pbtxt, Triton JSON and friendly YAML parses to the same ModelConfig', async () => {
  const parsed = await parseFiles({ 'config.pbtxt': PBTXT, 'config.json': TRITON_JSON, 'config.yaml': FRIENDLY_YAML });
  assert.deepEqual(plain(parsed['config.pbtxt']), EXPECTED);
  assert.deepEqual(parsed['config.json'], parsed['config.pbtxt']);
  assert.deepEqual(parsed['config.yaml'], parsed['config.pbtxt']);
});

test('a minimal config fills every default: version_policy latest 1, empty lists, no batching decision', () => {
  const config = parseModelConfig({}, 'config.yaml');
  assert.deepEqual(plain(config), {
    version_policy: { latest: { num_versions: 1 } },
    input: [],
    output: [],
    instance_group: [],
    parameters: {},
    model_warmup: [],
    batch_input: [],
  });
  assert.equal(config.max_batch_size, undefined, 'absent max_batch_size is left to auto-complete');
  assert.equal(config.dynamic_batching, undefined);
  assert.deepEqual(parseModelConfig(undefined, 'x').version_policy, { latest: { num_versions: 1 } });
  assert.deepEqual(parseModelConfig(null, 'x').version_policy, { latest: { num_versions: 1 } });
});

test('an empty dynamic_batching block gets Triton defaults, default_queue_policy included', async () => {
  const { 'config.pbtxt': config } = await parseFiles({ 'config.pbtxt': 'max_batch_size: 4\ndynamic_batching { }\n' });
  assert.deepEqual(plain(config.dynamic_batching), {
    preferred_batch_size: [],
    max_queue_delay_microseconds: 0,
    target_latency_us: 0,
    preserve_ordering: false,
    priority_levels: 0,
    default_priority_level: 0,
    default_queue_policy: QUEUE_DEFAULTS,
  });
  const partial = parseModelConfig({ max_batch_size: 4, dynamic_batching: { default_queue_policy: { max_queue_size: 3 } } }, 'x');
  assert.deepEqual(partial.dynamic_batching!.default_queue_policy, { ...QUEUE_DEFAULTS, max_queue_size: 3 });
});

test('defaults inside entries: optional false, instance_group KIND_AUTO x1, latest {} is 1 version', () => {
  const config = parseModelConfig(
    { input: { name: 'x', data_type: 'FP32', dims: [1] }, instance_group: [{}], version_policy: { latest: {} } },
    'x',
  );
  assert.equal(config.input[0].optional, false);
  assert.deepEqual(config.instance_group, [{ kind: 'KIND_AUTO', count: 1 }]);
  assert.deepEqual(config.version_policy, { latest: { num_versions: 1 } });
  assert.deepEqual(parseModelConfig({ version_policy: { all: {} } }, 'x').version_policy, { all: {} });
});

test("a data_type written as the enum's number, as protobuf's text format allows, reads as its name", async () => {
  const { 'config.pbtxt': config } = await parsePbtxtFile(`
    input { name: "x" data_type: 11 dims: 4 }
    output { name: "y" data_type: 9 dims: 4 }
  `);
  assert.equal(config.input[0].data_type, 'TYPE_FP32');
  assert.equal(config.output[0].data_type, 'TYPE_INT64');
  assert.throws(() => parseModelConfig({ input: [{ name: 'x', data_type: 99, dims: [4] }] }, 'config.json'), /input\.0\.data_type/);
});

test('an image layout (FORMAT_NHWC, FORMAT_NCHW) needs 3 dims, as Triton checks; formats by name or number', async () => {
  assert.throws(() => parseModelConfig({ input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [4], format: 'FORMAT_NHWC' }] }, 'config.json'), /model input NHWC\/NCHW require 3 dims: input 'x' is FORMAT_NHWC with dims \[4\]/);
  assert.throws(() => parseModelConfig({ input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [3, 8, 8], format: 'FORMAT_SIDEWAYS' }] }, 'config.json'), /input\.0\.format/);
  const { 'config.pbtxt': config } = await parsePbtxtFile('input { name: "x" data_type: TYPE_FP32 dims: [ 3, 8, 8 ] format: 2 }');
  assert.equal(config.input[0].format, 'FORMAT_NCHW');
  // Triton counts the dims a client sends, not the reshape the model gets.
  assert.equal(parseModelConfig({ input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [3, 4, 4], reshape: { shape: [1, 3, 4, 4] }, format: 'FORMAT_NCHW' }] }, 'c').input[0].format, 'FORMAT_NCHW');
  assert.throws(() => parseModelConfig({ input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [1, 3, 4, 4], reshape: { shape: [3, 4, 4] }, format: 'FORMAT_NCHW' }] }, 'c'), /require 3 dims: input 'x' is FORMAT_NCHW with dims \[1, 3, 4, 4\]/);
});

test("Triton's own refusals of qa/L0_model_config lead in its words: a negative max_batch_size, a tensor without data_type, CPU instances on GPUs", () => {
  assert.throws(() => parseModelConfig({ max_batch_size: -1 }, 'c'), /max_batch_size: 'max_batch_size' must be non-negative value/);
  assert.throws(() => parseModelConfig({ input: [{ name: 'input', dims: [4] }] }, 'c'), /input\.0\.data_type: must specify 'data_type'/);
  assert.throws(() => parseModelConfig({ output: [{ name: 'y', data_type: 3.5, dims: [4] }] }, 'c'), /output\.0\.data_type: expected a data type such as TYPE_FP32, got 3\.5/);
  assert.throws(
    () => parseModelConfig({ instance_group: [{ name: 'cpus', kind: 'KIND_CPU', gpus: [0] }] }, 'c'),
    /instance_group\.0\.gpus: instance group cpus has kind KIND_CPU but specifies one or more GPUs \(gpus: \[0\]\)/,
  );
  assert.equal(parseModelConfig({ instance_group: [{ kind: 'KIND_GPU', gpus: [0] }] }, 'c').instance_group[0].gpus?.[0], 0);
});

test('pbtxt singletons are coerced to arrays: one input block, one dims value, one preferred size, one version', async () => {
  const { 'config.pbtxt': config } = await parsePbtxtFile(`
    max_batch_size: 4
    input { name: "x" data_type: TYPE_FP32 dims: 16 }
    output { name: "y" data_type: TYPE_FP32 dims: -1 }
    instance_group { kind: KIND_GPU gpus: 0 }
    version_policy { specific { versions: 3 } }
    dynamic_batching { preferred_batch_size: 4 priority_levels: 2 default_priority_level: 2 priority_queue_policy { key: 2 value { max_queue_size: 1 } } }
    parameters { key: "k" value: { string_value: "v" } }
  `);
  assert.deepEqual(plain(config.input), [{ name: 'x', data_type: 'TYPE_FP32', dims: [16], optional: false, allow_ragged_batch: false }]);
  assert.deepEqual(config.output[0].dims, [-1]);
  assert.deepEqual(config.instance_group, [{ kind: 'KIND_GPU', count: 1, gpus: [0] }]);
  assert.deepEqual(config.version_policy, { specific: { versions: [3] } });
  assert.deepEqual(config.dynamic_batching!.preferred_batch_size, [4]);
  assert.deepEqual(config.dynamic_batching!.priority_queue_policy, { '2': { ...QUEUE_DEFAULTS, max_queue_size: 1 } });
  assert.deepEqual(config.parameters, { k: { string_value: 'v' } });
  assert.equal(parameterValue(config, 'k'), 'v');
  assert.equal(parameterValue(config, 'missing'), undefined);
});

async function parsePbtxtFile(text: string) {
  return parseFiles({ 'config.pbtxt': text });
}

test('data_type accepts TYPE_ names and bare V2 names, and TYPE_STRING / BYTES both mean BYTES', () => {
  const config = parseModelConfig(
    {
      input: [
        { name: 'a', data_type: 'FP16', dims: [1] },
        { name: 'b', data_type: 'TYPE_UINT8', dims: [1] },
        { name: 'c', data_type: 'BYTES', dims: [1] },
        { name: 'd', data_type: 'TYPE_STRING', dims: [1] },
        { name: 'e', data_type: 'STRING', dims: [1] },
      ],
    },
    'x',
  );
  assert.deepEqual(
    config.input.map((input) => input.data_type),
    ['TYPE_FP16', 'TYPE_UINT8', 'TYPE_STRING', 'TYPE_STRING', 'TYPE_STRING'],
  );
  assert.deepEqual(config.input.map(datatypeOfConfig), ['FP16', 'UINT8', 'BYTES', 'BYTES', 'BYTES']);
});

test('parameters: Triton JSON, pbtxt list, and plain YAML values all become {key: {string_value}}', () => {
  const expected = { a: { string_value: '1' }, b: { string_value: 'true' }, c: { string_value: 'text' } };
  assert.deepEqual(
    parseModelConfig({ parameters: { a: { string_value: '1' }, b: { string_value: 'true' }, c: { string_value: 'text' } } }, 'x')
      .parameters,
    expected,
  );
  assert.deepEqual(parseModelConfig({ parameters: { a: 1, b: true, c: 'text' } }, 'x').parameters, expected);
  assert.deepEqual(
    parseModelConfig(
      {
        parameters: [
          { key: 'a', value: { string_value: '1' } },
          { key: 'b', value: { string_value: 'true' } },
          { key: 'c', value: { string_value: 'text' } },
        ],
      },
      'x',
    ).parameters,
    expected,
  );
});

test('uint64 fields written as strings (Triton JSON) are numbers after parsing', () => {
  const config = parseModelConfig(
    {
      max_batch_size: '8',
      input: [{ name: 'x', data_type: 'TYPE_FP32', dims: ['-1', '3'] }],
      dynamic_batching: { max_queue_delay_microseconds: '100', default_queue_policy: { max_queue_size: '7' } },
    },
    'config.json',
  );
  assert.equal(config.max_batch_size, 8);
  assert.deepEqual(config.input[0].dims, [-1, 3]);
  assert.equal(config.dynamic_batching!.max_queue_delay_microseconds, 100);
  assert.equal(config.dynamic_batching!.default_queue_policy.max_queue_size, 7);
});

test('fields Nereid does not use (Triton JSON extras) pass through instead of failing', () => {
  const config = parseModelConfig(
    {
      max_batch_size: 0,
      input: [{ name: 'x', data_type: 'TYPE_FP32', format: 'FORMAT_NONE', dims: ['4'], is_shape_tensor: false, allow_ragged_batch: false }],
      optimization: { graph: { level: 1 } },
      model_warmup: [],
    },
    'config.json',
  ) as ModelConfig & { optimization?: unknown };
  assert.equal(config.input[0].format, 'FORMAT_NONE');
  assert.deepEqual(config.optimization, { graph: { level: 1 } });
});

// ---------- invalid configs: every error names the field ----------

const INPUT_FIELDS = { name: 'x', data_type: 'TYPE_FP32', dims: [4] };

test('an unknown field is refused at every depth, named with its place and the known field closest to it', () => {
  assert.equal(parseError({ max_batch_sise: 8 }, 'config.pbtxt'), "invalid config.pbtxt: unknown field 'max_batch_sise' (did you mean 'max_batch_size'?)");
  const cases: [unknown, RegExp][] = [
    [{ input: [{ ...INPUT_FIELDS, dimz: [4] }] }, /input\.0: unknown field 'dimz' \(did you mean 'dims'\?\)/],
    [{ output: [{ ...INPUT_FIELDS, label_file: 'l.txt' }] }, /output\.0: unknown field 'label_file' \(did you mean 'label_filename'\?\)/],
    [{ input: [{ ...INPUT_FIELDS, reshape: { shap: [4] } }] }, /input\.0\.reshape: unknown field 'shap' \(did you mean 'shape'\?\)/],
    [{ instance_group: [{ count: 1, gpu: [0] }] }, /instance_group\.0: unknown field 'gpu' \(did you mean 'gpus'\?\)/],
    [{ max_batch_size: 4, dynamic_batching: { default_queue_policy: { max_queue_sise: 2 } } }, /dynamic_batching\.default_queue_policy: unknown field 'max_queue_sise'/],
    [{ version_policy: { latest: { num_version: 2 } } }, /version_policy\.latest: unknown field 'num_version' \(did you mean 'num_versions'\?\)/],
    [{ model_warmup: [{ name: 'w', inputs: { x: { data_type: 'TYPE_FP32', dims: [4], zero_data: true, zero: true } } }] }, /model_warmup\.0\.inputs\.x: unknown field 'zero'/],
    [{ response_cache: { enabled: true } }, /response_cache: unknown field 'enabled' \(did you mean 'enable'\?\)/],
    [{ optimization: { graph: { levl: 1 } } }, /optimization\.graph: unknown field 'levl' \(did you mean 'level'\?\)/],
    [{ input: [{ ...INPUT_FIELDS, preprocess: { image: { colour: 'rgb' } } }] }, /input\.0\.preprocess\.image: unknown field 'colour' \(did you mean 'color'\?\)/],
  ];
  for (const [raw, expected] of cases) assert.match(parseError(raw), expected);
  // A value outside its choices is named beside them.
  assert.match(parseError({ input: [{ ...INPUT_FIELDS, preprocess: { image: { color: 'purple' } } }] }), /input\.0\.preprocess\.image\.color: Invalid option: expected one of .*"grayscale", got "purple"/);
  // A word nothing like a field gets the list of fields instead of a guess.
  assert.match(parseError({ flurb: 1 }), /unknown field 'flurb' \(known: .*max_batch_size.*\)/);
});

test("Triton's fields that Nereid does not use are accepted as they are and listed for a warning", () => {
  const config = parseModelConfig(
    {
      model_transaction_policy: { decoupled: false },
      model_metrics: { metric_control: [{ metric_identifier: { family: 'x' } }] },
      input: [{ ...INPUT_FIELDS, is_shape_tensor: true }],
      instance_group: [{ count: 1, passive: true }],
      optimization: { graph: { level: -1 }, eager_batching: true },
    },
    'config.json',
  );
  // decoupled: false is what Nereid does anyway: a field holding only defaults is not named.
  assert.deepEqual(ignoredTritonFields(config).sort(), ['input.0.is_shape_tensor', 'instance_group.0.passive', 'model_metrics', 'optimization.eager_batching']);
  assert.deepEqual(config.optimization?.graph, { level: -1 });
  assert.deepEqual(ignoredTritonFields(parseModelConfig({ input: [INPUT_FIELDS] }, 'config.json')), []);
});

test("Triton's JSON form of a config, which writes every field at its default, loads with nothing to warn of", () => {
  const config = parseModelConfig(
    {
      name: 'm',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      runtime: '',
      version_policy: { latest: { num_versions: 1 } },
      max_batch_size: 8,
      input: [{ ...INPUT_FIELDS, format: 'FORMAT_NONE', is_shape_tensor: false, allow_ragged_batch: false, optional: false, is_non_linear_format_io: false }],
      output: [{ ...INPUT_FIELDS, label_filename: '', is_shape_tensor: false, is_non_linear_format_io: false }],
      batch_input: [],
      batch_output: [],
      optimization: { priority: 'PRIORITY_DEFAULT', gather_kernel_buffer_threshold: 0, eager_batching: false },
      dynamic_batching: { preferred_batch_size: [], max_queue_delay_microseconds: '0', preserve_ordering: false, priority_levels: '0', default_priority_level: '0', priority_queue_policy: {} },
      instance_group: [{ name: 'm_0', kind: 'KIND_CPU', count: 1, gpus: [], secondary_devices: [], profile: [], passive: false, host_policy: '' }],
      default_model_filename: 'model.onnx',
      cc_model_filenames: {},
      metric_tags: {},
      parameters: {},
      model_warmup: [],
    },
    'config.json',
  );
  assert.deepEqual(ignoredTritonFields(config), []);
});

const INPUT = { name: 'x', data_type: 'TYPE_FP32', dims: [4] };

test('unknown data_type names the field and the bad value', () => {
  const message = parseError({ input: [{ ...INPUT, data_type: 'TYPE_FLOAT' }] });
  assert.match(message, /^invalid config\.json: /);
  assert.match(message, /input\.0\.data_type: unknown data_type 'TYPE_FLOAT'/);
  assert.match(parseError({ output: [{ ...INPUT, data_type: 'float32' }] }), /output\.0\.data_type: unknown data_type 'float32'/);
});

test('dims below -1 are rejected with the dims path', () => {
  assert.match(parseError({ input: [{ ...INPUT, dims: [4, -2] }] }), /input\.0\.dims\.1: .*>=-1/);
  assert.match(parseError({ output: [{ ...INPUT, dims: [1.5] }] }), /output\.0\.dims\.0: /);
  assert.match(parseError({ input: [{ name: 'x', data_type: 'TYPE_FP32' }] }), /input\.0\.dims: /);
});

test('duplicate input or output names are rejected naming the tensor', () => {
  assert.match(parseError({ input: [INPUT, INPUT] }), /input: input 'x' is declared twice/);
  assert.match(parseError({ output: [INPUT, { ...INPUT, dims: [2] }] }), /output: output 'x' is declared twice/);
});

test('preferred_batch_size larger than max_batch_size is rejected', () => {
  assert.match(
    parseError({ max_batch_size: 8, dynamic_batching: { preferred_batch_size: [4, 16] } }),
    /dynamic_batching\.preferred_batch_size: preferred_batch_size 16 exceeds max_batch_size 8/,
  );
  assert.match(parseError({ max_batch_size: 8, dynamic_batching: { preferred_batch_size: [0] } }), /preferred_batch_size\.0/);
});

test('dynamic_batching with max_batch_size 0 is rejected', () => {
  assert.match(parseError({ max_batch_size: 0, dynamic_batching: {} }), /dynamic_batching: dynamic_batching needs max_batch_size > 0/);
});

test('bad version_policy shapes are rejected naming version_policy', () => {
  assert.match(parseError({ version_policy: { newest: {} } }), /version_policy: expected one of .*latest.*all.*specific/);
  assert.match(parseError({ version_policy: {} }), /version_policy: /);
  assert.match(parseError({ version_policy: 'latest' }), /version_policy: /);
  assert.match(parseError({ version_policy: { latest: { num_versions: 0 } } }), /version_policy\.latest\.num_versions: /);
  assert.match(parseError({ version_policy: { specific: { versions: [-1] } } }), /version_policy\.specific\.versions\.0: /);
});

test('bad instance_group kind or count is rejected naming the field', () => {
  assert.match(parseError({ instance_group: [{ kind: 'KIND_TPU' }] }), /instance_group\.0\.kind: .*KIND_CPU/);
  assert.match(parseError({ instance_group: [{ count: 0 }] }), /instance_group\.0\.count: /);
});

test('bad numbers: negative, non-numeric strings, null and booleans are not silently coerced', () => {
  assert.match(parseError({ max_batch_size: -1 }), /max_batch_size: /);
  assert.match(parseError({ max_batch_size: 'eight' }), /max_batch_size: /);
  // YAML's empty value must not quietly become max_batch_size 0 (which would switch batching off).
  assert.match(parseError({ max_batch_size: null }, 'config.yaml'), /max_batch_size: .*null/);
  assert.match(parseError({ max_batch_size: '' }), /max_batch_size: /);
  assert.match(parseError({ max_batch_size: true }), /max_batch_size: /);
  assert.match(parseError({ input: [{ ...INPUT, dims: [null] }] }), /input\.0\.dims\.0: /);
});

test('queue policy and priority problems name their field', () => {
  assert.match(
    parseError({ max_batch_size: 4, dynamic_batching: { default_queue_policy: { timeout_action: 'DROP' } } }),
    /dynamic_batching\.default_queue_policy\.timeout_action: /,
  );
  assert.match(
    parseError({ max_batch_size: 4, dynamic_batching: { priority_levels: 2, default_priority_level: 3 } }),
    /dynamic_batching\.default_priority_level: default priority level must be in range \[1, 2\]: default_priority_level is 3, priority_levels 2/,
  );
  // 0, the field's default, is not a level either (Triton refuses it too).
  assert.match(parseError({ max_batch_size: 4, dynamic_batching: { priority_levels: 2 } }), /default priority level must be in range \[1, 2\]: default_priority_level is 0/);
  assert.match(
    parseError({ max_batch_size: 4, dynamic_batching: { preserve_ordering: true, priority_levels: 2, default_priority_level: 1 } }),
    /dynamic_batching\.preserve_ordering: only one priority level is allowed when preserve_ordering is true/,
  );
  assert.match(
    parseError({ max_batch_size: 4, dynamic_batching: { preserve_ordering: true, default_queue_policy: { timeout_action: 'DELAY', default_timeout_microseconds: 100 } } }),
    /timeout_action DELAY when preserve_ordering is true/,
  );
  assert.match(
    parseError({ max_batch_size: 4, dynamic_batching: { priority_levels: 2, priority_queue_policy: { '3': {} } } }),
    /dynamic_batching\.priority_queue_policy\.3: priority level '3' is outside 1\.\.2/,
  );
  assert.match(
    parseError({ max_batch_size: 4, dynamic_batching: { priority_queue_policy: { '1': {} } } }),
    /priority_queue_policy needs priority_levels > 0/,
  );
  // One queue is kept per level: a billion levels would take the memory of the machine before the load could fail.
  assert.match(
    parseError({ max_batch_size: 4, dynamic_batching: { priority_levels: 1_000_000_000, default_priority_level: 1 } }),
    /dynamic_batching\.priority_levels: priority_levels may be at most 1000 \(one queue is kept per level\), got 1000000000/,
  );
});

test('parameters that are not a map are rejected, not split into characters', () => {
  assert.match(parseError({ parameters: 'abc' }), /parameters: /);
  assert.match(parseError({ parameters: { a: { string_value: 5 } } }), /parameters\.a\.string_value: /);
});

test("a parameter value that is an object, a list or null is refused, not loaded as the string '[object Object]'", () => {
  for (const [value, shown] of [[{ a: 1 }, '{"a":1}'], [[1, 2], '[1,2]'], [null, 'null']] as const) {
    const message = parseError({ parameters: { x: value } });
    assert.ok(message.includes(`parameters.x: a parameter value must be a string, number or boolean, or {string_value: string}, got ${shown}`), message);
  }
});

test('every problem is listed, each with its path', () => {
  const message = parseError({ max_batch_size: -1, input: [{ name: '', data_type: 'NOPE', dims: [-3] }] });
  assert.match(message, /max_batch_size: /);
  assert.match(message, /input\.0\.name: /);
  assert.match(message, /input\.0\.data_type: unknown data_type 'NOPE'/);
  assert.match(message, /input\.0\.dims\.0: /);
});

test('an invalid config.pbtxt is reported with the file name and the field path', async () => {
  await assert.rejects(
    parsePbtxtFile('max_batch_size: 4\ninput { name: "x" data_type: TYPE_FLOAT dims: 1 }\n'),
    /invalid config\.pbtxt: input\.0\.data_type: unknown data_type 'TYPE_FLOAT'/,
  );
});

test('a reshape that changes the element count is refused at load, naming both shapes', () => {
  assert.throws(
    () => parseModelConfig({ input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [6], reshape: { shape: [2, 2] } }] }, 'config.yaml'),
    /model input has different size for dims and reshape: input 'x': reshape \[2,2\] holds 4 elements but dims \[6\] hold 6/,
  );
  assert.doesNotThrow(() => parseModelConfig({ input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [4], reshape: { shape: [2, 2] } }] }, 'config.yaml'));
});

// ---------- model_warmup ----------

test('model_warmup reads the same from config.pbtxt (inputs as a map of key/value entries), config.yaml and config.json', async () => {
  const parsed = await parseFiles({
    'config.pbtxt': `
model_warmup [
  { name: "line" batch_size: 2 count: 3 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [3, 48, 320] zero_data: true } } }
]
model_warmup {
  name: "pair"
  inputs [
    { key: "a" value { data_type: TYPE_INT64 dims: 4 random_data: true } },
    { key: "b" value { data_type: TYPE_STRING dims: [1] input_data_file: "b.bin" } }
  ]
}
parameters { key: "warmup" value: { string_value: "auto" } }`,
    'config.yaml': `
model_warmup:
  - { name: line, batch_size: 2, count: 3, inputs: { x: { data_type: TYPE_FP32, dims: [3, 48, 320], zero_data: true } } }
  - name: pair
    inputs:
      a: { data_type: TYPE_INT64, dims: [4], random_data: true }
      b: { data_type: TYPE_STRING, dims: [1], input_data_file: b.bin }
parameters: { warmup: auto }`,
    'config.json': JSON.stringify({
      model_warmup: [
        { name: 'line', batch_size: '2', count: 3, inputs: { x: { data_type: 'TYPE_FP32', dims: ['3', '48', '320'], zero_data: true } } },
        { name: 'pair', inputs: { a: { data_type: 'TYPE_INT64', dims: [4], random_data: true }, b: { data_type: 'TYPE_STRING', dims: [1], input_data_file: 'b.bin' } } },
      ],
      parameters: { warmup: { string_value: 'auto' } },
    }),
  });
  const expected = [
    { name: 'line', batch_size: 2, count: 3, inputs: { x: { data_type: 'TYPE_FP32', dims: [3, 48, 320], zero_data: true } } },
    {
      name: 'pair',
      batch_size: 1,
      count: 1,
      inputs: { a: { data_type: 'TYPE_INT64', dims: [4], random_data: true }, b: { data_type: 'TYPE_STRING', dims: [1], input_data_file: 'b.bin' } },
    },
  ];
  for (const [file, config] of Object.entries(parsed)) {
    assert.deepEqual(config.model_warmup, expected, file);
    assert.equal(parameterValue(config, 'warmup'), 'auto', file);
  }
});

test('model_warmup count 0 runs once, as in Triton; a config without model_warmup has none', () => {
  const config = parseModelConfig({ model_warmup: { name: 'once', count: 0, inputs: { x: { data_type: 'TYPE_FP32', zero_data: true } } } }, 'config.json');
  assert.equal(config.model_warmup[0].count, 1);
  assert.deepEqual(parseModelConfig({}, 'config.json').model_warmup, []);
});

test('a warmup input_data_file outside the warmup folder is refused at parse time, naming the file and the rule', () => {
  for (const file of ['../../secrets.bin', '../config.pbtxt', 'sub/../../x.bin', '/etc/passwd', 'C:\\windows\\x.bin', '..\\x.bin']) {
    const message = parseError({ model_warmup: [{ name: 'w', inputs: { x: { data_type: 'TYPE_FP32', dims: [1], input_data_file: file } } }] }, 'config.yaml');
    assert.match(message, /^invalid config\.yaml: model_warmup\.0\.inputs\.x\.input_data_file: /, file);
    assert.ok(message.includes(`input_data_file '${file}' must be a relative path inside the model's warmup folder`), message);
  }
  // A name that merely contains dots is a name.
  parseModelConfig({ model_warmup: [{ name: 'w', inputs: { x: { data_type: 'TYPE_FP32', input_data_file: 'sample..v2.bin' } } }] }, 'config.yaml');
});

test('a warmup input takes exactly one data source and fixed dims, each mistake named with its path', () => {
  const input = (fields: Record<string, unknown>) => ({ model_warmup: [{ name: 'w', inputs: { x: { data_type: 'TYPE_FP32', ...fields } } }] });
  assert.match(parseError(input({ dims: [1] })), /model_warmup\.0\.inputs\.x: give exactly one of zero_data: true, random_data: true or input_data_file/);
  assert.match(parseError(input({ dims: [1], zero_data: true, random_data: true })), /give exactly one of/);
  assert.match(parseError(input({ dims: [3, -1], zero_data: true })), /model_warmup\.0\.inputs\.x\.dims\.1: warmup dims are sizes of 1 or more/);
  assert.match(parseError(input({ dims: [1], zero_data: true, data_type: 'TYPE_FLOAT' })), /unknown data_type 'TYPE_FLOAT'/);
  assert.match(parseError({ model_warmup: [{ inputs: {} }] }), /model_warmup\.0\.name/);
});

test('ragged batching: allow_ragged_batch and batch_input read the same from pbtxt, JSON and YAML', async () => {
  const parsed = await parseFiles({
    'config.pbtxt': `
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: "INDEX" data_type: TYPE_FP32 source_input: "INPUT" } ]`,
    'config.json': JSON.stringify({
      max_batch_size: 8,
      input: [{ name: 'INPUT', data_type: 'TYPE_FP32', dims: ['-1'], allow_ragged_batch: true }],
      batch_input: [{ kind: 'BATCH_ACCUMULATED_ELEMENT_COUNT', target_name: ['INDEX'], data_type: 'TYPE_FP32', source_input: ['INPUT'] }],
    }),
    'config.yaml': `
max_batch_size: 8
input:
  - { name: INPUT, data_type: TYPE_FP32, dims: [-1], allow_ragged_batch: true }
batch_input:
  - { kind: BATCH_ACCUMULATED_ELEMENT_COUNT, target_name: INDEX, data_type: TYPE_FP32, source_input: INPUT }`,
  });
  for (const config of Object.values(parsed)) {
    assert.equal(config.input[0].allow_ragged_batch, true);
    assert.deepEqual(config.batch_input, [{ kind: 'BATCH_ACCUMULATED_ELEMENT_COUNT', target_name: ['INDEX'], data_type: 'TYPE_FP32', source_input: ['INPUT'] }]);
  }
  assert.equal(parseModelConfig({ input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [1] }] }, 'c').input[0].allow_ragged_batch, false);
});

test('ragged batching: a batch_input that cannot work is refused at load, saying why', () => {
  const input = [{ name: 'INPUT', data_type: 'TYPE_FP32', dims: [-1], allow_ragged_batch: true }];
  const entry = { kind: 'BATCH_ELEMENT_COUNT', target_name: 'COUNT', data_type: 'TYPE_INT32', source_input: 'INPUT' };
  assert.match(parseError({ max_batch_size: 8, input, batch_input: [{ ...entry, kind: 'BATCH_SOMETHING' }] }), /batch_input\.0\.kind/);
  assert.match(parseError({ max_batch_size: 8, input, batch_input: [{ ...entry, data_type: 'TYPE_INT64' }] }), /batch_input data_type must be TYPE_INT32 or TYPE_FP32/);
  assert.match(parseError({ max_batch_size: 8, input, batch_input: [{ ...entry, source_input: 'OTHER' }] }), /source_input 'OTHER' is not a declared input \(declared: INPUT\)/);
  assert.match(parseError({ max_batch_size: 8, input, batch_input: [{ ...entry, target_name: 'INPUT' }] }), /target_name 'INPUT' is a declared input, which clients send/);
  assert.match(parseError({ max_batch_size: 8, input, batch_input: [entry, entry] }), /target_name 'COUNT' is the target of more than one batch_input/);
  assert.match(parseError({ max_batch_size: 8, input, batch_input: [{ ...entry, target_name: ['A', 'B'] }] }), /expected exactly one target_name/);
  assert.match(parseError({ max_batch_size: 0, input }), /input 'INPUT' has allow_ragged_batch but max_batch_size is 0/);
});

test('a decoupled model is refused with why (every backend answers once); decoupled: false loads', () => {
  assert.match(parseError({ model_transaction_policy: { decoupled: true } }), /model_transaction_policy\.decoupled: decoupled models .* are not supported/);
  const text = parsePbtxt('model_transaction_policy { decoupled: true }');
  assert.match(parseError(text), /decoupled models/);
  assert.doesNotThrow(() => parseModelConfig({ model_transaction_policy: { decoupled: false } }, 'config'));
});

test('a block that may be given once, given twice, is refused as such (not as fields named 0 and 1)', () => {
  const text = parsePbtxt('max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 100 }\ndynamic_batching { preferred_batch_size: 2 }');
  assert.match(parseError(text), /dynamic_batching: given 2 times; this field may be given once/);
});

test('a number field given something else says what arrived: a word, a fraction, or a pbtxt field written twice', () => {
  const refused = (raw: unknown, source: string) => {
    try {
      parseModelConfig(raw, source);
    } catch (error) {
      return (error as Error).message;
    }
    return 'accepted';
  };
  assert.equal(refused({ max_batch_size: 'eight' }, 'config.json'), 'invalid config.json: max_batch_size: expected a whole number, got "eight"');
  assert.equal(refused(parseYaml('instance_group: [{count: two}]'), 'config.yaml'), 'invalid config.yaml: instance_group.0.count: expected a whole number, got "two"');
  assert.equal(refused(parsePbtxt('max_batch_size: 8\nmax_batch_size: 4\n'), 'config.pbtxt'), 'invalid config.pbtxt: max_batch_size: expected a whole number, got [8,4]');
  assert.equal(refused(parseYaml('max_batch_size: 1.5'), 'config.yaml'), 'invalid config.yaml: max_batch_size: expected a whole number, got 1.5');
  assert.equal(parseModelConfig({ max_batch_size: '8' }, 'config.json').max_batch_size, 8, "Triton's JSON writes uint64 as a string");
});

test('dims_multiple_of has one entry per dim and agrees with the fixed dims', () => {
  const config = (multiples: unknown, dims = [3, -1, -1]) => ({
    name: 'detector',
    platform: 'onnxruntime_onnx',
    input: [{ name: 'x', data_type: 'TYPE_FP32', dims, dims_multiple_of: multiples }],
    output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [1, -1, -1] }],
  });
  assert.deepEqual(parseModelConfig(config([1, 32, 32]), 'config.json').input[0].dims_multiple_of, [1, 32, 32]);
  assert.match(parseError(config([32, 32])), /dims_multiple_of.*has 2 entries; input 'x' has 3 dims \[3, -1, -1\]/);
  assert.match(parseError(config([2, 32, 32])), /dim 0 of input 'x' is fixed at 3, which is not a multiple of 2/);
  assert.match(parseError(config([1, 0, 32])), /dims_multiple_of/);
  const fromPbtxt = parseModelConfig(parsePbtxt('name: "d" platform: "onnxruntime_onnx" input { name: "x" data_type: TYPE_FP32 dims: [3, -1] dims_multiple_of: [1, 8] } output { name: "y" data_type: TYPE_FP32 dims: [-1] }'), 'config.pbtxt');
  assert.deepEqual(fromPbtxt.input[0].dims_multiple_of, [1, 8]);
});

test('pad_value: an input with one -1 dimension and a value its type holds, outputs that say whether they follow; anything else is refused with the reason', () => {
  const config = (input: object, output: object = { name: 'y', data_type: 'TYPE_FP32', dims: [-1, 2], padded: true }) => ({ max_batch_size: 4, input: [{ name: 'ids', data_type: 'TYPE_INT64', dims: [-1], ...input }], output: [output] });
  assert.equal(parseModelConfig(config({ pad_value: 0 }), 'c').input[0].pad_value, 0);
  assert.throws(() => parseModelConfig(config({ pad_value: 0, dims: [-1, -1] }), 'c'), /input 'ids' has pad_value but needs exactly one -1 dimension \(the length it is padded along\), and its dims are \[-1, -1\]/);
  assert.throws(() => parseModelConfig(config({ pad_value: 0, data_type: 'TYPE_STRING' }), 'c'), /input 'ids' has pad_value but is on a TYPE_STRING input, which cannot be padded with a number/);
  assert.throws(() => parseModelConfig(config({ pad_value: 0.5 }), 'c'), /input 'ids' has pad_value but is 0\.5, and a TYPE_INT64 input takes a whole number from/);
  assert.throws(() => parseModelConfig(config({ pad_value: 300, data_type: 'TYPE_UINT8' }), 'c'), /is 300, and a TYPE_UINT8 input takes a whole number from 0 to 255/);
  assert.throws(() => parseModelConfig(config({ pad_value: 0, allow_ragged_batch: true }), 'c'), /pad_value and ragged batching \(allow_ragged_batch, batch_input\) are two ways/);
  assert.throws(() => parseModelConfig(config({ pad_value: 0 }, { name: 'topk', data_type: 'TYPE_INT64', dims: [-1] }), 'c'), /output 'topk' has a -1 dimension: with pad_value on an input, say whether it follows the padded length \(padded: true/);
  assert.equal(parseModelConfig(config({ pad_value: 0 }, { name: 'topk', data_type: 'TYPE_INT64', dims: [-1], padded: false }), 'c').output[0].padded, false);
  assert.throws(() => parseModelConfig(config({ pad_value: 0 }, { name: 'tokens', data_type: 'TYPE_STRING', dims: [-1], padded: true }), 'c'), /output 'tokens' is TYPE_STRING and padded/);
  assert.throws(() => parseModelConfig(config({}), 'c'), /output 'y' says padded, but no input has a pad_value/);
});

test("a model's monitoring settings read alike from YAML and from config.pbtxt's `monitoring` parameter, with the schema's defaults; bad ones are refused naming the setting, what it expects and what came", async () => {
  const settings = { drift: { thresholds: { psi: { warning: 0.15, drift: 0.3 } }, ignore_features: ['input.aspectRatio'], log_state_changes: false }, ood: { threshold: 150 } };
  const parsed = await parseFiles({
    'config.yaml': 'monitoring:\n  drift: { thresholds: { psi: { warning: 0.15, drift: 0.3 } }, ignore_features: [input.aspectRatio], log_state_changes: false }\n  ood: { threshold: 150 }\n',
    'config.pbtxt': `parameters { key: "monitoring" value: { string_value: ${JSON.stringify(JSON.stringify(settings))} } }`,
  });
  const expected = {
    drift: { thresholds: { psi: { warning: 0.15, drift: 0.3 }, ks: { warning: 0.12, drift: 0.2 }, jensen_shannon: { warning: 0.02, drift: 0.05 } }, ignore_features: ['input.aspectRatio'], log_state_changes: false },
    ood: { threshold: 150 },
  };
  assert.deepEqual(parsed['config.yaml'].monitoring, expected);
  assert.deepEqual(parsed['config.pbtxt'].monitoring, expected);
  assert.equal(parseModelConfig({}, 'x').monitoring, undefined, 'none given: the defaults apply where it is read (monitoringSettingsOf)');
  const refusal = (monitoring: unknown, source = 'config.yaml') => {
    try {
      parseModelConfig({ monitoring }, source);
    } catch (error) {
      return (error as Error).message;
    }
    assert.fail(`${JSON.stringify(monitoring)} was accepted`);
  };
  assert.equal(refusal({ drift: { thresholds: { psi: { warning: 0.3, drift: 0.25 } } } }), 'invalid config.yaml: monitoring.drift.thresholds.psi.warning: expected a warning level below the drift level, got warning 0.3 and drift 0.25');
  assert.equal(refusal({ ood: { threshold: -5 } }), 'invalid config.yaml: monitoring.ood.threshold: expected a number above 0, got -5');
  assert.equal(refusal({ drift: { log_state_changes: 'quiet' } }), 'invalid config.yaml: monitoring.drift.log_state_changes: expected true or false, got "quiet"');
  assert.throws(() => parseModelConfig({ monitoring: { drift: { ignore: ['input.aspectRatio'] } } }, 'config.yaml'), /monitoring\.drift: unknown field 'ignore' \(did you mean 'ignore_features'\?\)/);
  assert.throws(() => parseModelConfig({ parameters: { monitoring: '{"ood": {"threshold": "high"}}' } }, 'config.pbtxt'), /invalid config\.pbtxt: parameters\.monitoring\.ood\.threshold: expected a number, got "high"/);
});
