/**
 * `nereid eval` on a folder of labelled images (one sub-folder per class, named as the model's
 * labels, '/' written '_'): every version asked for runs over every image in this process, through the model's own
 * pre-processing, batcher and activation — the path production requests take — and is scored
 * against the labels and against the first version, timed in the same run.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { IMAGE_EXTENSIONS } from '../jobs/input-source.js';
import { classLabels, imageScores } from '../model/image-classification.js';
import { createServer } from '../server/create-server.js';
import type { Server } from '../server/server.js';
import { judgeGate, parseGate, type GateMetric, type GateVerdict } from './accuracy-gate.js';
import { compareScores, evaluateClassification, type AgreementReport, type ClassificationReport } from './classification-metrics.js';

export const evalOptionsSchema = z.object({
  modelRepository: z.string().min(1),
  model: z.string().min(1),
  /** Versions to compare, the first being the reference; empty: the versions the model's policy loads. */
  versions: z.array(z.string().regex(/^[1-9]\d*$/, 'a version is a positive integer')).default([]),
  /** A folder with one sub-folder of images per class. */
  data: z.string().min(1),
  topK: z.number().int().positive().default(5),
  /** Clauses the last version must meet against the first, e.g. "accuracy_drop<=0.005,agreement>=0.99". */
  gate: z.string().optional(),
});

export type EvalOptions = z.input<typeof evalOptionsSchema>;


export interface LabelledImages {
  /** Class names, in the model's label order. */
  classes: readonly string[];
  /** `label` absent: an unlabelled data set (images directly in the folder), judged by agreement alone. */
  files: { path: string; label?: number }[];
}

/** The folder a class's images go in: its label, with '/' (which no folder name can hold) written as '_'. */
export function classFolderName(label: string): string {
  return label.replaceAll('/', '_');
}

/** The images of a class-per-folder data set, each labelled with the class its folder names (by label, see classFolderName, or by index). */
export async function readLabelledImages(dir: string, labels: readonly string[]): Promise<LabelledImages> {
  const entries = await readdir(dir, { withFileTypes: true });
  const folders = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
  if (folders.length === 0) {
    // No class folders: images without labels, which versions can still be compared on.
    const unlabelled = entries.filter((entry) => entry.isFile() && IMAGE_EXTENSIONS.has(extname(entry.name).toLowerCase())).map((entry) => ({ path: join(dir, entry.name) }));
    if (unlabelled.length === 0) throw new Error(`--data ${dir} has neither class sub-folders nor images; put each class's images in a folder named as its label`);
    return { classes: labels, files: unlabelled.sort((a, b) => a.path.localeCompare(b.path)) };
  }
  const byFolder = new Map(labels.map((label, index) => [classFolderName(label), index]));
  const classOf = (folder: string) => byFolder.get(folder) ?? (/^\d+$/.test(folder) && Number(folder) < labels.length ? Number(folder) : undefined);
  const unknown = folders.filter((folder) => classOf(folder) === undefined);
  if (unknown.length > 0) {
    throw new Error(`--data ${dir}: folder(s) ${unknown.map((name) => `'${name}'`).join(', ')} name no class of the model; its classes: ${labels.map(classFolderName).join(', ')} (or 0..${labels.length - 1})`);
  }
  const files: LabelledImages['files'] = [];
  for (const folder of folders) {
    const names = (await readdir(join(dir, folder))).filter((name) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase())).sort();
    for (const name of names) files.push({ path: join(dir, folder, name), label: classOf(folder)! });
  }
  if (files.length === 0) throw new Error(`--data ${dir}: no images (${[...IMAGE_EXTENSIONS].join(', ')}) in its class folders`);
  return { classes: labels, files };
}

export interface VersionEvaluation {
  version: string;
  /** Bytes of its model file. */
  sizeBytes: number;
  /** Against the labels; absent for unlabelled data. */
  classification?: ClassificationReport;
  /** Against the first version; absent for the first. */
  agreement?: AgreementReport;
  imagesPerSecond: number;
}

export interface EvalReport {
  model: string;
  images: number;
  classes: readonly string[];
  versions: VersionEvaluation[];
  /** The last version against the first, when a gate was given. */
  gate?: GateVerdict & { spec: string };
}

/** Images scored at once: enough for the batcher to fill its batches, few enough to bound memory. */
const CHUNK = 256;

async function loadVersions(server: Server, model: string, versions: readonly string[]): Promise<string[]> {
  if (versions.length === 0) {
    const loaded = (await server.repositoryIndex(true)).filter((entry) => entry.name === model).map((entry) => entry.version!);
    return loaded.sort((a, b) => Number(a) - Number(b));
  }
  // The repository's config with the versions to compare as its policy, so that all of them load side by side.
  const config = { ...server.modelConfig(model), version_policy: { specific: { versions: versions.map(Number) } } };
  await server.loadModel(model, { config: JSON.stringify(config) });
  return [...versions];
}

export async function runEval(options: EvalOptions, logger: Logger): Promise<EvalReport> {
  const settings = evalOptionsSchema.parse(options);
  const gate = settings.gate === undefined ? undefined : parseGate(settings.gate);
  const server = await createServer({ modelRepository: settings.modelRepository, modelControlMode: 'explicit', loadModels: [settings.model], logger });
  try {
    await server.start();
    const versions = await loadVersions(server, settings.model, settings.versions);
    if (versions.length === 0) throw new Error(`model '${settings.model}' has no ready version in ${settings.modelRepository}`);
    const labels = classLabels(server.model(settings.model, versions[0]));
    if (!labels) throw new Error(`model '${settings.model}' has no labels file on its classification output; eval names classes by their labels`);
    const data = await readLabelledImages(settings.data, labels);
    const images = await Promise.all(data.files.map((file) => readFile(file.path)));
    const labelled = data.files.every((file) => file.label !== undefined);
    const truth = data.files.map((file) => file.label ?? -1);
    const evaluations: VersionEvaluation[] = [];
    let reference: Float32Array[] | undefined;
    for (const version of versions) {
      const model = server.model(settings.model, version);
      const started = performance.now();
      const scores: Float32Array[] = [];
      for (let start = 0; start < images.length; start += CHUNK) scores.push(...(await imageScores(model, images.slice(start, start + CHUNK))));
      const seconds = (performance.now() - started) / 1000;
      evaluations.push({
        version,
        sizeBytes: (await stat(join(settings.modelRepository, settings.model, version, model.config.default_model_filename ?? 'model.onnx'))).size,
        classification: labelled ? evaluateClassification(scores, truth, { classes: labels.length, topK: settings.topK }) : undefined,
        agreement: reference ? compareScores(reference, scores) : undefined,
        imagesPerSecond: images.length / seconds,
      });
      reference ??= scores;
    }
    const report: EvalReport = { model: settings.model, images: images.length, classes: data.classes, versions: evaluations };
    if (gate) report.gate = { spec: settings.gate!, ...judgeGate(gate, gateFigures(evaluations)) };
    return report;
  } finally {
    await server.close();
  }
}

/** The figures a gate judges: the last version's, and its differences from the first. */
function gateFigures(evaluations: readonly VersionEvaluation[]): Partial<Record<GateMetric, number>> {
  const last = evaluations[evaluations.length - 1];
  const agreement = {
    // A version against itself agrees entirely.
    agreement: last.agreement?.top1Agreement ?? 1,
    max_abs_delta: last.agreement?.maxAbsDelta ?? 0,
  };
  const first = evaluations[0].classification;
  const candidate = last.classification;
  if (!first || !candidate) return agreement;
  return {
    ...agreement,
    accuracy: candidate.top1Accuracy,
    accuracy_drop: first.top1Accuracy - candidate.top1Accuracy,
    top_k_accuracy: candidate.topKAccuracy,
    ece: candidate.ece,
    ece_increase: candidate.ece - first.ece,
  };
}

/** A share as the report prints it, e.g. "92.50 %"; '—' for one that could not be measured. */
export const formatPercent = (value: number) => (Number.isNaN(value) ? '—' : `${(value * 100).toFixed(2)} %`);
/** A model file's size as the report prints it, in whole KiB. */
export const formatSize = (bytes: number) => `${(bytes / 1024).toFixed(0)} KiB`;
/** Throughput as the report prints it, images per second to one decimal. */
export const formatRate = (imagesPerSecond: number) => imagesPerSecond.toFixed(1);

/** The report as a person reads it: one row per version, then the per-class figures and the gate's verdict. */
export function formatEvalReport(report: EvalReport): string {
  const labelled = report.versions[0]?.classification !== undefined;
  const lines = [`model ${report.model}: ${report.images} images, ${labelled ? `${report.classes.length} classes` : 'unlabelled (agreement only)'}`, ''];
  const k = report.versions[0]?.classification?.k;
  lines.push(`| version | size | top-1 | top-${k ?? 'k'} | ECE | agreement with v${report.versions[0]?.version} | max score delta | images/s |`, '|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const evaluation of report.versions) {
    const { classification: c, agreement: a } = evaluation;
    lines.push(
      `| ${evaluation.version} | ${formatSize(evaluation.sizeBytes)} | ${formatPercent(c?.top1Accuracy ?? NaN)} | ${formatPercent(c?.topKAccuracy ?? NaN)} | ${formatPercent(c?.ece ?? NaN)} | ${a ? formatPercent(a.top1Agreement) : '—'} | ${a ? a.maxAbsDelta.toFixed(4) : '—'} | ${formatRate(evaluation.imagesPerSecond)} |`,
    );
  }
  for (const evaluation of report.versions) {
    const classification = evaluation.classification;
    if (!classification) continue;
    lines.push('', `version ${evaluation.version}, per class:`, '| class | precision | recall | support |', '|---|---:|---:|---:|');
    classification.perClass.forEach((metrics, index) => {
      lines.push(`| ${report.classes[index]} | ${formatPercent(metrics.precision)} | ${formatPercent(metrics.recall)} | ${metrics.support} |`);
    });
    const indices = report.classes.map((_, index) => String(index));
    lines.push('', `version ${evaluation.version}, confusion (rows: label, columns: predicted class by index):`, `| label | ${indices.join(' | ')} |`, `|---|${indices.map(() => '---:').join('|')}|`);
    classification.confusion.forEach((row, index) => lines.push(`| ${index} ${report.classes[index]} | ${row.join(' | ')} |`));
  }
  if (report.gate) {
    lines.push('', report.gate.passed ? `gate "${report.gate.spec}": PASSED` : `gate "${report.gate.spec}": FAILED`);
    for (const failure of report.gate.failures) lines.push(`  ${failure}`);
  }
  return lines.join('\n');
}
