/**
 * Data capture (opt-in): a sampled share of inference requests and their responses written to S3 as JSON lines, for
 * drift monitoring, in SageMaker's data-capture record format (so tools reading SageMaker's capture read ours too).
 * Off the request's path: `capture` only samples and appends to a bounded queue (a full queue drops and counts); a
 * timer uploads batches, each PutObject with a deadline. A slow or failing S3 costs captured records, never a request.
 * Bodies go to the capture bucket only, never to the logs.
 */
import { randomUUID } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { InternalRequest, InternalResponse } from '../codec/codec.js';
import { createS3Client } from '../model-store/model-store.js';
import { asError, type Logger } from './logger.js';
import type { Telemetry } from './telemetry.js';

export interface DataCaptureOptions {
  /** `s3://bucket/prefix/`: objects go under `<prefix><apiName>/yyyy/mm/dd/hh/`. */
  readonly uri: string;
  /** The percentage of requests captured. @default 100 */
  readonly samplePercent?: number;
  readonly apiName: string;
  readonly logger: Logger;
  readonly telemetry?: Telemetry;
  /** Environment for the S3 client. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Records waiting for upload at most; beyond, new ones are dropped (and counted). @default 10,000 */
  readonly maxQueuedRecords?: number;
  /** Bytes waiting for upload at most. @default 64 MiB */
  readonly maxQueuedBytes?: number;
  /** How often queued records are uploaded. @default 1000 ms */
  readonly flushIntervalMs?: number;
  /** One upload's deadline. @default 5000 ms */
  readonly putTimeoutMs?: number;
}

/** What one captured exchange needs. */
export interface CapturedExchange {
  readonly requestId: string;
  readonly request: InternalRequest;
  readonly response: InternalResponse;
}

/** Counts since start, for tests and the log. */
export interface DataCaptureCounts {
  readonly captured: number;
  readonly uploaded: number;
  readonly dropped: number;
  readonly failedUploads: number;
}

const S3_PREFIX = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.*)$/;

export class DataCapture {
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly client: S3Client;
  private readonly share: number;
  private queue: string[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private uploading: Promise<void> | undefined;
  private closed = false;
  private counts = { captured: 0, uploaded: 0, dropped: 0, failedUploads: 0 };

  constructor(private readonly options: DataCaptureOptions) {
    const match = S3_PREFIX.exec(options.uri);
    if (!match) throw new Error(`data capture URI '${options.uri}' is not s3://bucket/prefix/`);
    this.bucket = match[1]!;
    this.prefix = match[2]!;
    this.share = (options.samplePercent ?? 100) / 100;
    // The SDK's own retries would hold a batch past its deadline; a failed batch is counted instead.
    this.client = createS3Client(options.env, { maxAttempts: 1 });
    this.schedule();
  }

  get stats(): DataCaptureCounts {
    return { ...this.counts };
  }

  /** Samples one exchange into the queue; never throws, never waits. */
  capture(exchange: CapturedExchange): void {
    if (this.closed || Math.random() >= this.share) return;
    try {
      const line = JSON.stringify(captureRecord(exchange, this.options.apiName));
      const maxRecords = this.options.maxQueuedRecords ?? 10_000;
      const maxBytes = this.options.maxQueuedBytes ?? 64 * 2 ** 20;
      if (this.queue.length >= maxRecords || this.queuedBytes + line.length > maxBytes) {
        this.counts.dropped++;
        this.options.telemetry?.event('DataCaptureDropped');
        return;
      }
      this.queue.push(line);
      this.queuedBytes += line.length;
      this.counts.captured++;
    } catch (error) {
      this.options.logger.warn('data capture skipped a record', { error: asError(error) });
    }
  }

  /** Uploads what is queued (up to the put deadline), then stops. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.uploading;
    await this.upload();
    this.client.destroy();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.uploading = this.upload().finally(() => {
        this.uploading = undefined;
        if (!this.closed) this.schedule();
      });
    }, this.options.flushIntervalMs ?? 1000);
    this.timer.unref();
  }

  private async upload(): Promise<void> {
    if (this.queue.length === 0) return;
    const lines = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    const now = new Date();
    const key = `${this.prefix}${this.options.apiName}/${hourPath(now)}/${now.toISOString().replace(/[:.]/g, '-')}-${randomUUID()}.jsonl`;
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: `${lines.join('\n')}\n`,
          ContentType: 'application/jsonl',
        }),
        { abortSignal: AbortSignal.timeout(this.options.putTimeoutMs ?? 5000) },
      );
      this.counts.uploaded += lines.length;
    } catch (error) {
      this.counts.failedUploads++;
      this.counts.dropped += lines.length;
      this.options.telemetry?.event('DataCaptureFailed');
      this.options.logger.warn('data capture upload failed; its records are dropped', {
        records: lines.length,
        key,
        error: asError(error).message,
      });
    }
  }
}

/** SageMaker's capture record: `captureData.endpointInput/endpointOutput` and `eventMetadata`, plus Arclight's fields. */
function captureRecord({ requestId, request, response }: CapturedExchange, apiName: string): Record<string, unknown> {
  return {
    captureData: {
      endpointInput: payload('INPUT', request.headers['content-type'], request.text ?? request.body),
      endpointOutput: payload('OUTPUT', response.headers['content-type'], response.body),
    },
    eventMetadata: {
      eventId: requestId,
      inferenceTime: new Date().toISOString(),
      apiName,
      path: request.path,
      status: response.status,
      ...(response.headers['x-model-version'] ? { modelVersion: response.headers['x-model-version'] } : {}),
    },
    eventVersion: '0',
  };
}

function payload(
  mode: 'INPUT' | 'OUTPUT',
  contentType: string | undefined,
  body: Buffer | string,
): Record<string, string> {
  const type = contentType ?? 'application/octet-stream';
  const json = /^application\/([a-z.+-]*\+)?json\b/i.test(type) || /^text\/json\b/i.test(type);
  const csv = /^text\/csv\b/i.test(type);
  return {
    observedContentType: type,
    mode,
    data: typeof body === 'string' ? body : json || csv ? body.toString('utf8') : body.toString('base64'),
    encoding: json ? 'JSON' : csv ? 'CSV' : typeof body === 'string' ? 'TEXT' : 'BASE64',
  };
}

function hourPath(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${date.getUTCFullYear()}/${pad(date.getUTCMonth() + 1)}/${pad(date.getUTCDate())}/${pad(date.getUTCHours())}`;
}
