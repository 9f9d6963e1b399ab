/**
 * Sequence batching over real HTTP and gRPC with a generated stateful model (an accumulator whose
 * state the server carries between a sequence's requests): control inputs, state, START/END, the
 * errors Triton gives, idle release, and several sequences joined in one execution (counted by
 * the model's statistics) with the direct and the oldest strategies.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { accumulatorModel, writeModel } from '../src/onnx/test-models.js';
import { openInferStream, startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer, type TestServer } from './support/test-server.js';

type Json = Record<string, any>;

const controls = (corrid?: string) => `
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY fp32_false_true: [ 0, 1 ] } ] }
    ${corrid ? `, { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: ${corrid} } ] }` : ''}
  ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] initial_state: { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } } ]`;

const config = (name: string, maxBatchSize: number, strategy: string, corrid?: string, extra = '') => `
name: "${name}"
max_batch_size: ${maxBatchSize}
instance_group [ { count: 1 kind: KIND_CPU } ]
sequence_batching {
  ${strategy}
  ${extra}
  ${controls(corrid)}
}`;

const logLines: Json[] = [];
const captured = new Writable({
  write(chunk, _encoding, done) {
    for (const line of String(chunk).split('\n')) if (line) logLines.push(JSON.parse(line));
    done();
  },
});

let server: TestServer;
let rpc: GrpcEndpoint;

before(async () => {
  server = await startTestServer({
    server: { logger: pino({ level: 'info' }, captured) },
    models: async (repo) => {
      const batched = accumulatorModel({ corrid: 'int64' });
      await writeModel(repo, 'acc', 1, batched, config('acc', 4, 'direct { }', 'TYPE_INT64'));
      await writeModel(repo, 'acc_direct_wait', 1, batched, config('acc_direct_wait', 3, 'direct { max_queue_delay_microseconds: 60000000 }', 'TYPE_INT64'));
      await writeModel(repo, 'acc_oldest', 1, batched, config('acc_oldest', 4, 'oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2 ] max_queue_delay_microseconds: 60000000 }', 'TYPE_INT64'));
      await writeModel(repo, 'acc_text', 1, accumulatorModel({ batch: false, corrid: 'string' }), config('acc_text', 0, '', 'TYPE_STRING', 'max_sequence_idle_microseconds: 50000'));
      // START given 0 either way, so that the model keeps the initial state the file holds.
      const fromFile = config('acc_initial', 4, 'direct { }', 'TYPE_INT64')
        .replace('fp32_false_true: [ 0, 1 ] } ] },\n    { name: "END"', 'fp32_false_true: [ 0, 0 ] } ] },\n    { name: "END"')
        .replace('zero_data: true', 'data_file: "ten.bin"');
      await writeModel(repo, 'acc_initial', 1, batched, fromFile, { 'initial_state/ten.bin': new Uint8Array(new Float32Array([10]).buffer) });
      await writeModel(repo, 'acc_text_kept', 1, accumulatorModel({ batch: false, corrid: 'string' }), config('acc_text_kept', 0, '', 'TYPE_STRING'));
      await writeModel(repo, 'acc_no_state', 1, batched, config('acc_no_state', 4, 'direct { }').replace('input_name: "STATE_IN"', 'input_name: "MEMORY"'));
      await writeModel(repo, 'acc_both', 1, batched, `${config('acc_both', 4, 'direct { }')}\ndynamic_batching { }`);
      await writeModel(repo, 'acc_plain', 1, accumulatorModel(), config('acc_plain', 4, 'direct { }'));
      await writeModel(repo, 'acc_u64', 1, accumulatorModel({ corrid: 'uint64' }), config('acc_u64', 4, 'direct { }', 'TYPE_UINT64'));
      // A stateless ensemble over the stateful model: the sequence parameters travel to the step, as in Triton.
      await mkdir(join(repo, 'acc_ensemble', '1'), { recursive: true });
      await writeFile(
        join(repo, 'acc_ensemble', 'config.pbtxt'),
        `platform: "ensemble"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "acc" model_version: -1 input_map { key: "INPUT" value: "X" } output_map { key: "OUTPUT" value: "SUM" } } ] }`,
      );
    },
  });
  rpc = await startGrpcEndpoint(server.server);
});

after(async () => {
  await rpc?.close();
  await server?.close();
});

/** A request of one row; `shape` [1] for the model without a batch dimension. */
function body(value: number, parameters: Json, shape = [1, 1]): Json {
  return { parameters, inputs: [{ name: 'INPUT', datatype: 'FP32', shape, data: [value] }] };
}

async function infer(model: string, request: Json): Promise<{ status: number; body: Json }> {
  const response = await fetch(`${server.url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) });
  return { status: response.status, body: (await response.json()) as Json };
}

async function output(model: string, request: Json, name = 'OUTPUT'): Promise<number[]> {
  const { status, body } = await infer(model, request);
  assert.equal(status, 200, JSON.stringify(body));
  return body.outputs.find((entry: Json) => entry.name === name).data;
}

async function statistics(model: string): Promise<Json> {
  const response = await fetch(`${server.url}/v2/models/${model}/stats`);
  return ((await response.json()) as Json).model_stats[0];
}

describe('sequence batching: config', () => {
  test('a model cannot have both sequence_batching and dynamic_batching', async () => {
    const response = await fetch(`${server.url}/v2/models/acc_both/ready`);
    assert.equal(response.status, 400);
    const index = (await (await fetch(`${server.url}/v2/repository/index`, { method: 'POST' })).json()) as Json[];
    const reason = index.find((entry) => entry.name === 'acc_both')!.reason as string;
    assert.match(reason, /sequence_batching and dynamic_batching cannot both be set/);
  });

  test('control and state inputs must be inputs of the model', async () => {
    const index = (await (await fetch(`${server.url}/v2/repository/index`, { method: 'POST' })).json()) as Json[];
    const reason = index.find((entry) => entry.name === 'acc_no_state')!.reason as string;
    assert.match(reason, /sequence_batching state input 'MEMORY' is not an input of the model \(it has INPUT, STATE_IN, START, END, READY, CORRID\)/);
  });

  test('control and state tensors are neither inputs nor outputs clients see', async () => {
    const metadata = (await (await fetch(`${server.url}/v2/models/acc`)).json()) as Json;
    assert.deepEqual(metadata.inputs.map((input: Json) => input.name), ['INPUT']);
    assert.deepEqual(metadata.outputs.map((output: Json) => output.name).sort(), ['CONTROLS', 'CORRID_OUT', 'OUTPUT']);
  });

  test("gRPC ModelConfig carries sequence_batching as Triton's ModelSequenceBatching: strategy, idle limit, controls, state", async () => {
    const configOf = (name: string) =>
      new Promise<Json>((resolve, reject) => rpc.client.ModelConfig({ name }, (error: grpc.ServiceError | null, answer: Json) => (error ? reject(error) : resolve(answer.config))));
    const oldest = await configOf('acc_oldest');
    assert.equal(oldest.scheduling_choice, 'sequence_batching');
    const batching = oldest.sequence_batching;
    assert.equal(batching.strategy_choice, 'oldest');
    assert.deepEqual(batching.oldest, { max_candidate_sequences: 4, preferred_batch_size: [2], max_queue_delay_microseconds: '60000000', preserve_ordering: false });
    assert.equal(batching.max_sequence_idle_microseconds, '1000000');
    assert.deepEqual(
      batching.control_input.map((input: Json) => [input.name, input.control[0].kind]),
      [['START', 'CONTROL_SEQUENCE_START'], ['END', 'CONTROL_SEQUENCE_END'], ['READY', 'CONTROL_SEQUENCE_READY'], ['CORRID', 'CONTROL_SEQUENCE_CORRID']],
    );
    assert.deepEqual(batching.control_input[0].control[0].fp32_false_true, [0, 1]);
    assert.equal(batching.control_input[3].control[0].data_type, 'TYPE_INT64');
    const [state] = batching.state;
    assert.deepEqual([state.input_name, state.output_name, state.data_type, state.dims], ['STATE_IN', 'STATE_OUT', 'TYPE_FP32', ['1']]);
    assert.equal(state.initial_state[0].state_data, 'zero_data');
    assert.equal(state.initial_state[0].zero_data, true);

    const direct = (await configOf('acc_direct_wait')).sequence_batching;
    assert.equal(direct.strategy_choice, 'direct');
    assert.equal(direct.direct.max_queue_delay_microseconds, '60000000');
    const fromFile = (await configOf('acc_initial')).sequence_batching.state[0].initial_state[0];
    assert.deepEqual([fromFile.state_data, fromFile.data_file], ['data_file', 'ten.bin']);
  });
});

describe('sequence batching: one sequence', () => {
  test('state is carried between requests, START resets it, controls and the correlation id reach the model', async () => {
    const first = await infer('acc', body(5, { sequence_id: 42, sequence_start: true }));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const out = (name: string) => first.body.outputs.find((entry: Json) => entry.name === name).data;
    assert.deepEqual(out('OUTPUT'), [5]);
    assert.deepEqual(out('CONTROLS'), [1, 0, 1], 'START true, END false, READY true');
    assert.deepEqual(out('CORRID_OUT'), [42]);
    assert.equal(first.body.outputs.some((entry: Json) => entry.name === 'STATE_OUT'), false, 'the state output is the server\'s');
    assert.deepEqual(await output('acc', body(3, { sequence_id: 42 })), [8]);
    assert.deepEqual(await output('acc', body(2, { sequence_id: 42 }), 'CONTROLS'), [0, 0, 1]);
    assert.deepEqual(await output('acc', body(1, { sequence_id: 42, sequence_end: true }), 'CONTROLS'), [0, 1, 1]);
    // Ended: the id is unknown again, and a new START begins from the initial state.
    const after = await infer('acc', body(1, { sequence_id: 42 }));
    assert.equal(after.status, 400);
    assert.deepEqual(await output('acc', body(7, { sequence_id: 42, sequence_start: true })), [7]);
    assert.deepEqual(await output('acc', body(1, { sequence_id: 42, sequence_start: true, sequence_end: true })), [1], 'a START mid-sequence resets the state');
  });

  test('an ensemble over a stateful model passes the sequence id and flags to it: the sequence accumulates through the ensemble', async () => {
    const sum = async (value: number, parameters: Json) => {
      const { status, body: answer } = await infer('acc_ensemble', { parameters, inputs: [{ name: 'X', datatype: 'FP32', shape: [1, 1], data: [value] }] });
      assert.equal(status, 200, JSON.stringify(answer));
      return answer.outputs[0].data;
    };
    assert.deepEqual(await sum(5, { sequence_id: 77, sequence_start: true }), [5]);
    assert.deepEqual(await sum(3, { sequence_id: 77 }), [8]);
    assert.deepEqual(await sum(2, { sequence_id: 77, sequence_end: true }), [10]);
    const missing = await infer('acc_ensemble', { inputs: [{ name: 'X', datatype: 'FP32', shape: [1, 1], data: [1] }] });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error, /^ensemble 'acc_ensemble' step 0 \(model 'acc'\): .*must specify a non-zero or non-empty correlation ID/);
  });

  test('requests without a sequence id, or continuing an unknown sequence, are refused as Triton refuses them', async () => {
    const missing = await infer('acc', body(1, {}));
    assert.equal(missing.status, 400);
    assert.match(missing.body.error, /must specify a non-zero or non-empty correlation ID/);
    assert.match(missing.body.error, /'sequence_id'/);
    const unknown = await infer('acc', body(1, { sequence_id: 977 }));
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error, /^inference request for sequence 977 to model 'acc' must specify the START flag on the first request of the sequence/);
    const badFlag = await infer('acc', body(1, { sequence_id: 5, sequence_start: 'yes' }));
    assert.equal(badFlag.status, 400);
    assert.match(badFlag.body.error, /parameter 'sequence_start' must be a boolean \(true or false\), got "yes"/);
    const twoRows = await infer('acc', { parameters: { sequence_id: 6, sequence_start: true }, inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [2, 1], data: [1, 2] }] });
    assert.equal(twoRows.status, 400);
    assert.match(twoRows.body.error, /must specify batch-size 1 due to requirements of sequence batcher.*got 2/);
  });

  test('a state starts from the initial_state data_file', async () => {
    assert.deepEqual(await output('acc_initial', body(1, { sequence_id: 1, sequence_start: true })), [11]);
    assert.deepEqual(await output('acc_initial', body(1, { sequence_id: 1, sequence_end: true })), [12]);
  });

  test('string ids: a separate space from integers, passed to a STRING CORRID; an idle sequence is released and logged', async () => {
    const start = await infer('acc_text', body(2, { sequence_id: 'session-a', sequence_start: true }, [1]));
    assert.equal(start.status, 200, JSON.stringify(start.body));
    assert.deepEqual(start.body.outputs.find((entry: Json) => entry.name === 'CORRID_OUT').data, ['session-a']);
    const integer = await infer('acc', body(1, { sequence_id: 'session-a' }));
    assert.equal(integer.status, 400, 'the integer-id model never saw this string id');
    // Idle past max_sequence_idle_microseconds (50 ms): released, its state freed.
    while (!logLines.some((line) => /sequence 'session-a' of model 'acc_text' version 1 released after/.test(line.msg))) await new Promise((resolve) => setTimeout(resolve, 20));
    const late = await infer('acc_text', body(1, { sequence_id: 'session-a' }, [1]));
    assert.equal(late.status, 400);
    assert.match(late.body.error, /sequence 'session-a' to model 'acc_text' must specify the START flag/);
    // Started again: from the initial state, which the first sequence's run left intact.
    assert.deepEqual(await output('acc_text', body(4, { sequence_id: 'session-a', sequence_start: true, sequence_end: true }, [1])), [4]);
  });

  test('a string id to a model whose CORRID takes integers is refused', async () => {
    const refused = await infer('acc', body(1, { sequence_id: 'text', sequence_start: true }));
    assert.equal(refused.status, 400);
    assert.match(refused.body.error, /takes integer correlation ids .*INT64.*'text'/);
  });
});

describe('sequence batching: 64-bit ids', () => {
  const grpcRequest = (model: string, id: Json, value: number, flags: Json = {}) => ({
    model_name: model,
    parameters: { sequence_id: id, ...flags },
    inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [value] } }],
  });
  const unary = (request: Json) =>
    new Promise<Json>((resolve, reject) => rpc.client.ModelInfer(request, (error: grpc.ServiceError | null, answer: Json) => (error ? reject(error) : resolve(answer))));
  const outputOf = (answer: Json, name: string) => answer.raw_output_contents[answer.outputs.findIndex((entry: Json) => entry.name === name)] as Buffer;
  const valueOf = (answer: Json) => outputOf(answer, 'OUTPUT').readFloatLE(0);
  const start = { sequence_start: { bool_param: true } };
  const end = { sequence_end: { bool_param: true } };

  test('gRPC: an integer id beyond 2^53 stays an integer, a sequence apart from the string of its digits', async () => {
    const big = 2n ** 60n + 5n;
    assert.equal(valueOf(await unary(grpcRequest('acc_plain', { int64_param: String(big) }, 1, start))), 1);
    assert.equal(valueOf(await unary(grpcRequest('acc_plain', { string_param: String(big) }, 100, start))), 100);
    assert.equal(valueOf(await unary(grpcRequest('acc_plain', { uint64_param: String(big) }, 1, end))), 2, 'uint64_param and int64_param name the same integer sequence');
    assert.equal(valueOf(await unary(grpcRequest('acc_plain', { string_param: String(big) }, 1, end))), 101);
    // The largest uint64, and its neighbour as int64 (negative) refused.
    const largest = 2n ** 64n - 1n;
    assert.equal(valueOf(await unary(grpcRequest('acc_plain', { uint64_param: String(largest) }, 3, { ...start, ...end }))), 3);
    await assert.rejects(unary(grpcRequest('acc_plain', { int64_param: '-3' }, 1, start)), (error: grpc.ServiceError) => error.code === grpc.status.INVALID_ARGUMENT && /'sequence_id' must be an integer from 0 \(none\) to 18446744073709551615/.test(error.details));
  });

  test('HTTP: an integer id beyond 2^53 is read exactly, apart from the string of its digits', async () => {
    const big = '1152921504606846981';
    const send = async (id: string, value: number, flags: Json) => {
      const response = await fetch(`${server.url}/v2/models/acc_plain/infer`, {
        method: 'POST',
        body: `{"parameters":{"sequence_id":${id},${Object.keys(flags).map((flag) => `"${flag}":true`).join(',')}},"inputs":[{"name":"INPUT","datatype":"FP32","shape":[1,1],"data":[${value}]}]}`,
      });
      const answer = (await response.json()) as Json;
      assert.equal(response.status, 200, JSON.stringify(answer));
      return answer.outputs[0].data[0] as number;
    };
    assert.equal(await send(big, 1, { sequence_start: true }), 1);
    assert.equal(await send(`"${big}"`, 100, { sequence_start: true }), 100);
    assert.equal(await send(big, 1, { sequence_end: true }), 2);
    assert.equal(await send(`"${big}"`, 1, { sequence_end: true }), 101);
    // 2^53 + 1 would round to 2^53 as a double: a sequence of its own.
    assert.equal(await send('9007199254740993', 5, { sequence_start: true }), 5);
    const rounded = await fetch(`${server.url}/v2/models/acc_plain/infer`, { method: 'POST', body: '{"parameters":{"sequence_id":9007199254740992},"inputs":[{"name":"INPUT","datatype":"FP32","shape":[1,1],"data":[1]}]}' });
    assert.equal(rounded.status, 400, 'no sequence 2^53 was started');
    assert.equal(await send('9007199254740993', 1, { sequence_end: true }), 6);
    const tooBig = await fetch(`${server.url}/v2/models/acc_plain/infer`, { method: 'POST', body: '{"parameters":{"sequence_id":18446744073709551616,"sequence_start":true},"inputs":[{"name":"INPUT","datatype":"FP32","shape":[1,1],"data":[1]}]}' });
    assert.equal(tooBig.status, 400);
    assert.match(((await tooBig.json()) as Json).error, /must be an integer from 1 to 18446744073709551615 \(uint64\).*got 18446744073709551616/);
  });

  test('an INT64 or UINT64 CORRID gets the exact id, over gRPC and HTTP', async () => {
    const id = 2n ** 53n + 1n;
    const answer = await unary({ ...grpcRequest('acc', { int64_param: String(id) }, 1, { ...start, ...end }), outputs: [{ name: 'CORRID_OUT' }] });
    assert.equal(outputOf(answer, 'CORRID_OUT').readBigInt64LE(0), id);
    const largest = 2n ** 63n - 1n;
    const response = await fetch(`${server.url}/v2/models/acc/infer`, {
      method: 'POST',
      body: `{"parameters":{"sequence_id":${largest},"sequence_start":true,"sequence_end":true},"inputs":[{"name":"INPUT","datatype":"FP32","shape":[1,1],"data":[1]}],"outputs":[{"name":"CORRID_OUT"}]}`,
    });
    const text = await response.text();
    assert.equal(response.status, 200, text);
    assert.match(text, /"data":\[9223372036854775807\]/);
    // Beyond INT64: refused by this model, taken by a UINT64 one.
    await assert.rejects(unary(grpcRequest('acc', { uint64_param: String(largest + 1n) }, 1, start)), (error: grpc.ServiceError) => /takes correlation ids up to 9223372036854775807 \(its CORRID control is INT64\)/.test(error.details));
    const unsigned = await unary({ ...grpcRequest('acc_u64', { uint64_param: String(2n ** 64n - 1n) }, 1, { ...start, ...end }), outputs: [{ name: 'CORRID_OUT' }] });
    assert.equal(outputOf(unsigned, 'CORRID_OUT').readBigUInt64LE(0), 2n ** 64n - 1n);
  });

  test('a sequence_id that is neither an integer nor a string is refused over both protocols, whatever the model', async () => {
    for (const model of ['acc_plain', 'acc']) {
      await assert.rejects(unary(grpcRequest(model, { double_param: 5 }, 1, start)), (error: grpc.ServiceError) => error.code === grpc.status.INVALID_ARGUMENT && /invalid value type for 'sequence_id' parameter, expected int64_param, uint64_param or string_param.*got double_param/.test(error.details));
      await assert.rejects(unary(grpcRequest(model, { bool_param: true }, 1, start)), (error: grpc.ServiceError) => error.code === grpc.status.INVALID_ARGUMENT && /got bool_param/.test(error.details));
      for (const id of [1.5, true]) {
        const refused = await infer(model, body(1, { sequence_id: id, sequence_start: true }));
        assert.equal(refused.status, 400);
        assert.match(refused.body.error, /invalid value type for 'sequence_id' parameter, expected an unsigned integer or a string/);
      }
    }
  });
});

describe('sequence batching: several sequences', () => {
  test('direct: sequences keep their slots and run together once the batch is full', async () => {
    const before = (await statistics('acc_direct_wait')).execution_count;
    const ids = [101, 102, 103];
    const starts = await Promise.all(ids.map((id, index) => output('acc_direct_wait', body(index + 1, { sequence_id: id, sequence_start: true }))));
    assert.deepEqual(starts, [[1], [2], [3]]);
    const seconds = await Promise.all(ids.map((id) => output('acc_direct_wait', body(10, { sequence_id: id, sequence_end: true }))));
    assert.deepEqual(seconds, [[11], [12], [13]]);
    const stats = await statistics('acc_direct_wait');
    assert.equal(stats.execution_count - before, 2, 'six requests of three sequences in two executions');
    assert.equal(stats.batch_stats.find((entry: Json) => entry.batch_size === 3)?.compute_infer.count, 2);
  });

  test('oldest: the oldest ready requests of different sequences run together, up to the preferred size', async () => {
    const ids = ['a', 'b', 'c', 'd'];
    const starts = await Promise.all(ids.map((id, index) => output('acc_oldest', body(index, { sequence_id: 200 + index, sequence_start: true }))));
    assert.deepEqual(starts, [[0], [1], [2], [3]]);
    const ends = await Promise.all(ids.map((_, index) => output('acc_oldest', body(100, { sequence_id: 200 + index, sequence_end: true }))));
    assert.deepEqual(ends, [[100], [101], [102], [103]]);
    const stats = await statistics('acc_oldest');
    assert.equal(stats.execution_count, 4, 'eight requests in executions of the preferred size 2');
    assert.deepEqual(stats.batch_stats.map((entry: Json) => entry.batch_size), [2]);
  });

  test('a START beyond the slots waits for a sequence to end, then runs from the initial state', async () => {
    const ids = [301, 302, 303, 304];
    for (const id of ids) assert.deepEqual(await output('acc', body(1, { sequence_id: id, sequence_start: true })), [1]);
    let fifthAnswered = false;
    const fifth = output('acc', body(50, { sequence_id: 305, sequence_start: true })).then((value) => {
      fifthAnswered = true;
      return value;
    });
    // Four slots are taken: the fifth sequence is queued, not refused, while the others go on.
    assert.deepEqual(await output('acc', body(1, { sequence_id: 301 })), [2]);
    assert.equal(fifthAnswered, false);
    assert.deepEqual(await output('acc', body(1, { sequence_id: 302, sequence_end: true })), [2]);
    assert.deepEqual(await fifth, [50]);
    for (const id of [301, 303, 304, 305]) await output('acc', body(0, { sequence_id: id, sequence_end: true }));
  });

  test('gRPC and one gRPC stream: parameters as InferParameter, sequences interleaved on the stream', async () => {
    const grpcRequest = (id: Json, value: number, flags: Json = {}) => ({
      model_name: 'acc',
      parameters: { sequence_id: id, ...flags },
      inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [value] } }],
      outputs: [{ name: 'OUTPUT' }],
    });
    const unary = (request: Json) =>
      new Promise<Json>((resolve, reject) => rpc.client.ModelInfer(request, (error: grpc.ServiceError | null, answer: Json) => (error ? reject(error) : resolve(answer))));
    const valueOf = (answer: Json) => (answer.raw_output_contents[0] as Buffer).readFloatLE(0);
    await unary(grpcRequest({ int64_param: 9001 }, 4, { sequence_start: { bool_param: true } }));
    assert.equal(valueOf(await unary(grpcRequest({ int64_param: 9001 }, 4, { sequence_end: { bool_param: true } }))), 8);
    const text = await unary({ ...grpcRequest({ string_param: 'grpc-session' }, 3, { sequence_start: { bool_param: true } }), model_name: 'acc_text_kept', inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [1], contents: { fp32_contents: [3] } }] });
    assert.equal(valueOf(text), 3);
    assert.equal(valueOf(await unary({ ...grpcRequest({ string_param: 'grpc-session' }, 3, { sequence_end: { bool_param: true } }), model_name: 'acc_text_kept', inputs: [{ name: 'INPUT', datatype: 'FP32', shape: [1], contents: { fp32_contents: [4] } }] })), 7);
    await assert.rejects(unary(grpcRequest({ int64_param: 9002 }, 1)), (error: grpc.ServiceError) => error.code === grpc.status.INVALID_ARGUMENT && /must specify the START flag/.test(error.details));

    const { stream, answers, done } = openInferStream(rpc.client);
    const sessions = [9101, 9102, 9103];
    for (let step = 0; step < 4; step++) {
      for (const id of sessions) {
        const flags = { ...(step === 0 && { sequence_start: { bool_param: true } }), ...(step === 3 && { sequence_end: { bool_param: true } }) };
        stream.write({ ...grpcRequest({ int64_param: id }, id - 9100, flags), id: `${id}-${step}` });
      }
    }
    stream.end();
    await done;
    for (const id of sessions) {
      for (let step = 0; step < 4; step++) {
        const answer = answers.get(`${id}-${step}`)!;
        assert.equal(answer.error_message, '', answer.error_message);
        assert.equal(valueOf(answer.infer_response), (id - 9100) * (step + 1), `sequence ${id} step ${step}`);
      }
    }
  });
});
