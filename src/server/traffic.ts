/**
 * A model's traffic policy (config `traffic:`): which version answers a request that names none —
 * drawn by weight (a canary), sticky by a request parameter when the config names one — and a
 * shadow version that gets a copy of those requests after the answer has gone, bounded so that it
 * never queues up, with its answers compared with the primary's.
 */
import { createHash } from 'node:crypto';
import type { CompletedModelConfig } from '../config/model-config.js';
import type { InferenceRequest, InferenceResponse, InferOutput } from '../core/inference.js';
import type { ModelVersion } from '../model/model-version.js';

type Traffic = NonNullable<CompletedModelConfig['traffic']>;

/** A number in [0, 1) from a sticky key: the same key, the same version, as long as the weights stay. */
function unitHash(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) / 2 ** 32;
}

/**
 * The version to answer with, among the ready ones (`versions`), by the policy's weights; undefined
 * when the policy has no weights or none of its versions is ready (the caller then takes the
 * highest, as without a policy).
 */
export function chooseVersion(traffic: Traffic | undefined, versions: readonly ModelVersion[], request: Pick<InferenceRequest, 'parameters'>, draw = Math.random): ModelVersion | undefined {
  const weights = traffic?.weights;
  if (!weights) return undefined;
  const weighted = versions.filter((version) => version.state === 'READY' && (weights[version.version] ?? 0) > 0).sort((a, b) => Number(a.version) - Number(b.version));
  const total = weighted.reduce((sum, version) => sum + weights[version.version], 0);
  if (total <= 0) return undefined;
  const sticky = traffic.sticky_parameter ? request.parameters?.[traffic.sticky_parameter] : undefined;
  let point = (sticky === undefined ? draw() : unitHash(String(sticky))) * total;
  for (const version of weighted) {
    point -= weights[version.version];
    if (point < 0) return version;
  }
  return weighted[weighted.length - 1];
}

/** Per output: top-1 class of each row (for outputs of 2 or more values a row), and every value, for comparison. */
function rowsOf(output: InferOutput, batched: boolean): { top: number[]; values: ArrayLike<number> } | undefined {
  if (output.datatype === 'BYTES') return undefined;
  const values = output.data as ArrayLike<number>;
  const rows = batched ? (output.shape[0] ?? 1) : 1;
  const width = rows > 0 ? values.length / rows : 0;
  const top: number[] = [];
  if (width >= 2) {
    for (let row = 0; row < rows; row++) {
      let best = 0;
      for (let index = 1; index < width; index++) if (Number(values[row * width + index]) > Number(values[row * width + best])) best = index;
      top.push(best);
    }
  }
  return { top, values };
}

export interface ShadowSummary {
  primary_version: string;
  shadow_version: string;
  compared: number;
  /** Not copied: the shadow already had max_in_flight requests running. */
  skipped: number;
  /** Copies the shadow failed (its error does not reach the client). */
  failed: number;
  /** Rows whose top-1 class agreed, of those compared (outputs with two or more values per row). */
  rows: number;
  top1_agreement?: number;
  top1_flips: number;
  /** Mean and largest absolute difference over every compared value. */
  mean_abs_delta?: number;
  max_abs_delta?: number;
  /** Mean answer time, ms, of the primary and of the shadow. */
  primary_mean_ms?: number;
  shadow_mean_ms?: number;
}

/** One model's shadow: copies sent, answers compared. */
export class ShadowComparison {
  private inFlight = 0;
  private compared = 0;
  private skipped = 0;
  private failed = 0;
  private rows = 0;
  private flips = 0;
  private values = 0;
  private deltaSum = 0;
  private deltaMax = 0;
  private primaryMs = 0;
  private shadowMs = 0;

  constructor(
    readonly primaryVersion: string,
    readonly shadowVersion: string,
  ) {}

  /**
   * Sends a copy of `request` to the shadow after the primary answered, unless `maxInFlight` copies
   * are running already. Never throws and never delays the caller: the comparison happens later.
   */
  copy(shadow: ModelVersion, request: InferenceRequest, answer: InferenceResponse, primaryMs: number, maxInFlight: number, onError: (error: unknown) => void): void {
    if (this.inFlight >= maxInFlight) {
      this.skipped += 1;
      return;
    }
    this.inFlight += 1;
    const started = performance.now();
    shadow
      .infer({ ...request, version: shadow.version })
      .then(
        (shadowAnswer) => this.compare(answer, shadowAnswer, shadow.batched, primaryMs, performance.now() - started),
        (error: unknown) => {
          this.failed += 1;
          onError(error);
        },
      )
      .finally(() => {
        this.inFlight -= 1;
      });
  }

  private compare(primary: InferenceResponse, shadow: InferenceResponse, batched: boolean, primaryMs: number, shadowMs: number): void {
    this.compared += 1;
    this.primaryMs += primaryMs;
    this.shadowMs += shadowMs;
    for (const output of primary.outputs) {
      const mine = rowsOf(output, batched);
      const theirs = shadow.outputs.find((candidate) => candidate.name === output.name);
      const other = theirs && rowsOf(theirs, batched);
      if (!mine || !other || mine.values.length !== other.values.length) continue;
      mine.top.forEach((top, row) => {
        this.rows += 1;
        if (top !== other.top[row]) this.flips += 1;
      });
      for (let index = 0; index < mine.values.length; index++) {
        const delta = Math.abs(Number(mine.values[index]) - Number(other.values[index]));
        this.deltaSum += delta;
        this.deltaMax = Math.max(this.deltaMax, delta);
      }
      this.values += mine.values.length;
    }
  }

  summary(): ShadowSummary {
    const summary: ShadowSummary = {
      primary_version: this.primaryVersion,
      shadow_version: this.shadowVersion,
      compared: this.compared,
      skipped: this.skipped,
      failed: this.failed,
      rows: this.rows,
      top1_flips: this.flips,
    };
    if (this.rows > 0) summary.top1_agreement = 1 - this.flips / this.rows;
    if (this.values > 0) {
      summary.mean_abs_delta = this.deltaSum / this.values;
      summary.max_abs_delta = this.deltaMax;
    }
    if (this.compared > 0) {
      summary.primary_mean_ms = this.primaryMs / this.compared;
      summary.shadow_mean_ms = this.shadowMs / this.compared;
    }
    return summary;
  }
}
