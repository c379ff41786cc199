/**
 * Completion notifications as the deployed worker sends them: the front and the SQS handler over a real S3 (s3rver),
 * each job's request through the Lambda adapter on the digits model, webhooks POSTed over real sockets to a local
 * HTTP receiver that verifies the signature, and SNS publishes by the real AWS SDK to a local HTTP endpoint that
 * speaks SNS's query protocol (SNS itself cannot run here).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { SQSRecord } from 'aws-lambda';
import { SNSClient } from '@aws-sdk/client-sns';
import type { S3Client } from '@aws-sdk/client-s3';
import { WEBHOOK_HEADERS } from '../../../lib/contract.js';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { AsyncFront } from '../../../lib/runtime/async/async-front.js';
import { processJob, type AsyncWorkerDeps } from '../../../lib/runtime/async/async-worker.js';
import { callbackUrlProblem } from '../../../lib/runtime/async/callback-url.js';
import { JobNotifiers, type JobNotification } from '../../../lib/runtime/async/job-notification.js';
import { JobPayloads } from '../../../lib/runtime/async/job-payloads.js';
import { MemoryJobStore } from '../../../lib/runtime/async/job-store.js';
import { invokeThroughAdapter } from '../../../lib/runtime/async/lambda-worker.js';
import { SnsNotifier } from '../../../lib/runtime/async/sns-notifier.js';
import { createSqsHandler, jobMessage } from '../../../lib/runtime/async/sqs-handler.js';
import { WebhookNotifier, verifyWebhookSignature, webhookSignature } from '../../../lib/runtime/async/webhook.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import { DIGITS_ONNX, loadTestPredictor, startRuntime } from '../../helpers.js';

const BUCKET = 'notify-jobs';
const SECRET = 'a-webhook-signing-key-for-tests';
const TOPIC = 'arn:aws:sns:us-east-1:000000000000:jobs-ended';

interface Received {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/** An HTTP receiver: records each POST and answers what `answer` says for its path. */
async function startReceiver(answer: (path: string, count: number) => number | 'hang'): Promise<{
  server: Server;
  url: string;
  received: Received[];
}> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const status = answer(req.url ?? '', received.filter((r) => r.path === req.url).length);
      if (status === 'hang') return;
      res.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

let s3: EmbeddedS3;
let client: S3Client;
let runtime: Runtime;
let store: MemoryJobStore;
let payloads: JobPayloads;
let front: AsyncFront;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let sns: Awaited<ReturnType<typeof startReceiver>>;
let snsClient: SNSClient;
let deps: AsyncWorkerDeps;
const failures: string[] = [];
const logs: { message: string; fields: Record<string, unknown> }[] = [];

before(async () => {
  s3 = await startEmbeddedS3([BUCKET]);
  client = createS3Client(s3.env);
  runtime = await startRuntime({
    modelUri: DIGITS_ONNX,
    predictor: await loadTestPredictor('test/fixtures/async-job-predictor.ts'),
  });
  const handler = createLambdaHandler(runtime, { maxResultBytes: Number.POSITIVE_INFINITY });
  store = new MemoryJobStore();
  payloads = new JobPayloads(client, BUCKET);
  receiver = await startReceiver((path, count) => {
    if (path.startsWith('/down')) return 503;
    if (path.startsWith('/gone')) return 410;
    if (path.startsWith('/slow')) return 'hang';
    if (path.startsWith('/flaky')) return count < 2 ? 500 : 204;
    return 200;
  });
  sns = await startReceiver(() => 200);
  // SNS answers Publish in XML; the receiver's 'ok' would not parse, so it gets its own answer.
  sns.server.removeAllListeners('request');
  sns.server.on('request', (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      sns.received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res
        .writeHead(200, { 'content-type': 'text/xml' })
        .end(
          '<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>m-1</MessageId></PublishResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></PublishResponse>',
        );
    });
  });
  snsClient = new SNSClient({
    endpoint: sns.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  const log = (message: string, fields: Record<string, unknown>): void => void logs.push({ message, fields });
  const onFailure = (notification: JobNotification): void => void failures.push(notification.id);
  deps = {
    store,
    payloads,
    invoke: (job) => invokeThroughAdapter(handler, job),
    apiName: 'jobs',
    notifier: new JobNotifiers([
      new SnsNotifier(snsClient, TOPIC, { log, onFailure }),
      new WebhookNotifier({
        secret: async () => SECRET,
        timeoutMs: 500,
        attempts: 3,
        backoffMs: () => 20,
        log,
        onFailure,
      }),
    ]),
    log,
  };
  front = new AsyncFront({
    apiName: 'jobs',
    store,
    payloads,
    queue: { send: async () => undefined },
    baseUrl: 'https://api.example',
    webhooks: { allowLocal: true },
  });
});

after(async () => {
  snsClient?.destroy();
  client?.destroy();
  receiver?.server.closeAllConnections();
  receiver?.server.close();
  sns?.server.close();
  await runtime?.close();
  await s3?.close();
});

async function submit(payload: unknown, callbackUrl?: string, via: AsyncFront = front): Promise<string> {
  const response = await via.handle({
    method: 'POST',
    path: '/async',
    headers: {
      'content-type': 'application/json',
      ...(callbackUrl ? { 'arclight-callback-url': callbackUrl } : {}),
    },
    body: Buffer.from(JSON.stringify(payload)),
  });
  assert.equal(response.status, 202, response.body.toString());
  return (JSON.parse(response.body.toString()) as { id: string }).id;
}

function sqsRecord(id: string, receiveCount: number): SQSRecord {
  return {
    messageId: `m-${id}-${receiveCount}`,
    receiptHandle: 'r',
    body: jobMessage(id),
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: '0',
      SenderId: 'front',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:jobs',
    awsRegion: 'us-east-1',
  };
}

function webhooksFor(path: string): Received[] {
  return receiver.received.filter((r) => r.path === path);
}

function publishedFor(id: string): URLSearchParams[] {
  return sns.received
    .map((r) => new URLSearchParams(r.body))
    .filter((params) => (JSON.parse(params.get('Message') ?? '{}') as { id?: string }).id === id);
}

describe('completion notifications', () => {
  test('a succeeded and a failed job: one signed webhook and one SNS message each, the status body shape', async () => {
    const ok = await submit({ tag: 'notify me' }, `${receiver.url}/hook/ok?token=t1`);
    const bad = await submit({ fail: 'on purpose' }, `${receiver.url}/hook/bad`);
    const handler = createSqsHandler({ ...deps, maxReceives: 3 });
    const answer = await handler({ Records: [sqsRecord(ok, 1), sqsRecord(bad, 1)] });
    assert.deepEqual(answer.batchItemFailures, []);

    const [hook] = webhooksFor('/hook/ok?token=t1');
    assert.ok(hook, 'the webhook arrived');
    assert.equal(webhooksFor('/hook/ok?token=t1').length, 1);
    assert.equal(hook.headers[WEBHOOK_HEADERS.jobId], ok);
    assert.ok(verifyWebhookSignature(SECRET, hook.body, hook.headers[WEBHOOK_HEADERS.signature] as string));
    assert.ok(!verifyWebhookSignature('another key', hook.body, hook.headers[WEBHOOK_HEADERS.signature] as string));
    assert.ok(
      !verifyWebhookSignature(
        SECRET,
        hook.body.replace('succeeded', 'failed'),
        hook.headers[WEBHOOK_HEADERS.signature] as string,
      ),
      'a changed body fails verification',
    );
    const notification = JSON.parse(hook.body) as JobNotification;
    const record = (await store.get(ok))!;
    assert.deepEqual(notification, {
      id: ok,
      apiName: 'jobs',
      status: 'succeeded',
      statusUrl: `https://api.example/async/${ok}`,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      attempts: 1,
      httpStatus: 200,
      resultContentType: record.result!.contentType,
      resultBytes: record.result!.bytes,
    });
    // The status route answers the same fields.
    const status = await front.handle({ method: 'GET', path: `/async/${ok}`, headers: {}, body: Buffer.alloc(0) });
    const statusBody = JSON.parse(status.body.toString()) as Record<string, unknown>;
    for (const field of ['id', 'status', 'createdAt', 'updatedAt', 'attempts', 'httpStatus', 'resultBytes']) {
      assert.deepEqual(statusBody[field], (notification as unknown as Record<string, unknown>)[field], field);
    }

    const failed = JSON.parse(webhooksFor('/hook/bad')[0]!.body) as JobNotification;
    assert.equal(failed.status, 'failed');
    assert.equal(failed.code, 'predictor_error');
    assert.equal(failed.httpStatus, 500);
    assert.match(failed.error ?? '', /the predictor failed/);
    assert.equal(failed.requestId, bad);

    const [published] = publishedFor(ok);
    assert.equal(publishedFor(ok).length, 1);
    assert.equal(published!.get('Action'), 'Publish');
    assert.equal(published!.get('TopicArn'), TOPIC);
    assert.deepEqual(JSON.parse(published!.get('Message')!), notification);
    const attributes = new Map<string, string>();
    for (let i = 1; published!.has(`MessageAttributes.entry.${i}.Name`); i++) {
      attributes.set(
        published!.get(`MessageAttributes.entry.${i}.Name`)!,
        published!.get(`MessageAttributes.entry.${i}.Value.StringValue`)!,
      );
    }
    assert.equal(attributes.get('status'), 'succeeded');
    assert.equal(publishedFor(bad).length, 1);
  });

  test('redelivered and superseded deliveries of one job notify once: only the lease that ended it', async () => {
    const id = await submit({ sleepMs: 500, tag: 'slow' }, `${receiver.url}/hook/once`);
    const late = processJob(id, { receiveCount: 1, maxReceives: 3 }, deps);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const redelivered = processJob(id, { receiveCount: 2, maxReceives: 3 }, deps);
    assert.deepEqual(await Promise.all([late, redelivered]), ['superseded', 'succeeded']);
    // A duplicate delivery of the ended message, as SQS's at-least-once allows.
    assert.equal(await processJob(id, { receiveCount: 3, maxReceives: 3 }, deps), 'skipped');
    assert.equal(webhooksFor('/hook/once').length, 1);
    assert.equal(publishedFor(id).length, 1);
    assert.equal((JSON.parse(webhooksFor('/hook/once')[0]!.body) as JobNotification).attempts, 2);
  });

  test('a retryable answer is retried with the same delivery id; a failing receiver never fails the job', async () => {
    const flaky = await submit({ tag: 'flaky' }, `${receiver.url}/flaky`);
    const down = await submit({ tag: 'down' }, `${receiver.url}/down`);
    const gone = await submit({ tag: 'gone' }, `${receiver.url}/gone`);
    const slow = await submit({ tag: 'slow receiver' }, `${receiver.url}/slow`);
    const closed = await submit({ tag: 'nobody listens' }, 'http://127.0.0.1:9/nothing');
    failures.length = 0;
    const handler = createSqsHandler({ ...deps, maxReceives: 3 });
    const answer = await handler({ Records: [flaky, down, gone, slow, closed].map((id) => sqsRecord(id, 1)) });
    assert.deepEqual(answer.batchItemFailures, [], 'no notification failure sends a job back');
    for (const id of [flaky, down, gone, slow, closed]) assert.equal((await store.get(id))!.status, 'succeeded');

    const tries = webhooksFor('/flaky');
    assert.equal(tries.length, 2, 'a 500 is retried, then 204 ends it');
    assert.equal(tries[0]!.headers[WEBHOOK_HEADERS.deliveryId], tries[1]!.headers[WEBHOOK_HEADERS.deliveryId]);
    assert.equal(webhooksFor('/down').length, 3, '503 three times: the bounded attempts');
    assert.equal(webhooksFor('/gone').length, 1, 'a 410 is final');
    assert.equal(webhooksFor('/slow').length, 3, 'each attempt times out');
    assert.deepEqual(new Set(failures), new Set([down, gone, slow, closed]), 'each given-up webhook is counted once');
    assert.equal(failures.length, 4);
    const logged = logs.filter((entry) => entry.message === 'async webhook failed').map((entry) => entry.fields['id']);
    assert.ok(logged.includes(closed));
  });

  test('an unreadable secret or a failing SNS publish is counted, the job still succeeds', async () => {
    const broken = new SNSClient({
      endpoint: 'http://127.0.0.1:9',
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
    failures.length = 0;
    const id = await submit({ tag: 'no key' }, `${receiver.url}/hook/nokey`);
    const outcome = await processJob(
      id,
      { receiveCount: 1, maxReceives: 3 },
      {
        ...deps,
        notifier: new JobNotifiers([
          new SnsNotifier(broken, TOPIC, { onFailure: (n) => void failures.push(`sns:${n.id}`) }),
          new WebhookNotifier({
            secret: async () => {
              throw new Error('AccessDenied');
            },
            onFailure: (n) => void failures.push(`hook:${n.id}`),
          }),
        ]),
      },
    );
    broken.destroy();
    assert.equal(outcome, 'succeeded');
    assert.deepEqual(failures.sort(), [`hook:${id}`, `sns:${id}`]);
    assert.equal(webhooksFor('/hook/nokey').length, 0, 'nothing unsigned is sent');
  });

  test('the front checks the callback URL, and refuses it when the API sends no webhooks', async () => {
    const cloud = new AsyncFront({
      apiName: 'jobs',
      store,
      payloads,
      queue: { send: async () => undefined },
      webhooks: { allowLocal: false },
    });
    const refused = async (via: AsyncFront, url: string): Promise<string> => {
      const response = await via.handle({
        method: 'POST',
        path: '/async',
        headers: { 'content-type': 'application/json', 'arclight-callback-url': url },
        body: Buffer.from('{}'),
      });
      assert.equal(response.status, 400, url);
      return (JSON.parse(response.body.toString()) as { error: string }).error;
    };
    assert.match(await refused(cloud, 'http://hooks.example.com/x'), /must be an https URL/);
    assert.match(await refused(cloud, 'https://169.254.169.254/latest'), /private, loopback or link-local/);
    assert.match(await refused(cloud, 'https://[::1]/x'), /private, loopback or link-local/);
    assert.match(await refused(cloud, 'https://10.1.2.3/x'), /private/);
    assert.match(await refused(cloud, 'https://localhost/x'), /not on the internet/);
    assert.match(await refused(cloud, 'https://user:pw@hooks.example.com/x'), /credentials/);
    assert.match(await refused(cloud, 'not a url'), /absolute URL/);
    assert.equal(callbackUrlProblem('https://hooks.example.com/arclight?token=1', false), undefined);
    assert.ok(await submit({}, 'https://hooks.example.com/arclight', cloud));
    const off = new AsyncFront({ apiName: 'jobs', store, payloads, queue: { send: async () => undefined } });
    assert.match(await refused(off, 'https://hooks.example.com/x'), /sends no webhooks/);
  });

  test('signatures: stale timestamps and malformed headers are refused', () => {
    const body = '{"id":"x"}';
    const now = new Date('2026-01-01T00:00:00Z');
    const t = Math.floor(now.getTime() / 1000);
    assert.ok(verifyWebhookSignature(SECRET, body, webhookSignature(SECRET, body, t), { now }));
    assert.ok(!verifyWebhookSignature(SECRET, body, webhookSignature(SECRET, body, t - 3600), { now }));
    assert.ok(!verifyWebhookSignature(SECRET, body, undefined, { now }));
    assert.ok(!verifyWebhookSignature(SECRET, body, 't=abc,v1=zz', { now }));
  });
});
