/**
 * Writes Fashion-MNIST images as PNG files for the docs' examples (profiling, monitoring, eval, quantization, batch
 * jobs), from the idx files of Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, or FASHION_MNIST_DIR):
 *
 *   DIR/train/<class>/N.png   the first --count images of the training split, a folder per class (named as the
 *                             bundled model's labels, `T-shirt_top` for `T-shirt/top`)
 *   DIR/test/<class>/N.png    the first --count images of the test split, likewise
 *   DIR/shoe.png, DIR/shirt.png   the test split's first Sneaker and first Shirt
 *
 *   npx tsx examples/fashion-mnist/write-images.ts [--out fashion-mnist] [--count 1000]
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { classFolderName } from '../../src/monitoring/class-names.js';
import { readFashionMnist, writeFashionMnistPngs } from '../../test/support/fashion-mnist.js';

const LABELS_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'fashion_mnist', 'labels.txt');
const SPLITS = { train: 'train', test: 't10k' } as const;
const SINGLES = { 'shoe.png': 'Sneaker', 'shirt.png': 'Shirt' };

export async function writeFashionMnistImages(out: string, count: number): Promise<void> {
  const labels = (await readFile(LABELS_FILE, 'utf8')).split('\n').filter(Boolean);
  for (const [folder, split] of Object.entries(SPLITS)) {
    await writeFashionMnistPngs(join(out, folder), split, count, (label) => classFolderName(labels[label]!));
  }
  const { pixels, labels: classes } = await readFashionMnist('t10k', 1000);
  for (const [file, label] of Object.entries(SINGLES)) {
    const image = pixels[classes.indexOf(labels.indexOf(label))]!;
    await sharp(image, { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(join(out, file));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'fashion-mnist' }, count: { type: 'string', default: '1000' } } });
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new Error(`--count must be a whole number from 1 to 10000 (the test split's size), got ${values.count}`);
  // No folder is made before the dataset has been read: a missing dataset leaves nothing behind.
  await writeFashionMnistImages(values.out!, count);
  console.log(`${values.out}: train/ and test/ (${count} images each, a folder per class), shoe.png, shirt.png`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main().catch((error: Error) => {
    console.error(`write-images: ${error.message}`);
    process.exitCode = 1;
  });
}
