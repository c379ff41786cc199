/**
 * The async worker as a long-running SQS consumer (the ECS compute): it long-polls the job queue for as many messages
 * as it has free slots (its concurrency, the container's inference workers), runs each job through the same
 * `processJob` as the Lambda worker (claim under a lease, the result under that lease, retries, the contract's errors),
 * keeps the message invisible while the job runs (a heartbeat that extends its visibility timeout) and deletes it once
 * the job has ended. A job that must come back is made visible again after a short backoff; on the queue's last
 * delivery `processJob` fails the job instead, so every job ends readable.
 *
 * `stop()` (SIGTERM: ECS then waits the container's stopTimeout before SIGKILL) stops receiving, lets running jobs
 * finish for up to `drainMs`, and hands back the ones still running (visibility 0) so another task takes them over at
 * once; the late finish of a job taken over is refused by its lease, so a job ends with one result.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { RetryJobError, processJob, type AsyncWorkerDeps, type JobProcessing } from './async-worker.js';
import { parseJobMessage } from './sqs-handler.js';

/** SQS's longest long poll, and its largest receive batch. */
const MAX_WAIT_SECONDS = 20;
const MAX_BATCH = 10;

export interface SqsPollerOptions extends AsyncWorkerDeps {
  readonly client: SQSClient;
  readonly queueUrl: string;
  /** Jobs run at once (the container's inference workers). */
  readonly concurrency: number;
  /** Deliveries before the queue's redrive policy gives a message up (its maxReceiveCount). */
  readonly maxReceives: number;
  /** The visibility a running job's message is held at; renewed every third of it. */
  readonly visibilityTimeoutSeconds: number;
  /** Long-poll wait of one receive (0–20 s). @default 20 */
  readonly waitTimeSeconds?: number;
  /** How long `stop()` lets running jobs finish before handing them back. @default 0 */
  readonly drainMs?: number;
  /** Backoff before a job that must come back is visible again (s), by delivery. @default 5 s × 2^(delivery − 1), at most 5 min */
  readonly retryDelaySeconds?: (receiveCount: number) => number;
}

/** How one delivery ended, for logs and tests. */
export interface Delivered {
  readonly id: string | undefined;
  readonly receiveCount: number;
  readonly outcome: JobProcessing | 'retry' | 'released' | 'dropped';
}

interface InFlight {
  readonly message: Message;
  readonly id: string;
  /** Settles when the delivery has ended (deleted, retried or handed back). */
  done?: Promise<void>;
  released: boolean;
}

export class SqsPoller {
  private stopping = false;
  private loop?: Promise<void>;
  private readonly inFlight = new Set<InFlight>();
  private wakeUp?: () => void;
  /** Every delivery's end, in order. */
  readonly deliveries: Delivered[] = [];

  constructor(private readonly options: SqsPollerOptions) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new Error(`concurrency must be a positive integer, got ${options.concurrency}`);
    }
    if (!(options.visibilityTimeoutSeconds >= 3)) {
      throw new Error(`visibilityTimeoutSeconds must be at least 3, got ${options.visibilityTimeoutSeconds}`);
    }
  }

  /** Jobs running now. */
  get running(): number {
    return this.inFlight.size;
  }

  start(): void {
    this.loop ??= this.receiveLoop();
  }

  /**
   * Stops receiving (a long poll under way ends first, and what it brings back is handed back at once), waits up to
   * `drainMs` for running jobs, then hands back the rest: their messages are visible again and their leases lapse.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    // The drain time counts from the signal, not from the end of a long poll under way (up to 20 s more).
    const timeout = new Promise<false>((resolve) =>
      setTimeout(() => resolve(false), this.options.drainMs ?? 0).unref(),
    );
    this.wakeUp?.();
    await this.loop;
    if (this.inFlight.size === 0) return;
    const drained = Promise.all([...this.inFlight].map((job) => job.done)).then(() => true);
    if (await Promise.race([drained, timeout])) return;
    await Promise.all([...this.inFlight].map((job) => this.release(job)));
  }

  private async receiveLoop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      const free = this.options.concurrency - this.inFlight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        continue;
      }
      let messages: Message[];
      try {
        messages = await this.receive(Math.min(MAX_BATCH, free));
        failures = 0;
      } catch (error) {
        failures += 1;
        this.log('async poller could not receive; retrying', { error: String(error), failures });
        await sleep(Math.min(30_000, 250 * 2 ** Math.min(failures, 7)));
        continue;
      }
      for (const message of messages) {
        if (this.stopping) void this.changeVisibility(message, 0, 'hand back a message received while stopping');
        else this.run(message);
      }
    }
  }

  private async receive(max: number): Promise<Message[]> {
    const response = await this.options.client.send(
      new ReceiveMessageCommand({
        QueueUrl: this.options.queueUrl,
        MaxNumberOfMessages: max,
        WaitTimeSeconds: Math.min(MAX_WAIT_SECONDS, this.options.waitTimeSeconds ?? MAX_WAIT_SECONDS),
        VisibilityTimeout: this.options.visibilityTimeoutSeconds,
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
    );
    return response.Messages ?? [];
  }

  private run(message: Message): void {
    const receiveCount = Number(message.Attributes?.ApproximateReceiveCount) || 1;
    const id = parseJobMessage(message.Body ?? '');
    if (id === undefined) {
      // Not a job message: retrying cannot help; it is deleted (and logged), not redelivered until the DLQ.
      this.log('async poller dropped a message that names no job', { messageId: message.MessageId });
      this.deliveries.push({ id, receiveCount, outcome: 'dropped' });
      void this.delete(message);
      return;
    }
    const job: InFlight = { message, id, released: false };
    job.done = this.process(job, receiveCount).finally(() => {
      this.inFlight.delete(job);
      this.wakeUp?.();
    });
    this.inFlight.add(job);
  }

  private async process(job: InFlight, receiveCount: number): Promise<void> {
    const heartbeat = this.heartbeat(job);
    let outcome: Delivered['outcome'];
    try {
      outcome = await processJob(job.id, { receiveCount, maxReceives: this.options.maxReceives }, this.options);
    } catch (error) {
      outcome = 'retry';
      if (!(error instanceof RetryJobError)) {
        this.log('async job failed to process', { id: job.id, error: String(error) });
      }
    } finally {
      clearInterval(heartbeat);
    }
    // Handed back at stop: another task owns the message now (and the job, through its claim).
    if (job.released) return void this.deliveries.push({ id: job.id, receiveCount, outcome: 'released' });
    this.deliveries.push({ id: job.id, receiveCount, outcome });
    this.log('async job processed', { id: job.id, outcome, receiveCount });
    if (outcome === 'retry') {
      const delay = (this.options.retryDelaySeconds ?? defaultRetryDelay)(receiveCount);
      await this.changeVisibility(job.message, delay, 'schedule a retry');
    } else {
      await this.delete(job.message);
    }
  }

  /** Renews the message's visibility every third of it while the job runs. */
  private heartbeat(job: InFlight): NodeJS.Timeout {
    const seconds = this.options.visibilityTimeoutSeconds;
    const timer = setInterval(
      () => {
        if (!job.released) void this.changeVisibility(job.message, seconds, 'extend a running job');
      },
      (seconds * 1000) / 3,
    );
    timer.unref();
    return timer;
  }

  private async release(job: InFlight): Promise<void> {
    job.released = true;
    this.log('async job handed back at shutdown', { id: job.id });
    await this.changeVisibility(job.message, 0, 'hand back a running job');
  }

  private async changeVisibility(message: Message, seconds: number, why: string): Promise<void> {
    try {
      await this.options.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.options.queueUrl,
          ReceiptHandle: message.ReceiptHandle,
          VisibilityTimeout: seconds,
        }),
      );
    } catch (error) {
      // The message comes back when its visibility lapses anyway: later, never lost.
      this.log(`async poller could not ${why}`, { messageId: message.MessageId, error: String(error) });
    }
  }

  private async delete(message: Message): Promise<void> {
    try {
      await this.options.client.send(
        new DeleteMessageCommand({ QueueUrl: this.options.queueUrl, ReceiptHandle: message.ReceiptHandle }),
      );
    } catch (error) {
      // Redelivered later, the ended job is skipped by its claim: one result still.
      this.log('async poller could not delete a message', { messageId: message.MessageId, error: String(error) });
    }
  }

  private log(message: string, fields: Record<string, unknown>): void {
    this.options.log?.(message, fields);
  }
}

/** 5 s, 10 s, 20 s, ... up to 5 minutes. */
function defaultRetryDelay(receiveCount: number): number {
  return Math.min(300, 5 * 2 ** Math.max(0, receiveCount - 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
