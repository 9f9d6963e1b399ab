/**
 * A small deterministic Backend for unit tests of the components above the engine (ModelVersion,
 * Server, batch-job records): it declares the signature it is given, computes outputs from inputs
 * with a plain function, records every batch it runs (rows, which instance), fails a run on demand,
 * and can hold runs at a gate until the test opens it, so that tests control timing without clocks.
 * Beside it, what such tests share: a temporary repository for it, a log capture, and an assertion
 * on NereidError codes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature } from '../../src/backends/backend.js';
import type { ModelConfig } from '../../src/config/model-config.js';
import { NereidError, type ErrorCode } from '../../src/core/errors.js';
import type { Tensor } from '../../src/core/tensor.js';
import { writeModel } from '../../src/onnx/test-models.js';

export type Compute = (inputs: Record<string, Tensor>) => Record<string, Tensor>;

export interface FakeBackendOptions {
  /** What describe() answers; a function may throw, which fails the model's load with its message. */
  signature: ModelSignature | ((modelPath: string, config: ModelConfig) => ModelSignature);
  /** Every output the model has, from the batch's inputs; run() keeps the requested ones. */
  compute: Compute;
  /** Triton's backend name (default 'fake'); a config chooses it with `backend: <name>`. */
  name?: string;
  platforms?: readonly string[];
  /** Threads each instance reports (default 1). */
  threads?: number;
}

/** One run() call as the instance saw it. */
export interface RecordedBatch {
  /** InstanceOptions.index of the instance that ran it. */
  instance: number;
  /** Rows along the batch dimension (1 for a model that does not batch). */
  rows: number;
  inputs: Record<string, Tensor>;
  outputNames: string[];
}

/** Holds runs until opened; tests wait until the runs they expect are held, then let them go. */
export class Gate {
  private opened = false;
  private readonly held: (() => void)[] = [];
  private readonly watchers: { count: number; resolve: () => void }[] = [];

  /** Runs waiting at the gate now. */
  get waiting(): number {
    return this.held.length;
  }

  /** Resolves once `count` runs are waiting at the gate (at once, if they are). */
  whenWaiting(count = 1): Promise<void> {
    if (this.held.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.watchers.push({ count, resolve }));
  }

  /** Lets every held run go, and every later one pass. */
  open(): void {
    this.opened = true;
    for (const release of this.held.splice(0)) release();
  }

  pass(): Promise<void> {
    if (this.opened) return Promise.resolve();
    return new Promise((resolve) => {
      this.held.push(resolve);
      for (const watcher of [...this.watchers]) {
        if (this.held.length < watcher.count) continue;
        this.watchers.splice(this.watchers.indexOf(watcher), 1);
        watcher.resolve();
      }
    });
  }
}

export class FakeInstance implements BackendInstance {
  released = false;

  constructor(
    private readonly backend: FakeBackend,
    readonly options: InstanceOptions,
    private readonly batched: boolean,
    readonly threads: number,
  ) {}

  async run(inputs: Record<string, Tensor>, outputNames: readonly string[]): Promise<Record<string, Tensor>> {
    if (this.released) throw new Error(`fake instance ${this.options.index} was released`);
    const first = Object.values(inputs)[0];
    this.backend.batches.push({ instance: this.options.index, rows: this.batched ? (first?.shape[0] ?? 0) : 1, inputs, outputNames: [...outputNames] });
    await this.backend.gate?.pass();
    const failure = this.backend.failures.shift();
    if (failure) throw failure;
    const all = this.backend.compute(inputs);
    return Object.fromEntries(outputNames.map((name) => [name, all[name]]));
  }

  async release(): Promise<void> {
    this.released = true;
  }
}

export class FakeBackend implements Backend {
  readonly name: string;
  readonly platforms: readonly string[];
  readonly defaultModelFilename = 'model.onnx';
  readonly compute: Compute;
  /** Every batch run so far, calibration runs at load included (see reset()). */
  readonly batches: RecordedBatch[] = [];
  readonly instances: FakeInstance[] = [];
  /** Errors the next runs throw, one per run, after recording the batch. */
  readonly failures: Error[] = [];
  /** While set, every run waits at it after recording its batch. */
  gate?: Gate;

  constructor(private readonly options: FakeBackendOptions) {
    this.name = options.name ?? 'fake';
    this.platforms = options.platforms ?? [`${this.name}_platform`];
    this.compute = options.compute;
  }

  async describe(modelPath: string, config: ModelConfig): Promise<ModelSignature> {
    const { signature } = this.options;
    return typeof signature === 'function' ? signature(modelPath, config) : signature;
  }

  async createInstance(_modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance> {
    const instance = new FakeInstance(this, options, (config.max_batch_size ?? 0) > 0, this.options.threads ?? 1);
    this.instances.push(instance);
    return instance;
  }

  /** The next run throws `error` (each call queues one more failing run). */
  failNext(error: Error): void {
    this.failures.push(error);
  }

  /** Holds every run from now on until the returned gate is opened. */
  hold(): Gate {
    this.gate = new Gate();
    return this.gate;
  }

  /** Forgets the batches run so far (the load's calibration runs, say). */
  reset(): void {
    this.batches.length = 0;
  }

  /** Rows of every batch run since the last reset(). */
  get rows(): number[] {
    return this.batches.map((batch) => batch.rows);
  }
}

/** FP32 INPUT0 [-1, 4] → OUTPUT0 = INPUT0 × 2 and OUTPUT1 = INPUT0 + 1, like a small real model. */
export const DOUBLER_SIGNATURE: ModelSignature = {
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [
    { name: 'OUTPUT0', datatype: 'FP32', shape: [-1, 4] },
    { name: 'OUTPUT1', datatype: 'FP32', shape: [-1, 4] },
  ],
};

export const doubler: Compute = (inputs) => {
  const input = inputs.INPUT0;
  const values = input.data as Float32Array;
  return {
    OUTPUT0: { datatype: 'FP32', shape: [...input.shape], data: values.map((value) => value * 2) },
    OUTPUT1: { datatype: 'FP32', shape: [...input.shape], data: values.map((value) => value + 1) },
  };
};

/** A backend whose models double their FP32 [-1, 4] input (see DOUBLER_SIGNATURE). */
export function doublerBackend(options: Partial<FakeBackendOptions> = {}): FakeBackend {
  return new FakeBackend({ signature: DOUBLER_SIGNATURE, compute: doubler, ...options });
}

/**
 * A temporary model repository for the fake backend: `<repo>/<name>/1/model.onnx` holds a few
 * bytes (the fake backend never reads them) and `config.yaml` holds the given config, if any.
 */
export async function fakeRepository(
  t: { after: (fn: () => Promise<void>) => void },
  models: Record<string, string | undefined>,
): Promise<string> {
  const repo = await mkdtemp(join(tmpdir(), 'nereid-fake-repo-'));
  t.after(() => rm(repo, { recursive: true, force: true }));
  for (const [name, config] of Object.entries(models)) {
    await writeModel(repo, name, 1, new TextEncoder().encode(`fake model ${name}`), undefined, config === undefined ? {} : { 'config.yaml': config });
  }
  return repo;
}

/** A log line as pino writes it. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A pino logger at `level` whose lines land, parsed, in `lines`. */
export function capturingLogger(level = 'info'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as LogLine);
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

/** Asserts that `promise` rejects with a NereidError of `code` (and a message matching `message`); returns the error. */
export async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<NereidError> {
  let caught: NereidError | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof NereidError, `a NereidError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    caught = error;
    return true;
  });
  return caught!;
}
