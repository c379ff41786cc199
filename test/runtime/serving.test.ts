/**
 * Serving end to end over real sockets: models uploaded to s3rver with the AWS SDK, pulled by the runtime's model
 * store, run by onnxruntime-node, answered through the node:http adapter.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import ort from 'onnxruntime-node';
import { DIGITS, oipBinaryBody } from '../../bench/payloads.js';
import { createLogger } from '../../lib/runtime/telemetry/logger.js';
import { Runtime } from '../../lib/runtime/runtime.js';
import {
  DIGITS_PREDICTOR,
  MOBILENET_ONNX,
  digitsInferBody,
  loadDigitsExpected,
  loadTestPredictor,
  startRuntime,
  startS3WithModels,
  startServer,
  type TestServer,
  DIGIT_CLASSES,
  MIN_ACCURACY,
  accuracy,
  argmax,
  assertBatchLogits,
  assertLogitsClose,
  greyLevels,
  contractError,
} from '../helpers.js';

const expected = loadDigitsExpected();

interface InferResponse {
  model_name: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: number[]; data?: number[]; parameters?: Record<string, unknown> }[];
}

interface DigitPrediction {
  digit: number;
  probabilities: number[];
}

type S3 = Awaited<ReturnType<typeof startS3WithModels>>;

let s3: S3;
let digits: TestServer;

before(async () => {
  s3 = await startS3WithModels();
  const runtime = await startRuntime({
    modelUri: s3.digits.uri,
    modelSha256: s3.digits.sha256,
    env: s3.env,
    predictor: await loadTestPredictor(DIGITS_PREDICTOR),
  });
  digits = await startServer(runtime);
});

after(async () => {
  await digits?.close();
  await s3?.close();
});

function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function okJson<T>(response: Response): Promise<T> {
  const text = await response.text();
  assert.equal(response.status, 200, text);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  return JSON.parse(text) as T;
}

describe('digits through the Open Inference Protocol (model pulled from s3rver)', () => {
  test('all 397 images in batches give the reference logits', async () => {
    const batches = [expected.images.slice(0, 100), expected.images.slice(100, 250), expected.images.slice(250)];
    let offset = 0;
    for (const images of batches) {
      const body = await okJson<InferResponse>(
        await postJson(`${digits.url}/v2/models/digits/infer`, digitsInferBody(images)),
      );
      assert.equal(body.model_name, 'digits');
      assert.equal(body.outputs.length, 1);
      const [output] = body.outputs;
      assert.equal(output!.name, 'logits');
      assert.equal(output!.datatype, 'FP32');
      assert.deepEqual(output!.shape, [images.length, DIGIT_CLASSES]);
      assert.equal(output!.data!.length, images.length * DIGIT_CLASSES);
      assertBatchLogits(output!.data!, images.length, expected.logits, offset);
      offset += images.length;
    }
    assert.equal(offset, expected.images.length);
  });

  test('all 397 images one per request give the reference logits, and the request id round-trips', async () => {
    const found: number[] = [];
    for (const [i, image] of expected.images.entries()) {
      const response = await postJson(
        `${digits.url}/v2/models/digits/infer`,
        { id: `req-${i}`, inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], data: image }] },
        { 'x-request-id': `single-${i}` },
      );
      assert.equal(response.headers.get('x-request-id'), `single-${i}`);
      const body = await okJson<InferResponse>(response);
      assert.equal(body.id, `req-${i}`);
      assert.deepEqual(body.outputs[0]!.shape, [1, DIGIT_CLASSES]);
      assertLogitsClose(body.outputs[0]!.data!, expected.logits[i]!, `image ${i}`);
      found.push(argmax(body.outputs[0]!.data!));
    }
    assert.ok(accuracy(found, expected.labels) >= MIN_ACCURACY, `accuracy ${accuracy(found, expected.labels)}`);
  });

  test('nested data shaped like the tensor gives the same logits as flat data', async () => {
    const image = expected.images[7]!;
    const nested = [[Array.from({ length: 8 }, (_, r) => image.slice(r * 8, r * 8 + 8))]];
    const body = await okJson<InferResponse>(
      await postJson(`${digits.url}/v2/models/digits/infer`, {
        inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], data: nested }],
        outputs: [{ name: 'logits' }],
      }),
    );
    assertLogitsClose(body.outputs[0]!.data!, expected.logits[7]!, 'nested image 7');
  });
});

describe('digits through the predictor (functions/digits/predictor.ts)', () => {
  test(`{"pixels": [...]} one image per request: accuracy >= ${MIN_ACCURACY * 100}% and the reference's argmax`, async () => {
    const found: number[] = [];
    for (const [i, image] of expected.images.entries()) {
      const prediction = await okJson<DigitPrediction>(await postJson(`${digits.url}/`, { pixels: greyLevels(image) }));
      assert.equal(prediction.probabilities.length, DIGIT_CLASSES);
      const sum = prediction.probabilities.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-4, `image ${i}: probabilities sum to ${sum}`);
      assert.equal(prediction.digit, argmax(expected.logits[i]!), `image ${i}`);
      found.push(prediction.digit);
    }
    assert.ok(accuracy(found, expected.labels) >= MIN_ACCURACY, `accuracy ${accuracy(found, expected.labels)}`);
  });

  test('{"images": [...]} for all 397 in one request gives the same digits', async () => {
    const predictions = await okJson<DigitPrediction[]>(
      await postJson(`${digits.url}/`, { images: expected.images.map(greyLevels) }),
    );
    assert.equal(predictions.length, expected.images.length);
    const found = predictions.map((p) => p.digit);
    assert.deepEqual(
      found,
      expected.logits.map((l) => argmax(l)),
    );
    assert.ok(accuracy(found, expected.labels) >= MIN_ACCURACY, `accuracy ${accuracy(found, expected.labels)}`);
  });

  test('{"image": 8×8} and POST /invocations answer the same as {"pixels"}', async () => {
    const i = 11;
    const pixels = greyLevels(expected.images[i]!);
    const rows = Array.from({ length: 8 }, (_, r) => pixels.slice(r * 8, r * 8 + 8));
    const fromPixels = await okJson<DigitPrediction>(await postJson(`${digits.url}/`, { pixels }));
    const fromRows = await okJson<DigitPrediction>(await postJson(`${digits.url}/`, { image: rows }));
    const fromInvocations = await okJson<DigitPrediction>(await postJson(`${digits.url}/invocations`, { pixels }));
    assert.equal(fromPixels.digit, expected.labels[i]);
    assert.deepEqual(fromRows, fromPixels);
    assert.deepEqual(fromInvocations, fromPixels);
  });

  test('a bad payload is a 400 JSON error carrying the request id', async () => {
    const response = await postJson(`${digits.url}/`, { pixels: [1, 2, 3] }, { 'x-request-id': 'bad-pixels-1' });
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('x-request-id'), 'bad-pixels-1');
    const body = { error: contractError(await response.json()) };
    assert.equal(body.error.code, 'invalid_input');
    assert.match(body.error.message, /at \$\.pixels: an image has 64 pixels/);
    assert.equal(body.error.requestId, 'bad-pixels-1');
  });
});

describe('the binary tensor extension', () => {
  const images = expected.images.slice(0, 5);

  /** The images as one OIP binary request asking for binary outputs (as bench/payloads.ts builds them). */
  function binaryRequest(): { body: Buffer; headers: Record<string, string> } {
    return oipBinaryBody({ ...DIGITS, shape: [images.length, 1, 8, 8] }, Float32Array.from(images.flat()));
  }

  test('binary in, binary out: round-trips and matches the JSON result', async () => {
    const { body, headers } = binaryRequest();
    const response = await fetch(`${digits.url}/v2/models/digits/infer`, { method: 'POST', headers, body });
    const bytes = Buffer.from(await response.arrayBuffer());
    assert.equal(response.status, 200, bytes.toString());
    assert.equal(response.headers.get('content-type'), 'application/octet-stream');
    const jsonLength = Number(response.headers.get('inference-header-content-length'));
    assert.ok(jsonLength > 0 && jsonLength < bytes.length, `header length ${jsonLength} of ${bytes.length}`);
    const head = JSON.parse(bytes.subarray(0, jsonLength).toString('utf8')) as InferResponse;
    const [output] = head.outputs;
    assert.equal(output!.name, 'logits');
    assert.equal(output!.data, undefined);
    assert.deepEqual(output!.shape, [images.length, DIGIT_CLASSES]);
    assert.equal(output!.parameters?.['binary_data_size'], images.length * DIGIT_CLASSES * 4);
    assert.equal(bytes.length, jsonLength + images.length * DIGIT_CLASSES * 4);
    const binary = bytes.subarray(jsonLength);
    const logits = Array.from({ length: images.length * DIGIT_CLASSES }, (_, k) => binary.readFloatLE(k * 4));

    const json = await okJson<InferResponse>(
      await postJson(`${digits.url}/v2/models/digits/infer`, digitsInferBody(images)),
    );
    assert.deepEqual(
      logits,
      json.outputs[0]!.data!.map((v) => Math.fround(v)),
    );
    assertBatchLogits(logits, images.length, expected.logits, 0, 'binary image');
  });

  test('binary in, JSON out when binary_data_output is not asked for', async () => {
    const pixels = Buffer.from(new Float32Array(images[0]!).buffer);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], parameters: { binary_data_size: pixels.length } },
        ],
      }),
    );
    const response = await fetch(`${digits.url}/v2/models/digits/infer`, {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header.length),
      },
      body: Buffer.concat([header, pixels]),
    });
    const body = await okJson<InferResponse>(response);
    assertLogitsClose(body.outputs[0]!.data!, expected.logits[0]!, 'binary-in image 0');
  });

  test('a binary_data_size that runs past the body is a 400', async () => {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], parameters: { binary_data_size: 256 } }],
      }),
    );
    const response = await fetch(`${digits.url}/v2/models/digits/infer`, {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header.length),
      },
      body: Buffer.concat([header, Buffer.alloc(100)]),
    });
    assert.equal(response.status, 400);
    const body = { error: contractError(await response.json()) };
    assert.equal(body.error.code, 'invalid_input');
    assert.match(body.error.message, /binary_data_size/);
  });
});

describe('metadata and health routes', () => {
  test('GET / names the API, the format and the tensors', async () => {
    const body = await okJson<Record<string, unknown>>(await fetch(`${digits.url}/`));
    assert.equal(body['name'], 'digits');
    assert.equal(body['format'], 'onnx');
    assert.equal(body['ready'], true);
    assert.equal(body['predictor'], 'custom');
    assert.deepEqual(
      (body['inputs'] as { name: string; datatype: string; shape: number[] }[]).map(({ name, datatype, shape }) => ({
        name,
        datatype,
        shape,
      })),
      [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 8, 8] }],
    );
    assert.deepEqual(
      (body['outputs'] as { name: string; datatype: string; shape: number[] }[]).map(({ name, datatype, shape }) => ({
        name,
        datatype,
        shape,
      })),
      [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
    );
  });

  test('health, readiness, model metadata, model readiness and /ping answer 200', async () => {
    assert.deepEqual(await okJson(await fetch(`${digits.url}/v2/health/live`)), { live: true });
    assert.deepEqual(await okJson(await fetch(`${digits.url}/v2/health/ready`)), { ready: true });
    assert.deepEqual(await okJson(await fetch(`${digits.url}/ping`)), { ready: true });
    assert.deepEqual(await okJson(await fetch(`${digits.url}/v2/models/digits/ready`)), {
      name: 'digits',
      ready: true,
    });
    assert.deepEqual(await okJson(await fetch(`${digits.url}/v2/models/digits`)), {
      name: 'digits',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 8, 8] }],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
    });
  });

  test('another model name is a 404, a wrong method a 405 with Allow', async () => {
    const missing = await fetch(`${digits.url}/v2/models/other`);
    assert.equal(missing.status, 404);
    assert.equal(contractError(await missing.json()).code, 'model_not_found');
    const wrong = await fetch(`${digits.url}/v2/health/live`, { method: 'POST' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'GET');
    await wrong.body?.cancel();
  });

  test('before the model is loaded: live 200, ready /ping and POST / 503 with Retry-After; then 200', async () => {
    const runtime = new Runtime({
      apiName: 'digits',
      modelUri: s3.digits.uri,
      modelSha256: s3.digits.sha256,
      env: s3.env,
      logger: createLogger('digits', 'SILENT'),
    });
    const server = await startServer(runtime);
    try {
      assert.equal((await fetch(`${server.url}/v2/health/live`)).status, 200);
      for (const [method, path] of [
        ['GET', '/v2/health/ready'],
        ['GET', '/ping'],
        ['POST', '/'],
      ] as const) {
        const response = await fetch(`${server.url}${path}`, { method });
        assert.equal(response.status, 503, `${method} ${path}`);
        assert.equal(response.headers.get('retry-after'), '1');
        assert.equal(contractError(await response.json()).code, 'not_ready');
      }
      const describe = (await (await fetch(`${server.url}/`)).json()) as { ready: boolean };
      assert.equal(describe.ready, false);
      await runtime.start();
      assert.equal((await fetch(`${server.url}/v2/health/ready`)).status, 200);
      assert.equal((await fetch(`${server.url}/ping`)).status, 200);
    } finally {
      await server.close();
    }
  });
});

describe('MobileNet v3 small through the default predictor (OIP on POST /)', () => {
  let mobilenet: TestServer;
  const SIZE = 3 * 224 * 224;
  // Deterministic, roughly normalized pixels (a fixed LCG), rounded so the JSON stays small.
  const pixels = (() => {
    let seed = 12345;
    return Array.from({ length: SIZE }, () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.round(((seed / 2 ** 31) * 4 - 2) * 1000) / 1000;
    });
  })();

  before(async () => {
    mobilenet = await startServer(
      await startRuntime({
        apiName: 'mobilenet',
        modelUri: s3.mobilenet.uri,
        modelSha256: s3.mobilenet.sha256,
        env: s3.env,
      }),
    );
  });

  after(async () => {
    await mobilenet?.close();
  });

  test('output [1,1000] equals a direct onnxruntime-node run on the same input', async () => {
    const body = await okJson<InferResponse>(
      await postJson(`${mobilenet.url}/`, {
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 3, 224, 224], data: pixels }],
      }),
    );
    assert.equal(body.model_name, 'mobilenet');
    const [output] = body.outputs;
    assert.equal(output!.name, 'output');
    assert.equal(output!.datatype, 'FP32');
    assert.deepEqual(output!.shape, [1, 1000]);
    assert.equal(output!.data!.length, 1000);

    const session = await ort.InferenceSession.create(readFileSync(MOBILENET_ONNX));
    try {
      const direct = await session.run({
        input: new ort.Tensor('float32', Float32Array.from(pixels), [1, 3, 224, 224]),
      });
      const reference = Array.from(direct['output']!.data as Float32Array);
      let worst = 0;
      reference.forEach((r, i) => (worst = Math.max(worst, Math.abs(r - output!.data![i]!))));
      assert.ok(worst <= 1e-5, `largest difference from the direct run: ${worst}`);
      assert.equal(argmax(output!.data!), argmax(reference));
    } finally {
      await session.release();
    }
  });

  test('GET / and the model metadata describe MobileNet as served by the default predictor', async () => {
    const meta = await okJson<Record<string, unknown>>(await fetch(`${mobilenet.url}/`));
    assert.equal(meta['predictor'], 'default');
    assert.deepEqual(await okJson(await fetch(`${mobilenet.url}/v2/models/mobilenet`)), {
      name: 'mobilenet',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 1000] }],
    });
  });

  test('a wrong input shape is a 400 that names the expected shape', async () => {
    const response = await postJson(`${mobilenet.url}/`, {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 3, 8, 8], data: pixels.slice(0, 192) }],
    });
    assert.equal(response.status, 400);
    const body = { error: contractError(await response.json()) };
    assert.equal(body.error.code, 'invalid_input');
    assert.match(body.error.message, /FP32 \[-1,3,224,224\]/);
  });
});
