/**
 * A photo in, "cat" out, end to end: the bundled CenterNet (COCO-80, a TF.js graph model served by
 * the tfjs backend) behind a real server on a loopback port, real photos from Debian packages
 * (scikit-image's Chelsea the cat, darknet's dog with a bicycle), a blank image, and the mistakes a
 * client makes, through POST /v2/models/object_detection/detect.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ClientError, HttpClient } from '../src/client/index.js';
import { runLocalBatchJob } from '../src/jobs/index.js';
import { binaryBody, lengthPrefixed, readInferResponse, startTestServer, type TestServer } from './support/test-server.js';
import { NEREID_COMMAND } from './support/cli-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MODELS = fileURLToPath(new URL('../models', import.meta.url));
const CHELSEA = '/usr/lib/python3/dist-packages/skimage/data/chelsea.png';
const DOG = '/usr/share/darknet/data/dog.jpg';

type Box = [number, number, number, number];
interface Detection {
  label: string;
  index: number;
  score: number;
  box: Box;
}
interface DetectAnswer {
  model_name: string;
  model_version: string;
  image: { width: number; height: number };
  detections: Detection[];
}

function intersectionOverUnion(a: Box, b: Box): number {
  const width = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const area = (box: Box) => (box[2] - box[0]) * (box[3] - box[1]);
  return (width * height) / (area(a) + area(b) - width * height);
}

let testServer: TestServer;
before(async () => {
  testServer = await startTestServer({ repoDir: MODELS, server: { modelControlMode: 'explicit', loadModels: ['object_detection', 'fashion_mnist'] } });
});
after(async () => testServer?.close());

async function detect(body: Buffer, type: string, query = ''): Promise<Response> {
  return fetch(`${testServer.url}/v2/models/object_detection/detect${query}`, { method: 'POST', headers: { 'content-type': type }, body: new Uint8Array(body) });
}

async function detected(body: Buffer, type: string, query = ''): Promise<DetectAnswer> {
  const response = await detect(body, type, query);
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text) as DetectAnswer;
}

describe('POST /v2/models/object_detection/detect', () => {
  test('finds the cat in Chelsea, with a box around her in the photo\'s pixels', async () => {
    const answer = await detected(await readFile(CHELSEA), 'image/png');
    assert.equal(answer.model_name, 'object_detection');
    assert.deepEqual(answer.image, { width: 451, height: 300 });
    const [best] = answer.detections;
    assert.ok(best, 'something is detected');
    assert.equal(best.label, 'cat', JSON.stringify(answer.detections));
    assert.equal(best.index, 15);
    assert.ok(best.score >= 0.3 && best.score <= 1, `score ${best.score}`);
    // Chelsea fills most of the frame: her head is left of centre, her body runs to the right edge.
    assert.ok(intersectionOverUnion(best.box, [60, 20, 451, 300]) > 0.5, `cat box ${best.box}`);
    const scores = answer.detections.map((detection) => detection.score);
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a), 'best first');
  });

  test("the README's first example: examples/images/cat.jpg comes back labelled cat", async () => {
    const answer = await detected(await readFile(new URL('../examples/images/cat.jpg', import.meta.url)), 'image/jpeg');
    assert.deepEqual(
      answer.detections.map((detection) => detection.label),
      ['cat'],
      JSON.stringify(answer.detections),
    );
  });

  test('finds the dog and the bicycle in darknet\'s dog.jpg, each where it is', async () => {
    const answer = await detected(await readFile(DOG), 'image/jpeg');
    assert.deepEqual(answer.image, { width: 768, height: 576 });
    const find = (label: string) => answer.detections.find((detection) => detection.label === label);
    const dog = find('dog');
    const bicycle = find('bicycle');
    assert.ok(dog && bicycle, JSON.stringify(answer.detections));
    // Where YOLO's darknet demo draws them: the dog sits bottom left, the bicycle spans the middle.
    assert.ok(intersectionOverUnion(dog.box, [125, 215, 325, 545]) > 0.5, `dog box ${dog.box}`);
    assert.ok(intersectionOverUnion(bicycle.box, [115, 125, 570, 450]) > 0.5, `bicycle box ${bicycle.box}`);
  });

  test('a blank image has nothing above the threshold, and the threshold and max_detections apply', async () => {
    const blank = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toBuffer();
    assert.deepEqual((await detected(blank, 'image/png')).detections, []);
    const dog = await readFile(DOG);
    const all = await detected(dog, 'image/jpeg', '?threshold=0.05&max_detections=100');
    assert.ok(all.detections.every((detection) => detection.score >= 0.05));
    const two = await detected(dog, 'image/jpeg', '?threshold=0.05&max_detections=2');
    assert.deepEqual(two.detections, all.detections.slice(0, 2));
  });

  test('the HTTP client\'s detect() answers what the route answers, its options as the query; a bad option is a ClientError 400', async () => {
    const dog = await readFile(DOG);
    const client = new HttpClient({ url: testServer.url });
    const answer = await client.detect('object_detection', dog, { contentType: 'image/jpeg', threshold: 0.05, maxDetections: 2 });
    const route = await detected(dog, 'image/jpeg', '?threshold=0.05&max_detections=2');
    assert.deepEqual(answer.detections, route.detections);
    assert.deepEqual(answer.image, { width: 768, height: 576 });
    await assert.rejects(client.detect('object_detection', dog, { contentType: 'image/jpeg', threshold: 2 }), (error: unknown) => {
      assert.ok(error instanceof ClientError);
      assert.equal(error.status, 400);
      assert.match(error.message, /threshold must be a number from 0 to 1, got '2'/);
      return true;
    });
  });

  test('an EXIF-rotated photo is answered in its upright pixels', async () => {
    // Orientation 6: the stored pixels are turned a quarter; viewers (and the pre-processing) turn them back.
    const stored = await sharp(CHELSEA).rotate(-90).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const answer = await detected(stored, 'image/jpeg');
    assert.deepEqual(answer.image, { width: 451, height: 300 });
    assert.equal(answer.detections[0]?.label, 'cat', JSON.stringify(answer.detections));
  });

  test('multipart files are answered one result per file', async () => {
    const form = new FormData();
    form.append('first', new Blob([await readFile(CHELSEA)], { type: 'image/png' }), 'chelsea.png');
    form.append('second', new Blob([await readFile(DOG)], { type: 'image/jpeg' }), 'dog.jpg');
    const response = await fetch(`${testServer.url}/v2/models/object_detection/detect`, { method: 'POST', body: form });
    const answer = (await response.json()) as { results: (DetectAnswer & { file: string })[] };
    assert.equal(response.status, 200, JSON.stringify(answer));
    assert.deepEqual(
      answer.results.map((result) => [result.file, result.detections[0]?.label]),
      [
        ['chelsea.png', 'cat'],
        ['dog.jpg', answer.results[1].detections[0]?.label],
      ],
    );
    assert.ok(answer.results[1].detections.some((detection) => detection.label === 'dog'));
  });

  test('mistakes are 4xx that say what was expected and what arrived', async () => {
    const cases: [Response, number, RegExp][] = [
      [await detect(Buffer.from('hello'), 'text/plain'), 400, /Content-Type image\/\* or application\/octet-stream \(got 'text\/plain'\)/],
      [await detect(Buffer.from('not a jpeg at all'), 'image/jpeg'), 400, /^\{"error":"(?!image 0).*not an image in a supported format/],
      [await detect(Buffer.alloc(0), 'image/png'), 400, /^\{"error":"the image is empty/],
      [await detect(await readFile(CHELSEA), 'image/png', '?threshold=2'), 400, /threshold must be a number from 0 to 1, got '2'/],
      [await detect(await readFile(CHELSEA), 'image/png', '?max_detections=1.5'), 400, /max_detections must be a whole number from 1 to 1000, got '1.5'/],
      [await detect(await readFile(CHELSEA), 'image/png', '?max_detections=1&max_detections=2'), 400, /max_detections is given 2 times \('1', '2'\); give it once/],
      [await detect(await readFile(CHELSEA), 'image/png', '?threshold=0x1'), 400, /threshold must be a number from 0 to 1, got '0x1'/],
      [await detect(await readFile(CHELSEA), 'image/png', '?thresold=0.9'), 400, /unknown option 'thresold'; detection takes threshold, max_detections and iou_threshold/],
    ];
    const classifier = await fetch(`${testServer.url}/v2/models/fashion_mnist/detect`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(await readFile(CHELSEA)) });
    cases.push([classifier, 400, /model 'fashion_mnist' has no detections output/]);
    const detector = await fetch(`${testServer.url}/v2/models/object_detection/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(await readFile(CHELSEA)) });
    cases.push([detector, 400, /model 'object_detection' cannot classify: its output 'tower_0\/detections' is \[1, 100, 6\] per image, not one score per class; an object detector answers POST \/v2\/models\/object_detection\/detect/]);
    for (const [response, status, message] of cases) {
      const body = await response.text();
      assert.equal(response.status, status, body);
      assert.match(body, message);
    }
  });

  test('V2 /infer on the same model answers the raw detections tensor for an encoded image (binary tensor data)', async () => {
    const data = lengthPrefixed([await readFile(CHELSEA)]);
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'tower_0/images', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: data.length } }], outputs: [{ name: 'tower_0/detections', parameters: { binary_data: false } }] },
      [data],
    );
    const response = await fetch(`${testServer.url}/v2/models/object_detection/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
      body: new Uint8Array(body),
    });
    const { header } = await readInferResponse(response);
    assert.equal(response.status, 200, JSON.stringify(header));
    const [detections] = header.outputs;
    assert.deepEqual(detections.shape, [1, 100, 6]);
    // The first row is the best: a cat (class 15), its box in the model's 512×512 input pixels.
    assert.equal(detections.data?.[5], 15);
  });
});

describe('nereid detect (CLI)', () => {
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, [...NEREID_COMMAND, 'detect', ...args], { cwd: ROOT, timeout: 60_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      });
    });

  test('the bundled detector by default, in process and through --url: a JSON line per file with labels and boxes, a bad file on its own line and exit code 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nereid-detect-cli-'));
    try {
      const bad = join(dir, 'notes.txt');
      await writeFile(bad, 'not an image\n');
      const [local, remote] = await Promise.all([
        cli(['--model-repository', MODELS, '--max-detections', '3', DOG, bad, dir]),
        cli(['--url', testServer.url, '--max-detections', '3', DOG, bad, dir]),
      ]);
      for (const [run, where] of [[local, 'in process'], [remote, 'through --url']] as const) {
        assert.equal(run.code, 1, `${where}: ${run.stderr}`);
        const [dog, notes, folder] = run.stdout.trim().split('\n').map((line) => JSON.parse(line));
        assert.equal(dog.file, DOG);
        assert.equal(dog.model_name, 'object_detection');
        assert.ok(dog.detections.length > 0 && dog.detections.length <= 3, `${where}: ${JSON.stringify(dog.detections)}`);
        assert.ok(dog.detections.some((detection: Detection) => detection.label === 'dog'), `${where}: ${JSON.stringify(dog.detections)}`);
        assert.equal(notes.file, bad);
        assert.match(notes.error, /not an image in a supported format/);
        assert.equal(folder.error, `${dir} is a folder: nereid detect takes image files; for a folder of images, nereid batch --model object_detection --input ${dir} --output results.jsonl`);
      }
      // Refused before any file is sent or any model loads, with the message the route gives.
      for (const where of [['--url', testServer.url], ['--model-repository', MODELS]]) {
        const refused = await cli([...where, '--threshold', 'high', DOG]);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /threshold must be a number from 0 to 1, got 'high'/);
        assert.equal(refused.stdout, '');
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

test('/detect without a version follows the model\'s traffic policy; a named version is honoured', async () => {
  // The bundled detector twice, with a policy that sends every unversioned request to the older version.
  const config = `${await readFile(`${MODELS}/object_detection/config.yaml`, 'utf8')}version_policy: { all: {} }\ntraffic: { weights: { "1": 1 } }\ninstance_group: [{ count: 1 }]\n`;
  const canary = await startTestServer({
    models: async (repo) => {
      for (const version of ['1', '2']) await cp(`${MODELS}/object_detection/1`, join(repo, 'detector', version), { recursive: true });
      await writeFile(join(repo, 'detector', 'config.yaml'), config);
      await cp(`${MODELS}/object_detection/labels.txt`, join(repo, 'detector', 'labels.txt'));
    },
  });
  try {
    const post = async (path: string) => {
      const response = await fetch(`${canary.url}${path}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(await readFile(CHELSEA)) });
      assert.equal(response.status, 200);
      return (await response.json()) as DetectAnswer;
    };
    assert.equal((await post('/v2/models/detector/detect')).model_version, '1');
    assert.equal((await post('/v2/models/detector/versions/2/detect')).model_version, '2');
  } finally {
    await canary.close();
  }
});

test('a batch job over photos writes each photo\'s detections, as /detect answers them', async () => {
  const work = await mkdtemp(join(tmpdir(), 'nereid-detect-batch-'));
  try {
    const photos = join(work, 'photos');
    await cp(join(ROOT, 'examples', 'images', 'cat.jpg'), join(photos, 'cat.jpg'));
    const output = join(work, 'detections.jsonl');
    const summary = await runLocalBatchJob({ server: testServer.server, model: 'object_detection', input: photos, output, progress: 'none' });
    assert.equal(summary.failed, 0);
    const [line] = (await readFile(output, 'utf8')).trim().split('\n').map((text) => JSON.parse(text) as DetectAnswer & { id: string; error: null });
    const expected = await detected(await readFile(join(photos, 'cat.jpg')), 'image/jpeg');
    assert.equal(line.id, 'cat.jpg');
    assert.deepEqual(line.image, expected.image);
    assert.deepEqual(line.detections, expected.detections);
    assert.ok(line.detections.some((detection) => detection.label === 'cat'), JSON.stringify(line.detections));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
