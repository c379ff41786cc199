/**
 * A job's completion notification: what the worker publishes to the API's SNS topic and POSTs to the submission's
 * callback URL once the job ended. The same fields as `GET /async/{id}` answers for an ended job, without the result
 * itself (a receiver fetches it from `statusUrl`), so one parser reads both. Sent only by the delivery whose lease
 * ended the job: at-least-once delivery of the queue's message never notifies twice.
 */
import type { JobRecord, JobStatus } from './job.js';

/** The body of a completion notification. */
export interface JobNotification {
  readonly id: string;
  readonly apiName: string;
  readonly status: Extract<JobStatus, 'succeeded' | 'failed'>;
  /** `GET` it for the result (inline or a presigned URL) or the error. */
  readonly statusUrl?: string;
  readonly createdAt: string;
  /** When the job ended (ISO 8601). */
  readonly updatedAt: string;
  readonly attempts: number;
  /** The status the predictor's answer (or the error) would have been sent with. */
  readonly httpStatus: number;
  /** Succeeded: the result's type and size. */
  readonly resultContentType?: string;
  readonly resultBytes?: number;
  /** Failed: the contract's error. */
  readonly error?: string;
  readonly code?: string;
  readonly requestId?: string;
}

/** What tells the world a job ended; `notify` never throws (a failed notification never fails the job). */
export interface JobNotifier {
  notify(notification: JobNotification, record: JobRecord): Promise<void>;
}

/** The notification of an ended job; undefined while it runs. */
export function jobNotification(apiName: string, record: JobRecord): JobNotification | undefined {
  if (record.status !== 'succeeded' && record.status !== 'failed') return undefined;
  const common = {
    id: record.id,
    apiName,
    status: record.status,
    ...(record.statusUrl ? { statusUrl: record.statusUrl } : {}),
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    attempts: record.attempts,
  };
  if (record.error) {
    const { status, error, code, requestId } = record.error;
    return { ...common, httpStatus: status, error, code, requestId };
  }
  return {
    ...common,
    httpStatus: record.result?.status ?? 200,
    ...(record.result ? { resultContentType: record.result.contentType, resultBytes: record.result.bytes } : {}),
  };
}

/** Every notifier in turn; each one's failure is its own to report. */
export class JobNotifiers implements JobNotifier {
  constructor(private readonly notifiers: readonly JobNotifier[]) {}

  get size(): number {
    return this.notifiers.length;
  }

  async notify(notification: JobNotification, record: JobRecord): Promise<void> {
    await Promise.all(this.notifiers.map((notifier) => notifier.notify(notification, record)));
  }
}
