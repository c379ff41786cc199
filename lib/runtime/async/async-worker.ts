/**
 * The async worker: one delivery of a job's message. It claims the job under a fresh lease, hands the stored request
 * to the predictor exactly as `POST /` would receive it, stores the result under its lease and ends the job only if
 * the lease still holds. A redelivery after a worker died (or overran the queue's visibility timeout) takes the lease
 * over; the late worker's finish then fails and its result object is removed: one job, one result. The delivery that
 * ended the job, and only it, then notifies (SNS, webhook): one job end, one notification.
 */
import { randomUUID } from 'node:crypto';
import { ASYNC_HEADERS, REQUEST_ID_HEADER } from '../../contract.js';
import type { InternalResponse } from '../codec/codec.js';
import { readErrorBody } from '../codec/json.js';
import type { JobPayloads } from './job-payloads.js';
import { jobNotification, type JobNotifier } from './job-notification.js';
import type { JobOutcome, JobStore } from './job-store.js';
import { resultKey, type JobError, type JobRecord } from './job.js';

/** The request a job hands the predictor. */
export interface JobRequest {
  readonly id: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** Runs the predictor on a job's request; throws when it could not be run at all (the process died, ...). */
export type InvokePredictor = (request: JobRequest) => Promise<InternalResponse>;

/** Which delivery of the message this is (SQS's ApproximateReceiveCount) and how many the queue allows. */
export interface Delivery {
  readonly receiveCount: number;
  readonly maxReceives: number;
}

export interface AsyncWorkerDeps {
  readonly store: JobStore;
  readonly payloads: JobPayloads;
  readonly invoke: InvokePredictor;
  readonly now?: () => Date;
  /** Told of each job this worker ended (never throws). @default none */
  readonly notifier?: JobNotifier;
  /** The API's name, in notifications. @default '' */
  readonly apiName?: string;
  readonly log?: (message: string, fields: Record<string, unknown>) => void;
}

/** The job could not be run this time and should be delivered again (the message stays on the queue). */
export class RetryJobError extends Error {}

export type JobProcessing = 'succeeded' | 'failed' | 'skipped' | 'superseded';

/** Processes one delivery; resolves when the message can be deleted, throws RetryJobError when it must come back. */
export async function processJob(id: string, delivery: Delivery, deps: AsyncWorkerDeps): Promise<JobProcessing> {
  const now = deps.now ?? (() => new Date());
  const lease = randomUUID();
  const record = await deps.store.claim(id, lease, now());
  // Unknown (expired), or ended by an earlier delivery: nothing to do for this one.
  if (!record) return 'skipped';
  const finish = async (outcome: JobOutcome): Promise<boolean> => {
    const at = now();
    if (!(await deps.store.finish(id, lease, outcome, at))) return false;
    await notifyEnded(
      { ...record, status: 'result' in outcome ? 'succeeded' : 'failed', ...outcome, updatedAt: at.toISOString() },
      deps,
    );
    return true;
  };

  let response: InternalResponse;
  try {
    response = await runPredictor(record, deps);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    if (delivery.receiveCount < delivery.maxReceives) {
      deps.log?.('async job will be retried', { id, attempt: record.attempts, reason });
      throw new RetryJobError(`job ${id}, attempt ${record.attempts}: ${reason}`);
    }
    const error_: JobError = {
      error: `the job could not be run after ${delivery.receiveCount} attempts: ${reason}`,
      code: 'internal_error',
      requestId: id,
      status: 500,
    };
    return (await finish({ error: error_ })) ? 'failed' : 'superseded';
  }

  if (response.status >= 200 && response.status < 300) {
    const key = resultKey(id, lease);
    const contentType = response.headers['content-type'] ?? 'application/octet-stream';
    await deps.payloads.put(key, response.body, contentType);
    const ended = await finish({ result: { key, contentType, bytes: response.body.length, status: response.status } });
    if (ended) return 'succeeded';
    // Another delivery holds the job now (or ended it): this result is not the job's.
    await deps.payloads.delete(key);
    return 'superseded';
  }
  return (await finish({ error: jobError(response, id) })) ? 'failed' : 'superseded';
}

/** Tells the notifiers of a job this delivery ended; a notifier's failure is logged, never the job's. */
async function notifyEnded(record: JobRecord, deps: AsyncWorkerDeps): Promise<void> {
  const notification = deps.notifier && jobNotification(deps.apiName ?? '', record);
  if (!notification) return;
  try {
    await deps.notifier!.notify(notification, record);
  } catch (error) {
    deps.log?.('async notification failed', { id: record.id, error: String(error) });
  }
}

/** Loads the request and runs the predictor; a 503 (not ready, overloaded) is a reason to come back, not an answer. */
async function runPredictor(record: JobRecord, deps: AsyncWorkerDeps): Promise<InternalResponse> {
  const stored = await deps.payloads.get(record.requestKey);
  const contentType = record.contentType ?? stored.contentType;
  const response = await deps.invoke({
    id: record.id,
    headers: {
      ...(contentType ? { 'content-type': contentType } : {}),
      [REQUEST_ID_HEADER]: record.id,
      [ASYNC_HEADERS.job]: record.id,
    },
    body: stored.bytes,
  });
  if (response.status === 503) {
    const reason = readErrorBody(parseJson(response.body))?.error ?? 'the predictor is not ready';
    throw new Error(`503: ${reason}`);
  }
  return response;
}

/** The contract's error body the predictor answered with, kept as the job's error. */
function jobError(response: InternalResponse, id: string): JobError {
  const body = readErrorBody(parseJson(response.body));
  return {
    error: body?.error ?? `the predictor answered ${response.status}`,
    code: body?.code ?? (response.status >= 500 ? 'predictor_error' : 'invalid_input'),
    requestId: body?.requestId ?? id,
    status: response.status,
  };
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}
