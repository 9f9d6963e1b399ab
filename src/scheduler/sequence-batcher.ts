/**
 * Triton's sequence batcher for stateful models. Every live sequence (a correlation id between its
 * START and END requests) holds a slot; the batcher runs each sequence's requests strictly in
 * order, one at a time, and joins requests of different sequences into one execution. It fills
 * the model's control inputs (START, END, READY, CORRID) per row, and its implicit state: the
 * state output of a sequence's request becomes the state input of its next one, kept here between
 * requests and never returned to clients.
 *
 * Strategies, as Triton's: `direct` gives each sequence a fixed slot (an instance and a batch row)
 * and runs an instance's ready slots together, rows without a request padded with READY false;
 * `oldest` keeps up to max_candidate_sequences live and runs the oldest ready requests together on
 * whichever instance is free. A START beyond the slots waits (as Triton's backlog) until a live
 * sequence ends or is released for being idle longer than max_sequence_idle_microseconds.
 */
import type { Logger } from 'pino';
import type { BackendInstance, RunOutputs } from '../backends/backend.js';
import { allocateTypedArray, PackedBytes, type Datatype } from '../core/datatype.js';
import { asNereidError, cancelled, invalidArgument, NereidError, overloaded } from '../core/errors.js';
import type { ExecutionObserver } from '../core/inference-observer.js';
import type { Tensor } from '../core/tensor.js';
import type { ExecutionTimings } from '../core/timings.js';
import { coreSeconds } from '../observability/cost.js';
import { bytesOf, concatRows, sameRowShape, sliceRows } from './batch-tensors.js';
import { serverQueueCap, type Admission } from './priority-queue.js';
import { unloadingError, type ScheduledRequest, type ScheduledResult, type Scheduler } from './scheduler.js';
import { WaitingRequest, type WaitingQueue } from './waiting-request.js';
import { MAX_CORRELATION_ID } from '../core/inference.js';
import { describeSequence, sequenceKey, type SequenceFlags } from './sequence-control.js';

/** The largest id each integer CORRID datatype holds exactly (UINT64: every id). */
const LARGEST_CORRID: Partial<Record<Datatype, bigint>> = { INT32: 2n ** 31n - 1n, UINT32: 2n ** 32n - 1n, INT64: 2n ** 63n - 1n };

export type SequenceControlKind = 'START' | 'END' | 'READY' | 'CORRID';

/** One control input: the batcher gives it `values[0]` for false and `values[1]` for true (CORRID: the id). */
export interface SequenceControlInput {
  name: string;
  kind: SequenceControlKind;
  datatype: Datatype;
  values: readonly [number | boolean, number | boolean];
}

/** One implicit state: `output` of a request is `input` of the sequence's next one; `initial` on START. */
export interface SequenceState {
  input: string;
  output: string;
  /** Per sequence: without the batch dimension when the model batches. */
  initial: Tensor;
}

export interface SequencePolicy {
  strategy: 'direct' | 'oldest';
  /** Rows one execution may hold; 0: the model has no batch dimension, one sequence per execution. */
  maxBatchSize: number;
  /** Oldest: live sequences at most; absent: max_batch_size × the instances serving (direct: always one per slot, as many). */
  maxCandidateSequences?: number;
  preferredBatchSizes: readonly number[];
  /** How long an execution that could hold more rows waits for them. */
  maxQueueDelayMicroseconds: number;
  maxSequenceIdleMicroseconds: number;
  controls: readonly SequenceControlInput[];
  states: readonly SequenceState[];
  /** Requests that may wait, over all sequences, before more are refused (503); 0: no bound. */
  maxQueuedRequests: number;
  /** How the refusal names the server's setting behind maxQueuedRequests (PriorityQueueOptions.maxQueuedRequestsSetting). */
  maxQueuedRequestsSetting?: string;
}

/** A request waiting in its sequence. */
class Pending extends WaitingRequest {
  constructor(
    batcher: SequenceBatcher,
    readonly sequence: Sequence,
    request: ScheduledRequest,
    readonly flags: SequenceFlags,
    readonly enqueuedAt: number,
    readonly bytes: number,
    resolve: (result: ScheduledResult) => void,
    reject: (error: Error) => void,
  ) {
    super(batcher, request, resolve, reject);
  }
}

interface Sequence {
  key: string;
  id: bigint | string;
  /** Direct: the slot it holds (instance × rows + row); -1 while it waits for one. Oldest: 0 when live. */
  slot: number;
  waiting: Pending[];
  running: boolean;
  /** By state input name, per sequence (no batch dimension); absent before its first request ran. */
  state?: Record<string, Tensor>;
  lastUsed: number;
}

const now = () => performance.now();
const msToNs = (ms: number) => ms * 1e6;

/** A tensor of `shape` holding `value` everywhere (a string's bytes for BYTES). */
function filled(datatype: Datatype, shape: readonly number[], values: readonly (number | boolean | string | bigint)[]): Tensor {
  if (datatype === 'BYTES') return { datatype, shape: [...shape], data: values.map((value) => Buffer.from(String(value))) };
  const data = allocateTypedArray(datatype, values.length);
  const big = datatype === 'INT64' || datatype === 'UINT64';
  values.forEach((value, index) => {
    (data as unknown as (number | bigint)[])[index] = big ? BigInt(typeof value === 'boolean' ? Number(value) : value) : Number(value);
  });
  return { datatype, shape: [...shape], data };
}

function zeroRow(tensor: Tensor): Tensor {
  const shape = [1, ...tensor.shape.slice(1)];
  const elements = shape.reduce((a, b) => a * b, 1);
  if (tensor.datatype === 'BYTES') return { datatype: 'BYTES', shape, data: Array.from({ length: elements }, () => Buffer.alloc(0)) };
  return { datatype: tensor.datatype, shape, data: allocateTypedArray(tensor.datatype, elements) };
}

/** A copy that owns its buffer: a row sliced from a batch's output would otherwise keep the whole batch alive. */
function owned(tensor: Tensor, shape: readonly number[]): Tensor {
  const data = Array.isArray(tensor.data) ? [...tensor.data] : tensor.data instanceof PackedBytes ? tensor.data.copy() : tensor.data.slice();
  return { datatype: tensor.datatype, shape: [...shape], data } as Tensor;
}

export class SequenceBatcher implements Scheduler, WaitingQueue {
  private readonly sequences = new Map<string, Sequence>();
  /** Sequences waiting for a slot, oldest first. */
  private readonly backlog: Sequence[] = [];
  /** Direct: which sequence holds each slot. */
  private readonly slotHolders: (Sequence | undefined)[];
  private readonly rowsPerInstance: number;
  /** By position, which fixes a direct slot's instance; a position whose instance was taken out is empty until one is added. */
  private readonly instances: (BackendInstance | undefined)[];
  private readonly busy: boolean[];
  /** Positions of instances taken out (changeInstances) that still run a batch or serve their slots' live sequences. */
  private readonly retiring = new Map<number, () => void>();
  private liveCount = 0;
  private waitingCount = 0;
  private waitingBytes = 0;
  private running = 0;
  private stopped = false;
  private delayTimer?: NodeJS.Timeout;
  private idleTimer?: NodeJS.Timeout;
  private idleTimerAt = Infinity;
  private onIdle?: () => void;

  constructor(
    instances: readonly BackendInstance[],
    private readonly policy: SequencePolicy,
    private readonly observer: ExecutionObserver,
    private readonly label: string,
    private readonly model: string,
    private readonly logger?: Logger,
  ) {
    this.rowsPerInstance = Math.max(1, policy.maxBatchSize);
    this.instances = [...instances];
    this.slotHolders = policy.strategy === 'direct' ? new Array(this.rowsPerInstance * instances.length).fill(undefined) : [];
    this.busy = instances.map(() => false);
  }

  /** Whether the instance at `position` takes new work: present and not taken out. */
  private serving(position: number): boolean {
    return this.instances[position] !== undefined && !this.retiring.has(position);
  }

  /** Sequences that may be live at once; more wait for one to end. */
  get capacity(): number {
    const rows = this.instances.filter((_, position) => this.serving(position)).length * this.rowsPerInstance;
    return this.policy.strategy === 'direct' ? rows : (this.policy.maxCandidateSequences ?? rows);
  }

  /** A direct slot no sequence holds, of an instance that takes new sequences; -1 when none is free. */
  private freeSlot(): number {
    return this.slotHolders.findIndex((holder, slot) => holder === undefined && this.serving(Math.floor(slot / this.rowsPerInstance)));
  }

  /**
   * Takes `added` into service and `removed` out of it, as Triton updates a sequence model's instances: new sequences
   * start on the added ones from now on; a removed instance runs no new batch (oldest strategy) or takes no new sequence
   * while the live ones of its slots go on to their end or idle timeout (direct), and the promise settles once no
   * removed instance runs a batch or holds a live sequence.
   */
  async changeInstances(added: readonly BackendInstance[], removed: readonly BackendInstance[]): Promise<void> {
    for (const instance of added) {
      const empty = this.instances.findIndex((present, position) => present === undefined && !this.retiring.has(position));
      const position = empty >= 0 ? empty : this.instances.length;
      this.instances[position] = instance;
      this.busy[position] = false;
      if (this.policy.strategy === 'direct') for (let row = 0; row < this.rowsPerInstance; row++) this.slotHolders[position * this.rowsPerInstance + row] ??= undefined;
    }
    const retired = removed
      .map((instance) => this.instances.indexOf(instance))
      .filter((position) => position >= 0)
      .map((position) => new Promise<void>((resolve) => this.retiring.set(position, resolve)));
    this.settleRetiring();
    this.dispatch();
    await Promise.all(retired);
  }

  /** Whether the instance at `position` runs a batch or holds a live sequence in one of its slots. */
  private holds(position: number): boolean {
    if (this.busy[position]) return true;
    if (this.policy.strategy !== 'direct') return false;
    const first = position * this.rowsPerInstance;
    return this.slotHolders.slice(first, first + this.rowsPerInstance).some((holder) => holder !== undefined);
  }

  /** Instances taken out that no longer hold anything leave their position empty; their callers may release them. */
  private settleRetiring(): void {
    for (const [position, settle] of [...this.retiring]) {
      if (this.holds(position)) continue;
      this.retiring.delete(position);
      this.instances[position] = undefined;
      settle();
    }
  }

  /** Sequences holding a slot now. */
  get liveSequences(): number {
    return this.liveCount;
  }

  get queued(): number {
    return this.waitingCount;
  }

  get queuedBytes(): number {
    return this.waitingBytes;
  }

  get admits(): number {
    return this.policy.maxQueuedRequests > 0 ? this.policy.maxQueuedRequests : this.capacity;
  }

  validate(_request: Admission): void {}

  admit(_request: Admission): void {
    if (this.stopped) throw unloadingError(this.label);
    if (this.policy.maxQueuedRequests > 0 && this.waitingCount >= this.policy.maxQueuedRequests) {
      throw overloaded(`${this.label} has ${this.waitingCount} requests waiting, the most ${serverQueueCap(this.policy.maxQueuedRequestsSetting)} allows`, 1000);
    }
  }

  schedule(request: ScheduledRequest): Promise<ScheduledResult> {
    if (this.stopped) return Promise.reject(unloadingError(this.label));
    const flags = request.sequence;
    if (!flags) return Promise.reject(new NereidError('INTERNAL', `${this.label} uses sequence batching but the request carries no sequence flags`));
    if (this.policy.maxBatchSize > 0 && request.batchSize !== 1) {
      return Promise.reject(invalidArgument(`inference request to model '${this.model}' must specify batch-size 1 due to requirements of sequence batcher (one row per request of a sequence), got ${request.batchSize}`));
    }
    if (request.signal?.aborted) return Promise.reject(cancelled());
    try {
      this.admit(request);
    } catch (error) {
      return Promise.reject(error);
    }
    const refused = this.correlationIdProblem(flags.id);
    if (refused) return Promise.reject(invalidArgument(refused));
    const key = sequenceKey(flags.id);
    let sequence = this.sequences.get(key);
    if (!sequence) {
      if (!flags.start) {
        return Promise.reject(
          invalidArgument(
            `inference request for sequence ${describeSequence(flags.id)} to model '${this.model}' must specify the START flag on the first request of the sequence (parameter sequence_start: true; a sequence idle for more than ${this.policy.maxSequenceIdleMicroseconds} µs is released, and a reload or unload of the model drops the sequences it held)`,
          ),
        );
      }
      sequence = { key, id: flags.id, slot: -1, waiting: [], running: false, lastUsed: now() };
      this.sequences.set(key, sequence);
      this.backlog.push(sequence);
    }
    const owner = sequence;
    return new Promise<ScheduledResult>((resolve, reject) => {
      const pending = new Pending(this, owner, request, flags, now(), bytesOf(request.inputs), resolve, reject);
      pending.listen();
      owner.waiting.push(pending);
      this.waitingCount += 1;
      this.waitingBytes += pending.bytes;
      this.dispatch();
    });
  }

  /** Why the model's CORRID control cannot carry this id (a string to an integer control, an integer out of its range), if it cannot. */
  private correlationIdProblem(id: bigint | string): string | undefined {
    const control = this.policy.controls.find((candidate) => candidate.kind === 'CORRID');
    if (!control || control.datatype === 'BYTES') return undefined;
    if (typeof id === 'string') return `model '${this.model}' takes integer correlation ids (its CORRID control is ${control.datatype}), got the string sequence_id ${describeSequence(id)}`;
    const largest = LARGEST_CORRID[control.datatype] ?? MAX_CORRELATION_ID;
    return id > largest ? `model '${this.model}' takes correlation ids up to ${largest} (its CORRID control is ${control.datatype}), got sequence_id ${id}` : undefined;
  }

  /** A waiting request whose client has gone: answered cancelled, and its sequence forgotten or watched as it is left. */
  cancelWaiting(pending: Pending): void {
    const owner = pending.sequence;
    const index = owner.waiting.indexOf(pending);
    if (index < 0) return;
    owner.waiting.splice(index, 1);
    this.unqueue(pending);
    pending.reject(cancelled());
    this.forgetIfEmpty(owner);
    // A live sequence left with nothing to run is released once idle, like any other.
    this.watchIdle();
  }

  private unqueue(pending: Pending): void {
    this.waitingCount -= 1;
    this.waitingBytes -= pending.bytes;
    pending.stopListening();
  }

  /** A sequence with nothing left to run whose only request was cancelled before it ever ran is forgotten. */
  private forgetIfEmpty(sequence: Sequence): void {
    if (sequence.slot < 0 && sequence.waiting.length === 0) {
      this.sequences.delete(sequence.key);
      this.backlog.splice(this.backlog.indexOf(sequence), 1);
    }
  }

  /** Gives waiting sequences the slots free now, oldest first. */
  private assignSlots(): void {
    if (this.retiring.size > 0 && this.policy.strategy === 'direct') this.moveNewSequencesOffRetiring();
    while (this.backlog.length > 0) {
      if (this.policy.strategy === 'direct') {
        const slot = this.freeSlot();
        if (slot < 0) break;
        const sequence = this.backlog.shift()!;
        sequence.slot = slot;
        this.slotHolders[slot] = sequence;
      } else {
        if (this.liveCount >= this.capacity) break;
        this.backlog.shift()!.slot = 0;
      }
      this.liveCount += 1;
    }
  }

  /**
   * A START for an id whose slot is on an instance taken out begins a new sequence: it waits for a slot elsewhere, or a
   * client reusing its id would keep that instance from ever leaving.
   */
  private moveNewSequencesOffRetiring(): void {
    let moved = false;
    for (const sequence of this.sequences.values()) {
      if (sequence.slot < 0 || sequence.running || !sequence.waiting[0]?.flags.start) continue;
      if (!this.retiring.has(Math.floor(sequence.slot / this.rowsPerInstance))) continue;
      this.slotHolders[sequence.slot] = undefined;
      sequence.slot = -1;
      sequence.state = undefined;
      this.liveCount -= 1;
      this.backlog.unshift(sequence);
      moved = true;
    }
    if (moved) this.settleRetiring();
  }

  private release(sequence: Sequence, why: string): void {
    if (this.policy.strategy === 'direct') this.slotHolders[sequence.slot] = undefined;
    this.liveCount -= 1;
    this.sequences.delete(sequence.key);
    sequence.state = undefined;
    this.logger?.debug({ sequence: sequence.id }, `sequence ${describeSequence(sequence.id)} of ${this.label} released: ${why}`);
  }

  /** Sequences ready to run a request: live, not running, something waiting; the oldest request first. */
  private ready(instance: number): Sequence[] {
    const ready: Sequence[] = [];
    for (const sequence of this.sequences.values()) {
      if (sequence.slot < 0 || sequence.running || sequence.waiting.length === 0) continue;
      if (this.policy.strategy === 'direct' && Math.floor(sequence.slot / this.rowsPerInstance) !== instance) continue;
      ready.push(sequence);
    }
    return ready.sort((a, b) => a.waiting[0].enqueuedAt - b.waiting[0].enqueuedAt);
  }

  private dispatch(): void {
    this.assignSlots();
    let soonest = Infinity;
    for (let instance = 0; instance < this.instances.length; instance++) {
      // A direct instance taken out still runs its slots' live sequences; an oldest one takes nothing more.
      if (this.busy[instance] || this.instances[instance] === undefined || (this.policy.strategy !== 'direct' && this.retiring.has(instance))) continue;
      const candidates = this.ready(instance);
      if (candidates.length === 0) continue;
      const limit = this.policy.maxBatchSize === 0 ? 1 : this.batchLimit();
      const first = candidates[0].waiting[0].request.inputs;
      const batch = candidates.filter((sequence) => sameRowShape(first, sequence.waiting[0].request.inputs)).slice(0, limit);
      // A batch that could hold more waits up to max_queue_delay for them, unless a preferred size is reached.
      const waitedMs = now() - candidates[0].waiting[0].enqueuedAt;
      const delayMs = this.policy.maxQueueDelayMicroseconds / 1000;
      const full = batch.length >= limit || this.policy.preferredBatchSizes.includes(batch.length);
      if (!full && !this.stopped && waitedMs < delayMs) {
        soonest = Math.min(soonest, delayMs - waitedMs);
        continue;
      }
      this.execute(instance, batch);
    }
    // Nothing held back any more: a wake-up set for an earlier hold would only keep the process alive.
    if (soonest === Infinity && this.delayTimer) {
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
    }
    if (soonest < Infinity && !this.delayTimer) {
      this.delayTimer = setTimeout(() => {
        this.delayTimer = undefined;
        this.dispatch();
      }, soonest);
    }
  }

  private batchLimit(): number {
    const { maxBatchSize, preferredBatchSizes } = this.policy;
    return preferredBatchSizes.length > 0 ? Math.min(maxBatchSize, Math.max(...preferredBatchSizes)) : maxBatchSize;
  }

  /** The execution's rows: direct keeps each sequence in its slot's row (rows between padded); oldest packs them. */
  private rowsOf(batch: readonly Sequence[]): number[] {
    if (this.policy.strategy === 'oldest') return batch.map((_, index) => index);
    return batch.map((sequence) => sequence.slot % this.rowsPerInstance);
  }

  private execute(instance: number, batch: Sequence[]): void {
    const pendings = batch.map((sequence) => {
      const pending = sequence.waiting.shift()!;
      this.unqueue(pending);
      sequence.running = true;
      return pending;
    });
    this.busy[instance] = true;
    this.running += 1;
    const started = now();
    const rows = this.rowsOf(batch);
    let outcome: RunOutputs | Promise<RunOutputs>;
    let inputReady = started;
    const stateOutputs = this.policy.states.map((state) => state.output);
    const outputNames = [...new Set([...pendings.flatMap((pending) => pending.request.outputNames), ...stateOutputs])];
    try {
      const inputs = this.inputsOf(batch, pendings, rows);
      inputReady = now();
      // Joined tensors are this batcher's own, for the instance to take; unjoined ones are the client's and the initial states.
      outcome = this.instances[instance]!.run(inputs, outputNames, { inputsOwned: this.policy.maxBatchSize > 0 });
    } catch (error) {
      outcome = Promise.reject(error);
    }
    const settle = (outputs: RunOutputs | undefined, error?: unknown) => {
      const inferred = now();
      try {
        if (error !== undefined) throw error;
        this.answer(batch, pendings, rows, outputs!, { started, inputReady, inferred }, this.instances[instance]?.threads ?? 1);
      } catch (failure) {
        const reported = asNereidError(failure, this.label);
        for (const pending of pendings) pending.reject(reported);
      } finally {
        this.finish(instance, batch, pendings);
      }
    };
    if (outcome instanceof Promise) outcome.then((outputs) => settle(outputs), (error: unknown) => settle(undefined, error ?? new Error('run failed')));
    else settle(outcome);
  }

  /** The client's inputs of each row, its control values and its state, joined (or as they are, without a batch dimension). */
  private inputsOf(batch: readonly Sequence[], pendings: readonly Pending[], rows: readonly number[]): Record<string, Tensor> {
    const batched = this.policy.maxBatchSize > 0;
    const height = batched ? Math.max(...rows) + 1 : 1;
    const at = new Map(rows.map((row, index) => [row, index]));
    const inputs: Record<string, Tensor> = {};
    const template = pendings[0].request.inputs;
    for (const name in template) {
      if (!batched) {
        inputs[name] = template[name];
        continue;
      }
      const padding = zeroRow(template[name]);
      inputs[name] = concatRows(Array.from({ length: height }, (_, row) => (at.has(row) ? pendings[at.get(row)!].request.inputs[name] : padding)));
    }
    const controlShape = batched ? [height, 1] : [1];
    for (const control of this.policy.controls) {
      const values = Array.from({ length: height }, (_, row) => {
        const index = at.get(row);
        const flags = index === undefined ? undefined : pendings[index].flags;
        if (control.kind === 'CORRID') return flags?.id ?? (control.datatype === 'BYTES' ? '' : 0);
        const on = flags !== undefined && (control.kind === 'READY' || (control.kind === 'START' ? flags.start : flags.end));
        return control.values[on ? 1 : 0];
      });
      inputs[control.name] = filled(control.datatype, controlShape, values);
    }
    for (const state of this.policy.states) {
      const perRow = Array.from({ length: height }, (_, row) => {
        const index = at.get(row);
        if (index === undefined) return state.initial;
        const sequence = batch[index];
        return pendings[index].flags.start || !sequence.state ? state.initial : sequence.state[state.input];
      });
      inputs[state.input] = batched ? concatRows(perRow.map((tensor) => ({ ...tensor, shape: [1, ...tensor.shape] }))) : perRow[0];
    }
    return inputs;
  }

  private answer(batch: readonly Sequence[], pendings: readonly Pending[], rows: readonly number[], outputs: RunOutputs, times: { started: number; inputReady: number; inferred: number }, threads: number): void {
    const batched = this.policy.maxBatchSize > 0;
    const results = pendings.map((pending, index) => {
      const own: Record<string, Tensor> = {};
      for (const name of pending.request.outputNames) own[name] = batched ? sliceRows(outputs[name], rows[index], 1) : outputs[name];
      const carried: Record<string, Tensor> = {};
      for (const state of this.policy.states) {
        const produced = outputs[state.output];
        if (!produced) throw new NereidError('INTERNAL', `the model did not output state '${state.output}'`);
        const row = batched ? sliceRows(produced, rows[index], 1) : produced;
        if (row.data.length !== state.initial.data.length) {
          throw new NereidError('INTERNAL', `state output '${state.output}' has shape [${produced.shape.join(', ')}], which does not hold the state's dims [${state.initial.shape.join(', ')}]`);
        }
        carried[state.input] = owned(row, state.initial.shape);
      }
      // Kept only once every state of the row is whole: a failed answer leaves the sequence's state as it was.
      batch[index].state = carried;
      return own;
    });
    const finished = now();
    const execution: ExecutionTimings = {
      computeInputNs: msToNs(times.inputReady - times.started),
      computeInferNs: msToNs(times.inferred - times.inputReady),
      computeOutputNs: msToNs(finished - times.inferred),
    };
    this.observer.onExecution({ batchSize: batched ? pendings.length : 1, timings: execution, threads });
    // Each request of a sequence batch is one row of it.
    const share = coreSeconds(execution.computeInferNs, threads) / pendings.length;
    pendings.forEach((pending, index) => {
      pending.resolve({ outputs: results[index], timings: { queueNs: msToNs(times.started - pending.enqueuedAt), ...execution, batchRows: pendings.length, coreSeconds: share } });
    });
  }

  /** After an execution: each sequence may run its next request, an ended one frees its slot. */
  private finish(instance: number, batch: readonly Sequence[], pendings: readonly Pending[]): void {
    this.busy[instance] = false;
    this.running -= 1;
    const clock = now();
    batch.forEach((sequence, index) => {
      sequence.running = false;
      sequence.lastUsed = clock;
      // A START queued behind the END begins the id's next sequence in the same slot.
      if (pendings[index].flags.end && sequence.waiting.length === 0) this.release(sequence, 'its END request was answered');
    });
    this.settleRetiring();
    this.watchIdle();
    this.dispatch();
    if (this.running === 0) this.onIdle?.();
  }

  /** Wakes when the longest-idle live sequence passes max_sequence_idle_microseconds. */
  private watchIdle(): void {
    let oldest = Infinity;
    for (const sequence of this.sequences.values()) {
      if (sequence.slot >= 0 && !sequence.running && sequence.waiting.length === 0) oldest = Math.min(oldest, sequence.lastUsed);
    }
    if (oldest === Infinity) return;
    const at = oldest + this.policy.maxSequenceIdleMicroseconds / 1000;
    if (this.idleTimer && this.idleTimerAt <= at) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimerAt = at;
    this.idleTimer = setTimeout(() => this.releaseIdle(), Math.max(0, at - now()));
    this.idleTimer.unref();
  }

  private releaseIdle(): void {
    this.idleTimer = undefined;
    this.idleTimerAt = Infinity;
    const limitMs = this.policy.maxSequenceIdleMicroseconds / 1000;
    const clock = now();
    for (const sequence of [...this.sequences.values()]) {
      if (sequence.slot < 0 || sequence.running || sequence.waiting.length > 0) continue;
      const idleMs = clock - sequence.lastUsed;
      if (idleMs < limitMs) continue;
      this.release(sequence, `idle for ${Math.round(idleMs)} ms, longer than max_sequence_idle_microseconds ${this.policy.maxSequenceIdleMicroseconds}`);
      this.logger?.info(
        { sequence: sequence.id, idleMs: Math.round(idleMs) },
        `sequence ${describeSequence(sequence.id)} of ${this.label} released after ${Math.round(idleMs)} ms without a request (max_sequence_idle_microseconds ${this.policy.maxSequenceIdleMicroseconds}); its state is freed`,
      );
    }
    this.settleRetiring();
    this.watchIdle();
    this.dispatch();
  }

  /** Accepts nothing new, runs what is waiting (no more waiting for company) and settles once all is answered. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    // Requests of sequences still waiting for a slot would never get one: they are refused.
    for (const sequence of this.backlog.splice(0)) {
      for (const pending of sequence.waiting.splice(0)) {
        this.unqueue(pending);
        pending.reject(unloadingError(this.label));
      }
      this.sequences.delete(sequence.key);
    }
    this.dispatch();
    while (this.running > 0 || this.waitingCount > 0) {
      await new Promise<void>((resolve) => (this.onIdle = resolve));
      this.dispatch();
    }
    this.onIdle = undefined;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    // Their state lives in this load: a client's next request of one is refused for want of a START, so say why here.
    if (this.sequences.size > 0) {
      this.logger?.warn({ sequences: this.sequences.size }, `${this.label} unloads with ${this.sequences.size} live sequence(s); their state is dropped and their next requests need the START flag`);
    }
    this.sequences.clear();
    // Nothing runs and no sequence is live: instances taken out are free to go.
    this.slotHolders.fill(undefined);
    this.settleRetiring();
  }
}
