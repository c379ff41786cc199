/**
 * The async front's SageMaker mode, with its real code: bodies stored in a real S3 (s3rver), InvokeEndpointAsync sent
 * by the real SageMaker runtime client to a loopback server that answers as SageMaker does (the service itself cannot
 * run here), and `GET /async/{id}` reading the objects SageMaker would write: the output object → succeeded with the
 * result, the failure object → failed with the contract's error, neither → queued.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { ASYNC_ENV, ENV } from '../../../lib/contract.js';
import { AsyncFront } from '../../../lib/runtime/async/async-front.js';
import { asyncSettingsFromEnv } from '../../../lib/runtime/async/async-settings.js';
import { JobPayloads } from '../../../lib/runtime/async/job-payloads.js';
import { MemoryJobStore } from '../../../lib/runtime/async/job-store.js';
import { SageMakerAsyncEndpoint, failureObjectError } from '../../../lib/runtime/async/sagemaker-endpoint.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';

const BUCKET = 'async-sagemaker';
const ENDPOINT = 'mobilenet-async-endpoint';

interface Invocation {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

let s3: EmbeddedS3;
let client: S3Client;
let sageMaker: Server;
let runtimeClient: SageMakerRuntimeClient;
let front: AsyncFront;
let failNext = false;
const invocations: Invocation[] = [];

before(async () => {
  s3 = await startEmbeddedS3([BUCKET]);
  client = createS3Client(s3.env);
  // SageMaker's InvokeEndpointAsync: 202, the output and failure locations as headers (names are SageMaker's).
  sageMaker = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      invocations.push({ path: request.url ?? '', headers: request.headers });
      if (failNext) {
        failNext = false;
        response.writeHead(400, { 'content-type': 'application/json', 'x-amzn-errortype': 'ValidationError' });
        response.end(JSON.stringify({ message: 'Endpoint is not in service' }));
        return;
      }
      const uuid = `out-${invocations.length}`;
      response.writeHead(202, {
        'content-type': 'application/json',
        'x-amzn-sagemaker-outputlocation': `s3://${BUCKET}/results/sagemaker/output/${uuid}.out`,
        'x-amzn-sagemaker-failurelocation': `s3://${BUCKET}/results/sagemaker/failures/${uuid}-error.out`,
      });
      response.end(JSON.stringify({ InferenceId: request.headers['x-amzn-sagemaker-inference-id'] }));
    });
  });
  await new Promise<void>((resolve) => sageMaker.listen(0, '127.0.0.1', resolve));
  runtimeClient = new SageMakerRuntimeClient({
    endpoint: `http://127.0.0.1:${(sageMaker.address() as AddressInfo).port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  front = new AsyncFront({
    apiName: 'mobilenet-async',
    store: new MemoryJobStore(),
    payloads: new JobPayloads(client, BUCKET),
    endpoint: new SageMakerAsyncEndpoint(runtimeClient, ENDPOINT, BUCKET, 1800),
    baseUrl: 'https://api.example',
  });
});

after(async () => {
  runtimeClient?.destroy();
  client?.destroy();
  await new Promise((resolve) => sageMaker?.close(resolve));
  await s3?.close();
});

async function submit(
  payload: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await front.handle({
    method: 'POST',
    path: '/async',
    headers: { 'content-type': 'application/json', ...headers },
    body: Buffer.from(JSON.stringify(payload)),
  });
  return { status: response.status, body: JSON.parse(response.body.toString()) as Record<string, unknown> };
}

async function status(id: string): Promise<Record<string, unknown>> {
  const response = await front.handle({ method: 'GET', path: `/async/${id}`, headers: {}, body: Buffer.alloc(0) });
  assert.equal(response.status, 200, response.body.toString());
  return JSON.parse(response.body.toString()) as Record<string, unknown>;
}

/** Writes an object where SageMaker's answer said it would. */
async function writeAsSageMaker(location: string, body: string, contentType: string): Promise<void> {
  const key = location.slice(`s3://${BUCKET}/`.length);
  await client.send(
    new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: Buffer.from(body), ContentType: contentType }),
  );
}

function lastLocations(): { output: string; failure: string } {
  const invocation = invocations.at(-1)!;
  assert.ok(invocation);
  const n = invocations.length;
  return {
    output: `s3://${BUCKET}/results/sagemaker/output/out-${n}.out`,
    failure: `s3://${BUCKET}/results/sagemaker/failures/out-${n}-error.out`,
  };
}

describe('AsyncFront on a SageMaker async endpoint', () => {
  test('a submission is stored in S3 and handed to InvokeEndpointAsync with its S3 location, id and content type', async () => {
    const { status: code, body } = await submit({ inputs: [1] });
    assert.equal(code, 202);
    assert.equal(body['status'], 'queued');
    assert.equal(body['statusUrl'], `https://api.example/async/${String(body['id'])}`);
    const invocation = invocations.at(-1)!;
    assert.equal(invocation.path, `/endpoints/${ENDPOINT}/async-invocations`);
    assert.equal(invocation.headers['x-amzn-sagemaker-inference-id'], body['id']);
    assert.equal(invocation.headers['x-amzn-sagemaker-content-type'], 'application/json');
    assert.equal(invocation.headers['x-amzn-sagemaker-invocationtimeoutseconds'], '1800');
    const input = String(invocation.headers['x-amzn-sagemaker-inputlocation']);
    assert.match(input, new RegExp(`^s3://${BUCKET}/requests/${String(body['id'])}/[0-9a-f]{64}$`));
    const stored = await new JobPayloads(client, BUCKET).get(input.slice(`s3://${BUCKET}/`.length));
    assert.deepEqual(JSON.parse(stored.bytes.toString()), { inputs: [1] });
  });

  test('queued until SageMaker writes the output object, then succeeded with the result inline', async () => {
    const { body } = await submit({ inputs: [2] });
    const id = String(body['id']);
    const locations = lastLocations();
    assert.equal((await status(id))['status'], 'queued');
    const result = { outputs: [{ name: 'label', data: ['tabby cat'] }] };
    await writeAsSageMaker(locations.output, JSON.stringify(result), 'application/json');
    const done = await status(id);
    assert.equal(done['status'], 'succeeded');
    assert.equal(done['httpStatus'], 200);
    assert.deepEqual(done['result'], result);
  });

  test('a large or binary output is returned as a presigned URL that serves the object', async () => {
    const { body } = await submit({ inputs: [3] });
    const locations = lastLocations();
    await writeAsSageMaker(locations.output, 'x'.repeat(300 * 1024), 'application/json');
    const done = await status(String(body['id']));
    assert.equal(done['status'], 'succeeded');
    assert.equal(done['result'], undefined);
    const fetched = await fetch(String(done['resultUrl']));
    assert.equal(fetched.status, 200);
    assert.equal((await fetched.text()).length, 300 * 1024);
  });

  test("the failure object → failed with the container's contract error", async () => {
    const { body } = await submit({ inputs: 'not a tensor' });
    const locations = lastLocations();
    const containerError = { error: 'inputs must be an array', code: 'invalid_input', requestId: 'container-1' };
    await writeAsSageMaker(locations.failure, JSON.stringify(containerError), 'text/plain');
    const failed = await status(String(body['id']));
    assert.equal(failed['status'], 'failed');
    assert.equal(failed['code'], 'invalid_input');
    assert.equal(failed['error'], 'inputs must be an array');
    assert.equal(failed['httpStatus'], 400);
    assert.equal(failed['requestId'], body['id']);
  });

  test("a failure SageMaker itself wrote (not the contract's body) → failed, predictor_error, its text kept", async () => {
    const { body } = await submit({ inputs: [4] });
    await writeAsSageMaker(lastLocations().failure, 'Inference timed out after 1800 seconds', 'text/plain');
    const failed = await status(String(body['id']));
    assert.equal(failed['status'], 'failed');
    assert.equal(failed['code'], 'predictor_error');
    assert.equal(failed['httpStatus'], 500);
    assert.match(String(failed['error']), /Inference timed out after 1800 seconds/);
  });

  test('an Idempotency-Key replay answers the same id without a second invocation; another body is refused', async () => {
    const first = await submit({ inputs: [5] }, { 'idempotency-key': 'order-5' });
    const count = invocations.length;
    const again = await submit({ inputs: [5] }, { 'idempotency-key': 'order-5' });
    assert.equal(again.status, 202);
    assert.equal(again.body['id'], first.body['id']);
    assert.equal(invocations.length, count);
    const other = await submit({ inputs: [6] }, { 'idempotency-key': 'order-5' });
    assert.equal(other.status, 400);
    assert.equal(other.body['code'], 'idempotency_key_reused');
  });

  test('an endpoint that refuses the invocation → 503 not_ready with Retry-After, and no job is stored', async () => {
    failNext = true;
    const response = await front.handle({
      method: 'POST',
      path: '/async',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'refused-once' },
      body: Buffer.from('{"inputs":[7]}'),
    });
    assert.equal(response.status, 503);
    assert.equal(response.headers['retry-after'], '1');
    assert.equal((JSON.parse(response.body.toString()) as { code: string }).code, 'not_ready');
    // The retry with the same key is a new invocation and a stored job.
    const retried = await submit({ inputs: [7] }, { 'idempotency-key': 'refused-once' });
    assert.equal(retried.status, 202);
    assert.equal((await status(String(retried.body['id'])))['status'], 'queued');
  });
});

describe('failureObjectError', () => {
  test("finds the contract's body inside SageMaker's message, else keeps the text", () => {
    const wrapped = Buffer.from(
      'Received client error (413) from primary: {"error":"too big","code":"payload_too_large","requestId":"r"}',
    );
    assert.deepEqual(failureObjectError(wrapped, 'job'), {
      error: 'too big',
      code: 'payload_too_large',
      requestId: 'job',
      status: 413,
    });
    assert.equal(failureObjectError(Buffer.from('{"code":"made_up","error":"x"}'), 'job').code, 'predictor_error');
    assert.match(failureObjectError(Buffer.alloc(0), 'job').error, /without a message/);
  });
});

describe("the front's environment in SageMaker mode", () => {
  const base = { [ENV.apiName]: 'mobilenet-async', [ASYNC_ENV.bucket]: BUCKET, [ASYNC_ENV.table]: 'jobs' };

  test('an endpoint name needs no queue URL, and carries its invocation timeout', () => {
    const settings = asyncSettingsFromEnv(
      { ...base, [ASYNC_ENV.endpointName]: ENDPOINT, [ASYNC_ENV.invocationTimeoutSeconds]: '3600' },
      true,
    );
    assert.deepEqual(settings.endpoint, { name: ENDPOINT, timeoutSeconds: 3600 });
    assert.equal(settings.queueUrl, undefined);
  });

  test('neither an endpoint nor a queue URL: one startup error naming the queue URL', () => {
    assert.throws(() => asyncSettingsFromEnv(base, true), new RegExp(`${ASYNC_ENV.queueUrl} is not set`));
    assert.throws(
      () =>
        asyncSettingsFromEnv(
          { ...base, [ASYNC_ENV.endpointName]: ENDPOINT, [ASYNC_ENV.invocationTimeoutSeconds]: 'soon' },
          true,
        ),
      new RegExp(`${ASYNC_ENV.invocationTimeoutSeconds} must be a positive integer`),
    );
  });
});
