/**
 * The `/monitor` answer of one model version (JSON, snake_case as the rest of the V2 answers), and
 * the labels clients feed back for its predictions (`/feedback`).
 */
import { basename } from 'node:path';
import { z } from 'zod';
import { ONNX_RUNTIME_BACKEND } from '../backends/onnx-runtime-backend.js';
import { invalidArgument, NereidError } from '../core/errors.js';
import { accuracyCaution } from '../monitoring/accuracy-estimate.js';
import { classOfName } from '../monitoring/class-names.js';
import type { DriftLevel } from '../monitoring/drift-report.js';
import { profileCommand, REFERENCE_PROFILE_FILE } from '../monitoring/reference-profile.js';
import type { MonitorEvaluation, VersionMonitor } from '../monitoring/version-monitor.js';

const scored = (evaluation: MonitorEvaluation | undefined) => evaluation !== undefined && (evaluation.features.length > 0 || evaluation.smallSample === true);
const isoTime = (at: number | undefined) => (at === undefined ? undefined : new Date(at).toISOString());
const rounded = (value: number | undefined, digits = 6) => (value === undefined ? undefined : Number(value.toFixed(digits)));

export interface FeatureAnswer {
  feature: string;
  psi: number;
  /** The PSI a window this size drawn from the reference scores on average; the level and the drift score count the PSI beyond it. */
  chance_psi?: number;
  ks?: number;
  /** The KS D a window this size drawn from the reference scores on average; the level counts the D beyond it. */
  chance_ks?: number;
  jensen_shannon?: number;
  level: DriftLevel;
  /** Reported, not counted in the drift score (an image's width and height: pre-processing resizes every image). */
  informational?: true;
}

export interface MonitorAnswer {
  model: string;
  version: string;
  /** False when the version has no reference profile (or the server runs with monitoring off); `reason` says which and what to do. */
  monitored: boolean;
  reason?: string;
  [field: string]: unknown;
}

/**
 * The version's monitor as clients read it; without one, why not and how to get one. `monitoringOff`: the setting
 * that turned monitoring off, as its reader set it (`monitoring: false`, `--monitoring false`), when it is off.
 * `repository`: the model repository the hint to build a profile names, when it is not the bundled one. `backend`: the
 * version's backend ('ensemble' for an ensemble), when known: `nereid profile` refuses any but ONNX Runtime's, so the
 * hint to build a profile is given for those models only.
 */
export function monitorAnswer(model: string, version: string, monitor: VersionMonitor | undefined, monitoringOff: string | undefined, repository?: string, backend?: string): MonitorAnswer {
  if (!monitor) {
    const reason = monitoringOff
      ? `the server runs with monitoring off (${monitoringOff})`
      : backend !== undefined && backend !== ONNX_RUNTIME_BACKEND
        ? `monitoring by reference profile (OOD flags, drift, feedback) is not available for backend '${backend}': a profile reads a model's intermediate tensors from its ONNX file, so only models of backend '${ONNX_RUNTIME_BACKEND}' have one`
        : `version ${version} has no reference profile (${REFERENCE_PROFILE_FILE}); build one with: ${profileCommand(model, version, repository)}`;
    return { model, version, monitored: false, reason };
  }
  const snapshot = monitor.snapshot();
  const { provenance } = monitor.profile;
  const features: FeatureAnswer[] = (snapshot.evaluation?.features ?? []).map((feature) => ({
    feature: feature.feature,
    psi: rounded(feature.psi)!,
    chance_psi: rounded(feature.chancePsi),
    ks: rounded(feature.ks),
    chance_ks: rounded(feature.chanceKs),
    jensen_shannon: rounded(feature.jensenShannon),
    level: feature.level,
    ...(feature.informational ? { informational: true } : {}),
  }));
  const { window } = snapshot;
  const accuracy = snapshot.accuracy;
  return {
    model,
    version,
    monitored: true,
    // The folder's name only: the profiling machine's paths are not the client's business.
    reference: { created: provenance.created, data: basename(provenance.data.source), digest: provenance.data.digest, examples: provenance.data.examples },
    window: { rows: window.size, capacity: window.capacity, max_age_ms: window.maxAgeMs, oldest: isoTime(window.oldestAt), newest: isoTime(window.newestAt) },
    rows_since_load: snapshot.rows,
    state: snapshot.state,
    since: isoTime(snapshot.since),
    // A score needs a feature evaluated on at least min_rows values (or the small-sample OOD rule): 0 from none would read as "no drift".
    drift_score: scored(snapshot.evaluation) ? rounded(snapshot.evaluation!.score) : undefined,
    // The state moves on evaluations every evaluateEvery rows, with hysteresis: this is the last of them, which need not
    // have moved it (the last move, with its own score, is the last of `transitions`).
    state_evaluation: snapshot.stateEvaluation && {
      at: isoTime(snapshot.stateEvaluation.at),
      drift_score: scored(snapshot.stateEvaluation) ? rounded(snapshot.stateEvaluation.score) : undefined,
      ...(snapshot.stateEvaluation.smallSample ? { small_sample: true } : {}),
    },
    min_rows: monitor.options.state.minSamples,
    thresholds: { warning: monitor.options.state.warningAt, drift: monitor.options.state.driftAt },
    top_features: features.slice(0, monitor.options.topFeatures),
    features,
    ood: snapshot.ood && {
      threshold: rounded(snapshot.ood.threshold),
      share: rounded(snapshot.ood.share),
      expected_share: rounded(snapshot.ood.expectedShare),
      checked_since_load: snapshot.ood.checked,
      flagged_since_load: snapshot.ood.flagged,
    },
    class_counts: snapshot.classCounts,
    accuracy: accuracy && {
      expected: rounded(accuracy.expectedAccuracy),
      predictions: accuracy.predictions,
      labelled: accuracy.labelled,
      realised: rounded(accuracy.realisedAccuracy),
      expected_on_labelled: rounded(accuracy.expectedAccuracyOnLabelled),
      estimate_error: rounded(accuracy.estimateError),
      ...(accuracy.predictions === 0 ? {} : { caution: accuracyCaution(snapshot.state, accuracy.labelled) }),
    },
    transitions: snapshot.transitions.map((transition) => ({
      from: transition.from,
      to: transition.to,
      at: isoTime(transition.at),
      score: rounded(transition.score),
      rows: transition.sampleCount,
    })),
  };
}

/** Enough for a day's labels of a busy model in a few posts; far below the HTTP body limit. */
export const MAX_FEEDBACK_LABELS = 10_000;

const feedbackSchema = z.strictObject({
  labels: z
    .array(
      z.strictObject({
        /** The request's id (its V2 `id` or X-Request-ID); `<id>/<row>` for a row of a batched request. */
        id: z.string().min(1).max(256),
        /** The true class: its label, or its index. */
        label: z.union([z.string().min(1).max(256), z.int().nonnegative()]),
      }),
    )
    .min(1)
    .max(MAX_FEEDBACK_LABELS),
});

export interface FeedbackAnswer {
  accepted: number;
  /** Ids with no prediction in the window (never made, aged out): up to 100 of them, and how many there were. */
  unknown: string[];
  unknown_count: number;
  /** Ids carried by more than one prediction in the window, so not applied (which prediction a label is for cannot be told): up to 100, and how many. */
  ambiguous: string[];
  ambiguous_count: number;
}

/** One loaded version a label may be for: its number and its monitor (none without a reference profile). */
export interface FeedbackTarget {
  version: string;
  monitor: VersionMonitor | undefined;
}

/** A label's class index among a monitor's classes, by name, class-folder spelling or index; undefined when none fits. */
function classIndexOf(monitor: VersionMonitor, label: string | number): number | undefined {
  const names = monitor.classNames;
  return typeof label === 'number' ? (label < names.length ? label : undefined) : classOfName(names)(label);
}

/**
 * Records true labels for earlier predictions. `targets` are the versions a label may be for, the one named (or the
 * served one) first: one for version-level feedback; every loaded version for model-level feedback, each id applied to
 * the version whose window holds its prediction.
 */
export function applyFeedback(model: string, targets: readonly FeedbackTarget[], body: unknown): FeedbackAnswer {
  const monitors = targets.flatMap(({ monitor }) => (monitor?.profile.calibration ? [monitor] : []));
  if (monitors.length === 0) {
    const { version, monitor } = targets[0];
    const why = monitor ? 'its reference profile was built without labels (give nereid profile class folders)' : 'it has no reference profile';
    throw new NereidError('FAILED_PRECONDITION', `model '${model}' version ${version} cannot take feedback: ${why}`);
  }
  const parsed = feedbackSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalidArgument(
      `feedback must be {"labels": [{"id": "<request id>", "label": "<class>" | <index>}, …]} with 1 to ${MAX_FEEDBACK_LABELS} labels; ${issue.path.join('.') || 'the body'}: ${issue.message}`,
    );
  }
  const refuse = (index: number, label: string | number, monitor: VersionMonitor) => {
    const names = monitor.classNames;
    const known = names.length <= 20 ? `: ${names.join(', ')}` : '';
    const which = monitors.length > 1 ? ` version ${targets.find((target) => target.monitor === monitor)?.version}'s` : "'s";
    return invalidArgument(`labels.${index}.label: '${label}' is not one of the model${which} ${names.length} classes (a label, or an index 0 to ${names.length - 1})${known}`);
  };
  parsed.data.labels.forEach(({ label }, index) => {
    if (classIndexOf(monitors[0], label) === undefined) throw refuse(index, label, monitors[0]);
  });
  const seen = new Set<string>();
  const repeated = parsed.data.labels.find(({ id }) => {
    if (seen.has(id)) return true;
    seen.add(id);
    return false;
  });
  if (repeated) throw invalidArgument(`feedback labels request id '${repeated.id}' more than once: send one label per prediction`);
  const unknown: string[] = [];
  const ambiguous: string[] = [];
  // Every label's version and class are settled before any is applied, so a refusal leaves the windows as they were.
  const applied: Array<{ id: string; monitor: VersionMonitor; cls: number }> = [];
  parsed.data.labels.forEach(({ id, label }, index) => {
    const holding = monitors.map((monitor) => ({ monitor, count: monitor.predictionsCarrying(id) })).filter(({ count }) => count > 0);
    const count = holding.reduce((sum, entry) => sum + entry.count, 0);
    if (count === 0) unknown.push(id);
    else if (count > 1) ambiguous.push(id);
    else {
      const { monitor } = holding[0];
      const cls = classIndexOf(monitor, label);
      if (cls === undefined) throw refuse(index, label, monitor);
      applied.push({ id, monitor, cls });
    }
  });
  let accepted = 0;
  for (const { id, monitor, cls } of applied) if (monitor.feedback(id, cls) === 'applied') accepted += 1;
  return { accepted, unknown: unknown.slice(0, 100), unknown_count: unknown.length, ambiguous: ambiguous.slice(0, 100), ambiguous_count: ambiguous.length };
}
