/**
 * End to end on the bundled, real PaddleOCR models: a real server and HTTP front end on `models/`,
 * a text line rendered with sharp, sent with Triton's binary tensor data extension (and once as
 * plain JSON), CTC-decoded back to the exact text; plus a smoke test of the direction classifier
 * through the classification extension.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { createHttpFrontEnd } from '../src/frontends/http/v2-http.js';
import { createServer } from '../src/server/create-server.js';
import type { Server } from '../src/server/server.js';
import {
  ctcGreedyDecode,
  decodeInferResponse,
  directionInput,
  encodeBinaryInferRequest,
  float32View,
  INFERENCE_HEADER,
  readLabels,
  recognitionInput,
  renderTextLine,
  rotate180,
  type DecodedResponse,
  type Fp32Tensor,
  type RenderOptions,
} from './support/ocr.js';

const MODELS = fileURLToPath(new URL('../models', import.meta.url));
const MODEL_NAMES = ['ocr_detection', 'ocr_direction', 'ocr_recognition'];
const REC_OUTPUT = 'softmax_11.tmp_0';
const DIR_OUTPUT = 'softmax_0.tmp_0';
const CLASSES = 6625;

// Digits, mixed case (KServe, V2) and a '.'; the model reads each one exactly.
const LINES = ['Nereid 2026 serves models', 'KServe V2 Protocol 1024', 'Triton Inference Server 2.41'];
// A tight crop, as the detector would give. With wide white margins (8-16 px at this size) the
// recogniser sometimes reads the empty margin as a leading or trailing space.
const RENDER: RenderOptions = { font: 'DejaVu Sans', dpi: 200, margin: 4 };

let server: Server;
let app: FastifyInstance;
let base: string;
let labels: string[];

function fp32Bytes(tensor: Fp32Tensor): Uint8Array {
  return new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
}

/** POSTs a binary-tensor-data infer request and splits the response. */
async function inferBinary(
  model: string,
  input: Fp32Tensor,
  outputs: { name: string; parameters?: Record<string, unknown> }[],
): Promise<{ response: Response; decoded: DecodedResponse }> {
  const { body, headerLength } = encodeBinaryInferRequest([{ name: 'x', datatype: 'FP32', shape: input.shape, bytes: fp32Bytes(input) }], outputs);
  const response = await fetch(`${base}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', [INFERENCE_HEADER]: String(headerLength) },
    body: new Uint8Array(body),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.equal(response.status, 200, bytes.toString('utf8'));
  return { response, decoded: decodeInferResponse(bytes, response.headers.get(INFERENCE_HEADER)) };
}

/** Recognises one rendered line through the binary extension, checking the wire format on the way. */
async function recogniseBinary(input: Fp32Tensor): Promise<{ text: string; probabilities: Float32Array; steps: number }> {
  const { response, decoded } = await inferBinary('ocr_recognition', input, [{ name: REC_OUTPUT, parameters: { binary_data: true } }]);
  assert.equal(response.headers.get('content-type'), 'application/octet-stream');
  assert.equal(decoded.model_name, 'ocr_recognition');
  assert.equal(decoded.model_version, '1');
  assert.equal(decoded.outputs.length, 1);
  const [output] = decoded.outputs;
  assert.equal(output.name, REC_OUTPUT);
  assert.equal(output.datatype, 'FP32');
  assert.equal(output.data, undefined);
  assert.equal(output.shape.length, 3);
  const [batch, steps, classes] = output.shape;
  assert.equal(batch, 1);
  assert.equal(classes, CLASSES);
  // PP-OCRv4's recogniser downsamples the width by 8: about one time step per 8 columns.
  assert.ok(Math.abs(steps - input.shape[3] / 8) <= 1, `${steps} time steps for width ${input.shape[3]}`);
  assert.equal(output.parameters?.binary_data_size, steps * classes * 4);
  const probabilities = float32View(output.bytes!);
  return { text: ctcGreedyDecode(probabilities, steps, classes, labels), probabilities, steps };
}

describe('OCR end to end on the bundled PaddleOCR models', () => {
  before(async () => {
    server = await (await createServer({ modelRepository: MODELS, logger: pino({ level: 'silent' }) })).start();
    app = createHttpFrontEnd(server);
    base = await app.listen({ host: '127.0.0.1', port: 0 });
    labels = await readLabels(`${MODELS}/ocr_recognition/labels.txt`);
  });

  after(async () => {
    await app?.close();
    await server?.close();
  });

  it('loads all three bundled OCR models and is ready', async () => {
    assert.equal((await fetch(`${base}/v2/health/ready`)).status, 200);
    for (const model of MODEL_NAMES) {
      const response = await fetch(`${base}/v2/models/${model}/ready`);
      assert.equal(response.status, 200, `${model}: ${await response.text()}`);
    }
    // The index is allowed in every control mode (as in Triton); only load/unload need 'explicit'.
    const index = await fetch(`${base}/v2/repository/index`, { method: 'POST', body: '{}' });
    assert.equal(index.status, 200);
    const rows = (await index.json()) as { name: string }[];
    assert.deepEqual(
      rows.filter((row) => MODEL_NAMES.includes(row.name)),
      MODEL_NAMES.map((name) => ({ name, version: '1', state: 'READY', reason: '' })),
    );
  });

  it('has the recogniser labels: blank first, dictionary, space last', () => {
    assert.equal(labels.length, CLASSES);
    assert.equal(labels[0], '<blank>');
    assert.equal(labels[CLASSES - 1], ' ');
  });

  for (const line of LINES) {
    it(`reads "${line}" through the binary tensor data extension`, async () => {
      const input = await recognitionInput(await renderTextLine(line, RENDER));
      assert.deepEqual(input.shape.slice(0, 3), [1, 3, 48]);
      const { text } = await recogniseBinary(input);
      assert.equal(text, line);
    });
  }

  it('a line of width 0, which the config allows but the network cannot run, is 400 with the engine\'s reason, not 500', async () => {
    const response = await fetch(`${base}/v2/models/ocr_recognition/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, 0], data: [] }] }),
    });
    const body = (await response.json()) as { error: string };
    assert.equal(response.status, 400, body.error);
    assert.match(body.error, /the model cannot run on these inputs: .*invalid input shape/i);
  });

  it('a detector input whose sides are not multiples of 32 is refused with the sizes that would do, before the engine runs', async () => {
    const detect = (height: number, width: number) =>
      fetch(`${base}/v2/models/ocr_detection/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, height, width], data: new Array(3 * height * width).fill(0.1) }] }),
      });
    const refused = await detect(40, 64);
    const body = (await refused.json()) as { error: string };
    assert.equal(refused.status, 400, body.error);
    assert.match(body.error, /shape \[1,3,40,64\].*each dim after the batch dimension to be a multiple of \[1, 32, 32\].*dim 2 is 40, try 32 or 64/);
    assert.doesNotMatch(body.error, /dim 3/);
    assert.equal((await detect(32, 64)).status, 200);
  });

  it('reads the same line identically from a plain JSON request', async () => {
    const input = await recognitionInput(await renderTextLine(LINES[0], RENDER));
    const binary = await recogniseBinary(input);

    const response = await fetch(`${base}/v2/models/ocr_recognition/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP32', shape: input.shape, data: Array.from(input.data) }],
        outputs: [{ name: REC_OUTPUT }],
      }),
    });
    const raw = Buffer.from(await response.arrayBuffer());
    assert.equal(response.status, 200, raw.toString('utf8'));
    assert.equal(response.headers.get(INFERENCE_HEADER), null);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    const decoded = decodeInferResponse(raw, null);
    const [output] = decoded.outputs;
    assert.equal(output.datatype, 'FP32');
    assert.deepEqual(output.shape, [1, binary.steps, CLASSES]);
    assert.equal(output.parameters?.binary_data_size, undefined);
    const probabilities = Float32Array.from(output.data as number[]);
    assert.equal(ctcGreedyDecode(probabilities, binary.steps, CLASSES, labels), LINES[0]);
    // The float32 input is the same either way and float32 survives JSON exactly, so on one CPU
    // session the outputs are the same bits: any difference means precision was lost on the wire.
    const firstDifference = probabilities.findIndex((value, index) => value !== binary.probabilities[index]);
    assert.equal(
      firstDifference,
      -1,
      `JSON output differs from binary at ${firstDifference}: ${probabilities[firstDifference]} vs ${binary.probabilities[firstDifference]}`,
    );
  });

  describe('direction classifier (classification extension)', () => {
    const SCORE_LABEL = /^(\d+\.\d{6}):(\d+):(.*)$/;

    async function classify(input: Fp32Tensor): Promise<{ shape: number[]; classes: string[] }> {
      const { response, decoded } = await inferBinary('ocr_direction', input, [{ name: DIR_OUTPUT, parameters: { class_count: 1 } }]);
      // Binary input, JSON output: no binary part in the response.
      assert.equal(response.headers.get(INFERENCE_HEADER), null);
      const [output] = decoded.outputs;
      assert.equal(output.name, DIR_OUTPUT);
      assert.equal(output.datatype, 'BYTES');
      return { shape: output.shape, classes: output.data as string[] };
    }

    function parse(entry: string): { score: number; index: string; label: string } {
      const match = SCORE_LABEL.exec(entry);
      assert.ok(match, `'${entry}' is not score:index:label`);
      return { score: Number(match[1]), index: match[2], label: match[3] };
    }

    for (const line of LINES) {
      it(`calls "${line}" upright (0) and, rotated, upside down (180)`, async () => {
        const image = await renderTextLine(line, RENDER);
        const upright = await classify(await directionInput(image));
        assert.deepEqual(upright.shape, [1, 1]);
        const up = parse(upright.classes[0]);
        assert.deepEqual([up.index, up.label], ['0', '0']);
        assert.ok(up.score > 0.9, `upright score ${up.score}`);

        const rotated = await classify(await directionInput(await rotate180(image)));
        assert.deepEqual(rotated.shape, [1, 1]);
        const down = parse(rotated.classes[0]);
        assert.deepEqual([down.index, down.label], ['1', '180']);
        assert.ok(down.score > 0.9, `rotated score ${down.score}`);
      });
    }

    it('classifies a batch of an upright and a rotated line row by row', async () => {
      const image = await renderTextLine(LINES[1], RENDER);
      const [up, down] = await Promise.all([directionInput(image), rotate180(image).then((rotated) => directionInput(rotated))]);
      const data = new Float32Array(up.data.length * 2);
      data.set(up.data, 0);
      data.set(down.data, up.data.length);
      const result = await classify({ data, shape: [2, ...up.shape.slice(1)] });
      assert.deepEqual(result.shape, [2, 1]);
      assert.deepEqual(
        result.classes.map((entry) => parse(entry).label),
        ['0', '180'],
      );
    });
  });
});
