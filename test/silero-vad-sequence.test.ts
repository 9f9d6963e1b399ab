/**
 * A real stateful model through sequence batching: three voice sessions (different sentences
 * spoken by espeak-ng between silences) stream 512-sample chunks to Silero VAD, interleaved, over
 * HTTP and over one gRPC stream. The server carries each session's recurrent state; every chunk's
 * speech probability, and the speech segments found from them, must equal those of running the
 * model in this process session by session with ONNX Runtime.
 *
 * Silero's state is [2, batch, 128]: its batch dimension is the second, while Triton's implicit
 * state (and so Nereid's) puts a row's state on the first. The model is therefore served with
 * max_batch_size 0 and one instance per concurrent session (direct strategy: one slot each).
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { openInferStream, startGrpcEndpoint, type GrpcEndpoint } from './support/grpc-endpoint.js';
import { CHUNK, chunkWithContext, SAMPLE_RATE, session, sileroVadModelPath, speechSegments } from './support/silero-vad.js';
import { startTestServer, type TestServer } from './support/test-server.js';

type Json = Record<string, any>;

const CONFIG = `
name: "silero_vad"
backend: "onnxruntime"
max_batch_size: 0
instance_group [ { count: 3 kind: KIND_CPU } ]
input [ { name: "sr" data_type: TYPE_INT64 dims: [ 1 ] } ]
sequence_batching {
  direct { }
  max_sequence_idle_microseconds: 60000000
  state [ {
    input_name: "state" output_name: "stateN" data_type: TYPE_FP32 dims: [ 2, 1, 128 ]
    initial_state { data_type: TYPE_FP32 dims: [ 2, 1, 128 ] zero_data: true }
  } ]
}`;

const SESSIONS = [
  { id: 71, sentences: ['The quick brown fox jumps over the lazy dog.', 'Please call me back tomorrow morning.'], silences: [0.5, 0.8, 0.5] },
  { id: 72, sentences: ['Nereid serves models over HTTP and gRPC.'], silences: [1.0, 0.7] },
  { id: 73, sentences: ['It is raining again.', 'Bring an umbrella when you leave.'], silences: [0.3, 1.0, 0.6] },
];

const TOLERANCE = 1e-4;
let audio: Float32Array[];
let expected: number[][];
let server: TestServer;
let rpc: GrpcEndpoint;

/** Session by session in this process: the state of each chunk's run is fed to the next, as the package's own runner does. */
async function inProcess(model: string, samples: Float32Array): Promise<number[]> {
  const vad = await ort.InferenceSession.create(model);
  try {
    let state: ort.Tensor = new ort.Tensor('float32', new Float32Array(2 * 128), [2, 1, 128]);
    const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(SAMPLE_RATE)]), []);
    const probabilities: number[] = [];
    for (let index = 0; index < samples.length / CHUNK; index++) {
      const input = chunkWithContext(samples, index);
      const result = await vad.run({ input: new ort.Tensor('float32', input, [1, input.length]), state, sr });
      probabilities.push((result.output.data as Float32Array)[0]);
      state = result.stateN as ort.Tensor;
    }
    return probabilities;
  } finally {
    await vad.release();
  }
}

before(async () => {
  const model = sileroVadModelPath();
  audio = SESSIONS.map((spoken) => session(spoken.sentences, spoken.silences));
  expected = [];
  for (const samples of audio) expected.push(await inProcess(model, samples));
  server = await startTestServer({
    models: async (repo) => {
      await mkdir(join(repo, 'silero_vad', '1'), { recursive: true });
      await copyFile(model, join(repo, 'silero_vad', '1', 'model.onnx'));
      await writeFile(join(repo, 'silero_vad', 'config.pbtxt'), CONFIG);
    },
  });
  rpc = await startGrpcEndpoint(server.server);
});

after(async () => {
  await rpc?.close();
  await server?.close();
});

function flagsOf(index: number, chunks: number): { start: boolean; end: boolean } {
  return { start: index === 0, end: index === chunks - 1 };
}

/** Checks every session against the in-process run; says how close they were and what was found. */
function assertSame(actual: number[][], t: { diagnostic(message: string): void }): void {
  let largest = 0;
  SESSIONS.forEach((spoken, which) => {
    actual[which].forEach((probability, index) => (largest = Math.max(largest, Math.abs(probability - expected[which][index]))));
    assert.equal(actual[which].length, expected[which].length);
    actual[which].forEach((probability, index) => {
      assert.ok(Math.abs(probability - expected[which][index]) <= TOLERANCE, `session ${spoken.id} chunk ${index}: ${probability} served, ${expected[which][index]} in process`);
    });
    const segments = speechSegments(actual[which]);
    assert.deepEqual(segments, speechSegments(expected[which]), `session ${spoken.id}: speech segments`);
    // Real speech was heard, and nothing in the leading silence.
    assert.ok(segments.length >= 1, `session ${spoken.id} found speech`);
    assert.ok(segments[0][0] * CHUNK >= (spoken.silences[0] * SAMPLE_RATE) / 2, `session ${spoken.id}: no speech in the first silence`);
    t.diagnostic(`session ${spoken.id}: ${actual[which].length} chunks, speech in chunks ${segments.map(([first, last]) => `${first}-${last}`).join(', ')}`);
  });
  t.diagnostic(`largest difference from the in-process run: ${largest.toExponential(2)}`);
}

describe('Silero VAD: three interleaved sessions through sequence batching', () => {
  test('the sessions are different audio, and the model finds speech in each', () => {
    assert.notDeepEqual(expected[0].slice(0, 40), expected[1].slice(0, 40));
    for (const probabilities of expected) assert.ok(probabilities.some((probability) => probability > 0.5));
  });

  test('over HTTP: three sessions at once, each chunk after the previous answer of its session', async (t) => {
    const served = await Promise.all(
      SESSIONS.map(async (spoken, which) => {
        const chunks = audio[which].length / CHUNK;
        const probabilities: number[] = [];
        for (let index = 0; index < chunks; index++) {
          const { start, end } = flagsOf(index, chunks);
          const response = await fetch(`${server.url}/v2/models/silero_vad/infer`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              parameters: { sequence_id: spoken.id, sequence_start: start, sequence_end: end },
              inputs: [
                { name: 'input', datatype: 'FP32', shape: [1, CHUNK + 64], data: [...chunkWithContext(audio[which], index)] },
                { name: 'sr', datatype: 'INT64', shape: [1], data: [SAMPLE_RATE] },
              ],
              outputs: [{ name: 'output' }],
            }),
          });
          const answer = (await response.json()) as Json;
          assert.equal(response.status, 200, JSON.stringify(answer));
          assert.deepEqual(answer.outputs.map((output: Json) => output.name), ['output'], 'the state stays on the server');
          probabilities.push(answer.outputs[0].data[0]);
        }
        return probabilities;
      }),
    );
    assertSame(served, t);
  });

  test('over one gRPC stream (ModelStreamInfer): every chunk of the three sessions written at once, round robin', async (t) => {
    const { stream, answers, done } = openInferStream(rpc.client);
    const chunks = audio.map((samples) => samples.length / CHUNK);
    const sr = Buffer.alloc(8);
    sr.writeBigInt64LE(BigInt(SAMPLE_RATE));
    for (let index = 0; index < Math.max(...chunks); index++) {
      SESSIONS.forEach((spoken, which) => {
        if (index >= chunks[which]) return;
        const { start, end } = flagsOf(index, chunks[which]);
        const input = chunkWithContext(audio[which], index);
        stream.write({
          model_name: 'silero_vad',
          id: `${spoken.id}/${index}`,
          parameters: { sequence_id: { int64_param: spoken.id }, sequence_start: { bool_param: start }, sequence_end: { bool_param: end } },
          inputs: [
            { name: 'input', datatype: 'FP32', shape: [1, input.length] },
            { name: 'sr', datatype: 'INT64', shape: [1] },
          ],
          raw_input_contents: [Buffer.from(input.buffer, input.byteOffset, input.byteLength), sr],
          outputs: [{ name: 'output' }],
        });
      });
    }
    stream.end();
    await done;
    const served = SESSIONS.map((spoken, which) =>
      Array.from({ length: chunks[which] }, (_, index) => {
        const answer = answers.get(`${spoken.id}/${index}`);
        assert.ok(answer, `an answer to ${spoken.id}/${index}`);
        assert.equal(answer.error_message, '', answer.error_message);
        return (answer.infer_response.raw_output_contents[0] as Buffer).readFloatLE(0);
      }),
    );
    assertSame(served, t);
  });
});
