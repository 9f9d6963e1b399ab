/**
 * A reload under continuous load, on a real server over HTTP: closed-loop clients keep sending while
 * version 2 is written and loaded through the load API (explicit mode, default `latest` policy, so
 * version 1 goes once 2 is ready). The new version loads and warms beside the old one (its config
 * asks for warmup runs, which keep the load busy while traffic flows). Asserted: no request fails;
 * each client's answers come from version 1, then from version 2, switching exactly once; and no
 * request sent after some client saw version 2 is answered by version 1. Figures (requests, p99
 * before / during / after the load) are printed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer } from './support/test-server.js';

const CLIENTS = 4;
/** Requests answered before the load starts, and after it ends, per phase across clients. */
const SETTLE = 200;
/** A bound on the whole run, whatever happens to the load. */
const MAX_REQUESTS = 50_000;

const CONFIG = `
name: "scale"
platform: "onnxruntime_onnx"
max_batch_size: 8
model_warmup [{ name: "busy" batch_size: 8 count: 300 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [4] zero_data: true } } }]
`;

type Phase = 'before' | 'during' | 'after';

interface Answer {
  client: number;
  phase: Phase;
  sentAt: number;
  ms: number;
  status: number;
  version?: string;
  factor?: number;
  error?: string;
}

function p99(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? NaN;
}

test('a reload under continuous load fails no request, and each client sees version 1 then version 2, switching once', async (t) => {
  const served = await startTestServer({
    models: (repo) => writeModel(repo, 'scale', 1, scaleModel(1), CONFIG),
    server: { modelControlMode: 'explicit', loadModels: ['scale'] },
  });
  t.after(() => served.close());
  const { url, repoDir } = served;

  let phase: Phase = 'before';
  let firstV2At = Infinity;
  const answers: Answer[] = [];
  const counted = (which: Phase) => answers.filter((answer) => answer.phase === which).length;
  const finished = () => answers.length >= MAX_REQUESTS || (phase === 'after' && counted('after') >= SETTLE);

  const client = async (index: number) => {
    while (!finished()) {
      const sentAt = performance.now();
      const sentIn = phase;
      const response = await fetch(`${url}/v2/models/scale/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }),
      });
      const body = (await response.json()) as { model_version?: string; outputs?: { data: number[] }[]; error?: string };
      const answer: Answer = { client: index, phase: sentIn, sentAt, ms: performance.now() - sentAt, status: response.status, version: body.model_version, factor: body.outputs?.[0].data[0], error: body.error };
      if (answer.version === '2') firstV2At = Math.min(firstV2At, performance.now());
      answers.push(answer);
    }
  };

  const swap = async () => {
    while (counted('before') < SETTLE) await new Promise((resolve) => setTimeout(resolve, 5));
    await writeModel(repoDir, 'scale', 2, scaleModel(2));
    phase = 'during';
    const response = await fetch(`${url}/v2/repository/models/scale/load`, { method: 'POST', body: '{}' });
    assert.equal(response.status, 200, await response.text());
    phase = 'after';
  };

  await Promise.all([swap(), ...Array.from({ length: CLIENTS }, (_, index) => client(index))]);

  const failed = answers.filter((answer) => answer.status !== 200);
  const figures = (['before', 'during', 'after'] as const).map((which) => {
    const own = answers.filter((answer) => answer.phase === which);
    return `${which}: ${own.length} requests, p99 ${p99(own.map((answer) => answer.ms)).toFixed(1)} ms`;
  });
  console.log(`swap under load: ${answers.length} requests, ${failed.length} failed; ${figures.join('; ')}`);

  assert.deepEqual(failed.slice(0, 5).map((answer) => `${answer.status} ${answer.error}`), [], `${failed.length} requests failed`);
  assert.ok(counted('during') > 0, 'requests were answered while the new version loaded');
  for (const answer of answers) assert.equal(answer.factor, Number(answer.version), 'the answer is the named version\'s');
  for (let index = 0; index < CLIENTS; index++) {
    const versions = answers.filter((answer) => answer.client === index).map((answer) => answer.version);
    const switches = versions.filter((version, at) => at > 0 && version !== versions[at - 1]).length;
    assert.equal(versions[0], '1', `client ${index} starts on version 1`);
    assert.equal(versions.at(-1), '2', `client ${index} ends on version 2`);
    assert.equal(switches, 1, `client ${index} switches once: ${versions.join('')}`);
  }
  const lateOld = answers.filter((answer) => answer.version === '1' && answer.sentAt > firstV2At);
  assert.equal(lateOld.length, 0, 'no request sent after version 2 answered went to version 1');
});
