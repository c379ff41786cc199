/** A custom predictor: `{"pixels": [64 grey levels 0..16]}` in, `{"digit": n}` out. */
import { definePredictor, HttpError } from 'arclight';

export default definePredictor({
  async predict({ payload }, { model }) {
    const pixels = (payload as { pixels?: unknown } | null)?.pixels;
    if (!Array.isArray(pixels) || pixels.length !== 64 || !pixels.every((p) => typeof p === 'number')) {
      throw new HttpError(400, 'invalid_input', 'send {"pixels": [64 numbers]}');
    }
    const data = Float32Array.from(pixels as number[], (p) => p / 16);
    const outputs = await model.run({ image: model.tensor('float32', data, [1, 1, 8, 8]) });
    const logits = Array.from(outputs['logits']!.data as Float32Array);
    return { digit: logits.indexOf(Math.max(...logits)) };
  },
});
