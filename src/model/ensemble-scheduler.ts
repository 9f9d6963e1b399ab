/**
 * The scheduler of an ensemble version: it runs the ensemble's graph for each request. A step
 * starts the moment the tensors it reads exist, so independent steps run at once, and each goes
 * to its model as any request would (through the server's inference path), where it queues and
 * batches with that model's other traffic. Only the steps the requested outputs need are run.
 * The request's priority goes to every step, and its timeout as what is left of it when the step
 * is sent, as Triton passes both to an ensemble's composing models.
 */
import { asNereidError, NereidError } from '../core/errors.js';
import type { InferenceRequest, InferenceResponse, Parameters, RequestContext } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { RequestTimings, StepTiming } from '../core/timings.js';
import type { Admission } from '../scheduler/priority-queue.js';
import type { ScheduledRequest, ScheduledResult, Scheduler } from '../scheduler/scheduler.js';
import { stepDependencies, type EnsemblePlan, type EnsembleStep } from './ensemble-plan.js';

/** Sends one step's request to its model: the server's own inference path, so the step is served as any client's request. */
export type StepCall = (request: InferenceRequest, context: RequestContext) => Promise<InferenceResponse>;

/**
 * The version that would run a step now, held for one ensemble request from the moment it is accepted: that
 * version's unload waits for the request (as it waits for its own), so a step unloaded or replaced meanwhile
 * still answers it, as Triton lets an accepted request finish. `call` runs the step's request on it.
 */
export interface HeldStep {
  call: StepCall;
  release(): void;
}

/** Holds a step's version (see HeldStep); undefined when none can be held now, the step then sent through StepCall when it starts. */
export type StepHolder = (step: EnsembleStep) => HeldStep | undefined;

/** The steps needed for `outputs`, and which outputs each must return (those a needed step or the answer reads). */
function neededSteps(plan: EnsemblePlan, outputs: readonly string[]): Map<EnsembleStep, string[]> {
  const wanted = new Set(outputs);
  const needed = new Set<EnsembleStep>();
  const pending = outputs.map((tensor) => plan.producers.get(tensor)).filter((step) => step !== undefined);
  while (pending.length > 0) {
    const step = pending.pop()!;
    if (needed.has(step)) continue;
    needed.add(step);
    for (const tensor of step.inputs.values()) wanted.add(tensor);
    pending.push(...stepDependencies(plan, step));
  }
  const returned = new Map<EnsembleStep, string[]>();
  for (const step of plan.steps) {
    if (!needed.has(step)) continue;
    returned.set(step, [...step.outputs].filter(([, tensor]) => wanted.has(tensor)).map(([output]) => output));
  }
  return returned;
}

/**
 * The ensemble's timings: its steps' queue and compute times summed, each as its step's model counts it for the
 * request (a step that ran in a batch counts the batch's whole execution), as Triton sums an ensemble's composing
 * models' durations; its core-seconds (its cost) are the sum of the steps' shares of their executions.
 */
function summedTimings(parts: readonly (RequestTimings | undefined)[], steps: StepTiming[]): RequestTimings {
  const sum: RequestTimings = { queueNs: 0, computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0, coreSeconds: 0, steps };
  for (const timings of parts) {
    if (!timings) continue;
    sum.queueNs += timings.queueNs;
    sum.coreSeconds! += timings.coreSeconds ?? 0;
    sum.computeInputNs += timings.computeInputNs;
    sum.computeInferNs += timings.computeInferNs;
    sum.computeOutputNs += timings.computeOutputNs;
    if (timings.preprocessNs !== undefined) sum.preprocessNs = (sum.preprocessNs ?? 0) + timings.preprocessNs;
    if (timings.postprocessNs !== undefined) sum.postprocessNs = (sum.postprocessNs ?? 0) + timings.postprocessNs;
  }
  return sum;
}

/** A step's answer's out-of-distribution verdict (its response parameters named ood…), or undefined when it judged none. */
function verdictOf(parameters: Parameters | undefined): Parameters | undefined {
  if (parameters?.ood === undefined) return undefined;
  return Object.fromEntries(Object.entries(parameters).filter(([key]) => key.startsWith('ood')));
}

/**
 * The verdict an ensemble's answer carries, as a client of its monitored step would get it: the first step (by its
 * place in the config) that flagged its rows, else the first that judged them, with `ood_model` naming that step's
 * model (an inner ensemble's answer names its own step already). Only the answer: the step's monitor counted the rows.
 */
function stepsVerdict(verdicts: { step: number; model: string; verdict: Parameters }[]): Parameters | undefined {
  if (verdicts.length === 0) return undefined;
  const ordered = [...verdicts].sort((a, b) => a.step - b.step);
  const chosen = ordered.find((entry) => entry.verdict.ood === true) ?? ordered[0];
  return { ood_model: chosen.model, ...chosen.verdict };
}

export class EnsembleScheduler implements Scheduler {
  readonly queued = 0;
  readonly queuedBytes = 0;
  readonly liveSequences = 0;
  private running = 0;
  private stopping = false;
  private whenIdle?: () => void;

  constructor(
    private readonly plan: EnsemblePlan,
    private readonly callStep: StepCall,
    /** Requests it holds at once before a client should expect refusals: the steps' queues decide, so the server's queue size. */
    readonly admits: number,
    private readonly holdStep?: StepHolder,
    /** The ensemble's outputs as its config declares them, the batch dimension written out (-1) when it batches. */
    private readonly declared?: ReadonlyMap<string, { datatype: string; dims: readonly number[] }>,
  ) {}

  /** An output that does not fit the ensemble's config fails the request, as Triton checks an ensemble's outputs. */
  private checkOutput(name: string, tensor: Tensor): NereidError | undefined {
    const declared = this.declared?.get(name);
    if (!declared) return undefined;
    const fits = tensor.datatype === declared.datatype && tensor.shape.length === declared.dims.length && declared.dims.every((dim, index) => dim === -1 || tensor.shape[index] === dim);
    if (fits) return undefined;
    return new NereidError(
      'INTERNAL',
      `ensemble '${this.plan.name}': its steps produced output '${name}' as ${tensor.datatype} [${tensor.shape.join(',')}], but its config declares ${declared.datatype} [${declared.dims.join(',')}]`,
    );
  }

  /**
   * Nothing a step would refuse for every request is left to refuse here: a priority or timeout that is not a
   * non-negative integer is refused with the request's parameters, and any priority past a step's levels runs
   * at its default level (as Triton runs it). The steps' queues judge room when each step arrives.
   */
  validate(_request: Admission): void {}

  admit(_request: Admission): void {
    if (this.stopping) throw new NereidError('UNAVAILABLE', `ensemble '${this.plan.name}' is stopping`);
  }

  async schedule(request: ScheduledRequest): Promise<ScheduledResult> {
    this.admit(request);
    this.running++;
    try {
      return await this.run(request);
    } finally {
      if (--this.running === 0) this.whenIdle?.();
    }
  }

  /**
   * The parameters a step is sent with: the request's own, as Triton's ensemble scheduler passes them (a stateful step
   * needs its sequence id and START/END flags, a handler step its custom parameters), with what is left of the
   * timeout for `timeout` (undefined: none is left).
   */
  private stepParameters(request: ScheduledRequest, started: number): Parameters | undefined {
    const { priority: _priority, timeout: _timeout, ...carried } = request.parameters ?? {};
    const parameters: Parameters = carried;
    if (request.priority) parameters.priority = request.priority;
    if (request.timeoutMicroseconds) {
      const left = request.timeoutMicroseconds - Math.ceil((performance.now() - started) * 1000);
      // 0 would mean "no timeout" to the step: a budget spent is a failure here, not a step without limit.
      if (left < 1) return undefined;
      parameters.timeout = left;
    }
    return parameters;
  }

  private run(request: ScheduledRequest): Promise<ScheduledResult> {
    const { plan } = this;
    const started = performance.now();
    const tensors = new Map<string, Tensor>(Object.entries(request.inputs));
    const steps = neededSteps(plan, request.outputNames);
    const waiting = new Map([...steps.keys()].map((step) => [step, new Set([...step.inputs.values()].filter((tensor) => plan.producers.has(tensor)))]));
    const timings: (RequestTimings | undefined)[] = [];
    const stepTimings: StepTiming[] = [];
    const verdicts: { step: number; model: string; verdict: Parameters }[] = [];
    const context: RequestContext = {
      signal: request.signal,
      deadline: request.deadline,
      requestId: request.context?.requestId,
      traceparent: request.context?.traceparent,
      patient: request.context?.patient,
    };
    // Taken before anything is awaited, so an unload that comes after the request was accepted waits for it.
    const held = new Map<EnsembleStep, HeldStep>();
    if (this.holdStep) {
      for (const step of steps.keys()) {
        const hold = this.holdStep(step);
        if (hold) held.set(step, hold);
      }
    }
    const letGo = (step: EnsembleStep) => {
      held.get(step)?.release();
      held.delete(step);
    };
    return new Promise<ScheduledResult>((resolve, reject) => {
      let failed = false;
      let left = steps.size;
      const finish = () => {
        const outputs: Record<string, Tensor> = {};
        for (const name of request.outputNames) {
          outputs[name] = tensors.get(name)!;
          const misfit = this.checkOutput(name, outputs[name]);
          if (misfit) return reject(misfit);
        }
        const parameters = stepsVerdict(verdicts);
        resolve({ outputs, timings: summedTimings(timings, stepTimings.sort((a, b) => a.step - b.step)), ...(parameters && { parameters }) });
      };
      const fail = (step: EnsembleStep, cause: NereidError) => {
        if (failed) return;
        failed = true;
        // Steps that will not start now let their versions go; those running let theirs go when they answer.
        for (const unstarted of waiting.keys()) letGo(unstarted);
        // The step's code stands (a step's bad input is the client's, a full queue is a retry), with the step named.
        const spent = summedTimings(timings, stepTimings.sort((a, b) => a.step - b.step));
        reject(new NereidError(cause.code, `ensemble '${plan.name}' ${step.label}: ${cause.message}`, { cause, retryAfterMs: cause.retryAfterMs, timings: spent }));
      };
      const start = (step: EnsembleStep) => {
        waiting.delete(step);
        const parameters = this.stepParameters(request, started);
        if (!parameters) {
          letGo(step);
          const spent = Math.round((performance.now() - started) * 1000);
          const expired = new NereidError('UNAVAILABLE', `the request's timeout of ${request.timeoutMicroseconds} us ran out (${spent} us spent in the ensemble before this step) before the step was sent`, { retryAfterMs: 1000 });
          return fail(step, expired);
        }
        const stepRequest: InferenceRequest = {
          model: step.model,
          version: step.version,
          id: request.context?.requestId,
          ...(Object.keys(parameters).length > 0 && { parameters }),
          // An optional ensemble input the request left out stays out: the step's model says whether it may.
          inputs: [...step.inputs].filter(([, tensor]) => tensors.has(tensor)).map(([input, tensor]) => ({ name: input, ...tensors.get(tensor)! })),
          outputs: steps.get(step)!.map((name) => ({ name })),
        };
        const sent = performance.now();
        const timing = (): StepTiming => ({ step: step.index, model: step.model, startedAt: performance.timeOrigin + sent, totalNs: (performance.now() - sent) * 1e6 });
        const hold = held.get(step);
        (hold ? hold.call(stepRequest, context) : this.callStep(stepRequest, context))
          .finally(() => letGo(step))
          .then((response) => {
            if (failed) return;
            timings.push(response.timings);
            stepTimings.push(timing());
            const verdict = verdictOf(response.parameters);
            if (verdict) verdicts.push({ step: step.index, model: step.model, verdict });
            const answered = new Map(response.outputs.map((output) => [output.name, output]));
            for (const name of stepRequest.outputs!.map((output) => output.name)) {
              const output = answered.get(name);
              if (!output) throw new NereidError('INTERNAL', `model '${step.model}' answered without its output '${name}'`);
              tensors.set(step.outputs.get(name)!, { datatype: output.datatype, shape: output.shape, data: output.data });
            }
            if (--left === 0) return finish();
            for (const [next, missing] of waiting) {
              for (const tensor of step.outputs.values()) missing.delete(tensor);
              if (missing.size === 0) start(next);
            }
          })
          .catch((error: unknown) => {
            const failure = asNereidError(error);
            if (!failed) {
              // A step that answered without an output it owed was timed as answered; it failed all the same.
              const timed = stepTimings.find((entry) => entry.step === step.index) ?? stepTimings[stepTimings.push(timing()) - 1];
              timed.errorCode = failure.code;
            }
            fail(step, failure);
          });
      };
      if (left === 0) return finish();
      for (const [step, missing] of [...waiting]) if (missing.size === 0) start(step);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.running > 0) await new Promise<void>((resolve) => (this.whenIdle = resolve));
  }
}
