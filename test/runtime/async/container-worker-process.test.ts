/**
 * The ECS image's entry as ECS runs it: `container-main` in its own process with ARCLIGHT_ASYNC_QUEUE_URL set, over a
 * real SQS API (fauxqs), a real DynamoDB API (dynalite, the deployed DynamoDbJobStore's conditional writes) and a real
 * S3 (s3rver), all on loopback through the real AWS SDK, and stopped as ECS stops a task: SIGTERM. A job running past
 * the drain time goes back to the queue and another task completes it once; one within it finishes before exit 0.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Server } from 'node:http';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { ASYNC_ENV, ENV } from '../../../lib/contract.js';
import type { AsyncFront } from '../../../lib/runtime/async/async-front.js';
import { ASYNC_WORKER_ENV } from '../../../lib/runtime/async/container-worker.js';
import { DynamoDbJobStore } from '../../../lib/runtime/async/dynamodb-job-store.js';
import { JobPayloads } from '../../../lib/runtime/async/job-payloads.js';
import type { JobRecord } from '../../../lib/runtime/async/job.js';
import { DIGITS_ONNX, REPO_ROOT } from '../../helpers.js';
import { startQueueWorld, submit as submitBody, until as untilWithin, type QueueWorld } from './queue-fixture.js';

const BUCKET = 'async-ecs-process';
const TABLE = 'arclight-jobs';
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
let world: QueueWorld;
let dynamo: Server;
let dynamoEndpoint: string;
let dynamoClient: DynamoDBClient;
let store: DynamoDbJobStore;

before(async () => {
  world = await startQueueWorld(BUCKET);
  dynamo = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => dynamo.listen(0, '127.0.0.1', resolve));
  dynamoEndpoint = `http://127.0.0.1:${(dynamo.address() as AddressInfo).port}`;
  dynamoClient = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamoEndpoint, credentials: CREDENTIALS });
  await dynamoClient.send(
    new CreateTableCommand({
      TableName: TABLE,
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  store = new DynamoDbJobStore(dynamoClient, TABLE);
});

after(async () => {
  dynamoClient?.destroy();
  await new Promise((resolve) => dynamo?.close(resolve));
  await world?.close();
});

interface Worker {
  readonly child: ChildProcessWithoutNullStreams;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

/** `node container-main` with the env an ECS task of the API has, its AWS endpoints on loopback. */
function startWorker(queueUrl: string, drainSeconds: number): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/runtime/transports/container-main.ts'], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env['PATH'],
      ...world.s3.env,
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_SQS: world.sqsServer.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamoEndpoint,
      [ENV.apiName]: 'jobs',
      [ENV.modelUri]: DIGITS_ONNX,
      [ENV.predictorEntry]: 'test/fixtures/async-job-predictor.ts',
      [ENV.workers]: '1',
      [ENV.metrics]: 'off',
      [ENV.sageMakerPort]: '0',
      [ENV.bindHost]: '127.0.0.1',
      [ASYNC_ENV.queueUrl]: queueUrl,
      [ASYNC_ENV.bucket]: BUCKET,
      [ASYNC_ENV.table]: TABLE,
      [ASYNC_ENV.maxReceives]: '3',
      [ASYNC_WORKER_ENV.visibilitySeconds]: '30',
      [ASYNC_WORKER_ENV.drainSeconds]: String(drainSeconds),
    },
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => {
      if (signal) output += `\n(killed by ${signal})`;
      resolve(code);
    }),
  );
  return { child, output: () => output, exited };
}

function setup(): { queueName: string; queueUrl: string; front: AsyncFront } {
  return world.queueWithFront('process-jobs', 'jobs', store);
}

function submit(front: AsyncFront, payload: unknown): Promise<string> {
  return submitBody(front, JSON.stringify(payload));
}

/** 60 s, not the fixture's 30: a worker here is a process of its own, importing onnxruntime as it starts. */
const until = <T>(what: string, probe: () => Promise<T | undefined>): Promise<T> => untilWithin(what, probe, 60_000);

const status = (id: string): Promise<JobRecord | undefined> => store.get(id);

describe('container-main as an ECS queue worker, stopped with SIGTERM', () => {
  test('a job running past the drain time is handed back and completed once by the next task', async () => {
    const { queueName, queueUrl, front } = setup();
    const first = startWorker(queueUrl, 1);
    try {
      // Longer than the 1 s drain and the server's 5 s shutdown: the first task exits with the job unfinished.
      const id = await submit(front, { sleepMs: 10_000, tag: 'handed back' });
      await until('the job to run', async () => ((await status(id))?.status === 'running' ? true : undefined));
      const firstLease = (await status(id))!.lease;
      first.child.kill('SIGTERM');
      assert.equal(await first.exited, 0, first.output());
      assert.match(first.output(), /async job handed back at shutdown/);
      // Visible again at once, not after the queue's 30 s visibility timeout.
      assert.equal(world.sqsServer.inspect(queueName).ready, 1, 'the message is back on the queue');

      const second = startWorker(queueUrl, 100);
      try {
        const record = await until('the job to end', async () => {
          const current = await status(id);
          return current?.status === 'succeeded' || current?.status === 'failed' ? current : undefined;
        });
        assert.equal(record.status, 'succeeded', JSON.stringify(record));
        assert.equal(record.attempts, 2);
        assert.notEqual(record.lease, firstLease);
        assert.deepEqual(await world.resultObjects(id), [record.result!.key], 'one result object');
        const result = await new JobPayloads(world.s3Client, BUCKET).get(record.result!.key);
        assert.equal((JSON.parse(result.bytes.toString()) as { tag: string }).tag, 'handed back');
        await until('the message to be deleted', async () => {
          const depth = world.sqsServer.inspect(queueName);
          return depth.ready + depth.inflight === 0 ? true : undefined;
        });
        second.child.kill('SIGTERM');
        assert.equal(await second.exited, 0, second.output());
      } finally {
        second.child.kill('SIGKILL');
      }
    } finally {
      first.child.kill('SIGKILL');
    }
  });

  test('a job within the drain time finishes, its message deleted, before the process exits 0', async () => {
    const { queueName, queueUrl, front } = setup();
    const worker = startWorker(queueUrl, 30);
    try {
      const id = await submit(front, { sleepMs: 1500, tag: 'drained' });
      await until('the job to run', async () => ((await status(id))?.status === 'running' ? true : undefined));
      worker.child.kill('SIGTERM');
      assert.equal(await worker.exited, 0, worker.output());
      const record = await status(id);
      assert.equal(record?.status, 'succeeded', worker.output());
      assert.equal(record?.attempts, 1);
      const depth = world.sqsServer.inspect(queueName);
      assert.equal(depth.ready + depth.inflight, 0);
    } finally {
      worker.child.kill('SIGKILL');
    }
  });
});
