/**
 * A model's configuration: Triton's ModelConfig fields (as its JSON form uses them), validated
 * once at load. The same schema reads config.pbtxt, config.yaml and config.json; defaults live here.
 */
import { z } from 'zod';
import { BF16_UNSUPPORTED, configTypeOf, datatypeFromConfig, INTEGER_RANGES, type Datatype } from '../core/datatype.js';
import { closestName } from '../core/edit-distance.js';
import { DECIMAL_NUMBER } from '../core/decimal-number.js';
import { quote } from '../core/errors.js';

/**
 * An object of the config that refuses fields it does not know, naming each and the known field
 * closest to it: Triton refuses them too, and a typo (max_batch_sise) would otherwise load silently
 * with the default.
 */
function configObject<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined;
      // pbtxt and YAML make a block written twice into a list, which reads here as fields '0', '1', …
      if (issue.keys.every((key) => /^\d+$/.test(key))) return `given ${issue.keys.length} times; this field may be given once`;
      return issue.keys
        .map((key) => {
          const near = closestName(key, known);
          return `unknown field '${key}'${near ? ` (did you mean '${near}'?)` : ` (known: ${known.join(', ')})`}`;
        })
        .join('; ');
    },
  });
}

/** Fields of Triton's model_config.proto that Nereid does not use, per top-level field of the config where they appear ('' for the config itself). */
const tritonOnlyFields = new Map<string, readonly string[]>();

/**
 * configObject that also accepts, as they are, the fields of Triton's model_config.proto at `place`
 * that Nereid does not use, so that a config written for Triton still loads (ignoredTritonFields
 * lists them for a warning). A field the shape declares is Nereid's, whatever the list says.
 */
function tritonObject<const Names extends readonly string[], Shape extends z.core.$ZodLooseShape>(place: string, tritonOnly: Names, shape: Shape) {
  const ignored = tritonOnly.filter((name) => !(name in shape));
  tritonOnlyFields.set(place, ignored);
  const accepted = Object.fromEntries(ignored.map((name) => [name, z.unknown().optional()])) as { [Name in Names[number]]: z.ZodOptional<z.ZodUnknown> };
  return configObject({ ...accepted, ...shape });
}

/** pbtxt and YAML write a repeated field that occurs once as a single value; accept both. */
const repeated = <T extends z.ZodType>(item: T) =>
  z.preprocess((value) => (value === undefined || Array.isArray(value) ? value : [value]), z.array(item));

/**
 * uint64 fields arrive as strings in Triton's JSON form. Only numbers and numeric strings count:
 * z.coerce would also turn null (YAML's empty value), '', true and [] into 0 or 1 without a word.
 */
const shownValue = (value: unknown) => (typeof value === 'number' || typeof value === 'bigint' ? String(value) : (JSON.stringify(value) ?? String(value)));
const integer = (min: number, belowMin?: string) =>
  z.preprocess(
    (value) => (typeof value === 'string' && DECIMAL_NUMBER.test(value.trim()) ? Number(value) : value),
    // What arrived, by value: 'eight', or [8, 4] for a field written twice in pbtxt (zod would say "received NaN" or "array").
    z
      .number({ error: (issue) => (issue.code === 'invalid_type' ? `expected a whole number, got ${shownValue(issue.input)}` : undefined) })
      .int()
      .min(min, belowMin && { error: belowMin }),
  );
const count = (min = 0) => integer(min);

/** Triton's DataType enum in number order: protobuf's text format (and so a generated config.pbtxt) may write `data_type: 11` for TYPE_FP32. */
const DATA_TYPE_NUMBERS = ['TYPE_INVALID', 'TYPE_BOOL', 'TYPE_UINT8', 'TYPE_UINT16', 'TYPE_UINT32', 'TYPE_UINT64', 'TYPE_INT8', 'TYPE_INT16', 'TYPE_INT32', 'TYPE_INT64', 'TYPE_FP16', 'TYPE_FP32', 'TYPE_FP64', 'TYPE_STRING', 'TYPE_BF16'];

const dataType = z
  .preprocess(
    (value) => (typeof value === 'number' && Number.isInteger(value) && DATA_TYPE_NUMBERS[value] !== undefined ? DATA_TYPE_NUMBERS[value] : value),
    z.string({ error: (issue) => (issue.input === undefined ? "must specify 'data_type' (TYPE_FP32, TYPE_INT64, TYPE_STRING, …)" : `expected a data type such as TYPE_FP32, got ${shownValue(issue.input)}`) }),
  )
  .transform((value, ctx) => {
    const datatype = datatypeFromConfig(value);
    if (value === 'TYPE_BF16' || value === 'BF16') {
      ctx.addIssue({ code: 'custom', message: `data_type ${value}: ${BF16_UNSUPPORTED}` });
      return z.NEVER;
    }
    if (!datatype) {
      ctx.addIssue({ code: 'custom', message: `unknown data_type '${value}' (expected e.g. TYPE_FP32, TYPE_INT64, TYPE_STRING)` });
      return z.NEVER;
    }
    return configTypeOf(datatype);
  });

const dims = repeated(integer(-1));

const reshape = configObject({ shape: dims.default([]) });

const nonNegative = z.number().nonnegative();

/**
 * Nereid's declarative image pre-processing: the input then accepts encoded images (BYTES, one per
 * batch row) and the server decodes, resizes and normalises them into the tensor the model takes.
 */
export const imagePreprocessingSchema = configObject({
  color: z.enum(['rgb', 'bgr', 'grayscale']).default('rgb'),
  resize: z.enum(['stretch', 'shorter_side_center_crop', 'letterbox']).default('stretch'),
  /** Target size; taken from the input's dims when they are fixed. */
  width: count(1).optional(),
  height: count(1).optional(),
  /** Letterbox padding, 0–255 per channel (one value for grayscale). */
  fill: repeated(nonNegative.max(255)).default([0, 0, 0]),
  /** Pixel values (0–255) are multiplied by scale, then (x - mean) / std per channel. */
  scale: z.number().default(1 / 255),
  mean: repeated(z.number()).default([]),
  std: repeated(z.number().positive()).default([]),
  layout: z.enum(['NCHW', 'NHWC']).default('NCHW'),
  /** Resampling kernel; 'linear' matches the bilinear resize most training pipelines use. */
  interpolation: z.enum(['nearest', 'linear', 'cubic', 'lanczos3']).default('linear'),
  /** Refuse encoded images larger than this, before decoding. */
  max_bytes: count(1).default(20 * 1024 * 1024),
  /** Refuse images whose width × height exceeds this (decompression bombs). */
  max_pixels: count(1).default(40_000_000),
});

export const outputPostprocessingSchema = configObject({
  /** Turns logits into probabilities. */
  activation: z.enum(['none', 'softmax', 'sigmoid']).default('none'),
  /** Calibration: logits are divided by it before the activation (fit it on a validation set). */
  temperature: z.number().positive().default(1),
  /** Predictions returned by the classify endpoint. */
  top_k: count(1).default(5),
  /** A prediction whose top probability is below this is flagged low_confidence. */
  low_confidence_threshold: z.number().min(0).max(1).default(0.5),
});

/** A number above 0, refused with what came instead. */
const positiveNumber = z.number({ error: (issue) => `expected a number, got ${quote(issue.input)}` }).positive({ error: (issue) => `expected a number above 0, got ${quote(issue.input)}` });

/** A statistic's two levels: at or above `warning` a feature warns, at or above `drift` it drifts. */
const driftLevels = (warning: number, drift: number) =>
  configObject({ warning: positiveNumber.default(warning), drift: positiveNumber.default(drift) }).superRefine((levels, ctx) => {
    if (!(levels.warning < levels.drift)) ctx.addIssue({ code: 'custom', path: ['warning'], message: `expected a warning level below the drift level, got warning ${levels.warning} and drift ${levels.drift}` });
  });

/**
 * The levels each drift statistic is judged by (PSI's also move the drift state). The defaults and why they are what
 * they are: src/monitoring/drift-statistics.ts (DRIFT_THRESHOLDS, which reads them from here).
 */
export const driftThresholdsSchema = configObject({
  psi: driftLevels(0.1, 0.25).prefault({}),
  ks: driftLevels(0.12, 0.2).prefault({}),
  jensen_shannon: driftLevels(0.02, 0.05).prefault({}),
});

/**
 * Nereid: how a version's reference profile is judged while it serves (docs/monitoring.md, "Per-model settings").
 * config.pbtxt has no nested Nereid fields: there it is the parameter `monitoring`, holding the same object as JSON.
 */
export const modelMonitoringSchema = configObject({
  drift: configObject({
    thresholds: driftThresholdsSchema.prefault({}),
    /** Features reported but not counted in the drift score or state (as the image's width and height always are), e.g. input.aspectRatio. */
    ignore_features: repeated(z.string().min(1)).default([]),
    /** false: a drift state change is not logged; /monitor, its transitions and the metrics still say it. */
    log_state_changes: z.boolean({ error: (issue) => `expected true or false, got ${quote(issue.input)}` }).default(true),
  }).prefault({}),
  ood: configObject({
    /** The score above which a row is out of distribution, instead of the profile's (which was set for its false-positive rate). */
    threshold: positiveNumber.optional(),
  }).prefault({}),
});
export type ModelMonitoring = z.output<typeof modelMonitoringSchema>;

/** A config's monitoring settings, the schema's defaults where it gives none. */
export const monitoringSettingsOf = (config: Pick<ModelConfig, 'monitoring'>): ModelMonitoring => config.monitoring ?? modelMonitoringSchema.parse({});

/** Triton's ModelInput.Format in number order (protobuf's text format may write the number). */
const INPUT_FORMATS = ['FORMAT_NONE', 'FORMAT_NHWC', 'FORMAT_NCHW'] as const;

const inputSchema = tritonObject('input', ['is_shape_tensor', 'is_non_linear_format_io'], {
  name: z.string().min(1),
  data_type: dataType,
  dims: dims,
  format: z.preprocess((value) => (typeof value === 'number' ? INPUT_FORMATS[value] ?? value : value), z.enum(INPUT_FORMATS)).optional(),
  optional: z.boolean().default(false),
  reshape: reshape.optional(),
  preprocess: configObject({ image: imagePreprocessingSchema }).optional(),
  /** Triton's ragged batching: requests whose shapes differ in this input still batch, their elements concatenated into one flat tensor. */
  allow_ragged_batch: z.boolean().default(false),
  /**
   * Nereid: requests whose length (this input's one -1 dimension) differs still batch, each padded at its end to the
   * batch's longest with this value (a tokenizer's pad id; 0 for an attention mask); outputs are cut back (SequencePadding).
   */
  pad_value: z.number().optional(),
  /**
   * Nereid: each dimension after the batch one must be a multiple of this (1 where any size goes), as a
   * model with strided down- and up-sampling needs (PaddleOCR's detector: [1, 32, 32]); a request
   * that breaks it is refused with the sizes that would do, instead of failing inside the engine.
   */
  dims_multiple_of: repeated(count(1)).optional(),
}).superRefine((input, ctx) => {
  // As Triton's ValidateModelInput: an image layout names channels and two spatial dims (after any batch dimension),
  // in the dims a client sends (a reshape is what the model gets).
  if ((input.format === 'FORMAT_NHWC' || input.format === 'FORMAT_NCHW') && input.dims.length !== 3) {
    ctx.addIssue({ code: 'custom', path: ['format'], message: `model input NHWC/NCHW require 3 dims: input '${input.name}' is ${input.format} with dims [${input.dims.join(', ')}]` });
  }
  const multiples = input.dims_multiple_of;
  if (!multiples) return;
  if (multiples.length !== input.dims.length) {
    ctx.addIssue({ code: 'custom', path: ['dims_multiple_of'], message: `has ${multiples.length} entries; input '${input.name}' has ${input.dims.length} dims [${input.dims.join(', ')}], one entry each` });
    return;
  }
  input.dims.forEach((dim, index) => {
    if (dim !== -1 && dim % multiples[index] !== 0) {
      ctx.addIssue({ code: 'custom', path: ['dims_multiple_of', index], message: `dim ${index} of input '${input.name}' is fixed at ${dim}, which is not a multiple of ${multiples[index]}` });
    }
  });
});

const outputSchema = tritonObject('output', ['is_shape_tensor', 'is_non_linear_format_io'], {
  name: z.string().min(1),
  data_type: dataType,
  dims: dims,
  /**
   * Nereid, with pad_value on inputs: whether this output's -1 dimensions follow the padded length (true: cut back to
   * each request's length, as a [batch, seq, hidden] output) or not (false: a top-k list, answered as the model gives it).
   */
  padded: z.boolean().optional(),
  label_filename: z.string().optional(),
  reshape: reshape.optional(),
  postprocess: outputPostprocessingSchema.optional(),
});

/** A tensor entry as a config file's would read, its schema's defaults filled in: for the entries auto-complete adds. */
export const tensorEntrySchemas = { input: inputSchema, output: outputSchema } as const;

/** The batch_input kinds that describe a ragged batch to an ONNX model (Triton's BatchInput.Kind). */
export const BATCH_INPUT_KINDS = [
  'BATCH_ELEMENT_COUNT',
  'BATCH_ACCUMULATED_ELEMENT_COUNT',
  'BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO',
  'BATCH_MAX_ELEMENT_COUNT_AS_SHAPE',
  'BATCH_ITEM_SHAPE',
  'BATCH_ITEM_SHAPE_FLATTEN',
] as const;

/** A model input the server computes for each batch (Triton's batch_input); clients never send it. */
const batchInputSchema = z.looseObject({
  kind: z.enum(BATCH_INPUT_KINDS),
  /** Repeated in Triton's proto; Nereid feeds one model input per entry. */
  target_name: repeated(z.string().min(1)).refine((names) => names.length === 1, { error: 'expected exactly one target_name' }),
  data_type: dataType.refine((type) => type === 'TYPE_INT32' || type === 'TYPE_FP32', { error: 'batch_input data_type must be TYPE_INT32 or TYPE_FP32' }),
  source_input: repeated(z.string().min(1)).refine((names) => names.length === 1, { error: 'expected exactly one source_input' }),
});

const versionPolicySchema = z.union(
  [
    configObject({ latest: configObject({ num_versions: count(1).default(1) }) }),
    configObject({ all: configObject({}) }),
    configObject({ specific: configObject({ versions: repeated(count()) }) }),
  ],
  { error: 'expected one of { latest: { num_versions } }, { all: {} } or { specific: { versions } }' },
);

const instanceGroupSchema = tritonObject('instance_group', ['rate_limiter', 'secondary_devices', 'profile', 'passive', 'host_policy'], {
  name: z.string().optional(),
  kind: z.enum(['KIND_AUTO', 'KIND_CPU', 'KIND_GPU', 'KIND_MODEL']).default('KIND_AUTO'),
  count: count(1).default(1),
  gpus: repeated(count()).optional(),
}).superRefine((group, ctx) => {
  // As Triton's ValidateInstanceGroup refuses it: CPU instances named on GPUs contradict each other.
  if (group.kind === 'KIND_CPU' && (group.gpus?.length ?? 0) > 0) {
    ctx.addIssue({ code: 'custom', path: ['gpus'], message: `instance group${group.name ? ` ${group.name}` : ''} has kind KIND_CPU but specifies one or more GPUs (gpus: [${group.gpus!.join(', ')}]); give kind KIND_GPU, or leave gpus out` });
  }
});

const queuePolicySchema = configObject({
  timeout_action: z.enum(['REJECT', 'DELAY']).default('REJECT'),
  default_timeout_microseconds: count().default(0),
  allow_timeout_override: z.boolean().default(false),
  max_queue_size: count().default(0),
  /** Nereid's: bytes of inputs this level may hold queued (0: only the server's --max-queue-bytes). */
  max_queue_bytes: count().default(0),
});

/**
 * The scheduler keeps a queue per priority level, allocated at load: a count far past what anyone
 * uses (Triton's users set a handful) would take the machine's memory before the load could fail.
 */
export const MAX_PRIORITY_LEVELS = 1000;

export const dynamicBatchingSchema = configObject({
  preferred_batch_size: repeated(count(1)).default([]),
  max_queue_delay_microseconds: count().default(0),
  /**
   * Nereid's latency-aware batching: instead of waiting a fixed max_queue_delay for company, a batch
   * is held only while rows arrive fast enough to make it cheaper per row and its oldest request,
   * after the wait and the larger batch's learned run time, is still answered within this many µs
   * (or its own timeout or deadline, when sooner). max_queue_delay_microseconds then bounds the
   * hold (0: no bound beyond this target). 0: off, a fixed delay as in Triton.
   */
  target_latency_us: count().default(0),
  preserve_ordering: z.boolean().default(false),
  priority_levels: count().default(0),
  default_priority_level: count().default(0),
  default_queue_policy: queuePolicySchema.default(() => queuePolicySchema.parse({})),
  priority_queue_policy: z.record(z.string(), queuePolicySchema).optional(),
});

/** One control a sequence model takes (Triton's ModelSequenceBatching.Control): its kind and the values it is given. */
const sequenceControlSchema = configObject({
    kind: z.enum(['CONTROL_SEQUENCE_START', 'CONTROL_SEQUENCE_READY', 'CONTROL_SEQUENCE_END', 'CONTROL_SEQUENCE_CORRID']),
    int32_false_true: repeated(z.number().int()).optional(),
    fp32_false_true: repeated(z.number()).optional(),
    bool_false_true: repeated(z.boolean()).optional(),
    data_type: dataType.optional(),
  })
  .superRefine((control, ctx) => {
    const given = (['int32_false_true', 'fp32_false_true', 'bool_false_true'] as const).filter((field) => control[field] !== undefined);
    if (control.kind === 'CONTROL_SEQUENCE_CORRID') {
      if (!control.data_type) ctx.addIssue({ code: 'custom', message: 'a CONTROL_SEQUENCE_CORRID control needs data_type (TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING)' });
      else if (!['TYPE_UINT64', 'TYPE_INT64', 'TYPE_UINT32', 'TYPE_INT32', 'TYPE_STRING'].includes(control.data_type)) {
        ctx.addIssue({ code: 'custom', message: `a CONTROL_SEQUENCE_CORRID control takes TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING, got ${control.data_type}` });
      }
      return;
    }
    if (given.length !== 1) {
      ctx.addIssue({ code: 'custom', message: `a ${control.kind} control needs exactly one of int32_false_true, fp32_false_true or bool_false_true, got ${given.length}` });
    } else if (control[given[0]]!.length !== 2) {
      ctx.addIssue({ code: 'custom', message: `${given[0]} holds the [false, true] values: 2 of them, got ${control[given[0]]!.length}` });
    }
  });

/** Triton's ModelSequenceBatching.InitialState: what a state input holds on a sequence's first request. */
const initialStateSchema = configObject({
    name: z.string().optional(),
    data_type: dataType,
    dims: dims.default([]),
    zero_data: z.boolean().optional(),
    /** Raw bytes of the tensor, in the model's `initial_state` folder (Triton's layout). */
    data_file: z
      .string()
      .min(1)
      .refine((file) => !/^([\\/]|[A-Za-z]:)/.test(file) && !file.split(/[\\/]/).includes('..'), {
        error: (issue) => `data_file '${String(issue.input)}' must be a relative path inside the model's initial_state folder (no absolute path, no '..')`,
      })
      .optional(),
  })
  .refine((initial) => (initial.zero_data === true) !== (initial.data_file !== undefined), { error: 'give exactly one of zero_data: true or data_file' });

export const sequenceBatchingSchema = configObject({
    direct: configObject({
        max_queue_delay_microseconds: count().default(0),
        minimum_slot_utilization: z.number().min(0).max(1).default(0),
      })
      .optional(),
    oldest: configObject({
        max_candidate_sequences: count(1),
        preferred_batch_size: repeated(count(1)).default([]),
        max_queue_delay_microseconds: count().default(0),
        preserve_ordering: z.boolean().default(false),
      })
      .optional(),
    /** As Triton: a sequence with no request for this long is released, its slot and state freed. */
    max_sequence_idle_microseconds: count(1).default(1_000_000),
    control_input: repeated(configObject({ name: z.string().min(1), control: repeated(sequenceControlSchema).default([]) })).default([]),
    state: repeated(
      configObject({
        input_name: z.string().min(1),
        output_name: z.string().min(1),
        data_type: dataType,
        dims: dims,
        initial_state: repeated(initialStateSchema).default([]),
        // Triton's options for where its state buffers live; the state is held in plain memory here, so they change nothing.
        use_same_buffer_for_input_output: z.boolean().optional(),
        use_growable_memory: z.boolean().optional(),
      }),
    ).default([]),
    /** Triton's iterative sequences need a backend that reschedules its requests; no backend here does. */
    iterative_sequence: z.literal(false, { error: 'iterative_sequence is not supported: no backend here reschedules its own requests' }).optional(),
  })
  .refine((batching) => !(batching.direct && batching.oldest), { error: 'give one strategy: direct {} or oldest {}, not both' });

/**
 * A warmup input file is read from the model's `warmup` folder (Triton's layout). The load checks it
 * again with links followed; refusing absolute and parent paths here names the mistake at parse time.
 */
const warmupFile = z
  .string()
  .min(1)
  .refine((file) => !/^([\\/]|[A-Za-z]:)/.test(file) && !file.split(/[\\/]/).includes('..'), {
    error: (issue) => `input_data_file '${String(issue.input)}' must be a relative path inside the model's warmup folder (no absolute path, no '..')`,
  });

/** One input of a warmup sample: its shape without the batch dimension and where its values come from (exactly one source). */
const warmupInputSchema = configObject({
    data_type: dataType,
    dims: repeated(integer(1, 'warmup dims are sizes of 1 or more: a sample has one fixed shape (-1 belongs in the input declaration)')).default([]),
    zero_data: z.boolean().optional(),
    random_data: z.boolean().optional(),
    input_data_file: warmupFile.optional(),
  })
  .refine((input) => [input.zero_data === true, input.random_data === true, input.input_data_file !== undefined].filter(Boolean).length === 1, {
    error: 'give exactly one of zero_data: true, random_data: true or input_data_file',
  });

/** Triton's ModelWarmup: a sample run `count` times (0 meaning once, as in Triton) on every instance before the version is ready. */
export const modelWarmupSchema = configObject({
  name: z.string().min(1),
  batch_size: count(1).default(1),
  inputs: z.preprocess(mapEntriesToRecord, z.record(z.string(), warmupInputSchema)),
  count: count()
    .default(1)
    .transform((runs) => Math.max(1, runs)),
});

/**
 * One parameter's value: Triton's {string_value}, or a plain YAML scalar written as its text. Anything
 * else is refused: String() would make an object '[object Object]' and load it.
 */
const parameterValueSchema = z
  .unknown()
  .transform((entry, ctx) => {
    if (typeof entry === 'string' || typeof entry === 'number' || typeof entry === 'boolean') return { string_value: String(entry) };
    if (entry && typeof entry === 'object' && !Array.isArray(entry) && 'string_value' in entry) return entry;
    ctx.addIssue({ code: 'custom', message: `a parameter value must be a string, number or boolean, or {string_value: string}, got ${quote(entry)}` });
    return z.NEVER;
  })
  .pipe(configObject({ string_value: z.string() }));

/** Triton writes parameters as {key: {string_value}}, pbtxt as repeated {key, value}; YAML users write {key: value}. */
const parametersSchema = z.preprocess((value) => {
  if (!value || typeof value !== 'object') return value; // not a map: let the schema say so
  const entries: [string, unknown][] = Array.isArray(value)
    ? value.map((entry: { key?: unknown; value?: unknown }) => [String(entry?.key), entry?.value])
    : value && typeof value === 'object' && 'key' in value && 'value' in value
      ? [[String((value as { key: unknown }).key), (value as { value: unknown }).value]]
      : Object.entries(value as Record<string, unknown>);
  return Object.fromEntries(entries);
}, z.record(z.string(), parameterValueSchema));

/** Why `value` cannot fill an input of this type (a float takes any finite number; FP16, BF16 and BYTES none); undefined when it can. */
function padValueProblem(dataType: string, value: number): string | undefined {
  const datatype = datatypeFromConfig(dataType);
  if (datatype === 'FP32' || datatype === 'FP64') return Number.isFinite(value) ? undefined : `is ${value}, not a finite number`;
  const exact = datatype === 'BOOL' ? ([0n, 1n] as const) : datatype && INTEGER_RANGES[datatype];
  if (!exact) return `is on a ${dataType} input, which cannot be padded with a number`;
  // A config's number is exact up to 2^53: the bounds of a 64-bit type are taken that far.
  const low = Math.max(Number(exact[0]), Number.MIN_SAFE_INTEGER);
  const high = Math.min(Number(exact[1]), Number.MAX_SAFE_INTEGER);
  if (!Number.isInteger(value) || value < low || value > high) return `is ${value}, and a ${dataType} input takes a whole number from ${low} to ${high}`;
  return undefined;
}

/**
 * Padding (pad_value): a padded input has exactly one variable dimension, a type the value fits, and no reshape; a model
 * padding its inputs batches no ragged ones; each listed output with a -1 dimension says whether it follows the padded
 * length (`padded`), and one that does is numeric, so that it can be cut back.
 */
function checkPadding(
  config: {
    input: { name: string; data_type: string; dims: number[]; pad_value?: number; reshape?: unknown; allow_ragged_batch: boolean }[];
    output: { name: string; data_type: string; dims: number[]; padded?: boolean }[];
    batch_input: unknown[];
  },
  ctx: z.RefinementCtx,
): void {
  const padded = config.input.filter((input) => input.pad_value !== undefined);
  for (const input of padded) {
    const why =
      input.dims.filter((dim) => dim === -1).length !== 1
        ? `needs exactly one -1 dimension (the length it is padded along), and its dims are [${input.dims.join(', ')}]`
        : input.reshape
          ? 'has a reshape: padding applies to the dims a client sends, give them without one'
          : padValueProblem(input.data_type, input.pad_value!);
    if (why) ctx.addIssue({ code: 'custom', path: ['input'], message: `input '${input.name}' has pad_value but ${why}` });
  }
  if (padded.length === 0) {
    const marked = config.output.find((output) => output.padded !== undefined);
    if (marked) ctx.addIssue({ code: 'custom', path: ['output'], message: `output '${marked.name}' says padded, but no input has a pad_value` });
    return;
  }
  if (config.input.some((input) => input.allow_ragged_batch) || config.batch_input.length > 0) {
    ctx.addIssue({ code: 'custom', path: ['input'], message: `pad_value and ragged batching (allow_ragged_batch, batch_input) are two ways to batch inputs of different lengths: choose one` });
  }
  for (const output of config.output.filter((declared) => declared.dims.includes(-1))) {
    if (output.padded === undefined) {
      ctx.addIssue({ code: 'custom', path: ['output'], message: `output '${output.name}' has a -1 dimension: with pad_value on an input, say whether it follows the padded length (padded: true, cut back to each request's length) or not (padded: false)` });
    } else if (output.padded && (output.data_type === 'TYPE_STRING' || output.data_type === 'TYPE_BF16')) {
      ctx.addIssue({ code: 'custom', path: ['output'], message: `output '${output.name}' is ${output.data_type} and padded: its elements cannot be cut back to each request's length; padding needs numeric outputs` });
    }
  }
}

/**
 * What the config alone can tell of ragged batching: a batch input reads a declared input and feeds
 * one the clients do not send, and ragged inputs need a batch dimension. That the target is one of
 * the model's inputs is checked at load, against the model file.
 */
function checkBatchInputs(
  config: { max_batch_size?: number; input: { name: string; allow_ragged_batch: boolean }[]; batch_input: { target_name: string[]; source_input: string[] }[] },
  ctx: z.RefinementCtx,
): void {
  if (config.max_batch_size === 0) {
    for (const input of config.input.filter((declared) => declared.allow_ragged_batch)) {
      ctx.addIssue({ code: 'custom', path: ['input'], message: `input '${input.name}' has allow_ragged_batch but max_batch_size is 0; ragged batching needs max_batch_size > 0` });
    }
  }
  const targets = new Set<string>();
  config.batch_input.forEach((batchInput, index) => {
    const [target] = batchInput.target_name;
    const [source] = batchInput.source_input;
    const path = ['batch_input', index];
    if (config.input.some((input) => input.name === target)) {
      ctx.addIssue({ code: 'custom', path, message: `target_name '${target}' is a declared input, which clients send; a batch input must be a model input the config does not declare` });
    }
    if (targets.has(target)) ctx.addIssue({ code: 'custom', path, message: `target_name '${target}' is the target of more than one batch_input` });
    targets.add(target);
    if (source !== undefined && !config.input.some((input) => input.name === source)) {
      ctx.addIssue({ code: 'custom', path, message: `source_input '${source}' is not a declared input (declared: ${config.input.map((input) => input.name).join(', ') || 'none'})` });
    }
  });
}

/** pbtxt map fields (priority_queue_policy) arrive as repeated {key, value}. */
function mapEntriesToRecord(value: unknown): unknown {
  if (!value || typeof value !== 'object') return value;
  const entries = Array.isArray(value) ? value : 'key' in value && 'value' in value ? [value] : undefined;
  if (!entries) return value;
  return Object.fromEntries(entries.map((entry: { key: unknown; value: unknown }) => [String(entry.key), entry.value]));
}

/** Cross-field rules of sequence_batching: one batcher, controls and states naming distinct inputs. */
function checkSequenceBatching(config: { max_batch_size?: number; dynamic_batching?: unknown; response_cache?: { enable: boolean }; model_warmup: unknown[]; input: { name: string }[]; sequence_batching?: z.output<typeof sequenceBatchingSchema> }, ctx: z.RefinementCtx): void {
  const batching = config.sequence_batching!;
  const issue = (message: string, ...path: (string | number)[]) => ctx.addIssue({ code: 'custom', path: ['sequence_batching', ...path], message });
  if (config.dynamic_batching) {
    ctx.addIssue({ code: 'custom', path: ['dynamic_batching'], message: 'a model has one scheduler: sequence_batching and dynamic_batching cannot both be set (remove dynamic_batching; sequence_batching batches sequences itself)' });
  }
  if (config.model_warmup.length > 0) ctx.addIssue({ code: 'custom', path: ['model_warmup'], message: 'model_warmup is not supported with sequence_batching yet (its samples carry no sequence controls or state)' });
  if (config.response_cache?.enable) issue('a stateful model\'s answers depend on the sequence so far: response_cache cannot be enabled with sequence_batching');
  const named = new Set<string>();
  const claim = (name: string, what: string, ...path: (string | number)[]) => {
    if (named.has(name)) issue(`input '${name}' is named twice among the control and state inputs`, ...path);
    if (config.input.some((input) => input.name === name)) issue(`${what} '${name}' is filled by the sequence batcher: leave it out of 'input'`, ...path);
    named.add(name);
  };
  batching.control_input.forEach((control, index) => {
    claim(control.name, 'control input', 'control_input', index);
    if (control.control.length !== 1) issue(`control input '${control.name}' needs exactly one control, got ${control.control.length}`, 'control_input', index);
  });
  batching.state.forEach((state, index) => claim(state.input_name, 'state input', 'state', index));
  const oldest = batching.oldest;
  for (const size of oldest?.preferred_batch_size ?? []) {
    if (config.max_batch_size !== undefined && size > Math.max(1, config.max_batch_size)) issue(`preferred_batch_size ${size} exceeds max_batch_size ${config.max_batch_size}`, 'oldest', 'preferred_batch_size');
  }
}

/**
 * A step's input_map or output_map: `{ key: …, value: … }` entries (pbtxt, JSON as Triton writes it) or a plain
 * record (YAML). An entry holds key and value only: any other field is refused by name, a brace misplaced so
 * that output_map sits inside an input_map entry included.
 */
function ensembleMapSchema() {
  const entryFields = ['key', 'value'];
  const entries = z.array(
    z.looseObject({}).superRefine((entry, ctx) => {
      for (const field of Object.keys(entry)) {
        if (entryFields.includes(field)) continue;
        const misplaced = field === 'input_map' || field === 'output_map';
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: `unknown field '${field}' in a map entry, which holds key and value only${misplaced ? ` (a closing brace missing before ${field}?)` : ''}`,
        });
      }
      for (const field of entryFields) if (!(field in entry)) ctx.addIssue({ code: 'custom', message: `a map entry needs ${field} (it holds key and value)` });
    }),
  );
  return z
    .preprocess((value, ctx) => {
      if (!value || typeof value !== 'object') return value;
      // An entry given alone (pbtxt writes one entry as a message) or a list of them: checked as entries, then made a record.
      const isEntry = (candidate: object) => 'key' in candidate || 'value' in candidate;
      const list = Array.isArray(value) ? value : isEntry(value) ? [value] : undefined;
      if (!list) return value;
      const checked = entries.safeParse(list);
      if (checked.success) return mapEntriesToRecord(list);
      for (const issue of checked.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: Array.isArray(value) ? issue.path : issue.path.slice(1) });
      return {};
    }, z.record(z.string(), z.string().min(1)))
    .optional();
}

/**
 * One step of Triton's ensemble_scheduling: a model, the version it runs (-1: the one its model
 * serves), which ensemble tensor feeds each of its inputs and which tensor each output it maps becomes.
 */
const ensembleStepSchema = configObject({
  model_name: z.string().min(1),
  model_version: integer(-1).default(-1),
  input_map: ensembleMapSchema(),
  output_map: ensembleMapSchema(),
});

/** ModelConfig's fields that Nereid does not use (a field the schema below declares is used, whatever this list says). */
const TRITON_ONLY_CONFIG_FIELDS = [
  'runtime',
  'batch_output',
  'cc_model_filenames',
  'metric_tags',
  'model_operations',
  'model_transaction_policy',
  'model_repository_agents',
  'model_metrics',
] as const;

export const modelConfigSchema = tritonObject('', TRITON_ONLY_CONFIG_FIELDS, {
    name: z.string().optional(),
    platform: z.string().optional(),
    backend: z.string().optional(),
    /** Absent means: let the backend's metadata decide (Triton's auto-complete). */
    max_batch_size: integer(0, "'max_batch_size' must be non-negative value (0: the model does not batch)").optional(),
    version_policy: versionPolicySchema.default({ latest: { num_versions: 1 } }),
    input: repeated(inputSchema).default([]),
    output: repeated(outputSchema).default([]),
    batch_input: repeated(batchInputSchema).default([]),
    instance_group: repeated(instanceGroupSchema).default([]),
    dynamic_batching: z
      .preprocess(
        (value) =>
          value && typeof value === 'object'
            ? { ...value, priority_queue_policy: mapEntriesToRecord((value as Record<string, unknown>).priority_queue_policy) }
            : value,
        dynamicBatchingSchema,
      )
      .optional(),
    /** Triton's sequence batcher for stateful models: requests carry a correlation id (sequence_id) and run in order, one slot per live sequence. */
    sequence_batching: sequenceBatchingSchema.optional(),
    parameters: parametersSchema.default({}),
    model_warmup: repeated(modelWarmupSchema).default([]),
    /** '' (what Triton's config answer prints for none) names no file. */
    default_model_filename: z
      .string()
      .optional()
      .transform((file) => (file === '' ? undefined : file)),
    /** Triton's ensemble (platform "ensemble"): the steps run as a graph of tensors, each through its own model. */
    ensemble_scheduling: configObject({ step: repeated(ensembleStepSchema).default([]) }).optional(),
    /** Triton's ModelOptimizationPolicy; ONNX Runtime reads graph.level (its graph optimisation level). */
    optimization: tritonObject(
      'optimization',
      ['priority', 'cuda', 'execution_accelerators', 'input_pinned_memory', 'output_pinned_memory', 'gather_kernel_buffer_threshold', 'eager_batching'],
      { graph: configObject({ level: integer(-1).optional() }).optional() },
    ).optional(),
    /**
     * Nereid's: how requests that name no version are split between the versions the policy serves
     * (a canary), and a version that sees a copy of them without answering (a shadow).
     */
    traffic: z
      .strictObject({
        /** Version → weight (any non-negative numbers; shares are weight / total); absent: every request to the highest version, as Triton routes. */
        weights: z.preprocess(mapEntriesToRecord, z.record(z.string().regex(/^[1-9]\d*$/, 'expected a version number'), z.number().nonnegative())).optional(),
        /** A request parameter whose value keeps a client on one version (by its hash); absent: each request is drawn anew. */
        sticky_parameter: z.string().min(1).optional(),
        shadow: z
          .strictObject({
            version: z.union([z.string(), z.number()]).transform(String).pipe(z.string().regex(/^[1-9]\d*$/, 'expected a version number')),
            /** Shadow requests running at once; beyond it a request is not copied (counted as skipped), so the shadow never queues up. */
            max_in_flight: count(1).default(8),
          })
          .optional(),
      })
      .optional(),
    /** Absent: every default (see monitoringSettingsOf). */
    monitoring: modelMonitoringSchema.optional(),
    response_cache: configObject({
        enable: z.boolean().default(false),
        /** Nereid: seconds an entry lives; 0 keeps it until evicted. */
        ttl_seconds: z.number().nonnegative().default(0),
        /** Nereid: request parameters that change the result, so they are part of the key. */
        key_parameters: repeated(z.string()).default([]),
      })
      .optional(),
  })
  .superRefine((config, ctx) => {
    for (const kind of ['input', 'output'] as const) {
      const seen = new Set<string>();
      for (const tensor of config[kind]) {
        if (seen.has(tensor.name)) ctx.addIssue({ code: 'custom', path: [kind], message: `${kind} '${tensor.name}' is declared twice` });
        seen.add(tensor.name);
        // A reshape must keep the element count, or every request would fail inside the engine instead of at load.
        const to = tensor.reshape?.shape;
        if (to && !tensor.dims.includes(-1) && !to.includes(-1)) {
          const from = tensor.dims.reduce((a, b) => a * b, 1);
          const into = to.reduce((a, b) => a * b, 1);
          if (from !== into) {
            ctx.addIssue({
              code: 'custom',
              path: [kind],
              message: `model ${kind} has different size for dims and reshape: ${kind} '${tensor.name}': reshape [${to.join(',')}] holds ${into} elements but dims [${tensor.dims.join(',')}] hold ${from}`,
            });
          }
        }
      }
    }
    if (config.sequence_batching) checkSequenceBatching(config, ctx);
    checkBatchInputs(config, ctx);
    checkPadding(config, ctx);
    const decoupled = (config.model_transaction_policy as { decoupled?: unknown } | undefined)?.decoupled;
    if (decoupled === true || decoupled === 'true') {
      // A client of a decoupled model waits for any number of answers; served once, it would wait for the rest.
      ctx.addIssue({
        code: 'custom',
        path: ['model_transaction_policy', 'decoupled'],
        message: 'decoupled models (any number of answers per request) are not supported: every Nereid backend answers a request exactly once; set decoupled: false',
      });
    }
    const batching = config.dynamic_batching;
    if (batching) {
      if (config.max_batch_size === 0) {
        ctx.addIssue({ code: 'custom', path: ['dynamic_batching'], message: 'dynamic_batching needs max_batch_size > 0' });
      }
      for (const size of batching.preferred_batch_size) {
        if (config.max_batch_size !== undefined && size > config.max_batch_size) {
          ctx.addIssue({
            code: 'custom',
            path: ['dynamic_batching', 'preferred_batch_size'],
            message: `preferred_batch_size ${size} exceeds max_batch_size ${config.max_batch_size}`,
          });
        }
      }
      // As Triton: answers kept in arrival order cannot also be reordered by priority or held back by DELAY.
      if (batching.preserve_ordering) {
        if (batching.priority_levels > 1) {
          ctx.addIssue({ code: 'custom', path: ['dynamic_batching', 'preserve_ordering'], message: `only one priority level is allowed when preserve_ordering is true (priority_levels is ${batching.priority_levels})` });
        }
        const delaying = [batching.default_queue_policy, ...Object.values(batching.priority_queue_policy ?? {})].some(
          (policy) => policy && policy.timeout_action === 'DELAY' && policy.default_timeout_microseconds > 0,
        );
        if (delaying) {
          ctx.addIssue({ code: 'custom', path: ['dynamic_batching', 'preserve_ordering'], message: 'a queue policy cannot have timeout_action DELAY when preserve_ordering is true' });
        }
      }
      if (batching.priority_levels > MAX_PRIORITY_LEVELS) {
        ctx.addIssue({
          code: 'custom',
          path: ['dynamic_batching', 'priority_levels'],
          message: `priority_levels may be at most ${MAX_PRIORITY_LEVELS} (one queue is kept per level), got ${batching.priority_levels}`,
        });
      }
      // As Triton: with priority levels, the default level must be one of them (0, the field's default, is not).
      if (batching.priority_levels > 0 && (batching.default_priority_level < 1 || batching.default_priority_level > batching.priority_levels)) {
        ctx.addIssue({
          code: 'custom',
          path: ['dynamic_batching', 'default_priority_level'],
          message: `default priority level must be in range [1, ${batching.priority_levels}]: default_priority_level is ${batching.default_priority_level}, priority_levels ${batching.priority_levels}`,
        });
      }
      for (const key of Object.keys(batching.priority_queue_policy ?? {})) {
        const level = Number(key);
        if (!/^\d+$/.test(key) || level < 1 || level > batching.priority_levels) {
          ctx.addIssue({
            code: 'custom',
            path: ['dynamic_batching', 'priority_queue_policy', key],
            message:
              batching.priority_levels > 0
                ? `priority level '${key}' is outside 1..${batching.priority_levels} (priority_levels)`
                : `priority_queue_policy needs priority_levels > 0`,
          });
        }
      }
    }
  });

export type ModelConfig = z.output<typeof modelConfigSchema>;
/** A config after completion from the model file: every field a model version runs with is known. */
export type CompletedModelConfig = ModelConfig & { name: string; max_batch_size: number; backend: string; platform: string };
export type ModelInputConfig = ModelConfig['input'][number];
export type ModelOutputConfig = ModelConfig['output'][number];
export type BatchInputConfig = ModelConfig['batch_input'][number];
export type ImagePreprocessing = z.output<typeof imagePreprocessingSchema>;
export type OutputPostprocessing = z.output<typeof outputPostprocessingSchema>;
export type DynamicBatchingConfig = NonNullable<ModelConfig['dynamic_batching']>;
export type SequenceBatchingConfig = NonNullable<ModelConfig['sequence_batching']>;
export type ModelWarmupConfig = z.output<typeof modelWarmupSchema>;
export type QueuePolicyConfig = DynamicBatchingConfig['default_queue_policy'];
export type EnsembleStepConfig = NonNullable<ModelConfig['ensemble_scheduling']>['step'][number];

/** Every problem zod found, each with its field path; `whole` names a problem with the value itself. */
export function describeIssues(error: z.ZodError, prefix = '', whole = '(config)'): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path].filter((part) => part !== '').join('.');
      // An unknown field's message names it; at the top there is no place to name besides the file.
      if (!path && issue.code === 'unrecognized_keys') return issue.message;
      // A value outside a set of choices is named (parsed with reportInput), as the rest of the messages name what came.
      const got = issue.code === 'invalid_value' && 'input' in issue ? `, got ${quote(issue.input)}` : '';
      return `${path || whole}: ${issue.message}${got}`;
    })
    .join('; ');
}

const PROCESSING_PARAMETER = /^(preprocess|postprocess)\.(.+)$/;
/** config.pbtxt's form of the `monitoring` field (its JSON). */
const MONITORING_PARAMETER = 'monitoring';

/**
 * config.pbtxt has no nested Nereid fields, so pre/post-processing arrive there as parameters
 * `preprocess.<input>` / `postprocess.<output>`, and monitoring as `monitoring`, holding the same object as JSON.
 */
function applyProcessingParameters(config: ModelConfig, source: string): void {
  const parsedParameter = <Schema extends z.ZodType>(key: string, string_value: string, schema: Schema): z.output<Schema> => {
    let value: unknown;
    try {
      value = JSON.parse(string_value);
    } catch (error) {
      throw new Error(`invalid ${source}: parameters.${key}: not valid JSON (${(error as Error).message})`, { cause: error });
    }
    const parsed = schema.safeParse(value, { reportInput: true });
    if (!parsed.success) throw new Error(`invalid ${source}: ${describeIssues(parsed.error, `parameters.${key}`)}`);
    return parsed.data;
  };
  for (const [key, { string_value }] of Object.entries(config.parameters)) {
    if (key === MONITORING_PARAMETER) {
      config.monitoring = parsedParameter(key, string_value, modelMonitoringSchema);
      continue;
    }
    const match = PROCESSING_PARAMETER.exec(key);
    if (!match) continue;
    const [, kind, tensorName] = match;
    const schema = kind === 'preprocess' ? configObject({ image: imagePreprocessingSchema }) : outputPostprocessingSchema;
    const parsed = { data: parsedParameter(key, string_value, schema) };
    const tensors: { name: string; preprocess?: unknown; postprocess?: unknown }[] = kind === 'preprocess' ? config.input : config.output;
    const tensor = tensors.find((candidate) => candidate.name === tensorName);
    if (!tensor) {
      throw new Error(`invalid ${source}: parameters.${key} names ${kind === 'preprocess' ? 'input' : 'output'} '${tensorName}', which the config does not declare`);
    }
    tensor[kind as "preprocess" | "postprocess"] = parsed.data;
  }
}

/** A value as Triton writes an unset field in its JSON form (false, 0, '', [], {}, PRIORITY_DEFAULT): nothing to warn of. */
function isUnset(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === '') return true;
  if (typeof value === 'string') return value.endsWith('_DEFAULT');
  if (Array.isArray(value)) return value.length === 0;
  // An object of defaults only ({ decoupled: false }) sets nothing either.
  return typeof value === 'object' && Object.values(value).every(isUnset);
}

/**
 * Fields of Triton's config that this config sets and Nereid does not use, by path (input.0.is_shape_tensor),
 * so that the load can say they have no effect here. Fields at their default, as Triton's JSON form
 * writes every field, are left out.
 */
export function ignoredTritonFields(config: ModelConfig): string[] {
  const found: string[] = [];
  for (const [place, names] of tritonOnlyFields) {
    const value = place === '' ? config : (config as Record<string, unknown>)[place];
    const objects = Array.isArray(value) ? value.map((item, index) => [`${place}.${index}`, item] as const) : [[place, value] as const];
    for (const [path, object] of objects) {
      if (!object || typeof object !== 'object') continue;
      for (const name of names) if (!isUnset((object as Record<string, unknown>)[name])) found.push(path ? `${path}.${name}` : name);
    }
  }
  return found;
}

export function parseModelConfig(raw: unknown, source: string): ModelConfig {
  const result = modelConfigSchema.safeParse(raw ?? {}, { reportInput: true });
  if (!result.success) throw new Error(`invalid ${source}: ${describeIssues(result.error)}`);
  applyProcessingParameters(result.data, source);
  return result.data;
}

export function datatypeOfConfig(tensor: { data_type: string }): Datatype {
  return datatypeFromConfig(tensor.data_type)!;
}

/**
 * The scores of an output that is one vector of class scores, when its labels file names fewer classes than that:
 * the classes past the file's end would be answered and judged by index, which reads like a mistake nobody notices.
 */
export function scoresBeyondLabels(output: { dims: readonly number[] }, labels: readonly string[]): number | undefined {
  const scores = output.dims.at(-1);
  const vector = output.dims.slice(0, -1).every((dim) => dim === 1);
  return vector && scores !== undefined && scores > labels.length ? scores : undefined;
}

/** Refuses to judge classes by a labels file that names fewer of them than the output scores (see scoresBeyondLabels). */
export function requireLabelsForEveryScore(model: string, output: { name: string; dims: readonly number[]; label_filename?: string }, labels: readonly string[]): void {
  const scores = scoresBeyondLabels(output, labels);
  if (scores !== undefined) {
    throw new Error(`output '${output.name}' of '${model}' has ${scores} scores but its labels file ${output.label_filename} has ${labels.length} lines; give it one line per score, in index order`);
  }
}

export function parameterValue(config: ModelConfig, key: string): string | undefined {
  return config.parameters[key]?.string_value;
}

/**
 * The config parameters a component declares in `schema` (each a string in the config), parsed with its defaults;
 * parameters it does not declare are left to others. Throws with every bad one named.
 */
export function declaredParameters<Schema extends z.ZodObject>(schema: Schema, parameters: Record<string, string | undefined>): z.output<Schema> {
  const given = Object.fromEntries(Object.keys(schema.shape).map((name) => [name, parameters[name]]).filter(([, value]) => value !== undefined));
  const parsed = schema.safeParse(given, { reportInput: true });
  if (!parsed.success) throw new Error(describeIssues(parsed.error, 'parameters'));
  return parsed.data;
}

/** A config's parameters as strings by name, as declaredParameters reads them. */
export const parameterStrings = (config: ModelConfig): Record<string, string | undefined> =>
  Object.fromEntries(Object.keys(config.parameters).map((name) => [name, parameterValue(config, name)]));

/**
 * The model file a config answer names: the config's own, else for an ONNX Runtime model the file it loads when none is
 * named ('model.onnx', as Triton's auto-complete writes it), else '' as in Triton's answer for other backends.
 */
export function answeredModelFilename(config: Pick<CompletedModelConfig, 'backend' | 'default_model_filename'>): string {
  return config.default_model_filename ?? (config.backend === 'onnxruntime' ? 'model.onnx' : '');
}
