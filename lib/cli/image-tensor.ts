/**
 * An image file (PNG or JPEG) as a vision model's input tensor: decoded with pngjs / jpeg-js (pure JavaScript), resized
 * so its shorter side fits the model's input then centre-cropped (torchvision's Resize + CenterCrop: area-averaged
 * when shrinking, bilinear when enlarging), and
 * normalized per channel: `(pixel / scale - mean) / std`, ImageNet's mean and std by default for 3 channels.
 */
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { UsageError } from './fail.js';

/** ImageNet's per-channel (RGB) mean and standard deviation of pixels scaled to [0, 1]: what torchvision models expect. */
export const IMAGENET_MEAN: readonly number[] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly number[] = [0.229, 0.224, 0.225];
/** Edge length used for a dynamic height or width (`-1` in the model's shape). */
export const DEFAULT_IMAGE_SIZE = 224;

/** An OIP input's signature, as `GET /v2/models/{name}` lists it. */
export interface InputSignature {
  readonly name: string;
  readonly datatype: string;
  readonly shape: readonly number[];
}

export interface NormalizeOptions {
  /** Per-channel mean after scaling. @default ImageNet's for 3 channels, 0 for 1 */
  readonly mean?: readonly number[];
  /** Per-channel standard deviation after scaling. @default ImageNet's for 3 channels, 1 for 1 */
  readonly std?: readonly number[];
  /** Pixels (0–255) are divided by this first. @default 255 */
  readonly scale?: number;
  /** Height and width for dynamic dimensions. @default 224 */
  readonly size?: number;
}

/** An OIP request input: `{ name, datatype, shape, data }` with data flat, row-major. */
export interface TensorInput {
  readonly name: string;
  readonly datatype: string;
  readonly shape: number[];
  readonly data: number[];
}

interface Rgba {
  readonly width: number;
  readonly height: number;
  /** RGBA, 4 bytes per pixel, row-major. */
  readonly data: Uint8Array;
}

/** Whether `bytes` start like a PNG or a JPEG. */
export function imageKind(bytes: Uint8Array): 'png' | 'jpeg' | undefined {
  if (bytes.length >= 8 && Buffer.from(bytes.subarray(0, 8)).equals(PNG_SIGNATURE)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** The largest image decoded (pixels): a 100-megapixel JPEG is 400 MB of RGBA. */
const MAX_PIXELS = 50_000_000;

/** Decodes a PNG or JPEG into RGBA; a UsageError naming the file when it cannot be read. */
export function decodeImage(bytes: Uint8Array, file: string): Rgba {
  const kind = imageKind(bytes);
  try {
    if (kind === 'png') {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return { width: png.width, height: png.height, data: png.data };
    }
    if (kind === 'jpeg') {
      const image = jpeg.decode(bytes, {
        useTArray: true,
        formatAsRGBA: true,
        maxResolutionInMP: MAX_PIXELS / 1e6,
        maxMemoryUsageInMB: 1024,
      });
      return { width: image.width, height: image.height, data: image.data };
    }
  } catch (error) {
    throw new UsageError(`--file ${file} is not a readable ${kind?.toUpperCase()} image: ${(error as Error).message}`);
  }
  throw new UsageError(`--file ${file} is neither a PNG nor a JPEG image`);
}

/** Where height, width and channels sit in a 4-D (or batchless 3-D) image input. */
interface Layout {
  readonly channelsFirst: boolean;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly batched: boolean;
}

function layoutOf(input: InputSignature, size: number): Layout {
  const shape = input.shape;
  const batched = shape.length === 4;
  const dims = batched ? shape.slice(1) : shape;
  const fits = (n: number | undefined): n is number => n === 1 || n === 3;
  const dim = (n: number | undefined): number => (n === undefined || n < 0 ? size : n);
  if (dims.length === 3 && fits(dims[0])) {
    return { channelsFirst: true, channels: dims[0], height: dim(dims[1]), width: dim(dims[2]), batched };
  }
  if (dims.length === 3 && fits(dims[2])) {
    return { channelsFirst: false, channels: dims[2], height: dim(dims[0]), width: dim(dims[1]), batched };
  }
  throw new UsageError(
    `input '${input.name}' has shape [${shape.join(', ')}], not an image's ([N,]C,H,W or [N,]H,W,C with 1 or 3 channels)`,
    'Send the tensor as JSON with --data or --file <request.json>, or --raw to send the file as it is',
  );
}

/** The model input `input` filled from the image: resized, centre-cropped, normalized, in the input's layout. */
export function imageTensor(image: Rgba, input: InputSignature, options: NormalizeOptions = {}): TensorInput {
  const layout = layoutOf(input, options.size ?? DEFAULT_IMAGE_SIZE);
  const { mean, std, scale } = normalization(layout.channels, options, input.datatype);
  const pixels = resizeAndCrop(image, layout.width, layout.height);
  const { channels, height, width } = layout;
  const data = new Array<number>(channels * height * width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      const rgb = [pixels[p]!, pixels[p + 1]!, pixels[p + 2]!];
      const values = channels === 3 ? rgb : [0.299 * rgb[0]! + 0.587 * rgb[1]! + 0.114 * rgb[2]!];
      for (let c = 0; c < channels; c++) {
        const index = layout.channelsFirst ? (c * height + y) * width + x : (y * width + x) * channels + c;
        const value = (values[c]! / scale - mean[c]!) / std[c]!;
        data[index] = input.datatype === 'UINT8' ? Math.round(value) : value;
      }
    }
  }
  const dims = layout.channelsFirst ? [channels, height, width] : [height, width, channels];
  return { name: input.name, datatype: input.datatype, shape: layout.batched ? [1, ...dims] : dims, data };
}

function normalization(
  channels: number,
  options: NormalizeOptions,
  datatype: string,
): { mean: readonly number[]; std: readonly number[]; scale: number } {
  if (datatype === 'UINT8') {
    if (options.mean || options.std || options.scale !== undefined) {
      throw new UsageError('the model takes UINT8 pixels: --mean, --std and --pixel-scale do not apply');
    }
    return { mean: [0, 0, 0], std: [1, 1, 1], scale: 1 };
  }
  if (datatype !== 'FP32' && datatype !== 'FP64' && datatype !== 'FP16') {
    throw new UsageError(`the model's image input is ${datatype}; an image becomes FP32, FP64, FP16 or UINT8`);
  }
  const mean = options.mean ?? (channels === 3 ? IMAGENET_MEAN : [0]);
  const std = options.std ?? (channels === 3 ? IMAGENET_STD : [1]);
  if (mean.length !== channels || std.length !== channels) {
    throw new UsageError(
      `--mean and --std need ${channels} value${channels === 1 ? '' : 's'} (one per channel of the model's input)`,
    );
  }
  if (std.some((s) => s === 0)) throw new UsageError('--std values must not be 0');
  return { mean, std, scale: options.scale ?? 255 };
}

/**
 * RGB values of `width`×`height`: the image scaled so that it covers the target, then its centre cut out, so the
 * aspect ratio is kept. Shrinking averages every source pixel under each output pixel (as an antialiased resize
 * does, so a large photo does not alias); enlarging interpolates bilinearly. Alpha is dropped.
 */
function resizeAndCrop(image: Rgba, width: number, height: number): Float64Array {
  const factor = Math.max(width / image.width, height / image.height);
  const left = (image.width * factor - width) / 2;
  const top = (image.height * factor - height) / 2;
  const out = new Float64Array(width * height * 3);
  const sample = factor < 1 ? boxAverage : bilinear;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      sample(
        image,
        (x + left) / factor,
        (x + 1 + left) / factor,
        (y + top) / factor,
        (y + 1 + top) / factor,
        out,
        (y * width + x) * 3,
      );
    }
  }
  return out;
}

/** The mean of the source pixels whose centres lie in [x0, x1) × [y0, y1) (at least the nearest one). */
function boxAverage(image: Rgba, x0: number, x1: number, y0: number, y1: number, out: Float64Array, at: number): void {
  const fromX = clamp(Math.ceil(x0 - 0.5), 0, image.width - 1);
  const toX = clamp(Math.max(Math.ceil(x1 - 0.5), fromX + 1), 1, image.width);
  const fromY = clamp(Math.ceil(y0 - 0.5), 0, image.height - 1);
  const toY = clamp(Math.max(Math.ceil(y1 - 0.5), fromY + 1), 1, image.height);
  const count = (toX - fromX) * (toY - fromY);
  for (let c = 0; c < 3; c++) {
    let sum = 0;
    for (let py = fromY; py < toY; py++) {
      for (let px = fromX; px < toX; px++) sum += image.data[(py * image.width + px) * 4 + c]!;
    }
    out[at + c] = sum / count;
  }
}

/** Bilinear interpolation at the centre of the output pixel, mapped back to source coordinates (half-pixel centres). */
function bilinear(image: Rgba, x0: number, x1: number, y0: number, y1: number, out: Float64Array, at: number): void {
  const sx = clamp((x0 + x1) / 2 - 0.5, 0, image.width - 1);
  const sy = clamp((y0 + y1) / 2 - 0.5, 0, image.height - 1);
  const left = Math.floor(sx);
  const right = Math.min(left + 1, image.width - 1);
  const upper = Math.floor(sy);
  const lower = Math.min(upper + 1, image.height - 1);
  const wx = sx - left;
  const wy = sy - upper;
  for (let c = 0; c < 3; c++) {
    const pixel = (px: number, py: number): number => image.data[(py * image.width + px) * 4 + c]!;
    const above = pixel(left, upper) * (1 - wx) + pixel(right, upper) * wx;
    const below = pixel(left, lower) * (1 - wx) + pixel(right, lower) * wx;
    out[at + c] = above * (1 - wy) + below * wy;
  }
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}
