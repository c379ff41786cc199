/**
 * The status store: every write is conditional, so concurrent fronts and redelivered workers cannot undo each other.
 * `create` only when the id is new; `claim` only while the job has not ended (taking the lease over from a worker
 * presumed dead); `finish` only by the lease holder, and only once. DynamoDB implements it on AWS
 * (dynamodb-job-store.ts), `MemoryJobStore` under `arclight dev` and in tests, with the same conditions.
 */
import type { JobError, JobRecord, JobResult } from './job.js';
import { isTerminal } from './job.js';

/** How a job ended. */
export type JobOutcome = { readonly result: JobResult } | { readonly error: JobError };

export interface JobStore {
  /** Stores a new job; when the id exists already, nothing is written and the existing record is returned. */
  create(record: JobRecord): Promise<{ readonly created: boolean; readonly record: JobRecord }>;
  /** The job, read consistently; undefined when unknown. */
  get(id: string): Promise<JobRecord | undefined>;
  /** Marks the job running under `lease` (attempts + 1) unless it ended; the new record, or undefined when it had. */
  claim(id: string, lease: string, now: Date): Promise<JobRecord | undefined>;
  /** Ends the job if `lease` still holds it; false when another claim took it over or it ended already. */
  finish(id: string, lease: string, outcome: JobOutcome, now: Date): Promise<boolean>;
}

/** The status store in this process's memory, with DynamoDB's conditions. */
export class MemoryJobStore implements JobStore {
  private readonly records = new Map<string, JobRecord>();

  async create(record: JobRecord): Promise<{ created: boolean; record: JobRecord }> {
    const existing = this.records.get(record.id);
    if (existing) return { created: false, record: existing };
    this.records.set(record.id, record);
    return { created: true, record };
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.records.get(id);
  }

  async claim(id: string, lease: string, now: Date): Promise<JobRecord | undefined> {
    const record = this.records.get(id);
    if (!record || isTerminal(record.status)) return undefined;
    const claimed: JobRecord = {
      ...record,
      status: 'running',
      lease,
      attempts: record.attempts + 1,
      updatedAt: now.toISOString(),
    };
    this.records.set(id, claimed);
    return claimed;
  }

  async finish(id: string, lease: string, outcome: JobOutcome, now: Date): Promise<boolean> {
    const record = this.records.get(id);
    if (!record || record.status !== 'running' || record.lease !== lease) return false;
    this.records.set(id, {
      ...record,
      status: 'result' in outcome ? 'succeeded' : 'failed',
      ...outcome,
      updatedAt: now.toISOString(),
    });
    return true;
  }
}
