/**
 * `npm run bench -- async-ecs`: the ECS queue worker (container-worker.ts: container server + SQS poller) in this
 * process over a real SQS API on loopback (fauxqs, through the real AWS SDK) and s3rver, jobs on the digits model
 * submitted by the async front through SqsJobQueue from 32 clients, each polling its job's status every 25 ms.
 * Reports submit → succeeded latency (p50/p99) and jobs/s. The status store is the in-memory one: DynamoDB's latency
 * is not in these figures, nor SQS's own (loopback, not a region's endpoint).
 */
import { ASYNC_ENV, ENV } from '../lib/contract.js';
import { startEmbeddedS3 } from '../lib/cli/local/embedded-s3.js';
import { AsyncFront } from '../lib/runtime/async/async-front.js';
import { ASYNC_WORKER_ENV, startAsyncContainerWorker } from '../lib/runtime/async/container-worker.js';
import { JobPayloads } from '../lib/runtime/async/job-payloads.js';
import { MemoryJobStore } from '../lib/runtime/async/job-store.js';
import { SqsJobQueue } from '../lib/runtime/async/sqs-queue.js';
import { createS3Client } from '../lib/runtime/model-store/model-store.js';
import { DIGITS_ONNX, digitsInferBody, loadDigitsExpected } from '../test/helpers.js';
import { startSqsServer } from '../test/sqs-server.js';
import type { Scenario } from './report.js';
import { formatMs, summarize } from './stats.js';

const CLIENTS = 32;
const POLL_MS = 25;
const WORKERS = 2;

export const asyncEcs: Scenario = {
  name: 'async-ecs',
  description: `ECS async worker over SQS on loopback: submit → result p50/p99 and jobs/s, ${CLIENTS} clients`,
  async run(options, progress) {
    const jobs = options.quick ? 100 : 400;
    const sqsServer = await startSqsServer();
    const s3 = await startEmbeddedS3(['bench-async']);
    const s3Client = createS3Client(s3.env);
    const sqs = sqsServer.client();
    const queueUrl = sqsServer.createQueue('bench-jobs', { VisibilityTimeout: '300' });
    const store = new MemoryJobStore();
    const front = new AsyncFront({
      apiName: 'digits',
      store,
      payloads: new JobPayloads(s3Client, 'bench-async'),
      queue: new SqsJobQueue(sqs, queueUrl),
      baseUrl: 'https://bench.example',
    });
    const worker = await startAsyncContainerWorker({
      env: {
        ...s3.env,
        [ENV.apiName]: 'digits',
        [ENV.modelUri]: DIGITS_ONNX,
        [ENV.workers]: String(WORKERS),
        [ENV.intraOpThreads]: String(options.threads),
        [ENV.logLevel]: 'SILENT',
        [ENV.metrics]: 'off',
        [ASYNC_ENV.queueUrl]: queueUrl,
        [ASYNC_ENV.bucket]: 'bench-async',
        [ASYNC_ENV.table]: 'bench-jobs',
        [ASYNC_WORKER_ENV.visibilitySeconds]: '300',
      },
      store,
      sqs,
      port: 0,
    });
    try {
      await worker.container.ready;
      const { images } = loadDigitsExpected();
      const latencies: number[] = [];
      let next = 0;
      let failed = 0;
      const started = performance.now();
      const client = async (): Promise<void> => {
        while (next < jobs) {
          const index = next++;
          const begun = performance.now();
          const response = await front.handle({
            method: 'POST',
            path: '/async',
            headers: { 'content-type': 'application/json' },
            body: Buffer.from(digitsInferBody([images[index % images.length]!])),
          });
          const { id } = JSON.parse(response.body.toString()) as { id: string };
          for (;;) {
            const record = await store.get(id);
            if (record?.status === 'succeeded' || record?.status === 'failed') {
              if (record.status === 'failed') failed += 1;
              break;
            }
            await new Promise((resolve) => setTimeout(resolve, POLL_MS));
          }
          latencies.push(performance.now() - begun);
          if (latencies.length % 25 === 0) progress(`${latencies.length}/${jobs} jobs`);
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, client));
      const seconds = (performance.now() - started) / 1000;
      const summary = summarize(latencies);
      const rate = jobs / seconds;
      return {
        tables: [
          {
            title: 'ECS async worker: submit → result',
            notes: [
              `${jobs} digits jobs from ${CLIENTS} clients polling every ${POLL_MS} ms; ${WORKERS} inference workers`,
              'SQS: fauxqs on loopback (real AWS SDK); S3: s3rver; statuses in memory',
            ],
            columns: ['jobs', 'failed', 'p50', 'p99', 'max', 'jobs/s'],
            rows: [
              [
                String(jobs),
                String(failed),
                formatMs(summary.p50Ms),
                formatMs(summary.p99Ms),
                formatMs(summary.maxMs),
                rate.toFixed(1),
              ],
            ],
          },
        ],
        checks: [
          { status: failed === 0 ? 'PASS' : 'FAIL', text: `every job succeeded (${jobs - failed}/${jobs})` },
          {
            status: 'INFO',
            text: `submit → result p50 ${formatMs(summary.p50Ms)}, p99 ${formatMs(summary.p99Ms)}, ${rate.toFixed(1)} jobs/s`,
          },
        ],
        data: { jobs, failed, clients: CLIENTS, workers: WORKERS, latency: summary, jobsPerSecond: rate },
      };
    } finally {
      await worker.shutdown();
      s3Client.destroy();
      await s3.close();
      await sqsServer.stop();
    }
  },
};
