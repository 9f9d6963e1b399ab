/**
 * RecordProcessor over a real Server whose model runs on the fake backend: every record form
 * becomes one request and one line carrying its id, a record's own failure stays on its line,
 * a failure of the model or server is thrown, and computeNs is the record's share of the
 * execution it was part of, worked out from the timings the scheduler reported.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { doublerBackend, fakeRepository, rejectsWith, type FakeBackend } from '../../test/support/fake-backend.js';
import type { ExecutionRecord, RequestRecord } from '../core/inference-observer.js';
import { MAX_BYTES_ELEMENTS } from '../core/tensor.js';
import { Server } from '../server/server.js';
import { isErrorLine, type JobRecord } from './job-record.js';
import { recordConcurrency } from './job-options.js';
import { RecordProcessor } from './record-processor.js';

/** Executions of four rows at most, cut at four whenever four are queued, so records sent together run together. */
const CONFIG = 'max_batch_size: 4\ndynamic_batching: { preferred_batch_size: [4] }\n';

interface Setup {
  server: Server;
  backend: FakeBackend;
  processor: RecordProcessor;
  executions: ExecutionRecord[];
  requests: RequestRecord[];
}

async function setup(t: { after: (fn: () => Promise<void>) => void }, config = CONFIG): Promise<Setup> {
  const backend = doublerBackend();
  const executions: ExecutionRecord[] = [];
  const requests: RequestRecord[] = [];
  const server = new Server({
    modelRepository: await fakeRepository(t, { doubler: config }),
    backends: [backend],
    logger: pino({ level: 'silent' }),
    modelControlMode: 'explicit',
    loadModels: ['doubler'],
    observers: [() => ({ onExecution: (record) => executions.push(record), onRequestEnd: (record) => requests.push(record) })],
  });
  t.after(() => server.close());
  await server.start();
  backend.reset(); // the load's calibration runs
  return { server, backend, processor: RecordProcessor.create(server, { model: 'doubler' }), executions, requests };
}

const v2Input = (rows: number[][]) => ({ name: 'INPUT0', datatype: 'FP32', shape: [rows.length, 4], data: rows.flat() });

interface Line {
  id: string | number;
  model_name?: string;
  model_version?: string;
  outputs?: { name: string; datatype: string; shape: number[]; data: number[] }[];
  error: string | null;
}

const parse = (line: string) => JSON.parse(line) as Line;
const outputOf = (line: Line, name = 'OUTPUT0') => line.outputs?.find((output) => output.name === name);

test('a V2 inputs array, an {"inputs"} object, named fields and CSV fields each become one request and a line with their id and outputs', async (t) => {
  const { processor, backend, server } = await setup(t);
  const records: JobRecord[] = [
    { id: 1, json: JSON.stringify([v2Input([[1, 2, 3, 4]])]) },
    { id: 'two', json: JSON.stringify({ inputs: [v2Input([[5, 6, 7, 8]])], outputs: [{ name: 'OUTPUT1' }] }) },
    { id: 3, json: JSON.stringify({ INPUT0: [9, 10, 11, 12] }) },
    { id: 4, fields: { 'INPUT0.0': '13', 'INPUT0.1': '14', 'INPUT0.2': '15', 'INPUT0.3': '16' } },
  ];
  const lines = (await Promise.all(records.map((record) => processor.run(record)))).map((result) => parse(result.line));
  assert.deepEqual(lines.map((line) => [line.id, line.model_name, line.model_version, line.error]), [
    [1, 'doubler', '1', null],
    ['two', 'doubler', '1', null],
    [3, 'doubler', '1', null],
    [4, 'doubler', '1', null],
  ]);
  assert.deepEqual(outputOf(lines[0]), { name: 'OUTPUT0', datatype: 'FP32', shape: [1, 4], data: [2, 4, 6, 8] });
  assert.deepEqual(lines[1].outputs?.map((output) => output.name), ['OUTPUT1'], 'the record asked for OUTPUT1 only');
  assert.deepEqual(outputOf(lines[1], 'OUTPUT1')?.data, [6, 7, 8, 9]);
  assert.deepEqual(outputOf(lines[2])?.data, [18, 20, 22, 24]);
  assert.deepEqual(outputOf(lines[3])?.data, [26, 28, 30, 32]);
  const statistics = server.modelStatistics('doubler').model_stats[0];
  assert.equal(statistics.inference_stats.success.count, 4, 'one request per record');
  assert.deepEqual(backend.rows, [4], "the model's batcher ran them together");
  // The codec reads a V2 line from the job's parse of it: a line of a million values is not parsed a second time.
  const parses = t.mock.method(JSON, 'parse');
  for (const record of records.slice(0, 2)) processor.request(record);
  parses.mock.restore();
  assert.equal(parses.mock.callCount(), 2, 'one parse per V2 line');
});

test("a bad record's line carries its own error while the others succeed", async (t) => {
  const { processor } = await setup(t);
  const records: JobRecord[] = [
    { id: 'good', json: JSON.stringify({ INPUT0: [1, 2, 3, 4] }) },
    { id: 'short', json: JSON.stringify({ INPUT0: [1, 2, 3] }) },
    { id: 'garbled', json: '{"INPUT0": [1, 2' },
    { id: 'unreadable', error: 'cannot read line 4: invalid UTF-8' },
    { id: 'missing', fields: { OTHER: '1' } },
    { id: 'also-good', fields: { INPUT0: '5 6 7 8' } },
  ];
  const results = await Promise.all(records.map((record) => processor.run(record)));
  const lines = results.map((result) => parse(result.line));
  assert.deepEqual(lines.map((line) => line.id), records.map((record) => record.id));
  assert.deepEqual(results.map((result) => isErrorLine(result.line)), [false, true, true, true, true, false]);
  assert.match(lines[1].error!, /input 'INPUT0' expects FP32 \[1,4\]: 4 value\(s\), got 3/);
  assert.match(lines[2].error!, /malformed JSON/);
  assert.equal(lines[3].error, 'cannot read line 4: invalid UTF-8');
  assert.match(lines[4].error!, /the record has no column 'INPUT0' \(the model's inputs: INPUT0; the record has: OTHER\)/);
  assert.deepEqual(outputOf(lines[0])?.data, [2, 4, 6, 8]);
  assert.deepEqual(outputOf(lines[5])?.data, [10, 12, 14, 16]);
  assert.deepEqual(results.filter((result) => isErrorLine(result.line)).map((result) => result.computeNs), [0, 0, 0, 0]);
  // Read once, a V2 line is still held to the BYTES cap from its bytes, before the parse: the cap answers, not the
  // numeric 'id' that the parsed request would refuse first.
  const strings = Array.from({ length: MAX_BYTES_ELEMENTS + 1 }, () => '"a"').join(',');
  const huge = `{"id":5,"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[${MAX_BYTES_ELEMENTS + 1}],"data":[${strings}]}]}`;
  const refused = parse((await processor.run({ id: 'huge', json: huge })).line);
  assert.equal(refused.error, `input 'INPUT0' has ${MAX_BYTES_ELEMENTS + 1} BYTES elements; at most ${MAX_BYTES_ELEMENTS} are accepted per input`);
});

test("an engine failure on a record's data is that record's error line; the next record is served", async (t) => {
  const { processor, backend } = await setup(t);
  // Twice: an internal failure is sent again alone once (it may have been another record's in the batch), and fails again.
  backend.failNext(new Error('NaN in layer 3'));
  backend.failNext(new Error('NaN in layer 3'));
  const failed = parse((await processor.run({ id: 7, json: JSON.stringify({ INPUT0: [1, 2, 3, 4] }) })).line);
  assert.equal(failed.id, 7);
  assert.match(failed.error ?? '', /NaN in layer 3/);
  const next = parse((await processor.run({ id: 8, json: JSON.stringify({ INPUT0: [1, 2, 3, 4] }) })).line);
  assert.deepEqual([next.error, outputOf(next)?.data], [null, [2, 4, 6, 8]]);
  backend.failNext(new Error('the worker thread exited'));
  const recovered = parse((await processor.run({ id: 9, json: JSON.stringify({ INPUT0: [1, 2, 3, 4] }) })).line);
  assert.deepEqual([recovered.error, outputOf(recovered)?.data], [null, [2, 4, 6, 8]], 'a failure once, not on the record alone, is not its own');
});

test("a failure that is not the record's (model unloaded, server closing) is thrown, not written on its line", async (t) => {
  const { processor, server } = await setup(t);
  const record: JobRecord = { id: 1, json: JSON.stringify({ INPUT0: [1, 2, 3, 4] }) };
  await server.unloadModel('doubler');
  await rejectsWith(processor.run(record), 'NOT_FOUND', /unloaded/);
  await server.loadModel('doubler');
  assert.equal(parse((await processor.run(record)).line).error, null, 'served again once reloaded');
  await server.close();
  await rejectsWith(processor.run(record), 'UNAVAILABLE', /shutting down/);
});

test("computeNs is the record's share of its execution: its rows over the batch's rows", async (t) => {
  const { processor, backend, executions, requests } = await setup(t);
  const records: JobRecord[] = [
    { id: 'two-rows', json: JSON.stringify([v2Input([[1, 1, 1, 1], [2, 2, 2, 2]])]) },
    { id: 'one-row', json: JSON.stringify({ INPUT0: [3, 3, 3, 3] }) },
    { id: 'another-row', fields: { INPUT0: '4,4,4,4' } },
  ];
  const results = await Promise.all(records.map((record) => processor.run(record)));
  assert.deepEqual(backend.rows, [4], 'one execution of four rows');
  assert.equal(executions.length, 1);
  assert.deepEqual(requests.map((request) => request.timings?.batchRows), [4, 4, 4]);
  const { computeInputNs, computeInferNs, computeOutputNs } = executions[0].timings;
  const execution = computeInputNs + computeInferNs + computeOutputNs;
  assert.ok(execution > 0, 'the execution took measurable time');
  assert.deepEqual(
    results.map((result) => result.computeNs),
    [(execution * 2) / 4, execution / 4, execution / 4],
  );
});

test('records the model refuses for a full queue are sent again once it has room, and none ends with an error', async (t) => {
  const { processor, backend, requests } = await setup(t, 'max_batch_size: 4\ndynamic_batching: { default_queue_policy: { max_queue_size: 2 } }\n');
  assert.equal(processor.admits, 2 + 4, 'two waiting, and one batch of four running on the one instance');
  const gate = backend.hold();
  // More at once than the model admits, as two chunks of a worker would send.
  const running = Array.from({ length: 12 }, (_, index) => processor.run({ id: index, json: JSON.stringify({ INPUT0: [index, 0, 0, 0] }) }));
  await gate.whenWaiting(1);
  // The first batch goes as its first records arrive; the ones after it find the queue full a few turns later.
  for (let turn = 0; turn < 100 && !requests.some((request) => request.errorCode === 'UNAVAILABLE'); turn++) await new Promise((resolve) => setImmediate(resolve));
  const refusedBeforeOpening = requests.filter((request) => request.errorCode === 'UNAVAILABLE').length;
  gate.open();
  const lines = (await Promise.all(running)).map((result) => parse(result.line));
  assert.ok(refusedBeforeOpening > 0, 'the queue was full while the first batch ran');
  assert.deepEqual(lines.map((line) => line.error), Array(12).fill(null));
  assert.deepEqual(lines.map((line) => outputOf(line)?.data[0]), Array.from({ length: 12 }, (_, index) => 2 * index));
});

test('a job keeps no more records in flight than the model admits, shared by the chunks that feed it', () => {
  const model = { maxBatchSize: 4, admits: 6 };
  assert.equal(recordConcurrency(model), 6, 'four batches would be 16');
  assert.equal(recordConcurrency(model, 3), 3, 'fewer when asked');
  assert.equal(recordConcurrency(model, 100), 6);
  assert.equal(recordConcurrency(model, undefined, 2), 3, 'two chunks at once');
  assert.equal(recordConcurrency({ maxBatchSize: 4, admits: 1024 + 4 }), 16);
  assert.equal(recordConcurrency({ maxBatchSize: 1, admits: 1 }, undefined, 4), 1, 'always one at least');
});

test('a record that asks for binary outputs (binary_data, binary_data_output) still gets one JSON line with its data: the HTTP binary extension has no place in a file', async (t) => {
  const { processor } = await setup(t);
  const record: JobRecord = {
    id: 'binary',
    json: JSON.stringify({
      parameters: { binary_data_output: true },
      inputs: [v2Input([[1, 2, 3, 4]])],
      outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }, { name: 'OUTPUT1' }],
    }),
  };
  const { line } = await processor.run(record);
  assert.doesNotMatch(line, /binary_data/);
  const parsed = parse(line);
  assert.equal(parsed.error, null);
  assert.deepEqual(outputOf(parsed)?.data, [2, 4, 6, 8]);
  assert.deepEqual(outputOf(parsed, 'OUTPUT1')?.data, [2, 3, 4, 5]);
});
