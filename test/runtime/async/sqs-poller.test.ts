/**
 * The ECS queue worker as deployed, short of DynamoDB: the container worker (container server + SQS poller) in this
 * process over a real SQS API on loopback (fauxqs, through the real @aws-sdk/client-sqs), a real S3 (s3rver), real
 * onnxruntime on the digits model; jobs submitted by the async front to that queue (SqsJobQueue). The status store is
 * the in-memory one with DynamoDB's conditions (no DynamoDB runs here; dynamodb-job-store.ts has its own tests).
 * Shutdown is `shutdown()`, which SIGTERM calls (container-worker.ts's runAsyncContainerWorker).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { ASYNC_ENV, ENV } from '../../../lib/contract.js';
import type { AsyncFront } from '../../../lib/runtime/async/async-front.js';
import {
  ASYNC_WORKER_ENV,
  startAsyncContainerWorker,
  type AsyncContainerWorker,
} from '../../../lib/runtime/async/container-worker.js';
import { JobPayloads } from '../../../lib/runtime/async/job-payloads.js';
import { MemoryJobStore } from '../../../lib/runtime/async/job-store.js';
import type { JobRecord } from '../../../lib/runtime/async/job.js';
import { DIGITS_ONNX, digitsInferBody, loadDigitsExpected } from '../../helpers.js';
import { startQueueWorld, submit, until, type QueueWorld } from './queue-fixture.js';

const BUCKET = 'async-ecs';
let world: QueueWorld;

before(async () => {
  world = await startQueueWorld(BUCKET);
});

after(async () => {
  await world?.close();
});

interface Setup {
  readonly queueName: string;
  readonly queueUrl: string;
  readonly store: MemoryJobStore;
  readonly front: AsyncFront;
  worker(overrides?: Record<string, string>): Promise<AsyncContainerWorker>;
}

/** A fresh queue, store and front; `worker()` starts a container worker on them (each its own port). */
function setup(predictor?: string): Setup {
  const store = new MemoryJobStore();
  const { queueName, queueUrl, front } = world.queueWithFront('jobs', 'digits', store);
  const worker = async (overrides: Record<string, string> = {}): Promise<AsyncContainerWorker> => {
    const env: NodeJS.ProcessEnv = {
      ...world.s3.env,
      [ENV.apiName]: 'digits',
      [ENV.modelUri]: DIGITS_ONNX,
      [ENV.workers]: '2',
      [ENV.logLevel]: 'SILENT',
      [ENV.metrics]: 'off',
      ...(predictor ? { [ENV.predictorEntry]: predictor } : {}),
      [ASYNC_ENV.queueUrl]: queueUrl,
      [ASYNC_ENV.bucket]: BUCKET,
      [ASYNC_ENV.table]: 'jobs',
      [ASYNC_ENV.maxReceives]: '3',
      [ASYNC_WORKER_ENV.visibilitySeconds]: '30',
      [ASYNC_WORKER_ENV.drainSeconds]: '10',
      ...overrides,
    };
    const { loadPredictor } = await import('../../../lib/runtime/predictor-loader.js');
    const started = await startAsyncContainerWorker({
      env,
      store,
      sqs: world.sqs,
      waitTimeSeconds: 1,
      port: 0,
      ...(predictor ? { predictor: await loadPredictor(predictor) } : {}),
    });
    await started.container.ready;
    return started;
  };
  return { queueName, queueUrl, store, front, worker };
}

async function ended(store: MemoryJobStore, id: string): Promise<JobRecord> {
  return until(`job ${id} to end`, async () => {
    const record = await store.get(id);
    return record && (record.status === 'succeeded' || record.status === 'failed') ? record : undefined;
  });
}

async function resultBody(record: JobRecord): Promise<Buffer> {
  assert.ok(record.result, `job ${record.id} has no result: ${JSON.stringify(record.error)}`);
  return (await new JobPayloads(world.s3Client, BUCKET).get(record.result.key)).bytes;
}

describe('the ECS queue worker over SQS', () => {
  test('each job of the digits model ends succeeded with the synchronous answer, its message deleted', async () => {
    const { front, store, worker, queueName } = setup();
    const running = await worker();
    try {
      const { images } = loadDigitsExpected();
      const bodies = images.slice(0, 24).map((image) => digitsInferBody([image]));
      const ids = await Promise.all(bodies.map((body) => submit(front, body)));
      for (const [index, id] of ids.entries()) {
        const record = await ended(store, id);
        assert.equal(record.status, 'succeeded');
        assert.equal(record.attempts, 1);
        const sync = await running.container.runtime.handle({
          method: 'POST',
          path: '/',
          query: {},
          headers: { 'content-type': 'application/json' },
          body: Buffer.from(bodies[index]!),
        });
        assert.equal(sync.status, 200);
        assert.deepEqual(JSON.parse((await resultBody(record)).toString()), JSON.parse(sync.body.toString()));
      }
      await until('the queue to empty', () => {
        const depth = world.sqsServer.inspect(queueName);
        return depth.ready + depth.inflight + depth.delayed === 0 ? true : undefined;
      });
      // The container server still answers its health checks over HTTP while it works the queue.
      const ping = await fetch(`http://127.0.0.1:${running.container.address.port}/ping`);
      assert.equal(ping.status, 200);
      assert.ok(running.poller.deliveries.every((delivery) => delivery.outcome === 'succeeded'));
    } finally {
      await running.shutdown();
    }
  });

  test('a predictor that throws ends the job failed with the contract error; a foreign message is dropped', async () => {
    const { front, store, worker, queueName, queueUrl } = setup('test/fixtures/async-job-predictor.ts');
    const running = await worker();
    try {
      await world.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'not a job' }));
      const id = await submit(front, JSON.stringify({ fail: 'bad input' }));
      const record = await ended(store, id);
      assert.equal(record.status, 'failed');
      assert.equal(record.error?.status, 500);
      assert.equal(record.error?.code, 'predictor_error');
      // The contract's 500 body: the predictor's own message stays in the logs, under the job's id.
      assert.match(record.error?.error ?? '', /the predictor failed; the logs carry the details/);
      assert.equal(record.error?.requestId, id);
      await until('the queue to empty', () => {
        const depth = world.sqsServer.inspect(queueName);
        return depth.ready + depth.inflight === 0 ? true : undefined;
      });
      assert.ok(running.poller.deliveries.some((delivery) => delivery.outcome === 'dropped'));
    } finally {
      await running.shutdown();
    }
  });

  test('a job that cannot run comes back after the backoff, and its last delivery fails it (internal_error)', async () => {
    const { front, store, worker, queueName } = setup('test/fixtures/async-job-predictor.ts');
    const id = await submit(front, JSON.stringify({ tag: 'lost request' }));
    const { requestKey } = (await store.get(id))!;
    await world.s3Client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: requestKey }));
    const running = await worker({ [ASYNC_ENV.maxReceives]: '2' });
    try {
      const started = Date.now();
      const record = await ended(store, id);
      assert.equal(record.status, 'failed');
      assert.equal(record.error?.code, 'internal_error');
      assert.match(record.error?.error ?? '', /could not be run after 2 attempts/);
      assert.equal(record.attempts, 2);
      assert.ok(Date.now() - started >= 4000, 'the second delivery waited out the 5 s backoff');
      assert.deepEqual(
        running.poller.deliveries.map((delivery) => [delivery.outcome, delivery.receiveCount]),
        [
          ['retry', 1],
          ['failed', 2],
        ],
      );
      await until('the queue to empty', () => {
        const depth = world.sqsServer.inspect(queueName);
        return depth.ready + depth.inflight + depth.delayed === 0 ? true : undefined;
      });
    } finally {
      await running.shutdown();
    }
  });

  test('the heartbeat keeps a job longer than the visibility timeout from being delivered twice', async () => {
    const { front, store, worker, queueName } = setup('test/fixtures/async-job-predictor.ts');
    const first = await worker({ [ASYNC_WORKER_ENV.visibilitySeconds]: '3' });
    const second = await worker({ [ASYNC_WORKER_ENV.visibilitySeconds]: '3' });
    try {
      const id = await submit(front, JSON.stringify({ sleepMs: 7000, tag: 'long' }));
      const record = await ended(store, id);
      assert.equal(record.status, 'succeeded');
      assert.equal(record.attempts, 1, 'one delivery: the message stayed invisible for 7 s with a 3 s visibility');
      await until('the queue to empty', () => {
        const depth = world.sqsServer.inspect(queueName);
        return depth.ready + depth.inflight === 0 ? true : undefined;
      });
      assert.equal(first.poller.deliveries.length + second.poller.deliveries.length, 1);
    } finally {
      await Promise.all([first.shutdown(), second.shutdown()]);
    }
  });

  test('SIGTERM mid-job past the drain time hands the message back; another task completes the job once', async () => {
    const { front, store, worker, queueName } = setup('test/fixtures/async-job-predictor.ts');
    const stopped = await worker({ [ASYNC_WORKER_ENV.drainSeconds]: '1' });
    const id = await submit(front, JSON.stringify({ sleepMs: 4000, tag: 'handed back' }));
    await until('the job to run', async () => ((await store.get(id))?.status === 'running' ? true : undefined));
    const firstLease = (await store.get(id))!.lease;
    const stopping = stopped.shutdown();
    // After the 1 s drain, the message is visible again at once (not after its 30 s visibility timeout).
    const successor = await worker();
    try {
      const record = await ended(store, id);
      assert.equal(record.status, 'succeeded');
      assert.equal(record.attempts, 2);
      assert.notEqual(record.lease, firstLease, 'the second delivery took the lease over');
      await stopping;
      // The first task's late result (its predictor kept running to the end) was refused by the lease and removed.
      await until('the late result to be removed', async () =>
        (await world.resultObjects(id)).length === 1 ? true : undefined,
      );
      assert.deepEqual(await world.resultObjects(id), [record.result!.key]);
      assert.deepEqual(JSON.parse((await resultBody(record)).toString()).tag, 'handed back');
      assert.deepEqual(
        stopped.poller.deliveries.map((delivery) => delivery.outcome),
        ['released'],
      );
      assert.deepEqual(
        successor.poller.deliveries.map((delivery) => [delivery.outcome, delivery.receiveCount]),
        [['succeeded', 2]],
      );
      await until('the queue to empty', () => {
        const depth = world.sqsServer.inspect(queueName);
        return depth.ready + depth.inflight === 0 ? true : undefined;
      });
    } finally {
      await successor.shutdown();
    }
  });

  test('SIGTERM mid-job within the drain time finishes the job and deletes its message before exiting', async () => {
    const { front, store, worker, queueName } = setup('test/fixtures/async-job-predictor.ts');
    const running = await worker({ [ASYNC_WORKER_ENV.drainSeconds]: '20' });
    const id = await submit(front, JSON.stringify({ sleepMs: 1500, tag: 'drained' }));
    await until('the job to run', async () => ((await store.get(id))?.status === 'running' ? true : undefined));
    await running.shutdown();
    const record = await store.get(id);
    assert.equal(record?.status, 'succeeded', 'the job ended before shutdown resolved');
    assert.equal(record?.attempts, 1);
    const depth = world.sqsServer.inspect(queueName);
    assert.equal(depth.ready + depth.inflight, 0, 'its message was deleted');
    // No new job is received once stopping: a job submitted now waits in the queue for another task.
    const later = await submit(front, JSON.stringify({ tag: 'after' }));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await store.get(later))?.status, 'queued');
    assert.equal(world.sqsServer.inspect(queueName).ready, 1);
  });
});
