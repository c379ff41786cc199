/**
 * The container image as an async API's queue worker (the ECS compute; container-main.ts runs this when
 * ARCLIGHT_ASYNC_QUEUE_URL is set): the container server as ever (its `/ping` and `/v2/health/ready` answer the
 * container health check; no load balancer sends it requests), and an SQS poller that hands each job to the same
 * runtime in-process as `POST /`, as many at once as the server has inference workers, once the model is loaded.
 * SIGTERM (ECS stopping the task) stops receiving, lets running jobs finish for up to ARCLIGHT_ASYNC_DRAIN_SECONDS and
 * hands back the rest, then drains and closes the server: no message is lost.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import { ASYNC_ENV } from '../../contract.js';
import type { DefinedPredictor } from '../../predictor.js';
import type { InternalResponse } from '../codec/codec.js';
import { defaultWorkerCount } from '../executors/worker-pool.js';
import { createS3Client } from '../model-store/model-store.js';
import type { Runtime } from '../runtime.js';
import { settingsFromEnv, type RuntimeSettings } from '../settings.js';
import { StartupError } from '../startup-error.js';
import { startContainerServer, type ContainerServer } from '../transports/container-server.js';
import { guardProcess } from '../transports/process-guard.js';
import { asyncSettingsFromEnv } from './async-settings.js';
import type { JobRequest } from './async-worker.js';
import { DynamoDbJobStore } from './dynamodb-job-store.js';
import { JobPayloads } from './job-payloads.js';
import type { JobStore } from './job-store.js';
import { SqsPoller } from './sqs-poller.js';

/** The env vars only the queue worker reads (beside ASYNC_ENV's queue URL, bucket and table). */
export const ASYNC_WORKER_ENV = {
  /** The visibility timeout a running job's message is held at and renewed to (seconds). */
  visibilitySeconds: 'ARCLIGHT_ASYNC_VISIBILITY_SECONDS',
  /** How long SIGTERM lets running jobs finish before handing them back (seconds; below the stopTimeout). */
  drainSeconds: 'ARCLIGHT_ASYNC_DRAIN_SECONDS',
} as const;

/** How long the server's own shutdown waits for requests after the poller has stopped (health checks, a handed-back job). */
const SERVER_DRAIN_MS = 5000;

export interface AsyncContainerWorker {
  readonly container: ContainerServer;
  readonly poller: SqsPoller;
  /** Stops the poller (drain, then hand back), then the server. */
  shutdown(): Promise<void>;
}

export interface AsyncContainerWorkerOptions {
  readonly predictor?: DefinedPredictor<unknown>;
  readonly env?: NodeJS.ProcessEnv;
  /** @default a client from the environment */
  readonly sqs?: SQSClient;
  /** The status store. @default DynamoDB, the table ARCLIGHT_ASYNC_TABLE names */
  readonly store?: JobStore;
  /** Long-poll wait (tests shorten it). @default 20 */
  readonly waitTimeSeconds?: number;
  /** @default the container's port (SAGEMAKER_BIND_TO_PORT, else 8080) */
  readonly port?: number;
}

export async function startAsyncContainerWorker(
  options: AsyncContainerWorkerOptions = {},
): Promise<AsyncContainerWorker> {
  const env = options.env ?? process.env;
  const settings = settingsFromEnv(env);
  const asyncSettings = asyncSettingsFromEnv(env, false);
  const queueUrl = env[ASYNC_ENV.queueUrl] ?? '';
  const visibility = positiveSeconds(env, ASYNC_WORKER_ENV.visibilitySeconds, 300);
  const drain = positiveSeconds(env, ASYNC_WORKER_ENV.drainSeconds, 100);
  const container = await startContainerServer({
    settings,
    env,
    // At shutdown the jobs are drained or handed back already: a handed-back job's predictor call need not be awaited.
    drainTimeoutMs: SERVER_DRAIN_MS,
    ...(options.predictor ? { predictor: options.predictor } : {}),
    ...(options.port === undefined ? {} : { port: options.port }),
  });
  const log = container.runtime.log;
  const sqs = options.sqs ?? new SQSClient({});
  const poller = new SqsPoller({
    client: sqs,
    queueUrl,
    concurrency: jobConcurrency(settings),
    maxReceives: asyncSettings.maxReceives,
    visibilityTimeoutSeconds: visibility,
    drainMs: drain * 1000,
    ...(options.waitTimeSeconds === undefined ? {} : { waitTimeSeconds: options.waitTimeSeconds }),
    store: options.store ?? new DynamoDbJobStore(new DynamoDBClient({}), asyncSettings.table),
    payloads: new JobPayloads(createS3Client(env), asyncSettings.bucket),
    invoke: (job) => invokeRuntime(container.runtime, job),
    log: (message, fields) => log.info(message, fields),
  });
  // Jobs are received once the model is loaded: before, each would only be handed back as not ready.
  container.ready.then(
    () => {
      log.info('async worker polling its queue', { queueUrl, concurrency: jobConcurrency(settings) });
      poller.start();
    },
    (error: unknown) => log.error('the model failed to load: the async worker does not poll', { error: String(error) }),
  );
  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> =>
    (stopping ??= (async () => {
      await poller.stop();
      await container.shutdown();
      if (!options.sqs) sqs.destroy();
    })());
  return { container, poller, shutdown };
}

/** One job per inference worker (torch models run in one Python process). */
export function jobConcurrency(settings: RuntimeSettings): number {
  const torch = settings.modelFormat === 'torchscript' || settings.modelFormat === 'lightning-checkpoint';
  return torch ? 1 : (settings.workers ?? defaultWorkerCount());
}

/** A job's request as `POST /`, in-process: the body is never copied through a socket. */
export function invokeRuntime(runtime: Runtime, job: JobRequest): Promise<InternalResponse> {
  return runtime.handle({ method: 'POST', path: '/', query: {}, headers: job.headers, body: job.body });
}

function positiveSeconds(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) {
    throw new StartupError(
      `${name} must be a positive integer (seconds), got '${text}'`,
      'Deploy the API with AsyncApi',
    );
  }
  return value;
}

/** The entry container-main runs: SIGTERM and SIGINT stop the worker and exit 0. */
export async function runAsyncContainerWorker(predictor?: DefinedPredictor<unknown>): Promise<AsyncContainerWorker> {
  const worker = await startAsyncContainerWorker(predictor ? { predictor } : {});
  guardProcess(worker.container.runtime.log);
  const stop = (signal: string): void => {
    worker.container.runtime.log.info('signal received', { signal, runningJobs: worker.poller.running });
    worker.shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return worker;
}
