/**
 * The bundled OCR pipeline (`ocr`) end to end: a real server on `models/` started in explicit mode
 * with only `ocr` named (its three step models load with it), the HTTP front end, real ONNX
 * Runtime. Photos go in as Triton's raw binary request (the body is the one BYTES element): pages
 * of rendered lines, on white, upside down and on a noisy background, read with character accuracy
 * of 95 % or better, and a large JPEG of a page turned 8°; a scanned book page from scikit-image; a blank image gives no lines; a body
 * that is no image, or one too large, is a 400 that says so. The step models' statistics show the
 * lines going through their batchers, and a batch job over a folder writes each file's text.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import sharp from 'sharp';
import { backendInstanceContract, TEST_INSTANCE_OPTIONS } from '../src/backends/backend-instance.case.js';
import type { CompletedModelConfig } from '../src/config/model-config.js';
import { bytesElements } from '../src/core/datatype.js';
import { imageDecodeSlots } from '../src/core/decode-slots.js';
import type { Tensor } from '../src/core/tensor.js';
import { editDistance } from '../src/core/edit-distance.js';
import { normaliseText } from '../src/eval/output-comparison.js';
import { createHttpFrontEnd } from '../src/frontends/http/v2-http.js';
import { runLocalBatchJob } from '../src/jobs/local-batch-job.js';
import { BuiltinBackend } from '../src/pipelines/builtin-backend.js';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { Tracing } from '../src/observability/tracing.js';
import { createServer } from '../src/server/create-server.js';
import type { Server } from '../src/server/server.js';
import { runCli } from './support/cli-server.js';
import { decodeBytesTensor, decodeInferResponse, INFERENCE_HEADER, renderTextLine } from './support/ocr.js';

const MODELS = fileURLToPath(new URL('../models', import.meta.url));
const SKIMAGE = '/usr/lib/python3/dist-packages/skimage/data';

const PAGE = ['Nereid reads photos of text', 'Each line comes back with its box', 'KServe V2 and Triton clients 2026'];
const NOISY = ['Speckles do not hide the words', 'Grey noise behind 42 letters'];

const spans = new InMemorySpanExporter();
const tracing = new Tracing({ exporter: spans, processor: 'simple' });
let server: Server;
let app: FastifyInstance;
let base: string;

interface OcrAnswer {
  status: number;
  error?: string;
  text: string[];
  boxes: number[][][];
  scores: number[];
  timings: Record<string, number>;
}

/** POSTs one encoded image as the body (Content-Type image/*) and reads the JSON answer. */
async function ocr(image: Buffer | Uint8Array): Promise<OcrAnswer> {
  const response = await fetch(`${base}/v2/models/ocr/infer`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(image) });
  const body = (await response.json()) as { error?: string; outputs?: { name: string; shape: number[]; data: unknown[] }[] };
  if (!body.outputs) return { status: response.status, error: body.error, text: [], boxes: [], scores: [], timings: {} };
  const output = (name: string) => body.outputs!.find((candidate) => candidate.name === name)!;
  const corners = output('boxes').data as number[];
  const boxes = Array.from({ length: output('boxes').shape[0] }, (_, line) => Array.from({ length: 4 }, (_, corner) => corners.slice(line * 8 + corner * 2, line * 8 + corner * 2 + 2)));
  return {
    status: response.status,
    text: output('text').data as string[],
    boxes,
    scores: output('scores').data as number[],
    timings: JSON.parse((output('timings').data as string[])[0]) as Record<string, number>,
  };
}

/** 1 - edits / expected characters, over the lines joined (whitespace normalised). */
function characterAccuracy(read: readonly string[], expected: readonly string[]): number {
  const want = expected.map(normaliseText).join('\n');
  const got = read.map(normaliseText).join('\n');
  return 1 - editDistance(want, got) / [...want].length;
}

/** A deterministic pseudo-random sequence (mulberry32), so the noisy page is the same every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Lines rendered black on white, stacked with gaps on a page (white, or light grey noise), as PNG. */
async function renderPage(lines: readonly string[], options: { noise?: boolean; rotate?: number } = {}): Promise<Buffer> {
  const rendered = await Promise.all(lines.map((line) => renderTextLine(line, { margin: 4 })));
  const width = Math.max(...rendered.map((line) => line.width)) + 80;
  const gap = 30;
  const height = rendered.reduce((sum, line) => sum + line.height + gap, gap) + 20;
  let top = gap;
  const placed = rendered.map((line) => {
    const at = { input: line.data, raw: { width: line.width, height: line.height, channels: 3 as const }, top, left: 40, blend: 'multiply' as const };
    top += line.height + gap;
    return at;
  });
  const next = random(18);
  const background = Buffer.alloc(width * height * 3, 255);
  if (options.noise) for (let index = 0; index < background.length; index++) background[index] = 150 + Math.floor(next() * 106);
  const page = await sharp(background, { raw: { width, height, channels: 3 } }).composite(placed).png().toBuffer();
  return options.rotate ? sharp(page).rotate(options.rotate).png().toBuffer() : page;
}

describe('the bundled OCR pipeline', () => {
  before(async () => {
    server = await (
      // A 1 ms queue-wait limit: a page's lines, sent to the recogniser together, must not refuse each other as a backlog.
      await createServer({ modelRepository: MODELS, modelControlMode: 'explicit', loadModels: ['ocr'], maxQueueWaitMs: 1, observers: [tracing.observer], logger: pino({ level: 'silent' }) })
    ).start();
    app = createHttpFrontEnd(server);
    base = await app.listen({ host: '127.0.0.1', port: 0 });
  });

  after(async () => {
    await app?.close();
    await server?.close();
    await tracing.shutdown();
  });

  it('loads without --allow-code-models, its three step models with it', async () => {
    for (const model of ['ocr', 'ocr_detection', 'ocr_direction', 'ocr_recognition']) {
      const response = await fetch(`${base}/v2/models/${model}/ready`);
      assert.equal(response.status, 200, `${model}: ${await response.text()}`);
    }
    const metadata = (await (await fetch(`${base}/v2/models/ocr`)).json()) as { inputs: unknown[]; outputs: unknown[] };
    assert.deepEqual(metadata.inputs, [{ name: 'image', datatype: 'BYTES', shape: [1] }]);
    assert.deepEqual(metadata.outputs, [
      { name: 'text', datatype: 'BYTES', shape: [-1] },
      { name: 'boxes', datatype: 'FP32', shape: [-1, 4, 2] },
      { name: 'scores', datatype: 'FP32', shape: [-1] },
      { name: 'timings', datatype: 'BYTES', shape: [1] },
    ]);
  });

  it('reads several lines of a page in order, each with a box around it and a confidence', async () => {
    const page = await renderPage(PAGE);
    const { width, height } = await sharp(page).metadata();
    const answer = await ocr(page);
    assert.equal(answer.status, 200, answer.error);
    assert.equal(answer.text.length, PAGE.length, JSON.stringify(answer.text));
    const accuracy = characterAccuracy(answer.text, PAGE);
    assert.ok(accuracy >= 0.95, `character accuracy ${accuracy}: ${JSON.stringify(answer.text)}`);
    for (const [line, box] of answer.boxes.entries()) {
      const [topLeft, topRight, bottomRight, bottomLeft] = box;
      assert.ok(topLeft[0] < topRight[0] && bottomLeft[0] < bottomRight[0] && topLeft[1] < bottomLeft[1], `box ${line} is clockwise from the top-left: ${JSON.stringify(box)}`);
      for (const [x, y] of box) assert.ok(x >= 0 && x < width! && y >= 0 && y < height!, `corner ${x},${y} is inside the ${width}×${height} image`);
      if (line > 0) assert.ok(topLeft[1] > answer.boxes[line - 1][0][1], 'lines come top to bottom');
    }
    for (const score of answer.scores) assert.ok(score > 0.5 && score <= 1, `score ${score}`);
    for (const phase of ['decode_ms', 'detection_ms', 'boxes_ms', 'crop_ms', 'direction_ms', 'recognition_ms', 'total_ms']) {
      assert.equal(typeof answer.timings[phase], 'number', `timings has ${phase}: ${JSON.stringify(answer.timings)}`);
    }
    assert.ok(answer.timings.total_ms >= answer.timings.recognition_ms);
  });

  it('reads a page turned upside down: each line is turned back, and the lines come in the order they now stand', async () => {
    const answer = await ocr(await renderPage(PAGE.slice(0, 2), { rotate: 180 }));
    assert.equal(answer.status, 200, answer.error);
    const accuracy = characterAccuracy(answer.text, PAGE.slice(0, 2).reverse());
    assert.ok(accuracy >= 0.95, `character accuracy ${accuracy}: ${JSON.stringify(answer.text)}`);
  });

  it('reads a large JPEG of the page turned 8°: the boxes turn with the lines, and each is straightened before it is read', async () => {
    const turned = await sharp(await renderPage(PAGE)).rotate(8, { background: '#ffffff' }).png().toBuffer();
    const photo = await sharp(turned).resize({ width: 3000 }).jpeg({ quality: 85 }).toBuffer();
    const answer = await ocr(photo);
    assert.equal(answer.status, 200, answer.error);
    const accuracy = characterAccuracy(answer.text, PAGE);
    assert.ok(accuracy >= 0.95, `character accuracy ${accuracy}: ${JSON.stringify(answer.text)}`);
    // Turned clockwise, a line's right end stands lower than its left.
    for (const [topLeft, topRight] of answer.boxes) assert.ok(topRight[1] - topLeft[1] > 0.1 * (topRight[0] - topLeft[0]), JSON.stringify(answer.boxes));
  });

  it('reads lines on a noisy background', async () => {
    const answer = await ocr(await renderPage(NOISY, { noise: true }));
    assert.equal(answer.status, 200, answer.error);
    const accuracy = characterAccuracy(answer.text, NOISY);
    assert.ok(accuracy >= 0.95, `character accuracy ${accuracy}: ${JSON.stringify(answer.text)}`);
  });

  it('reads a scanned book page (scikit-image page.png)', async () => {
    const answer = await ocr(await readFile(`${SKIMAGE}/page.png`));
    assert.equal(answer.status, 200, answer.error);
    const words = answer.text.join(' ');
    // Words checked by looking at the scan.
    for (const word of ['Region-based', 'segmentation', 'Let us first determine markers of the coins and the', 'histogram of grey values']) assert.match(words, new RegExp(word), `"${word}" in ${JSON.stringify(answer.text)}`);
  });

  it("Triton's raw binary request (the body is the image, Inference-Header-Content-Length: 0) is answered in binary", async () => {
    const response = await fetch(`${base}/v2/models/ocr/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', [INFERENCE_HEADER]: '0' },
      body: new Uint8Array(await renderPage(PAGE.slice(0, 1))),
    });
    assert.equal(response.status, 200);
    const decoded = decodeInferResponse(Buffer.from(await response.arrayBuffer()), response.headers.get(INFERENCE_HEADER));
    const text = decodeBytesTensor(decoded.outputs.find((output) => output.name === 'text')!.bytes!);
    assert.ok(characterAccuracy(text, PAGE.slice(0, 1)) >= 0.95, JSON.stringify(text));
  });

  it("with a traceparent, the pipeline's span joins the client's trace and each step model's request is its child", async () => {
    const traceId = '0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c';
    const clientSpan = 'c1c1c1c1c1c1c1c1';
    const response = await fetch(`${base}/v2/models/ocr/infer`, {
      method: 'POST',
      headers: { 'content-type': 'image/png', traceparent: `00-${traceId}-${clientSpan}-01` },
      body: new Uint8Array(await renderPage(PAGE.slice(0, 2))),
    });
    assert.equal(response.status, 200);
    const traced = spans.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    const pipeline = traced.filter((span) => span.name === 'infer ocr');
    assert.equal(pipeline.length, 1);
    assert.equal(pipeline[0].parentSpanContext?.spanId, clientSpan);
    const count = (name: string) => traced.filter((span) => span.name === name && span.parentSpanContext?.spanId === pipeline[0].spanContext().spanId).length;
    assert.deepEqual(
      ['ocr_detection', 'ocr_direction', 'ocr_recognition'].map((model) => count(`infer ${model}`)),
      [1, 2, 2],
      traced.map((span) => span.name).join(', '),
    );
  });

  it('a blank image has no lines', async () => {
    const blank = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#ffffff' } }).jpeg().toBuffer();
    const answer = await ocr(blank);
    assert.equal(answer.status, 200, answer.error);
    assert.deepEqual(answer.text, []);
    assert.deepEqual(answer.boxes, []);
    assert.deepEqual(answer.scores, []);
  });

  it('a body that is no image, an empty one and one of too many pixels are 400s that say what was expected', async () => {
    const garbage = await ocr(Buffer.from('this is not a photo'));
    assert.equal(garbage.status, 400);
    assert.match(garbage.error!, /input 'image' must be one encoded image, but it is not an image in a supported format \(JPEG, PNG/);
    const empty = await ocr(Buffer.alloc(0));
    assert.equal(empty.status, 400);
    const huge = await ocr(await sharp({ create: { width: 6500, height: 6500, channels: 3, background: '#ffffff' } }).png().toBuffer());
    assert.equal(huge.status, 400, huge.error);
    assert.match(huge.error!, /40000000 .*max_pixels/);
  });

  it("decodes its photo in one of the process's decode slots: it waits while the server's decodes hold them all, and a photo whose client left while it waited is never decoded", async () => {
    const blank = await sharp({ create: { width: 64, height: 32, channels: 3, background: '#ffffff' } }).png().toBuffer();
    for (let held = 0; held < imageDecodeSlots.size; held++) await imageDecodeSlots.take(undefined);
    let given = 0;
    const giveOne = () => (given++ < imageDecodeSlots.size ? imageDecodeSlots.give() : undefined);
    try {
      const leaving = new AbortController();
      let answered = false;
      const request = fetch(`${base}/v2/models/ocr/infer`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(blank), signal: leaving.signal }).then(
        () => (answered = true),
        () => undefined,
      );
      while (imageDecodeSlots.queued === 0 && !answered) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(answered, false, 'the photo was decoded and answered although every decode slot was taken');
      const failures = async () =>
        ((await (await fetch(`${base}/v2/models/ocr/stats`)).json()) as { model_stats: { inference_stats: { fail: { count: number } } }[] }).model_stats[0].inference_stats.fail.count;
      const failedBefore = await failures();
      leaving.abort();
      await request;
      // Once the server has answered the request CANCELLED, the slot handed to it comes straight back: its photo is not decoded.
      for (let tries = 0; tries < 200 && (await failures()) === failedBefore; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
      giveOne();
      for (let tries = 0; tries < 200 && imageDecodeSlots.busy === imageDecodeSlots.size; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(imageDecodeSlots.queued, 0);
      assert.equal(imageDecodeSlots.busy, imageDecodeSlots.size - 1);
      while (given < imageDecodeSlots.size) giveOne();
      const next = await ocr(blank);
      assert.equal(next.status, 200, next.error);
    } finally {
      while (given < imageDecodeSlots.size) giveOne();
    }
  });

  it('the step models count the calls, and the recogniser batched lines together', async () => {
    const stats = async (model: string) =>
      ((await (await fetch(`${base}/v2/models/${model}/stats`)).json()) as { model_stats: { inference_count: number; execution_count: number }[] }).model_stats[0];
    const ocrStats = await stats('ocr');
    const detection = await stats('ocr_detection');
    const recognition = await stats('ocr_recognition');
    assert.ok(ocrStats.inference_count >= 5, JSON.stringify(ocrStats));
    // Every image that decoded went through the detector once.
    assert.ok(detection.inference_count >= 5 && detection.inference_count <= ocrStats.inference_count, JSON.stringify(detection));
    assert.ok(recognition.inference_count >= PAGE.length + 2 + NOISY.length, JSON.stringify(recognition));
    assert.ok(recognition.execution_count < recognition.inference_count, `lines shared executions: ${JSON.stringify(recognition)}`);
  });

  it('nereid batch over a folder of photos writes each file\'s text', async (t) => {
    const folder = await mkdtemp(join(tmpdir(), 'nereid-ocr-batch-'));
    t.after(() => rm(folder, { recursive: true, force: true }));
    await mkdir(join(folder, 'photos'));
    await writeFile(join(folder, 'photos', 'page.png'), await renderPage(PAGE.slice(0, 1)));
    await writeFile(join(folder, 'photos', 'broken.jpg'), 'not a jpeg');
    const output = join(folder, 'text.jsonl');
    const summary = await runLocalBatchJob({ model: 'ocr', input: join(folder, 'photos'), output, server, progress: 'none', logger: pino({ level: 'silent' }) });
    assert.equal(summary.records, 2);
    assert.equal(summary.failed, 1);
    const lines = (await readFile(output, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { id: string; outputs?: { name: string; data: unknown[] }[]; error: string | null });
    const page = lines.find((line) => line.id === 'page.png')!;
    assert.equal(page.error, null);
    const text = page.outputs!.find((output) => output.name === 'text')!.data as string[];
    assert.ok(characterAccuracy(text, PAGE.slice(0, 1)) >= 0.95, JSON.stringify(text));
    assert.match(lines.find((line) => line.id === 'broken.jpg')!.error!, /input 'image' must be one encoded image/);
  });

  it('nereid ocr prints each file\'s lines with their confidences and boxes, in process and through --url, as the route reads them', async (t) => {
    const folder = await mkdtemp(join(tmpdir(), 'nereid-ocr-cli-'));
    t.after(() => rm(folder, { recursive: true, force: true }));
    const page = await renderPage(PAGE);
    const pagePath = join(folder, 'page.png');
    const broken = join(folder, 'broken.jpg');
    await writeFile(pagePath, page);
    await writeFile(broken, 'not a jpeg');
    const expected = await ocr(page);
    assert.equal(expected.status, 200, expected.error);
    const [local, remote, text, notOcr] = await Promise.all([
      runCli(['ocr', '--model-repository', MODELS, pagePath, broken], 120_000),
      runCli(['ocr', '--url', base, pagePath, broken], 120_000),
      runCli(['ocr', '--url', base, '--text', pagePath], 120_000),
      runCli(['ocr', '--url', base, '--model', 'ocr_recognition', pagePath], 120_000),
    ]);
    for (const [run, where] of [[local, 'in process'], [remote, 'through --url']] as const) {
      assert.equal(run.code, 1, `${where}: ${run.stderr}`);
      const [read, bad] = run.stdout.trim().split('\n').map((line) => JSON.parse(line));
      assert.equal(read.file, pagePath);
      assert.equal(read.model_name, 'ocr');
      assert.deepEqual(
        read.lines.map((line: { text: string }) => line.text),
        expected.text,
        where,
      );
      read.lines.forEach((line: { score: number; box: number[][] }, index: number) => {
        assert.ok(Math.abs(line.score - expected.scores[index]) < 1e-3, `${where}: line ${index} score ${line.score} against ${expected.scores[index]}`);
        assert.deepEqual(line.box.flat().map(Math.round), expected.boxes[index].flat().map(Math.round), `${where}: line ${index}`);
      });
      assert.equal(read.timing.lines, expected.text.length);
      assert.ok(read.timing.total_ms > 0);
      assert.equal(bad.file, broken);
      assert.match(bad.error, /input 'image' must be one encoded image/);
    }
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, `${expected.text.join('\n')}\n`);
    // A model that is not an OCR pipeline is refused before any file is sent, naming what it takes.
    assert.equal(notOcr.code, 1);
    assert.equal(notOcr.stdout, '');
    assert.match(notOcr.stderr, /model 'ocr_recognition' takes x \(FP32\): nereid ocr needs an OCR pipeline/);
  });

  /**
   * The OCR handler's instances run only their own code, so they cannot serve the add/sub and identity models of the
   * engine suite (src/backends/backend-instance.case.ts): they keep the BackendInstance contract over their own model,
   * calling the real step models through this server, as the repository wires them. Last: its calls add to the step
   * models' statistics.
   */
  describe('an instance of the builtin ocr handler', () => {
    /** PNGs of a blank page and of one rendered line, made once. */
    const pages: Buffer[] = [];
    const LINE = 'Nereid reads 42 lines';
    const expected = [[], [LINE]];
    before(async () => {
      pages.push(await sharp({ create: { width: 96, height: 48, channels: 3, background: '#ffffff' } }).png().toBuffer());
      const line = await renderTextLine(LINE, { margin: 16 });
      pages.push(await sharp(line.data, { raw: { width: line.width, height: line.height, channels: 3 } }).png().toBuffer());
    });
    const image = (data: Buffer[]): Record<string, Tensor> => ({ image: { datatype: 'BYTES', shape: [data.length], data } });
    const builtin = new BuiltinBackend();
    backendInstanceContract(
      'the builtin ocr handler',
      async () => {
        const config = (await server.modelConfig('ocr')) as CompletedModelConfig;
        const labels = (await readFile(join(MODELS, 'ocr', 'labels.txt'), 'utf8')).replace(/\n$/, '').split('\n');
        return builtin.createInstance(builtin.builtinModelPath(config), config, {
          ...TEST_INSTANCE_OPTIONS,
          callModel: (request, context) => server.infer(request, context),
          labels: new Map([['text', labels]]),
        });
      },
      {
        requests: [() => image([Buffer.from(pages[0])]), () => image([Buffer.from(pages[1])])],
        outputs: ['text', 'boxes', 'scores', 'timings'],
        check: (answer, index, outputs) => {
          assert.deepEqual(Object.keys(answer).sort(), [...outputs].sort(), 'exactly the requested outputs');
          const lines = expected[index].length;
          if (answer.text) assert.deepEqual(bytesElements(answer.text.data).map(String), expected[index]);
          if (answer.boxes) assert.deepEqual(answer.boxes.shape, [lines, 4, 2]);
          if (answer.scores) assert.deepEqual(answer.scores.shape, [lines]);
          if (answer.timings) assert.equal(typeof JSON.parse(String(bytesElements(answer.timings.data)[0])).total_ms, 'number');
        },
        refused: [
          { inputs: () => ({}), says: [/input 'image' is missing/] },
          { inputs: () => image([Buffer.from(pages[0]), Buffer.from(pages[0])]), says: [/input 'image' expects BYTES \[1\], got BYTES \[2\]/] },
          { inputs: () => image([Buffer.from('not an image')]), says: [/not an image|unsupported image format/] },
        ],
      },
    );
  });
});

describe('the OCR pipeline with --model-control-mode on_demand and a memory budget', () => {
  it('loads on its first request, its step models with it, and answers it', async (t) => {
    const onDemand = await (await createServer({ modelRepository: MODELS, modelControlMode: 'on_demand', modelMemoryBudget: '4GiB', logger: pino({ level: 'silent' }) })).start();
    t.after(() => onDemand.close());
    assert.equal(onDemand.modelReady('ocr'), false);
    const response = await onDemand.infer({ model: 'ocr', inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [await renderPage(PAGE.slice(0, 1))] }] });
    const text = (response.outputs.find((output) => output.name === 'text')!.data as Buffer[]).map(String);
    assert.ok(characterAccuracy(text, PAGE.slice(0, 1)) >= 0.95, JSON.stringify(text));
    for (const model of ['ocr_detection', 'ocr_direction', 'ocr_recognition']) assert.equal(onDemand.modelReady(model), true, model);
  });
});
