/**
 * `nereid eval`: every version asked for runs over the same examples in this process, through the
 * path production requests take (the model's pre-processing, batcher and activation), and is scored
 * against the labels and against the first version, timed in the same run. Examples are a folder of
 * labelled images (one sub-folder per class, named by label, '/' written '_'), a folder of images
 * without labels, or a batch job's input file with an optional `label` field or column: JSONL or CSV of tensors
 * (either gzipped), or Parquet of tensors or of encoded images (Hugging Face's image layout).
 * What a label and an agreement mean follows the output's kind: classes, CTC text, or a map.
 */
import { readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { requireLabelsForEveryScore } from '../config/model-config.js';
import type { InferenceRequest } from '../core/inference.js';
import { entriesFollowingLinks, IMAGE_EXTENSIONS, openInput, type InputSource } from '../jobs/input-source.js';
import { checkInputFits } from '../jobs/local-batch-job.js';
import { LABEL_COLUMN } from '../jobs/record-columns.js';
import { RecordProcessor } from '../jobs/record-processor.js';
import { classLabels, imageScores } from '../model/image-classification.js';
import type { ModelVersion } from '../model/model-version.js';
import { parseExactJson } from '../protocol/v2-json.js';
import { activate, DEFAULT_POSTPROCESSING } from '../processing/output-postprocessor.js';
import { modelVersionsOnDisk } from '../repository/model-versions.js';
import { createCommandServer } from '../server/create-server.js';
import type { Server } from '../server/server.js';
import { classFolderName, classOfName } from '../monitoring/class-names.js';
import { COMPARISON_METRICS, judgeGate, LABEL_METRICS, parseGate, type GateMetric, type GateVerdict } from './accuracy-gate.js';
import { evaluateClassification, type ClassificationReport } from './classification-metrics.js';
import { compareOutputs, ctcGreedyText, evaluateText, outputKindOf, type AgreementReport, type ExampleOutput, type OutputKind, type TextReport } from './output-comparison.js';
import { DEFAULT_TOP_K, evalOptionsSchema } from './eval-options.js';

export { DEFAULT_TOP_K, evalOptionsSchema } from './eval-options.js';

export type EvalOptions = z.input<typeof evalOptionsSchema>;



export interface LabelledImages {
  /** Class names, in the model's label order. */
  classes: readonly string[];
  /** `label` absent: an unlabelled data set (images directly in the folder), judged by agreement alone. */
  files: { path: string; label?: number }[];
}

/** The images of a class-per-folder data set, each labelled with the class its folder names (by label, see classFolderName, or by index). */
export async function readLabelledImages(dir: string, labels: readonly string[]): Promise<LabelledImages> {
  const entries = await entriesFollowingLinks(dir);
  const folders = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
  if (folders.length === 0) {
    // No class folders: images without labels, which versions can still be compared on.
    const unlabelled = entries.filter((entry) => entry.isFile() && IMAGE_EXTENSIONS.has(extname(entry.name).toLowerCase())).map((entry) => ({ path: join(dir, entry.name) }));
    if (unlabelled.length === 0) throw new Error(`--data ${dir} has neither class sub-folders nor images; put each class's images in a folder named as its label`);
    return { classes: labels, files: unlabelled.sort((a, b) => a.path.localeCompare(b.path)) };
  }
  const loose = entries.filter((entry) => entry.isFile() && IMAGE_EXTENSIONS.has(extname(entry.name).toLowerCase()));
  if (loose.length > 0) {
    throw new Error(`--data ${dir} has class sub-folders and also ${loose.length} image(s) beside them (${loose.slice(0, 3).map((entry) => entry.name).join(', ')}${loose.length > 3 ? ', …' : ''}), which no folder labels: move them into their class's folder, or out of --data`);
  }
  if (labels.length === 0) throw new Error(`--data ${dir} has class sub-folders, but the model has no labels file to name its classes; give its output a label_filename, or put the images directly in the folder to compare versions by agreement alone`);
  const classOf = classOfName(labels);
  const unknown = folders.filter((folder) => classOf(folder) === undefined);
  if (unknown.length > 0) {
    throw new Error(`--data ${dir}: folder(s) ${unknown.map((name) => `'${name}'`).join(', ')} name no class of the model; its classes: ${labels.map(classFolderName).join(', ')} (or 0..${labels.length - 1})`);
  }
  const files: LabelledImages['files'] = [];
  for (const folder of folders) {
    const names = (await entriesFollowingLinks(join(dir, folder))).filter((entry) => entry.isFile() && IMAGE_EXTENSIONS.has(extname(entry.name).toLowerCase())).map((entry) => entry.name).sort();
    for (const name of names) files.push({ path: join(dir, folder, name), label: classOf(folder)! });
  }
  if (files.length === 0) throw new Error(`--data ${dir}: no images (${[...IMAGE_EXTENSIONS].join(', ')}) in its class folders`);
  return { classes: labels, files };
}

export interface VersionEvaluation {
  version: string;
  /** Bytes of the model file it was loaded from (the handler's for a javascript model); absent for an ensemble, which has none. */
  sizeBytes?: number;
  /** Classes against their labels; absent for unlabelled data or other kinds. */
  classification?: ClassificationReport;
  /** CTC text against the expected text. */
  text?: TextReport;
  /** Against the first version; absent for the first. */
  agreement?: AgreementReport;
  examplesPerSecond: number;
}

export interface EvalReport {
  model: string;
  /** The output judged, and what it means. */
  output: string;
  kind: OutputKind;
  examples: number;
  /** The output's labels (class names), when it has them. */
  classes?: readonly string[];
  versions: VersionEvaluation[];
  /** The last version against the first, when a gate was given. */
  gate?: GateVerdict & { spec: string };
}

/** Examples sent at once: enough for the batcher to fill its batches, few enough to bound memory. */
const CHUNK = 256;

async function loadVersions(server: Server, model: string, versions: readonly string[]): Promise<string[]> {
  if (versions.length === 0) {
    // A version the policy names that failed to load fails the run: judged without it, the gate
    // would pass on an older version in place of the candidate.
    const rows = (await server.repositoryIndex()).filter((entry) => entry.name === model);
    const failed = rows.filter((entry) => entry.state !== 'READY');
    const whole = failed.find((entry) => entry.version === undefined);
    if (whole) throw new Error(`model '${model}' did not load: ${whole.reason || whole.state || 'not loaded'}`);
    if (failed.length > 0) {
      const reasons = failed.map((entry) => `${entry.version === undefined ? 'the model' : `version ${entry.version}`}: ${entry.reason || entry.state || 'not loaded'}`);
      throw new Error(`model '${model}': its version policy names ${failed.length === 1 ? 'a version that' : 'versions that'} did not load, so the versions it loads cannot be evaluated (name those to compare with --versions): ${reasons.join('; ')}`);
    }
    return rows.map((entry) => entry.version!).sort((a, b) => Number(a) - Number(b));
  }
  await server.loadVersions(model, versions);
  return [...versions];
}

/** The examples of a run: how many, their labels (class index or text), and one version's outputs on all of them, in order. */
interface Examples {
  count: number;
  labels?: (number | string)[];
  /** The outputs of the first `count` examples (default: all). */
  run(model: ModelVersion, count?: number): Promise<ExampleOutput[]>;
}

/** Examples run untimed on each version first, so that the first version timed does not also pay for warming up the process. */
const WARM_UP_EXAMPLES = 16;

async function imageExamples(dir: string, labels: readonly string[]): Promise<Examples> {
  const data = await readLabelledImages(dir, labels);
  const images = await Promise.all(data.files.map((file) => readFile(file.path)));
  const labelled = data.files.every((file) => file.label !== undefined);
  return encodedImageExamples(images, data.files.map((file) => `--data ${file.path}`), labelled ? data.files.map((file) => file.label!) : undefined);
}

/**
 * Encoded images (a folder's files, a Parquet file's image column) scored through the model's own pre-processing, as
 * /classify scores them, whichever the images came from; `wheres` names each in an error.
 */
function encodedImageExamples(images: readonly Buffer[], wheres: readonly string[], labels: number[] | undefined): Examples {
  return {
    count: images.length,
    labels,
    async run(version, count = images.length) {
      const scores: ExampleOutput[] = [];
      for (let start = 0; start < count; start += CHUNK) {
        const chunk = images.slice(start, Math.min(count, start + CHUNK));
        const chunkScores = await imageScores(version, chunk).catch(async (error: Error) => {
          // Which image failed: the chunk's error counts images within the chunk, so each is tried alone to name it.
          for (const [offset, image] of chunk.entries()) {
            await imageScores(version, [image]).catch((single: Error) => {
              // One image alone: imageScores says what is wrong with it without an index.
              throw new Error(`${wheres[start + offset]}: ${single.message}`, { cause: single });
            });
          }
          throw error;
        });
        for (const data of chunkScores) scores.push({ data, dims: [data.length] });
      }
      return scores;
    },
  };
}

/** A label as written in a record: for classes, a label of the model or a class index; for text, the text. */
function labelOf(value: unknown, kind: OutputKind, classes: readonly string[] | undefined, where: string): number | string {
  if (kind === 'ctc') {
    if (typeof value !== 'string') throw new Error(`${where}: the label of a text output must be a string, got ${JSON.stringify(value)}`);
    return value;
  }
  const index = typeof value === 'number' ? value : typeof value === 'string' ? (classes?.indexOf(value) ?? -1) >= 0 ? classes!.indexOf(value) : /^\d+$/.test(value) ? Number(value) : -1 : -1;
  if (!Number.isInteger(index) || index < 0 || (classes && index >= classes.length)) {
    throw new Error(`${where}: label ${JSON.stringify(value)} is neither a class of the model nor an index 0..${(classes?.length ?? 1) - 1}`);
  }
  return index;
}

/** Field names a person may have meant as the label. */
const LABEL_LIKE = /^(labels?|class(es)?|targets?|y|category|ground_?truth)$/i;

/**
 * The records of a batch job's input (JSONL, CSV or Parquet, gzipped or not), each with its `label` when it has one:
 * requests of tensors, or the images of a Parquet file's image column.
 */
async function recordExamples(source: InputSource, server: Server, model: ModelVersion, output: string, kind: OutputKind, classes: readonly string[] | undefined, logger: Logger): Promise<Examples> {
  const { path } = source;
  const processor = RecordProcessor.create(server, { model: model.name, version: model.version });
  // What a batch job refuses before any record runs (no column for an input, one of a type no input takes), eval refuses too.
  await checkInputFits(source, processor);
  const images: Buffer[] = [];
  const requests: InferenceRequest[] = [];
  const wheres: string[] = [];
  const labels: (number | string)[] = [];
  /** Fields named like a label but not `label` (Label, class, target): said when they leave the data unlabelled. */
  const nearMisses = new Set<string>();
  // A model input named like a label (y, class) is data, not a label the user misnamed.
  const inputs = new Set(model.config.input.map((input) => input.name));
  const noteNearMisses = (names: readonly string[]) => {
    for (const key of names) if (LABEL_LIKE.test(key) && key !== LABEL_COLUMN && !inputs.has(key)) nearMisses.add(key);
  };
  // A Parquet file's image records carry no fields: its columns say what the label may have been called.
  noteNearMisses(source.columnNames ?? []);
  for await (const entry of source.records()) {
    const record = await entry.load();
    const where = `--data ${path}, record ${record.id}`;
    wheres.push(where);
    if (record.error !== undefined) throw new Error(`${where}: ${record.error}`);
    // A CSV or Parquet file's label column is read apart from the inputs; a JSONL line keeps its label as a field.
    let label: unknown = record.label;
    if (record.image) {
      images.push(record.image);
    } else {
      try {
        // The request first: it refuses a record the cap refuses before parsing it.
        requests.push({ ...processor.request(record), outputs: [{ name: output }] });
        if (record.json !== undefined) {
          const value: unknown = parseExactJson(Buffer.from(record.json, 'utf8'), where);
          if (value && typeof value === 'object' && !Array.isArray(value)) {
            label ??= (value as Record<string, unknown>)[LABEL_COLUMN];
            noteNearMisses(Object.keys(value));
          }
        }
      } catch (error) {
        throw new Error(`${where}: ${(error as Error).message}`);
      }
    }
    noteNearMisses(Object.keys(record.fields ?? {}));
    if (label !== undefined && label !== null && label !== '') labels.push(labelOf(label, kind, classes, where));
  }
  if (labels.length === 0 && nearMisses.size > 0) {
    logger.warn(`--data ${path}: ${[...nearMisses].map((key) => `'${key}'`).join(', ')} is not read as the label, which is the field or column named 'label': the data are judged unlabelled (agreement only)`);
  }
  const count = wheres.length;
  if (count === 0) throw new Error(`--data ${path} has no records`);
  if (labels.length !== 0 && labels.length !== count) throw new Error(`--data ${path}: ${labels.length} of ${count} records have a label; label all of them or none`);
  if (images.length > 0) return encodedImageExamples(images, wheres, labels.length > 0 ? (labels as number[]) : undefined);
  const declared = model.config.output.find((candidate) => candidate.name === output)!;
  return {
    count: requests.length,
    labels: labels.length > 0 ? labels : undefined,
    async run(version, count = requests.length) {
      const outputs: ExampleOutput[] = [];
      for (let start = 0; start < count; start += CHUNK) {
        // A record the model refuses (an image that does not decode, a wrong shape) is named as label errors are.
        const answers = await Promise.all(
          requests.slice(start, Math.min(count, start + CHUNK)).map((request, offset) =>
            version.infer({ ...request, version: version.version }).catch((error: Error) => {
              throw new Error(`${wheres[start + offset]}: ${error.message}`, { cause: error });
            }),
          ),
        );
        for (const answer of answers) {
          let tensor = answer.outputs.find((candidate) => candidate.name === output)!;
          // Classes are judged as the classify endpoint answers them: after the output's activation, once. An
          // output that declares its postprocess is answered activated already; one that does not, as raw scores.
          if (kind === 'classification' && !declared.postprocess) tensor = { ...tensor, ...activate(tensor, DEFAULT_POSTPROCESSING, version.batched) };
          const dims = version.batched ? tensor.shape.slice(1) : tensor.shape;
          outputs.push({ data: Float32Array.from(tensor.data as ArrayLike<number>), dims });
        }
      }
      return outputs;
    },
  };
}

export async function runEval(options: EvalOptions, logger: Logger): Promise<EvalReport> {
  const settings = evalOptionsSchema.parse(options);
  const gate = settings.gate === undefined ? undefined : parseGate(settings.gate);
  // The evaluation is this server's only client and sends a chunk at a time: a wait is expected, not an overload to refuse.
  // Its examples come in the data's order (a labelled folder, class by class), which drift monitoring would call drift.
  // Versions named are loaded alone: a version they leave out is no part of the evaluation, broken or not.
  const byPolicy = settings.versions.length === 0 ? [settings.model] : [];
  const server = await createCommandServer({ modelRepository: settings.modelRepository, allowCodeModels: settings.allowCodeModels, loadModels: byPolicy, logger, maxQueueWaitMs: 3_600_000, monitoring: false });
  try {
    // A model the repository lacks is named with those it has, as quantize does (and the server, for a model it loads by policy).
    const onDisk = await modelVersionsOnDisk(settings.modelRepository, settings.model);
    await server.start();
    const versions = await loadVersions(server, settings.model, settings.versions);
    if (versions.length === 0) throw new Error(`model '${settings.model}' has no ready version in ${settings.modelRepository}`);
    const first = server.model(settings.model, versions[0]);
    const declared = settings.output === undefined ? first.config.output[0] : first.config.output.find((candidate) => candidate.name === settings.output);
    if (!declared) throw new Error(`--output ${settings.output}: model '${settings.model}' has no such output; its outputs: ${first.config.output.map((candidate) => candidate.name).join(', ')}`);
    const classes = first.labelsOf(declared.name);
    const kind = settings.kind ?? outputKindOf({ dims: declared.dims, labelled: classes !== undefined });
    if (kind === 'ctc' && !classes) throw new Error(`output '${declared.name}' of '${settings.model}' has no labels file; ctc outputs are read by their labels`);
    if (options.threshold !== undefined && kind !== 'mask') logger.warn(`--threshold ${options.threshold} is for a probability map; output '${declared.name}' is judged as ${kind}, which it does not change`);
    if (settings.topK !== undefined && kind === 'classification' && classes && settings.topK > classes.length) {
      throw new Error(`--top-k ${settings.topK}: output '${declared.name}' of '${settings.model}' has ${classes.length} classes, so top-${settings.topK} accuracy would count every example right; give at most ${classes.length}`);
    }
    if (kind === 'classification' && classes) requireLabelsForEveryScore(settings.model, declared, classes);
    const isFolder = (
      await stat(settings.data).catch((error: NodeJS.ErrnoException) => {
        throw new Error(error.code === 'ENOENT' ? `--data ${settings.data}: no such file or folder` : `--data ${settings.data}: ${error.message}`);
      })
    ).isDirectory();
    const source = isFolder ? undefined : await openInput(settings.data, { labelColumn: LABEL_COLUMN });
    const holdsImages = isFolder ? 'is a folder of images' : source?.imageColumn !== undefined ? `holds images (column '${source.imageColumn}')` : undefined;
    if (holdsImages && (first.imageInputs.size !== 1 || kind !== 'classification')) {
      // Said of what the model is: one taking images whose output is not a classifier's (a detector) is not "no images".
      const takes =
        first.imageInputs.size !== 1
          ? `'${settings.model}' takes no image through preprocess.image`
          : settings.kind !== undefined
            ? `--kind ${settings.kind} reads its output '${declared.name}' as ${settings.kind === 'ctc' ? 'CTC text' : 'a probability map'}, not classes (leave --kind out for a classifier)`
            : `'${settings.model}' takes images, but its output '${declared.name}' [${declared.dims.join(', ')}] is not one score per class`;
      throw new Error(`--data ${settings.data} ${holdsImages}, which eval reads for a classifier taking images: ${takes}; give this model a JSONL, CSV or Parquet file of its input tensors`);
    }
    const examples = source ? await recordExamples(source, server, first, declared.name, kind, classes, logger) : await imageExamples(settings.data, classLabels(first) ?? []);
    if (examples.labels && kind === 'classification' && !classes) {
      throw new Error(`--data ${settings.data} is labelled, but output '${declared.name}' of '${settings.model}' has no labels file to score against; give it label_filename, or unlabelled data to compare versions by agreement alone`);
    }
    const evaluations: VersionEvaluation[] = [];
    let reference: ExampleOutput[] | undefined;
    for (const version of versions) {
      const model = server.model(settings.model, version);
      await examples.run(model, Math.min(examples.count, WARM_UP_EXAMPLES));
      const started = performance.now();
      const outputs = await examples.run(model);
      const seconds = (performance.now() - started) / 1000;
      const labels = examples.labels;
      evaluations.push({
        version,
        sizeBytes: model.modelFileBytes,
        classification: labels && kind === 'classification' ? evaluateClassification(outputs.map((output) => output.data), labels as number[], { classes: classes!.length, names: classes, topK: settings.topK ?? DEFAULT_TOP_K }) : undefined,
        text: labels && kind === 'ctc' ? evaluateText(outputs.map((output) => ctcGreedyText(output, classes!)), labels as string[]) : undefined,
        agreement: reference ? compareOutputs(kind, reference, outputs, { labels: classes, threshold: settings.threshold }) : undefined,
        examplesPerSecond: examples.count / seconds,
      });
      reference ??= outputs;
    }
    const report: EvalReport = { model: settings.model, output: declared.name, kind, examples: examples.count, classes, versions: evaluations };
    if (gate) report.gate = { spec: settings.gate!, ...judgeGate(gate, ...gateFigures(evaluations, onDisk, kind), { examples: examples.count, minimum: settings.minGateExamples }) };
    return report;
  } finally {
    await server.close();
  }
}

/** What a comparison with the reference tells a gate. */
export function agreementFigures(agreement: AgreementReport | undefined): Partial<Record<GateMetric, number>> {
  // A version against itself agrees entirely.
  if (!agreement) return { agreement: 1, character_agreement: 1, max_abs_delta: 0 };
  return { agreement: agreement.agreement, character_agreement: agreement.characterAgreement, max_abs_delta: agreement.maxAbsDelta };
}

/**
 * The figures a gate judges — the last version's, and its differences from the first — and why
 * those not measured are missing: a run of one version compares nothing, so a clause on agreement
 * or a drop then fails instead of passing against the version itself.
 */
function gateFigures(evaluations: readonly VersionEvaluation[], onDisk: readonly number[], kind: OutputKind): [Partial<Record<GateMetric, number>>, Partial<Record<GateMetric, string>>] {
  const first = evaluations[0];
  const last = evaluations[evaluations.length - 1];
  const figures = ((): Partial<Record<GateMetric, number>> => {
    const agreement = agreementFigures(last.agreement);
    if (first.text && last.text) {
      return { ...agreement, accuracy: last.text.lineAccuracy, accuracy_drop: first.text.lineAccuracy - last.text.lineAccuracy, character_accuracy: last.text.characterAccuracy };
    }
    const [reference, candidate] = [first.classification, last.classification];
    if (!reference || !candidate) return agreement;
    return {
      ...agreement,
      accuracy: candidate.top1Accuracy,
      accuracy_drop: reference.top1Accuracy - candidate.top1Accuracy,
      top_k_accuracy: candidate.topKAccuracy,
      ece: candidate.ece,
      ece_increase: candidate.ece - reference.ece,
    };
  })();
  const unmeasured: Partial<Record<GateMetric, string>> = {};
  // Said of the run, not of the metric ("needs labels"): the data had none, or the output is never scored against any.
  if (figures.accuracy === undefined) {
    const why =
      kind === 'mask'
        ? 'a probability map is compared between versions only (mean IoU of its regions), never scored against labels; gate it on agreement'
        : "the data are unlabelled (images directly in the --data folder, or records without a 'label' field), so nothing was scored against labels; give a sub-folder per class or a 'label' field to measure it";
    for (const metric of LABEL_METRICS) unmeasured[metric] = why;
  }
  if (evaluations.length > 1) return [figures, unmeasured];
  for (const metric of COMPARISON_METRICS) {
    delete figures[metric];
    unmeasured[metric] = `it compares two versions, and only version ${first.version} was evaluated; ${compareWith(Number(first.version), onDisk)}`;
  }
  return [figures, unmeasured];
}

/**
 * How to name two versions when one was evaluated: with the nearest version below it on disk as the reference (a
 * candidate is usually the newer), else the nearest above; or that the model has no other.
 */
function compareWith(version: number, onDisk: readonly number[]): string {
  const others = onDisk.filter((candidate) => candidate !== version);
  const below = others.filter((candidate) => candidate < version).at(-1);
  const above = others.find((candidate) => candidate > version);
  if (below === undefined && above === undefined) return `the model has no other version on disk to compare it with (nereid quantize writes one)`;
  return `name both with --versions, e.g. --versions ${below !== undefined ? `${below},${version}` : `${version},${above}`}`;
}

/** A share as the report prints it, e.g. "92.50 %"; '—' for one that could not be measured. */
export const formatPercent = (value: number) => (Number.isNaN(value) ? '—' : `${(value * 100).toFixed(2)} %`);
/** A model file's size as the report prints it, in whole KiB. */
export const formatSize = (bytes: number) => (bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(0)} KiB`);
/** Throughput as the report prints it, examples per second to one decimal. */
export const formatRate = (examplesPerSecond: number) => examplesPerSecond.toFixed(1);

/** The report as a person reads it: one row per version, then the per-class figures and the gate's verdict. */
export function formatEvalReport(report: EvalReport): string {
  const [reference] = report.versions;
  const classified = reference?.classification !== undefined;
  const read = reference?.text !== undefined;
  const labelling = classified ? `${report.classes!.length} classes` : read ? 'labelled with text' : 'unlabelled (agreement only)';
  const lines = [`model ${report.model}, output ${report.output} (${report.kind}): ${report.examples} examples, ${labelling}`, ''];
  const measure = report.versions[1]?.agreement?.measure ?? (report.kind === 'classification' ? 'top-1' : report.kind === 'ctc' ? 'identical lines' : 'mean IoU');
  const columns = ['version', 'size'];
  if (classified) columns.push('top-1', `top-${reference.classification!.k}`, 'ECE');
  if (read) columns.push('lines read exactly', 'characters right');
  columns.push(`agreement with v${reference?.version} (${measure})`);
  if (report.kind === 'ctc') columns.push('characters agreeing');
  columns.push('max value delta', 'examples/s');
  lines.push(`| ${columns.join(' | ')} |`, `|---|${columns.slice(1).map(() => '---:').join('|')}|`);
  for (const evaluation of report.versions) {
    const { classification: c, text: t, agreement: a } = evaluation;
    const cells = [evaluation.version, evaluation.sizeBytes === undefined ? '—' : formatSize(evaluation.sizeBytes)];
    if (classified) cells.push(formatPercent(c?.top1Accuracy ?? NaN), formatPercent(c?.topKAccuracy ?? NaN), formatPercent(c?.ece ?? NaN));
    if (read) cells.push(formatPercent(t?.lineAccuracy ?? NaN), formatPercent(t?.characterAccuracy ?? NaN));
    cells.push(a ? formatPercent(a.agreement) : '—');
    if (report.kind === 'ctc') cells.push(a ? formatPercent(a.characterAgreement ?? NaN) : '—');
    cells.push(a ? a.maxAbsDelta.toFixed(4) : '—', formatRate(evaluation.examplesPerSecond));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  for (const evaluation of report.versions) {
    const classification = evaluation.classification;
    if (!classification) continue;
    const classes = report.classes!;
    lines.push('', `version ${evaluation.version}, per class:`, '| class | precision | recall | support |', '|---|---:|---:|---:|');
    classification.perClass.forEach((metrics, index) => {
      lines.push(`| ${classes[index]} | ${formatPercent(metrics.precision)} | ${formatPercent(metrics.recall)} | ${metrics.support} |`);
    });
    const indices = classes.map((_, index) => String(index));
    lines.push('', `version ${evaluation.version}, confusion (rows: label, columns: predicted class by index):`, `| label | ${indices.join(' | ')} |`, `|---|${indices.map(() => '---:').join('|')}|`);
    classification.confusion.forEach((row, index) => lines.push(`| ${index} ${classes[index]} | ${row.join(' | ')} |`));
  }
  if (report.gate) {
    lines.push('', report.gate.passed ? `gate "${report.gate.spec}": PASSED` : `gate "${report.gate.spec}": FAILED`);
    for (const failure of report.gate.failures) lines.push(`  ${failure}`);
  }
  return lines.join('\n');
}
