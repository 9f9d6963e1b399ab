/**
 * Ensembles (Triton's platform "ensemble") on a real server: generated ONNX models as steps, the
 * graph checked at load with each mistake named, a diamond computed as a graph with its independent
 * steps in flight at once, steps batching with direct traffic to their models, over HTTP and gRPC.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { InferenceObserver, RequestRecord } from '../src/core/inference-observer.js';
import { Tracing } from '../src/observability/tracing.js';
import { buildOnnxModel } from '../src/onnx/onnx-model-builder.js';
import { identityModel, matMulChainModel, scaleModel, writeModel } from '../src/onnx/test-models.js';
import { startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer, writeHandlerModel, type TestServer } from './support/test-server.js';

type Json = any;

/** FP32 INPUT0, INPUT1 ['batch', 4] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1. */
function addSub4Model(): Uint8Array {
  const shape = ['batch', 4];
  return buildOnnxModel({
    graphName: 'add_sub4',
    inputs: [
      { name: 'INPUT0', type: 'float32', shape },
      { name: 'INPUT1', type: 'float32', shape },
    ],
    outputs: [
      { name: 'OUTPUT0', type: 'float32', shape },
      { name: 'OUTPUT1', type: 'float32', shape },
    ],
    nodes: [
      { opType: 'Add', inputs: ['INPUT0', 'INPUT1'], outputs: ['OUTPUT0'] },
      { opType: 'Sub', inputs: ['INPUT0', 'INPUT1'], outputs: ['OUTPUT1'] },
    ],
  });
}

const tensor4 = (name: string) => `{ name: "${name}" data_type: TYPE_FP32 dims: [ 4 ] }`;

/** An ensemble's config.pbtxt; `steps` are the step messages' bodies. */
function ensembleConfig(name: string, options: { inputs?: string[]; outputs?: string[]; maxBatchSize?: number; steps: string[] }): string {
  return `name: "${name}"
platform: "ensemble"
max_batch_size: ${options.maxBatchSize ?? 4}
input [ ${(options.inputs ?? [tensor4('IN')]).join(', ')} ]
output [ ${(options.outputs ?? [tensor4('OUT')]).join(', ')} ]
ensemble_scheduling {
  step [
    ${options.steps.map((step) => `{ ${step} }`).join(',\n    ')}
  ]
}
`;
}

const step = (model: string, inputs: Record<string, string>, outputs: Record<string, string>) =>
  `model_name: "${model}" model_version: -1 ${Object.entries(inputs)
    .map(([key, value]) => `input_map { key: "${key}" value: "${value}" }`)
    .join(' ')} ${Object.entries(outputs)
    .map(([key, value]) => `output_map { key: "${key}" value: "${value}" }`)
    .join(' ')}`;

async function writeEnsemble(repoDir: string, name: string, config: string): Promise<void> {
  await mkdir(join(repoDir, name, '1'), { recursive: true });
  await writeFile(join(repoDir, name, 'config.pbtxt'), config);
}

/** A MatMul chain heavy enough that a request is still computing when the next step starts, in a worker of its own. */
const SLOW_CONFIG = `max_batch_size: 4
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "execution_thread" value: { string_value: "worker" } }
`;

/**
 * The diamond: IN → scale2 (×2) → T, then scale3 (×3) and scale5 (×5) both read T, and add_sub4
 * reads both: SUM = 6·2x + ... written out in the test. slow_pair: two slow chains reading IN.
 */
async function writeModels(repoDir: string): Promise<void> {
  await writeModel(repoDir, 'scale2', 1, scaleModel(2), 'max_batch_size: 8\n');
  await writeModel(repoDir, 'scale3', 1, scaleModel(3), 'max_batch_size: 8\n');
  await writeModel(repoDir, 'scale5', 1, scaleModel(5), 'max_batch_size: 8\n');
  await writeModel(repoDir, 'add_sub4', 1, addSub4Model(), 'max_batch_size: 8\n');
  await writeEnsemble(
    repoDir,
    'diamond',
    ensembleConfig('diamond', {
      outputs: [tensor4('SUM'), tensor4('DIFF')],
      steps: [
        step('add_sub4', { INPUT0: 'B', INPUT1: 'C' }, { OUTPUT0: 'SUM', OUTPUT1: 'DIFF' }),
        step('scale3', { INPUT0: 'A' }, { OUTPUT0: 'B' }),
        step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'A' }),
        step('scale5', { INPUT0: 'A' }, { OUTPUT0: 'C' }),
      ],
    }),
  );
  await writeEnsemble(
    repoDir,
    'two_branches',
    ensembleConfig('two_branches', {
      outputs: [tensor4('OUT3'), tensor4('OUT5')],
      steps: [step('scale3', { INPUT0: 'IN' }, { OUTPUT0: 'OUT3' }), step('scale5', { INPUT0: 'IN' }, { OUTPUT0: 'OUT5' })],
    }),
  );
  // Reshaped ensemble inputs and outputs: the steps see the reshape's shape, the client the dims (Triton's check).
  await writeEnsemble(
    repoDir,
    'reshaped',
    ensembleConfig('reshaped', {
      inputs: ['{ name: "IN" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } }'],
      outputs: ['{ name: "OUT" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } }'],
      steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })],
    }),
  );
  // An ensemble of an ensemble, in JSON: the diamond's SUM only (a step maps the outputs it needs).
  await mkdir(join(repoDir, 'nested', '1'), { recursive: true });
  await writeFile(
    join(repoDir, 'nested', 'config.json'),
    JSON.stringify({
      platform: 'ensemble',
      max_batch_size: 4,
      input: [{ name: 'X', data_type: 'TYPE_FP32', dims: [4] }],
      output: [{ name: 'Y', data_type: 'TYPE_FP32', dims: [4] }],
      ensemble_scheduling: { step: [{ model_name: 'diamond', model_version: '1', input_map: { IN: 'X' }, output_map: { SUM: 'Y' } }] },
    }),
  );
  const width = 256;
  for (const name of ['chain_b', 'chain_c']) await writeModel(repoDir, name, 1, matMulChainModel({ width, layers: 64 }), SLOW_CONFIG);
  await writeEnsemble(
    repoDir,
    'slow_pair',
    ensembleConfig('slow_pair', {
      inputs: [`{ name: "IN" data_type: TYPE_FP32 dims: [ ${width} ] }`],
      outputs: [tensor4('SUM')],
      steps: [
        step('chain_b', { x: 'IN' }, { y: 'B' }),
        step('chain_c', { x: 'IN' }, { y: 'C' }),
        step('add_sub4', { INPUT0: 'B', INPUT1: 'C' }, { OUTPUT0: 'SUM' }),
      ],
    }),
  );
  // A step model that holds a lone request until a second arrives: a batch of 2 is then the proof they met.
  await writeModel(
    repoDir,
    'pairing_scale',
    1,
    scaleModel(3),
    'max_batch_size: 2\ndynamic_batching { preferred_batch_size: [ 2 ] max_queue_delay_microseconds: 20000000 }\n',
  );
  await writeEnsemble(
    repoDir,
    'via_pairing',
    ensembleConfig('via_pairing', { maxBatchSize: 2, steps: [step('pairing_scale', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
  );
}

const CHAINS = new Set(['chain_b', 'chain_c']);

/** Requests in flight per model of the slow pair, and the most of them in flight together. */
class InFlightWatch {
  private inFlight = 0;
  peak = 0;
  readonly ended: string[] = [];

  observer = (model: string): InferenceObserver => ({
    onRequestStart: () => {
      if (!CHAINS.has(model)) return;
      this.inFlight++;
      this.peak = Math.max(this.peak, this.inFlight);
    },
    onRequestEnd: (record: RequestRecord) => {
      if (!CHAINS.has(model)) return;
      this.inFlight--;
      if (record.success) this.ended.push(model);
    },
    onExecution: () => undefined,
  });
}

const watch = new InFlightWatch();
const spans = new InMemorySpanExporter();
const tracing = new Tracing({ exporter: spans, processor: 'simple' });
let main: TestServer;
let rpc: GrpcEndpoint;

before(async () => {
  main = await startTestServer({ models: writeModels, server: { observers: [(model) => watch.observer(model), tracing.observer] } });
  rpc = await startGrpcEndpoint(main.server);
});

after(async () => {
  await rpc?.close();
  await main?.close();
  await tracing.shutdown();
});

async function http(path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
  const response = await fetch(
    `${main.url}${path}`,
    body === undefined ? { headers } : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } },
  );
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}

function grpcCall(method: string, request: object): Promise<Json> {
  return new Promise((resolve, reject) => {
    rpc.client[method](request, new grpc.Metadata(), (error: grpc.ServiceError | null, response: Json) => (error ? reject(error) : resolve(response)));
  });
}

const statsOf = async (model: string) => (await http(`/v2/models/${model}/stats`)).body.model_stats[0];

describe('a diamond ensemble (scale2 → scale3 and scale5 → add_sub4)', () => {
  const x = [1, 2, 3, 4, -1, 0.5, 10, -3];

  test('computes every output from the graph over HTTP', async () => {
    const answer = await http('/v2/models/diamond/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [2, 4], data: x }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const outputs = Object.fromEntries(answer.body.outputs.map((output: Json) => [output.name, output]));
    assert.deepEqual(Object.keys(outputs).sort(), ['DIFF', 'SUM']);
    assert.deepEqual(outputs.SUM.shape, [2, 4]);
    assert.deepEqual(outputs.SUM.data, x.map((value) => 2 * value * 3 + 2 * value * 5));
    assert.deepEqual(outputs.DIFF.data, x.map((value) => 2 * value * 3 - 2 * value * 5));
    assert.equal(answer.body.model_name, 'diamond');
  });

  test('answers only the outputs requested', async () => {
    const answer = await http('/v2/models/diamond/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }], outputs: [{ name: 'DIFF' }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.outputs.map((output: Json) => [output.name, output.data]), [['DIFF', [-4, -4, -4, -4]]]);
  });

  test('runs only the steps the requested outputs need', async () => {
    const [scale3Before, scale5Before] = await Promise.all([statsOf('scale3'), statsOf('scale5')]);
    const answer = await http('/v2/models/two_branches/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }], outputs: [{ name: 'OUT5' }] });
    assert.deepEqual(answer.body.outputs.map((output: Json) => [output.name, output.data]), [['OUT5', [5, 10, 15, 20]]]);
    const [scale3After, scale5After] = await Promise.all([statsOf('scale3'), statsOf('scale5')]);
    assert.equal(scale5After.inference_count - scale5Before.inference_count, 1);
    assert.equal(scale3After.inference_count, scale3Before.inference_count);
  });

  test('reshapes its inputs and outputs as a model does: the steps take the reshape, the client the dims', async () => {
    const answer = await http('/v2/models/reshaped/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 2, 2], data: [1, 2, 3, 4] }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.outputs.map((output: Json) => [output.name, output.shape, output.data]), [['OUT', [1, 2, 2], [2, 4, 6, 8]]]);
  });

  test('can be a step of another ensemble (configured in JSON)', async () => {
    const answer = await http('/v2/models/nested/infer', { inputs: [{ name: 'X', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.outputs.map((output: Json) => [output.name, output.data]), [['Y', [16, 32, 48, 64]]]);
  });

  test('is described like any model: metadata, config, readiness, index, statistics of the ensemble and of each step', async () => {
    const scale3Before = await statsOf('scale3');
    const diamondBefore = await statsOf('diamond');
    await http('/v2/models/diamond/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
    const metadata = (await http('/v2/models/diamond')).body;
    assert.deepEqual(metadata, {
      name: 'diamond',
      versions: ['1'],
      platform: 'ensemble',
      inputs: [{ name: 'IN', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [
        { name: 'SUM', datatype: 'FP32', shape: [-1, 4] },
        { name: 'DIFF', datatype: 'FP32', shape: [-1, 4] },
      ],
    });
    const config = (await http('/v2/models/diamond/config')).body;
    assert.equal(config.platform, 'ensemble');
    assert.deepEqual(config.ensemble_scheduling.step[2], { model_name: 'scale2', model_version: -1, input_map: { INPUT0: 'IN' }, output_map: { OUTPUT0: 'A' } });
    assert.equal((await fetch(`${main.url}/v2/models/diamond/ready`)).status, 200);
    const index = (await http('/v2/repository/index', {})).body;
    assert.deepEqual(index.find((row: Json) => row.name === 'diamond'), { name: 'diamond', version: '1', state: 'READY', reason: '' });
    const scale3After = await statsOf('scale3');
    const diamondAfter = await statsOf('diamond');
    // The step's own statistics count the ensemble's call; the ensemble counts its request and executes nothing itself.
    assert.equal(scale3After.inference_stats.success.count - scale3Before.inference_stats.success.count, 1);
    assert.equal(diamondAfter.inference_stats.success.count - diamondBefore.inference_stats.success.count, 1);
    assert.equal(diamondAfter.execution_count, 0);
    assert.ok(diamondAfter.inference_stats.compute_infer.ns > diamondBefore.inference_stats.compute_infer.ns, 'the ensemble sums its steps’ compute time');
  });
});

describe('independent steps', () => {
  test('run at once: both slow chains are in flight together, and the answer adds them', async () => {
    const width = 256;
    const x = Array.from({ length: width }, (_, index) => (index % 7) - 3);
    const mean = x.reduce((sum, value) => sum + value, 0) / width;
    const answer = await http('/v2/models/slow_pair/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, width], data: x }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    for (const value of answer.body.outputs[0].data) assert.ok(Math.abs(value - 2 * mean) < 1e-3, `${value} ≠ ${2 * mean}`);
    assert.deepEqual(watch.ended.sort(), ['chain_b', 'chain_c']);
    // Sequential steps would never have both in flight: the second would start only once the first had answered.
    assert.equal(watch.peak, 2);
  });
});

describe('traces', () => {
  const traceId = 'e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1';
  const clientSpan = 'c1c1c1c1c1c1c1c1';
  const nanos = (time: [number, number]) => BigInt(time[0]) * 1_000_000_000n + BigInt(time[1]);

  test("the ensemble's span holds one span per step, where it ran, and each step model's own span", async () => {
    const answer = await http('/v2/models/slow_pair/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 256], data: Array(256).fill(1) }] }, { traceparent: `00-${traceId}-${clientSpan}-01` });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const traced = spans.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    const ensemble = traced.find((span) => span.name === 'infer slow_pair')!;
    assert.equal(ensemble.parentSpanContext?.spanId, clientSpan);
    const children = traced.filter((span) => span.parentSpanContext?.spanId === ensemble.spanContext().spanId);
    assert.deepEqual(children.map((span) => span.name).sort(), [
      'infer add_sub4',
      'infer chain_b',
      'infer chain_c',
      'step 0 chain_b',
      'step 1 chain_c',
      'step 2 add_sub4',
    ]);
    const steps = children.filter((span) => span.name.startsWith('step '));
    // The two chains' intervals overlap: each started before the other ended.
    const [b, c] = ['step 0 chain_b', 'step 1 chain_c'].map((name) => steps.find((span: ReadableSpan) => span.name === name)!);
    assert.ok(nanos(b.startTime) < nanos(c.endTime) && nanos(c.startTime) < nanos(b.endTime), 'the independent steps ran at the same time');
    // add_sub4 reads both: it starts once both have ended (1 µs: the float milliseconds the times pass through).
    const sum = steps.find((span) => span.name === 'step 2 add_sub4')!;
    assert.ok(nanos(sum.startTime) >= nanos(b.endTime) - 1_000n && nanos(sum.startTime) >= nanos(c.endTime) - 1_000n);
  });
});

describe('steps batch with direct traffic to their model', () => {
  test('an ensemble request and a direct one to its step run as one batch of 2', async () => {
    const before = await statsOf('pairing_scale');
    const [viaEnsemble, direct] = await Promise.all([
      http('/v2/models/via_pairing/infer', { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
      http('/v2/models/pairing_scale/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [5, 6, 7, 8] }] }),
    ]);
    assert.deepEqual(viaEnsemble.body.outputs[0].data, [3, 6, 9, 12]);
    assert.deepEqual(direct.body.outputs[0].data, [15, 18, 21, 24]);
    const stats = await statsOf('pairing_scale');
    assert.equal(stats.execution_count - before.execution_count, 1);
    assert.equal(stats.inference_count - before.inference_count, 2);
    assert.deepEqual(
      stats.batch_stats.map((batch: Json) => batch.batch_size),
      [2],
    );
  });
});

describe('over gRPC', () => {
  test('metadata, config with its steps, inference and statistics', async () => {
    const metadata = await grpcCall('ModelMetadata', { name: 'diamond' });
    assert.equal(metadata.platform, 'ensemble');
    const { config } = await grpcCall('ModelConfig', { name: 'diamond' });
    assert.equal(config.platform, 'ensemble');
    assert.deepEqual(config.ensemble_scheduling.step[0].input_map, { INPUT0: 'B', INPUT1: 'C' });
    assert.equal(config.ensemble_scheduling.step[0].model_name, 'add_sub4');
    const x = [1, 2, 3, 4];
    const response = await grpcCall('ModelInfer', {
      model_name: 'diamond',
      inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4] }],
      raw_input_contents: [Buffer.from(Float32Array.from(x).buffer)],
      outputs: [{ name: 'SUM' }],
    });
    assert.deepEqual(response.outputs.map((output: Json) => output.name), ['SUM']);
    const raw = new Uint8Array(response.raw_output_contents[0]);
    assert.deepEqual([...new Float32Array(raw.buffer, raw.byteOffset, 4)], x.map((value) => 16 * value));
    const { model_stats } = await grpcCall('ModelStatistics', { name: 'diamond' });
    assert.ok(Number(model_stats[0].inference_count) >= 1);
  });
});

describe('checked at load (explicit model control), each mistake named', () => {
  let explicit: TestServer;
  const int32Any = (name: string) => `{ name: "${name}" data_type: TYPE_INT32 dims: [ -1 ] }`;
  const mistakes: Record<string, { config: (name: string) => string; expected: string[] }> = {
    e_unknown: {
      config: (name) => ensembleConfig(name, { steps: [step('nope', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["ensemble 'e_unknown' step 0 (model 'nope')", "model 'nope' is not in the model repository"],
    },
    e_unmapped: {
      config: (name) => ensembleConfig(name, { steps: [step('add_sub4', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["input 'INPUT1' of model 'add_sub4' (step 0) is not mapped to any ensemble tensor"],
    },
    e_not_an_input: {
      config: (name) => ensembleConfig(name, { steps: [step('scale2', { INPUT0: 'IN', INPUT9: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["step 0 (model 'scale2') maps ensemble tensor 'IN' to input 'INPUT9', which model 'scale2' does not have (its inputs: INPUT0)"],
    },
    e_ghost: {
      config: (name) => ensembleConfig(name, { steps: [step('scale2', { INPUT0: 'ghost' }, { OUTPUT0: 'OUT' })] }),
      expected: ["step 0 (model 'scale2') feeds input 'INPUT0' from ensemble tensor 'ghost', which is neither an input of the ensemble nor mapped from any step's output"],
    },
    e_datatype: {
      config: (name) =>
        ensembleConfig(name, {
          outputs: [int32Any('OUT')],
          steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'T' }), step('identity_int32', { INPUT0: 'T' }, { OUTPUT0: 'OUT' })],
        }),
      expected: ["ensemble tensor 'T' is FP32 [-1,4] as output 'OUTPUT0' of model 'scale2' (step 0), but input 'INPUT0' of model 'identity_int32' (step 1) takes INT32 [-1,-1]"],
    },
    e_shape: {
      config: (name) =>
        ensembleConfig(name, {
          outputs: ['{ name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] }'],
          steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'T' }), step('wide', { INPUT0: 'T' }, { OUTPUT0: 'OUT' })],
        }),
      expected: ["ensemble tensor 'T' is FP32 [-1,4] as output 'OUTPUT0' of model 'scale2' (step 0), but input 'INPUT0' of model 'wide' (step 1) takes FP32 [-1,16]"],
    },
    e_cycle: {
      config: (name) =>
        ensembleConfig(name, {
          steps: [step('add_sub4', { INPUT0: 'IN', INPUT1: 'Y' }, { OUTPUT0: 'X', OUTPUT1: 'OUT' }), step('scale2', { INPUT0: 'X' }, { OUTPUT0: 'Y' })],
        }),
      expected: ["steps of ensemble 'e_cycle' form a cycle", "step 0 (model 'add_sub4') → 'X' → step 1 (model 'scale2') → 'Y' → step 0 (model 'add_sub4')"],
    },
    e_no_producer: {
      config: (name) => ensembleConfig(name, { outputs: [tensor4('OUT'), tensor4('OUT2')], steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["output 'OUT2' of ensemble 'e_no_producer' is produced by no step"],
    },
    e_unused_output: {
      config: (name) => ensembleConfig(name, { steps: [step('add_sub4', { INPUT0: 'IN', INPUT1: 'IN' }, { OUTPUT0: 'OUT', OUTPUT1: 'SPARE' })] }),
      expected: ["ensemble tensor 'SPARE' (output 'OUTPUT1' of step 0 (model 'add_sub4')) is read by no step and is not an output of the ensemble"],
    },
    e_two_producers: {
      config: (name) => ensembleConfig(name, { steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' }), step('scale3', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["ensemble tensor 'OUT' is produced by both step 0 (model 'scale2') and step 1 (model 'scale3')"],
    },
    e_batch: {
      config: (name) => ensembleConfig(name, { maxBatchSize: 4, steps: [step('one_row', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["ensemble 'e_batch' allows max_batch_size 4, but its step 0 (model 'one_row') allows only 1"],
    },
    e_b_into_nb: {
      config: (name) => ensembleConfig(name, { maxBatchSize: 4, steps: [step('nb4', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: [
        "ensemble tensor 'IN' is FP32 [-1,4] as input 'IN' of ensemble 'e_b_into_nb', but input 'INPUT0' of model 'nb4' (step 0) takes FP32 [4]",
        'the one with max_batch_size 0 takes its dims as written',
      ],
    },
    e_nb_into_b: {
      config: (name) => ensembleConfig(name, { maxBatchSize: 0, steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["ensemble tensor 'IN' is FP32 [4] as input 'IN' of ensemble 'e_nb_into_b', but input 'INPUT0' of model 'scale2' (step 0) takes FP32 [-1,4]"],
    },
    e_map_field: {
      config: (name) => ensembleConfig(name, { steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' }).replace('value: "IN" }', 'value: "IN" bogus: 3 }')] }),
      expected: ["ensemble_scheduling.step.0.input_map.bogus: unknown field 'bogus' in a map entry, which holds key and value only"],
    },
    e_map_brace: {
      config: (name) => ensembleConfig(name, { steps: ['model_name: "scale2" input_map { key: "INPUT0" value: "IN" output_map { key: "OUTPUT0" value: "OUT" } }'] }),
      expected: ["input_map.output_map: unknown field 'output_map' in a map entry, which holds key and value only (a closing brace missing before output_map?)"],
    },
    e_unused_input: {
      config: (name) => ensembleConfig(name, { inputs: [tensor4('IN'), tensor4('EXTRA')], steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }),
      expected: ["input 'EXTRA' of ensemble 'e_unused_input' is read by no step"],
    },
    e_instances: {
      config: (name) => `${ensembleConfig(name, { steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] })}instance_group [ { count: 2 } ]\n`,
      expected: ["ensemble 'e_instances' may not set instance_group"],
    },
    e_no_platform: {
      config: (name) => ensembleConfig(name, { steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }).replace('platform: "ensemble"', ''),
      expected: ['ensemble_scheduling is set but platform is not: an ensemble needs platform "ensemble"'],
    },
    e_self: {
      config: (name) => ensembleConfig(name, { steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'T' }), step('e_self', { IN: 'T' }, { OUT: 'OUT' })] }),
      expected: ["ensemble 'e_self' contains itself: 'e_self' → 'e_self'"],
    },
  };

  before(async () => {
    explicit = await startTestServer({
      server: { modelControlMode: 'explicit' },
      models: async (repoDir) => {
        await writeModel(repoDir, 'scale2', 1, scaleModel(2), 'max_batch_size: 8\n');
        await writeModel(repoDir, 'scale3', 1, scaleModel(3), 'max_batch_size: 8\n');
        await writeModel(repoDir, 'add_sub4', 1, addSub4Model(), 'max_batch_size: 8\n');
        await writeModel(repoDir, 'one_row', 1, scaleModel(3), 'max_batch_size: 1\n');
        await writeModel(repoDir, 'identity_int32', 1, identityModel('int32'), 'max_batch_size: 8\n');
        await writeModel(repoDir, 'wide', 1, identityModel('float32', ['batch', 16]), 'max_batch_size: 8\n');
        await writeModel(repoDir, 'nb4', 1, identityModel('float32', [4]), 'max_batch_size: 0\n');
        await writeModel(repoDir, 'nb_any', 1, identityModel('float32', ['rows', 'n']), 'max_batch_size: 0\n');
        await writeEnsemble(
          repoDir,
          'e_out_dims',
          ensembleConfig('e_out_dims', {
            maxBatchSize: 0,
            inputs: ['{ name: "IN" data_type: TYPE_FP32 dims: [ -1, -1 ] }'],
            outputs: ['{ name: "OUT" data_type: TYPE_FP32 dims: [ -1, 4 ] }'],
            steps: [step('nb_any', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })],
          }),
        );
        for (const [name, { config }] of Object.entries(mistakes)) await writeEnsemble(repoDir, name, config(name));
        await writeEnsemble(repoDir, 'scale2_only', ensembleConfig('scale2_only', { steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'OUT' })] }));
        await writeEnsemble(repoDir, 'outer_chain', ensembleConfig('outer_chain', { steps: [step('chain_yaml', { IN: 'IN' }, { OUT: 'OUT' })] }));
        // The same graph in YAML: scale2 then scale3.
        await mkdir(join(repoDir, 'chain_yaml', '1'), { recursive: true });
        await writeFile(
          join(repoDir, 'chain_yaml', 'config.yaml'),
          [
            'platform: ensemble',
            'max_batch_size: 4',
            'input: [{ name: IN, data_type: TYPE_FP32, dims: [4] }]',
            'output: [{ name: OUT, data_type: TYPE_FP32, dims: [4] }]',
            'ensemble_scheduling:',
            '  step:',
            '    - { model_name: scale2, model_version: -1, input_map: { INPUT0: IN }, output_map: { OUTPUT0: T } }',
            '    - { model_name: scale3, model_version: 1, input_map: { INPUT0: T }, output_map: { OUTPUT0: OUT } }',
            '',
          ].join('\n'),
        );
      },
    });
  });

  after(async () => {
    await explicit?.close();
  });

  for (const [name, { expected }] of Object.entries(mistakes)) {
    test(`${name}: ${expected[0]}`, async () => {
      const error = await explicit.server.loadModel(name).then(
        () => assert.fail(`${name} loaded`),
        (error: Error) => error,
      );
      for (const fragment of expected) assert.ok(error.message.includes(fragment), `'${error.message}' lacks '${fragment}'`);
    });
  }

  test("an output that does not fit the ensemble's declared dims fails the request, naming both shapes", async () => {
    await explicit.server.loadModel('e_out_dims');
    const infer = (shape: number[]) =>
      fetch(`${explicit.url}/v2/models/e_out_dims/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape, data: Array.from({ length: shape[0] * shape[1] }, (_, index) => index) }] }),
        headers: { 'content-type': 'application/json' },
      }).then(async (response) => ({ status: response.status, body: await response.json() }));
    const fitting = await infer([2, 4]);
    assert.equal(fitting.status, 200, JSON.stringify(fitting.body));
    assert.deepEqual(fitting.body.outputs[0].shape, [2, 4]);
    const misfit = await infer([1, 5]);
    assert.equal(misfit.status, 500, JSON.stringify(misfit.body));
    assert.match(misfit.body.error, /ensemble 'e_out_dims': its steps produced output 'OUT' as FP32 \[1,5\], but its config declares FP32 \[-1,4\]/);
  });

  test('the load API and the index give the reason', async () => {
    const answer = await fetch(`${explicit.url}/v2/repository/models/e_cycle/load`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.ok(answer.status >= 400);
    assert.match((await answer.json()).error, /steps of ensemble 'e_cycle' form a cycle/);
    const index = await (await fetch(`${explicit.url}/v2/repository/index`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).json();
    assert.match(index.find((row: Json) => row.name === 'e_cycle').reason, /form a cycle/);
  });

  test('loading an ensemble loads its steps, as Triton does; a step unloaded later makes it UNAVAILABLE until the step is back', async () => {
    assert.equal(explicit.server.modelReady('scale3'), false);
    await explicit.server.loadModel('chain_yaml');
    assert.equal(explicit.server.modelReady('scale2'), true);
    assert.equal(explicit.server.modelReady('scale3'), true);
    const request = { inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
    const infer = () =>
      fetch(`${explicit.url}/v2/models/chain_yaml/infer`, { method: 'POST', body: JSON.stringify(request), headers: { 'content-type': 'application/json' } }).then(async (response) => ({
        status: response.status,
        body: await response.json(),
      }));
    assert.deepEqual((await infer()).body.outputs[0].data, [6, 12, 18, 24]);
    await explicit.server.loadModel('outer_chain'); // chain_yaml is its step
    await explicit.server.unloadModel('scale3');
    assert.equal(explicit.server.modelReady('outer_chain'), false, 'an ensemble whose step ensemble lost a step goes too');
    // Not READY while it would fail every request, as in Triton; the index and the answer say which step is missing.
    assert.equal((await fetch(`${explicit.url}/v2/models/chain_yaml/ready`)).status, 400);
    const index = await (await fetch(`${explicit.url}/v2/repository/index`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).json();
    assert.deepEqual(
      index.filter((row: Json) => row.name === 'chain_yaml'),
      [{ name: 'chain_yaml', state: 'UNAVAILABLE', reason: "ensemble 'chain_yaml' contains models that are not available: scale3" }],
    );
    const failed = await infer();
    // Waiting for its step, not failed: refused for now (503), in Triton's words.
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.match(failed.body.error, /Request for unknown model: 'chain_yaml' has no available versions: ensemble 'chain_yaml' contains models that are not available: scale3/);
    // Loading the step brings the ensemble back by itself.
    await explicit.server.loadModel('scale3');
    assert.equal(explicit.server.modelReady('chain_yaml'), true);
    assert.equal(explicit.server.modelReady('outer_chain'), true);
    assert.deepEqual((await infer()).body.outputs[0].data, [6, 12, 18, 24]);
    await explicit.server.unloadModel('outer_chain');
  });

  test('loading an ensemble whose step was unloaded loads the step and the ensemble, nested too, and an unloaded ensemble stays unloaded when its step returns', async () => {
    const settled = <T>(promise: Promise<T>) =>
      Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error('still loading after 20 s: a deadlock')), 20_000))]);
    await explicit.server.loadModel('outer_chain'); // outer_chain → chain_yaml → scale2, scale3
    await explicit.server.unloadModel('scale3');
    assert.equal(explicit.server.modelReady('chain_yaml'), false);
    await settled(explicit.server.loadModel('outer_chain'));
    for (const model of ['scale3', 'chain_yaml', 'outer_chain']) assert.equal(explicit.server.modelReady(model), true, model);
    // An ensemble unloaded while it waited for a step is not brought back by the step's return.
    await explicit.server.unloadModel('scale3');
    await explicit.server.unloadModel('outer_chain');
    await settled(explicit.server.loadModel('scale3'));
    assert.equal(explicit.server.modelReady('chain_yaml'), true, 'the waiting ensemble comes back');
    assert.equal(explicit.server.modelReady('outer_chain'), false, 'the one unloaded by request does not');
  });

  test('unload_dependents unloads an ensemble\'s steps too, except those another loaded ensemble uses; unknown unload parameters are refused', async () => {
    const unload = (model: string, body: unknown) =>
      fetch(`${explicit.url}/v2/repository/models/${model}/unload`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    await explicit.server.loadModel('chain_yaml'); // scale2 → scale3
    await explicit.server.loadModel('scale2_only'); // scale2
    assert.equal(explicit.server.modelReady('scale3'), true);
    const refused = await unload('chain_yaml', { parameters: { unload_dependents: 'yes' } });
    assert.equal(refused.status, 400);
    assert.match((await refused.json()).error, /'unload_dependents' must be true or false/);
    assert.equal((await unload('chain_yaml', { parameters: { colour: 'red' } })).status, 400);
    assert.equal((await unload('chain_yaml', { parameters: { unload_dependents: true } })).status, 200);
    assert.equal(explicit.server.modelReady('chain_yaml'), false);
    assert.equal(explicit.server.modelReady('scale3'), false, 'a step only this ensemble used is unloaded with it');
    assert.equal(explicit.server.modelReady('scale2'), true, 'a step another loaded ensemble uses stays');
    assert.equal(explicit.server.modelReady('scale2_only'), true);
    // Without the parameter only the ensemble goes, as before.
    assert.equal((await unload('scale2_only', { parameters: { unload_dependents: false } })).status, 200);
    assert.equal(explicit.server.modelReady('scale2'), true);
  });
});

describe('a step unloaded or replaced while an ensemble request runs (explicit model control)', () => {
  let explicit: TestServer;
  const post = (model: string) =>
    fetch(`${explicit.url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
      headers: { 'content-type': 'application/json' },
    }).then(async (response) => ({ status: response.status, body: await response.json() }));

  before(async () => {
    explicit = await startTestServer({
      server: { modelControlMode: 'explicit', allowCodeModels: true },
      models: async (repoDir) => {
        await writeModel(repoDir, 'scale2', 1, scaleModel(2), 'max_batch_size: 8\n');
        await writeModel(repoDir, 'scale5', 1, scaleModel(5), 'max_batch_size: 8\n');
        // A JavaScript step that takes 300 ms: the last step is sent only once it answers.
        await writeHandlerModel(
          repoDir,
          'sleepy',
          'max_batch_size: 8\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\noutput [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
          'export function execute(requests) { return requests.map(async (request) => { await new Promise((resolve) => setTimeout(resolve, 300)); return { Y: request.inputs.X }; }); }\n',
        );
        await writeModel(repoDir, 'scaler', 1, scaleModel(1), 'max_batch_size: 8\nversion_policy: { all: {} }\n');
        await writeModel(repoDir, 'scaler', 2, scaleModel(2));
        await writeEnsemble(
          repoDir,
          'pinned',
          ensembleConfig('pinned', {
            outputs: [tensor4('V1'), tensor4('V2')],
            steps: [
              step('scaler', { INPUT0: 'IN' }, { OUTPUT0: 'V1' }).replace('model_version: -1', 'model_version: 1'),
              step('scaler', { INPUT0: 'IN' }, { OUTPUT0: 'V2' }).replace('model_version: -1', 'model_version: 2'),
            ],
          }),
        );
        await writeEnsemble(
          repoDir,
          'ens_sleepy',
          ensembleConfig('ens_sleepy', {
            steps: [step('scale2', { INPUT0: 'IN' }, { OUTPUT0: 'A' }), step('sleepy', { X: 'A' }, { Y: 'B' }), step('scale5', { INPUT0: 'B' }, { OUTPUT0: 'OUT' })],
          }),
        );
      },
    });
  });

  after(async () => {
    await explicit?.close();
  });

  test('requests already accepted finish on the step versions they started with; the unload waits for them, and later requests get 503 until the step is back', async () => {
    await explicit.server.loadModel('ens_sleepy');
    const accepted = [post('ens_sleepy'), post('ens_sleepy')];
    await new Promise((resolve) => setTimeout(resolve, 100));
    // scale5 runs only after sleepy's 300 ms: it is unloaded before these requests reach it.
    const unloaded = explicit.server.unloadModel('scale5');
    for (const answer of await Promise.all(accepted)) {
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.deepEqual(answer.body.outputs[0].data, [10, 20, 30, 40]);
    }
    await unloaded;
    assert.equal(explicit.server.modelReady('scale5'), false);
    assert.equal(explicit.server.modelReady('ens_sleepy'), false);
    const later = await post('ens_sleepy');
    assert.equal(later.status, 503, JSON.stringify(later.body));
    assert.match(later.body.error, /Request for unknown model: 'ens_sleepy' has no available versions: ensemble 'ens_sleepy' contains models that are not available: scale5/);
    await explicit.server.loadModel('scale5');
    assert.equal(explicit.server.modelReady('ens_sleepy'), true);
  });

  test('a step reloaded meanwhile answers them with the version they started with, and the next with the new one', async () => {
    const accepted = [post('ens_sleepy'), post('ens_sleepy')];
    await new Promise((resolve) => setTimeout(resolve, 100));
    await writeModel(explicit.repoDir, 'scale5', 1, scaleModel(7), 'max_batch_size: 8\n');
    const reloaded = explicit.server.loadModel('scale5');
    for (const answer of await Promise.all(accepted)) {
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.deepEqual(answer.body.outputs[0].data, [10, 20, 30, 40]);
    }
    await reloaded;
    assert.deepEqual((await post('ens_sleepy')).body.outputs[0].data, [14, 28, 42, 56]);
  });

  test("an ensemble naming a step's version is UNAVAILABLE once a reload of the step drops that version, and READY when it is back", async () => {
    await explicit.server.loadModel('pinned');
    assert.equal(explicit.server.modelReady('pinned'), true);
    const only2 = { config: JSON.stringify({ max_batch_size: 8, version_policy: { specific: { versions: [2] } } }) };
    await explicit.server.loadModel('scaler', only2);
    assert.equal(explicit.server.modelReady('scaler', '2'), true);
    assert.equal((await fetch(`${explicit.url}/v2/models/pinned/ready`)).status, 400);
    const index = await (await fetch(`${explicit.url}/v2/repository/index`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).json();
    assert.deepEqual(
      index.filter((row: Json) => row.name === 'pinned'),
      [{ name: 'pinned', state: 'UNAVAILABLE', reason: "ensemble 'pinned' contains models that are not available: scaler version 1" }],
    );
    const failed = await post('pinned');
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    await explicit.server.loadModel('scaler', { config: JSON.stringify({ max_batch_size: 8, version_policy: { all: {} } }) });
    assert.equal(explicit.server.modelReady('pinned'), true);
    assert.deepEqual((await post('pinned')).body.outputs.map((output: Json) => output.data[0]), [1, 2]);
  });
});

test("docs/ensembles.md's first example works as written: its step models without configs, its ensemble in pbtxt and in YAML, the answers it shows", async (t) => {
  const doc = await readFile('docs/ensembles.md', 'utf8');
  const pbtxt = /```protobuf\n([\s\S]*?)```/.exec(doc)![1];
  const yaml = /```yaml\n([\s\S]*?)```/.exec(doc)![1];
  const asking = doc.slice(doc.indexOf('## Asking it'), doc.indexOf('## How it runs'));
  const served = await startTestServer({
    models: async (repoDir) => {
      // As the tree shows: FP32 [-1, 4] models, no config.
      for (const [name, factor] of [['double', 2], ['triple', 3], ['quintuple', 5]] as const) await writeModel(repoDir, name, 1, scaleModel(factor));
      await writeEnsemble(repoDir, 'pipeline', pbtxt);
      await mkdir(join(repoDir, 'pipeline_yaml', '1'), { recursive: true });
      await writeFile(join(repoDir, 'pipeline_yaml', 'config.yaml'), yaml);
    },
  });
  t.after(() => served.close());
  for (const model of ['pipeline', 'pipeline_yaml']) {
    assert.equal(served.server.modelReady(model), true, `${model}: ${JSON.stringify(await served.server.repositoryIndex?.())}`);
  }
  // Each curl of the section with the answer commented under it.
  const examples = [...asking.matchAll(/curl -s localhost:8000(\S+)(?: -H '[^']*' \\\n\s+-d '([^']*)')?\n((?:# .*\n)+)/g)];
  assert.equal(examples.length, 3);
  for (const [, path, body, answer] of examples) {
    const expected = JSON.parse(answer.replace(/^# ?/gm, '').replace(/\n/g, ''));
    for (const model of ['pipeline', 'pipeline_yaml']) {
      const response = await fetch(`${served.url}${path.replace('pipeline', model)}`, body ? { method: 'POST', body, headers: { 'content-type': 'application/json' } } : {});
      assert.equal(response.status, 200, path);
      assert.deepEqual(await response.json(), { ...expected, ...(expected.name && { name: model }), ...(expected.model_name && { model_name: model }) }, `${model}: ${path}`);
    }
  }
});
