/**
 * Variants in the Lambda function, with the real handler over two real model files (the digits model, and a copy of it
 * that answers the same: the header tells which variant answered): the split honours the weights exactly per cycle,
 * `x-arclight-variant` pins one, any other value is a 400, and metrics carry the variant. The shadow's copies go through
 * the real AWS SDK (InvocationType Event) to a local endpoint standing in for Lambda's Invoke API: every second event
 * when asked for half, none above the 1 MB asynchronous limit (dropped and counted), and an Invoke that never answers
 * does not hold the function's answer.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { ENV, VARIANT_HEADER } from '../../../lib/contract.js';
import { bootLambdaFromEnv, type LambdaBoot } from '../../../lib/runtime/variants/lambda-variants.js';
import { DIGITS_ONNX, digitsInferBody, httpApiV2Event, loadDigitsExpected } from '../../helpers.js';

const images = loadDigitsExpected().images;
const SHADOW_ARN = 'arn:aws:lambda:us-east-1:123456789012:function:digits-shadow:live';

/** A stand-in for Lambda's Invoke API: records each asynchronous invocation; `stall` holds them unanswered. */
const invocations: { type: string | undefined; path: string; bytes: number }[] = [];
let stall = false;
const held: ServerResponse[] = [];
const lambdaApi = createServer((req: IncomingMessage, res: ServerResponse) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    invocations.push({
      type: req.headers['x-amz-invocation-type'] as string | undefined,
      path: req.url ?? '',
      bytes: Buffer.concat(chunks).length,
    });
    if (stall) return void held.push(res);
    res.writeHead(202, { 'content-type': 'application/json' }).end();
  });
});
let client: LambdaClient;
let boot: LambdaBoot;

before(async () => {
  await new Promise<void>((resolve) => lambdaApi.listen(0, '127.0.0.1', resolve));
  client = new LambdaClient({
    endpoint: `http://127.0.0.1:${(lambdaApi.address() as AddressInfo).port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  const copy = join(mkdtempSync(join(tmpdir(), 'arclight-variant-')), 'digits-v2.onnx');
  copyFileSync(DIGITS_ONNX, copy);
  boot = bootLambdaFromEnv(
    undefined,
    {
      ...process.env,
      ARCLIGHT_METRICS: 'off',
      [ENV.apiName]: 'digits',
      [ENV.modelUri]: DIGITS_ONNX,
      [ENV.variant]: 'AllTraffic',
      [ENV.variants]: JSON.stringify([{ name: 'v2', weight: 0.5, env: { [ENV.modelUri]: copy } }]),
      [ENV.shadowFunction]: SHADOW_ARN,
      [ENV.shadowPercent]: '50',
      ARCLIGHT_LOG_LEVEL: 'SILENT',
    },
    { lambdaClient: client },
  );
  assert.equal(await boot.started, true);
});

after(async () => {
  for (const res of held) res.destroy();
  lambdaApi.closeAllConnections();
  lambdaApi.close();
  client?.destroy();
  for (const runtime of boot?.runtimes ?? []) await runtime.close();
});

async function call(headers: Record<string, string> = {}, body = digitsInferBody([images[0]!])) {
  const result = await boot.handler(
    httpApiV2Event({ method: 'POST', path: '/v2/models/digits/infer', body, headers }),
    { getRemainingTimeInMillis: () => 10_000 },
  );
  return { status: result.statusCode, variant: result.headers?.[VARIANT_HEADER], body: result.body };
}

describe('weighted variants inside one function', () => {
  test('1 : 0.5 is exactly 2 : 1 over each cycle of 3, interleaved', async () => {
    const answered: unknown[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await call();
      assert.equal(r.status, 200, r.body);
      answered.push(r.variant);
    }
    assert.deepEqual(answered, [
      'AllTraffic',
      'v2',
      'AllTraffic',
      'AllTraffic',
      'v2',
      'AllTraffic',
      'AllTraffic',
      'v2',
      'AllTraffic',
    ]);
  });

  test('x-arclight-variant pins a variant; a name it does not serve is a 400 that lists them', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await call({ [VARIANT_HEADER]: 'v2' })).variant, 'v2');
    const bad = await call({ [VARIANT_HEADER]: 'candidate' });
    assert.equal(bad.status, 400);
    const error = JSON.parse(bad.body) as { code: string; error: string };
    assert.equal(error.code, 'invalid_input');
    assert.match(error.error, /serves AllTraffic, v2/);
  });

  test('each variant runtime writes its metrics under its variant', () => {
    assert.deepEqual(
      boot.runtimes.map((r) => r.telemetry.variant),
      ['AllTraffic', 'v2'],
    );
  });
});

describe('the shadow: an asynchronous Invoke of its alias', () => {
  test('every second event goes out as InvocationType Event to the alias; none above 1 MB', async () => {
    invocations.length = 0;
    stall = false;
    for (let i = 0; i < 6; i++) await call();
    // Not inference: never copied.
    for (let i = 0; i < 2; i++) {
      const health = await boot.handler(httpApiV2Event({ method: 'GET', path: '/v2/health/ready' }), {});
      assert.equal(health.statusCode, 200);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(invocations.length, 3);
    for (const invocation of invocations) {
      assert.equal(invocation.type, 'Event');
      assert.equal(decodeURIComponent(invocation.path), `/2015-03-31/functions/${SHADOW_ARN}/invocations`);
    }
    // Two events above the asynchronous limit: the one sampled is dropped, not sent.
    const big = JSON.stringify({
      inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], data: images[0] }],
      pad: 'x'.repeat(1_100_000),
    });
    for (let i = 0; i < 2; i++) await call({}, big);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(invocations.length, 3, 'no oversized copy sent');
  });

  test('an Invoke that never answers does not hold the answer', async () => {
    invocations.length = 0;
    stall = true;
    for (let i = 0; i < 4; i++) assert.equal((await call()).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(invocations.length, 2);
    assert.equal(held.length, 2, 'both Invokes still unanswered after the answers went out');
  });
});
