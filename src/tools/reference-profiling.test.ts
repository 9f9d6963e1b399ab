import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { writeFashionMnistPngs } from '../../test/support/fashion-mnist.js';
import { readOnnxModel } from '../onnx/onnx-model-file.js';
import { quantizeDynamicMatMul, quantizeStaticQdq } from '../quantize/index.js';
import { readReferenceProfile } from '../monitoring/index.js';
import { profileSizeWarnings, representationTensor, runMonitor, runProfile } from './reference-profiling.js';

const fashionMnist = async () => readOnnxModel(new Uint8Array(await readFile(new URL('../../models/fashion_mnist/1/model.onnx', import.meta.url))));

test('a quantized version is profiled on the same representation as its float original, not on the head\'s int8 input', async () => {
  const float = await fashionMnist();
  const expected = representationTensor(float, 'logits');
  assert.equal(expected.pooling, 'spatial-mean');
  assert.equal(float.graph.node.find((node) => node.output.includes(expected.tensor))?.op_type, 'MaxPool');

  // Static QDQ: every activation between the pooling and the head goes through a QuantizeLinear/DequantizeLinear pair.
  const staticModel = await fashionMnist();
  const ranges = new Map(staticModel.graph.node.flatMap((node) => [...node.input, ...node.output]).map((name) => [name, { min: -8, max: 8 }] as const));
  const rewrite = quantizeStaticQdq(staticModel, ranges);
  assert.ok(rewrite.quantized.length > 0);
  assert.ok(staticModel.graph.node.some((node) => node.op_type === 'DequantizeLinear'));
  assert.deepEqual(representationTensor(staticModel, 'logits'), expected);

  // Dynamic int8: the head is a MatMulInteger reading DynamicQuantizeLinear's output.
  const dynamicModel = await fashionMnist();
  assert.ok(quantizeDynamicMatMul(dynamicModel).quantized.length > 0);
  assert.ok(dynamicModel.graph.node.some((node) => node.op_type === 'MatMulInteger'));
  assert.deepEqual(representationTensor(dynamicModel, 'logits'), expected);
});

test('profile and monitor load the --version named, on a server where nothing was loaded before', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'nereid-profile-version-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const repository = join(work, 'models');
  await cp(fileURLToPath(new URL('../../models/fashion_mnist', import.meta.url)), join(repository, 'fashion_mnist'), { recursive: true });
  await writeFashionMnistPngs(join(work, 'data'), 't10k', 60);
  const logger = pino({ level: 'silent' });
  const common = { model: 'fashion_mnist', modelRepository: repository, data: join(work, 'data') };

  // Version 1, the only version the bundled policy serves (the bundled int8 version 2 beside it is not), named.
  const monitored = await runMonitor({ ...common, version: '1' }, logger);
  assert.equal(monitored.version, '1');

  // Version 1 beside the quantized version 2 the policy now serves instead, as after quantize: the one named is profiled.
  const config = join(repository, 'fashion_mnist', 'config.yaml');
  const bundled = await readFile(config, 'utf8');
  assert.match(bundled, /^version_policy: .*$/m);
  await writeFile(config, bundled.replace(/^version_policy: .*$/m, 'version_policy: { latest: { num_versions: 1 } }'));
  const profile = await runProfile({ ...common, version: '1' }, logger);
  assert.equal(profile.path, join(repository, 'fashion_mnist', '1', 'reference.json'));
  // 60 images for a 64-feature detector: the profile is written, with what it is too small for said.
  assert.equal(profile.warnings.length, 2, profile.warnings.join('\n'));
  assert.match(profile.warnings[0], /fitted on 48 examples for 64 features: its covariance wants at least 640/);
  assert.match(profile.warnings[1], /measured on 6 held-out examples, where 5\.0 % is 0\.3 of them: too few .* give at least 1000 examples/);

  // A --tensor the quantized version lacks is answered with the names the float version has, which it takes too.
  const refused = runProfile({ ...common, version: '2', tensor: 'bogus' }, logger);
  await assert.rejects(refused, (error: Error) => {
    const suggested = /the outputs of its pooling, ReLU and convolution nodes: (.*)$/.exec(error.message)?.[1].split(', ') ?? [];
    assert.ok(suggested.length > 0 && suggested.every((name) => !name.endsWith('_float')), error.message);
    return true;
  });
});

test('a version without a profile: monitor names --version and the repository to build one; profile builds it without warning that it has none, and says what it replaced', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'nereid-profile-hints-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const repository = join(work, 'models');
  const model = join(repository, 'fashion_mnist');
  await cp(fileURLToPath(new URL('../../models/fashion_mnist', import.meta.url)), model, { recursive: true });
  // Version 3 as quantize into a copy of the repository leaves it: no profile, beside version 1's.
  await cp(join(model, '1'), join(model, '3'), { recursive: true });
  await rm(join(model, '3', 'reference.json'));
  await writeFashionMnistPngs(join(work, 'data'), 't10k', 60);
  const warned: string[] = [];
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) warned.push(String(JSON.parse(line).msg));
        done();
      },
    }),
  );
  const common = { model: 'fashion_mnist', modelRepository: repository, data: join(work, 'data') };

  await assert.rejects(runMonitor({ ...common, version: '3' }, logger), (error: Error) => {
    assert.ok(error.message.endsWith(`build one with nereid profile --model fashion_mnist --version 3 --model-repository ${repository} --data <in-distribution data>`), error.message);
    return true;
  });
  warned.length = 0;
  const built = await runProfile({ ...common, version: '3' }, logger);
  assert.equal(built.path, join(model, '3', 'reference.json'));
  assert.equal(built.replaced, undefined);
  assert.deepEqual(warned.filter((message) => message.includes('reference profile')), [], 'the version being profiled has none yet: no warning that it has none');

  // Version 1's bundled profile, replaced as documented, and said.
  const bundled = await readReferenceProfile(join(model, '1', 'reference.json'));
  const replacing = await runProfile({ ...common, version: '1' }, logger);
  assert.deepEqual(replacing.replaced, { created: bundled.provenance.created, examples: bundled.provenance.data.examples, data: bundled.provenance.data.source });
  assert.equal((await readReferenceProfile(join(model, '1', 'reference.json'))).provenance.data.examples, 60);
});

test('a profile is too small below ten fitted examples per feature or five expected held-out false positives; 1,000 examples of 64 features is not', () => {
  assert.deepEqual(profileSizeWarnings(1000, 64, 0.05), []);
  assert.equal(profileSizeWarnings(990, 64, 0.05).length, 1, '99 held out expect 4.95 flags');
  assert.match(profileSizeWarnings(790, 64, 0.01).join('\n'), /fitted on 632 examples for 64 features/);
  assert.equal(profileSizeWarnings(5000, 64, 0.01).length, 0);
});
