/**
 * End to end, the artifact as built: the example app synthesized by its own cdk.json command into a temp dir; each
 * API's bundle taken from the cloud assembly and imported with the function's environment from the template; the
 * model assets put into s3rver at their synthesized bucket and key; the bundled handler invoked with API Gateway
 * HTTP API (payload 2.0) events. What would be deployed is what is tested.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { readAssembly, readCdkJson, synthesize, type AssemblyApi } from '../../lib/cli/deploy/assembly.js';
import { runnableContext } from '../../lib/cli/local/dev.js';
import { startEmbeddedS3, type EmbeddedS3 } from '../../lib/cli/local/embedded-s3.js';
import { ENV } from '../../lib/contract.js';
import type { LambdaHandler } from '../../lib/runtime/transports/lambda-adapter.js';
import { createS3Client } from '../../lib/runtime/model-store/model-store.js';
import {
  DIGITS_ONNX,
  MOBILENET_ONNX,
  REPO_ROOT,
  captureLogs,
  digitsInferBody,
  lambdaTransport,
  loadDigitsExpected,
  type Transport,
  contractError,
} from '../helpers.js';

const expected = loadDigitsExpected();
const savedEnv = { ...process.env };
const cleanups: (() => void)[] = [];
let outdir: string;
let apis: Map<string, AssemblyApi>;
let s3: EmbeddedS3;
let digits: Transport;
let mobilenet: Transport;

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/**
 * Imports an API's bundle as Lambda would run it: the function's env (from the template) in place first, since the
 * bundle reads it at import. An arm64 bundle runs from a copy with this machine's onnxruntime natives added, as
 * `arclight dev` runs it. `instance` gives a fresh module (a new cold start).
 */
async function importHandler(api: AssemblyApi, instance = 'first'): Promise<LambdaHandler> {
  for (const name of Object.keys(process.env))
    if (name.startsWith('ARCLIGHT_')) Reflect.deleteProperty(process.env, name);
  // Quiet the per-request INFO lines; everything else is the template's.
  Object.assign(process.env, api.environment, { [ENV.logLevel]: 'WARN' });
  const context = runnableContext(api.contextDir);
  cleanups.push(context.cleanup);
  const url = `${pathToFileURL(join(context.dir, api.handlerFile)).href}?${instance}`;
  const bundle = (await import(url)) as Record<string, unknown>;
  const handler = bundle[api.handlerExport];
  assert.equal(typeof handler, 'function', `${api.handlerFile} exports ${api.handlerExport}`);
  return handler as LambdaHandler;
}

/** Waits out the cold start (the handler itself waits for it) and asserts the API is ready. */
async function assertReady(transport: Transport): Promise<void> {
  const reply = await transport({ path: '/v2/health/ready' });
  assert.equal(reply.status, 200, reply.text);
}

before(async () => {
  outdir = mkdtempSync(join(tmpdir(), 'arclight-e2e-'));
  const app = readCdkJson(REPO_ROOT).app;
  assert.ok(app, 'cdk.json names the app');
  await synthesize(app, outdir, { cwd: REPO_ROOT });
  apis = new Map(readAssembly(outdir).map((api) => [api.apiName, api]));
  const assets = [...apis.values()].flatMap((api) => api.assets);
  s3 = await startEmbeddedS3([...new Set(assets.map((asset) => asset.bucket))]);
  for (const asset of assets) await s3.put(asset.bucket, asset.key, readFileSync(asset.path));
  // Lambda runs Node.js 22: each bundle's AWS SDK would warn about this Node.js 20 once.
  Object.assign(process.env, s3.env, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
  digits = lambdaTransport(await importHandler(apis.get('digits')!));
  await assertReady(digits);
  mobilenet = lambdaTransport(await importHandler(apis.get('mobilenet')!));
  await assertReady(mobilenet);
});

after(async () => {
  await s3?.close();
  for (const cleanup of cleanups) cleanup();
  if (outdir) rmSync(outdir, { recursive: true, force: true });
  for (const name of Object.keys(process.env)) if (!(name in savedEnv)) Reflect.deleteProperty(process.env, name);
  Object.assign(process.env, savedEnv);
});

describe('the synthesized example app', () => {
  test('holds digits (arm64) and mobilenet (x86_64), each context with one platform of onnxruntime natives', () => {
    assert.deepEqual([...apis.keys()].sort(), ['digits', 'digits-async', 'mobilenet']);
    const platforms = (dir: string): string[] =>
      readdirSync(join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux')).sort();
    const d = apis.get('digits')!;
    const m = apis.get('mobilenet')!;
    assert.equal(d.architecture, 'arm64');
    assert.equal(d.lambdaArchitecture, 'arm64');
    assert.equal(m.architecture, 'x64');
    assert.equal(m.lambdaArchitecture, 'x86_64');
    assert.deepEqual(platforms(d.contextDir), ['arm64']);
    assert.deepEqual(platforms(m.contextDir), ['x64']);
    for (const api of [d, m]) {
      assert.equal(api.handlerFile, 'index.mjs', 'the file the Dockerfile CMD names');
      assert.equal(api.handlerExport, 'handler');
      assert.ok(api.contextDir.startsWith(outdir), 'the context inside the assembly');
      assert.equal(api.environment[ENV.apiName], api.apiName);
    }
    if (process.platform === 'linux' && process.arch === 'x64') {
      const copy = runnableContext(d.contextDir);
      cleanups.push(copy.cleanup);
      assert.equal(copy.addedNatives, 'linux/x64');
      assert.deepEqual(platforms(copy.dir), ['arm64', 'x64'], "this machine's natives beside synth's");
      assert.equal(runnableContext(m.contextDir).dir, m.contextDir, 'an x64 context runs as it is');
    }
  });

  test("each function's ARCLIGHT_MODEL_URI is its uploaded asset, and ARCLIGHT_MODEL_SHA256 that object's hash", async () => {
    const client = createS3Client(s3.env);
    try {
      for (const [name, source] of [
        ['digits', DIGITS_ONNX],
        ['mobilenet', MOBILENET_ONNX],
      ] as const) {
        const api = apis.get(name)!;
        assert.equal(api.assets.length, 1);
        const asset = api.assets[0]!;
        assert.equal(api.environment[ENV.modelUri], asset.uri);
        assert.match(asset.bucket, /^cdk-hnb659fds-assets-000000000000-us-east-1$/);
        const object = await client.send(new GetObjectCommand({ Bucket: asset.bucket, Key: asset.key }));
        const bytes = await object.Body!.transformToByteArray();
        assert.equal(api.environment[ENV.modelSha256], sha256(bytes), `${name}: the env hash is the object's`);
        assert.equal(sha256(bytes), sha256(readFileSync(source)), `${name}: the object is ${source}`);
      }
    } finally {
      client.destroy();
    }
  });
});

describe('digits, the bundled handler invoked with API Gateway v2 events', () => {
  test('POST /v2/models/digits/infer reproduces the reference logits of all 397 images within 1e-4', async () => {
    const reply = await digits({ path: '/v2/models/digits/infer', body: digitsInferBody(expected.images) });
    assert.equal(reply.status, 200, reply.text);
    const body = reply.json<{ model_name: string; outputs: { name: string; shape: number[]; data: number[] }[] }>();
    assert.equal(body.model_name, 'digits');
    const logits = body.outputs.find((output) => output.name === 'logits')!;
    assert.deepEqual(logits.shape, [397, 10]);
    let worst = 0;
    expected.logits.forEach((row, i) =>
      row.forEach((value, k) => (worst = Math.max(worst, Math.abs(logits.data[i * 10 + k]! - value)))),
    );
    assert.ok(worst < 1e-4, `largest difference ${worst}`);
  });

  test('the predictor route (POST /) classifies the fixture images with at least 98% accuracy', async () => {
    const greys = expected.images.map((image) => image.map((v) => Math.round(v * 16)));
    const reply = await digits({ path: '/', body: JSON.stringify({ images: greys }) });
    assert.equal(reply.status, 200, reply.text);
    const predictions = reply.json<{ digit: number; probabilities: number[] }[]>();
    assert.equal(predictions.length, 397);
    const correct = predictions.filter((p, i) => p.digit === expected.labels[i]).length;
    assert.ok(correct / 397 >= 0.98, `accuracy ${correct}/397`);
    const one = await digits({ path: '/', body: JSON.stringify({ pixels: greys[0] }) });
    assert.equal(one.status, 200, one.text);
    assert.equal(one.json<{ digit: number }>().digit, predictions[0]!.digit);
  });

  test('a binary body travels base64-encoded and is refused by the predictor as not JSON (415)', async () => {
    const reply = await digits({
      path: '/',
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.from([0, 1, 2, 255]),
    });
    assert.equal(reply.status, 415, reply.text);
    assert.equal(contractError(reply.json()).code, 'unsupported_media_type');
  });
});

describe('mobilenet, the default (Open Inference Protocol) predictor', () => {
  test('GET /v2/models/mobilenet describes the model; POST .../infer answers logits of shape [1,1000]', async () => {
    const metadata = await mobilenet({ path: '/v2/models/mobilenet' });
    assert.equal(metadata.status, 200, metadata.text);
    const { name, inputs } = metadata.json<{ name: string; inputs: { name: string; shape: number[] }[] }>();
    assert.equal(name, 'mobilenet');
    assert.deepEqual(inputs[0]!.shape, [-1, 3, 224, 224]);
    let seed = 1;
    const data = Array.from(
      { length: 3 * 224 * 224 },
      () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1,
    );
    const reply = await mobilenet({
      path: '/v2/models/mobilenet/infer',
      body: JSON.stringify({ inputs: [{ name: inputs[0]!.name, datatype: 'FP32', shape: [1, 3, 224, 224], data }] }),
    });
    assert.equal(reply.status, 200, reply.text);
    const [output] = reply.json<{ outputs: { shape: number[]; data: number[] }[] }>().outputs;
    assert.deepEqual(output!.shape, [1, 1000]);
    assert.equal(output!.data.length, 1000);
    assert.ok(output!.data.every(Number.isFinite));
  });
});

describe('integrity', () => {
  test('a corrupted upload of the model is refused: 503 not_ready, and the log says the sha256 differs', async () => {
    const api = apis.get('digits')!;
    const asset = api.assets[0]!;
    const original = readFileSync(asset.path);
    const corrupted = Buffer.from(original);
    const middle = corrupted.length >> 1;
    corrupted[middle] = corrupted[middle]! ^ 0xff;
    await s3.put(asset.bucket, asset.key, corrupted);
    try {
      const { result, lines } = await captureLogs(async () => {
        const fresh = lambdaTransport(await importHandler(api, 'corrupted'));
        return [await fresh({ path: '/v2/health/ready' }), await fresh({ path: '/', body: '{"pixels":[]}' })];
      });
      for (const reply of result) {
        assert.equal(reply.status, 503, reply.text);
        assert.equal(contractError(reply.json()).code, 'not_ready');
      }
      const failure = lines.find((line) => line['level'] === 'ERROR');
      assert.ok(failure, `an ERROR record; got ${JSON.stringify(lines)}`);
      assert.match(JSON.stringify(failure), /sha256/i);
    } finally {
      await s3.put(asset.bucket, asset.key, original);
    }
    // The first digits handler loaded the good bytes before and is unaffected.
    assert.equal((await digits({ path: '/v2/health/ready' })).status, 200);
    assert.ok(existsSync(asset.path));
  });
});
