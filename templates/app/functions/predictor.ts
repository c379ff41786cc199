/**
 * Handwritten digits (scikit-learn's 8×8 set). Send `{"pixels": [64 grey levels, 0 to 16]}`, row by row; get
 * `{"digit": n, "probabilities": [10 numbers]}`. Replace the model in models/ and this file with your own.
 */
import { definePredictor, HttpError } from 'arclight';

const SIDE = 8;
const PIXELS = SIDE * SIDE;
const MAX_GREY = 16;
const USAGE = 'send {"pixels": [64 grey levels from 0 to 16]}';

export default definePredictor({
  async predict({ payload }, { model }) {
    const pixels = readPixels(payload);
    const data = Float32Array.from(pixels, (p) => p / MAX_GREY);
    // The model's own input name: `image` in the ONNX file, `x` in the TorchScript one.
    const input = model.inputs[0]!.name;
    const outputs = await model.run({ [input]: model.tensor('float32', data, [1, 1, SIDE, SIDE]) });
    const logits = Array.from(Object.values(outputs)[0]!.data as Float32Array);
    const probabilities = softmax(logits);
    return { digit: probabilities.indexOf(Math.max(...probabilities)), probabilities };
  },
});

/** The 64 pixels of the request, each checked; anything else is the client's error (400). */
function readPixels(payload: unknown): number[] {
  if (typeof payload !== 'object' || payload === null || Buffer.isBuffer(payload) || Array.isArray(payload)) {
    throw new HttpError(400, 'invalid_input', `expected a JSON object; ${USAGE}`);
  }
  const pixels = (payload as { pixels?: unknown }).pixels;
  if (!Array.isArray(pixels) || pixels.length !== PIXELS) {
    throw new HttpError(400, 'invalid_input', `"pixels" must be a list of ${PIXELS} numbers; ${USAGE}`);
  }
  pixels.forEach((p: unknown, i) => {
    if (typeof p !== 'number' || !(p >= 0 && p <= MAX_GREY)) {
      throw new HttpError(400, 'invalid_input', `pixel ${i} must be a number from 0 to ${MAX_GREY}`);
    }
  });
  return pixels as number[];
}

function softmax(logits: number[]): number[] {
  const max = Math.max(...logits);
  const exps = logits.map((l) => Math.exp(l - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}
