/**
 * Triton's system shared memory extension over HTTP and gRPC, as Triton's own shared-memory tests
 * use it: POSIX shared memory objects (files under /dev/shm, which is what shm_open makes on Linux)
 * registered as regions, tensors read from and written to them by a real server on loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { createSharedMemoryObject, GrpcClient, HttpClient, readSharedMemoryTensor, removeSharedMemoryObject, writeSharedMemoryTensors } from '../src/client/index.js';
import { createGrpcFrontEnd, type GrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { startTestServer, writeSimpleModel, type TestServer } from './support/test-server.js';

type Json = Record<string, any>;
type Client = grpc.Client & Record<string, any>;

const ROW = 16;
const ROW_BYTES = ROW * 4;
const input0 = Int32Array.from({ length: ROW }, (_, index) => index);
const input1 = Int32Array.from({ length: ROW }, () => 1);

/** A shared memory object of `bytes` bytes (what shm_open + ftruncate make), removed after the tests. */
const objects: string[] = [];
async function sharedMemoryObject(bytes: Buffer | number): Promise<{ key: string; path: string }> {
  const name = `nereid-test-${process.pid}-${randomUUID().slice(0, 8)}`;
  const path = `/dev/shm/${name}`;
  await writeFile(path, typeof bytes === 'number' ? Buffer.alloc(bytes) : bytes);
  objects.push(path);
  return { key: `/${name}`, path };
}

const int32Bytes = (values: Int32Array) => Buffer.from(values.buffer, values.byteOffset, values.byteLength);
const int32Of = (bytes: Buffer) => Array.from(new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
const sums = Array.from(input0, (value, index) => value + input1[index]);
const differences = Array.from(input0, (value, index) => value - input1[index]);

async function post(base: TestServer, path: string, body?: unknown): Promise<Response> {
  return fetch(`${base.url}${path}`, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body) });
}

async function expectError(response: Response, status: number, fragments: string[]): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  for (const fragment of fragments) assert.ok(text.includes(fragment), `'${fragment}' not in ${text}`);
}

let shm: TestServer;
let off: TestServer;
let front: GrpcFrontEnd;
let client: Client;
let grpcAddress: string;

before(async () => {
  shm = await startTestServer({ server: { allowClientShm: true }, models: writeSimpleModel });
  off = await startTestServer({ models: writeSimpleModel });
  front = createGrpcFrontEnd(shm.server);
  const port = await front.listen('127.0.0.1', 0);
  grpcAddress = `127.0.0.1:${port}`;
  const { Client: InferenceClient } = loadInferenceProto();
  client = new InferenceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as Client;
});

after(async () => {
  client?.close();
  await front?.close(1000);
  await shm?.close();
  await off?.close();
  for (const path of objects) await rm(path, { force: true });
});

function call<T = Json>(method: string, request: object): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](request, (error: grpc.ServiceError | null, response: T) => (error ? reject(error) : resolve(response)));
  });
}

async function callError(method: string, request: object, code: grpc.status, fragment: string): Promise<void> {
  const error = await call(method, request).then(
    () => assert.fail(`${method} succeeded`),
    (failure: grpc.ServiceError) => failure,
  );
  assert.equal(error.code, code, error.details);
  assert.ok(error.details.includes(fragment), error.details);
}

describe('HTTP', () => {
  test('inputs are read from a registered region and outputs written to one; the answer says where, without data', async () => {
    const inputs = await sharedMemoryObject(Buffer.concat([int32Bytes(input0), int32Bytes(input1)]));
    const outputs = await sharedMemoryObject(2 * ROW_BYTES);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/input_data/register', { key: inputs.key, offset: 0, byte_size: 2 * ROW_BYTES })).status, 200);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/output_data/register', { key: outputs.key, offset: 0, byte_size: 2 * ROW_BYTES })).status, 200);
    const status = (await (await fetch(`${shm.url}/v2/systemsharedmemory/status`)).json()) as Json[];
    assert.deepEqual(
      status.map((region) => region.name).sort(),
      ['input_data', 'output_data'],
    );
    assert.deepEqual(status.find((region) => region.name === 'input_data'), { name: 'input_data', key: inputs.key, offset: 0, byte_size: 2 * ROW_BYTES });

    const response = await post(shm, '/v2/models/simple/infer', {
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, ROW], parameters: { shared_memory_region: 'input_data', shared_memory_byte_size: ROW_BYTES } },
        {
          name: 'INPUT1',
          datatype: 'INT32',
          shape: [1, ROW],
          parameters: { shared_memory_region: 'input_data', shared_memory_byte_size: ROW_BYTES, shared_memory_offset: ROW_BYTES },
        },
      ],
      outputs: [
        { name: 'OUTPUT0', parameters: { shared_memory_region: 'output_data', shared_memory_byte_size: ROW_BYTES } },
        { name: 'OUTPUT1' },
      ],
    });
    const answer = (await response.json()) as Json;
    assert.equal(response.status, 200, JSON.stringify(answer));
    const [output0, output1] = answer.outputs as Json[];
    assert.deepEqual(output0, {
      name: 'OUTPUT0',
      datatype: 'INT32',
      shape: [1, ROW],
      parameters: { shared_memory_region: 'output_data', shared_memory_byte_size: ROW_BYTES },
    });
    assert.deepEqual(output1.data, differences, 'an output not asked for in shared memory is answered in the response');
    assert.deepEqual(int32Of((await readFile(outputs.path)).subarray(0, ROW_BYTES)), sums);

    // The region's status by name; unregistering one leaves the other.
    assert.equal(((await (await fetch(`${shm.url}/v2/systemsharedmemory/region/output_data/status`)).json()) as Json[]).length, 1);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/input_data/unregister')).status, 200);
    assert.deepEqual(((await (await fetch(`${shm.url}/v2/systemsharedmemory/status`)).json()) as Json[]).map((region) => region.name), ['output_data']);
    await expectError(await fetch(`${shm.url}/v2/systemsharedmemory/region/input_data/status`), 404, ["no shared memory region 'input_data'"]);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/never_registered/unregister')).status, 200, 'as Triton: unregistering an unknown name is not an error');
    assert.equal((await post(shm, '/v2/systemsharedmemory/unregister')).status, 200);
    assert.deepEqual(await (await fetch(`${shm.url}/v2/systemsharedmemory/status`)).json(), []);
  });

  test('registration refuses what does not exist, does not fit, or lies outside /dev/shm', async () => {
    const object = await sharedMemoryObject(ROW_BYTES);
    await expectError(await post(shm, '/v2/systemsharedmemory/region/r/register', { key: '/nereid-no-such-object', byte_size: 4 }), 400, [
      "no shared memory object '/nereid-no-such-object'",
    ]);
    for (const [offset, byteSize] of [[0, ROW_BYTES + 1], [1, ROW_BYTES], [ROW_BYTES, 1], [ROW_BYTES + 1, 0]]) {
      await expectError(await post(shm, '/v2/systemsharedmemory/region/r/register', { key: object.key, offset, byte_size: byteSize }), 400, [
        "failed to register shared memory region 'r': invalid args",
        `holds ${ROW_BYTES} bytes`,
        `= ${offset + byteSize}`,
      ]);
    }
    await expectError(await post(shm, '/v2/systemsharedmemory/region/r/register', { key: '/../etc/passwd', byte_size: 4 }), 400, ['POSIX shared memory name']);
    await expectError(await post(shm, '/v2/systemsharedmemory/region/r/register', { offset: 0, byte_size: 4 }), 400, ["needs 'key'"]);
    await expectError(await post(shm, '/v2/systemsharedmemory/region/r/register', { key: object.key, byte_size: -1 }), 400, ["'byte_size' must be a non-negative integer"]);
    // A link under /dev/shm is not followed: it could lead the server to any file it may open.
    const link = `/dev/shm/nereid-test-link-${process.pid}`;
    await symlink('/etc/hostname', link);
    objects.push(link);
    await expectError(await post(shm, '/v2/systemsharedmemory/region/r/register', { key: link.slice('/dev/shm'.length), byte_size: 4 }), 400, ['cannot open']);

    assert.equal((await post(shm, '/v2/systemsharedmemory/region/r/register', { key: object.key, byte_size: ROW_BYTES })).status, 200);
    await expectError(await post(shm, '/v2/systemsharedmemory/region/r/register', { key: object.key, byte_size: ROW_BYTES }), 400, [
      "shared memory region 'r' already in manager",
    ]);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/r/unregister')).status, 200);
  });

  test('a tensor that names a region wrongly is refused before the model runs, with what was expected', async () => {
    const object = await sharedMemoryObject(Buffer.concat([int32Bytes(input0), int32Bytes(input1)]));
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/bad_cases/register', { key: object.key, byte_size: ROW_BYTES })).status, 200);
    const infer = (input0Parameters: Json, outputs?: Json[], input0Extra: Json = {}) =>
      post(shm, '/v2/models/simple/infer', {
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, ROW], parameters: input0Parameters, ...input0Extra },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, ROW], data: Array.from(input1) },
        ],
        outputs,
      });
    const inRegion = { shared_memory_region: 'bad_cases', shared_memory_byte_size: ROW_BYTES };
    await expectError(await infer({ shared_memory_region: 'nowhere', shared_memory_byte_size: ROW_BYTES }), 400, ["no shared memory region 'nowhere'"]);
    // Triton's own shared memory tests look for its words: 'Invalid offset for shared memory region', 'unexpected total byte size'.
    await expectError(await infer({ ...inRegion, shared_memory_offset: 4 }), 400, ["Invalid offset + byte size for shared memory region 'bad_cases'", `its ${ROW_BYTES} bytes`]);
    await expectError(await infer({ ...inRegion, shared_memory_offset: ROW_BYTES }), 400, ["Invalid offset for shared memory region 'bad_cases'"]);
    const hugeOffset = await fetch(`${shm.url}/v2/models/simple/infer`, {
      method: 'POST',
      body: `{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,${ROW}],"parameters":{"shared_memory_region":"bad_cases","shared_memory_byte_size":${ROW_BYTES},"shared_memory_offset":18446744073709551584}}]}`,
    });
    await expectError(hugeOffset, 400, ["Invalid offset for shared memory region 'bad_cases'"]);
    await expectError(await infer({ shared_memory_region: 'bad_cases' }), 400, ['needs shared_memory_byte_size']);
    await expectError(await infer({ ...inRegion, shared_memory_byte_size: 8 }), 400, [`unexpected total byte size 8 for input 'INPUT0', expecting ${ROW_BYTES}`]);
    await expectError(await infer(inRegion, undefined, { data: Array.from(input0) }), 400, ["both shared_memory_region and 'data'"]);
    const output = (parameters: Json) => [{ name: 'OUTPUT0', parameters }];
    await expectError(await infer(inRegion, output({ shared_memory_region: 'bad_cases', shared_memory_byte_size: 8 })), 400, [
      "output 'OUTPUT0' (8 bytes) should be at least 64 bytes",
    ]);
    // Two outputs, the second too small for its answer: neither is written.
    const before = await readFile(object.path);
    const both = await post(shm, '/v2/models/simple/infer', {
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, ROW], data: Array.from(input1) },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, ROW], data: Array.from(input1) },
      ],
      outputs: [
        { name: 'OUTPUT0', parameters: { shared_memory_region: 'bad_cases', shared_memory_byte_size: ROW_BYTES } },
        { name: 'OUTPUT1', parameters: { shared_memory_region: 'bad_cases', shared_memory_byte_size: 8 } },
      ],
    });
    await expectError(both, 400, ["output 'OUTPUT1' (8 bytes) should be at least 64 bytes"]);
    assert.deepEqual(await readFile(object.path), before, 'OUTPUT0 was not written either');
    // A request reads at most 64 MiB from regions together: the input that would pass it is refused before it is read.
    const big = await sharedMemoryObject(0);
    await truncate(big.path, 40 * 1024 * 1024);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/big/register', { key: big.key, byte_size: 40 * 1024 * 1024 })).status, 200);
    const rows = (40 * 1024 * 1024) / ROW_BYTES;
    const tooMuch = await post(shm, '/v2/models/simple/infer', {
      inputs: ['INPUT0', 'INPUT1'].map((name) => ({
        name,
        datatype: 'INT32',
        shape: [rows, ROW],
        parameters: { shared_memory_region: 'big', shared_memory_byte_size: 40 * 1024 * 1024 },
      })),
    });
    await expectError(tooMuch, 400, ["input 'INPUT1': the request's inputs in shared memory take more than the 67108864 bytes one request may read"]);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/big/unregister')).status, 200);
    await expectError(await infer(inRegion, output({ ...inRegion, classification: 2 })), 400, ['shared_memory_region and classification']);
    await expectError(await infer(inRegion, output({ ...inRegion, binary_data: true })), 400, ['shared_memory_region and binary_data']);
    await expectError(await infer(inRegion, output({ shared_memory_region: 'nowhere', shared_memory_byte_size: 64 })), 400, ["no shared memory region 'nowhere'"]);
    // And the region still works afterwards.
    const good = await infer(inRegion);
    assert.equal(good.status, 200, await good.clone().text());
    assert.deepEqual(((await good.json()) as Json).outputs[0].data, sums);
    assert.equal((await post(shm, '/v2/systemsharedmemory/region/bad_cases/unregister')).status, 200);
  });

  test('off by default: registration and tensors that name a region say how to turn it on; metadata lists it only when on', async () => {
    await expectError(await post(off, '/v2/systemsharedmemory/region/r/register', { key: '/x', byte_size: 4 }), 400, ['allowClientShm: true']);
    await expectError(await fetch(`${off.url}/v2/systemsharedmemory/status`), 400, ['allowClientShm: true']);
    await expectError(
      await post(off, '/v2/models/simple/infer', {
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, ROW], parameters: { shared_memory_region: 'r', shared_memory_byte_size: ROW_BYTES } },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, ROW], data: Array.from(input1) },
        ],
      }),
      400,
      ['allowClientShm: true'],
    );
    assert.ok(!((await (await fetch(`${off.url}/v2`)).json()) as Json).extensions.includes('system_shared_memory'));
    assert.ok(((await (await fetch(`${shm.url}/v2`)).json()) as Json).extensions.includes('system_shared_memory'));
    await expectError(await fetch(`${shm.url}/v2/cudasharedmemory/status`), 501, ['CUDA shared memory is not supported']);
    await expectError(await post(shm, '/v2/cudasharedmemory/region/r/register', { raw_handle: { b64: '' }, device_id: 0, byte_size: 4 }), 501, ['system shared memory']);
  });
});

describe('gRPC', () => {
  test('register, infer with one input in shared memory and one raw, an output written to a region, status, unregister', async () => {
    const inputs = await sharedMemoryObject(int32Bytes(input0));
    const outputs = await sharedMemoryObject(2 * ROW_BYTES);
    await call('SystemSharedMemoryRegister', { name: 'grpc_in', key: inputs.key, offset: 0, byte_size: ROW_BYTES });
    await call('SystemSharedMemoryRegister', { name: 'grpc_out', key: outputs.key, offset: ROW_BYTES, byte_size: ROW_BYTES });
    const status = await call('SystemSharedMemoryStatus', {});
    assert.deepEqual(Object.keys(status.regions).sort(), ['grpc_in', 'grpc_out']);
    assert.equal(status.regions.grpc_out.key, outputs.key);
    assert.equal(Number(status.regions.grpc_out.offset), ROW_BYTES);
    assert.equal(Number(status.regions.grpc_out.byte_size), ROW_BYTES);

    const shmParameters = (region: string) => ({
      shared_memory_region: { string_param: region },
      shared_memory_byte_size: { int64_param: ROW_BYTES },
    });
    const response = await call('ModelInfer', {
      model_name: 'simple',
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, ROW], parameters: shmParameters('grpc_in') },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, ROW] },
      ],
      // As Triton's clients send it: one raw entry per input that is not in shared memory.
      raw_input_contents: [int32Bytes(input1)],
      outputs: [{ name: 'OUTPUT0' }, { name: 'OUTPUT1', parameters: shmParameters('grpc_out') }],
    });
    assert.deepEqual(response.outputs.map((output: Json) => output.name), ['OUTPUT0', 'OUTPUT1']);
    assert.deepEqual(int32Of(response.raw_output_contents[0]), sums);
    assert.equal(response.raw_output_contents[1].length, 0, 'an output in shared memory has an empty raw entry, as Triton answers');
    assert.equal(response.outputs[1].parameters.shared_memory_region.string_param, 'grpc_out');
    assert.deepEqual(int32Of((await readFile(outputs.path)).subarray(ROW_BYTES)), differences);

    await callError(
      'ModelInfer',
      {
        model_name: 'simple',
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, ROW], parameters: shmParameters('grpc_in') },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, ROW] },
        ],
        raw_input_contents: [int32Bytes(input0), int32Bytes(input1)],
      },
      grpc.status.INVALID_ARGUMENT,
      'raw_input_contents has 2 entries but the request has 1 inputs outside shared memory',
    );
    await callError('SystemSharedMemoryStatus', { name: 'nowhere' }, grpc.status.NOT_FOUND, "no shared memory region 'nowhere'");
    await callError('SystemSharedMemoryRegister', { name: 'grpc_in', key: inputs.key, byte_size: ROW_BYTES }, grpc.status.INVALID_ARGUMENT, 'already in manager');
    await call('SystemSharedMemoryUnregister', { name: 'grpc_in' });
    assert.deepEqual(Object.keys((await call('SystemSharedMemoryStatus', {})).regions), ['grpc_out']);
    await call('SystemSharedMemoryUnregister', {});
    assert.deepEqual((await call('SystemSharedMemoryStatus', {})).regions, {});
    await callError('CudaSharedMemoryStatus', {}, grpc.status.UNIMPLEMENTED, 'CUDA shared memory is not supported');
  });
});

describe('the bundled clients', () => {
  for (const kind of ['HTTP', 'gRPC'] as const) {
    test(`${kind}: create and fill objects, register them, infer with an input and an output in shared memory, read the output back`, async () => {
      const nereid = kind === 'HTTP' ? new HttpClient({ url: shm.url }) : new GrpcClient({ address: grpcAddress });
      const inputKey = `/nereid-test-client-in-${process.pid}-${kind}`;
      const outputKey = `/nereid-test-client-out-${process.pid}-${kind}`;
      objects.push(`/dev/shm${inputKey}`, `/dev/shm${outputKey}`);
      await createSharedMemoryObject(inputKey, ROW_BYTES);
      await createSharedMemoryObject(outputKey, ROW_BYTES);
      await assert.rejects(createSharedMemoryObject(inputKey, ROW_BYTES), /EEXIST/, 'an existing object is not overwritten');
      assert.deepEqual(await writeSharedMemoryTensors(inputKey, [{ datatype: 'INT32', shape: [1, ROW], data: input0 }]), [ROW_BYTES]);
      await nereid.registerSystemSharedMemory(`client_in_${kind}`, inputKey, ROW_BYTES);
      await nereid.registerSystemSharedMemory(`client_out_${kind}`, outputKey, ROW_BYTES);
      // The same list from both clients, offsets and sizes as numbers.
      assert.deepEqual(await nereid.systemSharedMemoryStatus(), [
        { name: `client_in_${kind}`, key: inputKey, offset: 0, byte_size: ROW_BYTES },
        { name: `client_out_${kind}`, key: outputKey, offset: 0, byte_size: ROW_BYTES },
      ]);
      assert.deepEqual(await nereid.systemSharedMemoryStatus(`client_out_${kind}`), [{ name: `client_out_${kind}`, key: outputKey, offset: 0, byte_size: ROW_BYTES }]);

      const result = await nereid.infer(
        'simple',
        {
          INPUT0: { datatype: 'INT32', shape: [1, ROW], sharedMemory: { region: `client_in_${kind}`, byteSize: ROW_BYTES } },
          INPUT1: { datatype: 'INT32', shape: [1, ROW], data: input1 },
        },
        { sharedMemoryOutputs: { OUTPUT0: { region: `client_out_${kind}`, byteSize: ROW_BYTES } } },
      );
      assert.deepEqual(Array.from(result.outputs.OUTPUT1.data as Int32Array), differences, 'the output not in shared memory comes back as usual');
      const output0 = result.outputs.OUTPUT0;
      assert.deepEqual(output0.sharedMemory, { region: `client_out_${kind}`, byteSize: ROW_BYTES });
      assert.equal(output0.data.length, 0);
      const read = await readSharedMemoryTensor(outputKey, output0, output0.sharedMemory!);
      assert.deepEqual(Array.from(read.data as Int32Array), sums);

      await nereid.unregisterSystemSharedMemory();
      assert.deepEqual(await nereid.systemSharedMemoryStatus(), []);
      await removeSharedMemoryObject(inputKey);
      await removeSharedMemoryObject(outputKey);
      if (nereid instanceof GrpcClient) nereid.close();
    });
  }
});

describe('docs', () => {
  test("docs/triton-compatibility.md's system shared memory example runs as written", async () => {
    const docs = await readFile(new URL('../docs/triton-compatibility.md', import.meta.url), 'utf8');
    const section = docs.slice(docs.indexOf('## System shared memory'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)![1];
    const lines = block.split('\n');
    // The server of the example serves the repository examples/tensors/write-examples.ts writes, where 'simple' is.
    assert.match(lines[0], /^nereid serve --model-repository tensors\/models --allow-client-shm +# simple: npx tsx examples\/tensors\/write-examples\.ts$/);
    const answer = lines.find((line) => line.startsWith('# {'))!.slice(2);
    // Its own server (the region names are the example's) and its own object names (tests may run side by side).
    const own = await startTestServer({ server: { allowClientShm: true }, models: writeSimpleModel });
    const name = `nereid-docs-${process.pid}-${randomUUID().slice(0, 8)}`;
    const [input, output] = [`/dev/shm/${name}-in`, `/dev/shm/${name}-out`];
    objects.push(input, output);
    try {
      // What the model writes shows over what was there (truncate keeps an object's bytes).
      await writeFile(output, Buffer.alloc(ROW_BYTES, 0xff));
      const script = lines
        .slice(1)
        .join('\n')
        .replaceAll('localhost:8000', own.url.replace('http://', ''))
        .replaceAll('/dev/shm/input0', input)
        .replaceAll('/dev/shm/output0', output)
        .replaceAll('"/input0"', `"/${name}-in"`)
        .replaceAll('"/output0"', `"/${name}-out"`);
      const { stdout } = await promisify(execFile)('bash', ['-e', '-c', script.replaceAll('curl -X', 'curl -sf -X')]);
      assert.equal(stdout.split('\n').filter(Boolean).at(-1), answer);
      assert.deepEqual(int32Of(await readFile(output)), new Array(ROW).fill(0), 'INPUT0 + INPUT1 (zeros) written over the 0xff bytes');
    } finally {
      await own.close();
    }
  });
});
