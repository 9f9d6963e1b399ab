/**
 * The images the README's first examples post give the answers it shows: a Fashion-MNIST sneaker
 * and bag are classified as such, a photo of a cat is flagged out of distribution with low
 * confidence rather than passed off as a garment, and the scanned page's lines are read; the Client
 * section's example runs and type-checks as written; the docs' data-writing commands write the files their examples name.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { createServer } from '../src/server/create-server.js';
import { startGrpcEndpoint } from './support/grpc-endpoint.js';
import { startTestServer } from './support/test-server.js';

test('README examples: sneaker and bag are recognised, the cat is flagged out of distribution', async (t) => {
  const server = await (await createServer({ modelRepository: 'models', modelControlMode: 'explicit', loadModels: ['fashion_mnist'], logger: pino({ level: 'silent' }) })).start();
  t.after(() => server.close());
  const classify = async (file: string) => (await server.classify('fashion_mnist', [await readFile(`examples/images/${file}`)])).results[0]!;
  const sneaker = await classify('sneaker.png');
  assert.equal(sneaker.predictions[0]!.label, 'Sneaker');
  assert.equal(sneaker.ood?.out_of_distribution, false);
  assert.equal((await classify('bag.png')).predictions[0]!.label, 'Bag');
  const cat = await classify('cat.jpg');
  assert.equal(cat.ood?.out_of_distribution, true, 'a photo is nothing like a 28×28 garment thumbnail');
  assert.equal(cat.confidence?.low_confidence, true);
});

test('README example: the ocr pipeline reads the lines of the scanned page', async (t) => {
  const server = await (await createServer({ modelRepository: 'models', modelControlMode: 'explicit', loadModels: ['ocr'], logger: pino({ level: 'silent' }) })).start();
  t.after(() => server.close());
  const response = await server.infer({ model: 'ocr', inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [await readFile('examples/images/page.png')] }] });
  const text = (response.outputs.find((output) => output.name === 'text')!.data as Buffer[]).map(String);
  assert.ok(text.includes('Let us first determine markers of the coins and the'), JSON.stringify(text));
  assert.ok(text.includes('histogram of grey values:'), JSON.stringify(text));
  assert.match(text[0]!, /^Region-based ?segmentation$/);
});

test('README Client example: runs and type-checks as written, against a real server over HTTP and gRPC', async (t) => {
  const readme = await readFile('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('\n## Client\n'));
  const snippet = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(snippet?.includes('grpc.stream('), 'the Client section opens with its example');
  const served = await startTestServer({ repoDir: 'models', server: { modelControlMode: 'explicit', loadModels: ['ocr_direction'] } });
  t.after(() => served.close());
  const grpcEndpoint = await startGrpcEndpoint(served.server);
  t.after(() => grpcEndpoint.close());
  // As written, but importing this checkout's client and reaching the ports this test's server listens on.
  const program = snippet!
    .replace(`from 'nereid-serve/client'`, `from '../src/client/index.js'`)
    .replace('http://127.0.0.1:8000', served.url)
    .replace('127.0.0.1:8001', `127.0.0.1:${grpcEndpoint.port}`);
  const file = join('test', `.readme-client-${process.pid}.ts`);
  await writeFile(file, program);
  t.after(() => rm(file, { force: true }));
  const ran = await execute(process.execPath, ['--import', 'tsx', file]);
  assert.equal(ran.code, 0, ran.stderr);
  assert.match(ran.stdout, /^Float32Array\(2\)/);
  assert.equal(ran.stdout.match(/model: 'ocr_direction'/g)?.length, 3, ran.stdout);
  assert.ok(ran.stdout.indexOf("id: 'image-1'") < ran.stdout.indexOf("id: 'image-3'"), ran.stdout);
  const tsc = join('node_modules', 'typescript', 'bin', 'tsc');
  const checked = await execute(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', file]);
  assert.equal(checked.code, 0, checked.stdout + checked.stderr);
});

test('docs: write-images.ts writes the Fashion-MNIST folders and files that monitoring, eval and quantization name', async (t) => {
  const command = 'npx tsx examples/fashion-mnist/write-images.ts --out fashion-mnist --count 1000';
  for (const doc of ['docs/monitoring.md', 'docs/eval.md', 'docs/quantization.md']) {
    const text = await readFile(doc, 'utf8');
    assert.ok(text.includes(command), `${doc} shows how its images are made`);
    for (const path of text.match(/(?<!examples\/)fashion-mnist\/[\w./-]+/g) ?? []) {
      assert.match(path, /^fashion-mnist\/(train|test)\/$|^fashion-mnist\/(shoe|shirt)\.png$/, `${doc} names ${path}`);
    }
  }
  const out = await mkdtemp(join(tmpdir(), 'nereid-fashion-mnist-'));
  t.after(() => rm(out, { recursive: true, force: true }));
  const ran = await execute(process.execPath, ['--import', 'tsx', 'examples/fashion-mnist/write-images.ts', '--out', out, '--count', '30']);
  assert.equal(ran.code, 0, ran.stderr);
  const labels = (await readFile('models/fashion_mnist/labels.txt', 'utf8')).split('\n').filter(Boolean).map((label) => label.replace('/', '_'));
  for (const split of ['train', 'test']) {
    assert.deepEqual((await readdir(join(out, split))).sort(), [...labels].sort());
    const counted = await Promise.all(labels.map(async (label) => (await readdir(join(out, split, label))).length));
    assert.equal(counted.reduce((sum, count) => sum + count, 0), 30);
  }
  const server = await (await createServer({ modelRepository: 'models', modelControlMode: 'explicit', loadModels: ['fashion_mnist'], logger: pino({ level: 'silent' }) })).start();
  t.after(() => server.close());
  const answer = await server.classify('fashion_mnist', [await readFile(join(out, 'shoe.png')), await readFile(join(out, 'shirt.png'))]);
  assert.deepEqual(answer.results.map((result) => result.predictions[0]!.label), ['Sneaker', 'Shirt']);
});

function execute(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 300_000 }, (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) || 1 : 0, stdout, stderr }));
  });
}
