/**
 * Handwritten digits (scikit-learn's 8×8 set). Send grey levels 0–16 as
 * `{"image": [[8 numbers] × 8]}`, `{"pixels": [64 numbers]}` or `{"images": [...]}` for several;
 * get `{"digit": n, "probabilities": [10]}` (a list of them for several).
 *
 * The request and response are declared with zod: the runtime validates each request before `predict` runs (a 400
 * naming the first bad field), types `payload` from the schema, checks responses in dev and test mode, and puts both
 * schemas and the example into the API's OpenAPI document and playground.
 */
import { z } from 'zod';
import { definePredictor, type Model } from 'arclight';

const SIDE = 8;
const PIXELS = SIDE * SIDE;
const MAX_GREY = 16;
const MAX_IMAGES = 1024;

const greyLevel = z.number().min(0).max(MAX_GREY);
const image = z
  .array(z.array(greyLevel).length(SIDE, `a row has ${SIDE} grey levels`))
  .length(SIDE, `an image has ${SIDE} rows of ${SIDE}`)
  .describe('8 rows of 8 grey levels 0–16');
const pixels = z
  .array(greyLevel)
  .length(PIXELS, `an image has ${PIXELS} pixels (8×8)`)
  .describe('64 grey levels 0–16, row by row');

const request = z
  .object({
    image: image.optional(),
    pixels: pixels.optional(),
    images: z
      .array(z.union([image, pixels]))
      .min(1)
      .max(MAX_IMAGES)
      .optional()
      .describe(`1 to ${MAX_IMAGES} images, each 8×8 or 64 pixels; the answer is a list`),
  })
  .strict()
  .refine((body) => [body.image, body.pixels, body.images].filter((v) => v !== undefined).length === 1, {
    message: 'send exactly one of "image" (8×8), "pixels" (64) or "images" (a list of either)',
  });

const prediction = z.object({
  digit: z.number().int().min(0).max(9),
  probabilities: z.array(z.number().min(0).max(1)).length(10),
});

type Prediction = z.infer<typeof prediction>;

/** A zero on a blank 8×8 canvas, as the scikit-learn set draws it. */
const ZERO = [
  [0, 0, 5, 13, 9, 1, 0, 0],
  [0, 0, 13, 15, 10, 15, 5, 0],
  [0, 3, 15, 2, 0, 11, 8, 0],
  [0, 4, 12, 0, 0, 8, 8, 0],
  [0, 5, 8, 0, 0, 9, 8, 0],
  [0, 4, 11, 0, 1, 12, 7, 0],
  [0, 2, 14, 5, 10, 12, 0, 0],
  [0, 0, 6, 13, 10, 0, 0, 0],
];

export default definePredictor({
  request,
  response: z.union([prediction, z.array(prediction)]),
  example: { image: ZERO },
  async predict({ payload }, { model }) {
    if (payload.images) return classify(model, payload.images.map(flat));
    const one = payload.image ?? payload.pixels;
    return (await classify(model, [flat(one!)]))[0]!;
  },
});

function flat(value: readonly number[] | readonly (readonly number[])[]): number[] {
  return (value as readonly (number | readonly number[])[]).flat();
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
