/**
 * The async runtime's pieces as the deployed worker runs them: the front and the SQS handler over a real S3 (s3rver)
 * and the status store's conditions, each job's request going to the predictor through the Lambda adapter
 * (invokeThroughAdapter, as lambda-worker.ts does), on the digits model with the job fixture predictor.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { DeleteObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { AsyncFront } from '../../../lib/runtime/async/async-front.js';
import { processJob, type AsyncWorkerDeps } from '../../../lib/runtime/async/async-worker.js';
import { JobPayloads } from '../../../lib/runtime/async/job-payloads.js';
import { MemoryJobStore } from '../../../lib/runtime/async/job-store.js';
import { createAsyncFrontHandler } from '../../../lib/runtime/async/lambda-front.js';
import { invokeThroughAdapter } from '../../../lib/runtime/async/lambda-worker.js';
import { createSqsHandler, jobMessage } from '../../../lib/runtime/async/sqs-handler.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import { DIGITS_ONNX, loadTestPredictor, startRuntime } from '../../helpers.js';

const BUCKET = 'async-jobs';
let s3: EmbeddedS3;
let client: S3Client;
let runtime: Runtime;
let deps: AsyncWorkerDeps;
let store: MemoryJobStore;
let front: AsyncFront;
const queued: string[] = [];

before(async () => {
  s3 = await startEmbeddedS3([BUCKET]);
  client = createS3Client(s3.env);
  runtime = await startRuntime({
    modelUri: DIGITS_ONNX,
    predictor: await loadTestPredictor('test/fixtures/async-job-predictor.ts'),
  });
  const handler = createLambdaHandler(runtime, { maxResultBytes: Number.POSITIVE_INFINITY });
  store = new MemoryJobStore();
  const payloads = new JobPayloads(client, BUCKET);
  deps = { store, payloads, invoke: (job) => invokeThroughAdapter(handler, job) };
  front = new AsyncFront({
    apiName: 'jobs',
    store,
    payloads,
    queue: { send: async (id) => void queued.push(id) },
    baseUrl: 'https://api.example',
  });
});

after(async () => {
  client?.destroy();
  await runtime?.close();
  await s3?.close();
});

async function submit(payload: unknown): Promise<string> {
  const response = await front.handle({
    method: 'POST',
    path: '/async',
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(payload)),
  });
  assert.equal(response.status, 202, response.body.toString());
  return (JSON.parse(response.body.toString()) as { id: string }).id;
}

function sqsRecord(id: string | undefined, receiveCount: number, messageId = `m-${id}-${receiveCount}`): SQSRecord {
  return {
    messageId,
    receiptHandle: `r-${messageId}`,
    body: id === undefined ? 'not a job' : jobMessage(id),
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'front',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:jobs',
    awsRegion: 'us-east-1',
  };
}

async function resultObjects(id: string): Promise<string[]> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `results/${id}/` }));
  return (listed.Contents ?? []).map((object) => object.Key!);
}

describe('the async worker as an SQS event handler', () => {
  test('each record is one job; only the one that must come back is reported in batchItemFailures', async () => {
    const ok = await submit({ tag: 'ok' });
    const throws = await submit({ fail: 'on purpose' });
    const lost = await submit({ tag: 'its request object is gone' });
    const request = (await store.get(lost))!.requestKey;
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: request }));
    const handler = createSqsHandler({ ...deps, maxReceives: 3 });
    const event: SQSEvent = {
      Records: [sqsRecord(ok, 1), sqsRecord(throws, 1), sqsRecord(lost, 1), sqsRecord(undefined, 1, 'junk')],
    };
    const first = await handler(event);
    assert.deepEqual(first.batchItemFailures, [{ itemIdentifier: `m-${lost}-1` }]);
    assert.equal((await store.get(ok))!.status, 'succeeded');
    const failed = (await store.get(throws))!;
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error?.code, 'predictor_error');
    assert.equal(failed.error?.requestId, throws, 'the job id is the invocation request id');
    assert.equal((await store.get(lost))!.status, 'running');

    // A duplicate delivery of an ended job does nothing; the last allowed delivery fails the lost one, readably.
    const last = await handler({ Records: [sqsRecord(ok, 2), sqsRecord(lost, 3)] });
    assert.deepEqual(last.batchItemFailures, []);
    const gaveUp = (await store.get(lost))!;
    assert.equal(gaveUp.status, 'failed');
    assert.equal(gaveUp.attempts, 2);
    assert.equal(gaveUp.error?.code, 'internal_error');
    assert.match(gaveUp.error?.error ?? '', /could not be run after 3 attempts/);
    assert.deepEqual(await resultObjects(ok), [(await store.get(ok))!.result!.key]);
  });

  test('a delivery that outlives its lease: its late result is removed and the job keeps one result', async () => {
    const id = await submit({ sleepMs: 600, tag: 'slow' });
    const late = processJob(id, { receiveCount: 1, maxReceives: 3 }, deps);
    // The visibility timeout passed: SQS delivers the message again while the first worker still runs.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await store.get(id))!.attempts, 1);
    const redelivered = processJob(id, { receiveCount: 2, maxReceives: 3 }, deps);
    assert.deepEqual(await Promise.all([late, redelivered]), ['superseded', 'succeeded']);
    const job = (await store.get(id))!;
    assert.equal(job.status, 'succeeded');
    assert.equal(job.attempts, 2);
    assert.deepEqual(await resultObjects(id), [job.result!.key]);
    const status = await front.handle({ method: 'GET', path: `/async/${id}`, headers: {}, body: Buffer.alloc(0) });
    const body = JSON.parse(status.body.toString()) as { result: { tag: string } };
    assert.equal(body.result.tag, 'slow');
  });

  test('two submissions racing with one Idempotency-Key store one job', async () => {
    const headers = { 'content-type': 'application/json', 'idempotency-key': 'race-1' };
    const body = Buffer.from(JSON.stringify({ tag: 'race' }));
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => front.handle({ method: 'POST', path: '/async', headers, body })),
    );
    const ids = new Set(answers.map((answer) => (JSON.parse(answer.body.toString()) as { id: string }).id));
    assert.equal(ids.size, 1);
    assert.deepEqual(
      answers.map((answer) => answer.status),
      Array(8).fill(202),
    );
  });
});

describe('the async front as an HTTP API (payload 2.0) Lambda handler', () => {
  test('a base64 body on a named stage is stored as sent; the status route answers the job', async () => {
    const handler = createAsyncFrontHandler(front);
    const body = Buffer.from(JSON.stringify({ tag: 'from API Gateway' }));
    const event = {
      version: '2.0',
      routeKey: 'POST /async',
      rawPath: '/prod/async',
      rawQueryString: '',
      headers: { 'Content-Type': 'application/json', host: 'abc.execute-api.us-east-1.amazonaws.com' },
      requestContext: { http: { method: 'POST', path: '/prod/async' }, stage: 'prod', requestId: 'gw-1' },
      body: body.toString('base64'),
      isBase64Encoded: true,
    } as unknown as Parameters<typeof handler>[0];
    const submitted = await handler(event);
    assert.equal(submitted.statusCode, 202, String(submitted.body));
    const { id } = JSON.parse(String(submitted.body)) as { id: string };
    const record = (await store.get(id))!;
    assert.equal(record.contentType, 'application/json');
    const stored = await deps.payloads.get(record.requestKey);
    assert.deepEqual(stored.bytes, body);
    const status = await handler({
      ...event,
      routeKey: 'GET /async/{id}',
      rawPath: `/prod/async/${id}`,
      requestContext: { http: { method: 'GET', path: `/prod/async/${id}` }, stage: 'prod', requestId: 'gw-2' },
      body: undefined,
      isBase64Encoded: false,
    } as unknown as Parameters<typeof handler>[0]);
    assert.equal(status.statusCode, 200);
    assert.equal((JSON.parse(String(status.body)) as { status: string }).status, 'queued');
  });
});
