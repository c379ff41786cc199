/**
 * An async job as the status store keeps it, and where its bytes lie in the async bucket. A job moves
 * queued → running → succeeded | failed; `running` may be taken over by a later delivery of its message (the earlier
 * worker is presumed dead once the queue's visibility timeout passed), and only the worker holding the current lease
 * may end it, so a job ends once, with one result.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { ErrorBody } from '../codec/json.js';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

/** A job's record in the status store. */
export interface JobRecord {
  readonly id: string;
  readonly status: JobStatus;
  /** ISO 8601. */
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Key of the request body in the async bucket. */
  readonly requestKey: string;
  /** The request's `content-type`. */
  readonly contentType?: string;
  /** What identifies the request for an Idempotency-Key replay: the body's sha256, or the upload's id. */
  readonly fingerprint: string;
  /** Deliveries claimed so far. */
  readonly attempts: number;
  /** The lease of the worker running it now (a random token per claim). */
  readonly lease?: string;
  /** Succeeded: the result object, its type, size and the status the predictor answered with. */
  readonly result?: JobResult;
  /** Failed: the contract's error body and the status it would have been sent with. */
  readonly error?: JobError;
  /** SageMaker compute: where SageMaker writes the job's result or error (the job has no worker of ours). */
  readonly outputs?: JobOutputs;
  /** The job's `GET /async/{id}` URL, as the submission was answered (notifications carry it). */
  readonly statusUrl?: string;
  /** Where the job's completion is POSTed (the submission's `Arclight-Callback-Url`). */
  readonly callbackUrl?: string;
  /** When the record may be deleted (epoch seconds; DynamoDB's TTL attribute). */
  readonly expiresAt: number;
}

export interface JobResult {
  readonly key: string;
  readonly contentType: string;
  readonly bytes: number;
  readonly status: number;
}

/** The objects SageMaker asynchronous inference writes one of: the result, or the error. */
export interface JobOutputs {
  readonly outputKey: string;
  readonly failureKey: string;
}

export interface JobError extends ErrorBody {
  readonly status: number;
}

/** Where a job's bytes lie in the async bucket (each prefix is its own lifecycle rule and IAM grant). */
export const JOB_PREFIXES = {
  /** Bodies posted to `POST /async`, content-addressed so that racing submissions never overwrite each other. */
  requests: 'requests/',
  /** Bodies uploaded through presigned URLs from `POST /async/uploads`. */
  uploads: 'uploads/',
  /** Results: one object per claim (`results/<id>/<lease>`); only the lease that ended the job is kept. */
  results: 'results/',
} as const;

export function requestKey(id: string, sha256: string): string {
  return `${JOB_PREFIXES.requests}${id}/${sha256}`;
}

export function uploadKey(uploadId: string): string {
  return `${JOB_PREFIXES.uploads}${uploadId}`;
}

export function resultKey(id: string, lease: string): string {
  return `${JOB_PREFIXES.results}${id}/${lease}`;
}

/** Ids are 32 lowercase hex digits: random, or derived from the Idempotency-Key, so a replay names the same job. */
export const JOB_ID = /^[0-9a-f]{32}$/;

/** A fresh job id, or the one an Idempotency-Key stands for (per API). */
export function jobId(apiName: string, idempotencyKey?: string): string {
  if (idempotencyKey === undefined) return randomUUID().replaceAll('-', '');
  return createHash('sha256').update(`${apiName}\n${idempotencyKey}`).digest('hex').slice(0, 32);
}

/** Upload ids look like job ids. */
export function uploadId(): string {
  return randomUUID().replaceAll('-', '');
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function isTerminal(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed';
}
