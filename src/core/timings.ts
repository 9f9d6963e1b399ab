/**
 * Where a request's time goes, phase by phase, as Triton's statistics name the phases; measured
 * by the scheduler and the model version, read by statistics, metrics, tracing and batch jobs.
 */

/** What one execution of a batch cost. */
export interface ExecutionTimings {
  computeInputNs: number;
  computeInferNs: number;
  computeOutputNs: number;
  /** Core-seconds of the models the execution called (a handler's context.infer), counted in its cost beside its own. */
  calledCoreSeconds?: number;
  /**
   * Of computeInferNs, the time the execution waited on the models it called (a handler's context.infer): part of
   * its compute_infer, as Triton counts a BLS model's whole execute(), but no core of its own, so not of its cost.
   */
  awaitedNs?: number;
}

/** One step of an ensemble's request: its model, when it was sent and how long its answer took. */
export interface StepTiming {
  /** Position of the step in the ensemble's config. */
  step: number;
  model: string;
  /** Wall-clock time it was sent, milliseconds since the epoch (fractional). */
  startedAt: number;
  totalNs: number;
  /** The code the step failed with, when it failed (its span in the trace says so). */
  errorCode?: string;
}

/** One request's phases; the compute phases are those of the execution it was part of. */
export interface RequestTimings extends ExecutionTimings {
  /** Decoding and transforming inputs (image pre-processing) before queueing. */
  preprocessNs?: number;
  /** Activation of outputs after the model. */
  postprocessNs?: number;
  queueNs: number;
  /** Rows of the execution the request was part of: its share of the compute phases is its own rows over these. */
  batchRows?: number;
  /**
   * Its share of the core-seconds of the executions it was part of (compute_infer × the instance's
   * threads × its rows ÷ the batch's rows); an ensemble's request: its steps' shares, summed.
   */
  coreSeconds?: number;
  /** An ensemble's request: its steps, which ran as a graph (their phases, summed above, overlapped). */
  steps?: StepTiming[];
}

/** The measured durations of RequestTimings (and batchRows), every key but the ensemble's steps. */
export type TimingKey = Exclude<keyof RequestTimings, 'steps'>;

/** A request's share of the executions it was part of: compute time × its rows ÷ the batch's rows. */
export function computeShareNs(timings: RequestTimings, rows: number): number {
  const execution = timings.computeInputNs + timings.computeInferNs + timings.computeOutputNs;
  return timings.batchRows ? (execution * Math.max(1, rows)) / timings.batchRows : execution;
}
