/**
 * The images the README's first examples post give the answers it shows: a Fashion-MNIST sneaker
 * and bag are classified as such, a photo of a cat is flagged out of distribution with low
 * confidence rather than passed off as a garment, and the scanned page's lines are read; the Client
 * section's example runs and type-checks as written; the docs' data-writing commands write the files their examples name.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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

test('docs: the tensor examples of batch-jobs.md and javascript-models.md run as written on what write-examples.ts writes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-tensors-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const wrote = await execute(process.execPath, ['--import', 'tsx', 'examples/tensors/write-examples.ts', '--out', dir]);
  assert.equal(wrote.code, 0, wrote.stderr);
  const batchDoc = (await readFile('docs/batch-jobs.md', 'utf8')).replaceAll('\\\n  ', '');
  const lines = new Map<string, { id: unknown; error: string | null; outputs?: { data: number[] }[]; pass_through?: unknown }[]>();
  for (const model of ['simple', 'double']) {
    const command = new RegExp(`^nereid batch --model ${model} .*$`, 'm').exec(batchDoc)?.[0];
    assert.ok(command?.includes('tensors/'), `batch-jobs.md runs ${model} on the written files`);
    const args = command!.replaceAll(' tensors/', ` ${dir}/`).replace('--output ', `--output ${dir}/`).split(/\s+/).slice(1);
    const ran = await execute(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args, '--progress', 'none']);
    assert.equal(ran.code, 0, ran.stderr);
    const output = /--output (\S+)/.exec(args.join(' '))![1]!;
    lines.set(model, (await readFile(output, 'utf8')).trim().split('\n').map((line) => JSON.parse(line)));
  }
  const simple = new Map(lines.get('simple')!.map((line) => [line.id, line]));
  assert.deepEqual([1, 2, 3].map((id) => simple.get(id)!.error), [null, null, null]);
  assert.equal(simple.get(4)!.error, "input 'INPUT0' expects INT32 [1,16]: 16 value(s), got 3", 'as the doc shows');
  const double = new Map(lines.get('double')!.map((line) => [line.id, line]));
  assert.deepEqual(double.get('r1'), { ...double.get('r1'), pass_through: { label: 'small' }, error: null });
  assert.deepEqual(double.get('r1')!.outputs![0]!.data, [2, 4, 6, 8]);

  const handlerDoc = await readFile('docs/javascript-models.md', 'utf8');
  const section = handlerDoc.slice(handlerDoc.indexOf('`models/five_times`'));
  assert.ok(section.includes('examples/tensors/write-examples.ts --out tensors'), 'the doc says where double and triple come from');
  const model = join(dir, 'models', 'five_times');
  await mkdir(join(model, '1'), { recursive: true });
  await writeFile(join(model, 'config.pbtxt'), /```protobuf\n([\s\S]*?)```/.exec(section)![1]!);
  await writeFile(join(model, '1', 'model.mjs'), /```js\n([\s\S]*?)```/.exec(section)![1]!);
  const server = await (await createServer({ modelRepository: join(dir, 'models'), allowCodeModels: true, logger: pino({ level: 'silent' }) })).start();
  t.after(() => server.close());
  const answer = await server.infer({ model: 'five_times', inputs: [{ name: 'X', datatype: 'FP32', shape: [1, 4], data: Float32Array.of(1, 2, 3, 4) }] });
  assert.deepEqual(Array.from(answer.outputs[0]!.data as ArrayLike<number>), [5, 10, 15, 20]);
});

function execute(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 300_000 }, (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) || 1 : 0, stdout, stderr }));
  });
}

test('docs/quantization.md: the metadata example and the Fashion-MNIST sentence give the bundled version 2 figures', async () => {
  const text = await readFile('docs/quantization.md', 'utf8');
  const record = JSON.parse(await readFile('models/fashion_mnist/2/quantization.json', 'utf8')) as {
    sizes: { ratio: number };
    calibration: { examples: number; heldOut: number };
    agreement: { agreement: number; count: number };
  };
  assert.equal(Number(/"quantized_size_ratio": ([\d.]+)/.exec(text)?.[1]), Number(record.sizes.ratio.toFixed(4)));
  const total = record.calibration.examples + record.calibration.heldOut;
  assert.ok(text.includes(`--max-examples ${total}\` (${record.calibration.examples} training images calibrate, ${record.agreement.count} held out`), 'the sentence names the bundled calibration');
  assert.equal(record.agreement.agreement, 1, 'the sentence says 100 %');
});
