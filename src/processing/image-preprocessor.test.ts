/**
 * Image pre-processing against hand-computed tensors: small images built with sharp from raw pixel
 * buffers (lossless formats, 'nearest' resampling where a resize happens), so expected values are exact.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import type { z } from 'zod';
import type { Datatype } from '../core/datatype.js';
import { NereidError } from '../core/errors.js';
import { imagePreprocessingSchema } from '../config/model-config.js';
import { ClientCancellation } from '../core/inference.js';
import { describeDecodeError, ImagePreprocessor, imageGeometry } from './image-preprocessor.js';

type SpecInput = z.input<typeof imagePreprocessingSchema>;
const spec = (input: SpecInput = {}) => imagePreprocessingSchema.parse(input);
const preprocessor = (input: SpecInput, dims: number[], datatype: Datatype = 'FP32') =>
  new ImagePreprocessor('image', spec(input), datatype, dims);

/** An image from raw 8-bit pixels, row by row, channel-interleaved. */
const rawImage = (width: number, height: number, channels: 1 | 2 | 3 | 4, pixels: number[]) => {
  assert.equal(pixels.length, width * height * channels, 'test image: pixel count');
  return sharp(Buffer.from(pixels), { raw: { width, height, channels } });
};
const png = (width: number, height: number, channels: 1 | 2 | 3 | 4, pixels: number[]) =>
  rawImage(width, height, channels, pixels).png().toBuffer();

/**
 * The 4x2 RGB test image: every pixel distinct, every channel telling its position.
 *   R = 10x + 100y, G = 50 + 2x, B = 200 - 20y
 */
const R = [
  [0, 10, 20, 30],
  [100, 110, 120, 130],
];
const G = [
  [50, 52, 54, 56],
  [50, 52, 54, 56],
];
const B = [
  [200, 200, 200, 200],
  [180, 180, 180, 180],
];
const RGB_4x2 = [0, 1].flatMap((y) => [0, 1, 2, 3].flatMap((x) => [R[y][x], G[y][x], B[y][x]]));
const png4x2 = () => png(4, 2, 3, RGB_4x2);

/** Values exact in FP32: the tensor as plain numbers. */
const values = (data: unknown) => Array.from(data as ArrayLike<number>, Number);
/** Rounds each expected double to FP32, as the tensor stores it. */
const f32 = (numbers: number[]) => numbers.map((value) => Math.fround(value));

const isInvalidImage = (...fragments: (string | RegExp)[]) => (error: unknown) => {
  assert.ok(error instanceof NereidError, `expected a NereidError, got ${String(error)}`);
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.match(error.message, /^input 'image' image \d+: /);
  for (const fragment of fragments) {
    if (typeof fragment === 'string') assert.ok(error.message.includes(fragment), `'${error.message}' lacks '${fragment}'`);
    else assert.match(error.message, fragment);
  }
  return true;
};

describe('geometry', () => {
  test('NCHW and NHWC dims place channels, height and width', () => {
    assert.deepEqual(imageGeometry('x', [3, 4, 6], spec({ layout: 'NCHW' })), { channels: 3, height: 4, width: 6 });
    assert.deepEqual(imageGeometry('x', [4, 6, 3], spec({ layout: 'NHWC' })), { channels: 3, height: 4, width: 6 });
    assert.deepEqual(imageGeometry('x', [1, 28, 28], spec({ color: 'grayscale' })), { channels: 1, height: 28, width: 28 });
    assert.deepEqual(preprocessor({ layout: 'NHWC' }, [4, 6, 3]).dims, [4, 6, 3]);
    assert.deepEqual(preprocessor({ layout: 'NCHW' }, [3, 4, 6]).dims, [3, 4, 6]);
  });

  test('dynamic dims take width/height (and channels) from the spec', () => {
    assert.deepEqual(imageGeometry('x', [-1, -1, -1], spec({ width: 5, height: 7 })), { channels: 3, height: 7, width: 5 });
    assert.deepEqual(preprocessor({ width: 5, height: 7, layout: 'NHWC' }, [-1, -1, 3]).dims, [7, 5, 3]);
    // A spec size that agrees with fixed dims is fine.
    assert.deepEqual(imageGeometry('x', [3, 4, 6], spec({ width: 6, height: 4 })), { channels: 3, height: 4, width: 6 });
  });

  test('rank other than 3 is refused at construction', () => {
    assert.throws(() => preprocessor({}, [1, 3, 4, 4]), /input 'image': image pre-processing needs dims of rank 3 \(NCHW without the batch\), got \[1,3,4,4\]/);
    assert.throws(() => preprocessor({ layout: 'NHWC' }, [16]), /rank 3 \(NHWC without the batch\), got \[16\]/);
  });

  test('channels that contradict the color mode are refused', () => {
    assert.throws(() => preprocessor({ color: 'grayscale' }, [3, 28, 28]), /color grayscale gives 1 channel\(s\) but dims say 3/);
    assert.throws(() => preprocessor({ color: 'rgb' }, [1, 28, 28]), /color rgb gives 3 channel\(s\) but dims say 1/);
    assert.throws(() => preprocessor({ color: 'bgr', layout: 'NHWC' }, [28, 28, 4]), /color bgr gives 3 channel\(s\) but dims say 4/);
  });

  test('a dynamic size without width/height in the spec is refused, naming the field to set', () => {
    assert.throws(() => preprocessor({}, [3, -1, -1]), /the height is dynamic in dims; set preprocess.image.height/);
    assert.throws(() => preprocessor({ height: 4 }, [3, -1, -1]), /the width is dynamic in dims; set preprocess.image.width/);
    assert.throws(() => preprocessor({ width: 5 }, [3, 4, 6]), /preprocess width 5 contradicts dims \[3,4,6\]/);
  });

  test('only FP32, FP16, FP64 and UINT8 targets', () => {
    for (const datatype of ['INT32', 'INT64', 'BYTES', 'BOOL', 'INT8'] as Datatype[]) {
      assert.throws(() => preprocessor({}, [3, 4, 4], datatype), new RegExp(`produces FP32, FP16, FP64, UINT8, not ${datatype}`));
    }
  });

  test('mean/std with a count that is neither 1 nor the channel count is refused', () => {
    assert.throws(() => preprocessor({ mean: [1, 2] }, [3, 4, 4]), /preprocess mean has 2 values for 3 channel\(s\)/);
    assert.throws(() => preprocessor({ color: 'grayscale', std: [1, 2, 3] }, [1, 4, 4]), /preprocess std has 3 values for 1 channel\(s\)/);
  });
});

describe('layout and color', () => {
  test('NCHW RGB: one plane per channel, rows top to bottom', async () => {
    const tensor = await preprocessor({ scale: 1 }, [3, 2, 4]).run([await png4x2()]);
    assert.equal(tensor.datatype, 'FP32');
    assert.deepEqual(tensor.shape, [1, 3, 2, 4]);
    assert.ok(tensor.data instanceof Float32Array);
    assert.deepEqual(values(tensor.data), [...R.flat(), ...G.flat(), ...B.flat()]);
  });

  test('NHWC RGB: channels interleaved per pixel', async () => {
    const tensor = await preprocessor({ scale: 1, layout: 'NHWC' }, [2, 4, 3]).run([await png4x2()]);
    assert.deepEqual(tensor.shape, [1, 2, 4, 3]);
    assert.deepEqual(values(tensor.data), RGB_4x2);
  });

  test('BGR reverses the channel order, in both layouts', async () => {
    const image = await png4x2();
    const nchw = await preprocessor({ scale: 1, color: 'bgr' }, [3, 2, 4]).run([image]);
    assert.deepEqual(values(nchw.data), [...B.flat(), ...G.flat(), ...R.flat()]);
    const nhwc = await preprocessor({ scale: 1, color: 'bgr', layout: 'NHWC' }, [2, 4, 3]).run([image]);
    assert.deepEqual(values(nhwc.data), [0, 1].flatMap((y) => [0, 1, 2, 3].flatMap((x) => [B[y][x], G[y][x], R[y][x]])));
  });

  test('grayscale: one channel; a gray PNG and an RGB PNG with equal channels give the same values', async () => {
    const gray = [0, 50, 100, 255, 10, 20, 30, 40];
    const fromGray = await preprocessor({ scale: 1, color: 'grayscale' }, [1, 2, 4]).run([await png(4, 2, 1, gray)]);
    assert.deepEqual(fromGray.shape, [1, 1, 2, 4]);
    assert.deepEqual(values(fromGray.data), gray);
    const fromRgb = await preprocessor({ scale: 1, color: 'grayscale', layout: 'NHWC' }, [2, 4, 1]).run([
      await png(4, 2, 3, gray.flatMap((v) => [v, v, v])),
    ]);
    assert.deepEqual(fromRgb.shape, [1, 2, 4, 1]);
    assert.deepEqual(values(fromRgb.data), gray);
  });

  test('grayscale of a colour image is its luminance (pure red is darker than pure green)', async () => {
    const tensor = await preprocessor({ scale: 1, color: 'grayscale' }, [1, 1, 3]).run([
      await png(3, 1, 3, [255, 0, 0, 0, 255, 0, 255, 255, 255]),
    ]);
    const [red, green, white] = values(tensor.data);
    assert.ok(red > 0 && red < green && green < white, `luminance red ${red}, green ${green}, white ${white}`);
    assert.equal(white, 255);
  });

  test('a gray image fed to an RGB model is replicated to three equal channels', async () => {
    const gray = [0, 50, 100, 255];
    const tensor = await preprocessor({ scale: 1 }, [3, 1, 4]).run([await png(4, 1, 1, gray)]);
    assert.deepEqual(values(tensor.data), [...gray, ...gray, ...gray]);
  });

  test('a 16-bit PNG decodes to 8-bit values', async () => {
    const gray = [0, 255, 128, 64];
    const sixteen = await rawImage(4, 1, 1, gray).toColourspace('grey16').png().toBuffer();
    assert.equal((await sharp(sixteen).metadata()).depth, 'ushort');
    const tensor = await preprocessor({ scale: 1, color: 'grayscale' }, [1, 1, 4]).run([sixteen]);
    assert.deepEqual(values(tensor.data), gray);
  });

  test('a batch writes each image into its own row, in order', async () => {
    const a = await png(2, 1, 1, [1, 2]);
    const b = await png(2, 1, 1, [3, 4]);
    const tensor = await preprocessor({ scale: 1, color: 'grayscale' }, [1, 1, 2]).run([a, b, a]);
    assert.deepEqual(tensor.shape, [3, 1, 1, 2]);
    assert.deepEqual(values(tensor.data), [1, 2, 3, 4, 1, 2]);
  });
});

describe('resize modes', () => {
  test('stretch: 2x2 to 4x2 with nearest repeats each column, rows untouched', async () => {
    const image = await png(2, 2, 1, [10, 20, 30, 40]);
    const tensor = await preprocessor({ scale: 1, color: 'grayscale', resize: 'stretch', interpolation: 'nearest' }, [1, 2, 4]).run([image]);
    assert.deepEqual(values(tensor.data), [10, 10, 20, 20, 30, 30, 40, 40]);
  });

  test('stretch: 2x1 to 4x3 with nearest ignores the aspect ratio', async () => {
    const image = await png(2, 1, 1, [10, 20]);
    const tensor = await preprocessor({ scale: 1, color: 'grayscale', interpolation: 'nearest' }, [1, 3, 4]).run([image]);
    assert.deepEqual(values(tensor.data), [10, 10, 20, 20, 10, 10, 20, 20, 10, 10, 20, 20]);
  });

  test('stretch to the same size leaves pixels as they are, whatever the kernel', async () => {
    for (const interpolation of ['nearest', 'linear', 'cubic', 'lanczos3'] as const) {
      const tensor = await preprocessor({ scale: 1, layout: 'NHWC', interpolation }, [2, 4, 3]).run([await png4x2()]);
      assert.deepEqual(values(tensor.data), RGB_4x2, interpolation);
    }
  });

  test('shorter_side_center_crop: 4x2 to 2x2 keeps the middle columns', async () => {
    const tensor = await preprocessor({ scale: 1, resize: 'shorter_side_center_crop', interpolation: 'nearest' }, [3, 2, 2]).run([
      await png4x2(),
    ]);
    const middle = (plane: number[][]) => plane.flatMap((row) => row.slice(1, 3));
    assert.deepEqual(values(tensor.data), [...middle(R), ...middle(G), ...middle(B)]);
  });

  test('shorter_side_center_crop: 1x4 (tall) to 1x2 keeps the middle rows', async () => {
    const tensor = await preprocessor(
      { scale: 1, color: 'grayscale', resize: 'shorter_side_center_crop', interpolation: 'nearest' },
      [1, 2, 1],
    ).run([await png(1, 4, 1, [10, 20, 30, 40])]);
    assert.deepEqual(values(tensor.data), [20, 30]);
  });

  test('shorter_side_center_crop: 2x1 to 4x4 scales the shorter side up, then crops the middle', async () => {
    // 2x1 -> 8x4 (x4, nearest) -> middle 4 columns: columns 2..5 of [a a a a b b b b]
    const tensor = await preprocessor(
      { scale: 1, color: 'grayscale', resize: 'shorter_side_center_crop', interpolation: 'nearest' },
      [1, 4, 4],
    ).run([await png(2, 1, 1, [10, 20])]);
    assert.deepEqual(values(tensor.data), Array(4).fill([10, 10, 20, 20]).flat());
  });

  test('letterbox: 4x2 to 4x4 adds fill rows above and below', async () => {
    const tensor = await preprocessor({ scale: 1, resize: 'letterbox', interpolation: 'nearest', fill: [7, 8, 9] }, [3, 4, 4]).run([
      await png4x2(),
    ]);
    const boxed = (plane: number[][], fill: number) => [Array(4).fill(fill), ...plane, Array(4).fill(fill)].flat();
    assert.deepEqual(values(tensor.data), [...boxed(R, 7), ...boxed(G, 8), ...boxed(B, 9)]);
  });

  test('letterbox: 1x2 to 4x4 scales up and adds fill columns left and right (NHWC)', async () => {
    // 1x2 (w x h) -> 2x4 -> centred in 4 columns: fill, a, a, fill
    const tensor = await preprocessor(
      { scale: 1, resize: 'letterbox', interpolation: 'nearest', fill: [1, 2, 3], layout: 'NHWC' },
      [4, 4, 3],
    ).run([await png(1, 2, 3, [100, 110, 120, 200, 210, 220])]);
    const fill = [1, 2, 3];
    const top = [fill, [100, 110, 120], [100, 110, 120], fill].flat();
    const bottom = [fill, [200, 210, 220], [200, 210, 220], fill].flat();
    assert.deepEqual(values(tensor.data), [...top, ...top, ...bottom, ...bottom]);
  });

  test('letterbox with one fill value for grayscale', async () => {
    const tensor = await preprocessor(
      { scale: 1, color: 'grayscale', resize: 'letterbox', interpolation: 'nearest', fill: 33 },
      [1, 4, 2],
    ).run([await png(2, 2, 1, [10, 20, 30, 40])]);
    assert.deepEqual(values(tensor.data), [33, 33, 10, 20, 30, 40, 33, 33]);
  });

  test('letterbox of an image with the target aspect adds no fill', async () => {
    const tensor = await preprocessor({ scale: 1, resize: 'letterbox', layout: 'NHWC', fill: [7, 8, 9] }, [2, 4, 3]).run([await png4x2()]);
    assert.deepEqual(values(tensor.data), RGB_4x2);
  });
});

describe('normalisation and dtype', () => {
  const gray4 = () => png(4, 1, 1, [0, 64, 128, 255]);

  test('default scale 1/255 maps pixels to [0, 1]', async () => {
    const tensor = await preprocessor({ color: 'grayscale' }, [1, 1, 4]).run([await gray4()]);
    assert.deepEqual(values(tensor.data), f32([0, 64 / 255, 128 / 255, 1]));
  });

  test('mean and std per channel: (pixel * scale - mean) / std', async () => {
    const tensor = await preprocessor({ scale: 1, mean: [10, 20, 30], std: [2, 4, 8] }, [3, 2, 4]).run([await png4x2()]);
    const normalise = (plane: number[][], mean: number, std: number) => plane.flat().map((p) => (p - mean) / std);
    assert.deepEqual(values(tensor.data), f32([...normalise(R, 10, 2), ...normalise(G, 20, 4), ...normalise(B, 30, 8)]));
  });

  test('mean/std per channel follow the declared channel order for BGR', async () => {
    // mean/std are listed in the model's channel order: B first for bgr.
    const tensor = await preprocessor({ scale: 1, color: 'bgr', mean: [30, 20, 10], std: [8, 4, 2] }, [3, 2, 4]).run([await png4x2()]);
    const normalise = (plane: number[][], mean: number, std: number) => plane.flat().map((p) => (p - mean) / std);
    assert.deepEqual(values(tensor.data), f32([...normalise(B, 30, 8), ...normalise(G, 20, 4), ...normalise(R, 10, 2)]));
  });

  test('one mean/std value is broadcast to every channel; a scalar is accepted as one value', async () => {
    for (const normalisation of [{ mean: [100], std: [4] }, { mean: 100, std: 4 }]) {
      const tensor = await preprocessor({ scale: 1, ...normalisation }, [3, 2, 4]).run([await png4x2()]);
      assert.deepEqual(values(tensor.data), f32([...R.flat(), ...G.flat(), ...B.flat()].map((p) => (p - 100) / 4)));
    }
  });

  test('ImageNet-style normalisation: scale 1/255 with fractional mean/std', async () => {
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    const tensor = await preprocessor({ mean, std }, [3, 2, 4]).run([await png4x2()]);
    const expected = [R, G, B].flatMap((plane, c) => plane.flat().map((p) => (p / 255 - mean[c]) / std[c]));
    values(tensor.data).forEach((value, index) => assert.ok(Math.abs(value - expected[index]) < 1e-5, `at ${index}: ${value} vs ${expected[index]}`));
  });

  test('FP16: IEEE half bits', async () => {
    const tensor = await preprocessor({ color: 'grayscale', scale: 1 / 128 }, [1, 1, 4], 'FP16').run([await gray4()]);
    assert.equal(tensor.datatype, 'FP16');
    assert.ok(tensor.data instanceof Uint16Array);
    // 0 -> 0, 64/128 = 0.5 -> 0x3800, 1 -> 0x3C00, 255/128 = 1.9921875 = 1 + 1016/1024 -> 0x3C00 + 0x3F8
    assert.deepEqual(values(tensor.data), [0x0000, 0x3800, 0x3c00, 0x3ff8]);
    const negative = await preprocessor({ color: 'grayscale', scale: 1, mean: 128, std: 64 }, [1, 1, 4], 'FP16').run([await gray4()]);
    // -2 -> 0xC000, -1 -> 0xBC00, 0 -> 0, 127/64 = 1.984375 = 1 + 1008/1024 -> 0x3FF0
    assert.deepEqual(values(negative.data), [0xc000, 0xbc00, 0x0000, 0x3ff0]);
  });

  test('FP64: doubles, unrounded', async () => {
    const tensor = await preprocessor({ color: 'grayscale', mean: 0.5, std: 0.25 }, [1, 1, 4], 'FP64').run([await gray4()]);
    assert.equal(tensor.datatype, 'FP64');
    assert.ok(tensor.data instanceof Float64Array);
    const expected = [0, 64, 128, 255].map((p) => p * ((1 / 255) / 0.25) - 0.5 / 0.25);
    assert.deepEqual(values(tensor.data), expected);
    assert.notDeepEqual(values(tensor.data), f32(expected), 'FP64 must not be rounded to FP32');
  });

  test('UINT8: rounded and clamped to 0..255', async () => {
    const identity = await preprocessor({ color: 'grayscale', scale: 1 }, [1, 1, 4], 'UINT8').run([await gray4()]);
    assert.equal(identity.datatype, 'UINT8');
    assert.ok(identity.data instanceof Uint8Array);
    assert.deepEqual(values(identity.data), [0, 64, 128, 255]);
    const doubled = await preprocessor({ color: 'grayscale', scale: 2 }, [1, 1, 4], 'UINT8').run([await gray4()]);
    assert.deepEqual(values(doubled.data), [0, 128, 255, 255]);
    const shifted = await preprocessor({ color: 'grayscale', scale: 1, mean: 100 }, [1, 1, 4], 'UINT8').run([await gray4()]);
    assert.deepEqual(values(shifted.data), [0, 0, 28, 155]);
    const halved = await preprocessor({ color: 'grayscale', scale: 0.5 }, [1, 1, 4], 'UINT8').run([await png(4, 1, 1, [1, 3, 5, 255])]);
    assert.deepEqual(values(halved.data), [1, 2, 3, 128]); // 0.5, 1.5, 2.5, 127.5 rounded half up
  });
});

describe('decoding', () => {
  /** Pixel (x, y) of the image displayed after EXIF orientation 6 (rotate 90° clockwise) of a w x h image. */
  const rotate90 = (pixels: number[], width: number, height: number) => {
    const out: number[] = [];
    for (let y = 0; y < width; y++) for (let x = 0; x < height; x++) out.push(pixels[(height - 1 - x) * width + y]);
    return out;
  };

  test('EXIF orientation 6 is honoured: a 4x2 PNG decodes to 2x4, rotated clockwise', async () => {
    const gray = [10, 20, 30, 40, 50, 60, 70, 80];
    const oriented = await rawImage(4, 2, 1, gray).png().withMetadata({ orientation: 6 }).toBuffer();
    assert.equal((await sharp(oriented).metadata()).orientation, 6);
    assert.deepEqual(rotate90(gray, 4, 2), [50, 10, 60, 20, 70, 30, 80, 40]);
    const tensor = await preprocessor({ scale: 1, color: 'grayscale', interpolation: 'nearest' }, [1, 4, 2]).run([oriented]);
    assert.deepEqual(values(tensor.data), [50, 10, 60, 20, 70, 30, 80, 40]);
  });

  test('EXIF orientation 6 on a JPEG: left half white, right half black displays as top white, bottom black', async () => {
    const width = 32;
    const height = 16;
    const gray = Array.from({ length: width * height }, (_, i) => (i % width < width / 2 ? 255 : 0));
    const jpeg = await rawImage(width, height, 1, gray).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    const metadata = await sharp(jpeg).metadata();
    assert.deepEqual([metadata.format, metadata.width, metadata.height, metadata.orientation], ['jpeg', 32, 16, 6]);
    // Decoded at its displayed size (16 wide, 32 tall) with no resampling.
    const tensor = await preprocessor({ scale: 1, color: 'grayscale', interpolation: 'nearest' }, [1, 32, 16]).run([jpeg]);
    const pixels = values(tensor.data);
    const rowMean = (y: number) => pixels.slice(y * 16, (y + 1) * 16).reduce((a, b) => a + b, 0) / 16;
    for (let y = 0; y < 12; y++) assert.ok(rowMean(y) > 240, `row ${y} should be white, mean ${rowMean(y)}`);
    for (let y = 20; y < 32; y++) assert.ok(rowMean(y) < 15, `row ${y} should be black, mean ${rowMean(y)}`);
  });

  test('a photo sent as JPEG, WebP or as a PNG of the pixels the JPEG decodes to reaches the model the same: no shrink-on-load', async () => {
    const cat = await readFile(new URL('../../examples/images/cat.jpg', import.meta.url));
    const { data, info } = await sharp(cat).raw().toBuffer({ resolveWithObject: true });
    const decoded = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
    const lossless = [await decoded.clone().png().toBuffer(), await decoded.clone().webp({ lossless: true }).toBuffer()];
    for (const resize of ['stretch', 'shorter_side_center_crop'] as const) {
      const fashion = preprocessor({ scale: 1, color: 'grayscale', resize }, [1, 28, 28]);
      const fromJpeg = values((await fashion.run([cat])).data);
      for (const other of lossless) assert.deepEqual(values((await fashion.run([other])).data), fromJpeg, resize);
    }
  });

  test('alpha is flattened onto the fill colour (RGB)', async () => {
    const rgba = await png(3, 1, 4, [255, 0, 0, 255, 0, 255, 0, 0, 200, 100, 0, 128]);
    const tensor = await preprocessor({ scale: 1, fill: [7, 8, 9], layout: 'NHWC' }, [1, 3, 3]).run([rgba]);
    // opaque red stays; transparent green becomes the fill; half-transparent (200,100,0) over (7,8,9): p*a + fill*(1-a), a = 128/255
    const a = 128 / 255;
    const blend = [200, 100, 0].map((p, c) => Math.round(p * a + [7, 8, 9][c] * (1 - a)));
    const got = values(tensor.data);
    assert.deepEqual(got.slice(0, 6), [255, 0, 0, 7, 8, 9]);
    got.slice(6).forEach((value, c) => assert.ok(Math.abs(value - blend[c]) <= 1, `channel ${c}: ${value} vs ${blend[c]}`));
  });

  test('alpha is flattened onto the fill colour (gray + alpha, grayscale model)', async () => {
    const grayAlpha = await png(2, 1, 2, [200, 255, 100, 0]);
    const tensor = await preprocessor({ scale: 1, color: 'grayscale', fill: [40] }, [1, 1, 2]).run([grayAlpha]);
    assert.deepEqual(values(tensor.data), [200, 40]);
  });

  describe('formats', () => {
    // A 16x16 image of four flat 8x8 quadrants, so lossy codecs keep it close.
    const quadrants = [
      [200, 30, 30],
      [30, 200, 30],
      [30, 30, 200],
      [220, 220, 220],
    ];
    const pixels = Array.from({ length: 16 * 16 }, (_, i) => quadrants[(Math.floor(i / 16) >= 8 ? 2 : 0) + (i % 16 >= 8 ? 1 : 0)]).flat();
    const encoders: Record<string, [(image: Sharp) => Sharp, number, string]> = {
      JPEG: [(image) => image.jpeg({ quality: 95 }), 12, 'jpeg'],
      PNG: [(image) => image.png(), 0, 'png'],
      WebP: [(image) => image.webp({ lossless: true }), 0, 'webp'],
      GIF: [(image) => image.gif(), 0, 'gif'],
      TIFF: [(image) => image.tiff({ compression: 'lzw' }), 0, 'tiff'],
      AVIF: [(image) => image.avif({ quality: 90 }), 16, 'heif'],
    };
    for (const [name, [encode, tolerance, format]] of Object.entries(encoders)) {
      test(`${name} decodes`, async (t) => {
        let encoded: Buffer;
        try {
          encoded = await encode(rawImage(16, 16, 3, pixels)).toBuffer();
        } catch (error) {
          if (name === 'AVIF') return t.skip(`this sharp build cannot encode AVIF: ${(error as Error).message}`);
          throw error;
        }
        assert.equal((await sharp(encoded).metadata()).format, format);
        const tensor = await preprocessor({ scale: 1, layout: 'NHWC', interpolation: 'nearest' }, [16, 16, 3]).run([encoded]);
        // Compare the centre pixel of each quadrant, away from codec edge effects.
        const got = values(tensor.data);
        for (const [q, [x, y]] of [[4, 4], [11, 4], [4, 11], [11, 11]].entries()) {
          const at = (y * 16 + x) * 3;
          quadrants[q].forEach((expected, c) =>
            assert.ok(Math.abs(got[at + c] - expected) <= tolerance, `${name} quadrant ${q} channel ${c}: ${got[at + c]} vs ${expected}`),
          );
        }
      });
    }
  });
});

describe('invalid images', () => {
  const pre = () => preprocessor({}, [3, 8, 8]);
  /** Noise does not compress, so the PNG's pixel data spans most of the file. */
  const noise = (length: number) => Array.from({ length }, (_, i) => (i * 2654435761) % 251);

  test('a truncated PNG (cut in its pixel data)', async () => {
    const image = await png(32, 32, 3, noise(32 * 32 * 3));
    await pre().run([image]); // whole, it decodes
    await assert.rejects(pre().run([image.subarray(0, Math.floor(image.length / 2))]), isInvalidImage('truncated or corrupt'));
  });

  test('a PNG cut inside its header', async () => {
    const image = await png(4, 4, 3, noise(48));
    await assert.rejects(pre().run([image.subarray(0, 20)]), isInvalidImage(/truncated or corrupt|not an image/));
  });

  test('a truncated JPEG', async () => {
    const image = await rawImage(32, 32, 3, noise(32 * 32 * 3)).jpeg().toBuffer();
    await pre().run([image]);
    await assert.rejects(pre().run([image.subarray(0, Math.floor(image.length / 2))]), isInvalidImage('truncated or corrupt'));
  });

  test('text is not an image, and the message lists the supported formats', async () => {
    await assert.rejects(
      pre().run([Buffer.from('hello, this is a text file and not a picture\n')]),
      isInvalidImage('not an image in a supported format (JPEG, PNG, WebP, GIF, TIFF, AVIF)'),
    );
  });

  test('an image sent as its base64 text (a common mistake with JSON BYTES) is refused saying so and how to send it', async () => {
    const png = await rawImage(8, 8, 3, noise(8 * 8 * 3)).png().toBuffer();
    for (const text of [png.toString('base64'), `data:image/png;base64,${png.toString('base64')}`]) {
      await assert.rejects(pre().run([Buffer.from(text)]), isInvalidImage('it is base64 text of an image: a V2 BYTES element carries the raw bytes'));
    }
    await assert.rejects(pre().run([Buffer.from('hello')]), (error: Error) => !error.message.includes('base64'));
  });

  test('SVG (which libvips could render) is not one of the accepted formats', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="red"/></svg>');
    await assert.rejects(pre().run([svg]), isInvalidImage('not an image in a supported format'));
  });

  test('zero bytes', async () => {
    await assert.rejects(pre().run([Buffer.alloc(0)]), isInvalidImage('the image is empty (0 bytes)'));
  });

  test('more bytes than max_bytes is refused before decoding', async () => {
    const image = await png(4, 4, 3, noise(48));
    const limited = preprocessor({ max_bytes: image.length - 1 }, [3, 8, 8]);
    await assert.rejects(limited.run([image]), isInvalidImage(`the encoded image is ${image.length} bytes, over the limit of ${image.length - 1} bytes (max_bytes)`));
    await preprocessor({ max_bytes: image.length }, [3, 8, 8]).run([image]); // at the limit is fine
  });

  test('more pixels than max_pixels', async () => {
    const image = await png(10, 10, 3, noise(300));
    await assert.rejects(preprocessor({ max_pixels: 99 }, [3, 8, 8]).run([image]), isInvalidImage('larger than the limit of 99 pixels (max_pixels)'));
    await preprocessor({ max_pixels: 100 }, [3, 8, 8]).run([image]); // at the limit is fine
  });

  test('a PNG whose header claims 100000x100000 pixels is refused from its header, without decoding or allocating them', async () => {
    const chunk = (type: string, data: Buffer) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(data.length);
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(body));
      return Buffer.concat([length, body, crc]);
    };
    const header = Buffer.alloc(13);
    header.writeUInt32BE(100_000, 0);
    header.writeUInt32BE(100_000, 4);
    header[8] = 8; // bit depth; colour type 0 (gray), deflate, no filter, no interlace
    const bomb = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', header),
      // Not deflate data: a preprocessor that began decoding would fail on it, with another message than the limit's.
      chunk('IDAT', Buffer.from('these bytes are not deflate data')),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    const metadata = await sharp(bomb, { limitInputPixels: false }).metadata();
    assert.deepEqual([metadata.width, metadata.height], [100_000, 100_000], 'the crafted header is read as such');
    await assert.rejects(pre().run([bomb]), isInvalidImage('larger than the limit of 40000000 pixels (max_pixels)'));
  });

  test('the message names which image of the batch is bad', async () => {
    const good = await png(4, 4, 3, noise(48));
    await assert.rejects(pre().run([good, Buffer.from('nope'), good]), isInvalidImage(/^input 'image' image 1: /));
  });

  test('never a crash: every prefix and single-byte corruption of small PNG/JPEG/GIF images answers a tensor or INVALID_ARGUMENT', async () => {
    const source = rawImage(6, 5, 3, noise(90));
    const images = [await source.clone().png().toBuffer(), await source.clone().jpeg().toBuffer(), await source.clone().gif().toBuffer()];
    const p = pre();
    const attempts: Buffer[] = [];
    for (const image of images) {
      for (let cut = 1; cut < image.length; cut += 3) attempts.push(image.subarray(0, cut));
      for (let at = 0; at < image.length; at += 5) {
        const corrupt = Buffer.from(image);
        corrupt[at] ^= 0xff;
        attempts.push(corrupt);
      }
    }
    const outcomes = await Promise.allSettled(attempts.map((attempt) => p.run([attempt])));
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') assert.deepEqual(outcome.value.shape, [1, 3, 8, 8]);
      else isInvalidImage()(outcome.reason);
    }
  });
});

/** CRC-32 as PNG chunks use it (zlib.crc32 is Node 22+). */
function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

test("a decode failure sharp reports only as 'Unknown error' (libvips's shared error buffer emptied by another thread) is still said to be a truncated or corrupt image", () => {
  assert.equal(describeDecodeError('Unknown error', 100), 'it is truncated or corrupt (the decoder gave no detail)');
  assert.equal(describeDecodeError('VipsJpeg: premature end of JPEG image\nmore', 100), 'it is truncated or corrupt (VipsJpeg: premature end of JPEG image)');
});

describe('decode slots', () => {
  test('a preprocessor asked for a request already called off decodes nothing and says CANCELLED', async () => {
    const left = new ClientCancellation();
    left.abort();
    const image = await png(1, 1, 3, [1, 2, 3]);
    await assert.rejects(preprocessor({}, [3, 1, 1]).runMeasured([image, image], false, left), (error: NereidError) => error.code === 'CANCELLED');
  });
});
