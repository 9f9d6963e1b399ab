/** Fashion-MNIST images (Debian's dataset-fashion-mnist) written as PNG files, for tests of tools that read image folders. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';

const DATASET = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';
const SIDE = 28;

/**
 * The first `count` images of a split as PNG: in `dir` itself, or, when `folderOf` is given, in the
 * sub-folder it names for each image's class index.
 */
export async function writeFashionMnistPngs(dir: string, split: 'train' | 't10k', count: number, folderOf?: (label: number) => string): Promise<void> {
  const images = gunzipSync(await readFile(join(DATASET, `${split}-images-idx3-ubyte.gz`)));
  const labels = gunzipSync(await readFile(join(DATASET, `${split}-labels-idx1-ubyte.gz`)));
  for (let index = 0; index < count; index++) {
    const pixels = images.subarray(16 + index * SIDE * SIDE, 16 + (index + 1) * SIDE * SIDE);
    const folder = folderOf ? join(dir, folderOf(labels[8 + index])) : dir;
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, `${index}.png`), await sharp(pixels, { raw: { width: SIDE, height: SIDE, channels: 1 } }).png().toBuffer());
  }
}
