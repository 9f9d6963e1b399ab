/** Fashion-MNIST images (Debian's dataset-fashion-mnist) written as PNG files, for tests of tools that read image folders. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';

const DATASET = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';
const SIDE = 28;

/** A file of the dataset; a missing one says where it comes from. */
function readDatasetFile(name: string): Promise<Buffer> {
  return readFile(join(DATASET, name)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
    throw new Error(`${join(DATASET, name)} is missing: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or point FASHION_MNIST_DIR at a folder holding its idx files`);
  });
}

/** The first `count` images of a split as 28×28 grayscale pixels (white garment on black), with their class indices. */
export async function readFashionMnist(split: 'train' | 't10k', count: number): Promise<{ pixels: Uint8Array[]; labels: number[] }> {
  const images = gunzipSync(await readDatasetFile(`${split}-images-idx3-ubyte.gz`));
  const labels = gunzipSync(await readDatasetFile(`${split}-labels-idx1-ubyte.gz`));
  return {
    pixels: Array.from({ length: count }, (_, index) => images.subarray(16 + index * SIDE * SIDE, 16 + (index + 1) * SIDE * SIDE)),
    labels: Array.from(labels.subarray(8, 8 + count)),
  };
}

/**
 * The first `count` images of a split as the bundled model's input batch [count, 1, 28, 28]:
 * scaled to [0, 1] and normalised with the mean and standard deviation its config declares.
 */
export async function fashionMnistBatch(split: 'train' | 't10k', count: number): Promise<Float32Array> {
  const { pixels } = await readFashionMnist(split, count);
  const batch = new Float32Array(count * SIDE * SIDE);
  pixels.forEach((image, index) => batch.set(Float32Array.from(image, (value) => (value / 255 - 0.2858173) / 0.3529372), index * SIDE * SIDE));
  return batch;
}

/**
 * The first `count` images of a split as PNG: in `dir` itself, or, when `folderOf` is given, in the
 * sub-folder it names for each image's class index; `shift` changes each image first (rotated, inverted, blurred…).
 */
export async function writeFashionMnistPngs(dir: string, split: 'train' | 't10k', count: number, folderOf?: (label: number) => string, shift?: (image: Sharp) => Sharp): Promise<void> {
  const { pixels, labels } = await readFashionMnist(split, count);
  for (const [index, image] of pixels.entries()) {
    const folder = folderOf ? join(dir, folderOf(labels[index])) : dir;
    await mkdir(folder, { recursive: true });
    const decoded = sharp(image, { raw: { width: SIDE, height: SIDE, channels: 1 } });
    await writeFile(join(folder, `${index}.png`), await (shift ? shift(decoded) : decoded).png().toBuffer());
  }
}
