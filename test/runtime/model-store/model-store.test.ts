/**
 * The model store (local paths and s3rver through the real AWS SDK), the runtime's start on a file that is not
 * ONNX, and the predictor loader: every failure is one clear StartupError.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../../lib/runtime/telemetry/logger.js';
import { loadModelBytes, parseS3Uri } from '../../../lib/runtime/model-store/model-store.js';
import { loadPredictor } from '../../../lib/runtime/predictor-loader.js';
import { Runtime } from '../../../lib/runtime/runtime.js';
import {
  BUCKET,
  DIGITS_ONNX,
  assertStartupError,
  closedPort,
  digitsInferBody,
  loadDigitsExpected,
  startS3WithModels,
  startServer,
  contractError,
} from '../../helpers.js';

type S3 = Awaited<ReturnType<typeof startS3WithModels>>;

let s3: S3;
let dir: string;
let digitsBytes: Buffer;
let digitsSha256: string;

before(async () => {
  s3 = await startS3WithModels();
  dir = await mkdtemp(join(tmpdir(), 'arclight-model-store-'));
  digitsBytes = await readFile(DIGITS_ONNX);
  digitsSha256 = createHash('sha256').update(digitsBytes).digest('hex');
});

after(async () => {
  await s3?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('loadModelBytes from a local path', () => {
  test('reads the bytes and reports their sha256', async () => {
    const loaded = await loadModelBytes(DIGITS_ONNX);
    assert.equal(loaded.sha256, digitsSha256);
    assert.equal(loaded.source, DIGITS_ONNX);
    assert.ok(Buffer.from(loaded.bytes).equals(digitsBytes));
    assert.ok(loaded.verifyMs > 0, 'the hash is timed');
  });

  test('a matching sha256 (any case) is accepted', async () => {
    const loaded = await loadModelBytes(DIGITS_ONNX, { expectedSha256: digitsSha256.toUpperCase() });
    assert.equal(loaded.sha256, digitsSha256);
  });

  test('a different sha256 is refused, naming expected and got', async () => {
    const wrong = 'ab'.repeat(32);
    const error = await assertStartupError(
      loadModelBytes(DIGITS_ONNX, { expectedSha256: wrong }),
      /integrity/,
      new RegExp(`expected sha256 ${wrong}`),
      new RegExp(`got ${digitsSha256}`),
    );
    assert.ok(error.hint);
  });

  test('an expected sha256 that is not 64 hex digits is refused before reading', async () => {
    await assertStartupError(loadModelBytes(DIGITS_ONNX, { expectedSha256: 'abc' }), /64 hex digits/);
  });

  test('a missing file', async () => {
    const path = join(dir, 'nope.onnx');
    await assertStartupError(loadModelBytes(path), new RegExp(`${path} does not exist`));
  });

  test('a directory', async () => {
    await assertStartupError(loadModelBytes(dir), /is a directory/);
  });

  test('an empty (0-byte) file', async () => {
    const path = join(dir, 'empty.onnx');
    await writeFile(path, Buffer.alloc(0));
    await assertStartupError(loadModelBytes(path), /is empty \(0 bytes\)/);
  });
});

describe('loadModelBytes from S3 (s3rver)', () => {
  test('reads the object, its sha256 verified', async () => {
    const loaded = await loadModelBytes(s3.digits.uri, { expectedSha256: s3.digits.sha256, env: s3.env });
    assert.equal(loaded.sha256, digitsSha256);
    assert.ok(Buffer.from(loaded.bytes).equals(digitsBytes));
    assert.equal(loaded.source, `s3://${BUCKET}/digits.onnx`);
  });

  test('a sha256 mismatch on an S3 object is refused', async () => {
    const wrong = '0'.repeat(64);
    await assertStartupError(
      loadModelBytes(s3.digits.uri, { expectedSha256: wrong, env: s3.env }),
      new RegExp(`expected sha256 ${wrong}`),
      new RegExp(`got ${digitsSha256}`),
    );
  });

  test('a missing object says it does not exist', async () => {
    const uri = `s3://${BUCKET}/missing/model.onnx`;
    await assertStartupError(loadModelBytes(uri, { env: s3.env }), new RegExp(`model ${uri} does not exist`));
  });

  test('a missing bucket says so', async () => {
    await assertStartupError(
      loadModelBytes('s3://no-such-bucket/model.onnx', { env: s3.env }),
      /bucket of s3:\/\/no-such-bucket\/model.onnx does not exist/,
    );
  });

  test('an empty object is refused', async () => {
    const { uri } = await s3.put(BUCKET, 'empty.onnx', Buffer.alloc(0));
    await assertStartupError(loadModelBytes(uri, { env: s3.env }), /is empty \(0 bytes\)/);
  });

  test('unknown credentials: S3 refuses them and the message says credentials', async () => {
    const env = { ...s3.env, AWS_ACCESS_KEY_ID: 'AKIAWRONGWRONGWRONG1', AWS_SECRET_ACCESS_KEY: 'not-the-secret' };
    const error = await assertStartupError(loadModelBytes(s3.digits.uri, { env }), /credentials/);
    assert.match(error.hint ?? '', /AWS_ACCESS_KEY_ID/);
  });

  test('an unreachable endpoint (a closed port) says it cannot reach S3 there', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const env = { ...s3.env, AWS_ENDPOINT_URL_S3: endpoint };
    const started = performance.now();
    await assertStartupError(
      loadModelBytes(s3.digits.uri, { env }),
      new RegExp(`cannot reach S3 at ${endpoint}`),
      /ECONNREFUSED/,
    );
    assert.ok(performance.now() - started < 10_000, 'gave up within the retry budget');
  });

  test('AWS_ENDPOINT_URL is honoured when AWS_ENDPOINT_URL_S3 is absent', async () => {
    const { AWS_ENDPOINT_URL_S3: endpoint, ...rest } = s3.env;
    const loaded = await loadModelBytes(s3.digits.uri, { env: { ...rest, AWS_ENDPOINT_URL: endpoint } });
    assert.equal(loaded.sha256, digitsSha256);
  });

  test('the result carries the size and the fetch stats for telemetry', async () => {
    const loaded = await loadModelBytes(s3.mobilenet.uri, { env: { ...s3.env, ARCLIGHT_MODEL_FETCH_PART_MB: '1' } });
    assert.equal(loaded.sha256, s3.mobilenet.sha256);
    assert.equal(loaded.size, loaded.bytes.length);
    assert.equal(loaded.path, undefined);
    const stats = loaded.stats!;
    assert.equal(stats.bytes, loaded.size);
    assert.equal(stats.partSize, 1024 * 1024);
    assert.equal(stats.parts, Math.ceil(loaded.size / (1024 * 1024)));
    assert.equal(stats.retries, 0);
    assert.equal(stats.restarts, 0);
    assert.equal(stats.spilled, false);
    assert.ok(stats.ms > 0);
    // Hashing 10 MB takes some time, and it is part of the fetch (it runs as the bytes arrive), never more.
    assert.ok(stats.verifyMs > 0 && stats.verifyMs <= stats.ms, `verifyMs ${stats.verifyMs} of ${stats.ms} ms`);
    assert.equal(loaded.verifyMs, stats.verifyMs);
  });

  test('progress is reported as the bytes arrive, up to the total', async () => {
    const seen: [number, number][] = [];
    await loadModelBytes(s3.digits.uri, { env: s3.env, onProgress: (received, total) => seen.push([received, total]) });
    assert.deepEqual(seen.at(-1), [digitsBytes.length, digitsBytes.length]);
    assert.ok(
      seen.every(([received], i) => i === 0 || received >= seen[i - 1]![0]),
      'monotonic',
    );
  });

  test('fetch settings from the environment that are not numbers are refused', async () => {
    for (const name of [
      'ARCLIGHT_MODEL_MEMORY_BUDGET_MB',
      'ARCLIGHT_MODEL_FETCH_PART_MB',
      'ARCLIGHT_MODEL_FETCH_CONCURRENCY',
    ]) {
      await assertStartupError(loadModelBytes(s3.digits.uri, { env: { ...s3.env, [name]: 'lots' } }), new RegExp(name));
    }
  });

  test('malformed s3 URIs are refused with the expected form', async () => {
    for (const uri of ['s3://', 's3://bucket-only', 's3://bucket-only/', 's3://Bad_Bucket/key', 's3:///key']) {
      const error = await assertStartupError(loadModelBytes(uri, { env: s3.env }), /is not a valid S3 URI/);
      assert.match(error.oneLine(), /s3:\/\/bucket\/key/, uri);
    }
    assert.deepEqual(parseS3Uri('s3://my.models-1/a/b/c.onnx'), { bucket: 'my.models-1', key: 'a/b/c.onnx' });
  });
});

describe('Runtime.start on an S3 model above the memory budget', () => {
  test('the model goes to a verified file under the temp dir and the session opens from it', async () => {
    const path = join(tmpdir(), `arclight-model-${s3.digits.sha256}.onnx`);
    const runtime = new Runtime({
      apiName: 'digits',
      modelUri: s3.digits.uri,
      modelSha256: s3.digits.sha256,
      env: { ...s3.env, ARCLIGHT_MODEL_MEMORY_BUDGET_MB: '0' },
      logger: createLogger('digits', 'SILENT'),
    });
    const server = await startServer(runtime);
    try {
      const timings = await runtime.start();
      assert.equal(timings.modelBytes, digitsBytes.length);
      await access(path);
      assert.ok((await readFile(path)).equals(digitsBytes));
      const expected = loadDigitsExpected();
      const response = await fetch(`${server.url}/v2/models/digits/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: digitsInferBody(expected.images.slice(0, 2)),
      });
      assert.equal(response.status, 200);
      const body = (await response.json()) as { outputs: { data: number[] }[] };
      const logits = body.outputs[0]!.data;
      assert.ok(Math.abs(logits[0]! - expected.logits[0]![0]!) < 1e-4, 'the model served is the model fetched');
    } finally {
      await server.close();
      await rm(path, { force: true });
    }
  });
});

describe('Runtime.start on a file that is not ONNX', () => {
  test('one StartupError, status failed, then POST / and readiness answer 503 not_ready', async () => {
    const path = join(dir, 'model.onnx');
    await writeFile(path, 'this is a text file, not a model\n');
    const runtime = new Runtime({ apiName: 'broken', modelUri: path, logger: createLogger('broken', 'SILENT') });
    assert.equal(runtime.status, 'starting');
    const error = await assertStartupError(runtime.start(), new RegExp(`model ${path} is not a valid ONNX model`));
    assert.match(error.hint ?? '', /torch\.onnx\.export/);
    assert.equal(runtime.status, 'failed');
    assert.equal(runtime.startupError, error);

    const server = await startServer(runtime);
    try {
      const response = await fetch(`${server.url}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(response.status, 503);
      assert.equal(response.headers.get('retry-after'), '1');
      const body = { error: contractError(await response.json()) };
      assert.equal(body.error.code, 'not_ready');
      assert.match(body.error.message, /failed to load/);
      assert.doesNotMatch(body.error.message, new RegExp(path), 'the client is not told server paths');
      assert.equal((await fetch(`${server.url}/v2/health/ready`)).status, 503);
      assert.equal((await fetch(`${server.url}/v2/health/live`)).status, 200);
    } finally {
      await server.close();
    }
  });

  test('a failed start may be retried once the file is fixed', async () => {
    const path = join(dir, 'fixed-later.onnx');
    await writeFile(path, 'not yet');
    const runtime = new Runtime({ apiName: 'digits', modelUri: path, logger: createLogger('digits', 'SILENT') });
    await assertStartupError(runtime.start(), /not a valid ONNX model/);
    await writeFile(path, digitsBytes);
    const timings = await runtime.start();
    assert.equal(timings.modelBytes, digitsBytes.length);
    assert.equal(runtime.status, 'ready');
    assert.equal(runtime.startupError, undefined);
  });
});

describe('loadPredictor', () => {
  const libPredictor = pathToFileURL(join(process.cwd(), 'lib/predictor.ts')).href;

  test('a module whose default export is made by definePredictor loads', async () => {
    const path = join(dir, 'good-predictor.ts');
    await writeFile(
      path,
      `import { definePredictor } from '${libPredictor}';\nexport default definePredictor({ predict: () => 'ok' });\n`,
    );
    const predictor = await loadPredictor(path);
    assert.equal(typeof predictor.predict, 'function');
  });

  test('a missing file', async () => {
    const path = join(dir, 'absent-predictor.ts');
    const error = await assertStartupError(loadPredictor(path), new RegExp(`predictor file ${path} does not exist`));
    assert.match(error.hint ?? '', /--predictor/);
  });

  test('a module that throws at import', async () => {
    const path = join(dir, 'throwing-predictor.ts');
    await writeFile(path, `throw new Error('the config file is missing\\nsecond line');\nexport default {};\n`);
    const error = await assertStartupError(
      loadPredictor(path),
      new RegExp(`predictor ${path} failed to import: the config file is missing$`),
    );
    assert.ok(error.cause instanceof Error, 'the original error is kept as the cause');
  });

  test('a module with a syntax error', async () => {
    const path = join(dir, 'syntax-predictor.ts');
    await writeFile(path, `export default definePredictor({ predict( => 1 });\n`);
    await assertStartupError(loadPredictor(path), /failed to import/);
  });

  test('a module without a default predictor export', async () => {
    for (const [name, source] of [
      ['no-default.ts', `export const predict = () => 1;\n`],
      ['default-object.ts', `export default { init: () => 1 };\n`],
    ] as const) {
      const path = join(dir, name);
      await writeFile(path, source);
      const error = await assertStartupError(
        loadPredictor(path),
        new RegExp(`predictor ${path} has no default export made by definePredictor`),
      );
      assert.match(error.hint ?? '', /export default definePredictor/);
    }
  });
});
