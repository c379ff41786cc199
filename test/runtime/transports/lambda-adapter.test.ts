/**
 * The Lambda adapter with API Gateway events shaped as API Gateway sends them (HTTP API payload 2.0, REST API
 * payload 1.0), over runtimes booted from the deployed env vars with the model in s3rver.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { APIGatewayProxyEvent, APIGatewayProxyEventV2, APIGatewayProxyResult, Context } from 'aws-lambda';
import { DIGITS, oipBinaryBody } from '../../../bench/payloads.js';
import { definePredictor } from '../../../lib/predictor.js';
import { BINARY_HEADER } from '../../../lib/runtime/codec/oip.js';
import { bootFromEnv } from '../../../lib/runtime/boot.js';
import { createLambdaHandler, type LambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import { LAMBDA_PAYLOAD } from '../../../lib/contract.js';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  captureLogs,
  digitsInferBody,
  loadDigitsExpected,
  loadTestPredictor,
  startRuntime,
  startS3WithModels,
  DIGIT_CLASSES,
  MIN_ACCURACY,
  accuracy,
  argmax,
  assertBatchLogits,
  assertLogitsClose,
  contractError,
} from '../../helpers.js';

const expected = loadDigitsExpected();

const API_ID = 'a1b2c3d4e5';
const DOMAIN = `${API_ID}.execute-api.us-east-1.amazonaws.com`;

interface EventOptions {
  readonly body?: string | Buffer;
  /** Send the body base64-encoded, as API Gateway does for binary media types. */
  readonly base64?: boolean;
  readonly contentType?: string;
  readonly headers?: Record<string, string>;
  readonly stage?: string;
  readonly requestId?: string;
}

let eventCounter = 0;
function nextRequestId(): string {
  eventCounter += 1;
  return `apigw-${String(eventCounter).padStart(6, '0')}=`;
}

function encodeBody(options: EventOptions): { body: string | undefined; isBase64Encoded: boolean } {
  if (options.body === undefined) return { body: undefined, isBase64Encoded: false };
  const bytes = Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body);
  return options.base64
    ? { body: bytes.toString('base64'), isBase64Encoded: true }
    : { body: bytes.toString('utf8'), isBase64Encoded: false };
}

function commonHeaders(options: EventOptions, bodyLength: number): Record<string, string> {
  return {
    accept: '*/*',
    host: DOMAIN,
    'user-agent': 'curl/8.5.0',
    'x-amzn-trace-id': 'Root=1-65f0a3de-0b1c2d3e4f5a6b7c8d9e0f1a',
    'x-forwarded-for': '203.0.113.7',
    'x-forwarded-port': '443',
    'x-forwarded-proto': 'https',
    ...(options.body === undefined
      ? {}
      : { 'content-length': String(bodyLength), 'content-type': options.contentType ?? 'application/json' }),
    ...options.headers,
  };
}

/** An HTTP API (payload format 2.0) event; a named stage is in front of rawPath, as API Gateway sends it. */
function httpApiEvent(method: string, path: string, options: EventOptions = {}): APIGatewayProxyEventV2 {
  const stage = options.stage ?? '$default';
  const rawPath = stage === '$default' ? path : `/${stage}${path === '/' ? '' : path}`;
  const { body, isBase64Encoded } = encodeBody(options);
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: '',
    headers: commonHeaders(options, body === undefined ? 0 : Buffer.byteLength(body)),
    requestContext: {
      accountId: '123456789012',
      apiId: API_ID,
      domainName: DOMAIN,
      domainPrefix: API_ID,
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' },
      requestId: options.requestId ?? nextRequestId(),
      routeKey: '$default',
      stage,
      time: '12/Mar/2024:19:03:58 +0000',
      timeEpoch: 1710270238000,
    },
    ...(body === undefined ? {} : { body }),
    isBase64Encoded,
  };
}

/** A REST API (payload format 1.0) proxy event: `path` without the stage, `requestContext.path` with it. */
function restApiEvent(method: string, path: string, options: EventOptions = {}): APIGatewayProxyEvent {
  const stage = options.stage ?? 'prod';
  const { body, isBase64Encoded } = encodeBody(options);
  const headers = commonHeaders(options, body === undefined ? 0 : Buffer.byteLength(body));
  return {
    resource: '/{proxy+}',
    path,
    httpMethod: method,
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, [value]])),
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: { proxy: path.replace(/^\//, '') },
    stageVariables: null,
    requestContext: {
      accountId: '123456789012',
      apiId: API_ID,
      authorizer: undefined,
      domainName: DOMAIN,
      domainPrefix: API_ID,
      extendedRequestId: 'UvhZ3HVdIAMFdJw=',
      httpMethod: method,
      identity: {
        accessKey: null,
        accountId: null,
        apiKey: null,
        apiKeyId: null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: '203.0.113.7',
        user: null,
        userAgent: 'curl/8.5.0',
        userArn: null,
      },
      path: `/${stage}${path}`,
      protocol: 'HTTP/1.1',
      requestId: options.requestId ?? nextRequestId(),
      requestTime: '12/Mar/2024:19:03:58 +0000',
      requestTimeEpoch: 1710270238000,
      resourceId: 'abc123',
      resourcePath: '/{proxy+}',
      stage,
    },
    body: body ?? null,
    isBase64Encoded,
  };
}

function lambdaContext(remainingMs = 29_000): Partial<Context> {
  const deadline = Date.now() + remainingMs;
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'digits-api-Function',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:digits-api-Function',
    memoryLimitInMB: '2048',
    awsRequestId: `lambda-${nextRequestId().replace('=', '')}`,
    logGroupName: '/aws/lambda/digits-api-Function',
    logStreamName: '2024/03/12/[$LATEST]0123456789abcdef0123456789abcdef',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function jsonOf<T>(result: APIGatewayProxyResult): T {
  assert.equal(result.isBase64Encoded, false, 'a JSON response travels as text');
  return JSON.parse(result.body) as T;
}

function ok<T>(result: APIGatewayProxyResult): T {
  assert.equal(result.statusCode, 200, result.body);
  assert.match(String(result.headers?.['content-type']), /^application\/json/);
  return jsonOf<T>(result);
}

interface InferResponse {
  model_name: string;
  outputs: { name: string; shape: number[]; data?: number[]; parameters?: Record<string, unknown> }[];
}

type S3 = Awaited<ReturnType<typeof startS3WithModels>>;

let s3: S3;
/** The default predictor (OIP), booted from env as the Lambda entry does. */
let oipHandler: LambdaHandler;
/** functions/digits/predictor.ts, booted from env. */
let predictorHandler: LambdaHandler;

function deployedEnv(): NodeJS.ProcessEnv {
  return {
    ...s3.env,
    ARCLIGHT_API_NAME: 'digits',
    ARCLIGHT_MODEL_URI: s3.digits.uri,
    ARCLIGHT_MODEL_SHA256: s3.digits.sha256,
    ARCLIGHT_MODEL_FORMAT: 'onnx',
    ARCLIGHT_LOG_LEVEL: 'SILENT',
  };
}

before(async () => {
  s3 = await startS3WithModels();
  // No awaiting the start: the handler waits for the cold start the boot began, as on Lambda.
  const predictor = await loadTestPredictor(DIGITS_PREDICTOR);
  const oip = bootFromEnv(undefined, deployedEnv());
  const custom = bootFromEnv(predictor, deployedEnv());
  assert.equal(oip.runtime.status, 'starting');
  assert.equal(oip.settings.apiName, 'digits');
  oipHandler = createLambdaHandler(oip.runtime, { maxBodyBytes: oip.settings.maxBodyBytes });
  predictorHandler = createLambdaHandler(custom.runtime, { maxBodyBytes: custom.settings.maxBodyBytes });
});

after(async () => {
  await s3?.close();
});

describe('digits OIP through Lambda events', () => {
  test('HTTP API 2.0, first events while the cold start runs: 397 images in batches give the reference logits', async () => {
    let offset = 0;
    for (const images of [expected.images.slice(0, 150), expected.images.slice(150)]) {
      const result = await oipHandler(
        httpApiEvent('POST', '/v2/models/digits/infer', { body: digitsInferBody(images) }),
        lambdaContext(),
      );
      const body = ok<InferResponse>(result);
      assert.deepEqual(body.outputs[0]!.shape, [images.length, DIGIT_CLASSES]);
      assertBatchLogits(body.outputs[0]!.data!, images.length, expected.logits, offset);
      offset += images.length;
    }
    assert.equal(offset, expected.images.length);
  });

  test('REST API 1.0, base64 bodies, one image per event: reference logits and accuracy', async () => {
    const found: number[] = [];
    for (const [i, image] of expected.images.entries()) {
      const result = await oipHandler(
        restApiEvent('POST', '/v2/models/digits/infer', { body: digitsInferBody([image]), base64: true }),
        lambdaContext(),
      );
      const body = ok<InferResponse>(result);
      assertLogitsClose(body.outputs[0]!.data!, expected.logits[i]!, `image ${i}`);
      found.push(argmax(body.outputs[0]!.data!));
    }
    assert.ok(accuracy(found, expected.labels) >= MIN_ACCURACY, `accuracy ${accuracy(found, expected.labels)}`);
  });

  test('HTTP API 2.0 on a named stage: the stage prefix is stripped from rawPath', async () => {
    const result = await oipHandler(
      httpApiEvent('POST', '/v2/models/digits/infer', { body: digitsInferBody([expected.images[3]!]), stage: 'prod' }),
      lambdaContext(),
    );
    assertLogitsClose(ok<InferResponse>(result).outputs[0]!.data!, expected.logits[3]!, 'staged image 3');
    const metadata = ok<{ name: string; predictor: string }>(
      await oipHandler(httpApiEvent('GET', '/', { stage: 'prod' }), lambdaContext()),
    );
    assert.equal(metadata.name, 'digits');
    assert.equal(metadata.predictor, 'default');
    const ready = await oipHandler(httpApiEvent('GET', '/v2/health/ready', { stage: 'prod' }), lambdaContext());
    assert.deepEqual(ok(ready), { ready: true });
  });

  test('binary tensor output comes back base64-encoded with isBase64Encoded', async () => {
    const images = expected.images.slice(0, 4);
    const { body, headers } = oipBinaryBody(
      { ...DIGITS, shape: [images.length, 1, 8, 8] },
      Float32Array.from(images.flat()),
    );
    const headerLength = headers[BINARY_HEADER]!;
    for (const event of [
      httpApiEvent('POST', '/v2/models/digits/infer', {
        body,
        base64: true,
        contentType: 'application/octet-stream',
        headers: { 'inference-header-content-length': headerLength },
      }),
      restApiEvent('POST', '/v2/models/digits/infer', {
        body,
        base64: true,
        contentType: 'application/octet-stream',
        headers: { 'Inference-Header-Content-Length': headerLength },
      }),
    ]) {
      const result = await oipHandler(event, lambdaContext());
      assert.equal(result.statusCode, 200, result.body);
      assert.equal(result.isBase64Encoded, true);
      assert.equal(result.headers?.['content-type'], 'application/octet-stream');
      const bytes = Buffer.from(result.body, 'base64');
      assert.equal(bytes.toString('base64'), result.body, 'the body is canonical base64');
      const jsonLength = Number(result.headers?.['inference-header-content-length']);
      const head = JSON.parse(bytes.subarray(0, jsonLength).toString('utf8')) as InferResponse;
      assert.equal(head.outputs[0]!.parameters?.['binary_data_size'], images.length * DIGIT_CLASSES * 4);
      const binary = bytes.subarray(jsonLength);
      assert.equal(binary.length, images.length * DIGIT_CLASSES * 4);
      const logits = Array.from({ length: images.length * DIGIT_CLASSES }, (_, k) => binary.readFloatLE(k * 4));
      assertBatchLogits(logits, images.length, expected.logits, 0, 'binary image');
    }
  });
});

describe('digits OIP binary bodies through Lambda events, at every JSON header length', () => {
  test('the binary part lands aligned whatever the header length: each image gives its reference logits', async () => {
    // The adapter decodes the base64 body so the tensor after the JSON header starts 8-byte aligned; header lengths
    // of every residue mod 8 (padded by the id) must all decode to the same values, in binary and as a view.
    for (let i = 0; i < 16; i++) {
      const image = Float32Array.from(expected.images[i]!);
      const header = Buffer.from(
        JSON.stringify({
          id: 'x'.repeat(i),
          inputs: [{ name: 'image', shape: [1, 1, 8, 8], datatype: 'FP32', parameters: { binary_data_size: 256 } }],
          parameters: { binary_data_output: true },
        }),
      );
      const result = await oipHandler(
        httpApiEvent('POST', '/v2/models/digits/infer', {
          body: Buffer.concat([header, Buffer.from(image.buffer)]),
          base64: true,
          contentType: 'application/octet-stream',
          headers: { [BINARY_HEADER]: String(header.length) },
        }),
        lambdaContext(),
      );
      assert.equal(result.statusCode, 200, result.body);
      const bytes = Buffer.from(result.body, 'base64');
      const binary = bytes.subarray(Number(result.headers?.[BINARY_HEADER]));
      const logits = Array.from({ length: DIGIT_CLASSES }, (_, k) => binary.readFloatLE(k * 4));
      assertLogitsClose(logits, expected.logits[i]!, `image ${i}, header ${header.length} bytes`);
    }
  });

  test('a body marked base64 with characters outside the alphabet is still a 400', async () => {
    const valid = Buffer.from('{"inputs":[]}').toString('base64');
    // Latin-1 letters beyond ASCII (V8 stores these strings one byte per character) and one beyond Latin-1.
    const bodies = [
      `${valid.slice(0, -4)}!!!!`,
      `\u00c4${valid.slice(1)}`,
      `\u00ff${valid.slice(1)}`,
      `Ł${valid.slice(1)}`,
    ];
    for (const body of bodies) {
      const event = { ...httpApiEvent('POST', '/v2/models/digits/infer'), body, isBase64Encoded: true };
      const result = await oipHandler(event, lambdaContext());
      assert.equal(result.statusCode, 400, body);
      assert.match(result.body, /not valid base64/);
    }
    // Valid base64 in a string V8 keeps two bytes per character (the wide character cut away) is decoded as any other.
    const twoByte = `${valid}\u2466`.slice(0, valid.length);
    const event = { ...httpApiEvent('POST', '/v2/models/digits/infer'), body: twoByte, isBase64Encoded: true };
    const result = await oipHandler(event, lambdaContext());
    assert.doesNotMatch(result.body, /not valid base64/);
  });
});

describe('digits predictor through Lambda events', () => {
  test(`HTTP API 2.0 named stage, {"pixels"} per event (every other one base64): accuracy >= ${MIN_ACCURACY * 100}%`, async () => {
    const found: number[] = [];
    for (const [i, image] of expected.images.entries()) {
      const result = await predictorHandler(
        httpApiEvent('POST', '/', {
          body: JSON.stringify({ pixels: image.map((p) => p * 16) }),
          base64: i % 2 === 1,
          stage: 'prod',
        }),
        lambdaContext(),
      );
      const prediction = ok<{ digit: number; probabilities: number[] }>(result);
      assert.equal(prediction.digit, argmax(expected.logits[i]!), `image ${i}`);
      found.push(prediction.digit);
    }
    assert.ok(accuracy(found, expected.labels) >= MIN_ACCURACY, `accuracy ${accuracy(found, expected.labels)}`);
  });

  test('REST API 1.0, {"images"} for all 397 in one event, plain and base64, on / and /invocations', async () => {
    const payload = JSON.stringify({ images: expected.images.map((image) => image.map((p) => p * 16)) });
    for (const event of [
      restApiEvent('POST', '/', { body: payload }),
      restApiEvent('POST', '/', { body: payload, base64: true }),
      restApiEvent('POST', '/invocations', { body: payload, base64: true }),
    ]) {
      const predictions = ok<{ digit: number }[]>(await predictorHandler(event, lambdaContext()));
      const found = predictions.map((p) => p.digit);
      assert.deepEqual(
        found,
        expected.logits.map((l) => argmax(l)),
      );
      assert.ok(accuracy(found, expected.labels) >= MIN_ACCURACY, `accuracy ${accuracy(found, expected.labels)}`);
    }
  });

  test('a bad payload is a 400 JSON error, not base64', async () => {
    const result = await predictorHandler(
      httpApiEvent('POST', '/', { body: JSON.stringify({ pixels: [1] }) }),
      lambdaContext(),
    );
    assert.equal(result.statusCode, 400);
    assert.equal(contractError(jsonOf(result)).code, 'invalid_input');
  });
});

describe('request ids, bad events and deadlines', () => {
  test("API Gateway's requestContext.requestId is the request id, echoed in x-request-id and error bodies", async () => {
    for (const event of [
      httpApiEvent('POST', '/', { body: '{"pixels": []}', requestId: 'JKJaXmPLvHcESHA=' }),
      restApiEvent('POST', '/', { body: '{"pixels": []}', requestId: 'c6af9ac6-7b61-11e6-9a41-93e8deadbeef' }),
    ]) {
      const result = await predictorHandler(event, lambdaContext());
      assert.equal(result.statusCode, 400);
      assert.equal(result.headers?.['x-request-id'], event.requestContext.requestId);
      assert.equal(contractError(jsonOf(result)).requestId, event.requestContext.requestId);
    }
    // A client's own x-request-id does not override API Gateway's.
    const event = httpApiEvent('GET', '/v2/health/live', {
      requestId: 'JKJbGm2dvHcEJwA=',
      headers: { 'x-request-id': 'client-chosen' },
    });
    const result = await predictorHandler(event, lambdaContext());
    assert.equal(result.statusCode, 200);
    assert.equal(result.headers?.['x-request-id'], 'JKJbGm2dvHcEJwA=');
  });

  test('a body marked base64 that is not base64 is a 400 naming the problem', async () => {
    for (const event of [
      httpApiEvent('POST', '/', { body: '{"pixels": [0]}', requestId: 'bad-b64-v2' }),
      restApiEvent('POST', '/', { body: '{"pixels": [0]}', requestId: 'bad-b64-v1' }),
    ]) {
      event.isBase64Encoded = true;
      const result = await predictorHandler(event, lambdaContext());
      assert.equal(result.statusCode, 400);
      const body = { error: contractError(jsonOf(result)) };
      assert.equal(body.error.code, 'invalid_input');
      assert.match(body.error.message, /base64/);
      assert.equal(result.headers?.['x-request-id'], event.requestContext.requestId);
    }
  });

  test('a base64 body with non-ASCII characters (whose low bytes spell base64) is refused, not decoded', async () => {
    // Node's decoder reads U+A865 U+2466 as 'e' 'f': four UTF-16 units that would decode to three bytes of garbage.
    const event = httpApiEvent('POST', '/v2/models/digits/infer', { body: '{}', requestId: 'non-ascii-b64' });
    Object.assign(event, { body: '\ua865\u2466\ua865\u2466', isBase64Encoded: true });
    const result = await oipHandler(event, lambdaContext());
    assert.equal(result.statusCode, 400, result.body);
    assert.match(contractError(jsonOf(result)).message, /not valid base64/);
  });

  test('event fields of the wrong type (found by fuzzing) are a 400 or ignored, never a failed invocation', async () => {
    const cases: [string, (event: Record<string, unknown>) => void, number][] = [
      ['cookies not a list', (e) => (e['cookies'] = '/1'), 200],
      ['rawQueryString a list', (e) => (e['rawQueryString'] = ['a', 1]), 200],
      ['stage an object', (e) => ((e['requestContext'] as Record<string, unknown>)['stage'] = { a: 1 }), 200],
    ];
    for (const [name, change, status] of cases) {
      const event = httpApiEvent('GET', '/v2/health/live') as unknown as Record<string, unknown>;
      change(event);
      const result = await oipHandler(event, lambdaContext());
      assert.equal(result.statusCode, status, `${name}: ${result.body}`);
    }
    const rest = restApiEvent('GET', '/v2/health/live') as unknown as Record<string, unknown>;
    Object.assign(rest, {
      multiValueHeaders: { accept: 'text/html', 'x-a': [1, 'b'] },
      queryStringParameters: { a: 1 },
      multiValueQueryStringParameters: { b: 'not a list' },
    });
    assert.equal((await oipHandler(rest, lambdaContext())).statusCode, 200);
    const noMethod = restApiEvent('GET', '/v2/health/live') as unknown as Record<string, unknown>;
    noMethod['httpMethod'] = undefined;
    noMethod['version'] = '1.0';
    assert.equal((await oipHandler(noMethod, lambdaContext())).statusCode, 400);
  });

  test('a requestContext.requestId that is not a short printable string is not echoed; the Lambda id is', async () => {
    for (const id of [42, { a: 1 }, '', 'a"}{"level":"ERROR', 'x'.repeat(129), 'line\nbreak']) {
      const event = httpApiEvent('POST', '/v2/models/other/infer', { body: '{}' });
      (event.requestContext as unknown as Record<string, unknown>)['requestId'] = id;
      const context = lambdaContext();
      const result = await oipHandler(event, context);
      assert.equal(result.statusCode, 404, result.body);
      assert.equal(contractError(jsonOf(result)).requestId, context.awsRequestId, JSON.stringify(id));
      assert.equal(result.headers?.['x-request-id'], context.awsRequestId);
    }
  });

  test('an event that is not from API Gateway is a 400 carrying the Lambda request id', async () => {
    const s3Notification = {
      Records: [
        {
          eventVersion: '2.1',
          eventSource: 'aws:s3',
          awsRegion: 'us-east-1',
          eventTime: '2024-03-12T19:03:58.000Z',
          eventName: 'ObjectCreated:Put',
          s3: { bucket: { name: 'models' }, object: { key: 'digits.onnx', size: 1024 } },
        },
      ],
    };
    for (const event of [s3Notification, { rawPath: '/', headers: {} }, 'hello', null]) {
      const context = lambdaContext();
      const result = await oipHandler(event, context);
      assert.equal(result.statusCode, 400, JSON.stringify(event));
      const body = { error: contractError(jsonOf(result)) };
      assert.equal(body.error.code, 'invalid_input');
      assert.match(body.error.message, /API Gateway/);
      assert.equal(body.error.requestId, context.awsRequestId);
      assert.equal(result.headers?.['x-request-id'], context.awsRequestId);
    }
  });

  test('little time left in the invocation: a slow predictor answers 504 before the deadline, and is aborted', async () => {
    let aborted = false;
    const slow = definePredictor({
      async predict(_request, { signal }) {
        try {
          await delay(5000, undefined, { signal });
        } catch (error) {
          aborted = true;
          throw error;
        }
        return { done: true };
      },
    });
    const runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: slow });
    const handler = createLambdaHandler(runtime, { deadlineMarginMs: 500 });
    const started = performance.now();
    const event = httpApiEvent('POST', '/', { body: '{}', requestId: 'slow-1' });
    const result = await handler(event, lambdaContext(800));
    const elapsed = performance.now() - started;
    assert.equal(result.statusCode, 504, result.body);
    const body = { error: contractError(jsonOf(result)) };
    assert.equal(body.error.code, 'predictor_timeout');
    assert.equal(body.error.requestId, 'slow-1');
    assert.ok(elapsed < 800, `answered after ${Math.round(elapsed)} ms, past the invocation's deadline`);
    await delay(20);
    assert.equal(aborted, true, 'the predictor saw its signal abort');

    // With time to spare the same predictor is not cut short by the adapter.
    const quick = createLambdaHandler(
      await startRuntime({
        modelUri: DIGITS_ONNX,
        predictor: definePredictor({ predict: async () => ({ done: true }) }),
      }),
    );
    assert.deepEqual(ok(await quick(httpApiEvent('POST', '/', { body: '{}' }), lambdaContext(800))), { done: true });
  });
});

/** The error body's code and message, in the contract's old or new (OIP) shape. */
function resultError(result: APIGatewayProxyResult): { code: string; message: string } {
  const body = JSON.parse(result.body) as { error: string | { code: string; message: string }; code?: string };
  return typeof body.error === 'string'
    ? { code: String(body.code), message: body.error }
    : { code: body.error.code, message: body.error.message };
}

describe("Lambda's payload limits and cookies", () => {
  test('several Set-Cookie: payload 2.0 `cookies`, payload 1.0 `multiValueHeaders`, never one folded header', async () => {
    const cookies = ['session=abc; Path=/; HttpOnly', 'seen=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT'];
    const runtime = await startRuntime({
      modelUri: DIGITS_ONNX,
      predictor: definePredictor({
        predict: async () => ({ status: 200, headers: { 'Set-Cookie': cookies, 'x-one': 'a' }, body: { ok: true } }),
      }),
    });
    const handler = createLambdaHandler(runtime);
    const v2 = await handler(httpApiEvent('POST', '/', { body: '{}' }), lambdaContext());
    assert.equal(v2.statusCode, 200, v2.body);
    assert.deepEqual(v2.cookies, cookies);
    assert.equal(v2.headers?.['set-cookie'], undefined);
    assert.equal(v2.headers?.['x-one'], 'a');
    const v1 = await handler(restApiEvent('POST', '/', { body: '{}' }), lambdaContext());
    assert.equal(v1.statusCode, 200, v1.body);
    assert.deepEqual(v1.multiValueHeaders?.['set-cookie'], cookies);
    assert.equal(v1.headers?.['set-cookie'], undefined);
    assert.equal('cookies' in v1, false, 'payload 1.0 has no cookies field');
  });

  test("a result above Lambda's 6,291,456 bytes (a binary body counted base64) is 500 response_too_large, logged", async () => {
    let size = 0;
    const runtime = await startRuntime({
      modelUri: DIGITS_ONNX,
      predictor: definePredictor({ predict: async () => Buffer.alloc(size, 7) }),
      logLevel: 'ERROR',
    });
    const handler = createLambdaHandler(runtime);
    // 4.7 MB of bytes fits as base64 (6.27 MB); 5 MB does not (6.67 MB), though it is below 6 MiB itself.
    size = 4_700_000;
    const fits = await handler(httpApiEvent('POST', '/', { body: '{}' }), lambdaContext());
    assert.equal(fits.statusCode, 200);
    assert.equal(fits.isBase64Encoded, true);
    assert.ok(Buffer.byteLength(JSON.stringify(fits)) <= 6_291_456);
    size = 5_000_000;
    const { result, lines } = await captureLogs(() =>
      handler(httpApiEvent('POST', '/', { body: '{}', requestId: 'big-1' }), lambdaContext()),
    );
    assert.equal(result.statusCode, 500);
    const error = resultError(result);
    assert.equal(error.code, 'response_too_large');
    assert.match(error.message, /6291456 bytes/);
    assert.match(error.message, /base64/);
    assert.equal(result.headers?.['x-request-id'], 'big-1');
    const logged = lines.find((line) => line['message'] === 'response too large for Lambda');
    assert.ok(logged, 'the oversize answer is logged');
    assert.equal(logged['requestId'], 'big-1');
    // And the next request is served.
    size = 10;
    assert.equal((await handler(httpApiEvent('POST', '/', { body: '{}' }), lambdaContext())).statusCode, 200);
  });

  test("a JSON result's size is counted as its JSON (escapes included), not its characters", async () => {
    // 3.2 MB of quotes: 3.2 M characters, but 6.4 MB once escaped inside the result's JSON.
    const runtime = await startRuntime({
      modelUri: DIGITS_ONNX,
      predictor: definePredictor({ predict: async () => ({ text: '"'.repeat(3_200_000) }) }),
    });
    const result = await createLambdaHandler(runtime)(httpApiEvent('POST', '/', { body: '{}' }), lambdaContext());
    assert.equal(result.statusCode, 500);
    assert.equal(resultError(result).code, 'response_too_large');
  });

  test('the default body limit is the largest body Lambda can deliver; a smaller configured one answers 413', async () => {
    // A binary body of maxBinaryBodyBytes, base64 in a real-sized event, fits Lambda's event limit.
    const binary = httpApiEvent('POST', '/v2/models/digits/infer', {
      body: Buffer.alloc(LAMBDA_PAYLOAD.maxBinaryBodyBytes, 1),
      base64: true,
      contentType: 'application/octet-stream',
    });
    assert.ok(Buffer.byteLength(JSON.stringify(binary)) <= LAMBDA_PAYLOAD.payloadBytes);
    assert.equal(LAMBDA_PAYLOAD.maxTextBodyBytes, 6_275_072);
    assert.equal(LAMBDA_PAYLOAD.maxBinaryBodyBytes, 4_706_304);
    const runtime = await startRuntime({ modelUri: DIGITS_ONNX });
    const handler = createLambdaHandler(runtime, { maxBodyBytes: 1000 });
    const result = await handler(
      httpApiEvent('POST', '/v2/models/digits/infer', { body: Buffer.alloc(1001, 1), base64: true }),
      lambdaContext(),
    );
    assert.equal(result.statusCode, 413);
    assert.equal(resultError(result).code, 'payload_too_large');
  });
});

describe('the memory base64 bodies are decoded into, reused from one invocation to the next', () => {
  /** A digits OIP binary event for image `i`, its JSON header padded by an id of `i` characters. */
  function imageEvent(i: number): ReturnType<typeof httpApiEvent> {
    const header = Buffer.from(
      JSON.stringify({
        id: 'x'.repeat(i % 8),
        inputs: [{ name: 'image', shape: [1, 1, 8, 8], datatype: 'FP32', parameters: { binary_data_size: 256 } }],
        parameters: { binary_data_output: true },
      }),
    );
    const image = Float32Array.from(expected.images[i]!);
    return httpApiEvent('POST', '/v2/models/digits/infer', {
      body: Buffer.concat([header, Buffer.from(image.buffer)]),
      base64: true,
      contentType: 'application/octet-stream',
      headers: { [BINARY_HEADER]: String(header.length) },
    });
  }

  function assertImageAnswer(result: APIGatewayProxyResult, i: number): void {
    assert.equal(result.statusCode, 200, result.body);
    const bytes = Buffer.from(result.body, 'base64');
    const binary = bytes.subarray(Number(result.headers?.[BINARY_HEADER]));
    const logits = Array.from({ length: DIGIT_CLASSES }, (_, k) => binary.readFloatLE(k * 4));
    assertLogitsClose(logits, expected.logits[i]!, `image ${i}`);
  }

  test('invocations in flight together, one after another, and after failures each get their own answer', async () => {
    const concurrent = await Promise.all(
      Array.from({ length: 12 }, (_, i) => oipHandler(imageEvent(i), lambdaContext())),
    );
    concurrent.forEach((result, i) => assertImageAnswer(result, i));
    for (let i = 12; i < 40; i++) {
      if (i % 5 === 0) {
        // A refused body (a shape its bytes do not fill) between two good ones.
        const bad = imageEvent(i);
        bad.body = Buffer.from(Buffer.from(bad.body!, 'base64').subarray(0, -4)).toString('base64');
        assert.equal((await oipHandler(bad, lambdaContext())).statusCode, 400);
      }
      assertImageAnswer(await oipHandler(imageEvent(i), lambdaContext()), i);
    }
  });

  test("a custom predictor's bodies are its own: a body it keeps is never written over by a later one", async () => {
    const kept: Buffer[] = [];
    const runtime = await startRuntime({
      modelUri: DIGITS_ONNX,
      predictor: definePredictor({
        predict: async (request) => {
          kept.push(request.body);
          return { kept: kept.length };
        },
      }),
    });
    const handler = createLambdaHandler(runtime);
    const sent = Array.from({ length: 6 }, (_, i) => Buffer.alloc(4096, i + 1));
    for (const body of sent) {
      const event = httpApiEvent('POST', '/', { body, base64: true, contentType: 'application/octet-stream' });
      assert.equal((await handler(event, lambdaContext())).statusCode, 200);
    }
    kept.forEach((body, i) => assert.deepEqual(body, sent[i], `body ${i} as the predictor kept it`));
  });
});
