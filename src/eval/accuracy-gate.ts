/**
 * The accuracy gate of `nereid eval --gate "accuracy_drop<=0.005,agreement>=0.99"`: clauses that
 * must all hold for a candidate version to pass, so that CI can refuse a quantized model that
 * agrees too little with the original. A clause naming a figure the run did not produce (accuracy
 * without labels) fails with the reason, rather than passing unchecked.
 */
import { closestName } from '../core/edit-distance.js';

/** Figures a gate may name, with what each means. */
export const GATE_METRICS = {
  accuracy: 'top-1 accuracy of the candidate, or for text its share of lines read exactly (needs labels)',
  accuracy_drop: "reference's accuracy minus the candidate's (needs labels)",
  top_k_accuracy: 'top-k accuracy of the candidate (needs class labels)',
  character_accuracy: "1 - characters edited / characters expected, of the candidate's text (needs text labels)",
  agreement: "share of examples whose top-1 class (or text line) is the reference's; for maps, the mean IoU of the regions above the threshold",
  character_agreement: "1 - characters edited / characters of the reference's text",
  ece: 'expected calibration error of the candidate (needs class labels)',
  ece_increase: "candidate's calibration error minus the reference's (needs class labels)",
  max_abs_delta: 'largest absolute difference of any output value from the reference',
} as const;

export type GateMetric = keyof typeof GATE_METRICS;

/** Figures that compare the candidate with the reference: a run of one version measures none of them. */
export const COMPARISON_METRICS: readonly GateMetric[] = ['accuracy_drop', 'agreement', 'character_agreement', 'ece_increase', 'max_abs_delta'];
/** Figures scored against labels: data without labels measures none of them. */
export const LABEL_METRICS: readonly GateMetric[] = ['accuracy', 'accuracy_drop', 'top_k_accuracy', 'character_accuracy', 'ece', 'ece_increase'];
type Comparison = '<=' | '>=' | '<' | '>';

export interface GateClause {
  metric: GateMetric;
  comparison: Comparison;
  bound: number;
  /** As written, for messages. */
  text: string;
}

const CLAUSE = /^\s*([a-z_]+)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*(%?)\s*$/i;

/** Figures that are shares, from 0 to 1 (a bound of 99 is 99 %, written 0.99 or 99%). */
export const SHARE_METRICS: readonly GateMetric[] = ['accuracy', 'top_k_accuracy', 'character_accuracy', 'agreement', 'character_agreement', 'ece'];
/** Figures that are differences of two shares, from -1 to 1 (half a point is 0.005, or 0.5%). */
export const SHARE_DIFFERENCE_METRICS: readonly GateMetric[] = ['accuracy_drop', 'ece_increase'];
/**
 * A difference bound written as a plain number above this is refused as likely meant in points (0.5 for half a
 * point lets a 50-point drop pass); written with %, any bound up to 100% is taken as meant.
 */
export const MAX_PLAIN_DIFFERENCE_BOUND = 0.2;

/** A number as a bound is written back in a message: without the float's last digits (0.5 / 100 is 0.005). */
const written = (value: number) => String(Number(value.toPrecision(6)));

/** The clause's bound as a number, refused when it is outside what its metric can be or likely written in percent without %. */
function boundOf(metric: GateMetric, number: number, percent: boolean, text: string): number {
  const where = `--gate clause '${text}'`;
  const isShare = SHARE_METRICS.includes(metric);
  if (!isShare && !SHARE_DIFFERENCE_METRICS.includes(metric)) {
    if (percent) throw new Error(`${where}: ${metric} is not a share; give its bound as a plain number`);
    return number;
  }
  const bound = percent ? number / 100 : number;
  // A plain number that reads as percent: what it likely meant, both ways of writing it.
  const meant = `did you mean ${written(number / 100)} (or ${written(number)}%)?`;
  if (isShare) {
    if (bound >= 0 && bound <= 1) return bound;
    throw new Error(`${where}: ${metric} is a share from 0 to 1 (0 % to 100 %)${!percent && number > 1 && number <= 100 ? `: ${meant}` : ''}`);
  }
  if (Math.abs(bound) > 1) throw new Error(`${where}: ${metric} is a difference of shares, from -1 to 1${!percent && Math.abs(number) <= 100 ? `: ${meant}` : ''}`);
  if (!percent && Math.abs(bound) > MAX_PLAIN_DIFFERENCE_BOUND) {
    throw new Error(`${where}: ${metric} is a difference of shares (0.005 is half a point), so ${written(number)} is ${written(number * 100)} points: ${meant} Write ${written(number * 100)}% if you mean ${written(number * 100)} points`);
  }
  return bound;
}

export function parseGate(spec: string): GateClause[] {
  const clauses = spec.split(',').filter((part) => part.trim() !== '');
  if (clauses.length === 0) throw new Error(`--gate '${spec}' has no clause; write e.g. "accuracy_drop<=0.005,agreement>=0.99"`);
  return clauses.map((text) => {
    const match = CLAUSE.exec(text);
    if (!match) throw new Error(`--gate clause '${text.trim()}' is not <metric><op><number> with op one of <=, >=, <, > (a share may be written in percent: 99%)`);
    const metric = match[1].toLowerCase();
    if (!(metric in GATE_METRICS)) {
      const meant = closestName(metric, Object.keys(GATE_METRICS));
      throw new Error(`--gate clause '${text.trim()}': unknown metric '${metric}'${meant ? ` (did you mean '${meant}'?)` : ''}; known: ${Object.keys(GATE_METRICS).join(', ')}`);
    }
    const bound = boundOf(metric as GateMetric, Number(match[3]), match[4] === '%', text.trim());
    return { metric: metric as GateMetric, comparison: match[2] as Comparison, bound, text: text.trim() };
  });
}

/**
 * Examples a gate is judged on at least, unless the user lowers it: on fewer, one example moves a
 * share by more than 3 %, and a version that disagrees on one input in twenty passes a 0.99 gate
 * by chance more often than not.
 */
export const MIN_GATE_EXAMPLES = 30;

export interface GateVerdict {
  passed: boolean;
  /** One line per clause that failed: the figure measured against the bound, or why it is missing. */
  failures: string[];
  /** The figure each clause judged (by the clause as written), measured ones only: what a CI log keeps. */
  measured: Record<string, number>;
}

/** How many examples the figures come from, and the fewest the gate accepts. */
export interface GateSample {
  examples: number;
  minimum: number;
}

/** Judges measured figures (absent: not measured, for the reason `unmeasured` gives if it does) against the clauses. */
export function judgeGate(
  clauses: readonly GateClause[],
  figures: Partial<Record<GateMetric, number>>,
  unmeasured: Partial<Record<GateMetric, string>> = {},
  sample?: GateSample,
): GateVerdict {
  const failures: string[] = [];
  const measured: Record<string, number> = {};
  if (sample && sample.examples < sample.minimum) {
    failures.push(`judged on ${sample.examples} example(s), fewer than the ${sample.minimum} a gate needs for its figures to mean anything; give more data (or lower the minimum knowingly)`);
  }
  for (const clause of clauses) {
    const raw = figures[clause.metric];
    if (raw === undefined || Number.isNaN(raw)) {
      failures.push(`${clause.text}: ${clause.metric} was not measured (${unmeasured[clause.metric] ?? GATE_METRICS[clause.metric]})`);
      continue;
    }
    // A difference of two shares carries the floats' last bits (186/200 - 185/200 is
    // 0.0050000000000000044): rounded to nine significant digits, a figure at a bound is at it,
    // so a gate never fails at its own boundary.
    const value = Number(raw.toPrecision(9));
    measured[clause.text] = value;
    const holds =
      clause.comparison === '<=' ? value <= clause.bound : clause.comparison === '>=' ? value >= clause.bound : clause.comparison === '<' ? value < clause.bound : value > clause.bound;
    // Four significant digits: a bound is written by hand, the float's last digits say nothing.
    if (!holds) failures.push(`${clause.text}: measured ${clause.metric} = ${Number(value.toPrecision(4))}`);
  }
  return { passed: failures.length === 0, failures, measured };
}
