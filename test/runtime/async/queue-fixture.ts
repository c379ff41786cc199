/**
 * What the ECS queue-worker tests share: a real SQS API (fauxqs) and S3 (s3rver) on loopback with their SDK clients,
 * a fresh queue and async front per test, submitting a job, and waiting for what a worker does.
 */
import assert from 'node:assert/strict';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { AsyncFront } from '../../../lib/runtime/async/async-front.js';
import { JobPayloads } from '../../../lib/runtime/async/job-payloads.js';
import type { JobStore } from '../../../lib/runtime/async/job-store.js';
import { SqsJobQueue } from '../../../lib/runtime/async/sqs-queue.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import { startSqsServer, type SqsServer } from '../../sqs-server.js';

/** SQS and S3 on loopback, `bucket` created in S3. */
export interface QueueWorld {
  readonly sqsServer: SqsServer;
  readonly sqs: SQSClient;
  readonly s3: EmbeddedS3;
  readonly s3Client: S3Client;
  /** A new queue named `<prefix>-<n>` (30 s visibility timeout) and the async front submitting to it. */
  readonly queueWithFront: (
    prefix: string,
    apiName: string,
    store: JobStore,
  ) => { queueName: string; queueUrl: string; front: AsyncFront };
  /** The keys of a job's result objects. */
  readonly resultObjects: (id: string) => Promise<string[]>;
  readonly close: () => Promise<void>;
}

export async function startQueueWorld(bucket: string): Promise<QueueWorld> {
  const sqsServer = await startSqsServer();
  const sqs = sqsServer.client();
  const s3 = await startEmbeddedS3([bucket]);
  const s3Client = createS3Client(s3.env);
  let queueCount = 0;
  return {
    sqsServer,
    sqs,
    s3,
    s3Client,
    queueWithFront: (prefix, apiName, store) => {
      const queueName = `${prefix}-${++queueCount}`;
      const queueUrl = sqsServer.createQueue(queueName, { VisibilityTimeout: '30' });
      const front = new AsyncFront({
        apiName,
        store,
        payloads: new JobPayloads(s3Client, bucket),
        queue: new SqsJobQueue(sqs, queueUrl),
        baseUrl: 'https://api.example',
      });
      return { queueName, queueUrl, front };
    },
    resultObjects: async (id) => {
      const listed = await s3Client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `results/${id}` }));
      return (listed.Contents ?? []).map((object) => object.Key!);
    },
    close: async () => {
      s3Client.destroy();
      await s3.close();
      await sqsServer.stop();
    },
  };
}

/** POSTs a job to the front; its id (the front must answer 202). */
export async function submit(
  front: AsyncFront,
  body: string | Buffer,
  contentType = 'application/json',
): Promise<string> {
  const response = await front.handle({
    method: 'POST',
    path: '/async',
    headers: { 'content-type': contentType },
    body: Buffer.from(body),
  });
  assert.equal(response.status, 202, response.body.toString());
  return (JSON.parse(response.body.toString()) as { id: string }).id;
}

/** The first value `probe` gives that is not undefined, looked for every 50 ms; throws after `ms`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
