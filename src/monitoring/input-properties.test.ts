/**
 * Image properties on images built with sharp from raw pixels (lossless PNG, small enough not to be
 * downscaled, so the expected figures are exact), on Fashion-MNIST test images checked against
 * statistics computed here from their raw pixels, and on photos from Debian's python3-skimage;
 * tensor feature summaries on hand-made tensors and on a Fashion-MNIST batch.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { numberToHalf } from '../core/datatype.js';
import type { Tensor } from '../core/tensor.js';
import { fashionMnistBatch, readFashionMnist } from '../../test/support/fashion-mnist.js';
import {
  imageProperties,
  imagePropertyFeatures,
  pixelToneProperties,
  tensorFeatureSummaries,
  tensorFeatureValues,
  MAX_TENSOR_FEATURES,
} from './input-properties.js';

const SKIMAGE_DATA = '/usr/lib/python3/dist-packages/skimage/data';

/** A lossless PNG of `width` × `height` pixels whose colour `colourAt(x, y)` gives as [r, g, b] or [gray] (or with alpha). */
function png(width: number, height: number, colourAt: (x: number, y: number) => number[]): Promise<Buffer> {
  const channels = colourAt(0, 0).length as 1 | 2 | 3 | 4;
  const pixels = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) pixels.set(colourAt(x, y), (y * width + x) * channels);
  const image = sharp(pixels, { raw: { width, height, channels } });
  // Without it sharp writes gray pixels as an RGB PNG.
  return (channels <= 2 ? image.toColourspace('b-w') : image).png().toBuffer();
}

const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual}, expected ${expected}`);

describe('imageProperties', () => {
  test('a solid grey image has its grey as brightness, no contrast, no colour and no clipped pixels', async () => {
    const properties = await imageProperties(await png(40, 20, () => [128, 128, 128]));
    assert.equal(properties.width, 40);
    assert.equal(properties.height, 20);
    assert.equal(properties.aspectRatio, 2);
    close(properties.brightness, 128 / 255, 'brightness');
    close(properties.contrast, 0, 'contrast');
    close(properties.colourfulness, 0, 'colourfulness');
    assert.equal(properties.darkShare, 0);
    assert.equal(properties.brightShare, 0);
  });

  test('half black, half white: brightness 0.5, the largest contrast 0.5, half dark and half bright', async () => {
    const properties = await imageProperties(await png(32, 16, (x) => (x < 16 ? [0, 0, 0] : [255, 255, 255])));
    close(properties.brightness, 0.5, 'brightness');
    close(properties.contrast, 0.5, 'contrast');
    assert.equal(properties.darkShare, 0.5);
    assert.equal(properties.brightShare, 0.5);
  });

  test('pure red and green stripes are very colourful: σ(rg) = 1, mean(yb) = 0.5, so 1 + 0.3 × 0.5', async () => {
    const stripes = await imageProperties(await png(32, 32, (x) => (x % 2 === 0 ? [255, 0, 0] : [0, 255, 0])));
    close(stripes.colourfulness, 1.15, 'stripes');
    // All one red: no spread, only the 0.3-weighted mean (|(1, 0.5)| = √1.25).
    const red = await imageProperties(await png(32, 32, () => [255, 0, 0]));
    close(red.colourfulness, 0.3 * Math.sqrt(1.25), 'solid red');
    close(red.brightness, 0.299, 'solid red brightness (its luma weight)');
  });

  test('a one-channel grayscale PNG has colourfulness 0 and its gray statistics as luma', async () => {
    const gradient = await png(50, 10, (x) => [x * 5]);
    assert.equal((await sharp(gradient).metadata()).channels, 1, 'the test image is one-channel');
    const properties = await imageProperties(gradient);
    assert.equal(properties.colourfulness, 0);
    const values = Array.from({ length: 50 }, (_, x) => (x * 5) / 255);
    const mean = values.reduce((a, b) => a + b) / 50;
    close(properties.brightness, mean, 'brightness');
    close(properties.contrast, Math.sqrt(values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / 50), 'contrast');
  });

  test('width and height are the encoded image’s, not the downscaled copy’s, and follow EXIF orientation', async () => {
    const wide = await png(640, 480, () => [10, 200, 30]);
    const properties = await imageProperties(wide);
    assert.deepEqual([properties.width, properties.height], [640, 480]);
    close(properties.aspectRatio, 4 / 3, 'aspect ratio');
    close(properties.brightness, (0.299 * 10 + 0.587 * 200 + 0.114 * 30) / 255, 'a flat colour survives the downscale');
    // Orientation 6: stored 640×480, shown rotated a quarter turn, 480×640.
    const rotated = await sharp(wide).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const shown = await imageProperties(rotated);
    assert.deepEqual([shown.width, shown.height], [480, 640]);
    close(shown.aspectRatio, 0.75, 'rotated aspect ratio');
  });

  test('transparent pixels are measured as the background, black unless told', async () => {
    const transparent = await png(8, 8, () => [255, 255, 255, 0]);
    close((await imageProperties(transparent)).brightness, 0, 'on black');
    close((await imageProperties(transparent, { background: { r: 255, g: 255, b: 255 } })).brightness, 1, 'on white');
  });

  test('refuses what is not a measured image format, saying which formats are', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    await assert.rejects(imageProperties(svg), /the image is svg; properties are measured for JPEG, PNG/);
    await assert.rejects(imageProperties(Buffer.alloc(0)), /empty/);
    await assert.rejects(imageProperties(Buffer.from('not an image at all')), /unsupported image format/);
  });

  test('refuses an image over maxPixels before decoding it', async () => {
    await assert.rejects(imageProperties(await png(100, 100, () => [0]), { maxPixels: 5000 }), /pixel limit/);
  });

  test('Fashion-MNIST test images: the statistics of their own pixels', async () => {
    const { pixels } = await readFashionMnist('t10k', 20);
    for (const [index, image] of pixels.entries()) {
      const encoded = await sharp(image, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
      const properties = await imageProperties(encoded);
      const values = Array.from(image, (value) => value / 255);
      const mean = values.reduce((a, b) => a + b) / values.length;
      assert.deepEqual([properties.width, properties.height, properties.colourfulness], [28, 28, 0], `image ${index}`);
      close(properties.brightness, mean, `image ${index} brightness`);
      close(properties.contrast, Math.sqrt(values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / values.length), `image ${index} contrast`);
      assert.equal(properties.darkShare, values.filter((value) => value <= 0.02).length / values.length, `image ${index} dark share`);
      // The garment on a black background: dark pixels abound, white ones are rare.
      assert.ok(properties.darkShare > 0.2 && properties.brightShare < 0.2, `image ${index}: ${JSON.stringify(properties)}`);
    }
  });

  test(
    'photos from python3-skimage: their sizes, colour where there is colour, none in the gray camera photo',
    { skip: existsSync(SKIMAGE_DATA) ? false : `${SKIMAGE_DATA} is absent (Debian package python3-skimage)` },
    async () => {
      const measure = async (file: string) => imageProperties(await readFile(join(SKIMAGE_DATA, file)));
      const [cat, astronaut, camera, hubble] = await Promise.all(['chelsea.png', 'astronaut.png', 'camera.png', 'hubble_deep_field.jpg'].map(measure));
      assert.deepEqual([cat.width, cat.height], [451, 300]);
      assert.deepEqual([astronaut.width, astronaut.height], [512, 512]);
      assert.deepEqual([hubble.width, hubble.height], [1000, 872]);
      assert.equal(camera.colourfulness, 0, 'camera.png is gray');
      // The astronaut in front of the flag is far more colourful than the gray-brown cat; both well above gray.
      assert.ok(astronaut.colourfulness > cat.colourfulness && cat.colourfulness > 0.05, `astronaut ${astronaut.colourfulness}, cat ${cat.colourfulness}`);
      // Unlike Fashion-MNIST's black background, a daylight photo has few near-black pixels; the deep field is mostly dark sky.
      assert.ok(cat.darkShare < 0.05, `cat dark share ${cat.darkShare}`);
      assert.ok(hubble.brightness < 0.2, `hubble brightness ${hubble.brightness}`);
    },
  );
});

describe('pixelToneProperties', () => {
  test('gray with alpha reads the gray band; pixels that do not divide into whole pixels are refused', () => {
    const properties = pixelToneProperties(Uint8Array.from([0, 255, 255, 255]), 2);
    close(properties.brightness, 0.5, 'brightness');
    assert.equal(properties.colourfulness, 0);
    assert.throws(() => pixelToneProperties(new Uint8Array(5), 3), /5 bytes are not whole pixels of 3 channel/);
  });
});

test('imagePropertyFeatures names each property input.<property>', async () => {
  const features = imagePropertyFeatures(await imageProperties(await png(4, 2, () => [0])));
  assert.deepEqual(Object.keys(features).sort(), [
    'input.aspectRatio',
    'input.brightShare',
    'input.brightness',
    'input.colourfulness',
    'input.contrast',
    'input.darkShare',
    'input.height',
    'input.width',
  ]);
  assert.equal(features['input.width'], 4);
});

describe('tensorFeatureSummaries', () => {
  const fp32 = (shape: number[], values: number[]): Tensor => ({ datatype: 'FP32', shape, data: Float32Array.from(values) });

  test('a [batch, features] tensor is summarised per column', () => {
    const summaries = tensorFeatureSummaries('x', fp32([3, 2], [1, 10, 2, 20, 3, 60]));
    assert.deepEqual(
      summaries.map(({ feature, count, min, max }) => ({ feature, count, min, max })),
      [
        { feature: 'x[0]', count: 3, min: 1, max: 3 },
        { feature: 'x[1]', count: 3, min: 10, max: 60 },
      ],
    );
    close(summaries[0].mean, 2, 'x[0] mean');
    close(summaries[0].std, Math.sqrt(2 / 3), 'x[0] std');
    close(summaries[1].mean, 30, 'x[1] mean');
    close(summaries[1].std, Math.sqrt((400 + 100 + 900) / 3), 'x[1] std');
  });

  test('an NCHW image tensor is summarised per channel, pooling positions and rows', () => {
    // [2 rows, 2 channels, 1, 2]: channel 0 holds 1..4, channel 1 holds 10, 20, 30, 40.
    const tensor = fp32([2, 2, 1, 2], [1, 2, 10, 20, 3, 4, 30, 40]);
    const summaries = tensorFeatureSummaries('image', tensor);
    assert.deepEqual(summaries.map((summary) => summary.feature), ['image.channel0', 'image.channel1']);
    assert.deepEqual(summaries.map(({ count, mean, min, max }) => [count, mean, min, max]), [
      [4, 2.5, 1, 4],
      [4, 25, 10, 40],
    ]);
    const values = tensorFeatureValues('image', tensor);
    assert.deepEqual(values.map(({ values }) => Array.from(values)), [
      [1.5, 3.5],
      [15, 35],
    ]);
  });

  test('NHWC is grouped by the last axis when told', () => {
    // [1 row, 2 high, 1 wide, 3 channels]
    const tensor = fp32([1, 2, 1, 3], [1, 2, 3, 5, 6, 7]);
    const summaries = tensorFeatureSummaries('rgb', tensor, { by: 'channel', axis: 3 });
    assert.deepEqual(summaries.map(({ feature, mean }) => [feature, mean]), [
      ['rgb.channel0', 3],
      ['rgb.channel1', 4],
      ['rgb.channel2', 5],
    ]);
    assert.throws(() => tensorFeatureSummaries('rgb', tensor, { by: 'channel', axis: 0 }), /no channel axis 0 \(axes 1 to 3; 0 is the batch\)/);
  });

  test('FP16 is read from its bits, INT64 as numbers; NaN and Infinity are counted apart', () => {
    const half: Tensor = { datatype: 'FP16', shape: [2, 1], data: Uint16Array.from([1.5, -2].map(numberToHalf)) };
    assert.deepEqual(tensorFeatureSummaries('h', half).map(({ min, max }) => [min, max]), [[-2, 1.5]]);
    const long: Tensor = { datatype: 'INT64', shape: [2, 1], data: BigInt64Array.from([7n, -3n]) };
    assert.equal(tensorFeatureSummaries('l', long)[0].mean, 2);
    const [summary] = tensorFeatureSummaries('f', fp32([4, 1], [1, NaN, Infinity, 3]));
    assert.deepEqual([summary.count, summary.nonFinite, summary.mean], [2, 2, 2]);
  });

  test('refuses BYTES, scalars and more element features than the bound', () => {
    assert.throws(() => tensorFeatureSummaries('s', { datatype: 'BYTES', shape: [1], data: [Buffer.from('a')] }), /tensor 's' is BYTES/);
    assert.throws(() => tensorFeatureSummaries('s', fp32([], [1])), /scalar/);
    const wide = fp32([1, MAX_TENSOR_FEATURES + 1], new Array(MAX_TENSOR_FEATURES + 1).fill(0));
    assert.throws(() => tensorFeatureSummaries('wide', wide), /group them by channel/);
  });

  test('a Fashion-MNIST training batch, normalised by the model config’s mean and std, has channel mean near 0 and std near 1', async () => {
    const rows = 2000;
    const batch: Tensor = { datatype: 'FP32', shape: [rows, 1, 28, 28], data: await fashionMnistBatch('train', rows) };
    const [summary] = tensorFeatureSummaries('input', batch);
    assert.equal(summary.feature, 'input.channel0');
    assert.equal(summary.count, rows * 784);
    assert.ok(Math.abs(summary.mean) < 0.02 && Math.abs(summary.std - 1) < 0.02, `mean ${summary.mean}, std ${summary.std}`);
    // The background pixels (0) are the minimum; (0 - 0.2858) / 0.3529.
    close(summary.min, Math.fround(-0.2858173 / 0.3529372), 'min');
  });
});
