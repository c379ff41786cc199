/**
 * The digits example predictor (functions/digits/predictor.ts) served by the runtime over the real digits model:
 * the three request forms against the reference logits, and every refusal naming the shape it wants.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLambdaHandler } from '../../lib/runtime/transports/lambda-adapter.js';
import type { Runtime } from '../../lib/runtime/runtime.js';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  httpTransport,
  lambdaTransport,
  loadDigitsExpected,
  loadTestPredictor,
  startRuntime,
  startServer,
  type Reply,
  type TestServer,
  type Transport,
  contractError,
} from '../helpers.js';

interface Prediction {
  digit: number;
  probabilities: number[];
}

const expected = loadDigitsExpected();
/** Grey levels 0–16 as the predictor takes them (the fixture holds them scaled to 0–1). */
const greys = expected.images.map((image) => image.map((v) => Math.round(v * 16)));
const rows = (pixels: readonly number[]): number[][] =>
  Array.from({ length: 8 }, (_, r) => pixels.slice(r * 8, r * 8 + 8));

function softmax(logits: readonly number[]): number[] {
  const max = Math.max(...logits);
  const exps = logits.map((l) => Math.exp(l - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** A prediction: the reference digit, 10 probabilities summing to ~1 that match softmax of the reference logits. */
function assertPrediction(prediction: Prediction, index: number): void {
  assert.deepEqual(Object.keys(prediction).sort(), ['digit', 'probabilities']);
  assert.equal(prediction.probabilities.length, 10);
  const sum = prediction.probabilities.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - 1) < 1e-4, `probabilities sum to ${sum}`);
  const reference = softmax(expected.logits[index]!);
  prediction.probabilities.forEach((p, k) => {
    assert.ok(p >= 0 && p <= 1);
    assert.ok(Math.abs(p - reference[k]!) < 1e-4, `image ${index} class ${k}: ${p} vs ${reference[k]}`);
  });
  assert.equal(prediction.digit, reference.indexOf(Math.max(...reference)), `image ${index}`);
}

function ok<T>(reply: Reply): T {
  assert.equal(reply.status, 200, reply.text);
  assert.equal(reply.headers['content-type'], 'application/json');
  return reply.json<T>();
}

function assertRefused(reply: Reply, status: number, code: string, pattern: RegExp): void {
  assert.equal(reply.status, status, reply.text);
  const error = contractError(reply.json());
  assert.equal(error.code, code);
  assert.match(error.message, pattern);
  assert.equal(error.requestId, reply.headers['x-request-id']);
}

const image0 = greys[0]!;
const withPixel = (index: number, value: unknown): unknown[] => image0.map((v, i) => (i === index ? value : v));
const ONE_OF = /at \$: send exactly one of "image" \(8×8\), "pixels" \(64\) or "images" \(a list of either\)/;

/**
 * Bodies the declared request schema refuses with 400 before the predictor runs, each with what the message must say:
 * the JSON path of the first bad field and what was expected there.
 */
const REFUSALS: readonly [name: string, body: string, message: RegExp][] = [
  ['7 rows', JSON.stringify({ image: rows(image0).slice(0, 7) }), /at \$\.image: an image has 8 rows of 8$/],
  [
    'a row of 9',
    JSON.stringify({ image: rows(image0).map((row, r) => (r === 3 ? [...row, 0] : row)) }),
    /at \$\.image\[3\]: a row has 8 grey levels$/,
  ],
  [
    'a row that is not an array',
    JSON.stringify({ image: rows(image0).map((row, r) => (r === 2 ? 5 : row)) }),
    /at \$\.image\[2\]: Invalid input: expected array, received number$/,
  ],
  ['65 pixels', JSON.stringify({ pixels: [...image0, 0] }), /at \$\.pixels: an image has 64 pixels \(8×8\)$/],
  ['63 pixels', JSON.stringify({ pixels: image0.slice(1) }), /at \$\.pixels: an image has 64 pixels \(8×8\)$/],
  [
    'a string pixel',
    JSON.stringify({ pixels: withPixel(5, '7') }),
    /at \$\.pixels\[5\]: Invalid input: expected number, received string$/,
  ],
  [
    'a null pixel',
    JSON.stringify({ pixels: withPixel(9, null) }),
    /at \$\.pixels\[9\]: .*expected number, received null/,
  ],
  ['a negative pixel', JSON.stringify({ pixels: withPixel(0, -1) }), /at \$\.pixels\[0\]: .*expected number to be >=0/],
  [
    'a pixel above 16',
    JSON.stringify({ pixels: withPixel(63, 17) }),
    /at \$\.pixels\[63\]: .*expected number to be <=16/,
  ],
  [
    'a nested pixel',
    JSON.stringify({ pixels: withPixel(1, [1]) }),
    /at \$\.pixels\[1\]: .*expected number, received array/,
  ],
  [
    'a pixel nested 100000 deep',
    `{"pixels":[0,${'['.repeat(100_000)}${']'.repeat(100_000)}${',0'.repeat(62)}]}`,
    /at \$\.pixels\[1\]: .*expected number, received array/,
  ],
  ['an empty object', '{}', ONE_OF],
  ['both image and pixels', JSON.stringify({ image: rows(image0), pixels: image0 }), ONE_OF],
  ['an object with other keys', '{"img": []}', /at \$: Unrecognized key: "img"/],
  ['an array body', JSON.stringify([image0]), /at \$: .*expected object, received array/],
  ['null', 'null', /at \$: .*expected object, received null/],
  ['a number', '7', /at \$: .*expected object, received number/],
  ['images: []', '{"images": []}', /at \$\.images: .*expected array to have >=1 items/],
  ['images not a list', '{"images": {"a": 1}}', /at \$\.images: .*expected array, received object/],
  [
    'more than 1024 images',
    JSON.stringify({ images: Array.from({ length: 1025 }, () => image0) }),
    /at \$\.images: .*expected array to have <=1024 items/,
  ],
  [
    'an image among images that is wrong',
    JSON.stringify({ images: [image0, image0.slice(2)] }),
    /at \$\.images\[1\]: an image has 64 pixels/,
  ],
  ['image given flat', JSON.stringify({ image: image0 }), /at \$\.image: an image has 8 rows of 8/],
  [
    'pixels given nested',
    JSON.stringify({ pixels: rows(image0) }),
    /at \$\.pixels\[0\]: .*expected number, received array/,
  ],
  ['image not an array', '{"image": "0,1,2"}', /at \$\.image: .*expected array, received string/],
];

let runtime: Runtime;
let server: TestServer;

before(async () => {
  runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: await loadTestPredictor(DIGITS_PREDICTOR) });
  server = await startServer(runtime);
});

after(async () => {
  await server?.close();
});

for (const [transportName, transportOf] of [
  ['node:http', () => httpTransport(server.url)],
  ['Lambda (API Gateway v2 event)', () => lambdaTransport(createLambdaHandler(runtime))],
] as const) {
  describe(`digits predictor through ${transportName}`, () => {
    let send: Transport;
    before(() => {
      send = transportOf();
    });

    test('{"image": 8×8} gives the digit and 10 probabilities', async () => {
      for (const index of [0, 1, 2]) {
        assertPrediction(
          ok<Prediction>(await send({ path: '/', body: JSON.stringify({ image: rows(greys[index]!) }) })),
          index,
        );
      }
    });

    test('{"pixels": [64]} gives the same as the 8×8 form', async () => {
      const flat = ok<Prediction>(await send({ path: '/', body: JSON.stringify({ pixels: image0 }) }));
      assertPrediction(flat, 0);
      const nested = ok<Prediction>(await send({ path: '/', body: JSON.stringify({ image: rows(image0) }) }));
      assert.deepEqual(flat, nested);
    });

    test('{"images": [...]} gives a list, in order, mixing both forms', async () => {
      const count = Math.min(greys.length, 16);
      const images = greys.slice(0, count).map((g, i) => (i % 2 ? rows(g) : g));
      const predictions = ok<Prediction[]>(await send({ path: '/', body: JSON.stringify({ images }) }));
      assert.ok(Array.isArray(predictions));
      assert.equal(predictions.length, count);
      predictions.forEach(assertPrediction);
      const accuracy = predictions.filter((p, i) => p.digit === expected.labels[i]).length / count;
      assert.ok(accuracy >= 0.8, `accuracy ${accuracy} on the reference images`);
    });

    test('one image in "images" is still a list', async () => {
      const predictions = ok<Prediction[]>(await send({ path: '/', body: JSON.stringify({ images: [image0] }) }));
      assert.equal(predictions.length, 1);
      assertPrediction(predictions[0]!, 0);
    });

    test('grey levels at the edges (all 0, all 16, fractional) are served', async () => {
      for (const pixels of [Array(64).fill(0), Array(64).fill(16), Array(64).fill(7.5)]) {
        const prediction = ok<Prediction>(await send({ path: '/', body: JSON.stringify({ pixels }) }));
        assert.equal(prediction.probabilities.length, 10);
        assert.ok(Number.isInteger(prediction.digit) && prediction.digit >= 0 && prediction.digit <= 9);
      }
    });

    for (const [name, body, message] of REFUSALS) {
      test(`400 for ${name}, saying what shape it wants`, async () => {
        assertRefused(await send({ path: '/', body }), 400, 'invalid_input', message);
        assertPrediction(ok<Prediction>(await send({ path: '/', body: JSON.stringify({ pixels: image0 }) })), 0);
      });
    }

    test('a JSON body sent as text/plain, as bytes or with no content type is a 415 asking for application/json', async () => {
      const body = JSON.stringify({ pixels: image0 });
      for (const contentType of ['text/plain', 'application/octet-stream']) {
        assertRefused(
          await send({ path: '/', body, headers: { 'content-type': contentType } }),
          415,
          'unsupported_media_type',
          /send Content-Type: application\/json: this predictor declares a JSON request/,
        );
      }
      assertRefused(
        await send({ path: '/', body: Buffer.from(body) }),
        415,
        'unsupported_media_type',
        /send Content-Type: application\/json/,
      );
      assertPrediction(ok<Prediction>(await send({ path: '/', body })), 0);
    });

    test('malformed JSON is a 400 malformed_json', async () => {
      assertRefused(await send({ path: '/', body: '{"pixels": [1,' }), 400, 'malformed_json', /not valid JSON/);
    });

    test('GET / describes the API and its model', async () => {
      const meta = ok<{ name: string; format: string; ready: boolean; predictor: string; inputs: { name: string }[] }>(
        await send({ path: '/' }),
      );
      assert.equal(meta.name, 'digits');
      assert.equal(meta.format, 'onnx');
      assert.equal(meta.ready, true);
      assert.equal(meta.predictor, 'custom');
      assert.deepEqual(
        meta.inputs.map((i) => i.name),
        ['image'],
      );
    });
  });
}
