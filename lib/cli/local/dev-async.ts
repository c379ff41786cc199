/**
 * `arclight dev`'s async API: the same front and worker code as on AWS (lib/runtime/async), with the embedded S3 for
 * requests and results, the status store in memory (with DynamoDB's conditions) and an in-process queue in place of
 * SQS: a delivery that fails comes back (after a second here, not the visibility timeout), up to the queue's
 * maxReceiveCount, and its last delivery fails the job instead. The worker hands each job to the API's own process
 * (the local Lambda host, or the container server) as `POST /` (`/invocations` on SageMaker), as deployed.
 * Completion notifications as deployed: webhooks signed the same way (to local http URLs too; the key is
 * ARCLIGHT_DEV_WEBHOOK_SECRET, else a random one logged at start), and the SNS topic's messages in the log.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { ASYNC_DEFAULTS, ASYNC_ENV, ASYNC_ROUTES, REQUEST_ID_HEADER } from '../../contract.js';
import { errorBodyJson } from '../../runtime/codec/json.js';
import { requestIdFrom } from '../../runtime/transports/request-id.js';
import { AsyncFront, type JobQueue } from '../../runtime/async/async-front.js';
import {
  RetryJobError,
  processJob,
  type InvokePredictor,
  type JobProcessing,
} from '../../runtime/async/async-worker.js';
import { JobNotifiers, type JobNotification, type JobNotifier } from '../../runtime/async/job-notification.js';
import { JobPayloads } from '../../runtime/async/job-payloads.js';
import { WebhookNotifier } from '../../runtime/async/webhook.js';
import { MemoryJobStore } from '../../runtime/async/job-store.js';

/** One message of the in-process queue. */
interface Message {
  readonly id: string;
  receiveCount: number;
}

export interface LocalJobQueueOptions {
  /** Jobs run at once. */
  readonly concurrency: number;
  readonly maxReceives: number;
  /** How long a failed delivery waits before it comes back. @default 1000 */
  readonly redeliveryDelayMs?: number;
  readonly handle: (id: string, receiveCount: number) => Promise<void>;
}

/** An in-process stand-in for SQS with a redrive policy: at-least-once, a failed delivery comes back, then the DLQ. */
export class LocalJobQueue implements JobQueue {
  private readonly waiting: Message[] = [];
  private running = 0;
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Messages that were received maxReceives times without success (the dead-letter queue). */
  readonly deadLetters: string[] = [];

  constructor(private readonly options: LocalJobQueueOptions) {}

  async send(id: string): Promise<void> {
    if (this.closed) throw new Error('the local queue is closed');
    this.waiting.push({ id, receiveCount: 0 });
    this.pump();
  }

  /** Messages waiting or in flight. */
  get depth(): number {
    return this.waiting.length + this.running + this.timers.size;
  }

  private pump(): void {
    while (!this.closed && this.running < this.options.concurrency && this.waiting.length > 0) {
      const message = this.waiting.shift()!;
      message.receiveCount += 1;
      this.running += 1;
      void this.options
        .handle(message.id, message.receiveCount)
        .then(
          () => undefined,
          () => this.redeliver(message),
        )
        .finally(() => {
          this.running -= 1;
          this.pump();
        });
    }
  }

  private redeliver(message: Message): void {
    if (message.receiveCount >= this.options.maxReceives) {
      this.deadLetters.push(message.id);
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.closed) return;
      this.waiting.push(message);
      this.pump();
    }, this.options.redeliveryDelayMs ?? 1000);
    this.timers.add(timer);
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

export interface DevAsyncApiOptions {
  readonly apiName: string;
  /** The API's deployed environment: the async limits it was synthesized with. */
  readonly environment: Readonly<Record<string, string>>;
  /** A client of the embedded S3, and the bucket to create in it for this API. */
  readonly s3: S3Client;
  readonly bucket: string;
  /** `http://host:port/<api>` */
  readonly baseUrl: string;
  readonly invoke: InvokePredictor;
  /** Jobs run at once. @default 8 */
  readonly concurrency?: number;
  readonly redeliveryDelayMs?: number;
  /** The webhook signing key. @default ARCLIGHT_DEV_WEBHOOK_SECRET, else random (logged) */
  readonly webhookSecret?: string;
  /** Wait before the n-th webhook retry. @default 500 ms × 2^(n-1) */
  readonly webhookBackoffMs?: (retry: number) => number;
  readonly log: (line: string) => void;
}

/** One async API under `arclight dev`. */
export class DevAsyncApi {
  readonly store = new MemoryJobStore();
  readonly queue: LocalJobQueue;
  private readonly front: AsyncFront;
  private readonly payloads: JobPayloads;
  /** How each delivery ended, for tests and the log. */
  readonly outcomes: { id: string; receiveCount: number; outcome: JobProcessing | 'retry' }[] = [];
  /** The messages the API's SNS topic would have received. */
  readonly topicMessages: JobNotification[] = [];
  /** Notifications given up (the AsyncNotificationFailure metric). */
  notificationFailures = 0;
  private readonly notifier: JobNotifiers;

  constructor(private readonly options: DevAsyncApiOptions) {
    const env = options.environment;
    const number = (name: string, fallback: number): number => {
      const value = Number(env[name]);
      return Number.isInteger(value) && value > 0 ? value : fallback;
    };
    const maxReceives = number(ASYNC_ENV.maxReceives, ASYNC_DEFAULTS.maxReceives);
    this.payloads = new JobPayloads(options.s3, options.bucket);
    this.queue = new LocalJobQueue({
      concurrency: options.concurrency ?? 8,
      maxReceives,
      ...(options.redeliveryDelayMs === undefined ? {} : { redeliveryDelayMs: options.redeliveryDelayMs }),
      handle: (id, receiveCount) => this.work(id, receiveCount, maxReceives),
    });
    const webhooks = env[ASYNC_ENV.webhooks] === 'on';
    this.notifier = this.notifiers(env, number);
    this.front = new AsyncFront({
      apiName: options.apiName,
      store: this.store,
      payloads: this.payloads,
      queue: this.queue,
      maxBodyBytes: number(ASYNC_ENV.maxBodyBytes, ASYNC_DEFAULTS.maxBodyBytes),
      inlineResultBytes: number(ASYNC_ENV.inlineResultBytes, ASYNC_DEFAULTS.inlineResultBytes),
      urlTtlSeconds: number(ASYNC_ENV.urlTtlSeconds, ASYNC_DEFAULTS.urlTtlSeconds),
      retentionDays: number(ASYNC_ENV.retentionDays, ASYNC_DEFAULTS.retentionDays),
      baseUrl: options.baseUrl,
      ...(webhooks ? { webhooks: { allowLocal: true } } : {}),
      onError: (message, error) => options.log(`'${options.apiName}': ${message}: ${String(error)}`),
    });
  }

  /** The deployed API's notifiers, locally: its topic as a log, its webhooks as deployed. */
  private notifiers(
    env: Readonly<Record<string, string>>,
    number: (name: string, fallback: number) => number,
  ): JobNotifiers {
    const { apiName, log } = this.options;
    const notifiers: JobNotifier[] = [];
    if (env[ASYNC_ENV.topicArn]) {
      notifiers.push({
        notify: async (notification) => {
          this.topicMessages.push(notification);
          log(`'${apiName}': SNS topic (local stand-in): ${JSON.stringify(notification)}`);
        },
      });
    }
    if (env[ASYNC_ENV.webhooks] === 'on') {
      let secret = this.options.webhookSecret ?? process.env['ARCLIGHT_DEV_WEBHOOK_SECRET'];
      if (!secret) {
        secret = randomBytes(24).toString('hex');
        log(`'${apiName}': webhooks are signed with ${secret} (set ARCLIGHT_DEV_WEBHOOK_SECRET to choose the key)`);
      }
      const key = secret;
      notifiers.push(
        new WebhookNotifier({
          secret: async () => key,
          timeoutMs: number(ASYNC_ENV.webhookTimeoutMs, 5000),
          attempts: number(ASYNC_ENV.webhookAttempts, 3),
          ...(this.options.webhookBackoffMs ? { backoffMs: this.options.webhookBackoffMs } : {}),
          log: (message, fields) => log(`'${apiName}': ${message} ${JSON.stringify(fields)}`),
          onFailure: () => void (this.notificationFailures += 1),
        }),
      );
    }
    return new JobNotifiers(notifiers);
  }

  /** Creates the API's bucket in the embedded S3. */
  get bucket(): string {
    return this.options.bucket;
  }

  async start(): Promise<void> {
    await this.options.s3.send(new CreateBucketCommand({ Bucket: this.options.bucket }));
  }

  private async work(id: string, receiveCount: number, maxReceives: number): Promise<void> {
    try {
      const outcome = await processJob(
        id,
        { receiveCount, maxReceives },
        {
          store: this.store,
          payloads: this.payloads,
          invoke: this.options.invoke,
          notifier: this.notifier,
          apiName: this.options.apiName,
        },
      );
      this.outcomes.push({ id, receiveCount, outcome });
    } catch (error) {
      this.outcomes.push({ id, receiveCount, outcome: 'retry' });
      if (!(error instanceof RetryJobError)) {
        this.options.log(`'${this.options.apiName}': async job ${id} failed to process: ${String(error)}`);
      } else {
        this.options.log(`'${this.options.apiName}': ${error.message}; it will be delivered again`);
      }
      throw error;
    }
  }

  /** Answers `/<api>/async…` (`path` is the API's own); API Gateway's 10 MB limit applies to bodies. */
  serve(req: IncomingMessage, res: ServerResponse, path: string): void {
    void this.respond(req, res, path).catch((error: unknown) => {
      this.options.log(`'${this.options.apiName}': async request failed: ${String(error)}`);
      res.destroy();
    });
  }

  private async respond(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const body = await readLimited(req, ASYNC_DEFAULTS.directBodyBytes);
    if (body === undefined) {
      const requestId = requestIdFrom(undefined);
      const text = errorBodyJson(
        'payload_too_large',
        `the body is above API Gateway's ${ASYNC_DEFAULTS.directBodyBytes} bytes; POST ${ASYNC_ROUTES.uploads} for an upload URL`,
        requestId,
      );
      res.writeHead(413, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        [REQUEST_ID_HEADER]: requestId,
      });
      return void res.end(text);
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string') headers[name] = value;
      else if (Array.isArray(value)) headers[name] = value.join(', ');
    }
    const response = await this.front.handle({
      method: req.method ?? 'GET',
      path,
      headers,
      body,
    });
    res.writeHead(response.status, { ...response.headers, 'content-length': response.body.length });
    res.end(req.method === 'HEAD' ? undefined : response.body);
  }

  close(): void {
    this.queue.close();
  }
}

/** The body, or undefined past `limit` bytes (the rest is drained, so the client reads the answer). */
function readLimited(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
