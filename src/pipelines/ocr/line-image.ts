/**
 * Pixels of an OCR pipeline: a text box cut out of the photo and straightened (a perspective
 * warp, so rotated and slanted boxes come out as upright rectangles), turned, and written into
 * the float tensors the PaddleOCR models take.
 */
import type { Quad } from './text-boxes.js';

/** An 8-bit RGB image, pixels interleaved row by row (HWC). */
export interface RgbImage {
  data: Buffer;
  width: number;
  height: number;
}

/** PaddleOCR's normalisation of text lines, (x / 255 - 0.5) / 0.5, from HWC uint8 into CHW float32 `out` (outWidth wide), from column 0. */
export function normaliseInto(image: RgbImage, out: Float32Array, outWidth: number): void {
  const { data, width, height } = image;
  const plane = height * outWidth;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const source = (y * width + x) * 3;
      const target = y * outWidth + x;
      for (let c = 0; c < 3; c++) out[c * plane + target] = (data[source + c] / 255 - 0.5) / 0.5;
    }
  }
}

/** PaddleOCR's detector normalisation (ImageNet's mean and std per RGB channel), HWC uint8 to CHW float32. */
const DETECTION_MEAN = [0.485, 0.456, 0.406];
const DETECTION_STD = [0.229, 0.224, 0.225];

export function detectionTensor(image: RgbImage): Float32Array {
  const plane = image.width * image.height;
  const tensor = new Float32Array(3 * plane);
  for (let pixel = 0; pixel < plane; pixel++) {
    for (let c = 0; c < 3; c++) tensor[c * plane + pixel] = (image.data[pixel * 3 + c] / 255 - DETECTION_MEAN[c]) / DETECTION_STD[c];
  }
  return tensor;
}

/**
 * The projective map from the rectangle [0, width] × [0, height] onto the quadrilateral, corner
 * to corner (Heckbert's square-to-quad mapping, scaled).
 */
function rectangleToQuad(quad: Quad, width: number, height: number): (x: number, y: number) => [number, number] {
  const [p0, p1, p2, p3] = quad;
  const sumX = p0.x - p1.x + p2.x - p3.x;
  const sumY = p0.y - p1.y + p2.y - p3.y;
  let a: number, b: number, d: number, e: number, g: number, h: number;
  if (Math.abs(sumX) < 1e-9 && Math.abs(sumY) < 1e-9) {
    [a, b, d, e, g, h] = [p1.x - p0.x, p2.x - p1.x, p1.y - p0.y, p2.y - p1.y, 0, 0];
  } else {
    const dx1 = p1.x - p2.x;
    const dx2 = p3.x - p2.x;
    const dy1 = p1.y - p2.y;
    const dy2 = p3.y - p2.y;
    const denominator = dx1 * dy2 - dx2 * dy1;
    g = (sumX * dy2 - dx2 * sumY) / denominator;
    h = (dx1 * sumY - sumX * dy1) / denominator;
    a = p1.x - p0.x + g * p1.x;
    b = p3.x - p0.x + h * p3.x;
    d = p1.y - p0.y + g * p1.y;
    e = p3.y - p0.y + h * p3.y;
  }
  return (x, y) => {
    const u = x / width;
    const v = y / height;
    const w = g * u + h * v + 1;
    return [(a * u + b * v + p0.x) / w, (d * u + e * v + p0.y) / w];
  };
}

/**
 * The quadrilateral cut out and straightened into an upright rectangle as wide as its longer
 * horizontal side and as high as its longer vertical one (PaddleOCR's get_rotate_crop_image):
 * each pixel sampled bilinearly, edges repeated past the border. A box much taller than wide (a
 * vertical line of text) is turned a quarter counter-clockwise.
 */
export function cropQuad(image: RgbImage, quad: Quad): RgbImage {
  const [p0, p1, p2, p3] = quad;
  const length = (a: { x: number; y: number }, b: { x: number; y: number }) => Math.hypot(a.x - b.x, a.y - b.y);
  const width = Math.max(1, Math.trunc(Math.max(length(p0, p1), length(p2, p3))));
  const height = Math.max(1, Math.trunc(Math.max(length(p0, p3), length(p1, p2))));
  const map = rectangleToQuad(quad, width, height);
  const data = Buffer.allocUnsafe(width * height * 3);
  const maxX = image.width - 1;
  const maxY = image.height - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      // Pixel centres map to pixel centres.
      const [sourceX, sourceY] = map(x + 0.5, y + 0.5);
      const sx = Math.min(maxX, Math.max(0, sourceX - 0.5));
      const sy = Math.min(maxY, Math.max(0, sourceY - 0.5));
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const x1 = Math.min(maxX, x0 + 1);
      const y1 = Math.min(maxY, y0 + 1);
      const fx = sx - x0;
      const fy = sy - y0;
      const target = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        const top = image.data[(y0 * image.width + x0) * 3 + c] * (1 - fx) + image.data[(y0 * image.width + x1) * 3 + c] * fx;
        const bottom = image.data[(y1 * image.width + x0) * 3 + c] * (1 - fx) + image.data[(y1 * image.width + x1) * 3 + c] * fx;
        data[target + c] = Math.round(top * (1 - fy) + bottom * fy);
      }
    }
  }
  const crop = { data, width, height };
  return height / width >= 1.5 ? rotateQuarterCounterClockwise(crop) : crop;
}

function rotateQuarterCounterClockwise(image: RgbImage): RgbImage {
  const { width, height } = image;
  const data = Buffer.allocUnsafe(width * height * 3);
  // The rotated image is `height` wide and `width` high; its pixel (x, y) is the original's (width - 1 - y, x).
  for (let y = 0; y < width; y++) {
    for (let x = 0; x < height; x++) {
      const source = (x * width + (width - 1 - y)) * 3;
      const target = (y * height + x) * 3;
      data[target] = image.data[source];
      data[target + 1] = image.data[source + 1];
      data[target + 2] = image.data[source + 2];
    }
  }
  return { data, width: height, height: width };
}

/** The image turned upside down. */
export function rotateHalf(image: RgbImage): RgbImage {
  const pixels = image.width * image.height;
  const data = Buffer.allocUnsafe(pixels * 3);
  for (let pixel = 0; pixel < pixels; pixel++) image.data.copy(data, (pixels - 1 - pixel) * 3, pixel * 3, pixel * 3 + 3);
  return { data, width: image.width, height: image.height };
}
