/**
 * Handwritten digits (scikit-learn's 8×8 set). Send grey levels 0–16 as
 * `{"image": [[8 numbers] × 8]}`, `{"pixels": [64 numbers]}` or `{"images": [...]}` for several;
 * get `{"digit": n, "probabilities": [10]}` (a list of them for several).
 */
import { definePredictor, HttpError, type Model } from 'arclight';

const SIDE = 8;
const PIXELS = SIDE * SIDE;
const MAX_GREY = 16;
const MAX_IMAGES = 1024;
const USAGE =
  'send {"image": 8×8 nested array of grey levels 0–16}, {"pixels": [64 grey levels]} or {"images": [...]} for several';

interface Prediction {
  digit: number;
  probabilities: number[];
}

export default definePredictor({
  async predict({ payload }, { model }) {
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload) || payload instanceof Buffer) {
      throw badInput(`expected a JSON object; ${USAGE}`, payload);
    }
    const body = payload as Record<string, unknown>;
    if ('images' in body) {
      const images = body['images'];
      if (!Array.isArray(images) || images.length === 0 || images.length > MAX_IMAGES) {
        throw badInput(`"images" must be a list of 1 to ${MAX_IMAGES} images, each an 8×8 array or 64 pixels`);
      }
      return classify(
        model,
        images.map((image, i) => toPixels(image, `images[${i}]`)),
      );
    }
    if ('image' in body) return (await classify(model, [toPixels(body['image'], 'image', 'nested')]))[0]!;
    if ('pixels' in body) return (await classify(model, [toPixels(body['pixels'], 'pixels', 'flat')]))[0]!;
    throw badInput(USAGE);
  },
});

function badInput(message: string, payload?: unknown): HttpError {
  if (payload instanceof Buffer || typeof payload === 'string') {
    return new HttpError(415, 'unsupported_media_type', `send Content-Type: application/json; ${USAGE}`);
  }
  return new HttpError(400, 'invalid_input', message);
}

/** 64 grey levels from an 8×8 nested array or a flat list, each checked to be a number in 0–16. */
function toPixels(value: unknown, where: string, form?: 'nested' | 'flat'): number[] {
  if (!Array.isArray(value)) throw badInput(`${where} must be an array; ${USAGE}`);
  const nested = value.length > 0 && Array.isArray(value[0]);
  if (form === 'nested' && !nested) throw badInput(`${where} must be 8 rows of 8 grey levels`);
  if (form === 'flat' && nested) throw badInput(`${where} must be a flat list of 64 grey levels`);
  const pixels = nested ? flattenRows(value, where) : value;
  if (pixels.length !== PIXELS) throw badInput(`${where} has ${pixels.length} pixels; an image has ${PIXELS} (8×8)`);
  pixels.forEach((p, i) => {
    if (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p > MAX_GREY) {
      throw badInput(`${where} pixel ${i} is ${describe(p)}; grey levels are numbers from 0 to ${MAX_GREY}`);
    }
  });
  return pixels as number[];
}

/** A short, safe description of a bad pixel: JSON.stringify would overflow the stack on a deeply nested array. */
function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

function flattenRows(rows: unknown[], where: string): unknown[] {
  if (rows.length !== SIDE) throw badInput(`${where} has ${rows.length} rows; an image has ${SIDE} rows of ${SIDE}`);
  return rows.flatMap((row, r) => {
    if (!Array.isArray(row) || row.length !== SIDE) {
      throw badInput(
        `${where} row ${r} must be ${SIDE} grey levels, got ${Array.isArray(row) ? row.length : typeof row}`,
      );
    }
    return row as unknown[];
  });
}

async function classify(model: Model, images: number[][]): Promise<Prediction[]> {
  const data = new Float32Array(images.length * PIXELS);
  images.forEach((pixels, i) => pixels.forEach((p, j) => (data[i * PIXELS + j] = p / MAX_GREY)));
  // The model's own input name: `image` for the ONNX file, `x` for the TorchScript one (forward's argument).
  const input = model.inputs[0]!.name;
  const out = await model.run({ [input]: model.tensor('float32', data, [images.length, 1, SIDE, SIDE]) });
  const logits = (out['logits'] ?? Object.values(out)[0]!).data as Float32Array;
  return images.map((_, i) => toPrediction(logits.subarray(i * 10, i * 10 + 10)));
}

function toPrediction(logits: Float32Array): Prediction {
  const max = Math.max(...logits);
  const exps = Array.from(logits, (l) => Math.exp(l - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  const probabilities = exps.map((e) => Math.round((e / sum) * 1e6) / 1e6);
  return { digit: probabilities.indexOf(Math.max(...probabilities)), probabilities };
}
