/**
 * Turns encoded images (JPEG, PNG, WebP, GIF, TIFF, AVIF) into the tensor a model takes, as its
 * config declares: EXIF orientation, color mode, resize mode, scale, mean/std, layout, dtype.
 * Decoding runs in libvips' thread pool (through sharp), so it overlaps with inference.
 */
import type { Metadata, Sharp } from 'sharp';
import { loadSharp } from '../core/sharp.js';
import { allocateTypedArray, numberToHalf, type Datatype, type NumericArray } from '../core/datatype.js';
import { NereidError } from '../core/errors.js';
import { imageDecodeSlots } from '../core/decode-slots.js';
import type { CancelSignal } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { ImagePreprocessing } from '../config/model-config.js';
import { pixelToneProperties } from '../monitoring/input-properties.js';

const SUPPORTED_TARGETS: readonly Datatype[] = ['FP32', 'FP16', 'FP64', 'UINT8'];
/** sharp's names of the decoders clients may use: JPEG, PNG, WebP, GIF, TIFF and AVIF (heif, coded with AV1: see heifRefusal). */
export const ACCEPTED_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']);

/**
 * sharp names AVIF and HEIC (an iPhone's photos) both 'heif'; only AV1 has a decoder here (libheif
 * without libde265), so a HEIF coded otherwise is refused by its header, saying what it is, rather
 * than failing to decode as if it were corrupt.
 */
function heifRefusal(metadata: Metadata): string | undefined {
  if (metadata.format !== 'heif' || metadata.compression === 'av1') return undefined;
  const coding = metadata.compression ? metadata.compression.toUpperCase() : 'not AV1';
  return `it is a HEIC image (HEIF coded with ${coding}), which this server cannot decode (AVIF, HEIF coded with AV1, it can): convert it to JPEG or PNG`;
}

export interface ImageGeometry {
  channels: number;
  height: number;
  width: number;
}

/** Where channels, height and width sit in the input's dims for the declared layout; sizes the dims leave open come from the spec. */
export function imageGeometry(inputName: string, dims: readonly number[], spec: ImagePreprocessing): ImageGeometry {
  if (dims.length !== 3) {
    throw new Error(`input '${inputName}': image pre-processing needs dims of rank 3 (${spec.layout} without the batch), got [${dims.join(',')}]`);
  }
  const [channels, height, width] = spec.layout === 'NCHW' ? dims : [dims[2], dims[0], dims[1]];
  const expectedChannels = spec.color === 'grayscale' ? 1 : 3;
  if (channels !== expectedChannels && channels !== -1) {
    throw new Error(`input '${inputName}': color ${spec.color} gives ${expectedChannels} channel(s) but dims say ${channels}`);
  }
  const resolve = (fromDims: number, fromSpec: number | undefined, what: string) => {
    if (fromSpec !== undefined && fromDims !== -1 && fromSpec !== fromDims) {
      throw new Error(`input '${inputName}': preprocess ${what} ${fromSpec} contradicts dims [${dims.join(',')}]`);
    }
    const size = fromSpec ?? fromDims;
    if (size < 1) throw new Error(`input '${inputName}': the ${what} is dynamic in dims; set preprocess.image.${what}`);
    return size;
  };
  return { channels: expectedChannels, height: resolve(height, spec.height, 'height'), width: resolve(width, spec.width, 'width') };
}

function perChannel(inputName: string, values: readonly number[], channels: number, what: string, fallback: number): number[] {
  if (values.length === 0) return Array(channels).fill(fallback);
  if (values.length === 1) return Array(channels).fill(values[0]);
  if (values.length !== channels) throw new Error(`input '${inputName}': preprocess ${what} has ${values.length} values for ${channels} channel(s)`);
  return [...values];
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${bytes} bytes`;
}

/** sharp's messages name libvips internals; say what is wrong with the client's image instead. */
export function describeDecodeError(message: string, maxPixels: number): string {
  if (/pixel limit/i.test(message)) return `it is larger than the limit of ${maxPixels} pixels (max_pixels)`;
  if (/unsupported image format/i.test(message)) return 'it is not an image in a supported format (JPEG, PNG, WebP, GIF, TIFF, AVIF)';
  if (/premature end|truncated|corrupt|damaged|Read error|end of file|VipsJpeg|gifload|pngload|tiffload|webp|heif/i.test(message)) {
    return `it is truncated or corrupt (${message.split('\n')[0]})`;
  }
  // libvips keeps one error buffer for the process: when images fail to decode at once on several threads, one may find
  // it emptied by another and sharp says only this. The format was recognised, so its data is what failed.
  if (/^Unknown error/i.test(message)) return 'it is truncated or corrupt (the decoder gave no detail)';
  return message.split('\n')[0];
}

/** The start of an image encoded as base64 text (or a data URL), by format: what a client sends when it mistakes JSON BYTES for base64. */
const BASE64_IMAGE = /^(?:data:image\/[a-z+.-]+;base64,|\/9j\/|iVBORw0KGgo|UklGR|R0lGOD|SUkq|TU0A)/;

/** A hint for bytes that are an image's base64 text rather than the image, or '' for anything else. */
function base64Hint(image: Buffer): string {
  if (!BASE64_IMAGE.test(image.subarray(0, 64).toString('latin1'))) return '';
  return '; it is base64 text of an image: a V2 BYTES element carries the raw bytes, so send the image as binary tensor data (binary_data_size with Inference-Header-Content-Length), or as the body with Content-Type image/*';
}

/**
 * How strictly every endpoint decodes a client's image, one setting for all: an image that ends
 * early (truncated) or that libvips cannot read is refused, and one whose data is damaged but
 * complete is read as image viewers show it (libjpeg fills what it cannot decode). libvips' stricter
 * 'warning' refuses such an image only when it decodes the damaged part at full size: the same
 * file was refused by an endpoint that resizes to 512 pixels and read by one that shrinks it on load.
 */
const DECODE_FAIL_ON = 'error';

/**
 * A reason worded to follow a name ("image 1: it is …") as a sentence of its own, for an image that
 * is the request's only one: "the image is …" ("the file is not an image …").
 */
export function aboutTheImage(reason: string): string {
  return reason.replace(/^it is not an image\b/, 'the file is not an image').replace(/^it /, 'the image ');
}

/** Formats libvips may decode already shrunk when a resize follows. */
const SHRUNK_ON_LOAD = new Set(['jpeg', 'webp']);

/** Why a client's encoded image cannot be used, worded to follow "input X image N: " or the like. */
export class ImageRejection extends Error {}

/**
 * Opens a client's encoded image for decoding, after refusing what should never be decoded: an
 * empty one, one over `max_bytes`, a format not in ACCEPTED_FORMATS (libvips would also render
 * SVG or PDF from a client's bytes) and one over `max_pixels` by its header. Its own width and
 * height (before EXIF orientation) come with it.
 */
export async function openEncodedImage(
  image: Buffer,
  limits: { max_bytes: number; max_pixels: number },
): Promise<{ input: Sharp; width: number; height: number; format: string }> {
  if (image.length === 0) throw new ImageRejection('the image is empty (0 bytes)');
  if (image.length > limits.max_bytes) {
    throw new ImageRejection(`the encoded image is ${formatBytes(image.length)}, over the limit of ${formatBytes(limits.max_bytes)} (max_bytes)`);
  }
  const sharp = await loadSharp();
  const input = sharp(image, { limitInputPixels: limits.max_pixels, failOn: DECODE_FAIL_ON });
  let metadata: Metadata;
  try {
    metadata = await input.metadata();
  } catch (error) {
    throw new ImageRejection(describeDecodeError((error as Error).message, limits.max_pixels) + base64Hint(image));
  }
  const { format, width = 0, height = 0 } = metadata;
  if (!format || !ACCEPTED_FORMATS.has(format)) throw new ImageRejection(describeDecodeError(`unsupported image format (${format ?? 'unknown'})`, limits.max_pixels) + base64Hint(image));
  const heif = heifRefusal(metadata);
  if (heif) throw new ImageRejection(heif);
  if (width * height > limits.max_pixels) {
    throw new ImageRejection(`it is ${width}×${height} = ${width * height} pixels, larger than the limit of ${limits.max_pixels} pixels (max_pixels)`);
  }
  return { input, width, height, format };
}

/** A client's image that cannot be used, with which one and why, so callers can name it in their own terms. */
export class ImageInputError extends NereidError {
  constructor(
    readonly input: string,
    readonly index: number,
    readonly reason: string,
  ) {
    super('INVALID_ARGUMENT', `input '${input}' image ${index}: ${reason}`);
  }
}

export class ImagePreprocessor {
  readonly geometry: ImageGeometry;
  private readonly mean: number[];
  private readonly std: number[];
  private readonly fill: { r: number; g: number; b: number };

  constructor(
    readonly inputName: string,
    private readonly spec: ImagePreprocessing,
    private readonly datatype: Datatype,
    dims: readonly number[],
  ) {
    if (!SUPPORTED_TARGETS.includes(datatype)) {
      throw new Error(`input '${inputName}': image pre-processing produces ${SUPPORTED_TARGETS.join(', ')}, not ${datatype}`);
    }
    this.geometry = imageGeometry(inputName, dims, spec);
    const { channels } = this.geometry;
    this.mean = perChannel(inputName, spec.mean, channels, 'mean', 0);
    this.std = perChannel(inputName, spec.std, channels, 'std', 1);
    const [r, g = r, b = r] = spec.fill;
    this.fill = { r, g, b };
  }

  /** The shape of one preprocessed image, without the batch dimension. */
  get dims(): number[] {
    const { channels, height, width } = this.geometry;
    return this.spec.layout === 'NCHW' ? [channels, height, width] : [height, width, channels];
  }

  /** Decodes to 8-bit pixels, height × width × channels, in RGB / BGR / gray order. */
  async decode(image: Buffer, index: number): Promise<Buffer> {
    return (await this.decodeSized(image, index)).pixels;
  }

  /** The pixels, and the encoded image's own width and height (before orientation and resizing). */
  private async decodeSized(image: Buffer, index: number, signal?: CancelSignal): Promise<{ pixels: Buffer; width: number; height: number }> {
    return imageDecodeSlots.run(signal, () => this.decodeTaken(image, index));
  }

  private async decodeTaken(image: Buffer, index: number): Promise<{ pixels: Buffer; width: number; height: number }> {
    const problem = (what: string) => new ImageInputError(this.inputName, index, what);
    const { channels, height, width } = this.geometry;
    const background = this.fill;
    try {
      const { input, width: encodedWidth, height: encodedHeight, format } = await openEncodedImage(image, this.spec);
      // libvips would shrink a JPEG or WebP while decoding it (its DCT scaling), so the same pixels sent as JPEG and as
      // PNG would reach the model differently (up to 22 grey levels apart at 28×28). A crop of the whole image turns that
      // off: decoded whole, then resized, as PIL and torchvision prepare training data (about 2× the decode time).
      const whole = SHRUNK_ON_LOAD.has(format) ? input.extract({ left: 0, top: 0, width: encodedWidth, height: encodedHeight }) : input;
      let pipeline = whole
        .rotate() // EXIF orientation
        .flatten({ background });
      pipeline = channels === 1 ? pipeline.grayscale() : pipeline.toColourspace('srgb');
      const fit = { stretch: 'fill', shorter_side_center_crop: 'cover', letterbox: 'contain' } as const;
      pipeline = pipeline.resize(width, height, { fit: fit[this.spec.resize], position: 'centre', background, kernel: this.spec.interpolation });
      const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
      if (info.width !== width || info.height !== height || info.channels < channels) {
        throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${width}x${height}x${channels}`);
      }
      const sized = { width: encodedWidth, height: encodedHeight };
      if (info.channels === channels) return { pixels: data, ...sized };
      // libvips may keep an extra channel (e.g. gray + alpha); keep the first ones.
      const pixels = Buffer.allocUnsafe(width * height * channels);
      for (let pixel = 0; pixel < width * height; pixel++) {
        for (let c = 0; c < channels; c++) pixels[pixel * channels + c] = data[pixel * info.channels + c];
      }
      return { pixels, ...sized };
    } catch (error) {
      throw problem(error instanceof ImageRejection ? error.message : describeDecodeError((error as Error).message, this.spec.max_pixels));
    }
  }

  /** Writes one image's pixels into the batch tensor at `row`, normalised, in the declared layout and dtype. */
  private write(pixels: Buffer, target: NumericArray, row: number): void {
    const { channels, height, width } = this.geometry;
    const plane = height * width;
    const base = row * plane * channels;
    const bgr = this.spec.color === 'bgr';
    const nchw = this.spec.layout === 'NCHW';
    for (let c = 0; c < channels; c++) {
      const source = bgr ? channels - 1 - c : c;
      const scale = this.spec.scale / this.std[c];
      const offset = this.mean[c] / this.std[c];
      for (let p = 0; p < plane; p++) {
        const value = pixels[p * channels + source] * scale - offset;
        const at = base + (nchw ? c * plane + p : p * channels + c);
        if (this.datatype === 'FP16') target[at] = numberToHalf(value);
        else if (this.datatype === 'UINT8') target[at] = Math.min(255, Math.max(0, Math.round(value)));
        else target[at] = value;
      }
    }
  }

  /** Encoded images, one per batch row, to the model's input tensor [rows, ...dims]. */
  async run(images: readonly Buffer[]): Promise<Tensor> {
    return (await this.runMeasured(images, false)).tensor;
  }

  /**
   * As run, and with `measure` each image's properties as monitoring features (`input.width`,
   * `input.brightness`, …): its own size, and tones measured on the pixels the model is given, so
   * that no image is decoded twice.
   */
  async runMeasured(images: readonly Buffer[], measure = true, signal?: CancelSignal): Promise<{ tensor: Tensor; properties?: Record<string, number>[] }> {
    const decoded = await Promise.all(images.map((image, index) => this.decodeSized(image, index, signal)));
    const { channels, height, width } = this.geometry;
    const data = allocateTypedArray(this.datatype as Exclude<Datatype, 'BYTES'>, images.length * channels * height * width);
    decoded.forEach(({ pixels }, row) => this.write(pixels, data, row));
    const tensor = { datatype: this.datatype, shape: [images.length, ...this.dims], data };
    if (!measure) return { tensor };
    const properties = decoded.map(({ pixels, width: imageWidth, height: imageHeight }) => {
      const tones = pixelToneProperties(pixels, channels);
      return {
        'input.width': imageWidth,
        'input.height': imageHeight,
        'input.aspectRatio': imageHeight > 0 ? imageWidth / imageHeight : 0,
        'input.brightness': tones.brightness,
        'input.contrast': tones.contrast,
        'input.colourfulness': tones.colourfulness,
        'input.darkShare': tones.darkShare,
        'input.brightShare': tones.brightShare,
      };
    });
    return { tensor, properties };
  }
}
